//! Every guarantee of kernel-sync under every interleaving of the threads
//! that share it, explored by loom.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p kernel-sync --test loom`
//! (a separate `CARGO_TARGET_DIR` keeps the normal build's cache).
#![cfg(loom)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_sync::{CommitError, Grants, GroupCommit, HaltLatch, Limit, Pending, RateCounters};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::time::{Duration, Instant};

/// What an observer outside the enforcer sees, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    HaltAcknowledged,
    EffectStarted,
}

#[test]
fn concurrent_halts_keep_exactly_one_cause() {
    loom::model(|| {
        let latch = Arc::new(HaltLatch::new());
        let a = {
            let latch = Arc::clone(&latch);
            thread::spawn(move || latch.halt("operator"))
        };
        let b = {
            let latch = Arc::clone(&latch);
            thread::spawn(move || latch.halt("evidence fault"))
        };
        // A reader never sees a halt without its cause, or a halt undone.
        let seen = latch.is_halted();
        if seen {
            assert!(latch.cause().is_some());
            assert!(latch.is_halted());
        }
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a != b, "exactly one halt is first");
        let winner = if a { "operator" } else { "evidence fault" };
        assert_eq!(latch.cause().as_deref(), Some(winner));
    });
}

/// The serving loop starts an allowed effect through `admit` while the
/// operator halts: once the halt is acknowledged, no effect starts.
#[test]
fn no_effect_starts_after_a_halt_is_acknowledged() {
    loom::model(|| {
        let latch = Arc::new(HaltLatch::new());
        let wire = Arc::new(Mutex::new(Vec::new()));
        let serving = {
            let (latch, wire) = (Arc::clone(&latch), Arc::clone(&wire));
            thread::spawn(move || {
                latch
                    .admit("effect", |_| wire.lock().unwrap().push(Seen::EffectStarted))
                    .is_ok()
            })
        };
        latch.halt("operator");
        wire.lock().unwrap().push(Seen::HaltAcknowledged);
        let started = serving.join().unwrap();
        let wire = wire.lock().unwrap();
        let ack = wire.iter().position(|s| *s == Seen::HaltAcknowledged);
        let effect = wire.iter().position(|s| *s == Seen::EffectStarted);
        assert_eq!(started, effect.is_some());
        if let (Some(ack), Some(effect)) = (ack, effect) {
            assert!(effect < ack, "an effect started after the halt: {wire:?}");
        }
    });
}

/// The check that `admit` replaces (look at the flag, then start) lets an
/// effect start after the halt is acknowledged; loom finds it. This shows
/// the test above can fail.
#[test]
fn checking_the_flag_then_starting_is_caught() {
    let found = std::panic::catch_unwind(|| {
        loom::model(|| {
            let latch = Arc::new(HaltLatch::new());
            let wire = Arc::new(Mutex::new(Vec::new()));
            let serving = {
                let (latch, wire) = (Arc::clone(&latch), Arc::clone(&wire));
                thread::spawn(move || {
                    if !latch.is_halted() {
                        wire.lock().unwrap().push(Seen::EffectStarted);
                    }
                })
            };
            latch.halt("operator");
            wire.lock().unwrap().push(Seen::HaltAcknowledged);
            serving.join().unwrap();
            let wire = wire.lock().unwrap();
            assert_ne!(
                *wire,
                vec![Seen::HaltAcknowledged, Seen::EffectStarted],
                "effect after halt"
            );
        });
    });
    assert!(found.is_err(), "loom should find the interleaving");
}

/// Two threads stage a record each and commit (group commit) onto a disk
/// that is a list. A commit that returns `Ok` has its record on disk, and
/// a ticket reported durable is on disk.
#[test]
fn a_record_reported_durable_is_on_disk() {
    loom::model(|| {
        let log = Arc::new(GroupCommit::new(0));
        let disk = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..2u8)
            .map(|record| {
                let (log, disk) = (Arc::clone(&log), Arc::clone(&disk));
                thread::spawn(move || {
                    let ticket = log.stage(record);
                    let result = log.commit(|records| {
                        disk.lock().unwrap().extend(records);
                        Ok::<(), ()>(())
                    });
                    assert_eq!(result, Ok(()));
                    assert!(log.is_durable(ticket));
                    assert!(disk.lock().unwrap().contains(&record));
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(log.durable(), 2);
        let mut disk = disk.lock().unwrap().clone();
        disk.sort_unstable();
        assert_eq!(disk, vec![0, 1], "each record written once");
    });
}

/// A sync fails while another thread stages and commits: a record is
/// reported durable only if a successful sync wrote it, and after the
/// failure nothing more is written.
#[test]
fn after_a_failed_sync_nothing_more_is_written() {
    loom::model(|| {
        let log = Arc::new(GroupCommit::new(0));
        let disk = Arc::new(Mutex::new(Vec::new()));
        let failing = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let ticket = log.stage("a");
                let result = log.commit(|_| Err::<(), &str>("disk full"));
                (ticket, result)
            })
        };
        let ticket = log.stage("b");
        let result = {
            let disk = Arc::clone(&disk);
            log.commit(move |records| {
                disk.lock().unwrap().extend(records);
                Ok::<(), &str>(())
            })
        };
        let (failed_ticket, failed) = failing.join().unwrap();
        let disk = disk.lock().unwrap().clone();
        for (ticket, record) in [(ticket, "b"), (failed_ticket, "a")] {
            assert_eq!(log.is_durable(ticket), disk.contains(&record), "{disk:?}");
        }
        assert!(log.is_broken() || failed.is_ok());
        if result == Err(CommitError::Broken) {
            assert!(disk.is_empty(), "written after the failure: {disk:?}");
        }
        // Another commit after everything: refused if a sync failed.
        if log.is_broken() {
            assert_eq!(log.commit(|_| Ok::<(), &str>(())), Err(CommitError::Broken));
        }
    });
}

/// An operator approves request 1 while the idle tick expires it and a
/// halt denies everything waiting: exactly one of them takes it.
#[test]
fn a_waiting_request_gets_exactly_one_answer() {
    loom::model(|| {
        let pending = Arc::new(Pending::new(4));
        let id = pending.wait("deploy", 10).unwrap();
        let approve = {
            let pending = Arc::clone(&pending);
            thread::spawn(move || usize::from(pending.take(id).is_some()))
        };
        let expire = {
            let pending = Arc::clone(&pending);
            thread::spawn(move || pending.take_expired(11).len())
        };
        let halted = pending.take_all().len();
        let answers = approve.join().unwrap() + expire.join().unwrap() + halted;
        assert_eq!(answers, 1);
        assert!(pending.is_empty());
    });
}

/// Two requests ask at once with room for one: exactly one waits, under a
/// fresh id.
#[test]
fn the_table_never_holds_more_than_its_capacity() {
    loom::model(|| {
        let pending = Arc::new(Pending::new(1));
        let other = {
            let pending = Arc::clone(&pending);
            thread::spawn(move || pending.wait("a", 10))
        };
        let mine = pending.wait("b", 10);
        let other = other.join().unwrap();
        assert!(mine.is_ok() != other.is_ok());
        assert_eq!(pending.len(), 1);
        assert_eq!(mine.or(other), Ok(1));
    });
}

/// A grant of two uses, three concurrent decisions: exactly two allowed.
#[test]
fn a_grant_of_n_uses_allows_at_most_n_times() {
    loom::model(|| {
        let grants = Arc::new(Grants::new(8));
        grants.grant("deploy", "operator", 100, 2);
        let decide = |grants: Arc<Grants<&'static str>>| {
            move || grants.decide(&"deploy", 50, |by| (by.is_some(), by.is_some()))
        };
        let a = thread::spawn(decide(Arc::clone(&grants)));
        let b = thread::spawn(decide(Arc::clone(&grants)));
        let c = decide(Arc::clone(&grants))();
        let allowed = [a.join().unwrap(), b.join().unwrap(), c];
        assert_eq!(allowed.iter().filter(|a| **a).count(), 2);
    });
}

/// `@limit("2/minute")`, three concurrent decisions at the same instant:
/// exactly two allowed.
#[test]
fn a_rate_limit_is_never_exceeded() {
    loom::model(|| {
        let counters = Arc::new(RateCounters::new());
        let now = Instant::now();
        let decide = |counters: Arc<RateCounters>| {
            move || {
                let limit = Limit {
                    policy: "api",
                    text: "2/minute",
                    count: 2,
                    period: Duration::from_secs(60),
                };
                counters.decide(&[limit], now, |exceeded| {
                    let allow = exceeded.is_none();
                    (allow, allow)
                })
            }
        };
        let a = thread::spawn(decide(Arc::clone(&counters)));
        let b = thread::spawn(decide(Arc::clone(&counters)));
        let c = decide(Arc::clone(&counters))();
        let allowed = [a.join().unwrap(), b.join().unwrap(), c];
        assert_eq!(allowed.iter().filter(|a| **a).count(), 2);
    });
}
