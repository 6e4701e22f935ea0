//! Where a governed call's path really leads, and which pseudo-files an
//! agent may read without a decision.
//!
//! A path the agent passes is resolved here, **physically**: component by
//! component, following symbolic links the way the kernel would, with the
//! agent's `/proc/self` (not the enforcer's). The result has no symbolic
//! link and no `..` in it, so the decision is taken on the file the call
//! would reach, and the enforcer then opens exactly that path without
//! following any link (`RESOLVE_NO_SYMLINKS`): a link swapped in after the
//! resolution makes the open fail, it never redirects it. There is no
//! window between what was decided and what is opened.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The most symbolic links one resolution follows (the kernel's limit).
const MAX_LINKS: usize = 40;

/// The calling thread and its process, for `/proc/self` and
/// `/proc/thread-self`. The process is looked up (in `/proc/<tid>/status`)
/// only when a call needs it, once.
#[derive(Debug)]
pub(crate) struct Caller {
    /// The thread (the notification's `pid`).
    pub(crate) tid: u32,
    tgid: std::cell::OnceCell<Option<u32>>,
}

impl Caller {
    /// The caller of a notification from thread `tid`.
    pub(crate) fn new(tid: u32) -> Self {
        Self {
            tid,
            tgid: std::cell::OnceCell::new(),
        }
    }

    /// Its process (thread group), or `None` if the thread is gone.
    pub(crate) fn tgid(&self) -> Option<u32> {
        *self.tgid.get_or_init(|| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.tid)).ok()?;
            status
                .lines()
                .find_map(|line| line.strip_prefix("Tgid:"))?
                .trim()
                .parse()
                .ok()
        })
    }

    /// A caller whose process is already known (tests).
    #[cfg(test)]
    fn known(tid: u32, tgid: u32) -> Self {
        Self {
            tid,
            tgid: std::cell::OnceCell::from(Some(tgid)),
        }
    }
}

/// `path` (absolute) resolved physically: symbolic links followed (the last
/// component's only if `follow_last`), `.` and `..` applied to what the
/// links led to, `/proc/self` and `/proc/thread-self` replaced by the
/// caller's own entries. Inside `/proc/<pid>` nothing more is followed
/// (its links are the kernel's magic links, judged by [`proc_entry`]). A
/// last component that does not exist is kept (a file about to be
/// created); a missing directory on the way is `ENOENT`.
pub(crate) fn physical(
    path: &Path,
    follow_last: bool,
    caller: &Caller,
) -> std::io::Result<PathBuf> {
    let errno = std::io::Error::from_raw_os_error;
    if !path.is_absolute() {
        return Err(errno(libc::EINVAL));
    }
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    let mut resolved = PathBuf::from("/");
    let mut links = 0usize;
    loop {
        if let Some(directory) = own_directory_descriptor(&resolved, &pending, caller) {
            // `/proc/self/fd/N/name`: the name inside the directory the
            // caller's descriptor N is open on, as `openat(N, name)`
            // reaches it (runtimes such as Bun name files this way). The
            // rest resolves from where the descriptor leads, like a link.
            links += 1;
            if links > MAX_LINKS {
                return Err(errno(libc::ELOOP));
            }
            pending.truncate(pending.len().saturating_sub(2));
            resolved = PathBuf::from("/");
            let mut more = components(&directory?);
            more.reverse();
            pending.extend(more);
        }
        let Some(name) = pending.pop() else { break };
        if name == "." {
            continue;
        }
        if name == ".." {
            resolved.pop();
            continue;
        }
        if resolved == Path::new("/proc") && (name == "self" || name == "thread-self") {
            let tgid = caller.tgid().ok_or_else(|| errno(libc::ESRCH))?;
            resolved.push(tgid.to_string());
            if name == "thread-self" {
                resolved.push(format!("task/{}", caller.tid));
            }
            continue;
        }
        let candidate = resolved.join(&name);
        if own_directory_descriptor(&candidate, &pending, caller).is_some() {
            // Resolved at the top of the loop.
            resolved = candidate;
            continue;
        }
        if is_process_entry(&candidate) {
            // Lexically from here on: `/proc/<pid>/...` is judged as named.
            resolved = candidate;
            while let Some(name) = pending.pop() {
                match name.to_str() {
                    Some(".") => {}
                    Some("..") => {
                        resolved.pop();
                    }
                    _ => resolved.push(name),
                }
            }
            return Ok(resolved);
        }
        let last = pending.is_empty();
        if last && !follow_last {
            return Ok(candidate);
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(errno(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(meta) => {
                if !last && !meta.is_dir() {
                    return Err(errno(libc::ENOTDIR));
                }
                resolved = candidate;
            }
            Err(e) if last && e.kind() == std::io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// When `candidate` is the caller's own `/proc/<pid>` and the names still
/// `pending` (in reverse order) go on with `fd`, a descriptor number and at
/// least one more name: the directory that descriptor is open on, read
/// from its link (an error when it is no directory of the file tree: a
/// socket, a pipe, a deleted directory). `None` for every other path,
/// which is then judged as named.
fn own_directory_descriptor(
    candidate: &Path,
    pending: &[OsString],
    caller: &Caller,
) -> Option<std::io::Result<PathBuf>> {
    let [.., _more, fd, fd_dir] = pending else {
        return None;
    };
    let own = caller.tgid()?.to_string();
    let fd = fd.to_str()?;
    if candidate != Path::new("/proc").join(&own)
        || fd_dir != "fd"
        || fd.is_empty()
        || !fd.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let not_a_directory = || std::io::Error::from_raw_os_error(libc::ENOTDIR);
    Some(
        std::fs::read_link(candidate.join("fd").join(fd)).and_then(|target| {
            let text = target.to_str().ok_or_else(not_a_directory)?;
            if !target.is_absolute() || text.ends_with(" (deleted)") {
                return Err(not_a_directory());
            }
            Ok(target)
        }),
    )
}

/// The names in `path`, `.` and `..` kept as names.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::CurDir => Some(".".into()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Whether `path` is `/proc/<number>` or below it.
fn is_process_entry(path: &Path) -> bool {
    let mut parts = path.components().skip(1);
    parts.next() == Some(Component::Normal("proc".as_ref()))
        && parts
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// What an open of a path under `/proc/<pid>` is, for the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProcEntry {
    /// One of the caller's own read-only entries (granted without a
    /// decision; see [`OWN_PROCESS_ENTRIES`]).
    Own,
    /// The caller's own descriptor `fd` reopened (`/proc/self/fd/N`,
    /// `/dev/stdout`): judged by the descriptor's access mode.
    Descriptor(i32),
    /// Anything else (another process, `mem`, writes): refused.
    Refused,
}

/// Entries of its own process an agent may read without a decision:
/// what language runtimes read at start-up about themselves (memory map,
/// limits, status, control group, command line). `mem`, `environ` of other
/// processes, and every write are not among them.
pub const OWN_PROCESS_ENTRIES: &[&str] = &[
    "auxv",
    "cgroup",
    "cmdline",
    "comm",
    "environ",
    "fd",
    "fdinfo",
    "io",
    "limits",
    "maps",
    "mountinfo",
    "mounts",
    "oom_score_adj",
    "sched",
    "smaps",
    "smaps_rollup",
    "stat",
    "statm",
    "status",
    "task",
];

/// Entries under a thread's `task/<tid>` an agent may read.
const OWN_THREAD_ENTRIES: &[&str] = &["comm", "stat", "statm", "status", "children"];

/// Judges `path` (a physical path under `/proc/<pid>`) for `caller`.
pub(crate) fn proc_entry(path: &Path, caller: &Caller) -> ProcEntry {
    let parts: Vec<&str> = path
        .components()
        .skip(2)
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let Some(own) = caller.tgid().map(|tgid| tgid.to_string()) else {
        return ProcEntry::Refused;
    };
    match parts.as_slice() {
        [pid] if *pid == own => ProcEntry::Own,
        [pid, "fd", fd] if *pid == own => {
            fd.parse().map_or(ProcEntry::Refused, ProcEntry::Descriptor)
        }
        [pid, "fdinfo", _] if *pid == own => ProcEntry::Own,
        [pid, "task", _tid] if *pid == own => ProcEntry::Own,
        [pid, "task", _tid, entry] if *pid == own && OWN_THREAD_ENTRIES.contains(entry) => {
            ProcEntry::Own
        }
        [pid, entry] if *pid == own && OWN_PROCESS_ENTRIES.contains(entry) => ProcEntry::Own,
        _ => ProcEntry::Refused,
    }
}

/// System pseudo-files any process may read without a decision: facts
/// about the machine that language runtimes and build tools read (memory,
/// processors, mounted file system types, kernel version, memory
/// settings, control-group limits). Each is read-only information about
/// the system, not about another process or a user's files.
pub const SYSTEM_PSEUDO_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/filesystems",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/mounts",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/version",
    "/proc/sys/fs/file-max",
    "/proc/sys/fs/nr_open",
    "/proc/sys/fs/pipe-max-size",
    "/proc/sys/kernel/cap_last_cap",
    "/proc/sys/kernel/ngroups_max",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/ostype",
    "/proc/sys/kernel/pid_max",
    "/proc/sys/kernel/threads-max",
    "/proc/sys/kernel/version",
    "/proc/sys/net/core/somaxconn",
    "/proc/sys/vm/overcommit_memory",
];

/// Trees of system pseudo-files any process may read without a decision
/// (the processors and memory nodes, transparent huge pages, control-group
/// limits).
pub const SYSTEM_PSEUDO_TREES: &[&str] = &[
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
    "/sys/fs/cgroup",
    "/sys/kernel/mm/transparent_hugepage",
];

/// Whether `path` (physical) is one of the system pseudo-files above.
pub(crate) fn is_system_pseudo_file(path: &Path) -> bool {
    SYSTEM_PSEUDO_FILES
        .iter()
        .any(|file| path == Path::new(file))
        || SYSTEM_PSEUDO_TREES
            .iter()
            .any(|tree| path.starts_with(tree))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn me() -> Caller {
        Caller::new(std::process::id())
    }

    #[test]
    fn links_are_followed_where_they_lead() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink("a/b", root.join("short")).unwrap();
        std::os::unix::fs::symlink(root.join("a/b/file"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let me = me();
        let resolve = |p: &str, follow| physical(&root.join(p), follow, &me);
        assert_eq!(resolve("short/file", true).unwrap(), root.join("a/b/file"));
        assert_eq!(resolve("abs", true).unwrap(), root.join("a/b/file"));
        // Not following the last link: the link itself.
        assert_eq!(resolve("abs", false).unwrap(), root.join("abs"));
        // `..` applies to where the link led, as in the kernel.
        assert_eq!(
            resolve("short/../b/file", true).unwrap(),
            root.join("a/b/file")
        );
        // A file to be created; a missing directory on the way.
        assert_eq!(resolve("short/new", true).unwrap(), root.join("a/b/new"));
        assert_eq!(
            resolve("missing/new", true).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            resolve("a/b/file/x", true).unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            resolve("loop", true).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn proc_self_is_the_callers_not_the_enforcers() {
        let caller = &Caller::known(4_000_001, 4_000_000);
        assert_eq!(
            physical(Path::new("/proc/self/maps"), true, caller).unwrap(),
            Path::new("/proc/4000000/maps")
        );
        assert_eq!(
            physical(Path::new("/proc/thread-self/comm"), true, caller).unwrap(),
            Path::new("/proc/4000000/task/4000001/comm")
        );
        // The standard streams lead to the caller's descriptors.
        assert_eq!(
            physical(Path::new("/dev/stdout"), true, caller).unwrap(),
            Path::new("/proc/4000000/fd/1")
        );
        let judge = |p: &str| proc_entry(Path::new(p), caller);
        assert_eq!(judge("/proc/4000000/maps"), ProcEntry::Own);
        assert_eq!(judge("/proc/4000000/fd/1"), ProcEntry::Descriptor(1));
        assert_eq!(judge("/proc/4000000/task/4000001/comm"), ProcEntry::Own);
        // Another process, or memory: never.
        assert_eq!(judge("/proc/1/maps"), ProcEntry::Refused);
        assert_eq!(judge("/proc/4000000/mem"), ProcEntry::Refused);
        assert_eq!(judge("/proc/4000000/root"), ProcEntry::Refused);
        assert_eq!(judge("/proc/4000000/cwd"), ProcEntry::Refused);
    }

    #[test]
    fn a_name_under_an_own_directory_descriptor_is_the_name_in_that_directory() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), "x").unwrap();
        let directory = std::fs::File::open(root.join("sub")).unwrap();
        let file = std::fs::File::open(root.join("sub/file")).unwrap();
        let me = me();
        let resolve = |p: String| physical(Path::new(&p), true, &me);
        let fd = directory.as_raw_fd();
        assert_eq!(
            resolve(format!("/proc/self/fd/{fd}/new")).unwrap(),
            root.join("sub/new")
        );
        assert_eq!(
            resolve(format!("/proc/{}/fd/{fd}/../sub/file", std::process::id())).unwrap(),
            root.join("sub/file")
        );
        // The descriptor itself is still judged as a descriptor.
        assert_eq!(
            resolve(format!("/proc/self/fd/{fd}")).unwrap(),
            Path::new("/proc")
                .join(std::process::id().to_string())
                .join(format!("fd/{fd}"))
        );
        // A descriptor of a file is no directory; another process's
        // descriptors are judged as named (and refused by `proc_entry`).
        assert_eq!(
            resolve(format!("/proc/self/fd/{}/x", file.as_raw_fd()))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            resolve(format!("/proc/1/fd/{fd}/x")).unwrap(),
            Path::new(&format!("/proc/1/fd/{fd}/x"))
        );
    }

    #[test]
    fn only_listed_system_pseudo_files_are_granted() {
        assert!(is_system_pseudo_file(Path::new("/proc/meminfo")));
        assert!(is_system_pseudo_file(Path::new(
            "/sys/devices/system/cpu/online"
        )));
        assert!(!is_system_pseudo_file(Path::new("/proc/kcore")));
        assert!(!is_system_pseudo_file(Path::new(
            "/proc/sys/kernel/core_pattern"
        )));
        assert!(!is_system_pseudo_file(Path::new("/sys/devices/system")));
    }
}
