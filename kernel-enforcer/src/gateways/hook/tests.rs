#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]
//! The payloads below have the shapes of the agents' published types:
//! Claude Code's `PreToolUseHookInput` and tool inputs (Claude Agent SDK
//! 0.3.337, `sdk.d.ts` and `sdk-tools.d.ts`, for Claude Code 2.1.337), and
//! Codex's `pre-tool-use.command.input` schema with the payloads Codex
//! 0.171.0 sent to a hook for `exec_command` and `apply_patch` calls.

use super::*;
use kernel_core::Exec;
use serde_json::json;

const CWD: &str = "/home/dev/project";

/// A Claude Code `PreToolUse` payload (`BaseHookInput` and
/// `PreToolUseHookInput`).
fn claude_code(tool: &str, input: Value) -> String {
    json!({
        "session_id": "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f60718",
        "transcript_path": "/home/dev/.claude/projects/demo/3f2a9c1e.jsonl",
        "cwd": CWD,
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": "toolu_01A1",
    })
    .to_string()
}

/// A Codex `PreToolUse` payload (`pre-tool-use.command.input`), as Codex
/// 0.171.0 sends it.
fn codex(tool: &str, input: Value) -> String {
    json!({
        "session_id": "01a24f83-e179-7e23-99c0-38bb4a8d34b7",
        "turn_id": "01a24f83-e18b-7723-8817-4baadb87e9e0",
        "transcript_path": "/home/dev/.codex/sessions/rollout.jsonl",
        "cwd": CWD,
        "hook_event_name": "PreToolUse",
        "model": "gpt-5.5",
        "permission_mode": "default",
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": "call_1",
    })
    .to_string()
}

fn actions(agent: CodingAgent, payload: &str) -> Vec<Action> {
    match map_payload(agent, payload) {
        Ok(Mapped::Actions { actions, cwd }) => {
            assert_eq!(cwd, CWD);
            actions
        }
        other => panic!("{payload}: {other:?}"),
    }
}

fn exec(program: &str, args: &[&str], cwd: &str) -> Action {
    Action::Exec(Exec::new(program).args(args.iter().copied()).cwd(cwd))
}

#[test]
fn claude_code_tools_map_to_what_they_touch() {
    let cases: Vec<(&str, Value, Vec<Action>)> = vec![
        (
            "Bash",
            json!({"command": "git status", "description": "Show working tree status", "timeout": 120000}),
            vec![exec("git", &["status"], CWD)],
        ),
        (
            "Bash",
            json!({"command": "bash -c 'touch made.txt'", "run_in_background": false}),
            vec![exec("touch", &["made.txt"], CWD)],
        ),
        (
            "Read",
            json!({"file_path": "/home/dev/project/README.md", "offset": 1, "limit": 20}),
            vec![Action::file_read("/home/dev/project/README.md")],
        ),
        (
            "Write",
            json!({"file_path": "/home/dev/project/a.txt", "content": "hello\n"}),
            vec![Action::file_write("/home/dev/project/a.txt", b"hello\n")],
        ),
        (
            "Edit",
            json!({"file_path": "/home/dev/project/a.txt", "old_string": "a", "new_string": "b", "replace_all": false}),
            vec![Action::file_write_descriptor("/home/dev/project/a.txt")],
        ),
        (
            "MultiEdit",
            json!({"file_path": "/home/dev/project/a.txt", "edits": [{"old_string": "a", "new_string": "b"}]}),
            vec![Action::file_write_descriptor("/home/dev/project/a.txt")],
        ),
        (
            "NotebookEdit",
            json!({"notebook_path": "/home/dev/project/n.ipynb", "new_source": "print(1)", "edit_mode": "replace"}),
            vec![Action::file_write_descriptor("/home/dev/project/n.ipynb")],
        ),
        (
            "Glob",
            json!({"pattern": "**/*.rs"}),
            vec![Action::file_read(CWD)],
        ),
        (
            "Glob",
            json!({"pattern": "*", "path": "/home/dev/.ssh"}),
            vec![Action::file_read("/home/dev/.ssh")],
        ),
        (
            "Glob",
            json!({"pattern": "/home/dev/.ssh/id_*"}),
            vec![Action::file_read("/home/dev/.ssh")],
        ),
        (
            "Glob",
            json!({"pattern": "../.ssh/*.{pub,key}"}),
            vec![Action::file_read("/home/dev/project/../.ssh")],
        ),
        (
            "Grep",
            json!({"pattern": "BEGIN OPENSSH", "path": "/home/dev/.ssh", "output_mode": "content", "-i": true}),
            vec![Action::file_read("/home/dev/.ssh")],
        ),
        (
            "Grep",
            json!({"pattern": "TODO", "glob": "*.rs"}),
            vec![Action::file_read(CWD)],
        ),
        (
            "Grep",
            json!({"pattern": "token", "path": "/home/dev/project/.env"}),
            vec![Action::file_read("/home/dev/project/.env")],
        ),
        (
            "LS",
            json!({"path": "/etc"}),
            vec![Action::file_read("/etc")],
        ),
        (
            "WebFetch",
            json!({"url": "https://example.com/docs", "prompt": "summarise"}),
            vec![Action::http("GET", "https://example.com/docs")],
        ),
        (
            "Monitor",
            json!({"description": "watch the log", "timeout_ms": 60000, "command": "tail -f build.log"}),
            vec![exec("tail", &["-f", "build.log"], CWD)],
        ),
        (
            "Monitor",
            json!({"description": "events", "timeout_ms": 60000, "ws": {"url": "wss://example.com/events"}}),
            vec![Action::http("GET", "https://example.com/events")],
        ),
    ];
    for (tool, input, expected) in cases {
        let payload = claude_code(tool, input);
        assert_eq!(
            actions(CodingAgent::ClaudeCode, &payload),
            expected,
            "{payload}"
        );
    }
}

#[test]
fn other_claude_code_tools_are_tool_calls_with_their_arguments() {
    for (tool, input) in [
        (
            "WebSearch",
            json!({"query": "cedar policy", "allowed_domains": ["cedarpolicy.com"]}),
        ),
        (
            "Agent",
            json!({"description": "review", "prompt": "review the diff", "isolation": "remote"}),
        ),
        ("Skill", json!({"skill": "pdf"})),
        (
            "mcp__github__create_issue",
            json!({"repo": "a/b", "title": "t"}),
        ),
        (
            "ReadMcpResourceTool",
            json!({"server": "fs", "uri": "file:///etc/passwd"}),
        ),
        ("SomeToolOfALaterVersion", json!({"anything": 1})),
        // Codex's internal tools are not Claude Code's.
        ("update_plan", json!({"plan": []})),
    ] {
        let payload = claude_code(tool, input.clone());
        assert_eq!(
            actions(CodingAgent::ClaudeCode, &payload),
            vec![Action::tool_call(tool, &input)],
            "{payload}"
        );
    }
}

#[test]
fn only_the_listed_internal_tools_pass_unasked() {
    for tool in CLAUDE_CODE_INTERNAL_TOOLS {
        let payload = claude_code(tool, json!({"todos": []}));
        assert_eq!(
            map_payload(CodingAgent::ClaudeCode, &payload).unwrap(),
            Mapped::Internal {
                tool: (*tool).to_owned()
            }
        );
        // Not Codex's.
        assert!(matches!(
            map_payload(CodingAgent::Codex, &codex(tool, json!({}))).unwrap(),
            Mapped::Actions { .. }
        ));
    }
    for tool in CODEX_INTERNAL_TOOLS {
        assert_eq!(
            map_payload(CodingAgent::Codex, &codex(tool, json!({}))).unwrap(),
            Mapped::Internal {
                tool: (*tool).to_owned()
            }
        );
    }
    // Names are matched exactly.
    for tool in [
        "todowrite",
        "TodoWrite ",
        "mcp__x__TodoWrite",
        "Task",
        "Agent",
    ] {
        assert!(
            matches!(
                map_payload(CodingAgent::ClaudeCode, &claude_code(tool, json!({}))).unwrap(),
                Mapped::Actions { .. }
            ),
            "{tool}"
        );
    }
}

const PATCH: &str = "*** Begin Patch\n*** Add File: added.txt\n+hello\n*** Update File: upd.txt\n@@\n-a\n+b\n*** Delete File: gone.txt\n*** Update File: old.rs\n*** Move to: src/new.rs\n@@\n-x\n+y\n*** End Patch\n";

fn patch_actions_in(dir: &str) -> Vec<Action> {
    vec![
        Action::file_write(format!("{dir}/added.txt"), b"hello\n"),
        Action::file_write_descriptor(format!("{dir}/upd.txt")),
        Action::file_delete(format!("{dir}/gone.txt")),
        Action::file_delete(format!("{dir}/old.rs")),
        Action::file_write_descriptor(format!("{dir}/src/new.rs")),
    ]
}

#[test]
fn codex_tools_map_to_what_they_touch() {
    let heredoc = format!("apply_patch <<'EOF'\n{PATCH}EOF\n");
    let cases: Vec<(&str, Value, Vec<Action>)> = vec![
        // `exec_command` as Codex 0.171.0 sends it.
        (
            "Bash",
            json!({"command": "touch made-by-codex.txt"}),
            vec![exec("touch", &["made-by-codex.txt"], CWD)],
        ),
        // The `apply_patch` tool as Codex 0.171.0 sends it.
        (
            "apply_patch",
            json!({"command": PATCH}),
            patch_actions_in(CWD),
        ),
        // `exec_command` with the here-document form Codex applies itself.
        ("Bash", json!({"command": heredoc}), patch_actions_in(CWD)),
        (
            "Bash",
            json!({"command": format!("cd sub && {heredoc}")}),
            patch_actions_in(&format!("{CWD}/sub")),
        ),
        (
            "Bash",
            json!({"command": format!("cd /srv/other && {heredoc}")}),
            patch_actions_in("/srv/other"),
        ),
        // The older `shell` tools: an argument vector, or its words joined.
        (
            "Bash",
            json!({"command": ["bash", "-lc", "touch a.txt"]}),
            vec![exec("touch", &["a.txt"], CWD)],
        ),
        (
            "Bash",
            json!({"command": "bash -lc 'touch a.txt'"}),
            vec![exec("touch", &["a.txt"], CWD)],
        ),
        (
            "Bash",
            json!({"command": ["touch", "a b.txt"]}),
            vec![exec("touch", &["a b.txt"], CWD)],
        ),
        (
            "Bash",
            json!({"command": ["/bin/sh", "-c", heredoc]}),
            patch_actions_in(CWD),
        ),
        (
            "Bash",
            json!({"command": ["apply_patch", PATCH]}),
            patch_actions_in(CWD),
        ),
        (
            "view_image",
            json!({"path": "/home/dev/.ssh/id_ed25519"}),
            vec![Action::file_read("/home/dev/.ssh/id_ed25519")],
        ),
        (
            "mcp__deploy__release",
            json!({"target": "production"}),
            vec![Action::tool_call(
                "mcp__deploy__release",
                &json!({"target": "production"}),
            )],
        ),
    ];
    for (tool, input, expected) in cases {
        let payload = codex(tool, input);
        assert_eq!(actions(CodingAgent::Codex, &payload), expected, "{payload}");
    }
}

#[test]
fn what_cannot_be_decided_is_refused_with_the_reason() {
    type Refusal = fn(&HookPayloadError) -> bool;
    let refused: Vec<(CodingAgent, String, Refusal)> = vec![
        (
            CodingAgent::ClaudeCode,
            claude_code(
                "PowerShell",
                json!({"command": "Remove-Item -Recurse C:\\"}),
            ),
            |e| matches!(e, HookPayloadError::PowerShell),
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Read", json!({"file_path": "~/.ssh/id_ed25519"})),
            |e| matches!(e, HookPayloadError::TildePath { path, .. } if path.starts_with("~/.ssh")),
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Grep", json!({"pattern": "x", "path": "~/.ssh"})),
            |e| matches!(e, HookPayloadError::TildePath { path, .. } if path.starts_with("~/.ssh")),
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Glob", json!({"pattern": "~/.ssh/*"})),
            |e| {
                matches!(
                    e,
                    HookPayloadError::Glob {
                        why: "starts with `~`",
                        ..
                    }
                )
            },
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Glob", json!({"pattern": "**/../../.ssh/*"})),
            |e| {
                matches!(
                    e,
                    HookPayloadError::Glob {
                        why: "has `..` after a pattern character",
                        ..
                    }
                )
            },
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Glob", json!({"pattern": "{src,/home/dev/.ssh}/*"})),
            |e| {
                matches!(
                    e,
                    HookPayloadError::Glob {
                        why: "has a brace group with `/` or `..`",
                        ..
                    }
                )
            },
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Glob", json!({"pattern": "src/{a,b"})),
            |e| {
                matches!(
                    e,
                    HookPayloadError::Glob {
                        why: "has an unbalanced `{`",
                        ..
                    }
                )
            },
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Grep", json!({"pattern": "x", "path": 7})),
            |e| matches!(e, HookPayloadError::NotText { tool, field } if tool == "Grep" && field == "path"),
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Monitor", json!({"description": "d", "timeout_ms": 1})),
            |e| matches!(e, HookPayloadError::MonitorWithoutTarget),
        ),
        (
            CodingAgent::ClaudeCode,
            claude_code("Bash", json!({"command": ["rm", "-rf", "/"]})),
            |e| matches!(e, HookPayloadError::MissingText { tool, field } if tool == "Bash" && field == "command"),
        ),
        (
            CodingAgent::Codex,
            codex(
                "apply_patch",
                json!({"command": "*** Begin Patch\n*** Copy File: a\n*** End Patch"}),
            ),
            |e| matches!(e, HookPayloadError::Patch(PatchError::NotAHeader(line)) if line == "*** Copy File: a"),
        ),
        (
            CodingAgent::Codex,
            codex(
                "apply_patch",
                json!({"command": "*** Begin Patch\n*** Environment ID: cloud\n*** Add File: a\n+x\n*** End Patch"}),
            ),
            |e| matches!(e, HookPayloadError::Patch(PatchError::Environment)),
        ),
        (
            CodingAgent::Codex,
            codex(
                "apply_patch",
                json!({"command": "*** Begin Patch\n*** End Patch"}),
            ),
            |e| matches!(e, HookPayloadError::EmptyPatch),
        ),
        (
            CodingAgent::Codex,
            codex("apply_patch", json!({"input": PATCH})),
            |e| matches!(e, HookPayloadError::MissingText { tool, field } if tool == "apply_patch" && field == "command"),
        ),
        (
            CodingAgent::Codex,
            codex(
                "Bash",
                json!({"command": format!("apply_patch <<'EOF'\n{PATCH}EOF\nrm -rf /")}),
            ),
            |e| {
                matches!(
                    e,
                    HookPayloadError::PatchInvocation(PatchInvocationError::TrailingText)
                )
            },
        ),
        (
            CodingAgent::Codex,
            codex("Bash", json!({"command": ["apply_patch"]})),
            |e| matches!(e, HookPayloadError::PatchInCommandLine),
        ),
        (
            CodingAgent::Codex,
            codex("Bash", json!({"command": "/usr/local/bin/applypatch"})),
            |e| matches!(e, HookPayloadError::PatchInCommandLine),
        ),
        (
            CodingAgent::Codex,
            codex(
                "Bash",
                json!({"command": ["bash", "-lc", "bash -c \"sh -c 'sh -c \\\"sh -c ls\\\"'\""]}),
            ),
            |e| matches!(e, HookPayloadError::CommandLine(why) if why.contains("too deeply")),
        ),
    ];
    for (agent, payload, expected) in refused {
        match map_payload(agent, &payload) {
            Err(reason) => assert!(expected(&reason), "{payload}: {reason:?}"),
            Ok(mapped) => panic!("{payload} was mapped to {mapped:?}"),
        }
    }
}

/// An argument vector (Codex's older shell tools) is decided as the command
/// line that runs exactly its words: a program it starts through a
/// launcher is asked about too, and what a command line may not hide from
/// the kernel, a vector may not either.
#[test]
fn an_argument_vector_is_decided_as_the_command_line_that_runs_it() {
    let vector = |argv: Value| codex("Bash", json!({ "command": argv }));
    assert_eq!(
        actions(
            CodingAgent::Codex,
            &vector(json!(["timeout", "5", "rm", "-f", "a b"]))
        ),
        vec![
            exec("timeout", &["5", "rm", "-f", "a b"], CWD),
            exec("rm", &["-f", "a b"], CWD),
        ]
    );
    // A policy that denies `rm` denies it under `timeout` too: the call
    // is blocked, and `rm` is what was denied.
    let mut denied_programs = Vec::new();
    let verdict = decide_with(
        CodingAgent::Codex,
        &vector(json!(["timeout", "5", "rm", "-f", "x"])),
        false,
        &mut |action| match action.action() {
            Action::Exec(exec) if exec.program.ends_with("/rm") => {
                denied_programs.push(exec.program.clone());
                Ok(denied("`rm` is not run here", 7))
            }
            _ => Ok(allowed(1)),
        },
    );
    assert_eq!(verdict.exit(), HookExit::Block, "{}", verdict.stderr());
    assert_eq!(denied_programs.len(), 1, "{denied_programs:?}");
    // Refused as the same words written as a command line are.
    for argv in [
        json!(["env", "rm", "x"]),
        json!(["xargs", "rm"]),
        json!(["bash", "-c", "rm x", "arg0"]),
        json!(["bash", "script.sh"]),
        json!(["./bash", "-c", "ls"]),
        json!(["cd", "/"]),
    ] {
        let payload = vector(argv);
        assert!(
            map_payload(CodingAgent::Codex, &payload).is_err(),
            "{payload}"
        );
    }
}

#[test]
fn malformed_payloads_are_refused() {
    for input in [
        "",
        "not json",
        "[]",
        r#"{"tool_input":{}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash"}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash","tool_input":{}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash","tool_input":"ls"}"#,
        r#"{"hook_event_name":"PostToolUse","cwd":"/w","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
        // The envelope's required fields.
        r#"{"cwd":"/w","tool_name":"Read","tool_input":{"file_path":"/a"}}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/a"}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"w","tool_name":"Read","tool_input":{"file_path":"a"}}"#,
        // Two readings of one payload: refused, wherever they are.
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Read","tool_name":"Bash","tool_input":{"command":"ls","file_path":"/a"}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash","tool_input":{"command":"ls","command":"rm -rf /"}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Write","tool_input":{"file_path":"/w/a","content":"x","meta":{"p":1,"p":2}}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash","tool_input":{"command":"ls","Command":"rm -rf /"}}"#,
        r#"{"hook_event_name":"PreToolUse","hook_event_name":"PostToolUse","cwd":"/w","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
        r#"{"hook_event_name":"PreToolUse","cwd":"/w","CWD":"/","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
    ] {
        for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
            assert!(map_payload(agent, input).is_err(), "accepted {input:?}");
        }
    }
    // Claude Code's `Read` reads `file_path` (for Codex, `Read` is no
    // tool of its own: a tool call).
    let wrong_field = r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Read","tool_input":{"path":"/a"}}"#;
    assert_eq!(
        map_payload(CodingAgent::ClaudeCode, wrong_field),
        Err(HookPayloadError::MissingText {
            tool: "Read".into(),
            field: "file_path".into()
        })
    );
}

// ---- Answers ----

/// Decides `payload` with `answers` standing in for the enforcer's, one per
/// action asked about; returns the verdict and how many were asked.
fn answer(
    agent: CodingAgent,
    payload: &str,
    verbose: bool,
    answers: Vec<Ruling>,
) -> (HookVerdict, usize) {
    let mut answers = answers.into_iter();
    let mut asked = 0;
    let verdict = decide_with(agent, payload, verbose, &mut |_| {
        asked += 1;
        answers.next().ok_or_else(|| "no answer".to_owned())
    });
    (verdict, asked)
}

fn allowed(log_index: u64) -> Ruling {
    Ruling::Allowed { log_index }
}

fn denied(reason: &str, log_index: u64) -> Ruling {
    Ruling::Denied {
        reasons: reason.into(),
        log_index,
    }
}

fn needs_approval(reason: &str, log_index: u64) -> Ruling {
    Ruling::Ask {
        reasons: reason.into(),
        log_index,
    }
}

/// What Claude Code makes of a hook's output (its documented contract):
/// `None` when the call goes on under its own rules, else the decision
/// and its reason. Panics on output Claude Code would report as invalid.
fn claude_code_reads(verdict: &HookVerdict) -> Option<(String, String)> {
    match verdict.exit() {
        HookExit::Block => {
            assert!(
                !verdict.stderr().trim().is_empty(),
                "exit 2 without a reason"
            );
            Some(("deny".into(), verdict.stderr().to_owned()))
        }
        HookExit::Proceed if verdict.stdout().trim().is_empty() => None,
        HookExit::Proceed => {
            let value: Value = serde_json::from_str(verdict.stdout()).unwrap();
            let specific = &value["hookSpecificOutput"];
            assert_eq!(specific["hookEventName"], "PreToolUse");
            let decision = specific["permissionDecision"].as_str()?;
            assert!(
                ["deny", "ask", "allow", "defer"].contains(&decision),
                "{decision}"
            );
            let reason = specific["permissionDecisionReason"].as_str().unwrap();
            Some((decision.to_owned(), reason.to_owned()))
        }
    }
}

/// What Codex 0.171.0 makes of a hook's output (its output parser's rules):
/// `None` when the call goes on, `Some(reason)` when blocked. Panics on
/// output Codex would report as invalid (and then run the call).
fn codex_reads(verdict: &HookVerdict) -> Option<String> {
    match verdict.exit() {
        HookExit::Block => {
            let reason = verdict.stderr().trim();
            assert!(!reason.is_empty(), "exit 2 without a reason on stderr");
            Some(reason.to_owned())
        }
        HookExit::Proceed if verdict.stdout().trim().is_empty() => None,
        HookExit::Proceed => {
            let value: Value = serde_json::from_str(verdict.stdout()).unwrap();
            let object = value.as_object().unwrap();
            for key in object.keys() {
                assert!(
                    [
                        "continue",
                        "decision",
                        "hookSpecificOutput",
                        "reason",
                        "stopReason",
                        "suppressOutput",
                        "systemMessage"
                    ]
                    .contains(&key.as_str()),
                    "{key}"
                );
            }
            assert_ne!(value["continue"], json!(false));
            assert!(value.get("stopReason").is_none() && value.get("decision").is_none());
            let specific = &value["hookSpecificOutput"];
            assert_eq!(specific["hookEventName"], "PreToolUse");
            match specific["permissionDecision"].as_str() {
                None => {
                    assert!(specific.get("permissionDecisionReason").is_none());
                    None
                }
                Some("deny") => {
                    let reason = specific["permissionDecisionReason"].as_str().unwrap();
                    assert!(!reason.trim().is_empty());
                    Some(reason.to_owned())
                }
                Some(other) => panic!("Codex refuses permissionDecision `{other}`"),
            }
        }
    }
}

fn read_payload(agent: CodingAgent) -> String {
    let input = json!({"file_path": "/home/dev/project/README.md"});
    match agent {
        CodingAgent::ClaudeCode => claude_code("Read", input),
        CodingAgent::Codex => codex("view_image", json!({"path": "/home/dev/project/a.png"})),
    }
}

#[test]
fn an_allow_adds_nothing_to_the_models_context() {
    for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
        let (verdict, asked) = answer(agent, &read_payload(agent), false, vec![allowed(7)]);
        assert_eq!(asked, 1);
        assert_eq!(verdict.exit().code(), 0);
        assert_eq!(verdict.stdout(), "");
        assert_eq!(verdict.stderr(), "");
        assert_eq!(claude_code_reads(&verdict), None);
        assert_eq!(codex_reads(&verdict), None);
    }
}

#[test]
fn with_verbose_an_allow_names_its_receipt_and_is_still_no_allow_decision() {
    for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
        let (verdict, _) = answer(agent, &read_payload(agent), true, vec![allowed(7)]);
        assert_eq!(verdict.exit().code(), 0);
        let value: Value = serde_json::from_str(verdict.stdout()).unwrap();
        assert!(
            value["hookSpecificOutput"]["additionalContext"]
                .as_str()
                .unwrap()
                .contains("receipt at log index 7")
        );
        assert_eq!(claude_code_reads(&verdict), None);
        assert_eq!(codex_reads(&verdict), None);
    }
}

#[test]
fn a_denial_blocks_with_its_reason_in_both_agents_terms() {
    for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
        let (verdict, _) = answer(
            agent,
            &read_payload(agent),
            false,
            vec![denied("secrets are never read", 3)],
        );
        assert_eq!(verdict.exit().code(), 2);
        assert!(verdict.stderr().contains("secrets are never read"));
        assert!(verdict.stderr().contains("log index 3"));
        let (decision, reason) = claude_code_reads(&verdict).unwrap();
        assert_eq!(decision, "deny");
        assert!(reason.contains("secrets are never read"));
        assert!(
            codex_reads(&verdict)
                .unwrap()
                .contains("secrets are never read")
        );
        // The JSON on standard output says the same, for readers of it.
        let value: Value = serde_json::from_str(verdict.stdout()).unwrap();
        assert_eq!(value["hookSpecificOutput"]["permissionDecision"], "deny");
    }
}

#[test]
fn an_ask_is_claude_codes_own_prompt_and_a_reasoned_block_for_codex() {
    let (verdict, _) = answer(
        CodingAgent::ClaudeCode,
        &read_payload(CodingAgent::ClaudeCode),
        false,
        vec![needs_approval("deploys need a person", 4)],
    );
    assert_eq!(verdict.exit().code(), 0);
    let (decision, reason) = claude_code_reads(&verdict).unwrap();
    assert_eq!(decision, "ask");
    assert!(reason.contains("deploys need a person"), "{reason}");

    let (verdict, _) = answer(
        CodingAgent::Codex,
        &read_payload(CodingAgent::Codex),
        false,
        vec![needs_approval("deploys need a person", 4)],
    );
    assert_eq!(verdict.exit().code(), 2);
    let reason = codex_reads(&verdict).unwrap();
    assert!(reason.contains("needs approval"), "{reason}");
    assert!(reason.contains("deploys need a person"), "{reason}");
}

fn two_writes(agent: CodingAgent) -> String {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** Add File: .env\n+TOKEN=x\n*** Add File: c.txt\n+c\n*** End Patch";
    match agent {
        CodingAgent::Codex => codex("apply_patch", json!({"command": patch})),
        CodingAgent::ClaudeCode => claude_code(
            "Monitor",
            json!({"description": "d", "timeout_ms": 1, "command": "/bin/true", "ws": {"url": "wss://example.com/"}}),
        ),
    }
}

#[test]
fn every_part_is_asked_in_order_and_the_first_denied_stops_the_rest() {
    // All three allowed: allowed, each asked once.
    let (verdict, asked) = answer(
        CodingAgent::Codex,
        &two_writes(CodingAgent::Codex),
        true,
        vec![allowed(1), allowed(2), allowed(3)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Proceed, 3));
    assert!(verdict.stdout().contains("log index 1, 2, 3"));
    // The second denied: blocked, naming the part; the third never asked.
    let (verdict, asked) = answer(
        CodingAgent::Codex,
        &two_writes(CodingAgent::Codex),
        false,
        vec![allowed(1), denied("credentials files are never touched", 2)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Block, 2));
    assert!(
        verdict
            .stderr()
            .contains("part 2 of 3: file_write /home/dev/project/.env"),
        "{}",
        verdict.stderr()
    );
    // No answer for a part (the enforcer went away): blocked.
    let (verdict, asked) = answer(
        CodingAgent::Codex,
        &two_writes(CodingAgent::Codex),
        false,
        vec![allowed(1)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Block, 2));
    assert!(verdict.stderr().contains("fail closed"));
}

#[test]
fn an_ask_before_a_denial_is_a_denial() {
    // Claude Code: if its user approved the first part, the second would
    // run too, so it is decided, and its denial blocks the call.
    let payload = two_writes(CodingAgent::ClaudeCode);
    let (verdict, asked) = answer(
        CodingAgent::ClaudeCode,
        &payload,
        false,
        vec![needs_approval("ask first", 1), denied("no websockets", 2)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Block, 2));
    assert!(verdict.stderr().contains("no websockets"));
    let (verdict, _) = answer(
        CodingAgent::ClaudeCode,
        &payload,
        false,
        vec![needs_approval("ask first", 1), allowed(2)],
    );
    assert_eq!(claude_code_reads(&verdict).unwrap().0, "ask");
    // Codex blocks at the ask: the rest is not asked.
    let (verdict, asked) = answer(
        CodingAgent::Codex,
        &two_writes(CodingAgent::Codex),
        false,
        vec![needs_approval("ask first", 1)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Block, 1));
}

#[test]
fn internal_tools_pass_without_asking_and_refusals_without_asking() {
    let (verdict, asked) = answer(
        CodingAgent::ClaudeCode,
        &claude_code("TodoWrite", json!({"todos": []})),
        false,
        vec![],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Proceed, 0));
    assert_eq!(verdict.stdout(), "");
    // A call with one part that cannot be decided records nothing.
    let long = "d/".repeat(3000);
    let patch = format!(
        "*** Begin Patch\n*** Add File: a.txt\n+a\n*** Add File: {long}b\n+b\n*** End Patch"
    );
    let (verdict, asked) = answer(
        CodingAgent::Codex,
        &codex("apply_patch", json!({"command": patch})),
        false,
        vec![allowed(1), allowed(2)],
    );
    assert_eq!((verdict.exit(), asked), (HookExit::Block, 0), "{verdict:?}");
}

#[test]
fn no_answer_is_ever_the_agents_own_allow_and_every_block_has_a_reason() {
    let answers = [allowed(1), denied("", 2), needs_approval("", 3)];
    for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
        for answer_given in &answers {
            for verbose in [false, true] {
                let (verdict, _) = answer(
                    agent,
                    &read_payload(agent),
                    verbose,
                    vec![answer_given.clone()],
                );
                assert!(!verdict.stdout().contains("\"allow\""), "{verdict:?}");
                assert!(matches!(verdict.exit().code(), 0 | 2));
                if verdict.exit() == HookExit::Block {
                    assert!(
                        verdict.stderr().len() > "agent-kernel: ".len(),
                        "{verdict:?}"
                    );
                }
                match agent {
                    CodingAgent::ClaudeCode => drop(claude_code_reads(&verdict)),
                    CodingAgent::Codex => drop(codex_reads(&verdict)),
                }
            }
        }
    }
    assert_eq!(HookVerdict::blocked("").stderr(), "agent-kernel: blocked");
}
