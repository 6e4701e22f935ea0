//! The configuration file is one of the kernel's own assets: whoever can
//! edit it chooses the policy, the workspace and the key the next start
//! uses. The escape campaign found that it was not protected like the
//! policy and key files: a project that kept its `kernel.toml` in the
//! workspace let a supervised agent rewrite it through the broker (the
//! example policy allows writes in the workspace), for instance to widen
//! its workspace to `/`. Now the floor protects the file and the enforcer
//! refuses to start when it lies where the agent can reach it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "tests"
)]

use std::process::Command;

const ENFORCER: &str = env!("CARGO_BIN_EXE_kernel-enforcer");

#[test]
fn a_configuration_inside_the_workspace_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let policy = state.join("policy.cedar");
    std::fs::write(
        &policy,
        "@id(\"w\")\npermit (principal, action == Action::\"file_write\", resource in Workspace::\"root\");\n",
    )
    .unwrap();
    let config = ws.join("kernel.toml");
    std::fs::write(
        &config,
        format!(
            "policies = [{:?}]\nworkspace = {:?}\nevidence = {:?}\n",
            policy.display().to_string(),
            ws.display().to_string(),
            state.join("evidence.log").display().to_string()
        ),
    )
    .unwrap();
    // The agent would record that it ran; it must never start.
    let marker = state.join("agent-ran");
    let out = Command::new(ENFORCER)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--", "/usr/bin/touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("kernel.toml` is inside"), "{stderr}");
    assert!(!marker.exists(), "the agent ran");
}
