//! The pure, shared core of the agent safety kernel.
//!
//! Both the client (inside the agent) and the enforcer (a separate process)
//! depend on this crate, and so can an outside auditor. It does no I/O and
//! contains no `unsafe` code; the one function that reads anything besides
//! its arguments is [`now_ms`], the wall clock, which nothing in the crate
//! calls (checks take the time as an argument). It provides:
//!
//! - the typed [`Action`] model and its [`CanonicalAction`] form, which is
//!   what every decision is made on;
//! - [`Request`]s and their one strict encoding ([`EncodedRequest`]);
//! - the fail-closed decision combinator [`decide`], the only place where
//!   `Allow` is produced;
//! - signed receipts, and [`verify_receipt`], the only way to obtain a
//!   [`Permit`] (see *Signing* below);
//! - the frames of the client–enforcer protocol;
//! - evidence records, RFC 6962 Merkle proofs ([`merkle`]), signed
//!   checkpoints ([`note`]) and [`audit`], for auditors holding public keys
//!   only.
//!
//! What it refuses: relative paths without a working directory, NUL bytes,
//! empty programs, bare program names, unparsable URLs, JSON that is not
//! [strict](json::parse_strict) (duplicate keys, keys differing only in
//! letter case, U+0000), fields over the limits in [`limits`]; bytes with
//! a wrong tag or version, trailing bytes, oversize input and non-canonical encodings; receipts
//! with a bad signature, or for another session, request or policy set, or
//! expired.
//!
//! # Signing
//!
//! This crate verifies by default and signs only with its `signing`
//! feature, which the enforcer enables (and the test harnesses that play
//! an enforcer). Without it there is no `SigningKey`, `sign_receipt`,
//! `sign_control_reply`, `Handshake::sign`, `SignedEvent::sign`,
//! `SignedNote::sign` or `SignedNote::cosign`: a client or an auditor
//! that depends on this crate can check receipts, handshakes, control
//! answers, evidence and checkpoints, and has no function that makes one.
//! `kernel-client`, the crate an agent links, does not enable it. (An
//! agent's code could still sign with a key of its own through
//! `ed25519-dalek`; what stops that is the check of the signer:
//! [`verify_receipt`] accepts only the enforcer's key, announced at the
//! handshake, which the client may pin.)
//!
//! ```
//! use kernel_core::{Action, CanonicalAction};
//!
//! let action = CanonicalAction::new(Action::file_read("src/../Cargo.toml"), Some("/srv/app"))?;
//! assert_eq!(action.action(), &Action::file_read("/srv/app/Cargo.toml"));
//! # Ok::<(), kernel_core::ActionError>(())
//! ```
#![forbid(unsafe_code)]

mod action;
mod clock;
mod decision;
mod digest;
mod encoding;
mod evidence;
pub mod json;
mod keys;
pub mod limits;
pub mod merkle;
pub mod note;
mod protocol;
mod receipt;
mod request;

pub use action::{
    Action, ActionError, ActionKind, CanonicalAction, DESCRIPTOR_WRITE_SIZE, Exec, McpPeer,
    WriteMode, canonical_host, canonical_path,
};
pub use clock::now_ms;
pub use decision::{
    Approval, Deadline, Decision, DecisionInputs, EnforcerState, Evaluation, LimitState,
    MatchedForbid, MatchedPermit, REASON_DEADLINE, REASON_DEFAULT_DENY, REASON_HALTED, Verdict,
    decide,
};
pub use digest::{Digest, hex, unhex};
pub use encoding::{
    CLIENT_FRAME_TAG, DecodeError, ENFORCER_FRAME_TAG, EVENT_TAG, RECEIPT_TAG, RECORD_TAG,
    REQUEST_TAG,
};
pub use evidence::{
    AuditOptions, AuditReport, Event, LogError, LogProblem, LogTip, MAX_RECORD_BYTES, Record,
    ResumeError, SegmentError, SegmentHead, SegmentProblem, SegmentSpan, SegmentedAudit,
    SignedEvent, WitnessCheck, audit, decode_record, encode_record, frame_record,
    frame_record_bytes, origin_for, resume, segment_order, split_records, split_records_prefix,
};
#[cfg(feature = "signing")]
pub use keys::SigningKey;
pub use keys::{
    PUBLIC_KEY_PREFIX, PublicKeyError, VerifyingKey, format_public_key, parse_public_key,
    public_key_from_bytes,
};
#[cfg(feature = "signing")]
pub use protocol::sign_control_reply;
pub use protocol::{
    CHANNEL_ENV, CONTROL_REPLY_TAG, ClientFrame, Confinement, ControlReplySignatureError,
    EnforcerFrame, HANDSHAKE_TAG, Handshake, HandshakeSignatureError, Outcome, PROTOCOL_VERSION,
    Refusal, decode_client_frame, decode_enforcer_frame, encode_client_frame,
    encode_enforcer_frame, verify_control_reply,
};
#[cfg(feature = "signing")]
pub use receipt::sign_receipt;
pub use receipt::{
    Expectation, MAX_CLOCK_SKEW_MS, Permit, ReceiptBody, SignedReceipt, Verified, VerifiedReceipt,
    VerifyError, decode_receipt_body_unverified, verify_receipt, verify_receipt_signature,
};
pub use request::{EncodedRequest, Request, SessionId};
