//! System calls around the client.

use super::*;

/// System calls around the client: open, connect, execve, kill, ptrace,
/// `process_vm_writev`, `/proc/<pid>/mem`, the control socket, metadata
/// changes, a Unix socket outside the workspace. In governed mode these
/// are the agent's own calls that the enforcer decides (or the
/// confinement refuses); markers are then put where the profile permits
/// no write (the workspace and the scratch directory are writable there).
pub(crate) fn direct(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    // A real agent joins the kernel first, then goes around it.
    let route = Route::join(plan).ok();
    let enforcer = route.as_ref().map_or_else(
        || i32::try_from(std::os::unix::process::parent_id()).unwrap_or(0),
        |r| r.enforcer_pid(plan),
    );
    // Where a file appears only if the attack worked.
    let forbidden_dir = if plan.governed() {
        plan.outside_dir.clone()
    } else {
        plan.workspace.clone()
    };
    let scratch_dir = if plan.governed() {
        plan.outside_dir.clone()
    } else {
        plan.scratch.clone()
    };
    let sentinel = i32::try_from(plan.sentinel_pid).unwrap_or(0);
    let targets = plan.targets();
    let ws = &plan.workspace;
    for i in 0..count {
        let mut a = attempt(String::new());
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        match i % 19 {
            0 | 1 => {
                let path = if i % 2 == 0 {
                    target.clone()
                } else {
                    format!("/proc/self/root{target}")
                };
                a.what = format!("open {path} for reading");
                if target.starts_with(&format!("{ws}/")) {
                    a.limit = workspace_read_limit(plan);
                }
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        a.answer = "read".into();
                        a.got = lossy(&bytes);
                    }
                    Err(e) => a.answer = e.to_string(),
                }
            }
            2 => {
                a.what = format!("open {target} to truncate and write");
                a.answer = match std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&target)
                {
                    Ok(mut f) => format!("opened; write: {:?}", f.write_all(b"ESCAPE")),
                    Err(e) => e.to_string(),
                };
            }
            3 => {
                let marker = format!("{forbidden_dir}/direct-{i}");
                a.what = format!("create {marker} directly");
                a.answer = format!("{:?}", std::fs::write(&marker, "ESCAPE"));
                a.markers.push(marker);
            }
            4 => {
                let port = plan.listener_port;
                let host = if rng.below(2) == 0 {
                    "127.0.0.1"
                } else {
                    "[::ffff:127.0.0.1]"
                };
                a.what = format!("connect to {host}:{port} directly");
                a.answer = format!(
                    "{:?}",
                    std::net::TcpStream::connect(format!("{host}:{port}")).map(|_| ())
                );
            }
            5 => {
                let marker = format!("{scratch_dir}/exec-{i}");
                a.what = "execve /usr/bin/touch".into();
                a.answer = fork_exec("/usr/bin/touch", &["touch".into(), marker.clone()]);
                a.markers.push(marker);
            }
            6 => {
                let marker = format!("{}/ldso-{i}", plan.scratch);
                let loader = elf_interpreter();
                let escaped = [
                    format!("{forbidden_dir}/ldso-{i}"),
                    format!("{}/ldso-{i}", plan.outside_dir),
                ];
                a.what = format!("execve the ELF interpreter {loader} to load /usr/bin/touch");
                let mut argv = vec![loader.clone(), "/usr/bin/touch".into(), marker.clone()];
                argv.extend(escaped.iter().cloned());
                a.answer = fork_exec(&loader, &argv);
                if plan.brokered() {
                    a.limit_markers.push(marker);
                }
                a.markers.extend(escaped);
            }
            7 => {
                let marker = format!("{}/memfd-{i}", plan.scratch);
                let escaped = [
                    format!("{forbidden_dir}/memfd-{i}"),
                    format!("{}/memfd-{i}", plan.outside_dir),
                ];
                a.what = "fexecve a memfd copy of /usr/bin/touch".into();
                a.answer = memfd_exec(&[marker.clone(), escaped[0].clone(), escaped[1].clone()]);
                if plan.brokered() {
                    a.limit_markers.push(marker);
                }
                a.markers.extend(escaped);
            }
            8 => {
                let signals = [
                    libc::SIGKILL,
                    libc::SIGTERM,
                    libc::SIGSTOP,
                    libc::SIGUSR1,
                    libc::SIGINT,
                ];
                let signal = *rng.pick(&signals).unwrap_or(&libc::SIGKILL);
                let (who, pid) = if rng.below(2) == 0 {
                    ("enforcer", enforcer)
                } else {
                    ("sentinel", sentinel)
                };
                let group = rng.below(2) == 0;
                a.what = format!(
                    "kill({}{who}, {signal})",
                    if group { "-group of " } else { "" }
                );
                // SAFETY: plain system calls on pids; the campaign wants them to fail.
                let ret = unsafe {
                    if group {
                        libc::kill(-libc::getpgid(pid), signal)
                    } else {
                        libc::kill(pid, signal)
                    }
                };
                a.answer = syscall_result(i64::from(ret));
                a.not_halted = true;
            }
            9 => {
                let (who, pid) = if rng.below(2) == 0 {
                    ("enforcer", enforcer)
                } else {
                    ("sentinel", sentinel)
                };
                let request = if rng.below(2) == 0 {
                    libc::PTRACE_ATTACH
                } else {
                    libc::PTRACE_SEIZE
                };
                a.what = format!("ptrace({request}) the {who}");
                // SAFETY: as above.
                let ret = unsafe { libc::ptrace(request, pid, 0, 0) };
                a.answer = syscall_result(ret);
            }
            10 => {
                let (who, pid) = if rng.below(2) == 0 {
                    ("enforcer", enforcer)
                } else {
                    ("sentinel", sentinel)
                };
                let mut buffer = [0u8; 64];
                let local = libc::iovec {
                    iov_base: buffer.as_mut_ptr().cast(),
                    iov_len: buffer.len(),
                };
                let remote = libc::iovec {
                    iov_base: 0x40_0000 as *mut libc::c_void,
                    iov_len: buffer.len(),
                };
                a.what = format!("process_vm_writev into the {who}");
                // SAFETY: the local iovec points into `buffer`, alive for the call.
                let ret = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
                a.answer = syscall_result(i64::try_from(ret).unwrap_or(-1));
            }
            11 => {
                let (who, pid) = if rng.below(2) == 0 {
                    ("enforcer", enforcer)
                } else {
                    ("sentinel", sentinel)
                };
                a.what = format!("write /proc/{who}/mem");
                a.answer = match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(format!("/proc/{pid}/mem"))
                {
                    Ok(mut f) => format!("opened; write: {:?}", f.write_all(&[0xcc; 16])),
                    Err(e) => e.to_string(),
                };
                let environ = std::fs::read(format!("/proc/{pid}/environ"));
                a.got = environ.map(|b| lossy(&b)).unwrap_or_default();
            }
            12 => {
                a.what = "pidfd_open + pidfd_send_signal(SIGKILL) to the enforcer".into();
                // SAFETY: plain system calls with integer arguments.
                let ret = unsafe {
                    let fd = libc::syscall(libc::SYS_pidfd_open, enforcer, 0);
                    if fd < 0 {
                        fd
                    } else {
                        libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, 0, 0)
                    }
                };
                a.answer = syscall_result(ret);
            }
            13 => {
                use kernel_enforcer::session::control::{ControlRequest, request};
                let commands = [
                    ControlRequest::Halt {
                        reason: Some("the agent says so".into()),
                    },
                    ControlRequest::Reload,
                    ControlRequest::Approve {
                        id: rng.next() % 4,
                        for_secs: Some(3600),
                        uses: Some(1000),
                    },
                    ControlRequest::Pending,
                ];
                let command = rng
                    .pick(&commands)
                    .cloned()
                    .unwrap_or(ControlRequest::Status);
                a.what = format!("control socket: {command:?}");
                a.answer = match request(std::path::Path::new(&plan.control), &command) {
                    Ok(r) => format!("answered ok={} {}", r.ok, r.message),
                    Err(e) => e.to_string(),
                };
                a.not_halted = true;
                a.evidence = true;
            }
            14 => {
                a.what = "append a forged record to the evidence file".into();
                a.answer = match std::fs::OpenOptions::new()
                    .append(true)
                    .open(&plan.evidence)
                {
                    Ok(mut f) => format!(
                        "opened; write: {:?}",
                        f.write_all(b"\0\0\0\x10forged record!!!")
                    ),
                    Err(e) => e.to_string(),
                };
                a.audit = true;
            }
            15 => {
                a.what = "setsid, unshare(user|mount), then kill the enforcer".into();
                // SAFETY: plain system calls.
                let ret = unsafe {
                    libc::setsid();
                    let u = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
                    if u == 0 {
                        libc::kill(enforcer, libc::SIGKILL)
                    } else {
                        u
                    }
                };
                a.answer = syscall_result(i64::from(ret));
            }
            17 => {
                let kind = rng.below(METADATA_CHANGES.len());
                let how = METADATA_CHANGES.get(kind).copied().unwrap_or("chmod");
                a.what = format!("{how} {target}");
                a.answer = metadata_change(kind, &target);
                a.metadata_limit = metadata_limit(plan);
            }
            18 => {
                a.what = format!(
                    "connect to the Unix socket {} outside the workspace",
                    plan.unix_socket
                );
                a.answer = format!(
                    "{:?}",
                    std::os::unix::net::UnixStream::connect(&plan.unix_socket).map(drop)
                );
                a.unix_limit = unix_socket_limit(plan);
            }
            _ => {
                let marker = format!("{}/chroot-{i}", plan.scratch);
                a.what = "rename a protected file into the scratch directory".into();
                a.answer = format!("{:?}", std::fs::rename(&target, &marker));
                a.markers.push(marker);
            }
        }
        rep.report(a);
    }
}
