//! Decisions and the fail-closed decision combinator.
//!
//! [`decide`] is the one place where `Allow` is produced. It is a small,
//! total function from what the enforcer observed to a [`Verdict`]; every
//! unusual input maps to `Deny`, and the characterisation below is checked
//! by property tests.

use serde::{Deserialize, Serialize};

/// The answer to a request. Exhaustive on purpose: code that matches on it
/// must handle every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// The action may proceed, once, before the receipt expires.
    Allow,
    /// The action must not proceed.
    Deny,
    /// The action needs an operator's approval; until then it must not
    /// proceed.
    Ask,
    /// Shadow mode: the policy denies the action, and it proceeds anyway,
    /// once, before the receipt expires, because the enforcer's operator
    /// runs it in shadow mode (announced in the handshake and recorded at
    /// the start of the session) to learn what the agent does. Never made
    /// by [`decide`]; only the enforcer turns a `Deny` into it, and never
    /// a denial by the kernel floor, a halt or a passed deadline.
    ShadowDeny,
    /// Shadow mode: the policy asks for an operator's approval, and the
    /// action proceeds without one (as [`ShadowDeny`](Self::ShadowDeny)).
    ShadowAsk,
}

impl Decision {
    /// Lowercase name (`allow`, `deny`, `ask`, `shadow-deny`,
    /// `shadow-ask`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
            Self::ShadowDeny => "shadow-deny",
            Self::ShadowAsk => "shadow-ask",
        }
    }

    /// Whether the action proceeds: an allow, or a decision of shadow
    /// mode.
    pub fn proceeds(self) -> bool {
        matches!(self, Self::Allow | Self::ShadowDeny | Self::ShadowAsk)
    }

    /// Whether it is a decision of shadow mode (the policy did not allow
    /// the action, and it proceeds).
    pub fn is_shadow(self) -> bool {
        matches!(self, Self::ShadowDeny | Self::ShadowAsk)
    }

    /// The decision of shadow mode standing in for `self`: `ShadowDeny`
    /// for `Deny`, `ShadowAsk` for `Ask`, and `self` otherwise.
    pub fn shadowed(self) -> Self {
        match self {
            Self::Deny => Self::ShadowDeny,
            Self::Ask => Self::ShadowAsk,
            other => other,
        }
    }
}

/// A permit policy that matched the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedPermit {
    /// The policy id.
    pub id: String,
    /// Whether the policy is annotated `@ask`.
    pub ask: bool,
    /// The policy's `@reason`, if any.
    pub reason: Option<String>,
}

/// A forbid policy that matched the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedForbid {
    /// The policy id.
    pub id: String,
    /// The policy's `@reason`, if any.
    pub reason: Option<String>,
}

/// What policy evaluation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluation {
    /// The engine ran. Policies that failed to evaluate are listed in
    /// `errors`; the engine may have skipped them, the kernel does not.
    Completed {
        /// Matched permit policies.
        permits: Vec<MatchedPermit>,
        /// Matched forbid policies.
        forbids: Vec<MatchedForbid>,
        /// Policies whose evaluation failed, with the error text.
        errors: Vec<(String, String)>,
    },
    /// The request could not be evaluated at all (it could not be built,
    /// or the engine refused it).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Whether a rate limit or budget was exceeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitState {
    /// No limit applies or every applicable limit has room.
    Within,
    /// A limit was exceeded.
    Exceeded {
        /// The policy whose limit was hit.
        policy: String,
        /// The limit, as written (`10/minute`).
        limit: String,
    },
}

/// The enforcer's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnforcerState {
    /// Serving normally.
    Serving,
    /// Halted by a fault or an operator: everything is denied.
    Halted,
}

/// Whether the request is still within its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// The deadline has not passed.
    Open,
    /// The deadline passed before the decision.
    Passed,
}

/// Whether an operator has already approved this action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// No approval applies.
    None,
    /// An operator's standing grant covers this action.
    Granted {
        /// Who granted it, for the reason.
        by: String,
    },
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionInputs {
    /// The enforcer's state.
    pub kernel: EnforcerState,
    /// The request's deadline.
    pub deadline: Deadline,
    /// Policy evaluation.
    pub evaluation: Evaluation,
    /// Rate limits and budgets.
    pub limits: LimitState,
    /// An operator's standing approval for this action, if any.
    pub approval: Approval,
}

/// A decision with the policies that determined it and readable reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Ids of the determining policies (empty when none matched or when a
    /// kernel condition decided).
    pub policies: Vec<String>,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
}

impl Verdict {
    fn deny(policies: Vec<String>, reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            policies,
            reasons: vec![reason.into()],
        }
    }
}

/// Reason given when the kernel is halted.
pub const REASON_HALTED: &str = "halted";
/// Reason given when no permit policy matched.
pub const REASON_DEFAULT_DENY: &str = "no policy permits this action";
/// Reason given when the deadline passed.
pub const REASON_DEADLINE: &str = "request deadline passed before a decision";

/// The fail-closed decision combinator.
///
/// Returns `Allow` exactly when all of these hold:
/// the kernel is serving; the deadline is open; evaluation completed with
/// no policy error; at least one permit matched; no forbid matched; no
/// limit was exceeded; and no matched permit asks for approval.
/// If, besides, some matched permit is annotated `@ask`, it returns `Ask`,
/// or `Allow` when an operator's grant covers the action
/// ([`Approval::Granted`]). Everything else is `Deny`, checked in this
/// order so the reason names the most fundamental cause: halted, deadline,
/// evaluation failure, policy errors, forbids, no permit, limit.
pub fn decide(inputs: &DecisionInputs) -> Verdict {
    if inputs.kernel == EnforcerState::Halted {
        return Verdict::deny(Vec::new(), REASON_HALTED);
    }
    if inputs.deadline == Deadline::Passed {
        return Verdict::deny(Vec::new(), REASON_DEADLINE);
    }
    let (permits, forbids, errors) = match &inputs.evaluation {
        Evaluation::Failed { reason } => {
            return Verdict::deny(Vec::new(), format!("policy evaluation failed: {reason}"));
        }
        Evaluation::Completed {
            permits,
            forbids,
            errors,
        } => (permits, forbids, errors),
    };
    if !errors.is_empty() {
        return Verdict {
            decision: Decision::Deny,
            policies: errors.iter().map(|(id, _)| id.clone()).collect(),
            reasons: errors
                .iter()
                .map(|(id, error)| format!("policy `{id}` failed to evaluate: {error}"))
                .collect(),
        };
    }
    if !forbids.is_empty() {
        return Verdict {
            decision: Decision::Deny,
            policies: forbids.iter().map(|f| f.id.clone()).collect(),
            reasons: forbids
                .iter()
                .map(|f| {
                    f.reason
                        .clone()
                        .unwrap_or_else(|| format!("forbidden by `{}`", f.id))
                })
                .collect(),
        };
    }
    if permits.is_empty() {
        return Verdict::deny(Vec::new(), REASON_DEFAULT_DENY);
    }
    if let LimitState::Exceeded { policy, limit } = &inputs.limits {
        return Verdict::deny(
            vec![policy.clone()],
            format!("rate limit `{limit}` of policy `{policy}` exceeded"),
        );
    }
    let asking: Vec<&MatchedPermit> = permits.iter().filter(|p| p.ask).collect();
    if let (false, Approval::Granted { by }) = (asking.is_empty(), &inputs.approval) {
        return Verdict {
            decision: Decision::Allow,
            policies: asking.iter().map(|p| p.id.clone()).collect(),
            reasons: vec![format!("approved by {by}")],
        };
    }
    let (decision, deciding) = if asking.is_empty() {
        (Decision::Allow, permits.iter().collect::<Vec<_>>())
    } else {
        (Decision::Ask, asking)
    };
    Verdict {
        decision,
        policies: deciding.iter().map(|p| p.id.clone()).collect(),
        reasons: deciding
            .iter()
            .map(|p| {
                p.reason.clone().unwrap_or_else(|| match decision {
                    Decision::Ask => format!("`{}` requires an operator's approval", p.id),
                    _ => format!("permitted by `{}`", p.id),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn permit(id: &str, ask: bool) -> MatchedPermit {
        MatchedPermit {
            id: id.into(),
            ask,
            reason: None,
        }
    }

    fn arb_inputs() -> impl Strategy<Value = DecisionInputs> {
        let eval = prop_oneof![
            "[a-z]{0,8}".prop_map(|reason| Evaluation::Failed { reason }),
            (
                proptest::collection::vec(("[a-z]{1,4}", any::<bool>()), 0..3),
                proptest::collection::vec("[a-z]{1,4}", 0..3),
                proptest::collection::vec(("[a-z]{1,4}", "[a-z]{0,4}"), 0..2),
            )
                .prop_map(|(p, f, e)| Evaluation::Completed {
                    permits: p.into_iter().map(|(id, ask)| permit(&id, ask)).collect(),
                    forbids: f
                        .into_iter()
                        .map(|id| MatchedForbid { id, reason: None })
                        .collect(),
                    errors: e,
                }),
        ];
        (
            any::<bool>(),
            any::<bool>(),
            eval,
            proptest::option::of("[a-z]{1,4}"),
            any::<bool>(),
        )
            .prop_map(
                |(halted, passed, evaluation, limit, granted)| DecisionInputs {
                    kernel: if halted {
                        EnforcerState::Halted
                    } else {
                        EnforcerState::Serving
                    },
                    deadline: if passed {
                        Deadline::Passed
                    } else {
                        Deadline::Open
                    },
                    evaluation,
                    limits: match limit {
                        Some(policy) => LimitState::Exceeded {
                            policy,
                            limit: "1/minute".into(),
                        },
                        None => LimitState::Within,
                    },
                    approval: if granted {
                        Approval::Granted { by: "op".into() }
                    } else {
                        Approval::None
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn allow_exactly_when_everything_is_clean(inputs in arb_inputs()) {
            let verdict = decide(&inputs);
            let clean = inputs.kernel == EnforcerState::Serving
                && inputs.deadline == Deadline::Open
                && inputs.limits == LimitState::Within
                && matches!(&inputs.evaluation, Evaluation::Completed { permits, forbids, errors }
                    if !permits.is_empty() && forbids.is_empty() && errors.is_empty());
            let asks = matches!(&inputs.evaluation, Evaluation::Completed { permits, .. }
                if permits.iter().any(|p| p.ask));
            let granted = inputs.approval != Approval::None;
            prop_assert_eq!(verdict.decision == Decision::Allow, clean && (!asks || granted));
            prop_assert_eq!(verdict.decision == Decision::Ask, clean && asks && !granted);
            prop_assert!(!verdict.reasons.is_empty());
        }

        #[test]
        fn never_allow_with_any_error(inputs in arb_inputs()) {
            let has_error = match &inputs.evaluation {
                Evaluation::Failed { .. } => true,
                Evaluation::Completed { errors, .. } => !errors.is_empty(),
            };
            if has_error {
                prop_assert_ne!(decide(&inputs).decision, Decision::Allow);
            }
        }

        #[test]
        fn forbid_beats_permit_whatever_the_order(
            mut permits in proptest::collection::vec(("[a-z]{1,4}", any::<bool>()), 1..4),
            forbid in "[a-z]{1,4}",
            seed in any::<u64>(),
        ) {
            let mut forbids = vec![MatchedForbid { id: forbid, reason: None }];
            let rotate = usize::try_from(seed % 4).unwrap();
            let len = permits.len();
            permits.rotate_left(rotate % len);
            forbids.reverse();
            let inputs = DecisionInputs {
                kernel: EnforcerState::Serving,
                deadline: Deadline::Open,
                evaluation: Evaluation::Completed {
                    permits: permits.into_iter().map(|(id, ask)| permit(&id, ask)).collect(),
                    forbids,
                    errors: vec![],
                },
                limits: LimitState::Within,
                approval: Approval::Granted { by: "op".into() },
            };
            prop_assert_eq!(decide(&inputs).decision, Decision::Deny);
        }
    }

    #[test]
    fn reasons_name_the_cause() {
        let mut inputs = DecisionInputs {
            kernel: EnforcerState::Halted,
            deadline: Deadline::Open,
            evaluation: Evaluation::Completed {
                permits: vec![permit("p", false)],
                forbids: vec![],
                errors: vec![],
            },
            limits: LimitState::Within,
            approval: Approval::None,
        };
        assert_eq!(decide(&inputs).reasons, vec![REASON_HALTED.to_owned()]);
        inputs.kernel = EnforcerState::Serving;
        assert_eq!(decide(&inputs).decision, Decision::Allow);
        assert_eq!(decide(&inputs).policies, vec!["p".to_owned()]);
        inputs.evaluation = Evaluation::Completed {
            permits: vec![],
            forbids: vec![],
            errors: vec![],
        };
        assert_eq!(
            decide(&inputs).reasons,
            vec![REASON_DEFAULT_DENY.to_owned()]
        );
    }
}
