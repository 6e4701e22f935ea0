//! The MCP gateway: `kernel-enforcer mcp-proxy -- SERVER_COMMAND ARGS...`.
//!
//! It speaks MCP's stdio transport (JSON-RPC 2.0, one message per line)
//! to the agent on its own standard input and output, and to the real MCP
//! server, which it starts, on the server's. Every `tools/call` request
//! becomes an `Action::ToolCall { name, input }` (`params.name`,
//! `params.arguments`), is decided by the enforcer and recorded before it
//! is forwarded; a call that is not allowed never reaches the server and
//! is answered with a well-formed MCP tool result with `isError: true`
//! and the reason. Every other message passes through unchanged, so
//! requests and responses stay matched by their ids even when interleaved;
//! `tools/list` is passed through unfiltered (a tool listed can still be
//! denied when called: what is listed grants nothing).
//!
//! Malformed input never stops the gateway: a line from the agent that is
//! not JSON is answered with a JSON-RPC parse error (`-32700`, id null);
//! a JSON value that is not a JSON-RPC 2.0 message (including batches,
//! which MCP no longer has) is answered with `-32600` when it has an id
//! and dropped otherwise; a `tools/call` whose parameters are not a name
//! and an object is answered with `-32602`. A line from the server that
//! is not a JSON-RPC message is dropped (and reported on standard error).
//! Lines over [`MAX_MESSAGE_BYTES`] are treated as malformed.
//!
//! Fail closed: if the enforcer cannot be reached or its answer does not
//! verify, the call is denied. If the server exits, every request it had
//! not answered is answered with a JSON-RPC error, and so is every later
//! request.

use parking_lot::Mutex;
use serde_json::{Value, json};
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
    /// Forward the line to the server (a request with this id, if any, is
    /// now waiting for the server's answer).
    Forward {
        /// The id of the request, if the message is a request.
        id: Option<Value>,
    },
    /// Answer the agent directly with this message.
    Answer(Value),
    /// Drop the line.
    Drop,
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

/// Decides what to do with one line from the agent. Total: every line
/// gets an outcome; a `tools/call` is forwarded only if `decide` allowed
/// it.
pub fn from_agent(line: &str, decide: &Decide<'_>) -> FromAgent {
    if line.len() > MAX_MESSAGE_BYTES {
        return FromAgent::Answer(error(Value::Null, PARSE_ERROR, "message too large"));
    }
    let message: Value = match serde_json::from_str(line) {
        Ok(message) => message,
        Err(_) => return FromAgent::Answer(error(Value::Null, PARSE_ERROR, "parse error")),
    };
    let Some(object) = message.as_object() else {
        return FromAgent::Answer(error(
            Value::Null,
            INVALID_REQUEST,
            "not a JSON-RPC 2.0 message (batches are not supported)",
        ));
    };
    let id = object.get("id").cloned();
    let valid_id = matches!(&id, None | Some(Value::String(_) | Value::Number(_)));
    if object.get("jsonrpc") != Some(&json!("2.0")) || !valid_id {
        return match id {
            Some(id) if valid_id => {
                FromAgent::Answer(error(id, INVALID_REQUEST, "not a JSON-RPC 2.0 message"))
            }
            _ => FromAgent::Drop,
        };
    }
    let method = object.get("method").and_then(Value::as_str);
    let is_request = method.is_some() && id.is_some();
    if method.is_none() {
        // A response to a request of the server's: its id is the server's.
        return if object.contains_key("result") || object.contains_key("error") {
            FromAgent::Forward { id: None }
        } else {
            match id {
                Some(id) => {
                    FromAgent::Answer(error(id, INVALID_REQUEST, "neither request nor response"))
                }
                None => FromAgent::Drop,
            }
        };
    }
    if method != Some("tools/call") {
        return FromAgent::Forward {
            id: if is_request { id } else { None },
        };
    }
    let Some(id) = id else {
        // A tools/call notification would call a tool with no answer and
        // no way to report a denial: never forwarded.
        return FromAgent::Drop;
    };
    let params = object.get("params");
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
    let arguments = params
        .and_then(|p| p.get("arguments"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let Some(name) = name.filter(|_| arguments.is_object()) else {
        return FromAgent::Answer(error(
            id,
            INVALID_PARAMS,
            "tools/call needs a string `name` and an object `arguments`",
        ));
    };
    match decide(name, &arguments) {
        Ok(_) => FromAgent::Forward { id: Some(id) },
        Err(reason) => FromAgent::Answer(denied_result(id, &reason)),
    }
}

/// Whether a line from the server is a JSON-RPC message to pass on, and
/// the id it answers (for a response).
pub fn from_server(line: &str) -> Option<Option<Value>> {
    if line.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let message: Value = serde_json::from_str(line).ok()?;
    let object = message.as_object()?;
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return None;
    }
    if object.contains_key("method") {
        return Some(None);
    }
    Some(object.get("id").cloned())
}

/// Requests forwarded to the server and not yet answered, by id.
#[derive(Debug, Default)]
struct Pending {
    ids: HashMap<String, Value>,
    server_gone: bool,
}

fn key(id: &Value) -> String {
    id.to_string()
}

/// Writes one message line to a shared output.
fn send(out: &Mutex<Box<dyn Write + Send>>, message: &str) -> std::io::Result<()> {
    let mut out = out.lock();
    out.write_all(message.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Reads one line of at most `MAX_MESSAGE_BYTES` (plus one, so an
/// over-long line is detected); `None` at end of input.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
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
    if bytes.last() != Some(&b'\n') && bytes.len() > MAX_MESSAGE_BYTES {
        // Skip the rest of the over-long line.
        let mut rest = Vec::new();
        let _ = reader.read_until(b'\n', &mut rest);
    }
    Some(
        String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
    )
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
    let agent_out = Arc::new(Mutex::new(agent_out));
    let pending = Arc::new(Mutex::new(Pending::default()));
    let server_in = Arc::new(Mutex::new(Some(server_in)));
    {
        let agent_out = Arc::clone(&agent_out);
        let pending = Arc::clone(&pending);
        let server_in = Arc::clone(&server_in);
        std::thread::spawn(move || {
            let mut server_out = server_out;
            while let Some(line) = read_line(&mut server_out) {
                match from_server(&line) {
                    Some(answered) => {
                        if let Some(id) = answered {
                            pending.lock().ids.remove(&key(&id));
                        }
                        if send(&agent_out, &line).is_err() {
                            break;
                        }
                    }
                    None if line.trim().is_empty() => {}
                    None => eprintln!(
                        "kernel-enforcer mcp-proxy: dropped a malformed message from the server"
                    ),
                }
            }
            // The server is gone: answer everything it still owed.
            let owed: Vec<Value> = {
                let mut pending = pending.lock();
                pending.server_gone = true;
                pending.ids.drain().map(|(_, id)| id).collect()
            };
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
        if line.trim().is_empty() {
            continue;
        }
        match from_agent(&line, decide) {
            FromAgent::Forward { id } => {
                // Registered before forwarding, so the answer cannot
                // overtake the registration.
                let mut guard = pending.lock();
                if guard.server_gone {
                    drop(guard);
                    if let Some(id) = id {
                        let _ = send(
                            &agent_out,
                            &error(id, SERVER_GONE, "the MCP server exited").to_string(),
                        );
                    }
                    continue;
                }
                if let Some(id) = &id {
                    guard.ids.insert(key(id), id.clone());
                }
                drop(guard);
                let mut server = server_in.lock();
                let written = match server.as_mut() {
                    Some(server) => server
                        .write_all(line.as_bytes())
                        .and_then(|()| server.write_all(b"\n"))
                        .and_then(|()| server.flush())
                        .is_ok(),
                    None => false,
                };
                drop(server);
                if !written && let Some(id) = id {
                    let owed = pending.lock().ids.remove(&key(&id)).is_some();
                    if owed {
                        let _ = send(
                            &agent_out,
                            &error(id, SERVER_GONE, "the MCP server exited").to_string(),
                        );
                    }
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

    #[test]
    fn tool_calls_are_forwarded_only_when_allowed() {
        let allowed = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#;
        assert_eq!(
            from_agent(allowed, &only_echo),
            FromAgent::Forward { id: Some(json!(7)) }
        );
        let denied = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"write_file","arguments":{}}}"#;
        let FromAgent::Answer(answer) = from_agent(denied, &only_echo) else {
            panic!("forwarded a denied call");
        };
        assert_eq!(answer["id"], "a");
        assert_eq!(answer["result"]["isError"], true);
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("not allowed")
        );
    }

    #[test]
    fn malformed_messages_are_answered_or_dropped_never_forwarded_as_calls() {
        let cases = [
            ("not json", Some(PARSE_ERROR)),
            ("[1,2]", Some(INVALID_REQUEST)),
            (r#"{"id":1,"method":"tools/list"}"#, Some(INVALID_REQUEST)),
            (r#"{"jsonrpc":"1.0","method":"x"}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":"x"}}"#,
                Some(INVALID_PARAMS),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
                Some(INVALID_PARAMS),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
                None,
            ),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#, None),
        ];
        for (line, expected) in cases {
            match (from_agent(line, &only_echo), expected) {
                (FromAgent::Answer(answer), Some(code)) => {
                    assert_eq!(answer["error"]["code"], code, "{line}");
                }
                (FromAgent::Drop, None) => {}
                (other, _) => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_messages_pass_through() {
        assert_eq!(
            from_agent(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                &only_echo
            ),
            FromAgent::Forward { id: Some(json!(1)) }
        );
        assert_eq!(
            from_agent(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &only_echo
            ),
            FromAgent::Forward { id: None }
        );
        assert_eq!(
            from_agent(r#"{"jsonrpc":"2.0","id":9,"result":{}}"#, &only_echo),
            FromAgent::Forward { id: None }
        );
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
