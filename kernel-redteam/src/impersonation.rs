//! Impersonation, judged from the operator's and the callers' side: a
//! process that is not the enforcer binds or pre-creates a name the
//! kernel uses, and the operator's `status` or `halt`, or a hook's or
//! `ask`'s verdict, comes from it.

use crate::world::World;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

/// The abstract socket name the enforcer's control socket configured as
/// `path` has: `agent-kernel/control/` and the first 16 bytes of the
/// SHA-256 of the absolute path, in hex (as `kernel-enforcer` computes
/// it, so that anyone who knows the path knows the name).
pub(crate) fn control_name(path: &Path) -> String {
    use sha2::Digest as _;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let hash = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let hex: String = hash
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("agent-kernel/control/{hex}")
}

/// The pid of the process listening on the abstract socket `name`, from
/// `SO_PEERCRED` (filled in by the OS kernel, not claimed by the peer).
pub(crate) fn holder(name: &str) -> Option<u32> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    let credentials = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    u32::try_from(credentials.pid.as_raw_nonzero().get()).ok()
}

/// The operator's `status` and `halt` (the real commands) on the control
/// socket configured as `control`: an effect for each that reported
/// success while the socket's name was held by a process other than the
/// enforcer (`enforcer`, if known).
pub(crate) fn operator_deceived(
    world: &World,
    control: &Path,
    enforcer: Option<u32>,
) -> Vec<String> {
    let name = control_name(control);
    let mut effects = Vec::new();
    for command in ["status", "halt"] {
        let before = holder(&name);
        let out = Command::new(&world.enforcer)
            .arg(command)
            .arg("--control")
            .arg(control)
            .output();
        let after = holder(&name);
        let succeeded = out.as_ref().is_ok_and(|o| o.status.success());
        let answered_by = before.or(after);
        let impostor = answered_by.filter(|pid| Some(*pid) != enforcer);
        if let (true, Some(pid)) = (succeeded, impostor) {
            let said = out
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            effects.push(format!(
                "the operator's `{command}` reported success, answered by pid {pid}, not the enforcer ({}): {}",
                enforcer.map_or_else(|| "gone".to_owned(), |p| p.to_string()),
                said.chars().take(120).collect::<String>()
            ));
        }
    }
    effects
}
