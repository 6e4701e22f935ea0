//! Raw system calls the attacks share.

pub(super) fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

pub(super) fn syscall_result(ret: i64) -> String {
    if ret >= 0 {
        format!("returned {ret}")
    } else {
        format!("refused: {}", errno())
    }
}

pub(super) fn c_path(path: &str) -> std::ffi::CString {
    std::ffi::CString::new(path.replace('\0', "")).unwrap_or_default()
}

/// Runs `argv` with `execve` in a forked child; returns how it went.
pub(super) fn fork_exec(program: &str, argv: &[String]) -> String {
    let program = c_path(program);
    let args: Vec<std::ffi::CString> = argv.iter().map(|a| c_path(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls execve and _exit, which are
    // async-signal-safe, so other threads this process may have at the
    // fork (several attack classes start threads) cannot leave it blocked on
    // a lock; every pointer points into vectors built before the fork and
    // alive until after the wait.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::execve(program.as_ptr(), ptrs.as_ptr(), env.as_ptr());
            libc::_exit(100 + *libc::__errno_location());
        }
        if pid < 0 {
            return format!("fork refused: {}", errno());
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) >= 100 {
            format!("execve refused (errno {})", libc::WEXITSTATUS(status) - 100)
        } else {
            format!("child ended with status {status}")
        }
    }
}

/// Runs `/usr/bin/touch MARKERS...` from a memfd copy with `fexecve`.
pub(super) fn memfd_exec(markers: &[String]) -> String {
    let Ok(touch) = std::fs::read("/usr/bin/touch") else {
        return "cannot read /usr/bin/touch".into();
    };
    let name = c_path("touch");
    // SAFETY: plain system calls on a descriptor this function owns; the
    // buffer outlives the write.
    unsafe {
        let fd = libc::memfd_create(name.as_ptr(), 0);
        if fd < 0 {
            return format!("memfd_create refused: {}", errno());
        }
        let written = libc::write(fd, touch.as_ptr().cast(), touch.len());
        if written < 0 {
            return format!("write refused: {}", errno());
        }
        let markers: Vec<std::ffi::CString> = markers.iter().map(|m| c_path(m)).collect();
        let mut argv: Vec<*const libc::c_char> = vec![name.as_ptr()];
        argv.extend(markers.iter().map(|m| m.as_ptr()));
        argv.push(std::ptr::null());
        let env: [*const libc::c_char; 1] = [std::ptr::null()];
        let pid = libc::fork();
        if pid == 0 {
            libc::fexecve(fd, argv.as_ptr(), env.as_ptr());
            libc::_exit(100 + *libc::__errno_location());
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::close(fd);
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) >= 100 {
            format!(
                "fexecve refused (errno {})",
                libc::WEXITSTATUS(status) - 100
            )
        } else {
            format!("child ended with status {status}")
        }
    }
}

pub(super) fn elf_interpreter() -> String {
    [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux-aarch64.so.1",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map_or_else(|| "/lib64/ld-linux-x86-64.so.2".into(), |p| (*p).to_owned())
}

/// The metadata changes [`metadata_change`] makes, by index.
pub(super) const METADATA_CHANGES: [&str; 7] = [
    "chmod 0666",
    "chown 65534:65534",
    "utimensat (times to 0)",
    "setxattr",
    "fchmod of an O_PATH descriptor (fchmodat, AT_EMPTY_PATH)",
    "chmod through /proc/self/root",
    "fchmodat2 (raw system call)",
];

/// Changes the metadata of `path` the way [`METADATA_CHANGES`] names by
/// `kind`; returns how it went.
pub(super) fn metadata_change(kind: usize, path: &str) -> String {
    let c = c_path(path);
    let via_root = c_path(&format!("/proc/self/root{path}"));
    let xattr = c_path(crate::world::CAMPAIGN_XATTR);
    let empty = c_path("");
    // SAFETY: plain system calls on NUL-terminated strings alive for the
    // call; the timespec array lives on the stack for the call.
    let ret: i64 = unsafe {
        match kind {
            0 => i64::from(libc::chmod(c.as_ptr(), 0o666)),
            1 => i64::from(libc::chown(c.as_ptr(), 65534, 65534)),
            2 => {
                let times = [libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }; 2];
                i64::from(libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    times.as_ptr(),
                    0,
                ))
            }
            3 => i64::from(libc::setxattr(
                c.as_ptr(),
                xattr.as_ptr(),
                b"x".as_ptr().cast(),
                1,
                0,
            )),
            4 => {
                let fd = libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                if fd < 0 {
                    i64::from(fd)
                } else {
                    let r = libc::fchmodat(fd, empty.as_ptr(), 0o666, libc::AT_EMPTY_PATH);
                    libc::close(fd);
                    i64::from(r)
                }
            }
            5 => i64::from(libc::chmod(via_root.as_ptr(), 0o666)),
            _ => libc::syscall(452, libc::AT_FDCWD, c.as_ptr(), 0o666, 0),
        }
    };
    syscall_result(ret)
}
