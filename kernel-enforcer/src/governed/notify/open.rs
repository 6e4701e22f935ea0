//! Opens: every one made by the enforcer on the resolved path and handed
//! over, decided unless granted; the agent's own `/proc` entries, its own
//! descriptors reopened, and the system pseudo-files.

use super::call::{CallingThread, Governor, OpenCall, Response, take};
use super::paths::{self, Caller, ProcEntry};
use kernel_core::{Action, CanonicalAction};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

impl Governor {
    /// `open`, `openat`, `openat2`, `creat`. The path is resolved
    /// physically, then: the agent's own `/proc` entries and the system
    /// pseudo-files are opened without a decision (read-only); so are the
    /// trees Landlock grants the agent; a read of a file that does not
    /// exist fails with `ENOENT` without a decision (nothing is accessed);
    /// everything else is decided and recorded first. Every open is made
    /// **here**, on the resolved path, and the descriptor handed over:
    /// never `CONTINUE`, so nothing the agent rewrites after the check is
    /// ever opened.
    pub(super) fn open_call(
        &self,
        agent: &CallingThread<'_>,
        data: &libc::seccomp_data,
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let call = OpenCall::of(data, &agent.memory)?;
        if call.resolve != 0 {
            // `RESOLVE_BENEATH` and the like are not implemented here:
            // the caller falls back to resolving the path itself.
            return Some(Response::Fail(libc::ENOSYS));
        }
        let writes = call.writes();
        let target = match agent.path(call.dirfd, call.path, call.follows_last_link()) {
            Ok(target) => target,
            Err(errno) => return Some(Response::Fail(errno)),
        };
        if target.starts_with("/proc") {
            return Some(match paths::proc_entry(&target, &agent.caller) {
                ProcEntry::Own if !writes => open_pseudo(&target, &call),
                ProcEntry::Descriptor(fd) => reopen(&agent.caller, fd, &call),
                _ if !writes && paths::is_system_pseudo_file(&target) => {
                    open_pseudo(&target, &call)
                }
                _ => Response::Fail(libc::EACCES),
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
            return Some(Response::Fail(libc::ENOENT));
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

    /// Opens `target` (a physical path) for the agent, with the flags it
    /// asked for (those that make sense for a descriptor handed over),
    /// never following a symbolic link. An `O_PATH` open gets a read-only
    /// descriptor instead (the kernel cannot hand over `O_PATH`
    /// descriptors; it was decided as a read). The enforcer's own open
    /// never blocks (a FIFO without a writer): it is made non-blocking and
    /// given back in the mode the agent asked for.
    pub(super) fn open(&self, target: &Path, call: &OpenCall) -> Response {
        let (flags, cloexec) = handed_over_flags(call);
        // The mode only counts when a file is created: `open(2)` ignores
        // whatever else is in that register (runtimes that make the system
        // call themselves, such as Bun, leave values there), but `openat2`
        // refuses a mode without `O_CREAT` with `EINVAL`.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_bits_truncate(u32::try_from(call.mode & 0o777).unwrap_or(0o600))
                & !Mode::from_bits_truncate(0o022)
        } else {
            Mode::empty()
        };
        let opened = self
            .broker
            .open(target, flags | OFlags::NONBLOCK, mode)
            .and_then(|file| restore_blocking(file, flags));
        match opened {
            Ok(file) => Response::Inject {
                fd: OwnedFd::from(file),
                cloexec,
            },
            Err(e) => Response::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
        }
    }
}

/// The flags of the agent's open that the enforcer's open keeps, and
/// whether the agent asked for `O_CLOEXEC`.
pub(super) fn handed_over_flags(call: &OpenCall) -> (OFlags, bool) {
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
pub(super) fn restore_blocking(
    file: std::fs::File,
    flags: OFlags,
) -> std::io::Result<std::fs::File> {
    if !flags.contains(OFlags::NONBLOCK) {
        let now = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, now - OFlags::NONBLOCK)?;
    }
    Ok(file)
}

/// Opens one of the pseudo-files granted without a decision (the agent's
/// own `/proc` entries, the system's listed ones), read-only.
pub(super) fn open_pseudo(target: &Path, call: &OpenCall) -> Response {
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
        Ok(fd) => Response::Inject { fd, cloexec },
        Err(e) => Response::Fail(e.raw_os_error()),
    }
}

/// Reopens the caller's own descriptor `fd` (`/proc/self/fd/N`,
/// `/dev/stdout`): allowed without a decision when it asks for no more
/// access than the descriptor already has (reading only if it reads,
/// writing only if it writes; never an `O_PATH` descriptor), so it
/// reaches nothing the agent could not already reach through `fd`.
pub(super) fn reopen(caller: &Caller, fd: i32, call: &OpenCall) -> Response {
    // The agent's open file itself, taken once: what is checked is what
    // is reopened, whatever the agent does to its descriptor table
    // meanwhile.
    let taken = match take(caller, fd) {
        Ok(taken) => taken,
        Err(errno) => return Response::Fail(errno),
    };
    let Ok(held) = rustix::fs::fcntl_getfl(&taken) else {
        return Response::Fail(libc::EBADF);
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
        return Response::Fail(libc::EACCES);
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
        Ok(file) => Response::Inject {
            fd: OwnedFd::from(file),
            cloexec,
        },
        Err(e) => Response::Fail(e.raw_os_error().unwrap_or(libc::EACCES)),
    }
}
