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
use kernel_core::{Decision, Event, now_ms};
use kernel_testkit::{
    Fixture, RawClient, authorize_frame, enforcer, fixture, log, request_until, wait_for,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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

/// An approval decides the request again under the policy in force, where
/// a forbid (here one added by a reload while the request waited) still
/// wins: the agent gets that denial, and the operator is told the request
/// was denied, not "approved", and the command fails.
#[test]
fn an_approved_request_a_forbid_still_denies_is_reported_as_denied() {
    let f = fixture(POLICY);
    let kernel = spawn(&f, Duration::from_secs(20));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| kernel.authorize(deploy("production")));
        let ids = pending_ids(&f, 1);
        let mut stricter = std::fs::read_to_string(&f.policy).unwrap();
        stricter.push_str(
            r#"
@id("freeze")
@reason("deployments are frozen")
forbid (principal, action == Action::"tool_call", resource == Tool::"deploy");
"#,
        );
        std::fs::write(&f.policy, stricter).unwrap();
        let reloaded = f.operator(&["reload"]);
        assert!(reloaded.status.success(), "{reloaded:?}");
        let approved = f.operator(&["approve", &ids[0].to_string()]);
        let said = String::from_utf8_lossy(&approved.stderr).into_owned()
            + &String::from_utf8_lossy(&approved.stdout);
        assert_eq!(approved.status.code(), Some(1), "{said}");
        assert!(said.contains("still denied"), "{said}");
        assert!(said.contains("deployments are frozen"), "{said}");
        match waiting.join().unwrap() {
            Err(Denial::Policy { reasons, .. }) => {
                assert!(
                    reasons.iter().any(|r| r.contains("deployments are frozen")),
                    "{reasons:?}"
                );
            }
            other => panic!("expected the forbid's denial, got {other:?}"),
        }
    });
    drop(kernel);
    assert_eq!(decisions(&f), vec![Decision::Ask, Decision::Deny]);
    let recorded = approvals(&f);
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].0, "the approval itself is recorded");
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

/// The frame asking for `action` as request `seq`, answered by `deadline_ms`.
fn authorize(
    handshake: &kernel_core::Handshake,
    seq: u64,
    action: Action,
    deadline_ms: u64,
) -> Vec<u8> {
    authorize_frame(&request_until(handshake.session, seq, action, deadline_ms))
}

/// The decision of `frame`, if it is a receipt for request `seq`.
fn receipt_for(frame: &kernel_core::EnforcerFrame, seq: u64) -> Option<Decision> {
    match frame {
        kernel_core::EnforcerFrame::Receipt { seq: s, receipt } if *s == seq => Some(
            kernel_core::decode_receipt_body_unverified(&receipt.body)
                .unwrap()
                .decision,
        ),
        _ => None,
    }
}

/// A request waiting for an operator is denied when its deadline passes,
/// and the agent told so then, also while the client keeps the channel
/// busy with other requests (so that the enforcer is never idle); a
/// later approval is refused and changes nothing.
/// One try of the test below: the answer request 0 got, the longest time
/// between two of the client's requests, request 0's approval id, and the
/// client (its session lives as long as it does).
fn answer_while_the_client_keeps_sending(f: &Fixture) -> (Decision, Duration, u64, RawClient) {
    let client = RawClient::start(f);
    let handshake = client.hello();
    let deadline = now_ms() + 1000;
    client.send(authorize(&handshake, 0, deploy("staging"), deadline));
    let first = client.recv();
    assert_eq!(receipt_for(&first, 0), Some(Decision::Ask), "{first:?}");
    let ids = pending_ids(f, 1);
    // Another request (denied: no policy permits it) every 20 ms, well
    // under the enforcer's idle period, until request 0 is answered.
    let mut seq = 1;
    let mut last_send = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let answer = loop {
        assert!(
            now_ms() < deadline + 3000,
            "request 0 was not answered at its deadline while the client kept sending"
        );
        let other = Action::tool_call("other", &serde_json::json!({}));
        client.send(authorize(&handshake, seq, other, now_ms() + 5000));
        longest_gap = longest_gap.max(last_send.elapsed());
        last_send = Instant::now();
        seq += 1;
        let mut answered = None;
        while let Ok(bytes) = client.replies.try_recv_timeout(Duration::from_millis(20)) {
            let frame = kernel_core::decode_enforcer_frame(&bytes).unwrap();
            if let Some(decision) = receipt_for(&frame, 0) {
                answered = Some(decision);
            }
        }
        if let Some(decision) = answered {
            break decision;
        }
    };
    (answer, longest_gap, ids[0], client)
}

#[test]
fn a_request_whose_deadline_passes_is_answered_then_even_while_the_client_keeps_sending() {
    // The client must keep the enforcer busy: never as long as its idle
    // period (200 ms) between two requests. A loaded machine may stall
    // the client for longer; then the try shows nothing and is made again
    // (at most three times: a machine that stalls every time fails it).
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let f = fixture(POLICY);
        let (answer, longest_gap, id, client) = answer_while_the_client_keeps_sending(&f);
        assert_eq!(answer, Decision::Deny);
        if longest_gap >= Duration::from_millis(150) {
            gaps.push(longest_gap);
            continue;
        }
        // The late approval finds nothing to approve.
        let late = f.operator(&["approve", &id.to_string()]);
        assert_eq!(late.status.code(), Some(1), "{late:?}");
        assert!(
            String::from_utf8_lossy(&late.stdout).contains("is waiting for approval"),
            "{late:?}"
        );
        drop(client);
        let recorded = decisions(&f);
        assert_eq!(recorded[0], Decision::Ask);
        assert!(!recorded.contains(&Decision::Allow));
        assert!(approvals(&f).is_empty());
        return;
    }
    panic!("the client was not kept busy in any try: longest gaps {gaps:?}");
}

const POLICY_WITH_READS: &str = r#"
@id("deploy-needs-approval")
@reason("deployments need an operator's approval")
@ask
permit (principal, action == Action::"tool_call", resource == Tool::"deploy");

permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

/// A panic while deciding halts the session, and every client request
/// still waiting is answered `halted` at once, not left to its own
/// timeout: the request that was being decided (by its sequence number)
/// and the one waiting for an operator.
#[test]
fn a_panic_while_deciding_answers_every_waiting_request_as_halted() {
    let f = fixture(POLICY_WITH_READS);
    let client = RawClient::start_with_env(&f, &[("AGENT_KERNEL_TEST_FAULT", "panic:file_read")]);
    let handshake = client.hello();
    // Far deadlines: no answer comes from a timeout.
    let far = now_ms() + 120_000;
    client.send(authorize(&handshake, 0, deploy("staging"), far));
    let first = client.recv();
    assert_eq!(receipt_for(&first, 0), Some(Decision::Ask), "{first:?}");
    pending_ids(&f, 1);
    let read = Action::file_read(f.ws("a"));
    client.send(authorize(&handshake, 1, read, far));
    let mut halted = std::collections::BTreeSet::new();
    while halted.len() < 2 {
        // `recv` fails the test after 10 s without a frame.
        match client.recv() {
            kernel_core::EnforcerFrame::Refused {
                seq: Some(seq),
                refusal: kernel_core::Refusal::Halted,
            } => assert!(halted.insert(seq), "request {seq} answered twice"),
            other => panic!("expected `halted` refusals of requests 0 and 1, got {other:?}"),
        }
    }
    assert_eq!(halted.into_iter().collect::<Vec<_>>(), [0, 1]);
    let status = f.operator(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["data"]["halted"]
            .as_str()
            .is_some_and(|cause| cause.contains("panic")),
        "{status}"
    );
}

/// An approval whose records cannot be written does not take effect, and
/// the operator's `approve` says so (non-zero exit, naming the halt); the
/// agent gets `halted`, and the evidence holds no approval and no allow.
#[test]
fn an_approval_that_cannot_be_recorded_fails_for_the_operator_too() {
    let f = fixture(POLICY);
    let client =
        RawClient::start_with_env(&f, &[("AGENT_KERNEL_TEST_FAULT", "unsynced:tool_call")]);
    let handshake = client.hello();
    client.send(authorize(
        &handshake,
        0,
        deploy("staging"),
        now_ms() + 120_000,
    ));
    let first = client.recv();
    assert_eq!(receipt_for(&first, 0), Some(Decision::Ask), "{first:?}");
    let ids = pending_ids(&f, 1);
    let out = f.operator(&["approve", &ids[0].to_string()]);
    let told = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        told.contains("did not take effect") && told.contains("halted"),
        "{told}"
    );
    let answer = client.recv();
    assert!(
        matches!(
            answer,
            kernel_core::EnforcerFrame::Refused {
                seq: Some(0),
                refusal: kernel_core::Refusal::Halted
            }
        ),
        "{answer:?}"
    );
    drop(client);
    assert_eq!(decisions(&f), [Decision::Ask]);
    assert!(approvals(&f).is_empty());
}
