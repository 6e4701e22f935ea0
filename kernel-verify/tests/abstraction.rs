//! The abstraction the SMT proof works on is sound: the decision of any
//! input equals the decision at its abstraction.
#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

use kernel_core::{
    Approval, Deadline, DecisionInputs, EnforcerState, Evaluation, LimitState, MatchedForbid,
    MatchedPermit, decide,
};
use kernel_verify::DecisionPoint;
use proptest::prelude::*;

fn arb_inputs() -> impl Strategy<Value = DecisionInputs> {
    let permit = (
        "[a-z]{1,4}",
        any::<bool>(),
        proptest::option::of("[a-z ]{0,6}"),
    )
        .prop_map(|(id, ask, reason)| MatchedPermit { id, ask, reason });
    let forbid = ("[a-z]{1,4}", proptest::option::of("[a-z ]{0,6}"))
        .prop_map(|(id, reason)| MatchedForbid { id, reason });
    let evaluation = prop_oneof![
        "[a-z]{0,8}".prop_map(|reason| Evaluation::Failed { reason }),
        (
            proptest::collection::vec(permit, 0..4),
            proptest::collection::vec(forbid, 0..3),
            proptest::collection::vec(("[a-z]{1,4}", "[a-z]{0,4}"), 0..3),
        )
            .prop_map(|(permits, forbids, errors)| Evaluation::Completed {
                permits,
                forbids,
                errors,
            }),
    ];
    (
        any::<bool>(),
        any::<bool>(),
        evaluation,
        proptest::option::of(("[a-z]{1,4}", "[0-9]{1,2}/minute")),
        proptest::option::of("[a-z]{1,6}"),
    )
        .prop_map(|(halted, passed, evaluation, limit, by)| DecisionInputs {
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
                Some((policy, limit)) => LimitState::Exceeded { policy, limit },
                None => LimitState::Within,
            },
            approval: match by {
                Some(by) => Approval::Granted { by },
                None => Approval::None,
            },
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn the_decision_depends_only_on_the_abstraction(inputs in arb_inputs()) {
        let point = DecisionPoint::of(&inputs);
        prop_assert_eq!(decide(&inputs).decision, decide(&point.inputs()).decision);
        prop_assert_eq!(DecisionPoint::of(&point.inputs()), point);
    }
}

#[test]
fn the_points_are_distinct_and_cover_the_domain() {
    let all: std::collections::HashSet<DecisionPoint> = DecisionPoint::all().collect();
    assert_eq!(all.len(), 512);
}
