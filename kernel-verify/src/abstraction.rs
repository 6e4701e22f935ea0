//! The finite abstraction of the decision combinator's inputs.
//!
//! [`decide`](kernel_core::decide) looks at lists of matched policies and
//! at strings, but its *decision* depends only on nine facts: whether the
//! kernel is halted, whether the deadline passed, whether evaluation
//! failed, whether a permit without `@ask` matched, whether a permit with
//! `@ask` matched, whether a forbid matched, whether a policy failed to
//! evaluate, whether a limit was exceeded, and whether an operator's grant
//! applies. A [`DecisionPoint`] is one assignment of those facts; there are
//! 512. [`DecisionPoint::of`] abstracts real inputs and
//! [`DecisionPoint::inputs`] builds real inputs back; a property test checks
//! that the decision of any input equals the decision at its abstraction,
//! so a statement proved over the 512 points holds for every input.

use kernel_core::{
    Action, Approval, CanonicalAction, Deadline, Decision, DecisionInputs, Digest, EncodedRequest,
    EnforcerState, Evaluation, Expectation, LimitState, MAX_CLOCK_SKEW_MS, MatchedForbid,
    MatchedPermit, ReceiptBody, Request, SessionId, SigningKey, Verified, sign_receipt,
    verify_receipt,
};

/// One assignment of the facts the decision depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecisionPoint {
    /// The kernel is halted.
    pub halted: bool,
    /// The request's deadline passed.
    pub deadline_passed: bool,
    /// Evaluation failed as a whole (the other evaluation facts are then
    /// meaningless and ignored).
    pub evaluation_failed: bool,
    /// A permit policy without `@ask` matched.
    pub plain_permit: bool,
    /// A permit policy with `@ask` matched.
    pub ask_permit: bool,
    /// A forbid policy matched.
    pub forbid: bool,
    /// Some policy failed to evaluate.
    pub policy_error: bool,
    /// A rate limit was exceeded.
    pub limit_exceeded: bool,
    /// An operator's grant covers the action.
    pub granted: bool,
}

/// Number of facts in a [`DecisionPoint`].
pub const DECISION_FACTS: u32 = 9;

impl DecisionPoint {
    /// The point whose facts are the bits of `bits` (bit 0: `halted`, in
    /// field order).
    pub fn from_bits(bits: u16) -> Self {
        let bit = |i: u32| bits & (1 << i) != 0;
        Self {
            halted: bit(0),
            deadline_passed: bit(1),
            evaluation_failed: bit(2),
            plain_permit: bit(3),
            ask_permit: bit(4),
            forbid: bit(5),
            policy_error: bit(6),
            limit_exceeded: bit(7),
            granted: bit(8),
        }
    }

    /// Every point of the domain, each once.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..1u16 << DECISION_FACTS).map(Self::from_bits)
    }

    /// The abstraction of real inputs.
    pub fn of(inputs: &DecisionInputs) -> Self {
        let (failed, plain, ask, forbid, error) = match &inputs.evaluation {
            Evaluation::Failed { .. } => (true, false, false, false, false),
            Evaluation::Completed {
                permits,
                forbids,
                errors,
            } => (
                false,
                permits.iter().any(|p| !p.ask),
                permits.iter().any(|p| p.ask),
                !forbids.is_empty(),
                !errors.is_empty(),
            ),
        };
        Self {
            halted: inputs.kernel == EnforcerState::Halted,
            deadline_passed: inputs.deadline == Deadline::Passed,
            evaluation_failed: failed,
            plain_permit: plain,
            ask_permit: ask,
            forbid,
            policy_error: error,
            limit_exceeded: matches!(inputs.limits, LimitState::Exceeded { .. }),
            granted: matches!(inputs.approval, Approval::Granted { .. }),
        }
    }

    /// Real inputs with exactly these facts.
    pub fn inputs(&self) -> DecisionInputs {
        let mut permits = Vec::new();
        if self.plain_permit {
            permits.push(MatchedPermit {
                id: "plain".into(),
                ask: false,
                reason: None,
            });
        }
        if self.ask_permit {
            permits.push(MatchedPermit {
                id: "asking".into(),
                ask: true,
                reason: None,
            });
        }
        DecisionInputs {
            kernel: if self.halted {
                EnforcerState::Halted
            } else {
                EnforcerState::Serving
            },
            deadline: if self.deadline_passed {
                Deadline::Passed
            } else {
                Deadline::Open
            },
            evaluation: if self.evaluation_failed {
                Evaluation::Failed {
                    reason: "engine refused the request".into(),
                }
            } else {
                Evaluation::Completed {
                    permits,
                    forbids: if self.forbid {
                        vec![MatchedForbid {
                            id: "forbid".into(),
                            reason: None,
                        }]
                    } else {
                        Vec::new()
                    },
                    errors: if self.policy_error {
                        vec![("broken".into(), "integer overflow".into())]
                    } else {
                        Vec::new()
                    },
                }
            },
            limits: if self.limit_exceeded {
                LimitState::Exceeded {
                    policy: "plain".into(),
                    limit: "1/minute".into(),
                }
            } else {
                LimitState::Within
            },
            approval: if self.granted {
                Approval::Granted {
                    by: "operator".into(),
                }
            } else {
                Approval::None
            },
        }
    }
}

/// One case of receipt verification: which of the facts the client checks
/// hold, the decision the receipt carries, and the three times involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceiptPoint {
    /// Signed by the enforcer's key (else by another key).
    pub authentic: bool,
    /// Names the client's session.
    pub right_session: bool,
    /// Names the request's sequence number.
    pub right_seq: bool,
    /// Names the request's digest.
    pub right_digest: bool,
    /// The client pins a policy digest.
    pub pinned: bool,
    /// The receipt names the pinned policy digest (when one is pinned).
    pub right_policy: bool,
    /// The session announced shadow mode in its handshake.
    pub shadow: bool,
    /// The decision in the receipt.
    pub decision: Decision,
    /// The receipt's issue time, ms.
    pub issued_at_ms: u64,
    /// The receipt's expiry, ms.
    pub expires_at_ms: u64,
    /// The client's clock when it verifies, ms.
    pub now_ms: u64,
}

/// Times around which receipt verification changes its answer: zero, the
/// clock-skew tolerance, an ordinary instant and the top of the range
/// (where adding the tolerance saturates).
pub const TIME_SAMPLES: [u64; 9] = [
    0,
    1,
    MAX_CLOCK_SKEW_MS - 1,
    MAX_CLOCK_SKEW_MS,
    MAX_CLOCK_SKEW_MS + 1,
    1_000_000,
    u64::MAX - MAX_CLOCK_SKEW_MS,
    u64::MAX - 1,
    u64::MAX,
];

/// Every decision a receipt can carry.
pub const DECISIONS: [Decision; 5] = [
    Decision::Allow,
    Decision::Deny,
    Decision::Ask,
    Decision::ShadowDeny,
    Decision::ShadowAsk,
];

impl ReceiptPoint {
    /// Every combination of the seven facts and five decisions, at
    /// consistent, fresh times.
    pub fn all_facts() -> impl Iterator<Item = Self> {
        (0..1u8 << 7).flat_map(|bits| {
            let bit = |i: u8| bits & (1 << i) != 0;
            DECISIONS.map(|decision| Self {
                authentic: bit(0),
                right_session: bit(1),
                right_seq: bit(2),
                right_digest: bit(3),
                pinned: bit(4),
                right_policy: bit(5),
                shadow: bit(6),
                decision,
                issued_at_ms: 1_000_000,
                expires_at_ms: 1_030_000,
                now_ms: 1_000_500,
            })
        })
    }

    /// Every triple of [`TIME_SAMPLES`] as issue time, expiry and clock,
    /// for an otherwise valid receipt carrying `decision`, in a session
    /// that announced shadow mode (so that every decision that can yield
    /// a permit does).
    pub fn all_times(decision: Decision) -> impl Iterator<Item = Self> {
        TIME_SAMPLES.into_iter().flat_map(move |issued| {
            TIME_SAMPLES.into_iter().flat_map(move |expires| {
                TIME_SAMPLES.into_iter().map(move |now| Self {
                    authentic: true,
                    right_session: true,
                    right_seq: true,
                    right_digest: true,
                    pinned: true,
                    right_policy: true,
                    shadow: true,
                    decision,
                    issued_at_ms: issued,
                    expires_at_ms: expires,
                    now_ms: now,
                })
            })
        })
    }

    /// Runs the real [`verify_receipt`] on a receipt built and signed to
    /// have exactly these facts, and says whether it yielded a permit.
    pub fn yields_permit(&self) -> bool {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let session = SessionId([3; 16]);
        let Ok(action) = CanonicalAction::new(Action::file_read("/ws/a"), None) else {
            return false;
        };
        let request = EncodedRequest::new(Request {
            session,
            seq: 7,
            nonce: [4; 16],
            action,
            deadline_ms: u64::MAX,
        });
        let policy = Digest([5; 32]);
        let body = ReceiptBody {
            session: if self.right_session {
                session
            } else {
                SessionId([9; 16])
            },
            seq: if self.right_seq { 7 } else { 8 },
            request_digest: if self.right_digest {
                request.digest()
            } else {
                Digest([0; 32])
            },
            decision: self.decision,
            policies: Vec::new(),
            reasons: Vec::new(),
            policy_digest: if self.right_policy {
                policy
            } else {
                Digest([6; 32])
            },
            log_index: 1,
            issued_at_ms: self.issued_at_ms,
            expires_at_ms: self.expires_at_ms,
        };
        let receipt = sign_receipt(if self.authentic { &key } else { &other }, &body);
        let verified = verify_receipt(
            &receipt,
            &Expectation {
                key: &key.verifying_key(),
                request: &request,
                policy_digest: self.pinned.then_some(&policy),
                now_ms: self.now_ms,
                shadow: self.shadow,
            },
        );
        matches!(verified, Ok(Verified::Permit(_)))
    }
}
