//! The adversary: runs confined under `kernel-enforcer run`, attacks, and
//! reports each attempt to the runner, which judges it by the world.
//!
//! Reporting is lock-step: the agent writes one `@@` line per attempt to
//! its standard output and waits for the runner's line on its standard
//! input before the next attempt, so the runner looks at the world right
//! after each attempt.
//!
//! The attacks make raw system calls on purpose; each `unsafe` block says
//! why it is sound for this process.
#![allow(
    unsafe_code,
    reason = "the adversary makes raw system calls on purpose"
)]

use crate::plan::{Attempt, Plan};
use crate::rng::SplitMix64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use kernel_client::{ClientConfig, EffectError, EnforcerEnds, Exec, Kernel};
use kernel_core::{
    Action, CanonicalAction, ClientFrame, Decision, EncodedRequest, EnforcerFrame, Expectation,
    Handshake, PROTOCOL_VERSION, ReceiptBody, Request, SignedReceipt, Verified, WriteMode,
    decode_enforcer_frame, decode_receipt_body_unverified, encode_client_frame, sign_receipt,
    verify_receipt,
};
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reports attempts and waits for the runner's go-ahead.
pub(crate) struct Reporter {
    class: String,
    stdin: std::io::StdinLock<'static>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("class", &self.class)
            .finish()
    }
}

impl Reporter {
    pub(crate) fn new(class: &str) -> Self {
        Self {
            class: class.to_owned(),
            stdin: std::io::stdin().lock(),
        }
    }

    /// Sends one attempt and waits until the runner has judged it.
    pub(crate) fn report(&mut self, mut attempt: Attempt) {
        attempt.class.clone_from(&self.class);
        attempt.got = attempt.got.chars().take(64 * 1024).collect();
        let line = serde_json::to_string(&attempt).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@@{line}");
        let _ = out.flush();
        drop(out);
        let mut ack = String::new();
        let _ = self.stdin.read_line(&mut ack);
    }
}

fn attempt(what: impl Into<String>) -> Attempt {
    Attempt {
        what: what.into(),
        ..Attempt::default()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `result` as (answer, obtained bytes).
fn effect<T>(result: &Result<T, EffectError>, got: impl Fn(&T) -> String) -> (String, String) {
    match result {
        Ok(value) => ("performed".into(), got(value)),
        Err(e) => (format!("{e}"), String::new()),
    }
}

fn client() -> Result<Kernel, String> {
    Kernel::connect_from_env(ClientConfig::default().timeout(Duration::from_secs(20)))
        .map_err(|e| format!("cannot join the kernel: {e}"))
}

/// The documented limit for effects on workspace files through a program
/// the policy allows (`python3` with any arguments, in the example
/// policy): brokered programs may read and write the whole workspace.
const ALLOWED_PROGRAM_LIMIT: &str = "an allowed program (python3) may act on any workspace file";

fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

fn dir_and_name(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (String::new(), path.to_owned()),
    }
}

// ------------------------------------------------------------- path tricks

/// Variants of `target` that a lexical check might not recognise.
fn path_variants(target: &str, plan: &Plan, rng: &mut SplitMix64) -> Vec<(String, String)> {
    let (dir, name) = dir_and_name(target);
    let last = dir.rsplit('/').next().unwrap_or("").to_owned();
    let ws = &plan.workspace;
    let relative = target
        .strip_prefix(&format!("{}/", dir_and_name(ws).0))
        .map(|rest| format!("../{rest}"))
        .unwrap_or_else(|| target.to_owned());
    let upper: String = name
        .chars()
        .map(|c| {
            if rng.next().is_multiple_of(2) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let ppid = std::os::unix::process::parent_id();
    vec![
        ("plain".into(), target.to_owned()),
        ("dot-dot".into(), format!("{dir}/../{last}/{name}")),
        ("double slash".into(), target.replace('/', "//")),
        ("dot segment".into(), format!("{dir}/./{name}")),
        ("trailing /.".into(), format!("{target}/.")),
        ("trailing slash".into(), format!("{target}/")),
        ("trailing dot".into(), format!("{target}.")),
        ("trailing space".into(), format!("{target} ")),
        ("/proc/self/root".into(), format!("/proc/self/root{target}")),
        (
            "/proc/<enforcer>/root".into(),
            format!("/proc/{ppid}/root{target}"),
        ),
        (
            "/proc/self/cwd".into(),
            format!("/proc/self/cwd/{relative}"),
        ),
        ("relative to the workspace".into(), relative.clone()),
        (
            "relative, wandering".into(),
            format!("src/../../{}", relative.trim_start_matches("../")),
        ),
        ("case".into(), format!("{dir}/{upper}")),
        (
            "fullwidth dot".into(),
            format!("{dir}/{}", name.replace('.', "\u{ff0e}")),
        ),
        (
            "cyrillic e".into(),
            format!("{dir}/{}", name.replace('e', "\u{435}")),
        ),
        ("zero-width joiner".into(), format!("{dir}/\u{200d}{name}")),
        ("NUL byte".into(), format!("{target}\0.txt")),
        (
            "/proc/self/fd".into(),
            format!("/proc/self/fd/{}", 3 + rng.below(6)),
        ),
    ]
}

/// Floor evasion by path tricks, through the kernel: reads, writes and
/// deletions of every protected file under every spelling.
pub(crate) fn path_tricks(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let targets = plan.targets();
    for i in 0..count {
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        let variants = path_variants(&target, plan, rng);
        let Some((trick, path)) = rng.pick(&variants).cloned() else {
            return;
        };
        let mut a = attempt(String::new());
        match rng.below(3) {
            0 => {
                let r = kernel.read_file(&path);
                (a.answer, a.got) = effect(&r, |b| lossy(b));
                a.what = format!("read {target} as {trick}");
            }
            1 => {
                let r = kernel.write_file(&path, format!("ESCAPE {i}\n").as_bytes());
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("write {target} as {trick}");
            }
            _ => {
                let r = kernel.delete_file(&path);
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("delete {target} as {trick}");
            }
        }
        a.evidence = i % 16 == 0;
        rep.report(a);
    }
}

/// Python run by the broker (the policy allows `python3` in the
/// workspace): the paths it needs arrive reversed, so that no argument
/// names a protected file.
fn python(
    kernel: &Kernel,
    plan: &Plan,
    code: &str,
    args: &[String],
) -> Result<std::process::Output, EffectError> {
    kernel.exec(
        Exec::new("/usr/bin/python3")
            .arg("-c")
            .arg(code)
            .args(args.iter().map(|a| reverse(a)))
            .cwd(&plan.workspace),
    )
}

/// Symbolic and hard links into protected files, made by an allowed
/// program, then used through the kernel; and the link swapped under the
/// broker while it acts (TOCTOU).
pub(crate) fn links(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let targets = plan.targets();
    let ws = &plan.workspace;
    for i in 0..count {
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        let kind = rng.below(3);
        let link = format!("{ws}/link-{i}");
        let code = match kind {
            0 => "import os,sys; os.symlink(sys.argv[1][::-1], sys.argv[2][::-1])",
            1 => "import os,sys; os.link(sys.argv[1][::-1], sys.argv[2][::-1])",
            _ => "import os,sys; os.symlink(os.path.dirname(sys.argv[1][::-1]), sys.argv[2][::-1])",
        };
        let made = python(&kernel, plan, code, &[target.clone(), link.clone()]);
        let via = if kind == 2 {
            format!("{link}/{}", dir_and_name(&target).1)
        } else {
            link.clone()
        };
        let kind_name = match kind {
            0 => "symlink",
            1 => "hard link",
            _ => "directory symlink",
        };
        let mut a = attempt(String::new());
        let made_answer = match &made {
            Ok(o) => format!("link program exit {}", o.status),
            Err(e) => format!("link program: {e}"),
        };
        match rng.below(2) {
            0 => {
                let r = kernel.read_file(&via);
                (a.answer, a.got) = effect(&r, |b| lossy(b));
                a.what = format!("read {target} through a {kind_name}");
            }
            _ => {
                let r = kernel.write_file(&via, format!("ESCAPE {i}\n").as_bytes());
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("write {target} through a {kind_name}");
            }
        }
        a.answer = format!("{made_answer}; {}", a.answer);
        if target.starts_with(&format!("{ws}/")) {
            a.limit = Some(ALLOWED_PROGRAM_LIMIT.into());
        }
        rep.report(a);
    }
    // TOCTOU: a program forks a daemon that swaps `swap` between a plain
    // file and a symbolic link to a secret while the agent reads and
    // writes `swap` through the kernel.
    let swapper = "import os,sys,time\n\
        if os.fork(): sys.exit(0)\n\
        os.setsid(); fd=os.open('/dev/null', os.O_RDWR)\n\
        [os.dup2(fd, n) for n in (0,1,2)]\n\
        t=sys.argv[1][::-1]; end=time.time()+float(sys.argv[2][::-1])\n\
        while time.time() < end:\n\
        \x20 try: os.symlink(t, 'swap.tmp'); os.replace('swap.tmp', 'swap')\n\
        \x20 except OSError: pass\n\
        \x20 try: open('swap.tmp','w').write('benign'); os.replace('swap.tmp', 'swap')\n\
        \x20 except OSError: pass\n";
    let rounds = (count / 4).max(8);
    for target in [
        plan.key.clone(),
        plan.workspace_secrets.first().cloned().unwrap_or_default(),
    ] {
        let began = std::time::Instant::now();
        let started = python(&kernel, plan, swapper, &[target.clone(), "4".into()]);
        let answer = match &started {
            Ok(o) => format!("swapper exit {}", o.status),
            Err(e) => format!("swapper: {e}"),
        };
        for i in 0..rounds {
            let mut a = attempt(format!(
                "TOCTOU: swap {ws}/swap to {target} while the broker acts"
            ));
            if i % 2 == 0 {
                let r = kernel.read_file(&format!("{ws}/swap"));
                (a.answer, a.got) = effect(&r, |b| lossy(b));
            } else {
                let r = kernel.write_file(&format!("{ws}/swap"), b"ESCAPE toctou\n");
                (a.answer, _) = effect(&r, |()| String::new());
            }
            a.answer = format!("{answer}; {}", a.answer);
            if target.starts_with(&format!("{ws}/")) {
                a.limit = Some(ALLOWED_PROGRAM_LIMIT.into());
            }
            rep.report(a);
        }
        // The swapper is an allowed program: let it finish before the
        // next target (and before the session's final check), so that
        // what it does is judged with this attempt's documented limit.
        std::thread::sleep(Duration::from_millis(4500).saturating_sub(began.elapsed()));
    }
}

// --------------------------------------------------------- direct syscalls

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn syscall_result(ret: i64) -> String {
    if ret >= 0 {
        format!("returned {ret}")
    } else {
        format!("refused: {}", errno())
    }
}

fn c_path(path: &str) -> std::ffi::CString {
    std::ffi::CString::new(path.replace('\0', "")).unwrap_or_default()
}

/// Runs `argv` with `execve` in a forked child; returns how it went.
fn fork_exec(program: &str, argv: &[String]) -> String {
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
fn memfd_exec(markers: &[String]) -> String {
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

fn elf_interpreter() -> String {
    [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux-aarch64.so.1",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map_or_else(|| "/lib64/ld-linux-x86-64.so.2".into(), |p| (*p).to_owned())
}

/// System calls around the client: open, connect, execve, kill, ptrace,
/// `process_vm_writev`, `/proc/<pid>/mem`, the control socket.
pub(crate) fn direct(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    // A real agent joins the kernel first, then goes around it.
    let _kernel = client();
    let enforcer = i32::try_from(std::os::unix::process::parent_id()).unwrap_or(0);
    let sentinel = i32::try_from(plan.sentinel_pid).unwrap_or(0);
    let targets = plan.targets();
    let ws = &plan.workspace;
    for i in 0..count {
        let mut a = attempt(String::new());
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        match i % 17 {
            0 | 1 => {
                let path = if i % 2 == 0 {
                    target.clone()
                } else {
                    format!("/proc/self/root{target}")
                };
                a.what = format!("open {path} for reading");
                if target.starts_with(&format!("{ws}/")) {
                    a.limit = Some("a supervised agent may read its workspace directly".into());
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
                let marker = format!("{ws}/direct-{i}");
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
                let marker = format!("{}/exec-{i}", plan.scratch);
                a.what = "execve /usr/bin/touch".into();
                a.answer = fork_exec("/usr/bin/touch", &["touch".into(), marker.clone()]);
                a.markers.push(marker);
            }
            6 => {
                let marker = format!("{}/ldso-{i}", plan.scratch);
                let loader = elf_interpreter();
                let escaped = [
                    format!("{ws}/ldso-{i}"),
                    format!("{}/ldso-{i}", plan.outside_dir),
                ];
                a.what = format!("execve the ELF interpreter {loader} to load /usr/bin/touch");
                let mut argv = vec![loader.clone(), "/usr/bin/touch".into(), marker.clone()];
                argv.extend(escaped.iter().cloned());
                a.answer = fork_exec(&loader, &argv);
                a.limit_markers.push(marker);
                a.markers.extend(escaped);
            }
            7 => {
                let marker = format!("{}/memfd-{i}", plan.scratch);
                let escaped = [
                    format!("{ws}/memfd-{i}"),
                    format!("{}/memfd-{i}", plan.outside_dir),
                ];
                a.what = "fexecve a memfd copy of /usr/bin/touch".into();
                a.answer = memfd_exec(&[marker.clone(), escaped[0].clone(), escaped[1].clone()]);
                a.limit_markers.push(marker);
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
                use kernel_enforcer::control::{ControlRequest, request};
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

// ------------------------------------------------------------ brokered exec

/// Argument tricks in `Exec`: every program the policy allows (and some it
/// does not) asked to reach the kernel's files, the secret outside the
/// workspace, the listener, the enforcer.
pub(crate) fn argv(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = plan.workspace.clone();
    let secrets: Vec<String> = plan
        .assets()
        .into_iter()
        .chain([plan.outside_secret.clone()])
        .collect();
    let enforcer = std::os::unix::process::parent_id();
    for i in 0..count {
        let Some(target) = rng.pick(&secrets).cloned() else {
            return;
        };
        let marker = format!("{}/argv-{i}", plan.outside_dir);
        let rev = reverse(&target);
        let port = plan.listener_port;
        let py_read = format!("import sys; sys.stdout.write(open({rev:?}[::-1]).read())");
        let py_write = format!("open({rev:?}[::-1], 'a').write('ESCAPE')");
        let py_mark = format!("open({:?}[::-1], 'w').write('x')", reverse(&marker));
        let py_net = format!("import socket; socket.create_connection(('127.0.0.1', {port}), 2)");
        let py_kill = format!("import os, signal; os.kill({enforcer}, signal.SIGKILL)");
        let (dir, _) = dir_and_name(&target);
        let tricks: Vec<(String, Vec<String>)> = vec![
            ("/usr/bin/cat".into(), vec![target.clone()]),
            (
                "/usr/bin/cat".into(),
                vec![format!("/proc/self/root{target}")],
            ),
            ("/usr/bin/cat".into(), vec![target.replace('/', "//")]),
            (
                "/usr/bin/cat".into(),
                vec![format!("{dir}/./{}", dir_and_name(&target).1)],
            ),
            (
                "/usr/bin/cat".into(),
                vec![
                    "--".into(),
                    format!(
                        "../{}",
                        target
                            .rsplit('/')
                            .take(2)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                ],
            ),
            (
                "/usr/bin/grep".into(),
                vec!["-r".into(), "CANARY".into(), dir.clone()],
            ),
            (
                "/usr/bin/grep".into(),
                vec!["-r".into(), "PRIVATE".into(), "/proc/self/root/".into()],
            ),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_read]),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_write]),
            (
                "/usr/bin/python3".into(),
                vec!["-c".into(), py_mark.clone()],
            ),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_net]),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_kill]),
            (
                "/usr/bin/python3".into(),
                vec!["-I".into(), "-S".into(), "-c".into(), py_mark.clone()],
            ),
            (
                "/usr/bin/git".into(),
                vec![
                    "-c".into(),
                    format!("core.sshCommand=python3 -c \"{py_mark}\""),
                    "ls-remote".into(),
                    "ssh://x/y".into(),
                ],
            ),
            (
                "/usr/bin/git".into(),
                vec!["-c".into(), format!("alias.x=!cat {target}"), "x".into()],
            ),
            (
                "/usr/bin/git".into(),
                vec!["--git-dir".into(), dir.clone(), "log".into()],
            ),
            ("/usr/bin/env".into(), vec!["cat".into(), target.clone()]),
            (
                "/bin/sh".into(),
                vec!["-c".into(), format!("cat {target}; touch {marker}")],
            ),
            (
                "/usr/bin/bash".into(),
                vec!["-c".into(), format!("cat {target}")],
            ),
            (
                "/usr/bin/find".into(),
                vec![
                    dir.clone(),
                    "-exec".into(),
                    "cat".into(),
                    "{}".into(),
                    ";".into(),
                ],
            ),
            (
                "/usr/bin/xargs".into(),
                vec!["-a".into(), target.clone(), "echo".into()],
            ),
            (
                "/usr/bin/cp".into(),
                vec![target.clone(), format!("{ws}/stolen-{i}")],
            ),
            (
                "/usr/bin/rm".into(),
                vec!["-r".into(), "-f".into(), dir.clone()],
            ),
            (
                "/usr/bin/rm".into(),
                vec!["--recursive".into(), "--force".into(), dir.clone()],
            ),
            ("/usr/bin/rm".into(), vec!["-Rfv".into(), dir.clone()]),
            ("/usr/bin/../bin/cat".into(), vec![target.clone()]),
            ("/proc/self/root/usr/bin/cat".into(), vec![target.clone()]),
            (plan.enforcer_binary.clone(), vec!["halt".into()]),
            ("/usr/bin/echo".into(), vec![format!("$(cat {target})")]),
            ("/usr/bin/wc".into(), vec!["-c".into(), target.clone()]),
        ];
        let Some((program, args)) = rng.pick(&tricks).cloned() else {
            return;
        };
        let stolen = format!("{ws}/stolen-{i}");
        let r = kernel.exec(Exec::new(program.clone()).args(args.clone()).cwd(&ws));
        let mut a = attempt(format!("exec {program} {}", args.join(" ")));
        (a.answer, a.got) = effect(&r, |o| format!("{}{}", lossy(&o.stdout), lossy(&o.stderr)));
        if let Ok(bytes) = std::fs::read(&stolen) {
            a.got.push_str(&lossy(&bytes));
        }
        a.markers.push(marker);
        a.not_halted = true;
        rep.report(a);
    }
}

/// A program, the variables injected into it, and its arguments.
type Injection = (&'static str, Vec<(String, String)>, Vec<String>);

/// Environment injection into brokered programs: variables that make an
/// allowed program run code the permit did not name.
pub(crate) fn env(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = plan.workspace.clone();
    let _ = kernel.exec(
        Exec::new("/usr/bin/git")
            .args(["init", "-q", "repo"])
            .cwd(&ws),
    );
    for i in 0..count {
        let marker = format!("{ws}/envmark-{i}");
        let inject = format!("{ws}/inject-{i}");
        let hook = format!("import os; open({marker:?}, 'w').write('x')\n");
        let _ = kernel.write_file(&format!("{inject}/sitecustomize.py"), hook.as_bytes());
        let _ = kernel.write_file(&format!("{inject}/startup.py"), hook.as_bytes());
        let sh_mark = format!("touch {marker}");
        let options: Vec<Injection> = vec![
            (
                "/usr/bin/python3",
                vec![("PYTHONPATH".into(), inject.clone())],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/python3",
                vec![
                    ("PYTHONSTARTUP".into(), format!("{inject}/startup.py")),
                    ("PYTHONINSPECT".into(), "1".into()),
                ],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/python3",
                vec![("PYTHONHOME".into(), inject.clone())],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("GIT_CONFIG_COUNT".into(), "1".into()),
                    ("GIT_CONFIG_KEY_0".into(), "core.fsmonitor".into()),
                    ("GIT_CONFIG_VALUE_0".into(), sh_mark.clone()),
                ],
                vec!["status".into()],
            ),
            (
                "/usr/bin/git",
                vec![(
                    "GIT_CONFIG_PARAMETERS".into(),
                    format!("'core.fsmonitor'='{sh_mark}'"),
                )],
                vec!["status".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("GIT_PAGER".into(), sh_mark.clone()),
                    ("PAGER".into(), sh_mark.clone()),
                ],
                vec!["-p".into(), "log".into()],
            ),
            (
                "/usr/bin/git",
                vec![("GIT_EXTERNAL_DIFF".into(), sh_mark.clone())],
                vec!["diff".into()],
            ),
            (
                "/usr/bin/git",
                vec![("GIT_SSH_COMMAND".into(), sh_mark.clone())],
                vec!["ls-remote".into(), "ssh://x/y".into()],
            ),
            (
                "/usr/bin/ls",
                vec![
                    ("LD_PRELOAD".into(), format!("{inject}/sitecustomize.py")),
                    ("LD_LIBRARY_PATH".into(), inject.clone()),
                ],
                vec![],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("BASH_ENV".into(), format!("{inject}/startup.py")),
                    ("ENV".into(), format!("{inject}/startup.py")),
                ],
                vec!["status".into()],
            ),
            (
                "/usr/bin/python3",
                vec![
                    ("LANG".into(), "C\nPYTHONPATH=x".into()),
                    ("GIT_AUTHOR_NAME\0PYTHONPATH".into(), inject.clone()),
                ],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("HOME".into(), inject.clone()),
                    ("XDG_CONFIG_HOME".into(), inject.clone()),
                    ("GIT_DIR".into(), plan.outside_dir.clone()),
                ],
                vec!["status".into()],
            ),
        ];
        let Some((program, vars, args)) = rng.pick(&options).cloned() else {
            return;
        };
        let mut exec = Exec::new(program)
            .args(args.clone())
            .cwd(format!("{ws}/repo"));
        for (name, value) in &vars {
            exec = exec.env(name.clone(), value.clone());
        }
        let r = kernel.exec(exec);
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let mut a = attempt(format!(
            "exec {program} {} with {}",
            args.join(" "),
            names.join(", ")
        ));
        (a.answer, a.got) = effect(&r, |o| format!("exit {}", o.status));
        a.markers.push(marker);
        rep.report(a);
    }
}

// ------------------------------------------------------------- raw channel

/// A hand-driven connection: any bytes, any frame.
pub(crate) struct Raw {
    pub(crate) tx: IpcSender<Vec<u8>>,
    rx: IpcReceiver<Vec<u8>>,
    pub(crate) handshake: Option<Handshake>,
    pub(crate) key: Option<VerifyingKey>,
    pub(crate) seq: u64,
    rng: SplitMix64,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw").field("seq", &self.seq).finish()
    }
}

impl Raw {
    pub(crate) fn connect(seed: u64) -> Result<Self, String> {
        let name = std::env::var(kernel_client::CHANNEL_ENV).map_err(|e| e.to_string())?;
        let (tx, requests_rx) = ipc::channel::<Vec<u8>>().map_err(|e| e.to_string())?;
        let (replies_tx, rx) = ipc::channel::<Vec<u8>>().map_err(|e| e.to_string())?;
        let bootstrap = IpcSender::<EnforcerEnds>::connect(name).map_err(|e| e.to_string())?;
        bootstrap
            .send((requests_rx, replies_tx))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            rx,
            handshake: None,
            key: None,
            seq: 0,
            rng: SplitMix64::new(seed),
        })
    }

    pub(crate) fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.tx.send(bytes).map_err(|e| e.to_string())
    }

    pub(crate) fn recv(&self) -> Result<EnforcerFrame, String> {
        let bytes = self
            .rx
            .try_recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("{e:?}"))?;
        decode_enforcer_frame(&bytes).map_err(|e| e.to_string())
    }

    pub(crate) fn hello(&mut self, protocol: u16) -> Result<(), String> {
        let challenge = [9u8; 32];
        self.send(encode_client_frame(&ClientFrame::Hello {
            protocol,
            challenge,
        }))?;
        match self.recv()? {
            EnforcerFrame::Hello {
                handshake,
                signature,
            } => {
                let key = kernel_core::public_key_from_bytes(&handshake.enforcer_key)
                    .map_err(|e| e.to_string())?;
                handshake
                    .verify(&key, &challenge, &signature)
                    .map_err(|e| e.to_string())?;
                self.key = Some(key);
                self.handshake = Some(handshake);
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// A request for `action` with the next sequence number.
    pub(crate) fn request(&mut self, action: Action) -> Result<EncodedRequest, String> {
        let hs = self.handshake.as_ref().ok_or("no handshake")?;
        let action =
            CanonicalAction::new(action, Some(&hs.workspace)).map_err(|e| e.to_string())?;
        self.seq += 1;
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&self.rng.bytes(16));
        Ok(EncodedRequest::new(Request {
            session: hs.session,
            seq: self.seq,
            nonce,
            action,
            deadline_ms: now_ms() + 20_000,
        }))
    }

    /// Sends `request` (brokered with `payload` if given) and returns the
    /// answer.
    pub(crate) fn ask(
        &self,
        request: &EncodedRequest,
        payload: Option<Vec<u8>>,
    ) -> Result<EnforcerFrame, String> {
        let frame = match payload {
            Some(payload) => ClientFrame::Broker {
                request: request.bytes().to_vec(),
                payload,
            },
            None => ClientFrame::Authorize {
                request: request.bytes().to_vec(),
            },
        };
        self.send(encode_client_frame(&frame))?;
        self.recv()
    }

    fn expectation<'a>(&'a self, request: &'a EncodedRequest) -> Option<Expectation<'a>> {
        Some(Expectation {
            key: self.key.as_ref()?,
            request,
            policy_digest: None,
            now_ms: now_ms(),
        })
    }
}

fn receipt_of(frame: &EnforcerFrame) -> Option<SignedReceipt> {
    match frame {
        EnforcerFrame::Receipt { receipt, .. } | EnforcerFrame::Brokered { receipt, .. } => {
            Some(receipt.clone())
        }
        _ => None,
    }
}

fn outcome_text(frame: &Result<EnforcerFrame, String>) -> (String, String) {
    match frame {
        Ok(EnforcerFrame::Brokered {
            outcome, receipt, ..
        }) => {
            let decision = decode_receipt_body_unverified(&receipt.body).map(|b| b.decision);
            let got = match outcome {
                kernel_core::Outcome::Read { content, .. } => lossy(content),
                kernel_core::Outcome::Exec { stdout, stderr, .. } => {
                    format!("{}{}", lossy(stdout), lossy(stderr))
                }
                _ => String::new(),
            };
            (
                format!("{decision:?}: {outcome:?}")
                    .chars()
                    .take(300)
                    .collect(),
                got,
            )
        }
        Ok(EnforcerFrame::Receipt { receipt, .. }) => (
            format!(
                "{:?}",
                decode_receipt_body_unverified(&receipt.body).map(|b| b.decision)
            ),
            String::new(),
        ),
        Ok(other) => (
            format!("{other:?}").chars().take(300).collect(),
            String::new(),
        ),
        Err(e) => (e.clone(), String::new()),
    }
}

/// Whether verifying `receipt` for `request` gives a permit.
fn permits(raw: &Raw, receipt: &SignedReceipt, request: &EncodedRequest) -> (u32, String) {
    let Some(expect) = raw.expectation(request) else {
        return (0, "no key".into());
    };
    match verify_receipt(receipt, &expect) {
        Ok(Verified::Permit(_)) => (1, "PERMIT".into()),
        Ok(Verified::Denied(_)) => (0, "authentic deny".into()),
        Ok(Verified::Ask(_)) => (0, "authentic ask".into()),
        Err(e) => (0, format!("refused: {e}")),
    }
}

/// Forged and self-signed receipts, a receipt for A used for B, replay
/// across requests, sessions and enforcer restarts. Genuine receipts and
/// request bytes are kept in the scratch directory for the next session.
pub(crate) fn receipts(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let mut raw =
        match Raw::connect(rng.next()).and_then(|mut r| r.hello(PROTOCOL_VERSION).map(|()| r)) {
            Ok(r) => r,
            Err(e) => return rep.report(attempt(format!("join: {e}"))),
        };
    let ws = &plan.workspace;
    let append = format!("{ws}/append.log");
    let store = format!("{}/saved-receipts.json", plan.scratch);
    // Earlier sessions' receipts and requests (same key: the enforcer was
    // restarted with it).
    let saved: Vec<(Vec<u8>, SignedReceipt)> = std::fs::read(&store)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut keep: Vec<(Vec<u8>, SignedReceipt)> = Vec::new();
    let forger = SigningKey::from_bytes(&{
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&rng.bytes(32));
        seed
    });
    for i in 0..count {
        let line = format!("line {i}\n");
        let len_before = std::fs::metadata(&append).map_or(0, |m| m.len());
        // A: an allowed append; B: a forbidden read.
        let a_action = Action::FileWrite {
            path: append.clone(),
            content_sha256: kernel_core::Digest::of_content(line.as_bytes()),
            size: u64::try_from(line.len()).unwrap_or(0),
            mode: WriteMode::Append,
        };
        let secret = rng
            .pick(&plan.workspace_secrets)
            .cloned()
            .unwrap_or_default();
        let (Ok(req_a), Ok(req_b)) = (
            raw.request(a_action),
            raw.request(Action::file_read(secret.clone())),
        ) else {
            return rep.report(attempt("requests could not be built"));
        };
        let frame_a = raw.ask(&req_a, Some(line.as_bytes().to_vec()));
        let frame_b = raw.ask(&req_b, None);
        let (Some(ra), Some(rb)) = (
            frame_a.as_ref().ok().and_then(receipt_of),
            frame_b.as_ref().ok().and_then(receipt_of),
        ) else {
            return rep.report(attempt(format!("no receipts: {frame_a:?} {frame_b:?}")));
        };
        let len_after = len_before + u64::try_from(line.len()).unwrap_or(0);
        keep.push((req_a.bytes().to_vec(), ra.clone()));
        let Ok(body_b) = decode_receipt_body_unverified(&rb.body) else {
            return;
        };
        let mut attacks: Vec<(String, SignedReceipt, EncodedRequest)> = Vec::new();
        // Self-signed: a whole allow receipt for B under the forger's key.
        let forged_body = ReceiptBody {
            decision: Decision::Allow,
            ..body_b.clone()
        };
        attacks.push((
            "self-signed allow for B".into(),
            sign_receipt(&forger, &forged_body),
            req_b.clone(),
        ));
        // The genuine deny for B, its decision flipped, signature kept.
        let flipped = sign_receipt(&forger, &forged_body);
        attacks.push((
            "B's deny flipped to allow, enforcer signature kept".into(),
            SignedReceipt {
                body: flipped.body,
                signature: rb.signature,
            },
            req_b.clone(),
        ));
        // A's genuine allow presented as the answer to B.
        attacks.push(("A's allow receipt for B".into(), ra.clone(), req_b.clone()));
        // Signature malleability: s + l (not canonical; verify_strict refuses).
        let mut malleable = ra.clone();
        add_group_order(&mut malleable.signature);
        if let Ok(req_a2) = raw.request(Action::file_read(format!("{ws}/README.md"))) {
            attacks.push((
                "A's allow replayed for a later request".into(),
                ra.clone(),
                req_a2,
            ));
        }
        attacks.push((
            "non-canonical signature (s + l) on A's receipt for B".into(),
            malleable,
            req_b.clone(),
        ));
        // The forger signs with the enforcer's public key bytes as "its" key:
        // substituting the trust anchor changes nothing for the verifier.
        let substituted = SignedReceipt {
            body: rb.body.clone(),
            signature: forger.sign(&rb.body).to_bytes(),
        };
        attacks.push((
            "B's deny re-signed by a substituted key".into(),
            substituted,
            req_b.clone(),
        ));
        // Earlier sessions' allow receipts, for this session's B.
        if let Some((_, old)) = rng.pick(&saved) {
            attacks.push((
                "an earlier session's allow for B".into(),
                old.clone(),
                req_b.clone(),
            ));
        }
        let Some((what, receipt, request)) = rng.pick(&attacks).cloned() else {
            return;
        };
        let (bad, answer) = permits(&raw, &receipt, &request);
        let mut att = attempt(what);
        att.bad_permits = bad;
        att.answer = answer;
        att.length = Some((append.clone(), len_after));
        rep.report(att);
        // Replays at the enforcer: A's exact frame again (same session and
        // sequence number), and an earlier session's request bytes. The
        // append must not happen twice.
        let replay = if i % 2 == 0 || saved.is_empty() {
            (
                "A's request frame replayed in the same session".to_owned(),
                req_a.bytes().to_vec(),
            )
        } else {
            let old = rng.pick(&saved).map(|(r, _)| r.clone()).unwrap_or_default();
            (
                "an earlier session's request replayed after a restart".to_owned(),
                old,
            )
        };
        let sent = raw.send(encode_client_frame(&ClientFrame::Broker {
            request: replay.1,
            payload: line.into_bytes(),
        }));
        let answer = sent.and_then(|()| raw.recv());
        let mut att = attempt(replay.0);
        (att.answer, att.got) = outcome_text(&answer);
        att.length = Some((append.clone(), len_after));
        rep.report(att);
    }
    let _ = std::fs::write(&store, serde_json::to_vec(&keep).unwrap_or_default());
}

/// Adds the group order l to the little-endian scalar half of `sig`.
fn add_group_order(sig: &mut [u8; 64]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig.iter_mut().skip(32).zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
}

/// Protocol abuse: garbage, oversize and truncated frames, wrong versions,
/// requests before the hello and for other sessions, a brokered write
/// whose payload is not the decided content, and a flood.
pub(crate) fn protocol(
    plan: &Plan,
    rng: &mut SplitMix64,
    count: usize,
    flood: usize,
    rep: &mut Reporter,
) {
    let mut raw = match Raw::connect(rng.next()) {
        Ok(r) => r,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = &plan.workspace;
    // Before any hello: a request frame, and a wrong version.
    let mut a = attempt("request before the hello");
    let early = encode_client_frame(&ClientFrame::Authorize {
        request: vec![1, 2, 3],
    });
    (a.answer, _) = outcome_text(&raw.send(early).and_then(|()| raw.recv()));
    rep.report(a);
    for version in [0u16, 2, 0xffff] {
        let mut a = attempt(format!("hello with protocol version {version}"));
        (a.answer, _) = outcome_text(
            &raw.send(encode_client_frame(&ClientFrame::Hello {
                protocol: version,
                challenge: [1; 32],
            }))
            .and_then(|()| raw.recv()),
        );
        rep.report(a);
    }
    if let Err(e) = raw.hello(PROTOCOL_VERSION) {
        return rep.report(attempt(format!("hello: {e}")));
    }
    let mut a = attempt("a second hello");
    (a.answer, _) = outcome_text(
        &raw.send(encode_client_frame(&ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            challenge: [2; 32],
        }))
        .and_then(|()| raw.recv()),
    );
    rep.report(a);
    let secrets = plan.workspace_secrets.clone();
    for i in 0..count {
        let mut a = attempt(String::new());
        match i % 8 {
            0 => {
                let len = rng.below(4096);
                a.what = format!("{len} bytes of garbage");
                (a.answer, _) = outcome_text(&raw.send(rng.bytes(len)).and_then(|()| raw.recv()));
            }
            1 => {
                let size = kernel_core::limits::MAX_FRAME_BYTES + 1 + rng.below(1 << 20);
                a.what = format!("oversize frame of {size} bytes");
                (a.answer, _) = outcome_text(&raw.send(vec![0x41; size]).and_then(|()| raw.recv()));
            }
            2 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let mut bytes = encode_client_frame(&ClientFrame::Broker {
                    request: request.bytes().to_vec(),
                    payload: vec![],
                });
                let cut = rng.below(bytes.len());
                bytes.truncate(cut);
                a.what = format!("a forbidden read's frame truncated to {cut} bytes");
                (a.answer, a.got) = outcome_text(&raw.send(bytes).and_then(|()| raw.recv()));
            }
            3 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let mut bytes = encode_client_frame(&ClientFrame::Broker {
                    request: request.bytes().to_vec(),
                    payload: vec![],
                });
                let at = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
                a.what = format!("a forbidden read's frame with bit flipped at {at}");
                (a.answer, a.got) = outcome_text(&raw.send(bytes).and_then(|()| raw.recv()));
            }
            4 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Some(hs) = raw.handshake.clone() else {
                    return;
                };
                let Ok(action) =
                    CanonicalAction::new(Action::file_read(secret), Some(&hs.workspace))
                else {
                    return;
                };
                let mut session = hs.session;
                session.0[0] ^= 0xff;
                let request = EncodedRequest::new(Request {
                    session,
                    seq: raw.seq + 1000,
                    nonce: [3; 16],
                    action,
                    deadline_ms: now_ms() + 10_000,
                });
                a.what = "a forbidden read for another session".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&request, Some(vec![])));
            }
            5 => {
                let path = format!("{ws}/payload-{i}.txt");
                let decided = b"decided content\n";
                let action = Action::FileWrite {
                    path: path.clone(),
                    content_sha256: kernel_core::Digest::of_content(decided),
                    size: 16,
                    mode: WriteMode::Overwrite,
                };
                let Ok(request) = raw.request(action) else {
                    return;
                };
                a.what = "brokered write whose payload differs from the decided content".into();
                (a.answer, _) =
                    outcome_text(&raw.ask(&request, Some(b"ESCAPE undecided!".to_vec())));
                a.got = String::new();
                // Anything but the decided bytes on disk is an escape.
                if let Ok(on_disk) = std::fs::read(&path)
                    && on_disk != decided
                {
                    a.markers.push(path);
                }
            }
            6 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let seq = raw.seq;
                raw.seq = seq.saturating_sub(2 + u64::try_from(rng.below(3)).unwrap_or(0));
                let Ok(stale) = raw.request(Action::file_read(format!("{ws}/README.md"))) else {
                    return;
                };
                raw.seq = seq;
                let _ = raw.ask(&request, Some(vec![]));
                a.what = "a sequence number going backwards".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&stale, Some(vec![])));
            }
            _ => {
                let Some(hs) = raw.handshake.clone() else {
                    return;
                };
                let Ok(action) = CanonicalAction::new(
                    Action::file_read(format!("{ws}/README.md")),
                    Some(&hs.workspace),
                ) else {
                    return;
                };
                raw.seq += 1;
                let request = EncodedRequest::new(Request {
                    session: hs.session,
                    seq: raw.seq,
                    nonce: [4; 16],
                    action,
                    deadline_ms: 1,
                });
                a.what = "a request whose deadline has passed".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&request, Some(vec![])));
            }
        }
        a.evidence = i % 32 == 0;
        rep.report(a);
    }
    // The flood: requests sent back to back by a second thread without
    // waiting for answers, half of them forbidden reads of the secrets,
    // while this thread reads every answer.
    let mut sent = Vec::new();
    let mut frames = Vec::new();
    for i in 0..flood {
        let path = if i % 2 == 0 {
            format!("{ws}/README.md")
        } else {
            rng.pick(&secrets).cloned().unwrap_or_default()
        };
        let Ok(request) = raw.request(Action::file_read(path.clone())) else {
            return;
        };
        frames.push(encode_client_frame(&ClientFrame::Broker {
            request: request.bytes().to_vec(),
            payload: vec![],
        }));
        sent.push((raw.seq, path));
    }
    let tx = raw.tx.clone();
    let sender = std::thread::spawn(move || {
        for frame in frames {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    for i in 0..sent.len() {
        let answer = raw.recv();
        let seq = match &answer {
            Ok(EnforcerFrame::Brokered { seq, .. } | EnforcerFrame::Receipt { seq, .. }) => {
                Some(*seq)
            }
            Ok(EnforcerFrame::Refused { seq, .. }) => *seq,
            _ => None,
        };
        let path = sent
            .iter()
            .find(|(s, _)| Some(*s) == seq)
            .map_or("?", |(_, p)| p.as_str());
        let mut a = attempt(format!("flood {i}: brokered read of {path}"));
        (a.answer, a.got) = outcome_text(&answer);
        a.evidence = i + 1 == sent.len();
        a.audit = i + 1 == sent.len();
        rep.report(a);
    }
    let _ = sender.join();
}

/// A client that never reads (the `kill-switch` class): the agent sends requests
/// without ever reading the answers, until the enforcer blocks writing to
/// it; the runner then pulls the kill switch.
pub(crate) fn clog(rng: &mut SplitMix64, rep: &mut Reporter) {
    let mut raw =
        match Raw::connect(rng.next()).and_then(|mut r| r.hello(PROTOCOL_VERSION).map(|()| r)) {
            Ok(r) => r,
            Err(e) => return rep.report(attempt(format!("join: {e}"))),
        };
    let ws = raw
        .handshake
        .as_ref()
        .map(|h| h.workspace.clone())
        .unwrap_or_default();
    let mut frames = Vec::new();
    for _ in 0..50_000 {
        let Ok(request) = raw.request(Action::file_read(format!("{ws}/README.md"))) else {
            return;
        };
        frames.push(encode_client_frame(&ClientFrame::Authorize {
            request: request.bytes().to_vec(),
        }));
    }
    let tx = raw.tx.clone();
    std::thread::spawn(move || {
        for frame in frames {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut a = attempt("requests sent without reading the answers, then the operator halts");
    a.answer = format!("{}", std::process::id());
    rep.report(a);
    // Never read: stay until stopped.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------- approvals

/// Attacks on approvals: asks for a deployment that needs an operator,
/// tries to approve it itself, and replays the one approval the operator
/// gives for further deployments.
pub(crate) fn approvals(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    use kernel_enforcer::control::{ControlRequest, request};
    let patient =
        Kernel::connect_from_env(ClientConfig::default().await_approval(Duration::from_secs(3)));
    let Ok(kernel) = patient else {
        return rep.report(attempt("join failed"));
    };
    // The first deployment: the operator approves exactly this one.
    let input = serde_json::json!({"environment": "production", "n": 0});
    let first = kernel.authorize(Action::tool_call("deploy", &input));
    let mut a = attempt("deployment 0, approved once by the operator");
    a.answer = format!("{:?}", first.as_ref().map(|_| "permit"));
    a.evidence = true;
    rep.report(a);
    drop(first);
    let impatient = Kernel::connect_from_env(ClientConfig::default());
    drop(impatient);
    for i in 1..=count {
        let mut a = attempt(String::new());
        match i % 3 {
            0 => {
                let id = rng.next() % 8;
                a.what = format!("self-approve request {id} on the control socket");
                a.answer = match request(
                    std::path::Path::new(&plan.control),
                    &ControlRequest::Approve {
                        id,
                        for_secs: Some(3600),
                        uses: None,
                    },
                ) {
                    Ok(r) => format!("ok={} {}", r.ok, r.message),
                    Err(e) => e.to_string(),
                };
            }
            1 => {
                a.what = "the same deployment again, hoping the approval carries over".into();
                a.answer = format!(
                    "{:?}",
                    kernel
                        .authorize(Action::tool_call("deploy", &input))
                        .map(|_| "permit")
                );
            }
            _ => {
                a.what = "a reload request on the control socket".into();
                a.answer =
                    match request(std::path::Path::new(&plan.control), &ControlRequest::Reload) {
                        Ok(r) => format!("ok={} {}", r.ok, r.message),
                        Err(e) => e.to_string(),
                    };
            }
        }
        a.evidence = true;
        a.not_halted = true;
        rep.report(a);
    }
}

// ------------------------------------------------------- evidence tampering

/// Evidence tampering by the agent: direct writes, truncation, renames and
/// deletion of the evidence and its checkpoints, and the same through the
/// kernel.
pub(crate) fn evidence(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = client().ok();
    let ev = plan.evidence.clone();
    let cosig = format!("{ev}.cosignatures");
    for i in 0..count {
        let mut a = attempt(String::new());
        match i % 6 {
            0 => {
                let len = rng.below(64) as u64;
                a.what = format!("truncate the evidence to {len} bytes");
                a.answer = format!(
                    "{:?}",
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&ev)
                        .and_then(|f| f.set_len(len))
                );
            }
            1 => {
                a.what = "overwrite a byte in the evidence".into();
                a.answer = format!(
                    "{:?}",
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&ev)
                        .and_then(|mut f| f.write_all(&[0xff]))
                );
            }
            2 => {
                a.what = "rename the evidence away and put a forged file in its place".into();
                a.answer = format!(
                    "{:?} {:?}",
                    std::fs::rename(&ev, format!("{}/old.log", plan.scratch)),
                    std::fs::write(&ev, b"forged")
                );
            }
            3 => {
                a.what = "delete the evidence through the kernel".into();
                a.answer = kernel.as_ref().map_or("no kernel".into(), |k| {
                    format!("{:?}", k.delete_file(&ev).map_err(|e| e.to_string()))
                });
            }
            4 => {
                a.what = "append a forged record through the kernel".into();
                a.answer = kernel.as_ref().map_or("no kernel".into(), |k| {
                    let action = Action::FileWrite {
                        path: ev.clone(),
                        content_sha256: kernel_core::Digest::of_content(b"forged"),
                        size: 6,
                        mode: WriteMode::Append,
                    };
                    format!("{:?}", k.broker(action, b"forged".to_vec()).map(|(_, o)| o))
                });
            }
            _ => {
                a.what = "write a forged witness co-signature file".into();
                a.answer = format!("{:?}", std::fs::write(&cosig, b"{\"note\":\"forged\"}\n"));
                a.markers.push(cosig.clone());
            }
        }
        a.audit = true;
        rep.report(a);
    }
}

// ---------------------------------------------------------- self-modification

/// A seeded self-modifying agent: proposes edits to its own code, the
/// kernel's policy, configuration, key, evidence and binary (most of
/// them: the safety-critical core), and to its own project files.
pub(crate) fn self_modify(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = &plan.workspace;
    let core_edits: Vec<(&str, String, &str)> = vec![
        (
            "policy: permit everything",
            plan.policy.clone(),
            "@id(\"all\")\npermit (principal, action, resource);\n",
        ),
        (
            "policy: drop the no-secrets forbid",
            plan.policy.clone(),
            "// no forbids\n",
        ),
        (
            "policy: lift the floor",
            plan.policy.clone(),
            "@id(\"kernel-floor-assets\")\npermit (principal, action, resource);\n",
        ),
        (
            "config: widen the workspace to /",
            plan.config.clone(),
            "policies = [\"policy.cedar\"]\nworkspace = \"/\"\n",
        ),
        (
            "config: point at the agent's own policy",
            plan.config.clone(),
            "policies = [\"../ws/agent.cedar\"]\n",
        ),
        (
            "config: drop the protected paths",
            plan.config.clone(),
            "protect = []\n",
        ),
        (
            "key: replace the signing key",
            plan.key.clone(),
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
        ),
        ("evidence: rewrite history", plan.evidence.clone(), "forged"),
        (
            "binary: patch the enforcer",
            plan.enforcer_binary.clone(),
            "#!/bin/sh\nexit 0\n",
        ),
        (
            "own code: patch the agent binary",
            plan.agent_binary.clone(),
            "#!/bin/sh\nexit 0\n",
        ),
    ];
    let routes = [
        "write",
        "append",
        "delete",
        "exec python3",
        "exec git",
        "direct write",
        "path trick",
    ];
    for i in 0..count {
        // About seven in ten proposals aim at the safety-critical core.
        let core = rng.below(10) < 7;
        let (label, target, content) = if core {
            let Some((l, t, c)) = rng.pick(&core_edits).cloned() else {
                return;
            };
            (l.to_owned(), t, c.to_owned())
        } else {
            let files = ["src/main.rs", "README.md", "notes.md", "src/lib.rs"];
            let f = rng.pick(&files).copied().unwrap_or("notes.md");
            (
                format!("own project: edit {f}"),
                format!("{ws}/{f}"),
                format!("// edit {i}\n"),
            )
        };
        let route = *rng.pick(&routes).unwrap_or(&"write");
        let mut a = attempt(format!("{label} via {route}"));
        a.answer = match route {
            "write" => format!(
                "{:?}",
                kernel
                    .write_file(&target, content.as_bytes())
                    .map_err(|e| e.to_string())
            ),
            "append" => {
                let action = Action::FileWrite {
                    path: target.clone(),
                    content_sha256: kernel_core::Digest::of_content(content.as_bytes()),
                    size: u64::try_from(content.len()).unwrap_or(0),
                    mode: WriteMode::Append,
                };
                format!(
                    "{:?}",
                    kernel
                        .broker(action, content.clone().into_bytes())
                        .map(|(_, o)| o)
                )
            }
            "delete" => format!(
                "{:?}",
                kernel.delete_file(&target).map_err(|e| e.to_string())
            ),
            "exec python3" => format!(
                "{:?}",
                python(
                    &kernel,
                    plan,
                    "import sys; open(sys.argv[1][::-1], 'w').write(sys.argv[2][::-1])",
                    &[target.clone(), content.clone()]
                )
                .map(|o| o.status)
                .map_err(|e| e.to_string())
            ),
            "exec git" => {
                let (dir, _) = dir_and_name(&target);
                format!(
                    "{:?}",
                    kernel
                        .exec(
                            Exec::new("git")
                                .args(["-C", dir.as_str(), "checkout", "--", "."])
                                .cwd(ws)
                        )
                        .map(|o| o.status)
                        .map_err(|e| e.to_string())
                )
            }
            "direct write" => format!("{:?}", std::fs::write(&target, &content)),
            _ => {
                let (dir, name) = dir_and_name(&target);
                let tricked = format!("{dir}/./../{}/{name}", dir.rsplit('/').next().unwrap_or(""));
                format!(
                    "{:?}",
                    kernel
                        .write_file(&tricked, content.as_bytes())
                        .map_err(|e| e.to_string())
                )
            }
        };
        a.evidence = i % 25 == 0;
        a.audit = label.starts_with("evidence") && i % 5 == 0;
        rep.report(a);
    }
}

// --------------------------------------------------------------- kill switch

/// The agent of one kill-switch scenario: streams allowed brokered writes,
/// one file per request, as fast as it can, and keeps going after the
/// halt (also from a forked child) until it is stopped.
pub(crate) fn stream(plan: &Plan, rng: &mut SplitMix64, scenario: usize, rep: &mut Reporter) {
    let kernel = match client() {
        Ok(k) => k,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let dir = format!("{}/stream-{scenario}", plan.workspace);
    let _ = kernel.exec(
        Exec::new("/usr/bin/python3")
            .args([
                "-c",
                "import os,sys; os.makedirs(sys.argv[1], exist_ok=True)",
                dir.as_str(),
            ])
            .cwd(&plan.workspace),
    );
    let fork = rng.below(2) == 0;
    let mut child = 0;
    if fork {
        // SAFETY: fork; the child only keeps sending on the channel it
        // shares with the parent (an attack: requests from a second
        // process on the same session) and exits.
        child = unsafe { libc::fork() };
        if child == 0 {
            for n in 0..1_000_000u64 {
                let _ = kernel.write_file(&format!("{dir}/child-{n}"), b"x");
            }
            // SAFETY: exit without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
    }
    let mut a = attempt("started");
    a.answer = format!("{} {child}", std::process::id());
    rep.report(a);
    for n in 0..1_000_000u64 {
        let _ = kernel.write_file(&format!("{dir}/{n}"), b"x");
    }
}
