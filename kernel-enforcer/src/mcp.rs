//! The MCP gateway: `kernel-enforcer mcp-proxy -- SERVER_COMMAND ARGS...`.
//!
//! It speaks MCP's stdio transport (JSON-RPC 2.0, one message per line)
//! to the agent on its own standard input and output, and to the real MCP
//! server, which it starts, on the server's. Every `tools/call` request
//! becomes an `Action::ToolCall { name, input }` (`params.name`,
//! `params.arguments`), is decided by the enforcer and recorded before it
//! is forwarded; a call that is not allowed never reaches the server and
//! is answered with a well-formed MCP tool result with `isError: true`
//! and the reason. `tools/list` is passed through unfiltered (a tool
//! listed can still be denied when called: what is listed grants nothing).
//!
//! What is forwarded is what was decided. Each line is read once, strictly
//! ([`kernel_core::json::parse_strict`]: UTF-8 only, no duplicate keys or
//! keys equal but for letter case at any depth, no U+0000), checked, and
//! the message forwarded is serialised again from that one reading, never
//! the bytes received; a `tools/call` is rebuilt from the name and
//! arguments decided. Members JSON-RPC does not define are refused, so are
//! batches (MCP has none), ids that are neither strings nor integers, and
//! method names that are not plain ASCII or that differ from `tools/call`
//! only in letter case or spacing.
//!
//! Arguments are checked against the `inputSchema` the server listed for
//! the tool ([`crate::input_schema`]) before the enforcer is asked: a
//! call whose arguments do not conform, or of a tool the server has not
//! listed, is denied without reaching the server.
//!
//! Malformed input never stops the gateway: a line from the agent that is
//! not strict JSON is answered with a JSON-RPC parse error (`-32700`, id
//! null); a JSON value that is not a JSON-RPC 2.0 message is answered with
//! `-32600` (with its id when the id is usable, else null; dropped when it
//! is a notification); a `tools/call` whose parameters are not a name and
//! an object is answered with `-32602`. A response from the agent to a
//! request the server never made is dropped. A line from the server that
//! is not a strict JSON-RPC message, or a response to a request the agent
//! never made (or that is already answered), is dropped and reported on
//! standard error. Lines over [`MAX_MESSAGE_BYTES`] are treated as
//! malformed.
//!
//! Fail closed: if the enforcer cannot be reached or its answer does not
//! verify, the call is denied. If the server exits, every request it had
//! not answered is answered with a JSON-RPC error, and so is every later
//! request.

use kernel_core::json::{fold_key, parse_strict};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

/// Largest message accepted from either side, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// JSON-RPC: parse error.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: invalid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: invalid params.
pub const INVALID_PARAMS: i64 = -32602;
/// Server-defined: the MCP server is gone.
pub const SERVER_GONE: i64 = -32000;

/// Decides one tool call: `Ok` with a note to forward it, `Err` with the
/// reason to refuse it.
pub type Decide<'a> = dyn Fn(&str, &Value) -> Result<String, String> + Sync + 'a;

/// What the gateway does with one line from the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    /// Send this message (one line, serialised from what was read and
    /// decided) to the server.
    Forward {
        /// The message.
        message: String,
        /// Its id, when it is a request now waiting for the server's
        /// answer.
        id: Option<Value>,
    },
    /// Answer the agent directly with this message.
    Answer(Value),
    /// Drop the line.
    Drop,
}

/// What the gateway does with one line from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum FromServer {
    /// Send this message (one line, serialised from what was read) to the
    /// agent.
    Forward(String),
    /// Drop the line, for this reason.
    Drop(String),
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A tool result that tells the model the call was refused.
pub fn denied_result(id: Value, reason: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": format!("denied by the agent kernel: {reason}")}],
            "isError": true,
        }
    })
}

/// The members a JSON-RPC 2.0 message may have.
const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
/// The members of `tools/call` parameters.
const CALL_PARAMS: [&str; 3] = ["name", "arguments", "_meta"];

/// One JSON-RPC message, read and checked.
#[derive(Debug)]
enum Message {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    Response {
        id: Value,
        /// `("result", value)` or `("error", value)`.
        outcome: (&'static str, Value),
    },
}

impl Message {
    fn to_line(&self) -> String {
        let mut out = Map::new();
        out.insert("jsonrpc".into(), json!("2.0"));
        match self {
            Self::Request { id, method, params } => {
                out.insert("id".into(), id.clone());
                out.insert("method".into(), json!(method));
                if let Some(params) = params {
                    out.insert("params".into(), params.clone());
                }
            }
            Self::Notification { method, params } => {
                out.insert("method".into(), json!(method));
                if let Some(params) = params {
                    out.insert("params".into(), params.clone());
                }
            }
            Self::Response { id, outcome } => {
                out.insert("id".into(), id.clone());
                out.insert(outcome.0.into(), outcome.1.clone());
            }
        }
        Value::Object(out).to_string()
    }
}

/// Why a line is not a message: the JSON-RPC error code, the id to answer
/// with (if one could be read), and the reason.
type Refusal = (i64, Option<Value>, String);

/// An id JSON-RPC and both sides read alike: a string, or an integer.
fn usable_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// A method name: visible ASCII, and not `tools/call` in disguise.
fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("method {method:?} is not a plain ASCII name"));
    }
    if method != "tools/call" && fold_key(method) == "tools/call" {
        return Err(format!("method `{method}` is not `tools/call`"));
    }
    Ok(())
}

/// Reads one line as a JSON-RPC 2.0 message: strictly, and refusing
/// anything two readers could take differently.
fn read_message(line: &[u8]) -> Result<Message, Refusal> {
    if line.len() > MAX_MESSAGE_BYTES {
        return Err((PARSE_ERROR, None, "message too large".into()));
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| (PARSE_ERROR, None, "message is not UTF-8".to_owned()))?;
    let value = parse_strict(text).map_err(|e| (PARSE_ERROR, None, format!("parse error: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err((
            INVALID_REQUEST,
            None,
            "not a JSON-RPC 2.0 message (batches are not supported)".into(),
        ));
    };
    let id = object.remove("id");
    let answer_id = id.clone().filter(usable_id);
    let invalid = |why: String| (INVALID_REQUEST, answer_id.clone(), why);
    if let Some(stray) = object.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "`{stray}` is not a member of a JSON-RPC 2.0 message"
        )));
    }
    if object.remove("jsonrpc") != Some(json!("2.0")) {
        return Err(invalid("not a JSON-RPC 2.0 message".into()));
    }
    if let Some(id) = &id
        && !usable_id(id)
    {
        return Err(invalid("the id must be a string or an integer".into()));
    }
    let method = object.remove("method");
    let params = object.remove("params");
    let result = object.remove("result");
    let outcome = object.remove("error");
    match (method, id, result, outcome) {
        (Some(Value::String(method)), id, None, None) => {
            check_method(&method).map_err(invalid)?;
            if params.as_ref().is_some_and(|p| !p.is_object()) {
                return Err((
                    INVALID_PARAMS,
                    answer_id.clone(),
                    "params must be an object".into(),
                ));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        (None, Some(id), Some(result), None) if params.is_none() => Ok(Message::Response {
            id,
            outcome: ("result", result),
        }),
        (None, Some(id), None, Some(outcome)) if params.is_none() => Ok(Message::Response {
            id,
            outcome: ("error", outcome),
        }),
        _ => Err(invalid("neither a request nor a response".into())),
    }
}

fn key(id: &Value) -> String {
    id.to_string()
}

/// What the gateway keeps between messages.
#[derive(Debug, Default)]
struct State {
    /// The agent's requests forwarded and not yet answered: their id and
    /// method, by id.
    agent_pending: HashMap<String, (Value, String)>,
    /// The server's requests forwarded to the agent and not yet answered.
    server_pending: HashMap<String, Value>,
    /// The tools the server listed, with their `inputSchema` (`None` when
    /// the listing gave none).
    tools: HashMap<String, Option<Value>>,
    server_gone: bool,
}

/// The gateway's state: requests in flight each way, and the tools the
/// server listed. Shared by the two directions of [`relay`].
#[derive(Debug, Default)]
pub struct Gateway {
    state: Mutex<State>,
}

impl Gateway {
    /// A gateway that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides what to do with one line from the agent. Total: every line
    /// gets an outcome; a `tools/call` is forwarded only if its arguments
    /// fit the tool's listed schema and `decide` allowed it, and then as
    /// rebuilt from the name and arguments decided. A request forwarded is
    /// registered as waiting for the server's answer.
    pub fn from_agent(&self, line: &[u8], decide: &Decide<'_>) -> FromAgent {
        let message = match read_message(line) {
            Ok(message) => message,
            Err((code, id, why)) => {
                return match (code, id) {
                    (PARSE_ERROR, _) => FromAgent::Answer(error(Value::Null, code, &why)),
                    (_, Some(id)) => FromAgent::Answer(error(id, code, &why)),
                    // No id to answer with: a notification, or a value
                    // whose id cannot be used.
                    (_, None) if looks_like_notification(line) => FromAgent::Drop,
                    (_, None) => FromAgent::Answer(error(Value::Null, code, &why)),
                };
            }
        };
        match message {
            Message::Response { id, outcome } => {
                // Only an answer to a request the server made.
                let mut state = self.state.lock();
                if state.server_pending.remove(&key(&id)).is_none() {
                    return FromAgent::Drop;
                }
                FromAgent::Forward {
                    message: Message::Response { id, outcome }.to_line(),
                    id: None,
                }
            }
            Message::Notification { method, params } => {
                if method == "tools/call" || self.state.lock().server_gone {
                    // A tools/call notification would call a tool with no
                    // answer and no way to report a denial.
                    return FromAgent::Drop;
                }
                FromAgent::Forward {
                    message: Message::Notification { method, params }.to_line(),
                    id: None,
                }
            }
            Message::Request { id, method, params } => {
                {
                    let state = self.state.lock();
                    if state.server_gone {
                        // Nothing is decided (or recorded) for a server
                        // that cannot run it.
                        return FromAgent::Answer(error(id, SERVER_GONE, "the MCP server exited"));
                    }
                    if state.agent_pending.contains_key(&key(&id)) {
                        return FromAgent::Answer(error(
                            id,
                            INVALID_REQUEST,
                            "a request with this id is still waiting for its answer",
                        ));
                    }
                }
                let params = if method == "tools/call" {
                    match self.decide_call(&id, params, decide) {
                        Ok(params) => Some(params),
                        Err(answer) => return FromAgent::Answer(answer),
                    }
                } else {
                    params
                };
                let mut state = self.state.lock();
                if state.server_gone {
                    return FromAgent::Answer(error(id, SERVER_GONE, "the MCP server exited"));
                }
                // Registered before forwarding, so the answer cannot
                // overtake the registration.
                state
                    .agent_pending
                    .insert(key(&id), (id.clone(), method.clone()));
                let message = Message::Request {
                    id: id.clone(),
                    method,
                    params,
                }
                .to_line();
                FromAgent::Forward {
                    message,
                    id: Some(id),
                }
            }
        }
    }

    /// Checks and decides a `tools/call`: the parameters to forward, or
    /// the answer to give instead.
    fn decide_call(
        &self,
        id: &Value,
        params: Option<Value>,
        decide: &Decide<'_>,
    ) -> Result<Value, Value> {
        let invalid = |why: &str| error(id.clone(), INVALID_PARAMS, why);
        let Some(Value::Object(mut params)) = params else {
            return Err(invalid(
                "tools/call needs a string `name` and an object `arguments`",
            ));
        };
        if let Some(stray) = params.keys().find(|k| !CALL_PARAMS.contains(&k.as_str())) {
            return Err(invalid(&format!("`{stray}` is not a tools/call parameter")));
        }
        let name = match params.remove("name") {
            Some(Value::String(name)) => name,
            _ => {
                return Err(invalid(
                    "tools/call needs a string `name` and an object `arguments`",
                ));
            }
        };
        let arguments = match params.remove("arguments") {
            None => json!({}),
            Some(arguments @ Value::Object(_)) => arguments,
            Some(_) => {
                return Err(invalid(
                    "tools/call needs a string `name` and an object `arguments`",
                ));
            }
        };
        let schema = self.state.lock().tools.get(&name).cloned();
        let checked = match schema {
            None => Err(format!(
                "the server has not listed a tool `{name}` (tools/list first)"
            )),
            Some(None) => Err(format!(
                "the server listed `{name}` without an inputSchema to check its arguments against"
            )),
            Some(Some(schema)) => crate::input_schema::check(&schema, &arguments)
                .map_err(|why| format!("the arguments do not fit `{name}`'s inputSchema: {why}")),
        };
        if let Err(reason) = checked {
            return Err(denied_result(id.clone(), &reason));
        }
        match decide(&name, &arguments) {
            Ok(_) => {
                params.insert("name".into(), Value::String(name));
                params.insert("arguments".into(), arguments);
                Ok(Value::Object(params))
            }
            Err(reason) => Err(denied_result(id.clone(), &reason)),
        }
    }

    /// Decides what to do with one line from the server: a request or
    /// notification is passed on (a request registered as waiting for the
    /// agent's answer); a response only if it answers a request of the
    /// agent's that is still waiting. A `tools/list` answer records each
    /// tool's `inputSchema` before it is passed on.
    pub fn from_server(&self, line: &[u8]) -> FromServer {
        let message = match read_message(line) {
            Ok(message) => message,
            Err((_, _, why)) => return FromServer::Drop(why),
        };
        let mut state = self.state.lock();
        match &message {
            Message::Request { id, .. } => {
                state.server_pending.insert(key(id), id.clone());
            }
            Message::Notification { .. } => {}
            Message::Response { id, outcome } => {
                let Some((_, method)) = state.agent_pending.remove(&key(id)) else {
                    return FromServer::Drop(format!(
                        "a response with id {id}, which no request waiting for an answer has"
                    ));
                };
                if method == "tools/list" && outcome.0 == "result" {
                    let listed = outcome.1.get("tools").and_then(Value::as_array);
                    for tool in listed.into_iter().flatten() {
                        if let Some(name) = tool.get("name").and_then(Value::as_str) {
                            let schema = tool.get("inputSchema").filter(|s| s.is_object());
                            state.tools.insert(name.to_owned(), schema.cloned());
                        }
                    }
                }
            }
        }
        FromServer::Forward(message.to_line())
    }

    /// Marks the server gone; returns the ids of the agent's requests it
    /// never answered.
    fn server_exited(&self) -> Vec<Value> {
        let mut state = self.state.lock();
        state.server_gone = true;
        state.agent_pending.drain().map(|(_, (id, _))| id).collect()
    }

    /// Forgets a request that could not be forwarded; whether it was
    /// waiting.
    fn forget(&self, id: &Value) -> bool {
        self.state.lock().agent_pending.remove(&key(id)).is_some()
    }
}

/// Whether an unusable line had no `id` at all (a notification, which is
/// never answered).
fn looks_like_notification(line: &[u8]) -> bool {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| parse_strict(text).ok())
        .and_then(|value| value.as_object().map(|o| !o.contains_key("id")))
        .unwrap_or(false)
}

/// Writes one message line to a shared output.
fn send(out: &Mutex<Box<dyn Write + Send>>, message: &str) -> std::io::Result<()> {
    let mut out = out.lock();
    out.write_all(message.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Reads one line of at most `MAX_MESSAGE_BYTES` (plus one, so an
/// over-long line is detected), without its line feed; `None` at end of
/// input.
fn read_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let read = std::io::Read::take(
        &mut *reader,
        u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX) + 2,
    )
    .read_until(b'\n', &mut bytes)
    .ok()?;
    if read == 0 {
        return None;
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() > MAX_MESSAGE_BYTES {
        // Skip the rest of the over-long line.
        let mut rest = Vec::new();
        let _ = reader.read_until(b'\n', &mut rest);
    }
    Some(bytes)
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Relays between the agent (`agent_in`, `agent_out`) and the server
/// (`server_in`, `server_out`) until the agent closes its input. Returns
/// when the agent is done; the server's input is closed then.
pub fn relay(
    agent_in: impl BufRead,
    agent_out: Box<dyn Write + Send>,
    server_in: Box<dyn Write + Send>,
    server_out: impl BufRead + Send + 'static,
    decide: &Decide<'_>,
) {
    let gateway = Arc::new(Gateway::new());
    let agent_out = Arc::new(Mutex::new(agent_out));
    let server_in = Arc::new(Mutex::new(Some(server_in)));
    {
        let agent_out = Arc::clone(&agent_out);
        let gateway = Arc::clone(&gateway);
        let server_in = Arc::clone(&server_in);
        std::thread::spawn(move || {
            let mut server_out = server_out;
            while let Some(line) = read_line(&mut server_out) {
                if blank(&line) {
                    continue;
                }
                match gateway.from_server(&line) {
                    FromServer::Forward(message) => {
                        if send(&agent_out, &message).is_err() {
                            break;
                        }
                    }
                    FromServer::Drop(why) => eprintln!(
                        "kernel-enforcer mcp-proxy: dropped a message from the server: {why}"
                    ),
                }
            }
            // The server is gone: answer everything it still owed.
            let owed = gateway.server_exited();
            *server_in.lock() = None;
            for id in owed {
                let _ = send(
                    &agent_out,
                    &error(id, SERVER_GONE, "the MCP server exited").to_string(),
                );
            }
        });
    }
    let mut agent_in = agent_in;
    while let Some(line) = read_line(&mut agent_in) {
        if blank(&line) {
            continue;
        }
        match gateway.from_agent(&line, decide) {
            FromAgent::Forward { message, id } => {
                let mut server = server_in.lock();
                let written = match server.as_mut() {
                    Some(server) => server
                        .write_all(message.as_bytes())
                        .and_then(|()| server.write_all(b"\n"))
                        .and_then(|()| server.flush())
                        .is_ok(),
                    None => false,
                };
                drop(server);
                if !written
                    && let Some(id) = id
                    && gateway.forget(&id)
                {
                    let _ = send(
                        &agent_out,
                        &error(id, SERVER_GONE, "the MCP server exited").to_string(),
                    );
                }
            }
            FromAgent::Answer(message) => {
                let _ = send(&agent_out, &message.to_string());
            }
            FromAgent::Drop => {}
        }
    }
    *server_in.lock() = None;
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;

    fn only_echo(name: &str, _: &Value) -> Result<String, String> {
        if name == "echo" {
            Ok("allowed".into())
        } else {
            Err(format!("`{name}` is not allowed"))
        }
    }

    fn never(name: &str, _: &Value) -> Result<String, String> {
        panic!("asked to decide `{name}`")
    }

    /// A gateway whose server listed `echo` (any object) and `search`
    /// (a string `q`, nothing else).
    fn listed() -> Gateway {
        let gateway = Gateway::new();
        let list = br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#;
        assert!(matches!(
            gateway.from_agent(list, &never),
            FromAgent::Forward { .. }
        ));
        let tools = json!({"jsonrpc": "2.0", "id": "l", "result": {"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "search", "inputSchema": {"type": "object",
                "properties": {"q": {"type": "string"}}, "required": ["q"],
                "additionalProperties": false}},
            {"name": "danger", "inputSchema": {"type": "object"}},
            {"name": "bare"},
        ]}});
        assert!(matches!(
            gateway.from_server(tools.to_string().as_bytes()),
            FromServer::Forward(_)
        ));
        gateway
    }

    fn forwarded(outcome: FromAgent) -> Value {
        match outcome {
            FromAgent::Forward { message, .. } => {
                assert!(!message.contains('\n'));
                serde_json::from_str(&message).unwrap()
            }
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn answer(outcome: FromAgent) -> Value {
        match outcome {
            FromAgent::Answer(answer) => answer,
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn tool_calls_are_forwarded_only_when_allowed() {
        let gateway = listed();
        let allowed = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#;
        assert_eq!(
            forwarded(gateway.from_agent(allowed, &only_echo)),
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}})
        );
        let denied = br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"danger","arguments":{}}}"#;
        let answer = answer(gateway.from_agent(denied, &only_echo));
        assert_eq!(answer["id"], "a");
        assert_eq!(answer["result"]["isError"], true);
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("not allowed")
        );
    }

    /// The two messages outside testing found: each was decided on one
    /// reading and forwarded byte for byte for the server to read another.
    #[test]
    fn a_message_with_two_readings_is_refused_and_never_decided() {
        let gateway = listed();
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"danger","name":"echo","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","method":"tools/list","params":{"name":"danger","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","method":"tools/call","params":{"name":"danger","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"p":"a","p":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","Name":"danger","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":6,"Method":"tools/call","method":"tools/list","params":{"name":"danger"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"path":"a","PATH":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"n\u0061me":"danger","name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo\u0000danger"}}"#,
        ] {
            let answer = answer(gateway.from_agent(line.as_bytes(), &never));
            assert_eq!(answer["error"]["code"], PARSE_ERROR, "{line}: {answer}");
            assert_eq!(answer["id"], Value::Null, "{line}");
        }
    }

    #[test]
    fn what_is_forwarded_is_serialised_from_what_was_decided() {
        let gateway = listed();
        let seen = Mutex::new(Vec::new());
        let record = |name: &str, arguments: &Value| {
            seen.lock().push((name.to_owned(), arguments.clone()));
            Ok("allowed".into())
        };
        // Escapes, spacing, a carriage return, an unusual id: the server
        // gets one compact line with the name and arguments decided.
        let line = b" { \"params\" : {\"arguments\":{\"q\":\"\\u0041\\/b\"}, \"name\":\"se\\u0061rch\"}, \"method\":\"tools/call\", \"id\":\"x\\u0079\", \"jsonrpc\":\"2.0\" }\r";
        let message = forwarded(gateway.from_agent(line, &record));
        assert_eq!(
            seen.lock().as_slice(),
            [("search".to_owned(), json!({"q": "A/b"}))]
        );
        assert_eq!(
            message["params"],
            json!({"name": "search", "arguments": {"q": "A/b"}})
        );
        assert_eq!(message["id"], "xy");
        // No arguments: decided as `{}`, and forwarded as `{}`.
        let message = forwarded(gateway.from_agent(
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":1}}}"#,
            &record,
        ));
        assert_eq!(
            message["params"],
            json!({"name": "echo", "arguments": {}, "_meta": {"progressToken": 1}})
        );
    }

    #[test]
    fn malformed_or_ambiguous_messages_are_answered_or_dropped_never_forwarded() {
        let gateway = listed();
        let cases: [(&[u8], Option<i64>); 17] = [
            (b"not json", Some(PARSE_ERROR)),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"", Some(PARSE_ERROR)),
            (b"\"tools/call\"}", Some(PARSE_ERROR)),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"a\":\"\xff\"}}", Some(PARSE_ERROR)),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"a":"\ud800"}}"#, Some(PARSE_ERROR)),
            (b"[1,2]", Some(INVALID_REQUEST)),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]"#, Some(INVALID_REQUEST)),
            (br#"{"id":1,"method":"tools/list"}"#, Some(INVALID_REQUEST)),
            (br#"{"jsonrpc":"1.0","method":"x"}"#, None),
            (br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":"x"}}"#, Some(INVALID_PARAMS)),
            (br#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#, Some(INVALID_PARAMS)),
            (br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","tool":"danger"}}"#, Some(INVALID_PARAMS)),
            (br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#, None),
            (br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#, Some(INVALID_REQUEST)),
            (br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#, Some(INVALID_REQUEST)),
            (br#"{"jsonrpc":"2.0","id":4,"method":"Tools/Call","params":{"name":"danger"}}"#, Some(INVALID_REQUEST)),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/list","extra":{"method":"tools/call"}}"#, Some(INVALID_REQUEST)),
        ];
        for (line, expected) in cases {
            let text = String::from_utf8_lossy(line);
            match (gateway.from_agent(line, &never), expected) {
                (FromAgent::Answer(answer), Some(code)) => {
                    assert_eq!(answer["error"]["code"], code, "{text}: {answer}");
                }
                (FromAgent::Drop, None) => {}
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
        for method in [" tools/call", "tools/call ", "tools/\tcall", "TOOLS/CALL"] {
            let line =
                json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "danger"}});
            let answer = answer(gateway.from_agent(line.to_string().as_bytes(), &never));
            assert_eq!(answer["error"]["code"], INVALID_REQUEST, "{method:?}");
        }
    }

    #[test]
    fn arguments_are_checked_against_the_listed_schema_before_deciding() {
        let gateway = listed();
        for (params, why) in [
            (json!({"name": "search", "arguments": {"q": ["a"]}}), "/q"),
            (
                json!({"name": "search", "arguments": {"q": "a", "meta": {"q": "b"}}}),
                "/meta",
            ),
            (json!({"name": "search", "arguments": {}}), "required `q`"),
            (
                json!({"name": "unlisted", "arguments": {}}),
                "has not listed",
            ),
            (
                json!({"name": "bare", "arguments": {}}),
                "without an inputSchema",
            ),
        ] {
            let line = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
            let answer = answer(gateway.from_agent(line.to_string().as_bytes(), &never));
            assert_eq!(answer["result"]["isError"], true, "{answer}");
            let text = answer["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.contains(why), "{text}");
        }
    }

    #[test]
    fn other_messages_pass_through_serialised_again() {
        let gateway = Gateway::new();
        assert_eq!(
            forwarded(
                gateway.from_agent(br#"{"id":1,"jsonrpc":"2.0","method":"tools/list"}"#, &never)
            ),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})
        );
        assert_eq!(
            forwarded(gateway.from_agent(
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &never
            )),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"})
        );
        // A request of the server's, answered by the agent.
        assert!(matches!(
            gateway.from_server(
                br#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#
            ),
            FromServer::Forward(_)
        ));
        assert_eq!(
            forwarded(gateway.from_agent(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#, &never)),
            json!({"jsonrpc":"2.0","id":"s1","result":{}})
        );
        // An answer to nothing the server asked, or asked and answered.
        for line in [
            br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#.as_slice(),
            br#"{"jsonrpc":"2.0","id":9,"result":{}}"#,
        ] {
            assert_eq!(gateway.from_agent(line, &never), FromAgent::Drop);
        }
    }

    #[test]
    fn the_server_answers_only_what_was_asked_once() {
        let gateway = Gateway::new();
        assert!(matches!(
            gateway.from_agent(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &never),
            FromAgent::Forward { .. }
        ));
        // A second request with an id still waiting is refused.
        let again =
            answer(gateway.from_agent(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &never));
        assert_eq!(again["error"]["code"], INVALID_REQUEST);
        for (line, forwarded) in [
            (br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"danger","inputSchema":{}}]}}"#.as_slice(), false),
            (br#"{"jsonrpc":"2.0","id":"1","result":{}}"#, false),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{}}"#, false),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}}"#, true),
            (br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"danger","inputSchema":{}}]}}"#, false),
            (b"\xff", false),
        ] {
            assert_eq!(
                matches!(gateway.from_server(line), FromServer::Forward(_)),
                forwarded,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // Only the answer that was asked for listed a tool.
        let call = |name: &str| {
            let line = json!({"jsonrpc": "2.0", "id": name, "method": "tools/call", "params": {"name": name}});
            gateway.from_agent(line.to_string().as_bytes(), &only_echo)
        };
        assert!(matches!(call("echo"), FromAgent::Forward { .. }));
        let text = answer(call("danger"))["result"]["content"][0]["text"].clone();
        assert!(text.as_str().unwrap().contains("has not listed"), "{text}");
    }

    #[test]
    fn a_server_that_exits_leaves_no_request_unanswered() {
        // The server answers the first request, then exits.
        let server_out = std::io::Cursor::new(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\nnot json\n".to_vec(),
        );
        let agent_in = std::io::Cursor::new(
            concat!(
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n",
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n",
            )
            .as_bytes()
            .to_vec(),
        );
        let output = Arc::new(Mutex::new(Vec::new()));
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        relay(
            agent_in,
            Box::new(Shared(Arc::clone(&output))),
            Box::new(std::io::sink()),
            server_out,
            &only_echo,
        );
        // Give the server side's thread time to drain what it owes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = String::from_utf8(output.lock().clone()).unwrap();
            let answered: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let ids: Vec<&Value> = answered.iter().map(|m| &m["id"]).collect();
            if ids.contains(&&json!(1)) && ids.contains(&&json!(2)) {
                let second = answered.iter().find(|m| m["id"] == 2).unwrap();
                assert_eq!(second["error"]["code"], SERVER_GONE);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
