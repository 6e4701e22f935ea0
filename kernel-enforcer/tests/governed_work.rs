//! Real work under `run --govern-syscalls`: what ordinary tools need
//! (symbolic and hard links, renames into a directory descriptor,
//! permission bits, times, truncation, programs built in the workspace,
//! the agent's own `/proc` entries) is decided by policy, recorded, and
//! happens; what the policy refuses does not happen; a link swapped while
//! a path is resolved never redirects an open; and nothing the agent does
//! keeps a signal from ending the run. Every check is judged by the
//! world (the file system, the process table) and by the evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kernel_testkit::{Fixture, audit_inspect, fixture, wait_for, works_in};

const POLICY: &str = r#"
@id("workspace")
permit (principal, action in [Action::"file_read", Action::"file_write", Action::"file_delete"], resource in Workspace::"root");
@id("system-programs")
permit (principal, action == Action::"exec", resource)
when { resource.path like "/usr/bin/*" || resource.path like "/bin/*" || resource.path like "/usr/lib/*" || resource.path like "/usr/libexec/*" };
@id("workspace-programs")
permit (principal, action == Action::"exec", resource in Workspace::"root");
@id("keep-mode")
forbid (principal, action == Action::"file_write", resource)
when { resource.name == "keep-mode.txt" && context.mode == "metadata" };
@id("no-link-here")
forbid (principal, action == Action::"file_write", resource)
when { resource.name == "no-link" };
"#;

fn scene() -> Fixture {
    fixture(POLICY)
}

/// `run --govern-syscalls` of `program` over the scene, with its policy.
fn governed(scene: &Fixture, program: &str, args: &[&str]) -> Command {
    scene.governed(&[], program, args)
}

/// Waits (at most 10 s) until no process has `dir` as its working
/// directory: the governed agent and everything it started are gone.
fn wait_until_no_process_works_in(dir: &Path) {
    wait_for(
        "agent processes to end with their enforcer",
        Duration::from_secs(10),
        || !works_in(dir),
    );
}

/// Waits (at most 20 s) until a process working in `dir` waits in a
/// governed system call for the enforcer's answer.
fn wait_until_a_call_waits_in(dir: &Path) {
    wait_for(
        "a call to wait for its answer",
        Duration::from_secs(20),
        || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
                std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir)
                    && std::fs::read_to_string(entry.path().join("wchan"))
                        .is_ok_and(|wchan| wchan.contains("seccomp"))
            })
        },
    );
}

/// Puts the shipped coding-agent profile in place of the scene's policy.
fn under_coding_agent_profile(scene: &Fixture) {
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/coding-agent.cedar");
    std::fs::copy(profile, &scene.policy).unwrap();
}

/// Runs `script` with `/bin/sh` governed, killed if it takes over a minute.
fn sh(scene: &Fixture, script: &str) -> Output {
    output_within(governed(scene, "/usr/bin/sh", &["-c", script]), script)
}

/// Runs `command`'s governed run to its end with its output collected;
/// killed, and the test failed, if it takes over a minute.
fn output_within(mut command: Command, what: &str) -> Output {
    kernel_testkit::output_within(&mut command, Duration::from_secs(60), what)
}

fn verified(evidence: &Path) -> kernel_core::AuditReport {
    let log = std::fs::read(evidence).unwrap();
    kernel_core::audit(&log, &kernel_core::AuditOptions::default())
        .unwrap_or_else(|e| panic!("the evidence does not verify: {e}"))
}

#[test]
fn what_ordinary_tools_need_is_decided_recorded_and_happens() {
    let scene = scene();
    let ws = &scene.workspace;
    std::fs::create_dir_all(ws.join("sub/dir")).unwrap();
    std::fs::write(ws.join("a.txt"), "alpha").unwrap();
    std::fs::write(ws.join("b.txt"), "bravo").unwrap();
    std::fs::write(ws.join("over.txt"), "old").unwrap();
    std::fs::write(ws.join("keep-mode.txt"), "k").unwrap();
    std::fs::set_permissions(
        ws.join("keep-mode.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::copy("/usr/bin/true", ws.join("built-here")).unwrap();
    let script = "set -e
        mv a.txt sub/dir/
        mv b.txt over.txt
        ln -s over.txt link
        cat link > through-link.txt
        ln over.txt hard
        chmod 751 over.txt
        touch -d 2001-02-03T04:05:06Z over.txt
        printf 0123456789 > long.txt
        truncate -s 4 long.txt
        ./built-here
        head -c 5 /proc/self/status > proc-self.txt
        head -c 3 /proc/meminfo > meminfo.txt
        echo t > \"$TMPDIR/t\" && chmod 604 \"$TMPDIR/t\" && stat -c %a \"$TMPDIR/t\" > scratch-mode.txt
        echo moved > \"$TMPDIR/m\" && mv \"$TMPDIR/m\" moved-in.txt
        chmod 600 keep-mode.txt 2>/dev/null && echo chmod-allowed || echo chmod-refused
        ln -s over.txt no-link 2>/dev/null && echo link-allowed || echo link-refused";
    let out = sh(&scene, script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Judged by the world.
    assert_eq!(
        std::fs::read_to_string(ws.join("sub/dir/a.txt")).unwrap(),
        "alpha",
        "mv into a directory"
    );
    assert!(!ws.join("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join("over.txt")).unwrap(),
        "bravo",
        "mv over a file"
    );
    assert_eq!(
        std::fs::read_link(ws.join("link")).unwrap(),
        Path::new("over.txt")
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("through-link.txt")).unwrap(),
        "bravo"
    );
    let (over, hard) = (
        std::fs::metadata(ws.join("over.txt")).unwrap(),
        std::fs::metadata(ws.join("hard")).unwrap(),
    );
    assert_eq!(over.ino(), hard.ino(), "a hard link");
    assert_eq!(over.mode() & 0o7777, 0o751, "chmod");
    assert_eq!(over.mtime(), 981_173_106, "touch -d");
    assert_eq!(
        std::fs::read_to_string(ws.join("long.txt")).unwrap(),
        "0123"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("proc-self.txt")).unwrap(),
        "Name:"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("meminfo.txt")).unwrap(),
        "Mem"
    );
    // In the scratch directory (TMPDIR), without a decision.
    assert_eq!(
        std::fs::read_to_string(ws.join("scratch-mode.txt")).unwrap(),
        "604\n"
    );
    // Out of the scratch directory: only the workspace side is decided.
    assert_eq!(
        std::fs::read_to_string(ws.join("moved-in.txt")).unwrap(),
        "moved\n"
    );
    // Refused by policy, and without effect.
    assert!(stdout.contains("chmod-refused"), "{stdout}");
    assert_eq!(
        std::fs::metadata(ws.join("keep-mode.txt")).unwrap().mode() & 0o777,
        0o644
    );
    assert!(stdout.contains("link-refused"), "{stdout}");
    assert!(std::fs::symlink_metadata(ws.join("no-link")).is_err());
    // Judged by the evidence: it verifies, and holds each kind of decision.
    let report = verified(&scene.evidence);
    assert!(report.denied >= 2, "{report:?}");
    let lines = audit_inspect(&scene.evidence);
    for expected in [
        "(symbolic link)",
        "(hard link)",
        "(metadata)",
        &format!("exec {}/built-here", ws.display()),
        &format!("file_delete {}/a.txt", ws.display()),
    ] {
        assert!(lines.contains(expected), "no `{expected}` in\n{lines}");
    }
}

/// A `mkdir` of a path that exists fails with `EEXIST`, as the call
/// would, without a decision, even where the policy permits no creation:
/// tools that create a directory if it is missing (`mkdir -p`, Codex's
/// state directory at start-up) take `EEXIST` for success and a refusal
/// for failure. A creation the policy refuses still fails with `EACCES`
/// and creates nothing.
#[test]
fn a_mkdir_of_an_existing_path_fails_with_eexist_undecided() {
    let scene = scene();
    let existing = scene.outside.join("existing");
    std::fs::create_dir(&existing).unwrap();
    let dangling = scene.outside.join("dangling");
    std::os::unix::fs::symlink(scene.outside.join("nowhere"), &dangling).unwrap();
    let new = scene.outside.join("new");
    let script = format!(
        "mkdir {existing} 2>&1; echo \"mkdir existing: $?\"
         mkdir -p {existing}; echo \"mkdir -p existing: $?\"
         mkdir {dangling} 2>&1; echo \"mkdir dangling: $?\"
         mkdir {new} 2>&1; echo \"mkdir new: $?\"",
        existing = existing.display(),
        dangling = dangling.display(),
        new = new.display(),
    );
    let mut command = governed(&scene, "/usr/bin/sh", &["-c", &script]);
    command.env("LC_ALL", "C");
    let out = output_within(command, "mkdir");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("File exists\nmkdir existing: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("mkdir -p existing: 0"), "{stdout}");
    assert!(
        stdout.contains("File exists\nmkdir dangling: 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Permission denied\nmkdir new: 1"),
        "{stdout}"
    );
    // Judged by the world: nothing was created, the link is still a link.
    assert!(std::fs::symlink_metadata(&new).is_err());
    assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());
    assert!(std::fs::symlink_metadata(scene.outside.join("nowhere")).is_err());
    // Judged by the evidence: the refused creation is there, the calls on
    // existing paths are not.
    verified(&scene.evidence);
    let lines = audit_inspect(&scene.evidence);
    assert!(
        lines.lines().any(|line| line.contains("deny")
            && line.contains(&format!("file_write {} ", new.display()))),
        "{lines}"
    );
    for undecided in [&existing, &dangling] {
        assert!(
            !lines.contains(&format!("file_write {} ", undecided.display())),
            "{lines}"
        );
    }
}

/// The race on link resolution: one thread keeps swapping `dir` between
/// a workspace directory and a link to a directory outside it, another
/// keeps reading `dir/file`. The policy allows reading the first and not
/// the second; if anything opened between the resolution that was decided
/// and the open, the secret would be read.
#[test]
fn a_link_swapped_during_resolution_never_redirects_an_open() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    std::fs::create_dir_all(scene.workspace.join("real")).unwrap();
    std::fs::write(scene.workspace.join("real/file"), "public").unwrap();
    std::fs::write(scene.outside.join("file"), "SECRET").unwrap();
    let agent = format!(
        r#"
import os, threading, time
stop = time.monotonic() + 3
def swap():
    n = 0
    while time.monotonic() < stop:
        n += 1
        try:
            os.symlink({outside:?}, "tmp-link")
            os.rename("tmp-link", "dir")
            os.rename("dir", "tmp-link"); os.unlink("tmp-link")
            os.symlink("real", "dir")
            os.unlink("dir")
        except OSError:
            pass
threading.Thread(target=swap).start()
seen = {{}}
while time.monotonic() < stop:
    try:
        with open("dir/file") as f:
            text = f.read()
        seen[text] = seen.get(text, 0) + 1
    except OSError as e:
        seen[e.strerror] = seen.get(e.strerror, 0) + 1
print(seen)
"#,
        outside = scene.outside.to_str().unwrap()
    );
    let out = governed(&scene, "/usr/bin/python3", &["-c", &agent])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("race: {stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("SECRET"),
        "an open was redirected: {stdout}"
    );
    assert!(
        stdout.contains("'public'"),
        "the race never read the workspace file: {stdout}"
    );
    verified(&scene.evidence);
}

/// How a busy run is ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Signal(rustix::process::Signal),
    Halt,
}

/// Ends the governed run `child` of `scene` as `ending` says (a halt gives
/// `reason`).
fn end(ending: Ending, scene: &Fixture, child: &std::process::Child, reason: &str) {
    match ending {
        Ending::Signal(signal) => {
            let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
            rustix::process::kill_process(pid, signal).unwrap();
        }
        Ending::Halt => {
            let halt = scene.operator(&["halt", "--reason", reason]);
            assert!(
                halt.status.success(),
                "{}",
                String::from_utf8_lossy(&halt.stderr)
            );
        }
    }
}

/// FIFOs without a writer used to block the enforcer's own open; more of
/// them than there are notification workers would have stalled every
/// decision. Now each open returns at once and other calls are decided
/// meanwhile. Then, with eight threads waiting on the FIFO and four
/// flooding writes, each way of ending a run (`SIGTERM`, `SIGINT`,
/// `SIGHUP`, the operator's `halt`) ends it, the agent does nothing
/// afterwards, and the evidence verifies with a final checkpoint (and the
/// halt, for a halt).
#[test]
fn waiting_agents_stall_nothing_and_every_ending_ends_a_busy_run() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    use rustix::process::Signal;
    for ending in [
        Ending::Signal(Signal::TERM),
        Ending::Signal(Signal::INT),
        Ending::Signal(Signal::HUP),
        Ending::Halt,
    ] {
        end_a_busy_run(ending);
    }
}

fn end_a_busy_run(ending: Ending) {
    let scene = scene();
    // Made beforehand: creating device files and FIFOs is not governed
    // (Landlock refuses it in the workspace).
    rustix::fs::mknodat(
        rustix::fs::CWD,
        scene.workspace.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    let agent = r#"
import os, threading, time
def reader():
    with open("fifo") as f:
        f.read()
for _ in range(8):
    threading.Thread(target=reader, daemon=True).start()
time.sleep(0.2)
with open("after-the-fifos", "w") as f:
    f.write("decided")
def flood(i):
    n = 0
    while True:
        n += 1
        with open(f"flood-{i}", "w") as f:
            f.write(str(n))
for i in range(4):
    threading.Thread(target=flood, args=(i,), daemon=True).start()
time.sleep(60)
"#;
    let mut child = governed(&scene, "/usr/bin/python3", &["-c", agent])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let marker = scene.workspace.join("after-the-fifos");
    while !(marker.exists() && scene.workspace.join("flood-3").exists()) {
        if started.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("{ending:?}: decisions stalled behind the FIFO readers");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended_at = Instant::now();
    end(ending, &scene, &child, "test");
    while child.try_wait().unwrap().is_none() {
        if ended_at.elapsed() > Duration::from_secs(1) {
            let _ = child.kill();
            panic!("{ending:?} did not end the governed run within 1 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{ending:?} to the end of the run: {} ms",
        ended_at.elapsed().as_millis()
    );
    // Nothing happens after the end: no agent process is left to act.
    let count = || std::fs::read_dir(&scene.workspace).unwrap().count();
    let before = count();
    wait_until_no_process_works_in(&scene.workspace);
    assert_eq!(
        count(),
        before,
        "{ending:?}: the agent kept working after the run ended"
    );
    let report = verified(&scene.evidence);
    assert!(report.allowed > 4, "{report:?}");
    let lines = audit_inspect(&scene.evidence);
    let last = lines
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains("checkpoint"),
        "{ending:?}: no final checkpoint: {last}"
    );
    if matches!(ending, Ending::Halt) {
        assert!(
            lines.contains(" halt"),
            "{ending:?}: no halt recorded:\n{lines}"
        );
    }
}

/// `--evidence-window`: the window is granted in the evidence, durably,
/// before the session's first decision; every decision is still recorded
/// and the log verifies.
#[test]
fn an_evidence_window_is_recorded_before_any_decision() {
    let scene = scene();
    let out = scene
        .governed(
            &["--evidence-window", "20"],
            "/usr/bin/sh",
            &["-c", "echo one > a && echo two > b && cat a b"],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    let report = verified(&scene.evidence);
    assert!(report.allowed >= 4, "{report:?}");
    let lines = audit_inspect(&scene.evidence);
    let kinds: Vec<&str> = lines
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        kinds.get(..3),
        Some(&["session_start", "evidence_window", "decision"][..]),
        "{lines}"
    );
    assert!(lines.contains("records durable within 20 ms"), "{lines}");
}

/// The window's promise on a crash of the enforcer: every effect that
/// happened has its allow in the evidence, though the window (a minute
/// here) had not passed: records are written before the effect.
#[test]
fn with_an_evidence_window_a_killed_enforcer_leaves_every_effect_recorded() {
    let scene = scene();
    let mut child = scene
        .governed(
            &["--evidence-window", "60000"],
            "/usr/bin/sh",
            &[
                "-c",
                "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); : > f-$i; done",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the agent's writes to be decided",
        Duration::from_secs(30),
        || std::fs::read_dir(&scene.workspace).unwrap().count() >= 50,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The agent dies with its enforcer; what it created is what counts.
    wait_until_no_process_works_in(&scene.workspace);
    let created: Vec<String> = std::fs::read_dir(&scene.workspace)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let lines = audit_inspect(&scene.evidence);
    let missing: Vec<&String> = created
        .iter()
        .filter(|name| {
            !lines.contains(&format!(
                "allow    file_write {}/{name} ",
                scene.workspace.display()
            ))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} effects without their allow in the evidence: {missing:?}",
        missing.len(),
        created.len()
    );
}

/// A governed run whose enforcer has a fault injected (debug builds
/// only: `AGENT_KERNEL_TEST_FAULT`, read from the enforcer's own
/// environment) into the handling of every `file_delete`; the agent
/// removes `victim` and then waits.
fn faulty_run(scene: &Fixture, fault: &str) -> std::process::Child {
    std::fs::write(scene.workspace.join("victim"), "still here").unwrap();
    governed(
        scene,
        "/usr/bin/sh",
        &["-c", "rm victim; echo rm=$? > after-rm; sleep 60"],
    )
    .env("AGENT_KERNEL_TEST_FAULT", fault)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

/// Waits until `child` exits, at most `limit`; returns how long it took.
fn ends_within(child: &mut std::process::Child, limit: Duration, what: &str) -> Duration {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

fn halt_recorded(scene: &Fixture, cause: &str) {
    verified(&scene.evidence);
    let lines = audit_inspect(&scene.evidence);
    let halts: Vec<&str> = lines.lines().filter(|l| l.contains(" halt ")).collect();
    assert!(
        halts.iter().any(|l| l.contains(cause)),
        "no halt for `{cause}` in\n{lines}"
    );
}

/// A handler that panics fails its call, and the session halts (recorded);
/// the removal never happens, and the run ends.
#[test]
fn a_panicking_handler_fails_its_call_and_halts_the_run() {
    if !cfg!(debug_assertions) {
        println!("SKIPPED: fault injection exists in debug builds only");
        return;
    }
    let scene = scene();
    let mut child = faulty_run(&scene, "panic:file_delete");
    let took = ends_within(&mut child, Duration::from_secs(20), "panic");
    println!("panic: the run ended after {} ms", took.as_millis());
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("victim")).unwrap(),
        "still here"
    );
    halt_recorded(&scene, "a panic while answering a governed system call");
}

/// A call whose record cannot be made durable does not proceed: with the
/// commit of every `file_delete` decision failing (injected, debug builds
/// only: the record is never written), the removal the policy allows never
/// happens, the session halts and the run ends. The evidence holds no
/// decision of it, and verifies.
#[test]
fn a_call_whose_record_is_not_synced_does_not_proceed() {
    if !cfg!(debug_assertions) {
        println!("SKIPPED: fault injection exists in debug builds only");
        return;
    }
    let scene = scene();
    let mut child = faulty_run(&scene, "unsynced:file_delete");
    ends_within(&mut child, Duration::from_secs(20), "unsynced");
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("victim")).unwrap(),
        "still here"
    );
    verified(&scene.evidence);
    let lines = audit_inspect(&scene.evidence);
    assert!(
        !lines.lines().any(|line| line.contains("file_delete")),
        "{lines}"
    );
}

/// A halt acknowledged while an allowed effect is being made is
/// acknowledged only once that effect is done: right after `halt`
/// returns, the removal decided before it has happened, and nothing the
/// agent asks later does.
#[test]
fn a_halt_is_acknowledged_only_after_the_effects_allowed_before_it() {
    if !cfg!(debug_assertions) {
        println!("SKIPPED: fault injection exists in debug builds only");
        return;
    }
    let scene = scene();
    std::fs::write(scene.workspace.join("victim"), "still here").unwrap();
    std::fs::write(scene.workspace.join("later"), "still here").unwrap();
    let mut child = governed(
        &scene,
        "/usr/bin/sh",
        &["-c", "rm victim; rm later; sleep 60"],
    )
    .env("AGENT_KERNEL_TEST_FAULT", "slow:file_delete")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // The removal of `victim` is decided (recorded) and now waits 1.5 s
    // before it is made.
    wait_for("the removal to be decided", Duration::from_secs(20), || {
        audit_inspect(&scene.evidence)
            .lines()
            .any(|line| line.contains("file_delete") && line.contains("victim"))
    });
    end(Ending::Halt, &scene, &child, "halt-during-effect");
    assert!(
        !scene.workspace.join("victim").exists(),
        "the halt was acknowledged before an effect allowed earlier had happened"
    );
    ends_within(&mut child, Duration::from_secs(5), "halt");
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("later")).unwrap(),
        "still here",
        "an effect happened after the halt"
    );
    halt_recorded(&scene, "halt-during-effect");
}

/// A handler that blocks: the call is answered with an error after the
/// answer deadline (10 s) and the session halts (recorded); nothing is
/// removed. `SIGTERM` and the operator's `halt` during such a stuck call
/// end the run at once.
#[test]
fn a_stuck_handler_is_answered_and_stops_nothing_from_ending_the_run() {
    if !cfg!(debug_assertions) {
        println!("SKIPPED: fault injection exists in debug builds only");
        return;
    }
    // Left alone: answered after the deadline, and halted.
    let alone = scene();
    let mut child = faulty_run(&alone, "stall:file_delete");
    let took = ends_within(&mut child, Duration::from_secs(30), "stuck call");
    println!(
        "stuck call alone: the run ended after {} ms",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_secs(9),
        "answered before the deadline: {took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(alone.workspace.join("victim")).unwrap(),
        "still here"
    );
    halt_recorded(&alone, "had no decision within 10 s");

    // SIGTERM, and the operator's halt, while the call is stuck.
    for ending in [Ending::Signal(rustix::process::Signal::TERM), Ending::Halt] {
        let scene = scene();
        let mut child = faulty_run(&scene, "stall:file_delete");
        // The agent is inside the stuck call once the shell has started rm.
        wait_for("rm to start", Duration::from_secs(20), || {
            audit_inspect(&scene.evidence).contains("exec /usr/bin/rm")
        });
        wait_until_a_call_waits_in(&scene.workspace);
        end(ending, &scene, &child, "stuck-test");
        let took = ends_within(&mut child, Duration::from_secs(1), &format!("{ending:?}"));
        println!(
            "{ending:?} during a stuck call: the run ended after {} ms",
            took.as_millis()
        );
        assert_eq!(
            std::fs::read_to_string(scene.workspace.join("victim")).unwrap(),
            "still here"
        );
        verified(&scene.evidence);
        if matches!(ending, Ending::Halt) {
            halt_recorded(&scene, "stuck-test");
        }
    }
}

/// Attacks under the shipped coding-agent profile, judged by the world: a
/// secret outside the workspace reached through a workspace link or
/// `/proc/self/root`, `.env` through a hard link, a scratch link, a
/// reopened descriptor, `O_PATH`, and changed by `chmod`, `truncate`,
/// `rename` and `utime`. Nothing is read, nothing changes; an ordinary
/// read still works.
#[test]
fn attacks_through_links_proc_and_metadata_change_nothing() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    let home = scene.outside.join("home");
    kernel_testkit::plant_ssh_key(&home, "SECRET-KEY");
    std::fs::write(scene.workspace.join(".env"), "ENV-SECRET").unwrap();
    std::fs::write(scene.workspace.join("readme.txt"), "public").unwrap();
    let before = std::fs::metadata(scene.workspace.join(".env")).unwrap();
    let agent = include_str!("agents/governed_attacks.py");
    under_coding_agent_profile(&scene);
    let out = scene
        .governed(&[], "/usr/bin/python3", &["-c", agent])
        .env("PROBE_HOME", &home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": refused").count(), 12, "{stdout}");
    assert!(
        stdout.contains("read readme (allowed): GOT 'public'"),
        "{stdout}"
    );
    assert!(!stdout.contains("SECRET"), "{stdout}");
    let after = std::fs::metadata(scene.workspace.join(".env")).unwrap();
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join(".env")).unwrap(),
        "ENV-SECRET"
    );
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(after.nlink(), 1, "a hard link to .env was made");
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("readme.txt")).unwrap(),
        "public"
    );
    verified(&scene.evidence);
}

/// Races and escape hatches found in review, under the shipped
/// coding-agent profile, judged by the world: a descriptor reopened while
/// another thread swaps it never becomes writable for a read-only file
/// (whose content stays), `clone(CLONE_UNTRACED)` is refused, an access
/// control list cannot change `.env`'s mode, `openat2` with resolve
/// flags is not taken for a plain open, and a signal while a creation is
/// decided does not make it happen twice (`O_EXCL` then fails).
#[test]
fn races_and_escape_hatches_from_review_change_nothing() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    let home = scene.outside.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let gitconfig = home.join(".gitconfig");
    std::fs::write(&gitconfig, "[user]\n\tname = T\n").unwrap();
    std::fs::write(scene.workspace.join(".env"), "ENV-SECRET").unwrap();
    std::fs::set_permissions(
        scene.workspace.join(".env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    under_coding_agent_profile(&scene);
    let out = scene
        .governed(
            &["--evidence-window", "10"],
            "/usr/bin/python3",
            &["-c", include_str!("agents/governed_races.py")],
        )
        .env("PROBE_READ_ONLY", &gitconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reopen race: 0 writable of"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&gitconfig).unwrap(),
        "[user]\n\tname = T\n"
    );
    assert!(stdout.contains("clone untraced: refused EPERM"), "{stdout}");
    assert!(stdout.contains("setxattr acl: refused"), "{stdout}");
    assert_eq!(
        std::fs::metadata(scene.workspace.join(".env"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        stdout.contains("openat2 beneath: refused ENOSYS"),
        "{stdout}"
    );
    assert!(stdout.contains("sctp socket: refused EPERM"), "{stdout}");
    assert!(stdout.contains("uselib: refused EPERM"), "{stdout}");
    assert!(stdout.contains("open_tree_attr: refused EPERM"), "{stdout}");
    assert!(stdout.contains("scratch mode: 700"), "{stdout}");
    for kind in ["char", "block"] {
        assert!(
            stdout.contains(&format!("mknod {kind} exists: False")),
            "a {kind} device node was made in the scratch directory: {stdout}"
        );
    }
    assert!(
        stdout.contains("interrupted by SIGCHLD: 0 failed of 200"),
        "{stdout}"
    );
    verified(&scene.evidence);
}

/// What the scratch directory and `--system-tree` grant needs no
/// decision, so neither may overlap the workspace: start-up is refused,
/// and the agent never runs.
#[test]
fn a_scratch_or_system_tree_overlapping_the_workspace_is_refused() {
    let scene = scene();
    let inner = scene.workspace.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let above = scene
        .workspace
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for flags in [
        vec!["--scratch", inner.to_str().unwrap()],
        vec!["--system-tree", above.as_str()],
    ] {
        let out = scene
            .governed(&flags, "/usr/bin/touch", &["ran"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("overlaps the workspace"),
            "{flags:?}: {stderr}"
        );
        assert!(
            !scene.workspace.join("ran").exists(),
            "{flags:?}: the agent ran"
        );
    }
}

/// What a file's metadata is, as far as an agent could change it: mode,
/// owner, times (the change time moves with any change that succeeds),
/// extended attributes and attribute flags.
fn metadata_of(path: &Path) -> (u32, u32, u32, i64, i64, i64, Vec<u8>, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mut names = vec![0u8; 4096];
    let len = rustix::fs::listxattr(path, &mut names[..]).unwrap();
    names.truncate(len);
    let file = std::fs::File::open(path).unwrap();
    let flags = rustix::fs::ioctl_getflags(&file).map_or(0, |f| f.bits());
    (
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.ctime(),
        meta.ctime_nsec(),
        names,
        flags,
    )
}

/// Under the shipped coding-agent profile, outside the workspace: every
/// metadata call (`chmod`, `chown`, the `utime` family, extended
/// attributes set and removed, by path, through a link, by descriptor,
/// through `/proc/self/fd`), the attribute-flag `ioctl` and
/// `file_setattr` leave a 0600 file and a readable file exactly as they
/// were; a connection to a listening Unix socket (directly, through a
/// workspace link, as a sequenced-packet socket, while another thread
/// rewrites the address between a scratch socket and it), an abstract
/// socket and a datagram socket reach nothing. Inside the workspace,
/// `chmod +x` makes a script that runs, times and attributes change, and a
/// workspace socket is reached.
#[test]
fn metadata_changes_and_unix_connects_outside_the_workspace_change_nothing() {
    use std::os::linux::net::SocketAddrExt;
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    let secret = scene.outside.join("secret");
    std::fs::write(&secret, "SECRET").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let home = scene.outside.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let gitconfig = home.join(".gitconfig");
    std::fs::write(&gitconfig, "[user]\n\tname = T\n").unwrap();
    for file in [&secret, &gitconfig] {
        rustix::fs::setxattr(file, "user.keep", b"1", rustix::fs::XattrFlags::empty()).unwrap();
    }
    let before = [metadata_of(&secret), metadata_of(&gitconfig)];
    let daemon = std::os::unix::net::UnixListener::bind(scene.outside.join("daemon.sock")).unwrap();
    daemon.set_nonblocking(true).unwrap();
    let datagram =
        std::os::unix::net::UnixDatagram::bind(scene.outside.join("dgram.sock")).unwrap();
    datagram.set_nonblocking(true).unwrap();
    let abstract_name = format!("agent-kernel-test-{}", std::process::id());
    let abstract_listener = std::os::unix::net::UnixListener::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap(),
    )
    .unwrap();
    abstract_listener.set_nonblocking(true).unwrap();
    let workspace_listener =
        std::os::unix::net::UnixListener::bind(scene.workspace.join("ws.sock")).unwrap();
    workspace_listener.set_nonblocking(true).unwrap();

    under_coding_agent_profile(&scene);

    let mut command = scene.governed(
        &[],
        "/usr/bin/python3",
        &["-c", include_str!("agents/governed_metadata.py")],
    );
    command
        .env("PROBE_SECRET", &secret)
        .env("PROBE_GITCONFIG", &gitconfig)
        .env("PROBE_SOCKET", scene.outside.join("daemon.sock"))
        .env("PROBE_DGRAM", scene.outside.join("dgram.sock"))
        .env("PROBE_ABSTRACT", &abstract_name);
    let out = output_within(command, "governed_metadata.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Judged by the world: nothing outside changed, nothing was reached.
    assert_eq!(
        [metadata_of(&secret), metadata_of(&gitconfig)],
        before,
        "a file outside the workspace changed"
    );
    assert_eq!(before[0].0 & 0o7777, 0o600);
    let nothing = |accepted: std::io::Result<_>, what: &str| match accepted {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{what} was reached: {other:?}"),
    };
    nothing(daemon.accept().map(|_| ()), "the outside listener");
    nothing(
        abstract_listener.accept().map(|_| ()),
        "the abstract listener",
    );
    nothing(
        datagram.recv(&mut [0u8; 16]).map(|_| ()),
        "the datagram listener",
    );
    // Each attempt was refused, and said so.
    for attempt in [
        "chmod",
        "chmod through a workspace link",
        "fchmodat2",
        "chown",
        "lchown",
        "utimensat",
        "utimes",
        "utime",
        "futimesat",
        "setxattr",
        "setxattr acl",
        "lsetxattr",
        "removexattr",
        "setxattrat",
        "removexattrat",
        "fchmod",
        "fchown",
        "futimens",
        "fsetxattr",
        "fremovexattr",
        "chmod /proc/self/fd",
        "connect",
        "connect through a workspace link",
        "connect seqpacket",
    ] {
        assert!(
            stdout.contains(&format!("\n{attempt}: refused EACCES"))
                || stdout.starts_with(&format!("{attempt}: refused EACCES")),
            "{attempt}: {stdout}"
        );
    }
    for (attempt, errno) in [
        ("file_setattr", "ENOSYS"),
        ("FS_IOC_SETFLAGS", "ENOTTY"),
        ("connect abstract", "EPERM"),
        ("datagram socket", "EPERM"),
        ("datagram pair", "EPERM"),
    ] {
        assert!(
            stdout.contains(&format!("{attempt}: refused {errno}")),
            "{attempt}: {stdout}"
        );
    }
    for race in ["scratch", "abstract"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("connect race ({race}):")))
            .unwrap_or_default();
        println!("{line}");
        assert!(
            line.contains("'EACCES'") || line.contains("'EPERM'"),
            "the {race} race was never refused: {line}"
        );
    }
    // Inside the workspace: allowed, and it happened.
    for attempt in [
        "chmod +x in the workspace",
        "utime in the workspace",
        "utimes in the workspace",
        "utime (syscall) in the workspace",
        "setxattr in the workspace",
        "connect in the workspace",
        "connect in the scratch directory",
    ] {
        assert!(
            stdout.contains(&format!("{attempt}: GOT")),
            "{attempt}: {stdout}"
        );
    }
    assert!(stdout.contains("script-ran"), "{stdout}");
    assert!(
        stdout.contains("scratch listener got: b'reached'"),
        "{stdout}"
    );
    assert!(stdout.contains("close-on-exec kept: GOT True"), "{stdout}");
    let script = scene.workspace.join("script.sh");
    let meta = std::fs::metadata(&script).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_eq!(meta.mtime(), 1000);
    let mut note = [0u8; 8];
    let len = rustix::fs::getxattr(&script, "user.note", &mut note[..]).unwrap();
    assert_eq!(&note[..len], b"ok");
    let (mut stream, _) = workspace_listener.accept().unwrap();
    stream.set_nonblocking(false).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut stream, &mut got).unwrap();
    assert_eq!(got, "reached");
    // Judged by the evidence: it verifies, with the refusals recorded.
    verified(&scene.evidence);
    let lines = audit_inspect(&scene.evidence);
    for expected in [
        format!("deny     file_write {} (metadata)", secret.display()),
        format!("deny     file_write {} (metadata)", gitconfig.display()),
        format!(
            "deny     file_write {}/daemon.sock (Unix socket connection)",
            scene.outside.display()
        ),
        format!(
            "allow    file_write {}/ws.sock (Unix socket connection)",
            scene.workspace.display()
        ),
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in\n{lines}");
    }
}

#[test]
fn a_connection_to_an_ipv6_address_is_decided_by_that_address() {
    let scene = scene();
    std::fs::write(
        &scene.policy,
        format!(
            "{POLICY}\n@id(\"v6-loopback\")\npermit (principal, action == Action::\"net_connect\", resource == Host::\"[::1]\");\n"
        ),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            if std::io::Read::read(&mut stream, &mut byte).unwrap() == 0 {
                break;
            }
            request.push(byte[0]);
        }
        std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nover IPv6\n",
        )
        .unwrap();
    });
    let url = format!("http://[::1]:{port}/");
    let out = output_within(
        scene.governed(&[], "/usr/bin/curl", &["-sS", "-g", "--noproxy", "*", &url]),
        "curl over IPv6",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over IPv6\n");
    server.join().unwrap();
    verified(&scene.evidence);
    let lines = audit_inspect(&scene.evidence);
    let expected = format!("allow    net_connect [::1]:{port}");
    assert!(lines.contains(&expected), "no `{expected}` in\n{lines}");
}

/// What runtimes that make their own system calls (Bun, Go) do, under the
/// shipped coding-agent profile: an `openat` without `O_CREAT` whose mode
/// register holds a value is served (the enforcer's `openat2` refuses a
/// mode without `O_CREAT`), and a name under one of the agent's own
/// directory descriptors (`/proc/self/fd/N/name`) is decided as the file
/// in that directory: created in the workspace, refused outside it, and a
/// secret stays unread.
#[test]
fn runtimes_own_system_calls_are_served_and_decided_where_they_lead() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    let home = scene.outside.join("home");
    kernel_testkit::plant_ssh_key(&home, "SECRET-KEY");
    std::fs::write(scene.workspace.join("readme.txt"), "public").unwrap();
    let agent = include_str!("agents/governed_runtime_calls.py");
    under_coding_agent_profile(&scene);
    let mut command = scene.governed(&[], "/usr/bin/python3", &["-c", agent]);
    command
        .current_dir(&scene.workspace)
        .env("PROBE_OUTSIDE", &scene.outside);
    let out = output_within(command, "runtime calls");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("raw openat with a mode (allowed): GOT 'public'"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("made.txt")).unwrap(),
        "made"
    );
    assert!(scene.workspace.join("made-dir").is_dir(), "{stdout}");
    assert!(
        stdout.contains("secret through own descriptor: refused"),
        "{stdout}"
    );
    assert!(!stdout.contains("SECRET"), "{stdout}");
    assert!(
        stdout.contains("write outside through own descriptor: refused"),
        "{stdout}"
    );
    assert!(!scene.outside.join("planted.txt").exists());
    verified(&scene.evidence);
}
