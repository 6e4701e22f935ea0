//! The only path: an agent confined by `kernel-enforcer run` tries to act
//! around the kernel, and each attempt fails at the OS level with the
//! effect verifiably absent; the same actions asked through the kernel are
//! decided by policy, and the allowed ones happen (performed by the
//! broker).
//!
//! This test binary is also the agent: run with `KERNEL_PROBE=<attack>`,
//! it performs that attack from inside the confinement and prints what it
//! observed. The harness (no libtest: `harness = false`) starts the real
//! enforcer in supervised mode around it and judges by the world: file
//! contents, a loopback listener's accept count, the enforcer's liveness,
//! the evidence.
#![allow(
    unsafe_code,
    clippy::undocumented_unsafe_blocks,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test harness making raw system calls on purpose"
)]

use kernel_testkit::{Fixture, ended, enforcer, fixture, holds_within};
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

const POLICY: &str = r#"
@id("read-workspace")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
@id("write-workspace")
permit (principal, action in [Action::"file_write", Action::"file_delete"], resource in Workspace::"root");
@id("tools")
permit (principal, action == Action::"exec", resource)
when { ["touch", "env", "cat"].contains(resource.name) && context.cwd_in_workspace };
@id("no-forbidden-arguments")
forbid (principal, action == Action::"exec", resource) when { context.args.contains("FORBIDDEN") };
@id("no-secret")
forbid (principal, action == Action::"file_read", resource) when { resource.name == "secret.txt" };
@id("loopback")
permit (principal, action == Action::"net_connect", resource == Host::"127.0.0.1");
@id("local-http-get")
permit (principal, action == Action::"http", resource == Host::"127.0.0.1")
when { context.method == "GET" && context.scheme == "http" };
"#;

// ---------------------------------------------------------------- probe side

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Prints `name: blocked (...)` or `name: SUCCEEDED`.
fn report(name: &str, result: Result<String, String>) {
    match result {
        Ok(what) => println!("{name}: SUCCEEDED {what}"),
        Err(why) => println!("{name}: blocked ({why})"),
    }
}

fn io<T>(result: std::io::Result<T>) -> Result<String, String> {
    result.map(|_| String::new()).map_err(|e| e.to_string())
}

fn probe(attack: &str) {
    let ws = std::env::var("PROBE_WS").unwrap();
    let enforcer = i32::try_from(std::os::unix::process::parent_id()).unwrap();
    match attack {
        "direct" => {
            // A real agent: joined to the kernel, then trying to go around it.
            let _kernel =
                kernel_client::Kernel::connect_from_env(kernel_client::ClientConfig::default())
                    .unwrap();
            report(
                "write-workspace",
                io(std::fs::write(format!("{ws}/victim.txt"), "pwned")),
            );
            for asset in std::env::var("PROBE_ASSETS").unwrap().split(':') {
                report(
                    &format!("read {asset}"),
                    std::fs::read(asset)
                        .map(|b| format!("{} bytes", b.len()))
                        .map_err(|e| e.to_string()),
                );
            }
            // The operator's control socket: halting is harmless to try,
            // approving or reloading would not be.
            let control = format!("{}.control", std::env::var("PROBE_EVIDENCE").unwrap());
            report(
                "control-socket",
                kernel_enforcer::session::control::request(
                    std::path::Path::new(&control),
                    &kernel_enforcer::session::control::ControlRequest::Halt {
                        reason: Some("the agent says so".into()),
                    },
                )
                .map(|r| format!("ok={} {}", r.ok, r.message))
                .map_err(|e| e.to_string()),
            );
            // A device node in the scratch directory (where the agent may
            // write) would name a disk or memory around every rule.
            let scratch = std::env::var("AGENT_KERNEL_SCRATCH").unwrap();
            let node = std::ffi::CString::new(format!("{scratch}/device")).unwrap();
            // SAFETY: a plain system call on a valid C string; the test
            // wants it to fail.
            let made =
                unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
            report(
                "mknod-scratch",
                if made == 0 {
                    Ok("made".into())
                } else {
                    Err(std::io::Error::last_os_error().to_string())
                },
            );
            report(
                "write-evidence",
                io(std::fs::OpenOptions::new()
                    .append(true)
                    .open(std::env::var("PROBE_EVIDENCE").unwrap())
                    .and_then(|mut f| f.write_all(b"forged"))),
            );
            let port = std::env::var("PROBE_PORT").unwrap();
            report(
                "connect",
                io(std::net::TcpStream::connect(format!("127.0.0.1:{port}"))),
            );
            let udp = std::env::var("PROBE_UDP_PORT").unwrap();
            report(
                "udp-send",
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|socket| socket.send_to(b"leak", format!("127.0.0.1:{udp}")))
                    .map(|sent| format!("{sent} bytes"))
                    .map_err(|e| e.to_string()),
            );
            report(
                "exec",
                io(Command::new("/usr/bin/touch")
                    .arg(format!("{ws}/exec-made"))
                    .status()),
            );
            // SAFETY: plain system calls on pids; the test wants them to fail.
            let kill = unsafe { libc::kill(enforcer, libc::SIGKILL) };
            report(
                "kill-enforcer",
                if kill == 0 {
                    Ok(String::new())
                } else {
                    Err(format!("errno {}", errno()))
                },
            );
            // SAFETY: as above.
            let group = unsafe { libc::kill(-libc::getpgid(enforcer), libc::SIGKILL) };
            report(
                "kill-enforcer-group",
                if group == 0 {
                    Ok(String::new())
                } else {
                    Err(format!("errno {}", errno()))
                },
            );
            // SAFETY: as above.
            let traced = unsafe { libc::ptrace(libc::PTRACE_ATTACH, enforcer, 0, 0) };
            report(
                "ptrace",
                if traced == 0 {
                    Ok(String::new())
                } else {
                    Err(format!("errno {}", errno()))
                },
            );
            for file in ["mem", "environ"] {
                report(
                    &format!("proc-{file}"),
                    std::fs::read(format!("/proc/{enforcer}/{file}"))
                        .map(|b| format!("{} bytes", b.len()))
                        .map_err(|e| e.to_string()),
                );
            }
            let mut buffer = [0u8; 16];
            let local = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: 16,
            };
            let remote = libc::iovec {
                iov_base: 0x1000 as *mut libc::c_void,
                iov_len: 16,
            };
            // SAFETY: the local iovec points into `buffer`, which outlives the call.
            let read = unsafe { libc::process_vm_readv(enforcer, &local, 1, &remote, 1, 0) };
            report(
                "process_vm_readv",
                if read >= 0 {
                    Ok(String::new())
                } else {
                    Err(format!("errno {}", errno()))
                },
            );
            // SAFETY: plain system calls.
            let sid = unsafe { libc::setsid() };
            // SAFETY: as above.
            let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
            // SAFETY: as above.
            let after = unsafe { libc::kill(enforcer, libc::SIGKILL) };
            report(
                "setsid-unshare-kill",
                if unshared == 0 || after == 0 {
                    Ok(format!("setsid {sid}"))
                } else {
                    Err(format!("unshare and kill refused, setsid {sid}"))
                },
            );
        }
        "kernel" => {
            let kernel =
                kernel_client::Kernel::connect_from_env(kernel_client::ClientConfig::default())
                    .unwrap();
            println!(
                "confinement: {:?} brokered: {}",
                kernel.handshake_info().confinement,
                kernel.is_brokered()
            );
            report(
                "kernel-write",
                kernel
                    .write_file(&format!("{ws}/through-kernel.txt"), b"decided")
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            );
            report(
                "kernel-read",
                kernel
                    .read_file(&format!("{ws}/through-kernel.txt"))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string()),
            );
            let touch = kernel_client::Exec::new("/usr/bin/touch")
                .arg("touched-by-broker")
                .cwd(&ws);
            report(
                "kernel-exec",
                kernel
                    .exec(touch)
                    .map(|o| format!("{}", o.status))
                    .map_err(|e| e.to_string()),
            );
            let env = kernel_client::Exec::new("/usr/bin/env")
                .cwd(&ws)
                .env("LD_PRELOAD", "/tmp/evil.so")
                .env("TZ", "UTC");
            report(
                "kernel-env",
                kernel
                    .exec(env)
                    .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', " "))
                    .map_err(|e| e.to_string()),
            );
            report(
                "kernel-denied-read",
                kernel
                    .read_file("/etc/hostname")
                    .map(|b| format!("{} bytes", b.len()))
                    .map_err(|e| e.to_string()),
            );
            let rm = kernel_client::Exec::new("/usr/bin/rm")
                .arg("-f")
                .arg(format!("{ws}/victim.txt"))
                .cwd(&ws);
            report(
                "kernel-denied-exec",
                kernel
                    .exec(rm)
                    .map(|o| format!("{}", o.status))
                    .map_err(|e| e.to_string()),
            );
            report(
                "kernel-symlink-write",
                kernel
                    .write_file(&format!("{ws}/link.txt"), b"through the link")
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            );
            let mut written = 0;
            for _ in 0..200 {
                if kernel
                    .write_file(&format!("{ws}/flip.txt"), b"racing")
                    .is_ok()
                {
                    written += 1;
                }
            }
            println!("race-writes: {written}");
            if let Ok(port) = std::env::var("PROBE_NET_PORT") {
                network_probe(&kernel, &port);
            }
        }
        "embedded" => {
            let state = std::env::var("PROBE_STATE").unwrap();
            let config = kernel_client::SpawnConfig::new(
                format!("{state}/policy.cedar"),
                &ws,
                format!("{state}/evidence.log"),
            )
            .enforcer(kernel_testkit::enforcer());
            let kernel = kernel_client::Kernel::spawn(config).unwrap();
            let scratch = format!("{state}/scratch");
            std::fs::create_dir_all(&scratch).unwrap();
            report(
                "lockdown",
                kernel
                    .lockdown(std::path::Path::new(&scratch))
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            );
            println!("brokered: {}", kernel.is_brokered());
            report(
                "write-workspace",
                io(std::fs::write(format!("{ws}/victim.txt"), "pwned")),
            );
            report(
                "read-policy",
                io(std::fs::read(format!("{state}/policy.cedar"))),
            );
            report(
                "exec",
                io(Command::new("/usr/bin/touch")
                    .arg(format!("{ws}/exec-made"))
                    .status()),
            );
            report(
                "write-scratch",
                io(std::fs::write(format!("{scratch}/notes"), "mine")),
            );
            report(
                "kernel-write",
                kernel
                    .write_file(&format!("{ws}/through-kernel.txt"), b"decided")
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            );
            let port: u16 = std::env::var("PROBE_NET_PORT").unwrap().parse().unwrap();
            report(
                "direct-connect",
                io(std::net::TcpStream::connect(("127.0.0.1", port))),
            );
            report("kernel-connect", ping_through(&kernel, port));
        }
        "unmodified" => unmodified_probe(&ws),
        "governed-loop" => {
            // Keeps reading a workspace file; each read is a decision.
            for _ in 0..1000 {
                let read = std::fs::read_to_string(format!("{ws}/victim.txt"));
                println!("read: {}", if read.is_ok() { "ok" } else { "refused" });
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        "governed-flood" => {
            // Four threads open a forbidden file as fast as they can.
            let started = std::time::Instant::now();
            let counts: Vec<(u64, u64)> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let (mut refused, mut limited) = (0u64, 0u64);
                            while started.elapsed() < Duration::from_secs(2) {
                                match std::fs::File::open(format!("{ws}/secret.txt")) {
                                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                                        limited += 1;
                                    }
                                    Err(_) => refused += 1,
                                    Ok(_) => panic!("the forbidden file opened"),
                                }
                            }
                            (refused, limited)
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let refused: u64 = counts.iter().map(|c| c.0).sum();
            let limited: u64 = counts.iter().map(|c| c.1).sum();
            println!(
                "flood: {refused} refused, {limited} limited in {} ms",
                started.elapsed().as_millis()
            );
        }
        "governed-idle" => {
            // A decided read, then one more for every line on standard
            // input (reading it is no decision), until it closes.
            let _ = std::fs::read_to_string(format!("{ws}/victim.txt"));
            for _ in std::io::stdin().lines() {
                let _ = std::fs::read_to_string(format!("{ws}/victim.txt"));
            }
        }
        "governed-writer" => {
            // Keeps writing workspace files and starting programs, each a
            // decision; says where it is.
            let scratch = std::env::var("AGENT_KERNEL_SCRATCH").unwrap();
            std::fs::write(format!("{scratch}/pid"), std::process::id().to_string()).unwrap();
            for n in 0..100_000 {
                let _ = std::fs::write(format!("{ws}/w-{n}.txt"), "x");
                let _ = Command::new("/usr/bin/touch")
                    .arg(format!("t-{n}.txt"))
                    .current_dir(&ws)
                    .status();
            }
        }
        other => panic!("unknown probe {other}"),
    }
}

/// An agent that never uses the client: plain `std::fs` and raw `open`.
fn unmodified_probe(ws: &str) {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    let outside = std::env::var("PROBE_OUTSIDE").unwrap();
    report(
        "read-allowed",
        std::fs::read_to_string(format!("{ws}/victim.txt")).map_err(|e| e.to_string()),
    );
    report(
        "write-allowed",
        io(std::fs::write(
            format!("{ws}/made-by-agent.txt"),
            "unmodified agent",
        )),
    );
    report(
        "read-relative",
        std::fs::read_to_string("victim.txt").map_err(|e| e.to_string()),
    );
    report(
        "read-forbidden",
        std::fs::read_to_string(format!("{ws}/secret.txt")).map_err(|e| e.to_string()),
    );
    report(
        "write-outside",
        io(std::fs::write(format!("{outside}/planted.txt"), "x")),
    );
    report(
        "read-system",
        std::fs::read_to_string("/etc/passwd")
            .map(|t| format!("{} bytes", t.len()))
            .map_err(|e| e.to_string()),
    );
    report("mkdir", io(std::fs::create_dir(format!("{ws}/made-dir"))));
    report(
        "rename",
        io(std::fs::rename(
            format!("{ws}/made-by-agent.txt"),
            format!("{ws}/made-dir/moved.txt"),
        )),
    );
    report(
        "delete",
        io(std::fs::remove_file(format!("{ws}/doomed.txt"))),
    );
    report(
        "delete-outside",
        io(std::fs::remove_file(format!("{outside}/keep.txt"))),
    );
    if let Ok(port) = std::env::var("PROBE_NET_PORT") {
        use std::io::{Read, Write};
        let port: u16 = port.parse().unwrap();
        report(
            "tcp-connect",
            std::net::TcpStream::connect(("127.0.0.1", port))
                .and_then(|mut stream| {
                    stream.write_all(b"ping")?;
                    let mut answer = [0u8; 4];
                    stream.read_exact(&mut answer)?;
                    Ok(String::from_utf8_lossy(&answer).into_owned())
                })
                .map_err(|e| e.to_string()),
        );
        let denied: u16 = std::env::var("PROBE_DENIED_PORT").unwrap().parse().unwrap();
        report(
            "tcp-connect-denied",
            io(std::net::TcpStream::connect(("127.0.0.2", denied))),
        );
        let udp = std::env::var("PROBE_UDP_PORT").unwrap();
        report("tcp-fastopen", {
            // TCP Fast Open connects inside sendto, not connect.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: denied.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)).to_be(),
                },
                sin_zero: [0; 8],
            };
            let sent = unsafe {
                libc::sendto(
                    fd,
                    b"tfo".as_ptr().cast(),
                    3,
                    libc::MSG_FASTOPEN,
                    (&raw const address).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            let result = if sent < 0 {
                Err(format!("errno {}", errno()))
            } else {
                Ok(format!("{sent} bytes"))
            };
            unsafe { libc::close(fd) };
            result
        });
        report(
            "udp-send",
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|socket| socket.send_to(b"leak", format!("127.0.0.1:{udp}")))
                .map(|sent| format!("{sent} bytes"))
                .map_err(|e| e.to_string()),
        );
    }
    // The race the kernel's documentation warns about: another thread
    // rewrites the path between the decision and the kernel's use of it.
    let allowed = format!("{ws}/victim.txt\0");
    let forbidden = format!("{ws}/secret.txt\0");
    assert_eq!(allowed.len(), forbidden.len());
    let buffer: std::sync::Arc<Vec<AtomicU8>> =
        std::sync::Arc::new(allowed.bytes().map(AtomicU8::new).collect());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flipper = {
        let (buffer, stop) = (buffer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let text = if flip { &forbidden } else { &allowed };
                for (cell, byte) in buffer.iter().zip(text.bytes()) {
                    cell.store(byte, Ordering::Relaxed);
                }
                flip = !flip;
            }
        })
    };
    let (mut opened, mut leaked, mut refused) = (0, 0, 0);
    for _ in 0..1500 {
        let fd = unsafe {
            libc::open(
                buffer.as_ptr().cast::<libc::c_char>(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            refused += 1;
            continue;
        }
        let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut content = String::new();
        let _ = std::io::Read::read_to_string(&mut file, &mut content);
        if content.contains("SECRET") {
            leaked += 1;
        } else {
            opened += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    println!("race: {opened} opened, {refused} refused, {leaked} leaked");
    if std::env::var("PROBE_EXEC").is_ok() {
        exec_probe(ws);
    }
}

/// Programs started by an unmodified agent: decided by policy, and the
/// race on the path and arguments of `execve`.
fn exec_probe(ws: &str) {
    let scratch = std::env::var("AGENT_KERNEL_SCRATCH").unwrap();
    report(
        "scratch-write",
        io(std::fs::write(format!("{scratch}/note"), "scratch")),
    );
    println!("scratch-dir: {scratch}");
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let status = |command: &mut Command| {
        command
            .current_dir(ws)
            .status()
            .map_err(|e| e.to_string())
            .and_then(|status| match status.code() {
                Some(0) => Ok(String::new()),
                _ => Err(format!("{status:?} (signal {:?})", status.signal())),
            })
    };
    report(
        "exec-allowed",
        status(Command::new("/usr/bin/touch").arg("exec-made.txt")),
    );
    report(
        "exec-through-path",
        status(Command::new("touch").arg("exec-made-2.txt")),
    );
    report(
        "exec-denied",
        status(Command::new("/usr/bin/rm").arg("keep-me.txt")),
    );
    report(
        "exec-denied-arguments",
        status(Command::new("/usr/bin/touch").arg("FORBIDDEN")),
    );
    // A program that does not exist fails as it would without the kernel,
    // and is not decided (nothing would run; no record).
    report(
        "exec-missing",
        status(&mut Command::new("/usr/bin/no-such-program-in-this-test")),
    );
    report(
        "exec-descriptor",
        // execveat of an open descriptor (fexecve): refused, whatever the
        // file, so a program that exists on no disk cannot be run.
        {
            let fd =
                unsafe { libc::open(c"/usr/bin/touch".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            let argv = [
                c"touch".as_ptr(),
                c"fexecve-made.txt".as_ptr(),
                std::ptr::null(),
            ];
            let envp = [std::ptr::null::<libc::c_char>()];
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        c"".as_ptr(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                    libc::_exit(126);
                }
            }
            let mut status = 0;
            unsafe { libc::waitpid(child, &raw mut status, 0) };
            unsafe { libc::close(fd) };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(String::new())
            } else {
                Err(format!("status {status:#x}"))
            }
        },
    );
    report(
        "exec-other-argv0",
        status(
            Command::new("/usr/bin/touch")
                .arg0("rm")
                .arg("argv0-made.txt"),
        ),
    );
    // The race: the path and the arguments live in memory this process
    // shares with the child `posix_spawn` starts (CLONE_VM), and another
    // thread keeps rewriting them while the child's execve waits for its
    // decision. State A is allowed (`touch allowed-1`, a directory: touch
    // only updates its times); state B would remove that directory
    // (`rmdir`, not allowed) or create `FORBIDDEN` (forbidden arguments).
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    let states = [
        ("/usr/bin/touch\0", "allowed-1\0"),
        ("/usr/bin/rmdir\0", "FORBIDDEN\0"),
    ];
    let path: std::sync::Arc<Vec<AtomicU8>> =
        std::sync::Arc::new(states[0].0.bytes().map(AtomicU8::new).collect());
    let arg: std::sync::Arc<Vec<AtomicU8>> =
        std::sync::Arc::new(states[0].1.bytes().map(AtomicU8::new).collect());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flipper = {
        let (path, arg, stop) = (path.clone(), arg.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut which = 0;
            while !stop.load(Ordering::Relaxed) {
                which = 1 - which;
                let (p, a) = states[which];
                for (cell, byte) in path.iter().zip(p.bytes()) {
                    cell.store(byte, Ordering::Relaxed);
                }
                for (cell, byte) in arg.iter().zip(a.bytes()) {
                    cell.store(byte, Ordering::Relaxed);
                }
            }
        })
    };
    let argv0 = c"touch";
    let env = c"PATH=/usr/bin:/bin";
    let (mut ran, mut refused, mut killed, mut other) = (0, 0, 0, 0);
    for _ in 0..2000 {
        let argv = [
            argv0.as_ptr(),
            arg.as_ptr().cast::<libc::c_char>(),
            std::ptr::null(),
        ];
        let envp = [env.as_ptr(), std::ptr::null()];
        let mut pid = 0;
        let spawned = unsafe {
            libc::posix_spawn(
                &raw mut pid,
                path.as_ptr().cast::<libc::c_char>(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr().cast::<*mut libc::c_char>(),
                envp.as_ptr().cast::<*mut libc::c_char>(),
            )
        };
        if spawned != 0 {
            refused += 1;
            continue;
        }
        let mut wait = 0;
        unsafe { libc::waitpid(pid, &raw mut wait, 0) };
        if libc::WIFSIGNALED(wait) && libc::WTERMSIG(wait) == libc::SIGKILL {
            killed += 1;
        } else if libc::WIFEXITED(wait) && libc::WEXITSTATUS(wait) == 0 {
            ran += 1;
        } else {
            other += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    println!("exec-race: {ran} ran, {refused} refused, {killed} killed, {other} other");
    own_listener_probe();
}

/// The agent installs a seccomp notification filter of its own for
/// `execve` (the newest filter's notification wins, so it would pre-empt
/// the enforcer's), forks, and lets its child's exec of forbidden
/// arguments continue. The kernel refuses a second listener in a filter
/// chain (`EBUSY`); were it made, the exec would still be killed at its
/// exec stop (no decision allowed it). Last: it changes this process's
/// filters.
fn own_listener_probe() {
    let filter = [
        // A = nr; if nr == execve: USER_NOTIF else ALLOW.
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_execve as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_USER_NOTIF,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const program,
        )
    };
    if listener < 0 {
        report("own-listener", Err(format!("errno {}", errno())));
        return;
    }
    let listener = listener as i32;
    let child = unsafe { libc::fork() };
    if child == 0 {
        let path = c"/usr/bin/touch";
        let argv = [c"touch".as_ptr(), c"FORBIDDEN".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    // Answer the child's execve: continue.
    let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    let received = unsafe {
        libc::ioctl(
            listener,
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &raw mut notification,
        )
    };
    if received == 0 {
        let response = libc::seccomp_notif_resp {
            id: notification.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        unsafe {
            libc::ioctl(
                listener,
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &raw const response,
            )
        };
    }
    let mut status = 0;
    unsafe { libc::waitpid(child, &raw mut status, 0) };
    let ran = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    report(
        "own-listener",
        if ran {
            Ok("and the child's exec ran".into())
        } else {
            Err(format!(
                "listener made, but the exec did not run (status {status:#x})"
            ))
        },
    );
}

/// Connects through the kernel to the echo listener and returns its answer.
fn ping_through(kernel: &kernel_client::Kernel, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = kernel
        .connect_tcp("127.0.0.1", port)
        .map_err(|e| e.to_string())?;
    stream.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Network effects through the kernel: the broker connects or makes the
/// request; the agent itself cannot.
fn network_probe(kernel: &kernel_client::Kernel, port: &str) {
    let port: u16 = port.parse().unwrap();
    let denied: u16 = std::env::var("PROBE_DENIED_PORT").unwrap().parse().unwrap();
    let http: u16 = std::env::var("PROBE_HTTP_PORT").unwrap().parse().unwrap();
    report("kernel-connect", ping_through(kernel, port));
    report(
        "kernel-denied-connect",
        kernel
            .connect_tcp("127.0.0.2", denied)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
    );
    let url = |path: &str| format!("http://127.0.0.1:{http}{path}");
    report(
        "kernel-http",
        kernel
            .http("GET", &url("/hello"), b"")
            .map(|r| format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
            .map_err(|e| e.to_string()),
    );
    report(
        "kernel-http-redirect",
        kernel
            .http("GET", &url("/redirect"), b"")
            .map(|r| r.status.to_string())
            .map_err(|e| e.to_string()),
    );
    report(
        "kernel-denied-http",
        kernel
            .http("POST", &url("/hello"), b"exfiltrated")
            .map(|r| r.status.to_string())
            .map_err(|e| e.to_string()),
    );
}

// -------------------------------------------------------------- harness side

/// A loopback HTTP server that logs `METHOD PATH` of every request and
/// answers `/hello` with a greeting, `/redirect` with a redirect to
/// `/secret`, anything else with 404.
fn http_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let first: Vec<&str> = head.lines().next().unwrap_or("").split(' ').collect();
            let (method, path) = (first[0].to_owned(), first.get(1).copied().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {path}"));
            let response = match path {
                "/hello" => "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_owned(),
                "/redirect" => "HTTP/1.1 302 Found\r\nlocation: /secret\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, log)
}

fn a_configuration_file_sets_the_session_and_flags_win() -> Result<(), String> {
    let scene = scene();
    let config = scene.state().join("kernel.toml");
    // Relative paths are relative to the file's directory.
    std::fs::write(
        &config,
        "policies = [\"policy.cedar\"]\nworkspace = \"../ws\"\nevidence = \"from-config.log\"\nconnect_timeout_secs = 20\n",
    )
    .unwrap();
    let me = std::env::current_exe().unwrap();
    let start = |extra: &[&str]| {
        Command::new(enforcer())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .arg("--")
            .arg(&me)
            .env("KERNEL_PROBE", "kernel")
            .env("PROBE_WS", &scene.workspace)
            .output()
            .unwrap()
    };
    let mut problems = Vec::new();
    let output = start(&[]);
    let text = lines(&output);
    if !output.status.success() || !text.contains("kernel-write: SUCCEEDED") {
        problems.push(format!(
            "run with --config failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let from_config = scene.state().join("from-config.log");
    match std::fs::read(&from_config) {
        Ok(log) => {
            if let Err(e) = kernel_core::audit(&log, &kernel_core::AuditOptions::default()) {
                problems.push(format!("the configured evidence does not verify: {e}"));
            }
        }
        Err(_) => {
            problems.push("the evidence file named in the configuration was not written".into())
        }
    }
    // A flag wins over the file.
    let flagged = scene.state().join("from-flag.log");
    let before = std::fs::read(&from_config).unwrap_or_default();
    let output = start(&["--evidence", flagged.to_str().unwrap()]);
    if !output.status.success() || !flagged.exists() {
        problems.push("the --evidence flag did not win over the configuration".into());
    }
    if std::fs::read(&from_config).unwrap_or_default() != before {
        problems.push("the configured evidence grew although a flag overrode it".into());
    }
    // Nothing dangerous, and no typo, passes through a configuration file:
    // start-up fails before the agent runs.
    for (bad, key) in [
        ("danger_unconfined = true\n", "danger_unconfined"),
        (
            "policies = [\"policy.cedar\"]\npermit_tll_secs = 5\n",
            "permit_tll_secs",
        ),
    ] {
        std::fs::write(&config, bad).unwrap();
        let _ = std::fs::remove_file(scene.workspace.join("through-kernel.txt"));
        let output = start(&[]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() || !stderr.contains(key) || !stderr.contains("line") {
            problems.push(format!(
                "`{key}` in a configuration was not refused clearly: {stderr}"
            ));
        }
        if scene.workspace.join("through-kernel.txt").exists() {
            problems.push(format!("the agent ran despite `{key}`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn an_unmodified_agent_has_its_opens_decided_by_policy() -> Result<(), String> {
    let scene = scene();
    std::fs::write(scene.workspace.join("doomed.txt"), "bye").unwrap();
    std::fs::write(scene.outside.join("keep.txt"), "stays").unwrap();
    let (echo_port, accepted) = echo_server();
    let forbidden = TcpListener::bind("127.0.0.2:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let datagrams = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    datagrams.set_nonblocking(true).unwrap();
    std::fs::write(scene.workspace.join("keep-me.txt"), "kept").unwrap();
    std::fs::create_dir(scene.workspace.join("allowed-1")).unwrap();
    let me = std::env::current_exe().unwrap();
    let evidence = scene.evidence.clone();
    let output = scene
        .governed_run(&[])
        .arg("--")
        .arg(&me)
        .env("KERNEL_PROBE", "unmodified")
        .env("PROBE_EXEC", "1")
        .env("PROBE_WS", &scene.workspace)
        .env("PROBE_OUTSIDE", &scene.outside)
        .env("PROBE_NET_PORT", echo_port.to_string())
        .env(
            "PROBE_DENIED_PORT",
            forbidden.local_addr().unwrap().port().to_string(),
        )
        .env(
            "PROBE_UDP_PORT",
            datagrams.local_addr().unwrap().port().to_string(),
        )
        .output()
        .unwrap();
    let text = lines(&output);
    let mut problems = Vec::new();
    for line in [
        "read-allowed: SUCCEEDED original",
        "write-allowed: SUCCEEDED",
        "read-relative: SUCCEEDED original",
        "read-forbidden: blocked",
        "write-outside: blocked",
        "read-system: SUCCEEDED",
        "mkdir: SUCCEEDED",
        "rename: SUCCEEDED",
        "delete: SUCCEEDED",
        "delete-outside: blocked",
        "tcp-connect: SUCCEEDED pong",
        "tcp-connect-denied: blocked",
        "tcp-fastopen: blocked",
        "udp-send: blocked",
        "exec-allowed: SUCCEEDED",
        "exec-through-path: SUCCEEDED",
        "exec-denied: blocked",
        "exec-denied-arguments: blocked",
        "exec-other-argv0: blocked",
        "exec-descriptor: blocked",
        "exec-missing: blocked (No such file or directory",
        "scratch-write: SUCCEEDED",
        "own-listener: blocked (errno 16)",
    ] {
        if !text.lines().any(|l| l.starts_with(line)) {
            problems.push(format!("expected `{line}`"));
        }
    }
    // Judged by the world.
    if std::fs::read_to_string(scene.workspace.join("made-dir/moved.txt"))
        .ok()
        .as_deref()
        != Some("unmodified agent")
    {
        problems.push("the allowed write and rename did not reach the file".into());
    }
    if scene.workspace.join("doomed.txt").exists() {
        problems.push("the allowed delete did not happen".into());
    }
    if std::fs::read_to_string(scene.outside.join("keep.txt"))
        .ok()
        .as_deref()
        != Some("stays")
    {
        problems.push("the denied delete happened".into());
    }
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    if connections != 1 {
        problems.push(format!(
            "the allowed listener saw {connections} connections, not 1"
        ));
    }
    if forbidden.accept().is_ok() {
        problems.push("the forbidden listener received a connection".into());
    }
    if datagrams.recv(&mut [0u8; 16]).is_ok() {
        problems.push("the UDP socket received a datagram".into());
    }
    if scene.outside.join("planted.txt").exists() {
        problems.push("the denied write created a file".into());
    }
    if std::env::var("SHOW_PROBE").is_ok() {
        eprintln!("{text}");
    }
    // Programs: the allowed ones ran, the denied ones did not.
    for made in ["exec-made.txt", "exec-made-2.txt"] {
        if !scene.workspace.join(made).exists() {
            problems.push(format!("the allowed program did not make `{made}`"));
        }
    }
    if std::fs::read_to_string(scene.workspace.join("keep-me.txt"))
        .ok()
        .as_deref()
        != Some("kept")
    {
        problems.push("the denied `rm` removed its file".into());
    }
    if scene.workspace.join("fexecve-made.txt").exists() {
        problems.push("a program run from a descriptor ran".into());
    }
    if scene.workspace.join("argv0-made.txt").exists() {
        problems.push("a program whose argv[0] names another one ran".into());
    }
    // The exec race: the rewritten path or arguments never ran.
    if scene.workspace.join("FORBIDDEN").exists() {
        problems.push("the exec race ran forbidden arguments".into());
    }
    if !scene.workspace.join("allowed-1").is_dir() {
        problems.push("the exec race ran `rmdir`".into());
    }
    match text.lines().find(|l| l.starts_with("exec-race: ")) {
        Some(race) if !race.starts_with("exec-race: 0 ran") => {}
        other => problems.push(format!(
            "the exec race never ran the allowed program: {other:?}"
        )),
    }
    // The default scratch directory is removed with the session.
    match text.lines().find_map(|l| l.strip_prefix("scratch-dir: ")) {
        Some(dir) if !std::path::Path::new(dir).exists() => {}
        other => problems.push(format!("the scratch directory was left behind: {other:?}")),
    }
    match text.lines().find(|l| l.starts_with("race: ")) {
        Some(race) if race.ends_with(" 0 leaked") && !race.starts_with("race: 0 opened") => {}
        other => problems.push(format!("the path race leaked or never opened: {other:?}")),
    }
    // Decisions name their programs (the request bytes are in the
    // record); the missing one was never decided.
    let log = std::fs::read(&evidence).unwrap_or_default();
    let mentions = |needle: &[u8]| log.windows(needle.len()).any(|w| w == needle);
    if !mentions(b"/usr/bin/touch") {
        problems.push("no exec decision names `/usr/bin/touch`".into());
    }
    if mentions(b"no-such-program-in-this-test") {
        problems.push("a program that does not exist was decided and recorded".into());
    }
    // Every decision is evidence, and it verifies.
    match std::fs::read(&evidence)
        .map_err(|e| e.to_string())
        .and_then(|log| {
            kernel_core::audit(&log, &kernel_core::AuditOptions::default())
                .map_err(|e| e.to_string())
        }) {
        Ok(report) if report.allowed >= 3 && report.denied >= 2 => {}
        Ok(report) => problems.push(format!(
            "too few decisions recorded: {} allowed, {} denied",
            report.allowed, report.denied
        )),
        Err(e) => problems.push(format!("the evidence does not verify: {e}")),
    }
    if !output.status.success() {
        problems.push(format!("the run failed: {:?}", output.status));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- probe output:\n{text}\n{}",
            problems.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The same agent in Python and in JavaScript, knowing nothing of the
/// kernel: a workspace write, a write outside, an allowed program and a
/// denied one. `OUTSIDE` is their first argument.
const PYTHON_AGENT: &str = r#"
import subprocess, sys
open("py-made.txt", "w").write("from python")
try:
    open(sys.argv[1] + "/py-planted.txt", "w")
except OSError as e:
    print("write-outside refused", e.errno)
subprocess.run(["touch", "py-exec.txt"], check=True)
try:
    subprocess.run(["rm", "keep-me.txt"])
except OSError as e:
    print("rm refused", e.errno)
"#;
const NODE_AGENT: &str = r#"
const fs = require("fs"), cp = require("child_process");
fs.writeFileSync("js-made.txt", "from node");
try { fs.writeFileSync(process.argv[1] + "/js-planted.txt", "x"); }
catch (e) { console.log("write-outside refused", e.code); }
cp.execFileSync("touch", ["js-exec.txt"]);
try { cp.execFileSync("rm", ["keep-me.txt"]); }
catch (e) { console.log("rm refused", e.code); }
"#;

fn python_and_node_run_unmodified_and_governed() -> Result<(), String> {
    let mut problems = Vec::new();
    let mut ran = 0;
    for (tag, program, flag, script) in [
        ("py", "/usr/bin/python3", "-c", PYTHON_AGENT),
        ("js", "/usr/bin/node", "-e", NODE_AGENT),
    ] {
        if !std::path::Path::new(program).exists() {
            println!("SKIPPED the {program} agent: not installed");
            continue;
        }
        ran += 1;
        let scene = scene();
        std::fs::write(scene.workspace.join("keep-me.txt"), "kept").unwrap();
        let evidence = scene.evidence.clone();
        let output = scene
            .governed_run(&[])
            .args(["--", program, flag, script])
            .arg(&scene.outside)
            .output()
            .unwrap();
        let text = lines(&output);
        let mut failed = |why: String| problems.push(format!("{program}: {why}\n{text}"));
        if !output.status.success() {
            failed(format!("the run failed: {:?}", output.status));
        }
        for made in ["made.txt", "exec.txt"] {
            if !scene.workspace.join(format!("{tag}-{made}")).exists() {
                failed(format!("the allowed effect `{tag}-{made}` did not happen"));
            }
        }
        if scene.outside.join(format!("{tag}-planted.txt")).exists() {
            failed("the denied write happened".into());
        }
        if std::fs::read_to_string(scene.workspace.join("keep-me.txt"))
            .ok()
            .as_deref()
            != Some("kept")
        {
            failed("the denied `rm` ran".into());
        }
        for line in ["write-outside refused", "rm refused"] {
            if !text.lines().any(|l| l.starts_with(line)) {
                failed(format!("expected `{line}`"));
            }
        }
        match std::fs::read(&evidence)
            .map_err(|e| e.to_string())
            .and_then(|log| {
                kernel_core::audit(&log, &kernel_core::AuditOptions::default())
                    .map_err(|e| e.to_string())
            }) {
            // The write and the program allowed, the write outside and the
            // program denied, each recorded.
            Ok(report) if report.allowed >= 2 && report.denied >= 2 => {}
            Ok(report) => failed(format!(
                "too few decisions recorded: {} allowed, {} denied",
                report.allowed, report.denied
            )),
            Err(e) => failed(format!("the evidence does not verify: {e}")),
        }
    }
    if ran == 0 {
        println!("SKIPPED python_and_node_run_unmodified_and_governed: neither is installed");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A flood of calls to decide is held to the documented rate: judged by
/// the evidence, which holds no more decisions than the burst and the
/// sustained rate allow, while the agent saw the excess fail with
/// `EAGAIN`. (Evidence written to the OS only, so that deciding is far
/// faster than the limit.)
fn a_flood_of_governed_calls_is_held_to_the_rate_limit() -> Result<(), String> {
    use kernel_enforcer::governed::rate::{RATE_WAIT, RateLimit};
    // Low enough that even a debug build decides far faster, and that the
    // four serving threads waiting their turn would wait longer than
    // `RATE_WAIT`, so the excess is refused.
    let limit = RateLimit::per_second(20);
    let scene = scene();
    let evidence = scene.evidence.clone();
    let started = std::time::Instant::now();
    let output = scene
        .governed_run(&[])
        .arg("--danger-evidence-os-buffered")
        .args(["--syscall-rate", "20"])
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .env("KERNEL_PROBE", "governed-flood")
        .env("PROBE_WS", &scene.workspace)
        // The loader would look for libraries in each directory (each a
        // decision) before the system's.
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = lines(&output);
    let Some((refused, limited)) = text.lines().find_map(|line| {
        let rest = line.strip_prefix("flood: ")?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        Some((
            words.first()?.parse::<u64>().ok()?,
            words.get(2)?.parse::<u64>().ok()?,
        ))
    }) else {
        return Err(format!("the flood did not run:\n{text}"));
    };
    let log = std::fs::read(&evidence).map_err(|e| e.to_string())?;
    let report = kernel_core::audit(&log, &kernel_core::AuditOptions::default())
        .map_err(|e| format!("the evidence does not verify: {e}"))?;
    let decided = report.allowed + report.denied;
    // Every decision of the whole run counts, start-up included.
    let ceiling = limit.burst + limit.per_second * (elapsed + RATE_WAIT).as_secs_f64();
    let mut problems = Vec::new();
    if decided as f64 > ceiling {
        problems.push(format!(
            "{decided} decisions recorded, more than the limit allows ({ceiling})"
        ));
    }
    if limited == 0 {
        problems.push("no call was held back by the rate limit".into());
    }
    if refused == 0 || report.denied == 0 {
        problems.push("no call was decided at all".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let inspect = Command::new(enforcer())
            .args(["audit", "inspect"])
            .arg(&evidence)
            .output()
            .unwrap();
        let mut kinds = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&inspect.stdout).lines() {
            let key: Vec<&str> = line.split_whitespace().skip(2).take(3).collect();
            *kinds.entry(key.join(" ")).or_insert(0) += 1;
        }
        Err(format!("{}\n{text}\n{kinds:?}", problems.join("\n")))
    }
}

/// A governed session (which has no client channel) still signs a
/// checkpoint when one comes due while the agent is idle, not only when
/// a decision finds one due: judged by a decision seen last in the
/// evidence, uncovered, and then covered by a checkpoint with no decision
/// in between. (A checkpoint a decision finds due is written with that
/// decision; should one cover the agent's decision before it could be
/// seen uncovered, the agent is asked for another.)
fn a_governed_session_writes_checkpoints_while_idle() -> Result<(), String> {
    use kernel_testkit::Entry;
    let scene = scene();
    let mut run = scene
        .governed_run(&[])
        .args(["--checkpoint-interval", "2", "--"])
        .arg(std::env::current_exe().unwrap())
        .env("KERNEL_PROBE", "governed-idle")
        .env("PROBE_WS", &scene.workspace)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = run.stdin.take().unwrap();
    // The last decision seen uncovered (in two looks in a row), and the
    // last one another decision was asked after.
    let (mut uncovered, mut asked_after) = (None, None);
    let mut last_look = None;
    let idle_checkpoint = holds_within(Duration::from_secs(30), || {
        let entries = kernel_testkit::log(&scene.evidence);
        let Some(last) = entries
            .iter()
            .rposition(|e| matches!(e, Entry::Decision { .. }))
        else {
            return false;
        };
        let covered = entries[last..]
            .iter()
            .any(|e| matches!(e, Entry::Checkpoint));
        let look = (entries.len(), covered);
        let steady = last_look.replace(look) == Some(look);
        match (covered, uncovered) {
            (true, Some(seen)) if seen == last => return true,
            (true, _) if asked_after != Some(last) => {
                asked_after = Some(last);
                let _ = input.write_all(b"again\n");
            }
            (false, _) if steady => uncovered = Some(last),
            _ => {}
        }
        false
    });
    drop(input);
    let output = run.wait_with_output().unwrap();
    if !output.status.success() {
        return Err(format!("the run failed: {}", lines(&output)));
    }
    if idle_checkpoint {
        Ok(())
    } else {
        Err("no checkpoint covered a decision while the agent was idle (30 s)".into())
    }
}

/// No kernel, no agent: SIGKILL the enforcer while the governed agent's
/// calls (opens and `exec`s) are being decided; the agent and what it
/// started are killed with it, and no effect happens after.
fn a_killed_enforcer_leaves_no_governed_agent_running() -> Result<(), String> {
    let scene = scene();
    let scratch = scene.state().join("scratch");
    let me = std::env::current_exe().unwrap();
    let mut run = scene
        .governed_run(&[])
        .arg("--scratch")
        .arg(&scratch)
        .arg("--")
        .arg(&me)
        .env("KERNEL_PROBE", "governed-writer")
        .env("PROBE_WS", &scene.workspace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let count = || {
        std::fs::read_dir(&scene.workspace)
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    if !holds_within(Duration::from_secs(20), || count() >= 20) {
        let _ = run.kill();
        let _ = run.wait();
        return Err("the governed agent's writes were never decided".into());
    }
    let agent = std::fs::read_to_string(scratch.join("pid"));
    let killed = run.kill();
    let _ = run.wait();
    let agent: u32 = agent
        .map_err(|e| format!("the agent's pid: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("the agent's pid: {e}"))?;
    killed.map_err(|e| format!("cannot kill the enforcer: {e}"))?;
    let mut problems = Vec::new();
    if !holds_within(Duration::from_secs(5), || ended(agent)) {
        problems.push(format!(
            "the agent (pid {agent}) still runs without its kernel"
        ));
    }
    // What the agent made before it ended may stand; nothing more may
    // come once the programs it started (at work in the workspace) end
    // too.
    let before = count();
    if !holds_within(Duration::from_secs(5), || {
        !kernel_testkit::works_in(&scene.workspace)
    }) {
        problems.push("a program the agent started still runs without its kernel".into());
    }
    let after = count();
    if after != before {
        problems.push(format!(
            "{} workspace files appeared after the agent ended",
            after - before
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn the_kill_switch_stops_a_governed_agent() -> Result<(), String> {
    let scene = scene();
    let me = std::env::current_exe().unwrap();
    let evidence = scene.evidence.clone();
    let mut run = scene
        .governed_run(&[])
        .arg("--")
        .arg(&me)
        .env("KERNEL_PROBE", "governed-loop")
        .env("PROBE_WS", &scene.workspace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let allows = |log: &[u8]| {
        kernel_core::audit(log, &kernel_core::AuditOptions::default())
            .map(|r| r.allowed)
            .unwrap_or(0)
    };
    // Wait until the agent's reads are being decided.
    if !holds_within(Duration::from_secs(20), || {
        allows(&std::fs::read(&evidence).unwrap_or_default()) >= 3
    }) {
        let _ = run.kill();
        let _ = run.wait();
        return Err("the governed agent's reads were never decided".into());
    }
    let halt = scene.operator(&["halt", "--reason", "test"]);
    let mut problems = Vec::new();
    if !halt.status.success() {
        problems.push(format!(
            "the operator could not halt: {}{}",
            String::from_utf8_lossy(&halt.stdout),
            String::from_utf8_lossy(&halt.stderr)
        ));
    }
    // The run ends (the agent is stopped) long before its 20 s of reads.
    if !holds_within(Duration::from_secs(5), || {
        matches!(run.try_wait(), Ok(Some(_)))
    }) {
        let _ = run.kill();
        problems.push("the agent still ran 5 s after the halt".into());
    }
    let _ = run.wait();
    // Judged by the evidence: a halt by the operator, no allow after it.
    let log = std::fs::read(&evidence).unwrap();
    let records = kernel_core::split_records(&log).map_err(|e| e.to_string())?;
    let mut halted_at = None;
    let mut allowed_after = 0;
    for (index, body) in records.iter().enumerate() {
        match kernel_core::decode_record(body) {
            Ok(kernel_core::Record::Event(event)) => {
                if matches!(
                    event.decode_unverified(),
                    Ok(kernel_core::Event::Halt { .. })
                ) {
                    halted_at = Some(index);
                }
            }
            Ok(kernel_core::Record::Decision { receipt, .. }) => {
                let body = kernel_core::decode_receipt_body_unverified(&receipt.body)
                    .map_err(|e| e.to_string())?;
                if halted_at.is_some() && body.decision == kernel_core::Decision::Allow {
                    allowed_after += 1;
                }
            }
            _ => {}
        }
    }
    if halted_at.is_none() {
        problems.push("no halt in the evidence".into());
    }
    if allowed_after > 0 {
        problems.push(format!("{allowed_after} allows after the halt"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A loopback listener that answers `ping` with `pong` and counts the
/// connections it accepts.
fn echo_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in echo.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut ping = [0u8; 4];
            if stream.read_exact(&mut ping).is_ok() && &ping == b"ping" {
                let _ = stream.write_all(b"pong");
            }
        }
    });
    (port, accepted)
}

fn network_effects_are_brokered_and_denied_ones_never_reach_the_network() -> Result<(), String> {
    let scene = scene();
    let (echo_port, accepted) = echo_server();
    let forbidden = TcpListener::bind("127.0.0.2:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let (http_port, http_log) = http_server();
    let output = run(
        &scene,
        "kernel",
        &[
            ("PROBE_NET_PORT", echo_port.to_string()),
            ("PROBE_DENIED_PORT", forbidden_port.to_string()),
            ("PROBE_HTTP_PORT", http_port.to_string()),
        ],
    );
    let text = lines(&output);
    let mut problems = Vec::new();
    for line in [
        "kernel-connect: SUCCEEDED pong",
        "kernel-denied-connect: blocked",
        "kernel-http: SUCCEEDED 200 hello",
        "kernel-http-redirect: SUCCEEDED 302",
        "kernel-denied-http: blocked",
    ] {
        if !text.lines().any(|l| l.starts_with(line)) {
            problems.push(format!("expected `{line}`"));
        }
    }
    // Judged by the world: one connection to the allowed port, none to the
    // forbidden one, and exactly the two allowed requests at the server
    // (the redirect's target was never fetched, the POST never sent).
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    if connections != 1 {
        problems.push(format!(
            "the allowed listener saw {connections} connections, not 1"
        ));
    }
    if forbidden.accept().is_ok() {
        problems.push("the forbidden listener received a connection".into());
    }
    let requests = http_log.lock().unwrap().clone();
    if requests != ["GET /hello", "GET /redirect"] {
        problems.push(format!("the HTTP server saw {requests:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- probe output:\n{text}\n{}",
            problems.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A [`Fixture`] of [`POLICY`] whose workspace holds `victim.txt` and
/// `secret.txt`.
fn scene() -> Fixture {
    let fixture = fixture(POLICY);
    std::fs::write(fixture.workspace.join("victim.txt"), "original").unwrap();
    std::fs::write(fixture.workspace.join("secret.txt"), "TOP SECRET").unwrap();
    fixture
}

fn run(scene: &Fixture, attack: &str, extra_env: &[(&str, String)]) -> Output {
    let me = std::env::current_exe().unwrap();
    let keys = scene.state().join("keys");
    if !keys.exists() {
        kernel_testkit::keygen(&keys);
    }
    let key = keys.join("kernel.key");
    let mut command =
        scene.run_command(&["--key", key.to_str().unwrap(), "--connect-timeout", "20"]);
    command
        .arg("--")
        .arg(&me)
        .env("KERNEL_PROBE", attack)
        .env("PROBE_WS", &scene.workspace)
        .env("PROBE_EVIDENCE", &scene.evidence);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn lines(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

type Check = (&'static str, fn() -> Result<(), String>);

fn direct_attempts_fail_at_the_os_and_nothing_happens() -> Result<(), String> {
    let scene = scene();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let datagrams = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    datagrams.set_nonblocking(true).unwrap();
    let udp_port = datagrams.local_addr().unwrap().port();
    let key = scene.state().join("keys/kernel.key");
    let policy = scene.state().join("policy.cedar");
    let _ = run(&scene, "kernel", &[]); // creates the key and some evidence
    let evidence_before = std::fs::read(scene.state().join("evidence.log")).unwrap();
    let assets = format!(
        "{}:{}:{}",
        key.display(),
        policy.display(),
        scene.state().join("evidence.log").display()
    );
    let output = run(
        &scene,
        "direct",
        &[
            ("PROBE_PORT", port.to_string()),
            ("PROBE_UDP_PORT", udp_port.to_string()),
            ("PROBE_ASSETS", assets),
        ],
    );
    let text = lines(&output);
    let mut problems = Vec::new();
    for line in text.lines() {
        if line.contains("SUCCEEDED") {
            problems.push(format!("escaped: {line}"));
        }
    }
    for expected in [
        "write-workspace",
        "mknod-scratch",
        "write-evidence",
        "connect",
        "udp-send",
        "control-socket",
        "exec",
        "kill-enforcer",
        "kill-enforcer-group",
        "ptrace",
        "proc-mem",
        "proc-environ",
        "process_vm_readv",
        "setsid-unshare-kill",
    ] {
        if !text.contains(&format!("{expected}: blocked")) {
            problems.push(format!("no report of {expected} being blocked"));
        }
    }
    // Judged by the world.
    if std::fs::read_to_string(scene.workspace.join("victim.txt")).unwrap() != "original" {
        problems.push("the workspace file changed".into());
    }
    if scene.workspace.join("exec-made").exists() {
        problems.push("the directly executed program ran".into());
    }
    if listener.accept().is_ok() {
        problems.push("the loopback listener received a connection".into());
    }
    if datagrams.recv(&mut [0u8; 16]).is_ok() {
        problems.push("the loopback UDP socket received a datagram".into());
    }
    let evidence_after = std::fs::read(scene.state().join("evidence.log")).unwrap();
    if !evidence_after.starts_with(&evidence_before)
        || evidence_after.windows(6).any(|w| w == b"forged")
    {
        problems.push("the evidence was altered".into());
    }
    // The enforcer survived every attack: it ran to the end and exited
    // with the agent's own status, after writing its final checkpoint.
    if !output.status.success() {
        problems.push(format!(
            "supervised run failed: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let report = kernel_core::audit(&evidence_after, &kernel_core::AuditOptions::default())
        .map_err(|e| format!("evidence does not verify: {e}"))?;
    if report.uncovered != 0 {
        problems.push("no final checkpoint: the enforcer did not end cleanly".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- probe output:\n{text}",
            problems.join("\n")
        ))
    }
}

fn actions_through_the_kernel_are_decided_and_allowed_ones_happen() -> Result<(), String> {
    let scene = scene();
    let target = scene.outside.join("target.txt");
    std::fs::write(&target, "untouched").unwrap();
    std::os::unix::fs::symlink(&target, scene.workspace.join("link.txt")).unwrap();
    // A racer flips ws/flip.txt between a regular file and a link to the
    // target while the agent asks the broker to write it.
    let flip = scene.workspace.join("flip.txt");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (flip, target, stop) = (flip.clone(), target.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&flip);
                let _ = std::os::unix::fs::symlink(&target, &flip);
                std::thread::sleep(Duration::from_micros(50));
                let _ = std::fs::remove_file(&flip);
                let _ = std::fs::write(&flip, "plain");
            }
        })
    };
    let output = run(&scene, "kernel", &[]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    racer.join().unwrap();
    let text = lines(&output);
    let mut problems = Vec::new();
    let expect = |problems: &mut Vec<String>, line: &str| {
        if !text.lines().any(|l| l.starts_with(line)) {
            problems.push(format!("expected `{line}`"));
        }
    };
    expect(&mut problems, "confinement: Confined");
    expect(&mut problems, "kernel-write: SUCCEEDED");
    expect(&mut problems, "kernel-read: SUCCEEDED decided");
    expect(&mut problems, "kernel-exec: SUCCEEDED");
    expect(&mut problems, "kernel-env: SUCCEEDED");
    expect(&mut problems, "kernel-denied-read: blocked");
    expect(&mut problems, "kernel-denied-exec: blocked");
    expect(&mut problems, "kernel-symlink-write: blocked");
    if std::fs::read_to_string(scene.workspace.join("through-kernel.txt"))
        .ok()
        .as_deref()
        != Some("decided")
    {
        problems.push("the brokered write did not happen".into());
    }
    if !scene.workspace.join("touched-by-broker").exists() {
        problems.push("the brokered exec did not run".into());
    }
    let env_line = text
        .lines()
        .find(|l| l.starts_with("kernel-env"))
        .unwrap_or_default();
    if env_line.contains("LD_PRELOAD") || !env_line.contains("TZ=UTC") {
        problems.push(format!(
            "environment not filtered as documented: {env_line}"
        ));
    }
    if std::fs::read_to_string(&target).unwrap() != "untouched" {
        problems.push("a write reached the symlink's target".into());
    }
    if std::fs::read_to_string(scene.workspace.join("victim.txt")).unwrap() != "original" {
        problems.push("the denied rm ran".into());
    }
    if !text.contains("race-writes: ") {
        problems.push("the race did not run".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- probe output:\n{text}\n{}",
            problems.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn start_up_fails_without_a_connecting_agent_or_a_sound_confinement() -> Result<(), String> {
    let scene = scene();
    let mut problems = Vec::new();
    // An agent that never connects.
    let out = scene
        .run_command(&[])
        .args(["--connect-timeout", "1", "--", "/usr/bin/sleep", "30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("did not connect") {
        problems.push(format!("a silent agent was accepted: {stderr}"));
    }
    // A confinement that cannot keep the kernel's files away: the policy
    // lies inside the workspace the agent may read.
    std::fs::copy(
        scene.state().join("policy.cedar"),
        scene.workspace.join("policy.cedar"),
    )
    .unwrap();
    let out = Command::new(enforcer())
        .arg("run")
        .arg("--policy")
        .arg(scene.workspace.join("policy.cedar"))
        .arg("--workspace")
        .arg(&scene.workspace)
        .arg("--evidence")
        .arg(scene.state().join("evidence2.log"))
        .args(["--", "/usr/bin/touch", "should-not-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("refusing to start") {
        problems.push(format!("an unsound confinement was accepted: {stderr}"));
    }
    if scene.workspace.join("should-not-run").exists() {
        problems.push("the agent ran although the kernel refused to start".into());
    }
    // Running unconfined takes an explicit flag, and the evidence says so.
    let out = scene
        .run_command(&[])
        .args([
            "--danger-unconfined",
            "--connect-timeout",
            "1",
            "--",
            "/usr/bin/true",
        ])
        .output()
        .unwrap();
    let _ = out;
    let bytes = std::fs::read(scene.state().join("evidence.log")).unwrap_or_default();
    let recorded = kernel_core::split_records(&bytes)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| match kernel_core::decode_record(r) {
            Ok(kernel_core::Record::Event(e)) => e.decode_unverified().ok(),
            _ => None,
        })
        .any(|e| {
            matches!(
                e,
                kernel_core::Event::SessionStart {
                    confinement: kernel_core::Confinement::DangerUnconfined,
                    ..
                }
            )
        });
    if !recorded {
        problems.push("--danger-unconfined was not recorded in the evidence".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn embedded_lockdown_confines_the_agent_after_spawn() -> Result<(), String> {
    let scene = scene();
    let (port, accepted) = echo_server();
    let output = Command::new(std::env::current_exe().unwrap())
        .env("KERNEL_PROBE", "embedded")
        .env("PROBE_WS", &scene.workspace)
        .env("PROBE_STATE", scene.state())
        .env("PROBE_NET_PORT", port.to_string())
        .output()
        .unwrap();
    let text = lines(&output);
    let mut problems = Vec::new();
    for line in [
        "lockdown: SUCCEEDED",
        "brokered: true",
        "write-workspace: blocked",
        "read-policy: blocked",
        "exec: blocked",
        "write-scratch: SUCCEEDED",
        "kernel-write: SUCCEEDED",
        "direct-connect: blocked",
        "kernel-connect: SUCCEEDED pong",
    ] {
        if !text.lines().any(|l| l.starts_with(line)) {
            problems.push(format!("expected `{line}`"));
        }
    }
    if std::fs::read_to_string(scene.workspace.join("victim.txt")).unwrap() != "original"
        || scene.workspace.join("exec-made").exists()
    {
        problems.push("a direct effect happened after lockdown".into());
    }
    // Exactly one connection: the brokered one; the direct one never left.
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    if connections != 1 {
        problems.push(format!("the listener saw {connections} connections, not 1"));
    }
    if std::fs::read_to_string(scene.workspace.join("through-kernel.txt"))
        .ok()
        .as_deref()
        != Some("decided")
    {
        problems.push("the brokered write did not happen".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- probe output:\n{text}{}",
            problems.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The checks, run as libtest runs tests: `cargo test --test confinement
/// -- NAME` runs those whose name contains `NAME` (`--exact`, `--skip`,
/// `--list` as with libtest), one at a time unless `--test-threads` says
/// otherwise (each starts enforcers and agents of its own).
fn main() -> std::process::ExitCode {
    if let Ok(attack) = std::env::var("KERNEL_PROBE") {
        probe(&attack);
        return std::process::ExitCode::SUCCESS;
    }
    let checks: [Check; 12] = [
        (
            "embedded_lockdown_confines_the_agent_after_spawn",
            embedded_lockdown_confines_the_agent_after_spawn,
        ),
        (
            "start_up_fails_without_a_connecting_agent_or_a_sound_confinement",
            start_up_fails_without_a_connecting_agent_or_a_sound_confinement,
        ),
        (
            "direct_attempts_fail_at_the_os_and_nothing_happens",
            direct_attempts_fail_at_the_os_and_nothing_happens,
        ),
        (
            "actions_through_the_kernel_are_decided_and_allowed_ones_happen",
            actions_through_the_kernel_are_decided_and_allowed_ones_happen,
        ),
        (
            "an_unmodified_agent_has_its_opens_decided_by_policy",
            an_unmodified_agent_has_its_opens_decided_by_policy,
        ),
        (
            "the_kill_switch_stops_a_governed_agent",
            the_kill_switch_stops_a_governed_agent,
        ),
        (
            "a_configuration_file_sets_the_session_and_flags_win",
            a_configuration_file_sets_the_session_and_flags_win,
        ),
        (
            "network_effects_are_brokered_and_denied_ones_never_reach_the_network",
            network_effects_are_brokered_and_denied_ones_never_reach_the_network,
        ),
        (
            "python_and_node_run_unmodified_and_governed",
            python_and_node_run_unmodified_and_governed,
        ),
        (
            "a_killed_enforcer_leaves_no_governed_agent_running",
            a_killed_enforcer_leaves_no_governed_agent_running,
        ),
        (
            "a_flood_of_governed_calls_is_held_to_the_rate_limit",
            a_flood_of_governed_calls_is_held_to_the_rate_limit,
        ),
        (
            "a_governed_session_writes_checkpoints_while_idle",
            a_governed_session_writes_checkpoints_while_idle,
        ),
    ];
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = arguments.test_threads.or(Some(1));
    let trials = checks
        .into_iter()
        .map(|(name, check)| libtest_mimic::Trial::test(name, move || Ok(check()?)))
        .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}
