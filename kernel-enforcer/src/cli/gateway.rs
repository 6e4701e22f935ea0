//! The command-line clients of the decision endpoint: `ask`, `exec` and
//! `hook`.

use crate::gateways::action_json::{self, MAX_ACTION_JSON_BYTES};
use crate::gateways::endpoint::{self, AskError, AskOptions, ENDPOINT_ENV};
use crate::gateways::hook::{self, MAX_HOOK_INPUT};
use kernel_core::{Action, Exec, Outcome, Verified};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the enforcer is and how long to wait for it.
#[derive(Debug, clap::Args)]
pub(crate) struct EndpointArgs {
    /// The endpoint socket of a running `kernel-enforcer listen` (or set
    /// AGENT_KERNEL_ENDPOINT).
    #[arg(long, env = ENDPOINT_ENV)]
    socket: Option<PathBuf>,
    /// The enforcer's public key file (`kernel.pub`): refuse any other key.
    /// Default: the key file `listen` writes beside its socket
    /// (`SOCKET.pub`), and then the server must also run as that file's
    /// owner.
    #[arg(long)]
    pubkey: Option<PathBuf>,
    /// Milliseconds the whole exchange may take.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

impl EndpointArgs {
    fn options(&self) -> Result<AskOptions, String> {
        let socket = self.socket.clone().ok_or_else(|| {
            format!("no enforcer named: pass `--socket PATH` or set `{ENDPOINT_ENV}`")
        })?;
        AskOptions::pinned(
            socket,
            self.pubkey.as_deref(),
            Duration::from_millis(self.timeout_ms),
        )
        .map_err(|e| {
            format!(
                "cannot authenticate the enforcer: {e} (`kernel-enforcer listen` writes its key \
                 beside its socket; or pass the enforcer's key with --pubkey)"
            )
        })
    }
}

/// `ask`: one decision on a JSON action.
#[derive(Debug, clap::Args)]
pub(crate) struct AskArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// The action document (JSON, see docs/ACTIONS.md); `-` for standard
    /// input.
    #[arg(long)]
    action_json: PathBuf,
}

/// `exec`: brokered execution.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// The program and its arguments (no shell).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `hook`: pre-tool-use hook adapters.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum HookCommand {
    /// Claude Code `PreToolUse` hook: payload on standard input; exit 0
    /// lets the call go on (or, for a policy's `@ask`, has Claude Code ask
    /// its user), exit 2 blocks it with the reason.
    ClaudeCode(HookArgs),
    /// Codex `PreToolUse` hook: payload on standard input; exit 0 lets the
    /// call go on, exit 2 blocks it with the reason (also for `@ask`).
    Codex(HookArgs),
}

/// Arguments of a hook adapter.
#[derive(Debug, clap::Args)]
pub(crate) struct HookArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// On an allow, also tell the model which receipts allowed the call
    /// (as additional context). By default an allow prints nothing.
    #[arg(long)]
    verbose: bool,
}

/// Exit status of `ask` for an error (no authentic answer).
const ASK_ERROR: u8 = 2;

fn read_limited(mut reader: impl Read, limit: u64) -> Result<String, String> {
    let mut text = String::new();
    let read = reader
        .by_ref()
        .take(limit.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the input: {e}"))?;
    if u64::try_from(read).unwrap_or(u64::MAX) > limit {
        return Err(format!("input over the {limit}-byte limit"));
    }
    Ok(text)
}

fn print_error(message: &str) -> ExitCode {
    println!(
        "{}",
        serde_json::json!({
            "version": action_json::ACTION_JSON_VERSION,
            "decision": "error",
            "error": message,
        })
    );
    eprintln!("error: {message}");
    ExitCode::from(ASK_ERROR)
}

/// `kernel-enforcer ask`: prints the verified receipt as JSON; exits 0
/// for allow, 1 for deny (or a pending approval), 2 for any error.
pub(crate) fn ask(args: &AskArgs) -> ExitCode {
    let text = if args.action_json.as_os_str() == "-" {
        read_limited(std::io::stdin().lock(), MAX_ACTION_JSON_BYTES)
    } else {
        std::fs::File::open(&args.action_json)
            .map_err(|e| format!("`{}`: {e}", args.action_json.display()))
            .and_then(|file| read_limited(file, MAX_ACTION_JSON_BYTES))
    };
    let result = text
        .and_then(|text| action_json::parse_action(&text).map_err(|e| e.to_string()))
        .and_then(|parsed| {
            let options = args.endpoint.options()?;
            let action = endpoint::canonicalize(parsed.action, parsed.cwd.as_deref())
                .map_err(|e| e.to_string())?;
            endpoint::ask(&options, action, None).map_err(|e| e.to_string())
        });
    let answer = match result {
        Ok(answer) => answer,
        Err(message) => return print_error(&message),
    };
    let (receipt, code) = match &answer.verified {
        Verified::Permit(permit) => (permit.receipt(), 0),
        Verified::Denied(receipt) | Verified::Ask(receipt) => (receipt, 1),
    };
    println!(
        "{}",
        action_json::receipt_to_json(receipt, &answer.key, &answer.action)
    );
    ExitCode::from(code)
}

/// Exit status of `exec` when the kernel denied the program.
const EXEC_DENIED: u8 = 126;
/// Exit status of `exec` when there was no authentic answer.
const EXEC_ERROR: u8 = 125;

/// `kernel-enforcer exec`: has the enforcer's broker run the program (no
/// shell, the broker's environment allow-list) and passes its output and
/// exit status through. Exits 126 if denied, 125 on any error.
pub(crate) fn exec(args: &ExecArgs) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("error: no program given after `--`");
        return ExitCode::from(EXEC_ERROR);
    };
    // A bare name is run as found on this PATH, as a shell would: say so
    // when it is not there, before asking anyone.
    if !program.contains('/') && kernel_policy::request::search_path(program).is_none() {
        eprintln!(
            "kernel-enforcer exec: not run: `{program}` not found on PATH; install it, or give \
             its path"
        );
        return ExitCode::from(EXEC_ERROR);
    }
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|dir| dir.to_str().map(str::to_owned));
    let mut exec = Exec::new(program.clone()).args(rest.iter().cloned());
    exec.cwd = cwd.clone();
    if args.endpoint.socket.is_none() && std::env::var_os(kernel_core::CHANNEL_ENV).is_some() {
        if args.endpoint.pubkey.is_some() {
            // The channel's enforcer is authenticated by its handshake;
            // a key given for a socket must not be silently left unused.
            eprintln!(
                "kernel-enforcer exec: not run: --pubkey names the key of a `listen` endpoint, \
                 but without --socket the supervising enforcer's channel ({}) is used; pass \
                 --socket too, or drop --pubkey",
                kernel_core::CHANNEL_ENV
            );
            return ExitCode::from(EXEC_ERROR);
        }
        return exec_on_channel(exec);
    }
    let result = args.endpoint.options().and_then(|options| {
        let action = endpoint::canonicalize(Action::Exec(exec), cwd.as_deref())
            .map_err(|e| e.to_string())?;
        endpoint::ask(&options, action, Some(Vec::new())).map_err(|e: AskError| e.to_string())
    });
    let answer = match result {
        Ok(answer) => answer,
        Err(message) => {
            eprintln!("kernel-enforcer exec: not run, fail closed: {message}");
            return ExitCode::from(EXEC_ERROR);
        }
    };
    match &answer.verified {
        Verified::Permit(_) => pass_through(answer.outcome),
        Verified::Denied(receipt) | Verified::Ask(receipt) => {
            let body = receipt.body();
            eprintln!(
                "kernel-enforcer exec: denied: {} (receipt at log index {})",
                body.reasons.join("; "),
                body.log_index
            );
            ExitCode::from(EXEC_DENIED)
        }
    }
}

/// Passes a brokered program's output and exit status through.
fn pass_through(outcome: Option<Outcome>) -> ExitCode {
    match outcome {
        Some(Outcome::Exec {
            code,
            signal,
            stdout,
            stderr,
            truncated,
            timed_out,
        }) => {
            let _ = std::io::stdout().write_all(&stdout);
            let _ = std::io::stderr().write_all(&stderr);
            if truncated {
                eprintln!("kernel-enforcer exec: output was truncated by the broker");
            }
            if timed_out {
                eprintln!("kernel-enforcer exec: killed at the broker's time limit");
            }
            let code = code
                .or_else(|| signal.map(|s| 128 + s))
                .unwrap_or(i32::from(EXEC_ERROR));
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        other => {
            eprintln!("kernel-enforcer exec: allowed but not run: {other:?}");
            ExitCode::from(EXEC_ERROR)
        }
    }
}

/// `exec` as the agent of `kernel-enforcer run`: joins the supervising
/// enforcer on the agent's channel (`AGENT_KERNEL_CHANNEL`) and has its
/// broker run the program.
fn exec_on_channel(exec: Exec) -> ExitCode {
    let kernel =
        match kernel_client::Kernel::connect_from_env(kernel_client::ClientConfig::default()) {
            Ok(kernel) => kernel,
            Err(e) => {
                eprintln!("kernel-enforcer exec: not run, fail closed: {e}");
                return ExitCode::from(EXEC_ERROR);
            }
        };
    match kernel.broker(Action::Exec(exec), Vec::new()) {
        Ok((_, outcome)) => pass_through(Some(outcome)),
        Err(kernel_client::Denial::Policy { reasons, .. }) => {
            eprintln!("kernel-enforcer exec: denied: {}", reasons.join("; "));
            ExitCode::from(EXEC_DENIED)
        }
        Err(denial) => {
            eprintln!("kernel-enforcer exec: not run, fail closed: {denial}");
            ExitCode::from(EXEC_ERROR)
        }
    }
}

/// `kernel-enforcer hook AGENT`. Exits 0 or 2 and nothing else: a hook
/// that fails any other way (a panic exits 101) would let the call go on
/// in both agents.
pub(crate) fn hook(command: &HookCommand) -> ExitCode {
    let (agent, args) = match command {
        HookCommand::ClaudeCode(args) => (hook::CodingAgent::ClaudeCode, args),
        HookCommand::Codex(args) => (hook::CodingAgent::Codex, args),
    };
    // A panic's message could quote the payload: print nothing, the
    // verdict below says what happened.
    std::panic::set_hook(Box::new(|_| {}));
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match read_limited(std::io::stdin().lock(), MAX_HOOK_INPUT)
            .and_then(|input| Ok((input, args.endpoint.options()?)))
        {
            Ok((input, options)) => hook::decide(agent, &input, &options, args.verbose),
            Err(message) => hook::HookVerdict::blocked(&format!("blocked, fail closed: {message}")),
        }
    }))
    .unwrap_or_else(|_| {
        hook::HookVerdict::blocked(
            "blocked, fail closed: the hook stopped on an internal error (a bug; please \
             report it)",
        )
    });
    // Write errors (a closed pipe) change nothing: the exit status decides.
    if !verdict.stdout().is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", verdict.stdout());
        let _ = out.flush();
    }
    if !verdict.stderr().is_empty() {
        let _ = writeln!(std::io::stderr().lock(), "{}", verdict.stderr());
    }
    ExitCode::from(verdict.exit().code())
}

/// `kernel-enforcer mcp-proxy`: starts the MCP server and relays between
/// it and this process's standard input and output, asking the enforcer
/// at `socket` about every request either side makes that is not protocol
/// housekeeping. Exits 0 when the agent closes its input, 1 if the server
/// cannot be started, 128 + the signal's number when `SIGTERM`, `SIGINT`
/// or `SIGHUP` ends it (the server is then signalled the same way, and
/// killed if it has not exited within 2 s).
pub(crate) fn mcp_proxy(
    socket: &std::path::Path,
    pubkey: Option<&std::path::Path>,
    command: &[String],
) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("error: no MCP server command given after `--`");
        return ExitCode::FAILURE;
    };
    let endpoint = EndpointArgs {
        socket: Some(socket.to_owned()),
        pubkey: pubkey.map(std::path::Path::to_owned),
        timeout_ms: 10_000,
    };
    let options = match endpoint.options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    // Watched before the server starts: from then on a termination signal
    // ends the relay (which may be waiting on an agent that keeps its
    // input open) and the server with it.
    let signals = match signal_hook::iterator::Signals::new(TERMINATION_SIGNALS) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot watch termination signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = match std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot start the MCP server `{program}`: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(server_in), Some(server_out)) = (server.stdin.take(), server.stdout.take()) else {
        let _ = server.kill();
        let _ = server.wait();
        eprintln!("error: the MCP server's standard streams are not available");
        return ExitCode::FAILURE;
    };
    let decide = move |action: &Action| -> Result<String, String> {
        let action = endpoint::canonicalize(action.clone(), None).map_err(|e| e.to_string())?;
        match endpoint::ask(&options, action, None) {
            Ok(answer) => match answer.verified {
                Verified::Permit(permit) => Ok(format!(
                    "allowed (receipt at log index {})",
                    permit.receipt().body().log_index
                )),
                Verified::Denied(receipt) | Verified::Ask(receipt) => {
                    let body = receipt.body();
                    let reasons = if body.reasons.is_empty() {
                        "no policy allows it".to_owned()
                    } else {
                        body.reasons.join("; ")
                    };
                    Err(format!(
                        "{reasons} (receipt at log index {})",
                        body.log_index
                    ))
                }
            },
            Err(e) => Err(format!("fail closed: {e}")),
        }
    };
    // The relay runs on a thread of its own; this one waits for it to end
    // (the agent closed its input) or for a termination signal.
    let (ended, end) = std::sync::mpsc::channel::<Option<i32>>();
    {
        let ended = ended.clone();
        std::thread::spawn(move || {
            crate::gateways::mcp::relay(
                std::io::BufReader::new(std::io::stdin()),
                Box::new(std::io::stdout()),
                Box::new(server_in),
                std::io::BufReader::new(server_out),
                std::sync::Arc::new(decide),
            );
            let _ = ended.send(None);
        });
    }
    let watch = signals.handle();
    std::thread::spawn(move || {
        let mut signals = signals;
        if let Some(signal) = signals.forever().next() {
            let _ = ended.send(Some(signal));
        }
    });
    let signal = end.recv().ok().flatten();
    watch.close();
    match signal {
        None => {
            // The agent is done: give the server a moment to exit on its
            // own.
            stop_server(&mut server, None, Duration::from_secs(5));
            ExitCode::SUCCESS
        }
        Some(signal) => {
            eprintln!("kernel-enforcer mcp-proxy: ended by signal {signal}");
            stop_server(&mut server, Some(signal), Duration::from_secs(2));
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
        }
    }
}

/// The signals that end `mcp-proxy` (and its server), as they end an
/// enforcer session.
const TERMINATION_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
];

/// Ends the MCP server: passes on `signal` if there is one, waits up to
/// `grace` for it to exit, then kills it; reaps it either way.
fn stop_server(server: &mut std::process::Child, signal: Option<i32>, grace: Duration) {
    if let Some(signal) = signal
        .and_then(rustix::process::Signal::from_named_raw)
        .zip(rustix::process::Pid::from_raw(
            i32::try_from(server.id()).unwrap_or(0),
        ))
    {
        let _ = rustix::process::kill_process(signal.1, signal.0);
    }
    let deadline = std::time::Instant::now() + grace;
    while matches!(server.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}
