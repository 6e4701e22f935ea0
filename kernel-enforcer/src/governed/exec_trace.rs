//! Programs started by an agent governed at the system-call boundary:
//! decided before, verified after.
//!
//! An `execve` cannot be performed by the enforcer on the agent's behalf
//! (the calling process itself must become the program), so the decided
//! call has to continue in the agent, and the agent could rewrite the path
//! or the arguments in its memory between the decision and the kernel's
//! use of them. Two steps close that window:
//!
//! 1. **Before** ([`crate::governed::notify`]): the `execve` or `execveat` is a
//!    notification; the enforcer reads the path, the arguments and the
//!    names of the environment variables, decides an
//!    [`Exec`](kernel_core::Exec) by policy and records it; a denial fails
//!    the call with `EACCES` (nothing runs). An allowed one is written into
//!    the [`ExecLedger`] (the program's file identity, and for a `#!`
//!    script its interpreter's, with the whole decided argument vector),
//!    and the call continues.
//! 2. **After**: the enforcer traces every process of the agent
//!    (`PTRACE_TRACEME` before the agent's own `exec`; its descendants are
//!    traced automatically) with only `PTRACE_O_TRACEEXEC` and the fork
//!    events, so each successful `exec` stops the process **before its
//!    first instruction**. There the enforcer compares what the kernel
//!    actually loaded (`/proc/<pid>/exe`: device and inode) and the
//!    argument vector the new program got (`/proc/<pid>/cmdline`, in
//!    memory no other process can write: the agent may not `ptrace`, use
//!    `process_vm_writev` or write `/proc`) with the ledger. Anything else
//!    than what was decided is killed (`SIGKILL`) before it runs.
//!
//! `PTRACE_O_EXITKILL` makes the kernel kill every traced process if the
//! tracer goes away: an enforcer that dies leaves no agent process
//! running, and when the agent's main process exits, whatever it left
//! behind is killed with it. Consequences: a governed agent cannot be
//! debugged (`ptrace` is refused to it anyway), and `SIGSTOP` does not keep
//! it stopped (job control is not supported).

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file's identity: its device and inode numbers.
type FileId = (u64, u64);

fn identity(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// What one thread of the agent was allowed to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    /// The program's file, then (for a `#!` script) its interpreter's.
    programs: Vec<FileId>,
    /// Whether the program is a `#!` script.
    script: bool,
    /// The program's path as the agent passed it to the kernel, which puts
    /// it in a script's argument vector.
    passed: Vec<u8>,
    /// The whole argument vector decided on, `argv[0]` included.
    argv: Vec<Vec<u8>>,
}

impl Allowed {
    /// The allowance for `program` (its decided path), called `passed` by
    /// the agent, with argument vector `argv`.
    fn of(program: &Path, passed: &str, argv: &[String]) -> std::io::Result<Self> {
        // Never blocks (a FIFO) and never takes a terminal; identity and
        // head come from the one open file.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
                .open(program)?
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        let mut programs = vec![(meta.dev(), meta.ino())];
        let mut head = [0u8; 256];
        let read = file.read(&mut head)?;
        let head = head.get(..read).unwrap_or_default();
        let interpreter = head.strip_prefix(b"#!").and_then(|line| {
            let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
            line.split(|b| *b == b' ' || *b == b'\t')
                .find(|word| !word.is_empty())
                .map(<[u8]>::to_vec)
        });
        let script = interpreter.is_some();
        if let Some(interpreter) = interpreter {
            let interpreter = String::from_utf8(interpreter).map_err(std::io::Error::other)?;
            programs.push(identity(Path::new(&interpreter))?);
        }
        Ok(Self {
            programs,
            script,
            passed: passed.as_bytes().to_vec(),
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        })
    }

    /// Whether the process that now runs `exe` with `cmdline` is the one
    /// decided on. A binary: exactly the program and exactly the argument
    /// vector. A script: its interpreter (or the script), with the
    /// kernel's script argument vector, `[interpreter, (option,) path as
    /// passed, argv[1..]]`.
    fn matches(&self, exe: FileId, cmdline: &[Vec<u8>]) -> bool {
        if !self.script {
            return self.programs.first() == Some(&exe) && cmdline == self.argv.as_slice();
        }
        if !self.programs.contains(&exe) {
            return false;
        }
        let rest = self.argv.get(1..).unwrap_or_default();
        let Some(split) = cmdline.len().checked_sub(rest.len() + 1) else {
            return false;
        };
        cmdline.get(split) == Some(&self.passed) && cmdline.get(split + 1..) == Some(rest)
    }
}

/// Which thread of the agent was allowed to execute what, between the
/// decision and the `exec` stop that verifies it.
#[derive(Debug)]
pub struct ExecLedger {
    allowed: Mutex<HashMap<i32, Allowed>>,
    initial: Mutex<Option<(String, Vec<String>)>>,
}

impl ExecLedger {
    /// A ledger whose first `exec` is the operator's command: `program`
    /// (as passed to the kernel) with argument vector `argv`.
    pub fn new(program: String, argv: Vec<String>) -> Self {
        Self {
            allowed: Mutex::new(HashMap::new()),
            initial: Mutex::new(Some((program, argv))),
        }
    }

    /// The operator's command, once: the agent's own first `exec` is not a
    /// policy decision (the operator chose it), but it is verified like
    /// any other.
    pub(crate) fn take_initial(&self) -> Option<(String, Vec<String>)> {
        self.initial.lock().take()
    }

    /// Notes that thread `tid` may execute `program` (called `passed`)
    /// with `argv`. An error (the program cannot be read) allows nothing.
    pub(crate) fn allow(
        &self,
        tid: i32,
        program: &Path,
        passed: &str,
        argv: &[String],
    ) -> std::io::Result<()> {
        let allowed = Allowed::of(program, passed, argv)?;
        self.allowed.lock().insert(tid, allowed);
        Ok(())
    }

    /// Whether process `pid`, stopped right after an `exec` made by thread
    /// `former_tid`, runs what that thread was allowed. Consumes the
    /// allowance.
    fn verify(&self, pid: i32, former_tid: i32) -> bool {
        let Some(allowed) = self.allowed.lock().remove(&former_tid) else {
            return false;
        };
        let Ok(exe) = identity(Path::new(&format!("/proc/{pid}/exe"))) else {
            return false;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let mut args: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        // Every argument ends with a NUL: the last split is empty.
        if args.pop().is_none_or(|last| !last.is_empty()) {
            return false;
        }
        allowed.matches(exe, &args)
    }

    fn forget(&self, tid: i32) {
        self.allowed.lock().remove(&tid);
    }
}

/// A ptrace request on `pid` with an integer `data` argument.
fn request(request: libc::c_uint, pid: i32, data: usize) -> bool {
    #[allow(unsafe_code, reason = "ptrace(2) has no safe wrapper")]
    // SAFETY: the requests used here (CONT, SETOPTIONS) take an integer
    // `data` and no pointer; `addr` is ignored.
    let done = unsafe { libc::ptrace(request, pid, 0usize, data) };
    done == 0
}

fn event_message(pid: i32) -> Option<i32> {
    let mut message: libc::c_ulong = 0;
    #[allow(unsafe_code, reason = "ptrace(2) has no safe wrapper")]
    // SAFETY: PTRACE_GETEVENTMSG writes one `unsigned long` at `data`,
    // which points at `message`, alive across the call.
    let done = unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0usize, &raw mut message) };
    (done == 0).then(|| i32::try_from(message).ok()).flatten()
}

fn kill(pid: i32) {
    // A process stopped by its tracer dies of SIGKILL all the same.
    let _ = rustix::process::Pid::from_raw(pid)
        .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::KILL));
}

/// Kills every process still traced and reaps them here, as their tracer,
/// for up to a second. (Left to `PTRACE_O_EXITKILL` when this thread ends,
/// a process of the agent's that was waiting in a governed system call
/// becomes a zombie its new parent, this same process, cannot reap.)
fn reap_the_rest(known: &HashSet<i32>) {
    for pid in known {
        kill(*pid);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut left: HashSet<i32> = known.clone();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        let mut status = 0;
        #[allow(unsafe_code, reason = "waitpid(2) with __WALL has no safe wrapper")]
        // SAFETY: `status` is a live `int` the call writes.
        let pid = unsafe {
            libc::waitpid(
                -1,
                &raw mut status,
                libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG,
            )
        };
        if pid > 0 {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                left.remove(&pid);
            }
        } else if pid == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        } else {
            // No traced child left.
            return;
        }
    }
}

/// Traces the agent (process `agent`, stopped or about to stop after its
/// own `exec` because it was started with `pre_exec::trace`) and
/// everything it starts, until the agent's main process ends; returns its
/// raw wait status, or `None` if it could not be waited for. Must run on the thread that
/// started the agent (it is the tracer). Every `exec` that does not match
/// the [`ExecLedger`] is killed before its first instruction. When this
/// returns, the thread should end: the kernel then kills every process
/// still traced (`PTRACE_O_EXITKILL`).
pub fn trace(agent: i32, ledger: &ExecLedger) -> Option<i32> {
    let options = libc::PTRACE_O_EXITKILL
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE;
    let options = usize::try_from(options).unwrap_or(0);
    // Processes and threads known to be traced; those whose first stop
    // (the SIGSTOP every auto-attached task starts with) is still due.
    let mut known: HashSet<i32> = HashSet::from([agent]);
    let mut starting: HashSet<i32> = HashSet::new();
    let mut started = false;
    loop {
        let mut status = 0;
        #[allow(unsafe_code, reason = "waitpid(2) with __WALL has no safe wrapper")]
        // SAFETY: `status` is a live `int` the call writes.
        let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::__WALL | libc::__WNOTHREAD) };
        if pid < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            known.remove(&pid);
            starting.remove(&pid);
            ledger.forget(pid);
            if pid == agent {
                reap_the_rest(&known);
                return Some(status);
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let signal = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if pid == agent && !started {
            // The stop right after the agent's own exec (the operator's
            // command), before its first instruction.
            started = true;
            if signal == libc::SIGTRAP
                && ledger.verify(pid, pid)
                && request(libc::PTRACE_SETOPTIONS, pid, options)
                && request(libc::PTRACE_CONT, pid, 0)
            {
                continue;
            }
            kill(pid);
            continue;
        }
        match event {
            libc::PTRACE_EVENT_EXEC => {
                let former = event_message(pid).unwrap_or(pid);
                if former != pid {
                    known.remove(&former);
                }
                if !(ledger.verify(pid, former) && request(libc::PTRACE_CONT, pid, 0)) {
                    kill(pid);
                }
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Some(child) = event_message(pid)
                    && known.insert(child)
                {
                    starting.insert(child);
                }
                request(libc::PTRACE_CONT, pid, 0);
            }
            0 => {
                let first = if known.insert(pid) {
                    // Its stop arrived before its parent's fork event.
                    true
                } else {
                    starting.remove(&pid)
                };
                let forward = if first && signal == libc::SIGSTOP {
                    0
                } else {
                    usize::try_from(signal).unwrap_or(0)
                };
                request(libc::PTRACE_CONT, pid, forward);
            }
            _ => {
                request(libc::PTRACE_CONT, pid, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn bytes(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_binary_matches_only_itself_with_exactly_the_decided_arguments() {
        let allowed = Allowed {
            programs: vec![(1, 10)],
            script: false,
            passed: b"/usr/bin/touch".to_vec(),
            argv: bytes(&["touch", "a"]),
        };
        assert!(allowed.matches((1, 10), &bytes(&["touch", "a"])));
        assert!(!allowed.matches((1, 11), &bytes(&["touch", "a"])));
        assert!(!allowed.matches((2, 10), &bytes(&["touch", "a"])));
        assert!(!allowed.matches((1, 10), &bytes(&["touch", "b"])));
        assert!(!allowed.matches((1, 10), &bytes(&["touch", "a", "b"])));
        assert!(!allowed.matches((1, 10), &bytes(&["rm", "a"])));
        assert!(!allowed.matches((1, 10), &bytes(&["touch"])));
    }

    #[test]
    fn a_script_matches_its_interpreter_with_the_kernels_argument_vector() {
        let allowed = Allowed {
            programs: vec![(1, 10), (1, 20)],
            script: true,
            passed: b"./run.sh".to_vec(),
            argv: bytes(&["run.sh", "x", "y"]),
        };
        let interp = (1, 20);
        assert!(allowed.matches(interp, &bytes(&["/bin/sh", "./run.sh", "x", "y"])));
        assert!(allowed.matches(interp, &bytes(&["/bin/sh", "-e", "./run.sh", "x", "y"])));
        assert!(!allowed.matches(interp, &bytes(&["/bin/sh", "./other.sh", "x", "y"])));
        assert!(!allowed.matches(interp, &bytes(&["/bin/sh", "./run.sh", "x", "z"])));
        assert!(!allowed.matches(interp, &bytes(&["./run.sh", "x", "y"][1..])));
        assert!(!allowed.matches((1, 30), &bytes(&["/bin/sh", "./run.sh", "x", "y"])));
    }

    #[test]
    fn a_script_is_recognised_and_its_interpreter_identified() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        let allowed = Allowed::of(&script, "./run.sh", &["run.sh".to_owned()]).unwrap();
        assert!(allowed.script);
        assert_eq!(allowed.programs.len(), 2);
        assert_eq!(allowed.programs[1], identity(Path::new("/bin/sh")).unwrap());
        // Programs are given as resolved paths: a link is not followed.
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let binary = Allowed::of(&sh, "/bin/sh", &["sh".to_owned()]).unwrap();
        assert!(!binary.script);
        assert_eq!(binary.programs.len(), 1);
        let link = dir.path().join("sh-link");
        std::os::unix::fs::symlink(&sh, &link).unwrap();
        assert!(Allowed::of(&link, "/bin/sh", &["sh".to_owned()]).is_err());
    }

    #[test]
    fn an_exec_nobody_allowed_is_not_verified() {
        let ledger = ExecLedger::new("/bin/true".into(), vec!["/bin/true".into()]);
        assert!(!ledger.verify(std::process::id().try_into().unwrap(), 12345));
    }
}
