//! Approvals of `@ask` actions by the operator, through the real control
//! socket: approve, reject, timeout, scoped grants and their limits, late
//! approvals, and who may approve.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Action, Denial, Kernel};
use kernel_core::{Decision, Event};
use kernel_testkit::{Fixture, enforcer, fixture, log, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

const POLICY: &str = r#"
@id("deploy-needs-approval")
@reason("deployments need an operator's approval")
@ask
permit (principal, action == Action::"tool_call", resource == Tool::"deploy");
"#;

fn deploy(env: &str) -> Action {
    Action::tool_call("deploy", &serde_json::json!({ "env": env }))
}

/// The ids of the requests waiting for an answer, as the operator's
/// `pending --json` (the output of `command`) lists them.
fn pending_in(out: &Output) -> Vec<u64> {
    assert!(out.status.success(), "{out:?}");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

fn pending(f: &Fixture) -> Vec<u64> {
    pending_in(&f.operator(&["pending", "--json"]))
}

/// Waits until `count` requests are pending and returns their ids.
fn pending_ids(f: &Fixture, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    wait_for(
        "requests to become pending",
        Duration::from_secs(10),
        || {
            ids = pending(f);
            ids.len() >= count
        },
    );
    ids
}

fn spawn(f: &Fixture, wait: Duration) -> Kernel {
    Kernel::spawn(f.config().await_approval(wait)).unwrap()
}

fn decisions(f: &Fixture) -> Vec<Decision> {
    log(&f.evidence)
        .iter()
        .filter_map(|e| e.decision())
        .collect()
}

fn approvals(f: &Fixture) -> Vec<(bool, String, String)> {
    log(&f.evidence)
        .into_iter()
        .filter_map(|e| match e {
            kernel_testkit::Entry::Event(Event::Approval {
                approved,
                by,
                scope,
                ..
            }) => Some((approved, by, scope)),
            _ => None,
        })
        .collect()
}

#[test]
fn approve_and_reject() {
    let f = fixture(POLICY);
    let kernel = spawn(&f, Duration::from_secs(20));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let ids = pending_ids(&f, 1);
        let listed = f.operator(&["pending"]);
        assert!(String::from_utf8_lossy(&listed.stdout).contains("tool_call deploy"));
        assert!(
            f.operator(&["approve", &ids[0].to_string()])
                .status
                .success()
        );
        let permit = waiting.join().unwrap().unwrap();
        assert_eq!(permit.receipt().body().decision, Decision::Allow);
        assert!(permit.receipt().body().reasons[0].starts_with("approved by operator uid"));

        let waiting = scope.spawn(|| kernel.authorize(deploy("production")));
        let ids = pending_ids(&f, 1);
        assert!(
            f.operator(&["reject", &ids[0].to_string()])
                .status
                .success()
        );
        match waiting.join().unwrap() {
            Err(Denial::Policy { reasons, .. }) => {
                assert!(
                    reasons[0].starts_with("rejected by operator uid"),
                    "{reasons:?}"
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    });
    drop(kernel);
    assert_eq!(
        decisions(&f),
        vec![
            Decision::Ask,
            Decision::Allow,
            Decision::Ask,
            Decision::Deny
        ]
    );
    let recorded = approvals(&f);
    assert_eq!(recorded.len(), 2);
    assert!(recorded[0].0 && !recorded[1].0);
    assert!(
        recorded
            .iter()
            .all(|(_, by, _)| by.starts_with("operator uid "))
    );
}

#[test]
fn no_answer_in_time_is_a_denial_and_a_late_approval_is_refused() {
    let f = fixture(POLICY);
    let kernel = spawn(&f, Duration::from_millis(800));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let ids = pending_ids(&f, 1);
        let result = waiting.join().unwrap();
        assert!(
            matches!(result, Err(Denial::NoApproval { .. })),
            "{result:?}"
        );
        // Once the request has expired on the enforcer's side too (it is
        // no longer pending), an approval comes too late.
        wait_for("the request to expire", Duration::from_secs(10), || {
            !pending(&f).contains(&ids[0])
        });
        let late = f.operator(&["approve", &ids[0].to_string()]);
        assert_eq!(late.status.code(), Some(1), "{late:?}");
    });
    drop(kernel);
    let recorded = decisions(&f);
    assert_eq!(recorded[0], Decision::Ask);
    assert_eq!(
        recorded[1],
        Decision::Deny,
        "the timeout is recorded as a denial"
    );
    assert!(!recorded.contains(&Decision::Allow));
    assert!(approvals(&f).is_empty());
}

#[test]
fn a_scoped_grant_covers_exactly_its_action_and_its_uses() {
    let f = fixture(POLICY);
    let kernel = spawn(&f, Duration::from_secs(20));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let ids = pending_ids(&f, 1);
        let out = f.operator(&[
            "approve",
            &ids[0].to_string(),
            "--for",
            "10m",
            "--uses",
            "3",
        ]);
        assert!(out.status.success(), "{out:?}");
        waiting.join().unwrap().unwrap();
    });
    // Two more uses of the same action are granted without asking.
    for _ in 0..2 {
        kernel.authorize(deploy("staging")).unwrap();
    }
    // A different action (other input) is not covered: it asks.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("production")));
        let ids = pending_ids(&f, 1);
        assert!(
            f.operator(&["reject", &ids[0].to_string()])
                .status
                .success()
        );
        assert!(waiting.join().unwrap().is_err());
        // The grant is used up: the same action asks again.
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let ids = pending_ids(&f, 1);
        assert!(
            f.operator(&["reject", &ids[0].to_string()])
                .status
                .success()
        );
        assert!(waiting.join().unwrap().is_err());
    });
    drop(kernel);
    let recorded = approvals(&f);
    assert_eq!(recorded[0].2, "for 600s, 3 uses");
    let allowed = decisions(&f)
        .iter()
        .filter(|d| **d == Decision::Allow)
        .count();
    assert_eq!(allowed, 3, "one approval + two grant uses");
}

/// Only the operator's uid may answer: another uid's approval of a
/// pending request is refused and leaves it pending (still listed, its
/// client still waiting, nothing allowed), and the operator's own answer
/// is then taken.
#[test]
fn nobody_but_the_operator_can_approve() {
    const OPERATOR: u32 = 4242;
    let f = fixture(POLICY);
    // Far longer than the test: the request stays pending until answered.
    let kernel = Kernel::spawn(
        f.config()
            .await_approval(Duration::from_secs(120))
            .operator_uid(OPERATOR),
    )
    .unwrap();
    // The enforcer's public key (the file at the control path), where
    // other uids can read it, for commands that name it with `--pubkey`.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pubkey = shared.path().join("enforcer.pub");
    std::fs::copy(f.control(), &pubkey).unwrap();
    std::fs::set_permissions(&pubkey, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_uid = |uid: u32, args: &[&str]| -> Output {
        Command::new(enforcer())
            .args(args)
            .arg("--control")
            .arg(f.control())
            .arg("--pubkey")
            .arg(&pubkey)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap()
    };
    let pending_for_operator = || pending_in(&as_uid(OPERATOR, &["pending", "--json"]));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let mut ids = Vec::new();
        wait_for(
            "the request to become pending",
            Duration::from_secs(10),
            || {
                ids = pending_for_operator();
                !ids.is_empty()
            },
        );
        assert_eq!(ids.len(), 1, "{ids:?}");
        let id = ids[0].to_string();
        // Our uid is not the operator's: refused by the peer check.
        let refused = f.operator(&["approve", &id]);
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("is not the operator"),
            "{refused:?}"
        );
        // Nor may another uid that can name the enforcer's key.
        let other = as_uid(65534, &["approve", &id]);
        assert_eq!(other.status.code(), Some(1), "{other:?}");
        assert!(
            String::from_utf8_lossy(&other.stderr).contains("is not the operator"),
            "{other:?}"
        );
        // Neither attempt answered it: it is still pending, its client
        // still waits, and nothing was allowed.
        assert_eq!(pending_for_operator(), ids);
        assert!(!waiting.is_finished(), "the request was answered");
        assert!(!decisions(&f).contains(&Decision::Allow));
        // The operator's approval of the same id is taken.
        let approved = as_uid(OPERATOR, &["approve", &id]);
        assert!(approved.status.success(), "{approved:?}");
        let permit = waiting.join().unwrap().unwrap();
        assert_eq!(permit.receipt().body().decision, Decision::Allow);
    });
    drop(kernel);
    let recorded = approvals(&f);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0].0, "{recorded:?}");
    assert!(
        recorded[0]
            .1
            .starts_with(&format!("operator uid {OPERATOR} ")),
        "{recorded:?}"
    );
}
