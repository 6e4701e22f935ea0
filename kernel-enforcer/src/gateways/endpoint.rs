//! The decision endpoint: how a short-lived process (a hook, a shell
//! script, `kernel-enforcer ask`) reaches a running enforcer.
//!
//! `kernel-enforcer listen --socket PATH` runs one enforcer session and
//! serves it on a Unix stream socket at `PATH` (created mode 0600; a stale
//! socket file left by a dead enforcer is replaced, anything else there is
//! refused). Every connection's peer credentials (`SO_PEERCRED`, filled in
//! by the OS kernel) must carry an allowed uid (by default the enforcer's
//! own), or the connection is closed unanswered.
//!
//! One connection carries one decision, with the same frames, signatures
//! and checks as the client channel: each frame is a 4-byte big-endian
//! length and a `kernel-core` frame.
//!
//! 1. client → `ClientFrame::Hello` with a fresh 32-byte challenge;
//! 2. enforcer → `EnforcerFrame::Hello` (the handshake signed over that
//!    challenge), then 8 bytes: the sequence number this client must use;
//! 3. client → `ClientFrame::Authorize` (or `Broker`, to have the enforcer
//!    perform the effect) with a request it built itself, with its own
//!    nonce and deadline;
//! 4. enforcer → the signed receipt (`Receipt` or `Brokered`) or a refusal.
//!
//! The client verifies the handshake signature, pins the key if told to,
//! and verifies the receipt against its own request exactly as the client
//! library does; so a process that is not the enforcer cannot make it
//! accept an allow. Decisions are recorded before the reply leaves, as on
//! the channel.
//!
//! Ordering: between handing out a sequence number and deciding on it, the
//! endpoint serves no other client (other connections wait), with a short
//! time limit ([`TURN_TIMEOUT`]) so a stalled client cannot hold it; a
//! client that misses it is refused, which its caller takes as a denial.
//! Brokered effects run after the turn is released.
//!
//! What it refuses: peers of another uid, frames over the size limit or
//! malformed, a second request on one connection, more than
//! [`MAX_CONNECTIONS`] connections at once (the excess are closed), and,
//! once the session halts, everything (the enforcer then exits, and
//! every later caller finds no enforcer).

use crate::session::Batch;
use crate::session::serve::SharedSession;
use kernel_core::limits::MAX_FRAME_BYTES;
use kernel_core::now_ms;
use kernel_core::{
    Action, CanonicalAction, ClientFrame, EncodedRequest, EnforcerFrame, Expectation, Handshake,
    Outcome, PROTOCOL_VERSION, Request, Verified, VerifyingKey, decode_client_frame,
    decode_enforcer_frame, encode_client_frame, encode_enforcer_frame, format_public_key,
    public_key_from_bytes, verify_receipt,
};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Environment variable naming the endpoint socket for `ask`, `exec` and
/// the hook adapters.
pub const ENDPOINT_ENV: &str = "AGENT_KERNEL_ENDPOINT";
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take, once it holds the turn, to send its
/// request.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the enforcer waits for a client's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame either side accepts on the endpoint.
const MAX_ENDPOINT_FRAME: usize = MAX_FRAME_BYTES + 64 * 1024;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Something other than a socket is in the way.
    #[error("`{0}` exists and is not a socket: remove it or choose another --socket path")]
    NotASocket(PathBuf),
    /// Another enforcer answers there.
    #[error("an enforcer already listens on `{0}`")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot create the endpoint socket `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Binds the endpoint socket at `path`, mode 0600. Replaces a stale socket
/// (one nobody answers on); refuses a live one or any other file.
pub fn bind(path: &Path) -> Result<UnixListener, EndpointError> {
    let io = |source| EndpointError::Io {
        path: path.to_owned(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(EndpointError::NotASocket(path.to_owned()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(EndpointError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    // Created with no permissions for others from the start, then 0600.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves the endpoint until `stop` is set (checked between connections;
/// the caller wakes the accept by connecting once). Connections from a uid
/// other than `client_uid` are closed unanswered.
pub fn serve(
    listener: &UnixListener,
    client_uid: u32,
    session: &SharedSession,
    stop: &Arc<AtomicBool>,
) {
    let turn = Arc::new(Mutex::new(()));
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(stream) = crate::session::control::accepted(stream) else {
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let session = Arc::clone(session);
        let turn = Arc::clone(&turn);
        let served = Arc::clone(&open);
        // A thread that cannot start drops the connection: its client
        // denies.
        let spawned = kernel_policy::spawn_decider("endpoint-connection", move || {
            let _ = serve_one(stream, client_uid, &session, &turn);
            served.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_one(
    mut stream: UnixStream,
    client_uid: u32,
    session: &SharedSession,
    turn: &Mutex<()>,
) -> std::io::Result<()> {
    let credentials = rustix::net::sockopt::socket_peercred(&stream)?;
    if credentials.uid.as_raw() != client_uid {
        return Ok(());
    }
    stream.set_write_timeout(Some(HELLO_TIMEOUT))?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let hello = read_frame(&mut stream)?;
    let challenge = match decode_client_frame(&hello) {
        Ok(ClientFrame::Hello {
            protocol,
            challenge,
        }) => (protocol, challenge),
        Ok(_) => return refuse(&mut stream, "the first frame must be a hello"),
        Err(e) => return refuse(&mut stream, &format!("malformed hello: {e}")),
    };
    // The turn: from handing out a sequence number until the request with
    // it is decided, no other client is served.
    let turn = turn.lock();
    let (greeting, seq) = {
        let mut session = session.lock();
        (
            session.endpoint_hello(challenge.0, &challenge.1),
            session.next_seq(),
        )
    };
    let greeted = matches!(greeting, EnforcerFrame::Hello { .. });
    write_frame(&mut stream, &encode_enforcer_frame(&greeting))?;
    if !greeted {
        return Ok(());
    }
    stream.write_all(&seq.to_be_bytes())?;
    stream.set_read_timeout(Some(TURN_TIMEOUT))?;
    let request = read_frame(&mut stream)?;
    if !matches!(
        decode_client_frame(&request),
        Ok(ClientFrame::Authorize { .. } | ClientFrame::Broker { .. })
    ) {
        drop(turn);
        return refuse(&mut stream, "expected one request after the hello");
    }
    let (reply, broker) = {
        let mut session = session.lock();
        // The first reply answers the request. Any after it (`Halted`
        // refusals of requests waiting for an operator, after a panic)
        // have nobody to go to: an endpoint client is answered once, and
        // has left after its `ask`.
        let Batch { replies, durable } = session.decide_batch(&[request]);
        (
            replies.into_iter().next().map(|reply| (reply, durable)),
            session.broker().cloned(),
        )
    };
    drop(turn);
    // Released (or performed) right before the answer is written.
    let frame = match reply {
        Some((reply, durable)) => reply.release(&durable, broker.as_ref()),
        None => return refuse(&mut stream, "no reply"),
    };
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    write_frame(&mut stream, &frame)
}

fn refuse(stream: &mut UnixStream, why: &str) -> std::io::Result<()> {
    let frame = EnforcerFrame::Refused {
        seq: None,
        refusal: kernel_core::Refusal::OutOfOrder(why.to_owned()),
    };
    write_frame(stream, &encode_enforcer_frame(&frame))
}

fn read_frame(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if length > MAX_ENDPOINT_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {length} bytes is over the {MAX_ENDPOINT_FRAME}-byte limit"),
        ));
    }
    let mut frame = vec![0u8; length];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

fn write_frame(stream: &mut impl Write, frame: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut bytes = Vec::with_capacity(frame.len().saturating_add(4));
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(frame);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Why a question to the endpoint got no authentic answer. The caller
/// treats every one of them as a denial.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No enforcer answers on the socket.
    #[error(
        "no enforcer answers on `{path}` ({source}): start one with `kernel-enforcer listen --socket {path}`"
    )]
    NoEnforcer {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// What serves the socket runs as another user than the enforcer's
    /// key file's owner.
    #[error(
        "refusing the server on `{path}`: it runs as uid {found} (pid {pid}), but the \
         enforcer's key file belongs to uid {expected}"
    )]
    WrongServer {
        /// The socket path.
        path: PathBuf,
        /// The uid that owns the key file.
        expected: u32,
        /// The uid of the process serving the socket.
        found: u32,
        /// That process.
        pid: i32,
    },
    /// The conversation failed or timed out.
    #[error("the enforcer did not answer: {0}")]
    Transport(#[from] std::io::Error),
    /// The enforcer refused to decide.
    #[error("the enforcer refused the request: {0}")]
    Refused(kernel_core::Refusal),
    /// The answer was not authentic or did not fit the question.
    #[error("the answer did not verify: {0}")]
    Verify(String),
}

/// Why an action cannot be put in canonical form ([`canonicalize`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalizeError {
    /// A bare program name that is not found on `PATH`.
    #[error(
        "the action is not valid: program `{0}` not found on PATH: install it, or give its path"
    )]
    ProgramNotFound(String),
    /// A file action's path that does not resolve, or that has `..` after
    /// a symbolic link.
    #[error("the action is not valid: {0}")]
    Path(#[source] kernel_policy::resolve::RequestPathError),
    /// An action the canonical form refuses.
    #[error("the action is not valid: {0}")]
    Invalid(#[source] kernel_core::ActionError),
}

/// An authentic answer from the enforcer.
#[derive(Debug)]
pub struct Answer {
    /// The verified outcome (a permit only for an allow).
    pub verified: Verified,
    /// What the broker did, for a brokered request.
    pub outcome: Option<Outcome>,
    /// The enforcer's key (verified over the handshake, pinned if asked).
    pub key: VerifyingKey,
    /// The handshake.
    pub handshake: Handshake,
    /// The action as decided.
    pub action: CanonicalAction,
}

/// How to ask.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// The endpoint socket.
    pub socket: PathBuf,
    /// The key the enforcer must have: an answer under any other key is
    /// refused.
    pub pinned_key: VerifyingKey,
    /// The uid the process serving the socket must run as, checked from
    /// its credentials (`SO_PEERCRED`) before anything is sent.
    pub server_uid: Option<u32>,
    /// The longest the whole exchange may take.
    pub timeout: Duration,
}

/// Where `listen --socket PATH` writes its public key: `PATH.pub`.
pub fn key_file(socket: &Path) -> PathBuf {
    let mut path = socket.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

impl AskOptions {
    /// Options for the endpoint at `socket`, with the enforcer's key from
    /// `pubkey` if given, else from the key file `listen` wrote beside the
    /// socket ([`key_file`]); then the server must also run as the uid
    /// that owns that file. Refuses when there is no key to pin: an
    /// unauthenticated server is never trusted.
    pub fn pinned(
        socket: PathBuf,
        pubkey: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, crate::session::keys::PublicKeyFileError> {
        let (pinned_key, server_uid) = match pubkey {
            Some(file) => (crate::session::keys::read_public(file)?.key, None),
            None => {
                let file = crate::session::keys::read_public(&key_file(&socket))?;
                (file.key, Some(file.owner))
            }
        };
        Ok(Self {
            socket,
            pinned_key,
            server_uid,
            timeout,
        })
    }
}

/// Puts `action` in canonical form the way the client library does:
/// relative paths against `cwd` (else the current directory), bare program
/// names through `PATH`; and the path of a file action where it leads,
/// symbolic links resolved ([`kernel_policy::resolve::request_action`]), since the
/// enforcer decides a file action only on the path it reaches. Refuses a
/// path that cannot be resolved.
pub fn canonicalize(
    action: Action,
    cwd: Option<&str>,
) -> Result<CanonicalAction, CanonicalizeError> {
    let base = match cwd {
        Some(cwd) => Some(cwd.to_owned()),
        None => std::env::current_dir()
            .ok()
            .and_then(|dir| dir.to_str().map(str::to_owned)),
    };
    let action = match action {
        Action::Exec(mut exec) if !exec.program.contains('/') && !exec.program.is_empty() => {
            exec.program = kernel_policy::request::search_path(&exec.program)
                .ok_or_else(|| CanonicalizeError::ProgramNotFound(exec.program.clone()))?;
            Action::Exec(exec)
        }
        other => kernel_policy::resolve::request_action(other, base.as_deref())
            .map_err(CanonicalizeError::Path)?,
    };
    CanonicalAction::new(action, base.as_deref()).map_err(CanonicalizeError::Invalid)
}

/// Asks the enforcer at `options.socket` to decide `action` (and, with a
/// `payload`, to perform it: the broker). Returns only an answer whose
/// handshake and receipt verified; every failure is an [`AskError`].
pub fn ask(
    options: &AskOptions,
    action: CanonicalAction,
    payload: Option<Vec<u8>>,
) -> Result<Answer, AskError> {
    let mut stream =
        UnixStream::connect(&options.socket).map_err(|source| AskError::NoEnforcer {
            path: options.socket.clone(),
            source,
        })?;
    if let Some(expected) = options.server_uid {
        let server =
            rustix::net::sockopt::socket_peercred(&stream).map_err(std::io::Error::from)?;
        if server.uid.as_raw() != expected {
            return Err(AskError::WrongServer {
                path: options.socket.clone(),
                expected,
                found: server.uid.as_raw(),
                pid: server.pid.as_raw_nonzero().get(),
            });
        }
    }
    stream.set_read_timeout(Some(options.timeout))?;
    stream.set_write_timeout(Some(options.timeout))?;
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_frame(
        &mut stream,
        &encode_client_frame(&ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            challenge,
        }),
    )?;
    let greeting = read_frame(&mut stream)?;
    let (handshake, signature) = match decode_enforcer_frame(&greeting) {
        Ok(EnforcerFrame::Hello {
            handshake,
            signature,
        }) => (handshake, signature),
        Ok(EnforcerFrame::Refused { refusal, .. }) => return Err(AskError::Refused(refusal)),
        Ok(_) => return Err(AskError::Verify("expected the enforcer's hello".into())),
        Err(e) => return Err(AskError::Verify(format!("malformed hello: {e}"))),
    };
    if handshake.protocol != PROTOCOL_VERSION {
        return Err(AskError::Verify(format!(
            "the enforcer speaks protocol {}, this client {PROTOCOL_VERSION}",
            handshake.protocol
        )));
    }
    let key = public_key_from_bytes(&handshake.enforcer_key)
        .map_err(|e| AskError::Verify(e.to_string()))?;
    if key != options.pinned_key {
        return Err(AskError::Verify(format!(
            "the enforcer's key {} is not the pinned key {}",
            format_public_key(&key),
            format_public_key(&options.pinned_key)
        )));
    }
    handshake
        .verify(&key, &challenge, &signature)
        .map_err(|e| AskError::Verify(e.to_string()))?;
    let mut seq = [0u8; 8];
    stream.read_exact(&mut seq)?;
    let seq = u64::from_be_bytes(seq);
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX);
    let request = EncodedRequest::new(Request {
        session: handshake.session,
        seq,
        nonce,
        action: action.clone(),
        deadline_ms: now_ms().saturating_add(timeout_ms),
    });
    let brokered = payload.is_some();
    let frame = match payload {
        None => ClientFrame::Authorize {
            request: request.bytes().to_vec(),
        },
        Some(payload) => ClientFrame::Broker {
            request: request.bytes().to_vec(),
            payload,
        },
    };
    write_frame(&mut stream, &encode_client_frame(&frame))?;
    let reply = read_frame(&mut stream)?;
    let (receipt, outcome) = match decode_enforcer_frame(&reply) {
        Ok(EnforcerFrame::Receipt { seq: got, receipt }) if got == seq && !brokered => {
            (receipt, None)
        }
        Ok(EnforcerFrame::Brokered {
            seq: got,
            receipt,
            outcome,
        }) if got == seq && brokered => (receipt, Some(outcome)),
        Ok(EnforcerFrame::Refused { refusal, .. }) => return Err(AskError::Refused(refusal)),
        Ok(other) => {
            return Err(AskError::Verify(format!(
                "an answer that does not fit the request: {other:?}"
            )));
        }
        Err(e) => return Err(AskError::Verify(format!("malformed answer: {e}"))),
    };
    let verified = verify_receipt(
        &receipt,
        &Expectation {
            key: &key,
            request: &request,
            policy_digest: None,
            now_ms: now_ms(),
            shadow: handshake.shadow,
        },
    )
    .map_err(|e| AskError::Verify(e.to_string()))?;
    Ok(Answer {
        verified,
        outcome,
        key,
        handshake,
        action,
    })
}
