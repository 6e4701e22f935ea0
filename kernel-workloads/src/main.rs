//! `kernel-workloads`: runs the workload suite and prints a Markdown
//! table of medians (ungoverned and governed milliseconds, their ratio,
//! decisions recorded, whether the outcomes were identical), then what
//! differed.
//!
//! ```text
//! kernel-workloads [--runs N] [--only NAME]... [--enforcer PATH] [--policy PATH]
//!                  [--deadline SECS] [--short] [--steps] [--control] [--keep]
//! ```
//!
//! Exits 0 when every workload that ran was identical, 1 when one
//! differed or could not be set up, 2 on a usage error.
#![forbid(unsafe_code)]

use kernel_workloads::driver;
use kernel_workloads::locate;
use kernel_workloads::runner::{self, Config, Mode, Pair, Unprepared};
use kernel_workloads::workloads::{self, Size};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: kernel-workloads [--runs N] [--only NAME]... [--enforcer PATH] \
[--policy PATH] [--deadline SECS] [--evidence-window MS] [--short] [--steps] [--control] [--keep]

  --runs N         runs of each workload (medians are reported) [default: 1]
  --only NAME      run only this workload (repeatable, or comma-separated)
  --enforcer PATH  the kernel-enforcer binary [default: $KERNEL_ENFORCER, else
                   kernel-enforcer next to this binary]
  --policy PATH    the governed runs' policy [default: examples/policies/coding-agent.cedar,
                   else kernel-workloads/tests/permissive.cedar]
  --deadline SECS  how long one command may run before it is killed [default: 120,
                   or $KERNEL_WORKLOADS_DEADLINE_SECS]
  --evidence-window MS  governed runs with `--evidence-window MS` (records durable
                   within MS milliseconds) instead of the strict default
  --short          the short form of every workload (as the integration test runs it)
  --steps          also print each command's median times
  --control        compare two ungoverned runs instead (checks the comparison itself)
  --keep           keep each pair's directory for a look (the paths are printed)";

#[derive(Debug)]
struct Options {
    runs: usize,
    only: Vec<String>,
    enforcer: Option<PathBuf>,
    policy: Option<PathBuf>,
    deadline: Duration,
    size: Size,
    steps: bool,
    control: bool,
    keep: bool,
    evidence_window_ms: Option<u64>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        runs: 1,
        only: Vec::new(),
        enforcer: None,
        policy: None,
        deadline: runner::deadline_from_env(),
        size: Size::Full,
        steps: false,
        control: false,
        keep: false,
        evidence_window_ms: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--runs" => {
                options.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--only" => options.only.extend(
                value("--only")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            "--enforcer" => options.enforcer = Some(value("--enforcer")?.into()),
            "--policy" => options.policy = Some(value("--policy")?.into()),
            "--deadline" => {
                options.deadline = Duration::from_secs(
                    value("--deadline")?
                        .parse()
                        .map_err(|_| "--deadline needs a number of seconds")?,
                );
            }
            "--short" => options.size = Size::Short,
            "--steps" => options.steps = true,
            "--control" => options.control = true,
            "--keep" => options.keep = true,
            "--evidence-window" => {
                options.evidence_window_ms = Some(
                    value("--evidence-window")?
                        .parse()
                        .map_err(|_| "--evidence-window needs a number of milliseconds")?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let known: Vec<&str> = workloads::all().iter().map(|w| w.name).collect();
    if let Some(unknown) = options.only.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(format!(
            "no workload `{unknown}` (there are: {})",
            known.join(", ")
        ));
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(driver::DRIVE_ARG) {
        let code = driver::main(args.get(1..).unwrap_or_default());
        return ExitCode::from(u8::try_from(code).unwrap_or(2));
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match suite(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// One workload's results over all its runs.
#[derive(Debug, Default)]
struct Results {
    ungoverned: Vec<Duration>,
    governed: Vec<Duration>,
    decisions: Vec<u64>,
    denied: Vec<u64>,
    steps: Vec<(Vec<Duration>, Vec<Duration>)>,
    differing: usize,
    hung: usize,
    first_difference: Option<(usize, String)>,
}

fn median<T: Copy + Ord + Default>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1000.0)
}

fn suite(options: &Options) -> Result<bool, String> {
    let second = if options.control {
        Mode::Ungoverned
    } else {
        Mode::Governed
    };
    let enforcer = locate::enforcer(options.enforcer.as_deref())?;
    let (policy, policy_from) = locate::policy(options.policy.as_deref())?;
    let driver = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let config = Config {
        enforcer,
        policy,
        driver,
        deadline: options.deadline,
        size: options.size,
        keep: options.keep,
        evidence_window_ms: options.evidence_window_ms,
        enforcer_args: Vec::new(),
    };
    let tools = runner::toolbox();
    println!(
        "enforcer: `{}`\npolicy: `{}` ({policy_from})\nruns: {}, deadline per command: {} s{}{}\n",
        config.enforcer.display(),
        config.policy.display(),
        options.runs,
        config.deadline.as_secs(),
        if options.size == Size::Short {
            ", short form"
        } else {
            ""
        },
        if options.control {
            "; CONTROL: the second run is ungoverned too"
        } else {
            ""
        },
    );
    let mut rows = Vec::new();
    let mut details = Vec::new();
    let mut all_identical = true;
    for workload in workloads::all() {
        if !options.only.is_empty() && !options.only.iter().any(|n| n == workload.name) {
            continue;
        }
        let prepared = match runner::prepare(workload, &tools, options.size) {
            Ok(prepared) => prepared,
            Err(Unprepared::Skipped(why)) => {
                println!("SKIPPED {}: {why}", workload.name);
                rows.push(format!("| {} | - | - | - | - | skipped |", workload.name));
                continue;
            }
            Err(Unprepared::Failed(why)) => {
                println!("FAILED {}: {why}", workload.name);
                rows.push(format!(
                    "| {} | - | - | - | - | setup failed |",
                    workload.name
                ));
                all_identical = false;
                continue;
            }
        };
        let mut results = Results::default();
        for run in 0..options.runs {
            eprintln!("{}: run {} of {}...", workload.name, run + 1, options.runs);
            let pair = runner::run_pair(&prepared, &tools, &config, second)?;
            record(&mut results, run, &pair);
        }
        let (u, g) = (median(&results.ungoverned), median(&results.governed));
        let ratio = if u.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.1}", g.as_secs_f64() / u.as_secs_f64())
        };
        let denied = median(&results.denied);
        let decisions = if options.control {
            "-".to_owned()
        } else if denied > 0 {
            format!("{} ({denied} denied)", median(&results.decisions))
        } else {
            median(&results.decisions).to_string()
        };
        let hung = match results.hung {
            0 => String::new(),
            1 => ", a command hung".to_owned(),
            n => format!(", {n} commands hung"),
        };
        let identical = match results.differing {
            0 => "yes".to_owned(),
            n if n == options.runs && hung.is_empty() => "no".to_owned(),
            n if n == options.runs => format!("no ({})", hung.trim_start_matches(", ")),
            n => format!("no ({n} of {} runs{hung})", options.runs),
        };
        all_identical &= results.differing == 0;
        rows.push(format!(
            "| {} | {} | {} | {ratio} | {decisions} | {identical} |",
            workload.name,
            ms(u),
            ms(g)
        ));
        if let Some((run, report)) = &results.first_difference {
            details.push(format!(
                "### {} (run {} of {})\n\n{report}",
                workload.name,
                run + 1,
                options.runs
            ));
        }
        if options.steps {
            let mut table = format!(
                "### {}: each command (medians)\n\n| command | ungoverned ms | {} ms |\n|---|---:|---:|\n",
                workload.name,
                second.name()
            );
            for (step, (u, g)) in prepared.steps.iter().zip(&results.steps) {
                table.push_str(&format!(
                    "| `{}` | {:.1} | {:.1} |\n",
                    step.display(),
                    median(u).as_secs_f64() * 1000.0,
                    median(g).as_secs_f64() * 1000.0
                ));
            }
            details.push(table);
        }
    }
    println!(
        "| workload | ungoverned ms | {} ms | ratio | decisions recorded | identical |",
        second.name()
    );
    println!("|---|---:|---:|---:|---:|---|");
    for row in &rows {
        println!("{row}");
    }
    println!(
        "\nTimes are wall-clock from starting the driver (governed: the enforcer) to its end, \
         medians of the runs. Compared: each command's exit status and standard output, the \
         workspace tree (paths, file types, contents, symlink targets, permission bits, hard \
         links; not times), and the evidence (`audit verify` must accept it). Normalised: \
         durations in the output of `npm install`, `cargo test` and the Python test runner, \
         the line order of `find`, the stat cache and checksum of `.git/index`, and the key order \
         of cargo's `target/.rustc_info.json`."
    );
    for detail in &details {
        println!("\n{detail}");
    }
    Ok(all_identical)
}

fn record(results: &mut Results, run: usize, pair: &Pair) {
    results.ungoverned.push(pair.first.elapsed);
    results.governed.push(pair.second.elapsed);
    if let Some(evidence) = &pair.second.evidence {
        results.decisions.push(evidence.decisions());
        results.denied.push(evidence.denied);
    }
    if results.steps.len() < pair.first.steps.len() {
        results
            .steps
            .resize_with(pair.first.steps.len(), Default::default);
    }
    for (index, slot) in results.steps.iter_mut().enumerate() {
        if let Some(step) = pair.first.steps.get(index) {
            slot.0.push(step.elapsed);
        }
        if let Some(step) = pair.second.steps.get(index) {
            slot.1.push(step.elapsed);
        }
    }
    let hung = pair
        .second
        .steps
        .iter()
        .filter(|s| s.status == runner::Status::Deadline)
        .count();
    results.hung = results.hung.max(hung);
    if !pair.identical() {
        results.differing += 1;
        if results.first_difference.is_none() {
            results.first_difference = Some((run, pair.report()));
        }
    }
}
