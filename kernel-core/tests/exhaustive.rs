//! Fail-closed, exhaustively: every combination of the abstracted inputs
//! of the decision combinator and of receipt verification, checked against
//! the characterisation of when an action may proceed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{
    Action, Approval, CanonicalAction, Deadline, Decision, DecisionInputs, Digest, EncodedRequest,
    EnforcerState, Evaluation, Expectation, LimitState, MatchedForbid, MatchedPermit, ReceiptBody,
    Request, SessionId, SigningKey, Verified, decide, sign_receipt, verify_receipt,
};

fn permits(kind: u8) -> Vec<MatchedPermit> {
    let plain = MatchedPermit {
        id: "plain".into(),
        ask: false,
        reason: None,
    };
    let ask = MatchedPermit {
        id: "ask".into(),
        ask: true,
        reason: None,
    };
    match kind {
        0 => vec![],
        1 => vec![plain],
        2 => vec![ask],
        _ => vec![plain, ask],
    }
}

/// `Allow` exactly when: serving, deadline open, evaluation completed with
/// no error, some permit matched, no forbid matched, no limit exceeded, and
/// either no matched permit asks or an operator's grant covers it. `Ask`
/// exactly when all that holds except that a matched permit asks and no
/// grant covers it. `Deny` otherwise.
#[test]
fn the_combinator_allows_exactly_in_the_intended_cases() {
    let mut cases = 0;
    let mut allows = 0;
    for halted in [false, true] {
        for passed in [false, true] {
            for limit in [false, true] {
                for granted in [false, true] {
                    let mut evaluations = vec![Evaluation::Failed {
                        reason: "engine".into(),
                    }];
                    for p in 0..4u8 {
                        for forbid in [false, true] {
                            for error in [false, true] {
                                evaluations.push(Evaluation::Completed {
                                    permits: permits(p),
                                    forbids: if forbid {
                                        vec![MatchedForbid {
                                            id: "f".into(),
                                            reason: None,
                                        }]
                                    } else {
                                        vec![]
                                    },
                                    errors: if error {
                                        vec![("e".into(), "overflow".into())]
                                    } else {
                                        vec![]
                                    },
                                });
                            }
                        }
                    }
                    for evaluation in evaluations {
                        let clean = match &evaluation {
                            Evaluation::Failed { .. } => None,
                            Evaluation::Completed {
                                permits,
                                forbids,
                                errors,
                            } => (!permits.is_empty() && forbids.is_empty() && errors.is_empty())
                                .then(|| permits.iter().any(|p| p.ask)),
                        };
                        let inputs = DecisionInputs {
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
                            limits: if limit {
                                LimitState::Exceeded {
                                    policy: "plain".into(),
                                    limit: "1/minute".into(),
                                }
                            } else {
                                LimitState::Within
                            },
                            approval: if granted {
                                Approval::Granted { by: "op".into() }
                            } else {
                                Approval::None
                            },
                        };
                        let ok = !halted && !passed && !limit;
                        let expected = match (ok, clean) {
                            (true, Some(false)) => Decision::Allow,
                            (true, Some(true)) if granted => Decision::Allow,
                            (true, Some(true)) => Decision::Ask,
                            _ => Decision::Deny,
                        };
                        let verdict = decide(&inputs);
                        assert_eq!(verdict.decision, expected, "{inputs:?}");
                        assert!(!verdict.reasons.is_empty(), "{inputs:?}");
                        cases += 1;
                        allows += usize::from(verdict.decision == Decision::Allow);
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 2 * 2 * 2 * 17);
    assert!(allows > 0, "non-vacuous: Allow is reachable");
}

/// A permit comes out of a receipt exactly when: the signature verifies
/// under the enforcer's key, the receipt names this request's session,
/// sequence number and digest, the pinned policy (if any) matches, its
/// times are consistent and not expired, and the decision is `Allow`.
#[test]
fn a_permit_comes_only_from_an_authentic_matching_fresh_allow() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let other = SigningKey::from_bytes(&[2; 32]);
    let request = EncodedRequest::new(Request {
        session: SessionId([3; 16]),
        seq: 7,
        nonce: [4; 16],
        action: CanonicalAction::new(Action::file_read("/ws/a"), None).unwrap(),
        deadline_ms: 10_000,
    });
    let policy = Digest([5; 32]);
    let now = 1_000_000u64;
    let mut cases = 0;
    let mut permits = 0;
    for right_key in [true, false] {
        for right_session in [true, false] {
            for right_seq in [true, false] {
                for right_digest in [true, false] {
                    for right_policy in [true, false] {
                        for times in 0..3u8 {
                            for decision in [Decision::Allow, Decision::Deny, Decision::Ask] {
                                let (issued, expires) = match times {
                                    0 => (now, now + 1_000),
                                    1 => (now - 2_000, now - 1_000),
                                    _ => (now + 60_000, now + 90_000),
                                };
                                let body = ReceiptBody {
                                    session: if right_session {
                                        SessionId([3; 16])
                                    } else {
                                        SessionId([9; 16])
                                    },
                                    seq: if right_seq { 7 } else { 8 },
                                    request_digest: if right_digest {
                                        request.digest()
                                    } else {
                                        Digest([0; 32])
                                    },
                                    decision,
                                    policies: vec![],
                                    reasons: vec![],
                                    policy_digest: if right_policy {
                                        policy
                                    } else {
                                        Digest([6; 32])
                                    },
                                    log_index: 1,
                                    issued_at_ms: issued,
                                    expires_at_ms: expires,
                                };
                                let receipt =
                                    sign_receipt(if right_key { &key } else { &other }, &body);
                                let verified = verify_receipt(
                                    &receipt,
                                    &Expectation {
                                        key: &key.verifying_key(),
                                        request: &request,
                                        policy_digest: Some(&policy),
                                        now_ms: now,
                                        shadow: false,
                                    },
                                );
                                let expected = right_key
                                    && right_session
                                    && right_seq
                                    && right_digest
                                    && right_policy
                                    && times == 0
                                    && decision == Decision::Allow;
                                let got = matches!(verified, Ok(Verified::Permit(_)));
                                assert_eq!(got, expected, "{body:?} key ok {right_key}");
                                cases += 1;
                                permits += usize::from(got);
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 2 * 2 * 2 * 2 * 3 * 3);
    assert_eq!(permits, 1, "exactly one combination yields a permit");
}
