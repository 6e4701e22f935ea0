//! Supervised mode: `kernel-enforcer run -- PROGRAM ARGS...`.
//!
//! The enforcer starts first, makes itself non-dumpable, prepares the
//! agent's confinement, and only then starts the agent: in its own process
//! group, with the channel name in `AGENT_KERNEL_CHANNEL`, confined
//! (Landlock and seccomp) between `fork` and `exec`, so not one instruction
//! of the agent runs unconfined. An agent that does not connect in time,
//! or a system that cannot confine, fails start-up. When the agent exits,
//! the enforcer writes its final checkpoint and exits with the agent's
//! status.

use crate::handoff::HandoffListener;
use crate::notify;
use crate::serve::{ServeError, ServeOptions, SharedSession, serve_channels, serve_without_client};
use crate::session::Session;
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_confine::{Prepared, Profile};
use parking_lot::Mutex;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Environment variable carrying the channel name to the agent.
pub const CHANNEL_ENV: &str = "AGENT_KERNEL_CHANNEL";
/// Environment variable naming the agent's private scratch directory.
pub const SCRATCH_ENV: &str = "AGENT_KERNEL_SCRATCH";

/// The ends the enforcer uses when the agent joins it.
type EnforcerEnds = (IpcReceiver<Vec<u8>>, IpcSender<Vec<u8>>);

/// Why supervised start-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// The system cannot confine the agent (and the operator did not choose
    /// to run it unconfined).
    #[error("{0}; refusing to start (pass --danger-unconfined to run the agent unconfined anyway)")]
    Confine(#[from] kernel_confine::ConfineError),
    /// The agent could not be started.
    #[error("cannot start the agent `{program}`: {source}")]
    Start {
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The agent did not connect in time.
    #[error("the agent did not connect to the kernel within {0:?}; it was stopped")]
    NoConnection(Duration),
    /// The agent exited before connecting.
    #[error("the agent exited before connecting to the kernel ({0})")]
    ExitedEarly(ExitStatus),
    /// The channel failed.
    #[error("{0}")]
    Serve(#[from] ServeError),
}

/// How to run the agent.
#[derive(Debug)]
pub struct Agent {
    /// The program (resolved through `PATH` if it has no `/`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The workspace (its working directory).
    pub workspace: PathBuf,
    /// Its private scratch directory.
    pub scratch: PathBuf,
    /// Paths the confinement must keep out of its reach.
    pub protected: Vec<PathBuf>,
    /// Run without confinement (recorded as such).
    pub danger_unconfined: bool,
    /// How long the agent has to connect.
    pub connect_timeout: Duration,
    /// Decide the agent's own `open` calls by policy (for agents that do
    /// not use the client): see [`crate::notify`]. The agent then need not
    /// connect, and the workspace is reachable only through decided opens.
    pub govern_syscalls: bool,
}

/// Resolves a program name through `PATH`.
pub fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() > 1 || program.is_absolute() {
        return std::fs::canonicalize(program).unwrap_or_else(|_| program.to_owned());
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .map(|found| std::fs::canonicalize(&found).unwrap_or(found))
        .unwrap_or_else(|| program.to_owned())
}

/// Prepares the agent's confinement (before anything is started).
pub fn prepare(agent: &Agent) -> Result<Option<Prepared>, SuperviseError> {
    if agent.danger_unconfined {
        return Ok(None);
    }
    Ok(Some(Prepared::new(&profile_of(agent))?))
}

fn profile_of(agent: &Agent) -> Profile {
    let mut profile = Profile::new(&agent.workspace, &agent.scratch, &agent.program);
    profile.protected = agent.protected.clone();
    profile.workspace_readable = !agent.govern_syscalls;
    profile.tcp_sockets = agent.govern_syscalls;
    profile
}

/// What an agent governed at the system-call boundary may open without a
/// decision, because Landlock grants it anyway.
fn governor(agent: &Agent, broker: crate::broker::Broker) -> notify::Governor {
    let profile = profile_of(agent);
    let devices = ["/dev/null", "/dev/zero", "/dev/urandom"].map(PathBuf::from);
    notify::Governor {
        broker,
        read_granted: profile
            .system_read
            .iter()
            .chain(&profile.executables)
            .chain(&devices)
            .chain([&profile.scratch])
            .cloned()
            .collect(),
        write_granted: vec![profile.scratch.clone(), PathBuf::from("/dev/null")],
    }
}

/// Starts the agent, confined, and waits for it to join; then serves the
/// session until it leaves, and returns its exit status. Only the agent's
/// own process may join `handoff`, the socket on which brokered
/// connections reach it.
pub fn run(
    agent: &Agent,
    confinement: Option<Prepared>,
    session: Session,
    handoff: HandoffListener,
    options: &ServeOptions,
) -> Result<ExitStatus, SuperviseError> {
    let channel = |e: std::io::Error| SuperviseError::Serve(ServeError::Channel(e.to_string()));
    let (server, name) = IpcOneShotServer::<EnforcerEnds>::new().map_err(channel)?;
    let governed = match (agent.govern_syscalls, &confinement) {
        (true, Some(_)) => Some(notify::prepare().map_err(channel)?),
        (true, None) => {
            return Err(SuperviseError::Serve(ServeError::Channel(
                "governing system calls needs the confinement: drop --danger-unconfined".into(),
            )));
        }
        (false, _) => None,
    };
    let (child_side, parent_side) = match governed {
        Some((child, parent)) => (Some(child), Some(parent)),
        None => (None, None),
    };
    let mut command = Command::new(&agent.program);
    command
        .args(&agent.args)
        .current_dir(&agent.workspace)
        .env(CHANNEL_ENV, &name)
        .env(SCRATCH_ENV, &agent.scratch)
        .process_group(0);
    if let Some(prepared) = confinement {
        confine_before_exec(&mut command, prepared, child_side);
    }
    let mut child = command.spawn().map_err(|source| SuperviseError::Start {
        program: agent.program.clone(),
        source,
    })?;
    // The child's end of the listener's socket pair lives in the command.
    drop(command);
    let socket = handoff.handoff();
    handoff.accept_in_background(child.id(), agent.connect_timeout);
    let broker = session.broker().cloned();
    let session: SharedSession = Arc::new(Mutex::new(session));
    if let Some(parent) = parent_side {
        let listener = match parent.receive() {
            Ok(listener) => listener,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                socket.remove_socket();
                return Err(channel(e));
            }
        };
        let Some(broker) = broker else {
            let _ = child.kill();
            let _ = child.wait();
            socket.remove_socket();
            return Err(channel(std::io::Error::other(
                "no broker to perform decided opens",
            )));
        };
        let governor = governor(agent, broker);
        let shared = Arc::clone(&session);
        std::thread::spawn(move || {
            notify::serve(listener, &governor, &|action| {
                shared.lock().decide_system_call(action)
            });
        });
    }
    let status = serve_agent(agent, server, &name, child, session, options);
    socket.remove_socket();
    status
}

/// Waits for the started agent to join, serves it until it leaves, and
/// returns its exit status.
fn serve_agent(
    agent: &Agent,
    server: IpcOneShotServer<EnforcerEnds>,
    name: &str,
    mut child: Child,
    session: SharedSession,
    options: &ServeOptions,
) -> Result<ExitStatus, SuperviseError> {
    if agent.govern_syscalls {
        // Governed at the system-call boundary, the agent does not use the
        // client channel; the control socket and signals are served all
        // the same, so the operator's kill switch works.
        drop(server);
        let halted =
            serve_without_client(session, options, || !matches!(child.try_wait(), Ok(None)))?;
        return finish(agent, child, halted);
    }
    let (requests, replies) = match wait_for_agent(server, name, &mut child, agent.connect_timeout)
    {
        Ok(ends) => ends,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let halted = serve_channels(requests, replies, session, options)?;
    finish(agent, child, halted)
}

/// Stops the agent if the session halted (nothing it asks could be
/// allowed anyway), and returns its exit status.
fn finish(
    agent: &Agent,
    mut child: Child,
    halted: Option<String>,
) -> Result<ExitStatus, SuperviseError> {
    if let Some(cause) = halted {
        eprintln!("kernel-enforcer: halted ({cause}); stopping the agent");
        let _ = child.kill();
    }
    child.wait().map_err(|source| SuperviseError::Start {
        program: agent.program.clone(),
        source,
    })
}

fn wait_for_agent(
    server: IpcOneShotServer<EnforcerEnds>,
    name: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<EnforcerEnds, SuperviseError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.accept());
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok((_, ends))) => return Ok(ends),
            Ok(Err(e)) => {
                return Err(SuperviseError::Serve(ServeError::Channel(format!("{e:?}"))));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SuperviseError::Serve(ServeError::Channel(
                    "accept thread ended".into(),
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = IpcSender::<EnforcerEnds>::connect(name.to_owned());
            return Err(SuperviseError::ExitedEarly(status));
        }
        if started.elapsed() > timeout {
            let _ = IpcSender::<EnforcerEnds>::connect(name.to_owned());
            return Err(SuperviseError::NoConnection(timeout));
        }
    }
}

/// Has the child that `command` starts apply `prepared` between `fork` and
/// `exec`, so that not one instruction of the program runs unconfined. If
/// applying fails, the child exits with an error instead of running it.
pub(crate) fn confine_before_exec(
    command: &mut Command,
    mut prepared: Prepared,
    notify: Option<notify::ChildSide>,
) {
    #[allow(
        unsafe_code,
        reason = "pre_exec is how a child is confined before exec"
    )]
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe work is sound when the parent has other
    // threads. `Prepared::apply` only makes system calls (prctl,
    // landlock_restrict_self, seccomp) on descriptors and filters prepared
    // before the fork; it allocates nothing and takes no lock on its
    // success path. Its failure path formats an error message, which
    // allocates: if another thread of the parent held the allocator's lock
    // at the fork, the child could block there, but it never gets to run
    // the program unconfined (the broker kills children at its time
    // limit; supervised mode forks before starting any thread).
    unsafe {
        command.pre_exec(move || {
            prepared
                .apply()
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
            match &notify {
                Some(notify) => notify.install(),
                None => Ok(()),
            }
        });
    }
}
