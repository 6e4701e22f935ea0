//! The MCP gateway against the official MCP SDK client and the official
//! filesystem server, both from npm (installed by this test into a
//! directory of its own under cargo's `CARGO_TARGET_TMPDIR`; skipped with
//! a `SKIPPED` line when `node` or `npm` is missing). Denials are shown by
//! the server's own effect not happening: the file it would have written
//! does not exist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_testkit::{Fixture, audit_verify, enforcer, fixture};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

const POLICY: &str = r#"
@id("read-tools")
@reason("reading the workspace is harmless")
permit (principal, action == Action::"tool_call", resource)
when {
  resource == Tool::"read_text_file" || resource == Tool::"read_file" ||
  resource == Tool::"list_directory" || resource == Tool::"list_allowed_directories"
};

@id("write-allowed")
@reason("files named allowed-* may be written")
permit (principal, action == Action::"tool_call", resource == Tool::"write_file")
when { context.args has path && context.args.path like "*/allowed-*" };
"#;

/// Installs the npm packages once per test run; `None` when npm is not
/// there.
fn node_modules() -> Option<PathBuf> {
    static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let have = |tool: &str| {
                Command::new(tool)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !have("node") || !have("npm") {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-gateway-node");
            std::fs::create_dir_all(&dir).unwrap();
            let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp");
            std::fs::copy(here.join("package.json"), dir.join("package.json")).unwrap();
            let server = dir.join("node_modules/@modelcontextprotocol/server-filesystem");
            if !server.exists() {
                let status = Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .unwrap();
                assert!(status.success(), "npm install failed");
            }
            Some(dir.join("node_modules"))
        })
        .clone()
}

macro_rules! require_npm {
    () => {
        match node_modules() {
            Some(modules) => modules,
            None => {
                println!("SKIPPED: node or npm not found; the MCP gateway tests need them");
                return;
            }
        }
    };
}

fn server_command(modules: &Path, workspace: &Path) -> Vec<String> {
    vec![
        "node".into(),
        modules
            .join("@modelcontextprotocol/server-filesystem/dist/index.js")
            .to_string_lossy()
            .into_owned(),
        workspace.to_string_lossy().into_owned(),
    ]
}

fn proxy_args(fixture: &Fixture) -> Vec<String> {
    vec![
        "mcp-proxy".into(),
        "--policy".into(),
        fixture.policy.to_string_lossy().into_owned(),
        "--workspace".into(),
        fixture.workspace.to_string_lossy().into_owned(),
        "--evidence".into(),
        fixture.evidence.to_string_lossy().into_owned(),
    ]
}

/// Runs the SDK client through the gateway; returns its JSON lines.
fn sdk_client(modules: &Path, fixture: &Fixture, calls: &Value) -> Vec<Value> {
    let mut command = Command::new("node");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.mjs"))
        .arg(modules)
        .arg(calls.to_string())
        .arg("--")
        .arg(enforcer())
        .args(proxy_args(fixture))
        .arg("--")
        .args(server_command(modules, &fixture.workspace));
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn text_of(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_official_sdk_client_gets_real_results_and_denials_never_reach_the_server() {
    let modules = require_npm!();
    let fixture = fixture(POLICY);
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    let allowed = workspace.join("allowed-note.txt");
    let denied = workspace.join("denied-note.txt");
    let calls = json!([
        {"name": "write_file", "arguments": {"path": allowed, "content": "written through the gateway"}},
        {"name": "write_file", "arguments": {"path": denied, "content": "must not exist"}},
        {"name": "read_text_file", "arguments": {"path": allowed}},
        {"name": "move_file", "arguments": {"source": allowed, "destination": denied}},
    ]);
    let lines = sdk_client(&modules, &fixture, &calls);
    // tools/list passes through unfiltered.
    let tools = lines[0]["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("write_file")) && tools.contains(&json!("move_file")));
    // The allowed write went through and the server really wrote.
    assert_ne!(lines[1]["result"]["isError"], true, "{}", lines[1]);
    assert_eq!(
        std::fs::read_to_string(&allowed).unwrap(),
        "written through the gateway"
    );
    // The denied write was answered by the gateway, well-formed, and the
    // server never saw it.
    assert_eq!(lines[2]["result"]["isError"], true, "{}", lines[2]);
    assert!(text_of(&lines[2]).contains("denied by the agent kernel"));
    assert!(!denied.exists());
    // The server's real result comes back for an allowed read.
    assert!(text_of(&lines[3]).contains("written through the gateway"));
    // A tool no policy permits: denied, and the file did not move.
    assert_eq!(lines[4]["result"]["isError"], true, "{}", lines[4]);
    assert!(allowed.exists() && !denied.exists());
    // Every decision is in the evidence, which verifies.
    let report = audit_verify(&fixture.evidence);
    assert!(report.contains("2 allowed, 2 denied"), "{report}");
}

/// A raw JSON-RPC peer of the gateway (for frames the SDK would never
/// send).
struct Raw {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Raw {
    fn start(args: &[String], server: &[String]) -> Self {
        let mut child = Command::new(enforcer())
            .args(args)
            .arg("--")
            .args(server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            input,
            output,
        }
    }

    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(line.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
        input.flush().unwrap();
    }

    /// Closes the gateway's input and waits for it to exit.
    fn finish(&mut self) {
        self.input = None;
        self.child.wait().unwrap();
    }

    fn receive(&mut self) -> Value {
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn initialize(&mut self) {
        self.send(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        );
        assert_eq!(self.receive()["id"], 0);
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        // The gateway checks arguments against the schemas the server
        // lists, and denies calls of tools it has not seen listed.
        self.send(r#"{"jsonrpc":"2.0","id":"tools","method":"tools/list"}"#);
        assert_eq!(self.receive()["id"], "tools");
    }

    fn write_file(&mut self, id: u64, path: &Path) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"path": path, "content": "x"}}});
        self.send(&request.to_string());
        self.receive()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn malformed_frames_are_answered_and_the_gateway_keeps_working() {
    let modules = require_npm!();
    let fixture = fixture(POLICY);
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    let mut raw = Raw::start(
        &proxy_args(&fixture),
        &server_command(&modules, &fixture.workspace),
    );
    raw.initialize();
    raw.send("this is not json");
    assert_eq!(raw.receive()["error"]["code"], -32700);
    raw.send(r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"}]"#);
    assert_eq!(raw.receive()["error"]["code"], -32600);
    raw.send(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"write_file","arguments":"oops"}}"#);
    let invalid = raw.receive();
    assert_eq!(
        (invalid["id"].clone(), invalid["error"]["code"].clone()),
        (json!(6), json!(-32602))
    );
    // Interleaved requests are matched by id: a denied call answered by
    // the gateway, then an allowed one answered by the server.
    raw.send(&json!({"jsonrpc": "2.0", "id": "w1", "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": workspace.join("nope.txt"), "content": "x"}}}).to_string());
    raw.send(r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#);
    let mut answers = [raw.receive(), raw.receive()];
    answers.sort_by_key(|a| a["id"].to_string());
    assert_eq!(answers[0]["id"], "list");
    assert!(answers[0]["result"]["tools"].is_array());
    assert_eq!(answers[1]["id"], "w1");
    assert_eq!(answers[1]["result"]["isError"], true);
    assert!(!workspace.join("nope.txt").exists());
    let ok = raw.write_file(7, &workspace.join("allowed-after.txt"));
    assert_ne!(ok["result"]["isError"], true, "{ok}");
    assert!(workspace.join("allowed-after.txt").exists());
}

#[test]
fn a_server_that_crashes_leaves_no_request_unanswered() {
    let fixture = fixture(POLICY);
    // A "server" that reads one message and dies without answering.
    let server = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "read line; exit 3".to_owned(),
    ];
    let mut raw = Raw::start(&proxy_args(&fixture), &server);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let gone = raw.receive();
    assert_eq!(gone["id"], 1);
    assert_eq!(gone["error"]["code"], -32000);
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let later = raw.receive();
    assert_eq!(
        (later["id"].clone(), later["error"]["code"].clone()),
        (json!(2), json!(-32000))
    );
}

#[test]
fn when_the_enforcer_dies_every_later_call_is_denied() {
    let modules = require_npm!();
    let fixture = fixture(POLICY);
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    let mut listener = kernel_testkit::Listener::of(&fixture, &[]);
    let socket = listener.socket.clone();
    let mut raw = Raw::start(
        &[
            "mcp-proxy".to_owned(),
            "--socket".to_owned(),
            socket.to_string_lossy().into_owned(),
        ],
        &server_command(&modules, &fixture.workspace),
    );
    raw.initialize();
    let before = raw.write_file(1, &workspace.join("allowed-before.txt"));
    assert_ne!(before["result"]["isError"], true, "{before}");
    assert!(workspace.join("allowed-before.txt").exists());
    listener.child.0.kill().unwrap();
    listener.child.0.wait().unwrap();
    for id in 2..5 {
        let path = workspace.join(format!("allowed-after-{id}.txt"));
        let after = raw.write_file(id, &path);
        assert_eq!(after["result"]["isError"], true, "{after}");
        assert!(text_of(&after).contains("fail closed"), "{after}");
        assert!(!path.exists());
    }
}

/// The fake server in `tests/mcp/recording_server.py`, recording into
/// `record` and writing notes into `notes`; `None` when there is no
/// `python3`.
fn recording_server(record: &Path, notes: &Path) -> Option<Vec<String>> {
    let have = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    have.then(|| {
        vec![
            "python3".into(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/mcp/recording_server.py")
                .to_string_lossy()
                .into_owned(),
            record.to_string_lossy().into_owned(),
            notes.to_string_lossy().into_owned(),
        ]
    })
}

/// Outside testing found that a line was decided on one reading and
/// forwarded byte for byte, for a server whose parser keeps the first of
/// two equal keys to read another: `danger` ran, recorded as an allowed
/// `search_docs`, or was never decided at all. The server here keeps the
/// first key and records every line it gets: it must never see `danger`,
/// and the evidence must hold no allow for either message.
#[test]
fn a_server_never_receives_what_was_not_decided() {
    let fixture = fixture(
        r#"@id("search") @reason("searching the docs is harmless")
           permit (principal, action == Action::"tool_call", resource == Tool::"search_docs");"#,
    );
    let record = fixture.dir.path().join("received.log");
    let Some(server) = recording_server(&record, &fixture.workspace) else {
        println!("SKIPPED: python3 not found");
        return;
    };
    let mut raw = Raw::start(&proxy_args(&fixture), &server);
    raw.initialize();
    raw.send(r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#);
    assert_eq!(
        raw.receive()["result"]["tools"].as_array().unwrap().len(),
        3
    );
    let lines = [
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"danger","name":"search_docs","arguments":{"q":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","method":"tools/list","params":{"name":"danger","arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"x","q":{"$where":"danger"}}}}"#,
        // Allowed; the server also answers it under an id the client
        // never used.
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"spoof"}}}"#,
        r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"danger","arguments":{}}}"#,
    ];
    let mut answers = Vec::new();
    for line in lines {
        raw.send(line);
        answers.push(raw.receive());
    }
    raw.finish();
    // The effect first: what the server received and ran.
    let received = std::fs::read_to_string(&record).unwrap();
    assert!(!received.contains("danger"), "{received}");
    assert_eq!(received.matches("CALLED").count(), 1, "{received}");
    // Each ambiguous message was answered with an error, not a result.
    for (id, answer) in (10..13).zip(&answers) {
        assert!(answer.get("error").is_some(), "{id}: {answer}");
        assert_ne!(
            answer["id"], id,
            "{id}: answered as if it had run: {answer}"
        );
    }
    // Only the real answer came back for the allowed call.
    assert_eq!(answers[3]["id"], 13, "{}", answers[3]);
    assert_eq!(text_of(&answers[3]), "ran search_docs");
    assert_eq!(answers[4]["id"], 14, "{}", answers[4]);
    assert_eq!(answers[4]["result"]["isError"], true);
    let report = audit_verify(&fixture.evidence);
    assert!(report.contains("1 allowed, 1 denied"), "{report}");
}

/// Outside testing found a policy allowing `write_file` only for
/// `notes.md` by a pattern over the arguments' text, passed by the path
/// smuggled beside another. Policies match `context.args`, a record, now:
/// the smuggled write is denied and its file never written.
#[test]
fn arguments_are_matched_as_a_record_not_as_text() {
    let fixture = fixture(
        r#"@id("notes") @reason("the notes file may be written")
           permit (principal, action == Action::"tool_call", resource == Tool::"write_note")
           when { context.args has path && context.args.path == "notes.md" };"#,
    );
    let record = fixture.dir.path().join("received.log");
    let Some(server) = recording_server(&record, &fixture.workspace) else {
        println!("SKIPPED: python3 not found");
        return;
    };
    let mut raw = Raw::start(&proxy_args(&fixture), &server);
    raw.initialize();
    let write = |id: u64, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "write_note", "arguments": arguments}})
        .to_string()
    };
    let mut answers = Vec::new();
    for (id, arguments) in [
        (
            1,
            json!({"path": "smuggled.txt", "content": "x", "meta": {"path": "notes.md"}}),
        ),
        (
            2,
            json!({"path": "smuggled.txt", "content": "x\"path\":\"notes.md\""}),
        ),
        (
            3,
            json!({"path": "notes.md", "content": "remember the milk"}),
        ),
    ] {
        raw.send(&write(id, arguments));
        answers.push(raw.receive());
    }
    raw.finish();
    assert!(
        !fixture.workspace.join("smuggled.txt").exists(),
        "{answers:?}"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.workspace.join("notes.md")).unwrap(),
        "remember the milk"
    );
    assert_eq!(answers[0]["result"]["isError"], true, "{}", answers[0]);
    assert_eq!(answers[1]["result"]["isError"], true, "{}", answers[1]);
    assert_eq!(text_of(&answers[2]), "ran write_note");
}

/// Policies over MCP requests other than tool calls: guides may be read
/// as resources, and the `ask_model` prompt fetched; nothing else.
const REQUESTS_POLICY: &str = r#"
@id("guides") @reason("the guides may be read")
permit (principal, action == Action::"mcp_request", resource == McpMethod::"resources/read")
when { context.args has uri && context.args.uri like "docs://guides/*" };

@id("ask-model-prompt") @reason("the ask_model prompt may be fetched")
permit (principal, action == Action::"mcp_request", resource == McpMethod::"prompts/get")
when { context.args has name && context.args.name == "ask_model" };
"#;

/// Outside review found that only `tools/call` was decided: a
/// `resources/read` (which reads files or URLs through many servers), a
/// `prompts/get`, and any unknown method were forwarded undecided. Now
/// each is decided: what the policy does not permit never reaches the
/// server (the server's record has no line of it) and is recorded as
/// denied; what it permits does reach it; housekeeping still passes.
#[test]
fn requests_other_than_tool_calls_reach_the_server_only_when_decided() {
    let fixture = fixture(REQUESTS_POLICY);
    let record = fixture.dir.path().join("received.log");
    let Some(server) = recording_server(&record, &fixture.workspace) else {
        println!("SKIPPED: python3 not found");
        return;
    };
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    std::fs::write(workspace.join("secret.txt"), "s3cret").unwrap();
    let secret_uri = format!("file://{}", workspace.join("secret.txt").display());
    let mut raw = Raw::start(&proxy_args(&fixture), &server);
    raw.initialize();
    let mut ask = |id: &str, method: &str, params: Value| {
        raw.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        let answer = raw.receive();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    };
    // Housekeeping passes undecided (this server answers only `ping`
    // of these; the others reach it and are refused by it).
    for method in [
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "ping",
    ] {
        ask(method, method, json!({}));
    }
    // Permitted: answered by the server.
    let guide = ask(
        "guide",
        "resources/read",
        json!({"uri": "docs://guides/intro"}),
    );
    assert_eq!(
        guide["result"]["contents"][0]["text"], "content of docs://guides/intro",
        "{guide}"
    );
    let prompt = ask("prompt", "prompts/get", json!({"name": "summarise"}));
    let denied = [
        ask(
            "secret-doc",
            "resources/read",
            json!({"uri": "docs://secrets/key"}),
        ),
        ask("secret-file", "resources/read", json!({"uri": secret_uri})),
        prompt,
        ask(
            "unknown",
            "tasks/frobnicate",
            json!({"uri": "docs://guides/x"}),
        ),
        ask("level", "logging/setLevel", json!({"level": "debug"})),
        ask(
            "complete",
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "x"}}),
        ),
        ask(
            "subscribe",
            "resources/subscribe",
            json!({"uri": "docs://guides/intro"}),
        ),
    ];
    for answer in &denied {
        assert_eq!(answer["error"]["code"], -32003, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("denied by the agent kernel"), "{message}");
    }
    // Refused before deciding: a URI two readers could take for two
    // resources.
    let sneaky = ask(
        "sneaky",
        "resources/read",
        json!({"uri": "docs://guides/../secrets/key"}),
    );
    assert_eq!(sneaky["error"]["code"], -32602, "{sneaky}");
    // A request sent as a notification is dropped.
    raw.send(
        &json!({"jsonrpc": "2.0", "method": "resources/read",
        "params": {"uri": "docs://secrets/notified"}})
        .to_string(),
    );
    raw.finish();
    // The effect: what the server received.
    let received = std::fs::read_to_string(&record).unwrap();
    assert!(received.contains("READ docs://guides/intro"), "{received}");
    for absent in [
        "secrets",
        "secret.txt",
        "summarise",
        "tasks/frobnicate",
        "logging/setLevel",
        "completion/complete",
        "resources/subscribe",
    ] {
        assert!(
            !received.contains(absent),
            "`{absent}` reached the server: {received}"
        );
    }
    for method in [
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "ping",
    ] {
        assert!(
            received.contains(&format!("\"method\":\"{method}\"")),
            "{method}: {received}"
        );
    }
    // One allowed, seven denied, and nothing else decided.
    let report = audit_verify(&fixture.evidence);
    assert!(report.contains("1 allowed, 7 denied"), "{report}");
}

/// A `file:` resource is a file read: the kernel floor and the file
/// policies decide it, and the server gets the path decided.
#[test]
fn a_file_resource_is_decided_as_a_file_read() {
    let fixture = fixture(
        r#"@id("read-files") @reason("files may be read")
           permit (principal, action == Action::"file_read", resource);
           @id("no-env") @reason("environment files hold secrets")
           forbid (principal, action == Action::"file_read", resource)
           when { resource.name == ".env" };"#,
    );
    let record = fixture.dir.path().join("received.log");
    let Some(server) = recording_server(&record, &fixture.workspace) else {
        println!("SKIPPED: python3 not found");
        return;
    };
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    let notes = workspace.join("notes.md");
    let env = workspace.join(".env");
    let mut raw = Raw::start(&proxy_args(&fixture), &server);
    raw.initialize();
    let mut read = |id: u64, uri: String| {
        raw.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "resources/read",
            "params": {"uri": uri}})
            .to_string(),
        );
        raw.receive()
    };
    let allowed = read(1, format!("FILE://localhost{}", notes.display()));
    assert!(allowed.get("result").is_some(), "{allowed}");
    // The evidence file is the enforcer's own: the floor forbids reading
    // it, whatever the policy permits.
    let evidence = read(2, format!("file://{}", fixture.evidence.display()));
    assert_eq!(evidence["error"]["code"], -32003, "{evidence}");
    let message = evidence["error"]["message"].as_str().unwrap();
    assert!(message.contains("the kernel's own assets"), "{message}");
    let secrets = read(3, format!("file://{}", env.display()));
    let message = secrets["error"]["message"].as_str().unwrap();
    assert!(message.contains("environment files"), "{message}");
    raw.finish();
    let received = std::fs::read_to_string(&record).unwrap();
    assert!(
        received.contains(&format!("READ file://{}", notes.display())),
        "{received}"
    );
    assert!(!received.contains("evidence"), "{received}");
    assert!(!received.contains(".env"), "{received}");
    let report = audit_verify(&fixture.evidence);
    assert!(report.contains("1 allowed, 2 denied"), "{report}");
}

/// Outside review found that requests of the server's reached the agent
/// undecided: `sampling/createMessage` had the agent's model generate for
/// the server. Now each is decided: denied by default (answered to the
/// server with an error, never seen by the agent) and forwarded only when
/// a policy permits it.
#[test]
fn a_servers_sampling_request_never_reaches_the_agent_undecided() {
    for permitted in [false, true] {
        let sampling = if permitted {
            r#"@id("sampling") @reason("this server may ask for generations")
               permit (principal, action == Action::"mcp_server_request",
                       resource == McpMethod::"sampling/createMessage");"#
        } else {
            ""
        };
        let fixture = fixture(&format!("{REQUESTS_POLICY}\n{sampling}"));
        let record = fixture.dir.path().join("received.log");
        let Some(server) = recording_server(&record, &fixture.workspace) else {
            println!("SKIPPED: python3 not found");
            return;
        };
        let mut raw = Raw::start(&proxy_args(&fixture), &server);
        raw.initialize();
        raw.send(
            r#"{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":"ask_model"}}"#,
        );
        // The server asks for a generation before it answers the prompt.
        let first = raw.receive();
        if permitted {
            assert_eq!(first["method"], "sampling/createMessage", "{first}");
            assert_eq!(first["id"], "sample-1");
            raw.send(r#"{"jsonrpc":"2.0","id":"sample-1","result":{"role":"assistant","content":{"type":"text","text":"generated"},"model":"m"}}"#);
            assert_eq!(raw.receive()["id"], "p");
        } else {
            assert_eq!(first["id"], "p", "the agent saw: {first}");
            assert!(first.get("result").is_some(), "{first}");
            // Nothing else is queued for the agent: the next line is the
            // answer to a ping.
            raw.send(r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#);
            let next = raw.receive();
            assert_eq!(next["id"], "after", "the agent saw: {next}");
        }
        raw.finish();
        let received = std::fs::read_to_string(&record).unwrap();
        let answer = received
            .lines()
            .find(|line| line.starts_with("ANSWER \"sample-1\""))
            .unwrap_or_else(|| panic!("the server got no answer: {received}"));
        if permitted {
            assert!(answer.contains("generated"), "{answer}");
        } else {
            assert!(answer.contains("-32003"), "{answer}");
            assert!(answer.contains("denied by the agent kernel"), "{answer}");
        }
        let report = audit_verify(&fixture.evidence);
        let expected = if permitted {
            "2 allowed, 0 denied"
        } else {
            "1 allowed, 1 denied"
        };
        assert!(report.contains(expected), "{report}");
    }
}

/// The shipped profile for the filesystem server
/// (`examples/policies/mcp-filesystem.cedar`) against the real server:
/// it permits every tool the server lists (so ordinary use works), and no
/// tool call names a secret and reaches the server. Each denial is shown
/// by its effect: the secret's text is in no answer, the secret file is
/// unchanged and where it was, and the hook file was never written.
#[test]
fn the_filesystem_profile_permits_the_servers_tools_and_keeps_secrets_out() {
    let modules = require_npm!();
    let profile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/mcp-filesystem.cedar"),
    )
    .unwrap();
    let fixture = fixture(&profile);
    let workspace = std::fs::canonicalize(&fixture.workspace).unwrap();
    let secret = "SECRET-d41d8cd98f00";
    std::fs::create_dir_all(workspace.join("src")).unwrap();
    std::fs::create_dir_all(workspace.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(workspace.join("certs")).unwrap();
    std::fs::write(workspace.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(workspace.join(".env"), format!("TOKEN={secret}\n")).unwrap();
    std::fs::write(workspace.join("certs/server.pem"), secret).unwrap();
    let ws = |name: &str| workspace.join(name);
    let calls = json!([
        // Ordinary use: every one allowed.
        {"name": "list_allowed_directories", "arguments": {}},
        {"name": "read_text_file", "arguments": {"path": ws("src/main.rs")}},
        {"name": "read_multiple_files", "arguments": {"paths": [ws("src/main.rs")]}},
        {"name": "list_directory", "arguments": {"path": workspace}},
        {"name": "directory_tree", "arguments": {"path": ws("src")}},
        {"name": "search_files", "arguments": {"path": workspace, "pattern": "main"}},
        {"name": "get_file_info", "arguments": {"path": ws("src/main.rs")}},
        {"name": "create_directory", "arguments": {"path": ws("docs")}},
        {"name": "write_file", "arguments": {"path": ws("docs/setup.md"),
            "content": "Copy .env.example to .env.\n"}},
        {"name": "edit_file", "arguments": {"path": ws("src/main.rs"),
            "edits": [{"oldText": "fn main() {}", "newText": "fn main() { run() }"}]}},
        {"name": "move_file", "arguments": {"source": ws("docs/setup.md"),
            "destination": ws("docs/SETUP.md")}},
        // Secrets and hooks: every one denied.
        {"name": "read_text_file", "arguments": {"path": ws(".env")}},
        {"name": "read_file", "arguments": {"path": ws(".env")}},
        {"name": "read_multiple_files", "arguments": {"paths": [ws("src/main.rs"), ws(".env")]}},
        {"name": "read_media_file", "arguments": {"path": ws("certs/server.pem")}},
        {"name": "write_file", "arguments": {"path": ws(".env"), "content": "TOKEN=attacker\n"}},
        {"name": "edit_file", "arguments": {"path": ws(".env"),
            "edits": [{"oldText": "TOKEN", "newText": "X"}]}},
        {"name": "move_file", "arguments": {"source": ws(".env"), "destination": ws("env.txt")}},
        {"name": "write_file", "arguments": {"path": ws(".git/hooks/pre-commit"),
            "content": "#!/bin/sh\n"}},
    ]);
    let lines = sdk_client(&modules, &fixture, &calls);
    // The profile permits exactly the tools this version of the server
    // lists: none is left unusable, and no unknown one is let through.
    let listed: Vec<&str> = lines[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut permitted: Vec<&str> = [
        "read_file",
        "read_text_file",
        "read_media_file",
        "read_multiple_files",
        "list_directory",
        "list_directory_with_sizes",
        "directory_tree",
        "search_files",
        "get_file_info",
        "list_allowed_directories",
        "write_file",
        "edit_file",
        "create_directory",
        "move_file",
    ]
    .to_vec();
    permitted.sort_unstable();
    assert_eq!(listed, permitted);
    for name in &permitted {
        assert!(profile.contains(&format!("\"{name}\"")), "{name}");
    }
    let results = &lines[1..];
    assert_eq!(results.len(), 19);
    for (index, line) in results.iter().enumerate() {
        let denied = line["result"]["isError"] == true
            && text_of(line).contains("denied by the agent kernel");
        assert_eq!(denied, index >= 11, "call {index}: {line}");
        assert!(!line.to_string().contains(secret), "call {index}: {line}");
    }
    // The allowed calls had their effect.
    assert!(text_of(&results[1]).contains("fn main"));
    assert_eq!(
        std::fs::read_to_string(ws("src/main.rs")).unwrap(),
        "fn main() { run() }\n"
    );
    assert!(ws("docs/SETUP.md").exists() && !ws("docs/setup.md").exists());
    // The denied ones did not.
    assert_eq!(
        std::fs::read_to_string(ws(".env")).unwrap(),
        format!("TOKEN={secret}\n")
    );
    assert!(!ws("env.txt").exists());
    assert!(!ws(".git/hooks/pre-commit").exists());
    let report = audit_verify(&fixture.evidence);
    assert!(report.contains("11 allowed, 8 denied"), "{report}");
}
