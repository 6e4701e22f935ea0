//! An agent run under supervision: `kernel-enforcer run -- supervised_agent`.
//!
//! The enforcer starts first and launches this program already confined
//! (Landlock and seccomp), so from its first instruction it cannot write
//! the workspace, run programs, open connections or touch the kernel's
//! files by itself. It joins the kernel through `AGENT_KERNEL_CHANNEL` and
//! asks for what it needs; allowed effects are performed by the enforcer's
//! broker. Then it tries to go around the kernel, and the OS refuses.
//!
//! Run it with (from the repository root):
//! `cargo build --release --bins --examples && mkdir -p /tmp/agent-ws && target/release/kernel-enforcer run --policy examples/policies/agent.cedar --workspace /tmp/agent-ws -- target/release/examples/supervised_agent`
#![forbid(unsafe_code)]

use kernel_client::{ClientConfig, EffectError, Exec, Kernel};
use std::process::ExitCode;

fn show(what: &str, result: Result<String, String>) {
    match result {
        Ok(effect) => println!("  {what:<44} done: {effect}"),
        Err(why) => println!("  {what:<44} refused: {why}"),
    }
}

/// Like [`show`], for effects asked of the kernel: a denial is a refusal;
/// an allowed effect that failed where the broker performed it is a
/// failure.
fn decided(what: &str, result: Result<String, EffectError>) {
    match result {
        Ok(effect) => println!("  {what:<44} done: {effect}"),
        Err(EffectError::Denied(why)) => println!("  {what:<44} refused: {why}"),
        Err(other) => println!("  {what:<44} allowed, but failed: {other}"),
    }
}

fn main() -> ExitCode {
    let kernel = match Kernel::connect_from_env(ClientConfig::default()) {
        Ok(kernel) => kernel,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = kernel.handshake_info();
    let ws = info.workspace.clone();
    println!("session {} ({})", info.session, info.confinement.as_str());

    println!("\nthrough the kernel (decided by policy, performed by the broker):");
    decided(
        "write notes.md",
        kernel
            .write_file(&format!("{ws}/notes.md"), b"- supervised run\n")
            .map(|()| "wrote 17 bytes".into()),
    );
    decided(
        "read notes.md",
        kernel
            .read_file(&format!("{ws}/notes.md"))
            .map(|b| format!("{:?}", String::from_utf8_lossy(&b).trim())),
    );
    decided(
        "exec ls",
        kernel
            .exec(Exec::new("ls").arg(".").cwd(&ws))
            .map(|o| format!("{:?}", String::from_utf8_lossy(&o.stdout).trim())),
    );
    decided(
        "exec rm -rf /",
        kernel
            .exec(Exec::new("rm").args(["-rf", "/"]).cwd(&ws))
            .map(|o| o.status.to_string()),
    );
    // The policy allows read-only HTTPS calls to one API host; the broker
    // makes the request (on a machine without network it fails there).
    decided(
        "http GET https://api.github.com/zen",
        kernel
            .http("GET", "https://api.github.com/zen", b"")
            .map(|r| format!("{} {:?}", r.status, String::from_utf8_lossy(&r.body))),
    );
    decided(
        "http POST https://api.github.com/gists",
        kernel
            .http("POST", "https://api.github.com/gists", b"{}")
            .map(|r| r.status.to_string()),
    );
    decided(
        "connect to 203.0.113.7:22",
        kernel
            .connect_tcp("203.0.113.7", 22)
            .map(|s| format!("connected to {:?}", s.peer_addr())),
    );

    println!("\naround the kernel (the OS refuses):");
    let io = |r: std::io::Result<()>| {
        r.map(|()| "it worked".to_string())
            .map_err(|e| e.to_string())
    };
    show(
        "write the workspace directly",
        io(std::fs::write(format!("{ws}/direct.txt"), "x")),
    );
    show(
        "run /usr/bin/ls directly",
        io(std::process::Command::new("/usr/bin/ls")
            .status()
            .map(|_| ())),
    );
    show(
        "connect to 127.0.0.1:80",
        io(std::net::TcpStream::connect("127.0.0.1:80").map(|_| ())),
    );
    show(
        "read /proc/1/environ (another process)",
        io(std::fs::read("/proc/1/environ").map(|_| ())),
    );
    ExitCode::SUCCESS
}
