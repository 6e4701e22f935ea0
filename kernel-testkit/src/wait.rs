//! Waiting for a condition until a deadline, and the processes a test
//! starts.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How often a wait looks at its condition.
const POLL: Duration = Duration::from_millis(20);

/// Polls `done` until it holds; fails the test, naming `what`, once
/// `limit` has passed without it.
///
/// `limit` is a bound on a hang, not a claim: make it generous, the wait
/// ends as soon as the condition holds.
pub fn wait_for(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    assert!(
        holds_within(limit, done),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Polls `done` until it holds (`true`) or `limit` has passed without it
/// (`false`), for a test that reports the failure itself.
pub fn holds_within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether any process has `dir` as its working directory (an agent, or
/// a program it started, still at work there).
pub fn works_in(dir: &Path) -> bool {
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
    })
}

/// A child process, killed and reaped when dropped (when the test fails
/// too).
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (a name such as `TERM`, `USR1`, `STOP`) to `pid` with
/// `kill`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether a process `pid` exists (a zombie not yet reaped counts).
pub fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether process `pid` has ended: gone, or dead and not yet reaped (a
/// zombie).
pub fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    })
}

/// This thread, as `/proc` names it (`PID/task/TID`), for
/// [`wait_until_asleep`].
pub fn this_thread() -> PathBuf {
    std::fs::read_link("/proc/thread-self").expect("/proc/thread-self")
}

/// Whether the thread `task` (from [`this_thread`]) sleeps.
pub fn asleep(task: &Path) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(task).join("stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('S'))
    })
}

/// Waits (at most 20 s) until every thread in `tasks` sleeps, and has for
/// five looks in a row: a thread blocked on a peer that does not answer
/// (a stopped enforcer, a full channel) sleeps until that changes, while
/// one that merely waits for a processor is runnable, not asleep.
pub fn wait_until_asleep(tasks: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut in_a_row = 0;
    while in_a_row < 5 {
        in_a_row = if tasks.iter().all(|task| asleep(task)) {
            in_a_row + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "the threads {tasks:?} never all slept"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `command` with `input` on its standard input (as an agent runs
/// its hook, or a script pipes to `ask`), collecting its output.
pub fn output_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut stdin = child.stdin.take().expect("piped input");
    // Written from a thread of its own: a command that answers before it
    // has read all of its input must not hold up the write.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for the command");
    let _ = writer.join();
    output
}

/// Runs `command` to its end with its output collected (read while it
/// runs, so that a full pipe does not hold it); killed, and the test
/// failed naming `what`, if it takes longer than `limit`.
pub fn output_within(command: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut stdout = child.stdout.take().expect("piped output");
    let mut stderr = child.stderr.take().expect("piped errors");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(POLL);
    };
    Output {
        status,
        stdout: out.join().expect("reader").expect("read the output"),
        stderr: err.join().expect("reader").expect("read the errors"),
    }
}
