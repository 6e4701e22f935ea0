//! Restarting on a long evidence log: the time does not grow with the log.
//!
//! Group `evidence_open_10m` (criterion), on generated logs whose newest
//! checkpoint is followed by 999 decisions, as a crash just before the next
//! checkpoint (the enforcer signs one every 1000 records) leaves them, the
//! most a restart with the default cadence has to verify:
//!
//! - `resume/100k` and `resume/10m`: `EvidenceLog::open` (what the
//!   enforcer does at start-up) on logs of 100,000 and 10,000,000 records:
//!   it reads the start-up index, the newest checkpoint and the 999
//!   records after it, and verifies them. Equal medians mean the start-up
//!   does not depend on the log's length;
//! - `verify_whole/100k`: the same open of the 100,000-record log without
//!   its start-up index, so every record is verified (what every start did
//!   before checkpoints stored their frontier, and what a log written
//!   before still gets once);
//! - `first_answer/10m`: through the real binary, from `Kernel::spawn` on
//!   the 10,000,000-record log until the first `authorize` has its signed
//!   answer (start-up, handshake, one durable decision). After each
//!   iteration the log and its index are put back as they were.
//!
//! The logs are written by a generator, not by a session: one signing key,
//! a session start, then decisions (a workspace read each, the request
//! and its signed receipt naming its index) with a checkpoint that stores
//! its frontier after every 1000 records, as the enforcer writes them,
//! records built directly and signed on every core. Each log is then
//! opened once without an index, which verifies every record (proving the
//! generated log sound) and writes the index; that first open's time is
//! printed. They are kept in `target/tmp/evidence-open/` (about 3.3 GB for
//! the 10,000,000 records) and reused by later runs; delete the directory
//! to have them written again.
//!
//! Run it with: `cargo bench -p kernel-enforcer --no-default-features
//! --bench evidence_open` (the first run writes the logs: a few minutes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark harness"
)]

mod common;

use common::{POLICY, bench_fixture};
use criterion::{BatchSize, Criterion, SamplingMode};
use kernel_client::{Action, Kernel, SpawnConfig};
use kernel_core::merkle::{Frontier, leaf_hash};
use kernel_core::note::{Checkpoint, ENFORCER_KEY_NAME, SignedNote};
use kernel_core::{
    CanonicalAction, Confinement, Decision, Digest, EncodedRequest, Event, ReceiptBody, Record,
    Request, SessionId, SignedEvent, SigningKey, encode_record, frame_record_bytes, origin_for,
    sign_receipt,
};
use kernel_enforcer::session::evidence::{EvidenceLog, FullCheck, Opened};
use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Records between two checkpoints, as the enforcer's default.
const CHECKPOINT_EVERY: u64 = 1000;
/// Decisions after the newest checkpoint.
const TAIL: u64 = CHECKPOINT_EVERY - 1;
/// Bumped whenever the generator's output changes, so that cached logs
/// are written again.
const GENERATOR_VERSION: u32 = 1;
/// Records built per round (on every core), then hashed into the tree and
/// written in order.
const ROUND: u64 = 1 << 16;
const SESSION: SessionId = SessionId([0x42; 16]);

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();
    let small = cached_log(100_000);
    let large = cached_log(10_000_000);
    let mut group = criterion.benchmark_group("evidence_open_10m");
    group.sampling_mode(SamplingMode::Flat);
    for (name, log) in [("resume/100k", &small), ("resume/10m", &large)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let log = EvidenceLog::open(log).expect("open");
                assert!(matches!(log.opened(), Opened::Resumed { .. }));
                black_box(log)
            });
        });
    }
    let index = index_of(&small);
    let kept = std::fs::read(&index).expect("index");
    group.bench_function("verify_whole/100k", |b| {
        b.iter_batched(
            || std::fs::remove_file(&index).expect("remove the index"),
            |()| {
                let log = EvidenceLog::open(&small).expect("open");
                assert!(matches!(
                    log.opened(),
                    Opened::Verified {
                        why: FullCheck::NoIndex,
                        ..
                    }
                ));
                black_box(log)
            },
            BatchSize::PerIteration,
        );
    });
    std::fs::write(&index, kept).expect("put the index back");
    first_answer(&mut group, &large);
    group.finish();
    criterion.final_summary();
}

/// `Kernel::spawn` on `log` until the first answer, then the log put back.
fn first_answer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    log: &Path,
) {
    let (fixture, readme) = bench_fixture(POLICY);
    let index = index_of(log);
    let kept_index = std::fs::read(&index).expect("index");
    let kept_len = std::fs::metadata(log).expect("log").len();
    group.bench_function("first_answer/10m", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let kernel = Kernel::spawn(
                    SpawnConfig::new(&fixture.policy, &fixture.workspace, log)
                        .enforcer(kernel_testkit::enforcer())
                        .timeout(Duration::from_secs(30))
                        .startup_timeout(Duration::from_secs(60)),
                )
                .expect("start the enforcer");
                kernel
                    .authorize(Action::file_read(readme.clone()))
                    .expect("the first answer");
                total += started.elapsed();
                let status = kernel.shutdown(Duration::from_secs(10));
                assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
                let file = File::options().write(true).open(log).expect("the log");
                file.set_len(kept_len).expect("put the log back");
                file.sync_all().expect("sync");
                std::fs::write(&index, &kept_index).expect("put the index back");
            }
            total
        });
    });
}

fn index_of(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".index");
    PathBuf::from(name)
}

/// The generated log of `records` records, written (and verified once)
/// unless a previous run left it complete.
fn cached_log(records: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("evidence-open")
        .join(records.to_string());
    let log = dir.join("evidence.log");
    let done = dir.join("complete");
    let stamp = format!("generator {GENERATOR_VERSION}, {records} records\n");
    if std::fs::read_to_string(&done).is_ok_and(|s| s == stamp) && index_of(&log).exists() {
        return log;
    }
    std::fs::create_dir_all(&dir).expect("cache directory");
    let _ = std::fs::remove_file(&done);
    let _ = std::fs::remove_file(index_of(&log));
    let started = Instant::now();
    let bytes = generate(&log, records);
    let written = started.elapsed();
    // The first open has no index: it verifies every record, which proves
    // the generated log sound, and writes the index.
    let started = Instant::now();
    let opened = EvidenceLog::open(&log).expect("the generated log is sound");
    let verified = started.elapsed();
    assert_eq!(opened.next_index(), records);
    assert_eq!(opened.since_checkpoint(), TAIL);
    assert!(matches!(
        opened.opened(),
        Opened::Verified {
            why: FullCheck::NoIndex,
            ..
        }
    ));
    drop(opened);
    eprintln!(
        "evidence_open: wrote {records} records ({bytes} bytes) in {written:?}; \
         the first open, without an index, verified all of them in {verified:?}"
    );
    std::fs::write(&done, stamp).expect("completion stamp");
    log
}

/// Whether record `index` of a log of `records` is a checkpoint: one
/// after every `CHECKPOINT_EVERY` others, the newest followed by `TAIL`
/// decisions.
fn is_checkpoint(index: u64, records: u64) -> bool {
    let newest = records - TAIL - 1;
    index == newest || (index < newest && (index + 1).is_multiple_of(CHECKPOINT_EVERY + 1))
}

/// The decision record at `index`: a read in the workspace, allowed, its
/// receipt naming its index.
fn decision(key: &SigningKey, index: u64) -> Vec<u8> {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&index.to_le_bytes());
    let request = EncodedRequest::new(Request {
        session: SESSION,
        seq: index,
        nonce,
        action: CanonicalAction::new(
            kernel_core::Action::file_read(format!("/ws/project/src/module_{index}.rs")),
            None,
        )
        .expect("canonical action"),
        deadline_ms: 1_700_000_030_000,
    });
    let receipt = sign_receipt(
        key,
        &ReceiptBody {
            session: SESSION,
            seq: index,
            request_digest: request.digest(),
            decision: Decision::Allow,
            policies: vec!["read-ws".into()],
            reasons: Vec::new(),
            policy_digest: Digest([7; 32]),
            log_index: index,
            issued_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_000_030_000,
        },
    );
    encode_record(&Record::Decision {
        request: request.bytes().to_vec(),
        receipt,
    })
}

/// Writes a log of `records` records to `path`; returns its size.
fn generate(path: &Path, records: u64) -> u64 {
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let origin = origin_for(SESSION);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create the log"));
    let mut tree = Frontier::new();
    let mut size = 0u64;
    let mut write = |record: &[u8], tree: &mut Frontier| {
        tree.push(leaf_hash(record));
        let framed = frame_record_bytes(record);
        size += framed.len() as u64;
        out.write_all(&framed).expect("write the log");
    };
    let start = encode_record(&Record::Event(SignedEvent::sign(
        &Event::SessionStart {
            session: SESSION,
            public_key: key.verifying_key().to_bytes(),
            policy_digest: Digest([7; 32]),
            workspace: "/ws".into(),
            confinement: Confinement::Unconfined,
            origin: origin.clone(),
            at_ms: 1_700_000_000_000,
        },
        &key,
    )));
    write(&start, &mut tree);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut next = 1;
    while next < records {
        let end = (next + ROUND).min(records);
        // Decisions are built (and signed) on every core; checkpoints,
        // which need the tree before them, in order.
        let chunk = (end - next).div_ceil(threads as u64);
        let built: Vec<Vec<Option<Vec<u8>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let key = &key;
                    let from = (next + t * chunk).min(end);
                    let to = (from + chunk).min(end);
                    scope.spawn(move || {
                        (from..to)
                            .map(|i| (!is_checkpoint(i, records)).then(|| decision(key, i)))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (index, record) in (next..end).zip(built.into_iter().flatten()) {
            let record = record.unwrap_or_else(|| {
                let checkpoint = Checkpoint {
                    origin: origin.clone(),
                    size: index,
                    root: tree.root(),
                };
                let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &key);
                encode_record(&Record::FrontierCheckpoint {
                    note: note.to_text(),
                    session: SESSION,
                    key: key.verifying_key().to_bytes(),
                    frontier: tree.peaks().to_vec(),
                })
            });
            write(&record, &mut tree);
        }
        next = end;
    }
    out.into_inner()
        .expect("flush the log")
        .sync_all()
        .expect("sync the log");
    size
}
