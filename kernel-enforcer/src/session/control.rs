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
//!
//! The operator authenticates the enforcer it reaches, so that a process
//! that got hold of the name (or replays an old answer) cannot pass for
//! it:
//! - the enforcer binds the name before the agent starts, and writes its
//!   public key to a file at the configured path itself (the name is
//!   abstract, so the path is otherwise unused);
//! - each request carries a fresh 32-byte challenge, and each answer is
//!   the exact text of the [`ControlResponse`] with the enforcer's
//!   signature over it and the challenge
//!   ([`kernel_core::sign_control_reply`]);
//! - the operator's side ([`request`]) reads the key from that file (or
//!   takes one the operator gives), checks that the server's credentials
//!   carry the uid that owns the key file, and accepts only an answer that
//!   verifies. An answer that does not is an error, never a success.
//!
//! An enforcer that ends halted leaves a record of it beside the key file
//! (`PATH.halted`, signed by its key; see [`HaltRecord`]), so that a
//! `halt` after it has gone is told "already halted" rather than that
//! nothing answers. A new enforcer removes the record when it binds the
//! name; the halt itself lives only in the halted process, which never
//! un-halts.

use kernel_core::{
    SigningKey, VerifyingKey, format_public_key, hex, sign_control_reply, unhex,
    verify_control_reply,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
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

/// Why the control socket could not be set up, or an operator's request
/// got no authentic answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The name is taken: another enforcer (or an impostor) holds it.
    #[error(
        "the control socket `{path}` is already held by another process ({source}): \
         choose another --control path, or stop what holds it"
    )]
    InUse {
        /// The configured path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key file at the configured path could not be written.
    #[error("cannot write the enforcer's key to the control path `{path}`: {source}")]
    WriteKey {
        /// The configured path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key file at the configured path could not be used.
    #[error(
        "cannot authenticate the enforcer at `{path}`: {why} \
         (is an enforcer running with this control path? or pass its key with --pubkey)"
    )]
    Key {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Nothing answers on the name.
    #[error("cannot reach the enforcer's control socket `{path}`: {source}")]
    Unreachable {
        /// The configured path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// What answers runs as another user than the key file's owner.
    #[error(
        "refusing the answer on `{path}`: the process there runs as uid {found} (pid {pid}), \
         but the enforcer's key file belongs to uid {expected}"
    )]
    WrongUser {
        /// The configured path.
        path: PathBuf,
        /// The uid the key file's owner has.
        expected: u32,
        /// The uid the answering process has.
        found: u32,
        /// The answering process.
        pid: i32,
    },
    /// The answer is not signed by the enforcer's key over this request.
    #[error(
        "refusing the answer on `{path}`: it is not signed by the enforcer's key {key} \
         (something other than the enforcer may hold its control socket; nothing it \
         says is shown)"
    )]
    NotAuthentic {
        /// The configured path.
        path: PathBuf,
        /// The expected key.
        key: String,
    },
    /// The request was refused before it was read (an unsigned answer: a
    /// failure whoever sent it).
    #[error("the control socket `{path}` refused the request (unauthenticated answer): {message}")]
    Refused {
        /// The configured path.
        path: PathBuf,
        /// What the refusal said.
        message: String,
    },
    /// The conversation failed.
    #[error("control socket `{path}`: {source}")]
    Io {
        /// The configured path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The answer could not be read.
    #[error("malformed answer on the control socket `{path}`: {why}")]
    Malformed {
        /// The configured path.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// The abstract socket address of the control socket configured as
/// `path`: `agent-kernel/control/` and the first 16 bytes of the SHA-256
/// of the absolute path, in hex.
pub fn socket_address(path: &Path) -> std::io::Result<std::os::unix::net::SocketAddr> {
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

/// A request as it travels: the command and the operator's challenge.
#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(flatten)]
    request: ControlRequest,
    /// 32 bytes, hex.
    challenge: String,
}

/// An answer as it travels: the exact text of a [`ControlResponse`] and,
/// when the request carried a challenge, the enforcer's signature over
/// both.
#[derive(Serialize, Deserialize)]
struct SignedAnswer {
    reply: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// The enforcer's end of the control plane: the name, bound, and the key
/// that signs every answer.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    key: SigningKey,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds the control socket named by `path` (in the abstract
    /// namespace) and writes `key`'s public half to the file at `path`
    /// (replaced atomically, mode 0644), for operators to authenticate
    /// the answers. Call it before the agent starts, so that the agent
    /// cannot take the name first. Refuses a name that is already held.
    pub fn bind(path: &Path, key: &SigningKey) -> Result<Self, ControlError> {
        let listener = socket_address(path)
            .and_then(|address| UnixListener::bind_addr(&address))
            .map_err(|source| ControlError::InUse {
                path: path.to_owned(),
                source,
            })?;
        crate::session::keys::write_public(path, &key.verifying_key()).map_err(|source| {
            ControlError::WriteKey {
                path: path.to_owned(),
                source,
            }
        })?;
        // This enforcer is not halted: a record an earlier one left at
        // this path says nothing about it.
        let record = halt_record_path(path);
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ControlError::WriteKey {
                    path: record,
                    source,
                });
            }
        }
        Ok(Self {
            listener,
            key: key.clone(),
            path: path.to_owned(),
        })
    }

    /// Another handle on the same socket, for a serving thread.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self {
            listener: self.listener.try_clone()?,
            key: self.key.clone(),
            path: self.path.clone(),
        })
    }

    /// The configured path (where the key file is).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the signed record that the enforcer at this path ended
    /// halted, for `cause`, at [`halt_record_path`] (replaced atomically,
    /// mode 0644).
    pub fn record_halt(&self, session: &str, cause: &str) -> std::io::Result<()> {
        use ed25519_dalek::Signer as _;
        let absolute = std::path::absolute(&self.path)?;
        let halt = HaltRecord {
            control: absolute.to_string_lossy().into_owned(),
            session: session.to_owned(),
            cause: cause.to_owned(),
            at_ms: kernel_core::now_ms(),
        };
        let text = serde_json::to_string(&halt).map_err(std::io::Error::other)?;
        let signature = self.key.sign(&halt_message(&text));
        let file = SignedHaltRecord {
            halt: text,
            signature: hex(&signature.to_bytes()),
        };
        let mut contents = serde_json::to_string(&file).map_err(std::io::Error::other)?;
        contents.push('\n');
        crate::session::keys::write_readable(&halt_record_path(&self.path), contents.as_bytes())
    }

    /// Serves connections until the listener fails, answering each request
    /// with `handle`. A connection from any uid other than `operator_uid`
    /// is refused at once, before anything is read from it; the operator's
    /// are served each on a thread of its own (at most
    /// [`MAX_CONTROL_CONNECTIONS`] at once), with [`CONTROL_PATIENCE`] for
    /// the whole request line, so that no peer can hold the control plane.
    pub fn serve(
        self,
        operator_uid: u32,
        handle: impl Fn(ControlRequest, Peer) -> ControlResponse + Sync,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let open = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for stream in self.listener.incoming() {
                let Some(mut stream) = accepted(stream) else {
                    continue;
                };
                let Ok(credentials) = rustix::net::sockopt::socket_peercred(&stream) else {
                    continue;
                };
                let peer = Peer {
                    uid: credentials.uid.as_raw(),
                    pid: credentials.pid.as_raw_nonzero().get(),
                };
                if peer.uid != operator_uid {
                    let _ = refuse(
                        &mut stream,
                        &format!("refused: {peer} is not the operator (uid {operator_uid})"),
                    );
                    continue;
                }
                if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONTROL_CONNECTIONS {
                    open.fetch_sub(1, Ordering::SeqCst);
                    let _ = refuse(&mut stream, "refused: too many control connections at once");
                    continue;
                }
                let (key, handle, served) = (&self.key, &handle, &open);
                // Approvals decide and reloads load policy: a decider's
                // stack. One that cannot start closes the connection.
                let started = kernel_policy::spawn_scoped_decider(scope, "control", move || {
                    let _ = serve_one(stream, peer, key, handle);
                    served.fetch_sub(1, Ordering::SeqCst);
                });
                if started.is_err() {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }
}

/// Pause after an `accept` that failed, before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What an accept loop got: the connection, or `None` after a failure,
/// past which the loop goes on. A failure other than an interruption
/// (out of descriptors, say) is followed by [`ACCEPT_BACKOFF`], so the
/// loop waits instead of spinning on it.
pub(crate) fn accepted<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(accepted) => Some(accepted),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::Interrupted {
                std::thread::sleep(ACCEPT_BACKOFF);
            }
            None
        }
    }
}

/// Most operator connections served at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 16;
/// How long a connection has to send its whole request line.
pub const CONTROL_PATIENCE: Duration = Duration::from_secs(5);

/// Answers a peer that is refused before anything is read, unsigned: a
/// refusal is a failure whoever sends it, so it needs no authentication.
fn refuse(stream: &mut UnixStream, why: &str) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let answer = SignedAnswer {
        reply: serde_json::to_string(&ControlResponse::error(why)).unwrap_or_default(),
        signature: None,
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// Reads one line of at most [`MAX_CONTROL_LINE`] bytes, all of it within
/// [`CONTROL_PATIENCE`] (a peer sending a byte now and then does not
/// extend it).
fn read_line_in_time(stream: &mut UnixStream) -> std::io::Result<String> {
    let deadline = std::time::Instant::now() + CONTROL_PATIENCE;
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    while !line.contains(&b'\n') {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || line.len() as u64 > MAX_CONTROL_LINE {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        line.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    String::from_utf8(line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn serve_one(
    mut stream: UnixStream,
    peer: Peer,
    key: &SigningKey,
    handle: &impl Fn(ControlRequest, Peer) -> ControlResponse,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let line = read_line_in_time(&mut stream)?;
    let envelope = serde_json::from_str::<Envelope>(&line);
    let challenge = envelope
        .as_ref()
        .ok()
        .and_then(|envelope| unhex(&envelope.challenge))
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    let response = match (envelope, challenge) {
        (Ok(envelope), Some(_)) => handle(envelope.request, peer),
        (Ok(_), None) => {
            ControlResponse::error("malformed request: the challenge is not 32 bytes in hex")
        }
        (Err(e), _) => ControlResponse::error(format!("malformed request: {e}")),
    };
    let reply = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    let answer = SignedAnswer {
        signature: challenge
            .map(|challenge| hex(&sign_control_reply(key, &challenge, &line, &reply))),
        reply,
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// Tag of the message an enforcer signs over its [`HaltRecord`].
const HALT_RECORD_TAG: &[u8] = b"agent-kernel/halt-record/v1\n";

/// Largest halt record read, in bytes.
const MAX_HALT_RECORD: u64 = 64 * 1024;

fn halt_message(text: &str) -> Vec<u8> {
    [HALT_RECORD_TAG, text.as_bytes()].concat()
}

/// That the enforcer holding the control path `control` ended halted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltRecord {
    /// The control path, absolute.
    pub control: String,
    /// The halted session.
    pub session: String,
    /// Why it was halted.
    pub cause: String,
    /// When the record was written, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A [`HaltRecord`] as stored: its exact text and the enforcer's
/// signature over it.
#[derive(Serialize, Deserialize)]
struct SignedHaltRecord {
    halt: String,
    signature: String,
}

/// Where the enforcer at the control path `path` records that it ended
/// halted: beside its key file, with `.halted` appended.
pub fn halt_record_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".halted");
    PathBuf::from(name)
}

/// The halt record an enforcer left at the control path `path`, if there
/// is one that it signed: checked like the key file (same owner, not
/// writable by others), and its signature verified under the key in the
/// key file at `path`, for this very path. Anything else is no record.
pub fn read_halt_record(path: &Path) -> Option<HaltRecord> {
    let (key, owner) = load_key_file(path).ok()?;
    let (text, record_owner) =
        crate::session::keys::read_checked(&halt_record_path(path), MAX_HALT_RECORD).ok()?;
    if record_owner != owner {
        return None;
    }
    let stored: SignedHaltRecord = serde_json::from_str(text.trim_end()).ok()?;
    let signature = unhex(&stored.signature).and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())?;
    key.verify_strict(
        &halt_message(&stored.halt),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .ok()?;
    let halt: HaltRecord = serde_json::from_str(&stored.halt).ok()?;
    let here = std::path::absolute(path).ok()?;
    (Path::new(&halt.control) == here).then_some(halt)
}

/// Reads the enforcer's public key from the key file at the control path
/// `path`, with the uid that owns it (see [`crate::session::keys::read_public`]).
pub fn load_key_file(path: &Path) -> Result<(VerifyingKey, u32), ControlError> {
    crate::session::keys::read_public(path)
        .map(|file| (file.key, file.owner))
        .map_err(|e| ControlError::Key {
            path: path.to_owned(),
            why: e.to_string(),
        })
}

/// Sends one request to the control socket at `path` and returns the
/// enforcer's answer, authenticated by the key in the key file at `path`
/// (see [`load_key_file`]): what the operator commands use.
pub fn request(path: &Path, request: &ControlRequest) -> Result<ControlResponse, ControlError> {
    let (key, owner) = load_key_file(path)?;
    request_authenticated(path, request, &key, Some(owner))
}

/// Sends one request to the control socket at `path` and returns the
/// answer only if `key` signed it over this request's fresh challenge and,
/// with `uid`, only if the process holding the socket runs as `uid`.
pub fn request_authenticated(
    path: &Path,
    request: &ControlRequest,
    key: &VerifyingKey,
    uid: Option<u32>,
) -> Result<ControlResponse, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = socket_address(path)
        .and_then(|address| UnixStream::connect_addr(&address))
        .map_err(|source| ControlError::Unreachable {
            path: path.to_owned(),
            source,
        })?;
    if let Some(expected) = uid {
        let server = rustix::net::sockopt::socket_peercred(&stream).map_err(|e| io(e.into()))?;
        if server.uid.as_raw() != expected {
            return Err(ControlError::WrongUser {
                path: path.to_owned(),
                expected,
                found: server.uid.as_raw(),
                pid: server.pid.as_raw_nonzero().get(),
            });
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let envelope = Envelope {
        request: request.clone(),
        challenge: hex(&challenge),
    };
    let request_line =
        serde_json::to_string(&envelope).map_err(|e| io(std::io::Error::other(e)))?;
    // A peer refused before its request is read gets its answer at once
    // and may find the connection closed for writing: read the answer
    // whatever the write did.
    let written = stream.write_all(format!("{request_line}\n").as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(stream.take(MAX_CONTROL_LINE * 16)).read_line(&mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
    }
    let malformed = |why: String| ControlError::Malformed {
        path: path.to_owned(),
        why,
    };
    if answer.is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        )));
    }
    // Anything but a signed answer that verifies is refused the same way:
    // what an impostor says is never shown as the enforcer's.
    let authentic = serde_json::from_str::<SignedAnswer>(&answer)
        .ok()
        .filter(|answer| {
            answer
                .signature
                .as_deref()
                .and_then(unhex)
                .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
                .is_some_and(|signature| {
                    verify_control_reply(key, &challenge, &request_line, &answer.reply, &signature)
                        .is_ok()
                })
        });
    let Some(answer) = authentic else {
        // An unsigned refusal is reported as what it is: a failure, whoever
        // sent it (never a success).
        let refusal = serde_json::from_str::<SignedAnswer>(&answer)
            .ok()
            .filter(|answer| answer.signature.is_none())
            .and_then(|answer| serde_json::from_str::<ControlResponse>(&answer.reply).ok())
            .filter(|response| !response.ok);
        return Err(match refusal {
            Some(response) => ControlError::Refused {
                path: path.to_owned(),
                message: response.message,
            },
            None => ControlError::NotAuthentic {
                path: path.to_owned(),
                key: format_public_key(key),
            },
        });
    };
    serde_json::from_str(&answer.reply).map_err(|e| malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn key() -> SigningKey {
        crate::session::keys::generate().unwrap()
    }

    #[test]
    fn a_failed_accept_is_followed_by_a_pause() {
        use std::io::{Error, ErrorKind};
        assert_eq!(accepted(Ok(7)), Some(7));
        assert_eq!(
            accepted::<()>(Err(Error::from(ErrorKind::Interrupted))),
            None
        );
        let started = std::time::Instant::now();
        assert_eq!(
            accepted::<()>(Err(Error::from_raw_os_error(libc::EMFILE))),
            None
        );
        assert!(started.elapsed() >= ACCEPT_BACKOFF);
    }

    #[test]
    fn a_halt_record_is_read_back_only_as_its_enforcer_signed_it_for_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.control");
        let socket = ControlSocket::bind(&path, &key()).unwrap();
        assert_eq!(read_halt_record(&path), None);
        socket.record_halt("s1", "incident").unwrap();
        let record = read_halt_record(&path).unwrap();
        assert_eq!(
            (record.session.as_str(), record.cause.as_str()),
            ("s1", "incident")
        );

        // Copied to another control path of the same key: not its record.
        let other = dir.path().join("b.control");
        crate::session::keys::write_public(&other, &socket.key.verifying_key()).unwrap();
        std::fs::copy(halt_record_path(&path), halt_record_path(&other)).unwrap();
        assert_eq!(read_halt_record(&other), None);

        // The key file now names another enforcer: its signature is not
        // that enforcer's.
        crate::session::keys::write_public(&path, &key().verifying_key()).unwrap();
        assert_eq!(read_halt_record(&path), None);
        crate::session::keys::write_public(&path, &socket.key.verifying_key()).unwrap();
        assert!(read_halt_record(&path).is_some());

        // Writable by others: proves nothing.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            halt_record_path(&path),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert_eq!(read_halt_record(&path), None);
        drop(socket);

        // A new enforcer at the path removes the record.
        let _again = ControlSocket::bind(&path, &key()).unwrap();
        assert!(!halt_record_path(&path).exists());
    }
}
