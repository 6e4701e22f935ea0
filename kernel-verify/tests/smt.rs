//! Fail-closed, in SMT: the Z3 encoding agrees with the real code at every
//! point, then Z3 proves the claims, shows they are not vacuous, and
//! catches every deliberately broken encoding.
//!
//! Run with `cargo test -p kernel-verify --features smt --test smt`
//! (needs Z3's library and headers, Debian's `libz3-dev`).
#![cfg(feature = "smt")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{Decision, decide};
use kernel_verify::smt::{Encoding, Mutation, Outcome};
use kernel_verify::{DECISIONS, DecisionPoint, ReceiptPoint};

#[test]
fn the_encoding_of_decide_agrees_with_decide_at_every_point() {
    let encoding = Encoding::new();
    let mut points = 0;
    for point in DecisionPoint::all() {
        let real = decide(&point.inputs()).decision;
        assert_eq!(encoding.decide_at(&point, None), Some(real), "{point:?}");
        points += 1;
    }
    assert_eq!(points, 512);
}

#[test]
fn the_encoding_of_verification_agrees_with_verify_receipt() {
    let encoding = Encoding::new();
    let mut cases = 0;
    let mut permits = 0;
    let points =
        ReceiptPoint::all_facts().chain(DECISIONS.into_iter().flat_map(ReceiptPoint::all_times));
    for point in points {
        let real = point.yields_permit();
        assert_eq!(encoding.permit_at(&point, None), Some(real), "{point:?}");
        cases += 1;
        permits += usize::from(real);
    }
    assert_eq!(cases, 128 * 5 + 5 * 9 * 9 * 9);
    assert!(permits > 1, "both answers occur");
}

#[test]
fn no_error_halt_or_passed_deadline_yields_allow() {
    let encoding = Encoding::new();
    assert_eq!(encoding.prove_decide_fail_closed(None), Outcome::Proved);
    assert_eq!(encoding.prove_decide_characterised(None), Outcome::Proved);
}

#[test]
fn no_permit_without_a_clean_decision_and_a_receipt_that_checks_out() {
    let encoding = Encoding::new();
    assert_eq!(encoding.prove_permit_fail_closed(None), Outcome::Proved);
}

#[test]
fn a_permit_of_shadow_mode_is_announced_marked_and_never_after_a_fault() {
    let encoding = Encoding::new();
    assert_eq!(
        encoding.prove_shadow_permit_announced(None),
        Outcome::Proved
    );
    assert_eq!(encoding.prove_shadow_permit_confined(None), Outcome::Proved);
}

#[test]
fn allow_and_permits_are_reachable() {
    let encoding = Encoding::new();
    let point = encoding.reachable_allow().expect("Allow is reachable");
    assert_eq!(decide(&point.inputs()).decision, Decision::Allow);
    let (decision, receipt) = encoding.reachable_permit().expect("a permit is reachable");
    assert_eq!(decide(&decision.inputs()).decision, Decision::Allow);
    assert!(
        receipt.yields_permit(),
        "the real verifier agrees: {receipt:?}"
    );
}

/// Each broken encoding disagrees with the real code somewhere, so the
/// agreement tests above would catch it.
#[test]
fn the_agreement_tests_catch_every_broken_encoding() {
    let encoding = Encoding::new();
    for mutation in Mutation::ALL {
        let m = Some(mutation);
        let decision_differs = DecisionPoint::all()
            .any(|p| encoding.decide_at(&p, m) != Some(decide(&p.inputs()).decision));
        let permit_differs = || {
            ReceiptPoint::all_facts()
                .chain(DECISIONS.into_iter().flat_map(ReceiptPoint::all_times))
                .any(|r| encoding.permit_at(&r, m) != Some(r.yields_permit()))
        };
        assert!(
            decision_differs || permit_differs(),
            "{mutation:?} went unnoticed"
        );
    }
}

/// Each broken encoding that lets more through is caught by the proofs
/// themselves, with a counterexample at which it disagrees with the real
/// code. (A wrapping skew addition only refuses more, near the top of the
/// clock's range: the proofs rightly hold, the agreement test catches it.)
#[test]
fn the_proofs_catch_every_broken_encoding_that_lets_more_through() {
    let encoding = Encoding::new();
    for mutation in Mutation::ALL {
        let m = Some(mutation);
        let outcomes = [
            encoding.prove_decide_fail_closed(m),
            encoding.prove_decide_characterised(m),
            encoding.prove_permit_fail_closed(m),
            encoding.prove_shadow_permit_announced(m),
            encoding.prove_shadow_permit_confined(m),
        ];
        let counterexample = outcomes.iter().find_map(|o| match o {
            Outcome::Counterexample(d, r) => Some((*d, *r)),
            _ => None,
        });
        if mutation == Mutation::WrappingSkew {
            assert_eq!(counterexample, None, "refusing more is still fail-closed");
            continue;
        }
        let (point, receipt) =
            counterexample.unwrap_or_else(|| panic!("{mutation:?} was not caught: {outcomes:?}"));
        let decision_differs =
            encoding.decide_at(&point, m) != Some(decide(&point.inputs()).decision);
        let permit_differs = encoding.permit_at(&receipt, m) != Some(receipt.yields_permit());
        assert!(
            decision_differs || permit_differs,
            "{mutation:?}: the counterexample {point:?} {receipt:?} shows no defect"
        );
    }
}

/// The fail-closed claim in particular (errors, halt, deadline) catches
/// the mutations that break it, with a counterexample that has a fault.
#[test]
fn the_fail_closed_claim_itself_can_fail() {
    let encoding = Encoding::new();
    for mutation in [
        Mutation::IgnoreHalt,
        Mutation::IgnoreDeadline,
        Mutation::AllowFailedEvaluation,
        Mutation::IgnorePolicyErrors,
    ] {
        match encoding.prove_decide_fail_closed(Some(mutation)) {
            Outcome::Counterexample(point, _) => assert!(
                point.halted
                    || point.deadline_passed
                    || point.evaluation_failed
                    || point.policy_error,
                "{mutation:?}: {point:?}"
            ),
            other => panic!("{mutation:?} not caught: {other:?}"),
        }
    }
}
