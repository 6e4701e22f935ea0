//! How to start or join an enforcer.

use kernel_core::{Digest, VerifyingKey};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time to wait for one decision.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to wait for the enforcer to start and complete the
/// handshake.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings for [`Kernel::spawn`](crate::Kernel::spawn).
///
/// The enforcer binary is found in this order: the explicit
/// [`enforcer`](Self::enforcer) path (and only it, when given); else the
/// path in the [`ENFORCER_ENV`](crate::ENFORCER_ENV) environment variable
/// (`AGENT_KERNEL_ENFORCER`, and only it, when set); else
/// `kernel-enforcer` next to the current executable, in each directory on
/// `PATH`, and in `$CARGO_HOME/bin` (by default `~/.cargo/bin`, where
/// `cargo install` puts it), the first one that is an executable file.
/// When none is, [`Kernel::spawn`](crate::Kernel::spawn) fails with a
/// [`SpawnError::EnforcerNotFound`](crate::SpawnError::EnforcerNotFound)
/// that lists every place searched.
#[derive(Debug, Clone)]
pub struct SpawnConfig {
    pub(crate) enforcer: Option<PathBuf>,
    pub(crate) policies: Vec<PathBuf>,
    pub(crate) workspace: PathBuf,
    pub(crate) evidence: PathBuf,
    pub(crate) key: Option<PathBuf>,
    pub(crate) protect: Vec<PathBuf>,
    pub(crate) checkpoint_every: Option<u64>,
    pub(crate) evidence_segment: Option<u64>,
    pub(crate) danger_evidence_os_buffered: bool,
    pub(crate) control: Option<PathBuf>,
    pub(crate) operator_uid: Option<u32>,
    pub(crate) shadow: bool,
    pub(crate) client: ClientConfig,
}

/// Settings shared by spawning and joining an enforcer.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) pinned_key: Option<VerifyingKey>,
    pub(crate) pinned_policy: Option<Digest>,
    pub(crate) timeout: Duration,
    pub(crate) approval_timeout: Option<Duration>,
    pub(crate) startup_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            pinned_key: None,
            pinned_policy: None,
            timeout: DEFAULT_TIMEOUT,
            approval_timeout: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl ClientConfig {
    /// Requires the enforcer to use this public key; any other key fails
    /// start-up.
    #[must_use]
    pub fn pin_public_key(mut self, key: VerifyingKey) -> Self {
        self.pinned_key = Some(key);
        self
    }

    /// Time to wait for each decision (default [`DEFAULT_TIMEOUT`]). No
    /// answer in time is a denial.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuses receipts that name any other policy set. Off by default:
    /// the operator may reload the policy, and every receipt names the
    /// digest it was decided under anyway.
    #[must_use]
    pub fn pin_policy_digest(mut self, digest: Digest) -> Self {
        self.pinned_policy = Some(digest);
        self
    }

    /// When a policy asks for an operator's approval (`@ask`), wait up to
    /// this long (counted from the request) for the operator to approve or
    /// reject. Without it, `Ask` is at once a
    /// [`Denial::ApprovalRequired`](crate::Denial::ApprovalRequired). No
    /// answer in time is a denial; the enforcer refuses approvals that
    /// come after the request's deadline.
    #[must_use]
    pub fn await_approval(mut self, wait: Duration) -> Self {
        self.approval_timeout = Some(wait);
        self
    }

    /// Time to wait for start-up and the handshake (default
    /// [`DEFAULT_STARTUP_TIMEOUT`]).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }
}

impl SpawnConfig {
    /// A configuration with one policy file, the agent's workspace root
    /// and the evidence file to append to.
    pub fn new(
        policy: impl AsRef<Path>,
        workspace: impl AsRef<Path>,
        evidence: impl AsRef<Path>,
    ) -> Self {
        Self {
            enforcer: None,
            policies: vec![policy.as_ref().to_owned()],
            workspace: workspace.as_ref().to_owned(),
            evidence: evidence.as_ref().to_owned(),
            key: None,
            protect: Vec::new(),
            checkpoint_every: None,
            evidence_segment: None,
            danger_evidence_os_buffered: false,
            control: None,
            operator_uid: None,
            shadow: false,
            client: ClientConfig::default(),
        }
    }

    /// The files the kernel's confinement must keep out of the agent's
    /// reach: policies, key, evidence, its start-up index and the
    /// directory of its closed segments, control socket, extra protected
    /// paths.
    pub(crate) fn protected_paths(&self) -> Vec<PathBuf> {
        let beside = |suffix: &str| {
            let mut path = self.evidence.as_os_str().to_owned();
            path.push(suffix);
            PathBuf::from(path)
        };
        let control = self.control.clone().unwrap_or_else(|| beside(".control"));
        let index = beside(".index");
        let segments = beside(".segments");
        self.policies
            .iter()
            .chain(self.key.iter())
            .chain([&self.evidence, &index, &segments, &control])
            .chain(self.protect.iter())
            .cloned()
            .collect()
    }

    /// Adds another policy file.
    #[must_use]
    pub fn policy(mut self, policy: impl AsRef<Path>) -> Self {
        self.policies.push(policy.as_ref().to_owned());
        self
    }

    /// Uses this enforcer binary and no other (not even the one named in
    /// [`ENFORCER_ENV`](crate::ENFORCER_ENV)).
    #[must_use]
    pub fn enforcer(mut self, path: impl AsRef<Path>) -> Self {
        self.enforcer = Some(path.as_ref().to_owned());
        self
    }

    /// Signs with the key in this PKCS#8 PEM file (mode 0600) instead of a
    /// fresh per-session key.
    #[must_use]
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key = Some(path.as_ref().to_owned());
        self
    }

    /// Adds a path the floor protects.
    #[must_use]
    pub fn protect(mut self, path: impl AsRef<Path>) -> Self {
        self.protect.push(path.as_ref().to_owned());
        self
    }

    /// Requires the enforcer to use this public key.
    #[must_use]
    pub fn pin_public_key(mut self, key: VerifyingKey) -> Self {
        self.client = self.client.pin_public_key(key);
        self
    }

    /// The path that names the operator's control socket (an abstract
    /// socket named after it; default: the evidence file's path with
    /// `.control` appended).
    #[must_use]
    pub fn control_socket(mut self, path: impl AsRef<Path>) -> Self {
        self.control = Some(path.as_ref().to_owned());
        self
    }

    /// The uid allowed on the control socket (default: the enforcer's
    /// effective uid, which is the agent's in embedded mode).
    #[must_use]
    pub fn operator_uid(mut self, uid: u32) -> Self {
        self.operator_uid = Some(uid);
        self
    }

    /// Has the enforcer write evidence to the OS without `fdatasync`
    /// before replying: a decision's record then survives a crash of the
    /// enforcer but not of the OS or a power loss. Faster, and weaker.
    #[must_use]
    pub fn danger_evidence_os_buffered(mut self) -> Self {
        self.danger_evidence_os_buffered = true;
        self
    }

    /// Starts the enforcer in shadow mode (`--shadow`): every action is
    /// decided by the policy and recorded, and one the policy denies or
    /// asks about proceeds anyway, with a permit that says so
    /// ([`Permit::is_shadow`](crate::Permit::is_shadow)). The kernel floor
    /// and the kill switch still deny. For learning what an agent does
    /// (`kernel-enforcer policy suggest` writes a policy from the
    /// evidence), never for enforcing. Spawning fails if the enforcer's
    /// handshake does not announce the mode asked for.
    #[must_use]
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Has the enforcer sign a checkpoint after this many records (its
    /// default is 1000; it also signs one every 10 seconds and at
    /// shutdown).
    #[must_use]
    pub fn checkpoint_every(mut self, records: u64) -> Self {
        self.checkpoint_every = Some(records);
        self
    }

    /// Has the enforcer keep the evidence in segments of about `bytes`
    /// bytes (`--evidence-segment`; at least 1024): once a commit fills
    /// the active segment, it is closed into the directory
    /// `EVIDENCE.segments` beside the evidence file and a new one begins
    /// with a checkpoint of every record before it. The evidence file's
    /// path always names the active segment. Default: one file.
    #[must_use]
    pub fn evidence_segment(mut self, bytes: u64) -> Self {
        self.evidence_segment = Some(bytes);
        self
    }

    /// Time to wait for each decision.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.timeout(timeout);
        self
    }

    /// Time to wait for start-up and the handshake.
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.startup_timeout(timeout);
        self
    }

    /// Wait up to this long for an operator's approval of `@ask` actions
    /// (see [`ClientConfig::await_approval`]).
    #[must_use]
    pub fn await_approval(mut self, wait: Duration) -> Self {
        self.client = self.client.await_approval(wait);
        self
    }
}
