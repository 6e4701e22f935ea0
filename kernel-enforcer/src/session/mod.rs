//! One client session: the frame handler, approvals, limits and halting.
//!
//! [`Session::decide_batch`] takes any bytes and returns one reply per
//! frame; it never panics on input (a panic inside is caught and halts the
//! session). What the fuzzer drives is [`Session::handle`].
//!
//! Evidence before action is kept by a type. Every allow the session
//! makes (a client's receipt, a brokered effect, an operator's approval,
//! a governed system call or egress request) is an [`UnreleasedAllow`]
//! from the moment its record is staged, and takes effect only through
//! [`UnreleasedAllow::release`], which checks that the proof of a commit
//! ([`Durable`]) covers the record and that the session has not halted.
//! Receipts that let nothing proceed (denials, asks) are sent only after
//! their commit succeeded, or replaced by a `Halted` refusal.
//!
//! Its parts: [`serve`] serves a session over its channel, with the
//! operator's [`control`] socket and signals; [`evidence`] is the durable
//! record; [`keys`] holds the signing key; the [`broker`] performs allowed
//! effects and [`handoff`] passes brokered connections to the agent.

pub mod broker;
pub mod control;
pub mod evidence;
pub(crate) mod evidence_index;
pub(crate) mod evidence_segments;
mod evidence_window;
pub mod handoff;
pub mod keys;
pub mod serve;

use crate::session::broker::Broker;
use crate::session::evidence::{EvidenceLog, SyncError};
use ed25519_dalek::SigningKey;
use kernel_core::{
    Approval, CanonicalAction, ClientFrame, Confinement, Deadline, Decision, DecisionInputs,
    Digest, EncodedRequest, EnforcerFrame, EnforcerState, Evaluation, Event, Handshake, LimitState,
    Outcome, PROTOCOL_VERSION, ReceiptBody, Record, Refusal, Request, SessionId, SignedEvent,
    SignedReceipt, Verdict, decide, decode_client_frame, encode_enforcer_frame,
    limits::MAX_FRAME_BYTES, now_ms, origin_for, sign_receipt,
};
use kernel_policy::PolicyEngine;
use kernel_sync::{Grants, HaltLatch, Limit, Pending, RateCounters};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Debug builds only, for the tests: the enforcer's own environment
/// variable `AGENT_KERNEL_TEST_FAULT` set to `unsynced:KIND` (`KIND` an
/// action name such as `file_delete`) makes the commit of every governed
/// call of that kind, and of every operator's answer to a request of that
/// kind, fail as a failed sync does: the records are never written, and
/// the session halts. Release builds do not have it.
#[cfg(debug_assertions)]
fn unsynced_fault(action: &kernel_core::Action) -> bool {
    std::env::var("AGENT_KERNEL_TEST_FAULT")
        .is_ok_and(|fault| fault == format!("unsynced:{}", action.kind().as_str()))
}

/// Release builds have no injected faults.
#[cfg(not(debug_assertions))]
fn unsynced_fault(_: &kernel_core::Action) -> bool {
    false
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

/// How far the session's evidence is committed: every record with an
/// index below this point is in the evidence file, as durably as the log
/// promises (`fdatasync`ed, unless the operator chose an evidence window
/// or `--danger-evidence-os-buffered`).
///
/// Only a commit that succeeded makes one, so holding it is the proof
/// that [`UnreleasedAllow::release`] asks for; a commit that fails makes
/// none, and the proof from before it does not cover the records it tried
/// to write. The proof belongs to a batch, not to the session's present
/// state: deciding the next batch may overlap with making this one
/// durable, and each batch's allows are released with the proof of the
/// commit that covered them, never with one taken before their records
/// were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    session: SessionId,
    /// Records of the session's evidence that are durable.
    records: u64,
}

impl Durable {
    /// Whether record `index` of `session`'s evidence is durable.
    fn covers(&self, session: SessionId, index: u64) -> bool {
        self.session == session && index < self.records
    }
}

/// An allow that is decided and signed, its record staged in the
/// evidence, and that has not taken effect: none of its receipt has left
/// the enforcer, its brokered effect has not started, its governed system
/// call has not proceeded.
///
/// The session hands out allows only in this form. It has no public
/// constructor and cannot be cloned, and what it carries (the receipt's
/// frame, the effect to perform, or nothing, for a governed system call)
/// comes out only through [`release`](Self::release): the one place where
/// "evidence before action" and "no allow after a halt" are checked, for
/// every path an allow takes.
#[must_use = "an allow that is never released never takes effect; release it or drop it knowingly"]
pub struct UnreleasedAllow<P = Vec<u8>> {
    session: SessionId,
    /// The index of the decision's record in the session's evidence.
    record: u64,
    seq: u64,
    /// The session's halt latch.
    halt: Arc<HaltLatch>,
    payload: P,
}

impl<P> std::fmt::Debug for UnreleasedAllow<P> {
    /// Shows which allow it is, not what it carries: the receipt's bytes
    /// come out only through the release.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreleasedAllow")
            .field("session", &self.session)
            .field("record", &self.record)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl<P> UnreleasedAllow<P> {
    /// Releases the allow: runs `start` with what it carries and returns
    /// what `start` returned, if `durable` covers the decision's record
    /// and the session has not halted; otherwise the allow is withheld and
    /// `start` does not run.
    ///
    /// `start` runs holding the session's halt latch
    /// ([`HaltLatch::admit`]): once a halt has returned nothing is
    /// released, and a halt that arrives meanwhile waits for `start`, so
    /// keep it short (take the bytes, begin an effect). Call this right
    /// before the allow takes effect (before its send, before its effect),
    /// so that a halt acknowledged while the allow waited lets nothing out.
    pub fn release<T>(self, durable: &Durable, start: impl FnOnce(P) -> T) -> Result<T, Withheld> {
        let withheld = Withheld { seq: self.seq };
        if !durable.covers(self.session, self.record) {
            return Err(withheld);
        }
        self.halt.admit(self.payload, start).map_err(|_| withheld)
    }

    /// The request's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The same allow, carrying `f`'s result instead, still unreleased.
    fn map<Q>(self, f: impl FnOnce(u64, P) -> Q) -> UnreleasedAllow<Q> {
        UnreleasedAllow {
            session: self.session,
            record: self.record,
            seq: self.seq,
            halt: self.halt,
            payload: f(self.seq, self.payload),
        }
    }
}

/// An allow that [`UnreleasedAllow::release`] withheld: its record is not
/// known to be durable, or the session halted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld {
    seq: u64,
}

impl Withheld {
    /// The frame for the client: a `Halted` refusal of the request (a
    /// failed commit halts the session, so both reasons mean halted).
    pub fn into_frame(self) -> Vec<u8> {
        halted_frame(self.seq)
    }
}

/// The encoded `Halted` refusal of request `seq`.
fn halted_frame(seq: u64) -> Vec<u8> {
    encode_enforcer_frame(&EnforcerFrame::Refused {
        seq: Some(seq),
        refusal: Refusal::Halted,
    })
}

/// The encoded allow receipt of request `seq`.
fn receipt_frame(seq: u64, receipt: SignedReceipt) -> Vec<u8> {
    encode_enforcer_frame(&EnforcerFrame::Receipt { seq, receipt })
}

/// A governed system call, or a request through the egress proxy, decided
/// and recorded ([`Session::decide_system_call`]): it proceeds only if
/// [`release`](Self::release) says so.
#[derive(Debug)]
#[must_use = "a governed call proceeds only through its release"]
pub struct SystemCall(Option<(UnreleasedAllow<()>, Durable)>);

impl SystemCall {
    /// A call that may not proceed, decided without the session (it did
    /// not answer in time).
    pub fn denied() -> Self {
        Self(None)
    }

    /// Whether the call may proceed now: an allow, released by
    /// [`UnreleasedAllow::release`] (its record durable, the session not
    /// halted). A denial, or an ask (a system call cannot wait for an
    /// operator), never proceeds.
    #[must_use]
    pub fn release(self) -> bool {
        self.0
            .is_some_and(|(allow, durable)| allow.release(&durable, |()| ()).is_ok())
    }

    /// An allow (or a denial) made without a session, durable and never
    /// halted, for the unit tests of the code that acts on decisions.
    #[cfg(test)]
    pub(crate) fn for_tests(allowed: bool) -> Self {
        let session = SessionId([0; 16]);
        Self(allowed.then(|| {
            (
                UnreleasedAllow {
                    session,
                    record: 0,
                    seq: 0,
                    halt: Arc::new(HaltLatch::new()),
                    payload: (),
                },
                Durable {
                    session,
                    records: 1,
                },
            )
        }))
    }
}

/// What a brokered effect needs once released.
#[derive(Debug)]
struct Effect {
    receipt: SignedReceipt,
    action: CanonicalAction,
    payload: Vec<u8>,
}

/// An allowed effect the broker still has to perform: it starts only
/// through its allow's release.
#[derive(Debug)]
pub struct PendingEffect {
    allow: UnreleasedAllow<Effect>,
}

impl PendingEffect {
    /// Performs the effect if its allow is released with `durable` (see
    /// [`UnreleasedAllow::release`]; the effect starts holding the halt
    /// latch, and is waited for after) and returns the frame for the
    /// agent: the outcome, or a `Halted` refusal.
    pub fn perform(self, broker: &Broker, durable: &Durable) -> Vec<u8> {
        let seq = self.allow.seq;
        let started = self.allow.release(durable, |effect| {
            let started = broker.start(seq, effect.action.action(), &effect.payload);
            (effect.receipt, started)
        });
        match started {
            Ok((receipt, started)) => encode_enforcer_frame(&EnforcerFrame::Brokered {
                seq,
                receipt,
                outcome: started.finish(),
            }),
            Err(withheld) => withheld.into_frame(),
        }
    }

    /// The frame for the agent when the effect is not performed (there
    /// is no broker to perform it): a `Halted` refusal.
    pub fn withheld(self) -> Vec<u8> {
        halted_frame(self.allow.seq)
    }
}

/// One reply of a batch: ready to send, an allow to release, or an
/// effect to perform.
#[derive(Debug)]
pub enum Reply {
    /// An encoded frame that lets nothing proceed, to send as it is: a
    /// refusal, a handshake, or a receipt that is not an allow (its record
    /// durable, or it was replaced by a `Halted` refusal).
    Frame(Vec<u8>),
    /// An allow receipt, sent only through [`UnreleasedAllow::release`].
    Allow(UnreleasedAllow),
    /// An allowed effect, performed only through its allow's release
    /// ([`PendingEffect::perform`]).
    Effect(PendingEffect),
}

impl Reply {
    /// The frame to send now, with `durable` the proof of the batch's
    /// commit: a frame as it is; an allow's receipt, or an effect's
    /// outcome (performed by `broker`), if released
    /// ([`UnreleasedAllow::release`]); otherwise a `Halted` refusal.
    pub fn release(self, durable: &Durable, broker: Option<&Broker>) -> Vec<u8> {
        match self {
            Self::Frame(frame) => frame,
            Self::Allow(allow) => allow
                .release(durable, |frame| frame)
                .unwrap_or_else(Withheld::into_frame),
            Self::Effect(effect) => match broker {
                Some(broker) => effect.perform(broker, durable),
                None => effect.withheld(),
            },
        }
    }
}

/// A reply made outside the serving loop (an operator's approval or
/// rejection, a halt, periodic work): a frame, or an allow to release.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame that lets nothing proceed, to send as it is.
    Frame(Vec<u8>),
    /// An allow receipt, sent only through [`UnreleasedAllow::release`].
    Allow(UnreleasedAllow),
}

impl Outgoing {
    /// The frame to send now (see [`Reply::release`]).
    pub fn release(self, durable: &Durable) -> Vec<u8> {
        match self {
            Self::Frame(frame) => frame,
            Self::Allow(allow) => allow
                .release(durable, |frame| frame)
                .unwrap_or_else(Withheld::into_frame),
        }
    }
}

/// Replies made together, with the proof of the commit that covered
/// their records: what their allows are released with.
#[derive(Debug)]
#[must_use = "replies that are never sent leave their client waiting"]
pub struct Batch<R> {
    /// The replies, in order.
    pub replies: Vec<R>,
    /// How far the evidence was durable once the replies' records were
    /// committed (if their commit failed, or the batch was abandoned, it
    /// covers none of them).
    pub durable: Durable,
}

/// The replies to `answers` once their records' commit has (or has not,
/// `committed` false) succeeded.
fn replies_after_commit(answers: Vec<Handled>, committed: bool) -> Vec<Reply> {
    answers
        .into_iter()
        .map(|answer| match answer {
            Handled::Frame(frame) => Reply::Frame(after_commit(frame, committed)),
            Handled::Allow(allow) => Reply::Allow(allow),
            Handled::Effect(effect) => Reply::Effect(effect),
        })
        .collect()
}

/// A batch decided by [`Session::decide_batch_deferred`], its records
/// written and not yet known durable.
#[must_use = "a batch's replies exist only once its records are synced"]
pub struct DeferredBatch {
    answers: Vec<Handled>,
    /// Whether the batch's records were written (not if writing them
    /// failed, or deciding panicked).
    written: bool,
    /// What makes them durable, if that is still to be done.
    pending: Option<crate::session::evidence::PendingSync>,
    /// The proof from before the batch: what its replies are released
    /// with if its sync fails (it covers none of its records).
    before: Durable,
    /// The proof once the batch's records were written: already a proof
    /// of their commit when nothing is left to sync.
    committed: Durable,
    halt: Arc<HaltLatch>,
}

impl std::fmt::Debug for DeferredBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredBatch")
            .field("replies", &self.answers.len())
            .field("written", &self.written)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl DeferredBatch {
    /// Makes the batch's records durable and returns its replies with the
    /// proof of that sync, as [`Session::decide_batch`] returns them. If
    /// the sync fails, the session's halt latch is set, every receipt that
    /// is not an allow is replaced by a `Halted` refusal, the proof covers
    /// none of the batch's allows, and the failure comes back too: pass it
    /// to [`Session::sync_failed`].
    pub fn sync(self) -> (Batch<Reply>, Option<SyncError>) {
        let Self {
            answers,
            written,
            pending,
            before,
            committed,
            halt,
        } = self;
        let (durable, failed) = match pending {
            None if written => (committed, None),
            None => (before, None),
            Some(pending) => match pending.sync() {
                Ok(records) => (
                    Durable {
                        session: committed.session,
                        records,
                    },
                    None,
                ),
                Err(why) => {
                    halt.halt(&format!("cannot record evidence: {why}"));
                    (before, Some(why))
                }
            },
        };
        let synced = written && failed.is_none();
        let replies = replies_after_commit(answers, synced);
        (Batch { replies, durable }, failed)
    }
}

/// What an operator's answer to a waiting request came to
/// ([`Session::approve`], [`Session::reject`]).
///
/// Both parts count, whatever the outcome: once the request has left the
/// table of waiting requests, `replies` holds its one final answer, the
/// one its record says (or a `Halted` refusal if that record is not
/// durable), and the agent gets no other; `outcome` is what the operator
/// is told.
#[derive(Debug)]
#[must_use = "the agent waits for the replies, and the operator for the outcome"]
pub struct Answered {
    /// The replies for the agent, with the proof of their commit: empty
    /// if no request was taken (an unknown id, a session that can record
    /// nothing).
    pub replies: Batch<Outgoing>,
    /// `Ok` if the operator's answer was recorded durably and decided the
    /// request; otherwise why it did not take effect (unknown id, passed
    /// deadline, a commit that failed and halted the session).
    pub outcome: Result<(), OperatorAnswerError>,
}

/// Why an operator's approval or rejection did not take effect
/// ([`Session::approve`], [`Session::reject`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorAnswerError {
    /// The session has ended or cannot record anything.
    #[error("the session has ended or cannot record anything")]
    Closed,
    /// No request with this id is waiting.
    #[error("no request `{0}` is waiting for approval")]
    NotWaiting(u64),
    /// The request's deadline passed first: it was denied (and, if the
    /// denial's record could not be committed, the session halted for
    /// `halted`).
    #[error(
        "refused: request `{id}` passed its deadline before the answer; it was denied{}",
        .halted.as_deref().map(told_halted).unwrap_or_default()
    )]
    PassedDeadline {
        /// The request.
        id: u64,
        /// Why the session halted, if the commit failed.
        halted: Option<String>,
    },
    /// Approved, and still denied: a forbid or a limit wins over an
    /// approval (recorded; the agent got the denial).
    #[error(
        "request `{id}` was approved and still denied (a forbid or a limit wins over an approval): {reasons}"
    )]
    StillDenied {
        /// The request.
        id: u64,
        /// The denial's reasons, joined with `; `.
        reasons: String,
    },
    /// The answer's record could not be committed: the session halted for
    /// `halted`, and the agent was told `halted`.
    #[error(
        "the {} of request `{id}` did not take effect: its record could not be committed{}",
        if *.approved { "approval" } else { "rejection" },
        told_halted(.halted)
    )]
    Uncommitted {
        /// The request.
        id: u64,
        /// An approval (else a rejection).
        approved: bool,
        /// Why the session halted.
        halted: String,
    },
}

/// What an operator is told besides when a record of theirs could not be
/// committed: that the session halted, why, and what the agent got.
fn told_halted(cause: &str) -> String {
    format!("; the session halted ({cause}) and the agent was told `halted`")
}

/// Why a policy change did not take effect, or not fully
/// ([`Session::reload`], [`Session::install_policy`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyChangeError {
    /// The new policy set does not load; nothing changed.
    #[error(transparent)]
    Load(#[from] kernel_policy::PolicyLoadError),
    /// The session has ended or cannot record anything; nothing changed.
    #[error("the session has ended or cannot record anything")]
    Closed,
    /// The new policy is in force, but its record could not be committed:
    /// the session halted.
    #[error("the new policy is in force but could not be recorded: halted")]
    Unrecorded,
}

/// A decision whose record is staged: an allow, or a frame that lets
/// nothing proceed.
#[derive(Debug)]
enum Staged {
    Allow(UnreleasedAllow<SignedReceipt>),
    Frame(EnforcerFrame),
}

impl Staged {
    /// What deciding `request` came to.
    fn authorized(self, request: EncodedRequest) -> Authorized {
        match self {
            Self::Allow(allow) => Authorized::Allow(allow, request),
            Self::Frame(frame) => Authorized::Frame(frame),
        }
    }
}

/// A request decided by `Session::authorize`.
#[derive(Debug)]
enum Authorized {
    /// Refused, or decided and not allowed.
    Frame(EnforcerFrame),
    /// Allowed, with the decoded request (so the broker need not decode
    /// it again).
    Allow(UnreleasedAllow<SignedReceipt>, EncodedRequest),
}

/// What handling one frame produced, before the batch is committed.
#[derive(Debug)]
enum Handled {
    Frame(EnforcerFrame),
    Allow(UnreleasedAllow),
    Effect(PendingEffect),
}

/// The frame for `frame` once the commit of its record has (or has not,
/// `committed` false) succeeded: a receipt whose record is not durable is
/// replaced by a `Halted` refusal, whatever its decision.
fn after_commit(frame: EnforcerFrame, committed: bool) -> Vec<u8> {
    match frame {
        EnforcerFrame::Receipt { seq, .. } | EnforcerFrame::Brokered { seq, .. } if !committed => {
            halted_frame(seq)
        }
        other => encode_enforcer_frame(&other),
    }
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
    /// The proof of the newest commit that succeeded.
    durable: Durable,
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
    ) -> Result<Self, crate::session::evidence::EvidenceError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| crate::session::evidence::EvidenceError::Io {
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
        // Everything so far was appended, and so committed.
        let durable = Durable {
            session: id,
            records: evidence.next_index(),
        };
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
            durable,
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
    /// [`kernel_policy::resolve::check`]): a file action whose path goes through a
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
    pub fn halt(&mut self, cause: &str, by: &str) -> Batch<Outgoing> {
        let denials = self.stage_halt(cause, by);
        self.commit_replies(denials.into_iter().map(|(_, denial)| denial).collect())
    }

    /// Sets the halt latch and, if the evidence can still be written,
    /// stages the halt's record and the denials of every waiting request
    /// (with their sequence numbers), for the caller to commit and send.
    fn stage_halt(&mut self, cause: &str, by: &str) -> Vec<(u64, Staged)> {
        self.halt.halt(cause);
        let mut denials = Vec::new();
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
                let seq = waiting.request.request().seq;
                denials.push((seq, self.decide_pending(&waiting, Approval::None)));
            }
            self.checkpoint();
        }
        denials
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
    pub fn tick(&mut self) -> Batch<Outgoing> {
        if self.closed() {
            return Batch {
                replies: Vec::new(),
                durable: self.durable,
            };
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

    /// Commits staged records and returns `replies` with the commit's
    /// proof. If the commit fails (or panics), the session halts for good,
    /// the evidence is treated as unwritable, every receipt that is not an
    /// allow is replaced by a `Halted` refusal, and the proof covers none
    /// of the allows, so their release withholds them too.
    fn commit_replies(&mut self, replies: Vec<Staged>) -> Batch<Outgoing> {
        self.commit_replies_checked(replies).0
    }

    /// [`commit_replies`](Self::commit_replies), also saying whether the
    /// commit succeeded.
    fn commit_replies_checked(&mut self, replies: Vec<Staged>) -> (Batch<Outgoing>, bool) {
        let committed = self.commit_staged();
        (self.after_commit_of(replies, committed), committed)
    }

    /// `replies` once the commit of their records has (or has not,
    /// `committed` false) succeeded, with the proof of the newest commit.
    fn after_commit_of(&self, replies: Vec<Staged>, committed: bool) -> Batch<Outgoing> {
        let replies = replies
            .into_iter()
            .map(|reply| match reply {
                Staged::Allow(allow) => Outgoing::Allow(allow.map(receipt_frame)),
                Staged::Frame(frame) => Outgoing::Frame(after_commit(frame, committed)),
            })
            .collect();
        Batch {
            replies,
            durable: self.durable,
        }
    }

    /// Handles one frame (see [`handle_batch`](Self::handle_batch)).
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        self.handle_batch(std::slice::from_ref(&frame))
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// Handles frames that arrived together and returns one encoded reply
    /// per frame, in order, releasing allows and performing brokered
    /// effects inline ([`Reply::release`]). See
    /// [`decide_batch`](Self::decide_batch).
    pub fn handle_batch<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Vec<Vec<u8>> {
        let Batch { replies, durable } = self.decide_batch(frames);
        replies
            .into_iter()
            .map(|reply| reply.release(&durable, self.broker.as_ref()))
            .collect()
    }

    /// Decides frames that arrived together and returns one reply per
    /// frame, in order, with the proof of the batch's commit. Total: any
    /// input gets a reply. Every record the batch produced is committed
    /// with one `fdatasync` (group commit) before this returns; allows and
    /// brokered effects come back unreleased ([`Reply::Allow`],
    /// [`Reply::Effect`]), for [`UnreleasedAllow::release`] to let out
    /// with that proof. If the commit fails, the session halts, every
    /// other receipt of the batch is replaced by a `Halted` refusal, and
    /// the proof covers none of its allows.
    ///
    /// A panic while handling a frame halts the session (sticky) and
    /// releases nothing of the batch: the frame is refused as halted (by
    /// its sequence number, when it has one), and after the batch's
    /// replies come `Halted` refusals of the requests that were waiting
    /// for an operator (the halt denied them): one more reply for each.
    pub fn decide_batch<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Batch<Reply> {
        let before = self.durable;
        let (answers, panicked) = self.answers(frames);
        let committed = !panicked && self.commit_staged();
        // Nothing of a batch that panicked is released: its proof is the
        // one from before it, which covers none of its records.
        let durable = if panicked { before } else { self.durable };
        Batch {
            replies: replies_after_commit(answers, committed),
            durable,
        }
    }

    /// Decides frames that arrived together like
    /// [`decide_batch`](Self::decide_batch), and writes their records to
    /// the evidence file without waiting for them to become durable: the
    /// returned [`DeferredBatch`] does that, and gives the replies with the
    /// proof of that sync, once [`DeferredBatch::sync`] returns. Call that
    /// without holding the session, so that the next batch is decided (and
    /// written) while this one's `fdatasync` runs. Nothing of the batch is
    /// released, and no receipt of it leaves, before its own sync has
    /// succeeded. Where the evidence cannot be synced apart (an evidence
    /// window, OS-buffered evidence), the records are committed here, as
    /// `decide_batch` does, and the sync has nothing left to do.
    pub fn decide_batch_deferred<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> DeferredBatch {
        let before = self.durable;
        let (answers, panicked) = self.answers(frames);
        let (written, pending) = if panicked || self.evidence_broken {
            (false, None)
        } else {
            // As in a commit, a segment left full is rotated before the
            // batch's replies go (its rotation syncs what was written).
            match catch_unwind(AssertUnwindSafe(|| {
                let pending = self.evidence.write_staged()?;
                if self.evidence.rotation_due() {
                    self.evidence.rotate(self.id, &self.key)?;
                }
                Ok(pending)
            }))
            .unwrap_or(Err(crate::session::evidence::EvidenceError::Panicked))
            {
                Ok(Some(pending)) => (true, Some(pending)),
                Ok(None) => {
                    // Committed: durable now.
                    self.durable = Durable {
                        session: self.id,
                        records: self.evidence.next_index(),
                    };
                    (true, None)
                }
                Err(e) => {
                    self.commit_failed(&e.to_string());
                    (false, None)
                }
            }
        };
        DeferredBatch {
            answers,
            written,
            pending,
            before,
            committed: if panicked { before } else { self.durable },
            halt: Arc::clone(&self.halt),
        }
    }

    /// Records that the sync of a [`DeferredBatch`] failed: nothing more
    /// is recorded, and the session halts for good (its latch is already
    /// set by the failed sync).
    pub fn sync_failed(&mut self, why: &SyncError) {
        self.commit_failed(&why.to_string());
    }

    /// Every frame's answer, in order, and whether handling one panicked
    /// (then the session is halted, and `Halted` refusals of the requests
    /// that were waiting for an operator follow the frames' answers).
    fn answers<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> (Vec<Handled>, bool) {
        let mut panicked = false;
        let answers: Vec<Handled> = frames
            .iter()
            .map(|frame| {
                let frame = frame.as_ref();
                match catch_unwind(AssertUnwindSafe(|| self.answer_to(frame))) {
                    Ok(answer) => answer,
                    Err(_) => {
                        panicked = true;
                        Handled::Frame(Self::refused(self.claimed_seq(frame), Refusal::Halted))
                    }
                }
            })
            .collect();
        for answer in &answers {
            if matches!(answer, Handled::Frame(EnforcerFrame::Refused { .. })) {
                self.counts.refused += 1;
            }
        }
        let mut waiting = Vec::new();
        if panicked {
            // The decision path broke an invariant: halt, and record the
            // halt (and the denials of the requests waiting for an
            // operator) if the evidence still works. Those requests are
            // answered here, as halted, whether that record was written
            // or not.
            waiting = self
                .stage_halt("internal fault: a panic while deciding", "enforcer")
                .into_iter()
                .map(|(seq, _)| seq)
                .collect();
            self.commit_staged();
        }
        // After the batch's replies, the `Halted` refusals of the requests
        // that were waiting (the same frame `halted_frame` makes).
        let mut answers = answers;
        answers.extend(
            waiting
                .into_iter()
                .map(|seq| Handled::Frame(Self::refused(Some(seq), Refusal::Halted))),
        );
        (answers, panicked)
    }

    /// The sequence number `frame` claims for a request of this session,
    /// if it decodes that far (and decoding does not panic): what a
    /// refusal of a frame whose handling panicked is addressed to, so that
    /// its client is answered rather than left to its own timeout.
    fn claimed_seq(&self, frame: &[u8]) -> Option<u64> {
        catch_unwind(AssertUnwindSafe(|| {
            match decode_client_frame(frame).ok()? {
                ClientFrame::Authorize { request } | ClientFrame::Broker { request, .. } => {
                    let encoded = EncodedRequest::decode(&request).ok()?;
                    let request = encoded.request();
                    (request.session == self.id).then_some(request.seq)
                }
                ClientFrame::Hello { .. } => None,
            }
        }))
        .ok()
        .flatten()
    }

    /// Commits staged records and, if that succeeded, takes the proof of
    /// it; on failure (or a panic in the device) the session halts for
    /// good and the evidence is treated as unwritable.
    ///
    /// A commit that leaves the active segment of a segmented log full is
    /// followed by a rotation, before the batch's replies go: a failed
    /// rotation is a failed commit.
    fn commit_staged(&mut self) -> bool {
        if self.evidence_broken {
            // Nothing more is written after a failed commit; what it left
            // staged never becomes durable.
            return false;
        }
        let committed = catch_unwind(AssertUnwindSafe(|| {
            self.evidence.commit()?;
            if self.evidence.rotation_due() {
                self.evidence.rotate(self.id, &self.key)?;
            }
            Ok(())
        }))
        .unwrap_or(Err(crate::session::evidence::EvidenceError::Panicked));
        match committed {
            Ok(()) => {
                // The commit wrote every staged record.
                self.durable = Durable {
                    session: self.id,
                    records: self.evidence.next_index(),
                };
                true
            }
            Err(e) => {
                self.commit_failed(&e.to_string());
                false
            }
        }
    }

    /// What a failed commit does: nothing more is recorded, and the
    /// session halts for good.
    fn commit_failed(&mut self, why: &str) {
        self.evidence_broken = true;
        self.halt.halt(&format!("cannot record evidence: {why}"));
    }

    fn refused(seq: Option<u64>, refusal: Refusal) -> EnforcerFrame {
        EnforcerFrame::Refused { seq, refusal }
    }

    fn answer_to(&mut self, frame: &[u8]) -> Handled {
        if frame.len() > MAX_FRAME_BYTES {
            return Handled::Frame(Self::refused(
                None,
                Refusal::Oversize {
                    size: u64::try_from(frame.len()).unwrap_or(u64::MAX),
                    limit: u64::try_from(MAX_FRAME_BYTES).unwrap_or(u64::MAX),
                },
            ));
        }
        let frame = match decode_client_frame(frame) {
            Ok(frame) => frame,
            Err(e) => {
                return Handled::Frame(Self::refused(None, Refusal::Malformed(e.to_string())));
            }
        };
        match frame {
            ClientFrame::Hello {
                protocol,
                challenge,
            } => Handled::Frame(self.hello(protocol, &challenge)),
            ClientFrame::Authorize { request } => match self.authorize(&request) {
                Authorized::Allow(allow, _) => Handled::Allow(allow.map(receipt_frame)),
                Authorized::Frame(frame) => Handled::Frame(frame),
            },
            ClientFrame::Broker { request, payload } => self.broker_request(&request, payload),
        }
    }

    /// Decides a brokered request; an allowed one comes back as an effect
    /// to perform once its allow is released.
    fn broker_request(&mut self, bytes: &[u8], payload: Vec<u8>) -> Handled {
        let not_performed = |reason: &str| Outcome::NotPerformed {
            reason: reason.into(),
        };
        match self.authorize(bytes) {
            Authorized::Allow(allow, request) if self.broker.is_some() => {
                Handled::Effect(PendingEffect {
                    allow: allow.map(|_, receipt| Effect {
                        receipt,
                        action: request.request().action.clone(),
                        payload,
                    }),
                })
            }
            // Still an allow receipt: released like any permit.
            Authorized::Allow(allow, _) => Handled::Allow(allow.map(|seq, receipt| {
                encode_enforcer_frame(&EnforcerFrame::Brokered {
                    seq,
                    receipt,
                    outcome: not_performed("this enforcer does not broker effects"),
                })
            })),
            Authorized::Frame(EnforcerFrame::Receipt { seq, receipt }) => {
                Handled::Frame(EnforcerFrame::Brokered {
                    seq,
                    receipt,
                    outcome: not_performed("not allowed"),
                })
            }
            Authorized::Frame(frame) => Handled::Frame(frame),
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
    /// [`crate::gateways::endpoint`]): a handshake signed over that client's own
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

    /// Decides one request: a refusal, a decision that lets nothing
    /// proceed, or an allow (with the decoded request).
    fn authorize(&mut self, bytes: &[u8]) -> Authorized {
        if !self.greeted {
            return Authorized::Frame(Self::refused(
                None,
                Refusal::OutOfOrder("request before hello".into()),
            ));
        }
        let encoded = match EncodedRequest::decode(bytes) {
            Ok(encoded) => encoded,
            Err(e) => {
                return Authorized::Frame(Self::refused(None, Refusal::Malformed(e.to_string())));
            }
        };
        let request = encoded.request();
        let seq = request.seq;
        if request.session != self.id {
            return Authorized::Frame(Self::refused(Some(seq), Refusal::WrongSession));
        }
        if self.last_seq.is_some_and(|last| seq <= last) {
            return Authorized::Frame(Self::refused(Some(seq), Refusal::Replayed(seq)));
        }
        self.last_seq = Some(seq);
        if self.closed() {
            // Nothing can be recorded, so nothing is decided.
            return Authorized::Frame(Self::refused(Some(seq), Refusal::Halted));
        }
        // Debug builds only: `AGENT_KERNEL_TEST_FAULT=panic:KIND` makes
        // deciding a client's request of that kind panic, as it does for
        // a governed call (see `fault::injected_fault`).
        #[cfg(debug_assertions)]
        crate::fault::injected_fault(&request.action);
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
        let reply = match reply {
            Staged::Allow(allow) => return Authorized::Allow(allow, encoded),
            Staged::Frame(frame) => frame,
        };
        if verdict.decision == Decision::Ask {
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
                return denial.authorized(waiting.request);
            }
        }
        Authorized::Frame(reply)
    }

    /// Evaluates, applies limits, decides, and stages the decision record.
    /// Also says whether the approval given was what made it an `Allow`.
    fn decide_and_stage(
        &mut self,
        encoded: &EncodedRequest,
        approval: Approval,
    ) -> (Staged, Verdict, bool) {
        let request = encoded.request();
        let now = now_ms();
        let evaluation = self
            .physical_paths
            .then(|| kernel_policy::resolve::check(&request.action, self.policy.environment()))
            .flatten()
            .unwrap_or_else(|| self.policy.evaluate(&request.action));
        let instant = Instant::now();
        let approval_given = approval != Approval::None;
        let kernel = if self.halt.is_halted() {
            EnforcerState::Halted
        } else {
            EnforcerState::Serving
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
        kernel: EnforcerState,
        deadline: Deadline,
    ) -> Verdict {
        if !matches!(verdict.decision, Decision::Deny | Decision::Ask)
            || kernel != EnforcerState::Serving
            || deadline != Deadline::Open
        {
            return verdict;
        }
        let floor = |id: &str| id.starts_with(kernel_policy::FLOOR_ID_PREFIX);
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

    /// Signs a receipt for `verdict` and stages its decision record: an
    /// [`UnreleasedAllow`] when the decision lets its action proceed.
    fn stage_decision(&mut self, encoded: &EncodedRequest, verdict: &Verdict) -> Staged {
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
        // Staged here; a receipt leaves only once this record is durable:
        // an allow through its release, any other after the commit.
        let record = self.evidence.stage(&Record::Decision {
            request: encoded.bytes().to_vec(),
            receipt: receipt.clone(),
        });
        if self.checkpoint_due() {
            self.checkpoint();
        }
        if verdict.decision.proceeds() {
            Staged::Allow(UnreleasedAllow {
                session: self.id,
                record,
                seq,
                halt: Arc::clone(&self.halt),
                payload: receipt,
            })
        } else {
            Staged::Frame(EnforcerFrame::Receipt { seq, receipt })
        }
    }

    /// Decides an action the agent attempted directly at the system-call
    /// boundary (see [`crate::governed::notify`]) or through the egress proxy, and
    /// commits its record. The call proceeds only if the result's
    /// [`release`](SystemCall::release) says so: an `Allow` (or, in
    /// shadow mode, a decision of shadow mode) whose record is durable,
    /// released before any halt. An `Ask` is recorded and answered as a
    /// denial (a system call cannot wait for an operator). These requests
    /// take sequence numbers from [`SYSCALL_SEQ_BASE`] up, apart from the
    /// client's.
    pub fn decide_system_call(&mut self, action: CanonicalAction) -> SystemCall {
        if self.closed() {
            return SystemCall::denied();
        }
        let mut nonce = [0u8; 16];
        if getrandom::fill(&mut nonce).is_err() {
            return SystemCall::denied();
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
            self.decide_and_stage(&encoded, Approval::None).0
        }));
        let Ok(staged) = decided else {
            // The halt's replies deny requests waiting for an operator,
            // which only a client's channel makes; a session that decides
            // system calls and egress (`run --govern-syscalls`) has no
            // client channel, so nobody waits for them.
            drop(self.halt("internal fault: a panic while deciding", "enforcer"));
            return SystemCall::denied();
        };
        if unsynced_fault(encoded.request().action.action()) {
            // As if the record's sync had failed: it is never written.
            self.commit_failed("injected fault: the record of a governed call was not synced");
        } else {
            let _ = self.commit_staged();
        }
        // Whether the record is durable is for the release to check.
        match staged {
            Staged::Allow(allow) => SystemCall(Some((allow.map(|_, _| ()), self.durable))),
            Staged::Frame(_) => SystemCall::denied(),
        }
    }

    /// Decides a waiting request again, now with the operator's answer (or
    /// none: then the `@ask` policy makes it a denial).
    fn decide_pending(&mut self, pending: &Waiting, approval: Approval) -> Staged {
        self.decide_pending_verdict(pending, approval).0
    }

    /// [`Self::decide_pending`], with the verdict its record holds.
    fn decide_pending_verdict(
        &mut self,
        pending: &Waiting,
        approval: Approval,
    ) -> (Staged, Verdict) {
        let (reply, verdict, _) = self.decide_and_stage(&pending.request, approval);
        if verdict.decision == Decision::Ask {
            // No answer: an ask without approval ends as a denial.
            let denial = Verdict {
                decision: Decision::Deny,
                policies: verdict.policies,
                reasons: vec!["no operator approval before the request's deadline".into()],
            };
            return (self.stage_decision(&pending.request, &denial), denial);
        }
        (reply, verdict)
    }

    /// The requests waiting for an operator's answer.
    pub fn pending(&self) -> Vec<PendingView> {
        let now = now_ms();
        self.pending.list(|id, p| PendingView {
            id,
            action: kernel_policy::describe::action(p.request.request().action.action()),
            policies: p.policies.clone(),
            reasons: p.reasons.clone(),
            expires_in_ms: p.request.request().deadline_ms.saturating_sub(now),
        })
    }

    /// Approves pending request `id` on behalf of `by`, optionally with a
    /// standing grant for the same action. The request is decided again
    /// with the approval as input (so a forbid, a limit or a halt still
    /// wins), the approval and the new decision are recorded, and the
    /// reply for the agent is returned: an allow comes back unreleased
    /// ([`Outgoing::Allow`]), to be sent only through its release, right
    /// before the send. Refused for an unknown id; refused for a request
    /// whose deadline has passed, which is then denied, recorded, and its
    /// denial returned for the agent; and reported as not taking effect
    /// when the commit of its records fails (the session halts, and the
    /// agent's reply is a `Halted` refusal). See [`Answered`].
    pub fn approve(&mut self, id: u64, by: &str, scope: Option<GrantScope>) -> Answered {
        self.answer(id, by, true, scope)
    }

    /// Rejects pending request `id` on behalf of `by`: recorded, and the
    /// agent gets a signed denial (refused and reported as for
    /// [`approve`](Self::approve)).
    pub fn reject(&mut self, id: u64, by: &str) -> Answered {
        self.answer(id, by, false, None)
    }

    fn answer(&mut self, id: u64, by: &str, approved: bool, scope: Option<GrantScope>) -> Answered {
        let refused = |session: &Self, why: OperatorAnswerError| Answered {
            replies: Batch {
                replies: Vec::new(),
                durable: session.durable,
            },
            outcome: Err(why),
        };
        if self.closed() {
            return refused(self, OperatorAnswerError::Closed);
        }
        let Some(pending) = self.pending.take(id) else {
            return refused(self, OperatorAnswerError::NotWaiting(id));
        };
        let now = now_ms();
        if now > pending.request.request().deadline_ms {
            // Taken from the waiting requests here, so answered here: the
            // agent gets the denial that is recorded, and nothing else.
            let reply = self.decide_pending(&pending, Approval::None);
            let (replies, committed) = self.commit_replies_checked(vec![reply]);
            return Answered {
                replies,
                outcome: Err(OperatorAnswerError::PassedDeadline {
                    id,
                    halted: (!committed).then(|| self.halt_cause()),
                }),
            };
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
        // Why an approved request was still denied (a forbid or a limit
        // wins over an approval): the operator is told, not "approved".
        let mut still_denied = None;
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
            let (reply, verdict) =
                self.decide_pending_verdict(&pending, Approval::Granted { by: by.to_owned() });
            if verdict.decision != Decision::Allow {
                still_denied = Some(verdict.reasons.join("; "));
            }
            reply
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
        let committed = if unsynced_fault(pending.request.request().action.action()) {
            // As if the records' sync had failed: they are never written.
            self.commit_failed("injected fault: the record of an operator's answer was not synced");
            false
        } else {
            self.commit_staged()
        };
        let replies = self.after_commit_of(vec![reply], committed);
        let outcome = if committed {
            match still_denied {
                None => Ok(()),
                Some(reasons) => Err(OperatorAnswerError::StillDenied { id, reasons }),
            }
        } else {
            // Nothing of it is known to be in the evidence, and the
            // agent is told `halted` (an allow is withheld by its
            // release, a denial replaced by the refusal).
            Err(OperatorAnswerError::Uncommitted {
                id,
                approved,
                halted: self.halt_cause(),
            })
        };
        Answered { replies, outcome }
    }

    /// Why the session halted, for an operator whose command's record
    /// could not be committed.
    fn halt_cause(&self) -> String {
        self.halted().unwrap_or_else(|| "cause unknown".into())
    }

    /// Loads the policy files again from `paths`. An invalid set changes
    /// nothing and its diagnostics are returned; a valid one takes effect
    /// for every later decision (the swap happens between two requests)
    /// and is recorded with who asked.
    pub fn reload(
        &mut self,
        paths: &[std::path::PathBuf],
        by: &str,
    ) -> Result<Digest, PolicyChangeError> {
        let engine = PolicyEngine::load(paths, self.policy.environment().clone())?;
        self.install_policy(engine, by)
    }

    /// Puts an already validated policy set in force for every later
    /// decision and records the change with who asked.
    pub fn install_policy(
        &mut self,
        engine: PolicyEngine,
        by: &str,
    ) -> Result<Digest, PolicyChangeError> {
        if self.closed() {
            return Err(PolicyChangeError::Closed);
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
            return Err(PolicyChangeError::Unrecorded);
        }
        Ok(digest)
    }
}
