//! Metadata changes: permission bits, owner, times and extended
//! attributes. Each is a `file_write` in mode `metadata` of the file it
//! changes. The change is read from the agent's memory and the file is
//! pinned (opened with `O_PATH`, by its resolved path without following
//! links, or from the agent's own descriptor) before the decision, which
//! is taken on the path of what was pinned; the enforcer then makes that
//! change through the pin. Nothing the agent rewrites or swaps after the
//! check changes which file is changed, or how.

use super::call::{
    CallingThread, Errno, Governor, Response, done, low_int, read_c_string, read_c_string_at_most,
};
use super::paths::{self, ProcEntry};
use kernel_core::{Action, CanonicalAction, WriteMode};
use rustix::fs::{Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// `setxattrat` and `removexattrat` (Linux 6.13), by number on x86_64.
pub(super) const SYS_SETXATTRAT: libc::c_long = 463;
pub(super) const SYS_REMOVEXATTRAT: libc::c_long = 466;
/// `file_setattr` (Linux 6.17): the file system's own attribute flags
/// (`chattr`'s), by path.
pub(super) const SYS_FILE_SETATTR: libc::c_long = 469;

/// Longest extended attribute name (the kernel's `XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value (the kernel's `XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;
/// `struct xattr_args` of `setxattrat`: value pointer, size, flags.
const XATTR_ARGS_SIZE: usize = 16;

/// The file a metadata call changes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// One of the agent's descriptors (`AT_FDCWD`: its working directory).
    Descriptor(i32),
    /// A path in the agent's memory, relative to `dirfd`; `follow`: a
    /// symbolic link in the last component is followed.
    Path {
        dirfd: i32,
        pointer: u64,
        follow: bool,
    },
}

/// The change a metadata call asks for.
#[derive(Debug)]
enum Change {
    Mode(Mode),
    Owner(Option<rustix::process::Uid>, Option<rustix::process::Gid>),
    Times(Timestamps),
    SetAttribute {
        name: String,
        value: Vec<u8>,
        flags: XattrFlags,
    },
    RemoveAttribute {
        name: String,
    },
}

impl Governor {
    /// `chmod`, `fchmod`, `fchmodat`, `fchmodat2`, `chown`, `lchown`,
    /// `fchown`, `fchownat`, `utimensat`, `utimes`, `futimesat`, `utime`,
    /// `setxattr`, `lsetxattr`, `fsetxattr`, `setxattrat`, `removexattr`,
    /// `lremovexattr`, `fremovexattr`, `removexattrat`: a `FileWrite` in
    /// [`WriteMode::Metadata`] mode of the file, made here through the
    /// pinned file. A file of the scratch directory needs no decision
    /// (the agent may write it anyway); `/proc` entries other than the
    /// agent's own descriptors are refused.
    pub(super) fn metadata(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let (target, change) = match call(&agent.memory, nr, args) {
            Ok(call) => call,
            Err(errno) => return Some(Response::Fail(errno)),
        };
        let pinned = match self.pin(agent, target) {
            Ok(pinned) => pinned,
            Err(errno) => return Some(Response::Fail(errno)),
        };
        let handle = format!("/proc/self/fd/{}", pinned.as_raw_fd());
        let target = std::fs::read_link(&handle).ok()?;
        if !target.is_absolute() {
            // A pipe, a socket or another file with no path.
            return None;
        }
        let canonical = CanonicalAction::new(
            Action::file_write_without_content(target.to_str()?, WriteMode::Metadata),
            None,
        )
        .ok()?;
        if !self.granted(&target, true) && !decide(canonical) {
            return None;
        }
        // Through the pin's magic link: the pinned file itself (a pinned
        // symbolic link is changed, not followed).
        let handle = handle.as_str();
        let changed = match change {
            Change::Mode(mode) => rustix::fs::chmod(handle, mode),
            Change::Owner(owner, group) => rustix::fs::chown(handle, owner, group),
            Change::Times(times) => rustix::fs::utimensat(
                rustix::fs::CWD,
                handle,
                &times,
                rustix::fs::AtFlags::empty(),
            ),
            Change::SetAttribute { name, value, flags } => {
                rustix::fs::setxattr(handle, name.as_str(), &value, flags)
            }
            Change::RemoveAttribute { name } => rustix::fs::removexattr(handle, name.as_str()),
        };
        Some(done(changed.map_err(std::io::Error::from)))
    }

    /// The file `target` names, opened with `O_PATH` without following
    /// any link the agent could swap: one of the agent's descriptors (its
    /// open file), or the physically resolved path.
    fn pin(&self, agent: &CallingThread<'_>, target: Target) -> Result<OwnedFd, Errno> {
        let (dirfd, pointer, follow) = match target {
            Target::Descriptor(fd) => return agent_file(agent, fd),
            Target::Path {
                dirfd,
                pointer,
                follow,
            } => (dirfd, pointer, follow),
        };
        let target = agent.path(dirfd, pointer, follow)?;
        match paths::proc_entry(&target, &agent.caller) {
            // `/proc/self/fd/N`: how libc changes the metadata of an
            // `O_PATH` descriptor.
            ProcEntry::Descriptor(fd) => agent_file(agent, fd),
            _ if target.starts_with("/proc") => Err(libc::EACCES),
            _ => self
                .broker
                .open(&target, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
                .map(OwnedFd::from)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES)),
        }
    }
}

/// The file of the agent's descriptor `fd` (its working directory for
/// `AT_FDCWD`), opened with `O_PATH`.
fn agent_file(agent: &CallingThread<'_>, fd: i32) -> Result<OwnedFd, Errno> {
    let link = if fd == libc::AT_FDCWD {
        format!("/proc/{}/cwd", agent.pid)
    } else {
        let tgid = agent.caller.tgid().ok_or(libc::ESRCH)?;
        format!("/proc/{tgid}/fd/{fd}")
    };
    rustix::fs::open(link.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        match e.raw_os_error() {
            // No such descriptor.
            libc::ENOENT => libc::EBADF,
            errno => errno,
        }
    })
}

/// Which file a metadata call changes and how, read from its arguments
/// and the agent's memory, with the kernel's errors for malformed ones.
fn call(
    memory: &std::fs::File,
    nr: libc::c_long,
    args: &[u64; 6],
) -> Result<(Target, Change), Errno> {
    let int = |arg: u64| low_int(arg).ok_or(libc::EINVAL);
    let path = |dirfd: i32, pointer: u64, flags: i32| {
        if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(libc::EINVAL);
        }
        let empty = flags & libc::AT_EMPTY_PATH != 0
            && pointer != 0
            && read_c_string(memory, pointer).is_some_and(|p| p.is_empty());
        Ok(if empty {
            Target::Descriptor(dirfd)
        } else {
            Target::Path {
                dirfd,
                pointer,
                follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
            }
        })
    };
    // A null path names the descriptor itself (`futimens`, `futimes`);
    // without one, there is nothing to name.
    let descriptor_or_path = |dirfd: i32, pointer: u64, flags: i32| match (pointer, dirfd) {
        (0, libc::AT_FDCWD) => Err(libc::EFAULT),
        (0, _) if flags != 0 => Err(libc::EINVAL),
        (0, _) => Ok(Target::Descriptor(dirfd)),
        _ => path(dirfd, pointer, flags),
    };
    let mode = |arg: u64| {
        Change::Mode(Mode::from_bits_truncate(
            u32::try_from(arg & 0o7777).unwrap_or(0),
        ))
    };
    let owner = |owner: u64, group: u64| {
        // -1 ("unchanged") is `None`.
        let id = |raw: u64| {
            u32::try_from(raw & 0xffff_ffff)
                .ok()
                .filter(|id| *id != u32::MAX)
        };
        Change::Owner(
            id(owner).map(rustix::process::Uid::from_raw),
            id(group).map(rustix::process::Gid::from_raw),
        )
    };
    let cwd = libc::AT_FDCWD;
    let nofollow = libc::AT_SYMLINK_NOFOLLOW;
    Ok(match nr {
        libc::SYS_chmod => (path(cwd, args[0], 0)?, mode(args[1])),
        libc::SYS_fchmod => (Target::Descriptor(int(args[0])?), mode(args[1])),
        libc::SYS_fchmodat => (path(int(args[0])?, args[1], 0)?, mode(args[2])),
        libc::SYS_fchmodat2 => (path(int(args[0])?, args[1], int(args[3])?)?, mode(args[2])),
        libc::SYS_chown => (path(cwd, args[0], 0)?, owner(args[1], args[2])),
        libc::SYS_lchown => (path(cwd, args[0], nofollow)?, owner(args[1], args[2])),
        libc::SYS_fchown => (Target::Descriptor(int(args[0])?), owner(args[1], args[2])),
        libc::SYS_fchownat => (
            path(int(args[0])?, args[1], int(args[4])?)?,
            owner(args[2], args[3]),
        ),
        libc::SYS_utimensat => (
            descriptor_or_path(int(args[0])?, args[1], int(args[3])?)?,
            Change::Times(timespecs(memory, args[2])?),
        ),
        libc::SYS_futimesat => (
            descriptor_or_path(int(args[0])?, args[1], 0)?,
            Change::Times(timevals(memory, args[2])?),
        ),
        libc::SYS_utimes => (
            path(cwd, args[0], 0)?,
            Change::Times(timevals(memory, args[1])?),
        ),
        libc::SYS_utime => (
            path(cwd, args[0], 0)?,
            Change::Times(utimbuf(memory, args[1])?),
        ),
        libc::SYS_setxattr | libc::SYS_lsetxattr => {
            let flags = if nr == libc::SYS_lsetxattr {
                nofollow
            } else {
                0
            };
            (
                path(cwd, args[0], flags)?,
                set_attribute(memory, args[1], args[2], args[3], args[4])?,
            )
        }
        libc::SYS_fsetxattr => (
            Target::Descriptor(int(args[0])?),
            set_attribute(memory, args[1], args[2], args[3], args[4])?,
        ),
        SYS_SETXATTRAT => {
            // setxattrat(dirfd, path, at_flags, name, struct xattr_args *, size)
            let size = usize::try_from(args[5]).map_err(|_| libc::E2BIG)?;
            if size < XATTR_ARGS_SIZE {
                return Err(libc::EINVAL);
            }
            if size > 4096 {
                return Err(libc::E2BIG);
            }
            let mut raw = vec![0u8; size];
            memory
                .read_exact_at(&mut raw, args[4])
                .map_err(|_| libc::EFAULT)?;
            if raw
                .get(XATTR_ARGS_SIZE..)
                .is_some_and(|rest| rest.iter().any(|b| *b != 0))
            {
                return Err(libc::E2BIG);
            }
            let u32_at = |at: usize| {
                raw.get(at..at + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u64::from(u32::from_ne_bytes(b)))
                    .ok_or(libc::EINVAL)
            };
            let value = raw
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_ne_bytes)
                .ok_or(libc::EINVAL)?;
            let (length, flags) = (u32_at(8)?, u32_at(12)?);
            (
                path(int(args[0])?, args[1], int(args[2])?)?,
                set_attribute(memory, args[3], value, length, flags)?,
            )
        }
        libc::SYS_removexattr | libc::SYS_lremovexattr => {
            let flags = if nr == libc::SYS_lremovexattr {
                nofollow
            } else {
                0
            };
            (
                path(cwd, args[0], flags)?,
                remove_attribute(memory, args[1])?,
            )
        }
        libc::SYS_fremovexattr => (
            Target::Descriptor(int(args[0])?),
            remove_attribute(memory, args[1])?,
        ),
        SYS_REMOVEXATTRAT => (
            path(int(args[0])?, args[1], int(args[2])?)?,
            remove_attribute(memory, args[3])?,
        ),
        _ => return Err(libc::ENOSYS),
    })
}

/// An extended attribute's name: 1 to 255 bytes.
fn attribute_name(memory: &std::fs::File, pointer: u64) -> Result<String, Errno> {
    match read_c_string_at_most(memory, pointer, XATTR_NAME_MAX + 1) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(libc::ERANGE),
    }
}

fn set_attribute(
    memory: &std::fs::File,
    name: u64,
    value: u64,
    size: u64,
    flags: u64,
) -> Result<Change, Errno> {
    let name = attribute_name(memory, name)?;
    let known = XattrFlags::CREATE | XattrFlags::REPLACE;
    let flags = u32::try_from(flags & 0xffff_ffff)
        .ok()
        .map(XattrFlags::from_bits_retain)
        .filter(|f| known.contains(*f))
        .ok_or(libc::EINVAL)?;
    let size = usize::try_from(size).map_err(|_| libc::E2BIG)?;
    if size > XATTR_SIZE_MAX {
        return Err(libc::E2BIG);
    }
    let mut bytes = vec![0u8; size];
    if size > 0 {
        memory
            .read_exact_at(&mut bytes, value)
            .map_err(|_| libc::EFAULT)?;
    }
    Ok(Change::SetAttribute {
        name,
        value: bytes,
        flags,
    })
}

fn remove_attribute(memory: &std::fs::File, name: u64) -> Result<Change, Errno> {
    Ok(Change::RemoveAttribute {
        name: attribute_name(memory, name)?,
    })
}

/// `N` native 64-bit words at `address`.
fn words<const N: usize>(memory: &std::fs::File, address: u64) -> Result<[i64; N], Errno> {
    let mut raw = vec![0u8; N * 8];
    memory
        .read_exact_at(&mut raw, address)
        .map_err(|_| libc::EFAULT)?;
    let mut out = [0i64; N];
    for (word, bytes) in out.iter_mut().zip(raw.chunks_exact(8)) {
        *word = i64::from_ne_bytes(<[u8; 8]>::try_from(bytes).map_err(|_| libc::EFAULT)?);
    }
    Ok(out)
}

/// Both times "now" (a null times pointer).
fn now() -> Timestamps {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    Timestamps {
        last_access: now,
        last_modification: now,
    }
}

/// `utimensat`'s two `struct timespec` (checked by the kernel when the
/// change is made: `UTIME_NOW` and `UTIME_OMIT` pass through).
fn timespecs(memory: &std::fs::File, address: u64) -> Result<Timestamps, Errno> {
    if address == 0 {
        return Ok(now());
    }
    let [a_sec, a_nsec, m_sec, m_nsec] = words::<4>(memory, address)?;
    Ok(Timestamps {
        last_access: Timespec {
            tv_sec: a_sec,
            tv_nsec: a_nsec,
        },
        last_modification: Timespec {
            tv_sec: m_sec,
            tv_nsec: m_nsec,
        },
    })
}

/// `utimes`' and `futimesat`'s two `struct timeval` (microseconds).
fn timevals(memory: &std::fs::File, address: u64) -> Result<Timestamps, Errno> {
    if address == 0 {
        return Ok(now());
    }
    let [a_sec, a_usec, m_sec, m_usec] = words::<4>(memory, address)?;
    let time = |sec: i64, usec: i64| {
        if (0..1_000_000).contains(&usec) {
            Ok(Timespec {
                tv_sec: sec,
                tv_nsec: usec * 1000,
            })
        } else {
            Err(libc::EINVAL)
        }
    };
    Ok(Timestamps {
        last_access: time(a_sec, a_usec)?,
        last_modification: time(m_sec, m_usec)?,
    })
}

/// `utime`'s `struct utimbuf` (whole seconds).
fn utimbuf(memory: &std::fs::File, address: u64) -> Result<Timestamps, Errno> {
    if address == 0 {
        return Ok(now());
    }
    let [access, modification] = words::<2>(memory, address)?;
    let time = |sec| Timespec {
        tv_sec: sec,
        tv_nsec: 0,
    };
    Ok(Timestamps {
        last_access: time(access),
        last_modification: time(modification),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    /// This process's memory, read as the enforcer reads the agent's.
    fn memory() -> std::fs::File {
        std::fs::File::open("/proc/self/mem").unwrap()
    }

    fn address<T: ?Sized>(value: &T) -> u64 {
        u64::try_from(std::ptr::from_ref(value).cast::<u8>().addr()).unwrap()
    }

    fn errno(nr: libc::c_long, args: [u64; 6]) -> Option<Errno> {
        call(&memory(), nr, &args).err()
    }

    #[test]
    fn each_form_names_its_file() {
        let path = c"f";
        let empty = c"";
        let fd = 7u64;
        let cases = [
            (libc::SYS_chmod, [address(path), 0o755, 0, 0, 0, 0], true),
            (libc::SYS_fchmod, [fd, 0o755, 0, 0, 0, 0], false),
            (libc::SYS_lchown, [address(path), 0, 0, 0, 0, 0], true),
            (libc::SYS_utimes, [address(path), 0, 0, 0, 0, 0], true),
            (libc::SYS_utime, [address(path), 0, 0, 0, 0, 0], true),
            // futimens: a null path names the descriptor.
            (libc::SYS_utimensat, [fd, 0, 0, 0, 0, 0], false),
            (libc::SYS_futimesat, [fd, 0, 0, 0, 0, 0], false),
            (
                libc::SYS_fchownat,
                [fd, address(empty), 0, 0, 0x1000, 0],
                false,
            ),
        ];
        for (nr, args, by_path) in cases {
            let (target, _) = call(&memory(), nr, &args).unwrap();
            assert_eq!(
                matches!(target, Target::Path { .. }),
                by_path,
                "{nr}: {target:?}"
            );
        }
        let (target, _) =
            call(&memory(), libc::SYS_lchown, &[address(path), 0, 0, 0, 0, 0]).unwrap();
        assert!(matches!(target, Target::Path { follow: false, .. }));
    }

    #[test]
    fn malformed_calls_get_the_kernels_errors() {
        let path = c"f";
        let name = c"user.k";
        let long = std::ffi::CString::new("u".repeat(300)).unwrap();
        let value = [0u8; 4];
        // Unknown flags.
        assert_eq!(
            errno(libc::SYS_fchmodat2, [3, address(path), 0o644, 0x8, 0, 0]),
            Some(libc::EINVAL)
        );
        // A null path without a descriptor; flags with a descriptor.
        assert_eq!(
            errno(
                libc::SYS_utimensat,
                [
                    u64::from(libc::AT_FDCWD.unsigned_abs()).wrapping_neg(),
                    0,
                    0,
                    0,
                    0,
                    0
                ]
            ),
            Some(libc::EFAULT)
        );
        assert_eq!(
            errno(libc::SYS_utimensat, [3, 0, 0, 0x100, 0, 0]),
            Some(libc::EINVAL)
        );
        // Microseconds out of range.
        let times = [0i64, 1_000_000, 0, 0];
        assert_eq!(
            errno(
                libc::SYS_utimes,
                [address(path), address(&times), 0, 0, 0, 0]
            ),
            Some(libc::EINVAL)
        );
        // Attribute names: empty or too long; flags; sizes.
        assert_eq!(
            errno(
                libc::SYS_setxattr,
                [address(path), address(c""), address(&value), 4, 0, 0]
            ),
            Some(libc::ERANGE)
        );
        assert_eq!(
            errno(
                libc::SYS_removexattr,
                [address(path), address(long.as_c_str()), 0, 0, 0, 0]
            ),
            Some(libc::ERANGE)
        );
        assert_eq!(
            errno(
                libc::SYS_setxattr,
                [address(path), address(name), address(&value), 4, 4, 0]
            ),
            Some(libc::EINVAL)
        );
        assert_eq!(
            errno(
                libc::SYS_setxattr,
                [address(path), address(name), address(&value), 65537, 0, 0]
            ),
            Some(libc::E2BIG)
        );
        // setxattrat's argument structure: too small, or non-zero beyond
        // what this kernel knows.
        let args = [address(&value), 4u64 | (1 << 32), 1];
        assert_eq!(
            errno(
                SYS_SETXATTRAT,
                [3, address(path), 0, address(name), address(&args), 8]
            ),
            Some(libc::EINVAL)
        );
        assert_eq!(
            errno(
                SYS_SETXATTRAT,
                [3, address(path), 0, address(name), address(&args), 24]
            ),
            Some(libc::E2BIG)
        );
    }

    #[test]
    fn the_change_is_read_once_as_the_agent_gave_it() {
        let path = c"f";
        let name = c"user.k";
        let value = *b"data";
        let args = [
            address(&value),
            4u64 | (u64::from(libc::XATTR_CREATE.unsigned_abs()) << 32),
        ];
        let (_, change) = call(
            &memory(),
            SYS_SETXATTRAT,
            &[3, address(path), 0x100, address(name), address(&args), 16],
        )
        .unwrap();
        match change {
            Change::SetAttribute { name, value, flags } => {
                assert_eq!(name, "user.k");
                assert_eq!(value, b"data");
                assert_eq!(flags, XattrFlags::CREATE);
            }
            other => panic!("{other:?}"),
        }
        let times = [5i64, 6];
        let (_, change) = call(
            &memory(),
            libc::SYS_utime,
            &[address(path), address(&times), 0, 0, 0, 0],
        )
        .unwrap();
        match change {
            Change::Times(times) => {
                assert_eq!(
                    (times.last_access.tv_sec, times.last_modification.tv_sec),
                    (5, 6)
                );
                assert_eq!(times.last_modification.tv_nsec, 0);
            }
            other => panic!("{other:?}"),
        }
        let (_, change) = call(&memory(), libc::SYS_fchown, &[3, 1000, u64::MAX, 0, 0, 0]).unwrap();
        match change {
            Change::Owner(owner, group) => {
                assert_eq!(owner.map(rustix::process::Uid::as_raw), Some(1000));
                assert_eq!(group, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
