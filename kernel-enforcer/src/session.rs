//! One client session: the frame handler, approvals, limits and halting.
//!
//! [`Session::decide_batch`] takes any bytes and returns one reply per
//! frame; it never panics on input (a panic inside is caught and halts the
//! session). A decision's record is durable in the evidence file before
//! its allow exists at all: allow receipts leave the session only as
//! [`UnreleasedAllow`], made after the commit and turned into bytes only by
//! [`UnreleasedAllow::release`], which checks the halt latch. What the
//! fuzzer drives is [`Session::handle`].

use crate::broker::{Broker, Started};
use crate::evidence::EvidenceLog;
use crate::policy::PolicyEngine;
use ed25519_dalek::SigningKey;
use kernel_core::{
    Approval, CanonicalAction, ClientFrame, Confinement, Deadline, Decision, DecisionInputs,
    Digest, EncodedRequest, EnforcerFrame, Evaluation, Event, Handshake, KernelState, LimitState,
    Outcome, PROTOCOL_VERSION, ReceiptBody, Record, Refusal, Request, SessionId, SignedEvent,
    SignedReceipt, Verdict, decide, decode_client_frame, encode_enforcer_frame,
    limits::MAX_FRAME_BYTES, origin_for, sign_receipt,
};
use kernel_sync::{Grants, HaltLatch, Limit, Pending, RateCounters};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default validity of an allow receipt.
pub const DEFAULT_PERMIT_TTL: Duration = Duration::from_secs(30);
/// Default number of records between two checkpoints.
pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
/// Default longest time a record waits for a checkpoint.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Most requests that may wait for an operator's approval at once; beyond
/// that, `Ask` decisions are denied.
pub const MAX_PENDING_APPROVALS: usize = 64;
/// Most standing grants kept at once; the oldest is dropped beyond that.
pub const MAX_GRANTS: usize = 256;
/// First sequence number of requests decided at the system-call boundary
/// (a client's sequence numbers start at 0, so the two never meet).
pub const SYSCALL_SEQ_BASE: u64 = 1 << 62;

/// How a session runs.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Confinement in force, announced and recorded.
    pub confinement: Confinement,
    /// Validity of an allow receipt.
    pub permit_ttl: Duration,
    /// Sign a checkpoint after this many records.
    pub checkpoint_records: u64,
    /// Sign a checkpoint when a record has waited this long for one.
    pub checkpoint_interval: Duration,
    /// Shadow mode (the operator's `--shadow`): an action the policy denies
    /// or asks about proceeds anyway, recorded as such
    /// ([`Decision::ShadowDeny`], [`Decision::ShadowAsk`]). A denial that
    /// involves the kernel floor, a halt, a passed deadline or a request
    /// that could not be evaluated stays a denial. Announced in the
    /// handshake, and recorded durably at the session's start.
    pub shadow: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            confinement: Confinement::Unconfined,
            permit_ttl: DEFAULT_PERMIT_TTL,
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            shadow: false,
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A request waiting for an operator's answer.
#[derive(Debug, Clone)]
struct Waiting {
    request: EncodedRequest,
    policies: Vec<String>,
    reasons: Vec<String>,
}

/// What `kernel-enforcer pending` shows of a waiting request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingView {
    /// The approval id to pass to `approve` or `reject`.
    pub id: u64,
    /// The action, readably.
    pub action: String,
    /// The policies that asked.
    pub policies: Vec<String>,
    /// Their reasons.
    pub reasons: Vec<String>,
    /// Milliseconds left before the request's deadline.
    pub expires_in_ms: u64,
}

/// The scope of an approval beyond the one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantScope {
    /// How long the grant lasts.
    pub duration: Duration,
    /// How many requests it covers in all, this one included.
    pub uses: u32,
}

/// Counts shown by `kernel-enforcer status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Allow decisions.
    pub allowed: u64,
    /// Deny decisions.
    pub denied: u64,
    /// Ask decisions.
    pub asked: u64,
    /// Actions the policy denied or asked about that proceeded under
    /// shadow mode.
    pub shadowed: u64,
    /// Frames refused without a decision.
    pub refused: u64,
}

/// An allowed, recorded effect the broker still has to perform.
#[derive(Debug)]
pub struct PendingEffect {
    seq: u64,
    receipt: SignedReceipt,
    action: CanonicalAction,
    payload: Vec<u8>,
}

impl PendingEffect {
    /// Performs the effect and returns the frame for the agent.
    pub fn perform(self, broker: &Broker) -> Vec<u8> {
        self.start(broker).finish()
    }

    /// Starts the effect (see [`Broker::start`]); call this through
    /// [`HaltLatch::admit`] so that no effect starts once a halt is
    /// acknowledged.
    pub fn start(self, broker: &Broker) -> StartedEffect {
        StartedEffect {
            seq: self.seq,
            receipt: self.receipt,
            started: broker.start(self.seq, self.action.action(), &self.payload),
        }
    }

    /// Performs the effect unless `halt` is set, and returns the frame for
    /// the agent: the outcome, or a refusal when halted first.
    pub fn perform_unless_halted(self, broker: &Broker, halt: &HaltLatch) -> Vec<u8> {
        match halt.admit(self, |effect| effect.start(broker)) {
            Ok(started) => started.finish(),
            Err(effect) => effect.withheld(),
        }
    }

    /// The frame for the agent when the effect must not happen (the
    /// kernel halted after the decision).
    pub fn withheld(self) -> Vec<u8> {
        encode_enforcer_frame(&EnforcerFrame::Refused {
            seq: Some(self.seq),
            refusal: Refusal::Halted,
        })
    }
}

/// An allowed effect that has started.
#[derive(Debug)]
pub struct StartedEffect {
    seq: u64,
    receipt: SignedReceipt,
    started: Started,
}

impl StartedEffect {
    /// Waits for the effect to end and returns the frame for the agent.
    pub fn finish(self) -> Vec<u8> {
        encode_enforcer_frame(&EnforcerFrame::Brokered {
            seq: self.seq,
            receipt: self.receipt,
            outcome: self.started.finish(),
        })
    }
}

/// One reply of a batch: ready to send, an allow to release, or an
/// effect to perform first.
#[derive(Debug)]
pub enum Reply {
    /// An encoded frame to send (a denial, a refusal, a handshake).
    Frame(Vec<u8>),
    /// A signed allow, durable in the evidence: send what
    /// [`UnreleasedAllow::release`] returns.
    Allow(UnreleasedAllow),
    /// An allowed effect, already durable in the evidence, to perform.
    Effect(PendingEffect),
}

/// A reply made outside the serving loop (an operator's approval or
/// rejection, a halt, periodic work): a frame, or an allow to release.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame to send.
    Frame(Vec<u8>),
    /// A signed allow, durable in the evidence.
    Allow(UnreleasedAllow),
}

impl Outgoing {
    /// The bytes to send now (see [`UnreleasedAllow::release`]).
    pub fn release(self, halt: &HaltLatch) -> Vec<u8> {
        match self {
            Self::Frame(frame) => frame,
            Self::Allow(allow) => allow.release(halt),
        }
    }
}

/// An allow receipt that is decided, signed and durable in the evidence,
/// but has not left the enforcer yet.
///
/// It is the only form in which the session hands out allow bytes: it is
/// made only after the decision's record was committed, and its bytes come
/// out only through [`release`](Self::release), which checks the halt
/// latch at that moment. This is where "evidence before action" and "no
/// allow after a halt" are kept, for every path that answers a client.
#[derive(Debug)]
#[must_use = "an allow that is never released is never sent; release it or drop it knowingly"]
pub struct UnreleasedAllow {
    seq: u64,
    frame: Vec<u8>,
}

impl UnreleasedAllow {
    /// The frame to send now: the receipt, or a `Halted` refusal if the
    /// session has halted since the decision. Call it right before the
    /// send, so that a halt acknowledged while the reply waited (behind
    /// other replies, or on a client that does not read) lets no allow
    /// out; only a receipt released before the halt was acknowledged (and
    /// so being written to the channel, or about to be) can still reach
    /// the client.
    pub fn release(self, halt: &HaltLatch) -> Vec<u8> {
        if halt.is_halted() {
            encode_enforcer_frame(&EnforcerFrame::Refused {
                seq: Some(self.seq),
                refusal: Refusal::Halted,
            })
        } else {
            self.frame
        }
    }

    /// The request's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// The sequence number of `frame` if it is a receipt that lets its action
/// proceed (an allow, or a decision of shadow mode; plain or brokered).
fn allowed_seq(frame: &EnforcerFrame) -> Option<u64> {
    match frame {
        EnforcerFrame::Receipt { seq, receipt } | EnforcerFrame::Brokered { seq, receipt, .. } => {
            kernel_core::decode_receipt_body_unverified(&receipt.body)
                .ok()
                .filter(|body| body.decision.proceeds())
                .map(|_| *seq)
        }
        _ => None,
    }
}

/// What handling one frame produced, before the batch is committed.
#[derive(Debug)]
enum Answer {
    Frame(EnforcerFrame),
    /// An allow receipt.
    Allow(EnforcerFrame),
    Effect(PendingEffect),
}

/// The state of one session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    key: SigningKey,
    policy: PolicyEngine,
    evidence: EvidenceLog,
    config: SessionConfig,
    last_checkpoint: Instant,
    greeted: bool,
    last_seq: Option<u64>,
    /// Requests decided at the system-call boundary so far.
    syscall_seq: u64,
    halt: Arc<HaltLatch>,
    evidence_broken: bool,
    counters: RateCounters,
    pending: Pending<Waiting>,
    grants: Arc<Grants<Digest>>,
    counts: Counts,
    broker: Option<Broker>,
    /// Set by [`finish`](Self::finish): the final checkpoint is written,
    /// and nothing more is decided or recorded.
    finished: bool,
    /// Whether requests' paths are decided where they lead
    /// ([`set_physical_paths`](Self::set_physical_paths)).
    physical_paths: bool,
}

impl Session {
    /// Starts a session: picks a fresh id and records the signed session
    /// start durably. Fails if that record cannot be written.
    pub fn start(
        key: SigningKey,
        policy: PolicyEngine,
        mut evidence: EvidenceLog,
        config: SessionConfig,
    ) -> Result<Self, crate::evidence::EvidenceError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| crate::evidence::EvidenceError::Io {
            path: evidence.path().to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let id = SessionId(id);
        evidence.set_origin(origin_for(id));
        let origin = evidence.origin().unwrap_or_default().to_owned();
        let start = Event::SessionStart {
            session: id,
            public_key: key.verifying_key().to_bytes(),
            policy_digest: policy.digest(),
            workspace: policy.environment().workspace().to_owned(),
            confinement: config.confinement,
            origin,
            at_ms: now_ms(),
        };
        evidence.append(&Record::Event(SignedEvent::sign(&start, &key)))?;
        if let Some(window) = evidence.window() {
            // The session's grant of a window: durable before any decision.
            let granted = Event::EvidenceWindow {
                session: id,
                window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
                at_ms: now_ms(),
            };
            evidence.append(&Record::Event(SignedEvent::sign(&granted, &key)))?;
            evidence.sync_now()?;
        }
        if config.shadow {
            // Durable before any decision, so that no action proceeds
            // under shadow mode before the evidence says the session runs
            // in it.
            let shadow = Event::Shadow {
                session: id,
                at_ms: now_ms(),
            };
            evidence.append(&Record::Event(SignedEvent::sign(&shadow, &key)))?;
            evidence.sync_now()?;
        }
        Ok(Self {
            id,
            key,
            policy,
            evidence,
            config,
            last_checkpoint: Instant::now(),
            greeted: false,
            last_seq: None,
            syscall_seq: 0,
            halt: Arc::new(HaltLatch::new()),
            evidence_broken: false,
            counters: RateCounters::new(),
            pending: Pending::new(MAX_PENDING_APPROVALS),
            grants: Arc::new(Grants::new(MAX_GRANTS)),
            counts: Counts::default(),
            broker: None,
            finished: false,
            physical_paths: false,
        })
    }

    /// Decides the requests' paths where they lead (see
    /// [`crate::resolve::check`]): a file action whose path goes through a
    /// symbolic link, or cannot be resolved, is denied with the reason;
    /// a program whose program or argument leads to a protected path is
    /// denied by the floor. For the decision endpoint, whose clients'
    /// effects are performed after the decision by the agent, through
    /// the file system as it is. The client channel's file effects are
    /// the broker's, which follows no link it did not decide on.
    pub fn set_physical_paths(&mut self) {
        self.physical_paths = true;
    }

    /// Lets the session perform allowed effects ([`ClientFrame::Broker`]);
    /// without a broker, brokered requests are decided and recorded but
    /// reported as not performed.
    pub fn set_broker(&mut self, broker: Broker) {
        self.broker = Some(broker);
    }

    /// The broker, if any.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Why the session halted, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halt.cause()
    }

    /// The session's halt latch, for threads that start effects outside
    /// the session's lock.
    pub fn halt_latch(&self) -> Arc<HaltLatch> {
        Arc::clone(&self.halt)
    }

    /// The evidence log.
    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    /// The policy engine in force.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    /// Decisions and refusals so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Whether the session runs in shadow mode.
    pub fn shadow(&self) -> bool {
        self.config.shadow
    }

    /// Moves the session to the sticky halted state and records why, if the
    /// evidence can still be written. From then on every request is
    /// denied, and every pending approval is denied now. Returns the
    /// replies to send (denials of pending requests). Halting twice keeps
    /// the first cause.
    pub fn halt(&mut self, cause: &str, by: &str) -> Vec<Outgoing> {
        self.halt.halt(cause);
        let mut replies = Vec::new();
        if !self.closed() {
            let event = Event::Halt {
                session: self.id,
                cause: cause.to_owned(),
                by: by.to_owned(),
                at_ms: now_ms(),
            };
            self.evidence
                .stage(&Record::Event(SignedEvent::sign(&event, &self.key)));
            for (_, waiting) in self.pending.take_all() {
                replies.push(self.decide_pending(&waiting, Approval::None));
            }
            self.checkpoint();
        }
        self.commit_replies(replies)
    }

    /// Signs and stages a checkpoint of every record so far, with the
    /// tree's frontier, so that a restart can continue the log from it.
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        self.evidence.stage_checkpoint(self.id, &self.key);
    }

    fn checkpoint_due(&self) -> bool {
        let pending = self.evidence.since_checkpoint();
        pending >= self.config.checkpoint_records.max(1)
            || (pending > 0 && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
    }

    /// Periodic work, called when idle: denies approvals whose deadline
    /// passed and writes a checkpoint if one is due. Returns the replies
    /// to send.
    pub fn tick(&mut self) -> Vec<Outgoing> {
        if self.closed() {
            return Vec::new();
        }
        let mut replies = Vec::new();
        for (_, waiting) in self.pending.take_expired(now_ms()) {
            replies.push(self.decide_pending(&waiting, Approval::None));
        }
        if self.checkpoint_due() {
            self.checkpoint();
        }
        self.commit_replies(replies)
    }

    /// Writes a final checkpoint if any record is not yet covered. Call at
    /// shutdown.
    /// From then on the session records nothing: every request is
    /// refused as halted, periodic work and approvals do nothing, and a
    /// halt only sets the latch.
    pub fn finish(&mut self) {
        if !self.finished && !self.evidence_broken && self.evidence.since_checkpoint() > 0 {
            self.checkpoint();
            let _ = self.commit_replies(Vec::new());
        }
        if !self.evidence_broken && self.evidence.sync_now().is_err() {
            self.evidence_broken = true;
        }
        self.finished = true;
    }

    /// Whether nothing more may be recorded: the evidence failed, or the
    /// session finished.
    fn closed(&self) -> bool {
        self.evidence_broken || self.finished
    }

    /// Commits staged records, then sorts the replies: once the commit
    /// succeeded, each allow receipt becomes an [`UnreleasedAllow`]; if it
    /// fails (or panics), the session halts for good, the evidence is
    /// treated as unwritable, and every receipt is replaced by a `Halted`
    /// refusal.
    fn commit_replies(&mut self, replies: Vec<EnforcerFrame>) -> Vec<Outgoing> {
        let committed = self.commit_staged();
        replies
            .into_iter()
            .map(|reply| match (allowed_seq(&reply), committed) {
                (Some(seq), true) => Outgoing::Allow(UnreleasedAllow {
                    seq,
                    frame: encode_enforcer_frame(&reply),
                }),
                (Some(seq), false) => Outgoing::Frame(encode_enforcer_frame(&Self::refused(
                    Some(seq),
                    Refusal::Halted,
                ))),
                (None, _) => match reply {
                    EnforcerFrame::Receipt { seq, .. } | EnforcerFrame::Brokered { seq, .. }
                        if !committed =>
                    {
                        Outgoing::Frame(encode_enforcer_frame(&Self::refused(
                            Some(seq),
                            Refusal::Halted,
                        )))
                    }
                    other => Outgoing::Frame(encode_enforcer_frame(&other)),
                },
            })
            .collect()
    }

    /// Handles one frame (see [`handle_batch`](Self::handle_batch)).
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        self.handle_batch(std::slice::from_ref(&frame))
            .pop()
            .unwrap_or_default()
    }

    /// Handles frames that arrived together and returns one encoded reply
    /// per frame, in order, performing brokered effects inline. See
    /// [`decide_batch`](Self::decide_batch).
    pub fn handle_batch<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Vec<Vec<u8>> {
        self.decide_batch(frames)
            .into_iter()
            .map(|reply| match reply {
                Reply::Frame(frame) => frame,
                Reply::Allow(allow) => allow.release(&self.halt),
                Reply::Effect(effect) => match &self.broker {
                    Some(broker) => effect.perform_unless_halted(broker, &self.halt),
                    None => effect.withheld(),
                },
            })
            .collect()
    }

    /// Decides frames that arrived together and returns one reply per
    /// frame, in order. Total: any input gets a reply. Every record the
    /// batch produced is made durable with one `fdatasync` before any reply
    /// is returned (group commit), and brokered effects come back as
    /// [`Reply::Effect`], to be performed only after that. If the commit
    /// fails, the session halts and every receipt and effect of the batch
    /// is withheld. A panic while handling a frame halts the session
    /// (sticky) and refuses that frame.
    pub fn decide_batch<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Vec<Reply> {
        let mut panicked = false;
        let answers: Vec<Answer> = frames
            .iter()
            .map(
                |frame| match catch_unwind(AssertUnwindSafe(|| self.answer_to(frame.as_ref()))) {
                    Ok(answer) => answer,
                    Err(_) => {
                        panicked = true;
                        Answer::Frame(Self::refused(None, Refusal::Halted))
                    }
                },
            )
            .collect();
        for answer in &answers {
            if matches!(
                answer,
                Answer::Frame(EnforcerFrame::Refused { .. })
                    | Answer::Allow(EnforcerFrame::Refused { .. })
            ) {
                self.counts.refused += 1;
            }
        }
        if panicked {
            // The decision path broke an invariant: halt, and record the
            // halt if the evidence still works. Nothing of this batch is
            // released.
            let _ = self.halt("internal fault: a panic while deciding", "enforcer");
        }
        let committed = !panicked && self.commit_staged();
        answers
            .into_iter()
            .map(|answer| match (answer, committed) {
                (Answer::Effect(effect), true) => Reply::Effect(effect),
                (Answer::Effect(effect), false) => Reply::Frame(effect.withheld()),
                (Answer::Frame(EnforcerFrame::Receipt { seq, .. }), false)
                | (Answer::Frame(EnforcerFrame::Brokered { seq, .. }), false)
                | (
                    Answer::Allow(
                        EnforcerFrame::Receipt { seq, .. } | EnforcerFrame::Brokered { seq, .. },
                    ),
                    false,
                ) => Reply::Frame(encode_enforcer_frame(&Self::refused(
                    Some(seq),
                    Refusal::Halted,
                ))),
                (
                    Answer::Allow(
                        frame @ (EnforcerFrame::Receipt { seq, .. }
                        | EnforcerFrame::Brokered { seq, .. }),
                    ),
                    true,
                ) => Reply::Allow(UnreleasedAllow {
                    seq,
                    frame: encode_enforcer_frame(&frame),
                }),
                (Answer::Frame(frame) | Answer::Allow(frame), _) => {
                    Reply::Frame(encode_enforcer_frame(&frame))
                }
            })
            .collect()
    }

    /// Commits staged records; on failure (or a panic in the device) the
    /// session halts for good and the evidence is treated as unwritable.
    ///
    /// A commit that leaves the active segment of a segmented log full is
    /// followed by a rotation, before the batch's replies go: a failed
    /// rotation is a failed commit.
    fn commit_staged(&mut self) -> bool {
        let committed = catch_unwind(AssertUnwindSafe(|| {
            self.evidence.commit()?;
            if self.evidence.rotation_due() {
                self.evidence.rotate(self.id, &self.key)?;
            }
            Ok(())
        }))
        .unwrap_or(Err(crate::evidence::EvidenceError::Panicked));
        match committed {
            Ok(()) => true,
            Err(e) => {
                self.evidence_broken = true;
                self.halt.halt(&format!("cannot record evidence: {e}"));
                false
            }
        }
    }

    fn refused(seq: Option<u64>, refusal: Refusal) -> EnforcerFrame {
        EnforcerFrame::Refused { seq, refusal }
    }

    fn answer_to(&mut self, frame: &[u8]) -> Answer {
        if frame.len() > MAX_FRAME_BYTES {
            return Answer::Frame(Self::refused(
                None,
                Refusal::Oversize {
                    size: u64::try_from(frame.len()).unwrap_or(u64::MAX),
                    limit: u64::try_from(MAX_FRAME_BYTES).unwrap_or(u64::MAX),
                },
            ));
        }
        let frame = match decode_client_frame(frame) {
            Ok(frame) => frame,
            Err(e) => return Answer::Frame(Self::refused(None, Refusal::Malformed(e.to_string()))),
        };
        match frame {
            ClientFrame::Hello {
                protocol,
                challenge,
            } => Answer::Frame(self.hello(protocol, &challenge)),
            ClientFrame::Authorize { request } => match self.authorize(&request) {
                (frame, Some(_)) => Answer::Allow(frame),
                (frame, None) => Answer::Frame(frame),
            },
            ClientFrame::Broker { request, payload } => self.broker_request(&request, payload),
        }
    }

    /// Decides a brokered request; an allowed one comes back as an effect
    /// to perform once its record is durable.
    fn broker_request(&mut self, bytes: &[u8], payload: Vec<u8>) -> Answer {
        let (reply, allowed) = self.authorize(bytes);
        let EnforcerFrame::Receipt { seq, receipt } = reply else {
            return Answer::Frame(reply);
        };
        let not_performed = |reason: &str| EnforcerFrame::Brokered {
            seq,
            receipt: receipt.clone(),
            outcome: Outcome::NotPerformed {
                reason: reason.into(),
            },
        };
        match (allowed, self.broker.is_some()) {
            (Some(request), true) => Answer::Effect(PendingEffect {
                seq,
                action: request.request().action.clone(),
                receipt,
                payload,
            }),
            // Still an allow receipt: released like any permit.
            (Some(_), false) => {
                Answer::Allow(not_performed("this enforcer does not broker effects"))
            }
            (None, _) => Answer::Frame(not_performed("not allowed")),
        }
    }

    fn hello(&mut self, protocol: u16, challenge: &[u8; 32]) -> EnforcerFrame {
        if self.greeted {
            return Self::refused(None, Refusal::OutOfOrder("second hello".into()));
        }
        if protocol != PROTOCOL_VERSION {
            return Self::refused(
                None,
                Refusal::UnsupportedVersion {
                    got: protocol,
                    supported: PROTOCOL_VERSION,
                },
            );
        }
        self.greeted = true;
        self.signed_handshake(challenge)
    }

    /// Greets one more short-lived client of the decision endpoint (see
    /// [`crate::endpoint`]): a handshake signed over that client's own
    /// challenge, so it learns this session's id and key and that the key
    /// answered now. Unlike the channel's hello this may be repeated; the
    /// endpoint hands each client the sequence number to use
    /// ([`next_seq`](Self::next_seq)), so requests stay strictly ordered
    /// and a replayed one is still refused. Refuses a protocol version
    /// other than this one.
    pub fn endpoint_hello(&mut self, protocol: u16, challenge: &[u8; 32]) -> EnforcerFrame {
        if protocol != PROTOCOL_VERSION {
            return Self::refused(
                None,
                Refusal::UnsupportedVersion {
                    got: protocol,
                    supported: PROTOCOL_VERSION,
                },
            );
        }
        self.greeted = true;
        self.signed_handshake(challenge)
    }

    /// The session's public key (what its receipts verify under).
    pub fn public_key(&self) -> kernel_core::VerifyingKey {
        self.key.verifying_key()
    }

    /// The smallest sequence number the session would still accept.
    pub fn next_seq(&self) -> u64 {
        self.last_seq.map_or(0, |last| last.saturating_add(1))
    }

    fn signed_handshake(&self, challenge: &[u8; 32]) -> EnforcerFrame {
        let handshake = Handshake {
            protocol: PROTOCOL_VERSION,
            session: self.id,
            enforcer_key: self.key.verifying_key().to_bytes(),
            policy_digest: self.policy.digest(),
            workspace: self.policy.environment().workspace().to_owned(),
            confinement: self.config.confinement,
            permit_ttl_ms: u64::try_from(self.config.permit_ttl.as_millis()).unwrap_or(u64::MAX),
            handoff: self
                .broker
                .as_ref()
                .and_then(|broker| broker.handoff.path())
                .map(|path| path.to_string_lossy().into_owned()),
            shadow: self.config.shadow,
        };
        let signature = handshake.sign(&self.key, challenge);
        EnforcerFrame::Hello {
            handshake,
            signature,
        }
    }

    /// Decides one request. Returns the reply and, for an `Allow`, the
    /// decoded request (so the broker need not decode it again).
    fn authorize(&mut self, bytes: &[u8]) -> (EnforcerFrame, Option<EncodedRequest>) {
        if !self.greeted {
            return (
                Self::refused(None, Refusal::OutOfOrder("request before hello".into())),
                None,
            );
        }
        let encoded = match EncodedRequest::decode(bytes) {
            Ok(encoded) => encoded,
            Err(e) => return (Self::refused(None, Refusal::Malformed(e.to_string())), None),
        };
        let request = encoded.request();
        let seq = request.seq;
        if request.session != self.id {
            return (Self::refused(Some(seq), Refusal::WrongSession), None);
        }
        if self.last_seq.is_some_and(|last| seq <= last) {
            return (Self::refused(Some(seq), Refusal::Replayed(seq)), None);
        }
        self.last_seq = Some(seq);
        if self.closed() {
            // Nothing can be recorded, so nothing is decided.
            return (Self::refused(Some(seq), Refusal::Halted), None);
        }
        let action_digest = request.action.digest();
        // Finding a standing grant, deciding with it and counting its use
        // happen under the grants' lock: a grant of n uses allows at most
        // n times.
        let grants = Arc::clone(&self.grants);
        let (reply, verdict) = grants.decide(&action_digest, now_ms(), |by| {
            let approval = match by {
                Some(by) => Approval::Granted { by: by.to_owned() },
                None => Approval::None,
            };
            let (reply, verdict, granted) = self.decide_and_stage(&encoded, approval);
            ((reply, verdict), granted)
        });
        match verdict.decision {
            Decision::Ask => {
                let deadline = encoded.request().deadline_ms;
                let waiting = Waiting {
                    request: encoded,
                    policies: verdict.policies,
                    reasons: verdict.reasons,
                };
                if let Err(waiting) = self.pending.wait(waiting, deadline) {
                    // Recorded as asked; the client is told here that it
                    // will not be answered.
                    let denial = self.stage_decision(
                        &waiting.request,
                        &Verdict {
                            decision: Decision::Deny,
                            policies: waiting.policies,
                            reasons: vec![format!(
                                "too many requests already wait for approval (limit {MAX_PENDING_APPROVALS})"
                            )],
                        },
                    );
                    return (denial, None);
                }
            }
            Decision::Allow | Decision::ShadowDeny | Decision::ShadowAsk => {
                return (reply, Some(encoded));
            }
            Decision::Deny => {}
        }
        (reply, None)
    }

    /// Evaluates, applies limits, decides, and stages the decision record.
    /// Also says whether the approval given was what made it an `Allow`.
    fn decide_and_stage(
        &mut self,
        encoded: &EncodedRequest,
        approval: Approval,
    ) -> (EnforcerFrame, Verdict, bool) {
        let request = encoded.request();
        let now = now_ms();
        let evaluation = self
            .physical_paths
            .then(|| crate::resolve::check(&request.action, self.policy.environment()))
            .flatten()
            .unwrap_or_else(|| self.policy.evaluate(&request.action));
        let instant = Instant::now();
        let approval_given = approval != Approval::None;
        let kernel = if self.halt.is_halted() {
            KernelState::Halted
        } else {
            KernelState::Serving
        };
        let deadline = if now > request.deadline_ms {
            Deadline::Passed
        } else {
            Deadline::Open
        };
        // The limits of every matched permit, in order; checking them,
        // deciding and counting an allow happen under the counters' lock.
        let limits: Vec<Limit<'_>> = match &evaluation {
            Evaluation::Completed { permits, .. } => permits
                .iter()
                .filter_map(|permit| {
                    self.policy.limit_of(&permit.id).map(|limit| Limit {
                        policy: &permit.id,
                        text: &limit.text,
                        count: limit.count,
                        period: limit.period,
                    })
                })
                .collect(),
            Evaluation::Failed { .. } => Vec::new(),
        };
        let verdict = self.counters.decide(&limits, instant, |exceeded| {
            let verdict = decide(&DecisionInputs {
                kernel,
                deadline,
                evaluation: evaluation.clone(),
                limits: match exceeded {
                    Some(limit) => LimitState::Exceeded {
                        policy: limit.policy.to_owned(),
                        limit: limit.text.to_owned(),
                    },
                    None => LimitState::Within,
                },
                approval,
            });
            let allowed = verdict.decision == Decision::Allow;
            (verdict, allowed)
        });
        let granted = verdict.decision == Decision::Allow
            && approval_given
            && matches!(&evaluation, Evaluation::Completed { permits, .. } if permits.iter().any(|p| p.ask));
        let verdict = if self.config.shadow {
            self.shadowed(verdict, &evaluation, &request.action, kernel, deadline)
        } else {
            verdict
        };
        let reply = self.stage_decision(encoded, &verdict);
        (reply, verdict, granted)
    }

    /// Shadow mode: `verdict` as it takes effect. A `Deny` or `Ask` of the
    /// policy becomes its decision of shadow mode (the action proceeds,
    /// with the policy's reasons), except when the kernel is halted, the
    /// deadline passed, the request could not be evaluated, or the kernel
    /// floor is involved: the request reaches one of the kernel's assets,
    /// or a floor policy matched or failed. Those stay what they are.
    fn shadowed(
        &self,
        verdict: Verdict,
        evaluation: &Evaluation,
        action: &CanonicalAction,
        kernel: KernelState,
        deadline: Deadline,
    ) -> Verdict {
        if !matches!(verdict.decision, Decision::Deny | Decision::Ask)
            || kernel != KernelState::Serving
            || deadline != Deadline::Open
        {
            return verdict;
        }
        let floor = |id: &str| id.starts_with(crate::policy::FLOOR_ID_PREFIX);
        let floor_involved = match evaluation {
            Evaluation::Failed { .. } => true,
            Evaluation::Completed {
                forbids, errors, ..
            } => forbids.iter().any(|f| floor(&f.id)) || errors.iter().any(|(id, _)| floor(id)),
        } || verdict.policies.iter().any(|id| floor(id))
            || self
                .policy
                .view(action)
                .map_or(true, |view| view.kernel_asset());
        if floor_involved {
            return verdict;
        }
        Verdict {
            decision: verdict.decision.shadowed(),
            ..verdict
        }
    }

    /// Signs a receipt for `verdict` and stages its decision record.
    fn stage_decision(&mut self, encoded: &EncodedRequest, verdict: &Verdict) -> EnforcerFrame {
        let now = now_ms();
        let seq = encoded.request().seq;
        let ttl = u64::try_from(self.config.permit_ttl.as_millis()).unwrap_or(u64::MAX);
        let body = ReceiptBody {
            session: self.id,
            seq,
            request_digest: encoded.digest(),
            decision: verdict.decision,
            policies: verdict.policies.clone(),
            reasons: verdict.reasons.clone(),
            policy_digest: self.policy.digest(),
            log_index: self.evidence.next_index(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(ttl),
        };
        match verdict.decision {
            Decision::Allow => self.counts.allowed += 1,
            Decision::Deny => self.counts.denied += 1,
            Decision::Ask => self.counts.asked += 1,
            Decision::ShadowDeny | Decision::ShadowAsk => self.counts.shadowed += 1,
        }
        let receipt = sign_receipt(&self.key, &body);
        // Staged here, durable before the replies leave
        // (`commit_replies`), or the receipt is withheld.
        self.evidence.stage(&Record::Decision {
            request: encoded.bytes().to_vec(),
            receipt: receipt.clone(),
        });
        if self.checkpoint_due() {
            self.checkpoint();
        }
        EnforcerFrame::Receipt { seq, receipt }
    }

    /// Decides an action the agent attempted directly at the system-call
    /// boundary (see [`crate::notify`]), records the decision, and makes
    /// it durable before returning: `true` only for an `Allow` (or, in
    /// shadow mode, a decision of shadow mode) whose record is on disk. An
    /// `Ask` is recorded and answered as a denial (a system call cannot
    /// wait for an operator). These requests take sequence
    /// numbers from [`SYSCALL_SEQ_BASE`] up, apart from the client's.
    pub fn decide_system_call(&mut self, action: CanonicalAction) -> bool {
        if self.closed() {
            return false;
        }
        let mut nonce = [0u8; 16];
        if getrandom::fill(&mut nonce).is_err() {
            return false;
        }
        let seq = SYSCALL_SEQ_BASE.saturating_add(self.syscall_seq);
        self.syscall_seq = self.syscall_seq.saturating_add(1);
        let ttl = u64::try_from(self.config.permit_ttl.as_millis()).unwrap_or(u64::MAX);
        let encoded = EncodedRequest::new(Request {
            session: self.id,
            seq,
            nonce,
            action,
            deadline_ms: now_ms().saturating_add(ttl),
        });
        let decided = catch_unwind(AssertUnwindSafe(|| {
            self.decide_and_stage(&encoded, Approval::None).1.decision
        }));
        let Ok(decision) = decided else {
            let _ = self.halt("internal fault: a panic while deciding", "enforcer");
            return false;
        };
        self.commit_staged() && decision.proceeds()
    }

    /// Decides a waiting request again, now with the operator's answer (or
    /// none: then the `@ask` policy makes it a denial).
    fn decide_pending(&mut self, pending: &Waiting, approval: Approval) -> EnforcerFrame {
        let (reply, verdict, _) = self.decide_and_stage(&pending.request, approval);
        if verdict.decision == Decision::Ask {
            // No answer: an ask without approval ends as a denial.
            return self.stage_decision(
                &pending.request,
                &Verdict {
                    decision: Decision::Deny,
                    policies: verdict.policies,
                    reasons: vec!["no operator approval before the request's deadline".into()],
                },
            );
        }
        reply
    }

    /// The requests waiting for an operator's answer.
    pub fn pending(&self) -> Vec<PendingView> {
        let now = now_ms();
        self.pending.list(|id, p| PendingView {
            id,
            action: crate::describe::action(p.request.request().action.action()),
            policies: p.policies.clone(),
            reasons: p.reasons.clone(),
            expires_in_ms: p.request.request().deadline_ms.saturating_sub(now),
        })
    }

    /// Approves pending request `id` on behalf of `by`, optionally with a
    /// standing grant for the same action. The request is decided again
    /// with the approval as input (so a forbid, a limit or a halt still
    /// wins), the approval and the new decision are recorded, and the
    /// reply for the agent is returned. Refused for an unknown id and for a
    /// request whose deadline has passed.
    pub fn approve(
        &mut self,
        id: u64,
        by: &str,
        scope: Option<GrantScope>,
    ) -> Result<Vec<Outgoing>, String> {
        self.answer(id, by, true, scope)
    }

    /// Rejects pending request `id` on behalf of `by`: recorded, and the
    /// agent gets a signed denial.
    pub fn reject(&mut self, id: u64, by: &str) -> Result<Vec<Outgoing>, String> {
        self.answer(id, by, false, None)
    }

    fn answer(
        &mut self,
        id: u64,
        by: &str,
        approved: bool,
        scope: Option<GrantScope>,
    ) -> Result<Vec<Outgoing>, String> {
        if self.closed() {
            return Err("the session has ended or cannot record anything".into());
        }
        let pending = self
            .pending
            .take(id)
            .ok_or_else(|| format!("no request `{id}` is waiting for approval"))?;
        let now = now_ms();
        if now > pending.request.request().deadline_ms {
            let reply = self.decide_pending(&pending, Approval::None);
            let _ = self.commit_replies(vec![reply]);
            return Err(format!(
                "refused: request `{id}` passed its deadline before the answer; it was denied"
            ));
        }
        let scope_text = scope
            .map(|s| format!("for {}s, {} uses", s.duration.as_secs(), s.uses))
            .unwrap_or_default();
        let event = Event::Approval {
            session: self.id,
            request_digest: pending.request.digest(),
            approved,
            by: by.to_owned(),
            scope: scope_text,
            at_ms: now,
        };
        self.evidence
            .stage(&Record::Event(SignedEvent::sign(&event, &self.key)));
        let reply = if approved {
            if let Some(scope) = scope {
                self.grants.grant(
                    pending.request.request().action.digest(),
                    by,
                    now.saturating_add(
                        u64::try_from(scope.duration.as_millis()).unwrap_or(u64::MAX),
                    ),
                    scope.uses.saturating_sub(1),
                );
            }
            self.decide_pending(&pending, Approval::Granted { by: by.to_owned() })
        } else {
            self.stage_decision(
                &pending.request,
                &Verdict {
                    decision: Decision::Deny,
                    policies: pending.policies.clone(),
                    reasons: vec![format!("rejected by {by}")],
                },
            )
        };
        Ok(self.commit_replies(vec![reply]))
    }

    /// Loads the policy files again from `paths`. An invalid set changes
    /// nothing and its diagnostics are returned; a valid one takes effect
    /// for every later decision (the swap happens between two requests)
    /// and is recorded with who asked.
    pub fn reload(&mut self, paths: &[std::path::PathBuf], by: &str) -> Result<Digest, String> {
        let engine = PolicyEngine::load(paths, self.policy.environment().clone())
            .map_err(|e| e.to_string())?;
        self.install_policy(engine, by)
    }

    /// Puts an already validated policy set in force for every later
    /// decision and records the change with who asked.
    pub fn install_policy(&mut self, engine: PolicyEngine, by: &str) -> Result<Digest, String> {
        if self.closed() {
            return Err("the session has ended or cannot record anything".into());
        }
        let digest = engine.digest();
        self.policy = engine;
        let event = Event::PolicyLoad {
            session: self.id,
            policy_digest: digest,
            by: by.to_owned(),
            at_ms: now_ms(),
        };
        self.evidence
            .stage(&Record::Event(SignedEvent::sign(&event, &self.key)));
        let _ = self.commit_replies(Vec::new());
        if self.evidence_broken {
            return Err("the new policy is in force but could not be recorded: halted".into());
        }
        Ok(digest)
    }
}
