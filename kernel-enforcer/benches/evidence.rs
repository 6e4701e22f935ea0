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

use common::{decide_concurrently, tempdir};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use kernel_client::{Kernel, SpawnConfig};
use kernel_core::{
    AuditOptions, CanonicalAction, ClientFrame, EnforcerFrame, Handshake, PROTOCOL_VERSION,
    Request, SigningKey, audit, decode_enforcer_frame, encode_client_frame,
};
use kernel_enforcer::session::evidence::EvidenceLog;
use kernel_enforcer::session::{Session, SessionConfig};
use kernel_policy::{Environment, PolicyEngine};
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
const BUILD_BATCH: usize = 5_000;
const CHECKPOINT_RECORDS: u64 = 1000;

const POLICY: &str = r#"@id("read-ws")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

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
    let workspace = tempdir("evidence-ws-");
    let state = tempdir("evidence-state-");
    let policy = state.path().join("bench.cedar");
    std::fs::write(&policy, POLICY).expect("policy file");
    let readme = workspace.path().join("README.md");
    std::fs::write(&readme, "# bench\n").expect("README.md");
    let readme = readme.to_str().expect("UTF-8 path").to_owned();
    let evidence = state.path().join("evidence.log");
    let kernel = Kernel::spawn(
        SpawnConfig::new(&policy, workspace.path(), &evidence)
            .enforcer(env!("CARGO_BIN_EXE_kernel-enforcer"))
            .timeout(Duration::from_secs(30)),
    )
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

fn hello(session: &mut Session) -> Handshake {
    let hello = encode_client_frame(&ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        challenge: [1; 32],
    });
    match decode_enforcer_frame(&session.handle(&hello)).expect("hello reply") {
        EnforcerFrame::Hello { handshake, .. } => handshake,
        other => panic!("expected a hello, got {other:?}"),
    }
}

/// An `Authorize` frame for request `seq`: three in four read inside the
/// workspace (allowed), the rest outside (denied).
fn authorize_frame(handshake: &Handshake, seq: u64) -> Vec<u8> {
    let path = if seq % 4 == 3 {
        format!("/outside/{seq}.txt")
    } else {
        format!("/ws/{seq}.txt")
    };
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&seq.to_le_bytes());
    let request = kernel_core::EncodedRequest::new(Request {
        session: handshake.session,
        seq,
        nonce,
        action: CanonicalAction::new(kernel_core::Action::file_read(path), None)
            .expect("canonical action"),
        deadline_ms: u64::MAX,
    });
    encode_client_frame(&ClientFrame::Authorize {
        request: request.bytes().to_vec(),
    })
}

/// Writes a log of exactly `AUDIT_RECORDS` records to `path` with a real
/// session, and returns its bytes.
fn build_log(path: &Path, key: &SigningKey) -> Vec<u8> {
    let env = Environment::new("/ws", &[]).expect("environment");
    let policy =
        PolicyEngine::from_sources(&[("bench.cedar".into(), POLICY.into())], env).expect("policy");
    let evidence = EvidenceLog::open(path).expect("evidence log");
    let config = SessionConfig {
        checkpoint_records: CHECKPOINT_RECORDS,
        checkpoint_interval: Duration::from_secs(24 * 3600),
        ..SessionConfig::default()
    };
    let mut session = Session::start(key.clone(), policy, evidence, config).expect("session");
    let handshake = hello(&mut session);
    // Every `CHECKPOINT_RECORDS` other records (the session start among
    // them) are followed by a checkpoint, and `finish` adds a final one:
    // with 99 interior checkpoints and the final one, 100,000 records are
    // the session start, 99,899 decisions and 100 checkpoints.
    let groups = (AUDIT_RECORDS - 1) / (CHECKPOINT_RECORDS + 1);
    let others = AUDIT_RECORDS - 1 - groups;
    let decisions = others - 1;
    let mut seq = 0;
    while seq < decisions {
        let end = (seq + BUILD_BATCH as u64).min(decisions);
        let frames: Vec<Vec<u8>> = (seq..end).map(|s| authorize_frame(&handshake, s)).collect();
        for reply in session.handle_batch(&frames) {
            match decode_enforcer_frame(&reply).expect("reply") {
                EnforcerFrame::Receipt { .. } => {}
                other => panic!("expected a receipt, got {other:?}"),
            }
        }
        seq = end;
    }
    session.finish();
    assert_eq!(session.evidence().next_index(), AUDIT_RECORDS);
    drop(session);
    std::fs::read(path).expect("read the log")
}

fn audits(criterion: &mut Criterion) {
    let dir = tempdir("evidence-audit-");
    let path = dir.path().join("evidence.log");
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("randomness");
    let key = SigningKey::from_bytes(&seed);
    let verifying = key.verifying_key();
    let started = Instant::now();
    let bytes = build_log(&path, &key);
    let built = started.elapsed();
    let options = AuditOptions {
        kernel_key: Some(&verifying),
        ..AuditOptions::default()
    };
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
