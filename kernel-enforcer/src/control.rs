//! The operator's control plane: a Unix socket the agent cannot use.
//!
//! The socket lives in the abstract namespace, under a name derived from
//! the configured path (`agent-kernel/control/` and a hash of the absolute
//! path), not as a file. That is what keeps a confined agent out even when
//! it runs as the operator's uid: Landlock does not govern connections to
//! socket files, but its scope forbids a confined process to connect to an
//! abstract socket created outside its domain. Every connection's peer
//! credentials (`SO_PEERCRED`, filled in by the OS kernel, not claimed by
//! the peer) must also carry the operator's uid (by default the enforcer's
//! own effective uid; `--operator-uid` to change). Each connection carries one
//! JSON request line and gets one JSON response line. Who asked (uid and
//! pid from the credentials) is recorded with every halt, approval and
//! reload.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Longest request line accepted, in bytes.
pub const MAX_CONTROL_LINE: u64 = 64 * 1024;
/// Environment variable naming the control socket for the operator CLI.
pub const CONTROL_ENV: &str = "AGENT_KERNEL_CONTROL";

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Halt: deny everything from now on, until restarted.
    Halt {
        /// Why, as the operator says.
        reason: Option<String>,
    },
    /// Report the enforcer's state.
    Status,
    /// List requests waiting for approval.
    Pending,
    /// Approve a waiting request.
    Approve {
        /// Its approval id.
        id: u64,
        /// Also grant the same action for this many seconds.
        for_secs: Option<u64>,
        /// How many requests the grant covers in all.
        uses: Option<u32>,
    },
    /// Reject a waiting request.
    Reject {
        /// Its approval id.
        id: u64,
    },
    /// Load the policy files again.
    Reload,
}

/// The answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request was carried out.
    pub ok: bool,
    /// A readable message.
    pub message: String,
    /// Details (status fields, pending list).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl ControlResponse {
    /// A success.
    pub fn ok(message: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            ok: true,
            message: message.into(),
            data,
        }
    }

    /// A refusal or failure.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
}

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its process id.
    pub pid: i32,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {} (pid {})", self.uid, self.pid)
    }
}

/// The abstract socket name for the control socket configured as `path`.
fn address(path: &Path) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use sha2::Digest as _;
    use std::os::linux::net::SocketAddrExt;
    let absolute = std::path::absolute(path)?;
    let hash = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let hex: String = hash
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    std::os::unix::net::SocketAddr::from_abstract_name(format!("agent-kernel/control/{hex}"))
}

/// Binds the control socket named by `path` (in the abstract namespace;
/// no file is created). Fails if another enforcer already holds it.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    UnixListener::bind_addr(&address(path)?)
}

/// Serves connections until the listener fails, answering each request
/// with `handle`. Connections from any uid other than `operator_uid` are
/// refused before their request is read.
pub fn serve(
    listener: &UnixListener,
    operator_uid: u32,
    handle: impl Fn(ControlRequest, Peer) -> ControlResponse,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = serve_one(stream, operator_uid, &handle);
    }
}

fn serve_one(
    mut stream: UnixStream,
    operator_uid: u32,
    handle: &impl Fn(ControlRequest, Peer) -> ControlResponse,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let credentials = rustix::net::sockopt::socket_peercred(&stream)?;
    let peer = Peer {
        uid: credentials.uid.as_raw(),
        pid: credentials.pid.as_raw_nonzero().get(),
    };
    // The (bounded) request line is read before the credentials decide,
    // so a refused peer reads a refusal instead of a broken pipe; it is
    // parsed only for the operator.
    let mut line = String::new();
    BufReader::new(Read::by_ref(&mut stream).take(MAX_CONTROL_LINE)).read_line(&mut line)?;
    let response = if peer.uid == operator_uid {
        match serde_json::from_str::<ControlRequest>(&line) {
            Ok(request) => handle(request, peer),
            Err(e) => ControlResponse::error(format!("malformed request: {e}")),
        }
    } else {
        ControlResponse::error(format!(
            "refused: {peer} is not the operator (uid {operator_uid})"
        ))
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// Sends one request to the control socket at `path` and returns the
/// response: what the operator commands use.
pub fn request(path: &Path, request: &ControlRequest) -> Result<ControlResponse, String> {
    let mut stream = address(path)
        .and_then(|address| UnixStream::connect_addr(&address))
        .map_err(|e| {
            format!(
                "cannot reach the enforcer's control socket `{}`: {e}",
                path.display()
            )
        })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("control socket: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_CONTROL_LINE * 16))
        .read_line(&mut answer)
        .map_err(|e| format!("control socket: {e}"))?;
    serde_json::from_str(&answer).map_err(|e| format!("malformed answer from the enforcer: {e}"))
}
