//! Signed receipts and the only way to obtain a [`Permit`].
//!
//! The enforcer signs a [`ReceiptBody`] with `sign_receipt` (behind the
//! `signing` feature, which only the enforcer enables). The signed
//! message is the exact body bytes (which start with the receipt tag and
//! version); the verifier checks the signature with `verify_strict` over
//! the bytes it received and only then decodes them. [`verify_receipt`]
//! additionally checks every field against the request the client sent, and
//! only for an `Allow` that passes every check does a [`Permit`] exist.

use crate::action::CanonicalAction;
use crate::decision::Decision;
use crate::digest::Digest;
#[cfg(feature = "signing")]
use crate::encoding::encode;
use crate::encoding::{DecodeError, RECEIPT_TAG, decode};
use crate::limits::{MAX_FRAME_BYTES, MAX_RECEIPT_ENTRIES, MAX_RECEIPT_TEXT_BYTES};
use crate::request::{EncodedRequest, SessionId};
use ed25519_dalek::{Signature, VerifyingKey};
#[cfg(feature = "signing")]
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// What a receipt says. Signed as `RECEIPT_TAG || postcard(body)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The session of the request.
    pub session: SessionId,
    /// The request's sequence number.
    pub seq: u64,
    /// SHA-256 of the request's encoded bytes.
    pub request_digest: Digest,
    /// The decision.
    pub decision: Decision,
    /// Ids of the determining policies.
    pub policies: Vec<String>,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
    /// Digest of the policy set the decision was made under.
    pub policy_digest: Digest,
    /// Index of the evidence record holding this decision.
    pub log_index: u64,
    /// When the receipt was issued, in ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// After this instant (ms since the Unix epoch) the receipt grants
    /// nothing.
    pub expires_at_ms: u64,
}

/// A receipt as it travels: the signed body bytes and the signature. Not
/// trusted until verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// `RECEIPT_TAG || postcard(ReceiptBody)`.
    pub body: Vec<u8>,
    /// ed25519 signature over `body`.
    #[serde(with = "crate::encoding::signature_bytes")]
    pub signature: [u8; 64],
}

/// Signs `body` with the enforcer's key. Only with the `signing` feature.
#[cfg(feature = "signing")]
pub fn sign_receipt(key: &SigningKey, body: &ReceiptBody) -> SignedReceipt {
    let bytes = encode(RECEIPT_TAG, body);
    let signature = key.sign(&bytes).to_bytes();
    SignedReceipt {
        body: bytes,
        signature,
    }
}

/// Why a receipt was refused. Every variant means: no permit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature does not verify under the expected key.
    #[error("receipt signature does not verify under the enforcer's key")]
    BadSignature,
    /// The signed bytes are not a receipt of a known version.
    #[error("receipt body does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The receipt carries more policy ids or reasons, or longer ones, than
    /// the documented limits.
    #[error("receipt carries more or longer entries than allowed")]
    TooManyEntries,
    /// The receipt is for another session.
    #[error("receipt is for another session")]
    WrongSession,
    /// The receipt answers another request of this session.
    #[error("receipt answers request {got}, not {expected}")]
    WrongSequence {
        /// The sequence number of the request sent.
        expected: u64,
        /// The sequence number in the receipt.
        got: u64,
    },
    /// The receipt's request digest is not the digest of the request sent.
    #[error("receipt is for a different request")]
    WrongRequest,
    /// The receipt names another policy set than the pinned one.
    #[error("receipt names policy set {got}, not the pinned {expected}")]
    WrongPolicy {
        /// Announced at the handshake.
        expected: Digest,
        /// In the receipt.
        got: Digest,
    },
    /// The receipt expired before it was verified or used.
    #[error("receipt expired")]
    Expired,
    /// The receipt claims to be issued in the future, or expires before it
    /// was issued.
    #[error("receipt times are inconsistent")]
    BadTimes,
    /// The receipt is a decision of shadow mode (the policy did not allow
    /// the action, and it would proceed anyway), but the session did not
    /// announce shadow mode in its handshake.
    #[error(
        "receipt lets a denied action proceed under shadow mode, which the session did not announce"
    )]
    UnannouncedShadow,
}

/// A receipt whose signature verified. Only [`verify_receipt_signature`]
/// and [`verify_receipt`] make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceipt {
    body: ReceiptBody,
    signed: SignedReceipt,
}

impl VerifiedReceipt {
    /// The verified body.
    pub fn body(&self) -> &ReceiptBody {
        &self.body
    }

    /// The signed form, for evidence.
    pub fn signed(&self) -> &SignedReceipt {
        &self.signed
    }
}

/// Checks the signature with `verify_strict` over the received bytes, then
/// decodes them and checks the documented size limits. Used by auditors;
/// clients use [`verify_receipt`].
pub fn verify_receipt_signature(
    receipt: &SignedReceipt,
    key: &VerifyingKey,
) -> Result<VerifiedReceipt, VerifyError> {
    let signature = Signature::from_bytes(&receipt.signature);
    key.verify_strict(&receipt.body, &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(VerifiedReceipt {
        body: decode_receipt_body_checked(&receipt.body)?,
        signed: receipt.clone(),
    })
}

/// Decodes a receipt body and checks the documented size limits, without
/// looking at the signature: the second half of
/// [`verify_receipt_signature`], for the auditor, which checks the
/// signatures of a whole log together (`evidence::audit`) and trusts
/// nothing it decoded unless they all verify.
pub(crate) fn decode_receipt_body_checked(bytes: &[u8]) -> Result<ReceiptBody, VerifyError> {
    let body: ReceiptBody = decode(RECEIPT_TAG, bytes, MAX_FRAME_BYTES)?;
    let too_many = body.policies.len() > MAX_RECEIPT_ENTRIES
        || body.reasons.len() > MAX_RECEIPT_ENTRIES
        || body
            .policies
            .iter()
            .chain(&body.reasons)
            .any(|text| text.len() > MAX_RECEIPT_TEXT_BYTES);
    if too_many {
        return Err(VerifyError::TooManyEntries);
    }
    Ok(body)
}

/// Decodes a receipt body **without** checking its signature: for display
/// tools only. Anything that trusts a receipt must use
/// [`verify_receipt_signature`] or [`verify_receipt`].
pub fn decode_receipt_body_unverified(bytes: &[u8]) -> Result<ReceiptBody, DecodeError> {
    decode(RECEIPT_TAG, bytes, MAX_FRAME_BYTES)
}

/// What the client expects a receipt to match.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The enforcer's key, from the handshake (and the pin, if any).
    pub key: &'a VerifyingKey,
    /// The request that was sent.
    pub request: &'a EncodedRequest,
    /// A policy digest the receipt must name, if the client pins one. The
    /// enforcer's policy can be reloaded by its operator, so clients do not
    /// pin it by default; the digest stays in the receipt and the evidence.
    pub policy_digest: Option<&'a Digest>,
    /// The current time, in ms since the Unix epoch.
    pub now_ms: u64,
    /// Whether the session announced shadow mode in its signed handshake
    /// ([`Handshake::shadow`](crate::Handshake::shadow)). Only then does a
    /// receipt with a decision of shadow mode
    /// ([`Decision::ShadowDeny`], [`Decision::ShadowAsk`]) become a
    /// [`Permit`], one that says so ([`Permit::is_shadow`]); otherwise it
    /// is refused ([`VerifyError::UnannouncedShadow`]).
    pub shadow: bool,
}

/// The outcome of verifying a receipt against its request.
#[derive(Debug)]
pub enum Verified {
    /// The action may proceed: here is its permit.
    Permit(Permit),
    /// The enforcer denied the action (authentically).
    Denied(VerifiedReceipt),
    /// The enforcer wants an operator's approval first (authentically).
    Ask(VerifiedReceipt),
}

/// Largest clock difference tolerated between "issued at" and the
/// verifier's clock, in ms. Client and enforcer share one machine's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;

/// Verifies `receipt` as the answer to `expected.request`: signature
/// (`verify_strict`, over the received bytes), then session, sequence
/// number, request digest, the pinned policy digest if any, and validity
/// times. Only an `Allow` that passes all of them becomes a [`Permit`],
/// and, in a session that announced shadow mode, a decision of shadow mode
/// ([`Permit::is_shadow`] then says so).
pub fn verify_receipt(
    receipt: &SignedReceipt,
    expected: &Expectation<'_>,
) -> Result<Verified, VerifyError> {
    let verified = verify_receipt_signature(receipt, expected.key)?;
    let body = &verified.body;
    let request = expected.request.request();
    if body.session != request.session {
        return Err(VerifyError::WrongSession);
    }
    if body.seq != request.seq {
        return Err(VerifyError::WrongSequence {
            expected: request.seq,
            got: body.seq,
        });
    }
    if body.request_digest != expected.request.digest() {
        return Err(VerifyError::WrongRequest);
    }
    if let Some(pinned) = expected.policy_digest
        && body.policy_digest != *pinned
    {
        return Err(VerifyError::WrongPolicy {
            expected: *pinned,
            got: body.policy_digest,
        });
    }
    if body.expires_at_ms < body.issued_at_ms
        || body.issued_at_ms > expected.now_ms.saturating_add(MAX_CLOCK_SKEW_MS)
    {
        return Err(VerifyError::BadTimes);
    }
    if expected.now_ms > body.expires_at_ms {
        return Err(VerifyError::Expired);
    }
    if body.decision.is_shadow() && !expected.shadow {
        return Err(VerifyError::UnannouncedShadow);
    }
    Ok(match body.decision {
        Decision::Allow | Decision::ShadowDeny | Decision::ShadowAsk => Verified::Permit(Permit {
            action: request.action.clone(),
            request_digest: body.request_digest,
            session: body.session,
            seq: body.seq,
            expires_at_ms: body.expires_at_ms,
            decision: body.decision,
            receipt: verified,
        }),
        Decision::Deny => Verified::Denied(verified),
        Decision::Ask => Verified::Ask(verified),
    })
}

/// Permission to perform exactly one canonical action, once, before it
/// expires.
///
/// A permit of shadow mode ([`is_shadow`](Self::is_shadow)) is one the
/// policy did not grant: the enforcer's operator lets every action proceed
/// to learn what the agent does, and its receipt says so with a decision
/// of its own ([`Decision::ShadowDeny`], [`Decision::ShadowAsk`]), which a
/// verifier of the receipt sees as well.
///
/// There is no public constructor, no `Clone`, no `Default` and no
/// `Deserialize`: the only way to get one is [`verify_receipt`] on an
/// authentic `Allow` receipt for the request that carries this action.
/// Effects that use a permit take it by value.
#[derive(Debug)]
pub struct Permit {
    action: CanonicalAction,
    request_digest: Digest,
    session: SessionId,
    seq: u64,
    expires_at_ms: u64,
    decision: Decision,
    receipt: VerifiedReceipt,
}

impl Permit {
    /// The receipt's decision: `Allow`, or a decision of shadow mode.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Whether the policy did not allow this action and it proceeds only
    /// because the session runs in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.decision.is_shadow()
    }

    /// The one action this permit allows.
    pub fn action(&self) -> &CanonicalAction {
        &self.action
    }

    /// Digest of the request that was allowed.
    pub fn request_digest(&self) -> Digest {
        self.request_digest
    }

    /// The session that issued it.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The request's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Expiry, in ms since the Unix epoch.
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// Whether the permit has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at_ms
    }

    /// The verified receipt behind the permit.
    pub fn receipt(&self) -> &VerifiedReceipt {
        &self.receipt
    }
}
