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
    /// A signed checkpoint (C2SP signed note) of the records before it.
    Checkpoint {
        /// The note text.
        note: String,
    },
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
}

impl Event {
    /// The session this event belongs to.
    pub fn session(&self) -> SessionId {
        match self {
            Self::SessionStart { session, .. }
            | Self::PolicyLoad { session, .. }
            | Self::Approval { session, .. }
            | Self::EvidenceWindow { session, .. }
            | Self::Halt { session, .. } => *session,
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
    /// Other events (policy loads, approvals, halts).
    pub events: u64,
    /// Checkpoints, by position.
    pub checkpoints: Vec<(u64, Checkpoint)>,
    /// Records after the newest checkpoint (covered only by their own
    /// signatures, not yet by a checkpoint).
    pub uncovered: u64,
    /// Leaf hashes of every record, for proofs.
    pub leaves: Vec<Hash>,
    /// Witness co-signatures checked.
    pub witnessed: u64,
}

impl AuditReport {
    /// The newest checkpoint, if any.
    pub fn newest_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.last().map(|(_, c)| c)
    }
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

struct Current {
    session: SessionId,
    key: VerifyingKey,
}

/// Verifies an evidence file with public keys only: every record decodes
/// and is authenticated (receipt, event signature or checkpoint note),
/// every receipt binds the stored request and names its own position,
/// every checkpoint is signed by its session's key and matches the tree of
/// the records before it, and, when given, the log extends the trusted
/// checkpoint and matches every witness co-signature. Returns the first
/// fault, with its record index.
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

/// Runs `run` with signatures deferred and verified in batches on every
/// available core (threads only when `parallel`); if anything fails, runs
/// it again checking each signature at once, for the exact first fault.
fn fast_then_exact<T, E>(
    parallel: bool,
    run: impl Fn(&mut Signatures<'_>) -> Result<T, E>,
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

/// How [`audit_with`] checks signatures.
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

/// [`audit`], checking signatures as `signatures` says.
fn audit_with(
    bytes: &[u8],
    options: &AuditOptions<'_>,
    signatures: &mut Signatures<'_>,
) -> Result<AuditReport, LogError> {
    // Whole records are checked first, so a damaged length prefix is
    // reported at the record it belongs to, not at a later one.
    let (records, framing) = split_records_prefix(bytes);
    let mut report = AuditReport::default();
    let mut frontier = Frontier::new();
    let mut current: Option<Current> = None;
    for (position, body) in records.iter().enumerate() {
        let index = u64::try_from(position).unwrap_or(u64::MAX);
        let fail = |problem| LogError { index, problem };
        let record = decode_record(body).map_err(|e| fail(LogProblem::Decode(e)))?;
        match record {
            Record::Event(signed) => {
                let declared = match signed.decode_unverified() {
                    Ok(Event::SessionStart { public_key, .. }) => Some(public_key),
                    Ok(_) => None,
                    Err(e) => return Err(fail(LogProblem::Decode(e))),
                };
                let key = match (declared, &current) {
                    (Some(bytes), _) => {
                        public_key_from_bytes(&bytes).map_err(|_| fail(LogProblem::BadKey))?
                    }
                    (None, Some(current)) => current.key,
                    (None, None) => return Err(fail(LogProblem::NoSession)),
                };
                if !signatures.check(&signed.body, &signed.signature, &key) {
                    return Err(fail(LogProblem::BadEventSignature));
                }
                let event = signed
                    .decode_unverified()
                    .map_err(|e| fail(LogProblem::Decode(e)))?;
                match event {
                    Event::SessionStart {
                        session, origin, ..
                    } => {
                        if let Some(expected) = options.kernel_key
                            && expected != &key
                        {
                            return Err(fail(LogProblem::UnexpectedKey(format_public_key(&key))));
                        }
                        if report.origin.is_empty() {
                            report.origin = origin;
                        } else if report.origin != origin {
                            return Err(fail(LogProblem::WrongOrigin(origin)));
                        }
                        current = Some(Current { session, key });
                        report.sessions += 1;
                    }
                    other => {
                        let Some(current) = &current else {
                            return Err(fail(LogProblem::NoSession));
                        };
                        if other.session() != current.session {
                            return Err(fail(LogProblem::WrongSession));
                        }
                        report.events += 1;
                    }
                }
            }
            Record::Decision { request, receipt } => {
                let current = current
                    .as_ref()
                    .ok_or_else(|| fail(LogProblem::NoSession))?;
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
                match body.decision {
                    Decision::Allow => report.allowed += 1,
                    Decision::Deny => report.denied += 1,
                    Decision::Ask => report.asked += 1,
                }
            }
            Record::Checkpoint { note } => {
                let current = current
                    .as_ref()
                    .ok_or_else(|| fail(LogProblem::NoSession))?;
                let note = SignedNote::parse(&note).map_err(|e| fail(LogProblem::Checkpoint(e)))?;
                note.verify(ENFORCER_KEY_NAME, &current.key)
                    .map_err(|e| fail(LogProblem::Checkpoint(e)))?;
                let checkpoint = Checkpoint::parse_body(&note.body)
                    .map_err(|e| fail(LogProblem::Checkpoint(e)))?;
                if checkpoint.origin != report.origin {
                    return Err(fail(LogProblem::WrongOrigin(checkpoint.origin)));
                }
                if checkpoint.size != index || checkpoint.root != frontier.root() {
                    return Err(fail(LogProblem::CheckpointMismatch {
                        size: checkpoint.size,
                    }));
                }
                report.checkpoints.push((index, checkpoint));
            }
        }
        let leaf = leaf_hash(body);
        frontier.push(leaf);
        report.leaves.push(leaf);
    }
    if let Some(error) = framing {
        return Err(error);
    }
    report.records = u64::try_from(records.len()).unwrap_or(u64::MAX);
    report.uncovered = report.records - report.checkpoints.last().map_or(0, |(index, _)| index + 1);
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
    let prefix = report
        .leaves
        .get(..usize::try_from(checkpoint.size).unwrap_or(usize::MAX))
        .unwrap_or_default();
    if crate::merkle::root(prefix) != checkpoint.root {
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
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
}
