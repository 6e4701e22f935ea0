//! Guarded effects: each runs only with a permit for exactly its action,
//! and consumes the permit.
//!
//! File and program effects run in the agent's own process while it is
//! unconfined, and through the enforcer's broker once it is confined.
//! Network effects always go through the broker: the enforcer connects, or
//! makes the HTTP request, itself.

use crate::denial::Denial;
use crate::kernel::Kernel;
use kernel_core::{Action, Digest, Exec, Outcome, Permit, WriteMode, now_ms};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

/// Why a guarded effect did not happen (or failed while happening).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EffectError {
    /// The kernel did not permit it.
    #[error("{0}")]
    Denied(#[from] Denial),
    /// The permit is for another kind of action, or other content.
    #[error("the permit does not cover this effect")]
    WrongPermit,
    /// The permit expired before the effect started.
    #[error("the permit expired before use")]
    Expired,
    /// The `Kernel` that obtained the permit was dropped or shut down, or
    /// lost its enforcer: its permits are void.
    #[error("the session that issued the permit has ended")]
    SessionEnded,
    /// The effect itself failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The enforcer's broker did not perform the effect, or it failed
    /// there.
    #[error("brokered effect: {0}")]
    Broker(String),
}

/// The response to a brokered HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code. Redirects come back as they are: the broker never
    /// follows them, since their target was not decided on.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body, at most the broker's cap (1 MiB).
    pub body: Vec<u8>,
    /// Whether body bytes beyond the cap were dropped.
    pub truncated: bool,
}

fn broker_failure(outcome: Outcome) -> EffectError {
    match outcome {
        Outcome::Failed { error } => EffectError::Broker(error),
        Outcome::NotPerformed { reason } => EffectError::Broker(reason),
        other => EffectError::Broker(format!("unexpected outcome {other:?}")),
    }
}

fn check_fresh(permit: &Permit) -> Result<(), EffectError> {
    if !crate::live::is_live(permit.session()) {
        return Err(EffectError::SessionEnded);
    }
    if permit.is_expired(now_ms()) {
        return Err(EffectError::Expired);
    }
    Ok(())
}

/// Runs the program a permit allows, exactly as allowed: absolute program,
/// the permitted arguments and working directory, and an environment that
/// is exactly the permitted variables. Captures output; stdin is empty.
pub fn run_exec(permit: Permit) -> Result<Output, EffectError> {
    check_fresh(&permit)?;
    let Action::Exec(exec) = permit.action().action() else {
        return Err(EffectError::WrongPermit);
    };
    let Some(cwd) = &exec.cwd else {
        return Err(EffectError::WrongPermit);
    };
    let output = Command::new(&exec.program)
        .args(&exec.args)
        .current_dir(cwd)
        .env_clear()
        .envs(exec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()?;
    Ok(output)
}

/// Reads the file a permit allows.
pub fn read_permitted(permit: Permit) -> Result<Vec<u8>, EffectError> {
    check_fresh(&permit)?;
    let Action::FileRead { path } = permit.action().action() else {
        return Err(EffectError::WrongPermit);
    };
    Ok(std::fs::read(path)?)
}

/// Writes `content` to the file a permit allows, only if `content` is
/// exactly what was permitted (same SHA-256 and size).
pub fn write_permitted(permit: Permit, content: &[u8]) -> Result<(), EffectError> {
    check_fresh(&permit)?;
    let Action::FileWrite {
        path,
        content_sha256,
        size,
        mode,
    } = permit.action().action()
    else {
        return Err(EffectError::WrongPermit);
    };
    if Digest::of_content(content) != *content_sha256
        || u64::try_from(content.len()).ok() != Some(*size)
    {
        return Err(EffectError::WrongPermit);
    }
    let mut options = std::fs::OpenOptions::new();
    match mode {
        WriteMode::CreateNew => options.write(true).create_new(true),
        WriteMode::Overwrite => options.write(true).create(true).truncate(true),
        WriteMode::Append => options.append(true).create(true),
        WriteMode::Descriptor
        | WriteMode::Symlink
        | WriteMode::HardLink
        | WriteMode::Metadata
        | WriteMode::Connect => {
            return Err(EffectError::WrongPermit);
        }
    };
    let mut file = options.open(path)?;
    file.write_all(content)?;
    Ok(())
}

/// Deletes the file a permit allows.
pub fn delete_permitted(permit: Permit) -> Result<(), EffectError> {
    check_fresh(&permit)?;
    let Action::FileDelete { path } = permit.action().action() else {
        return Err(EffectError::WrongPermit);
    };
    Ok(std::fs::remove_file(path)?)
}

impl Kernel {
    /// Asks for `exec` and, if permitted, runs it: itself (see
    /// [`run_exec`]) or, when the agent is confined, through the
    /// enforcer's broker (no shell, an allow-listed environment, its own
    /// confinement, capped output, a time limit).
    pub fn exec(&self, exec: Exec) -> Result<Output, EffectError> {
        if !self.is_brokered() {
            return run_exec(self.authorize(Action::Exec(exec))?);
        }
        match self.broker(Action::Exec(exec), Vec::new())?.1 {
            Outcome::Exec {
                code,
                signal,
                stdout,
                stderr,
                ..
            } => {
                use std::os::unix::process::ExitStatusExt;
                let raw = match (code, signal) {
                    (Some(code), _) => (code & 0xff) << 8,
                    (None, Some(signal)) => signal & 0x7f,
                    (None, None) => 0x7f,
                };
                Ok(Output {
                    status: std::process::ExitStatus::from_raw(raw),
                    stdout,
                    stderr,
                })
            }
            other => Err(broker_failure(other)),
        }
    }

    /// Asks to read `path` and, if permitted, reads it (through the broker
    /// when confined).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, EffectError> {
        if !self.is_brokered() {
            return read_permitted(self.authorize(Action::file_read(path))?);
        }
        match self.broker(Action::file_read(path), Vec::new())?.1 {
            Outcome::Read {
                content,
                truncated: false,
            } => Ok(content),
            Outcome::Read { .. } => Err(EffectError::Broker(
                "the file is larger than the broker returns".into(),
            )),
            other => Err(broker_failure(other)),
        }
    }

    /// Asks to overwrite `path` with `content` and, if permitted, writes
    /// exactly that content (through the broker when confined).
    pub fn write_file(&self, path: &str, content: &[u8]) -> Result<(), EffectError> {
        let action = Action::file_write(path, content);
        if !self.is_brokered() {
            return write_permitted(self.authorize(action)?, content);
        }
        match self.broker(action, content.to_vec())?.1 {
            Outcome::Written { .. } => Ok(()),
            other => Err(broker_failure(other)),
        }
    }

    /// Asks to open a TCP connection to `host:port` and, if permitted, has
    /// the enforcer connect and hand this process the connected socket.
    /// The agent needs no right to connect anywhere itself (a confined one
    /// has none).
    pub fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, EffectError> {
        let (permit, outcome) = self.broker(Action::net_connect(host, port), Vec::new())?;
        match outcome {
            Outcome::Connected { .. } => {
                let descriptor = self.take_descriptor(permit.seq()).map_err(|e| {
                    EffectError::Broker(format!("the connection did not arrive: {e}"))
                })?;
                Ok(TcpStream::from(descriptor))
            }
            other => Err(broker_failure(other)),
        }
    }

    /// Asks to make an HTTP request and, if permitted, has the enforcer
    /// make it: the decided method and URL, `body` as the request body (a
    /// policy decides on method and URL, not on the body), no proxy,
    /// redirects returned rather than followed, a time limit and a 1 MiB
    /// cap on the response body.
    pub fn http(&self, method: &str, url: &str, body: &[u8]) -> Result<HttpResponse, EffectError> {
        match self.broker(Action::http(method, url), body.to_vec())?.1 {
            Outcome::Http {
                status,
                headers,
                body,
                truncated,
            } => Ok(HttpResponse {
                status,
                headers,
                body,
                truncated,
            }),
            other => Err(broker_failure(other)),
        }
    }

    /// Asks to delete `path` and, if permitted, deletes it (through the
    /// broker when confined).
    pub fn delete_file(&self, path: &str) -> Result<(), EffectError> {
        if !self.is_brokered() {
            return delete_permitted(self.authorize(Action::file_delete(path))?);
        }
        match self.broker(Action::file_delete(path), Vec::new())?.1 {
            Outcome::Deleted => Ok(()),
            other => Err(broker_failure(other)),
        }
    }
}
