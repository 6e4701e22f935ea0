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

mod common;

use common::{ENFORCER, Fixture, fixture};
use kernel_client::{Action, Denial, Kernel};
use kernel_core::{Decision, Event, Record, decode_record};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
@id("deploy-needs-approval")
@reason("deployments need an operator's approval")
@ask
permit (principal, action == Action::"tool_call", resource == Tool::"deploy");
"#;

fn control(f: &Fixture) -> PathBuf {
    let mut path = f.evidence.as_os_str().to_owned();
    path.push(".control");
    PathBuf::from(path)
}

fn operator(f: &Fixture, args: &[&str]) -> Output {
    Command::new(ENFORCER)
        .args(args)
        .arg("--control")
        .arg(control(f))
        .output()
        .unwrap()
}

fn deploy(env: &str) -> Action {
    Action::tool_call("deploy", &serde_json::json!({ "env": env }))
}

/// Waits until `count` requests are pending and returns their ids.
fn pending_ids(f: &Fixture, count: usize) -> Vec<u64> {
    let started = Instant::now();
    loop {
        let out = operator(f, &["pending", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<u64> = value["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        if ids.len() >= count {
            return ids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing became pending"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(f: &Fixture, wait: Duration) -> Kernel {
    Kernel::spawn(f.config().await_approval(wait)).unwrap()
}

fn decisions(f: &Fixture) -> Vec<Decision> {
    let bytes = std::fs::read(&f.evidence).unwrap();
    // Read while the enforcer may be writing: whole records only.
    kernel_core::split_records_prefix(&bytes)
        .0
        .iter()
        .filter_map(|r| match decode_record(r).unwrap() {
            Record::Decision { receipt, .. } => Some(
                kernel_core::decode_receipt_body_unverified(&receipt.body)
                    .unwrap()
                    .decision,
            ),
            _ => None,
        })
        .collect()
}

fn approvals(f: &Fixture) -> Vec<(bool, String, String)> {
    let bytes = std::fs::read(&f.evidence).unwrap();
    // Read while the enforcer may be writing: whole records only.
    kernel_core::split_records_prefix(&bytes)
        .0
        .iter()
        .filter_map(|r| match decode_record(r).unwrap() {
            Record::Event(e) => match e.decode_unverified().unwrap() {
                Event::Approval {
                    approved,
                    by,
                    scope,
                    ..
                } => Some((approved, by, scope)),
                _ => None,
            },
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
        let listed = operator(&f, &["pending"]);
        assert!(String::from_utf8_lossy(&listed.stdout).contains("tool_call deploy"));
        assert!(
            operator(&f, &["approve", &ids[0].to_string()])
                .status
                .success()
        );
        let permit = waiting.join().unwrap().unwrap();
        assert_eq!(permit.receipt().body().decision, Decision::Allow);
        assert!(permit.receipt().body().reasons[0].starts_with("approved by operator uid"));

        let waiting = scope.spawn(|| kernel.authorize(deploy("production")));
        let ids = pending_ids(&f, 1);
        assert!(
            operator(&f, &["reject", &ids[0].to_string()])
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
        let started = Instant::now();
        while pending_ids(&f, 0).contains(&ids[0]) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the request never expired"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let late = operator(&f, &["approve", &ids[0].to_string()]);
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
        let out = operator(
            &f,
            &[
                "approve",
                &ids[0].to_string(),
                "--for",
                "10m",
                "--uses",
                "3",
            ],
        );
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
            operator(&f, &["reject", &ids[0].to_string()])
                .status
                .success()
        );
        assert!(waiting.join().unwrap().is_err());
        // The grant is used up: the same action asks again.
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        let ids = pending_ids(&f, 1);
        assert!(
            operator(&f, &["reject", &ids[0].to_string()])
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

#[test]
fn nobody_but_the_operator_can_approve() {
    let f = fixture(POLICY);
    let kernel = Kernel::spawn(
        f.config()
            .await_approval(Duration::from_secs(3))
            .operator_uid(4242),
    )
    .unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("staging")));
        // The request is pending (its `ask` is recorded) before anyone
        // tries to approve it, so a refusal below is the peer check's.
        let started = Instant::now();
        while !decisions(&f).contains(&Decision::Ask) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the request never became pending"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Our uid is not the operator's: refused by the peer check.
        let refused = operator(&f, &["approve", "1"]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("is not the operator"));
        // Another uid cannot even reach the socket.
        let other = Command::new(ENFORCER)
            .args(["approve", "1", "--control"])
            .arg(control(&f))
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert_eq!(other.status.code(), Some(1));
        assert!(matches!(
            waiting.join().unwrap(),
            Err(Denial::NoApproval { .. })
        ));
    });
    drop(kernel);
    assert!(approvals(&f).is_empty());
    assert!(!decisions(&f).contains(&Decision::Allow));
}
