//! The loop from observed work to a tight policy, on real tools: every
//! workload of the suite (short form: coreutils, git, Python, C, Rust,
//! Node, the file loop) runs under `run --govern-syscalls
//! --shadow` with only the coding-agent profile's forbids in force; nothing
//! is blocked (every command ends as it does ungoverned, with the same
//! workspace), every action is recorded with what the policy said, and
//! `audit verify` counts what proceeded. `policy suggest` writes permits
//! from that evidence (proving with `--max-widening` that none allows a
//! request class the evidence did not exercise), the tests it writes from
//! the evidence pass, the same workloads then run identically *enforced*
//! by the suggestion alone, and the profile's secrets and floor cases, and
//! secrets beneath every directory the suggestion generalised to, are
//! still denied.
//!
//! Each workload runs twice under shadow mode: a value that differs
//! between the runs (a compiler's temporary file) becomes free in its
//! argument shape, as it would for an operator who observes more than one
//! run. `KERNEL_WORKLOADS_LOOP_OUT=DIR` keeps the policy, the tests and
//! the reports there; `KERNEL_WORKLOADS_LOOP_ONLY=git,c` runs only those
//! workloads. With `--nocapture` each phase prints how long it took.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_policy::{suggest, suite};
use kernel_workloads::layout::Layout;
use kernel_workloads::locate;
use kernel_workloads::runner::{self, Config, Mode, Run, Unprepared};
use kernel_workloads::workloads::{self, Size};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Copies `from` to `to`, creating `to`'s directory.
fn keep(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn config(enforcer: &Path, policy: &Path, shadow: bool) -> Config {
    let driver = PathBuf::from(env!("CARGO_BIN_EXE_kernel-workloads"));
    let mut config = Config::short(enforcer.to_owned(), policy.to_owned(), driver);
    if shadow {
        // The shadow runs only observe: their records are written before
        // each action proceeds and made durable within 10 ms, which
        // halves a Python virtual environment's run. The enforced runs
        // are strict, as the default is.
        config.evidence_window_ms = Some(10);
        config.enforcer_args.push("--shadow".to_owned());
    }
    config
}

/// Runs `enforcer` with `args`; returns its exit code and everything it
/// printed.
fn enforcer_says(enforcer: &Path, args: &[&str]) -> (i32, String) {
    kernel_testkit::said(&Command::new(enforcer).args(args).output().unwrap())
}

fn assert_same(name: &str, what: &str, steps: &[workloads::Step], reference: &Run, run: &Run) {
    let differences = runner::compare(steps, reference, run);
    assert!(
        differences.is_empty(),
        "{name} {what} differs from its ungoverned run:\n- {}\nstderr:\n{}",
        differences.join("\n- "),
        run.stderr
    );
}

#[test]
fn shadow_run_suggest_review_test_and_enforce() {
    let started = Instant::now();
    let mut phase = Instant::now();
    // How long each phase took, printed as it ends (`--nocapture`).
    let mut lap = |what: String| {
        println!("{what}: {:.1} s", phase.elapsed().as_secs_f64());
        phase = Instant::now();
    };
    let tools = runner::toolbox();
    let enforcer = locate::enforcer(None).unwrap_or_else(|e| panic!("{e}"));
    let (profile, _) = locate::policy(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    // Every workload runs in the same place, so that one suggestion
    // serves them all.
    let layout = Layout::new(&root.join("run"));
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).unwrap();

    // What is in force during the shadow runs: the profile's forbids, no
    // permit at all.
    let profile_sources = kernel_policy::read_sources(std::slice::from_ref(&profile)).unwrap();
    let forbids = suggest::base_forbids(&profile_sources).unwrap();
    assert!(forbids.len() >= 5, "the profile's forbids: {forbids:?}");
    let forbids_file = policies.join("coding-agent-forbids.cedar");
    std::fs::write(&forbids_file, forbids.join("\n\n")).unwrap();
    let shadow = config(&enforcer, &forbids_file, true);

    // 1. Shadow runs.
    let mut prepared_all = Vec::new();
    let mut evidence = Vec::new();
    let mut index = 0;
    let only = std::env::var("KERNEL_WORKLOADS_LOOP_ONLY").ok();
    // Every workload of the suite, so that one added later is in the
    // loop too.
    let chosen = workloads::all().into_iter().map(|w| w.name).filter(|name| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == *name))
    });
    let mut transcript = String::new();
    for name in chosen {
        let prepared = match runner::prepare(workloads::by_name(name).unwrap(), &tools, Size::Short)
        {
            Ok(prepared) => prepared,
            Err(Unprepared::Skipped(why)) => {
                println!("SKIPPED {name}: {why}");
                continue;
            }
            Err(Unprepared::Failed(why)) => panic!("{name}: setup failed: {why}"),
        };
        let reference =
            runner::run(&prepared, &layout, &tools, &shadow, Mode::Ungoverned, index).unwrap();
        index += 1;
        for _ in 0..2 {
            let run =
                runner::run(&prepared, &layout, &tools, &shadow, Mode::Governed, index).unwrap();
            assert_same(name, "under shadow mode", &prepared.steps, &reference, &run);
            let found = run.evidence.as_ref().unwrap();
            assert!(found.verified, "{name}: {}", found.verify_output);
            transcript.push_str(&format!(
                "shadow run of {name}: audit verify\n{}\n\n",
                found.verify_output
            ));
            assert!(
                found.denials.is_empty(),
                "{name}: nothing is blocked under shadow mode, but {:?}",
                found.denials
            );
            assert_eq!(found.allowed, 0, "{name}: the forbids permit nothing");
            assert!(
                found.shadowed > 0 && found.shadowed == found.decisions(),
                "{name}: every action is recorded with the policy's denial and proceeded: {}",
                found.verify_output
            );
            let log = layout.state.join(format!("evidence-{index}.log"));
            let kept = root.join("evidence").join(format!("{name}-{index}.log"));
            keep(&log, &kept);
            evidence.push(kept);
            index += 1;
        }
        prepared_all.push((name, prepared, reference));
        lap(format!("shadow runs of {name}"));
    }
    assert!(
        !prepared_all.is_empty(),
        "no workload could run here: every tool is missing"
    );

    // 2. Suggest, with the proof that no permit is wider than the
    // evidence.
    let suggested = policies.join("suggested.cedar");
    let tests = policies.join("suggested.tests.toml");
    let mut args: Vec<String> = vec!["policy".into(), "suggest".into()];
    args.extend(evidence.iter().map(|e| e.display().to_string()));
    args.extend([
        "--base".into(),
        forbids_file.display().to_string(),
        "--out".into(),
        suggested.display().to_string(),
        "--tests-out".into(),
        tests.display().to_string(),
        "--max-widening".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = enforcer_says(&enforcer, &args);
    let solver = !report.contains("needs the cvc5 SMT solver");
    if solver {
        assert_eq!(code, 0, "policy suggest --max-widening:\n{report}");
        assert!(
            report.contains(
                "result: every permit stays within the request classes the evidence exercised"
            ),
            "{report}"
        );
    } else {
        // Without a solver the proof cannot be made, and says so.
        assert_eq!(code, 2, "{report}");
        println!("SKIPPED the widening proof: no cvc5 here");
    }
    assert!(report.contains("covered: "), "{report}");
    let text = std::fs::read_to_string(&suggested).unwrap();

    lap("policy suggest --max-widening".into());

    // 3. The tests written from the evidence pass: every file of them
    // (more cases than one test file holds go to `suggested.tests-2.toml`
    // and on).
    let mut test_files = vec![tests.clone()];
    loop {
        let next = policies.join(format!("suggested.tests-{}.toml", test_files.len() + 1));
        if !next.is_file() {
            break;
        }
        test_files.push(next);
    }
    let mut tested = String::new();
    for file in &test_files {
        let (code, said) =
            enforcer_says(&enforcer, &["policy", "test", &file.display().to_string()]);
        assert_eq!(code, 0, "{}: {said}", file.display());
        assert!(
            report.contains(&format!("`{}`", file.display())),
            "{report}"
        );
        tested.push_str(&said);
    }

    lap(format!("policy test of {} files", test_files.len()));

    // 4. Enforced by the suggestion alone, the workloads run as they do
    // ungoverned, and nothing is denied.
    let enforcing = config(&enforcer, &suggested, false);
    for (name, prepared, reference) in &prepared_all {
        let run =
            runner::run(prepared, &layout, &tools, &enforcing, Mode::Governed, index).unwrap();
        index += 1;
        assert_same(
            name,
            "enforced by the suggestion",
            &prepared.steps,
            reference,
            &run,
        );
        let found = run.evidence.as_ref().unwrap();
        assert!(found.verified, "{name}: {}", found.verify_output);
        transcript.push_str(&format!(
            "enforced run of {name}: audit verify\n{}\n\n",
            found.verify_output
        ));
        assert_eq!(
            (found.denied, found.shadowed),
            (0, 0),
            "{name}: {:?}\n{}",
            found.denials,
            found.verify_output
        );
        assert!(found.allowed > 0);
        lap(format!("enforced run of {name}"));
    }

    // 5. The secrets and floor cases of the profile's tests are denied by
    // the suggestion, in this workspace, and so are secrets beneath every
    // directory it generalised to.
    let sources = vec![("suggested.cedar".to_owned(), text.clone())];
    let assets: Vec<String> = [&suggested, &forbids_file]
        .into_iter()
        .chain(&evidence)
        .map(|p| p.display().to_string())
        .collect();
    let profile_tests = profile.with_file_name("coding-agent.tests.toml");
    let mut cases = suite::load(&profile_tests).unwrap();
    // The profile's workspace becomes this one, and so do its protected
    // paths in it (cases that name a workspace of their own keep it).
    let ws = layout.ws.display().to_string();
    for path in &mut cases.protect {
        if let Some(rest) = path.strip_prefix(&cases.workspace) {
            *path = format!("{ws}{rest}");
        }
    }
    cases.workspace = ws;
    cases.cases.retain(|case| case.expect.as_str() == "deny");
    assert!(cases.cases.len() > 60, "the profile's denials");
    let outcomes = suite::run(&cases, &sources, &assets).unwrap();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| suite::render_outcome("coding-agent.tests.toml", o))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));

    let prefixes: Vec<&str> = text
        .match_indices("like \"")
        .filter_map(|(at, _)| {
            let rest = &text[at + 6..];
            rest.split_once("/*\"").map(|(dir, _)| dir)
        })
        .filter(|dir| dir.starts_with(&*layout.ws.to_string_lossy()))
        .collect();
    assert!(
        !prefixes.is_empty(),
        "the suggestion generalised somewhere:\n{text}"
    );
    let mut generated = format!("[environment]\nworkspace = \"{}\"\n", layout.ws.display());
    for dir in &prefixes {
        // The profile counts a `.pem` shipped inside an installed package
        // (certifi's bundle in a virtual environment) as public data, not
        // a key: there a private key's usual name stands in for it.
        let key = if dir.contains("/site-packages") || dir.contains("/node_modules") {
            format!("{dir}/deploy/id_rsa")
        } else {
            format!("{dir}/deploy/server.pem")
        };
        for (action, path, extra) in [
            ("file_read", format!("{dir}/.env"), ""),
            (
                "file_write",
                format!("{dir}/.ssh/id_ed25519"),
                "mode = \"descriptor\"\n",
            ),
            ("file_delete", key, ""),
            (
                "file_write",
                format!("{dir}/.git/hooks/pre-commit"),
                "mode = \"descriptor\"\n",
            ),
        ] {
            generated.push_str(&format!(
                "\n[[case]]\nname = \"secret beneath {dir}\"\naction = \"{action}\"\npath = \"{path}\"\n{extra}expect = \"deny\"\n"
            ));
        }
    }
    for asset in [&suggested, &evidence[0]] {
        generated.push_str(&format!(
            "\n[[case]]\nname = \"floor\"\naction = \"file_read\"\npath = \"{}\"\nexpect = \"deny\"\npolicy = \"kernel-floor-assets\"\n",
            asset.display()
        ));
    }
    let secrets = suite::parse("generated", &generated, &root).unwrap();
    let outcomes = suite::run(&secrets, &sources, &assets).unwrap();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| suite::render_outcome("generated", o))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));

    lap("the profile's and the generated denials".into());
    println!("in all: {:.1} s", started.elapsed().as_secs_f64());

    if let Some(out) = std::env::var_os("KERNEL_WORKLOADS_LOOP_OUT") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        for file in [&suggested, &forbids_file].into_iter().chain(&test_files) {
            keep(file, &out.join(file.file_name().unwrap()));
        }
        std::fs::write(out.join("suggest-report.txt"), &report).unwrap();
        std::fs::write(out.join("policy-test.txt"), &tested).unwrap();
        std::fs::write(out.join("runs.txt"), &transcript).unwrap();
    }
}
