//! Governing an agent that does not use the client: its own file opens,
//! deletions, directory creations, renames and TCP connections are
//! decided by policy at the system-call boundary (seccomp user
//! notification), with the same evidence as any other decision.
//!
//! How it works, and why it is sound:
//!
//! - The agent runs under an extra seccomp filter that turns `open`,
//!   `openat`, `openat2`, `creat`, `unlink`, `unlinkat`, `rmdir`, `mkdir`,
//!   `mkdirat`, `rename`, `renameat`, `renameat2`, `connect`, `execve` and
//!   `execveat` into notifications. The filter is
//!   installed between `fork` and `exec` with
//!   `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the listener descriptor is sent to
//!   the enforcer over a socket pair and closed in the child, so the agent
//!   never holds it (it cannot answer its own notifications).
//! - For each notification the enforcer reads the path from the agent's
//!   memory (`/proc/<tid>/mem`), resolves it against the agent's working
//!   directory or directory descriptor, and checks with
//!   `SECCOMP_IOCTL_NOTIF_ID_VALID` that the request is still live.
//! - An open that Landlock itself grants the agent (reads of the system
//!   trees and device files, anything in its scratch directory) is let
//!   through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). That is safe even though
//!   the agent can rewrite the path after the check: the kernel then
//!   applies Landlock to whatever it opens, and Landlock grants no more
//!   than this list. The workspace is not in it.
//! - Every other open is a `FileRead` (read-only) or a `FileWrite` with
//!   [`WriteMode::Descriptor`](kernel_core::WriteMode::Descriptor) (any
//!   write access, creation or truncation), decided by policy and recorded
//!   durably before the answer. An allowed one is opened **by the
//!   enforcer** (`openat2` without following symbolic links, beneath the
//!   workspace when inside it) and the descriptor is injected into the
//!   agent with `SECCOMP_IOCTL_NOTIF_ADDFD` and `SECCOMP_ADDFD_FLAG_SEND`:
//!   never `CONTINUE` for a decided path, so rewriting the path after the
//!   decision changes nothing. A denied one fails with `EACCES`.
//! - Deletions (`FileDelete`), directory creations (`FileWrite`,
//!   descriptor mode) and renames (`FileDelete` of the old path and
//!   `FileWrite` of the new, both needed; exchanges refused) are decided
//!   and then performed by the enforcer on the decided paths, the parent
//!   directory opened without following symbolic links.
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
//!   `EAGAIN`, unrecorded, beyond that. There is no cache of earlier decisions: every
//!   decided call is decided and recorded afresh, so nothing can widen
//!   what was decided.
//!
//! - `execve` and `execveat` are an `Exec` (the program's path, the
//!   argument vector, the working directory, and the *names* of the
//!   environment variables: their values may hold secrets and are not
//!   recorded), decided and recorded; a denied one fails with `EACCES`. An
//!   allowed one must continue in the agent (a process cannot be made to
//!   become a program from outside), so it is verified after the kernel
//!   loaded it and before its first instruction, and killed if it is not
//!   what was decided: see [`crate::exec_trace`]. Landlock limits programs
//!   to the system trees (and the agent's own), never the workspace or
//!   the scratch directory.
//!
//! Not covered yet: hard and symbolic link creation and `truncate`
//! (refused by Landlock in the workspace); x86_64 only.

use crate::broker::Broker;
use kernel_core::{Action, CanonicalAction};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Longest path read from the agent's memory.
const MAX_PATH: usize = 4096;

/// The system calls this version notifies.
const NOTIFIED: [libc::c_long; 15] = [
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
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
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
            }),
            libc::SYS_creat => Some(Self {
                dirfd: libc::AT_FDCWD,
                path: args[0],
                flags: u64::try_from(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC).ok()?,
                mode: args[1],
            }),
            libc::SYS_openat => Some(Self {
                dirfd: dirfd(args[0])?,
                path: args[1],
                flags: args[2],
                mode: args[3],
            }),
            libc::SYS_openat2 => {
                // struct open_how { u64 flags; u64 mode; u64 resolve; }
                let mut how = [0u8; 16];
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
                })
            }
            _ => None,
        }
    }

    fn writes(&self) -> bool {
        let flags = i32::try_from(self.flags & 0xffff_ffff).unwrap_or(-1);
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
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
    memory: std::fs::File,
    still_valid: &'a dyn Fn() -> bool,
}

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

    /// Reads the path at `pointer`, resolves it against `dirfd` (or the
    /// working directory), checks the request is still live, and returns
    /// the canonical action `make` builds from it, with its target path.
    fn resolve(
        &self,
        dirfd: i32,
        pointer: u64,
        make: impl FnOnce(String) -> Action,
    ) -> Option<(CanonicalAction, PathBuf)> {
        let path = read_c_string(&self.memory, pointer)?;
        let base = if path.starts_with('/') {
            None
        } else {
            Some(self.directory(dirfd)?)
        };
        if !(self.still_valid)() {
            return None;
        }
        // A base that is not a directory path (a socket, a deleted
        // directory) resolves nothing.
        let base = match &base {
            None => None,
            Some(base) if base.is_absolute() => Some(base.to_str()?),
            Some(_) => return None,
        };
        let canonical = CanonicalAction::new(make(path), base).ok()?;
        let target = match canonical.action() {
            Action::FileRead { path }
            | Action::FileWrite { path, .. }
            | Action::FileDelete { path } => PathBuf::from(path),
            _ => return None,
        };
        Some((canonical, target))
    }
}

/// The low 32 bits of a register, as the C `int` the kernel reads.
fn low_int(arg: u64) -> Option<i32> {
    u32::try_from(arg & 0xffff_ffff)
        .ok()
        .map(|low| i32::from_ne_bytes(low.to_ne_bytes()))
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
            _ => self.open_call(&agent, data, decide),
        };
        answer.unwrap_or(Answer::Fail(libc::EACCES))
    }

    fn open_call(
        &self,
        agent: &Agent<'_>,
        data: &libc::seccomp_data,
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Answer> {
        let call = OpenCall::of(data, &agent.memory)?;
        let writes = call.writes();
        let (canonical, target) = agent.resolve(call.dirfd, call.path, |path| {
            if writes {
                Action::file_write_descriptor(path)
            } else {
                Action::file_read(path)
            }
        })?;
        self.gate(&[(&target, writes)], [canonical], decide, || {
            self.open(&target, &call)
        })
    }

    /// The one gate of every path-based call: when Landlock grants the
    /// agent every `(path, writes)` access itself, the call continues
    /// (Landlock re-checks whatever is finally used); otherwise each
    /// action must be allowed (decided and recorded, in order, stopping at
    /// the first refusal) before `perform` does the call here. `None` is a
    /// refusal.
    fn gate<const N: usize>(
        &self,
        accesses: &[(&Path, bool)],
        actions: [CanonicalAction; N],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
        perform: impl FnOnce() -> Answer,
    ) -> Option<Answer> {
        if accesses
            .iter()
            .all(|(path, writes)| self.granted(path, *writes))
        {
            return Some(Answer::Continue);
        }
        for action in actions {
            if !decide(action) {
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
        let (canonical, target) = agent.resolve(dirfd, path, Action::file_delete)?;
        let flags = if directory {
            rustix::fs::AtFlags::REMOVEDIR
        } else {
            rustix::fs::AtFlags::empty()
        };
        self.gate(&[(&target, true)], [canonical], decide, || {
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
        let (canonical, target) = agent.resolve(dirfd, path, Action::file_write_descriptor)?;
        let mode = Mode::from_bits_truncate(u32::try_from(mode & 0o777).unwrap_or(0o700))
            & !Mode::from_bits_truncate(0o022);
        self.gate(&[(&target, true)], [canonical], decide, || {
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
        let (delete, from) = agent.resolve(old_dir, old, Action::file_delete)?;
        let (write, to) = agent.resolve(new_dir, new, Action::file_write_descriptor)?;
        self.gate(
            &[(&from, true), (&to, true)],
            [delete, write],
            decide,
            || {
                done(self.in_parent(&from, |from_parent, from_name| {
                    self.in_parent(&to, |to_parent, to_name| {
                        rustix::fs::renameat_with(from_parent, from_name, to_parent, to_name, flags)
                    })
                    .map_err(|e| {
                        rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::ACCESS)
                    })
                }))
            },
        )
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
            ledger.allow(tid, Path::new(&passed), &passed, &argv).ok()?;
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
        if !self
            .execute_granted
            .iter()
            .any(|root| program.starts_with(root))
        {
            // Landlock would refuse it whatever the policy said.
            return None;
        }
        if !program.exists() {
            return Some(Answer::Fail(libc::ENOENT));
        }
        if !decide(canonical) {
            return None;
        }
        ledger.allow(tid, &program, &passed, &argv).ok()?;
        Some(Answer::Continue)
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

    /// Opens `target` for the agent, with the flags it asked for (those
    /// that make sense for a descriptor handed over), never following a
    /// symbolic link.
    fn open(&self, target: &Path, call: &OpenCall) -> Answer {
        let asked =
            OFlags::from_bits_truncate(u32::try_from(call.flags & 0xffff_ffff).unwrap_or(0));
        let kept = OFlags::RWMODE
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::TRUNC
            | OFlags::APPEND
            | OFlags::DIRECTORY
            | OFlags::NONBLOCK
            | OFlags::PATH;
        let cloexec = asked.contains(OFlags::CLOEXEC);
        let mode = Mode::from_bits_truncate(u32::try_from(call.mode & 0o777).unwrap_or(0o600))
            & !Mode::from_bits_truncate(0o022);
        match self.broker.open(target, asked & kept, mode) {
            Ok(file) => Answer::Inject {
                fd: OwnedFd::from(file),
                cloexec,
            },
            Err(e) => Answer::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
        }
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

/// Serves notifications from `listener` with [`WORKERS`] threads until the
/// agent is gone. `decide` decides and durably records one action,
/// returning whether it is allowed.
pub fn serve(
    listener: OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> bool + Sync),
) {
    let bucket = parking_lot::Mutex::new(Bucket {
        limit: governor.rate,
        tokens: governor.rate.burst,
        at: std::time::Instant::now(),
    });
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| serve_one_at_a_time(&listener, governor, decide, &bucket));
        }
    });
}

fn serve_one_at_a_time(
    listener: &OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> bool + Sync),
    bucket: &parking_lot::Mutex<Bucket>,
) {
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
            decide(action)
        };
        let answer = governor.answer(
            notification.pid,
            &notification.data,
            still_valid,
            &mut decide,
        );
        let answer = if limited {
            Answer::Fail(libc::EAGAIN)
        } else {
            answer
        };
        respond(listener.as_fd(), id, answer);
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

/// Sends the answer. Errors (the task died meanwhile) need no handling:
/// the system call is gone with it.
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
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: `addfd` is a valid `seccomp_notif_addfd` naming a
            // descriptor we own (`fd`, alive across the call); with
            // `SECCOMP_ADDFD_FLAG_SEND` the kernel installs it in the agent
            // and completes the system call with its number, atomically.
            let _ = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                    &raw const addfd,
                )
            };
            drop(fd);
        }
        Answer::Replace { fd, target } => {
            let addfd = libc::seccomp_notif_addfd {
                id,
                flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SETFD).unwrap_or(0),
                srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
                newfd: u32::try_from(target).unwrap_or(u32::MAX),
                newfd_flags: 0,
            };
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: `addfd` is a valid `seccomp_notif_addfd` naming a
            // descriptor we own (`fd`, alive across the call); the kernel
            // installs a copy at `target` in the agent, which stays blocked
            // in its system call until the response below.
            let installed = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                    &raw const addfd,
                )
            };
            drop(fd);
            let answer = if installed >= 0 {
                Answer::Value(0)
            } else {
                Answer::Fail(libc::EACCES)
            };
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
        };
        assert!(!call(libc::O_RDONLY).writes());
        assert!(!call(libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY).writes());
        assert!(call(libc::O_WRONLY).writes());
        assert!(call(libc::O_RDWR).writes());
        assert!(call(libc::O_RDONLY | libc::O_CREAT).writes());
        assert!(call(libc::O_RDONLY | libc::O_TRUNC).writes());
    }
}
