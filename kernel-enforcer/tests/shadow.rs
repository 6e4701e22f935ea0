//! Shadow mode (`--shadow`): every action is decided and recorded as
//! usual, and one the policy denies proceeds anyway, with a receipt and a
//! record that say so; the kernel floor and the kill switch still deny,
//! and nobody but the operator's command line turns it on. Each claim is
//! judged by the world (files read, written, left unchanged) and by the
//! evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Decision, Denial, Kernel, SpawnError};
use kernel_core::{AuditOptions, Event, audit};
use kernel_testkit::{Entry, audit_verify, control_path, enforcer, entries, fixture};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Reads of `allowed.txt` only; and a forbid on `notes.md`, which shadow
/// mode lets through like any denial of the policy.
const POLICY: &str = r#"
@id("read-allowed")
@reason("allowed.txt may be read")
permit (principal, action == Action::"file_read", resource)
when { resource.name == "allowed.txt" };
@id("no-notes")
@reason("notes are not to be written")
forbid (principal, action == Action::"file_write", resource)
when { resource.name == "notes.md" };
"#;

/// What an operator's command to the enforcer recording `evidence`
/// prints; it must succeed.
fn operator(evidence: &Path, args: &[&str]) -> String {
    let out = kernel_testkit::operator(&control_path(evidence), args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn verify_json(evidence: &Path) -> serde_json::Value {
    let out = Command::new(enforcer())
        .args(["audit", "verify", "--json"])
        .arg(evidence)
        .output()
        .unwrap();
    assert!(out.status.success(), "audit verify --json failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn denied_actions_proceed_recorded_while_the_floor_and_the_halt_still_deny() {
    let fixture = fixture(POLICY);
    std::fs::write(fixture.workspace.join("allowed.txt"), "plain allow").unwrap();
    std::fs::write(fixture.workspace.join("other.txt"), "read under shadow").unwrap();
    let policy_text = std::fs::read_to_string(&fixture.policy).unwrap();
    let kernel = Kernel::spawn(fixture.config().shadow()).unwrap();
    assert!(kernel.is_shadow());
    assert!(kernel.handshake_info().shadow, "the handshake says shadow");

    // Allowed by the policy: a plain permit.
    let permit = kernel
        .authorize(kernel_client::Action::file_read(fixture.ws("allowed.txt")))
        .unwrap();
    assert!(!permit.is_shadow());
    assert_eq!(permit.decision(), Decision::Allow);
    assert_eq!(
        kernel.read_file(&fixture.ws("allowed.txt")).unwrap(),
        b"plain allow"
    );

    // No permit matches: denied by the policy, proceeds under shadow.
    let permit = kernel
        .authorize(kernel_client::Action::file_read(fixture.ws("other.txt")))
        .unwrap();
    assert!(permit.is_shadow());
    assert_eq!(permit.decision(), Decision::ShadowDeny);
    assert_eq!(
        permit.receipt().body().policies,
        Vec::<String>::new(),
        "the policy's own answer is kept"
    );
    assert_eq!(
        kernel.read_file(&fixture.ws("other.txt")).unwrap(),
        b"read under shadow"
    );

    // Forbidden by the policy: proceeds under shadow too, and the receipt
    // names the forbid that would have denied it.
    kernel
        .write_file(&fixture.ws("notes.md"), b"written in shadow mode")
        .unwrap();
    assert_eq!(
        std::fs::read(fixture.workspace.join("notes.md")).unwrap(),
        b"written in shadow mode"
    );

    // The floor is not lifted: the policy file is neither read nor
    // written, whatever shadow mode says.
    let policy_path = fixture.policy.to_string_lossy().into_owned();
    match kernel.read_file(&policy_path) {
        Err(kernel_client::EffectError::Denied(Denial::Policy { policies, .. })) => {
            assert_eq!(policies, vec!["kernel-floor-assets".to_owned()]);
        }
        other => panic!("the floor must deny reading the policy: {other:?}"),
    }
    assert!(
        kernel
            .write_file(&policy_path, b"permit (principal, action, resource);")
            .is_err()
    );
    assert_eq!(
        std::fs::read_to_string(&fixture.policy).unwrap(),
        policy_text
    );

    // `status` says shadow, and counts what proceeded.
    let status = operator(&fixture.evidence, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["data"]["shadow"], serde_json::Value::Bool(true));
    assert_eq!(status["data"]["decisions"]["shadowed"], 3);

    // The kill switch still stops everything.
    operator(&fixture.evidence, &["halt", "--reason", "test"]);
    match kernel.write_file(&fixture.ws("after-halt.txt"), b"x") {
        Err(kernel_client::EffectError::Denied(Denial::Halted)) => {}
        Err(kernel_client::EffectError::Denied(Denial::Policy { reasons, .. }))
            if reasons == ["halted"] => {}
        other => panic!("halted, everything is denied: {other:?}"),
    }
    assert!(!fixture.workspace.join("after-halt.txt").exists());
    let _ = kernel.shutdown(Duration::from_secs(5));

    // The evidence: shadow mode announced before the first decision, each
    // decision with what the policy said, and `audit verify` counts.
    let log = std::fs::read(&fixture.evidence).unwrap();
    let records = entries(&log);
    let announced = records
        .iter()
        .position(|e| matches!(e, Entry::Event(Event::Shadow { .. })))
        .expect("the session announces shadow mode");
    let first_decision = records
        .iter()
        .position(|e| matches!(e, Entry::Decision { .. }))
        .unwrap();
    assert!(announced < first_decision);
    let decisions: Vec<(String, Decision)> = records
        .iter()
        .filter_map(|e| match e {
            Entry::Decision { request, body } => Some((
                kernel_policy::describe::action(request.request().action.action()),
                body.decision,
            )),
            _ => None,
        })
        .collect();
    let decided = |needle: &str| -> Vec<Decision> {
        decisions
            .iter()
            .filter(|(action, _)| action.contains(needle))
            .map(|(_, d)| *d)
            .collect()
    };
    assert!(decided("allowed.txt").iter().all(|d| *d == Decision::Allow));
    assert!(
        decided("other.txt")
            .iter()
            .all(|d| *d == Decision::ShadowDeny)
    );
    assert_eq!(decided("notes.md"), vec![Decision::ShadowDeny]);
    assert!(decided("policy.cedar").iter().all(|d| *d == Decision::Deny));
    assert_eq!(decided("after-halt.txt"), vec![Decision::Deny]);
    let report = audit(&log, &AuditOptions::default()).unwrap();
    assert_eq!(report.shadow_sessions, 1);
    assert_eq!(report.shadow_denied, 3);
    let summary = audit_verify(&fixture.evidence);
    assert!(
        summary.contains(
            "shadow mode: 1 sessions; 3 actions proceeded that the policy did not allow (3 denied, 0 asked about)"
        ),
        "{summary}"
    );
    // The JSON form says the same: a reader of it alone must not see a
    // log where nothing the policy denied went through.
    let document = verify_json(&fixture.evidence);
    assert_eq!(document["shadow_sessions"], 1, "{document}");
    assert_eq!(document["shadow_denied"], 3, "{document}");
    assert_eq!(document["shadow_asked"], 0, "{document}");
}

/// A session that did not ask for shadow mode never gives a shadow
/// permit: the same denial is a denial, with nothing done.
#[test]
fn without_the_flag_the_same_actions_are_denied() {
    let fixture = fixture(POLICY);
    std::fs::write(fixture.workspace.join("other.txt"), "secret-ish").unwrap();
    let kernel = fixture.spawn();
    assert!(!kernel.is_shadow());
    assert!(
        kernel
            .read_file(&fixture.ws("other.txt"))
            .is_err_and(|e| matches!(e, kernel_client::EffectError::Denied(_)))
    );
    assert!(kernel.write_file(&fixture.ws("notes.md"), b"x").is_err());
    assert!(!fixture.workspace.join("notes.md").exists());
    let _ = kernel.shutdown(Duration::from_secs(5));
    let summary = audit_verify(&fixture.evidence);
    assert!(!summary.contains("shadow"), "{summary}");
}

/// An enforcer binary that turns shadow mode on behind the client's back
/// (a wrapper that adds `--shadow`) is refused at spawn: the client's
/// check of the signed handshake sees it.
#[test]
fn a_client_that_did_not_ask_for_shadow_mode_refuses_an_enforcer_in_it() {
    let fixture = fixture(POLICY);
    let wrapper = fixture.dir.path().join("enforcer-with-shadow");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" --shadow\n",
            enforcer().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = Kernel::spawn(fixture.config().enforcer(&wrapper));
    match refused {
        Err(SpawnError::Handshake(why)) => assert!(why.contains("shadow"), "{why}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a client that did not ask for shadow mode joined one"),
    }
}

/// Shadow mode is a flag of the operator's command line: a configuration
/// file cannot turn it on, and the enforcer does not start with one that
/// tries (nothing is recorded, nobody is served).
#[test]
fn a_configuration_file_cannot_turn_shadow_mode_on() {
    let fixture = fixture(POLICY);
    let config = fixture.dir.path().join("kernel.toml");
    std::fs::write(
        &config,
        format!(
            "policies = [\"{}\"]\nworkspace = \"{}\"\nevidence = \"{}\"\nshadow = true\n",
            fixture.policy.display(),
            fixture.workspace.display(),
            fixture.evidence.display()
        ),
    )
    .unwrap();
    let socket = fixture.dir.path().join("endpoint.sock");
    let out = Command::new(enforcer())
        .args(["listen", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`shadow` cannot be set in a configuration file"),
        "{stderr}"
    );
    assert!(!fixture.evidence.exists(), "nothing was recorded");
    assert!(!socket.exists(), "nobody is served");
}

/// Governed at the system-call boundary, with a policy that permits
/// nothing: every program start and file access proceeds under shadow
/// mode (outside the workspace and against a forbid too), except the
/// floor's: the policy file is not read. The evidence verifies and counts
/// what proceeded.
#[test]
fn governed_shadow_run_blocks_nothing_but_the_floor() {
    let fixture = fixture(
        r#"
@id("no-secret")
@reason("secret.txt is not to be read")
forbid (principal, action == Action::"file_read", resource)
when { resource.name == "secret.txt" };
"#,
    );
    let (ws, outside, policy) = (&fixture.workspace, &fixture.outside, &fixture.policy);
    std::fs::write(outside.join("data.txt"), "outside data").unwrap();
    std::fs::write(ws.join("secret.txt"), "forbidden but shadowed").unwrap();
    let script = format!(
        "cat '{}' > copied.txt; cat secret.txt > secret-copy.txt; cat '{}' > leaked.txt 2>/dev/null; echo done",
        outside.join("data.txt").display(),
        policy.display()
    );
    let out = fixture
        .governed(&["--shadow"], "/bin/sh", &["-c", &script])
        .current_dir(ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    assert_eq!(
        std::fs::read_to_string(ws.join("copied.txt")).unwrap(),
        "outside data"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("secret-copy.txt")).unwrap(),
        "forbidden but shadowed"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("leaked.txt")).unwrap(),
        "",
        "the floor kept the policy file closed"
    );
    let log = std::fs::read(&fixture.evidence).unwrap();
    let report = audit(&log, &AuditOptions::default()).unwrap();
    assert_eq!(report.shadow_sessions, 1);
    assert_eq!(report.allowed, 0, "the policy permits nothing");
    assert!(report.shadow_denied > 3, "{report:?}");
    let floor_denials = entries(&log)
        .iter()
        .filter(|e| {
            matches!(e, Entry::Decision { body, .. }
                if body.decision == Decision::Deny
                    && body.policies == ["kernel-floor-assets"])
        })
        .count();
    assert!(floor_denials >= 1, "the floor's denial is recorded");
    let summary = audit_verify(&fixture.evidence);
    assert!(summary.contains("shadow mode: 1 sessions;"), "{summary}");
}

/// The decision endpoint in shadow mode: `ask` prints a `shadow-deny`
/// receipt and exits 0; `exec` has the broker run a program no permit
/// allows; the floor still keeps the policy file from being read through
/// the broker or a coding agent's hook; `status` says shadow.
#[test]
fn listen_in_shadow_mode_brokers_what_the_policy_denies_but_not_the_floor() {
    let fixture = fixture(POLICY);
    let listener = kernel_testkit::Listener::of(&fixture, &["--shadow"]);
    let client = |args: &[&str], stdin: &str| {
        kernel_testkit::output_with_input(
            Command::new(enforcer())
                .args(args)
                .env("AGENT_KERNEL_ENDPOINT", &listener.socket)
                .current_dir(&fixture.workspace),
            stdin.as_bytes(),
        )
    };
    let document = format!(
        r#"{{"version": 1, "action": {{"kind": "file_read", "path": "{}"}}}}"#,
        fixture.ws("anything.txt")
    );
    let asked = client(&["ask", "--action-json", "-"], &document);
    assert_eq!(asked.status.code(), Some(0), "{asked:?}");
    let receipt: serde_json::Value = serde_json::from_slice(&asked.stdout).unwrap();
    assert_eq!(receipt["decision"], "shadow-deny", "{receipt}");

    let made = client(&["exec", "--", "mkdir", "made-in-shadow"], "");
    assert_eq!(made.status.code(), Some(0), "{made:?}");
    assert!(fixture.workspace.join("made-in-shadow").is_dir());

    let policy = fixture.policy.to_string_lossy().into_owned();
    let leaked = client(&["exec", "--", "cat", &policy], "");
    assert_eq!(leaked.status.code(), Some(126), "{leaked:?}");
    assert!(
        !String::from_utf8_lossy(&leaked.stdout).contains("read-allowed"),
        "the policy's text must not come out"
    );

    // A coding agent's hook: a command no permit allows goes on (exit 0,
    // and the agent runs it), a read of the policy file is still blocked.
    let hook_payload = |tool: &str, input: serde_json::Value| {
        serde_json::json!({
            "session_id": "s", "cwd": fixture.workspace, "hook_event_name": "PreToolUse",
            "tool_name": tool, "tool_input": input,
        })
        .to_string()
    };
    let command = client(
        &["hook", "claude-code"],
        &hook_payload("Bash", serde_json::json!({"command": "mkdir by-the-agent"})),
    );
    assert_eq!(command.status.code(), Some(0), "{command:?}");
    let read = client(
        &["hook", "claude-code"],
        &hook_payload("Read", serde_json::json!({"file_path": policy})),
    );
    assert_eq!(read.status.code(), Some(2), "{read:?}");
    let answer: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(
        answer["hookSpecificOutput"]["permissionDecision"], "deny",
        "{answer}"
    );

    let status = operator(&fixture.evidence, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["data"]["shadow"], serde_json::Value::Bool(true));
}
