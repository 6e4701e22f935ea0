//! Shared fixtures for tests that run the real enforcer binary.
#![allow(dead_code, reason = "each test file uses a different subset")]

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_client::{Kernel, SpawnConfig};
use kernel_core::{
    ClientFrame, EnforcerFrame, Handshake, PROTOCOL_VERSION, decode_enforcer_frame,
    encode_client_frame,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) const ENFORCER: &str = env!("CARGO_BIN_EXE_kernel-enforcer");

/// A temporary workspace, state directory, policy and evidence file.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) workspace: PathBuf,
    pub(crate) policy: PathBuf,
    pub(crate) evidence: PathBuf,
}

pub(crate) fn fixture(policy: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let policy_path = state.join("policy.cedar");
    std::fs::write(&policy_path, policy).unwrap();
    Fixture {
        workspace,
        policy: policy_path,
        evidence: state.join("evidence.log"),
        dir,
    }
}

impl Fixture {
    pub(crate) fn config(&self) -> SpawnConfig {
        SpawnConfig::new(&self.policy, &self.workspace, &self.evidence)
            .enforcer(ENFORCER)
            .timeout(Duration::from_secs(5))
    }

    pub(crate) fn spawn(&self) -> Kernel {
        Kernel::spawn(self.config()).unwrap()
    }

    pub(crate) fn ws(&self, name: &str) -> String {
        self.workspace.join(name).to_string_lossy().into_owned()
    }
}

pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

pub(crate) fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A hand-driven client that can send any bytes to a real enforcer.
pub(crate) struct RawClient {
    pub(crate) child: Child,
    pub(crate) requests: IpcSender<Vec<u8>>,
    pub(crate) replies: IpcReceiver<Vec<u8>>,
}

impl RawClient {
    pub(crate) fn start(fixture: &Fixture) -> Self {
        let (server, name) =
            IpcOneShotServer::<(IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>)>::new().unwrap();
        let child = Command::new(ENFORCER)
            .args(["serve", "--connect", &name, "--workspace"])
            .arg(&fixture.workspace)
            .arg("--evidence")
            .arg(&fixture.evidence)
            .arg("--policy")
            .arg(&fixture.policy)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let (_, (requests, replies)) = server.accept().unwrap();
        Self {
            child,
            requests,
            replies,
        }
    }

    pub(crate) fn send(&self, bytes: Vec<u8>) {
        self.requests.send(bytes).unwrap();
    }

    pub(crate) fn recv(&self) -> EnforcerFrame {
        let bytes = self
            .replies
            .try_recv_timeout(Duration::from_secs(10))
            .unwrap();
        decode_enforcer_frame(&bytes).unwrap()
    }

    pub(crate) fn hello(&self) -> Handshake {
        self.send(encode_client_frame(&ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            challenge: [7; 32],
        }));
        match self.recv() {
            EnforcerFrame::Hello { handshake, .. } => handshake,
            other => panic!("expected hello, got {other:?}"),
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `kernel-enforcer keygen --out dir`; returns the private key file
/// and the public key it printed.
pub(crate) fn keygen(dir: &std::path::Path) -> (PathBuf, kernel_core::VerifyingKey) {
    let out = Command::new(ENFORCER)
        .args(["keygen", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen failed: {out:?}");
    let key = kernel_core::parse_public_key(&String::from_utf8(out.stdout).unwrap()).unwrap();
    (dir.join("kernel.key"), key)
}
