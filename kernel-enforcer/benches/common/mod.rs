//! What the benchmarks share: the echo process of the floor, the real
//! shapes of a decision, temporary directories on a real disk, and
//! concurrent deciders.
#![allow(dead_code, reason = "each benchmark uses a different subset")]

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use kernel_client::{Action, Kernel};
use kernel_core::{
    ClientFrame, EncodedRequest, EnforcerFrame, Record, Request, encode_client_frame,
    encode_enforcer_frame, frame_record,
};
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

/// A temporary directory under cargo's `CARGO_TARGET_TMPDIR`, on the disk
/// that holds the target directory, so that `fdatasync` reaches a real
/// device (not a tmpfs).
pub(crate) fn tempdir(prefix: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).expect("target tmpdir");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("temporary directory")
}

pub(crate) use kernel_enforcer::session::now_ms;

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
