//! The cost of one `authorize` round trip, next to the floor it cannot beat.
//!
//! One criterion run measures, side by side (group `roundtrip`):
//!
//! - `floor_unsynced`: a raw ipc-channel round trip between this process
//!   and a separate echo process, with frames of exactly the byte sizes of
//!   a real `Authorize` request and a real signed `Receipt` reply, plus one
//!   ed25519 `sign` over a real receipt body and one `verify_strict` of it;
//! - `floor_durable`: the same plus one append of a real evidence record's
//!   size to a file, made durable with `fdatasync`;
//! - `authorize_durable`: `Kernel::authorize` of an allowed `file_read`
//!   against the real `kernel-enforcer` binary, which decides with Cedar,
//!   signs, and `fdatasync`s the decision to its evidence file before
//!   replying; the client then verifies the receipt.
//! - `authorize_os_buffered`: the same against an enforcer started with
//!   `--danger-evidence-os-buffered` (records written to the OS, not
//!   synced), to compare with `floor_unsynced`.
//!
//! The floor does its sign and `fdatasync` before sending the request, not
//! while the echo process is answering: in the real round trip nothing
//! overlaps (the client waits while the enforcer works), so the floor is
//! the plain sum of its parts, with no parallelism the kernel does not
//! have.
//!
//! The echo process is this bench binary itself, re-executed with
//! `KERNEL_BENCH_ECHO_SERVER` set to the name of a one-shot server. It sets up its
//! channels exactly as the enforcer does (`kernel-enforcer/src/serve.rs`),
//! answers every request with a reply of the receipt frame's size, signs
//! and verifies nothing, and exits when the bench hangs up.
//!
//! Files (the evidence file, the floor's durable file) live in temporary
//! directories under cargo's `CARGO_TARGET_TMPDIR`, on the disk that holds
//! the target directory, so `fdatasync` reaches a real device.
//!
//! Run it with: `cargo bench -p kernel-enforcer --bench roundtrip`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness"
)]

mod common;

use common::{Echo, POLICY, bench_fixture, measure_shapes};
use criterion::Criterion;
use ed25519_dalek::{Signer, SigningKey};
use kernel_client::{Action, Kernel, SpawnConfig};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn main() {
    if common::run_echo_child() {
        return;
    }
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
        .configure_from_args();
    roundtrip(&mut criterion);
    criterion.final_summary();
}

fn append_file(dir: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("floor.log"))
        .expect("floor file")
}

fn roundtrip(criterion: &mut Criterion) {
    let (fixture, readme) = bench_fixture(POLICY);
    let state = fixture.state();
    let kernel = Kernel::spawn(fixture.config()).expect("start the enforcer");
    let shapes = measure_shapes(&kernel, &readme);
    eprintln!(
        "roundtrip: request frame {} B, receipt frame {} B, signed body {} B, \
         evidence record {} B; files under {}",
        shapes.request_frame.len(),
        shapes.receipt_frame_bytes,
        shapes.receipt_body.len(),
        shapes.record_bytes,
        state.display(),
    );

    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let verifying = key.verifying_key();
    let record = vec![0xa5_u8; shapes.record_bytes];
    let mut floor_file = append_file(&state);

    let echo = Echo::spawn(shapes.receipt_frame_bytes);
    assert_eq!(
        echo.round_trip(shapes.request_frame.clone()).len(),
        shapes.receipt_frame_bytes
    );

    let mut group = criterion.benchmark_group("roundtrip");

    group.bench_function("floor_unsynced", |b| {
        b.iter(|| {
            let signature = key.sign(&shapes.receipt_body);
            let reply = echo.round_trip(shapes.request_frame.clone());
            verifying
                .verify_strict(black_box(&shapes.receipt_body), &signature)
                .unwrap();
            black_box(reply)
        });
    });

    group.bench_function("floor_durable", |b| {
        b.iter(|| {
            let signature = key.sign(&shapes.receipt_body);
            floor_file.write_all(&record).unwrap();
            floor_file.sync_data().unwrap();
            let reply = echo.round_trip(shapes.request_frame.clone());
            verifying
                .verify_strict(black_box(&shapes.receipt_body), &signature)
                .unwrap();
            black_box(reply)
        });
    });

    group.bench_function("authorize_durable", |b| {
        b.iter(|| {
            kernel
                .authorize(Action::file_read(readme.as_str()))
                .expect("allowed")
        });
    });

    let buffered = Kernel::spawn(
        SpawnConfig::new(
            &fixture.policy,
            &fixture.workspace,
            state.join("buffered.log"),
        )
        .enforcer(kernel_testkit::enforcer())
        .danger_evidence_os_buffered(),
    )
    .expect("start the os-buffered enforcer");
    group.bench_function("authorize_os_buffered", |b| {
        b.iter(|| {
            buffered
                .authorize(Action::file_read(readme.as_str()))
                .expect("allowed")
        });
    });

    group.finish();
    echo.stop();
    let _ = buffered.shutdown(Duration::from_secs(5));
    let status = kernel.shutdown(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "enforcer exit: {status:?}"
    );
}
