//! Evidence: the record format, and its verification by an outsider.
//!
//! The evidence file is a sequence of records, each framed as a 4-byte
//! big-endian length followed by the record bytes `RECORD_TAG ||
//! postcard(Record)`. Every record's bytes are a leaf of an RFC 6962 Merkle
//! tree. Every record is individually authenticated: decisions by their
//! signed receipt, events (session start, policy load, approval, halt) by
//! the session key's signature, checkpoints by their signed note. A
//! checkpoint at position `i` commits to the tree of the `i` records before
//! it. [`audit`] checks all of it with public keys only; see
//! `docs/EVIDENCE.md` for the byte layout.
//!
//! A checkpoint that also stores the tree's frontier
//! ([`Record::FrontierCheckpoint`]) lets the log's writer continue the log
//! from it with [`resume`], reading only the records after it.

use crate::decision::Decision;
use crate::digest::Digest;
use crate::encoding::{DecodeError, EVENT_TAG, RECORD_TAG, decode, encode};
use crate::keys::{format_public_key, public_key_from_bytes};
use crate::limits::MAX_FRAME_BYTES;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, ENFORCER_KEY_NAME, NoteError, SignedNote};
use crate::protocol::Confinement;
use crate::receipt::{SignedReceipt, VerifyError, decode_receipt_body_checked};
use crate::request::{EncodedRequest, SessionId};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, PoisonError};

mod segments;
pub use segments::{
    SegmentError, SegmentHead, SegmentProblem, SegmentSpan, SegmentedAudit, segment_order,
};

/// Largest encoded record, in bytes.
pub const MAX_RECORD_BYTES: usize = 2 * MAX_FRAME_BYTES;

/// One evidence record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// An event signed by the session key.
    Event(SignedEvent),
    /// A decision: the exact request bytes and the signed receipt sent
    /// back.
    Decision {
        /// `EncodedRequest::bytes`.
        request: Vec<u8>,
        /// The receipt.
        receipt: SignedReceipt,
    },
    /// A signed checkpoint (C2SP signed note) of the records before it, as
    /// enforcers wrote them before [`FrontierCheckpoint`](Self::FrontierCheckpoint)
    /// existed. Still read and verified.
    Checkpoint {
        /// The note text.
        note: String,
    },
    /// A signed checkpoint of the records before it, with what the log's
    /// writer needs to continue the log from here without reading those
    /// records again. Only the note is signed: the frontier is bound to the
    /// note's signed root (other peaks with the same root would be a
    /// SHA-256 collision), the session and key are those whose key signed
    /// the note and every record that follows until the next session
    /// start. [`audit`] checks all three against the log.
    FrontierCheckpoint {
        /// The note text.
        note: String,
        /// The session the checkpoint is written in.
        session: SessionId,
        /// That session's public key.
        key: [u8; 32],
        /// [`Frontier::peaks`] of the tree of the records before this one.
        frontier: Vec<Hash>,
    },
}

impl Record {
    /// The signed note of a checkpoint record of either kind.
    pub fn checkpoint_note(&self) -> Option<&str> {
        match self {
            Self::Checkpoint { note } | Self::FrontierCheckpoint { note, .. } => Some(note),
            Self::Event(_) | Self::Decision { .. } => None,
        }
    }
}

/// An [`Event`] and the session key's signature over its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// `EVENT_TAG || postcard(Event)`.
    pub body: Vec<u8>,
    /// ed25519 signature over `body` by the session key.
    #[serde(with = "crate::encoding::signature_bytes")]
    pub signature: [u8; 64],
}

/// Things that happen in a session besides decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A session began. Self-signed by the key it announces.
    SessionStart {
        /// The session id.
        session: SessionId,
        /// The session's public key.
        public_key: [u8; 32],
        /// Digest of the policy set in force.
        policy_digest: Digest,
        /// The workspace root.
        workspace: String,
        /// Confinement in force.
        confinement: Confinement,
        /// The log's origin (the same in every session of one log).
        origin: String,
        /// Start time, ms since the Unix epoch.
        at_ms: u64,
    },
    /// A new policy set took effect.
    PolicyLoad {
        /// The session.
        session: SessionId,
        /// Digest of the new set.
        policy_digest: Digest,
        /// Who asked for it.
        by: String,
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
    /// An operator answered an `Ask`.
    Approval {
        /// The session.
        session: SessionId,
        /// The request the answer is for.
        request_digest: Digest,
        /// Whether it was approved.
        approved: bool,
        /// Who answered.
        by: String,
        /// The scope granted, as the operator wrote it (empty: this request
        /// only).
        scope: String,
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
    /// From here on, the session's records are written to the log before
    /// the decision they record takes effect, and made durable
    /// (`fdatasync`) within `window_ms`: a decision survives a crash of the
    /// enforcer at once, a crash of the OS or a power loss once its window
    /// has passed. Without this event every record is durable before its
    /// decision takes effect. The event itself is durable before any
    /// decision of the session.
    EvidenceWindow {
        /// The session.
        session: SessionId,
        /// The longest a record stays written but not yet durable, in
        /// milliseconds.
        window_ms: u64,
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
    /// The enforcer halted: everything after is denied.
    Halt {
        /// The session.
        session: SessionId,
        /// Why.
        cause: String,
        /// Who asked (an operator) or `enforcer` for a fault.
        by: String,
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
    /// The session runs in shadow mode (its operator's `--shadow`): every
    /// action is decided by the policy and recorded as usual, and one the
    /// policy denies or asks about proceeds anyway, recorded with a
    /// decision of its own ([`Decision::ShadowDeny`],
    /// [`Decision::ShadowAsk`]). The kernel floor, a halt and a passed
    /// deadline still deny. Recorded right after the session start and
    /// durable before any decision of the session; a decision of shadow
    /// mode in a session without it is a fault.
    Shadow {
        /// The session.
        session: SessionId,
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
}

impl Event {
    /// The session this event belongs to.
    pub fn session(&self) -> SessionId {
        match self {
            Self::SessionStart { session, .. }
            | Self::PolicyLoad { session, .. }
            | Self::Approval { session, .. }
            | Self::EvidenceWindow { session, .. }
            | Self::Halt { session, .. }
            | Self::Shadow { session, .. } => *session,
        }
    }
}

impl SignedEvent {
    /// Encodes and signs `event`.
    pub fn sign(event: &Event, key: &SigningKey) -> Self {
        let body = encode(EVENT_TAG, event);
        let signature = key.sign(&body).to_bytes();
        Self { body, signature }
    }

    /// Verifies the signature with `key` (`verify_strict`, over the stored
    /// bytes), then decodes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Event, LogProblem> {
        key.verify_strict(&self.body, &Signature::from_bytes(&self.signature))
            .map_err(|_| LogProblem::BadEventSignature)?;
        decode(EVENT_TAG, &self.body, MAX_RECORD_BYTES).map_err(LogProblem::Decode)
    }

    /// Decodes without verifying (for display only).
    pub fn decode_unverified(&self) -> Result<Event, DecodeError> {
        decode(EVENT_TAG, &self.body, MAX_RECORD_BYTES)
    }
}

/// The record's bytes (its Merkle leaf data), without the length prefix.
pub fn encode_record(record: &Record) -> Vec<u8> {
    encode(RECORD_TAG, record)
}

/// Prefixes record bytes with their 4-byte big-endian length.
pub fn frame_record_bytes(bytes: &[u8]) -> Vec<u8> {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(bytes.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Encodes `record` with its length prefix, ready to append.
pub fn frame_record(record: &Record) -> Vec<u8> {
    frame_record_bytes(&encode_record(record))
}

/// Decodes one record's bytes (without the length prefix).
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode(RECORD_TAG, bytes, MAX_RECORD_BYTES)
}

/// The origin line of a log whose first session is `session`.
pub fn origin_for(session: SessionId) -> String {
    format!("agent-kernel/evidence/{session}")
}

/// What is wrong with an evidence file, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record {index}: {problem}")]
pub struct LogError {
    /// Index of the first record at fault (for truncation: the length the
    /// log should have had at least).
    pub index: u64,
    /// What is wrong.
    pub problem: LogProblem,
}

/// The kinds of fault [`audit`] finds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogProblem {
    /// The file ends inside a record.
    #[error("file ends inside a record ({0} bytes left over)")]
    Torn(usize),
    /// A record does not decode.
    #[error("record does not decode: {0}")]
    Decode(DecodeError),
    /// The first record is not a session start.
    #[error("the log does not begin with a session start")]
    NoSession,
    /// A session's key is not the expected one.
    #[error("session key {0} is not the expected enforcer key")]
    UnexpectedKey(String),
    /// A session's key is not a usable ed25519 key.
    #[error("session key is not a valid ed25519 key")]
    BadKey,
    /// An event's signature does not verify under its session key.
    #[error("event signature does not verify under the session key")]
    BadEventSignature,
    /// An event names another session than the one it is in.
    #[error("event belongs to another session")]
    WrongSession,
    /// A session start names another origin than the log's.
    #[error("origin `{0}` is not this log's origin")]
    WrongOrigin(String),
    /// A receipt does not verify.
    #[error("receipt does not verify: {0}")]
    Receipt(VerifyError),
    /// The request bytes do not decode.
    #[error("request does not decode: {0}")]
    Request(DecodeError),
    /// The receipt is not for the request stored beside it.
    #[error("receipt is not for the stored request")]
    Mismatch,
    /// The receipt's log index is not the record's position.
    #[error("receipt says log index {0}")]
    WrongIndex(u64),
    /// A checkpoint's note is malformed or its signature does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(NoteError),
    /// A checkpoint does not match the records before it.
    #[error("checkpoint says size {size}, but the tree before it differs")]
    CheckpointMismatch {
        /// The size it claims.
        size: u64,
    },
    /// A witnessed or trusted checkpoint covers more records than the log
    /// holds: records were removed from the end.
    #[error("log has {have} records but a {what} checkpoint covers {want}: records were removed")]
    Truncated {
        /// Records in the log.
        have: u64,
        /// Records the checkpoint covers.
        want: u64,
        /// `witnessed` or `trusted`.
        what: &'static str,
    },
    /// A witnessed or trusted checkpoint's root is not the root of the
    /// log's first records: the log was rewritten or forked.
    #[error(
        "the first {size} records do not match the {what} checkpoint: the log was rewritten or forked"
    )]
    Forked {
        /// The checkpoint's size.
        size: u64,
        /// `witnessed` or `trusted`.
        what: &'static str,
    },
    /// A witness co-signature is missing or does not verify.
    #[error("witness: {0}")]
    Witness(NoteError),
    /// A checkpoint's stored frontier is not that of the tree before it
    /// (or does not lead to its signed root).
    #[error("checkpoint at size {size} stores a frontier that is not the tree's")]
    FrontierMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// A checkpoint names another session or key than the session it is
    /// in.
    #[error("checkpoint names another session or key than the session it is in")]
    CheckpointSession,
    /// A decision of shadow mode in a session that did not announce shadow
    /// mode before its first decision.
    #[error("a denied action proceeded under shadow mode, which its session did not announce")]
    UnannouncedShadow,
    /// Shadow mode announced after the session's first decision.
    #[error("shadow mode announced after the session's first decision")]
    LateShadow,
    /// A witnessed or trusted checkpoint covers fewer records than those
    /// before the first record verified: what it commits to was not read.
    #[error(
        "the {what} checkpoint covers {size} records, but the verification began at record \
         {first}: give the segments before it"
    )]
    BeforeFirstRecord {
        /// The checkpoint's size.
        size: u64,
        /// The first record verified.
        first: u64,
        /// `witnessed` or `trusted`.
        what: &'static str,
    },
}

/// What the auditor trusts besides the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditOptions<'a> {
    /// The enforcer's key: every session must use it. Without it, each
    /// session's self-declared key is used, which proves internal
    /// consistency only.
    pub kernel_key: Option<&'a VerifyingKey>,
    /// A checkpoint obtained earlier: the log must extend it.
    pub trusted: Option<&'a SignedNote>,
    /// A witness whose co-signatures must verify and match the log.
    pub witness: Option<WitnessCheck<'a>>,
}

/// A witness to check.
#[derive(Debug, Clone, Copy)]
pub struct WitnessCheck<'a> {
    /// The witness's key name.
    pub name: &'a str,
    /// The witness's public key.
    pub key: &'a VerifyingKey,
    /// Co-signed checkpoints (at least one is required).
    pub notes: &'a [SignedNote],
}

/// What a sound evidence file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// The log's origin.
    pub origin: String,
    /// Records in the file.
    pub records: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Allow decisions.
    pub allowed: u64,
    /// Deny decisions.
    pub denied: u64,
    /// Ask decisions.
    pub asked: u64,
    /// Actions the policy denied that proceeded under shadow mode
    /// ([`Decision::ShadowDeny`]).
    pub shadow_denied: u64,
    /// Actions the policy asked about that proceeded under shadow mode
    /// without an approval ([`Decision::ShadowAsk`]).
    pub shadow_asked: u64,
    /// Sessions that ran in shadow mode ([`Event::Shadow`]).
    pub shadow_sessions: u64,
    /// Other events (policy loads, approvals, halts, shadow mode).
    pub events: u64,
    /// Checkpoints, by position.
    pub checkpoints: Vec<(u64, Checkpoint)>,
    /// Records after the newest checkpoint (covered only by their own
    /// signatures, not yet by a checkpoint).
    pub uncovered: u64,
    /// The signed note of the newest checkpoint, as its record holds it.
    pub newest_note: Option<String>,
    /// Index of the first record verified: 0 when the log was verified
    /// from its first record. A verification of segments that begins with
    /// a later segment ([`SegmentedAudit`]) starts at that segment's first
    /// checkpoint: the records before it were not read, and are vouched
    /// for only by that checkpoint's signed root.
    pub first_record: u64,
    /// The tree of the records before [`first_record`](Self::first_record),
    /// as the checkpoint there states it (empty when that is 0).
    pub base: Frontier,
    /// Leaf hashes of every record verified (from
    /// [`first_record`](Self::first_record) on), for proofs.
    pub leaves: Vec<Hash>,
    /// The tree of every record.
    pub frontier: Frontier,
    /// Index of the newest checkpoint record that stores its frontier
    /// ([`Record::FrontierCheckpoint`]), from which [`resume`] can continue.
    pub resumable_from: Option<u64>,
    /// Witness co-signatures checked.
    pub witnessed: u64,
}

impl AuditReport {
    /// Actions the policy did not allow that proceeded under shadow mode.
    pub fn shadowed(&self) -> u64 {
        self.shadow_denied.saturating_add(self.shadow_asked)
    }

    /// The newest checkpoint, if any.
    pub fn newest_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.last().map(|(_, c)| c)
    }

    /// Whether every record of the log was verified, from its first
    /// ([`first_record`](Self::first_record) is 0).
    pub fn is_complete(&self) -> bool {
        self.first_record == 0
    }

    /// The root of the tree of the log's first `size` records, computed
    /// from the records verified. `None` when `size` is beyond the log, or
    /// before [`first_record`](Self::first_record) (those records were not
    /// read).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        let verified = usize::try_from(size.checked_sub(self.first_record)?).ok()?;
        if size > self.records {
            return None;
        }
        let mut tree = self.base.clone();
        for leaf in self.leaves.get(..verified)? {
            tree.push(*leaf);
        }
        Some(tree.root())
    }

    /// What the log's writer needs to continue it.
    pub fn tip(&self) -> LogTip {
        LogTip {
            origin: self.origin.clone(),
            frontier: self.frontier.clone(),
            newest_checkpoint: self.newest_checkpoint().cloned(),
            uncovered: self.uncovered,
            resumable_from: self.resumable_from,
        }
    }
}

/// What the writer of a log needs to continue it: its origin, the tree of
/// its records, its newest checkpoint and how many records follow that.
/// [`AuditReport::tip`] gives it after a full check, [`resume`] from the
/// newest checkpoint on; for the same sound log the two are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTip {
    /// The log's origin (empty for an empty log).
    pub origin: String,
    /// The tree of every record; its size is the index of the next record.
    pub frontier: Frontier,
    /// The newest checkpoint, if any.
    pub newest_checkpoint: Option<Checkpoint>,
    /// Records after the newest checkpoint.
    pub uncovered: u64,
    /// Index of the newest checkpoint record that stores its frontier.
    pub resumable_from: Option<u64>,
}

/// Why [`resume`] did not continue a log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The bytes do not begin with a checkpoint record that stores its
    /// frontier and covers exactly the records before the given index:
    /// whatever pointed there is wrong or stale. Nothing is known about the
    /// log; verify it from its first record instead.
    #[error("no checkpoint with its frontier begins there as record {0}")]
    NoCheckpoint(u64),
    /// The checkpoint or a record after it is at fault.
    #[error(transparent)]
    Damaged(#[from] LogError),
}

/// Splits an evidence file into record bodies. A trailing partial record
/// is reported as [`LogProblem::Torn`].
pub fn split_records(bytes: &[u8]) -> Result<Vec<&[u8]>, LogError> {
    match split_records_prefix(bytes) {
        (records, None) => Ok(records),
        (_, Some(error)) => Err(error),
    }
}

/// Splits as many whole records as possible, and says what stopped it
/// (a torn or oversize record) if anything did.
pub fn split_records_prefix(bytes: &[u8]) -> (Vec<&[u8]>, Option<LogError>) {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let torn = LogError {
            index,
            problem: LogProblem::Torn(rest.len()),
        };
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return (records, Some(torn));
        };
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len > MAX_RECORD_BYTES {
            let problem = LogProblem::Decode(DecodeError::Oversize {
                size: len,
                limit: MAX_RECORD_BYTES,
            });
            return (records, Some(LogError { index, problem }));
        }
        let Some((body, after)) = after.split_at_checked(len) else {
            return (records, Some(torn));
        };
        records.push(body);
        rest = after;
    }
    (records, None)
}

#[derive(Clone, Copy)]
struct Current {
    session: SessionId,
    key: VerifyingKey,
    /// Whether the session announced shadow mode; `None` when its start
    /// was not read ([`resume`] begins inside a session).
    shadow: Option<bool>,
    /// Whether the session has recorded a decision yet.
    decided: bool,
}

/// Verifies an evidence file with public keys only: every record decodes
/// and is authenticated (receipt, event signature or checkpoint note),
/// every receipt binds the stored request and names its own position,
/// every checkpoint is signed by its session's key and matches the tree of
/// the records before it (and a checkpoint that stores its frontier, its
/// session and key, stores exactly those of the log at that point), and,
/// when given, the log extends the trusted checkpoint and matches every
/// witness co-signature. Returns the first fault, with its record index.
///
/// The signatures of events and receipts (nearly every record) are checked
/// together, in batches (`ed25519_dalek::verify_batch`, about half the
/// cost of one `verify_strict` each), after the same per-signature checks
/// `verify_strict` makes first (canonical `s` and `R`, neither `R` nor the
/// key of small order); the batches are verified on every available core
/// while the records are read. Only when every batch verifies and every
/// other check passed is the report returned; otherwise the log is audited
/// again one signature at a time with `verify_strict`, which finds and
/// reports the first fault exactly. The one difference from checking each
/// with `verify_strict`: batch verification does not reject a signature
/// whose `R` carries a small-order component, which only the holder of the
/// signing key can make (and the enforcer's signer never does); forging or
/// altering a record without the key is detected either way.
pub fn audit(bytes: &[u8], options: &AuditOptions<'_>) -> Result<AuditReport, LogError> {
    fast_then_exact(bytes.len() >= PARALLEL_BYTES, |signatures| {
        audit_with(bytes, options, signatures)
    })
}

/// Continues a log from its checkpoint record number `index`, given the
/// log's bytes from that record's length prefix to the end, without the
/// records before it: the checkpoint must store its frontier
/// ([`Record::FrontierCheckpoint`]), its note must be signed by the key it
/// names, and its frontier must lead to the note's signed root; every
/// record after it is then verified as [`audit`] verifies it (signatures,
/// tree, later checkpoints, session structure), starting from the
/// checkpoint's session, key, origin and tree.
///
/// What this trusts, unlike [`audit`]: that the records before the
/// checkpoint are the ones its signed root commits to, and that the key it
/// names is its session's. Nothing before the checkpoint is read, so
/// damage there is not found here; [`audit`] finds it. For a sound log the
/// result equals [`AuditReport::tip`] of a full audit.
///
/// A trailing partial record is an error, as in [`audit`]; cut it off
/// first if it is to be dropped.
pub fn resume(index: u64, from: &[u8]) -> Result<LogTip, ResumeError> {
    fast_then_exact(from.len() >= PARALLEL_BYTES, |signatures| {
        resume_with(index, from, signatures)
    })
}

/// Runs `run` with signatures deferred and verified in batches on every
/// available core (threads only when `parallel`); if anything fails, runs
/// it again checking each signature at once, for the exact first fault.
fn fast_then_exact<T, E>(
    parallel: bool,
    mut run: impl FnMut(&mut Signatures<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let workers = if parallel { extra_threads() } else { 0 };
    let failed = AtomicBool::new(false);
    let (sender, receiver) = sync_channel::<Vec<Pending>>(QUEUED_BATCHES);
    let receiver = Mutex::new(receiver);
    let fast = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| verify_queued(&receiver, &failed));
        }
        let mut signatures = Signatures::Deferred(Deferred {
            batch: Vec::with_capacity(SIGNATURE_BATCH),
            queue: (workers > 0).then_some(sender),
            failed: &failed,
        });
        let result = run(&mut signatures);
        signatures.close();
        // The queue is closed: help the workers empty it.
        verify_queued(&receiver, &failed);
        result.ok()
    });
    match fast.filter(|_| !failed.load(Ordering::Relaxed)) {
        Some(value) => Ok(value),
        None => run(&mut Signatures::Strict),
    }
}

/// Logs at least this long are verified with extra threads.
const PARALLEL_BYTES: usize = 256 * 1024;
/// Most threads a verification uses, the calling one included.
const MAX_THREADS: usize = 8;
/// Batches waiting for a worker; when the queue is full, the reading
/// thread verifies the batch itself.
const QUEUED_BATCHES: usize = 4;

/// Threads to start besides the calling one: one per further core.
fn extra_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, MAX_THREADS)
        - 1
}

/// Verifies queued batches until the queue is closed and empty, recording
/// any failure in `failed`.
fn verify_queued(receiver: &Mutex<Receiver<Vec<Pending>>>, failed: &AtomicBool) {
    loop {
        let batch = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(batch) = batch else { return };
        if !failed.load(Ordering::Relaxed) && !verify_batch(&batch) {
            failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Most signatures in one `verify_batch` call: large enough to amortise
/// the batch, small enough to keep its working memory modest.
const SIGNATURE_BATCH: usize = 256;

/// A signature waiting to be verified.
struct Pending {
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

/// How [`audit_with`] and [`resume_with`] check signatures.
enum Signatures<'a> {
    /// Each at once, with `verify_strict`.
    Strict,
    /// Collected into batches, verified by other threads or, when they are
    /// busy, by this one; until [`close`](Self::close) and the end of the
    /// queue every check passes provisionally.
    Deferred(Deferred<'a>),
}

struct Deferred<'a> {
    batch: Vec<Pending>,
    /// Where full batches go; `None`: verify them here.
    queue: Option<SyncSender<Vec<Pending>>>,
    /// Set when any batch failed.
    failed: &'a AtomicBool,
}

impl Deferred<'_> {
    fn dispatch(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(SIGNATURE_BATCH));
        if batch.is_empty() {
            return;
        }
        let batch = match &self.queue {
            Some(queue) => match queue.try_send(batch) {
                Ok(()) => return,
                Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => batch,
            },
            None => batch,
        };
        if !verify_batch(&batch) {
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

impl Signatures<'_> {
    fn check(&mut self, message: &[u8], signature: &[u8; 64], key: &VerifyingKey) -> bool {
        let signature = Signature::from_bytes(signature);
        match self {
            Self::Strict => key.verify_strict(message, &signature).is_ok(),
            Self::Deferred(deferred) => {
                // Once a batch failed the verification is run again
                // strictly; collecting more would be wasted.
                if !deferred.failed.load(Ordering::Relaxed) {
                    deferred.batch.push(Pending {
                        message: message.to_vec(),
                        signature,
                        key: *key,
                    });
                    if deferred.batch.len() >= SIGNATURE_BATCH {
                        deferred.dispatch();
                    }
                }
                true
            }
        }
    }

    /// Hands over the last batch and closes the queue.
    fn close(&mut self) {
        if let Self::Deferred(deferred) = self {
            deferred.dispatch();
            deferred.queue = None;
        }
    }
}

/// Whether every signature of `batch` verifies, with the checks
/// `verify_strict` makes before its equation.
fn verify_batch(batch: &[Pending]) -> bool {
    // What `verify_strict` rejects before its equation, and the batch
    // equation alone would not: a key or an `R` of small order, and an `R`
    // not in canonical encoding. An `R` that is no point at all fails the
    // batch equation.
    let strict = batch
        .iter()
        .all(|pending| !pending.key.is_weak() && strict_r(pending.signature.r_bytes()));
    let messages: Vec<&[u8]> = batch.iter().map(|p| p.message.as_slice()).collect();
    let signatures: Vec<Signature> = batch.iter().map(|p| p.signature).collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|p| p.key).collect();
    strict && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// For an `R` that decompresses: whether `verify_strict` accepts it before
/// its equation, i.e. whether `R` is canonically encoded and not of small
/// order. The same as decompressing, checking the order and compressing
/// again, without the two field exponentiations that costs (a third of a
/// batch's time): the encoding is canonical exactly when its `y` is below
/// the field's prime `p = 2^255 - 19` (the sign bit is ambiguous only for
/// the two points with `x = 0`, both of small order), and the points of
/// small order are the eight of the 8-torsion subgroup.
fn strict_r(r: &[u8; 32]) -> bool {
    let (low, high) = r.split_at(31);
    let top = high.first().map_or(0, |b| b & 0x7f);
    // `y >= p`: the top 255 bits all ones but for `y - (2^255 - 19)` in the
    // low byte.
    let y_at_least_p = top == 0x7f
        && low.get(1..).is_some_and(|m| m.iter().all(|b| *b == 0xff))
        && low.first().is_some_and(|b| *b >= 0xed);
    !y_at_least_p && !small_order_encodings().contains(r)
}

/// The encodings with a canonical `y` of the eight points of small order
/// (the 8-torsion subgroup), and of the two with `x = 0` once more with the
/// sign bit set, which decompression also accepts.
fn small_order_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut encodings = Vec::new();
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            let canonical = point.compress().to_bytes();
            encodings.push(canonical);
            let mut flipped = canonical;
            if let Some(last) = flipped.last_mut() {
                *last ^= 0x80;
            }
            if CompressedEdwardsY(flipped).decompress() == Some(point) {
                encodings.push(flipped);
            }
        }
        encodings
    })
}

/// A [`Verifier`]'s state, without its growing lists (only their
/// lengths): cheap to take before each segment.
#[derive(Clone)]
struct Mark {
    report: AuditReport,
    leaves: usize,
    checkpoints: usize,
    current: Option<Current>,
}

/// What the records verified so far establish.
struct Verifier<'a> {
    options: &'a AuditOptions<'a>,
    report: AuditReport,
    current: Option<Current>,
    /// Whether to keep every leaf hash in the report.
    keep_leaves: bool,
}

impl Verifier<'_> {
    /// Verifies the next record, `body`, and adds it to the tree.
    fn record(&mut self, body: &[u8], signatures: &mut Signatures<'_>) -> Result<(), LogError> {
        let index = self.report.frontier.size();
        let fail = |problem| LogError { index, problem };
        let record = decode_record(body).map_err(|e| fail(LogProblem::Decode(e)))?;
        match record {
            Record::Event(signed) => self.event(&signed, signatures).map_err(fail)?,
            Record::Decision { request, receipt } => {
                let current = self
                    .current
                    .as_mut()
                    .ok_or_else(|| fail(LogProblem::NoSession))?;
                current.decided = true;
                if !signatures.check(&receipt.body, &receipt.signature, &current.key) {
                    return Err(fail(LogProblem::Receipt(VerifyError::BadSignature)));
                }
                let body = decode_receipt_body_checked(&receipt.body)
                    .map_err(|e| fail(LogProblem::Receipt(e)))?;
                let request =
                    EncodedRequest::decode(&request).map_err(|e| fail(LogProblem::Request(e)))?;
                if body.request_digest != request.digest()
                    || body.session != current.session
                    || request.request().session != current.session
                    || body.seq != request.request().seq
                {
                    return Err(fail(LogProblem::Mismatch));
                }
                if body.log_index != index {
                    return Err(fail(LogProblem::WrongIndex(body.log_index)));
                }
                if body.decision.is_shadow() && current.shadow == Some(false) {
                    return Err(fail(LogProblem::UnannouncedShadow));
                }
                match body.decision {
                    Decision::Allow => self.report.allowed += 1,
                    Decision::Deny => self.report.denied += 1,
                    Decision::Ask => self.report.asked += 1,
                    Decision::ShadowDeny => self.report.shadow_denied += 1,
                    Decision::ShadowAsk => self.report.shadow_asked += 1,
                }
            }
            Record::Checkpoint { note } => self.checkpoint(&note, index).map_err(fail)?,
            Record::FrontierCheckpoint {
                note,
                session,
                key,
                frontier,
            } => {
                self.checkpoint(&note, index).map_err(fail)?;
                if self
                    .current
                    .is_none_or(|c| c.session != session || c.key.to_bytes() != key)
                {
                    return Err(fail(LogProblem::CheckpointSession));
                }
                if frontier != self.report.frontier.peaks() {
                    return Err(fail(LogProblem::FrontierMismatch { size: index }));
                }
                self.report.resumable_from = Some(index);
            }
        }
        let leaf = leaf_hash(body);
        self.report.frontier.push(leaf);
        if self.keep_leaves {
            self.report.leaves.push(leaf);
        }
        Ok(())
    }

    fn event(
        &mut self,
        signed: &SignedEvent,
        signatures: &mut Signatures<'_>,
    ) -> Result<(), LogProblem> {
        let declared = match signed.decode_unverified() {
            Ok(Event::SessionStart { public_key, .. }) => Some(public_key),
            Ok(_) => None,
            Err(e) => return Err(LogProblem::Decode(e)),
        };
        let key = match (declared, &self.current) {
            (Some(bytes), _) => public_key_from_bytes(&bytes).map_err(|_| LogProblem::BadKey)?,
            (None, Some(current)) => current.key,
            (None, None) => return Err(LogProblem::NoSession),
        };
        if !signatures.check(&signed.body, &signed.signature, &key) {
            return Err(LogProblem::BadEventSignature);
        }
        match signed.decode_unverified().map_err(LogProblem::Decode)? {
            Event::SessionStart {
                session, origin, ..
            } => {
                if let Some(expected) = self.options.kernel_key
                    && expected != &key
                {
                    return Err(LogProblem::UnexpectedKey(format_public_key(&key)));
                }
                if self.report.origin.is_empty() {
                    self.report.origin = origin;
                } else if self.report.origin != origin {
                    return Err(LogProblem::WrongOrigin(origin));
                }
                self.current = Some(Current {
                    session,
                    key,
                    shadow: Some(false),
                    decided: false,
                });
                self.report.sessions += 1;
            }
            other => {
                let Some(current) = &mut self.current else {
                    return Err(LogProblem::NoSession);
                };
                if other.session() != current.session {
                    return Err(LogProblem::WrongSession);
                }
                if let Event::Shadow { .. } = other {
                    if current.decided {
                        return Err(LogProblem::LateShadow);
                    }
                    if current.shadow != Some(true) {
                        self.report.shadow_sessions += 1;
                    }
                    current.shadow = Some(true);
                }
                self.report.events += 1;
            }
        }
        Ok(())
    }

    /// Checks a checkpoint note at record `index` and records it.
    fn checkpoint(&mut self, text: &str, index: u64) -> Result<(), LogProblem> {
        let current = self.current.as_ref().ok_or(LogProblem::NoSession)?;
        let note = SignedNote::parse(text).map_err(LogProblem::Checkpoint)?;
        note.verify(ENFORCER_KEY_NAME, &current.key)
            .map_err(LogProblem::Checkpoint)?;
        let checkpoint = Checkpoint::parse_body(&note.body).map_err(LogProblem::Checkpoint)?;
        if checkpoint.origin != self.report.origin {
            return Err(LogProblem::WrongOrigin(checkpoint.origin));
        }
        if checkpoint.size != index || checkpoint.root != self.report.frontier.root() {
            return Err(LogProblem::CheckpointMismatch {
                size: checkpoint.size,
            });
        }
        self.report.checkpoints.push((index, checkpoint));
        if self.keep_leaves {
            self.report.newest_note = Some(text.to_owned());
        }
        Ok(())
    }

    /// What [`restore`](Self::restore) needs to undo the records verified
    /// after this call.
    fn mark(&mut self) -> Mark {
        let leaves = std::mem::take(&mut self.report.leaves);
        let checkpoints = std::mem::take(&mut self.report.checkpoints);
        let mark = Mark {
            report: self.report.clone(),
            leaves: leaves.len(),
            checkpoints: checkpoints.len(),
            current: self.current,
        };
        self.report.leaves = leaves;
        self.report.checkpoints = checkpoints;
        mark
    }

    /// Back to the state of `mark`, as if nothing had been verified since.
    fn restore(&mut self, mark: &Mark) {
        let mut leaves = std::mem::take(&mut self.report.leaves);
        let mut checkpoints = std::mem::take(&mut self.report.checkpoints);
        leaves.truncate(mark.leaves);
        checkpoints.truncate(mark.checkpoints);
        self.report = AuditReport {
            leaves,
            checkpoints,
            ..mark.report.clone()
        };
        self.current = mark.current;
    }

    /// The report, with the record counts filled in.
    fn finish(mut self) -> AuditReport {
        let records = self.report.frontier.size();
        self.report.records = records;
        self.report.uncovered = records.saturating_sub(
            self.report
                .checkpoints
                .last()
                .map_or(0, |(index, _)| index.saturating_add(1)),
        );
        self.report
    }
}

/// [`audit`], checking signatures as `signatures` says.
fn audit_with(
    bytes: &[u8],
    options: &AuditOptions<'_>,
    signatures: &mut Signatures<'_>,
) -> Result<AuditReport, LogError> {
    // Whole records are checked first, so a damaged length prefix is
    // reported at the record it belongs to, not at a later one.
    let (records, framing) = split_records_prefix(bytes);
    let mut verifier = Verifier {
        options,
        report: AuditReport::default(),
        current: None,
        keep_leaves: true,
    };
    for body in &records {
        verifier.record(body, signatures)?;
    }
    if let Some(error) = framing {
        return Err(error);
    }
    external_checks(verifier.finish(), options)
}

/// Checks a verified log against what the auditor brought besides it: the
/// trusted checkpoint and the witness's co-signatures.
fn external_checks(
    mut report: AuditReport,
    options: &AuditOptions<'_>,
) -> Result<AuditReport, LogError> {
    if let Some(trusted) = options.trusted {
        check_external(&report, trusted, "trusted", |note| {
            match options.kernel_key {
                Some(key) => note.verify(ENFORCER_KEY_NAME, key),
                None => Ok(()),
            }
            .map_err(LogProblem::Checkpoint)
        })?;
    }
    if let Some(witness) = options.witness {
        if witness.notes.is_empty() {
            return Err(LogError {
                index: report.records,
                problem: LogProblem::Witness(NoteError::MissingSignature(witness.name.to_owned())),
            });
        }
        for note in witness.notes {
            check_external(&report, note, "witnessed", |note| {
                note.verify_cosignature(witness.name, witness.key)
                    .map(|_| ())
                    .map_err(LogProblem::Witness)
            })?;
            report.witnessed += 1;
        }
    }
    Ok(report)
}

/// [`resume`], checking signatures as `signatures` says.
fn resume_with(
    index: u64,
    from: &[u8],
    signatures: &mut Signatures<'_>,
) -> Result<LogTip, ResumeError> {
    let (records, framing) = split_records_prefix(from);
    let elsewhere = || ResumeError::NoCheckpoint(index);
    let Some((first, rest)) = records.split_first() else {
        return Err(elsewhere());
    };
    // A record that is no such checkpoint, a note that does not parse, or
    // one that covers another number of records, says the pointer is
    // wrong (or the note damaged, which a full check then finds): nothing
    // here is to be trusted.
    let Some(start) = FrontierStart::read(first).filter(|start| start.checkpoint.size == index)
    else {
        return Err(elsewhere());
    };
    let options = AuditOptions::default();
    let mut verifier = start.verifier(first, &options, false)?;
    for body in rest {
        verifier.record(body, signatures)?;
    }
    if let Some(mut error) = framing {
        error.index = error.index.saturating_add(index);
        return Err(error.into());
    }
    Ok(verifier.finish().tip())
}

/// A checkpoint record that stores its frontier, read but not yet
/// authenticated: where a log is continued from, or a later segment
/// begins.
struct FrontierStart {
    signed: SignedNote,
    checkpoint: Checkpoint,
    session: SessionId,
    key: [u8; 32],
    frontier: Vec<Hash>,
}

impl FrontierStart {
    /// The checkpoint `record` holds, if it is one that stores its
    /// frontier and its note parses.
    fn read(record: &[u8]) -> Option<Self> {
        let Ok(Record::FrontierCheckpoint {
            note,
            session,
            key,
            frontier,
        }) = decode_record(record)
        else {
            return None;
        };
        let signed = SignedNote::parse(&note).ok()?;
        let checkpoint = Checkpoint::parse_body(&signed.body).ok()?;
        Some(Self {
            signed,
            checkpoint,
            session,
            key,
            frontier,
        })
    }

    /// A verifier that continues the log from this checkpoint, whose
    /// record is `record`, after authenticating it: its note signed by
    /// the key it names (the expected key, if the auditor gave one), its
    /// frontier leading to the note's signed root. `keep_leaves`: keep the
    /// leaf hashes and the newest note, as an audit does.
    fn verifier<'a>(
        self,
        record: &[u8],
        options: &'a AuditOptions<'a>,
        keep_leaves: bool,
    ) -> Result<Verifier<'a>, LogError> {
        let index = self.checkpoint.size;
        let fail = |problem| LogError { index, problem };
        let key = public_key_from_bytes(&self.key).map_err(|_| fail(LogProblem::BadKey))?;
        if let Some(expected) = options.kernel_key
            && expected != &key
        {
            return Err(fail(LogProblem::UnexpectedKey(format_public_key(&key))));
        }
        self.signed
            .verify(ENFORCER_KEY_NAME, &key)
            .map_err(|e| fail(LogProblem::Checkpoint(e)))?;
        let tree = Frontier::from_peaks(index, self.frontier)
            .filter(|tree| tree.root() == self.checkpoint.root)
            .ok_or_else(|| fail(LogProblem::FrontierMismatch { size: index }))?;
        let leaf = leaf_hash(record);
        let mut frontier = tree.clone();
        frontier.push(leaf);
        Ok(Verifier {
            options,
            report: AuditReport {
                origin: self.checkpoint.origin.clone(),
                newest_note: keep_leaves.then(|| self.signed.to_text()),
                first_record: index,
                leaves: if keep_leaves { vec![leaf] } else { Vec::new() },
                base: tree,
                frontier,
                checkpoints: vec![(index, self.checkpoint)],
                resumable_from: Some(index),
                ..AuditReport::default()
            },
            current: Some(Current {
                session: self.session,
                key,
                // Not known from here: what the session announced and
                // decided before the checkpoint is checked by `audit` only.
                shadow: None,
                decided: false,
            }),
            keep_leaves,
        })
    }
}

fn check_external(
    report: &AuditReport,
    note: &SignedNote,
    what: &'static str,
    authenticate: impl Fn(&SignedNote) -> Result<(), LogProblem>,
) -> Result<(), LogError> {
    let at = |index, problem| LogError { index, problem };
    authenticate(note).map_err(|p| at(0, p))?;
    let checkpoint =
        Checkpoint::parse_body(&note.body).map_err(|e| at(0, LogProblem::Checkpoint(e)))?;
    if checkpoint.size > report.records {
        return Err(at(
            report.records,
            LogProblem::Truncated {
                have: report.records,
                want: checkpoint.size,
                what,
            },
        ));
    }
    if checkpoint.origin != report.origin {
        return Err(at(0, LogProblem::WrongOrigin(checkpoint.origin)));
    }
    let Some(root) = report.root_at(checkpoint.size) else {
        return Err(at(
            report.first_record,
            LogProblem::BeforeFirstRecord {
                size: checkpoint.size,
                first: report.first_record,
                what,
            },
        ));
    };
    if root != checkpoint.root {
        return Err(at(
            checkpoint.size.saturating_sub(1),
            LogProblem::Forked {
                size: checkpoint.size,
                what,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use super::*;

    const SESSION: SessionId = SessionId([5; 16]);

    /// A log of one session start and `events - 1` policy loads, more than
    /// two signature batches long.
    fn log(key: &SigningKey, events: usize) -> Vec<Vec<u8>> {
        let start = Event::SessionStart {
            session: SESSION,
            public_key: key.verifying_key().to_bytes(),
            policy_digest: Digest([1; 32]),
            workspace: "/ws".into(),
            confinement: Confinement::Unconfined,
            origin: "test".into(),
            at_ms: 1,
        };
        std::iter::once(start)
            .chain((1..events).map(|i| Event::PolicyLoad {
                session: SESSION,
                policy_digest: Digest([2; 32]),
                by: format!("operator {i}"),
                at_ms: 2,
            }))
            .map(|event| frame_record(&Record::Event(SignedEvent::sign(&event, key))))
            .collect()
    }

    /// Replaces the signature of record `index` with `spoil(signature)`.
    fn spoiled(records: &[Vec<u8>], index: usize, spoil: impl Fn(&mut [u8; 64])) -> Vec<u8> {
        let mut records = records.to_vec();
        let Record::Event(mut signed) = decode_record(&records[index][4..]).unwrap() else {
            unreachable!("only events here")
        };
        spoil(&mut signed.signature);
        records[index] = frame_record(&Record::Event(signed));
        records.concat()
    }

    /// Batched verification finds a bad signature anywhere in a long log,
    /// whichever thread verifies its batch, and the report names exactly
    /// its record, as checking each with `verify_strict` does.
    #[test]
    fn a_bad_signature_is_found_at_its_index_in_any_batch() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let records = log(&key, 8 * SIGNATURE_BATCH + 40);
        assert!(
            records.concat().len() >= PARALLEL_BYTES,
            "long enough to be verified on several threads"
        );
        let report = audit(&records.concat(), &AuditOptions::default()).unwrap();
        assert_eq!(report.events, u64::try_from(records.len() - 1).unwrap());
        for index in [
            1,
            SIGNATURE_BATCH - 1,
            SIGNATURE_BATCH,
            5 * SIGNATURE_BATCH + 7,
            records.len() - 1,
        ] {
            for bit in [0, 255, 256, 511] {
                let bytes = spoiled(&records, index, |s| s[bit / 8] ^= 1 << (bit % 8));
                let error = audit(&bytes, &AuditOptions::default()).unwrap_err();
                assert_eq!(error.index, u64::try_from(index).unwrap(), "bit {bit}");
                assert_eq!(error.problem, LogProblem::BadEventSignature, "bit {bit}");
            }
        }
    }

    /// The malleable twin of a valid signature (S + ℓ), which the batch
    /// equation alone would accept, is refused, as `verify_strict`
    /// refuses it.
    #[test]
    fn a_malleated_signature_is_refused_by_the_batched_audit() {
        const ORDER: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let key = SigningKey::from_bytes(&[9; 32]);
        let records = log(&key, SIGNATURE_BATCH + 3);
        let index = 7;
        let bytes = spoiled(&records, index, |s| {
            let mut carry = 0u16;
            for (byte, l) in s[32..].iter_mut().zip(ORDER) {
                let sum = u16::from(*byte) + u16::from(l) + carry;
                *byte = sum.to_le_bytes()[0];
                carry = sum >> 8;
            }
            assert_eq!(carry, 0, "S + l fits");
        });
        let error = audit(&bytes, &AuditOptions::default()).unwrap_err();
        assert_eq!(error.index, u64::try_from(index).unwrap());
        assert_eq!(error.problem, LogProblem::BadEventSignature);
    }

    /// Writes logs of events and checkpoints (of either kind), as the
    /// enforcer writes them, remembering where each record starts.
    struct Writer {
        bytes: Vec<u8>,
        offsets: Vec<usize>,
        tree: Frontier,
        origin: String,
        session: SessionId,
        key: SigningKey,
    }

    impl Writer {
        fn new() -> Self {
            Self {
                bytes: Vec::new(),
                offsets: Vec::new(),
                tree: Frontier::new(),
                origin: "test-origin".into(),
                session: SESSION,
                key: SigningKey::from_bytes(&[1; 32]),
            }
        }

        fn push(&mut self, record: &Record) {
            let bytes = encode_record(record);
            self.offsets.push(self.bytes.len());
            self.tree.push(leaf_hash(&bytes));
            self.bytes.extend(frame_record_bytes(&bytes));
        }

        fn start(&mut self, seed: u8) {
            self.key = SigningKey::from_bytes(&[seed; 32]);
            self.session = SessionId([seed; 16]);
            let event = Event::SessionStart {
                session: self.session,
                public_key: self.key.verifying_key().to_bytes(),
                policy_digest: Digest([1; 32]),
                workspace: "/ws".into(),
                confinement: Confinement::Unconfined,
                origin: self.origin.clone(),
                at_ms: 1,
            };
            self.push(&Record::Event(SignedEvent::sign(&event, &self.key)));
        }

        fn event(&mut self) {
            let event = Event::PolicyLoad {
                session: self.session,
                policy_digest: Digest([2; 32]),
                by: format!("operator {}", self.offsets.len()),
                at_ms: 2,
            };
            self.push(&Record::Event(SignedEvent::sign(&event, &self.key)));
        }

        fn checkpoint(&mut self, with_frontier: bool) -> u64 {
            let index = self.tree.size();
            let checkpoint = Checkpoint {
                origin: self.origin.clone(),
                size: index,
                root: self.tree.root(),
            };
            let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &self.key).to_text();
            let record = if with_frontier {
                Record::FrontierCheckpoint {
                    note,
                    session: self.session,
                    key: self.key.verifying_key().to_bytes(),
                    frontier: self.tree.peaks().to_vec(),
                }
            } else {
                Record::Checkpoint { note }
            };
            self.push(&record);
            index
        }

        fn shadow(&mut self) {
            let event = Event::Shadow {
                session: self.session,
                at_ms: 2,
            };
            self.push(&Record::Event(SignedEvent::sign(&event, &self.key)));
        }

        /// A decision record of `decision` on a file read, at its own
        /// index.
        fn decision(&mut self, decision: Decision) {
            use crate::receipt::{ReceiptBody, sign_receipt};
            let seq = self.tree.size();
            let Ok(action) = crate::CanonicalAction::new(crate::Action::file_read("/ws/a"), None)
            else {
                panic!("a plain file read is canonical")
            };
            let request = EncodedRequest::new(crate::Request {
                session: self.session,
                seq,
                nonce: [1; 16],
                action,
                deadline_ms: 10,
            });
            let body = ReceiptBody {
                session: self.session,
                seq,
                request_digest: request.digest(),
                decision,
                policies: Vec::new(),
                reasons: Vec::new(),
                policy_digest: Digest([1; 32]),
                log_index: self.tree.size(),
                issued_at_ms: 3,
                expires_at_ms: 4,
            };
            self.push(&Record::Decision {
                request: request.bytes().to_vec(),
                receipt: sign_receipt(&self.key, &body),
            });
        }

        fn from(&self, index: u64) -> &[u8] {
            &self.bytes[self.offsets[usize::try_from(index).unwrap()]..]
        }

        fn records(&self) -> Vec<Vec<u8>> {
            split_records(&self.bytes)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        }
    }

    /// What a generated log is made of.
    #[derive(Clone, Debug)]
    enum Step {
        Session,
        Events(u8),
        Checkpoint { with_frontier: bool },
    }

    fn write(steps: &[Step]) -> (Writer, Vec<u64>) {
        let mut writer = Writer::new();
        writer.start(1);
        let mut resumable = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Session => writer.start(u8::try_from(i % 200).unwrap() + 2),
                Step::Events(n) => (0..*n).for_each(|_| writer.event()),
                Step::Checkpoint { with_frontier } => {
                    let index = writer.checkpoint(*with_frontier);
                    if *with_frontier {
                        resumable.push(index);
                    }
                }
            }
        }
        (writer, resumable)
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            1 => Just(Step::Session),
            4 => (1u8..6).prop_map(Step::Events),
            3 => any::<bool>().prop_map(|with_frontier| Step::Checkpoint { with_frontier }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// From every checkpoint that stores its frontier, resuming gives
        /// what the full audit gives: origin, tree, newest checkpoint,
        /// records after it, newest resumable checkpoint.
        #[test]
        fn resuming_from_any_frontier_checkpoint_equals_the_full_audit(
            steps in proptest::collection::vec(step(), 0..30),
        ) {
            let (writer, resumable) = write(&steps);
            let full = audit(&writer.bytes, &AuditOptions::default()).unwrap().tip();
            proptest::prop_assert_eq!(full.resumable_from, resumable.last().copied());
            for index in resumable {
                let resumed = resume(index, writer.from(index)).unwrap();
                proptest::prop_assert_eq!(&resumed, &full);
            }
        }
    }

    /// A log written for the tamper tests: two sessions, a frontier
    /// checkpoint, then a third session and records after it.
    fn tail_log() -> (Writer, u64) {
        let mut writer = Writer::new();
        writer.start(1);
        (0..6).for_each(|_| writer.event());
        writer.checkpoint(false);
        writer.start(2);
        (0..5).for_each(|_| writer.event());
        let index = writer.checkpoint(true);
        (0..3).for_each(|_| writer.event());
        writer.start(3);
        (0..3).for_each(|_| writer.event());
        (writer, index)
    }

    fn damaged(result: Result<LogTip, ResumeError>) -> LogError {
        match result {
            Err(ResumeError::Damaged(error)) => error,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    /// Records after the checkpoint are verified as strictly as by the
    /// full audit: a flipped signature bit, a removed record and two
    /// swapped records are each refused, at the record the full audit
    /// names, with the same fault.
    #[test]
    fn tampering_after_the_checkpoint_is_found_as_the_full_audit_finds_it() {
        let (mut writer, index) = tail_log();
        writer.checkpoint(true);
        let records = writer.records();
        let start = usize::try_from(index).unwrap();
        let frame = |records: &[Vec<u8>]| -> Vec<u8> {
            records.iter().flat_map(|r| frame_record_bytes(r)).collect()
        };
        assert!(resume(index, &frame(&records[start..])).is_ok());
        let mut tampered = Vec::new();
        for at in start + 1..records.len() - 1 {
            let mut flipped = records.clone();
            let Record::Event(mut signed) = decode_record(&flipped[at]).unwrap() else {
                unreachable!("events only between the checkpoints")
            };
            signed.signature[3] ^= 0x10;
            flipped[at] = encode_record(&Record::Event(signed));
            tampered.push((format!("signature of {at} flipped"), flipped));
            let mut fewer = records.clone();
            fewer.remove(at);
            tampered.push((format!("{at} removed"), fewer));
            let mut reordered = records.clone();
            reordered.swap(at, at + 1);
            tampered.push((format!("{at} and {} swapped", at + 1), reordered));
        }
        for (what, records) in tampered {
            let expected = audit(&frame(&records), &AuditOptions::default()).unwrap_err();
            let error = damaged(resume(index, &frame(&records[start..])));
            assert_eq!(error, expected, "{what}");
            assert!(error.index > index, "{what}: {error}");
        }
    }

    /// A stored frontier that is not the tree's is refused by both: by
    /// `resume` because it does not lead to the signed root, by `audit`
    /// because it differs from the tree it computed. So are a wrong number
    /// of peaks, and another session or key than the note's signer.
    #[test]
    fn a_checkpoint_with_a_wrong_frontier_session_or_key_is_refused() {
        let (writer, index) = tail_log();
        let records = writer.records();
        let at = usize::try_from(index).unwrap();
        let Record::FrontierCheckpoint {
            note,
            session,
            key,
            frontier,
        } = decode_record(&records[at]).unwrap()
        else {
            unreachable!("a frontier checkpoint")
        };
        let with = |session: SessionId, key: [u8; 32], frontier: Vec<Hash>| {
            let mut records = records.clone();
            records[at] = encode_record(&Record::FrontierCheckpoint {
                note: note.clone(),
                session,
                key,
                frontier,
            });
            let bytes: Vec<u8> = records.iter().flat_map(|r| frame_record_bytes(r)).collect();
            let from = bytes[writer.offsets[at]..].to_vec();
            (
                audit(&bytes, &AuditOptions::default()),
                resume(index, &from),
            )
        };
        let mut flipped = frontier.clone();
        flipped[0][7] ^= 1;
        let mut fewer = frontier.clone();
        fewer.pop();
        let mut more = frontier.clone();
        more.push([0; 32]);
        for wrong in [flipped, fewer, more] {
            let (full, resumed) = with(session, key, wrong);
            let expected = LogError {
                index,
                problem: LogProblem::FrontierMismatch { size: index },
            };
            assert_eq!(full.unwrap_err(), expected);
            assert_eq!(damaged(resumed), expected);
        }
        // Another session id: the full audit refuses it at once; resuming
        // refuses at the first record after the checkpoint that names its
        // session.
        let (full, resumed) = with(SessionId([9; 16]), key, frontier.clone());
        assert_eq!(full.unwrap_err().problem, LogProblem::CheckpointSession);
        assert_eq!(damaged(resumed).problem, LogProblem::WrongSession);
        // Another key: its note signature does not verify under it.
        let other = SigningKey::from_bytes(&[42; 32]).verifying_key().to_bytes();
        let (full, resumed) = with(session, other, frontier);
        assert_eq!(full.unwrap_err().problem, LogProblem::CheckpointSession);
        let error = damaged(resumed);
        assert_eq!(error.index, index);
        assert!(
            matches!(error.problem, LogProblem::Checkpoint(_)),
            "{error}"
        );
    }

    /// Resuming trusts the records before the checkpoint: damage there is
    /// not found by it (by design: nothing before the checkpoint is read),
    /// and is found by the full audit.
    #[test]
    fn damage_before_the_checkpoint_is_found_by_the_audit_only() {
        let (writer, index) = tail_log();
        let mut bytes = writer.bytes.clone();
        let at = writer.offsets[3] + 10;
        bytes[at] ^= 0x04;
        assert_eq!(
            audit(&bytes, &AuditOptions::default()).unwrap_err().index,
            3
        );
        let from = &bytes[writer.offsets[usize::try_from(index).unwrap()]..];
        assert_eq!(
            resume(index, from).unwrap(),
            audit(&writer.bytes, &AuditOptions::default())
                .unwrap()
                .tip()
        );
    }

    /// Anything but a frontier checkpoint covering exactly the records
    /// before the given index says the pointer is wrong, not the log.
    #[test]
    fn a_wrong_pointer_is_told_apart_from_damage() {
        let (writer, index) = tail_log();
        let old_style = 7;
        for (at, claimed) in [
            (index, index + 1),
            (index, index - 1),
            (index + 1, index + 1),
            (old_style, old_style),
            (0, 0),
        ] {
            let from = writer.from(at);
            assert_eq!(
                resume(claimed, from),
                Err(ResumeError::NoCheckpoint(claimed)),
                "{at}"
            );
        }
        let offset = writer.offsets[usize::try_from(index).unwrap()];
        for cut in [
            &writer.bytes[offset + 1..],
            &writer.bytes[..0],
            &writer.bytes[offset..offset + 9],
        ] {
            assert_eq!(resume(index, cut), Err(ResumeError::NoCheckpoint(index)));
        }
        // A torn record after the checkpoint is reported at its index.
        let torn = &writer.bytes[offset..writer.bytes.len() - 3];
        let error = damaged(resume(index, torn));
        assert_eq!(
            error.index,
            u64::try_from(writer.offsets.len() - 1).unwrap()
        );
        assert!(matches!(error.problem, LogProblem::Torn(_)), "{error}");
    }

    /// `strict_r` accepts exactly the `R` that decompressing, checking the
    /// order and compressing again accept: on every non-canonical encoding,
    /// on every encoding of a small-order point, on the `R` of real
    /// signatures and on arbitrary bytes.
    #[test]
    fn the_cheap_check_of_r_is_the_strict_one() {
        let reference = |r: &[u8; 32]| {
            let compressed = CompressedEdwardsY(*r);
            compressed
                .decompress()
                .is_some_and(|p| !p.is_small_order() && p.compress() == compressed)
        };
        let cheap = |r: &[u8; 32]| strict_r(r) && CompressedEdwardsY(*r).decompress().is_some();
        let mut cases: Vec<[u8; 32]> = Vec::new();
        // y = p + k for k < 19, the only non-canonical y, with either sign;
        // and y = p - 1 - k, the largest canonical ones.
        for k in 0u8..19 {
            for sign in [0, 0x80] {
                let mut y = [0xff; 32];
                y[0] = 0xed + k;
                y[31] = 0x7f | sign;
                cases.push(y);
                let mut below = [0xff; 32];
                below[0] = 0xec - k;
                below[31] = 0x7f | sign;
                cases.push(below);
            }
        }
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            let bytes = point.compress().to_bytes();
            for sign in [0, 0x80] {
                let mut r = bytes;
                r[31] ^= sign;
                cases.push(r);
            }
        }
        for i in 0..2000u32 {
            let key = SigningKey::from_bytes(&[u8::try_from(i % 251).unwrap(); 32]);
            let signature = key.sign(&i.to_le_bytes());
            cases.push(*signature.r_bytes());
            let mut arbitrary = [0u8; 32];
            arbitrary.copy_from_slice(&crate::merkle::leaf_hash(&i.to_le_bytes()));
            cases.push(arbitrary);
        }
        let small = small_order_encodings();
        assert_eq!(small.len(), 10, "eight points, two of them with x = 0");
        for r in &cases {
            assert_eq!(cheap(r), reference(r), "{}", crate::hex(r));
        }
        assert!(cases.iter().filter(|r| reference(r)).count() > 2000);
    }

    /// A hostile checkpoint claiming the largest possible tree (its own
    /// key, 64 peaks folding to its own root) does not make `resume`
    /// panic.
    #[test]
    fn a_checkpoint_of_the_largest_tree_does_not_panic() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let peaks: Vec<Hash> = (0u8..64).map(|i| [i; 32]).collect();
        let tree = Frontier::from_peaks(u64::MAX, peaks.clone()).unwrap();
        let checkpoint = Checkpoint {
            origin: "o".into(),
            size: u64::MAX,
            root: tree.root(),
        };
        let record = Record::FrontierCheckpoint {
            note: SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &key).to_text(),
            session: SESSION,
            key: key.verifying_key().to_bytes(),
            frontier: peaks,
        };
        let tip = resume(u64::MAX, &frame_record(&record)).unwrap();
        assert_eq!(tip.frontier.size(), u64::MAX);
    }

    /// A record signed with another key than its session's is refused at
    /// its index.
    #[test]
    fn a_record_signed_by_another_key_is_refused() {
        let key = SigningKey::from_bytes(&[10; 32]);
        let other = SigningKey::from_bytes(&[11; 32]);
        let mut records = log(&key, 300);
        records[280] = log(&other, 300)[280].clone();
        let error = audit(&records.concat(), &AuditOptions::default()).unwrap_err();
        assert_eq!(error.index, 280);
        assert_eq!(error.problem, LogProblem::BadEventSignature);
    }

    /// A session that announced shadow mode may let denied actions
    /// proceed, and the report counts them; the same decisions in a
    /// session that did not announce it, or after its first decision, are
    /// faults at their record.
    #[test]
    fn shadow_decisions_only_in_a_session_that_announced_shadow_mode() {
        let mut writer = Writer::new();
        writer.start(1);
        writer.shadow();
        writer.decision(Decision::Allow);
        writer.decision(Decision::ShadowDeny);
        writer.decision(Decision::ShadowAsk);
        writer.decision(Decision::ShadowDeny);
        writer.decision(Decision::Deny);
        writer.start(2);
        writer.decision(Decision::Allow);
        let report = audit(&writer.bytes, &AuditOptions::default()).unwrap();
        assert_eq!(
            (
                report.allowed,
                report.denied,
                report.shadow_denied,
                report.shadow_asked,
                report.shadow_sessions,
                report.shadowed()
            ),
            (2, 1, 2, 1, 1, 3)
        );

        // The second session did not announce it.
        writer.decision(Decision::ShadowDeny);
        let error = audit(&writer.bytes, &AuditOptions::default()).unwrap_err();
        assert_eq!(error.index, 9);
        assert_eq!(error.problem, LogProblem::UnannouncedShadow);

        // Announced too late.
        let mut late = Writer::new();
        late.start(1);
        late.decision(Decision::Deny);
        late.shadow();
        let error = audit(&late.bytes, &AuditOptions::default()).unwrap_err();
        assert_eq!(error.index, 2);
        assert_eq!(error.problem, LogProblem::LateShadow);

        // A log that starts its check at a checkpoint inside a shadow
        // session cannot know the announcement, and does not refuse.
        let mut resumed = Writer::new();
        resumed.start(1);
        resumed.shadow();
        let index = resumed.checkpoint(true);
        resumed.decision(Decision::ShadowDeny);
        assert!(resume(index, resumed.from(index)).is_ok());
    }

    /// The log of `writer` cut into segments just before each record of
    /// `cuts` (indexes of checkpoints that store their frontier).
    fn segments(writer: &Writer, cuts: &[u64]) -> Vec<Vec<u8>> {
        let mut starts: Vec<usize> = vec![0];
        starts.extend(
            cuts.iter()
                .map(|&c| writer.offsets[usize::try_from(c).unwrap()]),
        );
        starts.push(writer.bytes.len());
        starts.dedup();
        starts
            .windows(2)
            .map(|w| writer.bytes[w[0]..w[1]].to_vec())
            .collect()
    }

    fn audit_segments(
        segments: &[Vec<u8>],
        options: &AuditOptions<'_>,
    ) -> Result<(AuditReport, Vec<SegmentSpan>), SegmentError> {
        let mut audit = SegmentedAudit::new(options);
        for segment in segments {
            audit.push(segment)?;
        }
        let spans = audit.spans();
        Ok((audit.finish()?, spans))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// A log cut into segments at any of its checkpoints that store
        /// their frontier verifies, segment by segment, exactly as the
        /// whole file does; and from any later segment on, the report
        /// says where the verification began and what it found matches
        /// the whole log's end.
        #[test]
        fn segments_verify_as_the_whole_log(
            steps in proptest::collection::vec(step(), 0..30),
            pick in proptest::collection::vec(proptest::prelude::any::<bool>(), 30),
        ) {
            let (writer, resumable) = write(&steps);
            let cuts: Vec<u64> = resumable
                .iter()
                .zip(&pick)
                .filter_map(|(&c, &p)| p.then_some(c))
                .collect();
            let parts = segments(&writer, &cuts);
            let whole = audit(&writer.bytes, &AuditOptions::default()).unwrap();
            let (report, spans) = audit_segments(&parts, &AuditOptions::default()).unwrap();
            proptest::prop_assert_eq!(&report, &whole);
            proptest::prop_assert_eq!(spans.len(), parts.len());
            proptest::prop_assert_eq!(spans.last().map_or(0, SegmentSpan::end), whole.records);
            for pair in spans.windows(2) {
                proptest::prop_assert_eq!(pair[0].end(), pair[1].first);
            }
            for (i, span) in spans.iter().enumerate().skip(1) {
                let (partial, _) = audit_segments(&parts[i..], &AuditOptions::default()).unwrap();
                proptest::prop_assert_eq!(partial.first_record, span.first);
                proptest::prop_assert!(!partial.is_complete());
                proptest::prop_assert_eq!(partial.tip(), whole.tip());
                for size in 0..=whole.records {
                    let expected = (size >= span.first).then(|| whole.root_at(size).unwrap());
                    proptest::prop_assert_eq!(partial.root_at(size), expected);
                }
            }
            for size in 0..=whole.records {
                let leaves = &whole.leaves[..usize::try_from(size).unwrap()];
                proptest::prop_assert_eq!(whole.root_at(size), Some(crate::merkle::root(leaves)));
            }
        }
    }

    /// A log of four segments, each beginning with a checkpoint that
    /// stores its frontier.
    fn four_segments() -> Vec<Vec<u8>> {
        let mut writer = Writer::new();
        writer.start(1);
        let mut cuts = Vec::new();
        for seed in 2..5 {
            (0..3).for_each(|_| writer.decision(Decision::Allow));
            cuts.push(writer.checkpoint(true));
            writer.event();
            writer.start(seed);
        }
        writer.decision(Decision::Deny);
        segments(&writer, &cuts)
    }

    /// What the order of `segments`' heads says, and what verifying them
    /// finds (which must be a fault).
    fn refused(segments: &[&Vec<u8>]) -> (Result<(), SegmentError>, SegmentError) {
        let owned: Vec<Vec<u8>> = segments.iter().map(|s| (*s).clone()).collect();
        let heads: Vec<SegmentHead> = owned
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| SegmentHead::read(split_records(s).unwrap()[0]).unwrap())
            .collect();
        let order = segment_order(&heads);
        let error = audit_segments(&owned, &AuditOptions::default()).unwrap_err();
        (order, error)
    }

    /// A segment left out, two given in the wrong order, one given twice,
    /// one from another log and one from a fork of the same log are each
    /// refused, naming the segment at fault and what is wrong with it.
    #[test]
    fn a_missing_reordered_repeated_foreign_or_forked_segment_is_named() {
        let parts = four_segments();
        let [a, b, c, d] = [&parts[0], &parts[1], &parts[2], &parts[3]];
        let (report, spans) = audit_segments(&parts, &AuditOptions::default()).unwrap();
        assert!(report.is_complete());
        assert_eq!(spans.len(), 4);

        // Left out: the order of the heads is fine, the verification
        // finds the gap.
        let (order, error) = refused(&[a, c, d]);
        assert_eq!(order, Ok(()));
        assert_eq!(error.segment, 1);
        assert_eq!(
            error.problem,
            SegmentProblem::Missing {
                expected: spans[1].first,
                begins: spans[2].first
            }
        );
        assert!(error.to_string().contains("missing"), "{error}");

        // Out of order: the heads name the segment given too late; the
        // verification alone, one segment at a time, sees a gap first.
        let (order, error) = refused(&[a, c, b, d]);
        let order = order.unwrap_err();
        assert_eq!(order.segment, 2);
        assert!(
            matches!(order.problem, SegmentProblem::OutOfOrder { earlier: 1, .. }),
            "{order}"
        );
        assert!(order.to_string().contains("out of order"), "{order}");
        assert!(
            matches!(error.problem, SegmentProblem::Missing { .. }),
            "{error}"
        );
        assert_eq!(error.segment, 1);
        let (order, error) = refused(&[a, b, d, c]);
        assert_eq!(order.unwrap_err().segment, 3);
        assert_eq!(error.segment, 2);

        for (order, error) in [refused(&[a, b, b, c, d]), refused(&[a, b, c, d, b])] {
            let order = order.unwrap_err();
            assert!(
                matches!(order.problem, SegmentProblem::Duplicate { earlier: 1, .. }),
                "{order}"
            );
            assert!(
                matches!(error.problem, SegmentProblem::Duplicate { earlier: 1, .. }),
                "{error}"
            );
            assert_eq!(order.segment, error.segment);
        }

        // The first segment of another log, put in place of the second.
        let mut other = Writer::new();
        other.origin = "another-origin".into();
        other.start(9);
        (0..3).for_each(|_| other.decision(Decision::Allow));
        let cut = other.checkpoint(true);
        other.event();
        let theirs = segments(&other, &[cut]);
        let (order, error) = refused(&[a, &theirs[1], c, d]);
        for error in [order.unwrap_err(), error] {
            assert_eq!(error.segment, 1);
            assert!(
                matches!(&error.problem, SegmentProblem::Foreign { found, .. } if found == "another-origin"),
                "{error}"
            );
        }

        // The same log continued differently after its first segment.
        let mut fork = Writer::new();
        fork.start(1);
        (0..3).for_each(|_| fork.decision(Decision::Deny));
        let cut = fork.checkpoint(true);
        fork.event();
        let forked = segments(&fork, &[cut]);
        assert_eq!(forked[0].len(), a.len(), "same length, other records");
        let (order, error) = refused(&[a, &forked[1]]);
        assert_eq!(order, Ok(()));
        assert_eq!(error.segment, 1);
        assert_eq!(
            error.problem,
            SegmentProblem::Fork {
                begins: spans[1].first
            }
        );
        let (order, _) = refused(&[a, b, &forked[1]]);
        assert_eq!(
            order.unwrap_err().problem,
            SegmentProblem::Fork {
                begins: spans[1].first
            }
        );

        // A segment that begins with anything else.
        let (_, error) = refused(&[a, &b[..0].to_vec()]);
        assert_eq!(error.problem, SegmentProblem::Empty);
        let mut starts_late = b.clone();
        let first = split_records(b).unwrap()[0].len() + 4;
        starts_late.drain(..first);
        let error =
            audit_segments(&[a.clone(), starts_late], &AuditOptions::default()).unwrap_err();
        assert_eq!((error.segment, error.problem), (1, SegmentProblem::NoStart));
    }

    /// A record changed inside a segment is named by its index in the
    /// whole log; the newest segment alone is verified from its first
    /// checkpoint, and with the enforcer's key given, that checkpoint
    /// must be signed by it.
    #[test]
    fn damage_in_a_segment_is_found_at_its_index_in_the_log() {
        let parts = four_segments();
        let (_, spans) = audit_segments(&parts, &AuditOptions::default()).unwrap();
        let mut damaged = parts.clone();
        let at = damaged[2].len() - 20;
        damaged[2][at] ^= 0x01;
        let error = audit_segments(&damaged, &AuditOptions::default()).unwrap_err();
        assert_eq!(error.segment, 2);
        assert_eq!(error.record().unwrap().index, spans[2].end() - 1);
        let mut torn = parts.clone();
        let keep = torn[1].len() - 3;
        torn[1].truncate(keep);
        let error = audit_segments(&torn, &AuditOptions::default()).unwrap_err();
        assert_eq!(error.segment, 1);
        assert!(matches!(
            error.record().unwrap().problem,
            LogProblem::Torn(_)
        ));

        // A log whose first record is no session start, nor a
        // checkpoint: found as `audit` finds it.
        let mut headless = parts[0].clone();
        let first = split_records(&headless).unwrap()[0].len() + 4;
        headless.drain(..first);
        let expected = audit(&headless, &AuditOptions::default()).unwrap_err();
        let error = audit_segments(&[headless], &AuditOptions::default()).unwrap_err();
        assert_eq!(error.segment, 0);
        assert_eq!(error.record(), Some(&expected));

        let newest = &parts[3..];
        let (report, _) = audit_segments(newest, &AuditOptions::default()).unwrap();
        assert_eq!(report.first_record, spans[3].first);
        // The newest segment begins in the third session (key seed 3),
        // whose checkpoint is checked against the expected key as a
        // session start is; the fourth session starts two records later.
        for (seed, at) in [(5, spans[3].first), (3, spans[3].first + 2)] {
            let expected = SigningKey::from_bytes(&[seed; 32]).verifying_key();
            let options = AuditOptions {
                kernel_key: Some(&expected),
                ..AuditOptions::default()
            };
            let error = audit_segments(newest, &options).unwrap_err();
            let record = error.record().unwrap();
            assert_eq!(record.index, at, "{error}");
            assert!(matches!(record.problem, LogProblem::UnexpectedKey(_)));
        }
    }
}
