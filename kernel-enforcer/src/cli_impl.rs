//! The `kernel-enforcer` command line.

use crate::evidence::EvidenceLog;
use crate::keys;
use crate::policy::{self, Environment, PolicyEngine, PolicyLoadError};
use crate::serve;
use crate::session::{DEFAULT_PERMIT_TTL, Session};
use clap::{Parser, Subcommand};
use kernel_core::{Confinement, format_public_key, parse_public_key, verify_log};
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
    /// Generate a signing key pair: `kernel.key` (PKCS#8 PEM, mode 0600)
    /// and `kernel.pub`.
    Keygen {
        /// Directory to write the key files into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check evidence files.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Name of the client's one-shot channel server.
    #[arg(long)]
    connect: String,
    /// Cedar policy file (repeat for several).
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// The agent's workspace root, visible to policies as `Workspace::"root"`.
    #[arg(long)]
    workspace: PathBuf,
    /// Evidence file to append to (created with mode 0600 if missing).
    #[arg(long)]
    evidence: PathBuf,
    /// Private key file (PKCS#8 PEM, mode 0600). Default: a fresh key for
    /// this session, announced in the handshake and recorded in the
    /// evidence.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Extra paths the floor protects, besides the key, policies, evidence
    /// and this binary.
    #[arg(long = "protect")]
    protect: Vec<PathBuf>,
    /// Seconds an allow receipt stays valid.
    #[arg(long, default_value_t = DEFAULT_PERMIT_TTL.as_secs())]
    permit_ttl: u64,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate policy files against the kernel's schema. Prints
    /// `file:line:col: message` for each problem and exits 1 if any.
    Check {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the kernel's Cedar schema.
    Schema,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an evidence file with public keys only. Exits 0 when sound,
    /// 1 with the first faulty record index otherwise.
    Verify {
        /// The enforcer's public key (`ed25519:...` or a file holding it).
        /// Without it, each session's self-declared key is used.
        #[arg(long)]
        kernel_key: Option<String>,
        /// The evidence file.
        log: PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_command(args),
        Command::Keygen { out } => keygen(&out),
        Command::Policy(PolicyCommand::Check { files }) => policy_check(&files),
        Command::Policy(PolicyCommand::Schema) => {
            print!("{}", policy::SCHEMA);
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { kernel_key, log }) => {
            audit_verify(kernel_key.as_deref(), &log)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A path made absolute, plus its symlink-resolved form when it exists.
fn path_forms(path: &Path) -> Vec<String> {
    let mut forms = Vec::new();
    if let Ok(absolute) = std::path::absolute(path) {
        forms.push(absolute.to_string_lossy().into_owned());
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        forms.push(real.to_string_lossy().into_owned());
    }
    forms
}

fn serve_command(args: ServeArgs) -> Result<(), String> {
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
    let mut assets = Vec::new();
    for path in args
        .policies
        .iter()
        .chain(args.key.iter())
        .chain(std::iter::once(&args.evidence))
        .chain(args.protect.iter())
    {
        assets.extend(path_forms(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        assets.extend(path_forms(&exe));
    }
    let env = Environment::new(&workspace.to_string_lossy(), &assets)?;
    let engine = PolicyEngine::load(&args.policies, env).map_err(|e| match e {
        PolicyLoadError::Invalid(_) => format!("invalid policy, refusing to start:\n{e}"),
        other => other.to_string(),
    })?;
    let evidence = EvidenceLog::open(&args.evidence).map_err(|e| e.to_string())?;
    let mut session = Session::start(
        key,
        engine,
        evidence,
        Confinement::Unconfined,
        Duration::from_secs(args.permit_ttl),
    )
    .map_err(|e| e.to_string())?;
    serve::serve(args.connect, &mut session).map_err(|e| e.to_string())?;
    match session.halted() {
        Some(cause) => Err(format!("session ended halted: {cause}")),
        None => Ok(()),
    }
}

fn keygen(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("`{}`: {e}", out.display()))?;
    let key = keys::generate().map_err(|e| e.to_string())?;
    keys::write_private(&key, &out.join(keys::PRIVATE_KEY_FILE)).map_err(|e| e.to_string())?;
    let public = format_public_key(&key.verifying_key());
    let public_path = out.join(keys::PUBLIC_KEY_FILE);
    std::fs::write(&public_path, format!("{public}\n"))
        .map_err(|e| format!("`{}`: {e}", public_path.display()))?;
    println!("{public}");
    Ok(())
}

fn policy_check(files: &[PathBuf]) -> Result<(), String> {
    match policy::check_files(files) {
        Ok(count) => {
            println!(
                "ok: {count} policies valid against the kernel schema (plus the kernel floor)"
            );
            Ok(())
        }
        Err(PolicyLoadError::Invalid(diagnostics)) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            Err(format!("{} problem(s) found", diagnostics.len()))
        }
        Err(other) => Err(other.to_string()),
    }
}

fn read_public_key(text: &str) -> Result<kernel_core::VerifyingKey, String> {
    let text = if Path::new(text).is_file() {
        std::fs::read_to_string(text).map_err(|e| format!("`{text}`: {e}"))?
    } else {
        text.to_owned()
    };
    parse_public_key(&text).map_err(|e| e.to_string())
}

fn audit_verify(kernel_key: Option<&str>, log: &Path) -> Result<(), String> {
    let key = kernel_key.map(read_public_key).transpose()?;
    let bytes = std::fs::read(log).map_err(|e| format!("`{}`: {e}", log.display()))?;
    let summary =
        verify_log(&bytes, key.as_ref()).map_err(|e| format!("evidence is not sound: {e}"))?;
    println!(
        "ok: {} records, {} sessions, {} allowed, {} denied, {} asked",
        summary.records, summary.sessions, summary.allowed, summary.denied, summary.asked
    );
    if key.is_none() {
        println!(
            "note: no --kernel-key given; signatures were checked against each session's own key"
        );
    }
    Ok(())
}
