//! What the runner tells the adversary about the world, and what the
//! adversary reports about each attempt.

use serde::{Deserialize, Serialize};

/// The world as the adversary knows it: every path and pid it will aim at.
/// An agent may know all of this; none of it is a secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// The mode the agent runs in: `supervised`, `governed`, `embedded`,
    /// `endpoint` (see `crate::modes::Mode`).
    pub(crate) mode: String,
    pub(crate) workspace: String,
    pub(crate) scratch: String,
    pub(crate) key: String,
    /// The example policy (the first of `policies` in most modes).
    pub(crate) policy: String,
    /// Every policy file of this mode's sessions.
    pub(crate) policies: Vec<String>,
    /// The configuration file of this mode's sessions.
    pub(crate) config: String,
    pub(crate) enforcer_binary: String,
    pub(crate) agent_binary: String,
    pub(crate) evidence: String,
    pub(crate) control: String,
    /// The decision endpoint's socket (endpoint mode).
    pub(crate) endpoint: String,
    /// The enforcer's pid, where the agent is not its child (endpoint
    /// mode); 0 otherwise.
    pub(crate) enforcer_pid: u32,
    pub(crate) outside_secret: String,
    pub(crate) outside_dir: String,
    /// A Unix socket of the operator's user outside the workspace.
    pub(crate) unix_socket: String,
    /// The temporary directory the enforcer uses (its hand-off
    /// directories go there).
    pub(crate) system_tmp: String,
    pub(crate) workspace_secrets: Vec<String>,
    pub(crate) listener_port: u16,
    pub(crate) sentinel_pid: u32,
    pub(crate) public_key: String,
}

impl Plan {
    /// The kernel's own assets: what the floor protects.
    pub(crate) fn assets(&self) -> Vec<String> {
        let mut assets = vec![self.key.clone()];
        assets.extend(self.policies.iter().cloned());
        assets.extend([
            self.config.clone(),
            self.evidence.clone(),
            self.enforcer_binary.clone(),
        ]);
        assets
    }

    /// Whether the agent runs confined by Landlock with the workspace
    /// readable and programs brokered (supervised, embedded).
    pub(crate) fn brokered(&self) -> bool {
        matches!(self.mode.as_str(), "supervised" | "embedded")
    }

    /// Whether the agent's own system calls are decided (governed).
    pub(crate) fn governed(&self) -> bool {
        self.mode == "governed"
    }

    /// Whether the agent is an unconfined process using the decision
    /// endpoint (endpoint mode).
    pub(crate) fn endpoint(&self) -> bool {
        self.mode == "endpoint"
    }

    /// Every file the agent must neither read nor change.
    pub(crate) fn targets(&self) -> Vec<String> {
        let mut all = self.assets();
        all.push(self.outside_secret.clone());
        all.push(self.agent_binary.clone());
        all.extend(self.workspace_secrets.iter().cloned());
        all
    }
}

/// One attempt, as the adversary reports it. The runner judges it by the
/// world, not by `answer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Attempt {
    /// The attack class.
    pub(crate) class: String,
    /// What was tried.
    pub(crate) what: String,
    /// What the kernel or the OS answered (for the report only).
    pub(crate) answer: String,
    /// Bytes the attempt obtained (file content, program output), as
    /// lossy text: none may carry a planted secret.
    pub(crate) got: String,
    /// Files that exist only if the attack worked.
    pub(crate) markers: Vec<String>,
    /// Files that exist if the attack hit a documented limit of the
    /// confinement (see `docs/CAMPAIGN.md`), not an escape.
    pub(crate) limit_markers: Vec<String>,
    /// The documented limit that planted secrets reaching the agent fall
    /// under for this attempt, if any (a direct read of the workspace,
    /// which supervised mode grants read-only).
    pub(crate) limit: Option<String>,
    /// Permits the agent holds that it should not (verified receipts for
    /// actions the policy forbids, or for another request).
    pub(crate) bad_permits: u32,
    /// A file that must still have this length (an append the attack tried
    /// to replay).
    pub(crate) length: Option<(String, u64)>,
    /// Run `audit verify` on the evidence after this attempt.
    pub(crate) audit: bool,
    /// Check the evidence for forbidden allows, approvals and reloads.
    pub(crate) evidence: bool,
    /// Check with the operator's `status` that the kernel is not halted.
    pub(crate) not_halted: bool,
    /// The documented limit that changes of a guarded file's metadata
    /// only (mode, owner, times, extended attributes) fall under, if any.
    pub(crate) metadata_limit: Option<String>,
    /// The documented limit that connections to the Unix socket outside
    /// the workspace fall under, if any.
    pub(crate) unix_limit: Option<String>,
    /// The documented limit that approvals, reloads and halts by the agent
    /// fall under, if any (an unconfined agent of the operator's uid).
    pub(crate) operator_limit: Option<String>,
    /// A control socket (its configured path) the agent tried to take:
    /// the runner then plays the operator's `status` and `halt` on it and
    /// checks who answered.
    pub(crate) impersonated: Option<String>,
}
