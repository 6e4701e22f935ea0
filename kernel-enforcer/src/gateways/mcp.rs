//! The MCP gateway: `kernel-enforcer mcp-proxy -- SERVER_COMMAND ARGS...`.
//!
//! It speaks MCP's stdio transport (JSON-RPC 2.0, one message per line)
//! to the agent on its own standard input and output, and to the real MCP
//! server, which it starts, on the server's. Every request that can have
//! an effect is decided by the enforcer and recorded before it is
//! forwarded, in both directions:
//!
//! - a `tools/call` becomes an `Action::ToolCall { name, input }`
//!   (`params.name`, `params.arguments`); one that is not allowed is
//!   answered with a well-formed MCP tool result with `isError: true` and
//!   the reason;
//! - a `resources/read` of a `file:` URI becomes an `Action::FileRead` of
//!   its path (so the kernel floor and every file policy apply, as to a
//!   coding agent's `Read`), and is forwarded with the URI rebuilt from
//!   the path decided; of any other URI, an `Action::McpRequest`;
//! - every other request of the agent's, known or not (`prompts/get`,
//!   `resources/subscribe`, `completion/complete`, `logging/setLevel`,
//!   ...), becomes an `Action::McpRequest` from [`McpPeer::Agent`] with the
//!   method and the parameters; every request of the server's
//!   (`sampling/createMessage`, `elicitation/create`, `roots/list`, ...)
//!   one from [`McpPeer::Server`]. One that is not allowed is answered,
//!   to whichever side asked, with a JSON-RPC error ([`DENIED`]) and the
//!   reason, and never reaches the other side.
//!
//! Only a fixed list of protocol housekeeping passes without a decision:
//! [`AGENT_HOUSEKEEPING`] and [`SERVER_HOUSEKEEPING`] requests, and
//! notifications (methods under `notifications/`). A notification with any
//! other method is dropped: it could ask for an effect with no answer to
//! carry a denial. `tools/list` is passed through unfiltered (a tool listed
//! can still be denied when called: what is listed grants nothing).
//!
//! What is forwarded is what was decided. Each line is read once, strictly
//! ([`kernel_core::json::parse_strict`]: UTF-8 only, no duplicate keys or
//! keys equal but for letter case at any depth, no U+0000), checked, and
//! the message forwarded is serialised again from that one reading, never
//! the bytes received; a `tools/call` is rebuilt from the name and
//! arguments decided, a `resources/read` from the URI decided. Members
//! JSON-RPC does not define are refused, so are batches (MCP has none),
//! ids that are neither strings nor integers, and method names that are
//! not plain ASCII or that differ from a method the gateway treats apart
//! only in letter case.
//!
//! Arguments are checked against the `inputSchema` the server listed for
//! the tool ([`crate::gateways::input_schema`]) before the enforcer is asked: a
//! call whose arguments do not conform, or of a tool the server has not
//! listed, is denied without reaching the server.
//!
//! Malformed input never stops the gateway: a line from the agent that is
//! not strict JSON is answered with a JSON-RPC parse error (`-32700`, id
//! null); a JSON value that is not a JSON-RPC 2.0 message is answered with
//! `-32600` (with its id when the id is usable, else null; dropped when it
//! is a notification); a `tools/call` whose parameters are not a name and
//! an object, or a `resources/read` whose parameters are not one URI that
//! every reader takes alike, is answered with `-32602`. A response from
//! the agent to a request the server never made is dropped. A line from
//! the server that is not a strict JSON-RPC message, or a response to a
//! request the agent never made (or that is already answered), is dropped
//! and reported on standard error. Lines over [`MAX_MESSAGE_BYTES`] are
//! treated as malformed.
//!
//! Fail closed: if the enforcer cannot be reached or its answer does not
//! verify, the request is denied. If the server exits, every request it
//! had not answered is answered with a JSON-RPC error, and so is every
//! later request.

use kernel_core::json::{fold_key, parse_strict};
use kernel_core::{Action, McpPeer};
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
/// Server-defined: the agent kernel denied the request (the message says
/// why). Distinct from the codes MCP SDKs use for their own errors
/// (`-32000`, `-32001`, `-32002`).
pub const DENIED: i64 = -32003;

/// Requests of the agent's that pass without a decision: the protocol's
/// housekeeping, which asks the server for no effect on the world.
/// `initialize` exchanges versions, capabilities and names; `ping` checks
/// that the other side is there; the four listings return what the server
/// offers, and what is listed grants nothing (each use of it is decided).
/// Only with the parameters the protocol gives them (a listing's `cursor`,
/// `_meta`, ...): with any other, they are decided too, as is every other
/// request of the agent's.
pub const AGENT_HOUSEKEEPING: [&str; 6] = [
    "initialize",
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
];

/// Requests of the server's that pass without a decision: `ping` only.
/// Every other request of the server's (`sampling/createMessage` has the
/// agent's model generate, `elicitation/create` asks its user,
/// `roots/list` discloses its roots) is decided.
pub const SERVER_HOUSEKEEPING: [&str; 1] = ["ping"];

/// The parameters housekeeping may have, by method (the protocol's own,
/// and `_meta`). A housekeeping request with any other parameter is not
/// housekeeping: it is decided like every other request.
const HOUSEKEEPING_PARAMS: [(&str, &[&str]); 6] = [
    (
        "initialize",
        &["protocolVersion", "capabilities", "clientInfo", "_meta"],
    ),
    ("ping", &["_meta"]),
    ("tools/list", &["cursor", "_meta"]),
    ("resources/list", &["cursor", "_meta"]),
    ("resources/templates/list", &["cursor", "_meta"]),
    ("prompts/list", &["cursor", "_meta"]),
];

/// Whether a request of `method` with `params` from one side is
/// housekeeping there (`listed`): a listed method with only the
/// parameters the protocol gives it.
fn housekeeping(listed: &[&str], method: &str, params: Option<&Value>) -> bool {
    let Some((_, allowed)) = HOUSEKEEPING_PARAMS
        .iter()
        .find(|(name, _)| *name == method && listed.contains(name))
    else {
        return false;
    };
    match params {
        None => true,
        Some(Value::Object(params)) => params.keys().all(|k| allowed.contains(&k.as_str())),
        Some(_) => false,
    }
}

/// The prefix of every MCP notification: notifications with it pass (they
/// ask for no effect); any other notification is dropped.
pub const NOTIFICATION_PREFIX: &str = "notifications/";

/// Methods the gateway treats apart from the rest: a method equal to one
/// of them but for letter case is refused, since a lenient server could
/// take it for that one.
const SPECIAL_METHODS: [&str; 8] = [
    "tools/call",
    "resources/read",
    "initialize",
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
];

/// Decides one action: `Ok` with a note to go on, `Err` with the reason
/// to refuse it.
pub type Decide<'a> = dyn Fn(&Action) -> Result<String, String> + Send + Sync + 'a;

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
    /// Answer the server directly with this message (a request of the
    /// server's that was denied).
    Answer(Value),
    /// Drop the line, for this reason.
    Drop(String),
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The JSON-RPC error for a request the kernel denied.
pub fn denied_error(id: Value, reason: &str) -> Value {
    error(id, DENIED, &format!("denied by the agent kernel: {reason}"))
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
/// The members of `resources/read` parameters.
const READ_PARAMS: [&str; 2] = ["uri", "_meta"];

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

/// Why a method name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum MethodError {
    /// Empty, or not all visible ASCII.
    #[error("method {0:?} is not a plain ASCII name")]
    NotPlain(String),
    /// A method the gateway treats apart, in another letter case.
    #[error("method `{method}` is not `{special}`")]
    Disguised {
        method: String,
        special: &'static str,
    },
}

/// A method name: visible ASCII, and not a method the gateway treats
/// apart in disguise.
fn check_method(method: &str) -> Result<(), MethodError> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MethodError::NotPlain(method.to_owned()));
    }
    let folded = fold_key(method);
    if let Some(special) = SPECIAL_METHODS
        .iter()
        .find(|special| **special != method && **special == folded)
    {
        return Err(MethodError::Disguised {
            method: method.to_owned(),
            special,
        });
    }
    Ok(())
}

/// A resource URI that two readers could take for two resources: with
/// white space or control characters (URL parsers drop some of them),
/// backslashes (read as `/` by some), `.` or `..` segments (resolved by
/// some), or escaped dots, slashes or backslashes (decoded by some). Such
/// a URI is refused, never decided.
fn ambiguous_uri(uri: &str) -> Option<&'static str> {
    if uri.is_empty() {
        return Some("it is empty");
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("it holds white space or control characters");
    }
    if uri.contains('\\') {
        return Some("it holds a backslash");
    }
    let lower = uri.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return Some("it escapes a dot, a slash or a backslash");
    }
    let dot_segment = uri.split('/').any(|segment| {
        let segment = segment.split(['?', '#']).next().unwrap_or(segment);
        segment == "." || segment == ".."
    });
    if dot_segment {
        return Some("it has a `.` or `..` segment");
    }
    None
}

/// Why a resource URI is refused, never decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Two readers could take it for two resources; `why` says how.
    #[error("the resource URI `{uri}` is refused: {why}")]
    Ambiguous {
        /// The URI.
        uri: String,
        /// What makes it ambiguous.
        why: &'static str,
    },
    /// A `file:` URI that is no URL.
    #[error("the file URI `{0}` is refused: it is not a valid URL")]
    NotUrl(String),
    /// A `file:` URI that parses as a URL of another scheme.
    #[error("the file URI `{0}` is refused: it is not a valid file URL")]
    NotFileUrl(String),
    /// A `file:` URI with a query or a fragment.
    #[error("the file URI `{0}` is refused: a file has no query or fragment")]
    QueryOrFragment(String),
    /// A `file:` URI naming another host.
    #[error("the file URI `{0}` is refused: it names another host than this one")]
    OtherHost(String),
    /// A `file:` URI whose path is not UTF-8.
    #[error("the file URI `{0}` is refused: its path is not UTF-8")]
    NotUtf8(String),
    /// A `file:` URI whose path is not one an action can name.
    #[error("the file URI `{uri}` is refused: {source}")]
    Path {
        /// The URI.
        uri: String,
        /// Why its path cannot be canonicalised.
        #[source]
        source: kernel_core::ActionError,
    },
    /// A `file:` URI whose path cannot be forwarded as it was decided.
    #[error(
        "the file URI `{0}` is refused: its path cannot be written as a file URI that every \
         server reads alike"
    )]
    NotForwardable(String),
}

/// What a `resources/read` of `uri` is decided as: a `file:` URI (scheme
/// in any case) as the canonical path of the local file it names, with
/// the URI to forward (`file://` and that path, which every reader takes
/// for that path), and any other URI as itself (`None`). Refuses a URI
/// that two readers could take for two resources, and a `file:` URI that
/// names no local file or whose path cannot be forwarded as it was
/// decided.
pub fn file_uri_path(uri: &str) -> Result<Option<(String, String)>, UriError> {
    if let Some(why) = ambiguous_uri(uri) {
        return Err(UriError::Ambiguous {
            uri: uri.to_owned(),
            why,
        });
    }
    let is_file = uri
        .split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("file"));
    if !is_file {
        return Ok(None);
    }
    let Ok(url) = url::Url::parse(uri) else {
        return Err(UriError::NotUrl(uri.to_owned()));
    };
    if url.scheme() != "file" {
        return Err(UriError::NotFileUrl(uri.to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UriError::QueryOrFragment(uri.to_owned()));
    }
    let Ok(path) = url.to_file_path() else {
        return Err(UriError::OtherHost(uri.to_owned()));
    };
    let Ok(path) = path.into_os_string().into_string() else {
        return Err(UriError::NotUtf8(uri.to_owned()));
    };
    let path = kernel_core::canonical_path(&path, None).map_err(|source| UriError::Path {
        uri: uri.to_owned(),
        source,
    })?;
    // Forwarded unescaped, so that servers which decode escapes and
    // servers which do not read the same path; checked to read back as
    // the path decided.
    let forwarded = format!("file://{path}");
    let reads_back = url::Url::parse(&forwarded)
        .ok()
        .and_then(|url| url.to_file_path().ok())
        .is_some_and(|back| back == std::path::Path::new(&path));
    if path.contains('%') || !reads_back {
        return Err(UriError::NotForwardable(uri.to_owned()));
    }
    Ok(Some((path, forwarded)))
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
            check_method(&method).map_err(|e| invalid(e.to_string()))?;
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
    /// gets an outcome; a request other than housekeeping is forwarded
    /// only if `decide` allowed it (a `tools/call` only if its arguments
    /// also fit the tool's listed schema), and then as rebuilt from what
    /// was decided. A request forwarded is registered as waiting for the
    /// server's answer.
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
                if !method.starts_with(NOTIFICATION_PREFIX) || self.state.lock().server_gone {
                    // A `tools/call` (or any other request) sent as a
                    // notification would have its effect with no answer,
                    // and no way to report a denial.
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
                let params = match self.decide_request(&id, &method, params, decide) {
                    Ok(params) => params,
                    Err(answer) => return FromAgent::Answer(answer),
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

    /// Decides a request of the agent's: the parameters to forward (those
    /// decided), or the answer to give instead.
    fn decide_request(
        &self,
        id: &Value,
        method: &str,
        params: Option<Value>,
        decide: &Decide<'_>,
    ) -> Result<Option<Value>, Value> {
        if method == "tools/call" {
            return self.decide_call(id, params, decide).map(Some);
        }
        if housekeeping(&AGENT_HOUSEKEEPING, method, params.as_ref()) {
            return Ok(params);
        }
        let (action, params) = if method == "resources/read" {
            read_action(params)
                .map_err(|why| error(id.clone(), INVALID_PARAMS, &why.to_string()))?
        } else {
            let decided = params.clone().unwrap_or_else(|| json!({}));
            (
                Action::mcp_request(McpPeer::Agent, method, &decided),
                params,
            )
        };
        match decide(&action) {
            Ok(_) => Ok(params),
            Err(reason) => Err(denied_error(id.clone(), &reason)),
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
            Some(Some(schema)) => crate::gateways::input_schema::check(&schema, &arguments)
                .map_err(|why| format!("the arguments do not fit `{name}`'s inputSchema: {why}")),
        };
        if let Err(reason) = checked {
            return Err(denied_result(id.clone(), &reason));
        }
        match decide(&Action::tool_call(name.as_str(), &arguments)) {
            Ok(_) => {
                keep_only_progress_token(&mut params);
                params.insert("name".into(), Value::String(name));
                params.insert("arguments".into(), arguments);
                Ok(Value::Object(params))
            }
            Err(reason) => Err(denied_result(id.clone(), &reason)),
        }
    }

    /// Decides what to do with one line from the server: a request is
    /// passed on (and registered as waiting for the agent's answer) if it
    /// is housekeeping or `decide` allowed it, else answered with the
    /// denial; a notification is passed on if it is one
    /// (`notifications/...`); a response only if it answers a request of
    /// the agent's that is still waiting. A `tools/list` answer records
    /// each tool's `inputSchema` before it is passed on.
    pub fn from_server(&self, line: &[u8], decide: &Decide<'_>) -> FromServer {
        let message = match read_message(line) {
            Ok(message) => message,
            Err((_, _, why)) => return FromServer::Drop(why),
        };
        if let Message::Request { id, method, params } = &message
            && !housekeeping(&SERVER_HOUSEKEEPING, method, params.as_ref())
        {
            let decided = params.clone().unwrap_or_else(|| json!({}));
            if let Err(reason) = decide(&Action::mcp_request(McpPeer::Server, method, &decided)) {
                return FromServer::Answer(denied_error(id.clone(), &reason));
            }
        }
        let mut state = self.state.lock();
        match &message {
            Message::Request { id, .. } => {
                state.server_pending.insert(key(id), id.clone());
            }
            Message::Notification { method, .. } => {
                if !method.starts_with(NOTIFICATION_PREFIX) {
                    return FromServer::Drop(format!(
                        "`{method}` sent as a notification: only `{NOTIFICATION_PREFIX}...` notifications pass"
                    ));
                }
            }
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

/// Why the parameters of a `resources/read` are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ReadParamsError {
    /// No parameters object, or no string `uri` in it.
    #[error("resources/read needs a string `uri`")]
    NoUri,
    /// A parameter other than `uri` and `_meta`.
    #[error("`{0}` is not a resources/read parameter")]
    Stray(String),
    /// The URI is refused.
    #[error(transparent)]
    Uri(#[from] UriError),
}

/// What a `resources/read` with `params` is decided as, and the
/// parameters forwarded if it is allowed: a `file:` URI as a `file_read`
/// of its path, forwarded as `file://` and the path decided; any other URI
/// as an `mcp_request` with the parameters as given. Refuses parameters
/// other than `uri` and `_meta`, and URIs [`file_uri_path`] refuses.
fn read_action(params: Option<Value>) -> Result<(Action, Option<Value>), ReadParamsError> {
    let Some(Value::Object(mut params)) = params else {
        return Err(ReadParamsError::NoUri);
    };
    if let Some(stray) = params.keys().find(|k| !READ_PARAMS.contains(&k.as_str())) {
        return Err(ReadParamsError::Stray(stray.clone()));
    }
    let Some(Value::String(uri)) = params.get("uri") else {
        return Err(ReadParamsError::NoUri);
    };
    match file_uri_path(uri)? {
        Some((path, forwarded)) => {
            keep_only_progress_token(&mut params);
            params.insert("uri".into(), Value::String(forwarded));
            Ok((Action::file_read(path), Some(Value::Object(params))))
        }
        None => {
            let params = Value::Object(params);
            let action = Action::mcp_request(McpPeer::Agent, "resources/read", &params);
            Ok((action, Some(params)))
        }
    }
}

/// Keeps of a request's `_meta` (which the decided action does not cover,
/// and which some SDKs hand to the tool's code) only a `progressToken`
/// that is a string or an integer: what the protocol puts there for the
/// server's progress notifications. Anything else in it is dropped, never
/// forwarded undecided.
fn keep_only_progress_token(params: &mut serde_json::Map<String, Value>) {
    let token = params
        .remove("_meta")
        .and_then(|meta| meta.get("progressToken").cloned())
        .filter(|token| token.is_string() || token.is_i64() || token.is_u64());
    if let Some(token) = token {
        params.insert("_meta".into(), json!({ "progressToken": token }));
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

/// The server's standard input, `None` once it is closed.
type ServerInput = Mutex<Option<Box<dyn Write + Send>>>;

/// Writes one message line to the server; whether it was written.
fn write_to_server(server_in: &ServerInput, message: &str) -> bool {
    let mut server = server_in.lock();
    match server.as_mut() {
        Some(server) => server
            .write_all(message.as_bytes())
            .and_then(|()| server.write_all(b"\n"))
            .and_then(|()| server.flush())
            .is_ok(),
        None => false,
    }
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
    decide: Arc<Decide<'static>>,
) {
    let gateway = Arc::new(Gateway::new());
    let agent_out = Arc::new(Mutex::new(agent_out));
    let server_in: Arc<ServerInput> = Arc::new(Mutex::new(Some(server_in)));
    {
        let agent_out = Arc::clone(&agent_out);
        let gateway = Arc::clone(&gateway);
        let server_in = Arc::clone(&server_in);
        let decide = Arc::clone(&decide);
        std::thread::spawn(move || {
            let mut server_out = server_out;
            while let Some(line) = read_line(&mut server_out) {
                if blank(&line) {
                    continue;
                }
                match gateway.from_server(&line, &*decide) {
                    FromServer::Forward(message) => {
                        if send(&agent_out, &message).is_err() {
                            break;
                        }
                    }
                    FromServer::Answer(message) => {
                        let _ = write_to_server(&server_in, &message.to_string());
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
        match gateway.from_agent(&line, &*decide) {
            FromAgent::Forward { message, id } => {
                let written = write_to_server(&server_in, &message);
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

    /// Allows calls of `echo` only.
    fn only_echo(action: &Action) -> Result<String, String> {
        match action {
            Action::ToolCall { name, .. } if name == "echo" => Ok("allowed".into()),
            other => Err(format!("`{other:?}` is not allowed")),
        }
    }

    fn never(action: &Action) -> Result<String, String> {
        panic!("asked to decide `{action:?}`")
    }

    fn allow_all(_: &Action) -> Result<String, String> {
        Ok("allowed".into())
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
            gateway.from_server(tools.to_string().as_bytes(), &never),
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
        let record = |action: &Action| {
            if let Action::ToolCall { name, input } = action {
                let arguments: Value = serde_json::from_str(input).unwrap();
                seen.lock().push((name.clone(), arguments));
            }
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
        // No arguments: decided as `{}`, and forwarded as `{}`. Of `_meta`,
        // which the decision does not cover, only the progress token goes on.
        let message = forwarded(gateway.from_agent(
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":1,"path":"/etc/shadow"}}}"#,
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
        for method in [
            " tools/call",
            "tools/call ",
            "tools/\tcall",
            "TOOLS/CALL",
            "Resources/Read",
            "PING",
            "Tools/List",
        ] {
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
    fn housekeeping_passes_undecided_and_serialised_again() {
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
        for method in AGENT_HOUSEKEEPING {
            let line = json!({"jsonrpc": "2.0", "id": method, "method": method,
                "params": {"_meta": {"progressToken": 1}}});
            assert_eq!(
                forwarded(gateway.from_agent(line.to_string().as_bytes(), &never)),
                line
            );
            // With a parameter the protocol does not give it, it is not
            // housekeeping: decided, and denied here.
            let line = json!({"jsonrpc": "2.0", "id": 0, "method": method,
                "params": {"path": "/etc"}});
            let answer = answer(gateway.from_agent(line.to_string().as_bytes(), &only_echo));
            assert_eq!(answer["error"]["code"], DENIED, "{method}");
        }
        let list = br#"{"jsonrpc":"2.0","id":"c","method":"tools/list","params":{"cursor":"2"}}"#;
        assert!(matches!(
            gateway.from_agent(list, &never),
            FromAgent::Forward { .. }
        ));
        // A request of the server's (allowed), answered by the agent.
        assert!(matches!(
            gateway.from_server(
                br#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#,
                &allow_all
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

    /// Records every action asked about, and allows only those `allow`
    /// accepts.
    struct Recorder {
        asked: Mutex<Vec<Action>>,
        allow: fn(&Action) -> bool,
    }

    impl Recorder {
        fn new(allow: fn(&Action) -> bool) -> Self {
            Self {
                asked: Mutex::new(Vec::new()),
                allow,
            }
        }

        fn decide(&self, action: &Action) -> Result<String, String> {
            self.asked.lock().push(action.clone());
            if (self.allow)(action) {
                Ok("allowed".into())
            } else {
                Err("no policy permits this action".into())
            }
        }

        fn take(&self) -> Vec<Action> {
            std::mem::take(&mut *self.asked.lock())
        }
    }

    fn request(id: u64, method: &str, params: Option<Value>) -> Vec<u8> {
        let mut line = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            line["params"] = params;
        }
        line.to_string().into_bytes()
    }

    #[test]
    fn every_other_request_of_the_agent_is_decided_before_it_is_forwarded() {
        let gateway = Gateway::new();
        let docs_only = Recorder::new(
            |action| matches!(action, Action::McpRequest { params, .. } if params.contains("docs://")),
        );
        let decide = |action: &Action| docs_only.decide(action);
        let cases = [
            ("resources/read", Some(json!({"uri": "docs://guide"}))),
            (
                "resources/read",
                Some(json!({"uri": "https://example.com/a"})),
            ),
            (
                "prompts/get",
                Some(json!({"name": "review", "arguments": {"file": "docs://a"}})),
            ),
            ("prompts/get", Some(json!({"name": "review"}))),
            ("resources/subscribe", Some(json!({"uri": "db://t"}))),
            ("completion/complete", Some(json!({"ref": {}}))),
            ("logging/setLevel", Some(json!({"level": "debug"}))),
            ("tasks/frobnicate", None),
        ];
        for (id, (method, params)) in (1..).zip(cases) {
            let outcome = gateway.from_agent(&request(id, method, params.clone()), &decide);
            let decided = params.clone().unwrap_or_else(|| json!({}));
            assert_eq!(
                docs_only.take(),
                [Action::mcp_request(McpPeer::Agent, method, &decided)],
                "{method}"
            );
            if decided.to_string().contains("docs://") {
                let message = forwarded(outcome);
                assert_eq!(message["method"], method);
                assert_eq!(message.get("params"), params.as_ref());
            } else {
                let answer = answer(outcome);
                assert_eq!(answer["id"], id, "{method}");
                assert_eq!(answer["error"]["code"], DENIED, "{method}");
                let text = answer["error"]["message"].as_str().unwrap();
                assert!(text.contains("no policy permits"), "{text}");
            }
        }
        // When the enforcer cannot be asked, nothing is forwarded.
        let unreachable = |_: &Action| Err("fail closed: no enforcer".to_owned());
        let answer = answer(gateway.from_agent(
            &request(99, "resources/read", Some(json!({"uri": "docs://guide"}))),
            &unreachable,
        ));
        assert_eq!(answer["error"]["code"], DENIED);
    }

    #[test]
    fn a_file_resource_is_decided_as_a_file_read_of_its_path() {
        let gateway = Gateway::new();
        let recorder = Recorder::new(|_| true);
        let decide = |action: &Action| recorder.decide(action);
        for (uri, path) in [
            ("file:///ws/a.txt", "/ws/a.txt"),
            ("FILE://localhost/ws/a%20b.txt", "/ws/a b.txt"),
            ("file:/ws//deep/r%C3%A9sum%C3%A9", "/ws/deep/résumé"),
            ("file:///state/kernel.key", "/state/kernel.key"),
        ] {
            let message = forwarded(gateway.from_agent(
                &request(
                    1,
                    "resources/read",
                    Some(json!({"uri": uri, "_meta": {"k": 1}})),
                ),
                &decide,
            ));
            assert_eq!(recorder.take(), [Action::file_read(path)], "{uri}");
            assert_eq!(
                message["params"],
                json!({"uri": format!("file://{path}")}),
                "{uri}"
            );
            gateway.forget(&json!(1));
        }
        // Refused, never decided: URIs two readers could take for two
        // resources, files elsewhere, and parameters besides the URI.
        for params in [
            json!({"uri": "file://server/etc/passwd"}),
            json!({"uri": "file:///ws/../etc/passwd"}),
            json!({"uri": "file:///ws/%2e%2e/etc/passwd"}),
            json!({"uri": "file:///ws/a%2Fb"}),
            json!({"uri": "file:///ws/a%25b"}),
            json!({"uri": "file:///ws/a?x"}),
            json!({"uri": "file:///ws/a%3Fb"}),
            json!({"uri": "file:///ws/a#x"}),
            json!({"uri": "file:///ws/%FF"}),
            json!({"uri": "file:///ws/a%00"}),
            json!({"uri": " file:///etc/passwd"}),
            json!({"uri": "file:///ws\\..\\x"}),
            json!({"uri": "fi\tle:///etc/passwd"}),
            json!({"uri": "file://[::1/etc/passwd"}),
            json!({"uri": "docs://guides/../secrets"}),
            json!({"uri": "docs://guides/./a"}),
            json!({"uri": "docs://guides/..?x"}),
            json!({"uri": ""}),
            json!({"uri": ["file:///ws/a"]}),
            json!({"uri": "docs://a", "path": "/etc/passwd"}),
            json!({}),
        ] {
            let answer = answer(
                gateway.from_agent(&request(2, "resources/read", Some(params.clone())), &decide),
            );
            assert_eq!(
                answer["error"]["code"], INVALID_PARAMS,
                "{params}: {answer}"
            );
            assert_eq!(recorder.take(), [], "{params}");
        }
        let answer = answer(gateway.from_agent(&request(3, "resources/read", None), &decide));
        assert_eq!(answer["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn each_refused_uri_parameter_and_method_says_why() {
        let uri = |text: &str| file_uri_path(text).unwrap_err();
        let owned = |text: &str| text.to_owned();
        assert_eq!(
            uri(""),
            UriError::Ambiguous {
                uri: String::new(),
                why: "it is empty"
            }
        );
        assert_eq!(
            uri("file:///ws/../etc/passwd"),
            UriError::Ambiguous {
                uri: owned("file:///ws/../etc/passwd"),
                why: "it has a `.` or `..` segment"
            }
        );
        assert_eq!(
            uri("file://[::1/etc/passwd"),
            UriError::NotUrl(owned("file://[::1/etc/passwd"))
        );
        assert_eq!(
            uri("file:///ws/a?x"),
            UriError::QueryOrFragment(owned("file:///ws/a?x"))
        );
        assert_eq!(
            uri("file://server/etc/passwd"),
            UriError::OtherHost(owned("file://server/etc/passwd"))
        );
        assert_eq!(
            uri("file:///ws/%FF"),
            UriError::NotUtf8(owned("file:///ws/%FF"))
        );
        assert!(
            matches!(uri("file:///ws/a%00"), UriError::Path { uri, .. } if uri == "file:///ws/a%00")
        );
        assert_eq!(
            uri("file:///ws/a%25b"),
            UriError::NotForwardable(owned("file:///ws/a%25b"))
        );
        // What the agent is shown.
        assert_eq!(
            uri("file:///ws/a?x").to_string(),
            "the file URI `file:///ws/a?x` is refused: a file has no query or fragment"
        );

        assert_eq!(read_action(None).unwrap_err(), ReadParamsError::NoUri);
        assert_eq!(
            read_action(Some(json!({"uri": 1}))).unwrap_err(),
            ReadParamsError::NoUri
        );
        assert_eq!(
            read_action(Some(json!({"uri": "docs://a", "path": "/etc/passwd"}))).unwrap_err(),
            ReadParamsError::Stray(owned("path"))
        );
        assert_eq!(
            read_action(Some(json!({"uri": "file:///ws/a?x"}))).unwrap_err(),
            ReadParamsError::Uri(UriError::QueryOrFragment(owned("file:///ws/a?x")))
        );

        assert_eq!(
            check_method("tools call"),
            Err(MethodError::NotPlain(owned("tools call")))
        );
        assert_eq!(check_method(""), Err(MethodError::NotPlain(String::new())));
        assert_eq!(
            check_method("Tools/Call"),
            Err(MethodError::Disguised {
                method: owned("Tools/Call"),
                special: "tools/call"
            })
        );
        assert_eq!(check_method("tools/call"), Ok(()));
    }

    #[test]
    fn notifications_pass_only_under_their_prefix() {
        let gateway = Gateway::new();
        for method in [
            "notifications/cancelled",
            "notifications/roots/list_changed",
        ] {
            let line = json!({"jsonrpc": "2.0", "method": method, "params": {}});
            assert_eq!(
                forwarded(gateway.from_agent(line.to_string().as_bytes(), &never)),
                line
            );
            assert!(matches!(
                gateway.from_server(line.to_string().as_bytes(), &never),
                FromServer::Forward(_)
            ));
        }
        // A request sent as a notification would have its effect with no
        // answer: dropped, never decided.
        for method in [
            "resources/read",
            "prompts/get",
            "sampling/createMessage",
            "x",
        ] {
            let line = json!({"jsonrpc": "2.0", "method": method, "params": {"uri": "file:///etc/passwd"}});
            assert_eq!(
                gateway.from_agent(line.to_string().as_bytes(), &never),
                FromAgent::Drop
            );
            assert!(matches!(
                gateway.from_server(line.to_string().as_bytes(), &never),
                FromServer::Drop(_)
            ));
        }
    }

    #[test]
    fn the_servers_requests_are_decided_and_a_denied_one_is_answered_to_the_server() {
        let gateway = Gateway::new();
        let roots_only = Recorder::new(
            |action| matches!(action, Action::McpRequest { method, .. } if method == "roots/list"),
        );
        let decide = |action: &Action| roots_only.decide(action);
        let sampling = br#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":9}}"#;
        let FromServer::Answer(answer) = gateway.from_server(sampling, &decide) else {
            panic!("a denied request of the server's reached the agent");
        };
        assert_eq!(answer["id"], "s1");
        assert_eq!(answer["error"]["code"], DENIED);
        assert_eq!(
            roots_only.take(),
            [Action::mcp_request(
                McpPeer::Server,
                "sampling/createMessage",
                &json!({"messages": [], "maxTokens": 9})
            )]
        );
        // Denied, so not waiting: an answer from the agent is dropped.
        assert_eq!(
            gateway.from_agent(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#, &never),
            FromAgent::Drop
        );
        for line in [
            br#"{"jsonrpc":"2.0","id":"s2","method":"elicitation/create","params":{"message":"key?"}}"#.as_slice(),
            br#"{"jsonrpc":"2.0","id":"s3","method":"tools/call","params":{"name":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":"s4","method":"whatever/next"}"#,
        ] {
            assert!(matches!(
                gateway.from_server(line, &decide),
                FromServer::Answer(_)
            ));
            assert_eq!(roots_only.take().len(), 1);
        }
        // Allowed: forwarded, and the agent's answer reaches the server.
        let roots = br#"{"jsonrpc":"2.0","id":"s5","method":"roots/list"}"#;
        assert!(matches!(
            gateway.from_server(roots, &decide),
            FromServer::Forward(_)
        ));
        assert_eq!(
            roots_only.take(),
            [Action::mcp_request(
                McpPeer::Server,
                "roots/list",
                &json!({})
            )]
        );
        assert!(matches!(
            gateway.from_agent(
                br#"{"jsonrpc":"2.0","id":"s5","result":{"roots":[]}}"#,
                &never
            ),
            FromAgent::Forward { .. }
        ));
        // `ping` is housekeeping, but not with other parameters.
        assert!(matches!(
            gateway.from_server(br#"{"jsonrpc":"2.0","id":"s6","method":"ping"}"#, &never),
            FromServer::Forward(_)
        ));
        assert!(matches!(
            gateway.from_server(
                br#"{"jsonrpc":"2.0","id":"s7","method":"ping","params":{"x":1}}"#,
                &decide
            ),
            FromServer::Answer(_)
        ));
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
                matches!(gateway.from_server(line, &never), FromServer::Forward(_)),
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
            Arc::new(only_echo),
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
