//! `policy suggest` on the evidence of a real shadow session: it refuses
//! evidence that does not verify, writes permits and tests that the real
//! decision path agrees with, and `--max-widening` proves the suggestion
//! stays within what was exercised and catches a permit that does not (a
//! whole home directory where one file was read). Tests that need the
//! cvc5 solver say SKIPPED without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_testkit::{fixture, run_enforcer, said};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Nothing is permitted: in shadow mode every action proceeds, recorded
/// as denied.
const FORBIDS: &str = r#"
@id("no-env")
@reason("no .env files")
forbid (principal, action == Action::"file_read", resource)
when { resource.name == ".env" };
"#;

fn solver() -> bool {
    if !cfg!(feature = "symbolic") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the widening proof needs the `symbolic` feature"
        );
        return false;
    }
    let cvc5 = std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into());
    let found = Command::new(&cvc5)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the widening proof needs cvc5 (`{cvc5}`)"
        );
    }
    found
}

/// The enforcer's exit code with `args`, and everything it printed.
fn enforcer_says(args: &[&str]) -> (i32, String) {
    said(&run_enforcer(args))
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// A shadow session: two sources read, a file written, the user's git
/// configuration read outside the workspace, a program run twice with
/// different files. Returns the fixture and the home directory.
fn shadow_session() -> (kernel_testkit::Fixture, PathBuf) {
    let fixture = fixture(FORBIDS);
    let home = fixture.root.join("home");
    std::fs::create_dir_all(fixture.workspace.join("src")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(fixture.workspace.join("src/a.rs"), "a").unwrap();
    std::fs::write(fixture.workspace.join("src/b.rs"), "b").unwrap();
    std::fs::write(home.join(".gitconfig"), "[user]").unwrap();
    let kernel = kernel_client::Kernel::spawn(fixture.config().shadow()).unwrap();
    for file in ["src/a.rs", "src/b.rs"] {
        kernel.read_file(&fixture.ws(file)).unwrap();
    }
    kernel.read_file(&text(&home.join(".gitconfig"))).unwrap();
    kernel
        .write_file(&fixture.ws("notes.md"), b"observed")
        .unwrap();
    for file in ["src/a.rs", "src/b.rs"] {
        let exec = kernel_client::Exec::new("/usr/bin/cat")
            .arg(file)
            .cwd(text(&fixture.workspace));
        assert!(kernel.exec(exec).unwrap().status.success());
    }
    let _ = kernel.shutdown(Duration::from_secs(5));
    (fixture, home)
}

#[test]
fn evidence_that_does_not_verify_is_refused() {
    let (fixture, _) = shadow_session();
    let mut bytes = std::fs::read(&fixture.evidence).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = fixture.dir.path().join("damaged.log");
    std::fs::write(&damaged, bytes).unwrap();
    let out = fixture.dir.path().join("never.cedar");
    let (code, said) = enforcer_says(&[
        "policy",
        "suggest",
        &text(&damaged),
        "--out",
        &text(&out),
        "--no-analysis",
    ]);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("is not sound evidence"), "{said}");
    assert!(!out.exists(), "nothing is written from unverified evidence");
}

#[test]
fn a_suggestion_and_its_tests_from_a_shadow_session_and_an_over_broad_permit_caught() {
    let (fixture, home) = shadow_session();
    let dir = fixture.dir.path();
    let suggested = dir.join("suggested.cedar");
    let tests = dir.join("suggested.tests.toml");
    let analysed = solver();
    let mut args = vec![
        "policy".to_owned(),
        "suggest".to_owned(),
        text(&fixture.evidence),
        "--base".to_owned(),
        text(&fixture.policy),
        "--out".to_owned(),
        text(&suggested),
        "--tests-out".to_owned(),
        text(&tests),
    ];
    args.push(if analysed {
        "--max-widening".to_owned()
    } else {
        "--no-analysis".to_owned()
    });
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = enforcer_says(&args);
    assert_eq!(code, 0, "{report}");
    let policy = std::fs::read_to_string(&suggested).unwrap();
    let ws = text(&std::fs::canonicalize(&fixture.workspace).unwrap());
    for expected in [
        format!("resource.path like \"{ws}/src/*\""),
        format!("resource.path == \"{}\"", text(&home.join(".gitconfig"))),
        format!("resource.path == \"{ws}/notes.md\""),
        "context.command_line like \"/usr/bin/cat *\"".to_owned(),
        // The base's forbid, kept on top.
        "@id(\"no-env\")".to_owned(),
    ] {
        assert!(policy.contains(&expected), "no `{expected}` in\n{policy}");
    }
    assert!(
        !policy.contains(&format!("\"{}/*\"", text(&home))),
        "{policy}"
    );
    let (code, tested) = enforcer_says(&["policy", "test", &text(&tests)]);
    assert_eq!(code, 0, "{tested}");
    assert!(tested.contains(" 0 failed"), "{tested}");
    if !analysed {
        return;
    }
    assert!(
        report.contains(
            "result: every permit stays within the request classes the evidence exercised"
        ),
        "{report}"
    );
    // The analyser's view of what is new beyond the base, with a
    // counterexample for each kind.
    assert!(report.contains("NEW PERMISSION"), "{report}");

    // Reviewed as it is: within the evidence.
    let (code, reviewed) = enforcer_says(&[
        "policy",
        "suggest",
        &text(&fixture.evidence),
        "--base",
        &text(&fixture.policy),
        "--review",
        &text(&suggested),
        "--max-widening",
    ]);
    assert_eq!(code, 0, "{reviewed}");

    // One file of the home directory was read; a permit for all of it is
    // wider than the evidence, and the analyser shows a file never read.
    let broad = dir.join("broad.cedar");
    std::fs::write(
        &broad,
        format!(
            "{policy}\n@id(\"too-broad\")\npermit (principal, action == Action::\"file_read\", resource)\nwhen {{ resource.path like \"{}/*\" }};\n",
            text(&home)
        ),
    )
    .unwrap();
    let (code, caught) = enforcer_says(&[
        "policy",
        "suggest",
        &text(&fixture.evidence),
        "--base",
        &text(&fixture.policy),
        "--review",
        &text(&broad),
        "--max-widening",
    ]);
    assert_eq!(code, 1, "{caught}");
    let line = caught
        .lines()
        .find(|l| l.contains("WIDER THAN THE EVIDENCE"))
        .unwrap_or_else(|| panic!("{caught}"));
    assert!(line.contains("`too-broad` allows file_read"), "{line}");
    assert!(line.contains(&text(&home)), "{line}");
    assert!(!line.contains(".gitconfig"), "a file never read: {line}");
    assert!(
        caught.contains("result: wider than the evidence"),
        "{caught}"
    );
}
