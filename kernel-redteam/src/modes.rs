//! The modes the kernel ships, each a column of the campaign's table, and
//! how the runner starts a session of each around an adversary.
//!
//! | mode | what runs | the adversary |
//! |---|---|---|
//! | `supervised` | `kernel-enforcer run --config kernel.toml -- AGENT` | the agent, confined, using the client |
//! | `governed` | `kernel-enforcer run --govern-syscalls --config governed.toml -- AGENT` (coding-agent profile) | the agent, confined, its own system calls decided |
//! | `embedded` | AGENT, which calls `Kernel::spawn` and `lockdown` | the agent after `lockdown` |
//! | `endpoint` | `kernel-enforcer listen`, then AGENT unconfined | a process using `exec`, `ask`, the hooks and the endpoint's frames |
//! | `mcp-proxy` | `kernel-enforcer mcp-proxy -- FAKE-MCP-SERVER` | the MCP client (played by the runner) |

use crate::plan::Attempt;
use crate::world::World;
use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A way to run an agent under the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub(crate) enum Mode {
    Supervised,
    Governed,
    Embedded,
    Endpoint,
    McpProxy,
}

impl Mode {
    /// Every mode, in the table's column order.
    pub(crate) const ALL: [Self; 5] = [
        Self::Supervised,
        Self::Governed,
        Self::Embedded,
        Self::Endpoint,
        Self::McpProxy,
    ];

    /// The mode's name (a column of the table, `--mode`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Supervised => "supervised",
            Self::Governed => "governed",
            Self::Embedded => "embedded",
            Self::Endpoint => "endpoint",
            Self::McpProxy => "mcp-proxy",
        }
    }

    /// The mode named `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Why `class` does not apply to `mode`, or `None` if it does. Shown in
/// the JSON report and in docs/CAMPAIGN.md.
pub(crate) fn not_applicable(class: &str, mode: Mode) -> Option<&'static str> {
    use Mode::{Embedded, Endpoint, Governed, McpProxy, Supervised};
    const NO_CHANNEL: &str =
        "a governed agent has no channel to the kernel: its system calls are decided instead";
    const UNCONFINED: &str = "the agent is not confined: the gateway decides what it is asked, the agent may do anything its uid can";
    const TOOLS_ONLY: &str = "the MCP gateway decides tool calls only";
    match (class, mode) {
        ("parser-differentials", Supervised | Governed | Embedded) => {
            Some("no JSON gateway: the channel carries typed, signed frames")
        }
        ("argument-smuggling", Governed) => {
            Some("the coding-agent profile constrains no tool and no program by its arguments")
        }
        ("liveness", Embedded) => Some(
            "a halt denies everything but does not end an embedding program (only agents under `run` are ended)",
        ),
        ("liveness", McpProxy) => Some(
            "the gateway is the agent's child: a halt denies its calls, it does not end the agent",
        ),
        ("protocol-abuse" | "receipts-replay" | "control-approvals" | "trust-anchor", Governed) => {
            Some(NO_CHANNEL)
        }
        ("env-injection", Governed) => Some(
            "code injected into a governed program is governed too: every call it makes is decided",
        ),
        ("direct-syscalls" | "evidence-tamper", Endpoint | McpProxy) => Some(UNCONFINED),
        (
            "path-tricks" | "links-toctou" | "argv-tricks" | "env-injection" | "self-modification"
            | "receipts-replay" | "trust-anchor",
            McpProxy,
        ) => Some(TOOLS_ONLY),
        _ => None,
    }
}

/// One session of the kernel around an adversary.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) mode: Mode,
    /// What the runner started: the enforcer (`run`: supervised,
    /// governed) or the agent (embedded, endpoint).
    pub(crate) child: Child,
    /// `kernel-enforcer listen` (endpoint mode).
    pub(crate) listener: Option<Child>,
    enforcer: Option<u32>,
    pub(crate) evidence: PathBuf,
    pub(crate) control: PathBuf,
    enforcer_binary: PathBuf,
    agent_binary: PathBuf,
    pub(crate) lines: Option<Lines<BufReader<ChildStdout>>>,
    pub(crate) stdin: Option<ChildStdin>,
}

/// Appends to the campaign's log of the enforcers' and agents' standard
/// error.
pub(crate) fn log_file(world: &World) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(world.root.join("enforcer.stderr"))
        .map_err(|e| e.to_string())
}

/// Polls `done` every 10 ms until it holds or `limit` has passed; whether
/// it held.
pub(crate) fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `kernel-enforcer listen` on a socket of its own for batch
/// `name`, and waits until it answers.
pub(crate) fn start_listen(
    world: &World,
    mode: Mode,
    name: &str,
    evidence: &std::path::Path,
) -> Result<(Child, PathBuf), String> {
    let socket = world.root.join("run").join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&socket);
    let listener = spawn_listen(world, mode, &socket, evidence)?;
    wait_listen(listener, &socket)
}

/// Starts `kernel-enforcer listen --socket SOCKET` (what is at `socket`
/// is left as it is: `listen` decides).
pub(crate) fn spawn_listen(
    world: &World,
    mode: Mode,
    socket: &std::path::Path,
    evidence: &std::path::Path,
) -> Result<Child, String> {
    Command::new(&world.enforcer)
        .arg("listen")
        .arg("--config")
        .arg(world.config(mode))
        .arg("--evidence")
        .arg(evidence)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(world)?)
        .spawn()
        .map_err(|e| format!("cannot start `listen`: {e}"))
}

/// Waits until `listen` answers on `socket` (or ends).
pub(crate) fn wait_listen(
    mut listener: Child,
    socket: &std::path::Path,
) -> Result<(Child, PathBuf), String> {
    let socket = socket.to_owned();
    let up = wait_for(Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
            || !matches!(listener.try_wait(), Ok(None))
    });
    if !up || !matches!(listener.try_wait(), Ok(None)) {
        let _ = listener.kill();
        let _ = listener.wait();
        return Err("`kernel-enforcer listen` did not come up (see enforcer.stderr)".into());
    }
    Ok((listener, socket))
}

impl Session {
    /// Starts a session of `mode` around the adversary of `class`, for the
    /// batch `name` (its evidence file and control socket are its own).
    pub(crate) fn start(
        world: &mut World,
        mode: Mode,
        class: &str,
        name: &str,
        seed: u64,
        count: usize,
        flood: usize,
    ) -> Result<Self, String> {
        world.for_mode(mode);
        let (evidence, control) = world.for_batch(name);
        let mut listener = None;
        if mode == Mode::Endpoint {
            let (child, socket) = start_listen(world, mode, name, &evidence)?;
            world.plan.endpoint = socket.to_string_lossy().into_owned();
            world.plan.enforcer_pid = child.id();
            listener = Some(child);
        }
        let plan = serde_json::to_string(&world.plan).map_err(|e| e.to_string())?;
        let agent_args = [
            "agent".to_owned(),
            "--class".into(),
            class.into(),
            "--seed".into(),
            seed.to_string(),
            "--count".into(),
            count.to_string(),
            "--flood".into(),
            flood.to_string(),
            "--plan".into(),
            plan,
        ];
        let mut command = match mode {
            Mode::Supervised | Mode::Governed => {
                let mut c = Command::new(&world.enforcer);
                c.arg("run");
                if mode == Mode::Governed {
                    c.arg("--govern-syscalls");
                }
                c.arg("--config")
                    .arg(world.config(mode))
                    .arg("--evidence")
                    .arg(&evidence)
                    .arg("--scratch")
                    .arg(&world.plan.scratch)
                    .arg("--")
                    .arg(&world.plan.agent_binary);
                c
            }
            Mode::Embedded | Mode::Endpoint | Mode::McpProxy => {
                Command::new(&world.plan.agent_binary)
            }
        };
        let mut child = command
            .args(agent_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(world)?)
            .spawn()
            .map_err(|e| format!("cannot start the {} session: {e}", mode.name()))?;
        let lines = child.stdout.take().map(|s| BufReader::new(s).lines());
        let stdin = child.stdin.take();
        let enforcer = match mode {
            Mode::Supervised | Mode::Governed => Some(child.id()),
            Mode::Endpoint => listener.as_ref().map(Child::id),
            Mode::Embedded | Mode::McpProxy => None,
        };
        Ok(Self {
            mode,
            child,
            listener,
            enforcer,
            evidence,
            control,
            enforcer_binary: world.enforcer.clone(),
            agent_binary: PathBuf::from(&world.plan.agent_binary),
            lines,
            stdin,
        })
    }

    /// The next attempt the agent reports, with the raw line; `None` when
    /// the agent is done.
    pub(crate) fn next_attempt(&mut self) -> Option<Result<(Attempt, String), String>> {
        let lines = self.lines.as_mut()?;
        for line in lines.by_ref() {
            let Ok(line) = line else { return None };
            let Some(json) = line.strip_prefix("@@") else {
                continue;
            };
            return Some(
                serde_json::from_str(json)
                    .map(|a| (a, line.clone()))
                    .map_err(|e| format!("bad report: {e}")),
            );
        }
        None
    }

    /// Lets the agent go on to its next attempt; whether it still listens.
    pub(crate) fn go_on(&mut self) -> bool {
        use std::io::Write as _;
        self.stdin
            .as_mut()
            .is_some_and(|stdin| writeln!(stdin, "ok").is_ok())
    }

    /// The enforcer's pid, once known. In embedded mode it is the agent's
    /// child running the enforcer binary.
    pub(crate) fn enforcer_pid(&mut self) -> Option<u32> {
        if self.enforcer.is_none() && self.mode == Mode::Embedded {
            self.enforcer = children(self.child.id()).into_iter().find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe == self.enforcer_binary)
            });
        }
        self.enforcer
    }

    /// The agent's processes: the agent and everything it started (but not
    /// the enforcer, nor what the enforcer runs for it).
    pub(crate) fn agent_pids(&mut self) -> Vec<u32> {
        let agent = match self.mode {
            Mode::Supervised | Mode::Governed => {
                children(self.child.id()).into_iter().find(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|exe| exe == self.agent_binary)
                })
            }
            _ => Some(self.child.id()),
        };
        let enforcer = self.enforcer_pid();
        let mut all = Vec::new();
        if let Some(agent) = agent {
            all.push(agent);
            let mut i = 0;
            while let Some(&pid) = all.get(i) {
                all.extend(children(pid).into_iter().filter(|c| Some(*c) != enforcer));
                i += 1;
            }
        }
        all
    }

    /// Ends the session: waits for the agent to finish (closing its input
    /// first), then for the enforcer; returns the status text and what went
    /// wrong.
    pub(crate) fn finish(mut self) -> (String, Vec<String>) {
        let mut problems = Vec::new();
        drop(self.stdin.take());
        let enforcer = self.enforcer_pid();
        let status = match self.child.wait() {
            Ok(status) => status,
            Err(e) => return (e.to_string(), vec![e.to_string()]),
        };
        let mut text = format!("{} {status}", self.mode.name());
        if !status.success() {
            problems.push(format!(
                "the {} session ended with {status} (see enforcer.stderr)",
                self.mode.name()
            ));
        }
        match (self.mode, &mut self.listener) {
            (Mode::Endpoint, Some(listener)) => {
                // The operator stops `listen` (a clean end: final checkpoint).
                signal(listener.id(), rustix::process::Signal::TERM);
                let ended = wait_for(Duration::from_secs(10), || {
                    !matches!(listener.try_wait(), Ok(None))
                });
                if !ended {
                    let _ = listener.kill();
                    problems.push("`listen` did not end on SIGTERM within 10 s".into());
                }
                let status = listener.wait().map(|s| s.to_string()).unwrap_or_default();
                text.push_str(&format!("; listen {status}"));
            }
            (Mode::Embedded, _) => {
                // The embedded enforcer ends when its client is gone.
                if let Some(pid) = enforcer
                    && !wait_for(Duration::from_secs(10), || !alive(pid))
                {
                    problems.push(format!("the embedded enforcer {pid} outlived its agent"));
                }
            }
            _ => {}
        }
        (text, problems)
    }

    /// Kills whatever of the session still runs.
    pub(crate) fn kill(&mut self) {
        for pid in self.agent_pids() {
            signal(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(listener) = &mut self.listener {
            let _ = listener.kill();
            let _ = listener.wait();
        }
    }
}

/// The children of `pid` (of all its threads).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Sends `signal` to `pid`; whether it was delivered.
pub(crate) fn signal(pid: u32, signal: rustix::process::Signal) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::kill_process(pid, signal).is_ok())
}
