//! The evidence log's two costs: durable appends, and verification.
//!
//! - Group `evidence_append`, `threads/{1,4,16}`: that many client threads
//!   share one `Kernel` and each `authorize`s an allowed `file_read`
//!   against the real `kernel-enforcer` binary, which decides, signs and
//!   `fdatasync`s every decision to its evidence file before replying;
//!   requests that arrive together share one `fdatasync` (group commit).
//!   Each iteration is a fixed batch of [`APPEND_BATCH`] decisions spread
//!   evenly over the threads, timed from the moment the threads are
//!   released until the last one has its permit (`iter_custom`), so
//!   criterion's throughput is decisions (evidence appends) per second.
//! - Group `evidence_audit`, `audit_100k_records`: `kernel_core::audit` of
//!   a log of [`AUDIT_RECORDS`] records with the enforcer's key pinned:
//!   every receipt and event signature, every request binding, every
//!   checkpoint (one per 1000 records) and the Merkle tree. The log is
//!   built once, in process, by a real `Session` fed frames in large
//!   batches through `handle_batch` (so it takes few `fdatasync`s), and
//!   read back from its file.
//!
//! Files live in temporary directories under cargo's `CARGO_TARGET_TMPDIR`,
//! on the disk that holds the target directory, so `fdatasync` reaches a
//! real device.
//!
//! Run it with: `cargo bench -p kernel-enforcer --bench evidence`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark harness"
)]

mod common;

use common::{bench_fixture, decide_concurrently, write_log};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use kernel_client::Kernel;
use kernel_core::{SigningKey, audit};
use kernel_testkit::{fixture_in, pinned};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Decisions per timed iteration of the append bench; a multiple of every
/// thread count.
const APPEND_BATCH: usize = 48;
const THREADS: [usize; 3] = [1, 4, 16];
/// Records in the audited log, the final checkpoint included.
const AUDIT_RECORDS: u64 = 100_000;
/// Frames per `handle_batch` call (one `fdatasync` each) while building it.
const BUILD_BATCH: u64 = 5_000;
const CHECKPOINT_RECORDS: u64 = 1000;

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();
    appends(&mut criterion);
    audits(&mut criterion);
    criterion.final_summary();
}

fn appends(criterion: &mut Criterion) {
    let (fixture, readme) = bench_fixture(common::POLICY);
    let evidence = &fixture.evidence;
    let kernel = Kernel::spawn(fixture.config().timeout(Duration::from_secs(30)))
        .expect("start the enforcer");
    eprintln!(
        "evidence_append: evidence file {}",
        evidence.to_string_lossy()
    );

    let mut group = criterion.benchmark_group("evidence_append");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(APPEND_BATCH as u64));
    for threads in THREADS {
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let total = APPEND_BATCH * usize::try_from(iters).expect("iterations");
                    decide_concurrently(&kernel, &readme, threads, total)
                });
            },
        );
    }
    group.finish();
    let status = kernel.shutdown(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "enforcer exit: {status:?}"
    );
}

fn audits(criterion: &mut Criterion) {
    let dir = fixture_in(Path::new(env!("CARGO_TARGET_TMPDIR")), common::POLICY);
    let path = &dir.evidence;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("randomness");
    let key = SigningKey::from_bytes(&seed);
    let verifying = key.verifying_key();
    let started = Instant::now();
    let bytes = write_log(path, &key, AUDIT_RECORDS, CHECKPOINT_RECORDS, BUILD_BATCH);
    let built = started.elapsed();
    let options = pinned(&verifying);
    let report = audit(&bytes, &options).expect("the built log is sound");
    assert_eq!(report.records, AUDIT_RECORDS);
    assert_eq!(report.uncovered, 0);
    eprintln!(
        "evidence_audit: built {} records ({} allowed, {} denied, {} checkpoints, {} bytes) in {built:?}",
        report.records,
        report.allowed,
        report.denied,
        report.checkpoints.len(),
        bytes.len(),
    );

    let mut group = criterion.benchmark_group("evidence_audit");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(AUDIT_RECORDS));
    group.bench_function("audit_100k_records", |b| {
        b.iter(|| audit(black_box(&bytes), &options).expect("sound"));
    });
    group.finish();
}
