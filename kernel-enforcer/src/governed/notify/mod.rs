//! Governing an agent that does not use the client: its own file opens,
//! deletions, directory creations, renames, links, metadata changes, TCP
//! connections and programs are decided by policy at the system-call
//! boundary (seccomp user notification), with the same evidence as any
//! other decision. SECURITY.md has the table of calls and actions.
//!
//! How it works, and why it is sound:
//!
//! - The agent runs under an extra seccomp filter that turns the calls in
//!   `NOTIFIED` into notifications. The filter is installed between
//!   `fork` and `exec` (the `pre_exec` module) with
//!   `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the
//!   listener descriptor is sent to the enforcer over a socket pair and
//!   closed in the child, so the agent never holds it (it cannot answer
//!   its own notifications).
//! - For each notification the enforcer reads the path from the agent's
//!   memory (`/proc/<tid>/mem`), joins it to the agent's working directory
//!   or directory descriptor, resolves it **physically** (symbolic links
//!   followed as the kernel would, `/proc/self` the agent's: see
//!   the `paths` module), and checks with `SECCOMP_IOCTL_NOTIF_ID_VALID` that the
//!   request is still live.
//! - **Every open is made by the enforcer**, on the resolved path, with
//!   `openat2` and `RESOLVE_NO_SYMLINKS` (beneath the workspace when inside
//!   it), and the descriptor is injected into the agent with
//!   `SECCOMP_IOCTL_NOTIF_ADDFD` and `SECCOMP_ADDFD_FLAG_SEND`. An open
//!   never continues to the kernel, so rewriting the path or swapping a
//!   link after the check changes nothing. Granted without a decision:
//!   what Landlock grants the agent anyway (reads of the system trees and
//!   device files, its scratch directory), its own `/proc` entries and the
//!   system pseudo-files listed in SECURITY.md, read-only. Every other open
//!   is a `FileRead` (read-only) or a `FileWrite` with
//!   [`WriteMode::Descriptor`](kernel_core::WriteMode::Descriptor) (any
//!   write access, creation or truncation), decided by policy and recorded
//!   durably before the open. A denied one fails with `EACCES`; a read of
//!   a path that does not exist fails with `ENOENT` without a decision,
//!   and so does a `mkdir` of one that exists, with `EEXIST`.
//! - Deletions, directory creations, renames, symbolic and hard links,
//!   truncation and metadata changes (permission bits, owner, times,
//!   extended attributes) are decided and then performed by the enforcer
//!   on the decided paths, the parent directory (or the file itself,
//!   pinned with `O_PATH`) opened without following links. Reading
//!   metadata (`stat`, `getxattr`, `listxattr`) is not decided: it is
//!   not the file's content, and `stat` of a path reveals as much.
//! - `connect` to an IPv4 or IPv6 address is a `NetConnect` (the address,
//!   not a name); to a Unix socket file, a `FileWrite` in
//!   [`WriteMode::Connect`](kernel_core::WriteMode::Connect) mode of its
//!   physical path (the file pinned first). The enforcer connects and
//!   puts its connected socket in place of the agent's
//!   (`SECCOMP_ADDFD_FLAG_SETFD`, same number, blocking mode and
//!   close-on-exec flag kept), then completes the call with 0. Options
//!   the agent set on its own socket, and an address it bound, are not
//!   carried over. Abstract Unix addresses are refused. The confinement
//!   lets such an agent create TCP stream sockets, never datagram or raw
//!   ones, and refuses TCP Fast Open, which connects without `connect`;
//!   it creates no Unix datagram socket either, whose every `sendto` and
//!   `sendmsg` could name another listener.
//! - Anything that cannot be read, resolved or decided fails with
//!   `EACCES`. [`WORKERS`] threads serve notifications; decisions beyond
//!   the [`RateLimit`](super::rate::RateLimit) wait their turn up to
//!   [`RATE_WAIT`](super::rate::RATE_WAIT), and fail with
//!   `EAGAIN`, unrecorded, beyond that. There is no cache of earlier
//!   decisions: every decided call is decided and recorded afresh, so
//!   nothing can widen what was decided.
//! - **Liveness**: every notification is answered exactly once (a
//!   descriptor the kernel will not hand over fails the call), the
//!   enforcer's own opens never block, a handler that panics fails its
//!   call and halts the session, and a call with no decision within
//!   [`ANSWER_DEADLINE`] fails with `EAGAIN` and halts the session.
//! - `execve` and `execveat` are an `Exec` (the program's path as the
//!   agent named it, the argument vector, the working directory, and the
//!   *names* of the environment variables: their values may hold secrets
//!   and are not recorded), decided and recorded; a denied one fails with
//!   `EACCES`. An allowed one must continue in the agent (a process cannot
//!   be made to become a program from outside), so it is verified after
//!   the kernel loaded it and before its first instruction, and killed if
//!   it is not what was decided: see [`crate::governed::exec_trace`]. Landlock
//!   limits programs to the system trees, the agent's own and the
//!   workspace, never the scratch directory.
//!
//! Not covered yet: FIFOs and device nodes (refused by Landlock in the
//! workspace), `file_setattr` (fails with `ENOSYS`); x86_64 only.

mod call;
mod change;
mod connect;
mod metadata;
mod open;
mod paths;
mod serve;

pub use call::Governor;
pub use connect::UNIX_CONNECT_WAIT;
pub use paths::{OWN_PROCESS_ENTRIES, SYSTEM_PSEUDO_FILES, SYSTEM_PSEUDO_TREES};
pub use serve::{ANSWER_DEADLINE, WORKERS, serve};

use crate::pre_exec::NotifyFilter;
use call::{CallingThread, Response, low_int, read_c_string, read_c_strings};
use kernel_core::{Action, CanonicalAction};
use metadata::{SYS_FILE_SETATTR, SYS_REMOVEXATTRAT, SYS_SETXATTRAT};
use paths::Caller;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The system calls this version notifies.
const NOTIFIED: [libc::c_long; 41] = [
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rmdir,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_connect,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_truncate,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_utimes,
    libc::SYS_futimesat,
    libc::SYS_utime,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    SYS_SETXATTRAT,
    SYS_REMOVEXATTRAT,
    SYS_FILE_SETATTR,
];

/// The notification filter: x86_64 system calls in [`NOTIFIED`] notify,
/// everything else is allowed (the confinement's own filters still
/// apply); another architecture kills the process.
fn program() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k, jt, jf| libc::sock_filter {
        code: JEQ_K,
        jt,
        jf,
        k,
    };
    let count = u8::try_from(NOTIFIED.len()).unwrap_or(u8::MAX);
    let mut filter = vec![
        stmt(LD_W_ABS, 4),
        // Not x86_64: skip to the final KILL.
        jump(AUDIT_ARCH_X86_64, 0, count.saturating_add(3)),
        stmt(LD_W_ABS, 0),
    ];
    for (i, nr) in NOTIFIED.iter().enumerate() {
        let left = u8::try_from(NOTIFIED.len() - i).unwrap_or(0);
        // Match: jump over the remaining tests and the ALLOW to USER_NOTIF.
        filter.push(jump(u32::try_from(*nr).unwrap_or(u32::MAX), left, 0));
    }
    filter.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    filter.push(stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF));
    filter.push(stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
    filter
}

/// Where the enforcer receives the listener.
#[derive(Debug)]
pub struct ParentSide {
    socket: OwnedFd,
}

/// Prepares the notification filter and the socket pair that carries its
/// listener from the agent's child process, which installs the filter
/// between `fork` and `exec` ([`crate::pre_exec::confine`]), to the
/// enforcer.
pub(crate) fn prepare() -> std::io::Result<(NotifyFilter, ParentSide)> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(std::io::Error::other(
            "system-call governance is implemented for x86_64 only",
        ));
    }
    let (parent, child) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((
        NotifyFilter::new(program(), child)?,
        ParentSide { socket: parent },
    ))
}

impl ParentSide {
    /// Receives the listener the child sent (after `spawn` returned, the
    /// child has passed `exec`, so it is there or never will be).
    pub fn receive(self) -> std::io::Result<OwnedFd> {
        rustix::net::sockopt::set_socket_timeout(
            &self.socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(std::time::Duration::from_secs(5)),
        )?;
        let mut byte = [0u8; 1];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &self.socket,
            &mut [std::io::IoSliceMut::new(&mut byte)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = message
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        Err(std::io::Error::other(
            "the agent sent no notification listener",
        ))
    }
}

impl Governor {
    /// Answers one notification: let through what Landlock grants, decide the
    /// rest with `decide` (which records before it returns) and perform
    /// allowed ones here.
    fn answer(
        &self,
        pid: u32,
        data: &libc::seccomp_data,
        still_valid: impl Fn() -> bool,
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Response {
        let Ok(memory) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
            return Response::Fail(libc::EACCES);
        };
        let agent = CallingThread {
            pid,
            caller: Caller::new(pid),
            memory,
            still_valid: &still_valid,
        };
        let nr = libc::c_long::from(data.nr);
        let answer = match nr {
            libc::SYS_unlink | libc::SYS_rmdir | libc::SYS_unlinkat => {
                self.remove(&agent, nr, &data.args, decide)
            }
            libc::SYS_mkdir | libc::SYS_mkdirat => self.mkdir(&agent, nr, &data.args, decide),
            libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2 => {
                self.rename(&agent, nr, &data.args, decide)
            }
            libc::SYS_connect => self.connect(&agent, &data.args, decide),
            libc::SYS_execve | libc::SYS_execveat => self.exec(&agent, nr, &data.args, decide),
            libc::SYS_symlink | libc::SYS_symlinkat => self.symlink(&agent, nr, &data.args, decide),
            libc::SYS_link | libc::SYS_linkat => self.link(&agent, nr, &data.args, decide),
            libc::SYS_truncate => self.truncate(&agent, &data.args, decide),
            SYS_FILE_SETATTR => {
                // The file system's own flags (`chattr`'s), by path: not
                // decided, refused as by a kernel without the call (the
                // `ioctl` it replaces is refused by the confinement).
                Some(Response::Fail(libc::ENOSYS))
            }
            libc::SYS_chmod
            | libc::SYS_fchmod
            | libc::SYS_fchmodat
            | libc::SYS_fchmodat2
            | libc::SYS_chown
            | libc::SYS_lchown
            | libc::SYS_fchown
            | libc::SYS_fchownat
            | libc::SYS_utimensat
            | libc::SYS_utimes
            | libc::SYS_futimesat
            | libc::SYS_utime
            | libc::SYS_setxattr
            | libc::SYS_lsetxattr
            | libc::SYS_fsetxattr
            | libc::SYS_removexattr
            | libc::SYS_lremovexattr
            | libc::SYS_fremovexattr
            | SYS_SETXATTRAT
            | SYS_REMOVEXATTRAT => self.metadata(&agent, nr, &data.args, decide),
            _ => self.open_call(&agent, data, decide),
        };
        answer.unwrap_or(Response::Fail(libc::EACCES))
    }

    /// The one gate of the calls that change the file system (removals,
    /// directory creations, renames, links, truncation): each action comes
    /// with the path and access it stands for. When Landlock grants the
    /// agent every one of those accesses itself, the call continues
    /// (Landlock re-checks whatever is finally used); otherwise each action
    /// on a path Landlock does not grant must be allowed (decided and
    /// recorded, in order, stopping at the first refusal) before `perform`
    /// does the call here (moving a file out of the scratch directory needs
    /// no decision about the scratch side). `None` is a refusal.
    fn gate(
        &self,
        actions: Vec<(CanonicalAction, &Path, bool)>,
        decide: &mut impl FnMut(CanonicalAction) -> bool,
        perform: impl FnOnce() -> Response,
    ) -> Option<Response> {
        if actions
            .iter()
            .all(|(_, path, writes)| self.granted(path, *writes))
        {
            return Some(Response::Continue);
        }
        for (action, path, writes) in actions {
            if !self.granted(path, writes) && !decide(action) {
                return None;
            }
        }
        Some(perform())
    }

    /// Whether Landlock grants the agent this access itself.
    fn granted(&self, target: &Path, writes: bool) -> bool {
        let roots = if writes {
            &self.write_granted
        } else {
            &self.read_granted
        };
        roots.iter().any(|root| target.starts_with(root))
    }

    /// `execve`, `execveat`: an `Exec` of the program with the argument
    /// vector and the names of the environment variables read from the
    /// agent's memory, decided and recorded; an allowed one is noted in the
    /// ledger and continues, to be verified at its `exec` stop
    /// ([`crate::governed::exec_trace`]). Refused: `execveat` of a descriptor
    /// (`AT_EMPTY_PATH`: a program that may exist on no disk), an empty
    /// argument vector, an `argv[0]` that names another program than the
    /// path (multi-call programs choose what to do by it), strings that
    /// are not UTF-8 or exceed the action limits. Without a decision (and
    /// so without a record): a program outside the trees Landlock lets the
    /// agent execute fails with `EACCES` (the confinement would refuse it
    /// whatever the policy said), and one that does not exist in them
    /// with `ENOENT` (searching `PATH` tries several).
    fn exec(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        use kernel_core::limits::{MAX_ARG_BYTES, MAX_ARGS, MAX_ENV_VARS};
        let ledger = self.execs.as_ref()?;
        let (dirfd, path, argv, envp, flags) = match nr {
            libc::SYS_execve => (libc::AT_FDCWD, args[0], args[1], args[2], 0),
            _ => (
                low_int(args[0])?,
                args[1],
                args[2],
                args[3],
                low_int(args[4])?,
            ),
        };
        if flags & libc::AT_EMPTY_PATH != 0 {
            return None;
        }
        let tid = i32::try_from(agent.pid).ok()?;
        let passed = read_c_string(&agent.memory, path)?;
        let argv = read_c_strings(&agent.memory, argv, MAX_ARGS + 1, MAX_ARG_BYTES)?;
        let env = read_c_strings(&agent.memory, envp, MAX_ENV_VARS, MAX_ARG_BYTES)?;
        let cwd = agent.directory(libc::AT_FDCWD)?;
        let base = if passed.starts_with('/') || dirfd == libc::AT_FDCWD {
            cwd.clone()
        } else {
            agent.directory(dirfd)?
        };
        if !(agent.still_valid)() {
            return None;
        }
        if let Some((program, operator_argv)) = ledger.take_initial() {
            // The agent's own first exec: the operator's command.
            if passed != program || argv != operator_argv {
                return None;
            }
            let file = paths::physical(Path::new(&passed), true, &agent.caller).ok()?;
            ledger.allow(tid, &file, &passed, &argv).ok()?;
            return Some(Response::Continue);
        }
        let (cwd, base) = (cwd.to_str()?, base.to_str()?);
        if !(cwd.starts_with('/') && base.starts_with('/')) {
            return None;
        }
        let program = if passed.starts_with('/') {
            passed.clone()
        } else {
            format!("{base}/{passed}")
        };
        let name = argv.first()?;
        let last = |p: &str| p.rsplit('/').next().map(str::to_owned);
        if *name != passed && last(name) != last(&passed) {
            return None;
        }
        let exec = kernel_core::Exec {
            program,
            args: argv.get(1..)?.to_vec(),
            cwd: Some(cwd.to_owned()),
            // Names only: the values may hold secrets, and the program
            // runs under the agent's own confinement whatever they are.
            env: env
                .iter()
                .map(|entry| {
                    let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
                    (name.to_owned(), String::new())
                })
                .collect(),
        };
        let canonical = CanonicalAction::new(Action::Exec(exec), Some(cwd)).ok()?;
        let Action::Exec(decided) = canonical.action() else {
            return None;
        };
        let program = PathBuf::from(&decided.program);
        // The policy judges the program as the agent named it (a link in
        // the workspace named `ls` is a workspace program, not `/usr/bin`'s);
        // Landlock judges the file it leads to.
        let file = match paths::physical(&program, true, &agent.caller) {
            Ok(file) if file.exists() => file,
            Ok(_) => return Some(Response::Fail(libc::ENOENT)),
            Err(e) => return Some(Response::Fail(e.raw_os_error().unwrap_or(libc::EACCES))),
        };
        if !self
            .execute_granted
            .iter()
            .any(|root| file.starts_with(root))
        {
            // Landlock would refuse it whatever the policy said.
            return None;
        }
        if !decide(canonical) {
            return None;
        }
        // The file checked above, not the name again (a link swapped
        // meanwhile, say to a FIFO, would be followed).
        ledger.allow(tid, &file, &passed, &argv).ok()?;
        Some(Response::Continue)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]

    use super::*;

    #[test]
    fn the_filter_notifies_exactly_the_governed_calls() {
        let filter = program();
        // Walk the program as the kernel would, for a few system calls.
        let run = |arch: u32, nr: u32| {
            let mut pc = 0usize;
            let mut acc = 0u32;
            loop {
                let insn = filter[pc];
                match insn.code {
                    0x20 => acc = if insn.k == 4 { arch } else { nr },
                    0x15 => {
                        pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf });
                    }
                    0x06 => return insn.k,
                    _ => panic!("unexpected instruction"),
                }
                pc += 1;
            }
        };
        let x86_64 = 0xc000_003e;
        for nr in NOTIFIED {
            assert_eq!(
                run(x86_64, u32::try_from(nr).unwrap()),
                libc::SECCOMP_RET_USER_NOTIF
            );
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_fork,
        ] {
            assert_eq!(
                run(x86_64, u32::try_from(nr).unwrap()),
                libc::SECCOMP_RET_ALLOW
            );
        }
        assert_eq!(run(0x4000_0003, 5), libc::SECCOMP_RET_KILL_PROCESS);
    }
}
