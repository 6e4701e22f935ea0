//! Short-lived clients of a running enforcer: `listen`, `ask`, `exec` and
//! the pre-tool-use hook adapters, driven through the real binary with
//! recorded hook payloads. Each denial is shown by its effect not
//! happening: the hook's caller runs the command only on exit status 0,
//! as the coding agents do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{Decision, SignedReceipt, parse_public_key, unhex, verify_receipt_signature};
use kernel_testkit::{Fixture, enforcer, fixture};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
@id("read-workspace")
@reason("project files may be read")
permit (principal, action == Action::"file_read", resource in Workspace::"root");

@id("write-workspace")
@reason("small files inside the workspace")
permit (principal, action == Action::"file_write", resource in Workspace::"root")
when { context.size <= 4096 };

@id("no-dotenv")
@reason("credentials files are never touched")
forbid (principal, action in [Action::"file_read", Action::"file_write"], resource)
when { resource.name == ".env" };

@id("touch")
@reason("touch, inside the workspace")
permit (principal, action == Action::"exec", resource)
when { resource.name == "touch" && context.cwd_in_workspace };

@id("echo")
@reason("echo is harmless")
permit (principal, action == Action::"exec", resource)
when { resource.name == "echo" };

@id("search-tools")
@reason("the agent's search tools only read")
permit (principal, action == Action::"tool_call", resource)
when { resource.name == "Grep" || resource.name == "Glob" };

@id("no-ssh")
@reason("ssh keys are never read")
forbid (principal, action == Action::"file_read", resource)
when { resource.path like "*/.ssh" || resource.path like "*/.ssh/*" };

@id("deploy-asks")
@ask
@reason("a release needs a person's yes")
permit (principal, action == Action::"tool_call", resource)
when { resource.name == "mcp__deploy__release" };
"#;

/// A `listen` of [`POLICY`] over a fixture whose home directory, beside
/// the workspace, holds a key.
struct Listener {
    listen: kernel_testkit::Listener,
    fixture: Fixture,
}

impl std::ops::Deref for Listener {
    type Target = kernel_testkit::Listener;

    fn deref(&self) -> &kernel_testkit::Listener {
        &self.listen
    }
}

impl std::ops::DerefMut for Listener {
    fn deref_mut(&mut self) -> &mut kernel_testkit::Listener {
        &mut self.listen
    }
}

fn listen_with(extra: &[&str]) -> Listener {
    let fixture = fixture(POLICY);
    kernel_testkit::plant_ssh_key(&fixture.dir.path().join("home"), SECRET);
    Listener {
        listen: kernel_testkit::Listener::of(&fixture, extra),
        fixture,
    }
}

fn listen() -> Listener {
    listen_with(&[])
}

/// The content of the key in the test's home directory.
const SECRET: &str = "PRIVATE-KEY-MATERIAL-7f3a";

fn run(socket: &Path, cwd: &Path, args: &[&str], stdin: &str) -> Output {
    run_env(socket, cwd, args, stdin, &[])
}

fn run_env(socket: &Path, cwd: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    kernel_testkit::output_with_input(
        Command::new(enforcer())
            .args(args)
            .env("AGENT_KERNEL_ENDPOINT", socket)
            .envs(env.iter().copied())
            .current_dir(cwd),
        stdin.as_bytes(),
    )
}

/// A recorded payload, with `{{WORKSPACE}}` and `{{HOME}}` (the test's
/// home directory, beside the workspace) filled in.
fn payload(name: &str, workspace: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hooks")
        .join(name);
    let home = workspace.parent().unwrap().join("home");
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{{WORKSPACE}}", &workspace.to_string_lossy())
        .replace("{{HOME}}", &home.to_string_lossy())
}

/// Runs a hook the way a coding agent does: the payload on standard
/// input; on exit status 0 the agent runs the tool itself.
fn agent_tool_call(listener: &Listener, agent: &str, name: &str) -> Output {
    agent_tool_call_as(listener, agent, name).0
}

/// As [`agent_tool_call`], also returning what the tool gave the agent
/// (empty when it did not run).
fn agent_tool_call_as(listener: &Listener, agent: &str, name: &str) -> (Output, String) {
    agent_tool_call_env(listener, agent, name, &[])
}

/// As [`agent_tool_call_as`], with more variables in the hook's
/// environment.
fn agent_tool_call_env(
    listener: &Listener,
    agent: &str,
    name: &str,
    env: &[(&str, &str)],
) -> (Output, String) {
    let workspace = &listener.fixture.workspace;
    let text = payload(name, workspace);
    let output = run_env(&listener.socket, workspace, &["hook", agent], &text, env);
    let mut result = String::new();
    let exit = output.status.code();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    // Claude Code asks its user on an exit 0 with `"ask"`; no one answers
    // here, so the tool does not run.
    let asks = exit == Some(0)
        && !output.stdout.is_empty()
        && stdout_json(&output)["hookSpecificOutput"]["permissionDecision"] == "ask";
    if exit == Some(0) && !asks {
        result = perform(&value, workspace);
    }
    (output, result)
}

/// Performs a tool call as the agent would after its hook let it through:
/// a `Bash` command's argument vector, a `Grep` over its path, the files
/// an `apply_patch` adds.
fn perform(call: &serde_json::Value, workspace: &Path) -> String {
    let input = &call["tool_input"];
    match call["tool_name"].as_str().unwrap_or_default() {
        // Codex applies this form itself.
        "Bash"
            if input["command"]
                .as_str()
                .unwrap()
                .starts_with("apply_patch <<'EOF'\n") =>
        {
            let command = input["command"].as_str().unwrap();
            let patch = command
                .strip_prefix("apply_patch <<'EOF'\n")
                .and_then(|rest| rest.strip_suffix("EOF\n"))
                .unwrap();
            perform(
                &serde_json::json!({"tool_name": "apply_patch", "tool_input": {"command": patch}}),
                workspace,
            )
        }
        // The command line, given to a shell as the agents do.
        "Bash" => {
            let output = Command::new("bash")
                .arg("-c")
                .arg(input["command"].as_str().unwrap())
                .current_dir(workspace)
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        "Grep" => {
            let root = PathBuf::from(input["path"].as_str().unwrap());
            let mut found = String::new();
            grep(&root, input["pattern"].as_str().unwrap(), &mut found);
            found
        }
        "apply_patch" => {
            let mut target = None;
            for line in input["command"].as_str().unwrap().lines() {
                if let Some(path) = line.strip_prefix("*** Add File: ") {
                    let path = workspace.join(path);
                    std::fs::write(&path, "").unwrap();
                    target = Some(path);
                } else if let (Some(path), Some(text)) = (&target, line.strip_prefix('+')) {
                    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                    writeln!(file, "{text}").unwrap();
                } else {
                    target = None;
                }
            }
            "Success".into()
        }
        _ => String::new(),
    }
}

/// Lines holding `pattern` in the files at or beneath `path`.
fn grep(path: &Path, pattern: &str, found: &mut String) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            grep(&entry.unwrap().path(), pattern, found);
        }
    } else if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().filter(|line| line.contains(pattern)) {
            found.push_str(&format!("{}:{line}\n", path.display()));
        }
    }
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_blocked(output: &Output, reason_contains: &str) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let value = stdout_json(output);
    assert_eq!(
        value["hookSpecificOutput"]["permissionDecision"], "deny",
        "{value}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(reason_contains), "{stderr}");
}

#[test]
fn claude_code_hook_lets_an_allowed_command_run_and_says_nothing() {
    let listener = listen();
    let output = agent_tool_call(&listener, "claude-code", "claude_code_bash_allowed.json");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    // Nothing for the model's context, and no "allow" of the agent's own.
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    assert!(
        listener
            .fixture
            .workspace
            .join("made-by-agent.txt")
            .exists()
    );
    // With --verbose the allow names its receipt, still without "allow".
    let workspace = &listener.fixture.workspace;
    let verbose = run(
        &listener.socket,
        workspace,
        &["hook", "claude-code", "--verbose"],
        &payload("claude_code_read_allowed.json", workspace),
    );
    assert_eq!(verbose.status.code(), Some(0), "{verbose:?}");
    let value = stdout_json(&verbose);
    assert!(
        value["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap()
            .contains("allowed by the kernel (receipt at log index")
    );
    assert!(value["hookSpecificOutput"]["permissionDecision"].is_null());
}

#[test]
fn claude_code_hook_blocks_a_denied_command_and_it_never_runs() {
    let listener = listen();
    let output = agent_tool_call(&listener, "claude-code", "claude_code_bash_denied.json");
    assert_blocked(&output, "denied by policy");
    assert!(!listener.fixture.workspace.join("not-allowed").exists());
}

/// A command line is decided part by part: it runs only if every program
/// and every redirection in it is allowed, and a denied part stops all of
/// it, the allowed parts before it included.
#[test]
fn a_command_line_runs_only_if_every_part_is_allowed() {
    let listener = listen();
    let workspace = &listener.fixture.workspace;
    // `touch first.txt && mkdir second`: `mkdir` has no permit.
    let output = agent_tool_call(&listener, "claude-code", "claude_code_bash_compound.json");
    assert_blocked(&output, "denied by policy (part 2 of 2: exec");
    assert!(!workspace.join("first.txt").exists());
    assert!(!workspace.join("second").exists());
    // `echo token > notes.txt`: the redirection is a write of unknown
    // size, which the workspace permit (4096 bytes at most) does not
    // cover.
    let output = agent_tool_call(&listener, "claude-code", "claude_code_bash_redirect.json");
    assert_blocked(&output, "part 1 of 2: file_write");
    assert!(!workspace.join("notes.txt").exists());
    // Every part allowed: the line runs as the agent's shell reads it.
    let (output, stdout) = agent_tool_call_as(
        &listener,
        "claude-code",
        "claude_code_bash_compound_allowed.json",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(stdout, "done\n");
    assert!(workspace.join("first.txt").exists());
    assert!(workspace.join("second file.txt").exists());
}

#[test]
fn claude_code_file_tools_are_decided_as_file_actions() {
    let listener = listen();
    std::fs::write(listener.fixture.workspace.join("README.md"), "hi").unwrap();
    let read = agent_tool_call(&listener, "claude-code", "claude_code_read_allowed.json");
    assert_eq!(read.status.code(), Some(0), "{read:?}");
    let write = agent_tool_call(&listener, "claude-code", "claude_code_write_denied.json");
    assert_blocked(&write, "credentials files are never touched");
}

#[test]
fn codex_hook_allows_and_blocks() {
    let listener = listen();
    let allowed = agent_tool_call(&listener, "codex", "codex_bash_allowed.json");
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert!(allowed.stdout.is_empty(), "{allowed:?}");
    assert!(
        listener
            .fixture
            .workspace
            .join("made-by-codex.txt")
            .exists()
    );
    let denied = agent_tool_call(&listener, "codex", "codex_bash_denied.json");
    assert_blocked(&denied, "denied by policy");
    assert!(
        !listener
            .fixture
            .workspace
            .join("codex-not-allowed")
            .exists()
    );
    // A call the policy has ask about: Codex takes no "ask" from a hook.
    let mcp = agent_tool_call(&listener, "codex", "codex_mcp_denied.json");
    assert_blocked(&mcp, "needs approval");
}

/// A search was an opaque tool call, so a policy that let the search tools
/// run let one read `~/.ssh` although reading it is forbidden. A search is
/// now the read of what it searches.
#[test]
fn a_grep_over_a_forbidden_directory_is_blocked_and_the_same_grep_in_the_workspace_runs() {
    let listener = listen();
    std::fs::write(
        listener.fixture.workspace.join("notes.md"),
        "PRIVATE notes\n",
    )
    .unwrap();
    let (blocked, found) =
        agent_tool_call_as(&listener, "claude-code", "claude_code_grep_ssh.json");
    assert_blocked(&blocked, "ssh keys are never read");
    assert!(!found.contains(SECRET), "{found}");
    let (allowed, found) =
        agent_tool_call_as(&listener, "claude-code", "claude_code_grep_workspace.json");
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert!(found.contains("PRIVATE notes"), "{found}");
    assert!(!found.contains(SECRET), "{found}");
    // Codex's `view_image` reads the file it shows.
    let image = agent_tool_call(&listener, "codex", "codex_view_image_key.json");
    assert_blocked(&image, "ssh keys are never read");
}

/// Codex's patches, as its `apply_patch` tool and as an `exec_command`
/// here-document, are the writes they make: allowed when every file is,
/// and otherwise nothing is written.
#[test]
fn codex_patches_write_only_when_every_file_they_touch_is_allowed() {
    let listener = listen();
    let workspace = &listener.fixture.workspace;
    let (tool, _) = agent_tool_call_as(&listener, "codex", "codex_apply_patch.json");
    assert_eq!(tool.status.code(), Some(0), "{tool:?}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("notes.md")).unwrap(),
        "hello\n"
    );
    let (heredoc, _) =
        agent_tool_call_as(&listener, "codex", "codex_exec_command_apply_patch.json");
    assert_eq!(heredoc.status.code(), Some(0), "{heredoc:?}");
    assert!(workspace.join("heredoc.md").exists());
    // The second file is a credentials file: the whole patch is blocked,
    // naming the part, and neither file is written.
    let env = agent_tool_call(&listener, "codex", "codex_apply_patch_env.json");
    assert_blocked(&env, "part 2 of 2: file_write");
    assert_blocked(&env, "credentials files are never touched");
    assert!(!workspace.join("notes2.md").exists());
    assert!(!workspace.join(".env").exists());
}

/// A policy's `@ask` is Claude Code's own permission prompt, with the
/// reason; Codex, which refuses "ask" from a hook, blocks with a reason
/// that says approval is needed.
#[test]
fn a_policy_ask_is_claude_codes_own_prompt_and_a_reasoned_block_for_codex() {
    let listener = listen();
    let asked = agent_tool_call(&listener, "claude-code", "claude_code_mcp_ask.json");
    assert_eq!(asked.status.code(), Some(0), "{asked:?}");
    let value = stdout_json(&asked);
    assert_eq!(value["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    assert_eq!(value["hookSpecificOutput"]["permissionDecision"], "ask");
    assert!(
        value["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("a release needs a person's yes"),
        "{value}"
    );
    let blocked = agent_tool_call(&listener, "codex", "codex_mcp_denied.json");
    assert_blocked(&blocked, "needs approval: a release needs a person's yes");
}

/// A hook that fails inside still blocks: in both agents any exit status
/// but 0 and 2 (a panic's 101) lets the call go on.
#[test]
fn a_hook_that_panics_blocks_with_exit_2_and_quotes_nothing() {
    let listener = listen();
    for agent in ["claude-code", "codex"] {
        let (output, _) = agent_tool_call_env(
            &listener,
            agent,
            "claude_code_bash_allowed.json",
            &[("AGENT_KERNEL_TEST_FAULT", "panic:hook")],
        );
        assert_blocked(&output, "internal error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("injected fault"), "{stderr}");
        assert!(!stderr.contains("made-by-agent"), "{stderr}");
        assert!(
            !listener
                .fixture
                .workspace
                .join("made-by-agent.txt")
                .exists()
        );
    }
}

#[test]
fn malformed_hook_payloads_are_blocked() {
    let listener = listen();
    for name in ["malformed_truncated.json", "malformed_no_tool.json"] {
        for agent in ["claude-code", "codex"] {
            let output = agent_tool_call(&listener, agent, name);
            assert_blocked(&output, "blocked");
        }
    }
}

/// A payload with two readings of a field (the first `command` for one
/// reader, the last for another, or one matched regardless of case) is
/// blocked: the command decided might not be the one the agent runs.
#[test]
fn hook_payloads_with_two_readings_are_blocked_and_nothing_is_decided() {
    let listener = listen();
    for name in ["duplicate_command.json", "case_variant_command.json"] {
        for agent in ["claude-code", "codex"] {
            let output = agent_tool_call(&listener, agent, name);
            assert_blocked(&output, "malformed hook payload");
        }
    }
    assert!(
        !listener
            .fixture
            .workspace
            .join("made-by-agent.txt")
            .exists()
    );
    assert!(!listener.fixture.workspace.join("not-allowed").exists());
}

#[test]
fn with_no_enforcer_every_hook_call_is_blocked() {
    let mut listener = listen();
    let socket = listener.socket.clone();
    let workspace = listener.fixture.workspace.clone();
    let before = run(
        &socket,
        &workspace,
        &["hook", "claude-code"],
        &payload("claude_code_bash_allowed.json", &workspace),
    );
    assert_eq!(before.status.code(), Some(0), "{before:?}");
    // The enforcer dies (killed, its socket file left behind): the same
    // allowed payload is now blocked.
    listener.child.0.kill().unwrap();
    listener.child.0.wait().unwrap();
    assert!(socket.exists());
    for agent in ["claude-code", "codex"] {
        let output = run(
            &socket,
            &workspace,
            &["hook", agent],
            &payload("claude_code_bash_allowed.json", &workspace),
        );
        assert_blocked(&output, "fail closed");
    }
    // A tool on Claude Code's list of tools that touch nothing is not
    // asked about, so it goes on.
    let todo = run(
        &socket,
        &workspace,
        &["hook", "claude-code"],
        &payload("claude_code_todo.json", &workspace),
    );
    assert_eq!(todo.status.code(), Some(0), "{todo:?}");
    assert!(todo.stdout.is_empty(), "{todo:?}");
}

#[test]
fn ask_prints_a_receipt_that_verifies_and_exits_by_decision() {
    let listener = listen();
    let workspace = &listener.fixture.workspace;
    let allowed = run(
        &listener.socket,
        workspace,
        &["ask", "--action-json", "-"],
        r#"{"version":1,"action":{"kind":"exec","program":"echo","args":["hi"]}}"#,
    );
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    let value = stdout_json(&allowed);
    assert_eq!(value["decision"], "allow");
    assert_eq!(value["policies"], serde_json::json!(["echo"]));
    // Anyone with the public key can check the printed receipt again.
    let key = parse_public_key(value["public_key"].as_str().unwrap()).unwrap();
    let receipt = SignedReceipt {
        body: unhex(value["receipt"]["body"].as_str().unwrap()).unwrap(),
        signature: unhex(value["receipt"]["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    };
    let verified = verify_receipt_signature(&receipt, &key).unwrap();
    assert_eq!(verified.body().decision, Decision::Allow);
    let mut forged = receipt.clone();
    forged.signature[0] ^= 1;
    assert!(verify_receipt_signature(&forged, &key).is_err());

    let denied = run(
        &listener.socket,
        workspace,
        &["ask", "--action-json", "-"],
        r#"{"version":1,"action":{"kind":"file_write","path":".env","content":"x"}}"#,
    );
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert_eq!(stdout_json(&denied)["decision"], "deny");

    for bad in [
        r#"{"version":2,"action":{"kind":"file_read","path":"a"}}"#,
        r#"{"version":1,"action":{"kind":"shell","command":"ls"}}"#,
        "{",
    ] {
        let output = run(
            &listener.socket,
            workspace,
            &["ask", "--action-json", "-"],
            bad,
        );
        assert_eq!(output.status.code(), Some(2), "{bad}: {output:?}");
        assert_eq!(stdout_json(&output)["decision"], "error");
    }

    // A pinned key that is not the enforcer's: no answer is accepted.
    let other = listener.fixture.dir.path().join("other");
    let keygen = Command::new(enforcer())
        .args(["keygen", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let pinned = run(
        &listener.socket,
        workspace,
        &[
            "ask",
            "--pubkey",
            other.join("kernel.pub").to_str().unwrap(),
            "--action-json",
            "-",
        ],
        r#"{"version":1,"action":{"kind":"exec","program":"echo","args":["hi"]}}"#,
    );
    assert_eq!(pinned.status.code(), Some(2), "{pinned:?}");

    // Every decision is in the evidence, which verifies.
    let report = kernel_testkit::audit_verify(&listener.fixture.evidence);
    assert!(report.contains("1 allowed, 1 denied"), "{report}");
}

#[test]
fn exec_runs_allowed_programs_through_the_broker_only() {
    let listener = listen();
    let workspace = &listener.fixture.workspace;
    let allowed = run(
        &listener.socket,
        workspace,
        &["exec", "--", "touch", "brokered.txt"],
        "",
    );
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert!(workspace.join("brokered.txt").exists());
    let echoed = run(
        &listener.socket,
        workspace,
        &["exec", "--", "echo", "hi"],
        "",
    );
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "hi\n");
    let denied = run(
        &listener.socket,
        workspace,
        &["exec", "--", "mkdir", "nope"],
        "",
    );
    assert_eq!(denied.status.code(), Some(126), "{denied:?}");
    assert!(!workspace.join("nope").exists());
    drop(listener);
}

#[test]
fn a_peer_of_another_uid_gets_no_answer() {
    let listener = listen_with(&["--client-uid", "4242"]);
    let output = run(
        &listener.socket,
        &listener.fixture.workspace,
        &["ask", "--action-json", "-"],
        r#"{"version":1,"action":{"kind":"exec","program":"echo","args":["hi"]}}"#,
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let exec = run(
        &listener.socket,
        &listener.fixture.workspace,
        &["exec", "--", "touch", "uid.txt"],
        "",
    );
    assert_eq!(exec.status.code(), Some(125), "{exec:?}");
    assert!(!listener.fixture.workspace.join("uid.txt").exists());
}

#[test]
fn a_halted_enforcer_stops_answering_and_every_call_is_denied() {
    let listener = listen();
    let workspace = listener.fixture.workspace.clone();
    let socket = listener.socket.clone();
    kernel_testkit::signal(listener.child.0.id(), "USR1");
    // The signal takes effect asynchronously: wait until a harmless call is
    // refused as halted (an effect already started when the halt lands is
    // a documented limit), then nothing is performed any more.
    let started = Instant::now();
    loop {
        let output = run(&socket, &workspace, &["exec", "--", "true"], "");
        if output.status.code() == Some(125) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{output:?}");
    }
    let output = run(
        &socket,
        &workspace,
        &["exec", "--", "touch", "after-halt.txt"],
        "",
    );
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert!(!workspace.join("after-halt.txt").exists());
}

/// Under `kernel-enforcer run`, `exec` is the confined agent: it joins the
/// supervising enforcer on the agent's channel and the broker runs the
/// program.
#[test]
fn exec_under_run_is_brokered_by_the_supervisor() {
    if kernel_confine::check_support().is_err() {
        println!("SKIPPED: this system cannot confine (Landlock and seccomp needed)");
        return;
    }
    let fixture = fixture(POLICY);
    let supervised = |program: &[&str]| {
        Command::new(enforcer())
            .arg("run")
            .arg("--policy")
            .arg(&fixture.policy)
            .arg("--workspace")
            .arg(&fixture.workspace)
            .arg("--evidence")
            .arg(&fixture.evidence)
            .arg("--")
            .arg(enforcer())
            .arg("exec")
            .arg("--")
            .args(program)
            .env_remove("AGENT_KERNEL_ENDPOINT")
            .output()
            .unwrap()
    };
    let allowed = supervised(&["touch", "supervised.txt"]);
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert!(fixture.workspace.join("supervised.txt").exists());
    let denied = supervised(&["mkdir", "supervised-dir"]);
    assert_eq!(denied.status.code(), Some(126), "{denied:?}");
    assert!(!fixture.workspace.join("supervised-dir").exists());
}

/// Whether the hook let the payload's command run: it made its file.
fn hook_ran(listener: &Listener) -> bool {
    let made = listener.fixture.workspace.join("made-by-agent.txt");
    let output = agent_tool_call(listener, "claude-code", "claude_code_bash_allowed.json");
    let ran = made.exists();
    assert_eq!(ran, output.status.code() == Some(0), "{output:?}");
    let _ = std::fs::remove_file(&made);
    ran
}

#[test]
fn a_server_that_is_not_the_pinned_enforcer_lets_nothing_run() {
    use std::os::unix::fs::PermissionsExt;
    // What holds the socket is a real enforcer with a policy that allows
    // the command, but not the one the clients trust: an impostor that
    // took the path first.
    let listener = listen();
    let pin = listener.socket.with_extension("sock.pub");
    let own = std::fs::read_to_string(&pin).unwrap();
    assert!(
        hook_ran(&listener),
        "the allowed command must run when the key is right"
    );

    // It wrote no key file: the client pins nothing it was not given.
    std::fs::remove_file(&pin).unwrap();
    assert!(!hook_ran(&listener), "a server nobody pinned was trusted");
    let ask = run(
        &listener.socket,
        &listener.fixture.workspace,
        &["ask", "--action-json", "-"],
        r#"{"version":1,"action":{"kind":"file_read","path":"a"}}"#,
    );
    assert_eq!(ask.status.code(), Some(2), "{ask:?}");
    assert!(
        String::from_utf8_lossy(&ask.stderr).contains("cannot authenticate the enforcer"),
        "{ask:?}"
    );

    // The key file names the genuine enforcer's key: the impostor's
    // handshake does not match it.
    let genuine = tempfile::tempdir().unwrap();
    kernel_testkit::keygen(genuine.path());
    std::fs::copy(genuine.path().join("kernel.pub"), &pin).unwrap();
    assert!(
        !hook_ran(&listener),
        "a server with another key was trusted"
    );

    // A key file others may write proves nothing.
    std::fs::write(&pin, &own).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(
        !hook_ran(&listener),
        "a world-writable key file was trusted"
    );
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(hook_ran(&listener));

    // So does one in a directory where others may replace it; a sticky
    // one (like /tmp) is fine.
    let directory = pin.parent().unwrap().to_owned();
    let before = std::fs::metadata(&directory).unwrap().permissions();
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(
        !hook_ran(&listener),
        "a key file others could replace was trusted"
    );
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(hook_ran(&listener));
    std::fs::set_permissions(&directory, before).unwrap();

    // The server must run as the key file's owner (changing the owner
    // needs root).
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&pin, Some(65534), Some(65534)).unwrap();
        let output = agent_tool_call(&listener, "claude-code", "claude_code_bash_allowed.json");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("runs as uid 0"),
            "{output:?}"
        );
        assert!(
            !listener
                .fixture
                .workspace
                .join("made-by-agent.txt")
                .exists()
        );
    } else {
        eprintln!("SKIPPED the server-uid part: changing a file's owner needs root");
    }
}
