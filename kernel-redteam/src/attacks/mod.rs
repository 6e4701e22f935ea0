//! The adversary: runs confined under `kernel-enforcer run`, attacks, and
//! reports each attempt to the runner, which judges it by the world. One
//! module per attack class.
//!
//! Reporting is lock-step: the agent writes one `@@` line per attempt to
//! its standard output and waits for the runner's line on its standard
//! input before the next attempt, so the runner looks at the world right
//! after each attempt.
//!
//! The attacks make raw system calls on purpose; each `unsafe` block says
//! why it is sound for this process.
#![allow(
    unsafe_code,
    reason = "the adversary makes raw system calls on purpose"
)]

pub(crate) mod approvals;
pub(crate) mod argv;
pub(crate) mod direct;
pub(crate) mod endpoint_raw;
pub(crate) mod env;
pub(crate) mod evidence;
pub(crate) mod impersonation;
pub(crate) mod kill_switch;
pub(crate) mod links;
pub(crate) mod liveness;
pub(crate) mod path_tricks;
pub(crate) mod protocol;
pub(crate) mod raw;
pub(crate) mod receipts;
pub(crate) mod route;
pub(crate) mod self_modify;
pub(crate) mod smuggling;
pub(crate) mod sys;

use crate::plan::{Attempt, Plan};
use crate::rng::SplitMix64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use kernel_client::{ClientConfig, EnforcerEnds, Exec, Kernel};
use kernel_core::now_ms;
use kernel_core::{
    Action, CanonicalAction, ClientFrame, Decision, EncodedRequest, EnforcerFrame, Expectation,
    Handshake, PROTOCOL_VERSION, ReceiptBody, Request, SignedReceipt, Verified, WriteMode,
    decode_enforcer_frame, decode_receipt_body_unverified, encode_client_frame, sign_receipt,
    verify_receipt,
};
use raw::{Raw, outcome_text, permits, receipt_of};
use route::{Output, Route};
use std::io::{BufRead, Write};
use std::time::Duration;
use sys::*;

/// Reports attempts and waits for the runner's go-ahead.
pub(crate) struct Reporter {
    class: String,
    stdin: std::io::StdinLock<'static>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("class", &self.class)
            .finish()
    }
}

impl Reporter {
    pub(crate) fn new(class: &str) -> Self {
        Self {
            class: class.to_owned(),
            stdin: std::io::stdin().lock(),
        }
    }

    /// Sends one attempt and waits until the runner has judged it.
    pub(crate) fn report(&mut self, mut attempt: Attempt) {
        attempt.class.clone_from(&self.class);
        attempt.got = attempt.got.chars().take(64 * 1024).collect();
        let line = serde_json::to_string(&attempt).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@@{line}");
        let _ = out.flush();
        drop(out);
        let mut ack = String::new();
        let _ = self.stdin.read_line(&mut ack);
    }
}

fn attempt(what: impl Into<String>) -> Attempt {
    Attempt {
        what: what.into(),
        ..Attempt::default()
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `result` as (answer, obtained bytes).
fn effect<T>(result: &Result<T, String>, got: impl Fn(&T) -> String) -> (String, String) {
    match result {
        Ok(value) => ("performed".into(), got(value)),
        Err(e) => (e.clone(), String::new()),
    }
}

/// Joins the kernel as the mode says, or reports why it could not.
fn join(plan: &Plan, rep: &mut Reporter) -> Option<Route> {
    match Route::join(plan) {
        Ok(route) => Some(route),
        Err(e) => {
            rep.report(attempt(format!("join: {e}")));
            None
        }
    }
}

/// The documented limit for effects on workspace files through a program
/// the policy allows (`python3` with any arguments, in the example
/// policy): brokered programs may read and write the whole workspace.
/// Under `--govern-syscalls` every call such a program makes is decided,
/// so there is no such limit there.
fn allowed_program_limit(plan: &Plan) -> Option<String> {
    (plan.brokered() || plan.endpoint())
        .then(|| "an allowed program (python3) may act on any workspace file".to_owned())
}

/// The documented limit for reads of workspace files the agent makes
/// itself: Landlock grants a supervised (or locked-down embedded) agent
/// the workspace read-only.
fn workspace_read_limit(plan: &Plan) -> Option<String> {
    plan.brokered()
        .then(|| "a supervised agent may read its workspace directly".to_owned())
}

/// The documented limit for metadata changes: Landlock does not govern
/// them, so a confined agent (not governed) can change the mode, owner
/// and times of files it can name.
fn metadata_limit(plan: &Plan) -> Option<String> {
    plan.brokered().then(|| {
        "Landlock does not govern metadata: a confined agent can chmod, chown and utime files it can name".to_owned()
    })
}

/// The documented limit for Unix socket files: Landlock (up to ABI 7)
/// does not govern `connect` on them.
fn unix_socket_limit(plan: &Plan) -> Option<String> {
    plan.brokered().then(|| {
        "a confined agent can connect to Unix socket files it can name (Landlock does not govern them)".to_owned()
    })
}

fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

fn dir_and_name(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (String::new(), path.to_owned()),
    }
}

/// Python run through the route (the example policy allows `python3` in
/// the workspace; the coding-agent profile runs every system program):
/// the paths it needs arrive reversed, so that no argument names a
/// protected file.
fn python(route: &Route, plan: &Plan, code: &str, args: &[String]) -> Result<Output, String> {
    route.exec(
        Exec::new("/usr/bin/python3")
            .arg("-c")
            .arg(code)
            .args(args.iter().map(|a| reverse(a)))
            .cwd(&plan.workspace),
    )
}
