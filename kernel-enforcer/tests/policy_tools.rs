//! The operator's policy tools through the real binary and library:
//! `policy test` on the shipped example and on broken files, `policy
//! explain`, and `policy diff`, whose counterexamples are decided again
//! here through the real decision path. Tests that need the cvc5 solver
//! say so on stderr and pass without it; CI installs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_testkit::{enforcer, run_enforcer as run, text};
use std::path::{Path, PathBuf};
use std::process::Command;

const WORKSPACE: &str = "/home/agent/project";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

fn example_policy() -> String {
    std::fs::read_to_string(examples().join("agent.cedar")).unwrap()
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
    let file = examples().join("mcp.tests.toml");
    let output = run(&["policy", "test", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(
        stdout.contains(
            r#"{"content":"x","meta":{"path":"notes.md"},"path":"smuggled.txt"} -> deny"#
        ),
        "{stdout}"
    );
}

/// Every policy test file shipped with the examples passes, the hook,
/// governed-agent and MCP profiles' among them (a profile added later is covered without
/// naming it here).
#[test]
fn every_shipped_policy_test_file_passes() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".tests.toml"))
        .collect();
    files.sort();
    for profile in [
        "claude-code.tests.toml",
        "claude-code-governed.tests.toml",
        "codex.tests.toml",
        "codex-governed.tests.toml",
        "coding-agent-hooks.tests.toml",
        "mcp-filesystem.tests.toml",
    ] {
        assert!(files.contains(&examples().join(profile)), "{profile}");
    }
    for file in files {
        let output = run(&["policy", "test", file.to_str().unwrap()]);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {stdout}{stderr}",
            file.display()
        );
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    }
}

/// The coding-agent profile's own cases, among them metadata changes and
/// Unix-socket connections: allowed in the workspace, refused outside it.
#[test]
fn the_coding_agent_profile_tests_pass() {
    let file = examples().join("coding-agent.tests.toml");
    let output = run(&["policy", "test", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    for expected in [
        "ok    chmod +x script.sh: file_write /home/agent/project/script.sh (metadata) -> allow",
        "ok    touch ~/.bashrc (times outside the workspace): file_write /home/agent/.bashrc (metadata) -> deny",
        "ok    the Docker daemon's socket: file_write /var/run/docker.sock (Unix socket connection) -> deny",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in {stdout}");
    }
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

#[test]
fn diff_without_a_solver_says_so_and_exits_2() {
    let policy = examples().join("agent.cedar");
    let policy = policy.to_str().unwrap();
    let output = Command::new(enforcer())
        .args(["policy", "diff", "--old", policy, "--new", policy])
        .env("CVC5", "/nonexistent/cvc5")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    #[cfg(feature = "symbolic")]
    assert!(stderr.contains("needs the cvc5 SMT solver"), "{stderr}");
    assert!(stderr.contains("no comparison was made"), "{stderr}");
    assert!(!stdout.contains("no new permissions"), "{stdout}");
}

// --- symbolic diff (needs cvc5) -------------------------------------------

#[cfg(feature = "symbolic")]
mod symbolic {
    use super::*;
    use kernel_core::{ActionKind, Decision};
    use kernel_policy::diff::{self, Change, DiffOptions, DiffOutcome, DiffReport};
    use kernel_policy::request::RequestSpec;
    use kernel_policy::{Environment, PolicyEngine};
    use std::io::Write as _;

    fn solver() -> bool {
        match diff::solver_version() {
            Ok(_) => true,
            Err(e) => {
                // Straight to stderr: the test harness captures print!.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: symbolic diff test needs cvc5 ({e})"
                );
                false
            }
        }
    }

    fn sources(text: &str) -> Vec<(String, String)> {
        vec![("policy.cedar".to_owned(), text.to_owned())]
    }

    fn compare(old: &str, new: &str) -> DiffReport {
        diff::diff(
            &sources(old),
            &sources(new),
            &DiffOptions {
                workspace: WORKSPACE.into(),
                assets: vec!["/var/lib/agent-kernel/kernel.key".into()],
            },
        )
        .unwrap()
    }

    /// Decides `request` through the real decision path under `policy`,
    /// independently of the diff's own replay.
    fn decide(policy: &str, request: &RequestSpec) -> Decision {
        let env =
            Environment::new(WORKSPACE, &["/var/lib/agent-kernel/kernel.key".into()]).unwrap();
        let engine = PolicyEngine::from_sources(&sources(policy), env).unwrap();
        let action = request.canonical(WORKSPACE).unwrap();
        engine.decide_fresh(&action).verdict.decision
    }

    fn findings(report: &DiffReport, kind: ActionKind) -> Vec<&diff::Finding> {
        report
            .actions
            .iter()
            .filter(|a| a.kind == kind)
            .flat_map(|a| &a.findings)
            .collect()
    }

    #[test]
    fn identical_sets_have_no_new_permissions() {
        if !solver() {
            return;
        }
        let report = compare(&example_policy(), &example_policy());
        assert_eq!(
            report.outcome(),
            DiffOutcome::NoNewPermissions,
            "{}",
            report.render()
        );
        assert!(
            report
                .actions
                .iter()
                .all(|a| a.findings.is_empty() && a.open.is_empty())
        );
        assert_eq!(report.actions.len(), ActionKind::ALL.len());
    }

    #[test]
    fn an_added_permit_is_found_and_its_counterexample_is_real() {
        if !solver() {
            return;
        }
        let old = example_policy();
        let new = format!(
            "{old}\n@id(\"package-index\")\npermit (principal, action == Action::\"net_connect\", resource)\nwhen {{ resource.name like \"*.crates.io\" && context.port == 443 }};\n"
        );
        let report = compare(&old, &new);
        assert_eq!(
            report.outcome(),
            DiffOutcome::NewPermissions,
            "{}",
            report.render()
        );
        let found = findings(&report, ActionKind::NetConnect);
        assert_eq!(found.len(), 1, "{}", report.render());
        let finding = found[0];
        assert!(finding.confirmed);
        assert_eq!(finding.change, Change::Admits);
        assert_eq!(finding.request.port, Some(443));
        assert!(
            finding
                .request
                .host
                .as_deref()
                .unwrap()
                .ends_with(".crates.io")
        );
        assert_eq!(decide(&new, &finding.request), Decision::Allow);
        assert_eq!(decide(&old, &finding.request), Decision::Deny);
        for action in report
            .actions
            .iter()
            .filter(|a| a.kind != ActionKind::NetConnect)
        {
            assert!(action.findings.is_empty(), "{}", report.render());
        }
        // The other way round the new set only takes permissions away.
        assert_eq!(compare(&new, &old).outcome(), DiffOutcome::NoNewPermissions);
    }

    #[test]
    fn new_permissions_of_every_kind_are_decoded_into_real_requests() {
        if !solver() {
            return;
        }
        let old = example_policy();
        let additions = r#"
@id("make") permit (principal, action == Action::"exec", resource)
  when { resource.path == "/usr/bin/make" && context.args.contains("test") && context.cwd_in_workspace };
@id("read-etc-hosts") permit (principal, action == Action::"file_read", resource == File::"/etc/hosts");
@id("logs") permit (principal, action == Action::"file_write", resource in Workspace::"root")
  when { resource.extension == "log" && context.mode == "append" && context.size > 2000000 };
@id("tmp-delete") permit (principal, action == Action::"file_delete", resource in Workspace::"root")
  when { resource.name like "*.tmp" };
@id("api-post") permit (principal, action == Action::"http", resource == Host::"api.github.com")
  when { context.method == "POST" && context.path like "/repos/*" };
@id("ci-tool") permit (principal, action == Action::"tool_call", resource == Tool::"run_ci");
@id("refunds") permit (principal, action == Action::"custom", resource == CustomKind::"payments.refund")
  when { context.payload like "*order*" };
@id("guides") permit (principal, action == Action::"mcp_request", resource == McpMethod::"resources/read")
  when { context.params like "*docs://guides/*" };
@id("roots") permit (principal, action == Action::"mcp_server_request", resource == McpMethod::"roots/list");
"#;
        let new = format!("{old}\n{additions}");
        let report = compare(&old, &new);
        assert_eq!(
            report.outcome(),
            DiffOutcome::NewPermissions,
            "{}",
            report.render()
        );
        for kind in ActionKind::ALL
            .into_iter()
            .filter(|k| *k != ActionKind::NetConnect)
        {
            let found = findings(&report, kind);
            assert!(!found.is_empty(), "{kind:?}: {}", report.render());
            for finding in found {
                assert!(finding.confirmed, "{kind:?}: {}", report.render());
                assert!(
                    decide(&new, &finding.request) != Decision::Deny,
                    "{kind:?}: {:?}",
                    finding.request
                );
                assert_eq!(decide(&old, &finding.request), Decision::Deny, "{kind:?}");
            }
        }
        assert!(findings(&report, ActionKind::NetConnect).is_empty());
    }

    #[test]
    fn dropping_an_ask_is_a_new_permission_without_approval() {
        if !solver() {
            return;
        }
        let old = example_policy();
        let new = old.replace("@ask\n", "");
        let report = compare(&old, &new);
        let found = findings(&report, ActionKind::ToolCall);
        assert_eq!(found.len(), 1, "{}", report.render());
        assert_eq!(found[0].change, Change::SkipsApproval);
        assert_eq!(decide(&old, &found[0].request), Decision::Ask);
        assert_eq!(decide(&new, &found[0].request), Decision::Allow);
        assert_eq!(compare(&new, &old).outcome(), DiffOutcome::NoNewPermissions);
    }

    #[test]
    fn the_floor_is_in_both_sets() {
        if !solver() {
            return;
        }
        // A new set that permits everything still cannot reach the
        // floor's assets: no counterexample may touch them.
        let all = r#"@id("all") permit (principal, action, resource);"#;
        let report = compare("", all);
        assert_eq!(report.outcome(), DiffOutcome::NewPermissions);
        for finding in report.actions.iter().flat_map(|a| &a.findings) {
            assert!(finding.confirmed, "{}", report.render());
            assert_eq!(decide(all, &finding.request), Decision::Allow);
        }
        let floor_only = compare(
            "",
            r#"@id("key") permit (principal, action == Action::"file_read", resource == File::"/var/lib/agent-kernel/kernel.key");"#,
        );
        assert_eq!(
            floor_only.outcome(),
            DiffOutcome::NoNewPermissions,
            "{}",
            floor_only.render()
        );
    }

    #[test]
    fn an_old_policy_that_can_fail_leaves_the_answer_open() {
        if !solver() {
            return;
        }
        // The old forbid overflows on two or more arguments (and so denies
        // there); the new set is the same without the overflow's source.
        let old = r#"@id("ls") permit (principal, action == Action::"exec", resource) when { resource.name == "ls" };
@id("few-args") forbid (principal, action == Action::"exec", resource) when { context.argc * 4611686018427387904 > 4611686018427387904 };"#;
        let report = compare(old, old);
        assert_eq!(
            report.outcome(),
            DiffOutcome::Undecided,
            "{}",
            report.render()
        );
        let exec = report
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::Exec)
            .unwrap();
        assert!(
            exec.open[0].contains("`few-args` can fail to evaluate"),
            "{:?}",
            exec.open
        );
        // Whether the new set allows `ls` with two arguments, which the old
        // one denies by failing, is not something Cedar's analysis sees;
        // the answer stays open rather than "no difference".
        let new = r#"@id("ls") permit (principal, action == Action::"exec", resource) when { resource.name == "ls" };"#;
        assert_eq!(compare(old, new).outcome(), DiffOutcome::Undecided);
        // A new set that allows every program is caught all the same.
        let new = r#"@id("all") permit (principal, action == Action::"exec", resource);"#;
        let report = compare(old, new);
        assert_eq!(
            report.outcome(),
            DiffOutcome::NewPermissions,
            "{}",
            report.render()
        );
        for finding in findings(&report, ActionKind::Exec) {
            assert_eq!(decide(new, &finding.request), Decision::Allow);
            assert_eq!(decide(old, &finding.request), Decision::Deny);
        }
    }

    /// The schema cannot declare a tool's arguments, so the analysis sees
    /// calls without any: a set that reads `context.args` leaves
    /// `tool_call` open instead of claiming "no difference".
    #[test]
    fn policies_on_tool_arguments_leave_tool_calls_open() {
        if !solver() {
            return;
        }
        let old = r#"@id("notes") permit (principal, action == Action::"tool_call", resource == Tool::"write_file") when { context.args has path && context.args.path == "notes.md" };"#;
        let new = r#"@id("notes") permit (principal, action == Action::"tool_call", resource == Tool::"write_file") when { context.args has path && context.args.path like "*" };"#;
        let report = compare(old, new);
        assert_eq!(
            report.outcome(),
            DiffOutcome::Undecided,
            "{}",
            report.render()
        );
        let tool = report
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::ToolCall)
            .unwrap();
        assert!(tool.open[0].contains("`context.args`"), "{:?}", tool.open);
        // Both sets really differ on a call the analysis cannot see.
        let request = RequestSpec {
            action: "tool_call".into(),
            tool: Some("write_file".into()),
            input: Some(serde_json::json!({"path": "other.md"})),
            ..RequestSpec::default()
        };
        assert_eq!(decide(old, &request), Decision::Deny);
        assert_eq!(decide(new, &request), Decision::Allow);
        // The same for an MCP request's parameters.
        let old = r#"@id("guides") permit (principal, action == Action::"mcp_request", resource == McpMethod::"resources/read") when { context.args has uri && context.args.uri == "docs://guides/a" };"#;
        let new = r#"@id("guides") permit (principal, action == Action::"mcp_request", resource == McpMethod::"resources/read") when { context.args has uri && context.args.uri like "docs://*" };"#;
        let report = compare(old, new);
        assert_eq!(
            report.outcome(),
            DiffOutcome::Undecided,
            "{}",
            report.render()
        );
        let mcp = report
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::McpRequest)
            .unwrap();
        assert!(mcp.open[0].contains("`context.args`"), "{:?}", mcp.open);
        let request = RequestSpec {
            action: "mcp_request".into(),
            method: Some("resources/read".into()),
            params: Some(serde_json::json!({"uri": "docs://secrets"})),
            ..RequestSpec::default()
        };
        assert_eq!(decide(old, &request), Decision::Deny);
        assert_eq!(decide(new, &request), Decision::Allow);
    }

    #[test]
    fn the_cli_reports_and_exits_by_outcome() {
        if !solver() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let old = examples().join("agent.cedar");
        let new = dir.path().join("new.cedar");
        std::fs::write(
            &new,
            format!(
                "{}\n@id(\"any-tool\") permit (principal, action == Action::\"tool_call\", resource);\n",
                example_policy()
            ),
        )
        .unwrap();
        let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
        let args = |a: &str, b: &str| {
            vec![
                "policy".to_owned(),
                "diff".into(),
                "--old".into(),
                a.into(),
                "--new".into(),
                b.into(),
                "--workspace".into(),
                WORKSPACE.into(),
            ]
        };
        let output = Command::new(enforcer())
            .args(args(old, new))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stdout.contains("tool_call    NEW PERMISSION"), "{stdout}");
        assert!(
            stdout.contains("as toml:   action = \"tool_call\""),
            "{stdout}"
        );
        assert!(stdout.contains("result: new permissions found"), "{stdout}");
        let output = Command::new(enforcer())
            .args(args(new, old))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("result: no new permissions"), "{stdout}");
    }
}
