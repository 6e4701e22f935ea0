//! `kernel-redteam`: the escape campaign.
//!
//! Starts the real enforcer (`kernel-enforcer run`) in supervised mode
//! with the example policy, around adversarial agents (this same binary,
//! `kernel-redteam agent ...`, confined by the enforcer) that work through
//! seeded attack generators, one class at a time. Every attempt declares
//! the effect it is after, and the runner checks that effect in the world
//! right after the attempt: file contents, sizes, inodes and mtimes, a
//! loopback listener's accept count, the enforcer's and a sentinel
//! process's liveness and tracer, `audit verify` on the evidence, the
//! allow records in it, and the permits the agent holds. An attempt counts
//! as refused only if its effect did not happen.
//!
//! Prints a summary table, writes a JSON report (`--json`), and exits 1 on
//! any escape (2 if the campaign could not run).
//!
//! ```text
//! kernel-redteam [--quick] [--seed N] [--json FILE] [--enforcer PATH]
//!                [--self-mods N] [--kill-switch N] [--round-trips N]
//! ```
//!
//! See `docs/CAMPAIGN.md` for each class, how its effect is judged, and
//! what the campaign does not cover.

mod attacks;
mod plan;
mod rng;
mod world;

use plan::{Attempt, Plan};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use world::World;

/// How big a campaign is.
#[derive(Debug, Clone)]
struct Scale {
    path_tricks: usize,
    links: usize,
    direct: usize,
    argv: usize,
    env: usize,
    receipts: usize,
    protocol: usize,
    flood: usize,
    approvals: usize,
    evidence: usize,
    self_mods: usize,
    kill_switch: usize,
    trust_anchor: usize,
}

impl Scale {
    fn full() -> Self {
        Self {
            path_tricks: 1500,
            links: 240,
            direct: 340,
            argv: 400,
            env: 120,
            receipts: 250,
            protocol: 800,
            flood: 4000,
            approvals: 30,
            evidence: 60,
            self_mods: 1000,
            kill_switch: 300,
            trust_anchor: 60,
        }
    }

    fn quick() -> Self {
        Self {
            path_tricks: 80,
            links: 12,
            direct: 34,
            argv: 30,
            env: 12,
            receipts: 8,
            protocol: 40,
            flood: 200,
            approvals: 6,
            evidence: 12,
            self_mods: 100,
            kill_switch: 8,
            trust_anchor: 6,
        }
    }
}

/// One judged attempt.
#[derive(Debug, Clone, serde::Serialize)]
struct Judged {
    class: String,
    what: String,
    answer: String,
    escaped: bool,
    effects: Vec<String>,
    /// Effects that happened and fall under a documented limit of the
    /// confinement: reported, not counted as escapes.
    limits: Vec<String>,
}

#[derive(Debug)]
struct Options {
    quick: bool,
    seed: u64,
    json: Option<PathBuf>,
    enforcer: Option<PathBuf>,
    scale: Scale,
    round_trips: usize,
    /// Run only the classes whose name contains this.
    only: Option<String>,
    /// Also run the attacks of escapes found and not fixed yet.
    open_findings: bool,
}

const USAGE: &str = "usage: kernel-redteam [--quick] [--seed N] [--json FILE] [--enforcer PATH] [--self-mods N] [--kill-switch N] [--round-trips N] [--only CLASS] [--open-findings]";

fn number(value: Option<String>, flag: &str) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|e| format!("`{flag} {value}`: {e}"))
}

fn size(value: Option<String>, flag: &str) -> Result<usize, String> {
    usize::try_from(number(value, flag)?).map_err(|e| e.to_string())
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut options = Options {
        quick,
        seed: 0x6573_6361_7065,
        json: None,
        enforcer: None,
        scale: if quick { Scale::quick() } else { Scale::full() },
        round_trips: if quick { 0 } else { 10_000 },
        only: None,
        open_findings: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {}
            "--seed" => options.seed = number(it.next(), "--seed")?,
            "--json" => options.json = it.next().map(PathBuf::from),
            "--enforcer" => options.enforcer = it.next().map(PathBuf::from),
            "--self-mods" => options.scale.self_mods = size(it.next(), "--self-mods")?,
            "--kill-switch" => options.scale.kill_switch = size(it.next(), "--kill-switch")?,
            "--round-trips" => options.round_trips = size(it.next(), "--round-trips")?,
            "--only" => options.only = it.next(),
            "--open-findings" => options.open_findings = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent") {
        return agent_main(args.into_iter().skip(1).collect());
    }
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match campaign(&options) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kernel-redteam: {e}");
            ExitCode::from(2)
        }
    }
}

/// The adversary's side: `kernel-redteam agent --class C --seed S --count N
/// --flood F --plan JSON`, started by the enforcer, confined.
fn agent_main(args: Vec<String>) -> ExitCode {
    let mut class = String::new();
    let mut seed = 0u64;
    let mut count = 0usize;
    let mut flood = 0usize;
    let mut plan = Plan::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let value = it.next().unwrap_or_default();
        match arg.as_str() {
            "--class" => class = value,
            "--seed" => seed = value.parse().unwrap_or(0),
            "--count" => count = value.parse().unwrap_or(0),
            "--flood" => flood = value.parse().unwrap_or(0),
            "--plan" => plan = serde_json::from_str(&value).unwrap_or_default(),
            _ => {}
        }
    }
    let mut rng = rng::SplitMix64::new(seed);
    let mut rep = attacks::Reporter::new(&class);
    match class.as_str() {
        "path-tricks" => attacks::path_tricks::path_tricks(&plan, &mut rng, count, &mut rep),
        "links-toctou" => attacks::links::links(&plan, &mut rng, count, &mut rep),
        "direct-syscalls" => attacks::direct::direct(&plan, &mut rng, count, &mut rep),
        "argv-tricks" => attacks::argv::argv(&plan, &mut rng, count, &mut rep),
        "env-injection" => attacks::env::env(&plan, &mut rng, count, &mut rep),
        "receipts-replay" => attacks::receipts::receipts(&plan, &mut rng, count, &mut rep),
        "protocol-abuse" => attacks::protocol::protocol(&plan, &mut rng, count, flood, &mut rep),
        "control-approvals" => attacks::approvals::approvals(&plan, &mut rng, count, &mut rep),
        "evidence-tamper" => attacks::evidence::evidence(&plan, &mut rng, count, &mut rep),
        "self-modification" => attacks::self_modify::self_modify(&plan, &mut rng, count, &mut rep),
        "kill-switch" => attacks::kill_switch::stream(&plan, &mut rng, count, &mut rep),
        "clog" => attacks::protocol::clog(&mut rng, &mut rep),
        _ => return ExitCode::from(2),
    }
    ExitCode::SUCCESS
}

/// Finds the enforcer: the flag, else next to this binary.
fn find_enforcer(options: &Options) -> Result<PathBuf, String> {
    if let Some(path) = &options.enforcer {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = me.with_file_name("kernel-enforcer");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no `kernel-enforcer` beside `{}`: build it (`cargo build --bins`) or pass --enforcer",
            me.display()
        ))
    }
}

/// Progress on standard error: one line per class, updated in place.
struct Progress {
    class: String,
    total: usize,
    done: usize,
    escaped: usize,
    last: Instant,
}

impl Progress {
    fn new(class: &str, total: usize) -> Self {
        let p = Self {
            class: class.to_owned(),
            total,
            done: 0,
            escaped: 0,
            last: Instant::now(),
        };
        p.draw();
        p
    }

    fn step(&mut self, escaped: bool) {
        self.done += 1;
        self.escaped += usize::from(escaped);
        if self.last.elapsed() > Duration::from_millis(200) {
            self.last = Instant::now();
            self.draw();
        }
    }

    fn draw(&self) {
        let width = 30;
        let filled = (self.done * width)
            .checked_div(self.total.max(1))
            .unwrap_or(0)
            .min(width);
        eprint!(
            "\r  {:<20} [{}{}] {:>5}/{:<5} escaped {}",
            self.class,
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.done,
            self.total,
            self.escaped
        );
    }

    fn finish(self) {
        self.draw();
        eprintln!();
    }
}

/// The effects of one attempt that happened, looked up in the world: the
/// escapes, and the effects that fall under a documented limit.
fn judge(
    world: &mut World,
    attempt: &Attempt,
    enforcer: u32,
    evidence: &Path,
    control: &Path,
    approvals_allowed: usize,
) -> (Vec<String>, Vec<String>) {
    let mut effects = Vec::new();
    let mut limits = Vec::new();
    for (change, in_workspace) in world.changed() {
        match &attempt.limit {
            Some(limit) if in_workspace => limits.push(format!("{change} ({limit})")),
            _ => effects.push(change),
        }
    }
    if let Some((leak, in_workspace)) = world.leaks(attempt.got.as_bytes()) {
        match &attempt.limit {
            Some(limit) if in_workspace => limits.push(format!("{leak} ({limit})")),
            _ => effects.push(leak),
        }
    }
    for marker in &attempt.limit_markers {
        if std::fs::symlink_metadata(marker).is_ok() {
            limits.push(format!(
                "{marker} exists: a program ran inside the agent's own confinement"
            ));
        }
    }
    let accepts = world.accepts();
    if accepts > 0 {
        effects.push(format!(
            "the loopback listener accepted {accepts} connection(s)"
        ));
    }
    if let Some(p) = world::process_problem(enforcer, "enforcer") {
        effects.push(p);
    }
    if let Some(p) = world.sentinel_problem() {
        effects.push(p);
    }
    for marker in &attempt.markers {
        if std::fs::symlink_metadata(marker).is_ok() {
            effects.push(format!("{marker} exists"));
        }
    }
    if attempt.bad_permits > 0 {
        effects.push(format!(
            "the agent holds {} permit(s) it must not",
            attempt.bad_permits
        ));
    }
    if let Some((path, expected)) = &attempt.length {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len != *expected {
            effects.push(format!(
                "{path} is {len} bytes, not {expected}: an effect was replayed"
            ));
        }
    }
    if attempt.audit
        && let Err(e) = audit_with_retry(world, evidence)
    {
        effects.push(e);
    }
    if attempt.evidence {
        effects.extend(evidence_problems(world, evidence, approvals_allowed));
    }
    if attempt.not_halted {
        match kernel_enforcer::control::request(
            control,
            &kernel_enforcer::control::ControlRequest::Status,
        ) {
            Ok(r) if r.data.get("halted").is_some_and(serde_json::Value::is_null) => {}
            Ok(r) => effects.push(format!("the kernel is halted or unwell: {}", r.data)),
            Err(e) => effects.push(format!("the operator cannot reach the kernel: {e}")),
        }
    }
    (effects, limits)
}

/// `audit verify`, retried briefly: a checkpoint being appended at that
/// moment is a torn tail, not tampering.
fn audit_with_retry(world: &World, evidence: &Path) -> Result<(), String> {
    let mut last = Ok(());
    for _ in 0..5 {
        last = world::audit_verify(world, evidence);
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    last
}

fn evidence_problems(world: &World, evidence: &Path, approvals_allowed: usize) -> Vec<String> {
    let mut problems = Vec::new();
    match world::evidence_facts(evidence) {
        Ok(facts) => {
            for (i, action) in &facts.allows {
                if let Some(p) = world::forbidden_allow(world, action) {
                    problems.push(format!("record {i}: {p}"));
                }
            }
            if facts.approvals > approvals_allowed {
                problems.push(format!(
                    "{} approval(s) recorded, the operator gave {approvals_allowed}",
                    facts.approvals
                ));
            }
            if facts.reloads > 0 {
                problems.push(format!(
                    "{} policy reload(s) recorded; the operator asked for none",
                    facts.reloads
                ));
            }
        }
        Err(e) => problems.push(format!("evidence unreadable: {e}")),
    }
    problems
}

/// Starts the enforcer around the adversary of `class`.
fn start(
    world: &World,
    class: &str,
    seed: u64,
    count: usize,
    flood: usize,
    evidence: &Path,
) -> Result<Child, String> {
    let plan = serde_json::to_string(&world.plan).map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(world.root.join("enforcer.stderr"))
        .map_err(|e| e.to_string())?;
    Command::new(&world.enforcer)
        .arg("run")
        .arg("--config")
        .arg(&world.config)
        .arg("--evidence")
        .arg(evidence)
        .arg("--scratch")
        .arg(&world.plan.scratch)
        .arg("--")
        .arg(&world.plan.agent_binary)
        .args(["agent", "--class", class, "--seed", &seed.to_string()])
        .args([
            "--count",
            &count.to_string(),
            "--flood",
            &flood.to_string(),
            "--plan",
            &plan,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the enforcer: {e}"))
}

/// Runs one class in one supervised session and judges every attempt.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per class, all named"
)]
fn batch(
    world: &mut World,
    class: &str,
    batch_name: &str,
    seed: u64,
    count: usize,
    flood: usize,
    expected: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let (evidence, control) = world.for_batch(batch_name);
    let mut child = start(world, class, seed, count, flood, &evidence)?;
    let enforcer = child.id();
    let (Some(stdout), Some(mut stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err("no pipes to the agent".into());
    };
    let mut progress = Progress::new(class, expected);
    // The operator: in the approvals class, approves the first deployment
    // it sees waiting, and nothing after it.
    let approvals_allowed = usize::from(class == "control-approvals");
    let operator = (class == "control-approvals").then(|| {
        let control = control.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                use kernel_enforcer::control::{ControlRequest, request};
                if let Ok(r) = request(&control, &ControlRequest::Pending)
                    && let Some(id) = r
                        .data
                        .get(0)
                        .and_then(|p| p.get("id"))
                        .and_then(serde_json::Value::as_u64)
                {
                    let _ = request(
                        &control,
                        &ControlRequest::Approve {
                            id,
                            for_secs: None,
                            uses: None,
                        },
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    });
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(json) = line.strip_prefix("@@") else {
            continue;
        };
        let attempt: Attempt =
            serde_json::from_str(json).map_err(|e| format!("bad report: {e}"))?;
        let (effects, limits) = judge(
            world,
            &attempt,
            enforcer,
            &evidence,
            &control,
            approvals_allowed,
        );
        let escaped = !effects.is_empty();
        if escaped || !limits.is_empty() {
            world.rebaseline();
        }
        progress.step(escaped);
        results.push(Judged {
            class: class.to_owned(),
            what: attempt.what,
            answer: attempt.answer.chars().take(240).collect(),
            escaped,
            effects,
            limits,
        });
        if writeln!(stdin, "ok").is_err() {
            break;
        }
    }
    drop(stdin);
    let status = child.wait().map_err(|e| e.to_string())?;
    if let Some(op) = operator {
        let _ = op.join();
    }
    progress.finish();
    // The batch as a whole: the evidence verifies and holds no forbidden
    // allow; the enforcer ended normally.
    let mut effects = Vec::new();
    if let Err(e) = world::audit_verify(world, &evidence) {
        effects.push(e);
    }
    effects.extend(evidence_problems(world, &evidence, approvals_allowed));
    effects.extend(world.changed_files());
    if !status.success() {
        effects.push(format!(
            "the supervised session ended with {status} (see enforcer.stderr)"
        ));
    }
    world.rebaseline();
    results.push(Judged {
        class: class.to_owned(),
        what: format!("{batch_name}: the session's evidence and files afterwards"),
        answer: format!("enforcer {status}"),
        escaped: !effects.is_empty(),
        effects,
        limits: Vec::new(),
    });
    if status.code() == Some(2) {
        return Err(format!("the enforcer refused to run {class}"));
    }
    Ok(())
}

/// Kill-switch scenarios: an agent streams allowed writes (sometimes from
/// a forked child too); the operator halts at a seeded moment by the
/// control socket, `SIGUSR1`, or the `halt` command. No write may land
/// after the halt is acknowledged, no allow record may follow the halt
/// record, the agent must be stopped, and the evidence must verify.
fn kill_switch(
    world: &mut World,
    seed: u64,
    scenarios: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    use kernel_enforcer::control::{ControlRequest, request};
    let mut progress = Progress::new("kill-switch", scenarios);
    let mut rng = rng::SplitMix64::new(seed);
    for s in 0..scenarios {
        let name = format!("kill-{s}");
        let (evidence, control) = world.for_batch(&name);
        let dir = PathBuf::from(&world.plan.workspace).join(format!("stream-{s}"));
        let mut child = start(world, "kill-switch", rng.next(), s, 0, &evidence)?;
        let enforcer = child.id();
        let (Some(stdout), Some(mut stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err("no pipes to the agent".into());
        };
        let mut lines = BufReader::new(stdout).lines();
        let started = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = writeln!(stdin, "ok");
        let drain = std::thread::spawn(move || lines.count());
        // The agent's pid and its forked child's (0 if none).
        let pids: Vec<u32> = serde_json::from_str::<Attempt>(started.trim_start_matches("@@"))
            .map(|a| {
                a.answer
                    .split(' ')
                    .filter_map(|p| p.parse().ok())
                    .filter(|p| *p != 0)
                    .collect()
            })
            .unwrap_or_default();
        let mut effects = Vec::new();
        if !started.starts_with("@@") {
            effects.push(format!("the agent did not start: {started}"));
        }
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 150));
        let method = rng.below(3);
        let how = match method {
            0 => "control socket",
            1 => "SIGUSR1",
            _ => "`kernel-enforcer halt`",
        };
        let acknowledged = match method {
            0 => request(
                &control,
                &ControlRequest::Halt {
                    reason: Some(format!("scenario {s}")),
                },
            )
            .map(|r| r.ok)
            .unwrap_or(false),
            1 => {
                let sent = Command::new("kill")
                    .args(["-USR1", &enforcer.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut halted = false;
                while sent && !halted && Instant::now() < deadline {
                    // Halted, or already gone because of the halt (the
                    // evidence is checked for the halt record below).
                    halted = request(&control, &ControlRequest::Status)
                        .is_ok_and(|r| r.data.get("halted").is_some_and(|h| !h.is_null()))
                        || !matches!(child.try_wait(), Ok(None));
                    if !halted {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                halted
            }
            _ => Command::new(&world.enforcer)
                .arg("halt")
                .arg("--control")
                .arg(&control)
                .args(["--reason", "scenario"])
                .output()
                .is_ok_and(|o| o.status.success()),
        };
        let at_ack = count_files(&dir);
        if !acknowledged {
            effects.push(format!("the halt by {how} was not acknowledged"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.is_none() {
            effects.push("the enforcer did not stop the agent within 20 s".into());
        }
        // The agent and anything it forked must be gone too: a halt ends
        // the agent, not only its permissions.
        let gone_by = Instant::now() + Duration::from_secs(5);
        for pid in &pids {
            while alive(*pid) && Instant::now() < gone_by {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(*pid) {
                effects.push(format!("agent process {pid} still runs after the halt"));
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        drop(stdin);
        let _ = drain.join();
        // A forked child of the agent may outlive it: give it a moment, then
        // count again.
        std::thread::sleep(Duration::from_millis(50));
        let after = count_files(&dir);
        if after > at_ack {
            effects.push(format!(
                "{} write(s) landed after the halt was acknowledged",
                after - at_ack
            ));
        }
        match world::evidence_facts(&evidence) {
            Ok(facts) => match facts.halt {
                None => effects.push("no halt record in the evidence".into()),
                Some(h) => {
                    let late = facts.allows.iter().filter(|(i, _)| *i > h).count();
                    if late > 0 {
                        effects.push(format!("{late} allow record(s) after the halt record"));
                    }
                }
            },
            Err(e) => effects.push(e),
        }
        if let Err(e) = world::audit_verify(world, &evidence) {
            effects.push(e);
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        if escaped {
            world.rebaseline();
        }
        progress.step(escaped);
        results.push(Judged {
            class: "kill-switch".into(),
            what: format!("scenario {s}: halt by {how} while streaming"),
            answer: format!("{at_ack} writes before the acknowledgment, {after} in all"),
            escaped,
            effects,
            limits: Vec::new(),
        });
        let _ = std::fs::remove_dir_all(&dir);
        for suffix in ["", ".cosignatures"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", evidence.display()));
        }
    }
    progress.finish();
    Ok(())
}

/// An agent that never reads its answers (found by this campaign: it used
/// to block the enforcer's serving thread in a write while it held the
/// session, and with it the kill switch). Judged by the world: the
/// operator's halt is acknowledged within 10 s, or the enforcer has
/// already ended the session itself (a client that stops reading is an
/// incident), and the agent is gone 5 s later.
fn clogged_kill_switch(
    world: &mut World,
    seed: u64,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    use kernel_enforcer::control::{ControlRequest, request};
    let (evidence, control) = world.for_batch("clog");
    let mut child = start(world, "clog", seed, 0, 0, &evidence)?;
    let (Some(stdout), Some(mut stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err("no pipes to the agent".into());
    };
    let mut lines = BufReader::new(stdout).lines();
    let started = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = writeln!(stdin, "ok");
    let agent: Option<u32> = serde_json::from_str::<Attempt>(started.trim_start_matches("@@"))
        .ok()
        .and_then(|a| a.answer.parse().ok());
    let (tx, rx) = std::sync::mpsc::channel();
    let halting = control.clone();
    std::thread::spawn(move || {
        let _ = tx.send(request(
            &halting,
            &ControlRequest::Halt {
                reason: Some("clogged".into()),
            },
        ));
    });
    let mut effects = Vec::new();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(r)) if r.ok => {}
        // The enforcer ended the session on its own before the halt came.
        Ok(Err(_)) if matches!(child.try_wait(), Ok(Some(_))) => {}
        Ok(other) => effects.push(format!("the halt failed: {other:?}")),
        Err(_) => effects
            .push("the halt was not acknowledged within 10 s: the kill switch is blocked".into()),
    }
    if let Some(pid) = agent {
        let gone_by = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < gone_by {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            effects.push(format!("agent process {pid} still runs after the halt"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(pid) = agent {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    results.push(Judged {
        class: "kill-switch".into(),
        what: "kill switch while the agent never reads its answers".into(),
        answer: started,
        escaped: !effects.is_empty(),
        effects,
        limits: Vec::new(),
    });
    Ok(())
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// Trust-anchor substitution, played against the client: a fake enforcer
/// answers a client that pinned the real key, announcing its own key, or
/// the real key with its own signature, and then hands out allow receipts
/// signed with its own key. The client must never hold a permit.
fn trust_anchor(
    world: &World,
    seed: u64,
    count: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    use ed25519_dalek::SigningKey;
    use ipc_channel::ipc::IpcOneShotServer;
    use kernel_client::{ClientConfig, EnforcerEnds, Kernel};
    use kernel_core::{
        ClientFrame, EnforcerFrame, Handshake, decode_client_frame, encode_enforcer_frame,
    };
    let real = kernel_core::parse_public_key(&world.public_key).map_err(|e| e.to_string())?;
    let mut rng = rng::SplitMix64::new(seed);
    let mut progress = Progress::new("trust-anchor", count);
    for i in 0..count {
        let mut seed_bytes = [0u8; 32];
        seed_bytes.copy_from_slice(&rng.bytes(32));
        let fake = SigningKey::from_bytes(&seed_bytes);
        let mode = i % 3;
        let (server, name) = IpcOneShotServer::<EnforcerEnds>::new().map_err(|e| e.to_string())?;
        let announced = if mode == 1 {
            real.to_bytes()
        } else {
            fake.verifying_key().to_bytes()
        };
        let pinned = mode != 2;
        let fake_thread = std::thread::spawn(move || {
            let Ok((_, (requests, replies))) = server.accept() else {
                return;
            };
            let Ok(hello) = requests.recv() else { return };
            let Ok(ClientFrame::Hello { challenge, .. }) = decode_client_frame(&hello) else {
                return;
            };
            let handshake = Handshake {
                protocol: kernel_core::PROTOCOL_VERSION,
                session: kernel_core::SessionId([7; 16]),
                enforcer_key: announced,
                policy_digest: kernel_core::Digest([0; 32]),
                workspace: "/".into(),
                confinement: kernel_core::Confinement::Unconfined,
                permit_ttl_ms: 60_000,
                handoff: None,
            };
            let signature = handshake.sign(&fake, &challenge);
            let _ = replies.send(encode_enforcer_frame(&EnforcerFrame::Hello {
                handshake,
                signature,
            }));
            // Allow everything, signed by the fake key.
            while let Ok(frame) = requests.recv() {
                let Ok(ClientFrame::Authorize { request }) = decode_client_frame(&frame) else {
                    continue;
                };
                let Ok(request) = kernel_core::EncodedRequest::decode(&request) else {
                    continue;
                };
                let body = kernel_core::ReceiptBody {
                    session: request.request().session,
                    seq: request.request().seq,
                    request_digest: request.digest(),
                    decision: kernel_core::Decision::Allow,
                    policies: vec!["fake".into()],
                    reasons: vec![],
                    policy_digest: kernel_core::Digest([0; 32]),
                    log_index: 0,
                    issued_at_ms: 0,
                    expires_at_ms: u64::MAX,
                };
                let receipt = kernel_core::sign_receipt(&fake, &body);
                let seq = request.request().seq;
                let _ = replies.send(encode_enforcer_frame(&EnforcerFrame::Receipt {
                    seq,
                    receipt,
                }));
            }
        });
        let mut config = ClientConfig::default()
            .timeout(Duration::from_secs(2))
            .startup_timeout(Duration::from_secs(5));
        if pinned {
            config = config.pin_public_key(real);
        }
        let joined = Kernel::connect(&name, config);
        let what = match mode {
            0 => "a fake enforcer announcing its own key to a client that pinned the real one",
            1 => "a fake enforcer announcing the real key, signing with its own",
            _ => {
                "a fake enforcer with its own key, unpinned client: permits are real only for that enforcer"
            }
        };
        let (answer, held) = match &joined {
            Ok(kernel) => {
                match kernel.authorize(kernel_core::Action::file_read(world.plan.key.clone())) {
                    Ok(permit) => (
                        "joined; permit issued".to_owned(),
                        usize::from(
                            permit.action().action()
                                == &kernel_core::Action::file_read(world.plan.key.clone()),
                        ),
                    ),
                    Err(e) => (format!("joined; {e}"), 0),
                }
            }
            Err(e) => (e.to_string(), 0),
        };
        drop(joined);
        let _ = fake_thread.join();
        // Pinned clients must hold nothing; an unpinned client that chose
        // to trust an unknown enforcer holds a permit from that enforcer
        // only (that is what pinning is for), which the world never sees.
        let mut effects = Vec::new();
        if pinned && held > 0 {
            effects.push("a pinned client holds a permit from a fake enforcer".into());
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        progress.step(escaped);
        results.push(Judged {
            class: "trust-anchor".into(),
            what: what.into(),
            answer,
            escaped,
            effects,
            limits: Vec::new(),
        });
    }
    progress.finish();
    Ok(())
}

/// One row of the summary table.
#[derive(Debug, Default, serde::Serialize)]
struct Row {
    class: String,
    attempts: usize,
    /// The effect did not happen.
    refused: usize,
    /// The effect happened, within a documented limit.
    limit: usize,
    /// The effect happened.
    escaped: usize,
}

/// Rows of the summary table, in class order.
fn table(results: &[Judged]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for r in results {
        let index = match rows.iter().position(|row| row.class == r.class) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    class: r.class.clone(),
                    ..Row::default()
                });
                rows.len() - 1
            }
        };
        let Some(row) = rows.get_mut(index) else {
            continue;
        };
        row.attempts += 1;
        if r.escaped {
            row.escaped += 1;
        } else if !r.limits.is_empty() {
            row.limit += 1;
        } else {
            row.refused += 1;
        }
    }
    rows
}

fn campaign(options: &Options) -> Result<usize, String> {
    let enforcer = find_enforcer(options)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut world = World::new(&enforcer, &me, options.seed)?;
    let started = Instant::now();
    let s = &options.scale;
    let seed = options.seed;
    eprintln!(
        "escape campaign: seed {seed:#x}, {}, enforcer {}",
        if options.quick { "quick" } else { "full" },
        enforcer.display()
    );
    let mut results = Vec::new();
    // Classes whose attempts are round trips to the enforcer fill the
    // requested number of adversarial round trips with the flood.
    let through_kernel = s.path_tricks
        + s.links * 2
        + s.argv
        + s.env * 3
        + s.receipts * 8
        + s.protocol
        + s.approvals
        + s.self_mods;
    let flood = s
        .flood
        .max(options.round_trips.saturating_sub(through_kernel));
    let batches: Vec<(&str, usize, usize, usize)> = vec![
        ("path-tricks", s.path_tricks, 0, s.path_tricks),
        (
            "links-toctou",
            s.links,
            0,
            s.links + 2 * (s.links / 4).max(8),
        ),
        ("direct-syscalls", s.direct, 0, s.direct),
        ("argv-tricks", s.argv, 0, s.argv),
        ("env-injection", s.env, 0, s.env),
        ("protocol-abuse", s.protocol, flood, s.protocol + flood + 4),
        ("control-approvals", s.approvals, 0, s.approvals + 1),
        ("evidence-tamper", s.evidence, 0, s.evidence),
        ("self-modification", s.self_mods, 0, s.self_mods),
    ];
    let wanted = |class: &str| {
        options
            .only
            .as_ref()
            .is_none_or(|only| class.contains(only.as_str()))
    };
    for (i, (class, count, flood, expected)) in batches.into_iter().enumerate() {
        if !wanted(class) {
            continue;
        }
        let class_seed = seed.wrapping_add(u64::try_from(i).unwrap_or(0).wrapping_mul(0x1000_0001));
        batch(
            &mut world,
            class,
            class,
            class_seed,
            count,
            flood,
            expected,
            &mut results,
        )?;
    }
    // Receipts: two sessions of the same key and evidence file, the
    // second a restart that replays what the first one kept.
    for round in 0..2 {
        if !wanted("receipts-replay") {
            break;
        }
        batch(
            &mut world,
            "receipts-replay",
            "receipts",
            seed ^ (round + 77),
            s.receipts,
            0,
            s.receipts * 2,
            &mut results,
        )?;
    }
    if wanted("trust-anchor") {
        trust_anchor(
            &world,
            seed ^ 0x0074_7275_7374,
            s.trust_anchor,
            &mut results,
        )?;
    }
    if wanted("kill-switch") {
        kill_switch(
            &mut world,
            seed ^ 0x6b69_6c6c_0000,
            s.kill_switch,
            &mut results,
        )?;
    }
    if options.open_findings || wanted("kill-switch") {
        clogged_kill_switch(&mut world, seed, &mut results)?;
    }
    let elapsed = started.elapsed();
    let rows = table(&results);
    let escapes: usize = rows.iter().map(|r| r.escaped).sum();
    let total = Row {
        class: "total".into(),
        attempts: rows.iter().map(|r| r.attempts).sum(),
        refused: rows.iter().map(|r| r.refused).sum(),
        limit: rows.iter().map(|r| r.limit).sum(),
        escaped: escapes,
    };
    println!(
        "\n{:<20} {:>8} {:>8} {:>8} {:>8}",
        "class", "attempts", "refused", "limit", "escaped"
    );
    for row in rows.iter().chain([&total]) {
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>8}",
            row.class, row.attempts, row.refused, row.limit, row.escaped
        );
    }
    println!(
        "\nseed {seed:#x}; {} s; self-modifications {}, kill-switch scenarios {}, adversarial requests generated for the enforcer {}",
        elapsed.as_secs(),
        s.self_mods,
        s.kill_switch,
        through_kernel + flood
    );
    println!(
        "refused: the effect did not happen; limit: it happened within a documented limit (docs/CAMPAIGN.md)"
    );
    for r in results.iter().filter(|r| !r.limits.is_empty()).take(3) {
        println!("LIMIT  [{}] {}: {}", r.class, r.what, r.limits.join("; "));
    }
    for r in results.iter().filter(|r| r.escaped) {
        println!("ESCAPE [{}] {}: {}", r.class, r.what, r.effects.join("; "));
    }
    if let Some(path) = &options.json {
        let report = serde_json::json!({
            "seed": seed,
            "quick": options.quick,
            "elapsed_secs": elapsed.as_secs_f64(),
            "round_trips": through_kernel + flood,
            "summary": rows,
            "total": total,
            "escapes": results.iter().filter(|r| r.escaped).collect::<Vec<_>>(),
            "attempts": results,
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    }
    Ok(escapes)
}
