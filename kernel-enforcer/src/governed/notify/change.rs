//! Calls that change the file system: removals, directory creations,
//! renames, symbolic and hard links and truncation, each decided and then
//! performed by the enforcer on what was decided (metadata changes are in
//! the `metadata` module).

use super::call::{CallingThread, Governor, Response, done, low_int, read_c_string};
use kernel_core::{Action, CanonicalAction};
use rustix::fs::{Mode, OFlags};
use std::path::Path;

impl Governor {
    /// `unlink`, `rmdir`, `unlinkat`: a `FileDelete`, performed here.
    pub(super) fn remove(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
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
            Err(errno) => return Some(Response::Fail(errno)),
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
    /// directory's path, performed here. A path that already exists (a
    /// link too, dangling or not) fails with `EEXIST` without a decision,
    /// as the call would: nothing is created, and `stat` reveals as much.
    /// Tools that create a directory if it is missing (`mkdir -p`, Rust's
    /// `create_dir`) take `EEXIST` for success and a refusal for failure.
    pub(super) fn mkdir(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let (dirfd, path, mode) = match nr {
            libc::SYS_mkdir => (libc::AT_FDCWD, args[0], args[1]),
            _ => (low_int(args[0])?, args[1], args[2]),
        };
        let (canonical, target) =
            match agent.resolve(dirfd, path, false, Action::file_write_descriptor) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Response::Fail(errno)),
            };
        if std::fs::symlink_metadata(&target).is_ok() {
            // Nothing would be created: no change to decide.
            return Some(Response::Fail(libc::EEXIST));
        }
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
    pub(super) fn rename(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
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
            Err(errno) => return Some(Response::Fail(errno)),
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

    /// `symlink`, `symlinkat`: a `FileWrite` in [`WriteMode::Symlink`]
    /// mode of the link's path, its content the target as the agent wrote
    /// it; created here. Nothing is decided about the target: opening
    /// through the link is decided on where it leads.
    ///
    /// [`WriteMode::Symlink`]: kernel_core::WriteMode::Symlink
    pub(super) fn symlink(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let (target, dirfd, path) = match nr {
            libc::SYS_symlink => (args[0], libc::AT_FDCWD, args[1]),
            _ => (args[0], low_int(args[1])?, args[2]),
        };
        let Some(target) = read_c_string(&agent.memory, target) else {
            return Some(Response::Fail(libc::EFAULT));
        };
        let (canonical, link) =
            match agent.resolve(dirfd, path, false, |p| Action::file_symlink(p, &target)) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Response::Fail(errno)),
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
    pub(super) fn link(
        &self,
        agent: &CallingThread<'_>,
        nr: libc::c_long,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
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
            return Some(Response::Fail(libc::EINVAL));
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
            Err(errno) => return Some(Response::Fail(errno)),
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
    pub(super) fn truncate(
        &self,
        agent: &CallingThread<'_>,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let length = args[1];
        let (canonical, target) =
            match agent.resolve(libc::AT_FDCWD, args[0], true, Action::file_write_descriptor) {
                Ok(resolved) => resolved,
                Err(errno) => return Some(Response::Fail(errno)),
            };
        self.gate(vec![(canonical, &target, true)], decide, || {
            let truncated = self
                .broker
                .open(&target, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())
                .and_then(|file| file.set_len(length));
            done(truncated)
        })
    }

    /// Runs `operation` on the parent directory of `target` (opened
    /// without following symbolic links) and its last component.
    pub(super) fn in_parent(
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
}
