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
//!   reply, client verifies); ratio against `floor_durable` (target at
//!   most 1.15x);
//! - `authorize_os_buffered`: the same with evidence written to the OS but
//!   not synced (`--danger-evidence-os-buffered`); ratio against
//!   `floor_unsynced` (target at most 1.25x);
//! - `sign_receipt`, `verify_receipt`: one ed25519 `sign` of a real
//!   receipt body, and one `verify_strict` of it, alone in this process:
//!   the part of every decision's CPU that no change here removes;
//! - `policy_eval_{10,100,1000}`: `PolicyEngine::evaluate` alone (indexed)
//!   on a mix of four requests; ratio against 10 policies; and the same
//!   1000-policy set evaluated without the index, for reference;
//! - `throughput_{1,4,16}`: durable decisions per second with that many
//!   client threads sharing one enforcer session (group commit); ratio
//!   against one thread; `throughput_16_distinct`: the same with 16
//!   threads reading a different path on every request (nothing built for
//!   one request serves the next);
//! - `cpu_per_decision_16`: CPU time (user and system) of the enforcer
//!   (`/proc/PID/stat`) and of this process's client threads
//!   (`/proc/self/stat`) over the `throughput_16` batches, per decision;
//!   `throughput_16_of_cpu_limit`: `throughput_16` as a share of what the
//!   machine's cores could decide at that CPU cost if nothing ever waited;
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
//! of `roundtrips`, `policies`, `throughput`, `audits`, `memory`;
//! `-- --runs N` runs the table N times in a row and ends with every
//! ratio and checked row of each run, their spread, and in how many runs
//! each target was met).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark harness"
)]

mod common;

use common::{
    Echo, POLICY, bench_fixture, decide_concurrently, decide_concurrently_with, measure_shapes,
    write_log,
};
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
    // `--runs N`: the whole (or `--only`) table N times in a row.
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |n| n.parse().expect("--runs takes a number"))
        .max(1);
    let mut tables = Vec::new();
    for run in 0..runs {
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
        if !json {
            if runs > 1 {
                println!("run {} of {runs}", run + 1);
            }
            table.print();
            if runs > 1 {
                println!();
            }
        }
        tables.push(table);
    }
    if json {
        // Each row's median over the runs.
        let map: BTreeMap<&str, f64> = tables[0]
            .rows
            .iter()
            .map(|r| {
                let mut values: Vec<f64> = tables.iter().map(|t| t.value(r.name)).collect();
                (r.name, median(&mut values))
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&map).unwrap());
    } else if runs > 1 {
        print_spread(&tables);
    }
}

/// Every row with a ratio or a limit, run by run, with its spread and in
/// how many runs its target was met.
fn print_spread(tables: &[Table]) {
    println!(
        "{runs} runs: each checked value per run, spread (min..max)",
        runs = tables.len()
    );
    for row in &tables[0].rows {
        if row.ratio.is_none() && row.limit.is_none() {
            continue;
        }
        let checked: Vec<(String, Option<bool>)> =
            tables.iter().map(|t| t.checked(t.row(row.name))).collect();
        let values: Vec<f64> = tables
            .iter()
            .map(|t| t.checked_value(t.row(row.name)))
            .collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let met = checked.iter().filter(|(_, met)| *met == Some(true)).count();
        let targets = checked.iter().filter(|(_, met)| met.is_some()).count();
        let each: Vec<&str> = checked.iter().map(|(shown, _)| shown.as_str()).collect();
        let spread = format!(
            "{}..{}",
            tables[0].show_checked(row, min),
            tables[0].show_checked(row, max)
        );
        let target = if targets > 0 {
            format!("met in {met} of {targets}")
        } else {
            String::new()
        };
        println!(
            "{:<28} {}  spread {}  {}",
            row.name,
            each.join(" "),
            spread,
            target
        );
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
    /// A target on the value itself (in the row's unit: microseconds for
    /// times, per second for rates, percent for shares).
    limit: Option<Target>,
}

#[derive(Clone, Copy)]
enum Unit {
    Time,
    Rate,
    Bytes,
    Percent,
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
            limit: None,
        });
    }

    /// Checks `name`'s value itself against `target` (in the unit shown).
    fn limit(&mut self, name: &'static str, target: Target) {
        let row = self.rows.iter_mut().find(|r| r.name == name).unwrap();
        row.limit = Some(target);
    }

    fn row(&self, name: &str) -> &Row {
        self.rows.iter().find(|r| r.name == name).unwrap()
    }

    /// The value a row's target is checked on: its ratio, or its value in
    /// the unit shown.
    fn checked_value(&self, row: &Row) -> f64 {
        match (row.ratio, row.limit) {
            (Some((_, Target::None)), Some(_)) | (None, _) => shown(row.unit, row.value),
            (Some((base, _)), _) => row.value / self.value(base),
        }
    }

    /// `value` (as [`checked_value`](Self::checked_value) gives it) as
    /// printed.
    fn show_checked(&self, row: &Row, value: f64) -> String {
        match (row.ratio, row.limit) {
            (Some((_, Target::None)), Some(_)) | (None, _) => {
                format_value(row.unit, value_from_shown(row.unit, value))
            }
            (Some(_), _) => format!("{value:.2}x"),
        }
    }

    /// The checked value as printed, and whether its target is met.
    fn checked(&self, row: &Row) -> (String, Option<bool>) {
        let value = self.checked_value(row);
        let target = match (row.ratio, row.limit) {
            (Some((_, Target::None)), Some(limit)) | (None, Some(limit)) => limit,
            (Some((_, target)), _) => target,
            (None, None) => Target::None,
        };
        (self.show_checked(row, value), target.met(value))
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
            let value = format_value(row.unit, row.value);
            let unit = match row.unit {
                Unit::Time => " us",
                Unit::Rate => "/s",
                Unit::Bytes => " MiB",
                Unit::Percent => "%",
            };
            let on_value = |limit: Target| limit.describe(shown(row.unit, row.value), unit);
            let (base, ratio, target) = match (row.ratio, row.limit) {
                (Some((base, Target::None)), Some(limit)) => {
                    let ratio = row.value / self.value(base);
                    (base, format!("{ratio:.2}x"), on_value(limit))
                }
                (Some((base, target)), _) => {
                    let ratio = row.value / self.value(base);
                    (base, format!("{ratio:.2}x"), target.describe(ratio, "x"))
                }
                (None, Some(limit)) => ("", String::new(), on_value(limit)),
                (None, None) => ("", String::new(), String::new()),
            };
            println!(
                "{:<28} {:>14}  {:<22} {:>8}  {}",
                row.name, value, base, ratio, target
            );
        }
    }
}

impl Target {
    /// Whether `value` meets the target (`None`: there is none).
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Self::AtMost(t) => Some(value <= t),
            Self::AtLeast(t) => Some(value >= t),
            Self::None => None,
        }
    }

    /// The target and whether `value` meets it, as printed.
    fn describe(self, value: f64, unit: &str) -> String {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        match self {
            Self::AtMost(t) => format!("<= {t}{unit} {}", verdict(value <= t)),
            Self::AtLeast(t) => format!(">= {t}{unit} {}", verdict(value >= t)),
            Self::None => String::new(),
        }
    }
}

/// A value in the unit it is printed in (microseconds, per second, MiB,
/// percent).
fn shown(unit: Unit, value: f64) -> f64 {
    match unit {
        Unit::Time => value / 1_000.0,
        Unit::Rate | Unit::Percent => value,
        Unit::Bytes => value / 1_048_576.0,
    }
}

/// The inverse of [`shown`].
fn value_from_shown(unit: Unit, value: f64) -> f64 {
    match unit {
        Unit::Time => value * 1_000.0,
        Unit::Rate | Unit::Percent => value,
        Unit::Bytes => value * 1_048_576.0,
    }
}

fn format_value(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Time if value >= 100_000.0 => format!("{:.0} us", value / 1_000.0),
        Unit::Time => format!("{:.1} us", value / 1_000.0),
        Unit::Rate => format!("{value:.0}/s"),
        Unit::Bytes => format!("{:.1} MiB", value / 1_048_576.0),
        Unit::Percent => format!("{value:.0}%"),
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

    fn workspace(&self) -> &str {
        self.fixture.workspace.to_str().unwrap()
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
    // What every decision costs on the CPU however it is built: the
    // enforcer's signature and the client's check of it.
    let mut signing: Vec<f64> = (0..settings.per_round)
        .map(|_| {
            timed(|| {
                black_box(key.sign(black_box(&body)));
            })
        })
        .collect();
    let signature = key.sign(&body);
    let mut verifying_times: Vec<f64> = (0..settings.per_round)
        .map(|_| {
            timed(|| {
                verifying
                    .verify_strict(black_box(&body), black_box(&signature))
                    .unwrap();
            })
        })
        .collect();
    table.add("sign_receipt", median(&mut signing), Unit::Time);
    table.add("verify_receipt", median(&mut verifying_times), Unit::Time);
    table.against("authorize_durable", "floor_durable", Target::AtMost(1.15));
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

/// CPU time (user and system, all threads) process `pid` has used, from
/// `/proc/PID/stat` (`self` for this process).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 14th and 15th of the line.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    #[allow(unsafe_code, reason = "sysconf has no safe wrapper in std")]
    // SAFETY: `sysconf` only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap().max(1);
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// CPU time of the enforcer and of this process (the client threads, and
/// the client's channel thread) together.
fn cpu_both(enforcer: &str) -> Duration {
    cpu_time(enforcer) + cpu_time("self")
}

fn throughput(settings: &Settings, table: &mut Table) {
    let kernels = Kernels::new();
    let kernel = kernels.spawn("throughput.log", false);
    let enforcer = kernel.enforcer_pid().unwrap().to_string();
    const BATCH: usize = 960;
    let names = [
        "throughput_1",
        "throughput_4",
        "throughput_16",
        "throughput_16_distinct",
    ];
    let threads = [1, 4, 16, 16];
    let mut samples: [Vec<f64>; 4] = Default::default();
    // CPU used during the 16-thread batches, and their decisions.
    let mut cpu = Duration::ZERO;
    let mut decisions = 0;
    decide_concurrently(&kernel, &kernels.readme, 16, BATCH);
    // Every request of the distinct row reads a path never read before.
    for round in 0..settings.throughput_batches {
        for (which, samples) in samples.iter_mut().enumerate() {
            let before = cpu_both(&enforcer);
            let elapsed = if which == 3 {
                decide_concurrently_with(&kernel, threads[which], BATCH, |thread, i| {
                    format!("{}/d{round}/t{thread}/f{i}.txt", kernels.workspace())
                })
            } else {
                decide_concurrently(&kernel, &kernels.readme, threads[which], BATCH)
            };
            if which == 2 {
                cpu += cpu_both(&enforcer) - before;
                decisions += BATCH;
            }
            samples.push(BATCH as f64 / elapsed.as_secs_f64());
        }
    }
    for (name, samples) in names.into_iter().zip(samples.iter_mut()) {
        table.add(name, median(samples), Unit::Rate);
    }
    table.against("throughput_4", "throughput_1", Target::None);
    table.against("throughput_16", "throughput_1", Target::None);
    table.limit("throughput_16", Target::AtLeast(20_000.0));
    table.against("throughput_16_distinct", "throughput_16", Target::None);
    let per_decision = cpu.as_nanos() as f64 / decisions as f64;
    table.add("cpu_per_decision_16", per_decision, Unit::Time);
    table.limit("cpu_per_decision_16", Target::AtMost(40.0));
    // What the cores could decide at that cost if nothing ever waited.
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let limit = cores * 1e9 / per_decision;
    table.add(
        "throughput_16_of_cpu_limit",
        100.0 * table.value("throughput_16") / limit,
        Unit::Percent,
    );
    table.limit("throughput_16_of_cpu_limit", Target::AtLeast(80.0));
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
    table.limit("audit_verify", Target::AtLeast(60_000.0));
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
        table.limit(name, Target::AtMost(16.0));
        let _ = kernel.shutdown(Duration::from_secs(10));
    }
}
