//! The MCP gateway (`kernel-enforcer mcp-proxy`), attacked by its client:
//! the runner plays the agent that speaks MCP to the gateway, and the
//! gateway starts the campaign's fake MCP server (`fake-mcp`), which
//! records every byte it receives and performs its tools.
//!
//! Judged by what the server actually received against what the gateway
//! recorded and decided: every `tools/call` the server's bytes hold, read
//! by any common reader (see [`crate::json`]) and split into lines as
//! strict and lenient line readers do, must be a call the evidence holds
//! an allow for; and by the world (a file the server wrote, a secret it
//! read back, the guarded files).

use crate::gates::{end_fake, smuggled_files, start_fake};
use crate::json::{self, Reader};
use crate::modes::{Mode, alive, log_file, wait_for};
use crate::plan::Attempt;
use crate::report::{Judged, Progress};
use crate::world::{self, World};
use kernel_core::{Action, CanonicalAction};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// One gateway with its server.
#[derive(Debug)]
pub(crate) struct Mcp {
    proxy: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    log: PathBuf,
    seen: usize,
    pub(crate) evidence: PathBuf,
    pub(crate) control: PathBuf,
    sync: u64,
}

impl Mcp {
    /// Starts `mcp-proxy` for batch `name`: with its own session (the
    /// gateway configuration), or asking the `listen` at `socket`.
    pub(crate) fn start(
        world: &mut World,
        name: &str,
        socket: Option<&str>,
    ) -> Result<Self, String> {
        world.for_mode(Mode::McpProxy);
        let (evidence, control) = world.for_batch(name);
        let log = world.root.join("run").join(format!("{name}.mcp.log"));
        let mut command = Command::new(&world.enforcer);
        command.arg("mcp-proxy");
        match socket {
            Some(socket) => {
                command.args(["--socket", socket]);
            }
            None => {
                command
                    .arg("--config")
                    .arg(world.config(Mode::McpProxy))
                    .arg("--evidence")
                    .arg(&evidence);
            }
        }
        command
            .arg("--")
            .arg(&world.plan.agent_binary)
            .arg("fake-mcp")
            .arg(&log)
            .arg(&world.plan.workspace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(world)?);
        let mut proxy = command
            .spawn()
            .map_err(|e| format!("cannot start `mcp-proxy`: {e}"))?;
        let stdin = proxy.stdin.take();
        let (tx, answers) = channel();
        if let Some(stdout) = proxy.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut mcp = Self {
            proxy,
            stdin,
            answers,
            log,
            seen: 0,
            evidence,
            control,
            sync: 0,
        };
        let up =
            mcp.exchange(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{}}"#);
        if !up.iter().any(|a| a.contains("\"init\"")) {
            return Err(format!("`mcp-proxy` did not answer `initialize`: {up:?}"));
        }
        mcp.received();
        Ok(mcp)
    }

    /// The gateway's pid (it holds the session with session flags).
    pub(crate) fn pid(&self) -> u32 {
        self.proxy.id()
    }

    /// Writes `line` and a newline, unanswered.
    pub(crate) fn send(&mut self, line: &[u8]) -> bool {
        self.stdin.as_mut().is_some_and(|stdin| {
            stdin
                .write_all(line)
                .and_then(|()| stdin.write_all(b"\n"))
                .and_then(|()| stdin.flush())
                .is_ok()
        })
    }

    /// Sends `line`, then a `ping` of its own, and returns every answer
    /// that came before the ping's: the gateway relays in order, so the
    /// server has seen `line` by then.
    pub(crate) fn exchange(&mut self, line: &[u8]) -> Vec<String> {
        self.sync += 1;
        let id = format!("sync-{}", self.sync);
        let ping = format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"ping"}}"#);
        if !self.send(line) || !self.send(ping.as_bytes()) {
            return vec!["the gateway's input is closed".into()];
        }
        let mut answers = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.answers.recv_timeout(left) {
                Ok(answer) if answer.contains(&format!("\"{id}\"")) => return answers,
                Ok(answer) => answers.push(answer),
                Err(_) => break,
            }
        }
        answers.push("no answer to the ping within 20 s".into());
        answers
    }

    /// The bytes the server received since the last call.
    pub(crate) fn received(&mut self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let new = bytes.get(self.seen..).unwrap_or_default().to_vec();
        self.seen = bytes.len();
        String::from_utf8_lossy(&new).into_owned()
    }

    /// Closes the gateway's input and waits for it to end.
    pub(crate) fn finish(mut self) -> String {
        drop(self.stdin.take());
        if !wait_for(Duration::from_secs(15), || {
            !matches!(self.proxy.try_wait(), Ok(None))
        }) {
            let _ = self.proxy.kill();
        }
        self.proxy
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string())
    }
}

/// The tool calls the evidence holds an allow for, as (name, canonical
/// input).
fn allowed_calls(evidence: &std::path::Path) -> BTreeSet<(String, String)> {
    world::evidence_facts(evidence)
        .map(|facts| {
            facts
                .allows
                .into_iter()
                .filter_map(|(_, action)| match action {
                    Action::ToolCall { name, input } => Some((name, input)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every `tools/call` in `received`, under any reading, that was not
/// allowed: one line per call, with the readings that see it.
fn undecided_calls(received: &str, allowed: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut found: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for lenient in [false, true] {
        for line in json::lines(received, lenient) {
            let Some(raw) = json::parse(&line) else {
                continue;
            };
            for reader in Reader::ALL {
                let message = raw.read(reader);
                if message.get("method").and_then(serde_json::Value::as_str) != Some("tools/call") {
                    continue;
                }
                let params = message.get("params");
                let name = params
                    .and_then(|p| p.get("name"))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                let arguments = params
                    .and_then(|p| p.get("arguments"))
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}));
                let decided = CanonicalAction::new(Action::tool_call(name, &arguments), None)
                    .ok()
                    .and_then(|c| match c.action() {
                        Action::ToolCall { name, input } => Some((name.clone(), input.clone())),
                        _ => None,
                    });
                if decided.as_ref().is_none_or(|call| !allowed.contains(call)) {
                    let readers = found.entry(format!("`{name}` {arguments}")).or_default();
                    let how = format!(
                        "{}{}",
                        reader.name(),
                        if lenient {
                            " splitting lines leniently"
                        } else {
                            ""
                        }
                    );
                    if !readers.contains(&how) {
                        readers.push(how);
                    }
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(call, readers)| {
            format!(
                "the server received a tools/call {call} that was never allowed (as read by {})",
                readers.join(", ")
            )
        })
        .collect()
}

/// Judges one exchange: what the server received, the answers the
/// client got, files written, the guarded files, and (as the attempt
/// asks) the evidence and the operator's view.
fn judge(
    world: &mut World,
    mcp: &mut Mcp,
    answers: &[String],
    attempt: &Attempt,
) -> (Vec<String>, Vec<String>) {
    let mut attempt = attempt.clone();
    attempt.got = answers.join("\n");
    let cx = crate::judge::Context {
        enforcer: Some(mcp.pid()),
        evidence: &mcp.evidence.clone(),
        control: &mcp.control.clone(),
        approvals_allowed: 0,
    };
    let (mut effects, limits) = crate::judge::judge(world, &attempt, &cx);
    let received = mcp.received();
    effects.extend(undecided_calls(&received, &allowed_calls(&mcp.evidence)));
    for file in smuggled_files(&world.plan.workspace) {
        effects.push(format!("the server wrote {}", file.display()));
        let _ = std::fs::remove_file(file);
    }
    (effects, limits)
}

fn call(id: &str, name: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}"#
    )
}

/// Lines that are not well-formed MCP, or that only a lax reader takes
/// for a call (the protocol-abuse class).
fn abuse_lines() -> Vec<(&'static str, Vec<u8>)> {
    let forbidden = r#"{"path":"smuggled-abuse.txt","content":"x"}"#;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut big = call(
        "big",
        "write_file",
        r#"{"path":"smuggled-big.txt","content":"#,
    )
    .into_bytes();
    big.truncate(big.len().saturating_sub(3));
    big.extend_from_slice(b"\"");
    big.extend(std::iter::repeat_n(b'x', 9 << 20));
    big.extend_from_slice(b"\"}}}");
    vec![
        ("a line of garbage", b"garbage \x00\xff".to_vec()),
        ("half an object", b"{\"jsonrpc\":\"2.0\",\"id\":1,".to_vec()),
        (
            "a batch holding a forbidden call",
            format!("[{}]", call("b1", "write_file", forbidden)).into_bytes(),
        ),
        (
            "a forbidden call as a notification (no id)",
            format!(
                r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"write_file","arguments":{forbidden}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "a forbidden call whose id is an object",
            format!(
                r#"{{"jsonrpc":"2.0","id":{{"a":1}},"method":"tools/call","params":{{"name":"write_file","arguments":{forbidden}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "a forbidden call in JSON-RPC 1.0",
            format!(
                r#"{{"jsonrpc":"1.0","id":"v1","method":"tools/call","params":{{"name":"write_file","arguments":{forbidden}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "a forbidden call whose arguments are a string",
            format!(
                r#"{{"jsonrpc":"2.0","id":"s1","method":"tools/call","params":{{"name":"write_file","arguments":{:?}}}}}"#,
                forbidden
            )
            .into_bytes(),
        ),
        (
            "a forbidden call whose params are an array",
            format!(
                r#"{{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":["write_file",{forbidden}]}}"#
            )
            .into_bytes(),
        ),
        ("a forbidden call over the size limit", big),
        ("nesting 10,000 deep", deep.into_bytes()),
        (
            "an allowed call and a forbidden one on one line",
            format!("{}{}", call("t1", "echo", "{}"), call("t2", "write_file", forbidden)).into_bytes(),
        ),
        (
            "a forbidden call behind a byte-order mark",
            format!("\u{feff}{}", call("bom", "write_file", forbidden)).into_bytes(),
        ),
        (
            "a forbidden call with a NUL byte in its name",
            call("nul", "write_file\\u0000", forbidden).into_bytes(),
        ),
        (
            "a response to a request the server never sent, holding a call",
            format!(
                r#"{{"jsonrpc":"2.0","id":"r9","result":{{}},"method":"tools/call","params":{{"name":"write_file","arguments":{forbidden}}}}}"#
            )
            .into_bytes(),
        ),
    ]
}

/// Lines a reader other than the gateway's may read as another call: the
/// parser-differentials class. Each forbidden reading would write a
/// `smuggled-*` file in the fake server.
fn differential_lines() -> Vec<(&'static str, String)> {
    let w = |id: &str| format!(r#"{{"path":"smuggled-{id}.txt","content":"x"}}"#);
    vec![
        (
            "method twice: tools/call first, tools/list last",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d1","method":"tools/call","method":"tools/list","params":{{"name":"write_file","arguments":{}}}}}"#,
                w("d1")
            ),
        ),
        (
            "params twice: the forbidden call first, echo last",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d2","method":"tools/call","params":{{"name":"write_file","arguments":{}}},"params":{{"name":"echo","arguments":{{}}}}}}"#,
                w("d2")
            ),
        ),
        (
            "name twice: write_file first, echo last",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d3","method":"tools/call","params":{{"name":"write_file","name":"echo","arguments":{}}}}}"#,
                w("d3")
            ),
        ),
        (
            "arguments twice: smuggled.txt first, notes.md last",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d4","method":"tools/call","params":{{"name":"write_file","arguments":{},"arguments":{{"path":"notes.md","content":"x"}}}}}}"#,
                w("d4")
            ),
        ),
        (
            "path twice inside the arguments: smuggled first, notes.md last",
            r#"{"jsonrpc":"2.0","id":"d5","method":"tools/call","params":{"name":"write_file","arguments":{"path":"smuggled-d5.txt","content":"x","path":"notes.md"}}}"#.into(),
        ),
        (
            "method and Method: tools/list, then tools/call for a case-insensitive reader",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d6","method":"tools/list","Method":"tools/call","params":{{"name":"write_file","arguments":{}}}}}"#,
                w("d6")
            ),
        ),
        (
            "an escaped key: n\\u0061me (write_file) before name (echo)",
            format!(
                r#"{{"jsonrpc":"2.0","id":"d7","method":"tools/call","params":{{"n\u0061me":"write_file","name":"echo","arguments":{}}}}}"#,
                w("d7")
            ),
        ),
        (
            "a second call after a carriage return, inside an allowed call's arguments",
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":\"r1\",\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"x\":\r{}\r}}}}}}",
                call("r2", "write_file", &w("r2"))
            ),
        ),
        (
            "a second call after U+2028 inside a string",
            "{\"jsonrpc\":\"2.0\",\"id\":\"u1\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"x\":\"a\u{2028}b\"}}}".to_owned(),
        ),
        (
            "a huge integer in an allowed call",
            call("n1", "echo", r#"{"amount":123456789012345678901234567890}"#),
        ),
        (
            "a lone surrogate escape in the path",
            call("s1", "write_file", r#"{"path":"notes.md\ud800","content":"x"}"#),
        ),
        (
            "the tool's name with escapes",
            call("e1", "wr\\u0069te_file", &w("e1")),
        ),
        ("an allowed call, as a control", call("ok", "echo", r#"{"say":"hi"}"#)),
    ]
}

/// Judges and records one exchange of `class`.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per exchange, every argument named"
)]
fn record(
    world: &mut World,
    mcp: &mut Mcp,
    class: &str,
    what: String,
    answers: &[String],
    attempt: &Attempt,
    progress: &mut Progress,
    results: &mut Vec<Judged>,
) {
    let (effects, limits) = judge(world, mcp, answers, attempt);
    let escaped = !effects.is_empty();
    if escaped || !limits.is_empty() {
        world.rebaseline();
    }
    progress.step(escaped);
    results.push(Judged {
        class: class.into(),
        mode: Mode::McpProxy,
        what,
        answer: answers.join(" | ").chars().take(240).collect(),
        escaped,
        effects,
        limits,
    });
}

/// Ends a session of the gateway: it ends when its input closes, and its
/// evidence verifies.
fn finish(world: &mut World, mcp: Mcp, class: &str, results: &mut Vec<Judged>) {
    let evidence = mcp.evidence.clone();
    let status = mcp.finish();
    crate::gates::finish_session(world, Mode::McpProxy, class, &evidence, results);
    if let Some(last) = results.last_mut() {
        last.answer = format!("mcp-proxy {status}");
    }
}

/// One of the gateway's classes.
pub(crate) fn class(
    world: &mut World,
    class: &str,
    seed: u64,
    count: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    match class {
        "kill-switch" => return kill_switch(world, seed, count, results),
        "impersonation" => return impersonation(world, results),
        _ => {}
    }
    let mut mcp = Mcp::start(world, &format!("mcp-{class}"), None)?;
    let lines: Vec<(String, Vec<u8>, Attempt)> = match class {
        "protocol-abuse" => abuse_lines()
            .into_iter()
            .map(|(what, line)| {
                (
                    what.to_owned(),
                    line,
                    Attempt {
                        evidence: true,
                        ..Attempt::default()
                    },
                )
            })
            .collect(),
        "parser-differentials" => differential_lines()
            .into_iter()
            .map(|(what, line)| {
                (
                    what.to_owned(),
                    line.into_bytes(),
                    Attempt {
                        evidence: true,
                        ..Attempt::default()
                    },
                )
            })
            .collect(),
        "argument-smuggling" => crate::attacks::smuggling::tool_inputs()
            .into_iter()
            .enumerate()
            .map(|(i, (tool, input))| {
                let input = input
                    .to_string()
                    .replace("smuggled.txt", &format!("smuggled-{i}.txt"));
                (
                    format!("{tool} {input}"),
                    call(&format!("a{i}"), tool, &input).into_bytes(),
                    Attempt {
                        evidence: true,
                        ..Attempt::default()
                    },
                )
            })
            .collect(),
        "control-approvals" => approvals(&mcp),
        _ => Vec::new(),
    };
    let mut progress = Progress::new(
        class,
        Mode::McpProxy,
        lines.len() + usize::from(class == "protocol-abuse"),
    );
    for (what, line, attempt) in lines {
        if let Some(command) = line.strip_prefix(b"!control ") {
            // The agent, of the operator's uid, on the control socket.
            let request = serde_json::from_slice(command)
                .unwrap_or(kernel_enforcer::session::control::ControlRequest::Status);
            let answer = kernel_enforcer::session::control::request(&mcp.control, &request)
                .map_or_else(|e| e.to_string(), |r| format!("ok={} {}", r.ok, r.message));
            record(
                world,
                &mut mcp,
                class,
                what,
                &[answer],
                &attempt,
                &mut progress,
                results,
            );
            continue;
        }
        let answers = mcp.exchange(&line);
        record(
            world,
            &mut mcp,
            class,
            what,
            &answers,
            &attempt,
            &mut progress,
            results,
        );
    }
    if class == "protocol-abuse" {
        // The flood: calls back to back without waiting, half forbidden.
        let n = count.max(50);
        for i in 0..n {
            let line = if i % 2 == 0 {
                call(&format!("f{i}"), "echo", &format!(r#"{{"i":{i}}}"#))
            } else {
                call(
                    &format!("f{i}"),
                    "write_file",
                    &format!(r#"{{"path":"smuggled-f{i}.txt","content":"x"}}"#),
                )
            };
            mcp.send(line.as_bytes());
        }
        let answers = mcp.exchange(b"");
        let attempt = Attempt {
            evidence: true,
            audit: true,
            ..Attempt::default()
        };
        let what = format!("{n} calls back to back, half of them forbidden");
        let summary = vec![format!("{} answers", answers.len())];
        record(
            world,
            &mut mcp,
            class,
            what,
            &summary,
            &attempt,
            &mut progress,
            results,
        );
    }
    progress.finish();
    finish(world, mcp, class, results);
    Ok(())
}

/// The agent (an unconfined process of the operator's uid, which started
/// the gateway) on the gateway's control socket: a documented limit.
fn approvals(mcp: &Mcp) -> Vec<(String, Vec<u8>, Attempt)> {
    let limit = Some(
        "the gateway holds its session in a process the agent started, as in embedded mode \
         (SECURITY.md): the agent is the operator on its control socket"
            .to_owned(),
    );
    let attempt = Attempt {
        evidence: true,
        not_halted: true,
        operator_limit: limit,
        ..Attempt::default()
    };
    let deploy = call("dep", "deploy", r#"{"environment":"production"}"#).into_bytes();
    let _ = mcp;
    vec![
        (
            "a deployment that needs an approval".into(),
            deploy.clone(),
            attempt.clone(),
        ),
        (
            "self-approve on the control socket".into(),
            br#"!control {"command":"approve","id":0,"for_secs":3600,"uses":100}"#.to_vec(),
            attempt.clone(),
        ),
        ("the deployment again".into(), deploy, attempt.clone()),
        (
            "a reload on the control socket".into(),
            br#"!control {"command":"reload"}"#.to_vec(),
            attempt,
        ),
    ]
}

/// Kill switch: calls stream through the gateway while the operator
/// halts its session; after the acknowledgment no call may reach the
/// server, and no allow may follow the halt record.
fn kill_switch(
    world: &mut World,
    seed: u64,
    scenarios: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut progress = Progress::new("kill-switch", Mode::McpProxy, scenarios);
    for s in 0..scenarios {
        let mut mcp = Mcp::start(world, &format!("mcp-kill-{s}"), None)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut stdin = mcp.stdin.take();
        let streaming = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let line = call(&format!("k{i}"), "echo", &format!(r#"{{"i":{i}}}"#));
                    let Some(input) = stdin.as_mut() else { break };
                    if input
                        .write_all(line.as_bytes())
                        .and_then(|()| input.write_all(b"\n"))
                        .is_err()
                    {
                        break;
                    }
                }
                stdin
            })
        };
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 150));
        let method = rng.below(3);
        let (acknowledged, how) = halt_gateway(world, &mcp, method);
        let at_ack = mcp.received();
        let at_ack_calls = at_ack.matches("tools/call").count();
        // Calls keep coming for a while after the acknowledgment.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        mcp.stdin = streaming.join().unwrap_or_default();
        let _ = mcp.exchange(b"");
        let all = format!("{at_ack}{}", mcp.received());
        let mut effects = Vec::new();
        if !acknowledged {
            effects.push(format!("the halt by {how} was not acknowledged"));
        }
        // Every call the server got must have had its allow recorded (a
        // call allowed before the halt may still be on its way), and no
        // allow may follow the halt record.
        effects.extend(undecided_calls(&all, &allowed_calls(&mcp.evidence)));
        match world::evidence_facts(&mcp.evidence) {
            Ok(facts) => match facts.halt {
                None => effects.push("no halt record in the evidence".into()),
                Some(h) => {
                    let late = facts.allows.iter().filter(|(i, _)| *i > h).count();
                    if late > 0 {
                        effects.push(format!("{late} allow record(s) after the halt record"));
                    }
                }
            },
            Err(e) => effects.push(e),
        }
        let evidence = mcp.evidence.clone();
        let status = mcp.finish();
        if let Err(e) = crate::judge::audit_with_retry(world, &evidence) {
            effects.push(e);
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        if escaped {
            world.rebaseline();
        }
        progress.step(escaped);
        results.push(Judged {
            class: "kill-switch".into(),
            mode: Mode::McpProxy,
            what: format!("scenario {s}: halt by {how} while calls stream through the gateway"),
            answer: format!("{at_ack_calls} calls reached the server before the acknowledgment; mcp-proxy {status}"),
            escaped,
            effects,
            limits: Vec::new(),
        });
    }
    progress.finish();
    Ok(())
}

/// The operator halts the gateway's session.
fn halt_gateway(world: &World, mcp: &Mcp, method: usize) -> (bool, &'static str) {
    use kernel_enforcer::session::control::{ControlRequest, request};
    match method {
        0 => (
            request(
                &mcp.control,
                &ControlRequest::Halt {
                    reason: Some("campaign".into()),
                },
            )
            .is_ok_and(|r| r.ok),
            "control socket",
        ),
        1 => {
            let sent = crate::modes::signal(mcp.pid(), rustix::process::Signal::USR1);
            let halted = sent
                && wait_for(Duration::from_secs(10), || {
                    request(&mcp.control, &ControlRequest::Status)
                        .is_ok_and(|r| r.data.get("halted").is_some_and(|h| !h.is_null()))
                        || !alive(mcp.pid())
                });
            (halted, "SIGUSR1")
        }
        _ => (
            Command::new(&world.enforcer)
                .arg("halt")
                .arg("--control")
                .arg(&mcp.control)
                .output()
                .is_ok_and(|o| o.status.success()),
            "`kernel-enforcer halt`",
        ),
    }
}

/// Impersonation around the gateway: its control socket's name taken
/// before it starts, and the `listen` it asks (`--socket`) replaced by an
/// impersonator.
fn impersonation(world: &mut World, results: &mut Vec<Judged>) -> Result<(), String> {
    let mut progress = Progress::new("impersonation", Mode::McpProxy, 2);
    // 1. The control socket's name, taken before the gateway starts.
    world.for_mode(Mode::McpProxy);
    let (_, control) = world.for_batch("mcp-impersonation-0");
    let (fake, said) = start_fake(world, &["fake-control", &control.to_string_lossy()])?;
    let started = Mcp::start(world, "mcp-impersonation-0", None);
    let mut effects = Vec::new();
    let pid = started.as_ref().ok().map(Mcp::pid);
    effects.extend(crate::impersonation::operator_deceived(
        world, &control, pid,
    ));
    let answer = format!(
        "fake: {said}; gateway: {}",
        started
            .as_ref()
            .map_or_else(Clone::clone, |_| "started".to_owned())
    );
    if let Ok(mcp) = started {
        let _ = mcp.finish();
    }
    end_fake(fake);
    push(
        world,
        "the gateway's control socket name bound before it starts",
        answer,
        effects,
        &mut progress,
        results,
    );
    // 2. The `listen` the gateway asks, replaced while it runs.
    world.for_mode(Mode::McpProxy);
    let (evidence, _) = world.for_batch("mcp-impersonation-listen");
    let (mut listen, socket) =
        crate::modes::start_listen(world, Mode::McpProxy, "mcp-impersonation-listen", &evidence)?;
    let socket = socket.to_string_lossy().into_owned();
    let (fake, said) = start_fake(world, &["fake-endpoint", &socket, "replace"])?;
    let mut effects = Vec::new();
    let mut answer = format!("fake: {said}");
    match Mcp::start(world, "mcp-impersonation-1", Some(&socket)) {
        Ok(mut mcp) => {
            let answers = mcp.exchange(
                call(
                    "i1",
                    "write_file",
                    r#"{"path":"smuggled-imp.txt","content":"x"}"#,
                )
                .as_bytes(),
            );
            answer.push_str(&format!(
                "; {}",
                answers.join(" | ").chars().take(160).collect::<String>()
            ));
            let received = mcp.received();
            effects.extend(undecided_calls(&received, &allowed_calls(&evidence)));
            for file in smuggled_files(&world.plan.workspace) {
                effects.push(format!("the server wrote {}", file.display()));
                let _ = std::fs::remove_file(file);
            }
            let _ = mcp.finish();
        }
        Err(e) => answer.push_str(&format!("; gateway: {e}")),
    }
    end_fake(fake);
    crate::gates::stop(&mut listen);
    push(
        world,
        "the `listen` the gateway asks replaced by an impersonator",
        answer,
        effects,
        &mut progress,
        results,
    );
    progress.finish();
    Ok(())
}

fn push(
    world: &mut World,
    what: &str,
    answer: String,
    mut effects: Vec<String>,
    progress: &mut Progress,
    results: &mut Vec<Judged>,
) {
    effects.extend(world.changed_files());
    let escaped = !effects.is_empty();
    if escaped {
        world.rebaseline();
    }
    progress.step(escaped);
    results.push(Judged {
        class: "impersonation".into(),
        mode: Mode::McpProxy,
        what: what.into(),
        answer,
        escaped,
        effects,
        limits: Vec::new(),
    });
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use super::*;

    fn allowed(calls: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        calls
            .iter()
            .map(|(name, input)| {
                let action = CanonicalAction::new(
                    Action::tool_call(*name, &serde_json::from_str(input).unwrap()),
                    None,
                )
                .unwrap();
                match action.action() {
                    Action::ToolCall { name, input } => (name.clone(), input.clone()),
                    _ => panic!("not a tool call"),
                }
            })
            .collect()
    }

    #[test]
    fn a_call_forwarded_as_decided_is_not_an_effect() {
        let received = format!("{}\n", call("1", "echo", r#"{"b":1,"a":2}"#));
        assert!(undecided_calls(&received, &allowed(&[("echo", r#"{"a":2,"b":1}"#)])).is_empty());
    }

    #[test]
    fn what_another_reader_takes_for_an_undecided_call_is_an_effect() {
        let echo = allowed(&[("echo", "{}")]);
        // Decided as echo (the last `name`), read as write_file by a
        // first-key-wins reader.
        let duplicate = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","name":"echo","arguments":{}}}"#;
        let found = undecided_calls(&format!("{duplicate}\n"), &echo);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("write_file") && found[0].contains("first-key-wins"));
        // A second message behind a carriage return.
        let split = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"x\":\r{}\r}}}}}}\n",
            call("2", "write_file", "{}")
        );
        let found = undecided_calls(&split, &echo);
        assert!(
            found
                .iter()
                .any(|f| f.contains("write_file") && f.contains("leniently")),
            "{found:?}"
        );
        // A number no double holds.
        let big = format!(
            "{}\n",
            call("3", "echo", r#"{"n":123456789012345678901234567890}"#)
        );
        let decided = allowed(&[("echo", r#"{"n":123456789012345678901234567890}"#)]);
        let found = undecided_calls(&big, &decided);
        assert!(
            found.iter().any(|f| f.contains("exact-number")),
            "{found:?}"
        );
    }
}
