//! Sessions in the test's own process (feature `session`): the enforcer's
//! [`Session`] fed frames directly, with its evidence in a file or in
//! memory, and an in-memory device that can be made to fail.
//!
//! These are the enforcer's own public types, put together as its binary
//! does; nothing here decides, signs or records anything itself.

use crate::frames::hello_frame;
use kernel_core::{EnforcerFrame, Handshake, SigningKey, decode_enforcer_frame};
use kernel_enforcer::session::evidence::{EvidenceLog, Storage};
use kernel_enforcer::session::{Session, SessionConfig};
use kernel_policy::{Environment, PolicyEngine};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

/// The workspace of an in-process session.
pub const WORKSPACE: &str = "/ws";

pub use crate::policies::READ_WORKSPACE;

/// A session to start: its policy and workspace, its key, its settings
/// and its evidence. Each has a default but the policy.
#[derive(Debug)]
#[must_use = "nothing starts until `start`"]
pub struct InProcess {
    workspace: String,
    policy: String,
    key: SigningKey,
    config: SessionConfig,
    evidence: Option<EvidenceLog>,
}

impl InProcess {
    /// A session deciding by `policy` (Cedar text), signing with a fixed
    /// key, with the default settings, recording to a fresh [`Memory`].
    pub fn new(policy: &str) -> Self {
        Self {
            workspace: WORKSPACE.to_owned(),
            policy: policy.to_owned(),
            key: SigningKey::from_bytes(&[9; 32]),
            config: SessionConfig::default(),
            evidence: None,
        }
    }

    /// Over `workspace` (absolute) instead of [`WORKSPACE`].
    pub fn workspace(mut self, workspace: &str) -> Self {
        self.workspace = workspace.to_owned();
        self
    }

    /// Signs with `key`.
    pub fn key(mut self, key: SigningKey) -> Self {
        self.key = key;
        self
    }

    /// With `config`.
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Records to `evidence` (a file: [`EvidenceLog::open`]; a device:
    /// [`Memory::log`]).
    pub fn evidence(mut self, evidence: EvidenceLog) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// Starts the session and opens it with a client's `Hello`; returns
    /// it and its handshake.
    pub fn start(self) -> (Session, Handshake) {
        let env = Environment::new(&self.workspace, &[]).expect("the environment");
        let policy = PolicyEngine::from_sources(&[("policy.cedar".into(), self.policy)], env)
            .expect("a valid policy");
        let evidence = self.evidence.unwrap_or_else(|| Memory::new().log());
        let mut session =
            Session::start(self.key, policy, evidence, self.config).expect("the session starts");
        let handshake = hello(&mut session);
        (session, handshake)
    }
}

/// Says hello to `session` as a client does; returns its handshake.
pub fn hello(session: &mut Session) -> Handshake {
    match decode_enforcer_frame(&session.handle(&hello_frame([1; 32]))).expect("a hello reply") {
        EnforcerFrame::Hello { handshake, .. } => handshake,
        other => panic!("expected a hello, got {other:?}"),
    }
}

/// How a [`Memory`] device breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Appends fail (a full disk).
    FailWrite,
    /// Appends succeed, syncs fail (an I/O error).
    FailSync,
    /// The append panics (a driver bug).
    Panic,
}

/// Evidence kept in memory: an evidence device for in-process sessions.
/// Clones share the bytes, so a test keeps one to look at what the
/// session wrote. It may be made to break after a number of appends.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    state: Arc<Mutex<State>>,
    /// Old bytes are dropped once there are more than this.
    limit: Option<usize>,
    /// Breaks after this many appends, this way.
    breaks: Option<(usize, Fault)>,
}

#[derive(Debug, Default)]
struct State {
    bytes: Vec<u8>,
    appends: usize,
    sync_broken: bool,
    repaired: bool,
    writer: Option<(ThreadId, PathBuf)>,
}

impl Memory {
    /// A device that works and keeps everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A device that works, and drops what it holds whenever it holds
    /// more than `limit` bytes (a fuzzer checks the session, not the log).
    pub fn keeping_at_most(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// A device that works for `healthy` appends and then breaks by
    /// `fault` until [`Memory::repair`].
    pub fn breaking_after(healthy: usize, fault: Fault) -> Self {
        Self {
            breaks: Some((healthy, fault)),
            ..Self::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking append (`Fault::Panic`) leaves the state whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An evidence log on this device (sharing its bytes).
    pub fn log(&self) -> EvidenceLog {
        EvidenceLog::with_storage(Path::new("memory"), &[], Box::new(self.clone()))
            .expect("an empty log")
    }

    /// Everything appended (and kept) so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.state().bytes.clone()
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.state().bytes.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a broken device work again (a freed disk, a replaced
    /// driver): appends and syncs succeed from now on.
    pub fn repair(&self) {
        let mut state = self.state();
        state.repaired = true;
        state.sync_broken = false;
    }

    /// The thread that appended last, as `/proc` names it (for
    /// [`crate::wait_until_asleep`]): the thread that decides.
    pub fn writer(&self) -> Option<PathBuf> {
        self.state().writer.as_ref().map(|(_, task)| task.clone())
    }
}

impl Storage for Memory {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut state = self.state();
        let thread = std::thread::current().id();
        if state
            .writer
            .as_ref()
            .is_none_or(|(known, _)| *known != thread)
        {
            let task = std::fs::read_link("/proc/thread-self").unwrap_or_default();
            state.writer = Some((thread, task));
        }
        state.appends += 1;
        if let Some((healthy, fault)) = self.breaks
            && state.appends > healthy
            && !state.repaired
        {
            match fault {
                Fault::FailWrite => return Err(std::io::Error::other("no space left on device")),
                Fault::FailSync => state.sync_broken = true,
                Fault::Panic => {
                    drop(state);
                    panic!("device driver bug");
                }
            }
        }
        if self.limit.is_some_and(|limit| state.bytes.len() > limit) {
            state.bytes.clear();
        }
        state.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.state().sync_broken {
            return Err(std::io::Error::other("input/output error"));
        }
        Ok(())
    }
}
