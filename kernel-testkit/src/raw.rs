//! A client driven by hand, frame by frame, against the real enforcer.

use crate::enforcer::{Fixture, enforcer};
use crate::frames::hello_frame;
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_core::{EnforcerFrame, Handshake, decode_enforcer_frame};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A hand-driven client that can send any bytes to a real enforcer
/// (`kernel-enforcer serve` over a [`Fixture`]); the enforcer is killed
/// when it is dropped.
#[derive(Debug)]
pub struct RawClient {
    /// The enforcer.
    pub child: Child,
    /// Frames to the enforcer.
    pub requests: IpcSender<Vec<u8>>,
    /// Frames from the enforcer.
    pub replies: IpcReceiver<Vec<u8>>,
}

impl RawClient {
    /// Starts `kernel-enforcer serve` over `fixture` and takes its
    /// channels.
    pub fn start(fixture: &Fixture) -> Self {
        Self::start_with_env(fixture, &[])
    }

    /// [`RawClient::start`] with `env` added to the enforcer's
    /// environment (a debug build's injected fault, say).
    pub fn start_with_env(fixture: &Fixture, env: &[(&str, &str)]) -> Self {
        let (server, name) = IpcOneShotServer::<(IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>)>::new()
            .expect("a one-shot server");
        let child = Command::new(enforcer())
            .args(["serve", "--connect", &name, "--workspace"])
            .arg(&fixture.workspace)
            .arg("--evidence")
            .arg(&fixture.evidence)
            .arg("--policy")
            .arg(&fixture.policy)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the enforcer");
        let (_, (requests, replies)) = server.accept().expect("the enforcer connects");
        Self {
            child,
            requests,
            replies,
        }
    }

    /// Sends `bytes` as one frame.
    pub fn send(&self, bytes: Vec<u8>) {
        self.requests.send(bytes).expect("send a frame");
    }

    /// The next frame from the enforcer (at most 10 s away), decoded.
    pub fn recv(&self) -> EnforcerFrame {
        let bytes = self
            .replies
            .try_recv_timeout(Duration::from_secs(10))
            .expect("a reply within 10 s");
        decode_enforcer_frame(&bytes).expect("a reply that decodes")
    }

    /// Says hello and returns the enforcer's handshake.
    pub fn hello(&self) -> Handshake {
        self.send(hello_frame([7; 32]));
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
