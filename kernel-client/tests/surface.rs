//! The public surface of the client: what an agent's code can name and
//! what it cannot do.
//!
//! This file names its types through `kernel_client` only; if a type that a
//! public function of the client takes or returns were not re-exported,
//! it would not compile.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use kernel_client::{
    Action, ActionError, ActionKind, CanonicalAction, ClientConfig, ConfineError, Confinement,
    Decision, Denial, Digest, EffectError, Exec, Handshake, HandshakeSignatureError, HttpResponse,
    JsonValue, Kernel, KernelState, McpPeer, Outcome, Permit, ReceiptBody, Refusal, SessionId,
    SignedReceipt, SpawnConfig, SpawnError, VerifiedReceipt, VerifyError, VerifyingKey, WriteMode,
};
use std::path::Path;
use std::process::Command;

/// Uses every public function and method of the client and of the types it
/// hands out, with each result's type written out. Never called: it only
/// has to compile.
#[allow(dead_code, reason = "compiled, never run: the names are the test")]
fn every_type_is_named_through_the_client(kernel: &Kernel, permit: Permit) {
    let _: Result<Kernel, SpawnError> = Kernel::spawn(SpawnConfig::new("p.cedar", "/w", "/e.log"));
    let _: Result<Kernel, SpawnError> = Kernel::connect("name", ClientConfig::default());
    let handshake: &Handshake = kernel.handshake_info();
    let _: Confinement = handshake.confinement;
    let _: SessionId = handshake.session;
    let _: Digest = handshake.policy_digest;
    let key: &VerifyingKey = kernel.public_key();
    let _: Result<(), HandshakeSignatureError> = handshake.verify(key, &[0; 32], &[0; 64]);
    let _: KernelState = kernel.state();
    let _: Result<(), ConfineError> = kernel.lockdown(Path::new("/w/.scratch"));
    let tool: Action = Action::tool_call("search", &JsonValue::Null);
    let _: Action = Action::mcp_request(McpPeer::Agent, "resources/list", &JsonValue::Null);
    let _: Action = Action::file_write_without_content("/w/a", WriteMode::Append);
    let _: ActionKind = tool.kind();
    let _: Result<CanonicalAction, Denial> = kernel.canonicalize(tool.clone());
    let _: Result<CanonicalAction, ActionError> = CanonicalAction::new(tool.clone(), None);
    let _: Result<(Permit, Outcome), Denial> = kernel.broker(tool, Vec::new());
    let _: Result<std::process::Output, EffectError> = kernel.exec(Exec::new("/bin/true"));
    let _: Result<HttpResponse, EffectError> = kernel.http("GET", "https://example.org/", b"");
    let _: Decision = permit.decision();
    let receipt: &VerifiedReceipt = permit.receipt();
    let _: &ReceiptBody = receipt.body();
    let _: &SignedReceipt = receipt.signed();
    let _: Denial = Denial::Refused(Refusal::Malformed(String::new()));
    let _: Denial = Denial::Verification(VerifyError::Expired);
}

/// The workspace's `cargo`, asked how it would build `package` alone: the
/// features `kernel-core` gets there.
fn kernel_core_features_when_building(package: &str) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal"])
        .args(["-f", "{p} [{f}]", "-p", package, "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout).into_owned();
    tree.lines()
        .find_map(|line| {
            let at = line.find("kernel-core v")?;
            let line = &line[at..];
            let open = line.rfind('[')?;
            Some(line[open..].trim_end_matches(" (*)").to_owned())
        })
        .unwrap_or_else(|| panic!("kernel-core is not in the tree of {package}:\n{tree}"))
}

/// An agent that links the client gets a `kernel-core` that cannot sign:
/// `sign_receipt`, `SigningKey` and the other signing functions exist only
/// with its `signing` feature, and the client's own dependency does not
/// turn it on. The enforcer's build, which must sign, is the control that
/// shows the check sees the feature when it is there.
#[test]
fn an_agent_linking_the_client_gets_no_signing() {
    let client = kernel_core_features_when_building("kernel-client");
    assert!(
        !client.contains("signing"),
        "kernel-client builds kernel-core with {client}"
    );
    let enforcer = kernel_core_features_when_building("kernel-enforcer");
    assert!(
        enforcer.contains("signing"),
        "kernel-enforcer builds kernel-core with {enforcer}"
    );
}
