//! The workload suite, short form, once: every workload's governed run
//! must have the same outcome as its ungoverned run (exit statuses,
//! standard output, workspace tree) and leave evidence that verifies.
//!
//! While the kernel cannot yet run some workloads, those are listed in
//! [`EXPECTED_TO_DIFFER`] and asserted to differ: a listed workload that
//! starts to pass fails the test until it is removed from the list, and
//! any other workload that differs fails it too.
//!
//! The enforcer is `$KERNEL_ENFORCER`, else `kernel-enforcer` built next
//! to this test (`cargo test --workspace` builds it); the policy is
//! `examples/policies/coding-agent.cedar`, else `tests/permissive.cedar`.
//! A command still running after `$KERNEL_WORKLOADS_DEADLINE_SECS` (120
//! by default) is killed and its workload fails with what it was blocked
//! in. A workload whose tool is missing is skipped with a `SKIPPED` line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_workloads::locate;
use kernel_workloads::runner::{self, Config, Mode, Unprepared};
use kernel_workloads::workloads::{self, Size};
use std::path::PathBuf;

/// Workloads that differ governed with the kernel as it is, and why
/// (found by this suite; see the report of `kernel-workloads --steps`).
const EXPECTED_TO_DIFFER: &[(&str, &str)] = &[];

/// Why `name` is expected to differ, if it is.
fn expected_to_differ(name: &str) -> Option<&'static str> {
    EXPECTED_TO_DIFFER
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

fn config(enforcer: PathBuf) -> Config {
    let (policy, _) = locate::policy(None).unwrap();
    let driver = PathBuf::from(env!("CARGO_BIN_EXE_kernel-workloads"));
    Config::short(enforcer, policy, driver)
}

/// Runs `name` ungoverned and governed and judges the outcome against
/// [`expected_to_differ`].
fn check(name: &str) {
    let workload = workloads::by_name(name).unwrap();
    let tools = runner::toolbox();
    let enforcer = locate::enforcer(None).unwrap_or_else(|e| panic!("{e}"));
    let config = config(enforcer);
    let prepared = match runner::prepare(workload, &tools, Size::Short) {
        Ok(prepared) => prepared,
        Err(Unprepared::Skipped(why)) => {
            println!("SKIPPED {name}: {why}");
            return;
        }
        Err(Unprepared::Failed(why)) => panic!("{name}: setup failed: {why}"),
    };
    let pair = runner::run_pair(&prepared, &tools, &config, Mode::Governed).unwrap();
    let policy = config.policy.display();
    match (pair.identical(), expected_to_differ(name)) {
        (true, None) => {}
        (false, Some(why)) => {
            println!(
                "{name} differs governed, as expected ({why}):\n{}",
                pair.report()
            );
        }
        (true, Some(why)) => panic!(
            "{name} is now identical governed (policy `{policy}`): remove it from \
             EXPECTED_TO_DIFFER in {} (it was listed because: {why})",
            file!()
        ),
        (false, None) => panic!(
            "{name} differs governed (policy `{policy}`):\n{}",
            pair.report()
        ),
    }
}

#[test]
fn coreutils() {
    check("coreutils");
}

#[test]
fn git() {
    check("git");
}

#[test]
fn python() {
    check("python");
}

#[test]
fn c() {
    check("c");
}

#[test]
fn rust() {
    check("rust");
}

#[test]
fn node() {
    check("node");
}

#[test]
fn file_loop() {
    check("file-loop");
}

/// Every workload has its test above, and every listed one exists.
#[test]
fn every_workload_is_tested() {
    let source = include_str!("suite.rs");
    for workload in workloads::all() {
        assert!(
            source.contains(&format!("check(\"{}\")", workload.name)),
            "no test runs the workload `{}`",
            workload.name
        );
    }
    for (name, _) in EXPECTED_TO_DIFFER {
        assert!(
            workloads::by_name(name).is_some(),
            "EXPECTED_TO_DIFFER names `{name}`, which is no workload"
        );
    }
}

/// The comparison itself: two ungoverned runs of every workload compare
/// identical (so what the normalisations leave out is all that varies
/// between runs), and every command succeeds ungoverned.
#[test]
fn ungoverned_runs_compare_identical() {
    let tools = runner::toolbox();
    let config = config(PathBuf::from("(not used)"));
    let mut failures = Vec::new();
    for workload in workloads::all() {
        let prepared = match runner::prepare(workload, &tools, Size::Short) {
            Ok(prepared) => prepared,
            Err(Unprepared::Skipped(why)) => {
                println!("SKIPPED {}: {why}", workload.name);
                continue;
            }
            Err(Unprepared::Failed(why)) => {
                failures.push(format!("{}: setup failed: {why}", workload.name));
                continue;
            }
        };
        let pair = runner::run_pair(&prepared, &tools, &config, Mode::Ungoverned).unwrap();
        if !pair.identical() {
            failures.push(format!("{}:\n{}", workload.name, pair.report()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
