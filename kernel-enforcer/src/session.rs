//! One client session: the frame handler and the serve loop.
//!
//! [`Session::handle_frame`] takes any bytes and returns the reply frame;
//! it never panics on input (a panic inside it is caught by
//! [`Session::handle`] and halts the session). A decision's record is
//! durable in the evidence file before its receipt is returned.

use crate::evidence::EvidenceLog;
use crate::policy::PolicyEngine;
use ed25519_dalek::SigningKey;
use kernel_core::note::{Checkpoint, ENFORCER_KEY_NAME, SignedNote};
use kernel_core::{
    ClientFrame, Confinement, Deadline, DecisionInputs, EncodedRequest, EnforcerFrame, Event,
    Handshake, KernelState, LimitState, PROTOCOL_VERSION, ReceiptBody, Record, Refusal, SessionId,
    SignedEvent, decide, decode_client_frame, encode_enforcer_frame, limits::MAX_FRAME_BYTES,
    origin_for, sign_receipt,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default validity of an allow receipt.
pub const DEFAULT_PERMIT_TTL: Duration = Duration::from_secs(30);
/// Default number of records between two checkpoints.
pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
/// Default longest time a record waits for a checkpoint.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            confinement: Confinement::Unconfined,
            permit_ttl: DEFAULT_PERMIT_TTL,
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
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
    halted: Option<String>,
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
        Ok(Self {
            id,
            key,
            policy,
            evidence,
            config,
            last_checkpoint: Instant::now(),
            greeted: false,
            last_seq: None,
            halted: None,
        })
    }

    /// Signs and appends a checkpoint of every record so far.
    fn checkpoint(&mut self) {
        let checkpoint = Checkpoint {
            origin: self.evidence.origin().unwrap_or_default().to_owned(),
            size: self.evidence.next_index(),
            root: self.evidence.root(),
        };
        let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &self.key);
        self.last_checkpoint = Instant::now();
        self.evidence.stage(&Record::Checkpoint {
            note: note.to_text(),
        });
    }

    fn checkpoint_due(&self) -> bool {
        let pending = self.evidence.since_checkpoint();
        pending >= self.config.checkpoint_records.max(1)
            || (pending > 0 && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
    }

    /// Writes a checkpoint if one is due by time. Call when idle.
    pub fn tick(&mut self) {
        if self.halted.is_none() && self.checkpoint_due() {
            self.checkpoint();
            self.commit_or_halt();
        }
    }

    /// Writes a final checkpoint if any record is not yet covered. Call at
    /// shutdown.
    pub fn finish(&mut self) {
        if self.halted.is_none() && self.evidence.since_checkpoint() > 0 {
            self.checkpoint();
            self.commit_or_halt();
        }
    }

    fn commit_or_halt(&mut self) {
        if let Err(e) = self.evidence.commit() {
            self.halted = Some(format!("cannot record evidence: {e}"));
        }
    }

    /// The evidence log.
    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Why the session halted, if it did.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Handles one frame (see [`handle_batch`](Self::handle_batch)).
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        self.handle_batch(std::slice::from_ref(&frame))
            .pop()
            .unwrap_or_default()
    }

    /// Handles frames that arrived together and returns one encoded reply
    /// per frame, in order. Total: any input gets a reply. Every record
    /// the batch produced is made durable with one `fdatasync` before any
    /// reply is returned (group commit); if that fails, the session halts
    /// and every receipt of the batch is withheld and replaced by a
    /// `halted` refusal. A panic while handling a frame halts the session
    /// (sticky) and refuses that frame.
    pub fn handle_batch<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Vec<Vec<u8>> {
        let mut replies: Vec<EnforcerFrame> = frames
            .iter()
            .map(
                |frame| match catch_unwind(AssertUnwindSafe(|| self.reply_to(frame.as_ref()))) {
                    Ok(reply) => reply,
                    Err(_) => {
                        self.halted = Some("internal panic while handling a frame".into());
                        Self::refused(None, Refusal::Halted)
                    }
                },
            )
            .collect();
        if let Err(e) = self.evidence.commit() {
            self.halted = Some(format!("cannot record evidence: {e}"));
            for reply in &mut replies {
                if let EnforcerFrame::Receipt { seq, .. } = reply {
                    *reply = Self::refused(Some(*seq), Refusal::Halted);
                }
            }
        }
        replies.iter().map(encode_enforcer_frame).collect()
    }

    /// Handles one frame without catching panics or committing: what the
    /// fuzzer drives. Production code uses [`handle`](Self::handle).
    pub fn handle_frame(&mut self, frame: &[u8]) -> Vec<u8> {
        let reply = self.reply_to(frame);
        encode_enforcer_frame(&reply)
    }

    fn refused(seq: Option<u64>, refusal: Refusal) -> EnforcerFrame {
        EnforcerFrame::Refused { seq, refusal }
    }

    fn reply_to(&mut self, frame: &[u8]) -> EnforcerFrame {
        if frame.len() > MAX_FRAME_BYTES {
            return Self::refused(
                None,
                Refusal::Oversize {
                    size: u64::try_from(frame.len()).unwrap_or(u64::MAX),
                    limit: u64::try_from(MAX_FRAME_BYTES).unwrap_or(u64::MAX),
                },
            );
        }
        let frame = match decode_client_frame(frame) {
            Ok(frame) => frame,
            Err(e) => return Self::refused(None, Refusal::Malformed(e.to_string())),
        };
        match frame {
            ClientFrame::Hello {
                protocol,
                challenge,
            } => self.hello(protocol, &challenge),
            ClientFrame::Authorize { request } => self.authorize(&request),
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
        let handshake = Handshake {
            protocol: PROTOCOL_VERSION,
            session: self.id,
            enforcer_key: self.key.verifying_key().to_bytes(),
            policy_digest: self.policy.digest(),
            workspace: self.policy.environment().workspace().to_owned(),
            confinement: self.config.confinement,
            permit_ttl_ms: u64::try_from(self.config.permit_ttl.as_millis()).unwrap_or(u64::MAX),
        };
        let signature = handshake.sign(&self.key, challenge);
        EnforcerFrame::Hello {
            handshake,
            signature,
        }
    }

    fn authorize(&mut self, bytes: &[u8]) -> EnforcerFrame {
        if !self.greeted {
            return Self::refused(None, Refusal::OutOfOrder("request before hello".into()));
        }
        let encoded = match EncodedRequest::decode(bytes) {
            Ok(encoded) => encoded,
            Err(e) => return Self::refused(None, Refusal::Malformed(e.to_string())),
        };
        let request = encoded.request();
        let seq = request.seq;
        if request.session != self.id {
            return Self::refused(Some(seq), Refusal::WrongSession);
        }
        if self.last_seq.is_some_and(|last| seq <= last) {
            return Self::refused(Some(seq), Refusal::Replayed(seq));
        }
        self.last_seq = Some(seq);
        if self.halted.is_some() {
            return Self::refused(Some(seq), Refusal::Halted);
        }
        let now = now_ms();
        let verdict = decide(&DecisionInputs {
            kernel: KernelState::Serving,
            deadline: if now > request.deadline_ms {
                Deadline::Passed
            } else {
                Deadline::Open
            },
            evaluation: self.policy.evaluate(&request.action),
            limits: LimitState::Within,
        });
        let ttl = u64::try_from(self.config.permit_ttl.as_millis()).unwrap_or(u64::MAX);
        let body = ReceiptBody {
            session: self.id,
            seq,
            request_digest: encoded.digest(),
            decision: verdict.decision,
            policies: verdict.policies,
            reasons: verdict.reasons,
            policy_digest: self.policy.digest(),
            log_index: self.evidence.next_index(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(ttl),
        };
        let receipt = sign_receipt(&self.key, &body);
        // Staged here, durable before the batch's replies leave
        // (`handle_batch`), or the receipt is withheld.
        self.evidence.stage(&Record::Decision {
            request: encoded.bytes().to_vec(),
            receipt: receipt.clone(),
        });
        if self.checkpoint_due() {
            self.checkpoint();
        }
        EnforcerFrame::Receipt { seq, receipt }
    }
}
