//! One notified call as the enforcer reads it: the agent thread that made
//! it and its memory, the open it asks for, and how it is answered; and
//! the [`Governor`] that answers it. Shared by the handlers of each kind
//! of call.

use super::paths::{self, Caller};
use crate::governed::rate::RateLimit;
use crate::session::broker::Broker;
use kernel_core::{Action, CanonicalAction};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Longest path read from the agent's memory.
const MAX_PATH: usize = 4096;

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
    /// ([`crate::governed::exec_trace`]). `None`: every `exec` is refused.
    pub execs: Option<std::sync::Arc<crate::governed::exec_trace::ExecLedger>>,
    /// How many decisions the agent may cause.
    pub rate: RateLimit,
    /// The egress proxy the agent may connect to without a decision (the
    /// kernel's own service; see [`crate::governed::egress`]), if it has one.
    pub egress: Option<crate::governed::egress::Door>,
}

/// How one notification is answered.
#[derive(Debug)]
pub(super) enum Response {
    /// Let the kernel run it (Landlock still applies).
    Continue,
    /// Fail it with this errno.
    Fail(i32),
    /// Complete it with this descriptor, installed in the agent.
    Inject { fd: OwnedFd, cloexec: bool },
    /// Put this descriptor in the agent at number `target` (replacing
    /// what was there, close-on-exec as `cloexec` says), then complete
    /// the call with 0.
    Replace {
        fd: OwnedFd,
        target: i32,
        cloexec: bool,
    },
    /// Complete it with this return value (the effect was performed here).
    Value(i64),
}

/// One open, as read from the notification.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OpenCall {
    pub(super) dirfd: i32,
    pub(super) path: u64,
    pub(super) flags: u64,
    pub(super) mode: u64,
    /// `openat2`'s `resolve` flags (0 for the other calls).
    pub(super) resolve: u64,
}

impl OpenCall {
    pub(super) fn of(data: &libc::seccomp_data, memory: &std::fs::File) -> Option<Self> {
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
    pub(super) fn int_flags(&self) -> i32 {
        i32::try_from(self.flags & 0xffff_ffff).unwrap_or(-1)
    }

    pub(super) fn writes(&self) -> bool {
        let flags = self.int_flags();
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
    }

    /// Whether the call may create the file.
    pub(super) fn creates(&self) -> bool {
        self.int_flags() & libc::O_CREAT != 0
    }

    /// Whether the kernel would follow a symbolic link in the last
    /// component: not with `O_NOFOLLOW`, nor with `O_CREAT | O_EXCL`.
    pub(super) fn follows_last_link(&self) -> bool {
        let flags = self.int_flags();
        flags & libc::O_NOFOLLOW == 0
            && flags & (libc::O_CREAT | libc::O_EXCL) != libc::O_CREAT | libc::O_EXCL
    }
}

/// Reads a NUL-terminated path at `address` (at most [`MAX_PATH`] bytes).
pub(super) fn read_c_string(memory: &std::fs::File, address: u64) -> Option<String> {
    read_c_string_at_most(memory, address, MAX_PATH)
}

/// Reads a NUL-terminated UTF-8 string of at most `limit` bytes at
/// `address`, page by page so an unmapped page after the string does not
/// fail the read.
pub(super) fn read_c_string_at_most(
    memory: &std::fs::File,
    address: u64,
    limit: usize,
) -> Option<String> {
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
pub(super) fn read_c_strings(
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
pub(super) struct CallingThread<'a> {
    pub(super) pid: u32,
    pub(super) caller: Caller,
    pub(super) memory: std::fs::File,
    pub(super) still_valid: &'a dyn Fn() -> bool,
}

/// A refusal or failure of a governed call, as the errno the agent sees.
pub(super) type Errno = i32;

impl CallingThread<'_> {
    /// The directory a relative path is resolved against: the working
    /// directory for `AT_FDCWD`, else what descriptor `dirfd` names.
    pub(super) fn directory(&self, dirfd: i32) -> Option<PathBuf> {
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
    pub(super) fn path(
        &self,
        dirfd: i32,
        pointer: u64,
        follow_last: bool,
    ) -> Result<PathBuf, Errno> {
        let path = read_c_string(&self.memory, pointer).ok_or(libc::EFAULT)?;
        self.path_of(dirfd, &path, follow_last)
    }

    /// [`CallingThread::path`] of a path already read from the agent (a socket
    /// address).
    pub(super) fn path_of(
        &self,
        dirfd: i32,
        path: &str,
        follow_last: bool,
    ) -> Result<PathBuf, Errno> {
        if path.is_empty() {
            return Err(libc::ENOENT);
        }
        let joined = if path.starts_with('/') {
            PathBuf::from(path)
        } else {
            // A base that is not a directory path (a socket, a deleted
            // directory) resolves nothing.
            let base = self.directory(dirfd).ok_or(libc::EBADF)?;
            if !base.is_absolute() {
                return Err(libc::ENOTDIR);
            }
            base.join(path)
        };
        let physical = paths::physical(&joined, follow_last, &self.caller)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES))?;
        if !(self.still_valid)() {
            return Err(libc::EACCES);
        }
        Ok(physical)
    }

    /// [`CallingThread::path`], and the canonical action `make` builds from it.
    pub(super) fn resolve(
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

/// The agent's open file behind its descriptor `fd`, taken into the
/// enforcer (`pidfd_getfd`): `ESRCH` if the caller is gone, `EBADF` if it
/// has no such descriptor.
pub(super) fn take(caller: &Caller, fd: i32) -> Result<OwnedFd, Errno> {
    let pid = caller
        .tgid()
        .and_then(|tgid| i32::try_from(tgid).ok())
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(libc::ESRCH)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .and_then(|pidfd| {
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        })
        .map_err(|_| libc::EBADF)
}

/// Whether the agent's descriptor `fd` is non-blocking and whether it is
/// closed on `exec`, from `/proc/<pid>/fdinfo` (`None`: no such
/// descriptor).
pub(super) fn descriptor_flags(pid: u32, fd: i32) -> Option<(bool, bool)> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())?;
    let has = |flag: i32| flags & flag.unsigned_abs() != 0;
    Some((has(libc::O_NONBLOCK), has(libc::O_CLOEXEC)))
}

/// The low 32 bits of a register, as the C `int` the kernel reads.
pub(super) fn low_int(arg: u64) -> Option<i32> {
    u32::try_from(arg & 0xffff_ffff)
        .ok()
        .map(|low| i32::from_ne_bytes(low.to_ne_bytes()))
}

/// The answer for an effect performed here: success (0) or its errno.
pub(super) fn done(result: std::io::Result<()>) -> Response {
    match result {
        Ok(()) => Response::Value(0),
        Err(e) => Response::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

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
