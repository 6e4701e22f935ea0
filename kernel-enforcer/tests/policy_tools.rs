//! The operator's policy tools through the real binary and library:
//! `policy test` on the shipped example and on broken files, and `policy
//! explain`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENFORCER: &str = env!("CARGO_BIN_EXE_kernel-enforcer");
const WORKSPACE: &str = "/home/agent/project";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

fn example_policy() -> String {
    std::fs::read_to_string(examples().join("agent.cedar")).unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(ENFORCER).args(args).output().unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_example_tests_pass() {
    let file = examples().join("agent.tests.toml");
    let output = run(&["policy", "test", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("-> ask (deploy-needs-approval"), "{stdout}");
    assert!(stdout.contains("deny (kernel-floor-assets"), "{stdout}");
}

#[test]
fn a_failing_case_says_what_was_expected_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), example_policy()).unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        r#"policies = ["p.cedar"]
[environment]
workspace = "/home/agent/project"

[[case]]
name = "right"
action = "file_read"
path = "README.md"
expect = "allow"

[[case]]
name = "wrong"
action = "tool_call"
tool = "deploy"
expect = "allow"
"#,
    )
    .unwrap();
    let output = run(&["policy", "test", file.to_str().unwrap()]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok    right:"), "{stdout}");
    let fail = stdout.lines().find(|l| l.starts_with("FAIL")).unwrap();
    assert!(fail.contains("t.toml:11"), "{fail}");
    assert!(
        fail.contains("expected allow; got ask (deploy-needs-approval"),
        "{fail}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn a_broken_test_file_is_reported_with_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), example_policy()).unwrap();
    // Each body starts on line 2 of the file, after the `policies` line.
    let cases = [
        (
            "[[case]]\naction = \"file_read\"\npath = \"a\"\nexpect = \"maybe\"\n",
            "`expect = \"maybe\"` is not a decision",
        ),
        (
            "[[case]]\naction = \"exec\"\nprogram = \"git\"\nexpect = \"deny\"\n",
            "not a path",
        ),
        ("[[case]\n", ""),
        (
            "[[case]]\naction = \"net_connect\"\nhost = \"a\"\nport = 70000\nexpect = \"deny\"\n",
            "",
        ),
        ("policy = 1\n", "unknown field `policy`"),
    ];
    for (body, message) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, format!("policies = [\"p.cedar\"]\n{body}")).unwrap();
        let output = run(&["policy", "test", file.to_str().unwrap()]);
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{body}: {stdout}{stderr}");
        assert!(stderr.contains("bad.toml:2:"), "{body}: {stderr}");
        assert!(stderr.contains(message), "{body}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = run(&["policy", "test", "/nonexistent/t.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output)
            .1
            .contains("cannot read test file `/nonexistent/t.toml`")
    );
}

#[test]
fn explain_names_the_deciding_policy_the_floor_and_errors() {
    let policy = examples().join("agent.cedar");
    let policy = policy.to_str().unwrap();
    let output = run(&[
        "policy",
        "explain",
        "--policy",
        policy,
        "--workspace",
        WORKSPACE,
        "file_read",
        ".env",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("decision:  deny"), "{stdout}");
    assert!(
        stdout.contains("no-secrets (forbid): private keys"),
        "{stdout}"
    );
    assert!(stdout.contains("resource.name = \".env\""), "{stdout}");
    assert!(stdout.contains("floor:     not involved"), "{stdout}");

    let output = run(&[
        "policy",
        "explain",
        "--policy",
        policy,
        "--workspace",
        WORKSPACE,
        "--protect",
        "/var/lib/agent-kernel/kernel.key",
        "exec",
        "/usr/bin/cat",
        "/var/lib/agent-kernel/kernel.key",
    ]);
    let (stdout, _) = text(&output);
    assert!(stdout.contains("kernel-floor-assets (forbid)"), "{stdout}");
    assert!(stdout.contains("floor:     decided"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("r.json");
    std::fs::write(
        &request,
        r#"{"action": "tool_call", "tool": "deploy", "input": {"env": "prod"}}"#,
    )
    .unwrap();
    let output = run(&[
        "policy",
        "explain",
        "--policy",
        policy,
        "--request",
        request.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&output);
    assert!(stdout.contains("decision:  ask"), "{stdout}");
    assert!(
        stdout.contains("deploy-needs-approval (permit, @ask)"),
        "{stdout}"
    );

    std::fs::write(&request, "{\"action\": \"file_read\",\n \"pth\": \"a\"}").unwrap();
    let output = run(&[
        "policy",
        "explain",
        "--policy",
        policy,
        "--request",
        request.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("r.json:2:"), "{stderr}");
    assert!(stderr.contains("unknown field `pth`"), "{stderr}");
}
