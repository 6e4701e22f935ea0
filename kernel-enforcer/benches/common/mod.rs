//! What the benchmarks share (beyond the workspace's test kit): the echo
//! process of the floor, the real shapes of a decision, fixtures on a real
//! disk, concurrent deciders, and logs written by a real session.
#![allow(dead_code, reason = "each benchmark uses a different subset")]

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_client::{Action, Kernel};
use kernel_core::{
    ClientFrame, EncodedRequest, EnforcerFrame, Handshake, Record, Request, SigningKey,
    decode_enforcer_frame, encode_client_frame, encode_enforcer_frame, frame_record,
};
use kernel_enforcer::session::SessionConfig;
use kernel_enforcer::session::evidence::EvidenceLog;
use kernel_testkit::session::InProcess;
use kernel_testkit::{Fixture, fixture_in, read_frame};
use std::hint::black_box;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Set in the echo child: the one-shot server name to connect to.
const ECHO_ENV: &str = "KERNEL_BENCH_ECHO_SERVER";
/// Set in the echo child: how many bytes each reply carries.
const REPLY_BYTES_ENV: &str = "KERNEL_BENCH_REPLY_BYTES";

/// The parent's ends, as the client holds them: requests out, replies in.
type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

/// Serves as the echo child and returns `true` when this process was
/// started as one ([`Echo::spawn`] re-executes the benchmark binary); the
/// benchmark's `main` then returns at once.
pub(crate) fn run_echo_child() -> bool {
    let Ok(name) = std::env::var(ECHO_ENV) else {
        return false;
    };
    echo_server(name);
    true
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
pub(crate) struct Echo {
    child: Child,
    requests: IpcSender<Vec<u8>>,
    replies: IpcReceiver<Vec<u8>>,
}

impl Echo {
    /// Starts this binary again as an echo child answering `reply_bytes`.
    pub(crate) fn spawn(reply_bytes: usize) -> Self {
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

    /// One request out, one reply back.
    pub(crate) fn round_trip(&self, frame: Vec<u8>) -> Vec<u8> {
        self.requests.send(frame).expect("send to echo");
        self.replies.recv().expect("reply from echo")
    }

    /// Hangs up and waits for the child, which must exit cleanly.
    pub(crate) fn stop(self) {
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

/// The benchmarks' policy: reads of the workspace, nothing else.
pub(crate) const POLICY: &str = r#"@id("read-ws")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

/// A fixture of `policy` under cargo's `CARGO_TARGET_TMPDIR`, on the disk
/// that holds the target directory, so that `fdatasync` reaches a real
/// device (not a tmpfs); its workspace holds `README.md`, whose path comes
/// with it.
pub(crate) fn bench_fixture(policy: &str) -> (Fixture, String) {
    let fixture = fixture_in(Path::new(env!("CARGO_TARGET_TMPDIR")), policy);
    std::fs::write(fixture.workspace.join("README.md"), "# bench\n").expect("README.md");
    let readme = fixture.ws("README.md");
    (fixture, readme)
}

/// An `Authorize` frame for request `seq` of the session `handshake`
/// opened: three in four read inside the workspace (allowed), the rest
/// outside (denied).
fn mixed_read_frame(handshake: &Handshake, seq: u64) -> Vec<u8> {
    let path = if seq % 4 == 3 {
        format!("/outside/{seq}.txt")
    } else {
        format!("/ws/{seq}.txt")
    };
    read_frame(handshake.session, seq, &path)
}

/// Writes a log of exactly `records` records to `path` (new) with a real
/// session signing with `key`, a checkpoint every `checkpoint_records`
/// records, fed its requests in batches of `batch` (one `fdatasync` each);
/// returns its bytes.
pub(crate) fn write_log(
    path: &Path,
    key: &SigningKey,
    records: u64,
    checkpoint_records: u64,
    batch: u64,
) -> Vec<u8> {
    let config = SessionConfig {
        checkpoint_records,
        checkpoint_interval: Duration::from_secs(24 * 3600),
        ..SessionConfig::default()
    };
    let (mut session, handshake) = InProcess::new(POLICY)
        .key(key.clone())
        .config(config)
        .evidence(EvidenceLog::open(path).expect("evidence log"))
        .start();
    // Every `checkpoint_records` other records (the session start among
    // them) are followed by a checkpoint, and `finish` adds a final one:
    // of `records`, that many are checkpoints, one the session start, and
    // the rest decisions.
    let groups = (records - 1) / (checkpoint_records + 1);
    let others = records - 1 - groups;
    let decisions = others - 1;
    let mut seq = 0;
    while seq < decisions {
        let end = (seq + batch).min(decisions);
        let frames: Vec<Vec<u8>> = (seq..end)
            .map(|s| mixed_read_frame(&handshake, s))
            .collect();
        for reply in session.handle_batch(&frames) {
            match decode_enforcer_frame(&reply).expect("reply") {
                EnforcerFrame::Receipt { .. } => {}
                other => panic!("expected a receipt, got {other:?}"),
            }
        }
        seq = end;
    }
    session.finish();
    assert_eq!(session.evidence().next_index(), records);
    drop(session);
    std::fs::read(path).expect("read the log")
}

pub(crate) use kernel_core::now_ms;

/// Byte sizes and the signed message of a real decision.
pub(crate) struct Shapes {
    /// The `Authorize` frame of a real request.
    pub(crate) request_frame: Vec<u8>,
    /// The size of the `Receipt` frame that answers it.
    pub(crate) receipt_frame_bytes: usize,
    /// The signed body of its receipt.
    pub(crate) receipt_body: Vec<u8>,
    /// The size of its evidence record, framed.
    pub(crate) record_bytes: usize,
}

/// Asks the real kernel to read `path` once and measures what travels and
/// what is stored.
pub(crate) fn measure_shapes(kernel: &Kernel, path: &str) -> Shapes {
    let permit = kernel
        .authorize(Action::file_read(path))
        .expect("the policy allows reading the workspace");
    let receipt = permit.receipt().signed().clone();
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).expect("random nonce");
    let request = EncodedRequest::new(Request {
        session: kernel.handshake_info().session,
        seq: permit.seq(),
        nonce,
        action: kernel
            .canonicalize(Action::file_read(path))
            .expect("canonical action"),
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

/// Runs `total` allowed reads of `path` spread over `threads` threads
/// sharing `kernel`; returns the time from their release to the last
/// permit.
pub(crate) fn decide_concurrently(
    kernel: &Kernel,
    path: &str,
    threads: usize,
    total: usize,
) -> Duration {
    decide_concurrently_with(kernel, threads, total, |_, _| path.to_owned())
}

/// Like [`decide_concurrently`], reading `path(thread, i)` for the `i`th
/// request of each thread: paths that differ on every request, so that
/// nothing the enforcer builds for one request serves the next.
pub(crate) fn decide_concurrently_with(
    kernel: &Kernel,
    threads: usize,
    total: usize,
    path: impl Fn(usize, usize) -> String + Sync,
) -> Duration {
    let per_thread = total / threads;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                let path = &path;
                scope.spawn(move || {
                    barrier.wait();
                    for i in 0..per_thread {
                        black_box(
                            kernel
                                .authorize(Action::file_read(path(thread, i)))
                                .expect("the policy allows reading the workspace"),
                        );
                    }
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for handle in handles {
            handle.join().expect("client thread");
        }
        started.elapsed()
    })
}
