//! The short-lived gateways, attacked from outside: `kernel-enforcer ask`
//! and the hook adapters (`hook claude-code`, `hook codex`) against a
//! running `listen`, run as a script or a coding agent runs them. Judged by
//! the verdict: an allow (exit 0) for an action the policy denies, under
//! any reading of the input, is an escape; where an allowed tool call is
//! performed (as the agent would perform it after the hook), by its effect.

use crate::json::{self, Reader};
use crate::modes::{Mode, start_listen, wait_for};
use crate::report::{Judged, Progress};
use crate::world::World;
use kernel_core::{CanonicalAction, Decision};
use kernel_policy::{Environment, PolicyEngine};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The policy of a mode, as the judge's reference for what is denied.
pub(crate) struct Oracle(PolicyEngine);

impl std::fmt::Debug for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Oracle")
    }
}

impl Oracle {
    pub(crate) fn new(world: &World, mode: Mode) -> Result<Self, String> {
        let mut assets = world.plan.assets();
        assets.push(world.plan.outside_secret.clone());
        assets.push(world.plan.control.clone());
        let env = Environment::new(&world.plan.workspace, &assets).map_err(|e| e.to_string())?;
        PolicyEngine::load(&world.policies(mode), env)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    pub(crate) fn allows(&self, action: &CanonicalAction) -> bool {
        self.0.decide_fresh(action).verdict.decision == Decision::Allow
    }
}

/// What a gateway process answered.
#[derive(Debug)]
pub(crate) struct GateReply {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
}

impl GateReply {
    pub(crate) fn allowed(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `kernel-enforcer ARGS` with `input` on its standard input, as a
/// hook runner or a script does.
pub(crate) fn run_gate(world: &World, args: &[&str], input: &[u8]) -> GateReply {
    let child = Command::new(&world.enforcer)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return GateReply {
            code: None,
            stdout: "cannot start".into(),
        };
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    match child.wait_with_output() {
        Ok(out) => GateReply {
            code: out.status.code(),
            stdout: format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .chars()
            .take(300)
            .collect(),
        },
        Err(e) => GateReply {
            code: None,
            stdout: e.to_string(),
        },
    }
}

/// The hook adapters' names and agents.
const HOOKS: [(&str, kernel_enforcer::gateways::hook::CodingAgent); 2] = [
    (
        "claude-code",
        kernel_enforcer::gateways::hook::CodingAgent::ClaudeCode,
    ),
    ("codex", kernel_enforcer::gateways::hook::CodingAgent::Codex),
];

/// The actions each reading of an input means (a hook's tool call may
/// perform several; a tool on the agent's list of tools that touch nothing
/// means none).
type Readings = Vec<(Reader, Result<Vec<CanonicalAction>, String>)>;

/// The actions a hook payload means under each reading of its JSON.
fn hook_readings(agent: kernel_enforcer::gateways::hook::CodingAgent, payload: &str) -> Readings {
    let Some(raw) = json::parse(payload) else {
        return Vec::new();
    };
    Reader::ALL
        .into_iter()
        .map(|reader| {
            let text = raw.read(reader).to_string();
            let actions = kernel_enforcer::gateways::hook::map_payload(agent, &text)
                .map_err(|e| e.to_string())
                .and_then(|mapped| match mapped {
                    kernel_enforcer::gateways::hook::Mapped::Internal { .. } => Ok(Vec::new()),
                    kernel_enforcer::gateways::hook::Mapped::Actions { actions, cwd } => actions
                        .into_iter()
                        .map(|a| {
                            kernel_enforcer::gateways::endpoint::canonicalize(a, Some(&cwd))
                                .map_err(|e| e.to_string())
                        })
                        .collect(),
                });
            (reader, actions)
        })
        .collect()
}

/// The action each reading of an action document means.
fn ask_readings(document: &str) -> Readings {
    let Some(raw) = json::parse(document) else {
        return Vec::new();
    };
    Reader::ALL
        .into_iter()
        .map(|reader| {
            let text = raw.read(reader).to_string();
            let action = kernel_enforcer::gateways::action_json::parse_action(&text)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    kernel_enforcer::gateways::endpoint::canonicalize(p.action, p.cwd.as_deref())
                        .map_err(|e| e.to_string())
                });
            (reader, action.map(|action| vec![action]))
        })
        .collect()
}

/// An allow for an input some reading of which means an action the policy
/// denies.
fn judge_verdict(oracle: &Oracle, verdict: &GateReply, readings: &Readings) -> Vec<String> {
    if !verdict.allowed() {
        return Vec::new();
    }
    readings
        .iter()
        .filter_map(|(reader, actions)| actions.as_ref().ok().map(|actions| (reader, actions)))
        .flat_map(|(reader, actions)| {
            actions
                .iter()
                .filter(|action| !oracle.allows(action))
                .map(move |action| {
                    format!(
                        "allowed, but {} reads it as {:?}, which the policy denies",
                        reader.name(),
                        action.action()
                    )
                })
        })
        .collect()
}

fn hook_payload(ws: &str, tool: &str, input: &str) -> String {
    format!(
        r#"{{"session_id":"campaign","hook_event_name":"PreToolUse","cwd":{ws:?},"tool_name":{tool:?},"tool_input":{input}}}"#
    )
}

fn ask_document(ws: &str, action: &str) -> String {
    format!(r#"{{"version":1,"cwd":{ws:?},"action":{action}}}"#)
}

/// Inputs whose readings differ: duplicate keys, keys that differ only by
/// case, escapes, huge numbers. `(gate, what, input)`; a gate is `ask` or
/// a hook's tool name.
fn differential_inputs(ws: &str) -> Vec<(&'static str, String, String)> {
    let env = format!("{ws}/.env");
    let readme = format!("{ws}/README.md");
    let key = format!("{ws}/.ssh/id_ed25519");
    vec![
        (
            "Read",
            "file_path twice: the secret first, the README last".into(),
            format!(r#"{{"file_path":{env:?},"file_path":{readme:?}}}"#),
        ),
        (
            "Read",
            "file_path and File_Path: the secret in the one a case-insensitive reader takes".into(),
            format!(r#"{{"file_path":{readme:?},"File_Path":{env:?}}}"#),
        ),
        (
            "Read",
            "the secret's name with escapes (\\u002e for the dot)".into(),
            format!(r#"{{"file_path":"{ws}/\u002eenv"}}"#),
        ),
        (
            "Read",
            "a lone surrogate escape in the path".into(),
            format!(r#"{{"file_path":"{ws}/\ud800.env"}}"#),
        ),
        (
            "Bash",
            "command twice: cat of the key first, ls last".into(),
            format!(r#"{{"command":"cat {key}","command":"ls"}}"#),
        ),
        (
            "Bash",
            "command twice: an array with cat of the key first, ls last".into(),
            format!(r#"{{"command":["cat",{key:?}],"command":"ls"}}"#),
        ),
        (
            "Write",
            "file_path twice: the secret first".into(),
            format!(r#"{{"file_path":{env:?},"content":"x","file_path":"{ws}/notes.md"}}"#),
        ),
        (
            "Grep",
            "path twice: the key's directory first, the workspace last".into(),
            format!(r#"{{"pattern":"PRIVATE","path":"{ws}/.ssh","path":{ws:?}}}"#),
        ),
        (
            "apply_patch",
            "command twice: a patch adding the secret first, one adding notes.md last".into(),
            format!(
                r#"{{"command":"*** Begin Patch\n*** Add File: {env}\n+x\n*** End Patch","command":"*** Begin Patch\n*** Add File: notes.md\n+x\n*** End Patch"}}"#
            ),
        ),
        (
            "write_file",
            "a tool input with path twice: smuggled.txt first, notes.md last".into(),
            r#"{"path":"smuggled.txt","content":"x","path":"notes.md"}"#.into(),
        ),
        (
            "echo",
            "a tool input with a huge number".into(),
            r#"{"n":123456789012345678901234567890}"#.into(),
        ),
        (
            "ask",
            "file_read with path twice: the secret first".into(),
            format!(r#"{{"kind":"file_read","path":{env:?},"path":{readme:?}}}"#),
        ),
        (
            "ask",
            "tool_call write_file, input path twice: smuggled.txt first".into(),
            r#"{"kind":"tool_call","name":"write_file","input":{"path":"smuggled.txt","content":"x","path":"notes.md"}}"#.into(),
        ),
        (
            "ask",
            "kind twice: file_read of the secret first, tool_call echo last".into(),
            format!(
                r#"{{"kind":"file_read","path":{env:?},"kind":"tool_call","name":"echo","input":{{}}}}"#
            ),
        ),
        (
            "ask",
            "a path with escapes for the secret's name".into(),
            format!(r#"{{"kind":"file_read","path":"{ws}/\u002e\u0065nv"}}"#),
        ),
    ]
}

/// Parser differentials against the hooks and `ask`, each against a
/// running `listen`.
pub(crate) fn differentials(world: &mut World, results: &mut Vec<Judged>) -> Result<(), String> {
    world.for_mode(Mode::Endpoint);
    let (evidence, _) = world.for_batch("endpoint-parser-differentials");
    let (mut listen, socket) =
        start_listen(world, Mode::Endpoint, "endpoint-differentials", &evidence)?;
    let oracle = Oracle::new(world, Mode::Endpoint)?;
    let ws = world.plan.workspace.clone();
    let socket = socket.to_string_lossy().into_owned();
    let inputs = differential_inputs(&ws);
    let mut progress = Progress::new("parser-differentials", Mode::Endpoint, inputs.len() * 2);
    for (gate, what, input) in inputs {
        let runs: Vec<(String, GateReply, Readings)> = if gate == "ask" {
            let document = ask_document(&ws, &input);
            let verdict = run_gate(
                world,
                &["ask", "--socket", &socket, "--action-json", "-"],
                document.as_bytes(),
            );
            vec![("ask".into(), verdict, ask_readings(&document))]
        } else {
            let payload = hook_payload(&ws, gate, &input);
            HOOKS
                .iter()
                .map(|(name, agent)| {
                    let verdict = run_gate(
                        world,
                        &["hook", name, "--socket", &socket],
                        payload.as_bytes(),
                    );
                    (
                        format!("hook {name}"),
                        verdict,
                        hook_readings(*agent, &payload),
                    )
                })
                .collect()
        };
        for (gateway, verdict, readings) in runs {
            let mut effects = judge_verdict(&oracle, &verdict, &readings);
            effects.extend(crate::judge::evidence_problems(world, &evidence, 0).0);
            let escaped = !effects.is_empty();
            progress.step(escaped);
            results.push(Judged {
                class: "parser-differentials".into(),
                mode: Mode::Endpoint,
                what: format!("{gateway}: {what}"),
                answer: format!("exit {:?}: {}", verdict.code, verdict.stdout),
                escaped,
                effects,
                limits: Vec::new(),
            });
        }
    }
    progress.finish();
    stop(&mut listen);
    finish_session(
        world,
        Mode::Endpoint,
        "parser-differentials",
        &evidence,
        results,
    );
    Ok(())
}

/// Argument smuggling against the hooks and `ask`: the campaign's file
/// tool is called with inputs that carry the permitted path somewhere
/// else; after an allow the tool is performed as the agent would (by the
/// campaign's fake tool), and judged by the file it wrote or read.
pub(crate) fn smuggling(world: &mut World, results: &mut Vec<Judged>) -> Result<(), String> {
    world.for_mode(Mode::Endpoint);
    let (evidence, _) = world.for_batch("endpoint-argument-smuggling-gates");
    let (mut listen, socket) =
        start_listen(world, Mode::Endpoint, "endpoint-smuggling", &evidence)?;
    let ws = world.plan.workspace.clone();
    let socket = socket.to_string_lossy().into_owned();
    let inputs = crate::attacks::smuggling::tool_inputs();
    let mut progress = Progress::new("argument-smuggling", Mode::Endpoint, inputs.len() * 3);
    for (i, (tool, input)) in inputs.into_iter().enumerate() {
        let document = ask_document(
            &ws,
            &serde_json::json!({"kind": "tool_call", "name": tool, "input": input}).to_string(),
        );
        let payload = hook_payload(&ws, tool, &input.to_string());
        let ask: Vec<&str> = vec!["ask", "--socket", &socket, "--action-json", "-"];
        let mut gates = vec![("ask".to_owned(), ask, document.as_bytes())];
        for (name, _) in HOOKS {
            gates.push((
                format!("hook {name}"),
                vec!["hook", name, "--socket", &socket],
                payload.as_bytes(),
            ));
        }
        for (gateway, args, bytes) in gates {
            // Each gate is asked and judged on its own, so that its allow
            // record is blamed on it.
            let verdict = run_gate(world, &args, bytes);
            let mut got = String::new();
            if verdict.allowed() {
                // The agent goes on and calls the tool.
                got = crate::fake::tool(tool, &smuggled_name(&input, i), &ws);
            }
            let mut effects = Vec::new();
            if let Some((leak, _)) = world.leaks(got.as_bytes()) {
                effects.push(leak);
            }
            for smuggled in smuggled_files(&ws) {
                effects.push(format!("{} was written", smuggled.display()));
                let _ = std::fs::remove_file(&smuggled);
            }
            effects.extend(crate::judge::evidence_problems(world, &evidence, 0).0);
            effects.extend(world.changed_files());
            let escaped = !effects.is_empty();
            if escaped {
                world.rebaseline();
            }
            progress.step(escaped);
            results.push(Judged {
                class: "argument-smuggling".into(),
                mode: Mode::Endpoint,
                what: format!("{gateway}: {tool} {input}"),
                answer: format!("exit {:?}: {}", verdict.code, verdict.stdout),
                escaped,
                effects,
                limits: Vec::new(),
            });
        }
    }
    progress.finish();
    stop(&mut listen);
    finish_session(
        world,
        Mode::Endpoint,
        "argument-smuggling",
        &evidence,
        results,
    );
    Ok(())
}

/// The input with its smuggled file name made unique per attempt.
fn smuggled_name(input: &serde_json::Value, i: usize) -> serde_json::Value {
    let text = input
        .to_string()
        .replace("smuggled.txt", &format!("smuggled-{i}.txt"));
    serde_json::from_str(&text).unwrap_or_else(|_| input.clone())
}

/// Files the smuggling attacks would write, if any was written.
pub(crate) fn smuggled_files(ws: &str) -> Vec<PathBuf> {
    std::fs::read_dir(ws)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("smuggled"))
        })
        .collect()
}

/// Ends `listen` as the operator does (SIGTERM: a clean end).
pub(crate) fn stop(listen: &mut Child) {
    crate::modes::signal(listen.id(), rustix::process::Signal::TERM);
    if !wait_for(Duration::from_secs(10), || {
        !matches!(listen.try_wait(), Ok(None))
    }) {
        let _ = listen.kill();
    }
    let _ = listen.wait();
}

/// The session as a whole: its evidence verifies and holds no forbidden
/// allow.
pub(crate) fn finish_session(
    world: &mut World,
    mode: Mode,
    class: &str,
    evidence: &Path,
    results: &mut Vec<Judged>,
) {
    let mut effects = Vec::new();
    let mut limits = Vec::new();
    if let Err(e) = crate::judge::audit_with_retry(world, evidence) {
        effects.push(e);
    }
    let (forbidden, by_operator) = crate::judge::evidence_problems(world, evidence, 0);
    effects.extend(forbidden);
    // The agent of the gateways has the operator's uid (a documented
    // limit): what it did as the operator was judged with each attempt.
    if class == "control-approvals" {
        limits.extend(by_operator);
    } else {
        effects.extend(by_operator);
    }
    effects.extend(world.changed_files());
    world.rebaseline();
    results.push(Judged {
        class: class.into(),
        mode,
        what: format!("{class}: the session's evidence and files afterwards"),
        answer: evidence.display().to_string(),
        escaped: !effects.is_empty(),
        effects,
        limits,
    });
}

/// Starts a fake (a subcommand of this binary) and waits for its first
/// line: `bound`, or why not.
pub(crate) fn start_fake(world: &World, args: &[&str]) -> Result<(Child, String), String> {
    let mut child = Command::new(&world.plan.agent_binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {args:?}: {e}"))?;
    let mut first = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut first);
    }
    Ok((child, first.trim().to_owned()))
}

/// Ends a fake: its standard input closes.
pub(crate) fn end_fake(mut child: Child) {
    drop(child.stdin.take());
    if !wait_for(Duration::from_secs(5), || {
        !matches!(child.try_wait(), Ok(None))
    }) {
        let _ = child.kill();
    }
    let _ = child.wait();
}
