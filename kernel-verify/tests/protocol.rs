//! The protocol, model-checked: breadth-first search over every state of
//! the model in `kernel_verify::protocol` within its default bounds.
//!
//! Run with `cargo test -p kernel-verify --test protocol`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use kernel_verify::protocol::{Bug, CHECKED_DEPTH, ProtocolModel};
use stateright::{Checker, HasDiscoveries, Model};

const SAFETY: [&str; 5] = [
    "no permit without a durable allow record",
    "no allow leaves after a halt",
    "a permit outlives a halt by at most its validity",
    "a replayed receipt never yields a second permit",
    "a replayed request is never allowed twice",
];

#[test]
fn the_protocol_keeps_its_properties_in_every_reachable_state() {
    let checker = ProtocolModel::default()
        .checker()
        .target_max_depth(CHECKED_DEPTH)
        .spawn_bfs()
        .join();
    eprintln!(
        "{} states ({} unique), depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    // Every `always` holds and every `sometimes` (a permit, a permit after
    // a restart, a permit held at a halt) was reached: not vacuous.
    checker.assert_properties();
    assert!(checker.unique_state_count() > 10_000);
}

/// Whether the model with `bug` injected violates `property`, found by the
/// same search; prints the counterexample.
fn violates(bug: Bug, property: &'static str) -> bool {
    assert!(SAFETY.contains(&property));
    let model = ProtocolModel {
        bug: Some(bug),
        ..ProtocolModel::default()
    };
    let checker = model
        .checker()
        .target_max_depth(CHECKED_DEPTH)
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    match checker.discovery(property) {
        Some(path) => {
            eprintln!("{bug:?} violates `{property}`:");
            for action in path.into_actions() {
                eprintln!("  {action:?}");
            }
            true
        }
        None => false,
    }
}

#[test]
fn releasing_a_receipt_before_its_record_is_durable_is_caught() {
    assert!(violates(
        Bug::ReleaseBeforeDurable,
        "no permit without a durable allow record"
    ));
}

#[test]
fn a_halt_that_does_not_wait_for_the_lock_is_caught() {
    assert!(violates(
        Bug::HaltWithoutLock,
        "no allow leaves after a halt"
    ));
}

#[test]
fn a_client_that_accepts_replayed_receipts_is_caught() {
    assert!(violates(
        Bug::ClientAcceptsReplays,
        "a replayed receipt never yields a second permit"
    ));
}

#[test]
fn a_restarted_enforcer_reusing_its_session_id_is_caught() {
    assert!(violates(
        Bug::ReusedSessionId,
        "a replayed request is never allowed twice"
    ));
}
