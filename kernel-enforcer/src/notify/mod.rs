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
//!   `fork` and `exec` with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the
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
//!   a path that does not exist fails with `ENOENT` without a decision.
//! - Deletions, directory creations, renames, symbolic and hard links,
//!   truncation and metadata changes are decided and then performed by
//!   the enforcer on the decided paths, the parent directory (or the file
//!   itself, pinned with `O_PATH`) opened without following links.
//! - `connect` to an IPv4 or IPv6 address is a `NetConnect` (the address,
//!   not a name); the enforcer connects and puts its connected socket in
//!   place of the agent's (`SECCOMP_ADDFD_FLAG_SETFD`, same number,
//!   blocking mode kept), then completes the call with 0. Options the
//!   agent set on its own socket are not carried over. `connect` on Unix
//!   sockets continues (see SECURITY.md for what that leaves open). The
//!   confinement lets such an agent create TCP stream sockets, never
//!   datagram or raw ones, and refuses TCP Fast Open, which connects
//!   without `connect`.
//! - Anything that cannot be read, resolved or decided fails with
//!   `EACCES`. [`WORKERS`] threads serve notifications; decisions beyond
//!   the [`RateLimit`] wait their turn up to [`RATE_WAIT`], and fail with
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
//!   it is not what was decided: see [`crate::exec_trace`]. Landlock
//!   limits programs to the system trees, the agent's own and the
//!   workspace, never the scratch directory.
//!
//! Not covered yet: `connect` on Unix sockets, extended attributes, FIFOs
//! and device nodes (refused by Landlock in the workspace); x86_64 only.

mod paths;

pub use paths::{OWN_PROCESS_ENTRIES, SYSTEM_PSEUDO_FILES, SYSTEM_PSEUDO_TREES};

use crate::broker::Broker;
use kernel_core::{Action, CanonicalAction};
use paths::{Caller, ProcEntry};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Longest path read from the agent's memory.
const MAX_PATH: usize = 4096;

/// The system calls this version notifies.
const NOTIFIED: [libc::c_long; 40] = [
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
];

/// `setxattrat` and `removexattrat` (Linux 6.13), by number on x86_64.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

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

/// What the child needs to install the notification filter and hand the
/// listener to the enforcer, prepared before `fork`.
#[derive(Debug)]
pub struct ChildSide {
    filter: Vec<libc::sock_filter>,
    socket: OwnedFd,
}

/// Where the enforcer receives the listener.
#[derive(Debug)]
pub struct ParentSide {
    socket: OwnedFd,
}

/// Prepares the notification filter and the socket pair that carries its
/// listener from the agent's child process to the enforcer.
pub fn prepare() -> std::io::Result<(ChildSide, ParentSide)> {
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
        ChildSide {
            filter: program(),
            socket: child,
        },
        ParentSide { socket: parent },
    ))
}

impl ChildSide {
    /// In the child, between `fork` and `exec`, after the confinement:
    /// installs the filter, sends the listener to the enforcer and closes
    /// it here. Only system calls, no allocation.
    pub(crate) fn install(&self) -> std::io::Result<()> {
        let program = libc::sock_fprog {
            len: u16::try_from(self.filter.len()).unwrap_or(u16::MAX),
            filter: self.filter.as_ptr().cast_mut(),
        };
        #[allow(
            unsafe_code,
            reason = "seccomp(2) has no safe wrapper that returns the listener"
        )]
        // SAFETY: `program` points at `self.filter`, alive for the call;
        // the kernel copies the filter. `no_new_privs` was set by the
        // confinement applied before, as seccomp requires.
        let listener = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                // Killable wait: a signal to the waiting agent does not
                // withdraw the call (and restart it) while the enforcer
                // performs it, which would make the effect happen twice.
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                &raw const program,
            )
        };
        let listener = i32::try_from(listener)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(std::io::Error::last_os_error)?;
        #[allow(
            unsafe_code,
            reason = "the listener is a fresh descriptor the kernel just returned"
        )]
        // SAFETY: `listener` was just returned by seccomp(2) and nothing
        // else owns it.
        let listener = unsafe { OwnedFd::from_raw_fd(listener) };
        let sent = send_fd(self.socket.as_fd(), listener.as_fd());
        drop(listener);
        sent
    }
}

/// Sends one descriptor with a one-byte message; no allocation.
fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let descriptors = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&descriptors)) {
        return Err(std::io::Error::other("ancillary buffer too small"));
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(b"L")],
        &mut control,
        rustix::net::SendFlags::NOSIGNAL,
    )?;
    Ok(())
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

/// How the enforcer answers an agent governed at the system-call boundary:
/// what it lets through without a decision (because Landlock grants it to
/// the agent anyway), how it performs allowed effects, and where it notes
/// the programs it allowed.
#[derive(Debug, Clone)]
pub struct Governor {
    /// Performs allowed opens (its `openat2` rules).
    pub broker: Broker,
    /// Trees Landlock lets the agent read.
    pub read_granted: Vec<PathBuf>,
    /// Trees Landlock lets the agent read and write.
    pub write_granted: Vec<PathBuf>,
    /// Trees and files Landlock lets the agent execute.
    pub execute_granted: Vec<PathBuf>,
    /// Where allowed `exec` calls are noted for the tracer to verify
    /// ([`crate::exec_trace`]). `None`: every `exec` is refused.
    pub execs: Option<std::sync::Arc<crate::exec_trace::ExecLedger>>,
    /// How many decisions the agent may cause.
    pub rate: RateLimit,
}

/// How one notification is answered.
#[derive(Debug)]
enum Answer {
    /// Let the kernel run it (Landlock still applies).
    Continue,
    /// Fail it with this errno.
    Fail(i32),
    /// Complete it with this descriptor, installed in the agent.
    Inject { fd: OwnedFd, cloexec: bool },
    /// Put this descriptor in the agent at number `target` (replacing
    /// what was there), then complete the call with 0.
    Replace { fd: OwnedFd, target: i32 },
    /// Complete it with this return value (the effect was performed here).
    Value(i64),
}

/// One open, as read from the notification.
#[derive(Debug, PartialEq, Eq)]
struct OpenCall {
    dirfd: i32,
    path: u64,
    flags: u64,
    mode: u64,
    /// `openat2`'s `resolve` flags (0 for the other calls).
    resolve: u64,
}

impl OpenCall {
    fn of(data: &libc::seccomp_data, memory: &std::fs::File) -> Option<Self> {
        let args = data.args;
        let nr = libc::c_long::from(data.nr);
        // The kernel reads a descriptor argument as a C int: the low 32
        // bits, whatever the upper half of the register holds.
        let dirfd = |arg: u64| {
            u32::try_from(arg & 0xffff_ffff)
                .ok()
                .map(|low| i32::from_ne_bytes(low.to_ne_bytes()))
        };
        match nr {
            libc::SYS_open => Some(Self {
                dirfd: libc::AT_FDCWD,
                path: args[0],
                flags: args[1],
                mode: args[2],
                resolve: 0,
            }),
            libc::SYS_creat => Some(Self {
                dirfd: libc::AT_FDCWD,
                path: args[0],
                flags: u64::try_from(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC).ok()?,
                mode: args[1],
                resolve: 0,
            }),
            libc::SYS_openat => Some(Self {
                dirfd: dirfd(args[0])?,
                path: args[1],
                flags: args[2],
                mode: args[3],
                resolve: 0,
            }),
            libc::SYS_openat2 => {
                // struct open_how { u64 flags; u64 mode; u64 resolve; }
                let mut how = [0u8; 24];
                memory.read_exact_at(&mut how, args[2]).ok()?;
                let word = |i: usize| {
                    how.get(i..i + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_ne_bytes)
                };
                Some(Self {
                    dirfd: dirfd(args[0])?,
                    path: args[1],
                    flags: word(0)?,
                    mode: word(8)?,
                    resolve: word(16)?,
                })
            }
            _ => None,
        }
    }

    /// The flags as the C `int` the kernel reads (all bits set if they do
    /// not fit, which counts as writing).
    fn int_flags(&self) -> i32 {
        i32::try_from(self.flags & 0xffff_ffff).unwrap_or(-1)
    }

    fn writes(&self) -> bool {
        let flags = self.int_flags();
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
    }

    /// Whether the call may create the file.
    fn creates(&self) -> bool {
        self.int_flags() & libc::O_CREAT != 0
    }

    /// Whether the kernel would follow a symbolic link in the last
    /// component: not with `O_NOFOLLOW`, nor with `O_CREAT | O_EXCL`.
    fn follows_last_link(&self) -> bool {
        let flags = self.int_flags();
        flags & libc::O_NOFOLLOW == 0
            && flags & (libc::O_CREAT | libc::O_EXCL) != libc::O_CREAT | libc::O_EXCL
    }
}

/// Reads a NUL-terminated path at `address` (at most [`MAX_PATH`] bytes).
fn read_c_string(memory: &std::fs::File, address: u64) -> Option<String> {
    read_c_string_at_most(memory, address, MAX_PATH)
}

/// Reads a NUL-terminated UTF-8 string of at most `limit` bytes at
/// `address`, page by page so an unmapped page after the string does not
/// fail the read.
fn read_c_string_at_most(memory: &std::fs::File, address: u64, limit: usize) -> Option<String> {
    const PAGE: u64 = 4096;
    let mut bytes = Vec::new();
    let mut at = address;
    while bytes.len() < limit {
        let to_page_end = PAGE - (at % PAGE);
        let want = usize::try_from(to_page_end)
            .unwrap_or(limit)
            .min(limit - bytes.len());
        let mut chunk = vec![0u8; want];
        let got = memory.read_at(&mut chunk, at).ok()?;
        let chunk = chunk.get(..got)?;
        if let Some(end) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(chunk.get(..end)?);
            return String::from_utf8(bytes).ok();
        }
        if got == 0 {
            return None;
        }
        bytes.extend_from_slice(chunk);
        at = at.checked_add(u64::try_from(got).ok()?)?;
    }
    None
}

/// Reads a NULL-terminated array of string pointers at `address` (as
/// `argv` and `envp` are): at most `count` strings of at most `limit`
/// bytes each. A null `address` is an empty array, as the kernel reads it.
fn read_c_strings(
    memory: &std::fs::File,
    address: u64,
    count: usize,
    limit: usize,
) -> Option<Vec<String>> {
    let mut strings = Vec::new();
    if address == 0 {
        return Some(strings);
    }
    let mut at = address;
    loop {
        let mut pointer = [0u8; 8];
        memory.read_exact_at(&mut pointer, at).ok()?;
        let pointer = u64::from_ne_bytes(pointer);
        if pointer == 0 {
            return Some(strings);
        }
        if strings.len() == count {
            return None;
        }
        strings.push(read_c_string_at_most(memory, pointer, limit)?);
        at = at.checked_add(8)?;
    }
}

/// The agent thread that made a system call: its memory, and whether its
/// request is still the one being answered.
struct Agent<'a> {
    pid: u32,
    caller: Caller,
    memory: std::fs::File,
    still_valid: &'a dyn Fn() -> bool,
}

/// A refusal or failure of a governed call, as the errno the agent sees.
type Errno = i32;

impl Agent<'_> {
    /// The directory a relative path is resolved against: the working
    /// directory for `AT_FDCWD`, else what descriptor `dirfd` names.
    fn directory(&self, dirfd: i32) -> Option<PathBuf> {
        let link = if dirfd == libc::AT_FDCWD {
            format!("/proc/{}/cwd", self.pid)
        } else {
            format!("/proc/{}/fd/{dirfd}", self.pid)
        };
        std::fs::read_link(link).ok()
    }

    /// Reads the path at `pointer`, joins it to `dirfd` (or the working
    /// directory), resolves it physically ([`paths::physical`]: symbolic
    /// links followed, the last one only if `follow_last`) and checks the
    /// request is still live. The result is absolute, with no link and no
    /// `..`: what the call would reach.
    fn path(&self, dirfd: i32, pointer: u64, follow_last: bool) -> Result<PathBuf, Errno> {
        let path = read_c_string(&self.memory, pointer).ok_or(libc::EFAULT)?;
        if path.is_empty() {
            return Err(libc::ENOENT);
        }
        let joined = if path.starts_with('/') {
            PathBuf::from(&path)
        } else {
            // A base that is not a directory path (a socket, a deleted
            // directory) resolves nothing.
            let base = self.directory(dirfd).ok_or(libc::EBADF)?;
            if !base.is_absolute() {
                return Err(libc::ENOTDIR);
            }
            base.join(&path)
        };
        let physical = paths::physical(&joined, follow_last, &self.caller)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES))?;
        if !(self.still_valid)() {
            return Err(libc::EACCES);
        }
        Ok(physical)
    }

    /// [`Agent::path`], and the canonical action `make` builds from it.
    fn resolve(
        &self,
        dirfd: i32,
        pointer: u64,
        follow_last: bool,
        make: impl FnOnce(String) -> Action,
    ) -> Result<(CanonicalAction, PathBuf), Errno> {
        let target = self.path(dirfd, pointer, follow_last)?;
        let text = target.to_str().ok_or(libc::EACCES)?;
        let canonical =
            CanonicalAction::new(make(text.to_owned()), None).map_err(|_| libc::EACCES)?;
        Ok((canonical, target))
    }
}

/// The low 32 bits of a register, as the C `int` the kernel reads.
fn low_int(arg: u64) -> Option<i32> {
    u32::try_from(arg & 0xffff_ffff)
        .ok()
        .map(|low| i32::from_ne_bytes(low.to_ne_bytes()))
}

/// The two timestamps of `utimensat` at `address` (none: both now).
fn read_times(memory: &std::fs::File, address: u64) -> Option<rustix::fs::Timestamps> {
    let now = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    if address == 0 {
        return Some(rustix::fs::Timestamps {
            last_access: now,
            last_modification: now,
        });
    }
    let mut raw = [0u8; 32];
    memory.read_exact_at(&mut raw, address).ok()?;
    let word = |i: usize| {
        raw.get(i..i + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_ne_bytes)
    };
    let time = |at: usize| {
        Some(rustix::fs::Timespec {
            tv_sec: word(at)?,
            tv_nsec: word(at + 8)?,
        })
    };
    Some(rustix::fs::Timestamps {
        last_access: time(0)?,
        last_modification: time(16)?,
    })
}

/// The answer for an effect performed here: success (0) or its errno.
fn done(result: std::io::Result<()>) -> Answer {
    match result {
        Ok(()) => Answer::Value(0),
        Err(e) => Answer::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
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
    ) -> Answer {
        let Ok(memory) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
            return Answer::Fail(libc::EACCES);
        };
        let agent = Agent {
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
            libc::SYS_utimes | libc::SYS_futimesat | libc::SYS_utime => {
                // Older forms of `utimensat`, which libc no longer uses.
                Some(Answer::Fail(libc::ENOSYS))
            }
            libc::SYS_setxattr
            | libc::SYS_lsetxattr
            | libc::SYS_fsetxattr
            | libc::SYS_removexattr
            | libc::SYS_lremovexattr
            | libc::SYS_fremovexattr
            | SYS_SETXATTRAT
            | SYS_REMOVEXATTRAT => {
                // Extended attributes are not decided yet, and an access
                // control list is a `chmod` by another name: refused as a
                // file system without them would (tools carry on).
                Some(Answer::Fail(libc::ENOTSUP))
            }
            libc::SYS_chmod
            | libc::SYS_fchmod
            | libc::SYS_fchmodat
            | libc::SYS_fchmodat2
            | libc::SYS_chown
            | libc::SYS_lchown
            | libc::SYS_fchown
            | libc::SYS_fchownat
            | libc::SYS_utimensat => self.metadata(&agent, nr, &data.args, decide),
            _ => self.open_call(&agent, data, decide),
        };
        answer.unwrap_or(Answer::Fail(libc::EACCES))
    }

    /// `open`, `openat`, `openat2`, `creat`. The path is resolved
    /// physically, then: the agent's own `/proc` entries and the system
    /// pseudo-files are opened without a decision (read-only); so are the
    /// trees Landlock grants the agent; a read of a file that does not
    /// exist fails with `ENOENT` without a decision (nothing is accessed);
    /// everything else is decided and recorded first. Every open is made
    /// **here**, on the resolved path, and the descriptor handed over:
    /// never `CONTINUE`, so nothing the agent rewrites after the check is
    /// ever opened.
    fn open_call(
        &self,
        agent: &Agent<'_>,
        data: &libc::seccomp_data,
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let call = OpenCall::of(data, &agent.memory)?;
        if call.resolve != 0 {
            // `RESOLVE_BENEATH` and the like are not implemented here:
            // the caller falls back to resolving the path itself.
            return Some(Answer::Fail(libc::ENOSYS));
        }
        let writes = call.writes();
        let target = match agent.path(call.dirfd, call.path, call.follows_last_link()) {
            Ok(target) => target,
            Err(errno) => return Some(Answer::Fail(errno)),
        };
        if target.starts_with("/proc") {
            return Some(match paths::proc_entry(&target, &agent.caller) {
                ProcEntry::Own if !writes => open_pseudo(&target, &call),
                ProcEntry::Descriptor(fd) => reopen(&agent.caller, fd, &call),
                _ if !writes && paths::is_system_pseudo_file(&target) => {
                    open_pseudo(&target, &call)
                }
                _ => Answer::Fail(libc::EACCES),
            });
        }
        if !writes && paths::is_system_pseudo_file(&target) {
            return Some(open_pseudo(&target, &call));
        }
        if self.granted(&target, writes) {
            return Some(self.open(&target, &call));
        }
        if !call.creates() && std::fs::symlink_metadata(&target).is_err() {
            // Nothing there to read or write: no access to decide.
            return Some(Answer::Fail(libc::ENOENT));
        }
        let text = target.to_str()?.to_owned();
        let action = if writes {
            Action::file_write_descriptor(text)
        } else {
            Action::file_read(text)
        };
        let canonical = CanonicalAction::new(action, None).ok()?;
        if !decide(canonical) {
            return None;
        }
        Some(self.open(&target, &call))
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
        perform: impl FnOnce() -> Answer,
    ) -> Option<Answer> {
        if actions
            .iter()
            .all(|(_, path, writes)| self.granted(path, *writes))
        {
            return Some(Answer::Continue);
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

    /// `unlink`, `rmdir`, `unlinkat`: a `FileDelete`, performed here.
    fn remove(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let (dirfd, path, directory) = match nr {
            libc::SYS_unlink => (libc::AT_FDCWD, args[0], false),
            libc::SYS_rmdir => (libc::AT_FDCWD, args[0], true),
            _ => (
                low_int(args[0])?,
                args[1],
                low_int(args[2])? & libc::AT_REMOVEDIR != 0,
            ),
        };
        let (canonical, target) = match agent.resolve(dirfd, path, false, Action::file_delete) {
            Ok(resolved) => resolved,
            Err(errno) => return Some(Answer::Fail(errno)),
        };
        let flags = if directory {
            rustix::fs::AtFlags::REMOVEDIR
        } else {
            rustix::fs::AtFlags::empty()
        };
        self.gate(vec![(canonical, &target, true)], decide, || {
            done(self.in_parent(&target, |parent, name| {
                rustix::fs::unlinkat(parent, name, flags)
            }))
        })
    }

    /// `mkdir`, `mkdirat`: a `FileWrite` (descriptor mode) of the new
    /// directory's path, performed here.
    fn mkdir(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let (dirfd, path, mode) = match nr {
            libc::SYS_mkdir => (libc::AT_FDCWD, args[0], args[1]),
            _ => (low_int(args[0])?, args[1], args[2]),
        };
        let (canonical, target) =
            match agent.resolve(dirfd, path, false, Action::file_write_descriptor) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Answer::Fail(errno)),
            };
        let mode = Mode::from_bits_truncate(u32::try_from(mode & 0o777).unwrap_or(0o700))
            & !Mode::from_bits_truncate(0o022);
        self.gate(vec![(canonical, &target, true)], decide, || {
            done(self.in_parent(&target, |parent, name| {
                rustix::fs::mkdirat(parent, name, mode)
            }))
        })
    }

    /// `rename`, `renameat`, `renameat2`: a `FileDelete` of the old path
    /// and a `FileWrite` (descriptor mode) of the new one, both allowed,
    /// performed here. Exchanges and whiteouts are refused.
    fn rename(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let (old_dir, old, new_dir, new, flags) = match nr {
            libc::SYS_rename => (libc::AT_FDCWD, args[0], libc::AT_FDCWD, args[1], 0),
            libc::SYS_renameat => (low_int(args[0])?, args[1], low_int(args[2])?, args[3], 0),
            _ => (
                low_int(args[0])?,
                args[1],
                low_int(args[2])?,
                args[3],
                u32::try_from(args[4] & 0xffff_ffff).ok()?,
            ),
        };
        let flags = rustix::fs::RenameFlags::from_bits(flags)?;
        if flags.intersects(rustix::fs::RenameFlags::EXCHANGE | rustix::fs::RenameFlags::WHITEOUT) {
            return None;
        }
        let resolved = agent
            .resolve(old_dir, old, false, Action::file_delete)
            .and_then(|from| {
                Ok((
                    from,
                    agent.resolve(new_dir, new, false, Action::file_write_descriptor)?,
                ))
            });
        let ((delete, from), (write, to)) = match resolved {
            Ok(resolved) => resolved,
            Err(errno) => return Some(Answer::Fail(errno)),
        };
        let mut actions = vec![(delete, &*from, true), (write, &*to, true)];
        if self.granted(&to, true) && !self.granted(&from, true) {
            // Moved into the scratch directory, the content becomes the
            // agent's to read without a decision: the read is decided here.
            let read = CanonicalAction::new(Action::file_read(from.to_str()?), None).ok()?;
            actions.push((read, &*from, false));
        }
        self.gate(actions, decide, || {
            done(self.in_parent(&from, |from_parent, from_name| {
                self.in_parent(&to, |to_parent, to_name| {
                    rustix::fs::renameat_with(from_parent, from_name, to_parent, to_name, flags)
                })
                .map_err(|e| {
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::ACCESS)
                })
            }))
        })
    }

    /// `execve`, `execveat`: an `Exec` of the program with the argument
    /// vector and the names of the environment variables read from the
    /// agent's memory, decided and recorded; an allowed one is noted in the
    /// ledger and continues, to be verified at its `exec` stop
    /// ([`crate::exec_trace`]). Refused: `execveat` of a descriptor
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
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
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
            return Some(Answer::Continue);
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
            Ok(_) => return Some(Answer::Fail(libc::ENOENT)),
            Err(e) => return Some(Answer::Fail(e.raw_os_error().unwrap_or(libc::EACCES))),
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
        Some(Answer::Continue)
    }

    /// `symlink`, `symlinkat`: a `FileWrite` in [`WriteMode::Symlink`]
    /// mode of the link's path, its content the target as the agent wrote
    /// it; created here. Nothing is decided about the target: opening
    /// through the link is decided on where it leads.
    ///
    /// [`WriteMode::Symlink`]: kernel_core::WriteMode::Symlink
    fn symlink(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let (target, dirfd, path) = match nr {
            libc::SYS_symlink => (args[0], libc::AT_FDCWD, args[1]),
            _ => (args[0], low_int(args[1])?, args[2]),
        };
        let Some(target) = read_c_string(&agent.memory, target) else {
            return Some(Answer::Fail(libc::EFAULT));
        };
        let (canonical, link) =
            match agent.resolve(dirfd, path, false, |p| Action::file_symlink(p, &target)) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Answer::Fail(errno)),
            };
        self.gate(vec![(canonical, &link, true)], decide, || {
            done(self.in_parent(&link, |parent, name| {
                rustix::fs::symlinkat(target.as_str(), parent, name)
            }))
        })
    }

    /// `link`, `linkat`: a new name for an existing file. Decided: the
    /// existing file's read and write (the new name reaches both) and a
    /// `FileWrite` in [`WriteMode::HardLink`] mode of the new path; made
    /// here from the file pinned before the decision.
    ///
    /// [`WriteMode::HardLink`]: kernel_core::WriteMode::HardLink
    fn link(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let (old_dir, old, new_dir, new, flags) = match nr {
            libc::SYS_link => (libc::AT_FDCWD, args[0], libc::AT_FDCWD, args[1], 0),
            _ => (
                low_int(args[0])?,
                args[1],
                low_int(args[2])?,
                args[3],
                low_int(args[4])?,
            ),
        };
        if flags & !libc::AT_SYMLINK_FOLLOW != 0 {
            // AT_EMPTY_PATH (a descriptor's file): not supported.
            return Some(Answer::Fail(libc::EINVAL));
        }
        let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
        let resolved = agent.path(old_dir, old, follow).and_then(|from| {
            let (write, to) = agent.resolve(new_dir, new, false, |p| {
                Action::file_write_without_content(p, kernel_core::WriteMode::HardLink)
            })?;
            Ok((from, write, to))
        });
        let (from, write, to) = match resolved {
            Ok(resolved) => resolved,
            Err(errno) => return Some(Answer::Fail(errno)),
        };
        let from_text = from.to_str()?.to_owned();
        let read = CanonicalAction::new(Action::file_read(from_text.clone()), None).ok()?;
        let write_old =
            CanonicalAction::new(Action::file_write_descriptor(from_text), None).ok()?;
        self.gate(
            vec![
                (read, &*from, false),
                (write_old, &*from, true),
                (write, &*to, true),
            ],
            decide,
            || {
                done(self.in_parent(&from, |from_parent, from_name| {
                    self.in_parent(&to, |to_parent, to_name| {
                        rustix::fs::linkat(
                            from_parent,
                            from_name,
                            to_parent,
                            to_name,
                            rustix::fs::AtFlags::empty(),
                        )
                    })
                    .map_err(|e| {
                        rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::ACCESS)
                    })
                }))
            },
        )
    }

    /// `truncate`: a `FileWrite` (descriptor mode) of the file, truncated
    /// here through a descriptor opened without following links.
    fn truncate(
        &self,
        agent: &Agent<'_>,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let length = args[1];
        let (canonical, target) =
            match agent.resolve(libc::AT_FDCWD, args[0], true, Action::file_write_descriptor) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Answer::Fail(errno)),
            };
        self.gate(vec![(canonical, &target, true)], decide, || {
            let truncated = self
                .broker
                .open(&target, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())
                .and_then(|file| file.set_len(length));
            done(truncated)
        })
    }

    /// `chmod`, `fchmod`, `fchmodat`, `fchmodat2`, `chown`, `lchown`,
    /// `fchown`, `fchownat`, `utimensat`: a `FileWrite` in
    /// [`WriteMode::Metadata`] mode of the file. The file is pinned first
    /// (opened with `O_PATH`, by its resolved path without following
    /// links, or from the agent's descriptor), the decision is taken on the
    /// path of what was pinned, and the change is made here on it: nothing
    /// the agent does after the check changes which file is changed.
    ///
    /// [`WriteMode::Metadata`]: kernel_core::WriteMode::Metadata
    fn metadata(
        &self,
        agent: &Agent<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        // (descriptor, path pointer or 0 for the descriptor itself, flags)
        let (dirfd, path, flags) = match nr {
            libc::SYS_chmod | libc::SYS_chown => (libc::AT_FDCWD, args[0], 0),
            libc::SYS_lchown => (libc::AT_FDCWD, args[0], libc::AT_SYMLINK_NOFOLLOW),
            libc::SYS_fchmod | libc::SYS_fchown => (low_int(args[0])?, 0, 0),
            libc::SYS_fchmodat => (low_int(args[0])?, args[1], 0),
            libc::SYS_fchmodat2 => (low_int(args[0])?, args[1], low_int(args[3])?),
            libc::SYS_fchownat => (low_int(args[0])?, args[1], low_int(args[4])?),
            _ => (low_int(args[0])?, args[1], low_int(args[3])?),
        };
        if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Some(Answer::Fail(libc::EINVAL));
        }
        let empty = path != 0
            && flags & libc::AT_EMPTY_PATH != 0
            && read_c_string(&agent.memory, path).is_some_and(|p| p.is_empty());
        let Some(tgid) = agent.caller.tgid() else {
            return Some(Answer::Fail(libc::ESRCH));
        };
        // The file of one of the agent's own descriptors.
        let descriptor = |fd: i32| {
            rustix::fs::open(
                format!("/proc/{tgid}/fd/{fd}").as_str(),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| e.raw_os_error())
        };
        let pinned = if path == 0 || empty {
            descriptor(dirfd)
        } else {
            let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
            agent.path(dirfd, path, follow).and_then(|target| {
                match paths::proc_entry(&target, &agent.caller) {
                    // `/proc/self/fd/N`: how libc changes the metadata of
                    // an `O_PATH` descriptor.
                    ProcEntry::Descriptor(fd) => descriptor(fd),
                    _ if target.starts_with("/proc") => Err(libc::EACCES),
                    _ => self
                        .broker
                        .open(&target, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
                        .map(OwnedFd::from)
                        .map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES)),
                }
            })
        };
        let pinned = match pinned {
            Ok(pinned) => pinned,
            Err(errno) => return Some(Answer::Fail(errno)),
        };
        let handle = format!("/proc/self/fd/{}", pinned.as_raw_fd());
        let target = std::fs::read_link(&handle).ok()?;
        let text = target.to_str()?.to_owned();
        let canonical = CanonicalAction::new(
            Action::file_write_without_content(text, kernel_core::WriteMode::Metadata),
            None,
        )
        .ok()?;
        if !target.is_absolute() {
            return None;
        }
        // What the agent may write without a decision (its scratch
        // directory) it may change the metadata of too.
        if !self.granted(&target, true) && !decide(canonical) {
            return None;
        }
        let handle = handle.as_str();
        let changed = match nr {
            libc::SYS_chmod | libc::SYS_fchmod | libc::SYS_fchmodat | libc::SYS_fchmodat2 => {
                let mode = match nr {
                    libc::SYS_chmod | libc::SYS_fchmod => args[1],
                    _ => args[2],
                };
                rustix::fs::chmod(
                    handle,
                    Mode::from_bits_truncate(u32::try_from(mode & 0o7777).ok()?),
                )
            }
            libc::SYS_utimensat => {
                let times = read_times(&agent.memory, args[2])?;
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    handle,
                    &times,
                    rustix::fs::AtFlags::empty(),
                )
            }
            _ => {
                let (owner, group) = match nr {
                    libc::SYS_chown | libc::SYS_lchown | libc::SYS_fchown => (args[1], args[2]),
                    _ => (args[2], args[3]),
                };
                let id = |raw: u64| {
                    u32::try_from(raw & 0xffff_ffff)
                        .ok()
                        .filter(|id| *id != u32::MAX)
                };
                // -1 ("unchanged") is passed as `None`.
                let owner = id(owner).map(rustix::process::Uid::from_raw);
                let group = id(group).map(rustix::process::Gid::from_raw);
                rustix::fs::chown(handle, owner, group)
            }
        };
        Some(done(changed.map_err(std::io::Error::from)))
    }

    /// Runs `operation` on the parent directory of `target` (opened
    /// without following symbolic links) and its last component.
    fn in_parent(
        &self,
        target: &Path,
        operation: impl FnOnce(&std::fs::File, &std::ffi::OsStr) -> rustix::io::Result<()>,
    ) -> std::io::Result<()> {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        };
        let parent = self
            .broker
            .open(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        operation(&parent, name).map_err(std::io::Error::from)
    }

    /// `connect` to an IPv4 or IPv6 address: a `NetConnect`, made here;
    /// the agent's socket is replaced by the enforcer's connected one
    /// (same descriptor number). Unix sockets continue (Landlock's scope
    /// and file permissions govern them); other families are refused.
    fn connect(
        &self,
        agent: &Agent<'_>,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let socket = low_int(args[0])?;
        let length = usize::try_from(args[2]).ok()?.min(128);
        let mut address = vec![0u8; length];
        agent.memory.read_exact_at(&mut address, args[1]).ok()?;
        if !(agent.still_valid)() {
            return None;
        }
        let family = u16::from_ne_bytes([*address.first()?, *address.get(1)?]);
        let peer = match i32::from(family) {
            libc::AF_UNIX => return Some(Answer::Continue),
            libc::AF_INET => {
                let port = u16::from_be_bytes([*address.get(2)?, *address.get(3)?]);
                let ip = std::net::Ipv4Addr::new(
                    *address.get(4)?,
                    *address.get(5)?,
                    *address.get(6)?,
                    *address.get(7)?,
                );
                std::net::SocketAddr::from((ip, port))
            }
            libc::AF_INET6 => {
                let port = u16::from_be_bytes([*address.get(2)?, *address.get(3)?]);
                let octets: [u8; 16] = address.get(8..24)?.try_into().ok()?;
                std::net::SocketAddr::from((std::net::Ipv6Addr::from(octets), port))
            }
            _ => return None,
        };
        let action = Action::net_connect(peer.ip().to_string(), peer.port());
        let canonical = CanonicalAction::new(action, None).ok()?;
        if !decide(canonical) {
            return None;
        }
        let stream =
            match std::net::TcpStream::connect_timeout(&peer, crate::broker::CONNECT_TIMEOUT) {
                Ok(stream) => stream,
                Err(e) => {
                    return Some(Answer::Fail(e.raw_os_error().unwrap_or(libc::ECONNREFUSED)));
                }
            };
        // Keep the agent's blocking mode on the socket it gets back.
        let nonblocking = std::fs::read_to_string(format!("/proc/{}/fdinfo/{socket}", agent.pid))
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            })
            .is_some_and(|flags| flags & u32::try_from(libc::O_NONBLOCK).unwrap_or(0) != 0);
        if stream.set_nonblocking(nonblocking).is_err() {
            return None;
        }
        Some(Answer::Replace {
            fd: OwnedFd::from(stream),
            target: socket,
        })
    }

    /// Opens `target` (a physical path) for the agent, with the flags it
    /// asked for (those that make sense for a descriptor handed over),
    /// never following a symbolic link. An `O_PATH` open gets a read-only
    /// descriptor instead (the kernel cannot hand over `O_PATH`
    /// descriptors; it was decided as a read). The enforcer's own open
    /// never blocks (a FIFO without a writer): it is made non-blocking and
    /// given back in the mode the agent asked for.
    fn open(&self, target: &Path, call: &OpenCall) -> Answer {
        let (flags, cloexec) = handed_over_flags(call);
        let mode = Mode::from_bits_truncate(u32::try_from(call.mode & 0o777).unwrap_or(0o600))
            & !Mode::from_bits_truncate(0o022);
        let opened = self
            .broker
            .open(target, flags | OFlags::NONBLOCK, mode)
            .and_then(|file| restore_blocking(file, flags));
        match opened {
            Ok(file) => Answer::Inject {
                fd: OwnedFd::from(file),
                cloexec,
            },
            Err(e) => Answer::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
        }
    }
}

/// The flags of the agent's open that the enforcer's open keeps, and
/// whether the agent asked for `O_CLOEXEC`.
fn handed_over_flags(call: &OpenCall) -> (OFlags, bool) {
    let asked = OFlags::from_bits_truncate(u32::try_from(call.flags & 0xffff_ffff).unwrap_or(0));
    let kept = OFlags::RWMODE
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::TRUNC
        | OFlags::APPEND
        | OFlags::DIRECTORY
        | OFlags::NONBLOCK;
    let mut flags = asked & kept;
    if asked.contains(OFlags::PATH) {
        flags = OFlags::RDONLY | (asked & OFlags::DIRECTORY);
    }
    (flags, asked.contains(OFlags::CLOEXEC))
}

/// Clears the `O_NONBLOCK` the enforcer opened `file` with, unless the
/// agent asked for it in `flags`.
fn restore_blocking(file: std::fs::File, flags: OFlags) -> std::io::Result<std::fs::File> {
    if !flags.contains(OFlags::NONBLOCK) {
        let now = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, now - OFlags::NONBLOCK)?;
    }
    Ok(file)
}

/// Opens one of the pseudo-files granted without a decision (the agent's
/// own `/proc` entries, the system's listed ones), read-only.
fn open_pseudo(target: &Path, call: &OpenCall) -> Answer {
    let (flags, cloexec) = handed_over_flags(call);
    let flags = (flags & (OFlags::DIRECTORY | OFlags::NONBLOCK)) | OFlags::RDONLY;
    let opened = rustix::fs::openat2(
        rustix::fs::CWD,
        target,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    );
    match opened {
        Ok(fd) => Answer::Inject { fd, cloexec },
        Err(e) => Answer::Fail(e.raw_os_error()),
    }
}

/// Reopens the caller's own descriptor `fd` (`/proc/self/fd/N`,
/// `/dev/stdout`): allowed without a decision when it asks for no more
/// access than the descriptor already has (reading only if it reads,
/// writing only if it writes; never an `O_PATH` descriptor), so it
/// reaches nothing the agent could not already reach through `fd`.
fn reopen(caller: &Caller, fd: i32, call: &OpenCall) -> Answer {
    let Some(tgid) = caller.tgid() else {
        return Answer::Fail(libc::ESRCH);
    };
    // The agent's open file itself, taken once (`pidfd_getfd`): what is
    // checked is what is reopened, whatever the agent does to its
    // descriptor table meanwhile.
    let Some(pid) = i32::try_from(tgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Answer::Fail(libc::ESRCH);
    };
    let taken =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).and_then(|pidfd| {
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        });
    let Ok(taken) = taken else {
        return Answer::Fail(libc::EBADF);
    };
    let Ok(held) = rustix::fs::fcntl_getfl(&taken) else {
        return Answer::Fail(libc::EBADF);
    };
    let (flags, cloexec) = handed_over_flags(call);
    let reads = |f: OFlags| {
        let mode = f & OFlags::RWMODE;
        mode == OFlags::RDONLY || mode == OFlags::RDWR
    };
    let writes = |f: OFlags| {
        let mode = f & OFlags::RWMODE;
        mode == OFlags::WRONLY || mode == OFlags::RDWR
    };
    if held.contains(OFlags::PATH)
        || (reads(flags) && !reads(held))
        || (writes(flags) && !writes(held))
        || (flags.contains(OFlags::TRUNC) && !writes(held))
    {
        return Answer::Fail(libc::EACCES);
    }
    let flags = flags - OFlags::CREATE - OFlags::EXCL;
    let path = format!("/proc/self/fd/{}", taken.as_raw_fd());
    let opened = rustix::fs::open(
        path.as_str(),
        flags | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .map(std::fs::File::from)
    .and_then(|file| restore_blocking(file, flags));
    match opened {
        Ok(file) => Answer::Inject {
            fd: OwnedFd::from(file),
            cloexec,
        },
        Err(e) => Answer::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
    }
}

/// Notifications served at once (each may wait for a decision's
/// `fdatasync`).
pub const WORKERS: usize = 4;
/// Decisions per second one agent may cause at the system-call boundary
/// by default (`--syscall-rate`), sustained; see [`RateLimit`].
pub const DEFAULT_RATE_PER_SECOND: u32 = 2000;
/// Longest a call waits for its turn under the rate limit.
pub const RATE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How many decisions an agent may cause at the system-call boundary.
/// Beyond the sustained rate (after a burst of twice as many) a call waits
/// for its turn, up to [`RATE_WAIT`]; one that would wait longer fails
/// with `EAGAIN` without a decision or a record, so a flood cannot fill
/// the evidence or starve the client, while a busy agent is slowed down
/// rather than failed. Calls Landlock grants anyway are not counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Decisions per second, sustained.
    pub per_second: f64,
    /// Decisions allowed at once above the sustained rate.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` sustained (at least one), bursts of twice as many.
    pub fn per_second(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            burst: 2.0 * per_second,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::per_second(DEFAULT_RATE_PER_SECOND)
    }
}

/// A token bucket whose tokens may be reserved ahead (the count goes
/// negative), so that waiting callers are served in turn.
#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// Takes a token now, or reserves one and returns how long to wait
    /// for it; `None` if that would be longer than `patience` (nothing is
    /// reserved then).
    fn reserve(&mut self, patience: std::time::Duration) -> Option<std::time::Duration> {
        self.reserve_at(std::time::Instant::now(), patience)
    }

    /// [`Bucket::reserve`] at the instant `now` (not before the last one).
    fn reserve_at(
        &mut self,
        now: std::time::Instant,
        patience: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.limit.per_second;
        self.tokens = (self.tokens + refill).min(self.limit.burst);
        self.at = now;
        let wait = if self.tokens >= 1.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
        };
        if wait > patience {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }
}

/// Longest a governed call waits for its decision. A call whose decision
/// has not come by then (the session's lock or the evidence's disk is
/// stuck) fails with `EAGAIN`, and the session halts: a kernel that cannot
/// decide in time is at fault, and fails closed.
pub const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Where one notification's answer stands: still waiting for its decision,
/// claimed by its worker (allowed, being performed, or answered), or
/// answered by the watchdog after [`ANSWER_DEADLINE`].
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// The notifications being served, by id: when each arrived and where its
/// answer stands.
type InFlight = parking_lot::Mutex<
    std::collections::HashMap<
        u64,
        (
            std::time::Instant,
            std::sync::Arc<std::sync::atomic::AtomicU8>,
        ),
    >,
>;

/// Serves notifications from `listener` with [`WORKERS`] threads until the
/// agent is gone. `decide` decides and durably records one action,
/// returning whether it is allowed. `fault` is told of a fault of the
/// enforcer's own (a handler that panicked, a decision that did not come
/// within [`ANSWER_DEADLINE`]); the call it concerns fails with an error.
/// Every notification is answered exactly once.
pub fn serve(
    listener: OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> bool + Sync),
    fault: &(impl Fn(&str) + Sync),
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let bucket = parking_lot::Mutex::new(Bucket {
        limit: governor.rate,
        tokens: governor.rate.burst,
        at: std::time::Instant::now(),
    });
    let inflight = InFlight::default();
    let serving = AtomicUsize::new(WORKERS);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                serve_one_at_a_time(&listener, governor, decide, fault, &bucket, &inflight);
                serving.fetch_sub(1, Ordering::SeqCst);
            });
        }
        scope.spawn(|| {
            while serving.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let overdue: Vec<u64> = inflight
                    .lock()
                    .iter()
                    .filter(|(_, (since, state))| {
                        since.elapsed() > ANSWER_DEADLINE
                            && state
                                .compare_exchange(
                                    PENDING,
                                    TIMED_OUT,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                )
                                .is_ok()
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in overdue {
                    respond(listener.as_fd(), id, Answer::Fail(libc::EAGAIN));
                    fault(&format!(
                        "a governed system call had no decision within {} s",
                        ANSWER_DEADLINE.as_secs()
                    ));
                }
            }
        });
    });
}

fn serve_one_at_a_time(
    listener: &OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> bool + Sync),
    fault: &(impl Fn(&str) + Sync),
    bucket: &parking_lot::Mutex<Bucket>,
    inflight: &InFlight,
) {
    use std::sync::atomic::{AtomicU8, Ordering};
    loop {
        let mut notification = zeroed_notification();
        #[allow(
            unsafe_code,
            reason = "the seccomp notification ioctls have no safe wrapper"
        )]
        // SAFETY: `notification` is a zeroed `seccomp_notif`, as the ioctl
        // requires, and lives across the call.
        let received = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &raw mut notification,
            )
        };
        if received != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // Interrupted, or the task died before we read it.
                Some(libc::EINTR | libc::ENOENT) => continue,
                // The agent and every process it started are gone.
                _ => return,
            }
        }
        let id = notification.id;
        let state = std::sync::Arc::new(AtomicU8::new(PENDING));
        inflight.lock().insert(
            id,
            (std::time::Instant::now(), std::sync::Arc::clone(&state)),
        );
        // Claims the answer for this worker; false once the watchdog has
        // answered the call.
        let claim = || {
            state
                .compare_exchange(PENDING, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
                || state.load(Ordering::SeqCst) == CLAIMED
        };
        let still_valid = || {
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: passes a pointer to a live u64, as the ioctl expects.
            let valid = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                    &raw const id,
                )
            };
            valid == 0
        };
        let mut limited = false;
        let mut decide = |action: CanonicalAction| {
            // The lock is released before waiting.
            let turn = bucket.lock().reserve(RATE_WAIT);
            match turn {
                Some(wait) => std::thread::sleep(wait),
                None => {
                    limited = true;
                    return false;
                }
            }
            #[cfg(debug_assertions)]
            injected_fault(&action);
            // Nothing is performed for a call the watchdog has answered.
            decide(action) && claim()
        };
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            governor.answer(
                notification.pid,
                &notification.data,
                still_valid,
                &mut decide,
            )
        }));
        let answer = match answered {
            Ok(_) if limited => Answer::Fail(libc::EAGAIN),
            Ok(answer) => answer,
            Err(_) => {
                fault("internal fault: a panic while answering a governed system call");
                Answer::Fail(libc::EACCES)
            }
        };
        if claim() {
            respond(listener.as_fd(), id, answer);
        }
        inflight.lock().remove(&id);
    }
}

/// Debug builds only, for the liveness tests: the enforcer's own
/// environment variable `AGENT_KERNEL_TEST_FAULT` (`panic:KIND` or
/// `stall:KIND`, `KIND` an action name such as `file_delete`) makes the
/// handler of every such action panic, or block for an hour, before its
/// decision. The agent cannot set it (its environment is its own); release
/// builds do not have it.
#[cfg(debug_assertions)]
fn injected_fault(action: &CanonicalAction) {
    let Ok(fault) = std::env::var("AGENT_KERNEL_TEST_FAULT") else {
        return;
    };
    let kind = action.action().kind().as_str();
    match fault.split_once(':') {
        Some(("panic", wanted)) if wanted == kind => {
            #[expect(clippy::panic, reason = "an injected fault, debug builds only")]
            {
                panic!("injected fault: a panic while handling `{kind}`")
            }
        }
        Some(("stall", wanted)) if wanted == kind => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        _ => {}
    }
}

fn zeroed_notification() -> libc::seccomp_notif {
    libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data {
            nr: 0,
            arch: 0,
            instruction_pointer: 0,
            args: [0; 6],
        },
    }
}

/// Installs a descriptor in the agent (`SECCOMP_IOCTL_NOTIF_ADDFD`); the
/// errno if the kernel refuses (an `O_PATH` descriptor, a task that died).
fn add_fd(listener: BorrowedFd<'_>, addfd: &libc::seccomp_notif_addfd) -> Result<(), i32> {
    #[allow(
        unsafe_code,
        reason = "the seccomp notification ioctls have no safe wrapper"
    )]
    // SAFETY: `addfd` is a valid `seccomp_notif_addfd` whose source
    // descriptor the caller keeps open across the call.
    let installed = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            std::ptr::from_ref(addfd),
        )
    };
    if installed < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EACCES))
    } else {
        Ok(())
    }
}

/// Sends the answer. Every notification gets exactly one response: when
/// handing over a descriptor fails (the kernel refuses it, or the task
/// died meanwhile), the call fails with that error instead of being left
/// waiting. Errors of the final response need no handling: the task is
/// gone, and its system call with it.
fn respond(listener: BorrowedFd<'_>, id: u64, answer: Answer) {
    match answer {
        Answer::Inject { fd, cloexec } => {
            let addfd = libc::seccomp_notif_addfd {
                id,
                flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SEND).unwrap_or(0),
                srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
                newfd: 0,
                newfd_flags: if cloexec {
                    u32::try_from(libc::O_CLOEXEC).unwrap_or(0)
                } else {
                    0
                },
            };
            // With `SECCOMP_ADDFD_FLAG_SEND` the kernel installs the
            // descriptor and completes the call with its number, atomically.
            if let Err(errno) = add_fd(listener, &addfd) {
                respond(listener, id, Answer::Fail(errno));
            }
            drop(fd);
        }
        Answer::Replace { fd, target } => {
            // The copy goes to `target` in the agent, which stays blocked in
            // its system call until the response.
            let addfd = libc::seccomp_notif_addfd {
                id,
                flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SETFD).unwrap_or(0),
                srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
                newfd: u32::try_from(target).unwrap_or(u32::MAX),
                newfd_flags: 0,
            };
            let answer = match add_fd(listener, &addfd) {
                Ok(()) => Answer::Value(0),
                Err(errno) => Answer::Fail(errno),
            };
            drop(fd);
            respond(listener, id, answer);
        }
        Answer::Continue | Answer::Fail(_) | Answer::Value(_) => {
            let (val, error, flags) = match answer {
                Answer::Fail(errno) => (0, -errno, 0),
                Answer::Value(value) => (value, 0, 0),
                _ => (
                    0,
                    0,
                    u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(0),
                ),
            };
            let response = libc::seccomp_notif_resp {
                id,
                val,
                error,
                flags,
            };
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: `response` is a valid `seccomp_notif_resp`, alive
            // across the call.
            let _ = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_SEND,
                    &raw const response,
                )
            };
        }
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

    #[test]
    fn a_flood_beyond_the_burst_waits_its_turn_and_then_is_refused() {
        use std::time::Duration;
        let start = std::time::Instant::now();
        let limit = RateLimit::default();
        let mut bucket = Bucket {
            limit,
            tokens: limit.burst,
            at: start,
        };
        let burst = limit.burst as usize;
        // At one instant: the burst at once, then nothing without waiting.
        let immediate = (0..burst * 2)
            .filter(|_| bucket.reserve_at(start, Duration::ZERO).is_some())
            .count();
        assert_eq!(immediate, burst);
        // Reservations queue up at the sustained rate, each waiting one
        // interval longer, until the wait would exceed the patience.
        let waits: Vec<Duration> =
            std::iter::from_fn(|| bucket.reserve_at(start, RATE_WAIT)).collect();
        let expected = (limit.per_second * RATE_WAIT.as_secs_f64()) as usize;
        assert!(waits.len().abs_diff(expected) <= 1, "{}", waits.len());
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "served in turn");
        assert!(waits.iter().all(|w| *w <= RATE_WAIT));
        assert_eq!(bucket.reserve_at(start, RATE_WAIT), None);
        // Later, the reserved turns have passed and tokens come back at
        // the sustained rate.
        let later = start + RATE_WAIT + Duration::from_millis(10);
        let refilled = (0..burst)
            .filter(|_| bucket.reserve_at(later, Duration::ZERO).is_some())
            .count();
        let expected = (limit.per_second * 0.010) as usize;
        assert!(refilled.abs_diff(expected) <= 1, "{refilled}");
    }

    #[test]
    fn write_access_is_any_write_mode_creation_or_truncation() {
        let call = |flags: i32| OpenCall {
            dirfd: libc::AT_FDCWD,
            path: 0,
            flags: u64::try_from(flags).unwrap(),
            mode: 0,
            resolve: 0,
        };
        assert!(!call(libc::O_RDONLY).writes());
        assert!(!call(libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY).writes());
        assert!(call(libc::O_WRONLY).writes());
        assert!(call(libc::O_RDWR).writes());
        assert!(call(libc::O_RDONLY | libc::O_CREAT).writes());
        assert!(call(libc::O_RDONLY | libc::O_TRUNC).writes());
    }
}
