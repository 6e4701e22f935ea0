//! Many threads sharing one `Kernel`, against the real enforcer binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Action, Denial, Kernel, KernelState};
use kernel_core::audit;
use kernel_testkit::{Fixture, fixture, pinned, signal, this_thread, wait_until_asleep};
use std::collections::BTreeSet;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use kernel_testkit::policies::READ_WORKSPACE_BUT_SECRETS as READ_POLICY;

const THREADS: usize = 8;
const CALLS: usize = 25;

/// What one call asks for, and what it deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A workspace file: allowed.
    Allowed,
    /// A workspace file named `secret-*`: denied by `no-secrets`.
    Secret,
    /// A file outside the workspace: denied, no policy permits it.
    Outside,
}

fn kind(thread: usize, call: usize) -> Kind {
    match (thread + call) % 3 {
        0 => Kind::Allowed,
        1 => Kind::Secret,
        _ => Kind::Outside,
    }
}

fn action(f: &Fixture, thread: usize, call: usize) -> Action {
    match kind(thread, call) {
        Kind::Allowed => Action::file_read(f.ws(&format!("t{thread}-c{call}.txt"))),
        Kind::Secret => Action::file_read(f.ws(&format!("secret-t{thread}-c{call}.txt"))),
        Kind::Outside => Action::file_read(format!("/nonexistent-outside/t{thread}-c{call}.txt")),
    }
}

#[test]
fn threads_sharing_one_kernel_each_get_their_own_decision() {
    let f = fixture(READ_POLICY);
    // Generous: the test is about routing, not latency, and every decision
    // is made durable before it is answered.
    let kernel = Kernel::spawn(f.config().timeout(Duration::from_secs(30))).unwrap();
    let barrier = Barrier::new(THREADS);

    // Per thread: (permit seqs, log indices) of its decisions.
    let results: Vec<(Vec<u64>, Vec<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (kernel, f, barrier) = (&kernel, &f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut seqs = Vec::new();
                    let mut log_indices = Vec::new();
                    for call in 0..CALLS {
                        let canonical = kernel.canonicalize(action(f, thread, call)).unwrap();
                        let result = kernel.authorize_canonical(canonical.clone());
                        match (kind(thread, call), result) {
                            (Kind::Allowed, Ok(permit)) => {
                                assert_eq!(
                                    permit.action(),
                                    &canonical,
                                    "thread {thread} call {call}: permit for another action"
                                );
                                assert_eq!(permit.session(), kernel.handshake_info().session);
                                seqs.push(permit.seq());
                                log_indices.push(permit.receipt().body().log_index);
                            }
                            (
                                Kind::Secret,
                                Err(Denial::Policy {
                                    policies,
                                    reasons,
                                    log_index,
                                }),
                            ) => {
                                assert_eq!(policies, vec!["no-secrets".to_owned()]);
                                assert_eq!(reasons, vec!["secrets stay secret".to_owned()]);
                                log_indices.push(log_index);
                            }
                            (
                                Kind::Outside,
                                Err(Denial::Policy {
                                    policies,
                                    log_index,
                                    ..
                                }),
                            ) => {
                                assert!(
                                    !policies.contains(&"no-secrets".to_owned())
                                        && !policies.contains(&"read-workspace".to_owned()),
                                    "thread {thread} call {call}: {policies:?}"
                                );
                                log_indices.push(log_index);
                            }
                            (expected, other) => panic!(
                                "thread {thread} call {call}: expected {expected:?}, got {other:?}"
                            ),
                        }
                    }
                    (seqs, log_indices)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Every decision is its own evidence record, and no two permits share
    // a sequence number.
    let total = THREADS * CALLS;
    let log_indices: Vec<u64> = results.iter().flat_map(|(_, l)| l.clone()).collect();
    assert_eq!(log_indices.len(), total);
    let distinct: BTreeSet<u64> = log_indices.iter().copied().collect();
    assert_eq!(distinct.len(), total, "two decisions share a log index");
    let seqs: Vec<u64> = results.iter().flat_map(|(s, _)| s.clone()).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a sequence number answered twice");

    let expected_allowed = (0..THREADS)
        .flat_map(|t| (0..CALLS).map(move |c| kind(t, c)))
        .filter(|k| *k == Kind::Allowed)
        .count() as u64;
    assert_eq!(seqs.len() as u64, expected_allowed);
    let expected_denied = total as u64 - expected_allowed;

    assert_eq!(kernel.state(), KernelState::Connected);
    let key = *kernel.public_key();
    let status = kernel.shutdown(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "enforcer exit status {status}");
    let report = audit(&std::fs::read(&f.evidence).unwrap(), &pinned(&key)).unwrap();
    assert_eq!(report.sessions, 1, "{report:?}");
    assert_eq!(
        (report.allowed, report.denied, report.asked),
        (expected_allowed, expected_denied, 0),
        "{report:?}"
    );
}

#[test]
fn sigkill_wakes_every_waiting_thread_promptly() {
    const WAITERS: usize = 4;
    let f = fixture(READ_POLICY);
    // Far longer than the test may take: a denial must come from the
    // enforcer's death, not from the timeout.
    let timeout = Duration::from_secs(60);
    let kernel = Kernel::spawn(f.config().timeout(timeout)).unwrap();
    let pid = kernel.enforcer_pid().unwrap();
    // Stopped, the enforcer takes the requests but answers none, so all
    // the threads are waiting (one receiving, the others parked) when it
    // dies.
    signal(pid, "STOP");
    let barrier = Barrier::new(WAITERS + 1);
    let tids = std::sync::Mutex::new(Vec::new());
    let (killed_at, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WAITERS)
            .map(|thread| {
                let (kernel, f, barrier, tids) = (&kernel, &f, &barrier, &tids);
                scope.spawn(move || {
                    tids.lock().unwrap().push(this_thread());
                    barrier.wait();
                    let result = kernel.authorize(Action::file_read(f.ws(&format!("w{thread}"))));
                    (result, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        wait_until_asleep(&tids.lock().unwrap());
        let killed_at = Instant::now();
        signal(pid, "KILL");
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (killed_at, outcomes)
    });
    for (thread, (result, returned_at)) in outcomes.into_iter().enumerate() {
        assert!(
            matches!(result, Err(Denial::EnforcerGone)),
            "thread {thread}: {result:?}"
        );
        // Woken by the death, not by their own deadline: far sooner than
        // the timeout, however loaded the machine.
        let after = returned_at.saturating_duration_since(killed_at);
        assert!(
            after < timeout / 4,
            "thread {thread} returned {after:?} after the kill"
        );
    }
    assert_eq!(kernel.state(), KernelState::Gone);
    // Denied at once, not after waiting for an answer.
    let started = Instant::now();
    assert!(matches!(
        kernel.authorize(Action::file_read(f.ws("later"))),
        Err(Denial::EnforcerGone)
    ));
    assert!(started.elapsed() < timeout / 4, "{:?}", started.elapsed());
}

#[test]
fn late_answers_after_concurrent_timeouts_reach_nobody() {
    const WAITERS: usize = 4;
    let f = fixture(READ_POLICY);
    let timeout = Duration::from_secs(1);
    let kernel = Kernel::spawn(f.config().timeout(timeout)).unwrap();
    let pid = kernel.enforcer_pid().unwrap();
    signal(pid, "STOP");
    // Every waiter times out at its own deadline, receiver or not.
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WAITERS)
            .map(|thread| {
                let (kernel, f) = (&kernel, &f);
                scope.spawn(move || {
                    let started = Instant::now();
                    let result = kernel.authorize(Action::file_read(f.ws(&format!("s{thread}"))));
                    (result, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    signal(pid, "CONT");
    for (thread, (result, waited)) in outcomes.into_iter().enumerate() {
        assert!(
            matches!(result, Err(Denial::Timeout(_))),
            "thread {thread}: {result:?}"
        );
        // Concurrently, not one after another: serialized, the last of
        // them would wait four timeouts (the bound leaves a loaded machine
        // two and a half timeouts of slack).
        assert!(
            waited >= timeout * 9 / 10 && waited < timeout * 7 / 2,
            "thread {thread} waited {waited:?}"
        );
    }
    assert_eq!(kernel.state(), KernelState::Connected);
    // The enforcer now answers the stale requests too (all allowed reads);
    // new concurrent requests, half of them denied, must each get only
    // their own answer.
    std::thread::scope(|scope| {
        for thread in 0..WAITERS {
            let (kernel, f) = (&kernel, &f);
            scope.spawn(move || {
                let name = if thread % 2 == 0 {
                    format!("fresh-{thread}")
                } else {
                    format!("secret-{thread}")
                };
                let canonical = kernel.canonicalize(Action::file_read(f.ws(&name))).unwrap();
                let result = kernel.authorize_canonical(canonical.clone());
                if thread % 2 == 0 {
                    assert_eq!(result.unwrap().action(), &canonical);
                } else {
                    assert!(
                        matches!(&result, Err(Denial::Policy { policies, .. }) if policies == &["no-secrets"]),
                        "thread {thread}: {result:?}"
                    );
                }
            });
        }
    });
}
