//! Running a workload twice and comparing the outcomes.
//!
//! A pair of runs: the workload's template (made once by its setup) is
//! copied into a fresh workspace, the [driver] runs the
//! commands ungoverned; the workspace is snapshotted, removed and copied
//! afresh at the same path, and the driver runs them again as the agent
//! of `kernel-enforcer run --govern-syscalls`. Then, command by command:
//! exit status and (normalised, see [`crate::normalise`]) standard
//! output; the workspace trees (see [`crate::tree`]); and the governed
//! run's evidence, which `kernel-enforcer audit verify` must accept and
//! which must record at least one decision.

use crate::driver::{self, DriverCommand};
use crate::layout::Layout;
use crate::locate::Toolbox;
use crate::tree::Tree;
use crate::workloads::{Program, Setup, Size, Step, Workload};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one command may run before it is killed, by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// The environment variable that changes [`DEFAULT_DEADLINE`] (seconds).
pub const DEADLINE_ENV: &str = "KERNEL_WORKLOADS_DEADLINE_SECS";

/// Tools the runner itself uses.
pub const RUNNER_TOOLS: &[&str] = &["kill"];

/// The deadline per command: `$KERNEL_WORKLOADS_DEADLINE_SECS`, else
/// [`DEFAULT_DEADLINE`].
pub fn deadline_from_env() -> Duration {
    std::env::var(DEADLINE_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_DEADLINE, Duration::from_secs)
}

/// Every tool the workloads and the runner use, as this machine has them.
pub fn toolbox() -> Toolbox {
    let mut wanted = crate::workloads::all_tools();
    wanted.extend(RUNNER_TOOLS);
    Toolbox::discover(&wanted)
}

/// What the runs use.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `kernel-enforcer` binary.
    pub enforcer: PathBuf,
    /// The policy of governed runs.
    pub policy: PathBuf,
    /// The suite's binary, run as the [driver].
    pub driver: PathBuf,
    /// How long one command may run.
    pub deadline: Duration,
    /// Which form of the workloads.
    pub size: Size,
    /// Keep each pair's directory (the first run's workspace and scratch
    /// directory renamed to `ws-first` and `scratch-first`) for a look.
    pub keep: bool,
    /// Governed runs with `--evidence-window` of this many milliseconds
    /// (records durable within the window) instead of the strict default.
    pub evidence_window_ms: Option<u64>,
    /// More arguments for `kernel-enforcer run` in governed runs (such as
    /// `--shadow`).
    pub enforcer_args: Vec<String>,
}

impl Config {
    /// The short form of the workloads, run by `driver` with `enforcer`
    /// and `policy`: the deadline from the environment, nothing kept,
    /// evidence durable before each answer, no more arguments.
    pub fn short(enforcer: PathBuf, policy: PathBuf, driver: PathBuf) -> Self {
        Self {
            enforcer,
            policy,
            driver,
            deadline: deadline_from_env(),
            size: Size::Short,
            keep: false,
            evidence_window_ms: None,
            enforcer_args: Vec::new(),
        }
    }
}

/// How a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The driver runs directly.
    Ungoverned,
    /// The driver runs under `kernel-enforcer run --govern-syscalls`.
    Governed,
}

impl Mode {
    /// `ungoverned` or `governed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ungoverned => "ungoverned",
            Self::Governed => "governed",
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Code(i64),
    /// A signal ended it.
    Signal(i64),
    /// It outlived the deadline and was killed.
    Deadline,
    /// It could not be started (the error).
    NotStarted(String),
    /// The driver never reported it (it ended, or was ended, first).
    NotReported,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit {code}"),
            Self::Signal(signal) => write!(f, "killed by signal {signal}"),
            Self::Deadline => write!(f, "still running at the deadline (killed)"),
            Self::NotStarted(why) => write!(f, "not started: {why}"),
            Self::NotReported => write!(f, "never reported (the driver ended first)"),
        }
    }
}

/// One command's outcome.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// How it ended.
    pub status: Status,
    /// How long it ran.
    pub elapsed: Duration,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// What it was blocked in when it outlived the deadline.
    pub hang: Option<String>,
}

/// What the evidence of a governed run says.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Whether `kernel-enforcer audit verify` accepted it.
    pub verified: bool,
    /// What `audit verify` printed.
    pub verify_output: String,
    /// Decisions recorded as allowed.
    pub allowed: u64,
    /// Decisions recorded as denied.
    pub denied: u64,
    /// Decisions recorded as asked (sent to an operator).
    pub asked: u64,
    /// Actions the policy did not allow that proceeded under shadow mode.
    pub shadowed: u64,
    /// The denied actions (from `audit inspect`), each with how often.
    pub denials: Vec<(String, usize)>,
}

impl Evidence {
    /// Every decision recorded.
    pub fn decisions(&self) -> u64 {
        self.allowed + self.denied + self.asked + self.shadowed
    }
}

/// One run of a workload.
#[derive(Debug, Clone)]
pub struct Run {
    /// How it ran.
    pub mode: Mode,
    /// Each command's outcome, in order.
    pub steps: Vec<StepRun>,
    /// From starting the driver (or the enforcer) to its end.
    pub elapsed: Duration,
    /// The driver's (or the enforcer's) exit status.
    pub exit: String,
    /// Its standard error.
    pub stderr: String,
    /// The workspace afterwards.
    pub tree: Result<Tree, String>,
    /// The governed run's evidence.
    pub evidence: Option<Evidence>,
    /// Problems of the run itself (not of a command).
    pub problems: Vec<String>,
}

/// A workload ready to run: its template workspace exists.
#[derive(Debug)]
pub struct Prepared {
    /// The workload.
    pub workload: Workload,
    /// Its commands in the prepared size.
    pub steps: Vec<Step>,
    dir: tempfile::TempDir,
}

impl Prepared {
    fn template(&self) -> PathBuf {
        self.dir.path().join("template")
    }
}

/// Why a workload cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unprepared {
    /// A tool it needs is missing.
    Skipped(String),
    /// Its setup failed.
    Failed(String),
}

/// Makes the workload's template (its setup runs ungoverned, with the
/// suite's environment).
pub fn prepare(workload: Workload, tools: &Toolbox, size: Size) -> Result<Prepared, Unprepared> {
    for tool in workload.tools {
        tools
            .get(tool)
            .map_err(|why| Unprepared::Skipped(format!("needs {tool}: {why}")))?;
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("kernel-workloads-{}-setup-", workload.name))
        .tempdir()
        .map_err(|e| Unprepared::Failed(format!("temporary directory: {e}")))?;
    let prepared = Prepared {
        workload,
        steps: (workload.steps)(size),
        dir,
    };
    let template = prepared.template();
    let aside = prepared.dir.path().join("aside");
    let layout = Layout::new(&prepared.dir.path().join("setup"));
    layout.reset(None).map_err(Unprepared::Failed)?;
    for dir in [&template, &aside] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Unprepared::Failed(format!("`{}`: {e}", dir.display())))?;
    }
    let env = layout.environment(tools);
    let setup = Setup {
        dir: &template,
        aside: &aside,
        size,
        tools,
        env: &env,
    };
    (workload.setup)(&setup).map_err(Unprepared::Failed)?;
    Ok(prepared)
}

/// Two runs of a prepared workload and their differences.
#[derive(Debug)]
pub struct Pair {
    /// The reference run (ungoverned).
    pub first: Run,
    /// The run compared with it (governed, or ungoverned again for a
    /// control).
    pub second: Run,
    /// Every difference, one paragraph each; empty when identical.
    pub differences: Vec<String>,
}

impl Pair {
    /// Whether the two runs had identical outcomes (and a governed one
    /// left verified evidence with decisions in it).
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differences as Markdown, with the evidence's denials.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for difference in &self.differences {
            out.push_str("- ");
            out.push_str(&difference.replace('\n', "\n  "));
            out.push('\n');
        }
        if let Some(evidence) = &self.second.evidence
            && !evidence.denials.is_empty()
        {
            out.push_str("- denied by the policy (from `audit inspect`):\n");
            for (action, count) in evidence.denials.iter().take(25) {
                out.push_str(&format!("  - {action}{}\n", times(*count)));
            }
            if evidence.denials.len() > 25 {
                out.push_str(&format!(
                    "  - ... and {} more\n",
                    evidence.denials.len() - 25
                ));
            }
        }
        out
    }
}

fn times(count: usize) -> String {
    if count > 1 {
        format!(" (x{count})")
    } else {
        String::new()
    }
}

/// Runs `prepared` ungoverned, then in `second` mode, in one fresh
/// directory, and compares.
pub fn run_pair(
    prepared: &Prepared,
    tools: &Toolbox,
    config: &Config,
    second: Mode,
) -> Result<Pair, String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("kernel-workloads-{}-", prepared.workload.name))
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let root = std::fs::canonicalize(dir.path()).map_err(|e| format!("{e}"))?;
    let layout = Layout::new(&root);
    let first = run(prepared, &layout, tools, config, Mode::Ungoverned, 0)?;
    if config.keep {
        for (dir, name) in [(&layout.ws, "ws-first"), (&layout.scratch, "scratch-first")] {
            std::fs::rename(dir, root.join(name)).map_err(|e| format!("keeping `{name}`: {e}"))?;
        }
    }
    let second = run(prepared, &layout, tools, config, second, 1)?;
    let differences = compare(&prepared.steps, &first, &second);
    if config.keep {
        eprintln!(
            "kept: `{}` (the first run in ws-first, scratch-first)",
            dir.keep().display()
        );
    } else {
        let _ = crate::layout::remove_tree(&layout.ws);
    }
    Ok(Pair {
        first,
        second,
        differences,
    })
}

fn resolve(step: &Step, tools: &Toolbox, ws: &Path) -> Result<DriverCommand, String> {
    let program = match &step.program {
        Program::Tool(name) => tools.get(name)?.to_owned(),
        Program::Workspace(path) => ws.join(path),
    };
    Ok(DriverCommand {
        program: program
            .to_str()
            .ok_or_else(|| format!("`{}` is not UTF-8", program.display()))?
            .to_owned(),
        args: step.args.clone(),
    })
}

/// Events the driver reported, gathered by the thread reading them.
#[derive(Debug, Default)]
struct Reported {
    steps: BTreeMap<usize, StepRun>,
    hangs: BTreeMap<usize, String>,
    garbage: Vec<String>,
}

/// One run in `layout` (reset from the template first).
pub fn run(
    prepared: &Prepared,
    layout: &Layout,
    tools: &Toolbox,
    config: &Config,
    mode: Mode,
    index: usize,
) -> Result<Run, String> {
    layout.reset(Some(&prepared.template()))?;
    let commands = prepared
        .steps
        .iter()
        .map(|step| resolve(step, tools, &layout.ws))
        .collect::<Result<Vec<_>, _>>()?;
    let evidence = layout.state.join(format!("evidence-{index}.log"));
    let stderr_path = layout.state.join(format!("stderr-{index}.txt"));
    let stderr_file = std::fs::File::create(&stderr_path)
        .map_err(|e| format!("`{}`: {e}", stderr_path.display()))?;
    let mut command = match mode {
        Mode::Ungoverned => Command::new(&config.driver),
        Mode::Governed => {
            let mut command = Command::new(&config.enforcer);
            command
                .args(["run", "--govern-syscalls", "--policy"])
                .arg(&config.policy)
                .arg("--workspace")
                .arg(&layout.ws)
                .arg("--evidence")
                .arg(&evidence)
                .arg("--scratch")
                .arg(&layout.scratch);
            if let Some(window) = config.evidence_window_ms {
                command.args(["--evidence-window", &window.to_string()]);
            }
            command.args(&config.enforcer_args);
            // An enforcer that predates `--system-tree` runs without it
            // (and then cannot run a toolchain outside the system trees).
            if supports(&config.enforcer, "--system-tree") {
                for tree in tools.trees_outside_the_system() {
                    command.arg("--system-tree").arg(tree);
                }
            }
            command.arg("--").arg(&config.driver);
            command
        }
    };
    command
        .arg(driver::DRIVE_ARG)
        .arg(config.deadline.as_millis().to_string())
        .arg(driver::encode(&commands))
        .current_dir(&layout.ws)
        .env_clear()
        .envs(layout.environment(tools))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the {} run: {e}", mode.name()))?;
    let pgid = child.id();
    let reported = Arc::new(Mutex::new(Reported::default()));
    let reader = child.stdout.take().map(|stdout| {
        let reported = Arc::clone(&reported);
        std::thread::spawn(move || read_reports(stdout, &reported))
    });
    let steps = u32::try_from(commands.len()).unwrap_or(u32::MAX);
    let overall = (config.deadline + driver::LOOK_TIME + Duration::from_secs(5)) * steps
        + Duration::from_secs(60);
    let mut problems = Vec::new();
    let mut pause = Duration::from_micros(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                problems.push(format!("waiting for the run: {e}"));
                break None;
            }
        }
        if started.elapsed() > overall {
            problems.push(format!(
                "the whole run outlived its deadline ({} s) and was killed",
                overall.as_secs()
            ));
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let reported = std::mem::take(&mut *reported.lock().map_err(|_| "report lock poisoned")?);
    // Ungoverned, a command killed at its deadline may leave processes
    // behind in the driver's process group (governed, the enforcer ends
    // everything the agent started).
    if mode == Mode::Ungoverned
        && !reported.hangs.is_empty()
        && let Ok(kill) = tools.get("kill")
    {
        let _ = Command::new(kill)
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    problems.extend(
        reported
            .garbage
            .iter()
            .map(|line| format!("the driver said: {line}")),
    );
    let exit = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    let mut step_runs = Vec::new();
    let mut hangs = reported.hangs;
    let mut steps_reported = reported.steps;
    for index in 0..commands.len() {
        let mut step = steps_reported.remove(&index).unwrap_or(StepRun {
            status: Status::NotReported,
            elapsed: Duration::ZERO,
            stdout: Vec::new(),
            stderr: Vec::new(),
            hang: None,
        });
        step.hang = hangs.remove(&index);
        step_runs.push(step);
    }
    let tree = Tree::snapshot(&layout.ws);
    let evidence = match mode {
        Mode::Governed => Some(verify(&config.enforcer, &evidence)),
        Mode::Ungoverned => None,
    };
    Ok(Run {
        mode,
        steps: step_runs,
        elapsed,
        exit,
        stderr,
        tree,
        evidence,
        problems,
    })
}

/// Whether `enforcer run` takes the flag `flag` (by its `--help`).
fn supports(enforcer: &Path, flag: &str) -> bool {
    Command::new(enforcer)
        .args(["run", "--help"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(flag))
}

fn read_reports(stdout: std::process::ChildStdout, reported: &Mutex<Reported>) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let value: Value = match serde_json::from_str(&line) {
            Ok(value) => value,
            Err(_) => {
                if let Ok(mut r) = reported.lock() {
                    r.garbage.push(line);
                }
                continue;
            }
        };
        let step = value
            .get("step")
            .and_then(Value::as_u64)
            .and_then(|s| usize::try_from(s).ok());
        let pid = value
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok());
        match (value.get("event").and_then(Value::as_str), step) {
            (Some("deadline"), Some(step)) => {
                // Looked at now, while the driver waits to kill it.
                let hang = pid.map(crate::hang::describe).unwrap_or_default();
                if let Ok(mut r) = reported.lock() {
                    r.hangs.insert(step, hang);
                }
            }
            (Some("done"), Some(step)) => {
                let bytes = |key: &str| -> Vec<u8> {
                    value
                        .get(key)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let status = match value.get("status") {
                    Some(Value::String(s)) if s == "deadline" => Status::Deadline,
                    Some(status) => {
                        if let Some(code) = status.get("code").and_then(Value::as_i64) {
                            Status::Code(code)
                        } else if let Some(signal) = status.get("signal").and_then(Value::as_i64) {
                            Status::Signal(signal)
                        } else {
                            Status::NotStarted(
                                status
                                    .get("not_started")
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_owned(),
                            )
                        }
                    }
                    None => Status::NotReported,
                };
                let run = StepRun {
                    status,
                    elapsed: Duration::from_micros(
                        value.get("elapsed_us").and_then(Value::as_u64).unwrap_or(0),
                    ),
                    stdout: bytes("stdout"),
                    stderr: bytes("stderr"),
                    hang: None,
                };
                if let Ok(mut r) = reported.lock() {
                    r.steps.insert(step, run);
                }
            }
            _ => {}
        }
    }
}

/// Runs `audit verify` and `audit inspect` on the evidence.
pub fn verify(enforcer: &Path, evidence: &Path) -> Evidence {
    if !evidence.is_file() {
        return Evidence {
            verify_output: format!("no evidence file at `{}`", evidence.display()),
            ..Evidence::default()
        };
    }
    let verify = Command::new(enforcer)
        .args(["audit", "verify"])
        .arg(evidence)
        .output();
    let (verified, verify_output) = match verify {
        Ok(output) => (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
        Err(e) => (false, format!("audit verify: {e}")),
    };
    // "ok: 7 records (1 sessions, 3 allowed, 2 denied, 0 asked, ...)"
    let count = |word: &str| {
        let words: Vec<&str> = verify_output
            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        words
            .windows(2)
            .find_map(|pair| match pair {
                [number, w] if *w == word => number.parse::<u64>().ok(),
                _ => None,
            })
            .unwrap_or(0)
    };
    let mut denials: Vec<(String, usize)> = Vec::new();
    if let Ok(output) = Command::new(enforcer)
        .args(["audit", "inspect"])
        .arg(evidence)
        .output()
    {
        // "3      decision       deny     file_read /proc/mounts  []"
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut fields = line.split_whitespace();
            let (_, kind, decision) = (fields.next(), fields.next(), fields.next());
            if kind != Some("decision") || decision != Some("deny") {
                continue;
            }
            let action = fields.filter(|f| *f != "[]").collect::<Vec<_>>().join(" ");
            match denials.iter_mut().find(|(a, _)| *a == action) {
                Some((_, count)) => *count += 1,
                None => denials.push((action, 1)),
            }
        }
    }
    // "shadow mode: 1 sessions; 408 actions proceeded that the policy did
    // not allow (...)"
    let shadowed = verify_output
        .lines()
        .find_map(|line| line.strip_prefix("shadow mode: "))
        .and_then(|rest| rest.split("; ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Evidence {
        verified,
        allowed: count("allowed"),
        denied: count("denied"),
        asked: count("asked"),
        shadowed,
        verify_output: verify_output.trim().to_owned(),
        denials,
    }
}

fn last_lines(bytes: &[u8], count: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(count);
    lines.get(start..).unwrap_or_default().join("\n")
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (mut la, mut lb) = (a.lines(), b.lines());
    let mut number = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => number += 1,
            (x, y) => {
                return format!(
                    "line {number}: `{}` vs `{}`",
                    x.unwrap_or("(end)"),
                    y.unwrap_or("(end)")
                );
            }
        }
    }
}

/// The differences of `second` from `first`, one paragraph each.
pub fn compare(steps: &[Step], first: &Run, second: &Run) -> Vec<String> {
    let mut differences = Vec::new();
    let (a, b) = (first.mode.name(), second.mode.name());
    for (index, step) in steps.iter().enumerate() {
        let (Some(x), Some(y)) = (first.steps.get(index), second.steps.get(index)) else {
            continue;
        };
        let label = format!("step {} `{}`", index + 1, step.display());
        if x.status != Status::Code(0) {
            // Every command of a workload succeeds when nothing governs
            // it; one that does not makes the comparison meaningless.
            differences.push(format!(
                "{label} failed {a} ({}): the workload itself is broken\n{a} stderr:\n```\n{}\n```",
                x.status,
                last_lines(&x.stderr, 12)
            ));
        }
        if x.status != y.status {
            let mut text = format!("{label}: {} {a}, {} {b}", x.status, y.status);
            let tail = last_lines(&y.stderr, 12);
            if !tail.is_empty() {
                text.push_str(&format!("\n{b} stderr:\n```\n{tail}\n```"));
            }
            if let Some(hang) = &y.hang {
                text.push_str(&format!("\nblocked in, at the deadline:\n```\n{}```", hang));
            }
            differences.push(text);
            continue;
        }
        let (ox, oy) = (step.stdout.apply(&x.stdout), step.stdout.apply(&y.stdout));
        if ox != oy {
            let mut text = format!(
                "{label}: standard output differs ({}): {}",
                x.status,
                first_difference(&ox, &oy)
            );
            let tail = last_lines(&y.stderr, 6);
            if !tail.is_empty() {
                text.push_str(&format!("\n{b} stderr:\n```\n{tail}\n```"));
            }
            differences.push(text);
        }
    }
    match (&first.tree, &second.tree) {
        (Ok(x), Ok(y)) => {
            let lines = x.differences(y, 30);
            if !lines.is_empty() {
                differences.push(format!(
                    "workspace tree ({b} against {a}):\n{}",
                    lines
                        .iter()
                        .map(|l| format!("  {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        (x, y) => {
            for (mode, tree) in [(a, x), (b, y)] {
                if let Err(e) = tree {
                    differences.push(format!("the {mode} workspace could not be read: {e}"));
                }
            }
        }
    }
    for run in [first, second] {
        for problem in &run.problems {
            differences.push(format!("{} run: {problem}", run.mode.name()));
        }
        let unreported = run.steps.iter().any(|s| s.status == Status::NotReported);
        if unreported {
            differences.push(format!(
                "{} run: the driver ended ({}) before reporting every command; its stderr:\n```\n{}\n```",
                run.mode.name(),
                run.exit,
                run.stderr.trim()
            ));
        }
    }
    if let Some(evidence) = &second.evidence {
        if !evidence.verified {
            differences.push(format!(
                "the evidence does not verify: {}",
                evidence.verify_output
            ));
        } else if evidence.decisions() == 0 {
            differences.push("the evidence records no decision: nothing was governed".into());
        }
    }
    differences
}
