//! Requests as an operator writes them, in the kernel's action terms: in a
//! policy test file, a request file for `policy explain`, or on its command
//! line.
//!
//! A [`RequestSpec`] names the kind of action (the Cedar action id, such as
//! `file_read`) and that kind's fields. It becomes an [`Action`] exactly as
//! an agent would propose it, and is then put in canonical form by
//! [`CanonicalAction::new`], the same function the client uses; relative
//! paths are resolved against the request's `cwd`, or else the workspace.

use kernel_core::{Action, ActionKind, CanonicalAction, Digest, Exec, McpPeer, WriteMode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The fields each kind of action takes, for messages and for checking
/// that a request names no field of another kind.
const FIELDS: [(ActionKind, &[&str]); 10] = [
    (ActionKind::Exec, &["program", "args", "env", "cwd"]),
    (ActionKind::FileRead, &["path", "cwd"]),
    (
        ActionKind::FileWrite,
        &["path", "content", "size", "mode", "cwd"],
    ),
    (ActionKind::FileDelete, &["path", "cwd"]),
    (ActionKind::NetConnect, &["host", "port"]),
    (ActionKind::Http, &["method", "url"]),
    (ActionKind::ToolCall, &["tool", "input"]),
    (ActionKind::Custom, &["kind", "payload"]),
    (ActionKind::McpRequest, &["method", "params"]),
    (ActionKind::McpServerRequest, &["method", "params"]),
];

/// Every field a request may have, besides `action`.
pub const REQUEST_FIELDS: [&str; 17] = [
    "path", "content", "size", "mode", "program", "args", "env", "cwd", "host", "port", "method",
    "url", "tool", "input", "kind", "payload", "params",
];

/// One request, as an operator writes it. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// The kind of action, as policies name it: `exec`, `file_read`,
    /// `file_write`, `file_delete`, `net_connect`, `http`, `tool_call`,
    /// `custom`, `mcp_request` or `mcp_server_request`.
    pub action: String,
    /// File path (`file_read`, `file_write`, `file_delete`).
    pub path: Option<String>,
    /// Content to write (`file_write`; default empty).
    pub content: Option<String>,
    /// Bytes to write (`file_write`; default: the length of `content`).
    pub size: Option<u64>,
    /// `create_new`, `overwrite` or `append` (`file_write`; default
    /// `overwrite`); or, for what a governed program's own system calls
    /// do, `descriptor`, `symlink` (its `content` the link's target),
    /// `hard_link`, `metadata` or `connect` (a Unix socket connection).
    pub mode: Option<String>,
    /// Program path (`exec`): absolute, or relative with a `/`.
    pub program: Option<String>,
    /// Arguments after the program (`exec`).
    pub args: Option<Vec<String>>,
    /// Environment variables the program gets (`exec`).
    pub env: Option<BTreeMap<String, String>>,
    /// Directory the request is made from: the base for relative paths,
    /// and the working directory of `exec`. Default: the workspace.
    pub cwd: Option<String>,
    /// Host name or address (`net_connect`).
    pub host: Option<String>,
    /// Port (`net_connect`).
    pub port: Option<u16>,
    /// HTTP method, such as `GET` (`http`); JSON-RPC method, such as
    /// `resources/read` (`mcp_request`, `mcp_server_request`).
    pub method: Option<String>,
    /// Absolute http(s) URL (`http`).
    pub url: Option<String>,
    /// Tool name (`tool_call`).
    pub tool: Option<String>,
    /// Tool input, any JSON value (`tool_call`; default `{}`).
    pub input: Option<serde_json::Value>,
    /// Application-defined kind (`custom`).
    pub kind: Option<String>,
    /// Payload (`custom`; default empty).
    pub payload: Option<String>,
    /// Parameters, a JSON object (`mcp_request`, `mcp_server_request`;
    /// default `{}`).
    pub params: Option<serde_json::Value>,
}

/// The action kind named `name`, if there is one.
pub fn action_kind(name: &str) -> Option<ActionKind> {
    ActionKind::ALL.into_iter().find(|k| k.as_str() == name)
}

fn kind_names() -> String {
    ActionKind::ALL
        .iter()
        .map(|k| format!("`{}`", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Largest request file accepted, in bytes.
pub const MAX_REQUEST_FILE_BYTES: usize = 64 * 1024;

/// Why a request file cannot be read ([`RequestSpec::read`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestReadError {
    /// The file cannot be read.
    #[error("cannot read `{name}`: {source}")]
    Io {
        /// The file, as named.
        name: String,
        /// What reading it gave.
        #[source]
        source: std::io::Error,
    },
    /// The file is over [`MAX_REQUEST_FILE_BYTES`].
    #[error(
        "`{name}` is {size} bytes, over the {MAX_REQUEST_FILE_BYTES}-byte limit for a request file"
    )]
    TooLarge {
        /// The file, as named.
        name: String,
        /// Its size in bytes.
        size: usize,
    },
    /// The file is not UTF-8.
    #[error("`{name}` is not UTF-8")]
    NotUtf8 {
        /// The file, as named.
        name: String,
    },
    /// A JSON file that is not strict JSON or not a request.
    #[error("{name}:{}:{}: {source}", .source.line(), .source.column())]
    Json {
        /// The file, as named.
        name: String,
        /// What the parser found, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A TOML file that is not TOML or not a request.
    #[error("{name}:{}{message}", at.map(|(line, column)| format!("{line}:{column}: ")).unwrap_or_else(|| " ".to_owned()))]
    Toml {
        /// The file, as named.
        name: String,
        /// The line and column of the problem, when the parser gave one.
        at: Option<(usize, usize)>,
        /// What the parser found.
        message: String,
    },
}

/// Why a request names no action ([`RequestSpec::to_action`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestSpecError {
    /// `action` is not a kind of action.
    #[error("unknown action `{action}`: use one of {}", kind_names())]
    UnknownAction {
        /// The kind, as written.
        action: String,
    },
    /// A field is set that this kind of action does not take.
    #[error("`{field}` does not apply to `{action}`: it takes {}", takes.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))]
    StrayField {
        /// The field.
        field: &'static str,
        /// The kind of action, as written.
        action: String,
        /// The fields it takes.
        takes: &'static [&'static str],
    },
    /// A field this kind of action needs is missing.
    #[error("`{action}` needs `{field}`")]
    MissingField {
        /// The kind of action, as written.
        action: String,
        /// The field.
        field: &'static str,
    },
    /// `mode` is not a write mode.
    #[error(
        "unknown write mode `{0}`: use `create_new`, `overwrite`, `append`, `descriptor`, `symlink`, `hard_link`, `metadata` or `connect`"
    )]
    UnknownWriteMode(String),
    /// `content` or `size` on a write that has neither.
    #[error("a `{}` write has no `content` or `size`: {}", .0.as_str(), if .0.is_unbounded() { "what is written is not known when deciding" } else { "it writes no content" })]
    NoContent(WriteMode),
    /// `size` on a symbolic link.
    #[error("a `symlink` write has no `size`: its `content` is the link's target")]
    SymlinkSize,
}

/// Why a request has no canonical action ([`RequestSpec::canonical`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalRequestError {
    /// The request names no action.
    #[error(transparent)]
    Spec(#[from] RequestSpecError),
    /// `program` is a bare name, which only the client's `PATH` resolves.
    #[error(
        "program `{program}` is not a path: write it as the client resolves it, such as `{example}`"
    )]
    BareProgram {
        /// The program, as written.
        program: String,
        /// Where this machine's `PATH` finds it (or `/usr/bin/PROGRAM`).
        example: String,
    },
    /// The client's canonicalisation refuses the action.
    #[error("the client would refuse this action: {0}")]
    Refused(#[source] kernel_core::ActionError),
}

impl RequestSpec {
    /// Reads a request file (`policy explain --request`): TOML, or JSON
    /// when it ends in `.json`, at most [`MAX_REQUEST_FILE_BYTES`].
    /// Errors carry the file's line and column.
    pub fn read(path: &Path) -> Result<Self, RequestReadError> {
        let name = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(source) => return Err(RequestReadError::Io { name, source }),
        };
        if bytes.len() > MAX_REQUEST_FILE_BYTES {
            let size = bytes.len();
            return Err(RequestReadError::TooLarge { name, size });
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(RequestReadError::NotUtf8 { name });
        };
        if path.extension().is_some_and(|e| e == "json") {
            // Strict first (no key read twice); then typed, from the same
            // text, for errors with their line and column.
            kernel_core::json::parse_strict(&text)
                .and_then(|_| serde_json::from_str(&text))
                .map_err(|source| RequestReadError::Json { name, source })
        } else {
            toml::from_str(&text).map_err(|e| {
                let message = e.message().trim_end_matches('\n').to_owned();
                let at = e.span().map(|span| crate::line_column(&text, span.start));
                RequestReadError::Toml { name, at, message }
            })
        }
    }

    /// The names of the fields that are set, besides `action`.
    fn fields_set(&self) -> Vec<&'static str> {
        let set = [
            self.path.is_some(),
            self.content.is_some(),
            self.size.is_some(),
            self.mode.is_some(),
            self.program.is_some(),
            self.args.is_some(),
            self.env.is_some(),
            self.cwd.is_some(),
            self.host.is_some(),
            self.port.is_some(),
            self.method.is_some(),
            self.url.is_some(),
            self.tool.is_some(),
            self.input.is_some(),
            self.kind.is_some(),
            self.payload.is_some(),
            self.params.is_some(),
        ];
        REQUEST_FIELDS
            .iter()
            .zip(set)
            .filter_map(|(name, set)| set.then_some(*name))
            .collect()
    }

    /// The action this request proposes, before canonicalisation. Refuses
    /// an unknown kind, a missing field, and a field of another kind.
    pub fn to_action(&self) -> Result<Action, RequestSpecError> {
        let kind = action_kind(&self.action).ok_or_else(|| RequestSpecError::UnknownAction {
            action: self.action.clone(),
        })?;
        let allowed = FIELDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, fields)| *fields)
            .unwrap_or_default();
        if let Some(stray) = self.fields_set().into_iter().find(|f| !allowed.contains(f)) {
            return Err(RequestSpecError::StrayField {
                field: stray,
                action: self.action.clone(),
                takes: allowed,
            });
        }
        let need = |value: &Option<String>, field: &'static str| {
            value.clone().ok_or_else(|| RequestSpecError::MissingField {
                action: self.action.clone(),
                field,
            })
        };
        Ok(match kind {
            ActionKind::Exec => {
                let mut exec = Exec::new(need(&self.program, "program")?)
                    .args(self.args.clone().unwrap_or_default());
                for (name, value) in self.env.iter().flatten() {
                    exec = exec.env(name.clone(), value.clone());
                }
                Action::Exec(exec)
            }
            ActionKind::FileRead => Action::file_read(need(&self.path, "path")?),
            ActionKind::FileWrite => {
                let content = self.content.clone().unwrap_or_default();
                let mode = match self.mode.as_deref() {
                    None | Some("overwrite") => WriteMode::Overwrite,
                    Some("create_new") => WriteMode::CreateNew,
                    Some("append") => WriteMode::Append,
                    // Effects of a program's own system calls (governed
                    // mode): a symbolic link's content is its target.
                    Some("symlink") => WriteMode::Symlink,
                    Some("descriptor") => WriteMode::Descriptor,
                    Some("hard_link") => WriteMode::HardLink,
                    Some("metadata") => WriteMode::Metadata,
                    Some("connect") => WriteMode::Connect,
                    Some(other) => {
                        return Err(RequestSpecError::UnknownWriteMode(other.to_owned()));
                    }
                };
                let path = need(&self.path, "path")?;
                match mode {
                    WriteMode::Descriptor
                    | WriteMode::Connect
                    | WriteMode::HardLink
                    | WriteMode::Metadata
                        if self.content.is_some() || self.size.is_some() =>
                    {
                        return Err(RequestSpecError::NoContent(mode));
                    }
                    WriteMode::Descriptor => return Ok(Action::file_write_descriptor(path)),
                    WriteMode::Connect => return Ok(Action::file_connect(path)),
                    WriteMode::HardLink | WriteMode::Metadata => {
                        return Ok(Action::file_write_without_content(path, mode));
                    }
                    WriteMode::Symlink if self.size.is_some() => {
                        return Err(RequestSpecError::SymlinkSize);
                    }
                    WriteMode::Symlink => return Ok(Action::file_symlink(path, &content)),
                    WriteMode::CreateNew | WriteMode::Overwrite | WriteMode::Append => {}
                }
                Action::FileWrite {
                    path,
                    content_sha256: Digest::of_content(content.as_bytes()),
                    size: self
                        .size
                        .unwrap_or_else(|| u64::try_from(content.len()).unwrap_or(u64::MAX)),
                    mode,
                }
            }
            ActionKind::FileDelete => Action::file_delete(need(&self.path, "path")?),
            ActionKind::NetConnect => Action::net_connect(
                need(&self.host, "host")?,
                self.port.ok_or_else(|| RequestSpecError::MissingField {
                    action: self.action.clone(),
                    field: "port",
                })?,
            ),
            ActionKind::Http => {
                Action::http(need(&self.method, "method")?, need(&self.url, "url")?)
            }
            ActionKind::ToolCall => Action::tool_call(
                need(&self.tool, "tool")?,
                self.input
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Object(serde_json::Map::new())),
            ),
            ActionKind::Custom => Action::custom(
                need(&self.kind, "kind")?,
                self.payload.clone().unwrap_or_default(),
            ),
            ActionKind::McpRequest | ActionKind::McpServerRequest => Action::mcp_request(
                if kind == ActionKind::McpRequest {
                    McpPeer::Agent
                } else {
                    McpPeer::Server
                },
                need(&self.method, "method")?,
                self.params
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Object(serde_json::Map::new())),
            ),
        })
    }

    /// This request with every field the client canonicalises replaced by
    /// its canonical value from `action` (which must come from this
    /// request): absolute paths, lower-case hosts, canonical URLs and JSON.
    /// What a file write binds by digest is kept as given.
    pub fn canonicalised(&self, action: &CanonicalAction) -> Self {
        let mut out = Self {
            action: self.action.clone(),
            ..Self::default()
        };
        match action.action() {
            Action::Exec(exec) => {
                out.program = Some(exec.program.clone());
                out.args = Some(exec.args.clone());
                out.env = (!exec.env.is_empty()).then(|| exec.env.iter().cloned().collect());
                out.cwd.clone_from(&exec.cwd);
            }
            Action::FileRead { path } | Action::FileDelete { path } => {
                out.path = Some(path.clone());
            }
            Action::FileWrite { path, .. } => {
                out.path = Some(path.clone());
                out.content.clone_from(&self.content);
                out.size = self.size;
                out.mode.clone_from(&self.mode);
            }
            Action::NetConnect { host, port } => {
                out.host = Some(host.clone());
                out.port = Some(*port);
            }
            Action::Http { method, url } => {
                out.method = Some(method.clone());
                out.url = Some(url.clone());
            }
            Action::ToolCall { name, input } => {
                out.tool = Some(name.clone());
                out.input = serde_json::from_str(input).ok();
            }
            Action::Custom { kind, payload } => {
                out.kind = Some(kind.clone());
                out.payload = Some(payload.clone());
            }
            Action::McpRequest { method, params, .. } => {
                out.method = Some(method.clone());
                out.params = serde_json::from_str(params).ok();
            }
        }
        out
    }

    /// The request as TOML lines (`action = "file_read"`, `path = "/a"`),
    /// ready for a test case or a request file. `None` when a value cannot
    /// be written in TOML (a JSON `null` inside a tool input).
    pub fn toml_fields(&self) -> Option<Vec<String>> {
        let text = |value: &Option<String>| value.as_deref().map(toml_string);
        let number = |value: Option<u64>| value.map(|n| n.to_string());
        let fields = [
            ("path", text(&self.path)),
            ("content", text(&self.content)),
            ("size", number(self.size)),
            ("mode", text(&self.mode)),
            ("program", text(&self.program)),
            (
                "args",
                self.args.as_ref().map(|args| {
                    let items: Vec<String> = args.iter().map(|a| toml_string(a)).collect();
                    format!("[{}]", items.join(", "))
                }),
            ),
            (
                "env",
                self.env.as_ref().map(|env| {
                    let items: Vec<String> = env
                        .iter()
                        .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                        .collect();
                    format!("{{ {} }}", items.join(", "))
                }),
            ),
            ("cwd", text(&self.cwd)),
            ("host", text(&self.host)),
            ("port", number(self.port.map(u64::from))),
            ("method", text(&self.method)),
            ("url", text(&self.url)),
            ("tool", text(&self.tool)),
            (
                "input",
                match &self.input {
                    Some(value) => Some(toml_value(value)?),
                    None => None,
                },
            ),
            ("kind", text(&self.kind)),
            ("payload", text(&self.payload)),
            (
                "params",
                match &self.params {
                    Some(value) => Some(toml_value(value)?),
                    None => None,
                },
            ),
        ];
        Some(
            std::iter::once(format!("action = {}", toml_string(&self.action)))
                .chain(
                    fields
                        .into_iter()
                        .filter_map(|(name, value)| value.map(|v| format!("{name} = {v}"))),
                )
                .collect(),
        )
    }

    /// The action in canonical form, with relative paths resolved against
    /// `cwd` or else `workspace`, as the client resolves them against its
    /// working directory. Bare program names are refused: the client
    /// resolves them through its `PATH`, which is not this machine's.
    pub fn canonical(&self, workspace: &str) -> Result<CanonicalAction, CanonicalRequestError> {
        let action = self.to_action()?;
        if let Action::Exec(exec) = &action
            && !exec.program.contains('/')
        {
            // The example is where this machine's PATH finds it, as the
            // client here would resolve it.
            let example =
                search_path(&exec.program).unwrap_or_else(|| format!("/usr/bin/{}", exec.program));
            return Err(CanonicalRequestError::BareProgram {
                program: exec.program.clone(),
                example,
            });
        }
        let base = self.cwd.as_deref().unwrap_or(workspace);
        CanonicalAction::new(action, Some(base)).map_err(CanonicalRequestError::Refused)
    }
}

/// Searches `PATH` for an executable file named `name`, as the client
/// library and the shell do (relative directories on `PATH` are skipped).
pub fn search_path(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|found| found.to_str().map(str::to_owned))
}

/// A TOML basic string for `text`.
pub(super) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && c != '\t' => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value in TOML; `None` for `null`, which TOML cannot write.
fn toml_value(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_string(s),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(toml_value)
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| Some(format!("{} = {}", toml_string(k), toml_value(v)?)))
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn spec(action: &str) -> RequestSpec {
        RequestSpec {
            action: action.into(),
            ..RequestSpec::default()
        }
    }

    #[test]
    fn every_kind_has_its_field_list_and_the_lists_use_known_fields() {
        for kind in ActionKind::ALL {
            let (_, fields) = FIELDS.iter().find(|(k, _)| *k == kind).unwrap();
            assert!(
                fields.iter().all(|f| REQUEST_FIELDS.contains(f)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn every_write_mode_can_be_asked_and_content_goes_only_where_there_is_some() {
        let write = |mode: &str, content: Option<&str>| RequestSpec {
            path: Some("/ws/s".into()),
            mode: Some(mode.into()),
            content: content.map(Into::into),
            ..spec("file_write")
        };
        assert_eq!(
            write("connect", None).to_action().unwrap(),
            Action::file_connect("/ws/s")
        );
        assert_eq!(
            write("metadata", None).to_action().unwrap(),
            Action::file_write_without_content("/ws/s", WriteMode::Metadata)
        );
        assert_eq!(
            write("hard_link", None).to_action().unwrap(),
            Action::file_write_without_content("/ws/s", WriteMode::HardLink)
        );
        assert_eq!(
            write("symlink", Some("target")).to_action().unwrap(),
            Action::file_symlink("/ws/s", "target")
        );
        assert_eq!(
            write("descriptor", None).to_action().unwrap(),
            Action::file_write_descriptor("/ws/s")
        );
        for mode in ["connect", "metadata", "hard_link", "descriptor"] {
            assert!(
                matches!(
                    write(mode, Some("x")).to_action(),
                    Err(RequestSpecError::NoContent(m)) if m.as_str() == mode
                ),
                "{mode}"
            );
        }
        assert_eq!(
            write("chmod", None).to_action(),
            Err(RequestSpecError::UnknownWriteMode("chmod".into()))
        );
    }

    #[test]
    fn refuses_unknown_kinds_missing_and_stray_fields() {
        assert_eq!(
            spec("file_raed").to_action(),
            Err(RequestSpecError::UnknownAction {
                action: "file_raed".into()
            })
        );
        assert_eq!(
            spec("file_read").to_action(),
            Err(RequestSpecError::MissingField {
                action: "file_read".into(),
                field: "path"
            })
        );
        let stray = RequestSpec {
            path: Some("a".into()),
            port: Some(1),
            ..spec("file_read")
        };
        assert!(matches!(
            stray.to_action(),
            Err(RequestSpecError::StrayField { field: "port", action, .. }) if action == "file_read"
        ));
    }

    #[test]
    fn canonicalises_like_the_client() {
        let read = RequestSpec {
            path: Some("src/../Cargo.toml".into()),
            ..spec("file_read")
        };
        assert_eq!(
            read.canonical("/ws").unwrap().action(),
            &Action::file_read("/ws/Cargo.toml")
        );
        let exec = RequestSpec {
            program: Some("git".into()),
            ..spec("exec")
        };
        assert!(matches!(
            exec.canonical("/ws"),
            Err(CanonicalRequestError::BareProgram { program, .. }) if program == "git"
        ));
        let port_zero = RequestSpec {
            host: Some("example.com".into()),
            port: Some(0),
            ..spec("net_connect")
        };
        assert!(matches!(
            port_zero.canonical("/ws"),
            Err(CanonicalRequestError::Refused(_))
        ));
    }

    #[test]
    fn toml_fields_read_back_as_the_same_request() {
        let request = RequestSpec {
            program: Some("/usr/bin/a \"b\"\u{7f}".into()),
            args: Some(vec!["-x".into(), "tab\there".into()]),
            env: Some(BTreeMap::from([("K".into(), "v".into())])),
            cwd: Some("/ws".into()),
            ..spec("exec")
        };
        let text = request.toml_fields().unwrap().join("\n");
        let back: RequestSpec = toml::from_str(&text).unwrap();
        assert_eq!(back, request, "{text}");
        let tool = RequestSpec {
            tool: Some("t".into()),
            input: Some(serde_json::json!({"a": [1, 2.5, "x"], "b": {"c": true}})),
            ..spec("tool_call")
        };
        let text = tool.toml_fields().unwrap().join("\n");
        let back: RequestSpec = toml::from_str(&text).unwrap();
        assert_eq!(back, tool, "{text}");
        let null = RequestSpec {
            input: Some(serde_json::json!({"a": null})),
            ..tool
        };
        assert!(null.toml_fields().is_none());
        let mcp = RequestSpec {
            method: Some("resources/read".into()),
            params: Some(serde_json::json!({"uri": "docs://a", "_meta": {"n": 1}})),
            ..spec("mcp_server_request")
        };
        let text = mcp.toml_fields().unwrap().join("\n");
        let back: RequestSpec = toml::from_str(&text).unwrap();
        assert_eq!(back, mcp, "{text}");
        assert_eq!(
            back.to_action().unwrap().kind(),
            ActionKind::McpServerRequest
        );
    }
}
