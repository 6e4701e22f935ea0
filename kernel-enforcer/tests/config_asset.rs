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

use kernel_testkit::{enforcer, fixture};
use std::process::Command;

#[test]
fn a_configuration_inside_the_workspace_refuses_start() {
    let f = fixture(
        "@id(\"w\")\npermit (principal, action == Action::\"file_write\", resource in Workspace::\"root\");\n",
    );
    let (ws, policy, state) = (&f.workspace, &f.policy, f.state());
    let config = ws.join("kernel.toml");
    std::fs::write(
        &config,
        format!(
            "policies = [{:?}]\nworkspace = {:?}\nevidence = {:?}\n",
            policy.display().to_string(),
            ws.display().to_string(),
            f.evidence.display().to_string()
        ),
    )
    .unwrap();
    // The agent would record that it ran; it must never start.
    let marker = state.join("agent-ran");
    let out = Command::new(enforcer())
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
