//! The driver: the one process that runs a workload's commands, one after
//! the other, in both runs. Ungoverned it is started directly; governed,
//! it is the agent `kernel-enforcer run --govern-syscalls` starts, so
//! that every command is a program the agent starts (its `exec` decided
//! by policy), as when a coding agent runs tools, rather than the
//! operator's own command.
//!
//! It reads its commands from its arguments (`__drive DEADLINE_MS JSON`,
//! the JSON an array of `{"program": ..., "args": [...]}`), runs each
//! with standard input from `/dev/null` and its output captured, and
//! reports on its standard output as JSON lines:
//!
//! - `{"event":"started","step":i,"pid":p}` once the command runs;
//! - `{"event":"deadline","step":i,"pid":p}` when it outlives the
//!   deadline, [`LOOK_TIME`] before it is killed (the runner, which is
//!   not confined, looks at what it is blocked in meanwhile);
//! - `{"event":"done","step":i,"status":...,"elapsed_us":n,"stdout":[...],"stderr":[...]}`
//!   with `status` one of `{"code":n}`, `{"signal":n}`, `"deadline"`,
//!   `{"not_started":"why"}`.
//!
//! It opens no file of its own but `/dev/null` (granted without a
//! decision), so it leaves no trace in the workspace. At start-up the
//! Rust runtime (glibc's `pthread_getattr_np`, finding the main thread's
//! stack) reads `/proc/self/maps`: a kernel that does not grant it decides
//! it, and the policy denies it, harmlessly (one denied decision in the
//! evidence). Everything else decided and recorded is what the commands
//! do.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The first argument that makes the suite's binary a driver.
pub const DRIVE_ARG: &str = "__drive";

/// How long a command that outlived its deadline is left for the runner
/// to look at before it is killed.
pub const LOOK_TIME: Duration = Duration::from_millis(1500);

/// One command as the driver receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCommand {
    /// Absolute path of the program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// The JSON the driver takes for `commands`.
pub fn encode(commands: &[DriverCommand]) -> String {
    Value::Array(
        commands
            .iter()
            .map(|c| json!({"program": c.program, "args": c.args}))
            .collect(),
    )
    .to_string()
}

fn decode(text: &str) -> Result<Vec<DriverCommand>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("commands: {e}"))?;
    let list = value.as_array().ok_or("commands: not an array")?;
    list.iter()
        .map(|item| {
            let program = item
                .get("program")
                .and_then(Value::as_str)
                .ok_or("commands: a command without a program")?
                .to_owned();
            let args = item
                .get("args")
                .and_then(Value::as_array)
                .ok_or("commands: a command without arguments")?
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_owned)
                        .ok_or("commands: a non-string argument")
                })
                .collect::<Result<_, _>>()?;
            Ok(DriverCommand { program, args })
        })
        .collect()
}

/// Runs the driver with the arguments after [`DRIVE_ARG`]; returns the
/// process's exit code (0 whatever the commands did; 2 when the
/// arguments are wrong or the report cannot be written).
pub fn main(args: &[String]) -> i32 {
    let (Some(deadline), Some(commands), None) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: kernel-workloads {DRIVE_ARG} DEADLINE_MS COMMANDS_JSON");
        return 2;
    };
    let Ok(deadline) = deadline.parse::<u64>().map(Duration::from_millis) else {
        eprintln!("{DRIVE_ARG}: the deadline is not a number of milliseconds");
        return 2;
    };
    let commands = match decode(commands) {
        Ok(commands) => commands,
        Err(e) => {
            eprintln!("{DRIVE_ARG}: {e}");
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    for (step, command) in commands.iter().enumerate() {
        let report = run(step, command, deadline, &mut out);
        if writeln!(out, "{report}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return 2;
        }
    }
    0
}

fn emit(out: &mut impl Write, value: &Value) {
    let _ = writeln!(out, "{value}").and_then(|()| out.flush());
}

fn run(step: usize, command: &DriverCommand, deadline: Duration, out: &mut impl Write) -> Value {
    let started = Instant::now();
    let spawned = Command::new(&command.program)
        .args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return json!({
                "event": "done", "step": step,
                "status": {"not_started": e.to_string()},
                "elapsed_us": elapsed_us(started),
                "stdout": [], "stderr": [],
            });
        }
    };
    let pid = child.id();
    emit(out, &json!({"event": "started", "step": step, "pid": pid}));
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let mut pause = Duration::from_micros(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if started.elapsed() >= deadline {
            emit(out, &json!({"event": "deadline", "step": step, "pid": pid}));
            std::thread::sleep(LOOK_TIME);
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    };
    let elapsed = elapsed_us(started);
    let status = match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => json!({"code": code}),
            (None, Some(signal)) => json!({"signal": signal}),
            (None, None) => json!({"code": -1}),
        },
        None => json!("deadline"),
    };
    // A process the command left running may hold its output open: its
    // output is then what arrived within a moment.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(5)).ok())
            .unwrap_or_default()
    };
    json!({
        "event": "done", "step": step, "status": status, "elapsed_us": elapsed,
        "stdout": collect(stdout), "stderr": collect(stderr),
    })
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn commands_survive_the_round_trip() {
        let commands = vec![DriverCommand {
            program: "/usr/bin/echo".into(),
            args: vec!["a b".into(), "\"quoted\"".into()],
        }];
        assert_eq!(decode(&encode(&commands)).unwrap(), commands);
    }
}
