//! Where the closed segments of an evidence log live, and the file system
//! steps of a rotation.
//!
//! The log's path (`LOG`) always names its active segment, the one the
//! enforcer appends to. A closed segment is moved into the directory
//! `LOG.segments` beside it, named after the log and the index of its first
//! record: `LOG.segments/evidence.log.00000000000000001000` holds records
//! 1000 onwards. Twenty digits, so that the names sort as the segments
//! follow each other. While a rotation runs, the new segment is prepared as
//! `LOG.segments/.next`.
//!
//! A rotation never leaves the log without its active segment, and never
//! gives the log's name to a file that does not begin with its checkpoint:
//!
//! 1. the new segment is written whole to `.next` (its first record, a
//!    checkpoint of every record before it), synced and locked;
//! 2. the active segment gets a second name in the directory, its closed
//!    name (a hard link), and the directory is synced;
//! 3. `.next` is renamed over `LOG` (atomic: `LOG` names the old segment
//!    until it names the new one), and both directories are synced.
//!
//! A crash before step 2 leaves a stale `.next`; between 2 and 3, a closed
//! segment that is the same file as `LOG`. Opening the log undoes either
//! (the active segment still holds every record), and the rotation happens
//! again at the next commit.

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The name of the new segment while a rotation prepares it.
const NEXT: &str = ".next";

/// The directory of `log`'s closed segments: its name with `.segments`
/// appended.
pub(crate) fn directory_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".segments");
    PathBuf::from(name)
}

/// The name, in its directory, of the closed segment of `log` whose first
/// record is `first`.
pub(crate) fn closed_name(log: &Path, first: u64) -> OsString {
    let mut name = log.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{first:020}"));
    name
}

/// The first record of the closed segment of `log` called `name`, if that
/// is the name of one.
fn parse_closed_name(log: &Path, name: &OsStr) -> Option<u64> {
    let stem = log.file_name()?.as_bytes();
    let digits = name
        .as_bytes()
        .strip_prefix(stem)?
        .strip_prefix(b".")
        .filter(|d| d.len() == 20 && d.iter().all(u8::is_ascii_digit))?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A closed segment: where its first record is, and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closed {
    /// The index of its first record, by its name.
    pub(crate) first: u64,
    /// Its path.
    pub(crate) path: PathBuf,
}

/// The closed segments of `log`, by their names, oldest first. None when
/// its directory does not exist; names that are not those of its segments
/// are left out.
pub(crate) fn closed_segments(log: &Path) -> std::io::Result<Vec<Closed>> {
    let dir = directory_for(log);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut closed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(first) = parse_closed_name(log, &entry.file_name()) {
            closed.push(Closed {
                first,
                path: entry.path(),
            });
        }
    }
    closed.sort_by_key(|c| c.first);
    Ok(closed)
}

/// The directory of a log's closed segments, opened without following a
/// symbolic link, and checked to be a directory of this user that no one
/// else may write.
#[derive(Debug)]
pub(crate) struct SegmentDir {
    fd: OwnedFd,
}

impl SegmentDir {
    /// Opens the directory of `log`'s segments; `None` if there is none.
    pub(crate) fn open(log: &Path) -> std::io::Result<Option<Self>> {
        let path = directory_for(log);
        let fd = match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "the segments directory `{}` cannot be opened as a directory: {e}",
                    path.display()
                )));
            }
        };
        let stat = rustix::fs::fstat(&fd)?;
        if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "the segments directory `{}` is not this user's, or others may write to it",
                path.display()
            )));
        }
        Ok(Some(Self { fd }))
    }

    /// Opens the directory of `log`'s segments, creating it (mode 0700,
    /// durably) if missing.
    pub(crate) fn create(log: &Path) -> std::io::Result<Self> {
        if let Some(dir) = Self::open(log)? {
            return Ok(dir);
        }
        let path = directory_for(log);
        match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        sync_parent(&path)?;
        Self::open(log)?.ok_or_else(|| {
            std::io::Error::other(format!(
                "the segments directory `{}` disappeared as it was created",
                path.display()
            ))
        })
    }

    /// Syncs the directory's entries.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Whether the entry `name` is the file `file` (the same inode).
    pub(crate) fn is(&self, name: &OsStr, file: &File) -> std::io::Result<bool> {
        let theirs = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let ours = rustix::fs::fstat(file)?;
        Ok(theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
    }

    /// Removes the entry `name`.
    pub(crate) fn remove(&self, name: &OsStr) -> std::io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes a new segment left by an interrupted rotation; whether
    /// there was one.
    pub(crate) fn remove_next(&self) -> std::io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, NEXT, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Step 1: writes `bytes` as the whole new segment, syncs it and locks
    /// it (before it gets the log's name, so that the log's name never
    /// names an unlocked file). Returns it, open for appending.
    pub(crate) fn write_next(&self, bytes: &[u8]) -> std::io::Result<File> {
        use std::io::Write as _;
        self.remove_next()?;
        let fd = rustix::fs::openat(
            &self.fd,
            NEXT,
            OFlags::RDWR
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        file.sync_all()?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
        Ok(file)
    }

    /// Step 2: gives the active segment `active` its closed name `name`
    /// (a second name for the same file), durably.
    pub(crate) fn link_closed(&self, active: &Path, name: &OsStr) -> std::io::Result<()> {
        rustix::fs::linkat(rustix::fs::CWD, active, &self.fd, name, AtFlags::empty())?;
        self.sync()
    }

    /// Step 3: the new segment takes the name `active`, durably.
    pub(crate) fn rename_next_over(&self, active: &Path) -> std::io::Result<()> {
        rustix::fs::renameat(&self.fd, NEXT, rustix::fs::CWD, active)?;
        sync_parent(active)?;
        self.sync()
    }
}

/// Syncs the directory holding `path`, so that an entry created, renamed
/// or removed there survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn closed_names_sort_as_the_segments_follow_each_other() {
        let log = Path::new("/state/evidence.log");
        assert_eq!(
            directory_for(log),
            PathBuf::from("/state/evidence.log.segments")
        );
        let names: Vec<OsString> = [0, 9, 10, 1000, u64::MAX]
            .iter()
            .map(|&first| closed_name(log, first))
            .collect();
        assert_eq!(
            names[3],
            OsString::from("evidence.log.00000000000000001000")
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        for (name, first) in names.iter().zip([0, 9, 10, 1000, u64::MAX]) {
            assert_eq!(parse_closed_name(log, name), Some(first));
        }
        for other in [
            ".next",
            "evidence.log",
            "evidence.log.1000",
            "other.log.00000000000000001000",
            "evidence.log.0000000000000000100a",
            "evidence.log.000000000000000010000",
        ] {
            assert_eq!(parse_closed_name(log, OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn the_directory_must_be_a_private_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("evidence.log");
        assert!(SegmentDir::open(&log).unwrap().is_none());
        let segments = SegmentDir::create(&log).unwrap();
        let mode = std::fs::metadata(directory_for(&log))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(segments);
        std::fs::set_permissions(directory_for(&log), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert!(SegmentDir::open(&log).is_err(), "writable by others");
        std::fs::remove_dir(directory_for(&log)).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, directory_for(&log)).unwrap();
        assert!(SegmentDir::open(&log).is_err(), "a symbolic link");
        assert!(SegmentDir::create(&log).is_err(), "a symbolic link");
    }
}
