//! Policy reloads racing a request stream. Several threads sharing one
//! `Kernel` ask to read files named `a-*`, `b-*` and `c-*` while the
//! operator swaps the policy file between A (reads of `a*` allowed) and B
//! (reads of `b*` allowed) and reloads, many times, through the control
//! socket and now and then with `kernel-enforcer reload`.
//!
//! Afterwards every decision record must carry digest(A) or digest(B),
//! the digest the log says is in force at that point (the one of the
//! latest `PolicyLoad`, or of the session start), and the decision that
//! policy gives for the file's name. The clients' permits and denials must
//! be exactly the recorded decisions, each call must have been decided
//! under a policy that could be in force while it was in flight (never
//! one replaced before the call started, nor one loaded after it ended),
//! and the log must pass `audit` with the enforcer's key.
//!
//! `RELOAD_RACE_SEED=N` reruns one round.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::Denial;
use kernel_core::{Decision, Digest, Event, audit};
use kernel_enforcer::session::control::{self, ControlRequest};
use kernel_policy::{Environment, PolicyEngine};
use kernel_testkit::{
    Call, Entry, Fixture, Seeded, entries, fixture, operator, pinned, read_path, seed_from_env,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const POLICY_A: &str = r#"
@id("read-a")
permit (principal, action == Action::"file_read", resource in Workspace::"root")
when { resource.name like "a*" };
"#;

const POLICY_B: &str = r#"
@id("read-b")
permit (principal, action == Action::"file_read", resource in Workspace::"root")
when { resource.name like "b*" };
"#;

/// Rounds, each with its own enforcer and seed.
const ROUNDS: u64 = 3;
const BASE_SEED: u64 = 0x7265_6c6f_6164_0000;
/// Reloads per round.
const RELOADS: usize = 40;
/// Every this many reloads, use the operator CLI instead of the socket.
const CLI_EVERY: usize = 10;

/// The two policies, by what they are called in the log.
#[derive(Clone, Copy, Debug)]
struct Digests {
    a: Digest,
    b: Digest,
}

impl Digests {
    fn name(&self, digest: &Digest) -> &'static str {
        if *digest == self.a {
            "A"
        } else if *digest == self.b {
            "B"
        } else {
            "neither A nor B"
        }
    }

    /// What the policy with `digest` decides for reading `path`.
    fn expected(&self, digest: &Digest, path: &str) -> Decision {
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        let allowed = (*digest == self.a && name.starts_with('a'))
            || (*digest == self.b && name.starts_with('b'));
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// One reload as the operator saw it.
struct Reload {
    started: Instant,
    acked: Instant,
    digest: Digest,
}

#[derive(Default, Debug)]
struct Stats {
    rounds: u64,
    reloads: u64,
    decisions: u64,
    allowed_a: u64,
    allowed_b: u64,
    /// Calls in flight while a reload was being carried out.
    straddling: u64,
    /// Policy epochs (between two loads) in which something was decided.
    busy_epochs: u64,
}

fn digest_of(f: &Fixture, text: &str) -> Digest {
    let env = Environment::new(&f.workspace.to_string_lossy(), &[]).unwrap();
    let sources = [(f.policy.to_string_lossy().into_owned(), text.to_owned())];
    PolicyEngine::from_sources(&sources, env).unwrap().digest()
}

fn status_digest(control: &Path) -> Digest {
    let status = control::request(control, &ControlRequest::Status).unwrap();
    assert!(status.ok, "{status:?}");
    Digest::from_hex(status.data["policy_digest"].as_str().unwrap()).unwrap()
}

/// Reloads through the socket, or with the operator CLI (then the digest
/// comes from `status --json`).
fn reload(control: &Path, cli: bool) -> (Instant, Instant, Digest) {
    let started = Instant::now();
    if cli {
        let out = operator(control, &["reload"]);
        let acked = Instant::now();
        assert!(out.status.success(), "reload: {out:?}");
        let out = operator(control, &["status", "--json"]);
        assert!(out.status.success(), "status: {out:?}");
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let digest = Digest::from_hex(value["data"]["policy_digest"].as_str().unwrap()).unwrap();
        (started, acked, digest)
    } else {
        let response = control::request(control, &ControlRequest::Reload).unwrap();
        let acked = Instant::now();
        assert!(response.ok, "reload refused: {response:?}");
        let digest = Digest::from_hex(response.data["policy_digest"].as_str().unwrap()).unwrap();
        (started, acked, digest)
    }
}

fn round(seed: u64) -> Stats {
    let mut rng = Seeded::new(seed);
    let threads = usize::try_from(rng.range(3, 4)).unwrap();
    let f = fixture(POLICY_A);
    let digests = Digests {
        a: digest_of(&f, POLICY_A),
        b: digest_of(&f, POLICY_B),
    };
    assert_ne!(digests.a, digests.b);
    // Generous: under load every decision waits for its fdatasync.
    let kernel = kernel_client::Kernel::spawn(f.config().timeout(Duration::from_secs(30))).unwrap();
    let key = *kernel.public_key();
    assert_eq!(
        kernel.handshake_info().policy_digest,
        digests.a,
        "seed {seed:#x}: the enforcer's digest of A differs from PolicyEngine's"
    );
    let control = f.control();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let calls = Mutex::new(Vec::<Call>::new());
    let mut reloads = Vec::<Reload>::new();

    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (kernel, f, barrier, calls, stop) = (&kernel, &f, &barrier, &calls, &stop);
            let mut rng = Seeded::new(seed ^ (0x1000 + u64::try_from(thread).unwrap()));
            scope.spawn(move || {
                let mut mine = Vec::new();
                barrier.wait();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let prefix = ["a", "b", "c"][usize::try_from(rng.range(0, 2)).unwrap()];
                    let path = f.ws(&format!("{prefix}-t{thread}-{n}.txt"));
                    mine.push(Call::read(kernel, thread, path));
                    n += 1;
                }
                calls.lock().unwrap().extend(mine);
            });
        }
        barrier.wait();
        for k in 1..=RELOADS {
            // Odd reloads load B, even ones A again.
            let text = if k % 2 == 1 { POLICY_B } else { POLICY_A };
            std::fs::write(&f.policy, text).unwrap();
            let (started, acked, digest) = reload(&control, k % CLI_EVERY == 0);
            let expected = if k % 2 == 1 { digests.b } else { digests.a };
            assert_eq!(
                digest,
                expected,
                "seed {seed:#x}: reload {k} reports the digest of {}",
                digests.name(&digest)
            );
            if k % 7 == 0 {
                assert_eq!(status_digest(&control), expected, "seed {seed:#x}");
            }
            reloads.push(Reload {
                started,
                acked,
                digest,
            });
            std::thread::sleep(Duration::from_millis(rng.range(0, 4)));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let calls = calls.into_inner().unwrap();
    assert!(kernel.shutdown(Duration::from_secs(5)).is_some());
    judge(seed, &f.evidence, &key, digests, &reloads, &calls)
}

fn judge(
    seed: u64,
    evidence: &Path,
    key: &kernel_core::VerifyingKey,
    digests: Digests,
    reloads: &[Reload],
    calls: &[Call],
) -> Stats {
    let bytes = std::fs::read(evidence).unwrap();
    if let Err(e) = audit(&bytes, &pinned(key)) {
        panic!("seed {seed:#x}: audit failed: {e}");
    }
    let log = entries(&bytes);

    // Walk the log: the policy in force is the session start's, then each
    // PolicyLoad's; every decision is under the one in force and is what
    // that policy says.
    let mut in_force: Option<Digest> = None;
    let mut loads = 0usize;
    // Per record: the number of loads before it (its policy epoch).
    let mut epoch_of = vec![usize::MAX; log.len()];
    let mut decided_in = std::collections::BTreeSet::new();
    let mut stats = Stats::default();
    for (i, entry) in log.iter().enumerate() {
        match entry {
            Entry::Event(Event::SessionStart { policy_digest, .. }) => {
                assert!(in_force.is_none(), "seed {seed:#x}: second session start");
                assert_eq!(*policy_digest, digests.a, "seed {seed:#x}");
                in_force = Some(*policy_digest);
            }
            Entry::Event(Event::PolicyLoad {
                policy_digest, by, ..
            }) => {
                let Some(reload) = reloads.get(loads) else {
                    panic!("seed {seed:#x}: record {i} is a PolicyLoad nobody asked for");
                };
                assert_eq!(
                    *policy_digest,
                    reload.digest,
                    "seed {seed:#x}: PolicyLoad {} at record {i} loads {}",
                    loads + 1,
                    digests.name(policy_digest)
                );
                assert!(by.starts_with("operator uid "), "seed {seed:#x}: by {by}");
                loads += 1;
                in_force = Some(*policy_digest);
            }
            Entry::Event(other) => panic!("seed {seed:#x}: unexpected event {other:?}"),
            Entry::Decision { request, body } => {
                let in_force = in_force.expect("a decision before the session start");
                let path = read_path(request);
                assert!(
                    body.policy_digest == digests.a || body.policy_digest == digests.b,
                    "seed {seed:#x}: record {i} ({path}) is under {}",
                    digests.name(&body.policy_digest)
                );
                assert_eq!(
                    digests.name(&body.policy_digest),
                    digests.name(&in_force),
                    "seed {seed:#x}: record {i} ({path}) is decided under a policy that is not \
                     the one in force there ({} PolicyLoad records before it)",
                    loads
                );
                let expected = digests.expected(&body.policy_digest, path);
                assert_eq!(
                    body.decision,
                    expected,
                    "seed {seed:#x}: record {i}: policy {} decides {path} wrongly",
                    digests.name(&body.policy_digest)
                );
                let expected_policies: Vec<String> = match (expected, body.policy_digest) {
                    (Decision::Allow, d) if d == digests.a => vec!["read-a".into()],
                    (Decision::Allow, _) => vec!["read-b".into()],
                    _ => Vec::new(),
                };
                assert_eq!(
                    body.policies, expected_policies,
                    "seed {seed:#x}: record {i}"
                );
                epoch_of[i] = loads;
                decided_in.insert(loads);
                stats.decisions += 1;
                if body.decision == Decision::Allow {
                    if body.policy_digest == digests.a {
                        stats.allowed_a += 1;
                    } else {
                        stats.allowed_b += 1;
                    }
                }
            }
            Entry::Checkpoint => {}
        }
    }
    assert_eq!(
        loads,
        reloads.len(),
        "seed {seed:#x}: {} reloads acknowledged, {loads} PolicyLoad records",
        reloads.len()
    );

    // The clients got exactly the recorded decisions, each one decided by
    // a policy that could be in force while the call was in flight.
    let mut answered = std::collections::BTreeSet::new();
    for call in calls {
        let (index, decision, digest) = match &call.outcome {
            Ok(permit) => {
                let body = permit.receipt().body();
                (body.log_index, Decision::Allow, Some(body.policy_digest))
            }
            Err(Denial::Policy { log_index, .. }) => (*log_index, Decision::Deny, None),
            Err(other) => panic!(
                "seed {seed:#x}: thread {} got an unexpected answer for {}: {other:?}",
                call.thread, call.path
            ),
        };
        assert!(
            answered.insert(index),
            "seed {seed:#x}: two calls answered by record {index}"
        );
        let i = usize::try_from(index).unwrap();
        let Some(Entry::Decision { request, body }) = log.get(i) else {
            panic!(
                "seed {seed:#x}: no decision record at {index} for {}",
                call.path
            );
        };
        assert_eq!(
            read_path(request),
            call.path,
            "seed {seed:#x}: record {index}"
        );
        assert_eq!(
            body.decision, decision,
            "seed {seed:#x}: {} was told {decision:?}, the log says {:?}",
            call.path, body.decision
        );
        if let Some(digest) = digest {
            assert_eq!(digest, body.policy_digest, "seed {seed:#x}: record {index}");
        }
        // Policy epoch k is loaded by reload k (k >= 1) and replaced by
        // reload k + 1.
        let k = epoch_of[i];
        if let Some(loaded_by) = k.checked_sub(1).map(|j| &reloads[j]) {
            assert!(
                loaded_by.started <= call.finished,
                "seed {seed:#x}: {} ended before reload {k} was asked for, yet was decided \
                 under it",
                call.path
            );
        }
        if let Some(replaced_by) = reloads.get(k) {
            assert!(
                call.started <= replaced_by.acked,
                "seed {seed:#x}: {} started {:?} after reload {} was acknowledged, yet was \
                 decided under the policy it replaced ({})",
                call.path,
                call.started - replaced_by.acked,
                k + 1,
                digests.name(&body.policy_digest)
            );
        }
        if reloads
            .iter()
            .any(|r| call.started <= r.acked && r.started <= call.finished)
        {
            stats.straddling += 1;
        }
    }
    assert_eq!(
        u64::try_from(answered.len()).unwrap(),
        stats.decisions,
        "seed {seed:#x}: decision records nobody received"
    );
    stats.rounds = 1;
    stats.reloads = u64::try_from(reloads.len()).unwrap();
    stats.busy_epochs = u64::try_from(decided_in.len()).unwrap();
    stats
}

#[test]
fn every_decision_is_made_by_the_policy_in_force_when_it_was_recorded() {
    let seeds: Vec<u64> = match seed_from_env("RELOAD_RACE_SEED") {
        Some(seed) => vec![seed],
        None => (0..ROUNDS).map(|i| BASE_SEED + i).collect(),
    };
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in seeds {
        let stats = round(seed);
        total.rounds += stats.rounds;
        total.reloads += stats.reloads;
        total.decisions += stats.decisions;
        total.allowed_a += stats.allowed_a;
        total.allowed_b += stats.allowed_b;
        total.straddling += stats.straddling;
        total.busy_epochs += stats.busy_epochs;
    }
    println!(
        "reload race: {} rounds, {} reloads, {} decisions ({} allowed by A, {} by B), \
         {} calls in flight during a reload, {} of {} policy epochs saw decisions, {:.1} s",
        total.rounds,
        total.reloads,
        total.decisions,
        total.allowed_a,
        total.allowed_b,
        total.straddling,
        total.busy_epochs,
        total.reloads + total.rounds,
        started.elapsed().as_secs_f64()
    );
    // The race was actually run: both policies decided, and most epochs
    // saw requests.
    assert!(total.allowed_a > 0 && total.allowed_b > 0, "{total:?}");
    assert!(total.straddling > 0, "{total:?}");
}
