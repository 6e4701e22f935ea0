//! The `kernel-enforcer` command line.

mod audit;
pub mod config;
mod gateway;
mod init;
mod instances;
mod policy;

use crate::governed::supervise;
use crate::session::broker::{Broker, DEFAULT_EXEC_TIMEOUT};
use crate::session::control::{self, ControlRequest, ControlSocket};
use crate::session::evidence::{Durability, EvidenceLog, FullCheck, Interrupted, Opened};
use crate::session::handoff::HandoffListener;
use crate::session::keys;
use crate::session::serve::{self, ServeOptions};
use crate::session::{
    DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_RECORDS, DEFAULT_PERMIT_TTL, Session,
    SessionConfig,
};
use audit::{LogArgs, VerifyArgs, WitnessArgs};
use clap::{Parser, Subcommand};
use config::FileConfig;
use kernel_core::{Confinement, format_public_key};
use kernel_policy::{Environment, PolicyEngine, PolicyLoadError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The enforcer of the agent safety kernel: holds the signing key, decides
/// every proposed action by policy, and records each decision as signed
/// evidence before replying.
#[derive(Debug, Parser)]
#[command(name = "kernel-enforcer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one client session (started by the client library, which
    /// passes the channel name).
    Serve(ServeArgs),
    /// Supervise an agent: start the enforcer, then the agent, confined
    /// (Landlock and seccomp) before its first instruction, with the
    /// channel name in AGENT_KERNEL_CHANNEL. Exits with the agent's status.
    Run(RunArgs),
    /// Generate a signing key pair: `kernel.key` (PKCS#8 PEM, mode 0600)
    /// and `kernel.pub`.
    Keygen {
        /// Directory to write the key files into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a completion script for a shell, such as
    /// `kernel-enforcer completions bash > ~/.local/share/bash-completion/completions/kernel-enforcer`
    /// (see the README for zsh and fish).
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check evidence files.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Kill switch: from now on the running enforcer denies everything,
    /// until it is restarted. Recorded with who asked.
    Halt {
        #[command(flatten)]
        control: ControlArgs,
        /// Why (recorded in the evidence).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the running enforcer's state.
    Status {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// List requests waiting for an operator's approval.
    Pending {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Approve a waiting request (by the id `pending` shows).
    Approve {
        #[command(flatten)]
        control: ControlArgs,
        /// The request's approval id.
        id: u64,
        /// Also grant the same action for this long (e.g. `90s`, `10m`,
        /// `2h`); needs `--uses`.
        #[arg(long = "for", value_parser = parse_duration)]
        for_duration: Option<Duration>,
        /// How many requests the grant covers in all, this one included.
        #[arg(long)]
        uses: Option<u32>,
    },
    /// Reject a waiting request.
    Reject {
        #[command(flatten)]
        control: ControlArgs,
        /// The request's approval id.
        id: u64,
    },
    /// Validate the policy files again and, if valid, put them in force.
    Reload {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Run an enforcer session that serves decisions to short-lived
    /// processes (`ask`, `exec`, `hook`) on a Unix socket (mode 0600, peer
    /// uid checked), until stopped or halted.
    Listen(ListenArgs),
    /// Ask the running enforcer about one action given as JSON (see
    /// docs/ACTIONS.md); prints the verified receipt as JSON. Exits 0 for
    /// allow, 1 for deny, 2 for any error.
    Ask(gateway::AskArgs),
    /// Have the running enforcer's broker run a program (no shell) if
    /// policy allows it; passes its output and status through. Exits 126
    /// if denied, 125 on any error. Under `run` (AGENT_KERNEL_CHANNEL set,
    /// no --socket) it uses the agent's channel to the supervisor.
    Exec(gateway::ExecArgs),
    /// MCP gateway: start the MCP server SERVER_COMMAND and relay MCP
    /// (JSON-RPC over stdio) between it and the agent, deciding every
    /// `tools/call` before it is forwarded. Decides with its own enforcer
    /// session (`--policy` ...) or a running one (`--socket`).
    McpProxy(McpProxyArgs),
    /// Pre-tool-use hook adapters for coding agents.
    #[command(subcommand)]
    Hook(gateway::HookCommand),
    /// Govern a coding agent in a project: create a key, install the
    /// agent's policy profile and an enforcer configuration, add the hook
    /// to the agent's settings, and write a systemd user unit. Prints what
    /// it did, how to undo it, and what to do next; running it again
    /// changes nothing.
    Init(init::InitArgs),
}

/// `mcp-proxy`: the MCP gateway.
#[derive(Debug, clap::Args)]
struct McpProxyArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Ask a running `kernel-enforcer listen` at this endpoint socket
    /// instead of starting a session here (the session flags cannot be
    /// given with it: that enforcer has its own).
    #[arg(long, conflicts_with = "SessionArgs")]
    socket: Option<PathBuf>,
    /// With `--socket`: the enforcer's public key file; refuse any other.
    #[arg(long, requires = "socket", conflicts_with = "SessionArgs")]
    pubkey: Option<PathBuf>,
    /// The MCP server program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `listen`: serve the decision endpoint.
#[derive(Debug, clap::Args)]
struct ListenArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// The endpoint socket to create (or set AGENT_KERNEL_ENDPOINT, or
    /// `socket` in the configuration file).
    #[arg(long, env = crate::gateways::endpoint::ENDPOINT_ENV)]
    socket: Option<PathBuf>,
    /// The uid allowed to ask. Default: this process's effective uid.
    #[arg(long)]
    client_uid: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct ControlArgs {
    /// The enforcer's control socket (or set AGENT_KERNEL_CONTROL).
    /// Default: the one running enforcer whose control file lies in the
    /// kernel's state directory (`$XDG_STATE_HOME/agent-kernel`, where
    /// `init` and the default evidence path put it); refused when there
    /// are none or several.
    #[arg(long, env = "AGENT_KERNEL_CONTROL")]
    control: Option<PathBuf>,
    /// Authenticate the enforcer by this public key (a `kernel.pub` file)
    /// instead of the key file the enforcer writes at the control path.
    #[arg(long)]
    pubkey: Option<PathBuf>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.len().saturating_sub(1);
    let (number, unit) = text
        .split_at_checked(split)
        .ok_or_else(|| format!("`{text}` is not a duration such as 90s, 10m or 2h"))?;
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 10m or 2h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        "d" => number.saturating_mul(86_400),
        _ => return Err(format!("`{text}` is not a duration such as 90s, 10m or 2h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Name of the client's one-shot channel server.
    #[arg(long)]
    connect: String,
    #[command(flatten)]
    session: SessionArgs,
}

/// `run`: supervise an agent.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// The agent's private scratch directory, the only place it may write
    /// directly. Default: a fresh directory under the system's temporary
    /// directory.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Seconds the agent has to connect to the kernel [default: 10].
    #[arg(long)]
    connect_timeout: Option<u64>,
    /// Run the agent without OS confinement. It can then bypass the kernel
    /// entirely; the evidence records that it ran this way. (Command line
    /// only: no configuration file can set it.)
    #[arg(long)]
    danger_unconfined: bool,
    /// Decide the agent's own file opens, deletions, renames, TCP
    /// connections and programs by policy, at the system-call boundary
    /// (seccomp user notification), for agents that do not use the client
    /// library. The agent then need not connect; workspace files are
    /// reachable only through decided calls.
    #[arg(long)]
    govern_syscalls: bool,
    /// With `--govern-syscalls`: decisions per second the agent may cause,
    /// sustained (bursts of twice as many); calls beyond it wait their
    /// turn up to 100 ms, then fail with `EAGAIN`, unrecorded
    /// [default: 2000].
    #[arg(
        long,
        value_name = "PER_SECOND",
        value_parser = clap::value_parser!(u32).range(1..),
        requires = "govern_syscalls"
    )]
    syscall_rate: Option<u32>,
    /// With `--govern-syscalls` (the default there): run an HTTP proxy for
    /// the agent on 127.0.0.1 and set `HTTP_PROXY`, `HTTPS_PROXY`,
    /// `http_proxy` and `https_proxy` to it (and unset `NO_PROXY`), so
    /// that host names are decided by name: `CONNECT host:port` as a
    /// `net_connect` of the name, a plain `http://` request as an `http`
    /// action. Only the agent's own connections are served.
    #[arg(long, overrides_with = "no_egress_proxy", requires = "govern_syscalls")]
    egress_proxy: bool,
    /// With `--govern-syscalls`: no egress proxy; the agent's environment
    /// is left as it is, and every connection is decided by IP address.
    #[arg(long, overrides_with = "egress_proxy", requires = "govern_syscalls")]
    no_egress_proxy: bool,
    /// Another tree of programs and libraries the agent may read and run
    /// without a decision, as it may `/usr` (repeat for several): a
    /// toolchain kept outside the system trees, such as `~/.rustup` and
    /// `~/.cargo/bin`, or `~/.nvm`. Never writable; refused if one of the
    /// kernel's files lies inside (added to those of the configuration
    /// file).
    #[arg(long = "system-tree", value_name = "DIR")]
    system_trees: Vec<PathBuf>,
    /// The agent program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Settings of one enforcer session, shared by `serve` and `run`. Each
/// can also come from `--config`; a flag given here wins.
#[derive(Debug, clap::Args)]
struct SessionArgs {
    /// Configuration file (TOML, keys named like these flags, relative
    /// paths relative to the file). Flags on the command line win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cedar policy file (repeat for several). Required here or as
    /// `policies` in the configuration file.
    #[arg(long = "policy")]
    policies: Vec<PathBuf>,
    /// The agent's workspace root, visible to policies as
    /// `Workspace::"root"` [default: .].
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Evidence file to append to (created with mode 0600 if missing).
    /// Default: `$XDG_STATE_HOME/agent-kernel/evidence.log` (or
    /// `~/.local/state/...`).
    #[arg(long)]
    evidence: Option<PathBuf>,
    /// Private key file (PKCS#8 PEM, mode 0600). Default: a fresh key for
    /// this session, announced in the handshake and recorded in the
    /// evidence.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Extra paths the floor protects, besides the key, policies, evidence
    /// and this binary (added to those of the configuration file).
    #[arg(long = "protect")]
    protect: Vec<PathBuf>,
    /// Seconds an allow receipt stays valid [default: 30].
    #[arg(long)]
    permit_ttl: Option<u64>,
    /// The path naming the operator's control socket (an abstract socket
    /// named after it, which a confined agent cannot reach). Default: the
    /// evidence file's path with `.control` appended.
    #[arg(long)]
    control: Option<PathBuf>,
    /// The uid allowed on the control socket. Default: this process's
    /// effective uid.
    #[arg(long)]
    operator_uid: Option<u32>,
    /// Sign a checkpoint after this many records [default: 1000].
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Sign a checkpoint when a record has waited this many seconds for
    /// one (a final checkpoint is always written at shutdown) [default: 10].
    #[arg(long)]
    checkpoint_interval: Option<u64>,
    /// Seconds a brokered program may run before it is killed
    /// [default: 30].
    #[arg(long)]
    exec_timeout: Option<u64>,
    /// Write evidence to the OS without `fdatasync` before replying: a
    /// decision's record then survives a crash of the enforcer but not of
    /// the OS or a power loss. Faster, and weaker; command line only.
    #[arg(long, conflicts_with = "evidence_window")]
    danger_evidence_os_buffered: bool,
    /// Write each decision's record before the decision takes effect (it
    /// survives a crash of the enforcer at once) and make it durable
    /// (`fdatasync`) within this many milliseconds, one sync serving
    /// every record of its window; the window is recorded at the start of
    /// the session. Without it, every record is durable before its
    /// decision takes effect (the strict default).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(2..=60_000))]
    evidence_window: Option<u64>,
    /// Keep the evidence in segments of about this size (such as `1GB`,
    /// `64MiB`; at least 1KiB): once a commit fills the active segment,
    /// it is closed into `EVIDENCE.segments/` and a new one begins with a
    /// checkpoint of every record before it, so that old segments can be
    /// archived (docs/EVIDENCE.md). Default: one file.
    #[arg(long, value_name = "SIZE")]
    evidence_segment: Option<crate::cli::config::SegmentSize>,
    /// Shadow mode, to learn what an agent does: decide and record every
    /// action as usual, then let one the policy denies (or asks about)
    /// proceed anyway, recorded as such (`shadow-deny`, `shadow-ask`).
    /// The kernel floor and the kill switch still deny. Announced in the
    /// handshake and recorded at the start of the session; `policy
    /// suggest` writes a policy from the evidence. Command line only.
    #[arg(long)]
    shadow: bool,
}

/// A session's settings once flags, configuration file and defaults are
/// merged.
#[derive(Debug)]
struct Settings {
    policies: Vec<PathBuf>,
    workspace: PathBuf,
    evidence: PathBuf,
    key: Option<PathBuf>,
    protect: Vec<PathBuf>,
    permit_ttl: Duration,
    control: Option<PathBuf>,
    operator_uid: Option<u32>,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    exec_timeout: Duration,
    danger_evidence_os_buffered: bool,
    evidence_window: Option<Duration>,
    evidence_segment: Option<u64>,
    shadow: bool,
    scratch: Option<PathBuf>,
    connect_timeout: Duration,
    syscall_rate: u32,
    system_trees: Vec<PathBuf>,
    egress_proxy: bool,
    socket: Option<PathBuf>,
}

impl SessionArgs {
    /// Merges the flags over the configuration file over the defaults.
    fn settings(&self) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
            None => FileConfig::default(),
        };
        let policies = if self.policies.is_empty() {
            file.policies
        } else {
            self.policies.clone()
        };
        if policies.is_empty() {
            return Err(
                "no policy given: pass `--policy FILE` or set `policies` in the `--config` file"
                    .into(),
            );
        }
        let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map_or(default, Duration::from_secs)
        };
        Ok(Settings {
            policies,
            workspace: self
                .workspace
                .clone()
                .or(file.workspace)
                .unwrap_or_else(|| PathBuf::from(".")),
            evidence: self
                .evidence
                .clone()
                .or(file.evidence)
                .unwrap_or_else(default_evidence),
            key: self.key.clone().or(file.key),
            // The configuration file is one of the kernel's own assets too:
            // whoever edits it chooses the policy, workspace and key.
            protect: file
                .protect
                .into_iter()
                .chain(self.protect.clone())
                .chain(self.config.clone())
                .collect(),
            permit_ttl: secs(self.permit_ttl, file.permit_ttl_secs, DEFAULT_PERMIT_TTL),
            control: self.control.clone().or(file.control),
            operator_uid: self.operator_uid.or(file.operator_uid),
            checkpoint_every: self
                .checkpoint_every
                .or(file.checkpoint_every)
                .unwrap_or(DEFAULT_CHECKPOINT_RECORDS),
            checkpoint_interval: secs(
                self.checkpoint_interval,
                file.checkpoint_interval_secs,
                DEFAULT_CHECKPOINT_INTERVAL,
            ),
            exec_timeout: secs(
                self.exec_timeout,
                file.exec_timeout_secs,
                DEFAULT_EXEC_TIMEOUT,
            ),
            danger_evidence_os_buffered: self.danger_evidence_os_buffered,
            evidence_window: match self.evidence_window.or(file.evidence_window_ms) {
                Some(ms) if !(2..=60_000).contains(&ms) => {
                    return Err(format!(
                        "evidence window of {ms} ms: give 2 to 60000 milliseconds"
                    ));
                }
                // The flag would otherwise silently replace the file's
                // window with the weaker mode.
                Some(_) if self.danger_evidence_os_buffered => {
                    return Err("--danger-evidence-os-buffered cannot be combined with the \
                                configuration file's `evidence_window_ms`: choose one"
                        .into());
                }
                ms => ms.map(Duration::from_millis),
            },
            evidence_segment: self
                .evidence_segment
                .or(file.evidence_segment)
                .map(|size| size.0),
            // The flag only: no configuration file can turn it on.
            shadow: self.shadow,
            scratch: file.scratch,
            connect_timeout: secs(None, file.connect_timeout_secs, DEFAULT_CONNECT_TIMEOUT),
            syscall_rate: file
                .syscall_rate
                .unwrap_or(crate::governed::rate::DEFAULT_RATE_PER_SECOND),
            system_trees: file.system_trees,
            egress_proxy: file.egress_proxy.unwrap_or(true),
            socket: file.socket,
        })
    }
}

/// How long a supervised agent has to connect, by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate policy files against the kernel's schema. Prints
    /// `file:line:col: message` for each problem and exits 1 if any.
    Check {
        /// Print one JSON document instead of text (see the README); the
        /// exit status is the same.
        #[arg(long)]
        json: bool,
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the kernel's Cedar schema.
    Schema,
    /// Run a policy test file: example requests and the decisions (allow,
    /// deny, ask) they must get, decided as the enforcer decides them.
    /// Prints one line per case; exits 1 if any case fails, 2 if the test
    /// file or the policies are invalid.
    Test {
        /// The test file (TOML).
        file: PathBuf,
        /// Policy files to test instead of those the test file names
        /// (repeat for several).
        #[arg(long = "policy")]
        policies: Vec<PathBuf>,
        /// Print one JSON document instead of text (see the README); the
        /// exit status is the same.
        #[arg(long)]
        json: bool,
    },
    /// Show how one request is decided: the decision, the policies that
    /// decided it with their @id and @reason, evaluation errors, and
    /// whether the floor took part.
    Explain(policy::ExplainArgs),
    /// Find requests a new policy set allows (or allows without an
    /// approval) that an old one did not, with a counterexample, by
    /// Cedar's symbolic analysis (needs the cvc5 solver). Exits 0 if there
    /// are none, 1 if there are, 2 if that could not be decided.
    Diff(policy::DiffArgs),
    /// Write Cedar permits from verified evidence (what an agent was seen
    /// to do, in shadow mode for instance), with the base's forbids kept
    /// on top; print what the analyser finds they allow beyond the base,
    /// and with --max-widening fail when a permit allows a request class
    /// no record exercised. Exits 0, 1 when wider, 2 on any error.
    Suggest(policy::SuggestArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an evidence log with public keys only (with the closed
    /// segments kept beside it, as one log). Exits 0 when sound, 1 with
    /// the first faulty record index (and file) otherwise.
    Verify(VerifyArgs),
    /// Print every record readably (a table, or JSON lines). Does not
    /// authenticate anything: use `verify` for that.
    Inspect {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Print an inclusion proof of one record against the newest
    /// checkpoint, as JSON.
    Prove {
        /// The record's index.
        #[arg(long)]
        index: u64,
        #[command(flatten)]
        log: LogArgs,
    },
    /// As the operator's witness: verify the log, check it extends the
    /// newest checkpoint this witness ever co-signed (by its record), and
    /// co-sign its newest checkpoint.
    Witness(WitnessArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_command(args),
        Command::Run(args) => return run_command(args),
        Command::Keygen { out } => keygen(&out),
        Command::Completions { shell } => {
            print!("{}", completions(shell));
            Ok(())
        }
        Command::Policy(PolicyCommand::Check { files, json }) => policy_check(&files, json),
        Command::Policy(PolicyCommand::Test {
            file,
            policies,
            json,
        }) => {
            return policy::test(&file, &policies, json);
        }
        Command::Policy(PolicyCommand::Explain(args)) => return policy::explain(&args),
        Command::Policy(PolicyCommand::Diff(args)) => return policy::diff(&args),
        Command::Policy(PolicyCommand::Suggest(args)) => return policy::suggest(&args),
        Command::Policy(PolicyCommand::Schema) => {
            print!("{}", kernel_policy::SCHEMA);
            Ok(())
        }
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(&args),
        Command::Audit(AuditCommand::Inspect { json, log }) => audit::inspect(&log, json),
        Command::Halt { control, reason } => operator(&control, &ControlRequest::Halt { reason }),
        Command::Status { control } => operator(&control, &ControlRequest::Status),
        Command::Pending { control } => operator(&control, &ControlRequest::Pending),
        Command::Approve {
            control,
            id,
            for_duration,
            uses,
        } => operator(
            &control,
            &ControlRequest::Approve {
                id,
                for_secs: for_duration.map(|d| d.as_secs()),
                uses,
            },
        ),
        Command::Reject { control, id } => operator(&control, &ControlRequest::Reject { id }),
        Command::Reload { control } => operator(&control, &ControlRequest::Reload),
        Command::Audit(AuditCommand::Prove { index, log }) => audit::prove(&log, index),
        Command::Audit(AuditCommand::Witness(args)) => audit::witness(&args),
        Command::Listen(args) => listen_command(&args),
        Command::Ask(args) => return gateway::ask(&args),
        Command::Exec(args) => return gateway::exec(&args),
        Command::Hook(command) => return gateway::hook(&command),
        Command::McpProxy(args) => return mcp_proxy_command(args),
        Command::Init(args) => return init::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kernel-enforcer", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        // For a binary whose name has a hyphen, clap_complete's bash script
        // names a subcommand's state one way in its dispatch loop
        // (`kernel__enforcer__subcmd__policy`) and another in the arms that
        // complete it (`kernel__subcmd__enforcer__subcmd__policy`), so
        // nothing after a subcommand completed (clap-rs/clap#6421). The
        // arms are spelled as the loop spells them; once clap_complete
        // agrees with itself, there is nothing to replace.
        script.replace("kernel__subcmd__enforcer", "kernel__enforcer")
    } else {
        script
    }
}

fn default_evidence() -> PathBuf {
    instances::default_evidence()
}

/// Everything a session needs, built from its arguments: the session
/// (policy loaded, evidence opened, start recorded) and how to serve it.
fn start_session(
    args: &Settings,
    confinement: Confinement,
    extra_assets: &[PathBuf],
) -> Result<(Session, ServeOptions, Vec<PathBuf>, HandoffListener), String> {
    let key = match &args.key {
        Some(path) => keys::load_private(path).map_err(|e| e.to_string())?,
        None => keys::generate().map_err(|e| e.to_string())?,
    };
    let workspace = std::path::absolute(&args.workspace)
        .map_err(|e| format!("workspace `{}`: {e}", args.workspace.display()))?;
    if !workspace.is_dir() {
        return Err(format!(
            "workspace `{}` is not a directory",
            workspace.display()
        ));
    }
    let evidence = args.evidence.clone();
    if let Some(parent) = evidence.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent, &format!("evidence file `{}`", evidence.display()))?;
    }
    let control = args.control.clone().unwrap_or_else(|| {
        let mut path = evidence.as_os_str().to_owned();
        path.push(".control");
        PathBuf::from(path)
    });
    let index = crate::session::evidence_index::path_for(&evidence);
    // Every closed segment, present and to come, lies in this directory.
    let segments = crate::session::evidence_segments::directory_for(&evidence);
    let halt_record = control::halt_record_path(&control);
    let protected: Vec<PathBuf> = args
        .policies
        .iter()
        .chain(args.key.iter())
        .chain([&evidence, &index, &segments, &control, &halt_record])
        .chain(args.protect.iter())
        .chain(extra_assets.iter())
        .cloned()
        .collect();
    let assets =
        kernel_policy::floor::assets(&protected).map_err(|e| format!("{e}; refusing to start"))?;
    let mut env =
        Environment::new(&workspace.to_string_lossy(), &assets).map_err(|e| e.to_string())?;
    // Paths decided where they lead are in the workspace as it resolves
    // (one that does not resolve only leaves fewer paths in it).
    if let Ok(resolved) = std::fs::canonicalize(&workspace) {
        env = env
            .with_resolved_workspace(&resolved.to_string_lossy())
            .map_err(|e| e.to_string())?;
    }
    let engine = PolicyEngine::load(&args.policies, env).map_err(|e| match e {
        PolicyLoadError::Invalid(_) => format!("invalid policy, refusing to start:\n{e}"),
        other => other.to_string(),
    })?;
    let durability = if args.danger_evidence_os_buffered {
        eprintln!(
            "kernel-enforcer: WARNING: evidence is written to the OS but not synced \
             (--danger-evidence-os-buffered): a decision survives a crash of the enforcer, \
             not of the OS or a power loss"
        );
        Durability::DangerOsBuffered
    } else if let Some(window) = args.evidence_window {
        Durability::Windowed(window)
    } else {
        Durability::Synced
    };
    let mut log = EvidenceLog::open_with(&evidence, durability).map_err(|e| e.to_string())?;
    log.set_segment_bytes(args.evidence_segment);
    match log.interrupted() {
        Some(Interrupted::NextDiscarded) => eprintln!(
            "kernel-enforcer: a rotation of the evidence log to a new segment was interrupted \
             (the enforcer stopped while preparing the new segment); it was removed, the log \
             continues in its active segment `{}`, which holds every record",
            evidence.display()
        ),
        Some(Interrupted::LinkUndone) => eprintln!(
            "kernel-enforcer: a rotation of the evidence log to a new segment was interrupted \
             (the enforcer stopped after naming the active segment as closed, before the new one \
             took its place); it was undone, the log continues in its active segment `{}`, \
             which holds every record",
            evidence.display()
        ),
        None => {}
    }
    match log.opened() {
        Opened::Verified {
            records,
            why: FullCheck::NoIndex,
        } if records > 0 => eprintln!(
            "kernel-enforcer: verified all {records} records of the evidence log at start-up, \
             as it has no start-up index yet (logs written before checkpoints stored their \
             frontier have none; nothing is wrong); later starts read only the records after \
             its newest checkpoint"
        ),
        Opened::Verified {
            records,
            why: FullCheck::IndexMismatch,
        } if records > 0 => eprintln!(
            "kernel-enforcer: the evidence log's start-up index `{}` does not point at one of its \
             checkpoints (the log was copied, restored or replaced without it, or lost records \
             in an OS crash); verified all {records} records instead",
            index.display()
        ),
        Opened::Segment { first, records, .. } => eprintln!(
            "kernel-enforcer: the evidence log's start-up index `{}` does not point at a \
             checkpoint of its active segment; verified the active segment's {} records from \
             the checkpoint it begins with (record {first}) instead",
            index.display(),
            records.saturating_sub(first)
        ),
        _ => {}
    }
    let config = SessionConfig {
        confinement,
        permit_ttl: args.permit_ttl,
        checkpoint_records: args.checkpoint_every,
        checkpoint_interval: args.checkpoint_interval,
        shadow: args.shadow,
    };
    if args.shadow {
        eprintln!(
            "kernel-enforcer: SHADOW MODE (--shadow): actions the policy denies or asks about \
             proceed, recorded as such; only the kernel floor and the kill switch still deny"
        );
    }
    let handoff = HandoffListener::bind()
        .map_err(|e| format!("cannot create the descriptor hand-off socket: {e}"))?;
    // Bound here, before any agent is started, so that no agent can take
    // the name first and answer the operator.
    let control = ControlSocket::bind(&control, &key).map_err(|e| e.to_string())?;
    let mut session = Session::start(key, engine, log, config).map_err(|e| e.to_string())?;
    session.set_broker(Broker {
        workspace: std::fs::canonicalize(&workspace).unwrap_or(workspace.clone()),
        protected: protected.clone(),
        exec_timeout: args.exec_timeout,
        confine: confinement != Confinement::DangerUnconfined,
        handoff: handoff.handoff(),
    });
    let options = ServeOptions {
        control: Some(control),
        operator_uid: args
            .operator_uid
            .unwrap_or_else(|| rustix::process::geteuid().as_raw()),
        policies: args.policies.clone(),
        end_on_halt: false,
    };
    Ok((session, options, protected, handoff))
}

/// How long the embedding program has to join the descriptor hand-off
/// after starting the enforcer.
const HANDOFF_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The enforcer's own hardening: no core dumps, no ptrace by processes
/// of the same uid, no `/proc/<pid>/mem`. Refuses to go on unless the OS
/// confirms it.
fn harden_self() -> Result<(), String> {
    use rustix::process::{DumpableBehavior, dumpable_behavior, set_dumpable_behavior};
    not_dumpable(
        set_dumpable_behavior(DumpableBehavior::NotDumpable),
        dumpable_behavior(),
    )
    .map_err(|e| e.to_string())
}

/// Why the enforcer refuses to start without its own hardening.
#[derive(Debug, thiserror::Error)]
enum HardenError {
    /// Making the process non-dumpable failed.
    #[error("cannot make the enforcer non-dumpable (PR_SET_DUMPABLE): {0}; refusing to start")]
    SetFailed(#[source] rustix::io::Errno),
    /// The OS reports the process dumpable after it was made non-dumpable.
    #[error(
        "the OS still reports the enforcer as dumpable after PR_SET_DUMPABLE; refusing to start"
    )]
    StillDumpable,
    /// The OS could not say whether the process is dumpable.
    #[error(
        "cannot check that the enforcer is non-dumpable (PR_GET_DUMPABLE): {0}; refusing to start"
    )]
    CheckFailed(#[source] rustix::io::Errno),
}

/// Whether hardening took: `set` is what making the process non-dumpable
/// returned, `now` what the OS reports afterwards.
fn not_dumpable(
    set: rustix::io::Result<()>,
    now: rustix::io::Result<rustix::process::DumpableBehavior>,
) -> Result<(), HardenError> {
    set.map_err(HardenError::SetFailed)?;
    match now {
        Ok(rustix::process::DumpableBehavior::NotDumpable) => Ok(()),
        Ok(_) => Err(HardenError::StillDumpable),
        Err(e) => Err(HardenError::CheckFailed(e)),
    }
}

fn serve_command(args: ServeArgs) -> Result<(), String> {
    harden_self()?;
    // Started by the agent's client: leave the agent's session and process
    // group, so the agent cannot signal the enforcer as part of its group.
    let _ = rustix::process::setsid();
    let settings = args.session.settings()?;
    let (session, options, _, handoff) = start_session(&settings, Confinement::Unconfined, &[])?;
    // The program that started this enforcer is the one that joins.
    let socket = handoff.handoff();
    handoff.accept_in_background(
        rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get().unsigned_abs()),
        HANDOFF_JOIN_TIMEOUT,
    );
    let halted = serve::serve(args.connect, session, &options);
    socket.remove_socket();
    let halted = halted.map_err(|e| e.to_string())?;
    match halted {
        Some(cause) => Err(format!("session ended halted: {cause}")),
        None => Ok(()),
    }
}

/// An enforcer session serving the decision endpoint in this process.
struct RunningEndpoint {
    session: serve::SharedSession,
    options: ServeOptions,
    handoff: HandoffListener,
    socket: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RunningEndpoint {
    /// Starts a session (policy loaded, evidence opened) and serves the
    /// endpoint at `socket` on a thread.
    fn start(settings: &Settings, socket: &Path, client_uid: Option<u32>) -> Result<Self, String> {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let socket =
            std::path::absolute(socket).map_err(|e| format!("`{}`: {e}", socket.display()))?;
        let key_file = crate::gateways::endpoint::key_file(&socket);
        let (mut session, options, _, handoff) = start_session(
            settings,
            Confinement::Unconfined,
            &[socket.clone(), key_file.clone()],
        )?;
        // Its clients' file actions are performed by the agent after the
        // decision, through links: each is decided where it leads.
        session.set_physical_paths();
        // The key clients pin, written before the socket answers.
        let listener = match keys::write_public(&key_file, &session.public_key())
            .map_err(|e| format!("cannot write the key file `{}`: {e}", key_file.display()))
            .and_then(|()| crate::gateways::endpoint::bind(&socket).map_err(|e| e.to_string()))
        {
            Ok(listener) => listener,
            Err(e) => {
                // The evidence ends as documented even so.
                session.finish();
                return Err(e);
            }
        };
        let client_uid = client_uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
        eprintln!(
            "kernel-enforcer: listening on `{}` (key {}, policy {})",
            socket.display(),
            format_public_key(&session.public_key()),
            session.policy().digest()
        );
        let session: serve::SharedSession = Arc::new(parking_lot::Mutex::new(session));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let session = Arc::clone(&session);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                crate::gateways::endpoint::serve(&listener, client_uid, &session, &stop);
            });
        }
        Ok(Self {
            session,
            options,
            handoff,
            socket,
            stop,
        })
    }

    /// Serves the control plane and signals, with periodic checkpoints,
    /// until `done` says so, a termination signal arrives or the session
    /// halts; then closes the endpoint. Returns why it halted, if it did.
    fn serve_until(self, done: impl Fn() -> bool) -> Result<Option<String>, String> {
        use std::sync::atomic::Ordering;
        let ticker = std::sync::Arc::clone(&self.session);
        let mut last_tick = std::time::Instant::now();
        let halted = serve::serve_without_client(self.session, &self.options, || {
            if last_tick.elapsed() >= Duration::from_millis(200) {
                last_tick = std::time::Instant::now();
                // The endpoint's clients are answered once and leave: the
                // denials of expired requests go nowhere but the evidence.
                drop(ticker.lock().tick());
            }
            done()
        });
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
        self.handoff.handoff().remove_socket();
        halted.map_err(|e| e.to_string())
    }
}

fn listen_command(args: &ListenArgs) -> Result<(), String> {
    harden_self()?;
    let settings = args.session.settings()?;
    let socket = args.socket.clone().or(settings.socket.clone()).ok_or(
        "no endpoint socket given: pass `--socket PATH`, set AGENT_KERNEL_ENDPOINT, or set \
         `socket` in the `--config` file",
    )?;
    let endpoint = RunningEndpoint::start(&settings, &socket, args.client_uid)?;
    match endpoint.serve_until(|| false)? {
        Some(cause) => Err(format!("session ended halted: {cause}")),
        None => Ok(()),
    }
}

fn mcp_proxy_command(args: McpProxyArgs) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if let Err(message) = harden_self() {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    if let Some(socket) = &args.socket {
        return gateway::mcp_proxy(socket, args.pubkey.as_deref(), &args.command);
    }
    let endpoint = args.session.settings().and_then(|settings| {
        let dir = tempfile::Builder::new()
            .prefix("agent-kernel-mcp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| format!("cannot create a private directory: {e}"))?;
        let socket = dir.path().join("endpoint.sock");
        RunningEndpoint::start(&settings, &socket, None).map(|endpoint| (endpoint, dir))
    });
    let (endpoint, dir) = match endpoint {
        Ok(started) => started,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let socket = endpoint.socket.clone();
    let done = Arc::new(AtomicBool::new(false));
    let serving = {
        let done = Arc::clone(&done);
        match kernel_policy::spawn_decider("session", move || {
            endpoint.serve_until(|| done.load(Ordering::SeqCst))
        }) {
            Ok(serving) => serving,
            Err(e) => {
                eprintln!("error: cannot start the session's thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let code = gateway::mcp_proxy(&socket, None, &args.command);
    done.store(true, Ordering::SeqCst);
    if let Ok(Err(message)) = serving.join() {
        eprintln!("error: {message}");
    }
    drop(dir);
    code
}

fn run_command(args: RunArgs) -> ExitCode {
    match supervise_agent(args) {
        Ok(status) => exit_code_of(status),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn supervise_agent(args: RunArgs) -> Result<std::process::ExitStatus, String> {
    harden_self()?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err("no agent program given after `--`".into());
    };
    let program = agent_program(program)?;
    let settings = args.session.settings()?;
    // A scratch directory the operator names is theirs to keep; the
    // default one is removed with everything in it when the agent is done
    // (the guard lives until this function returns).
    let mut _default_scratch = None;
    let scratch = match args.scratch.as_ref().or(settings.scratch.as_ref()) {
        Some(dir) => {
            create_dirs(dir, &format!("scratch directory `{}`", dir.display()))?;
            dir.clone()
        }
        None => {
            // Private to the agent's user, whatever the umask: the
            // agent's temporary files live there.
            let dir = tempfile::Builder::new()
                .prefix("agent-kernel-scratch-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .map_err(|e| format!("scratch directory: {e}"))?;
            let path = dir.path().to_owned();
            _default_scratch = Some(dir);
            path
        }
    };
    let workspace = std::fs::canonicalize(&settings.workspace)
        .map_err(|e| format!("workspace `{}`: {e}", settings.workspace.display()))?;
    if !args.danger_unconfined {
        kernel_confine::check_support().map_err(|e| {
            format!("{e}; refusing to start (pass --danger-unconfined to run the agent unconfined anyway)")
        })?;
    }
    let confinement = if args.danger_unconfined {
        Confinement::DangerUnconfined
    } else {
        Confinement::Confined {
            profile: kernel_confine::PROFILE_VERSION,
        }
    };
    let (session, mut options, protected, handoff) = start_session(&settings, confinement, &[])?;
    // The kill switch ends a supervised agent, not only its permissions.
    options.end_on_halt = true;
    let agent = supervise::AgentLaunch {
        program,
        args: program_args.to_vec(),
        workspace,
        scratch,
        protected,
        danger_unconfined: args.danger_unconfined,
        govern_syscalls: args.govern_syscalls,
        syscall_rate: args.syscall_rate.unwrap_or(settings.syscall_rate),
        system_trees: settings
            .system_trees
            .iter()
            .chain(&args.system_trees)
            .map(|tree| {
                std::fs::canonicalize(tree)
                    .map_err(|e| format!("system tree `{}`: {e}", tree.display()))
            })
            .collect::<Result<_, _>>()?,
        connect_timeout: args
            .connect_timeout
            .map_or(settings.connect_timeout, Duration::from_secs),
        egress_proxy: if args.no_egress_proxy {
            false
        } else {
            args.egress_proxy || settings.egress_proxy
        },
    };
    refuse_overlaps(&agent)?;
    let prepared = supervise::prepare(&agent).map_err(|e| e.to_string())?;
    let evidence = settings.evidence.clone();
    // Processes the agent forks and leaves behind are reparented to the
    // enforcer instead of init, so that it can end them with the session.
    let subreaper = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let status = supervise::run(&agent, prepared, session, handoff, &options);
    if subreaper.is_ok() {
        end_descendants();
    }
    let status = status.map_err(|e| e.to_string())?;
    eprintln!(
        "kernel-enforcer: the agent exited ({status}); evidence: {}",
        evidence.display()
    );
    Ok(status)
}

/// The agent program resolved as it will be started (a bare name through
/// `PATH`), refused with what is wrong with it when it cannot be started:
/// such a failure is the operator's to fix, not the confinement's.
fn agent_program(program: &str) -> Result<PathBuf, String> {
    let resolved = supervise::resolve_program(Path::new(program));
    if !program.contains('/') && !resolved.is_absolute() {
        return Err(format!(
            "the agent program `{program}` was not found on PATH: install it, or give its path"
        ));
    }
    match std::fs::metadata(&resolved) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the agent program `{}` does not exist",
            resolved.display()
        )),
        Err(e) => Err(format!("the agent program `{}`: {e}", resolved.display())),
        Ok(meta) if !meta.is_file() => Err(format!(
            "the agent program `{}` is not a file",
            resolved.display()
        )),
        Ok(meta) if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0 => {
            Err(format!(
                "the agent program `{}` is not executable (chmod +x it?)",
                resolved.display()
            ))
        }
        Ok(_) => Ok(resolved),
    }
}

/// Creates the directory `dir` and its missing parents. When a component
/// on the way exists but is not a directory, says which one (the OS only
/// says "File exists" or "Not a directory").
/// `what` names the path the directory is for, in messages.
fn create_dirs(dir: &Path, what: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| match not_a_directory(dir) {
        Some(blocker) => format!("{what}: `{}` is not a directory", blocker.display()),
        None => format!("{what}: cannot create `{}`: {e}", dir.display()),
    })
}

/// The first component of `path`, from its root down, that exists and is
/// not a directory (symbolic links followed), if any.
fn not_a_directory(path: &Path) -> Option<&Path> {
    let mut ancestors: Vec<&Path> = path
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for ancestor in ancestors {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Some(ancestor),
            Err(_) => return None,
        }
    }
    None
}

/// Refuses a scratch directory or system tree that contains the workspace
/// or lies inside it: what they grant needs no decision, so they would
/// make workspace files reachable without one.
fn refuse_overlaps(agent: &supervise::AgentLaunch) -> Result<(), String> {
    let scratch = std::fs::canonicalize(&agent.scratch).unwrap_or_else(|_| agent.scratch.clone());
    let granted = std::iter::once(("scratch directory", &scratch))
        .chain(agent.system_trees.iter().map(|tree| ("system tree", tree)));
    for (what, tree) in granted {
        if tree.starts_with(&agent.workspace) || agent.workspace.starts_with(tree) {
            return Err(format!(
                "the {what} `{}` overlaps the workspace `{}`: what it grants needs no decision; \
                 choose one apart from the workspace",
                tree.display(),
                agent.workspace.display()
            ));
        }
    }
    Ok(())
}

/// Ends every process still descended from the enforcer once the
/// supervised session is over: what the agent forked and left behind (a
/// halt ends the agent, not only its permissions), and anything brokered
/// that outlived its request. Orphans come back here because the enforcer
/// is their subreaper; each round kills and reaps what is there, until
/// nothing is.
fn end_descendants() {
    use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
    for _ in 0..100 {
        let children: Vec<i32> = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        if children.is_empty() {
            return;
        }
        for pid in children.iter().filter_map(|&pid| Pid::from_raw(pid)) {
            let _ = kill_process(pid, Signal::KILL);
        }
        // `__WALL`: a process that was traced by a thread that has since
        // ended is reaped only with it.
        let all = WaitOptions::from_bits_retain(u32::try_from(libc::__WALL).unwrap_or(0));
        while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG | all) {}
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn keygen(out: &Path) -> Result<(), String> {
    create_dirs(out, &format!("key directory `{}`", out.display()))?;
    let key = keys::generate().map_err(|e| e.to_string())?;
    keys::write_private(&key, &out.join(keys::PRIVATE_KEY_FILE)).map_err(|e| e.to_string())?;
    let public_path = out.join(keys::PUBLIC_KEY_FILE);
    // Mode 0644 whatever the umask: clients refuse a key file that
    // others may write.
    keys::write_public(&public_path, &key.verifying_key())
        .map_err(|e| format!("`{}`: {e}", public_path.display()))?;
    println!("{}", format_public_key(&key.verifying_key()));
    Ok(())
}

fn policy_check(files: &[PathBuf], json: bool) -> Result<(), String> {
    let checked = kernel_policy::check_files(files);
    if json {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let document = match &checked {
            Ok(count) => serde_json::json!({
                "ok": true, "files": files, "policies": count, "problems": [], "error": null,
            }),
            Err(PolicyLoadError::Invalid(diagnostics)) => serde_json::json!({
                "ok": false,
                "files": files,
                "policies": null,
                "problems": kernel_policy::diagnostics_json(diagnostics),
                "error": format!("{} problem(s) found", diagnostics.len()),
            }),
            Err(other) => serde_json::json!({
                "ok": false, "files": files, "policies": null, "problems": [],
                "error": other.to_string(),
            }),
        };
        println!("{document}");
    }
    match checked {
        Ok(count) => {
            if !json {
                println!(
                    "ok: {count} policies valid against the kernel schema (plus the kernel floor)"
                );
            }
            Ok(())
        }
        Err(PolicyLoadError::Invalid(diagnostics)) => {
            if !json {
                for diagnostic in &diagnostics {
                    eprintln!("{diagnostic}");
                }
            }
            Err(format!("{} problem(s) found", diagnostics.len()))
        }
        Err(other) => Err(other.to_string()),
    }
}

/// Sends one control request and prints the answer, once it is
/// authenticated as the enforcer's.
fn operator(args: &ControlArgs, request: &ControlRequest) -> Result<(), String> {
    let control = match &args.control {
        Some(path) => path.clone(),
        None => {
            let root = instances::state_root()?;
            let candidates = instances::candidates(&root);
            let found = match instances::choose(&root, &candidates) {
                Ok(found) => found,
                // None running: a halt of the one that ended halted is
                // done already.
                Err(error) => match the_one_ended_halted(request, candidates) {
                    Some(path) => return ended_halted(args, &path, request, &error.to_string()),
                    None => return Err(error.to_string()),
                },
            };
            eprintln!(
                "kernel-enforcer: using the enforcer at `{}` (the only one running)",
                found.display()
            );
            found
        }
    };
    let response = match &args.pubkey {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("public key `{}`: {e}", file.display()))?;
            let key = kernel_core::parse_public_key(&text)
                .map_err(|e| format!("public key `{}`: {e}", file.display()))?;
            control::request_authenticated(&control, request, &key, None)
        }
        None => control::request(&control, request),
    };
    let response = match response {
        Ok(response) => response,
        Err(error @ control::ControlError::Unreachable { .. }) => {
            return ended_halted(args, &control, request, &error.to_string());
        }
        Err(error) => return Err(error.to_string()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response).unwrap_or_default()
        );
    } else {
        println!("{}", response.message);
        match (&response.data, request) {
            (serde_json::Value::Null, _) => {}
            (serde_json::Value::Array(items), ControlRequest::Pending) => {
                for item in items {
                    println!(
                        "  [{}] {}  (policies: {}; {} ms left)",
                        item.get("id").unwrap_or(&serde_json::Value::Null),
                        item.get("action").and_then(|v| v.as_str()).unwrap_or(""),
                        item.get("policies").unwrap_or(&serde_json::Value::Null),
                        item.get("expires_in_ms")
                            .unwrap_or(&serde_json::Value::Null),
                    );
                }
            }
            (serde_json::Value::Object(fields), _) => {
                for (key, value) in fields {
                    println!("  {key}: {value}");
                }
            }
            (other, _) => println!("  {other}"),
        }
    }
    if response.ok {
        Ok(())
    } else {
        Err("the enforcer refused the request".into())
    }
}

/// For a `halt` that names no enforcer when none of the `candidates`
/// found under the state directory is running: the control path of the
/// one of them that ended halted, if there is exactly one.
fn the_one_ended_halted(
    request: &ControlRequest,
    candidates: Vec<instances::Candidate>,
) -> Option<PathBuf> {
    if !matches!(request, ControlRequest::Halt { .. }) {
        return None;
    }
    if candidates.iter().any(|c| c.status.is_ok()) {
        return None;
    }
    let mut halted = candidates
        .into_iter()
        .map(|c| c.control)
        .filter(|path| control::read_halt_record(path).is_some());
    match (halted.next(), halted.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// The answer for an enforcer that no longer answers: if it ended halted
/// (it left its signed record at the control path), a `halt` is done
/// already and succeeds saying so; anything else fails, saying that it
/// ended halted when it did.
fn ended_halted(
    args: &ControlArgs,
    control: &Path,
    request: &ControlRequest,
    error: &str,
) -> Result<(), String> {
    // A key given with --pubkey is the key the record must be signed by
    // too; the record is otherwise checked like the key file.
    let record = control::read_halt_record(control).filter(|_| {
        args.pubkey.as_ref().is_none_or(|file| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|text| kernel_core::parse_public_key(&text).ok())
                .zip(control::load_key_file(control).ok())
                .is_some_and(|(given, (found, _))| given == found)
        })
    });
    let Some(record) = record else {
        return Err(error.to_owned());
    };
    let ended = format!(
        "the enforcer at `{}` ended halted ({}); nothing runs there any more",
        control.display(),
        record.cause
    );
    if !matches!(request, ControlRequest::Halt { .. }) {
        return Err(format!("{error}: {ended}"));
    }
    if args.json {
        let answer = serde_json::json!({
            "ok": true,
            "message": format!("already halted: {ended}"),
            "data": {
                "already_halted": true,
                "running": false,
                "cause": record.cause,
                "session": record.session,
                "at_ms": record.at_ms,
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!("already halted: {ended}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_enforcer_refuses_to_run_dumpable() {
        use rustix::io::Errno;
        use rustix::process::DumpableBehavior;
        assert!(not_dumpable(Ok(()), Ok(DumpableBehavior::NotDumpable)).is_ok());
        let error = not_dumpable(Err(Errno::PERM), Ok(DumpableBehavior::Dumpable)).unwrap_err();
        assert!(
            matches!(error, HardenError::SetFailed(Errno::PERM)),
            "{error:?}"
        );
        // What the operator reads when the enforcer refuses to start.
        assert_eq!(
            error.to_string(),
            format!(
                "cannot make the enforcer non-dumpable (PR_SET_DUMPABLE): {}; refusing to start",
                Errno::PERM
            )
        );
        for still in [
            DumpableBehavior::Dumpable,
            DumpableBehavior::DumpableReadableOnlyByRoot,
        ] {
            assert!(matches!(
                not_dumpable(Ok(()), Ok(still)),
                Err(HardenError::StillDumpable)
            ));
        }
        assert!(matches!(
            not_dumpable(Ok(()), Err(Errno::INVAL)),
            Err(HardenError::CheckFailed(Errno::INVAL))
        ));
    }

    /// Clap checks its definitions only when a command is parsed, and then
    /// by panicking: check every subcommand here instead.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
