//! Start-up paths that used to fail open: a protected path the floor could
//! not resolve was silently left out of it. Now the enforcer refuses to
//! start, naming the path, and a path that does not exist yet is protected
//! where it will be created, through symbolic links included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_testkit::{Listener, enforcer, fixture, output_with_input};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const POLICY: &str = r#"
@id("write-workspace")
permit (principal, action == Action::"file_write", resource in Workspace::"root");
"#;

/// `kernel-enforcer run --danger-unconfined` with `protect`, whose agent
/// creates `marker`: returns the output and whether the agent ran.
fn run_agent(dir: &Path, protect: &[PathBuf]) -> (Output, bool) {
    let f = fixture(POLICY);
    let marker = dir.join("agent-ran");
    let _ = std::fs::remove_file(&marker);
    let mut command = Command::new(enforcer());
    command
        .args(["run", "--danger-unconfined", "--policy"])
        .arg(&f.policy)
        .arg("--workspace")
        .arg(&f.workspace)
        // Created at start, with its directory.
        .arg("--evidence")
        .arg(f.dir.path().join("state/not-yet/evidence.log"));
    for path in protect {
        command.arg("--protect").arg(path);
    }
    let output = command
        .args(["--", "/usr/bin/touch"])
        .arg(&marker)
        .output()
        .unwrap();
    (output, marker.exists())
}

#[test]
fn a_protected_path_that_cannot_be_resolved_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("file"), "x").unwrap();
    symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
    symlink(root.join("loop-a"), root.join("loop-b")).unwrap();

    // Paths that do not exist yet are a valid configuration: the agent
    // runs (and exits without connecting, which `run` reports).
    let (output, ran) = run_agent(root, &[root.join("not-yet/kept.txt")]);
    assert!(ran, "{output:?}");

    for bad in [root.join("loop-a"), root.join("file/under")] {
        let (output, ran) = run_agent(root, &[root.join("not-yet/kept.txt"), bad.clone()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot resolve the protected path `{}`",
                bad.display()
            )),
            "{stderr}"
        );
        assert!(stderr.contains("refusing to start"), "{stderr}");
        assert!(
            !ran,
            "the agent ran although `{}` is unprotected",
            bad.display()
        );
    }
}

fn ask(listener: &Listener, path: &Path) -> Output {
    let action = serde_json::json!({
        "version": 1,
        "action": {"kind": "file_write", "path": path, "content": "overwritten"},
    });
    output_with_input(
        Command::new(enforcer())
            .args(["ask", "--action-json", "-"])
            .env("AGENT_KERNEL_ENDPOINT", &listener.socket),
        action.to_string().as_bytes(),
    )
}

/// Writes `path` the way an agent using `ask` does: only when allowed.
fn write_if_allowed(listener: &Listener, path: &Path) -> Output {
    let output = ask(listener, path);
    if output.status.code() == Some(0) {
        std::fs::write(path, "overwritten").unwrap();
    }
    output
}

#[test]
fn a_protected_path_not_created_yet_is_protected_where_links_lead() {
    let f = fixture(POLICY);
    let (workspace, outside) = (&f.workspace, &f.outside);
    std::fs::create_dir_all(workspace.join("sub")).unwrap();
    // A directory outside the workspace that is the workspace's `sub`, and
    // a link to a file that does not exist yet.
    symlink(workspace.join("sub"), outside.join("alias")).unwrap();
    symlink(workspace.join("sub/target.key"), outside.join("dangling")).unwrap();
    let listener = Listener::of(
        &f,
        &[
            "--protect",
            outside.join("alias/secret.key").to_str().unwrap(),
            "--protect",
            outside.join("dangling").to_str().unwrap(),
        ],
    );

    // Where the protected paths lead, inside the workspace.
    for path in [
        workspace.join("sub/secret.key"),
        workspace.join("sub/target.key"),
    ] {
        let output = write_if_allowed(&listener, &path);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(answer["decision"], "deny", "{answer}");
        assert!(
            answer["policies"].to_string().contains("kernel-floor"),
            "{answer}"
        );
        assert!(!path.exists(), "`{}` was written", path.display());
    }
    // Any other file there is the policy's to allow.
    let other = workspace.join("sub/notes.txt");
    let output = write_if_allowed(&listener, &other);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(other.exists());
}
