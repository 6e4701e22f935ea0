//! The broker: the enforcer performs allowed effects itself, so a confined
//! agent never needs the rights to perform them.
//!
//! - Files are opened with `openat2` and `RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS` (and `RESOLVE_BENEATH` the workspace for paths
//!   inside it): a symbolic link anywhere in the path, planted before or
//!   swapped in after the decision, makes the effect fail instead of
//!   reaching another file. The thing acted on is the thing decided on.
//! - A write happens only if the payload is exactly the content whose
//!   SHA-256 and size the decided request carries.
//! - Programs run without a shell, with the decided argv and working
//!   directory, an environment built from an allow-list
//!   ([`ENV_ALLOW_LIST`]; everything else the agent asked for, such as
//!   `LD_PRELOAD`, is dropped), under their own confinement (system trees
//!   readable and executable, workspace readable and writable, the
//!   kernel's assets unreachable, no network), with capped output and a
//!   time limit.
//! - Network connections are made by the enforcer (the host name resolved
//!   here, each address tried in turn with a time limit) and the connected
//!   socket is handed to the agent over the descriptor hand-off
//!   ([`crate::session::handoff`]), so the agent gets exactly the connection that
//!   was decided on and needs no right to connect anywhere itself.
//! - HTTP requests are made by the enforcer with the decided method and
//!   URL, the agent's body (the decision does not bind the body: policies
//!   decide on method and URL), no proxy from the environment, redirects
//!   returned and never followed (their target was not decided on), a
//!   time limit and a cap on the response body. `https` is verified
//!   against the bundled Mozilla root certificates.

use crate::session::handoff::Handoff;
use kernel_confine::{Prepared, Profile};
use kernel_core::{Action, Digest, Exec, Outcome, WriteMode};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variables a brokered program may receive from the agent's
/// request; all others are dropped.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "NO_COLOR",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];
/// `PATH` of a brokered program.
pub const BROKER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Most bytes of standard output, and of standard error, returned.
pub const MAX_EXEC_OUTPUT: usize = 256 * 1024;
/// Most bytes of a file returned by a brokered read.
pub const MAX_READ: usize = 1024 * 1024;
/// Default time limit of a brokered program.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of one brokered TCP connection attempt (per address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of a whole brokered HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an HTTP response body returned.
pub const MAX_HTTP_BODY: usize = 1024 * 1024;

/// How the broker performs effects.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The workspace root.
    pub workspace: PathBuf,
    /// The kernel's assets, kept out of brokered programs' reach.
    pub protected: Vec<PathBuf>,
    /// Time limit of a brokered program.
    pub exec_timeout: Duration,
    /// Whether brokered programs are confined (off only when the whole
    /// session runs with `--danger-unconfined`).
    pub confine: bool,
    /// Where connected sockets are handed to the agent.
    pub handoff: Handoff,
}

fn failed(error: impl std::fmt::Display) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
    }
}

impl Broker {
    /// Performs `action`, the allowed and recorded request number `seq`,
    /// to the end. Never panics; every failure is an [`Outcome::Failed`].
    pub fn perform(&self, seq: u64, action: &Action, payload: &[u8]) -> Outcome {
        self.start(seq, action, payload).finish()
    }

    /// Starts `action`, the allowed and recorded request number `seq`: a
    /// file effect is done when this returns; a program is spawned, and a
    /// connection or HTTP request begun on a thread of its own, for
    /// [`Started::finish`] to wait for. Quick either way, so that it can
    /// run while a halt waits (see `kernel_sync::HaltLatch::admit`).
    pub fn start(&self, seq: u64, action: &Action, payload: &[u8]) -> Started {
        let done = match action {
            Action::FileRead { path } => self.read(Path::new(path)),
            Action::FileWrite {
                path,
                content_sha256,
                size,
                mode,
            } => {
                if Digest::of_content(payload) != *content_sha256
                    || u64::try_from(payload.len()).ok() != Some(*size)
                {
                    failed("the content is not the content that was decided on")
                } else {
                    self.write(Path::new(path), payload, *mode)
                }
            }
            Action::FileDelete { path } => self.delete(Path::new(path)),
            Action::Exec(exec) => return self.spawn(exec),
            Action::NetConnect { host, port } => {
                let (broker, host, port) = (self.clone(), host.clone(), *port);
                return Started(Begun::Thread(std::thread::spawn(move || {
                    broker.connect(seq, &host, port)
                })));
            }
            Action::Http { method, url } => {
                let (method, url, body) = (method.clone(), url.clone(), payload.to_vec());
                return Started(Begun::Thread(std::thread::spawn(move || {
                    http(&method, &url, &body)
                })));
            }
            Action::ToolCall { .. } | Action::Custom { .. } | Action::McpRequest { .. } => {
                Outcome::NotPerformed {
                    reason: "tool calls, MCP requests and custom actions have no effect the broker performs".into(),
                }
            }
        };
        Started(Begun::Done(done))
    }

    /// Opens `path` without following any symbolic link; beneath the
    /// workspace when the path lies inside it.
    pub(crate) fn open(
        &self,
        path: &Path,
        flags: OFlags,
        mode: Mode,
    ) -> std::io::Result<std::fs::File> {
        let no_links = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let fd = match path.strip_prefix(&self.workspace) {
            Ok(inside) if !inside.as_os_str().is_empty() => {
                let root = rustix::fs::open(
                    &self.workspace,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::openat2(
                    &root,
                    inside,
                    flags | OFlags::CLOEXEC,
                    mode,
                    no_links | ResolveFlags::BENEATH,
                )?
            }
            _ => rustix::fs::openat2(
                rustix::fs::CWD,
                path,
                flags | OFlags::CLOEXEC,
                mode,
                no_links,
            )?,
        };
        Ok(std::fs::File::from(fd))
    }

    fn read(&self, path: &Path) -> Outcome {
        let file = match self.open(path, OFlags::RDONLY, Mode::empty()) {
            Ok(file) => file,
            Err(e) => return failed(e),
        };
        let mut content = Vec::new();
        let limit = u64::try_from(MAX_READ).unwrap_or(u64::MAX);
        if let Err(e) = file.take(limit.saturating_add(1)).read_to_end(&mut content) {
            return failed(e);
        }
        let truncated = content.len() > MAX_READ;
        content.truncate(MAX_READ);
        Outcome::Read { content, truncated }
    }

    fn write(&self, path: &Path, payload: &[u8], mode: WriteMode) -> Outcome {
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | match mode {
                WriteMode::CreateNew => OFlags::EXCL,
                WriteMode::Overwrite => OFlags::TRUNC,
                WriteMode::Append => OFlags::APPEND,
                WriteMode::Descriptor
                | WriteMode::Symlink
                | WriteMode::HardLink
                | WriteMode::Metadata
                | WriteMode::Connect => {
                    return failed(format!(
                        "a `{}` write is not a content the broker writes",
                        mode.as_str()
                    ));
                }
            };
        let result = self
            .open(path, flags, Mode::from_bits_truncate(0o644))
            .and_then(|mut file| file.write_all(payload));
        match result {
            Ok(()) => Outcome::Written {
                bytes: u64::try_from(payload.len()).unwrap_or(u64::MAX),
            },
            Err(e) => failed(e),
        }
    }

    fn delete(&self, path: &Path) -> Outcome {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return failed("nothing to delete at the root");
        };
        let result = self
            .open(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .and_then(|dir| {
                rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                    .map_err(std::io::Error::from)
            });
        match result {
            Ok(()) => Outcome::Deleted,
            Err(e) => failed(e),
        }
    }

    fn connect(&self, seq: u64, host: &str, port: u16) -> Outcome {
        if !self.handoff.joined() {
            return failed("the agent has no descriptor hand-off: connections cannot be brokered");
        }
        let addresses = match (host, port).to_socket_addrs() {
            Ok(addresses) => addresses,
            Err(e) => return failed(format!("cannot resolve `{host}`: {e}")),
        };
        let mut last = format!("`{host}` has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    return match self.handoff.send(seq, stream.as_fd()) {
                        Ok(()) => Outcome::Connected {
                            peer: address.to_string(),
                        },
                        Err(e) => failed(format!("cannot hand the connection over: {e}")),
                    };
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        failed(last)
    }

    /// Spawns a program; [`Started::finish`] waits for it.
    fn spawn(&self, exec: &Exec) -> Started {
        let done = |outcome| Started(Begun::Done(outcome));
        let Some(cwd) = &exec.cwd else {
            return done(failed("no working directory"));
        };
        let mut command = Command::new(&exec.program);
        command
            .args(&exec.args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", BROKER_PATH)
            .env("HOME", &self.workspace)
            .env("LANG", "C.UTF-8")
            .envs(
                exec.env
                    .iter()
                    .filter(|(name, _)| ENV_ALLOW_LIST.contains(&name.as_str()))
                    .map(|(name, value)| (name, value)),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if self.confine {
            let mut profile = Profile::brokered(&self.workspace, Path::new(&exec.program));
            profile.protected = self.protected.clone();
            match Prepared::new(&profile) {
                Ok(prepared) => crate::pre_exec::confine(&mut command, prepared, None),
                Err(e) => return done(failed(format!("cannot confine the program: {e}"))),
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return done(failed(e)),
        };
        let stdout = child.stdout.take().map(capture);
        let stderr = child.stderr.take().map(capture);
        Started(Begun::Running(Running {
            child,
            stdout,
            stderr,
            started: Instant::now(),
            timeout: self.exec_timeout,
        }))
    }
}

/// An effect that has begun: a file effect already done, or a program
/// running.
#[derive(Debug)]
pub struct Started(Begun);

#[derive(Debug)]
enum Begun {
    Done(Outcome),
    Running(Running),
    /// A connection or HTTP request, on a thread of its own.
    Thread(std::thread::JoinHandle<Outcome>),
}

type Capture = std::thread::JoinHandle<(Vec<u8>, bool)>;

#[derive(Debug)]
struct Running {
    child: std::process::Child,
    stdout: Option<Capture>,
    stderr: Option<Capture>,
    started: Instant,
    timeout: Duration,
}

impl Started {
    /// Waits for the effect to end (a program: at most its time limit,
    /// then it is killed) and returns its outcome.
    pub fn finish(self) -> Outcome {
        let Running {
            mut child,
            stdout,
            stderr,
            started,
            timeout,
        } = match self.0 {
            Begun::Done(outcome) => return outcome,
            Begun::Thread(thread) => {
                return thread
                    .join()
                    .unwrap_or_else(|_| failed("the effect failed unexpectedly"));
            }
            Begun::Running(running) => running,
        };
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break None,
            }
        };
        let (stdout, out_cut) = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let (stderr, err_cut) = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        Outcome::Exec {
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            timed_out,
        }
    }
}

/// Makes the decided HTTP request. See the module documentation for what
/// is and is not done.
fn http(method: &str, url: &str, body: &[u8]) -> Outcome {
    let config = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .user_agent("agent-kernel-broker")
        .max_idle_connections(0)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let request = match ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(body.to_vec())
    {
        Ok(request) => request,
        Err(e) => return failed(format!("not a request the broker can make: {e}")),
    };
    let mut response = match agent.run(request) {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let cap = u64::try_from(MAX_HTTP_BODY).unwrap_or(u64::MAX);
    let mut content = Vec::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(cap.saturating_add(1))
        .read_to_end(&mut content);
    if let Err(e) = read {
        return failed(format!("reading the response: {e}"));
    }
    let truncated = content.len() > MAX_HTTP_BODY;
    content.truncate(MAX_HTTP_BODY);
    Outcome::Http {
        status,
        headers,
        body: content,
        truncated,
    }
}

/// Reads a pipe to its end on a thread, keeping at most
/// [`MAX_EXEC_OUTPUT`] bytes.
fn capture(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 8192];
        let mut truncated = false;
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                    let take = n.min(room);
                    kept.extend_from_slice(buffer.get(..take).unwrap_or_default());
                    truncated |= take < n;
                }
            }
        }
        (kept, truncated)
    })
}
