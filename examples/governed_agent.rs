//! A scripted agent governed by the safety kernel.
//!
//! It starts the real `kernel-enforcer` as a separate process with the
//! policy in `examples/policies/agent.cedar`, gives it a fresh temporary
//! workspace, and proposes about a dozen realistic actions: reading project
//! files, reading an SSH key, writing inside the workspace, `rm -rf /`,
//! HTTP requests, tool calls (one of which waits for an operator's
//! approval), and touching the kernel's own files. Each action runs only if
//! the enforcer returned a signed permit for exactly it. A thread plays the
//! operator with the real operator commands: it approves the deployment,
//! and at the end pulls the kill switch, after which the next action is
//! denied. Finally the demo checks the evidence file the way an auditor
//! would, with the enforcer's public key only.
//!
//! Run it with: `cargo build --release && cargo run --release --example governed_agent`
#![forbid(unsafe_code)]

use kernel_client::{
    Action, Denial, EffectError, Exec, Kernel, Permit, SpawnConfig, delete_permitted,
    read_permitted, run_exec, write_permitted,
};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/agent.cedar");

/// The enforcer built by `cargo build` sits one directory above this
/// example's binary (`target/<profile>/examples/..`).
fn enforcer_next_to_target() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("kernel-enforcer");
    candidate.is_file().then_some(candidate)
}

struct Row {
    action: String,
    decision: String,
    policy: String,
    verified: &'static str,
    effect: String,
}

fn describe_denial(denial: &Denial) -> (String, String, &'static str) {
    match denial {
        Denial::Policy { reasons, .. } if reasons.iter().any(|r| r == "halted") => (
            "deny".into(),
            "(halted by the operator)".into(),
            "yes (signed deny)",
        ),
        Denial::Policy { policies, .. } if policies.is_empty() => {
            ("deny".into(), "(default deny)".into(), "yes (signed deny)")
        }
        Denial::Policy { policies, .. } => {
            ("deny".into(), policies.join(", "), "yes (signed deny)")
        }
        Denial::ApprovalRequired { policies, .. } => (
            "ask -> deny".into(),
            policies.join(", "),
            "yes (signed ask)",
        ),
        Denial::InvalidAction(e) => ("deny".into(), format!("invalid: {e}"), "n/a (not sent)"),
        other => ("deny".into(), other.to_string(), "no"),
    }
}

/// Asks the kernel about `action`; only with a permit does `effect` run,
/// consuming it.
fn perform(
    kernel: &Kernel,
    rows: &mut Vec<Row>,
    label: &str,
    action: Action,
    effect: impl FnOnce(Permit) -> Result<String, EffectError>,
) {
    let row = match kernel.authorize(action) {
        Ok(permit) => {
            let policy = permit.receipt().body().policies.join(", ");
            Row {
                action: label.to_owned(),
                decision: "allow".into(),
                policy,
                verified: "yes (signed allow)",
                effect: effect(permit).unwrap_or_else(|e| format!("effect failed: {e}")),
            }
        }
        Err(denial) => {
            let (decision, policy, verified) = describe_denial(&denial);
            Row {
                action: label.to_owned(),
                decision,
                policy,
                verified,
                effect: "not performed".into(),
            }
        }
    };
    rows.push(row);
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let workspace = tempfile::Builder::new()
        .prefix("agent-workspace-")
        .tempdir()?;
    let state = tempfile::Builder::new()
        .prefix("agent-kernel-demo-")
        .tempdir()?
        .keep();
    let evidence = state.join("evidence.log");
    let ws = workspace.path();
    std::fs::write(
        ws.join("README.md"),
        "# demo project\nHello from the workspace.\n",
    )?;
    std::fs::create_dir(ws.join("src"))?;
    std::fs::write(ws.join("src/main.rs"), "fn main() {}\n")?;
    std::env::set_current_dir(ws)?;

    let enforcer = enforcer_next_to_target();
    let mut config = SpawnConfig::new(POLICY, ws, &evidence)
        // `@ask` policies wait up to this long for the operator.
        .await_approval(Duration::from_secs(20));
    if let Some(enforcer) = &enforcer {
        config = config.enforcer(enforcer);
    }
    let kernel = Kernel::spawn(config)?;
    let operator = Operator {
        binary: enforcer.unwrap_or_else(|| PathBuf::from("kernel-enforcer")),
        control: PathBuf::from(format!("{}.control", evidence.display())),
    };
    let info = kernel.handshake_info();
    println!(
        "enforcer started: pid {}, session {}",
        kernel.enforcer_pid().unwrap_or(0),
        info.session
    );
    println!(
        "enforcer key:     {}",
        kernel_core::format_public_key(kernel.public_key())
    );
    println!("policy digest:    {}", info.policy_digest);
    println!("workspace:        {}", info.workspace);
    println!("confinement:      {}\n", info.confinement.as_str());

    let mut rows = Vec::new();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let notes: &[u8] = b"- ran the governed agent demo\n";
    let decision_only = |_: Permit| Ok("decision only (nothing sent anywhere)".to_owned());

    perform(
        &kernel,
        &mut rows,
        "read README.md",
        Action::file_read("README.md"),
        |p| read_permitted(p).map(|b| format!("read {} bytes", b.len())),
    );
    perform(
        &kernel,
        &mut rows,
        "read ~/.ssh/id_ed25519",
        Action::file_read(format!("{home}/.ssh/id_ed25519")),
        |p| read_permitted(p).map(|b| format!("read {} bytes", b.len())),
    );
    perform(
        &kernel,
        &mut rows,
        "write notes.md",
        Action::file_write("notes.md", notes),
        |p| {
            write_permitted(p, notes)?;
            let on_disk = std::fs::read(ws.join("notes.md"))?;
            Ok(format!("wrote notes.md ({} bytes on disk)", on_disk.len()))
        },
    );
    perform(
        &kernel,
        &mut rows,
        "exec ls src",
        Action::exec(Exec::new("ls").arg("src")),
        |p| {
            run_exec(p).map(|out| {
                format!(
                    "ls printed {:?}",
                    String::from_utf8_lossy(&out.stdout).trim()
                )
            })
        },
    );
    perform(
        &kernel,
        &mut rows,
        "exec rm -rf /",
        Action::exec(Exec::new("rm").args(["-rf", "/"])),
        |p| run_exec(p).map(|_| "ran rm -rf /".to_owned()),
    );
    perform(
        &kernel,
        &mut rows,
        "GET https://api.github.com/repos/..",
        Action::http("GET", "https://api.github.com/repos/rust-lang/rust"),
        decision_only,
    );
    perform(
        &kernel,
        &mut rows,
        "POST https://paste.example.net/upload",
        Action::http("POST", "https://paste.example.net/upload"),
        decision_only,
    );
    perform(
        &kernel,
        &mut rows,
        "tool search_docs",
        Action::tool_call("search_docs", &serde_json::json!({"query": "cedar like"})),
        decision_only,
    );
    // The operator approves the deployment from another terminal; here a
    // thread plays the operator, with the real operator commands.
    std::thread::scope(|scope| {
        let approver = scope.spawn(|| operator.approve_first_pending());
        perform(
            &kernel,
            &mut rows,
            "tool deploy (operator approves)",
            Action::tool_call("deploy", &serde_json::json!({"env": "production"})),
            |_| Ok("deployed (simulated)".to_owned()),
        );
        let _ = approver.join();
    });
    perform(
        &kernel,
        &mut rows,
        "write the enforcer's policy file",
        Action::file_write(POLICY, b"permit (principal, action, resource);"),
        |p| {
            write_permitted(p, b"permit (principal, action, resource);")
                .map(|()| "overwrote the policy".to_owned())
        },
    );
    perform(
        &kernel,
        &mut rows,
        "delete the evidence file",
        Action::file_delete(evidence.to_string_lossy()),
        |p| delete_permitted(p).map(|()| "deleted the evidence".to_owned()),
    );
    perform(
        &kernel,
        &mut rows,
        "read a path with a NUL byte",
        Action::file_read("notes\0.md"),
        |p| read_permitted(p).map(|b| format!("read {} bytes", b.len())),
    );

    // The operator pulls the kill switch: from now on, nothing is allowed.
    operator.run(&["halt", "--reason", "demo: end of the run"]);
    perform(
        &kernel,
        &mut rows,
        "read README.md again (after the halt)",
        Action::file_read("README.md"),
        |p| read_permitted(p).map(|b| format!("read {} bytes", b.len())),
    );

    println!();
    print_table(&rows);

    let public_key = *kernel.public_key();
    let _ = kernel.shutdown(std::time::Duration::from_secs(5));
    println!("\nevidence file: {}", evidence.display());
    verify(&evidence, &public_key)
}

/// Runs the real operator commands against the enforcer's control socket.
struct Operator {
    binary: PathBuf,
    control: PathBuf,
}

impl Operator {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new(&self.binary)
            .args(args)
            .arg("--control")
            .arg(&self.control)
            .output();
        let text = match output {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cannot run the operator command: {e}"),
        };
        println!("[operator] $ kernel-enforcer {}", args.join(" "));
        for line in text.lines() {
            println!("[operator]   {line}");
        }
        text
    }

    /// Waits for a request to need approval, then approves it.
    fn approve_first_pending(&self) {
        for _ in 0..200 {
            let listing = Command::new(&self.binary)
                .args(["pending", "--json", "--control"])
                .arg(&self.control)
                .output();
            let id = listing.ok().and_then(|out| {
                let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                value.get("data")?.get(0)?.get("id")?.as_u64()
            });
            if let Some(id) = id {
                self.run(&["pending"]);
                self.run(&["approve", &id.to_string()]);
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        println!("[operator] nothing became pending");
    }
}

fn print_table(rows: &[Row]) {
    let widths = [
        rows.iter()
            .map(|r| r.action.len())
            .max()
            .unwrap_or(0)
            .max(6),
        rows.iter()
            .map(|r| r.decision.len())
            .max()
            .unwrap_or(0)
            .max(8),
        rows.iter()
            .map(|r| r.policy.len())
            .max()
            .unwrap_or(0)
            .max(20),
        rows.iter()
            .map(|r| r.verified.len())
            .max()
            .unwrap_or(0)
            .max(16),
    ];
    let [a, d, p, v] = widths;
    println!(
        "{:<3} {:<a$}  {:<d$}  {:<p$}  {:<v$}  effect",
        "#", "action", "decision", "determining policy", "receipt verified"
    );
    println!("{}", "-".repeat(a + d + p + v + 30));
    for (i, row) in rows.iter().enumerate() {
        println!(
            "{:<3} {:<a$}  {:<d$}  {:<p$}  {:<v$}  {}",
            i + 1,
            row.action,
            row.decision,
            row.policy,
            row.verified,
            row.effect
        );
    }
}

fn verify(
    evidence: &Path,
    key: &kernel_core::VerifyingKey,
) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(evidence)?;
    let options = kernel_core::AuditOptions {
        kernel_key: Some(key),
        ..Default::default()
    };
    match kernel_core::audit(&bytes, &options) {
        Ok(report) => {
            println!(
                "audit verify: ok ({} records: {} allowed, {} denied, {} asked; every record signed by the enforcer key; {} signed checkpoint(s), the newest covering {} records)",
                report.records,
                report.allowed,
                report.denied,
                report.asked,
                report.checkpoints.len(),
                report.newest_checkpoint().map_or(0, |c| c.size)
            );
            println!(
                "check it yourself: kernel-enforcer audit verify --kernel-key {} {}",
                kernel_core::format_public_key(key),
                evidence.display()
            );
            Ok(())
        }
        Err(e) => Err(format!("audit verify FAILED: {e}").into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
