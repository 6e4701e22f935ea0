//! Why an action was not permitted.

use kernel_core::{ActionError, Refusal, VerifyError};
use std::time::Duration;

/// Why the kernel did not grant a permit. Every failure, whatever its
/// layer, is a denial: there is no error path that lets an action proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The policy denied the action (authentic, signed receipt).
    #[error("denied by policy ({}): {}", list(.policies), .reasons.join("; "))]
    Policy {
        /// The determining policies.
        policies: Vec<String>,
        /// The reasons.
        reasons: Vec<String>,
        /// Index of the evidence record of this decision.
        log_index: u64,
    },
    /// A policy requires an operator's approval, which this client does not
    /// wait for: the action is denied.
    #[error("approval required ({}): {}", list(.policies), .reasons.join("; "))]
    ApprovalRequired {
        /// The policies asking for approval.
        policies: Vec<String>,
        /// The reasons.
        reasons: Vec<String>,
        /// Index of the evidence record of this decision.
        log_index: u64,
    },
    /// A policy asked for an operator's approval and none came in time.
    #[error("no operator approval within {waited:?} ({})", list(.policies))]
    NoApproval {
        /// The policies asking for approval.
        policies: Vec<String>,
        /// How long the client waited.
        waited: Duration,
    },
    /// The action could not be put in canonical form.
    #[error("invalid action: {0}")]
    InvalidAction(#[from] ActionError),
    /// No answer arrived within the timeout.
    #[error("no answer from the enforcer within {0:?}")]
    Timeout(Duration),
    /// The channel failed.
    #[error("transport failure: {0}")]
    Transport(String),
    /// The enforcer is gone: every later action is denied too.
    #[error("the enforcer is gone: no kernel, no action")]
    EnforcerGone,
    /// The receipt did not verify.
    #[error("receipt refused: {0}")]
    Verification(#[from] VerifyError),
    /// The enforcer refused the request.
    #[error("refused by the enforcer: {0}")]
    Refused(Refusal),
    /// The enforcer is halted and denies everything.
    #[error("halted")]
    Halted,
    /// The enforcer broke the protocol.
    #[error("protocol violation by the enforcer: {0}")]
    Protocol(String),
}

fn list(policies: &[String]) -> String {
    if policies.is_empty() {
        "no policy matched".to_owned()
    } else {
        policies.join(", ")
    }
}
