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
    // SAFETY: fork in a single-threaded moment of this process; the child
    // only calls execve and _exit, which are async-signal-safe; every
    // pointer points into vectors alive until after the wait.
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
