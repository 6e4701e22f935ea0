//! Serving one client: the session channel, the control socket and
//! signals, around one shared [`Session`].
//!
//! The session is behind one lock. A serving thread holds it while it
//! decides a batch and writes the batch's records; the control plane and
//! signals take the same lock to halt, approve or reload. The batch's
//! `fdatasync` runs after the lock is released, while the other serving
//! thread decides and writes the next batch; each batch's replies go out
//! with the proof of its own sync
//! ([`crate::session::DeferredBatch::sync`]), in the order the batches
//! were decided. So once a halt is acknowledged, no request is allowed and
//! no brokered effect starts, and a permit decided before but not yet
//! sent is withheld ([`crate::session::UnreleasedAllow::release`], called
//! right before each send with the proof of the batch's sync): only one
//! released for sending before the acknowledgment can still reach the
//! client. Replies are sent by the serving thread that decided them (a
//! hand-over to another thread would cost a wake-up per decision): a
//! client that stops reading blocks the serving threads only, never the
//! kill switch. The thread that owns the session watches the serving
//! threads, and ends the session when it halts (in supervised mode), when
//! a signal asks, or when the client has stopped reading.

use crate::session::control::{ControlRequest, ControlResponse, ControlSocket, Peer};
use crate::session::{Batch, Durable, GrantScope, Outgoing, PolicyChangeError, Reply, Session};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use kernel_core::{EnforcerFrame, Refusal, encode_enforcer_frame};
use kernel_policy::PolicyEngine;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often an idle session does its periodic work.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// Most frames handled (and committed with one `fdatasync`) together.
const MAX_BATCH: usize = 256;

/// What the enforcer sends to the client's one-shot server: the client's
/// ends of the two channels (requests in, replies out).
pub type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The channel could not be set up.
    #[error("cannot set up the channel to the client: {0}")]
    Channel(String),
    /// The control socket could not be set up.
    #[error("cannot set up the control socket: {0}")]
    Control(String),
}

/// Operator-facing settings of a served session.
#[derive(Debug)]
pub struct ServeOptions {
    /// The control socket, bound before the agent started (none: no
    /// control plane).
    pub control: Option<ControlSocket>,
    /// The uid allowed on the control socket.
    pub operator_uid: u32,
    /// The policy files, loaded again on `reload`.
    pub policies: Vec<PathBuf>,
    /// End the session as soon as it is halted, instead of answering the
    /// client's further requests with denials until it leaves. Supervised
    /// mode sets it, so that the kill switch also stops the agent (which
    /// could otherwise keep its channel open, and run, for as long as it
    /// likes); an embedding program keeps getting signed denials.
    pub end_on_halt: bool,
}

/// How long a supervised session lives on after a halt before it ends
/// (and the agent with it): long enough for the control socket to answer
/// the halt request.
const HALT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Most reply frames from the control plane (denials of pending requests
/// at a halt, answers to approvals) waiting for a client that does not
/// read them; a client further behind than this is treated as gone (its
/// session ends).
pub const REPLY_BACKLOG: usize = 1024;

/// Replies produced by the control plane and signals while they hold the
/// session lock, written to the channel by a thread of their own: a client
/// that stops reading blocks that thread only, never a holder of the
/// session lock (which the kill switch needs). Queuing never blocks.
/// Allow receipts among them (an approval's answer) travel unreleased,
/// with the proof of their commit, and are released right before their
/// send, like the serving thread's.
#[derive(Clone)]
struct ReplyQueue {
    frames: std::sync::mpsc::SyncSender<(Outgoing, Durable)>,
    broken: Arc<AtomicBool>,
    /// Set when a frame found [`REPLY_BACKLOG`] frames waiting.
    backlogged: Arc<AtomicBool>,
    /// The writer thread's send in progress, watched like the serving
    /// thread's.
    sending: Arc<SendWatch>,
}

impl ReplyQueue {
    /// Starts the writer thread for `replies`.
    fn start(replies: IpcSender<Vec<u8>>) -> Self {
        let (frames, queued) = std::sync::mpsc::sync_channel::<(Outgoing, Durable)>(REPLY_BACKLOG);
        let broken = Arc::new(AtomicBool::new(false));
        let writer_broken = Arc::clone(&broken);
        let sending = Arc::new(SendWatch::default());
        let writer_sending = Arc::clone(&sending);
        std::thread::spawn(move || {
            for (reply, durable) in queued {
                // Released right before the send.
                if !writer_sending.send(&replies, reply.release(&durable)) {
                    writer_broken.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Self {
            frames,
            broken,
            backlogged: Arc::new(AtomicBool::new(false)),
            sending,
        }
    }

    /// Queues `reply` for the client; `false` if the client is gone or
    /// [`REPLY_BACKLOG`] frames behind.
    fn push(&self, reply: Outgoing, durable: Durable) -> bool {
        if self.broken.load(Ordering::SeqCst) {
            return false;
        }
        match self.frames.try_send((reply, durable)) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.backlogged.store(true, Ordering::SeqCst);
                false
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The session and what the control plane needs besides it.
struct Shared {
    session: SharedSession,
    /// The client's replies; none for an agent governed only at the
    /// system-call boundary.
    replies: Option<ReplyQueue>,
    policies: Vec<PathBuf>,
    started: Instant,
    stop: AtomicBool,
    end_on_halt: bool,
    /// Where the record of a halt is left (see [`Shared::record_halt`]).
    halt_record: Option<HaltRecorder>,
}

/// Leaves the record that the session ended halted at its control path
/// (see [`crate::session::control::read_halt_record`]), so that the operator's
/// `halt` says "already halted" once the enforcer is gone; once.
struct HaltRecorder {
    control: ControlSocket,
    session: String,
    written: AtomicBool,
}

impl HaltRecorder {
    fn record(&self, cause: &str) {
        if self.written.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.control.record_halt(&self.session, cause) {
            eprintln!(
                "kernel-enforcer: cannot record the halt at `{}`: {e}",
                crate::session::control::halt_record_path(self.control.path()).display()
            );
        }
    }
}

impl Shared {
    /// Records the session's halt, if it is halted. Called as the kill
    /// switch is acknowledged, while the session lives on for its grace
    /// period (so that writing it does not delay the agent's end), and
    /// again at the end for halts of other causes.
    fn record_halt(&self, halted: Option<String>) {
        if let (Some(recorder), Some(cause)) = (&self.halt_record, halted) {
            recorder.record(&cause);
        }
    }

    /// Queues frames for the client (never blocks, so callers may hold
    /// the session lock); `false` if the client is gone or too far behind.
    fn send(&self, frames: Batch<Outgoing>) -> bool {
        let Some(replies) = &self.replies else {
            return true;
        };
        let Batch {
            replies: frames,
            durable,
        } = frames;
        frames.into_iter().all(|frame| replies.push(frame, durable))
    }

    /// Sends the agent its replies to an operator's answer, whatever the
    /// outcome (a request taken from the waiting ones is answered here or
    /// never), and tells the operator `done`, or why the answer did not
    /// take effect.
    fn answered(&self, answered: crate::session::Answered, done: String) -> ControlResponse {
        self.send(answered.replies);
        match answered.outcome {
            Ok(()) => ControlResponse::ok(done, serde_json::Value::Null),
            Err(e) => ControlResponse::error(e.to_string()),
        }
    }

    fn control(&self, request: ControlRequest, peer: Peer) -> ControlResponse {
        let by = format!("operator {peer}");
        if request == ControlRequest::Reload {
            // Parsed and validated before taking the lock, so decisions do
            // not wait for it; swapped in under the lock.
            let environment = self.session.lock().policy().environment().clone();
            let engine = PolicyEngine::load(&self.policies, environment);
            let mut session = self.session.lock();
            return match engine
                .map_err(PolicyChangeError::Load)
                .and_then(|engine| session.install_policy(engine, &by))
            {
                Ok(digest) => ControlResponse::ok(
                    format!("policy reloaded: {digest}"),
                    serde_json::json!({"policy_digest": digest.to_hex()}),
                ),
                Err(e) => ControlResponse::error(format!(
                    "reload refused, the previous policy stays in force:\n{e}"
                )),
            };
        }
        let mut session = self.session.lock();
        match request {
            ControlRequest::Halt { reason } => {
                if let Some(cause) = session.halted() {
                    // Idempotent: the halt in force stays as it is (a halt
                    // never ends), and its record is not repeated.
                    let latch = session.halt_latch();
                    drop(session);
                    let drained = latch.wait_for_effects(EFFECT_DRAIN);
                    return ControlResponse {
                        ok: drained,
                        message: format!("already halted ({cause}): every request is denied"),
                        data: serde_json::json!({"already_halted": true, "cause": cause}),
                    };
                }
                let cause = reason.unwrap_or_else(|| "halted by the operator".into());
                let frames = session.halt(&cause, &by);
                self.send(frames);
                let latch = session.halt_latch();
                drop(session);
                // Acknowledged once no effect a governed agent was allowed
                // before the halt is still being made (outside the session's
                // lock, which such an effect may need to finish).
                let drained = latch.wait_for_effects(EFFECT_DRAIN);
                self.record_halt(latch.cause());
                if !drained {
                    return ControlResponse::error(format!(
                        "halted ({cause}), but an effect allowed before the halt was still \
                         running after {}s",
                        EFFECT_DRAIN.as_secs()
                    ));
                }
                ControlResponse::ok(
                    format!("halted: every request is now denied ({cause})"),
                    serde_json::Value::Null,
                )
            }
            ControlRequest::Status => {
                let evidence = session.evidence();
                let data = serde_json::json!({
                    "session": session.id().to_string(),
                    "uptime_secs": self.started.elapsed().as_secs(),
                    "halted": session.halted(),
                    // Shadow mode: actions the policy denies proceed.
                    "shadow": session.shadow(),
                    // Read back from the OS, not assumed: what the
                    // hardening at start-up actually achieved.
                    "dumpable": rustix::process::dumpable_behavior()
                        .map(|b| b != rustix::process::DumpableBehavior::NotDumpable)
                        .unwrap_or(true),
                    "decisions": session.counts(),
                    "pending_approvals": session.pending().len(),
                    "policy_digest": session.policy().digest().to_hex(),
                    "evidence_path": evidence.path(),
                    "evidence_records": evidence.next_index(),
                    "newest_checkpoint": evidence.newest_checkpoint().map(|(size, root)| {
                        serde_json::json!({"size": size, "root": kernel_core::hex(&root)})
                    }),
                });
                ControlResponse::ok("status", data)
            }
            ControlRequest::Pending => {
                let pending = session.pending();
                let message = format!("{} request(s) waiting for approval", pending.len());
                ControlResponse::ok(message, serde_json::json!(pending))
            }
            ControlRequest::Approve { id, for_secs, uses } => {
                let scope = match (for_secs, uses) {
                    (None, None) => None,
                    (Some(secs), Some(uses)) if secs > 0 && uses > 0 => Some(GrantScope {
                        duration: Duration::from_secs(secs),
                        uses,
                    }),
                    _ => {
                        return ControlResponse::error(
                            "a standing grant needs both a positive duration and a positive number of uses",
                        );
                    }
                };
                let answered = session.approve(id, &by, scope);
                self.answered(answered, format!("approved request {id}"))
            }
            ControlRequest::Reject { id } => {
                let answered = session.reject(id, &by);
                self.answered(answered, format!("rejected request {id}"))
            }
            ControlRequest::Reload => ControlResponse::error("reload is handled above"),
        }
    }
}

/// Connects to the client's one-shot server `name`, hands it its ends of
/// two fresh channels, and serves until the client goes away or a
/// termination signal arrives. Returns why the session halted, if it did.
pub fn serve(
    name: String,
    session: Session,
    options: &ServeOptions,
) -> Result<Option<String>, ServeError> {
    let channel = |e: std::io::Error| ServeError::Channel(e.to_string());
    let session = Arc::new(Mutex::new(session));
    let _finish = FinishOnDrop(Arc::clone(&session));
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().map_err(channel)?;
    let (replies, replies_rx) = ipc::channel::<Vec<u8>>().map_err(channel)?;
    let bootstrap = IpcSender::<ClientEnds>::connect(name).map_err(channel)?;
    bootstrap
        .send((requests_tx, replies_rx))
        .map_err(|e| ServeError::Channel(e.to_string()))?;
    drop(bootstrap);
    serve_channels(requests, replies, session, options)
}

/// A session shared between the channel, the control plane and (in
/// supervised mode) the system-call governor.
pub type SharedSession = Arc<Mutex<Session>>;

/// Serves one session over established channels, with the control socket
/// and signals, until the client goes away or a termination signal
/// arrives (or, with [`ServeOptions::end_on_halt`], the session halts);
/// then writes the final checkpoint. Returns why the session halted, if it
/// did.
///
/// The requests are served on a thread of their own; this thread only
/// watches it. A client that has not taken a reply for [`STALLED_SEND`]
/// is treated as gone: the session halts, recorded, and ends.
pub fn serve_channels(
    requests: IpcReceiver<Vec<u8>>,
    replies: IpcSender<Vec<u8>>,
    session: SharedSession,
    options: &ServeOptions,
) -> Result<Option<String>, ServeError> {
    let (halt, serving_threads) = {
        let session = session.lock();
        let threads = if session.evidence().syncs_apart() {
            PIPELINED_SERVING_THREADS
        } else {
            1
        };
        (session.halt_latch(), threads)
    };
    let queue = ReplyQueue::start(replies.clone());
    let backlogged = Arc::clone(&queue.backlogged);
    let writer_sending = Arc::clone(&queue.sending);
    let shared = start_control_plane(session, Some(queue), options)?;
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    let requests = Arc::new(Mutex::new(requests));
    let pipeline = Arc::new(Pipeline::default());
    let mut watches = Vec::new();
    for _ in 0..serving_threads {
        let sending = Arc::new(SendWatch::default());
        watches.push(Arc::clone(&sending));
        let serving = Arc::clone(&shared);
        let requests = Arc::clone(&requests);
        let replies = replies.clone();
        let pipeline = Arc::clone(&pipeline);
        let ended_tx = ended_tx.clone();
        let started = kernel_policy::spawn_decider("session", move || {
            serve_loop(&requests, &replies, &serving, &sending, &pipeline);
            let _ = ended_tx.send(());
        });
        // Without it nothing is served: the watch below sees the channel
        // closed at once, and the halt says why.
        if started.is_err() {
            let _ = shared.session.lock().halt(
                "internal fault: cannot start the thread that serves the agent",
                "the enforcer",
            );
        }
    }
    drop(ended_tx);
    let stalled = loop {
        match ended.recv_timeout(WATCH_INTERVAL) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if shared.stop.load(Ordering::SeqCst) {
            break false;
        }
        if shared.end_on_halt && halt.is_halted() {
            // The grace period: the operator's halt command gets its
            // answer, and the agent its denials, before the session ends.
            std::thread::sleep(HALT_GRACE);
            break false;
        }
        if watches.iter().any(|sending| sending.stalled())
            || writer_sending.stalled()
            || backlogged.load(Ordering::SeqCst)
        {
            break true;
        }
    };
    // The serving thread, if it is still running (blocked on a client that
    // does not read), decides nothing more.
    shared.stop.store(true, Ordering::SeqCst);
    let mut session = shared.session.lock();
    if stalled && session.halted().is_none() {
        // A client that does not read its answers is not a client the
        // kernel can serve: an incident, recorded, and (in supervised
        // mode) the agent is stopped.
        // Its waiting requests' denials are queued all the same (queuing
        // never blocks), in case it reads again before the end.
        shared.send(session.halt("the client stopped reading its replies", "the enforcer"));
    }
    session.finish();
    let halted = session.halted();
    drop(session);
    shared.record_halt(halted.clone());
    Ok(halted)
}

/// How long a reply may wait for the client to take it before the client
/// is treated as gone. A client that reads its replies never makes the
/// enforcer wait at all: a send only blocks once the socket's buffer holds
/// hundreds of unread replies.
pub const STALLED_SEND: Duration = Duration::from_secs(2);

/// How often the owning thread looks at the serving thread.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// When the serving thread's current send to the client started, if one
/// is in progress.
#[derive(Default)]
struct SendWatch {
    /// Milliseconds since `epoch` plus one when the send started; zero
    /// when no send is in progress.
    since: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl SendWatch {
    fn now(&self) -> u64 {
        let epoch = self.epoch.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends `frame` on `replies`, marking the send as in progress.
    fn send(&self, replies: &IpcSender<Vec<u8>>, frame: Vec<u8>) -> bool {
        self.since
            .store(self.now().saturating_add(1), Ordering::SeqCst);
        let sent = replies.send(frame).is_ok();
        self.since.store(0, Ordering::SeqCst);
        sent
    }

    /// Whether a send has waited longer than [`STALLED_SEND`].
    fn stalled(&self) -> bool {
        let since = self.since.load(Ordering::SeqCst);
        let limit = u64::try_from(STALLED_SEND.as_millis()).unwrap_or(u64::MAX);
        since != 0 && self.now().saturating_sub(since - 1) > limit
    }
}

/// Serves a session that has no client (an agent governed only at the
/// system-call boundary): the control socket and signals work as with a
/// client, until `finished` says the agent is gone, a termination signal
/// arrives, or the session halts (the caller then stops the agent). Writes
/// the final checkpoint and returns why the session halted, if it did.
pub fn serve_without_client(
    session: SharedSession,
    options: &ServeOptions,
    mut finished: impl FnMut() -> bool,
) -> Result<Option<String>, ServeError> {
    let latch = session.lock().halt_latch();
    let shared = start_control_plane(session, None, options)?;
    let mut last_tick = Instant::now();
    // The halt latch and the stop flag are read without the session's
    // lock, so that a decision stuck behind it cannot keep a halt or a
    // signal from ending the session.
    while !finished() && !shared.stop.load(Ordering::SeqCst) && latch.cause().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if last_tick.elapsed() >= IDLE_TICK {
            // Checkpoints come due here too (there is no client to reply to).
            if let Some(mut session) = shared.session.try_lock_for(LOCK_PATIENCE) {
                // Without a client channel no request waits for a second
                // answer (the endpoint's clients have theirs and left), so
                // the denials of expired ones go nowhere but the evidence.
                drop(session.tick());
            }
            last_tick = Instant::now();
        }
    }
    if latch.cause().is_some() {
        // Every call is denied from the halt on; effects allowed before it
        // finish, and the control socket gets to acknowledge the halt,
        // before the caller stops the agent.
        latch.wait_for_effects(EFFECT_DRAIN);
        std::thread::sleep(HALT_GRACE);
    }
    // The final checkpoint, unless the session's lock stays taken (then
    // the records already durable are all there is, and the agent is
    // stopped all the same).
    if let Some(mut session) = shared.session.try_lock_for(FINISH_PATIENCE) {
        session.finish();
    }
    // Already written when the kill switch was acknowledged; this is for
    // halts of other causes (a fault).
    shared.record_halt(latch.cause());
    Ok(latch.cause())
}

/// Ends a session's evidence as documented, with a final checkpoint,
/// however the code that holds it returns: an agent that never connects,
/// a start that fails half-way, a serving error. Normal ends write the
/// checkpoint themselves; [`Session::finish`] does nothing the second
/// time.
#[must_use = "the session is finished when this guard is dropped"]
pub struct FinishOnDrop(pub SharedSession);

impl std::fmt::Debug for FinishOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishOnDrop")
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(mut session) = self.0.try_lock_for(FINISH_PATIENCE) {
            session.finish();
        }
    }
}

/// How long a halt's acknowledgment waits for governed effects allowed
/// before it to finish (a governed `connect` may take up to 10 s).
const EFFECT_DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// How long the idle loop waits for the session's lock to tick.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);
/// How long the end of a session waits for the session's lock to write
/// the final checkpoint.
const FINISH_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Binds the control socket, serves it on a thread, and watches signals.
fn start_control_plane(
    session: SharedSession,
    replies: Option<ReplyQueue>,
    options: &ServeOptions,
) -> Result<Arc<Shared>, ServeError> {
    let listener = match &options.control {
        Some(socket) => Some(
            socket
                .try_clone()
                .map_err(|e| ServeError::Control(format!("`{}`: {e}", socket.path().display())))?,
        ),
        None => None,
    };
    let halt_record = match &options.control {
        Some(socket) => Some(HaltRecorder {
            control: socket
                .try_clone()
                .map_err(|e| ServeError::Control(format!("`{}`: {e}", socket.path().display())))?,
            session: session.lock().id().to_string(),
            written: AtomicBool::new(false),
        }),
        None => None,
    };
    let shared = Arc::new(Shared {
        session,
        replies,
        policies: options.policies.clone(),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        end_on_halt: options.end_on_halt,
        halt_record,
    });
    if let Some(listener) = listener {
        let shared = Arc::clone(&shared);
        let operator_uid = options.operator_uid;
        std::thread::spawn(move || {
            listener.serve(operator_uid, |request, peer| shared.control(request, peer));
        });
    }
    watch_signals(&shared);
    Ok(shared)
}

/// `SIGUSR1` halts (like `kernel-enforcer halt`); `SIGTERM`, `SIGINT` and
/// `SIGHUP` end the session cleanly with a final checkpoint.
fn watch_signals(shared: &Arc<Shared>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGUSR1, SIGTERM, SIGINT, SIGHUP])
    else {
        return;
    };
    let shared = Arc::clone(shared);
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGUSR1 {
                let mut session = shared.session.lock();
                let frames = session.halt("halted by signal SIGUSR1", "signal SIGUSR1");
                shared.send(frames);
                let halted = session.halted();
                drop(session);
                shared.record_halt(halted);
            } else {
                shared.stop.store(true, Ordering::SeqCst);
            }
        }
    });
}

/// Threads serving the client's requests when each batch waits for an
/// `fdatasync` of its own ([`EvidenceLog::syncs_apart`]): while one
/// waits, the other decides and writes the next batch. With an evidence
/// window or OS-buffered evidence there is no sync to wait for, and one
/// thread serves: a second one only hands the receiver back and forth,
/// which cost a single client's round trip about 80 µs (docs/PERFORMANCE.md).
///
/// [`EvidenceLog::syncs_apart`]: crate::session::evidence::EvidenceLog::syncs_apart
const PIPELINED_SERVING_THREADS: usize = 2;

/// How the serving threads take turns. A thread receives a batch holding
/// the receiver, and takes the session before letting the receiver go, so
/// batches are decided in the order they arrived. Each batch draws a
/// ticket as it is decided; its replies are sent (and its effects
/// performed) only when every batch decided before it has had its
/// replies sent, so replies and effects leave in the order of decision,
/// as with one thread.
#[derive(Default)]
struct Pipeline {
    /// The next ticket to draw (under the session's lock).
    tickets: std::sync::atomic::AtomicU64,
    /// The ticket whose replies go next.
    next: Mutex<u64>,
    turned: parking_lot::Condvar,
}

/// A batch's place in the order of sends: [`wait`](Self::wait) until it
/// is its turn; dropping it passes the turn on (after waiting for it, so
/// that a batch that sends nothing still keeps the order).
struct Turn<'a> {
    pipeline: &'a Pipeline,
    ticket: u64,
    stop: &'a AtomicBool,
}

impl Turn<'_> {
    /// Waits until the batches before this one are sent; `false` if the
    /// session stopped first.
    fn wait(&self) -> bool {
        let mut next = self.pipeline.next.lock();
        while *next != self.ticket {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let _ = self
                .pipeline
                .turned
                .wait_for(&mut next, Duration::from_millis(50));
        }
        true
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.wait() {
            let mut next = self.pipeline.next.lock();
            *next = self.ticket.saturating_add(1);
            self.pipeline.turned.notify_all();
        }
    }
}

fn serve_loop(
    requests: &Mutex<IpcReceiver<Vec<u8>>>,
    replies: &IpcSender<Vec<u8>>,
    shared: &Shared,
    sending: &SendWatch,
    pipeline: &Pipeline,
) {
    let send = |frame: Vec<u8>| sending.send(replies, frame);
    let mut last_tick = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let receiving = requests.lock();
        let first = match receiving.try_recv_timeout(IDLE_TICK) {
            Ok(frame) => frame,
            Err(TryRecvError::Empty) => {
                drop(receiving);
                let mut session = shared.session.lock();
                if shared.stop.load(Ordering::SeqCst) {
                    // The session has ended (its final checkpoint is
                    // written): no periodic work after it.
                    return;
                }
                let frames = session.tick();
                last_tick = Instant::now();
                if !shared.send(frames) {
                    return;
                }
                continue;
            }
            Err(TryRecvError::IpcError(IpcError::SerializationError(e))) => {
                drop(receiving);
                let refusal = encode_enforcer_frame(&EnforcerFrame::Refused {
                    seq: None,
                    refusal: Refusal::Malformed(e.to_string()),
                });
                if !send(refusal) {
                    return;
                }
                continue;
            }
            // A signal (SIGUSR1, the kill switch) interrupts the wait: that
            // is not the client going away.
            Err(TryRecvError::IpcError(IpcError::Io(e)))
                if e.kind() == std::io::ErrorKind::Interrupted =>
            {
                continue;
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_))) => return,
        };
        // Whatever else has already arrived is decided with it and shares
        // its fdatasync. Errors end the batch; the next receive sees them.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiving.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        // The session is taken before the receiver is let go: batches are
        // decided in the order they arrived.
        let mut session = shared.session.lock();
        drop(receiving);
        if shared.stop.load(Ordering::SeqCst) {
            // The session has ended while this batch was read.
            return;
        }
        // A client that keeps the channel busy never lets it idle: the
        // periodic work (answering requests whose deadline passed while
        // they waited for an operator) is done between batches too.
        let ticked = (last_tick.elapsed() >= IDLE_TICK).then(|| {
            last_tick = Instant::now();
            session.tick()
        });
        let turn = Turn {
            pipeline,
            ticket: pipeline.tickets.fetch_add(1, Ordering::SeqCst),
            stop: &shared.stop,
        };
        let deferred = session.decide_batch_deferred(&batch);
        let broker = session.broker().cloned();
        drop(session);
        if let Some(frames) = ticked
            && !shared.send(frames)
        {
            return;
        }
        // The batch's records become durable outside the lock, while the
        // other thread decides the next batch; its replies come with the
        // proof of this sync, never of another batch's.
        let (
            Batch {
                replies: decided,
                durable,
            },
            failed,
        ) = deferred.sync();
        if let Some(why) = failed {
            shared.session.lock().sync_failed(&why);
        }
        let (effects, replies): (Vec<Reply>, Vec<Reply>) = decided
            .into_iter()
            .partition(|reply| matches!(reply, Reply::Effect(_)));
        if !turn.wait() {
            return;
        }
        // Committed, and decided under the lock; sent outside it, so that
        // a client that does not read holds up nobody but itself. Each
        // allow is released right before its send: withheld if a halt came
        // in the meantime.
        for reply in replies {
            if !send(reply.release(&durable, broker.as_ref())) {
                return;
            }
        }
        // Effects run outside the lock, so a long command does not hold up
        // other requests or the kill switch. Each starts through its
        // allow's release: once a halt is acknowledged no effect starts,
        // and a halt that arrives while one is starting (a file operation,
        // or spawning a program) waits for that start. One already running
        // when a halt arrives is not interrupted.
        for effect in effects {
            if !send(effect.release(&durable, broker.as_ref())) {
                return;
            }
        }
    }
}
