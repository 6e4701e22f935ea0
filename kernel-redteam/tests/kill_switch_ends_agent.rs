//! Regression: the kill switch ends a supervised agent and everything it
//! forked. Before the fix, an agent that kept its channel open ran on
//! after the halt (it only got denials), and a forked child outlived the
//! session; the campaign's kill-switch class judged both by the world (the
//! processes still alive seconds after the halt was acknowledged) and
//! failed.
//!
//! Runs the campaign's kill-switch class against the real enforcer, which
//! must sit beside this crate's binary (`cargo test --workspace`, or
//! `cargo build -p kernel-enforcer` first).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test"
)]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_halt_ends_the_agent_and_its_children() {
    let redteam = PathBuf::from(env!("CARGO_BIN_EXE_kernel-redteam"));
    let enforcer = redteam.with_file_name("kernel-enforcer");
    assert!(
        enforcer.is_file(),
        "no `{}`: build the enforcer first (`cargo build -p kernel-enforcer`)",
        enforcer.display()
    );
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(&redteam)
        .args([
            "--quick",
            "--only",
            "kill-switch",
            "--mode",
            "supervised",
            "--kill-switch",
            "6",
            "--seed",
            "7",
        ])
        .arg("--enforcer")
        .arg(&enforcer)
        .arg("--json")
        .arg(report.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the campaign found an escape:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let attempts = report["attempts"].as_array().unwrap();
    // The six seeded scenarios, and the agent that never reads its
    // answers.
    assert_eq!(attempts.len(), 7, "{stdout}");
    for attempt in attempts {
        assert_eq!(attempt["class"], "kill-switch");
        assert_eq!(attempt["escaped"], false, "{attempt}");
    }
    // Half of the seeded scenarios fork a child that keeps asking: the
    // check that it is gone ran (the pids were reported and looked up).
    assert!(
        stdout.contains("kill-switch                 7        7"),
        "{stdout}"
    );
}
