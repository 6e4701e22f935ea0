//! `kernel-bench`: every performance comparison of the kernel in one run,
//! printed as one table of medians and ratios against baselines measured
//! in the same run.
//!
//! Rows (all medians over many iterations; the measurements are taken in
//! interleaved rounds, so slow drift of the machine affects them alike):
//!
//! - `floor_unsynced`: ipc-channel round trip to a separate echo process
//!   with frames of the real request and receipt sizes, plus one ed25519
//!   `sign` and one `verify_strict`: the least a separate-process signed
//!   decision can cost;
//! - `floor_durable`: the same plus one append of a real record's size,
//!   made durable with `fdatasync`;
//! - `authorize_durable`: `Kernel::authorize` of an allowed `file_read`
//!   against the real enforcer binary (Cedar, sign, `fdatasync` before the
//!   reply, client verifies); ratio against `floor_durable`;
//! - `authorize_os_buffered`: the same with evidence written to the OS but
//!   not synced (`--danger-evidence-os-buffered`); ratio against
//!   `floor_unsynced`;
//! - `policy_eval_{10,100,1000}`: `PolicyEngine::evaluate` alone (indexed)
//!   on a mix of four requests; ratio against 10 policies; and the same
//!   1000-policy set evaluated without the index, for reference;
//! - `throughput_{1,4,16}`: durable decisions per second with that many
//!   client threads sharing one enforcer session (group commit); ratio
//!   against one thread;
//! - `audit_verify`: records per second of `kernel_core::audit` over a log
//!   of 20,000 records written by a real session; `evidence_open_whole`:
//!   records per second of `EvidenceLog::open` on the same file without
//!   its start-up index (every record verified, as for a log written
//!   before checkpoints stored their frontier); `evidence_open`: the time
//!   of `EvidenceLog::open` with the index (what the enforcer does at
//!   start-up: the newest checkpoint and the records after it; see the
//!   `evidence_open` bench for logs of 100,000 and 10,000,000 records);
//! - `enforcer_peak_rss_{1,16}`: the enforcer's peak resident set (VmHWM
//!   from `/proc`) after 2,000 decisions for one client thread, and for 16
//!   concurrent client threads sharing its one session (a fresh enforcer
//!   for each row).
//!
//! Run it with: `cargo bench -p kernel-enforcer --bench kernel_bench`
//! (`-- --quick` for fewer iterations, `-- --json` for the medians as JSON,
//! which `benches/peers/agt_compare.py` reads, `-- --only SECTION` for one
//! of `roundtrips`, `policies`, `throughput`, `audits`, `memory`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark harness"
)]

mod common;

use common::{Echo, POLICY, bench_fixture, decide_concurrently, measure_shapes, write_log};
use ed25519_dalek::{Signer, SigningKey};
use kernel_client::{Action, Kernel, SpawnConfig};
use kernel_core::{CanonicalAction, Exec, audit};
use kernel_enforcer::session::evidence::EvidenceLog;
use kernel_policy::{Environment, PolicyEngine};
use kernel_testkit::{fixture_in, pinned};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Records in the audited log.
const AUDIT_RECORDS: u64 = 20_000;

struct Settings {
    rounds: usize,
    per_round: usize,
    policy_iterations: usize,
    throughput_batches: usize,
}

fn main() {
    if common::run_echo_child() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            rounds: 3,
            per_round: 300,
            policy_iterations: 2_000,
            throughput_batches: 5,
        }
    } else {
        Settings {
            rounds: 5,
            per_round: 1_000,
            policy_iterations: 20_000,
            throughput_batches: 15,
        }
    };
    // `--only SECTION` (roundtrips, policies, throughput, audits, memory)
    // runs one part of the table.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let wanted = |section: &str| only.is_none_or(|only| only == section);
    let mut table = Table::default();
    if wanted("roundtrips") {
        roundtrips(&settings, &mut table);
    }
    if wanted("policies") {
        policies(&settings, &mut table);
    }
    if wanted("throughput") {
        throughput(&settings, &mut table);
    }
    if wanted("audits") {
        audits(&mut table);
    }
    if wanted("memory") {
        memory(&mut table);
    }
    if json {
        let map: BTreeMap<&str, f64> = table.rows.iter().map(|r| (r.name, r.value)).collect();
        println!("{}", serde_json::to_string_pretty(&map).unwrap());
    } else {
        table.print();
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

struct Row {
    name: &'static str,
    /// Nanoseconds for times, per second for rates, bytes for memory.
    value: f64,
    unit: Unit,
    /// Against which row, and the target ratio (at most, or at least).
    ratio: Option<(&'static str, Target)>,
}

#[derive(Clone, Copy)]
enum Unit {
    Time,
    Rate,
    Bytes,
}

#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Table {
    fn add(&mut self, name: &'static str, value: f64, unit: Unit) {
        self.rows.push(Row {
            name,
            value,
            unit,
            ratio: None,
        });
    }

    fn against(&mut self, name: &'static str, base: &'static str, target: Target) {
        let row = self.rows.iter_mut().find(|r| r.name == name).unwrap();
        row.ratio = Some((base, target));
    }

    fn value(&self, name: &str) -> f64 {
        self.rows.iter().find(|r| r.name == name).unwrap().value
    }

    fn print(&self) {
        println!(
            "{:<28} {:>14}  {:<22} {:>8}  target",
            "measurement", "median", "baseline", "ratio"
        );
        for row in &self.rows {
            let value = match row.unit {
                Unit::Time if row.value >= 100_000.0 => {
                    format!("{:.0} us", row.value / 1_000.0)
                }
                Unit::Time => format!("{:.1} us", row.value / 1_000.0),
                Unit::Rate => format!("{:.0}/s", row.value),
                Unit::Bytes => format!("{:.1} MiB", row.value / 1_048_576.0),
            };
            let (base, ratio, target) = match row.ratio {
                Some((base, target)) => {
                    let ratio = row.value / self.value(base);
                    let target = match target {
                        Target::AtMost(t) => {
                            format!("<= {t}x {}", if ratio <= t { "met" } else { "MISSED" })
                        }
                        Target::AtLeast(t) => {
                            format!(">= {t}x {}", if ratio >= t { "met" } else { "MISSED" })
                        }
                        Target::None => String::new(),
                    };
                    (base, format!("{ratio:.2}x"), target)
                }
                None => ("", String::new(), String::new()),
            };
            println!(
                "{:<28} {:>14}  {:<22} {:>8}  {}",
                row.name, value, base, ratio, target
            );
        }
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    }
}

fn timed(mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_nanos() as f64
}

/// Enforcers of [`POLICY`] over one workspace, each with a log of its
/// own.
struct Kernels {
    fixture: kernel_testkit::Fixture,
    readme: String,
}

impl Kernels {
    fn new() -> Self {
        let (fixture, readme) = bench_fixture(POLICY);
        Self { fixture, readme }
    }

    fn spawn(&self, log: &str, buffered: bool) -> Kernel {
        let mut config = SpawnConfig::new(
            &self.fixture.policy,
            &self.fixture.workspace,
            self.fixture.state().join(log),
        )
        .enforcer(kernel_testkit::enforcer())
        .timeout(Duration::from_secs(30));
        if buffered {
            config = config.danger_evidence_os_buffered();
        }
        Kernel::spawn(config).unwrap()
    }
}

fn roundtrips(settings: &Settings, table: &mut Table) {
    let kernels = Kernels::new();
    let durable = kernels.spawn("durable.log", false);
    let buffered = kernels.spawn("buffered.log", true);

    // The real sizes of what travels and what is stored.
    let shapes = measure_shapes(&durable, &kernels.readme);
    let request_frame = shapes.request_frame;
    let record = vec![0xa5_u8; shapes.record_bytes];
    let body = shapes.receipt_body;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let verifying = key.verifying_key();
    let mut floor_file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(kernels.fixture.state().join("floor.log"))
        .unwrap();
    let echo = Echo::spawn(shapes.receipt_frame_bytes);

    let names = [
        "floor_unsynced",
        "floor_durable",
        "authorize_durable",
        "authorize_os_buffered",
    ];
    let mut samples: [Vec<f64>; 4] = Default::default();
    let mut floor = |sync: bool| {
        timed(|| {
            let signature = key.sign(&body);
            if sync {
                floor_file.write_all(&record).unwrap();
                floor_file.sync_data().unwrap();
            }
            black_box(echo.round_trip(request_frame.clone()));
            verifying.verify_strict(&body, &signature).unwrap();
        })
    };
    // Warm-up, then interleaved rounds.
    for _ in 0..settings.per_round / 4 {
        floor(false);
        floor(true);
        let _ = durable
            .authorize(Action::file_read(&kernels.readme))
            .unwrap();
        let _ = buffered
            .authorize(Action::file_read(&kernels.readme))
            .unwrap();
    }
    for _ in 0..settings.rounds {
        for _ in 0..settings.per_round {
            samples[0].push(floor(false));
        }
        for _ in 0..settings.per_round {
            samples[1].push(floor(true));
        }
        for _ in 0..settings.per_round {
            samples[2].push(timed(|| {
                black_box(
                    durable
                        .authorize(Action::file_read(&kernels.readme))
                        .unwrap(),
                );
            }));
        }
        for _ in 0..settings.per_round {
            samples[3].push(timed(|| {
                black_box(
                    buffered
                        .authorize(Action::file_read(&kernels.readme))
                        .unwrap(),
                );
            }));
        }
    }
    for (name, samples) in names.into_iter().zip(samples.iter_mut()) {
        table.add(name, median(samples), Unit::Time);
    }
    table.against("authorize_durable", "floor_durable", Target::AtMost(1.25));
    table.against(
        "authorize_os_buffered",
        "floor_unsynced",
        Target::AtMost(1.25),
    );
    echo.stop();
    let _ = durable.shutdown(Duration::from_secs(5));
    let _ = buffered.shutdown(Duration::from_secs(5));
}

/// `n` policies: four that a small agent policy has (read the workspace,
/// no ssh keys, no `rm`, GET to one API host) and allowlist entries of the
/// kinds that make large policy sets large (tools, hosts, programs,
/// protected files).
pub fn policy_set(n: usize) -> String {
    let mut text = String::from(
        r#"@id("read-ws") permit (principal, action == Action::"file_read", resource in Workspace::"root");
@id("no-ssh") forbid (principal, action, resource) when { resource has path && resource.path like "/home/*/.ssh/*" };
@id("no-rm") forbid (principal, action == Action::"exec", resource == Program::"/bin/rm");
@id("get-api") permit (principal, action == Action::"http", resource == Host::"api.example.com") when { context.method == "GET" };
"#,
    );
    for i in 4..n {
        let policy = match i % 4 {
            0 => format!(
                r#"@id("tool-{i}") permit (principal, action == Action::"tool_call", resource == Tool::"tool-{i}");"#
            ),
            1 => format!(
                r#"@id("host-{i}") permit (principal, action == Action::"http", resource == Host::"host-{i}.example.com") when {{ context.method == "GET" }};"#
            ),
            2 => format!(
                r#"@id("prog-{i}") permit (principal, action == Action::"exec", resource == Program::"/usr/bin/prog-{i}") unless {{ context.args.contains("--force") }};"#
            ),
            _ => format!(
                r#"@id("locked-{i}") forbid (principal, action == Action::"file_write", resource == File::"/ws/locked-{i}.txt");"#
            ),
        };
        text.push_str(&policy);
        text.push('\n');
    }
    text
}

/// The requests policy evaluation is measured on, in turn.
pub fn policy_requests() -> Vec<CanonicalAction> {
    let actions = [
        Action::file_read("/ws/README.md"),
        Action::ToolCall {
            name: "tool-8".into(),
            input: "{}".into(),
        },
        Action::Http {
            method: "GET".into(),
            url: "https://host-5.example.com/v1".into(),
        },
        Action::exec(Exec::new("/bin/rm").args(["-rf", "/ws"])),
    ];
    actions
        .into_iter()
        .map(|a| CanonicalAction::new(a, Some("/ws")).unwrap())
        .collect()
}

fn policies(settings: &Settings, table: &mut Table) {
    let requests = policy_requests();
    let engines: Vec<PolicyEngine> = [10, 100, 1000]
        .into_iter()
        .map(|n| {
            PolicyEngine::from_sources(
                &[("bench.cedar".into(), policy_set(n))],
                Environment::new("/ws", &["/state/kernel.key".into()]).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let names = [
        "policy_eval_10",
        "policy_eval_100",
        "policy_eval_1000",
        "policy_eval_1000_unindexed",
    ];
    let mut samples: [Vec<f64>; 4] = Default::default();
    let rounds = settings.rounds;
    let per_round = settings.policy_iterations / rounds;
    for _ in 0..rounds {
        for (which, samples) in samples.iter_mut().enumerate() {
            let engine = &engines[which.min(2)];
            for i in 0..per_round {
                let request = &requests[i % requests.len()];
                samples.push(timed(|| {
                    if which == 3 {
                        black_box(engine.evaluate_unindexed(request));
                    } else {
                        black_box(engine.evaluate(request));
                    }
                }));
            }
        }
    }
    for (name, samples) in names.into_iter().zip(samples.iter_mut()) {
        table.add(name, median(samples), Unit::Time);
    }
    table.against("policy_eval_100", "policy_eval_10", Target::None);
    table.against("policy_eval_1000", "policy_eval_10", Target::AtMost(3.0));
    table.against("policy_eval_1000_unindexed", "policy_eval_10", Target::None);
}

fn throughput(settings: &Settings, table: &mut Table) {
    let kernels = Kernels::new();
    let kernel = kernels.spawn("throughput.log", false);
    const BATCH: usize = 960;
    let names = ["throughput_1", "throughput_4", "throughput_16"];
    let threads = [1, 4, 16];
    let mut samples: [Vec<f64>; 3] = Default::default();
    decide_concurrently(&kernel, &kernels.readme, 16, BATCH);
    for _ in 0..settings.throughput_batches {
        for (which, samples) in samples.iter_mut().enumerate() {
            let seconds =
                decide_concurrently(&kernel, &kernels.readme, threads[which], BATCH).as_secs_f64();
            samples.push(BATCH as f64 / seconds);
        }
    }
    for (name, samples) in names.into_iter().zip(samples.iter_mut()) {
        table.add(name, median(samples), Unit::Rate);
    }
    table.against("throughput_4", "throughput_1", Target::None);
    table.against("throughput_16", "throughput_1", Target::AtLeast(10.0));
    let _ = kernel.shutdown(Duration::from_secs(10));
}

fn audits(table: &mut Table) {
    let dir = fixture_in(Path::new(env!("CARGO_TARGET_TMPDIR")), POLICY);
    let path = dir.evidence.clone();
    let key = SigningKey::from_bytes(&[9; 32]);
    let verifying = key.verifying_key();
    write_log(&path, &key, AUDIT_RECORDS, 1000, 500);
    let bytes = std::fs::read(&path).unwrap();
    let options = pinned(&verifying);
    let records = audit(&bytes, &options).unwrap().records as f64;
    let mut rates: Vec<f64> = (0..5)
        .map(|_| records / (timed(|| drop(black_box(audit(&bytes, &options).unwrap()))) / 1e9))
        .collect();
    table.add("audit_verify", median(&mut rates), Unit::Rate);
    let mut index = path.clone().into_os_string();
    index.push(".index");
    let mut whole: Vec<f64> = (0..5)
        .map(|_| {
            std::fs::remove_file(&index).unwrap();
            records / (timed(|| drop(black_box(EvidenceLog::open(&path).unwrap()))) / 1e9)
        })
        .collect();
    table.add("evidence_open_whole", median(&mut whole), Unit::Rate);
    let mut opens: Vec<f64> = (0..5)
        .map(|_| timed(|| drop(black_box(EvidenceLog::open(&path).unwrap()))))
        .collect();
    table.add("evidence_open", median(&mut opens), Unit::Time);
}

fn vm_hwm(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024.0
}

fn memory(table: &mut Table) {
    let kernels = Kernels::new();
    for (name, threads) in [("enforcer_peak_rss_1", 1), ("enforcer_peak_rss_16", 16)] {
        let kernel = kernels.spawn(&format!("{name}.log"), false);
        decide_concurrently(&kernel, &kernels.readme, threads, 2_000);
        let pid = kernel.enforcer_pid().unwrap();
        table.add(name, vm_hwm(pid), Unit::Bytes);
        let _ = kernel.shutdown(Duration::from_secs(10));
    }
}
