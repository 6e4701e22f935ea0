//! `kernel-redteam`: the escape campaign.
//!
//! Starts the real enforcer in every mode the kernel ships (supervised,
//! governed, embedded, the `listen` endpoint with `ask` and the hooks, and
//! `mcp-proxy`; see [`modes`]) around adversaries (this same binary,
//! `kernel-redteam agent ...`, confined as the mode confines an agent)
//! that work through seeded attack generators, one class at a time. Every
//! attempt declares the effect it is after, and the runner checks that
//! effect in the world right after the attempt: file contents, sizes,
//! inodes, times, modes and owners, a loopback listener's and a Unix
//! socket's accept counts, the enforcer's and a sentinel process's
//! liveness and tracer, `audit verify` on the evidence, the allow records
//! in it, the permits the agent holds, what a fake MCP server received,
//! what a hook or `ask` answered, and who answered the operator. An
//! attempt counts as refused only if its effect did not happen.
//!
//! Prints a summary table (a row per class, a column per mode), writes a
//! JSON report (`--json`), and exits 1 on any escape (2 if the campaign
//! could not run).
//!
//! ```text
//! kernel-redteam [--quick] [--seed N] [--json FILE] [--enforcer PATH]
//!                [--self-mods N] [--kill-switch N] [--round-trips N]
//!                [--only CLASS] [--mode MODE[,MODE...]]
//! ```
//!
//! See `docs/CAMPAIGN.md` for each class and mode, how its effect is
//! judged, and what the campaign does not cover.

mod attacks;
mod batch;
mod fake;
mod gates;
mod halts;
mod impersonation;
mod json;
mod judge;
mod liveness;
mod mcp;
mod modes;
mod plan;
mod report;
mod rng;
mod trust_anchor;
mod world;

use batch::Batch;
use modes::{Mode, not_applicable};
use plan::Plan;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
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
    smuggling: usize,
    /// Rounds through every liveness state.
    liveness: usize,
    /// The other modes run each class with this share of the supervised
    /// mode's attempts (1 in `other_modes`).
    other_modes: usize,
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
            smuggling: 60,
            liveness: 3,
            other_modes: 2,
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
            smuggling: 9,
            liveness: 1,
            other_modes: 3,
        }
    }

    /// `count` attempts in supervised mode, a share of them in the others.
    fn in_mode(&self, count: usize, mode: Mode) -> usize {
        if mode == Mode::Supervised {
            count
        } else {
            (count / self.other_modes.max(1)).max(count.min(4))
        }
    }
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
    /// Run only these modes.
    modes: Vec<Mode>,
}

const USAGE: &str = "usage: kernel-redteam [--quick] [--seed N] [--json FILE] [--enforcer PATH] [--self-mods N] [--kill-switch N] [--round-trips N] [--only CLASS] [--mode MODE[,MODE...]]";

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
        modes: Mode::ALL.to_vec(),
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
            "--mode" => {
                let list = it
                    .next()
                    .ok_or_else(|| format!("`--mode` needs a value\n{USAGE}"))?;
                options.modes = list
                    .split(',')
                    .map(|m| {
                        Mode::parse(m).ok_or_else(|| {
                            format!(
                                "unknown mode `{m}`: {}",
                                Mode::ALL.map(Mode::name).join(", ")
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("agent") => return agent_main(args.into_iter().skip(1).collect()),
        Some(fake) if fake.starts_with("fake-") || fake == "serve" => return fake::main(&args),
        _ => {}
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
/// --flood F --plan JSON`, started as its mode starts an agent.
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
    let (plan, rng, rep) = (&plan, &mut rng, &mut rep);
    match class.as_str() {
        "path-tricks" => attacks::path_tricks::path_tricks(plan, rng, count, rep),
        "links-toctou" => attacks::links::links(plan, rng, count, rep),
        "direct-syscalls" => attacks::direct::direct(plan, rng, count, rep),
        "argv-tricks" => attacks::argv::argv(plan, rng, count, rep),
        "env-injection" => attacks::env::env(plan, rng, count, rep),
        "receipts-replay" => attacks::receipts::receipts(plan, rng, count, rep),
        "protocol-abuse" => attacks::protocol::protocol(plan, rng, count, flood, rep),
        "control-approvals" => attacks::approvals::approvals(plan, rng, count, rep),
        "evidence-tamper" => attacks::evidence::evidence(plan, rng, count, rep),
        "self-modification" => attacks::self_modify::self_modify(plan, rng, count, rep),
        "kill-switch" => attacks::kill_switch::stream(plan, rng, count, rep),
        "clog" => attacks::protocol::clog(plan, rng, rep),
        "argument-smuggling" => attacks::smuggling::smuggling(plan, rng, count, rep),
        "impersonation" => attacks::impersonation::impersonation(plan, count, rep),
        "liveness" => attacks::liveness::liveness(plan, count, rep),
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

/// Whether `class` runs in `mode` in this campaign.
fn wanted(options: &Options, class: &str, mode: Mode) -> bool {
    options.modes.contains(&mode)
        && not_applicable(class, mode).is_none()
        && options
            .only
            .as_ref()
            .is_none_or(|only| class.contains(only.as_str()))
}

/// The classes that attack what every mode shares with the others:
/// impersonation, liveness, parser differentials and argument smuggling.
fn new_classes(
    options: &Options,
    world: &mut World,
    mode: Mode,
    results: &mut Vec<report::Judged>,
) -> Result<(), String> {
    let s = &options.scale;
    let seed = options.seed ^ 0x6e65_7700;
    if wanted(options, "impersonation", mode) {
        match mode {
            Mode::Endpoint => impersonation::endpoint(world, results)?,
            Mode::McpProxy => mcp::class(world, "impersonation", seed, 0, results)?,
            _ => impersonation::agent(world, mode, seed, results)?,
        }
    }
    if wanted(options, "parser-differentials", mode) {
        match mode {
            Mode::Endpoint => gates::differentials(world, results)?,
            _ => mcp::class(world, "parser-differentials", seed, 0, results)?,
        }
    }
    if wanted(options, "argument-smuggling", mode) {
        match mode {
            Mode::McpProxy => mcp::class(world, "argument-smuggling", seed, 0, results)?,
            _ => {
                if mode == Mode::Endpoint {
                    gates::smuggling(world, results)?;
                }
                let count = s.in_mode(s.smuggling, mode);
                let batch = Batch {
                    mode,
                    class: "argument-smuggling",
                    name: format!("{}-argument-smuggling", mode.name()),
                    seed,
                    count,
                    flood: 0,
                    expected: count,
                };
                batch::run(world, &batch, results)?;
            }
        }
    }
    if wanted(options, "liveness", mode) {
        liveness::liveness(world, mode, seed, s.liveness, results)?;
    }
    Ok(())
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
    // (class, attempts, flood, attempts expected)
    let classes: Vec<(&str, usize, usize, usize)> = vec![
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
    for mode in Mode::ALL {
        if !options.modes.contains(&mode) {
            continue;
        }
        world.reset_workspace()?;
        let mode_started = Instant::now();
        for (i, (class, count, flood, expected)) in classes.iter().enumerate() {
            if !wanted(options, class, mode) {
                continue;
            }
            if mode == Mode::McpProxy {
                mcp::class(
                    &mut world,
                    class,
                    seed,
                    s.in_mode(s.flood, mode),
                    &mut results,
                )?;
                continue;
            }
            let mut count = s.in_mode(*count, mode);
            if *class == "direct-syscalls" {
                // Every kind of call at least once.
                count = count.max(19);
            }
            let flood = s.in_mode(*flood, mode);
            let expected = s.in_mode(*expected, mode);
            let class_seed =
                seed.wrapping_add(u64::try_from(i).unwrap_or(0).wrapping_mul(0x1000_0001));
            let batch = Batch {
                mode,
                class,
                name: format!("{}-{class}", mode.name()),
                seed: class_seed,
                count,
                flood,
                expected,
            };
            batch::run(&mut world, &batch, &mut results)?;
        }
        // Receipts: two sessions of the same key and evidence file, the
        // second a restart that replays what the first one kept.
        if wanted(options, "receipts-replay", mode) && mode != Mode::McpProxy {
            for round in 0..2 {
                let count = s.in_mode(s.receipts, mode);
                let batch = Batch {
                    mode,
                    class: "receipts-replay",
                    name: format!("{}-receipts", mode.name()),
                    seed: seed ^ (round + 77),
                    count,
                    flood: 0,
                    expected: count * 2,
                };
                batch::run(&mut world, &batch, &mut results)?;
            }
        }
        if wanted(options, "trust-anchor", mode) {
            let count = s.in_mode(s.trust_anchor, mode);
            match mode {
                Mode::Embedded => trust_anchor::embedded(&world, count, &mut results)?,
                Mode::Endpoint => trust_anchor::endpoint(&world, count, &mut results)?,
                _ => trust_anchor::trust_anchor(
                    &world,
                    seed ^ 0x0074_7275_7374,
                    count,
                    &mut results,
                )?,
            }
        }
        if wanted(options, "kill-switch", mode) {
            let scenarios = s.in_mode(s.kill_switch, mode);
            let kill_seed = seed ^ 0x6b69_6c6c_0000;
            if mode == Mode::McpProxy {
                mcp::class(
                    &mut world,
                    "kill-switch",
                    kill_seed,
                    scenarios,
                    &mut results,
                )?;
            } else {
                halts::kill_switch(&mut world, mode, kill_seed, scenarios, &mut results)?;
            }
            if matches!(mode, Mode::Supervised | Mode::Embedded) {
                halts::clogged(&mut world, mode, seed, &mut results)?;
            }
        }
        new_classes(options, &mut world, mode, &mut results)?;
        eprintln!(
            "  {} mode: {} s",
            mode.name(),
            mode_started.elapsed().as_secs()
        );
    }
    let elapsed = started.elapsed();
    let rows = report::table(&results);
    let total = report::total(&rows);
    let escapes = total.counts.escaped;
    report::print(&rows, &total);
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
        println!(
            "LIMIT  [{} {}] {}: {}",
            r.class,
            r.mode.name(),
            r.what,
            r.limits.join("; ")
        );
    }
    for r in results.iter().filter(|r| r.escaped) {
        println!(
            "ESCAPE [{} {}] {}: {}",
            r.class,
            r.mode.name(),
            r.what,
            r.effects.join("; ")
        );
    }
    if let Some(path) = &options.json {
        let report = serde_json::json!({
            "seed": seed,
            "quick": options.quick,
            "elapsed_secs": elapsed.as_secs_f64(),
            "round_trips": through_kernel + flood,
            "modes": Mode::ALL.map(Mode::name),
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
