//! The typed action model and its canonical form.
//!
//! An agent proposes an [`Action`]; nothing is decided on it until it has
//! been turned into a [`CanonicalAction`] by [`CanonicalAction::new`]:
//! paths made absolute and lexically normalised, programs absolute, hosts
//! lowercased and IDNA-encoded, URLs parsed and re-serialised, tool input
//! re-serialised as compact JSON with sorted keys. Bad input is a typed
//! [`ActionError`], never a panic, and an action that cannot be
//! canonicalised is never decided, so it is denied.
//!
//! A `CanonicalAction` can also be decoded, and decoding refuses any action
//! that is not already in canonical form: the enforcer decides on exactly
//! the bytes it was sent, and those bytes have one meaning.

use crate::digest::Digest;
use crate::limits::{
    MAX_ARG_BYTES, MAX_ARGS, MAX_ENV_VARS, MAX_HOST_BYTES, MAX_METHOD_BYTES, MAX_NAME_BYTES,
    MAX_PATH_BYTES, MAX_PAYLOAD_BYTES, MAX_URL_BYTES,
};
use serde::{Deserialize, Deserializer, Serialize};

/// A proposed effect, as an agent describes it. Never a shell string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Run a program with an argument vector.
    Exec(Exec),
    /// Read a file's contents.
    FileRead {
        /// Path of the file; relative paths need a working directory.
        path: String,
    },
    /// Write a file. The content is bound by its SHA-256 digest, so a permit
    /// for one content cannot be used to write another.
    FileWrite {
        /// Path of the file; relative paths need a working directory.
        path: String,
        /// SHA-256 of the exact bytes to be written.
        content_sha256: Digest,
        /// Number of bytes to be written.
        size: u64,
        /// How the file is opened.
        mode: WriteMode,
    },
    /// Delete a file or an empty directory.
    FileDelete {
        /// Path of the file; relative paths need a working directory.
        path: String,
    },
    /// Open a network connection.
    NetConnect {
        /// Host name or IP address.
        host: String,
        /// Port, 1 to 65535.
        port: u16,
    },
    /// Make an HTTP request.
    Http {
        /// Method token, such as `GET`.
        method: String,
        /// Absolute `http` or `https` URL.
        url: String,
    },
    /// Call a tool (MCP-shaped: a name and a JSON input).
    ToolCall {
        /// Tool name.
        name: String,
        /// JSON text of the input.
        input: String,
    },
    /// An application-defined action.
    Custom {
        /// Kind name: lowercase ASCII letters, digits, `_`, `-`, `.` and `:`.
        kind: String,
        /// Free-form payload the policy can match on.
        payload: String,
    },
    /// A Model Context Protocol request other than a tool call (which is
    /// an [`Action::ToolCall`]): a JSON-RPC method and its parameters, and
    /// which side of the connection asks. Policies name it
    /// `Action::"mcp_request"` when the agent asks its MCP server and
    /// `Action::"mcp_server_request"` when the server asks the agent, so a
    /// permit for one never covers the other.
    McpRequest {
        /// Who sends the request.
        from: McpPeer,
        /// The JSON-RPC method, such as `resources/read`: visible ASCII.
        method: String,
        /// JSON text of the parameters, an object (`{}` when there are
        /// none).
        params: String,
    },
}

/// The two sides of an MCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum McpPeer {
    /// The agent, the MCP client.
    Agent,
    /// The MCP server.
    Server,
}

/// How a [`Action::FileWrite`] opens its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteMode {
    /// Create a new file; fail if it exists.
    CreateNew,
    /// Create or truncate, then write.
    Overwrite,
    /// Create if needed, then append.
    Append,
    /// A writable descriptor handed to a program that does its own writes
    /// (an agent governed at the system-call boundary): the content is not
    /// known when deciding, so `size` is [`DESCRIPTOR_WRITE_SIZE`] (a
    /// policy that bounds `context.size` denies it) and `content_sha256`
    /// is all zeros.
    Descriptor,
    /// A symbolic link created at `path` (an agent governed at the
    /// system-call boundary): the content is the link's target, as text.
    /// Opening through the link is decided on where it leads, not here.
    Symlink,
    /// A second name (hard link) created at `path` for an existing file:
    /// no content (`size` 0, digest all zeros). The existing file's read
    /// and write are decided alongside, since the new name reaches it.
    HardLink,
    /// A change of the metadata of the file at `path` (permission bits,
    /// owner, times, extended attributes): no content (`size` 0, digest
    /// all zeros).
    Metadata,
    /// A connection to the Unix socket at `path` (an agent governed at
    /// the system-call boundary): what will be sent over it is not known
    /// when deciding, so, as for [`WriteMode::Descriptor`], `size` is
    /// [`DESCRIPTOR_WRITE_SIZE`] and `content_sha256` is all zeros.
    Connect,
}

/// The `size` of a [`WriteMode::Descriptor`] write: the largest policy
/// integer, since the amount is unbounded.
pub const DESCRIPTOR_WRITE_SIZE: u64 = i64::MAX as u64;

impl WriteMode {
    /// The name policies see in `context.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateNew => "create_new",
            Self::Overwrite => "overwrite",
            Self::Append => "append",
            Self::Descriptor => "descriptor",
            Self::Symlink => "symlink",
            Self::HardLink => "hard_link",
            Self::Metadata => "metadata",
            Self::Connect => "connect",
        }
    }

    /// Whether the broker writes content in this mode (a client's file
    /// write); the other modes are effects of a governed agent's own
    /// system calls.
    pub fn writes_content(self) -> bool {
        matches!(self, Self::CreateNew | Self::Overwrite | Self::Append)
    }

    /// Whether what this mode writes is unknown when deciding (a
    /// descriptor, a connection): such a write has `size`
    /// [`DESCRIPTOR_WRITE_SIZE`] and an all-zero digest, and no other
    /// write has.
    pub fn is_unbounded(self) -> bool {
        matches!(self, Self::Descriptor | Self::Connect)
    }
}

/// Running a program. The program is an absolute path (the client resolves
/// bare names through `PATH` before canonicalisation); the environment is
/// exactly the listed variables, nothing inherited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// The program: absolute, or relative to `cwd` if it contains a `/`.
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Working directory; `None` takes the canonicalisation base.
    pub cwd: Option<String>,
    /// Environment variables the program gets, and no others.
    pub env: Vec<(String, String)>,
}

impl Exec {
    /// A program with no arguments, no environment and the default working
    /// directory.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
        }
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Adds one environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

impl Action {
    /// An [`Action::Exec`].
    pub fn exec(exec: Exec) -> Self {
        Self::Exec(exec)
    }

    /// An [`Action::FileRead`].
    pub fn file_read(path: impl Into<String>) -> Self {
        Self::FileRead { path: path.into() }
    }

    /// An [`Action::FileWrite`] that overwrites `path` with exactly `content`.
    pub fn file_write(path: impl Into<String>, content: &[u8]) -> Self {
        Self::FileWrite {
            path: path.into(),
            content_sha256: Digest::of_content(content),
            size: u64::try_from(content.len()).unwrap_or(u64::MAX),
            mode: WriteMode::Overwrite,
        }
    }

    /// An [`Action::FileWrite`] for a writable descriptor on `path`, whose
    /// content is not known in advance (see [`WriteMode::Descriptor`]).
    pub fn file_write_descriptor(path: impl Into<String>) -> Self {
        Self::FileWrite {
            path: path.into(),
            content_sha256: Digest([0; 32]),
            size: DESCRIPTOR_WRITE_SIZE,
            mode: WriteMode::Descriptor,
        }
    }

    /// An [`Action::FileWrite`] creating a symbolic link at `path` that
    /// points to `target` (see [`WriteMode::Symlink`]).
    pub fn file_symlink(path: impl Into<String>, target: &str) -> Self {
        Self::FileWrite {
            path: path.into(),
            content_sha256: Digest::of_content(target.as_bytes()),
            size: u64::try_from(target.len()).unwrap_or(u64::MAX),
            mode: WriteMode::Symlink,
        }
    }

    /// An [`Action::FileWrite`] of a connection to the Unix socket at
    /// `path` (see [`WriteMode::Connect`]).
    pub fn file_connect(path: impl Into<String>) -> Self {
        Self::FileWrite {
            path: path.into(),
            content_sha256: Digest([0; 32]),
            size: DESCRIPTOR_WRITE_SIZE,
            mode: WriteMode::Connect,
        }
    }

    /// An [`Action::FileWrite`] without content, in `mode`
    /// ([`WriteMode::HardLink`] or [`WriteMode::Metadata`]).
    pub fn file_write_without_content(path: impl Into<String>, mode: WriteMode) -> Self {
        Self::FileWrite {
            path: path.into(),
            content_sha256: Digest([0; 32]),
            size: 0,
            mode,
        }
    }

    /// An [`Action::FileDelete`].
    pub fn file_delete(path: impl Into<String>) -> Self {
        Self::FileDelete { path: path.into() }
    }

    /// An [`Action::NetConnect`].
    pub fn net_connect(host: impl Into<String>, port: u16) -> Self {
        Self::NetConnect {
            host: host.into(),
            port,
        }
    }

    /// An [`Action::Http`].
    pub fn http(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self::Http {
            method: method.into(),
            url: url.into(),
        }
    }

    /// An [`Action::ToolCall`] with a JSON input.
    pub fn tool_call(name: impl Into<String>, input: &serde_json::Value) -> Self {
        Self::ToolCall {
            name: name.into(),
            input: input.to_string(),
        }
    }

    /// An [`Action::McpRequest`] from `from` with JSON parameters.
    pub fn mcp_request(
        from: McpPeer,
        method: impl Into<String>,
        params: &serde_json::Value,
    ) -> Self {
        Self::McpRequest {
            from,
            method: method.into(),
            params: params.to_string(),
        }
    }

    /// An [`Action::Custom`].
    pub fn custom(kind: impl Into<String>, payload: impl Into<String>) -> Self {
        Self::Custom {
            kind: kind.into(),
            payload: payload.into(),
        }
    }

    /// The name policies use for this kind of action (`Action::"exec"` ...).
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Exec(_) => ActionKind::Exec,
            Self::FileRead { .. } => ActionKind::FileRead,
            Self::FileWrite { .. } => ActionKind::FileWrite,
            Self::FileDelete { .. } => ActionKind::FileDelete,
            Self::NetConnect { .. } => ActionKind::NetConnect,
            Self::Http { .. } => ActionKind::Http,
            Self::ToolCall { .. } => ActionKind::ToolCall,
            Self::Custom { .. } => ActionKind::Custom,
            Self::McpRequest {
                from: McpPeer::Agent,
                ..
            } => ActionKind::McpRequest,
            Self::McpRequest {
                from: McpPeer::Server,
                ..
            } => ActionKind::McpServerRequest,
        }
    }
}

/// The kinds of action, as policies name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// `Action::"exec"`
    Exec,
    /// `Action::"file_read"`
    FileRead,
    /// `Action::"file_write"`
    FileWrite,
    /// `Action::"file_delete"`
    FileDelete,
    /// `Action::"net_connect"`
    NetConnect,
    /// `Action::"http"`
    Http,
    /// `Action::"tool_call"`
    ToolCall,
    /// `Action::"custom"`
    Custom,
    /// `Action::"mcp_request"`: an MCP request from the agent to its
    /// server.
    McpRequest,
    /// `Action::"mcp_server_request"`: an MCP request from the server to
    /// the agent.
    McpServerRequest,
}

impl ActionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 10] = [
        Self::Exec,
        Self::FileRead,
        Self::FileWrite,
        Self::FileDelete,
        Self::NetConnect,
        Self::Http,
        Self::ToolCall,
        Self::Custom,
        Self::McpRequest,
        Self::McpServerRequest,
    ];

    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::FileRead => "file_read",
            Self::FileWrite => "file_write",
            Self::FileDelete => "file_delete",
            Self::NetConnect => "net_connect",
            Self::Http => "http",
            Self::ToolCall => "tool_call",
            Self::Custom => "custom",
            Self::McpRequest => "mcp_request",
            Self::McpServerRequest => "mcp_server_request",
        }
    }
}

/// Why an action could not be canonicalised. Such an action is denied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// A relative path was given and there is no working directory to
    /// resolve it against.
    #[error("relative path `{0}` needs a working directory: give an absolute path")]
    RelativePathWithoutCwd(String),
    /// A field contains a NUL byte.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// The field.
        field: &'static str,
    },
    /// A required field is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A field is over its documented size limit.
    #[error("{field} is {size} bytes or items, over the limit of {limit}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A bare program name was given; the kernel decides on absolute paths.
    #[error("program `{0}` is not a path: resolve it through `PATH` first")]
    ProgramNotResolved(String),
    /// The working directory or canonicalisation base is not absolute.
    #[error("working directory `{0}` is not absolute")]
    RelativeCwd(String),
    /// An environment variable name is invalid or repeated.
    #[error("environment variable name `{0}` is invalid or repeated")]
    BadEnvName(String),
    /// The host is not a valid host name or IP address.
    #[error("host `{0}` is not a valid host name or address")]
    BadHost(String),
    /// Port zero is not a destination.
    #[error("port 0 is not a valid destination")]
    BadPort,
    /// A write's mode does not match its content binding: a descriptor
    /// or connection write has the unbound size and digest, and no other
    /// write has them.
    #[error("a descriptor or connection write has unbound content, and only such a write has")]
    InconsistentWrite,
    /// The URL does not parse, is not http(s), or has no host.
    #[error("url `{url}` is not usable: {why}")]
    BadUrl {
        /// The URL as given (cut to 200 bytes).
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The HTTP method is not an upper-case token.
    #[error("http method `{0}` is not an upper-case token such as `GET`")]
    BadMethod(String),
    /// A tool input or MCP parameters are not JSON (or, for MCP
    /// parameters, not an object); the text says which and why.
    #[error("{0}")]
    BadJson(String),
    /// A name has characters outside its allowed set.
    #[error("{field} `{value}` has characters outside the allowed set")]
    BadName {
        /// The field.
        field: &'static str,
        /// The value (cut to 200 bytes).
        value: String,
    },
    /// A decoded action was not in canonical form.
    #[error("action is not in canonical form")]
    NotCanonical,
}

/// An action in canonical form: the only thing the kernel decides on.
///
/// Made by [`CanonicalAction::new`] or by decoding, which refuses any action
/// that is not already canonical. Serialises as the inner [`Action`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CanonicalAction(Action);

impl CanonicalAction {
    /// Canonicalises `action`. Relative paths are resolved against `base`
    /// (an absolute directory), and refused when there is none.
    pub fn new(action: Action, base: Option<&str>) -> Result<Self, ActionError> {
        let base = match base {
            Some(base) => Some(normalize_absolute(base, "working directory")?),
            None => None,
        };
        let base = base.as_deref();
        let canonical = match action {
            Action::Exec(exec) => Action::Exec(canonical_exec(exec, base)?),
            Action::FileRead { path } => Action::FileRead {
                path: canonical_path(&path, base)?,
            },
            Action::FileWrite {
                path,
                content_sha256,
                size,
                mode,
            } => {
                let unbound = size == DESCRIPTOR_WRITE_SIZE && content_sha256 == Digest([0; 32]);
                if mode.is_unbounded() != unbound {
                    return Err(ActionError::InconsistentWrite);
                }
                Action::FileWrite {
                    path: canonical_path(&path, base)?,
                    content_sha256,
                    size,
                    mode,
                }
            }
            Action::FileDelete { path } => Action::FileDelete {
                path: canonical_path(&path, base)?,
            },
            Action::NetConnect { host, port } => {
                if port == 0 {
                    return Err(ActionError::BadPort);
                }
                Action::NetConnect {
                    host: canonical_host(&host)?,
                    port,
                }
            }
            Action::Http { method, url } => Action::Http {
                method: canonical_method(&method)?,
                url: canonical_url(&url)?,
            },
            Action::ToolCall { name, input } => Action::ToolCall {
                name: canonical_name("tool name", &name, false)?,
                input: canonical_json("tool input", &input)?,
            },
            Action::Custom { kind, payload } => Action::Custom {
                kind: canonical_name("custom kind", &kind, true)?,
                payload: {
                    check_text("custom payload", &payload, MAX_PAYLOAD_BYTES)?;
                    payload
                },
            },
            Action::McpRequest {
                from,
                method,
                params,
            } => Action::McpRequest {
                from,
                method: canonical_mcp_method(&method)?,
                params: {
                    let params = canonical_json("mcp params", &params)?;
                    if !params.starts_with('{') {
                        return Err(ActionError::BadJson(
                            "mcp params are not a json object".into(),
                        ));
                    }
                    params
                },
            },
        };
        Ok(Self(canonical))
    }

    /// The canonical action.
    pub fn action(&self) -> &Action {
        &self.0
    }

    /// The kind of action.
    pub fn kind(&self) -> ActionKind {
        self.0.kind()
    }

    /// SHA-256 of the action's canonical encoding (tag
    /// `agent-kernel/action/v1`): the same for every request that proposes
    /// this exact action, whatever its sequence number, nonce or deadline.
    pub fn digest(&self) -> Digest {
        let bytes = postcard::to_stdvec(&self.0).unwrap_or_default();
        Digest::tagged(b"agent-kernel/action/v1\n", &bytes)
    }
}

impl<'de> Deserialize<'de> for CanonicalAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let action = Action::deserialize(deserializer)?;
        let canonical =
            CanonicalAction::new(action.clone(), None).map_err(serde::de::Error::custom)?;
        if canonical.0 != action {
            return Err(serde::de::Error::custom(ActionError::NotCanonical));
        }
        Ok(canonical)
    }
}

fn check_text(field: &'static str, value: &str, limit: usize) -> Result<(), ActionError> {
    if value.len() > limit {
        return Err(ActionError::TooLarge {
            field,
            size: value.len(),
            limit,
        });
    }
    if value.contains('\0') {
        return Err(ActionError::NulByte { field });
    }
    Ok(())
}

fn cut(value: &str) -> String {
    let mut end = value.len().min(200);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}

/// Lexically normalises an absolute path: collapses `//`, drops `.`,
/// resolves `..` (which stops at `/`). Does not touch the filesystem, so it
/// does not resolve symbolic links; the broker refuses to follow links it
/// did not decide on.
fn normalize_absolute(path: &str, field: &'static str) -> Result<String, ActionError> {
    check_text(field, path, MAX_PATH_BYTES)?;
    if path.is_empty() {
        return Err(ActionError::Empty { field });
    }
    if !path.starts_with('/') {
        return Err(ActionError::RelativeCwd(cut(path)));
    }
    Ok(normalize_components(path))
}

fn normalize_components(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Canonical form of a path: absolute (joined to `base` when relative) and
/// lexically normalised.
pub fn canonical_path(path: &str, base: Option<&str>) -> Result<String, ActionError> {
    check_text("path", path, MAX_PATH_BYTES)?;
    if path.is_empty() {
        return Err(ActionError::Empty { field: "path" });
    }
    let joined;
    let absolute = if path.starts_with('/') {
        path
    } else {
        let base = base.ok_or_else(|| ActionError::RelativePathWithoutCwd(cut(path)))?;
        joined = format!("{base}/{path}");
        &joined
    };
    let normal = normalize_components(absolute);
    if normal.len() > MAX_PATH_BYTES {
        return Err(ActionError::TooLarge {
            field: "path",
            size: normal.len(),
            limit: MAX_PATH_BYTES,
        });
    }
    Ok(normal)
}

fn canonical_exec(exec: Exec, base: Option<&str>) -> Result<Exec, ActionError> {
    let Exec {
        program,
        args,
        cwd,
        env,
    } = exec;
    check_text("program", &program, MAX_PATH_BYTES)?;
    if program.is_empty() {
        return Err(ActionError::Empty { field: "program" });
    }
    let cwd = match cwd {
        Some(cwd) => canonical_path(&cwd, base)?,
        None => base
            .map(str::to_owned)
            .ok_or_else(|| ActionError::RelativePathWithoutCwd(".".to_owned()))?,
    };
    if !program.contains('/') {
        return Err(ActionError::ProgramNotResolved(cut(&program)));
    }
    let program = canonical_path(&program, Some(&cwd))?;
    if args.len() > MAX_ARGS {
        return Err(ActionError::TooLarge {
            field: "args",
            size: args.len(),
            limit: MAX_ARGS,
        });
    }
    for arg in &args {
        check_text("argument", arg, MAX_ARG_BYTES)?;
    }
    if env.len() > MAX_ENV_VARS {
        return Err(ActionError::TooLarge {
            field: "env",
            size: env.len(),
            limit: MAX_ENV_VARS,
        });
    }
    let mut env = env;
    for (name, value) in &env {
        check_text("environment name", name, MAX_NAME_BYTES)?;
        check_text("environment value", value, MAX_ARG_BYTES)?;
        if name.is_empty() || name.contains('=') {
            return Err(ActionError::BadEnvName(cut(name)));
        }
    }
    env.sort();
    if env.windows(2).any(|pair| match pair {
        [a, b] => a.0 == b.0,
        _ => false,
    }) {
        let repeated = env
            .windows(2)
            .find_map(|pair| match pair {
                [a, b] if a.0 == b.0 => Some(a.0.clone()),
                _ => None,
            })
            .unwrap_or_default();
        return Err(ActionError::BadEnvName(cut(&repeated)));
    }
    Ok(Exec {
        program,
        args,
        cwd: Some(cwd),
        env,
    })
}

/// Canonical host: lowercase, IDNA (punycode) for non-ASCII names, no
/// trailing dot, IPv6 in brackets.
pub fn canonical_host(host: &str) -> Result<String, ActionError> {
    check_text("host", host, MAX_HOST_BYTES)?;
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() {
        return Err(ActionError::Empty { field: "host" });
    }
    let parsed = url::Host::parse(trimmed).map_err(|_| ActionError::BadHost(cut(host)))?;
    let text = parsed.to_string();
    if text.len() > MAX_HOST_BYTES || text.ends_with('.') {
        return Err(ActionError::BadHost(cut(host)));
    }
    Ok(text)
}

fn canonical_method(method: &str) -> Result<String, ActionError> {
    if method.is_empty()
        || method.len() > MAX_METHOD_BYTES
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(ActionError::BadMethod(cut(method)));
    }
    Ok(method.to_owned())
}

/// RFC 3986 §6.2.2 normalisation of a URL path: percent-encoded
/// unreserved characters are decoded, other percent-encodings get
/// upper-case hex. Paths whose meaning servers disagree on are refused:
/// empty segments (`//`) and encoded `/`, `\` or `%` (`%2F`, `%5C`,
/// `%25`), which some servers decode before routing and some after.
fn normalize_url_path(path: &str) -> Result<String, &'static str> {
    if path.contains("//") {
        return Err("empty path segments (`//`) are ambiguous");
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte != b'%' {
            out.push(char::from(byte));
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("a malformed percent-encoding")?;
        match hex {
            b'/' | b'\\' | b'%' => {
                return Err("an encoded `/`, `\\` or `%` in the path is ambiguous");
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

fn canonical_url(url: &str) -> Result<String, ActionError> {
    check_text("url", url, MAX_URL_BYTES)?;
    let bad = |why: &str| ActionError::BadUrl {
        url: cut(url),
        why: why.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    if host.ends_with('.') {
        return Err(bad("host ends with a dot"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials in a url are refused"));
    }
    // One path, one spelling: a policy on `/admin` must also see
    // `/%61dmin` and `/x/%2e%2e/admin`, which servers treat as `/admin`.
    let path = normalize_url_path(parsed.path()).map_err(bad)?;
    let mut parsed = parsed;
    if path != parsed.path() {
        parsed.set_path(&path);
        // Decoding may have formed dot segments: parse again to resolve
        // them, and check the result is stable.
        parsed = url::Url::parse(parsed.as_str()).map_err(|e| bad(&e.to_string()))?;
        if normalize_url_path(parsed.path()).map_err(bad)? != parsed.path() {
            return Err(bad("the path has no stable canonical form"));
        }
    }
    let text = String::from(parsed);
    if text.len() > MAX_URL_BYTES {
        return Err(ActionError::TooLarge {
            field: "url",
            size: text.len(),
            limit: MAX_URL_BYTES,
        });
    }
    Ok(text)
}

fn canonical_name(field: &'static str, name: &str, strict: bool) -> Result<String, ActionError> {
    check_text(field, name, MAX_NAME_BYTES)?;
    if name.is_empty() {
        return Err(ActionError::Empty { field });
    }
    let allowed = |c: char| {
        if strict {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | ':')
        } else {
            !c.is_control() && !c.is_whitespace()
        }
    };
    if !name.chars().all(allowed) {
        return Err(ActionError::BadName {
            field,
            value: cut(name),
        });
    }
    Ok(name.to_owned())
}

/// A JSON-RPC method name as MCP uses them: visible ASCII only, so no
/// two spellings look alike or differ in whitespace.
fn canonical_mcp_method(method: &str) -> Result<String, ActionError> {
    let field = "mcp method";
    check_text(field, method, MAX_NAME_BYTES)?;
    if method.is_empty() {
        return Err(ActionError::Empty { field });
    }
    if !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ActionError::BadName {
            field,
            value: cut(method),
        });
    }
    Ok(method.to_owned())
}

fn canonical_json(field: &'static str, input: &str) -> Result<String, ActionError> {
    check_text(field, input, MAX_PAYLOAD_BYTES)?;
    let value = crate::json::parse_strict(input)
        .map_err(|e| ActionError::BadJson(format!("{field} is not valid json: {e}")))?;
    let text = sort_keys(value).to_string();
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(ActionError::TooLarge {
            field,
            size: text.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(text)
}

/// Rebuilds every object with its keys inserted in sorted order, so the
/// text form is sorted whether or not serde_json's `preserve_order`
/// feature is enabled somewhere in the dependency graph.
fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sort_keys(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn canon(action: Action) -> Result<Action, ActionError> {
        CanonicalAction::new(action, Some("/home/dev/project")).map(|c| c.0)
    }

    #[test]
    fn only_descriptor_and_connection_writes_have_unbound_content() {
        for (mode, unbounded) in [
            (WriteMode::CreateNew, false),
            (WriteMode::Overwrite, false),
            (WriteMode::Append, false),
            (WriteMode::Descriptor, true),
            (WriteMode::Symlink, false),
            (WriteMode::HardLink, false),
            (WriteMode::Metadata, false),
            (WriteMode::Connect, true),
        ] {
            let write = |size, content_sha256| Action::FileWrite {
                path: "/s".into(),
                content_sha256,
                size,
                mode,
            };
            let unbound = write(DESCRIPTOR_WRITE_SIZE, Digest([0; 32]));
            let bound = write(0, Digest([0; 32]));
            assert_eq!(canon(unbound).is_ok(), unbounded, "{mode:?}");
            assert_eq!(canon(bound).is_ok(), !unbounded, "{mode:?}");
        }
        assert!(canon(Action::file_connect("/run/a.sock")).is_ok());
    }

    #[test]
    fn paths_are_absolute_and_normalised() {
        assert_eq!(
            canon(Action::file_read("src/../src/./main.rs")).unwrap(),
            Action::file_read("/home/dev/project/src/main.rs")
        );
        assert_eq!(
            canon(Action::file_read("//etc///passwd/")).unwrap(),
            Action::file_read("/etc/passwd")
        );
        assert_eq!(
            canon(Action::file_read("/../../..")).unwrap(),
            Action::file_read("/")
        );
        assert_eq!(
            canon(Action::file_read("../../../../root/.ssh/id_ed25519")).unwrap(),
            Action::file_read("/root/.ssh/id_ed25519")
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(
            CanonicalAction::new(Action::file_read("a.txt"), None),
            Err(ActionError::RelativePathWithoutCwd("a.txt".into()))
        );
        assert_eq!(
            canon(Action::file_read("/etc/pass\0wd")),
            Err(ActionError::NulByte { field: "path" })
        );
        assert_eq!(
            canon(Action::exec(Exec::new(""))),
            Err(ActionError::Empty { field: "program" })
        );
        assert_eq!(
            canon(Action::exec(Exec::new("ls"))),
            Err(ActionError::ProgramNotResolved("ls".into()))
        );
        assert!(matches!(
            canon(Action::http("GET", "not a url")),
            Err(ActionError::BadUrl { .. })
        ));
        assert!(matches!(
            canon(Action::http("GET", "file:///etc/passwd")),
            Err(ActionError::BadUrl { .. })
        ));
        // One path, one spelling.
        let url = |raw: &str| match canon(Action::http("GET", raw)) {
            Ok(Action::Http { url, .. }) => Ok(url),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(url("http://h/%61dmin").as_deref(), Ok("http://h/admin"));
        assert_eq!(
            url("http://h/x/%2e%2E/admin").as_deref(),
            Ok("http://h/admin")
        );
        assert!(url("http://h/%2561dmin").is_err());
        assert_eq!(url("http://h/%2561dmin/../x").as_deref(), Ok("http://h/x"));
        assert_eq!(
            url("http://h/%7euser/%c3%a9").as_deref(),
            Ok("http://h/~user/%C3%A9")
        );
        assert_eq!(url("http://h/a?q=%61").as_deref(), Ok("http://h/a?q=%61"));
        for ambiguous in [
            "http://h//admin",
            "http://h/a%2Fb",
            "http://h/a%5cb",
            "http://h/a%zz",
        ] {
            assert!(
                matches!(
                    canon(Action::http("GET", ambiguous)),
                    Err(ActionError::BadUrl { .. })
                ),
                "{ambiguous}"
            );
        }
        assert!(matches!(
            canon(Action::file_read("/".repeat(MAX_PATH_BYTES + 1))),
            Err(ActionError::TooLarge { .. })
        ));
        assert!(matches!(
            canon(Action::exec(
                Exec::new("/bin/echo").args(vec!["x"; MAX_ARGS + 1])
            )),
            Err(ActionError::TooLarge { .. })
        ));
        assert_eq!(
            canon(Action::net_connect("a.b", 0)),
            Err(ActionError::BadPort)
        );
        assert!(matches!(
            canon(Action::ToolCall {
                name: "t".into(),
                input: "{".into()
            }),
            Err(ActionError::BadJson(_))
        ));
        // One reading or none: two equal keys (or equal but for letter
        // case) would be one value to the kernel and another to the tool.
        for input in [
            r#"{"path":"a","path":"b"}"#,
            r#"{"m":{"path":"a","Path":"b"}}"#,
        ] {
            assert!(
                matches!(
                    canon(Action::ToolCall {
                        name: "t".into(),
                        input: input.into()
                    }),
                    Err(ActionError::BadJson(_))
                ),
                "{input}"
            );
        }
        assert!(matches!(
            canon(Action::exec(
                Exec::new("/bin/env").env("A", "1").env("A", "2")
            )),
            Err(ActionError::BadEnvName(_))
        ));
    }

    #[test]
    fn mcp_requests_have_one_form_and_their_peer_names_the_kind() {
        let request = |from, method: &str, params: &str| Action::McpRequest {
            from,
            method: method.into(),
            params: params.into(),
        };
        assert_eq!(
            canon(request(
                McpPeer::Agent,
                "resources/read",
                r#"{ "uri": "docs://a", "_meta": {} }"#
            ))
            .unwrap(),
            request(
                McpPeer::Agent,
                "resources/read",
                r#"{"_meta":{},"uri":"docs://a"}"#
            )
        );
        assert_eq!(
            request(McpPeer::Agent, "x", "{}").kind(),
            ActionKind::McpRequest
        );
        assert_eq!(
            request(McpPeer::Server, "x", "{}").kind(),
            ActionKind::McpServerRequest
        );
        for (method, params) in [
            ("", "{}"),
            ("resources/ read", "{}"),
            ("resources/read\n", "{}"),
            ("résumé", "{}"),
            ("m", "[1]"),
            ("m", "\"uri\""),
            ("m", r#"{"uri":"a","URI":"b"}"#),
        ] {
            assert!(
                canon(request(McpPeer::Agent, method, params)).is_err(),
                "{method:?} {params}"
            );
        }
    }

    #[test]
    fn hosts_urls_json_and_env_have_one_form() {
        assert_eq!(
            canon(Action::net_connect("Example.COM.", 443)).unwrap(),
            Action::net_connect("example.com", 443)
        );
        assert_eq!(
            canon(Action::net_connect("bücher.de", 443)).unwrap(),
            Action::net_connect("xn--bcher-kva.de", 443)
        );
        assert_eq!(
            canon(Action::http("GET", "HTTPS://Example.com:443/a/../b?x=1")).unwrap(),
            Action::http("GET", "https://example.com/b?x=1")
        );
        assert_eq!(
            canon(Action::ToolCall {
                name: "search".into(),
                input: r#"{ "b": 1, "a": [true, null] }"#.into()
            })
            .unwrap(),
            Action::ToolCall {
                name: "search".into(),
                input: r#"{"a":[true,null],"b":1}"#.into()
            }
        );
        assert_eq!(
            canon(Action::exec(
                Exec::new("./run.sh").env("B", "2").env("A", "1")
            ))
            .unwrap(),
            Action::exec(
                Exec::new("/home/dev/project/run.sh")
                    .cwd("/home/dev/project")
                    .env("A", "1")
                    .env("B", "2")
            )
        );
    }

    #[test]
    fn canonicalisation_is_idempotent_and_decoding_refuses_other_forms() {
        let canonical = CanonicalAction::new(Action::file_read("a/./b"), Some("/w")).unwrap();
        let again = CanonicalAction::new(canonical.action().clone(), None).unwrap();
        assert_eq!(canonical, again);
        let raw = postcard::to_stdvec(&Action::file_read("/w/a/./b")).unwrap();
        assert!(postcard::from_bytes::<CanonicalAction>(&raw).is_err());
        let good = postcard::to_stdvec(&canonical).unwrap();
        assert_eq!(
            postcard::from_bytes::<CanonicalAction>(&good).unwrap(),
            canonical
        );
    }
}
