//! Starting the enforcer process and joining channels.

use crate::config::SpawnConfig;
use crate::resolve::locate_enforcer;
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The client's ends: requests out, replies in.
pub(crate) type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

/// Why the kernel could not be started or joined. The agent must not
/// proceed without a kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The enforcer binary was not found.
    #[error(
        "kernel-enforcer binary not found (searched: {}); install it (`cargo install --locked \
         --path kernel-enforcer` in the agent-kernel repository puts it in ~/.cargo/bin), or \
         give its path with `SpawnConfig::enforcer` or `{}`",
        show(.searched),
        crate::ENFORCER_ENV
    )]
    EnforcerNotFound {
        /// The places searched.
        searched: Vec<PathBuf>,
    },
    /// The enforcer could not be started.
    #[error("cannot start `{path}`: {source}")]
    Start {
        /// The binary.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The enforcer exited during start-up; its message says why (for
    /// example an invalid policy, with file, line and column).
    #[error("the enforcer exited during start-up ({status}):\n{message}")]
    EnforcerExited {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        message: String,
    },
    /// Start-up or the handshake did not finish in time.
    #[error("the enforcer did not start within {0:?}")]
    Timeout(Duration),
    /// The channel could not be set up.
    #[error("channel setup failed: {0}")]
    Channel(String),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The enforcer's key is not the pinned one.
    #[error("the enforcer's key {got} is not the pinned key {expected}")]
    KeyMismatch {
        /// The pinned key.
        expected: String,
        /// The key the enforcer announced.
        got: String,
    },
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps the last bytes the enforcer wrote to stderr, forwarding them to
/// ours.
#[derive(Debug, Clone, Default)]
struct StderrTail(Arc<Mutex<String>>);

const STDERR_TAIL_BYTES: usize = 64 * 1024;

impl StderrTail {
    fn follow(&self, stderr: std::process::ChildStderr) -> std::thread::JoinHandle<()> {
        let tail = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Named once: the enforcer names itself in most of its lines.
                let _ = if line.starts_with("kernel-enforcer:") {
                    writeln!(std::io::stderr(), "{line}")
                } else {
                    writeln!(std::io::stderr(), "kernel-enforcer: {line}")
                };
                let mut text = tail.0.lock();
                text.push_str(&line);
                text.push('\n');
                if text.len() > STDERR_TAIL_BYTES {
                    let cut = text.len() - STDERR_TAIL_BYTES;
                    let cut = (cut..text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    text.replace_range(..cut, "");
                }
            }
        })
    }

    fn text(&self) -> String {
        self.0.lock().trim_end().to_owned()
    }
}

/// Starts the enforcer and waits for it to hand over its channels.
pub(crate) fn spawn_enforcer(config: &SpawnConfig) -> Result<(Child, ClientEnds), SpawnError> {
    let path = locate_enforcer(config.enforcer.as_deref())
        .map_err(|searched| SpawnError::EnforcerNotFound { searched })?;
    let (server, name) =
        IpcOneShotServer::<ClientEnds>::new().map_err(|e| SpawnError::Channel(e.to_string()))?;
    let mut command = Command::new(&path);
    command
        .arg("serve")
        .arg("--connect")
        .arg(&name)
        .arg("--workspace")
        .arg(&config.workspace)
        .arg("--evidence")
        .arg(&config.evidence);
    for policy in &config.policies {
        command.arg("--policy").arg(policy);
    }
    if let Some(key) = &config.key {
        command.arg("--key").arg(key);
    }
    for path in &config.protect {
        command.arg("--protect").arg(path);
    }
    if let Some(path) = &config.control {
        command.arg("--control").arg(path);
    }
    if let Some(uid) = config.operator_uid {
        command.arg("--operator-uid").arg(uid.to_string());
    }
    if config.danger_evidence_os_buffered {
        command.arg("--danger-evidence-os-buffered");
    }
    if config.shadow {
        command.arg("--shadow");
    }
    if let Some(records) = config.checkpoint_every {
        command.arg("--checkpoint-every").arg(records.to_string());
    }
    if let Some(bytes) = config.evidence_segment {
        command.arg("--evidence-segment").arg(bytes.to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| SpawnError::Start {
        path: path.clone(),
        source,
    })?;
    let tail = StderrTail::default();
    let follower = child.stderr.take().map(|stderr| tail.follow(stderr));

    let (accepted_tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = accepted_tx.send(server.accept());
    });
    let started = Instant::now();
    let timeout = config.client.startup_timeout;
    loop {
        match accepted.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok((_receiver, ends))) => return Ok((child, ends)),
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::Channel(e.to_string()));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::Channel("accept thread ended".into()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            if let Some(follower) = follower {
                let _ = follower.join();
            }
            unblock(&name);
            return Err(SpawnError::EnforcerExited {
                status,
                message: tail.text(),
            });
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            unblock(&name);
            return Err(SpawnError::Timeout(timeout));
        }
    }
}

/// Ends a pending `accept` by connecting to the server and hanging up.
fn unblock(name: &str) {
    let _ = IpcSender::<ClientEnds>::connect(name.to_owned());
}
