//! The cost of one `authorize` round trip, next to the floor it cannot beat.
//!
//! One criterion run measures, side by side (group `roundtrip`):
//!
//! - `floor_unsynced`: a raw ipc-channel round trip between this process
//!   and a separate echo process, with frames of exactly the byte sizes of
//!   a real `Authorize` request and a real signed `Receipt` reply, plus one
//!   ed25519 `sign` over a real receipt body and one `verify_strict` of it;
//! - `floor_durable`: the same plus one append of a real evidence record's
//!   size to a file, made durable with `fdatasync`;
//! - `authorize_durable`: `Kernel::authorize` of an allowed `file_read`
//!   against the real `kernel-enforcer` binary, which decides with Cedar,
//!   signs, and `fdatasync`s the decision to its evidence file before
//!   replying; the client then verifies the receipt.
//! - `authorize_os_buffered`: the same against an enforcer started with
//!   `--danger-evidence-os-buffered` (records written to the OS, not
//!   synced), to compare with `floor_unsynced`.
//!
//! The floor does its sign and `fdatasync` before sending the request, not
//! while the echo process is answering: in the real round trip nothing
//! overlaps (the client waits while the enforcer works), so the floor is
//! the plain sum of its parts, with no parallelism the kernel does not
//! have.
//!
//! The echo process is this bench binary itself, re-executed with
//! [`ECHO_ENV`] set to the name of a one-shot server. It sets up its
//! channels exactly as the enforcer does (`kernel-enforcer/src/serve.rs`),
//! answers every request with a reply of the receipt frame's size, signs
//! and verifies nothing, and exits when the bench hangs up.
//!
//! Files (the evidence file, the floor's durable file) live in temporary
//! directories under cargo's `CARGO_TARGET_TMPDIR`, on the disk that holds
//! the target directory, so `fdatasync` reaches a real device.
//!
//! Run it with: `cargo bench -p kernel-enforcer --bench roundtrip`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness"
)]

use criterion::Criterion;
use ed25519_dalek::{Signer, SigningKey};
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_client::{Action, Kernel, SpawnConfig};
use kernel_core::{
    ClientFrame, EncodedRequest, EnforcerFrame, Record, Request, encode_client_frame,
    encode_enforcer_frame, frame_record,
};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Set in the echo child: the one-shot server name to connect to.
const ECHO_ENV: &str = "ROUNDTRIP_ECHO_SERVER";
/// Set in the echo child: how many bytes each reply carries.
const REPLY_BYTES_ENV: &str = "ROUNDTRIP_REPLY_BYTES";

/// The parent's ends, as the client holds them: requests out, replies in.
type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

const POLICY: &str = r#"@id("read-ws")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

fn main() {
    if let Ok(name) = std::env::var(ECHO_ENV) {
        echo_server(name);
        return;
    }
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
        .configure_from_args();
    roundtrip(&mut criterion);
    criterion.final_summary();
}

/// The echo child: same channel setup as the enforcer's `serve`, a reply of
/// the receipt frame's size to every request, exit on disconnect.
fn echo_server(name: String) {
    let reply_bytes: usize = std::env::var(REPLY_BYTES_ENV)
        .expect("reply size")
        .parse()
        .expect("reply size is a number");
    let reply = vec![0x5a_u8; reply_bytes];
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().expect("request channel");
    let (replies, replies_rx) = ipc::channel::<Vec<u8>>().expect("reply channel");
    let bootstrap = IpcSender::<ClientEnds>::connect(name).expect("connect to the bench");
    bootstrap
        .send((requests_tx, replies_rx))
        .expect("hand over the ends");
    drop(bootstrap);
    while let Ok(request) = requests.recv() {
        black_box(&request);
        if replies.send(reply.clone()).is_err() {
            return;
        }
    }
}

/// A running echo child and the parent's ends of its channels.
struct Echo {
    child: Child,
    requests: IpcSender<Vec<u8>>,
    replies: IpcReceiver<Vec<u8>>,
}

impl Echo {
    fn spawn(reply_bytes: usize) -> Self {
        let (server, name) = IpcOneShotServer::<ClientEnds>::new().expect("one-shot server");
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(ECHO_ENV, name)
            .env(REPLY_BYTES_ENV, reply_bytes.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the echo child");
        let (_bootstrap, (requests, replies)) = server.accept().expect("echo child connects");
        Self {
            child,
            requests,
            replies,
        }
    }

    fn round_trip(&self, frame: Vec<u8>) -> Vec<u8> {
        self.requests.send(frame).expect("send to echo");
        self.replies.recv().expect("reply from echo")
    }

    fn stop(self) {
        let Self {
            mut child,
            requests,
            replies,
        } = self;
        drop(requests);
        drop(replies);
        let status = child.wait().expect("echo child exits");
        assert!(status.success(), "echo child failed: {status}");
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Byte sizes and the signed message of a real decision.
struct Shapes {
    request_frame: Vec<u8>,
    receipt_frame_bytes: usize,
    receipt_body: Vec<u8>,
    record_bytes: usize,
}

/// Asks the real kernel once and measures what travels and what is stored.
fn measure_shapes(kernel: &Kernel, path: &str) -> Shapes {
    let permit = kernel
        .authorize(Action::file_read(path))
        .expect("the policy allows reading the workspace");
    let receipt = permit.receipt().signed().clone();
    let action = kernel
        .canonicalize(Action::file_read(path))
        .expect("canonical action");
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let request = EncodedRequest::new(Request {
        session: kernel.handshake_info().session,
        seq: permit.seq(),
        nonce,
        action,
        deadline_ms: now_ms() + 5_000,
    });
    let request_frame = encode_client_frame(&ClientFrame::Authorize {
        request: request.bytes().to_vec(),
    });
    let receipt_frame_bytes = encode_enforcer_frame(&EnforcerFrame::Receipt {
        seq: permit.seq(),
        receipt: receipt.clone(),
    })
    .len();
    let record_bytes = frame_record(&Record::Decision {
        request: request.bytes().to_vec(),
        receipt: receipt.clone(),
    })
    .len();
    Shapes {
        request_frame,
        receipt_frame_bytes,
        receipt_body: receipt.body,
        record_bytes,
    }
}

fn append_file(dir: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("floor.log"))
        .expect("floor file")
}

fn roundtrip(criterion: &mut Criterion) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).expect("target tmpdir");
    let workspace = tempfile::Builder::new()
        .prefix("roundtrip-ws-")
        .tempdir_in(base)
        .expect("workspace");
    let state = tempfile::Builder::new()
        .prefix("roundtrip-state-")
        .tempdir_in(base)
        .expect("state dir");
    let policy = state.path().join("bench.cedar");
    std::fs::write(&policy, POLICY).expect("policy file");
    let readme = workspace.path().join("README.md");
    std::fs::write(&readme, "# bench\n").expect("README.md");
    let readme = readme.to_str().expect("UTF-8 path").to_owned();
    let evidence = state.path().join("evidence.log");

    let kernel = Kernel::spawn(
        SpawnConfig::new(&policy, workspace.path(), &evidence)
            .enforcer(env!("CARGO_BIN_EXE_kernel-enforcer")),
    )
    .expect("start the enforcer");
    let shapes = measure_shapes(&kernel, &readme);
    eprintln!(
        "roundtrip: request frame {} B, receipt frame {} B, signed body {} B, \
         evidence record {} B; files under {}",
        shapes.request_frame.len(),
        shapes.receipt_frame_bytes,
        shapes.receipt_body.len(),
        shapes.record_bytes,
        state.path().display(),
    );

    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let verifying = key.verifying_key();
    let record = vec![0xa5_u8; shapes.record_bytes];
    let mut floor_file = append_file(state.path());

    let echo = Echo::spawn(shapes.receipt_frame_bytes);
    assert_eq!(
        echo.round_trip(shapes.request_frame.clone()).len(),
        shapes.receipt_frame_bytes
    );

    let mut group = criterion.benchmark_group("roundtrip");

    group.bench_function("floor_unsynced", |b| {
        b.iter(|| {
            let signature = key.sign(&shapes.receipt_body);
            let reply = echo.round_trip(shapes.request_frame.clone());
            verifying
                .verify_strict(black_box(&shapes.receipt_body), &signature)
                .unwrap();
            black_box(reply)
        });
    });

    group.bench_function("floor_durable", |b| {
        b.iter(|| {
            let signature = key.sign(&shapes.receipt_body);
            floor_file.write_all(&record).unwrap();
            floor_file.sync_data().unwrap();
            let reply = echo.round_trip(shapes.request_frame.clone());
            verifying
                .verify_strict(black_box(&shapes.receipt_body), &signature)
                .unwrap();
            black_box(reply)
        });
    });

    group.bench_function("authorize_durable", |b| {
        b.iter(|| {
            kernel
                .authorize(Action::file_read(readme.as_str()))
                .expect("allowed")
        });
    });

    let buffered = Kernel::spawn(
        SpawnConfig::new(&policy, workspace.path(), state.path().join("buffered.log"))
            .enforcer(env!("CARGO_BIN_EXE_kernel-enforcer"))
            .danger_evidence_os_buffered(),
    )
    .expect("start the os-buffered enforcer");
    group.bench_function("authorize_os_buffered", |b| {
        b.iter(|| {
            buffered
                .authorize(Action::file_read(readme.as_str()))
                .expect("allowed")
        });
    });

    group.finish();
    echo.stop();
    let _ = buffered.shutdown(Duration::from_secs(5));
    let status = kernel.shutdown(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "enforcer exit: {status:?}"
    );
}
