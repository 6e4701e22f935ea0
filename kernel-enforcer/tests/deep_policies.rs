//! A deep policy gets the same answer on every path that decides: `policy
//! test` on the command's main thread, `listen`'s connection threads, and
//! the session thread of an embedded enforcer. A forbid of 201 conditions
//! joined by `||` was an evaluation error (so a deny) on the 2 MiB threads
//! and an answer on the main thread; now every path answers, and answers
//! alike. A policy deeper than the kernel evaluates is refused by `policy
//! check` and by every command that loads it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Denial, EffectError, Exec};
use kernel_testkit::{Fixture, enforcer, fixture};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A forbid whose condition is `terms` tests joined by `||`, and a permit
/// for `touch` in the workspace.
fn policy(terms: usize) -> String {
    let chain = (0..terms)
        .map(|i| format!("context.args.contains(\"forbidden-{i}\")"))
        .collect::<Vec<_>>()
        .join(" || ");
    format!(
        r#"@id("touch")
permit (principal, action == Action::"exec", resource)
when {{ resource.name == "touch" && context.cwd_in_workspace }};

@id("long-forbid")
@reason("a long list of names that may not be made")
forbid (principal, action == Action::"exec", resource)
when {{ {chain} }};
"#
    )
}

/// The file a case's `touch` makes: allowed, or the 151st name of the
/// chain (deep in it: evaluation reaches the bottom of the chain first).
const ALLOWED: &str = "allowed.txt";
const FORBIDDEN: &str = "forbidden-150";

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `policy test` of both cases; the main thread of the command decides.
fn policy_test(fixture: &Fixture) -> Output {
    let cases = fixture.dir.path().join("deep.tests.toml");
    std::fs::write(
        &cases,
        format!(
            r#"policies = ["{policy}"]
[environment]
workspace = "{workspace}"

[[case]]
name = "a name not in the chain"
action = "exec"
program = "/usr/bin/touch"
args = ["{ALLOWED}"]
expect = "allow"
policy = "touch"

[[case]]
name = "a name deep in the chain"
action = "exec"
program = "/usr/bin/touch"
args = ["{FORBIDDEN}"]
expect = "deny"
policy = "long-forbid"
"#,
            policy = fixture.policy.display(),
            workspace = fixture.workspace.display(),
        ),
    )
    .unwrap();
    Command::new(enforcer())
        .args(["policy", "test"])
        .arg(&cases)
        .output()
        .unwrap()
}

/// `kernel-enforcer exec -- touch NAME` through a running `listen`: its
/// connection thread decides, and the broker runs what is allowed.
fn exec_through(socket: &Path, workspace: &Path, name: &str) -> Output {
    Command::new(enforcer())
        .args(["exec", "--", "touch", name])
        .env("AGENT_KERNEL_ENDPOINT", socket)
        .current_dir(workspace)
        .output()
        .unwrap()
}

#[test]
fn a_chain_of_200_or_gets_the_same_answer_on_every_path() {
    let fixture = fixture(&policy(201));

    let tested = policy_test(&fixture);
    assert_eq!(tested.status.code(), Some(0), "{}", text(&tested));
    assert!(
        text(&tested).contains("2 passed, 0 failed"),
        "{}",
        text(&tested)
    );

    let mut listener = kernel_testkit::Listener::of(&fixture, &[]);
    let allowed = exec_through(&listener.socket, &fixture.workspace, ALLOWED);
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    assert!(fixture.workspace.join(ALLOWED).exists());
    let denied = exec_through(&listener.socket, &fixture.workspace, FORBIDDEN);
    assert_eq!(denied.status.code(), Some(126), "{}", text(&denied));
    assert!(
        text(&denied).contains("a long list of names"),
        "{}",
        text(&denied)
    );
    assert!(!fixture.workspace.join(FORBIDDEN).exists());
    listener.terminate();
    std::fs::remove_file(fixture.workspace.join(ALLOWED)).unwrap();

    // An embedded enforcer: its session thread decides.
    let kernel = fixture.spawn();
    let touch = |name: &str| {
        kernel.exec(
            Exec::new("/usr/bin/touch")
                .arg(name)
                .cwd(fixture.workspace.to_string_lossy()),
        )
    };
    let made = touch(ALLOWED).unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(fixture.workspace.join(ALLOWED).exists());
    match touch(FORBIDDEN) {
        Err(EffectError::Denied(Denial::Policy { policies, .. })) => {
            assert_eq!(policies, ["long-forbid"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(!fixture.workspace.join(FORBIDDEN).exists());
}

#[test]
fn a_policy_deeper_than_the_kernel_evaluates_is_refused_by_every_command() {
    let fixture = fixture(&policy(400));
    let checked = Command::new(enforcer())
        .args(["policy", "check"])
        .arg(&fixture.policy)
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    assert!(text(&checked).contains("levels deep"), "{}", text(&checked));

    let tested = policy_test(&fixture);
    assert_ne!(tested.status.code(), Some(0), "{}", text(&tested));
    assert!(text(&tested).contains("levels deep"), "{}", text(&tested));

    let socket = fixture.dir.path().join("state/endpoint.sock");
    let listen = kernel_testkit::listen_command(
        &fixture.policy,
        &fixture.workspace,
        &fixture.evidence,
        &socket,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert!(!listen.status.success(), "{}", text(&listen));
    assert!(text(&listen).contains("levels deep"), "{}", text(&listen));
    assert!(!socket.exists());

    // The same chain at half the length is checked and loads.
    std::fs::write(&fixture.policy, policy(200)).unwrap();
    let checked = Command::new(enforcer())
        .args(["policy", "check"])
        .arg(&fixture.policy)
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
}
