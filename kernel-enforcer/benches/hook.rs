//! The end-to-end cost of one hook call, process start included: what a
//! coding agent pays before every tool use with
//! `kernel-enforcer hook claude-code` configured.
//!
//! One criterion run measures, side by side (group `hook`):
//!
//! - `spawn_true`: starting `/bin/true` and waiting for it, the floor of
//!   any hook that is a separate program;
//! - `hook_allowed`: starting `kernel-enforcer hook claude-code` with a
//!   recorded `Bash` payload on standard input, against a running
//!   `kernel-enforcer listen` that decides with Cedar, signs, and
//!   `fdatasync`s the decision before replying; the hook verifies the
//!   handshake and receipt and prints its verdict;
//! - `hook_two_programs`: a command line of two allowed programs
//!   (`echo hi && echo there`), each decided;
//! - `hook_refused`: a command line refused by the hook before it asks (an
//!   expansion; start-up and parsing only).
//!
//! Run it with: `cargo bench -p kernel-enforcer --no-default-features --bench hook`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "bench"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use kernel_testkit::{Listener, enforcer, fixture_in};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const POLICY: &str = r#"
@id("echo")
permit (principal, action == Action::"exec", resource) when { resource.name == "echo" };
"#;

fn hook_once(socket: &std::path::Path, payload: &str, expect: i32) {
    let mut child = Command::new(enforcer())
        .args(["hook", "claude-code"])
        .env("AGENT_KERNEL_ENDPOINT", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(expect));
}

fn bench(c: &mut Criterion) {
    let fixture = fixture_in(Path::new(env!("CARGO_TARGET_TMPDIR")), POLICY);
    let listener = Listener::of(&fixture, &[]);
    let socket = &listener.socket;
    let workspace = &fixture.workspace;
    let ws = workspace.to_string_lossy();
    let allowed = format!(
        r#"{{"hook_event_name":"PreToolUse","cwd":"{ws}","tool_name":"Bash","tool_input":{{"command":"echo hi"}}}}"#
    );
    let two = format!(
        r#"{{"hook_event_name":"PreToolUse","cwd":"{ws}","tool_name":"Bash","tool_input":{{"command":"echo hi && echo there"}}}}"#
    );
    let refused = format!(
        r#"{{"hook_event_name":"PreToolUse","cwd":"{ws}","tool_name":"Bash","tool_input":{{"command":"echo $(date)"}}}}"#
    );
    let mut group = c.benchmark_group("hook");
    group.sample_size(30);
    group.bench_function("spawn_true", |b| {
        b.iter(|| assert!(Command::new("true").status().unwrap().success()));
    });
    group.bench_function("hook_allowed", |b| {
        b.iter(|| hook_once(socket, &allowed, 0))
    });
    group.bench_function("hook_two_programs", |b| {
        b.iter(|| hook_once(socket, &two, 0));
    });
    group.bench_function("hook_refused", |b| {
        b.iter(|| hook_once(socket, &refused, 2));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
