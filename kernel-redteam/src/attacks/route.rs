//! How the agent reaches the kernel in each mode, so that one attack
//! generator serves every mode it applies to.
//!
//! - supervised: the client library, joined on the channel the enforcer
//!   passed (`kernel-enforcer run`);
//! - embedded: the client library after `Kernel::spawn` and `lockdown`
//!   (the agent program starts its own enforcer, then confines itself);
//! - governed: the agent's own system calls, each decided by the enforcer
//!   (`run --govern-syscalls`): there is no client;
//! - endpoint: brokered requests to `kernel-enforcer listen`, as `exec`
//!   and the hook adapters make them (the agent itself is not confined).

use super::*;
use kernel_client::SpawnConfig;
use kernel_enforcer::gateways::endpoint::{self, AskOptions};
use std::io::Read as _;
use std::path::Path;

/// What a program run through a route did.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) status: String,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Output {
    /// Standard output and error, as text.
    pub(crate) fn text(&self) -> String {
        format!("{}{}", lossy(&self.stdout), lossy(&self.stderr))
    }
}

/// The way to the kernel.
#[derive(Debug)]
pub(crate) enum Route {
    /// The client library (supervised, embedded).
    Kernel(Box<Kernel>),
    /// The agent's own system calls (governed).
    Syscalls,
    /// Brokered requests to the decision endpoint.
    Endpoint(Box<AskOptions>),
}

/// How long a program the agent starts itself may run.
const PROGRAM_LIMIT: Duration = Duration::from_secs(10);

impl Route {
    /// Joins the kernel the way `plan.mode` says.
    pub(crate) fn join(plan: &Plan) -> Result<Self, String> {
        Self::join_with(plan, None)
    }

    /// Like [`join`](Self::join), waiting up to `approval` for an
    /// operator's approval of `@ask` actions.
    pub(crate) fn join_with(plan: &Plan, approval: Option<Duration>) -> Result<Self, String> {
        match plan.mode.as_str() {
            "governed" => Ok(Self::Syscalls),
            "endpoint" => {
                let key =
                    kernel_core::parse_public_key(&plan.public_key).map_err(|e| e.to_string())?;
                Ok(Self::Endpoint(Box::new(AskOptions {
                    socket: plan.endpoint.clone().into(),
                    pinned_key: key,
                    server_uid: None,
                    timeout: Duration::from_secs(20),
                })))
            }
            "embedded" => embedded(plan, approval).map(|k| Self::Kernel(Box::new(k))),
            _ => {
                // A decision is waited for up to 20 s; one that waits for
                // an operator's approval, as long as the approval.
                let config = match approval {
                    Some(wait) => ClientConfig::default().await_approval(wait),
                    None => ClientConfig::default().timeout(Duration::from_secs(20)),
                };
                Kernel::connect_from_env(config)
                    .map(|k| Self::Kernel(Box::new(k)))
                    .map_err(|e| format!("cannot join the kernel: {e}"))
            }
        }
    }

    /// The enforcer's pid as this agent knows it.
    pub(crate) fn enforcer_pid(&self, plan: &Plan) -> i32 {
        let pid = match self {
            Self::Kernel(kernel) => kernel
                .enforcer_pid()
                .unwrap_or_else(std::os::unix::process::parent_id),
            Self::Syscalls => std::os::unix::process::parent_id(),
            Self::Endpoint(_) => plan.enforcer_pid,
        };
        i32::try_from(pid).unwrap_or(0)
    }

    fn endpoint(
        options: &AskOptions,
        action: Action,
        cwd: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<kernel_core::Outcome, String> {
        let action = endpoint::canonicalize(action, cwd).map_err(|e| e.to_string())?;
        let answer = endpoint::ask(options, action, Some(payload)).map_err(|e| e.to_string())?;
        match (answer.verified, answer.outcome) {
            (Verified::Permit(_), Some(outcome)) => Ok(outcome),
            (Verified::Permit(_), None) => Err("allowed, no outcome".into()),
            (Verified::Denied(r) | Verified::Ask(r), _) => {
                Err(format!("denied: {}", r.body().reasons.join("; ")))
            }
        }
    }

    /// Reads `path`.
    pub(crate) fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        match self {
            Self::Kernel(k) => k.read_file(path).map_err(|e| e.to_string()),
            Self::Syscalls => std::fs::read(path).map_err(|e| e.to_string()),
            Self::Endpoint(o) => {
                match Self::endpoint(o, Action::file_read(path), None, Vec::new())? {
                    kernel_core::Outcome::Read { content, .. } => Ok(content),
                    other => Err(format!("{other:?}")),
                }
            }
        }
    }

    /// Writes `content` to `path` (replacing it).
    pub(crate) fn write(&self, path: &str, content: &[u8]) -> Result<(), String> {
        match self {
            Self::Kernel(k) => k.write_file(path, content).map_err(|e| e.to_string()),
            Self::Syscalls => std::fs::write(path, content).map_err(|e| e.to_string()),
            Self::Endpoint(o) => {
                Self::endpoint(o, Action::file_write(path, content), None, content.to_vec())
                    .map(drop)
            }
        }
    }

    /// Appends `content` to `path`.
    pub(crate) fn append(&self, path: &str, content: &[u8]) -> Result<(), String> {
        let action = Action::FileWrite {
            path: path.to_owned(),
            content_sha256: kernel_core::Digest::of_content(content),
            size: u64::try_from(content.len()).unwrap_or(0),
            mode: WriteMode::Append,
        };
        match self {
            Self::Kernel(k) => k
                .broker(action, content.to_vec())
                .map(drop)
                .map_err(|e| e.to_string()),
            Self::Syscalls => std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(content))
                .map_err(|e| e.to_string()),
            Self::Endpoint(o) => Self::endpoint(o, action, None, content.to_vec()).map(drop),
        }
    }

    /// Deletes `path`.
    pub(crate) fn delete(&self, path: &str) -> Result<(), String> {
        match self {
            Self::Kernel(k) => k.delete_file(path).map_err(|e| e.to_string()),
            Self::Syscalls => std::fs::remove_file(path).map_err(|e| e.to_string()),
            Self::Endpoint(o) => Self::endpoint(
                o,
                Action::FileDelete {
                    path: path.to_owned(),
                },
                None,
                Vec::new(),
            )
            .map(drop),
        }
    }

    /// Runs a program.
    pub(crate) fn exec(&self, exec: Exec) -> Result<Output, String> {
        match self {
            Self::Kernel(k) => k
                .exec(exec)
                .map(|o| Output {
                    status: o.status.to_string(),
                    stdout: o.stdout,
                    stderr: o.stderr,
                })
                .map_err(|e| e.to_string()),
            Self::Syscalls => run_program(&exec),
            Self::Endpoint(o) => {
                let cwd = exec.cwd.clone();
                match Self::endpoint(o, Action::Exec(exec), cwd.as_deref(), Vec::new())? {
                    kernel_core::Outcome::Exec {
                        code,
                        signal,
                        stdout,
                        stderr,
                        ..
                    } => Ok(Output {
                        status: format!("code {code:?} signal {signal:?}"),
                        stdout,
                        stderr,
                    }),
                    other => Err(format!("{other:?}")),
                }
            }
        }
    }
}

/// Runs `exec` as a child of this process (governed mode: its `execve`
/// and every call it makes are decided), killed after [`PROGRAM_LIMIT`].
fn run_program(exec: &Exec) -> Result<Output, String> {
    let mut command = std::process::Command::new(&exec.program);
    command
        .args(&exec.args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(cwd) = &exec.cwd {
        command.current_dir(cwd);
    }
    for (name, value) in &exec.env {
        command.env(name, value);
    }
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let reader = |pipe: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = reader(out);
    let stderr = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = err {
            let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
        }
        bytes
    });
    let deadline = std::time::Instant::now() + PROGRAM_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.to_string(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break "killed at the time limit".into();
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Embedded mode: starts the enforcer with `Kernel::spawn`, as an agent
/// program that embeds the kernel does, then confines this process with
/// `lockdown`. Everything after this is the adversary.
fn embedded(plan: &Plan, approval: Option<Duration>) -> Result<Kernel, String> {
    let mut policies = plan.policies.iter();
    let first = policies.next().ok_or("no policy")?;
    let mut config = SpawnConfig::new(first, &plan.workspace, &plan.evidence)
        .enforcer(&plan.enforcer_binary)
        .key_file(&plan.key)
        .control_socket(&plan.control)
        .protect(&plan.outside_secret)
        .protect(&plan.config)
        .startup_timeout(Duration::from_secs(20));
    if approval.is_none() {
        config = config.timeout(Duration::from_secs(20));
    }
    for policy in policies {
        config = config.policy(policy);
    }
    if let Some(wait) = approval {
        config = config.await_approval(wait);
    }
    let kernel = Kernel::spawn(config).map_err(|e| format!("cannot spawn the kernel: {e}"))?;
    kernel
        .lockdown(Path::new(&plan.scratch))
        .map_err(|e| format!("lockdown: {e}"))?;
    Ok(kernel)
}
