//! The cost of an `open` decided at the system-call boundary, next to a
//! plain one.
//!
//! One `cargo bench -p kernel-enforcer --bench governed_open` measures, in
//! group `governed_open`:
//!
//! - `plain`: `open` and `close` of a workspace file in this process,
//!   with no kernel involved;
//! - `granted`: the same, of a file Landlock grants the agent anyway
//!   (`/etc/passwd`), by an agent run under `kernel-enforcer run
//!   --govern-syscalls`: a seccomp notification, the path resolved and the
//!   file opened by the enforcer without a decision, the descriptor
//!   injected;
//! - `decided`: the same, of a workspace file the policy allows, by that
//!   agent: notification, reading the path from the agent's memory, the
//!   Cedar decision, the signed record made durable (`fdatasync`) before
//!   the answer, the enforcer's own `openat2`, and the descriptor injected
//!   with `SECCOMP_IOCTL_NOTIF_ADDFD`;
//! - `decided_windowed`: the same under `--evidence-window 10`: the record
//!   is written before the answer and made durable within 10 ms.
//!
//! The agent is this bench binary, re-executed by the real enforcer with
//! [`AGENT_ENV`] set; it runs its own criterion (results under its scratch
//! directory, the only place it may write) and prints its medians with the
//! parent's. The rate limit is raised out of the way: this measures the
//! cost of a decision, not the limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

mod common;

use common::POLICY;
use criterion::Criterion;
use kernel_testkit::fixture_in;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// Set in the agent: the workspace file to open.
const AGENT_ENV: &str = "GOVERNED_OPEN_AGENT_FILE";
/// Set in the agent: the name of its decided row; the granted row is
/// measured only in the strict run.
const ROW_ENV: &str = "GOVERNED_OPEN_ROW";

fn criterion() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
        .configure_from_args()
}

fn open_close(path: &Path) {
    drop(black_box(std::fs::File::open(path).expect("open")));
}

fn main() {
    if let Some(file) = std::env::var_os(AGENT_ENV) {
        let file = std::path::PathBuf::from(file);
        let mut criterion = criterion();
        let row = std::env::var(ROW_ENV).unwrap_or_else(|_| "decided".into());
        let mut group = criterion.benchmark_group("governed_open");
        if row == "decided" {
            group.bench_function("granted", |b| {
                b.iter(|| open_close(Path::new("/etc/passwd")));
            });
        }
        group.bench_function(row, |b| b.iter(|| open_close(&file)));
        group.finish();
        criterion.final_summary();
        return;
    }
    // On the disk of the target directory, so `fdatasync` reaches a device.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The agent's criterion writes here, the only place it may write.
    let scratch = base.join("governed-open-criterion");
    std::fs::create_dir_all(&scratch).unwrap();
    // A workspace and evidence of its own for each row.
    let fixture = || {
        let fixture = fixture_in(base, POLICY);
        let file = fixture.workspace.join("data.txt");
        std::fs::write(&file, "benchmark").unwrap();
        (fixture, file)
    };
    let (_plain, file) = fixture();

    let mut criterion = criterion();
    let mut group = criterion.benchmark_group("governed_open");
    group.bench_function("plain", |b| b.iter(|| open_close(&file)));
    group.finish();
    criterion.final_summary();

    for (row, durability) in [
        ("decided", &[][..]),
        ("decided_windowed", &["--evidence-window", "10"][..]),
    ] {
        let (fixture, file) = fixture();
        let status = fixture
            .governed_run(durability)
            .args(["--syscall-rate", "1000000000"])
            .arg("--scratch")
            .arg(&scratch)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env(AGENT_ENV, &file)
            .env(ROW_ENV, row)
            .env("CRITERION_HOME", &scratch)
            .env_remove("LD_LIBRARY_PATH")
            .status()
            .unwrap();
        assert!(status.success(), "the governed agent failed: {status}");
    }

    // One summary of medians, side by side. The parent's results are in
    // criterion's usual place, `<target>/criterion` (`<target>/tmp` is
    // `CARGO_TARGET_TMPDIR`).
    let median = |root: &Path, name: &str| {
        let path = root
            .join("governed_open")
            .join(name)
            .join("new/estimates.json");
        std::fs::read(path)
            .ok()
            .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
            .and_then(|v| {
                v.pointer("/median/point_estimate")
                    .and_then(serde_json::Value::as_f64)
            })
    };
    let parent_root = base.parent().map(|target| target.join("criterion"));
    let plain = parent_root
        .as_deref()
        .and_then(|root| median(root, "plain"));
    println!("\ngoverned_open medians (one run):");
    for (name, value) in [
        ("plain", plain),
        ("granted", median(&scratch, "granted")),
        ("decided", median(&scratch, "decided")),
        ("decided_windowed", median(&scratch, "decided_windowed")),
    ] {
        match (value, plain) {
            (Some(ns), Some(base)) => println!(
                "  {name:<16} {:>10.1} µs  {:>7.1}x plain",
                ns / 1000.0,
                ns / base
            ),
            (Some(ns), None) => println!("  {name:<16} {:>10.1} µs", ns / 1000.0),
            (None, _) => println!("  {name:<16} (no estimate found)"),
        }
    }
}
