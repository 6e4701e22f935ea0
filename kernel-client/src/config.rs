//! How to start or join an enforcer.

use kernel_core::VerifyingKey;
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
/// [`enforcer`](Self::enforcer) path (and only it, when given), then
/// `kernel-enforcer` next to the current executable, then on `PATH`.
#[derive(Debug, Clone)]
pub struct SpawnConfig {
    pub(crate) enforcer: Option<PathBuf>,
    pub(crate) policies: Vec<PathBuf>,
    pub(crate) workspace: PathBuf,
    pub(crate) evidence: PathBuf,
    pub(crate) key: Option<PathBuf>,
    pub(crate) protect: Vec<PathBuf>,
    pub(crate) checkpoint_every: Option<u64>,
    pub(crate) client: ClientConfig,
}

/// Settings shared by spawning and joining an enforcer.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) pinned_key: Option<VerifyingKey>,
    pub(crate) timeout: Duration,
    pub(crate) startup_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            pinned_key: None,
            timeout: DEFAULT_TIMEOUT,
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
            client: ClientConfig::default(),
        }
    }

    /// Adds another policy file.
    #[must_use]
    pub fn policy(mut self, policy: impl AsRef<Path>) -> Self {
        self.policies.push(policy.as_ref().to_owned());
        self
    }

    /// Uses this enforcer binary and no other.
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

    /// Has the enforcer sign a checkpoint after this many records (its
    /// default is 1000; it also signs one every 10 seconds and at
    /// shutdown).
    #[must_use]
    pub fn checkpoint_every(mut self, records: u64) -> Self {
        self.checkpoint_every = Some(records);
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
}
