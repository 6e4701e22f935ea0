//! Shared fixtures for tests that run the real enforcer binary.
#![allow(dead_code, reason = "each test file uses a different subset")]

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_client::{Kernel, SpawnConfig};
use kernel_core::{
    ClientFrame, EnforcerFrame, Handshake, PROTOCOL_VERSION, decode_enforcer_frame,
    encode_client_frame,
};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// splitmix64: tiny, deterministic, good enough to pick a schedule.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant here).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A `u64` from the environment, decimal or `0x` hexadecimal (a seed).
pub(crate) fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The control socket `SpawnConfig` puts beside `evidence`.
pub(crate) fn control_path(evidence: &std::path::Path) -> PathBuf {
    let mut path = evidence.as_os_str().to_owned();
    path.push(".control");
    PathBuf::from(path)
}

/// A decoded evidence record.
pub(crate) enum Entry {
    Event(kernel_core::Event),
    Decision {
        request: Box<kernel_core::EncodedRequest>,
        body: kernel_core::ReceiptBody,
    },
    Checkpoint,
}

/// Every record of a log, decoded without checking signatures (the tests
/// audit the log separately).
pub(crate) fn entries(bytes: &[u8]) -> Vec<Entry> {
    use kernel_core::{EncodedRequest, Record, decode_receipt_body_unverified, decode_record};
    kernel_core::split_records(bytes)
        .unwrap()
        .iter()
        .map(|r| match decode_record(r).unwrap() {
            Record::Event(e) => Entry::Event(e.decode_unverified().unwrap()),
            Record::Decision { request, receipt } => Entry::Decision {
                request: Box::new(EncodedRequest::decode(&request).unwrap()),
                body: decode_receipt_body_unverified(&receipt.body).unwrap(),
            },
            Record::Checkpoint { .. } | Record::FrontierCheckpoint { .. } => Entry::Checkpoint,
        })
        .collect()
}

/// The path of a `file_read` request (the only kind these tests ask).
pub(crate) fn read_path(request: &kernel_core::EncodedRequest) -> &str {
    match request.request().action.action() {
        kernel_core::Action::FileRead { path } => path,
        other => panic!("only reads are asked for, the log has {other:?}"),
    }
}

/// This thread, as `/proc` names it (`PID/task/TID`), for
/// [`wait_until_asleep`].
pub(crate) fn this_thread() -> PathBuf {
    std::fs::read_link("/proc/thread-self").unwrap()
}

/// Whether the thread `task` (from [`this_thread`]) sleeps.
pub(crate) fn asleep(task: &std::path::Path) -> bool {
    std::fs::read_to_string(std::path::Path::new("/proc").join(task).join("stat")).is_ok_and(
        |stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('S'))
        },
    )
}

/// Waits until every thread in `tasks` sleeps, and has for a few looks in
/// a row: a thread blocked on a peer that does not answer (a stopped
/// enforcer, a full channel) sleeps until that changes.
pub(crate) fn wait_until_asleep(tasks: &[PathBuf]) {
    let started = std::time::Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 5 {
        in_a_row = if tasks.iter().all(|task| asleep(task)) {
            in_a_row + 1
        } else {
            0
        };
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the threads never all slept"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `done` every 20 ms until it holds; fails the test, naming
/// `what`, once `limit` has passed.
pub(crate) fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process, killed and reaped when dropped (when the test fails
/// too).
pub(crate) struct Reaped(pub(crate) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kernel-enforcer listen` deciding by `policy` over `workspace`,
/// recording to `evidence` and serving `socket`, its input and output
/// discarded; more arguments (`--policy`, `--key`, `--shadow`) may follow.
pub(crate) fn listen_command(
    policy: &Path,
    workspace: &Path,
    evidence: &Path,
    socket: &Path,
) -> Command {
    let mut command = Command::new(ENFORCER);
    command
        .arg("listen")
        .arg("--policy")
        .arg(policy)
        .arg("--workspace")
        .arg(workspace)
        .arg("--evidence")
        .arg(evidence)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A running `kernel-enforcer listen`, killed when dropped.
pub(crate) struct Listener {
    pub(crate) child: Reaped,
    pub(crate) socket: PathBuf,
}

impl Listener {
    /// Starts `command`, a `listen` serving `socket`, and waits (at most
    /// 20 s) until the socket takes connections.
    pub(crate) fn start(command: &mut Command, socket: &Path) -> Self {
        let child = Reaped(command.spawn().unwrap());
        wait_for("listen to come up", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(socket).is_ok()
        });
        Self {
            child,
            socket: socket.to_owned(),
        }
    }

    /// The `listen` of [`Fixture`]'s policy, workspace and evidence, its
    /// socket in the state directory, with `extra` arguments.
    pub(crate) fn of(fixture: &Fixture, extra: &[&str]) -> Self {
        let socket = fixture.dir.path().join("state/endpoint.sock");
        Self::start(
            listen_command(
                &fixture.policy,
                &fixture.workspace,
                &fixture.evidence,
                &socket,
            )
            .args(extra),
            &socket,
        )
    }

    /// Ends it as an operator does (`SIGTERM`, so that its final
    /// checkpoint is written) and waits (at most 20 s) until it has.
    pub(crate) fn terminate(&mut self) {
        signal(self.child.0.id(), "TERM");
        wait_for("listen to stop", Duration::from_secs(20), || {
            self.child.0.try_wait().unwrap().is_some()
        });
    }
}

/// Runs `command` with `input` on its standard input (as an agent runs
/// its hook, or a script pipes to `ask`), collecting its output.
pub(crate) fn output_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `command` to its end with its output collected (read while it
/// runs, so that a full pipe does not hold it); killed, and the test
/// failed naming `what`, if it takes longer than `limit`.
pub(crate) fn output_within(command: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// What `kernel-enforcer audit verify` says of `evidence`, which must
/// verify.
pub(crate) fn audit_verify(evidence: &Path) -> String {
    let out = Command::new(ENFORCER)
        .args(["audit", "verify"])
        .arg(evidence)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the evidence does not verify: {out:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines `kernel-enforcer audit inspect` prints for `evidence`.
pub(crate) fn audit_inspect(evidence: &Path) -> String {
    let out = Command::new(ENFORCER)
        .args(["audit", "inspect"])
        .arg(evidence)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Plants a private key holding `content` at `home/.ssh/id_ed25519`;
/// returns the key's path.
pub(crate) fn plant_ssh_key(home: &Path, content: &str) -> PathBuf {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::write(&key, content).unwrap();
    key
}
