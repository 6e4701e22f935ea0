//! The decision combinator and receipt verification, encoded for Z3.
//!
//! [`Encoding`] holds one Z3 constant per fact of a
//! [`DecisionPoint`] and of a
//! [`ReceiptPoint`] (times as 64-bit vectors, so
//! comparisons and the saturating addition of the clock-skew tolerance are
//! exactly `u64`'s), and builds the terms [`Encoding::decide`] and
//! [`Encoding::permit`] that mirror the real code. The tests in
//! `tests/smt.rs` tie those terms to the real functions at every point of
//! the finite domain ([`Encoding::decide_at`], [`Encoding::permit_at`])
//! before proving anything with them, and check that each deliberately
//! broken encoding ([`Mutation`]) is caught with a counterexample.

use crate::abstraction::{DecisionPoint, ReceiptPoint};
use kernel_core::{Decision, MAX_CLOCK_SKEW_MS};
use z3::ast::{Ast, BV, Bool, Dynamic};
use z3::{Model, SatResult, Solver, Sort, Symbol};

/// Width of the time bit-vectors: the `u64` milliseconds of the code.
const TIME_BITS: u32 = 64;

/// A deliberate defect in the encoding, to show that the proofs can fail:
/// each must yield a counterexample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The combinator forgets to deny when the kernel is halted.
    IgnoreHalt,
    /// It forgets the deadline.
    IgnoreDeadline,
    /// It treats a failed evaluation like an empty one that permits.
    AllowFailedEvaluation,
    /// It skips policies that failed to evaluate (what Cedar does).
    IgnorePolicyErrors,
    /// It lets a permit override a forbid.
    IgnoreForbids,
    /// It allows when no permit matched.
    DefaultAllow,
    /// It forgets rate limits.
    IgnoreLimits,
    /// It allows an `@ask` permit without an operator's grant.
    AskWithoutGrant,
    /// Verification forgets the signature.
    IgnoreSignature,
    /// Verification forgets the session.
    IgnoreSession,
    /// Verification forgets the expiry.
    IgnoreExpiry,
    /// Verification adds the skew tolerance without saturating (wraps).
    WrappingSkew,
    /// Verification accepts a decision of shadow mode from a session that
    /// did not announce shadow mode.
    AcceptUnannouncedShadow,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Self; 13] = [
        Self::IgnoreHalt,
        Self::IgnoreDeadline,
        Self::AllowFailedEvaluation,
        Self::IgnorePolicyErrors,
        Self::IgnoreForbids,
        Self::DefaultAllow,
        Self::IgnoreLimits,
        Self::AskWithoutGrant,
        Self::IgnoreSignature,
        Self::IgnoreSession,
        Self::IgnoreExpiry,
        Self::WrappingSkew,
        Self::AcceptUnannouncedShadow,
    ];
}

/// What a solver query established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The negation of the claim is unsatisfiable: the claim holds for
    /// every assignment.
    Proved,
    /// An assignment violates the claim.
    Counterexample(DecisionPoint, ReceiptPoint),
    /// Z3 gave up (it should not, on this small encoding).
    Unknown(String),
}

/// The Z3 constants and the decision sort.
#[derive(Debug)]
pub struct Encoding {
    allow: Dynamic,
    deny: Dynamic,
    ask: Dynamic,
    shadow_deny: Dynamic,
    shadow_ask: Dynamic,
    halted: Bool,
    deadline_passed: Bool,
    evaluation_failed: Bool,
    plain_permit: Bool,
    ask_permit: Bool,
    forbid: Bool,
    policy_error: Bool,
    limit_exceeded: Bool,
    granted: Bool,
    authentic: Bool,
    right_session: Bool,
    right_seq: Bool,
    right_digest: Bool,
    pinned: Bool,
    right_policy: Bool,
    shadow: Bool,
    receipt_decision: Dynamic,
    issued: BV,
    expires: BV,
    now: BV,
}

impl Default for Encoding {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoding {
    /// Declares the constants in this thread's Z3 context.
    pub fn new() -> Self {
        let (sort, constants, _testers) = Sort::enumeration(
            Symbol::from("Decision"),
            &[
                Symbol::from("allow"),
                Symbol::from("deny"),
                Symbol::from("ask"),
                Symbol::from("shadow_deny"),
                Symbol::from("shadow_ask"),
            ],
        );
        let constant = |i: usize| {
            constants
                .get(i)
                .map(|c| c.apply(&[]))
                .unwrap_or_else(|| Dynamic::new_const("missing", &sort))
        };
        Self {
            allow: constant(0),
            deny: constant(1),
            ask: constant(2),
            shadow_deny: constant(3),
            shadow_ask: constant(4),
            halted: Bool::new_const("halted"),
            deadline_passed: Bool::new_const("deadline_passed"),
            evaluation_failed: Bool::new_const("evaluation_failed"),
            plain_permit: Bool::new_const("plain_permit"),
            ask_permit: Bool::new_const("ask_permit"),
            forbid: Bool::new_const("forbid"),
            policy_error: Bool::new_const("policy_error"),
            limit_exceeded: Bool::new_const("limit_exceeded"),
            granted: Bool::new_const("granted"),
            authentic: Bool::new_const("authentic"),
            right_session: Bool::new_const("right_session"),
            right_seq: Bool::new_const("right_seq"),
            right_digest: Bool::new_const("right_digest"),
            pinned: Bool::new_const("pinned"),
            right_policy: Bool::new_const("right_policy"),
            shadow: Bool::new_const("shadow"),
            receipt_decision: Dynamic::new_const("receipt_decision", &sort),
            issued: BV::new_const("issued_at_ms", TIME_BITS),
            expires: BV::new_const("expires_at_ms", TIME_BITS),
            now: BV::new_const("now_ms", TIME_BITS),
        }
    }

    /// The term for `decide(inputs).decision`, guard by guard in the order
    /// of the code; `mutation` breaks one guard.
    pub fn decide(&self, mutation: Option<Mutation>) -> Dynamic {
        let on = |m: Mutation| mutation == Some(m);
        let off = Bool::from_bool(false);
        let guard = |m: Mutation, fact: &Bool| if on(m) { off.clone() } else { fact.clone() };
        let any_permit = Bool::or(&[&self.plain_permit, &self.ask_permit]);
        // The tail, once evaluation completed with no error, no forbid,
        // some permit and no exceeded limit.
        let asks_or_grant = Bool::and(&[&self.ask_permit, &self.granted]).ite(
            &self.allow,
            &if on(Mutation::AskWithoutGrant) {
                self.allow.clone()
            } else {
                self.ask_permit.ite(&self.ask, &self.allow)
            },
        );
        let after_limit =
            guard(Mutation::IgnoreLimits, &self.limit_exceeded).ite(&self.deny, &asks_or_grant);
        let no_permit = if on(Mutation::DefaultAllow) {
            off.clone()
        } else {
            any_permit.not()
        };
        let after_permits = no_permit.ite(&self.deny, &after_limit);
        let after_forbids =
            guard(Mutation::IgnoreForbids, &self.forbid).ite(&self.deny, &after_permits);
        let after_errors =
            guard(Mutation::IgnorePolicyErrors, &self.policy_error).ite(&self.deny, &after_forbids);
        let evaluated = if on(Mutation::AllowFailedEvaluation) {
            // A failed evaluation taken as "everything permits".
            self.evaluation_failed.ite(&self.allow, &after_errors)
        } else {
            self.evaluation_failed.ite(&self.deny, &after_errors)
        };
        let after_deadline =
            guard(Mutation::IgnoreDeadline, &self.deadline_passed).ite(&self.deny, &evaluated);
        guard(Mutation::IgnoreHalt, &self.halted).ite(&self.deny, &after_deadline)
    }

    /// Whether the receipt carries a decision of shadow mode.
    fn shadow_decision(&self) -> Bool {
        Bool::or(&[
            self.receipt_decision.eq(&self.shadow_deny),
            self.receipt_decision.eq(&self.shadow_ask),
        ])
    }

    /// The term for "`verify_receipt` yields a permit": every check of the
    /// code, in its order, and an `Allow` decision, or a decision of shadow
    /// mode in a session that announced it.
    pub fn permit(&self, mutation: Option<Mutation>) -> Bool {
        let on = |m: Mutation| mutation == Some(m);
        let yes = Bool::from_bool(true);
        let skew = BV::from_u64(MAX_CLOCK_SKEW_MS, TIME_BITS);
        let max = BV::from_u64(u64::MAX, TIME_BITS);
        let limit = if on(Mutation::WrappingSkew) {
            self.now.bvadd(&skew)
        } else {
            // now.saturating_add(skew)
            self.now
                .bvugt(max.bvsub(&skew))
                .ite(&max, &self.now.bvadd(&skew))
        };
        let times_consistent =
            Bool::and(&[self.expires.bvuge(&self.issued), self.issued.bvule(&limit)]);
        let fresh = if on(Mutation::IgnoreExpiry) {
            yes.clone()
        } else {
            self.now.bvule(&self.expires)
        };
        Bool::and(&[
            if on(Mutation::IgnoreSignature) {
                yes.clone()
            } else {
                self.authentic.clone()
            },
            if on(Mutation::IgnoreSession) {
                yes.clone()
            } else {
                self.right_session.clone()
            },
            self.right_seq.clone(),
            self.right_digest.clone(),
            self.pinned.implies(&self.right_policy),
            times_consistent,
            fresh,
            Bool::or(&[
                self.receipt_decision.eq(&self.allow),
                Bool::and(&[
                    if on(Mutation::AcceptUnannouncedShadow) {
                        yes.clone()
                    } else {
                        self.shadow.clone()
                    },
                    self.shadow_decision(),
                ]),
            ]),
        ])
    }

    /// What the enforcer is assumed to sign (checked by reading the code:
    /// `stage_decision` signs either `decide`'s verdict or a denial, and
    /// in shadow mode `Session::shadowed` turns a `Deny` or `Ask` into its
    /// decision of shadow mode unless halted, past the deadline or not
    /// evaluated): an authentic receipt for this request carries the
    /// combinator's decision on the inputs the enforcer saw, or `Deny`,
    /// or, in a session of shadow mode, the decision of shadow mode
    /// standing in for the combinator's `Deny` or `Ask`.
    pub fn enforcer_signs(&self, mutation: Option<Mutation>) -> Bool {
        let for_this_request = Bool::and(&[
            &self.authentic,
            &self.right_session,
            &self.right_seq,
            &self.right_digest,
        ]);
        let decided = self.decide(mutation);
        let shadowed = decided.eq(&self.deny).ite(
            &self.shadow_deny,
            &decided.eq(&self.ask).ite(&self.shadow_ask, &decided),
        );
        let may_shadow = Bool::and(&[
            self.shadow.clone(),
            self.halted.not(),
            self.deadline_passed.not(),
            self.evaluation_failed.not(),
        ]);
        for_this_request.implies(Bool::or(&[
            self.receipt_decision.eq(&decided),
            self.receipt_decision.eq(&self.deny),
            Bool::and(&[may_shadow, self.receipt_decision.eq(&shadowed)]),
        ]))
    }

    /// Any error, a halt or a passed deadline: the claim is that none of
    /// these can end in `Allow`.
    pub fn fault(&self) -> Bool {
        Bool::or(&[
            &self.halted,
            &self.deadline_passed,
            &self.evaluation_failed,
            &self.policy_error,
        ])
    }

    /// The documented characterisation of `Allow` (see `decide`'s docs).
    pub fn specified_allow(&self) -> Bool {
        Bool::and(&[
            self.halted.not(),
            self.deadline_passed.not(),
            self.evaluation_failed.not(),
            self.policy_error.not(),
            self.forbid.not(),
            Bool::or(&[&self.plain_permit, &self.ask_permit]),
            self.limit_exceeded.not(),
            self.ask_permit.implies(&self.granted),
        ])
    }

    /// A failed check of the receipt: wrong key, session, sequence number,
    /// request or pinned policy, inconsistent times, or expired.
    pub fn failed_verification(&self) -> Bool {
        Bool::or(&[
            self.authentic.not(),
            self.right_session.not(),
            self.right_seq.not(),
            self.right_digest.not(),
            Bool::and(&[self.pinned.clone(), self.right_policy.not()]),
            self.issued.bvugt(&self.expires),
            self.now.bvugt(&self.expires),
        ])
    }

    /// Claim 1: no assignment with an error, a halt or a passed deadline
    /// makes the combinator `Allow`.
    pub fn prove_decide_fail_closed(&self, mutation: Option<Mutation>) -> Outcome {
        self.refute(&[self.fault(), self.decide(mutation).eq(&self.allow)])
    }

    /// Claim 2: the combinator returns `Allow` exactly in the documented
    /// cases (both directions).
    pub fn prove_decide_characterised(&self, mutation: Option<Mutation>) -> Outcome {
        let allows = self.decide(mutation).eq(&self.allow);
        self.refute(&[allows.iff(self.specified_allow()).not()])
    }

    /// Claim 3, end to end: if the client obtains a permit whose receipt
    /// says `Allow` (in any session) or any permit from a session that did
    /// not announce shadow mode, the enforcer saw no error, no halt, no
    /// passed deadline, no forbid, no exceeded limit, a matching permit
    /// (with a grant if it asks), and every check of the receipt passed.
    pub fn prove_permit_fail_closed(&self, mutation: Option<Mutation>) -> Outcome {
        self.refute(&[
            self.enforcer_signs(mutation),
            self.permit(mutation),
            Bool::or(&[self.shadow.not(), self.receipt_decision.eq(&self.allow)]),
            Bool::or(&[self.specified_allow().not(), self.failed_verification()]),
        ])
    }

    /// Claim 4, shadow mode, the client alone (whatever the enforcer
    /// signs): a permit whose receipt carries a decision of shadow mode
    /// exists only in a session that announced shadow mode.
    pub fn prove_shadow_permit_announced(&self, mutation: Option<Mutation>) -> Outcome {
        self.refute(&[
            self.permit(mutation),
            self.shadow_decision(),
            self.shadow.not(),
        ])
    }

    /// Claim 5, shadow mode: a permit the policy did not grant exists only
    /// in a session that announced shadow mode, says so in its receipt,
    /// passed every check, and never follows a halt, a passed deadline or
    /// a failed evaluation.
    pub fn prove_shadow_permit_confined(&self, mutation: Option<Mutation>) -> Outcome {
        self.refute(&[
            self.enforcer_signs(mutation),
            self.permit(mutation),
            self.specified_allow().not(),
            Bool::or(&[
                self.shadow.not(),
                self.shadow_decision().not(),
                self.failed_verification(),
                self.halted.clone(),
                self.deadline_passed.clone(),
                self.evaluation_failed.clone(),
            ]),
        ])
    }

    /// Non-vacuity: an assignment where the client obtains a permit, if
    /// there is one (there must be: otherwise claim 3 would hold trivially).
    pub fn reachable_permit(&self) -> Option<(DecisionPoint, ReceiptPoint)> {
        let solver = Solver::new();
        solver.assert(self.enforcer_signs(None));
        solver.assert(self.permit(None));
        match solver.check() {
            SatResult::Sat => solver.get_model().map(|m| self.points(&m)),
            SatResult::Unsat | SatResult::Unknown => None,
        }
    }

    /// Non-vacuity for the combinator alone: a point where it allows.
    pub fn reachable_allow(&self) -> Option<DecisionPoint> {
        let solver = Solver::new();
        solver.assert(self.decide(None).eq(&self.allow));
        match solver.check() {
            SatResult::Sat => solver.get_model().map(|m| self.points(&m).0),
            SatResult::Unsat | SatResult::Unknown => None,
        }
    }

    /// The decision of the encoding at `point`, found by substituting its
    /// facts and simplifying to a constant.
    pub fn decide_at(&self, point: &DecisionPoint, mutation: Option<Mutation>) -> Option<Decision> {
        let values = self.decision_substitutions(point);
        let pairs: Vec<(&Bool, &Bool)> = values.iter().map(|(v, c)| (*v, c)).collect();
        let term = self.decide(mutation).substitute(&pairs).simplify();
        [
            (&self.allow, Decision::Allow),
            (&self.deny, Decision::Deny),
            (&self.ask, Decision::Ask),
        ]
        .into_iter()
        .find(|(constant, _)| term.eq(*constant).simplify().as_bool() == Some(true))
        .map(|(_, decision)| decision)
    }

    /// Whether the encoding yields a permit at `point`, by substitution.
    pub fn permit_at(&self, point: &ReceiptPoint, mutation: Option<Mutation>) -> Option<bool> {
        let decision = match point.decision {
            Decision::Allow => &self.allow,
            Decision::Deny => &self.deny,
            Decision::Ask => &self.ask,
            Decision::ShadowDeny => &self.shadow_deny,
            Decision::ShadowAsk => &self.shadow_ask,
        };
        let flag = Bool::from_bool;
        let bools = [
            (&self.authentic, flag(point.authentic)),
            (&self.right_session, flag(point.right_session)),
            (&self.right_seq, flag(point.right_seq)),
            (&self.right_digest, flag(point.right_digest)),
            (&self.pinned, flag(point.pinned)),
            (&self.right_policy, flag(point.right_policy)),
            (&self.shadow, flag(point.shadow)),
        ];
        let bool_pairs: Vec<(&Bool, &Bool)> = bools.iter().map(|(v, c)| (*v, c)).collect();
        let times = [
            (&self.issued, BV::from_u64(point.issued_at_ms, TIME_BITS)),
            (&self.expires, BV::from_u64(point.expires_at_ms, TIME_BITS)),
            (&self.now, BV::from_u64(point.now_ms, TIME_BITS)),
        ];
        let time_pairs: Vec<(&BV, &BV)> = times.iter().map(|(v, c)| (*v, c)).collect();
        self.permit(mutation)
            .substitute(&bool_pairs)
            .substitute(&time_pairs)
            .substitute(&[(&self.receipt_decision, decision)])
            .simplify()
            .as_bool()
    }

    fn decision_facts(&self) -> [&Bool; 9] {
        [
            &self.halted,
            &self.deadline_passed,
            &self.evaluation_failed,
            &self.plain_permit,
            &self.ask_permit,
            &self.forbid,
            &self.policy_error,
            &self.limit_exceeded,
            &self.granted,
        ]
    }

    fn decision_substitutions(&self, point: &DecisionPoint) -> Vec<(&Bool, Bool)> {
        let values = [
            point.halted,
            point.deadline_passed,
            point.evaluation_failed,
            point.plain_permit,
            point.ask_permit,
            point.forbid,
            point.policy_error,
            point.limit_exceeded,
            point.granted,
        ];
        self.decision_facts()
            .into_iter()
            .zip(values.map(Bool::from_bool))
            .collect()
    }

    /// Asserts `claims` and expects no model.
    fn refute(&self, claims: &[Bool]) -> Outcome {
        let solver = Solver::new();
        for claim in claims {
            solver.assert(claim);
        }
        match solver.check() {
            SatResult::Unsat => Outcome::Proved,
            SatResult::Sat => match solver.get_model() {
                Some(model) => {
                    let (decision, receipt) = self.points(&model);
                    Outcome::Counterexample(decision, receipt)
                }
                None => Outcome::Unknown("satisfiable, but Z3 gave no model".into()),
            },
            SatResult::Unknown => Outcome::Unknown(
                solver
                    .get_reason_unknown()
                    .unwrap_or_else(|| "no reason given".into()),
            ),
        }
    }

    /// Reads the facts out of a model (unconstrained facts are `false`).
    fn points(&self, model: &Model) -> (DecisionPoint, ReceiptPoint) {
        let b = |v: &Bool| {
            model
                .eval(v, true)
                .and_then(|x| x.as_bool())
                .unwrap_or(false)
        };
        let t = |v: &BV| model.eval(v, true).and_then(|x| x.as_u64()).unwrap_or(0);
        let decision = model
            .eval(&self.receipt_decision, true)
            .map(|d| {
                let is = |c: &Dynamic| d.eq(c).simplify().as_bool() == Some(true);
                if is(&self.allow) {
                    Decision::Allow
                } else if is(&self.ask) {
                    Decision::Ask
                } else if is(&self.shadow_deny) {
                    Decision::ShadowDeny
                } else if is(&self.shadow_ask) {
                    Decision::ShadowAsk
                } else {
                    Decision::Deny
                }
            })
            .unwrap_or(Decision::Deny);
        (
            DecisionPoint {
                halted: b(&self.halted),
                deadline_passed: b(&self.deadline_passed),
                evaluation_failed: b(&self.evaluation_failed),
                plain_permit: b(&self.plain_permit),
                ask_permit: b(&self.ask_permit),
                forbid: b(&self.forbid),
                policy_error: b(&self.policy_error),
                limit_exceeded: b(&self.limit_exceeded),
                granted: b(&self.granted),
            },
            ReceiptPoint {
                authentic: b(&self.authentic),
                right_session: b(&self.right_session),
                right_seq: b(&self.right_seq),
                right_digest: b(&self.right_digest),
                pinned: b(&self.pinned),
                right_policy: b(&self.right_policy),
                shadow: b(&self.shadow),
                decision,
                issued_at_ms: t(&self.issued),
                expires_at_ms: t(&self.expires),
                now_ms: t(&self.now),
            },
        )
    }
}
