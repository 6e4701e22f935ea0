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

use crate::governed::egress::EgressProxy;
use crate::governed::exec_trace::{self, ExecLedger};
use crate::governed::notify;
use crate::governed::rate::RateLimit;
use crate::pre_exec;
use crate::session::handoff::HandoffListener;
use crate::session::serve::{
    FinishOnDrop, ServeError, ServeOptions, SharedSession, serve_channels, serve_without_client,
};
use crate::session::{Session, SystemCall};
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_confine::{Prepared, Profile};
use parking_lot::Mutex;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kernel_core::CHANNEL_ENV;
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
pub struct AgentLaunch {
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
    /// not use the client): see [`crate::governed::notify`]. The agent then need not
    /// connect, and the workspace is reachable only through decided opens.
    pub govern_syscalls: bool,
    /// With `govern_syscalls`: decisions per second the agent may cause
    /// (see [`RateLimit`]).
    pub syscall_rate: u32,
    /// Trees the agent may read and run besides the system trees (resolved
    /// paths): toolchains kept elsewhere.
    pub system_trees: Vec<PathBuf>,
    /// With `govern_syscalls`: run an egress proxy for the agent and
    /// announce it in its environment, so that host names are decided by
    /// name (see [`crate::governed::egress`]).
    pub egress_proxy: bool,
}

/// Resolves a program name through `PATH`, to an absolute path. Symbolic
/// links are kept: a multi-call program (rustup's `cargo`, busybox)
/// chooses what to be by the name it was started as.
pub fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() > 1 || program.is_absolute() {
        return std::path::absolute(program).unwrap_or_else(|_| program.to_owned());
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .map(|found| std::path::absolute(&found).unwrap_or(found))
        .unwrap_or_else(|| program.to_owned())
}

/// Prepares the agent's confinement (before anything is started).
pub fn prepare(agent: &AgentLaunch) -> Result<Option<Prepared>, SuperviseError> {
    if agent.danger_unconfined {
        return Ok(None);
    }
    Ok(Some(Prepared::new(&profile_of(agent))?))
}

fn profile_of(agent: &AgentLaunch) -> Profile {
    let mut profile = Profile::new(&agent.workspace, &agent.scratch, &agent.program);
    profile.protected = agent.protected.clone();
    profile
        .system_read
        .extend(agent.system_trees.iter().cloned());
    profile.workspace_readable = !agent.govern_syscalls;
    profile.tcp_sockets = agent.govern_syscalls;
    // Governed, Unix connects and metadata changes are decided: what would
    // reach a listener or change a file's attributes without a call the
    // enforcer sees is refused.
    profile.unix_datagrams = !agent.govern_syscalls;
    profile.attribute_ioctls = !agent.govern_syscalls;
    // Governed, every exec is decided by policy and verified after
    // (`exec_trace`); Landlock still limits it to the system trees.
    profile.system_execute = agent.govern_syscalls;
    // Governed, programs built in the workspace may run too: each exec is
    // decided and verified, and every open is the enforcer's.
    profile.workspace_executable = agent.govern_syscalls;
    profile
}

/// What an agent governed at the system-call boundary may open without a
/// decision, because Landlock grants it anyway.
fn governor(
    agent: &AgentLaunch,
    broker: crate::session::broker::Broker,
    execs: Arc<ExecLedger>,
    egress: Option<crate::governed::egress::Door>,
) -> notify::Governor {
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
        execute_granted: profile
            .system_read
            .iter()
            .chain(&profile.executables)
            .chain(profile.workspace_executable.then_some(&profile.workspace))
            .cloned()
            .collect(),
        execs: Some(execs),
        rate: RateLimit::per_second(agent.syscall_rate),
        egress,
    }
}

/// Starts the agent, confined, and waits for it to join; then serves the
/// session until it leaves, and returns its exit status. Only the agent's
/// own process may join `handoff`, the socket on which brokered
/// connections reach it.
pub fn run(
    agent: &AgentLaunch,
    confinement: Option<Prepared>,
    session: Session,
    handoff: HandoffListener,
    options: &ServeOptions,
) -> Result<ExitStatus, SuperviseError> {
    let channel = |e: std::io::Error| SuperviseError::Serve(ServeError::Channel(e.to_string()));
    let session: SharedSession = Arc::new(Mutex::new(session));
    // However this returns (an agent that never connects, a failed start),
    // the evidence ends with a final checkpoint.
    let _finish = FinishOnDrop(Arc::clone(&session));
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
    let mut command = Command::new(&agent.program);
    command
        .args(&agent.args)
        .current_dir(&agent.workspace)
        .env(CHANNEL_ENV, &name)
        .env(SCRATCH_ENV, &agent.scratch)
        .process_group(0);
    let mut egress = None;
    if agent.govern_syscalls {
        // The scratch directory is the one place a governed agent writes
        // without a decision: temporary files go there.
        command.env("TMPDIR", &agent.scratch);
        if agent.egress_proxy {
            let proxy = EgressProxy::bind().map_err(|e| {
                SuperviseError::Serve(ServeError::Channel(format!(
                    "cannot start the egress proxy: {e}"
                )))
            })?;
            for (name, value) in proxy.environment() {
                command.env(name, value);
            }
            for name in crate::governed::egress::REMOVED_VARIABLES {
                command.env_remove(name);
            }
            eprintln!(
                "kernel-enforcer: host names go through the egress proxy at {} (HTTP_PROXY, HTTPS_PROXY)",
                proxy.url()
            );
            egress = Some(proxy);
        }
    }
    match (governed, confinement) {
        (Some((child_side, parent_side)), Some(prepared)) => {
            // Traced first: the confinement then refuses `ptrace`.
            pre_exec::trace(&mut command);
            pre_exec::confine(&mut command, prepared, Some(child_side));
            return run_governed(
                agent,
                command,
                parent_side,
                session,
                handoff,
                options,
                egress,
            );
        }
        (_, Some(prepared)) => pre_exec::confine(&mut command, prepared, None),
        (_, None) => {}
    }
    let child = command.spawn().map_err(|source| SuperviseError::Start {
        program: agent.program.clone(),
        source,
    })?;
    let socket = handoff.handoff();
    handoff.accept_in_background(child.id(), agent.connect_timeout);
    let status = serve_agent(agent, server, &name, child, session, options);
    socket.remove_socket();
    status
}

/// Supervised mode for an agent governed at the system-call boundary
/// ([`notify`], [`exec_trace`]): the agent is started and traced by a
/// thread of its own (the tracer must be the thread that forked it) while
/// this one receives the notification listener and serves it, so that
/// even the agent's own first `exec` is answered.
fn run_governed(
    agent: &AgentLaunch,
    mut command: Command,
    parent: notify::ParentSide,
    session: SharedSession,
    handoff: HandoffListener,
    options: &ServeOptions,
    egress: Option<EgressProxy>,
) -> Result<ExitStatus, SuperviseError> {
    let channel = |e: std::io::Error| SuperviseError::Serve(ServeError::Channel(e.to_string()));
    let Some(broker) = session.lock().broker().cloned() else {
        return Err(channel(std::io::Error::other(
            "no broker to perform decided opens",
        )));
    };
    let program = agent.program.to_string_lossy().into_owned();
    let argv = std::iter::once(program.clone())
        .chain(agent.args.iter().cloned())
        .collect();
    let ledger = Arc::new(ExecLedger::new(program, argv));
    let door = egress.as_ref().map(EgressProxy::door);
    if let Some(proxy) = egress {
        // Requests through the proxy are decided like the agent's own
        // calls: recorded durably first, denied once halted, and a
        // session whose lock does not come in time denies.
        let shared = Arc::clone(&session);
        let decide: crate::governed::egress::Decide =
            Arc::new(
                move |action| match shared.try_lock_for(notify::ANSWER_DEADLINE) {
                    Some(mut session) => session.decide_system_call(action),
                    None => SystemCall::denied(),
                },
            );
        let latch = session.lock().halt_latch();
        proxy
            .serve(
                decide,
                Arc::new(fault_halts(&session)),
                latch,
                RateLimit::per_second(agent.syscall_rate),
            )
            .map_err(channel)?;
    }
    let (started_tx, started) = mpsc::channel();
    let tracer = {
        let ledger = Arc::clone(&ledger);
        std::thread::Builder::new()
            .name("agent-tracer".into())
            .spawn(move || {
                let child = match command.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return None;
                    }
                };
                // The child's end of the listener's socket pair lives in
                // the command.
                drop(command);
                let pid = i32::try_from(child.id()).unwrap_or(-1);
                let _ = started_tx.send(Ok(child.id()));
                exec_trace::trace(pid, &ledger)
            })
            .map_err(channel)?
    };
    let stop_agent = |pid: u32| {
        if let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    };
    let listener = parent.receive();
    if let Ok(listener) = &listener {
        let governor = governor(agent, broker, Arc::clone(&ledger), door);
        let shared = Arc::clone(&session);
        let listener = listener.try_clone().map_err(channel)?;
        let latch = session.lock().halt_latch();
        let fault = fault_halts(&session);
        std::thread::spawn(move || {
            notify::serve(
                listener,
                &governor,
                &|action| shared.lock().decide_system_call(action),
                &fault,
                &latch,
            );
        });
    }
    let pid = match started.recv() {
        Ok(Ok(pid)) => pid,
        Ok(Err(source)) => {
            return Err(SuperviseError::Start {
                program: agent.program.clone(),
                source,
            });
        }
        Err(_) => return Err(channel(std::io::Error::other("the agent was not started"))),
    };
    if let Err(e) = listener {
        stop_agent(pid);
        let _ = tracer.join();
        handoff.handoff().remove_socket();
        return Err(channel(e));
    }
    let socket = handoff.handoff();
    handoff.accept_in_background(pid, agent.connect_timeout);
    // The control socket and signals are served all the same, so the
    // operator's kill switch works.
    let halted = serve_without_client(session, options, || tracer.is_finished());
    if let Ok(Some(cause)) = &halted {
        eprintln!("kernel-enforcer: halted ({cause}); stopping the agent");
    }
    // Whatever ended the session (the agent's exit, a halt, a signal to
    // the enforcer, a fault), the agent does not outlive it: its main
    // process is killed, even in the middle of a system call waiting for
    // an answer, and the tracer then returns and takes every other agent
    // process with it (`PTRACE_O_EXITKILL`).
    if !tracer.is_finished() {
        if matches!(halted, Ok(None)) {
            eprintln!("kernel-enforcer: the session was ended; stopping the agent");
        }
        stop_agent(pid);
    }
    let status = tracer.join();
    socket.remove_socket();
    halted?;
    match status {
        Ok(Some(status)) => Ok(std::os::unix::process::ExitStatusExt::from_raw(status)),
        _ => Err(channel(std::io::Error::other(
            "the agent could not be waited for",
        ))),
    }
}

/// What a fault of the enforcer's own (a panicking handler, a decision
/// that does not come) does to `session`: halts it, recorded when the
/// session's lock can be had; the latch stops the session either way.
fn fault_halts(session: &SharedSession) -> impl Fn(&str) + Send + Sync + 'static {
    let shared = Arc::clone(session);
    let latch = session.lock().halt_latch();
    move |cause: &str| match shared.try_lock_for(Duration::from_millis(200)) {
        // A governed session has no client channel, so no request waits
        // for an operator: the halt's replies have nobody to go to.
        Some(mut session) => drop(session.halt(cause, "enforcer")),
        None => drop(latch.halt(cause)),
    }
}

/// Waits for the started agent to join, serves it until it leaves, and
/// returns its exit status.
fn serve_agent(
    agent: &AgentLaunch,
    server: IpcOneShotServer<EnforcerEnds>,
    name: &str,
    mut child: Child,
    session: SharedSession,
    options: &ServeOptions,
) -> Result<ExitStatus, SuperviseError> {
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
    agent: &AgentLaunch,
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
