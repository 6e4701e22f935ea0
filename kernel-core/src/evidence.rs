//! Evidence records and their verification by an outsider.
//!
//! The evidence file is a sequence of records, each framed as a 4-byte
//! big-endian length followed by `RECORD_TAG || postcard(Record)`. A
//! session starts with a [`Record::SessionStart`] that names the enforcer's
//! public key; every decision follows as a [`Record::Decision`] holding the
//! exact request bytes and the signed receipt, whose `log_index` is the
//! record's position in the file. [`verify_log`] checks all of it with
//! public keys only.

use crate::decision::Decision;
use crate::digest::Digest;
use crate::encoding::{DecodeError, RECORD_TAG, decode, encode};
use crate::keys::public_key_from_bytes;
use crate::limits::MAX_FRAME_BYTES;
use crate::protocol::Confinement;
use crate::receipt::{SignedReceipt, VerifyError, verify_receipt_signature};
use crate::request::{EncodedRequest, SessionId};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// Largest encoded record, in bytes.
pub const MAX_RECORD_BYTES: usize = 2 * MAX_FRAME_BYTES;

/// One evidence record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// An enforcer session began.
    SessionStart {
        /// The session id.
        session: SessionId,
        /// The enforcer's public key for this session.
        public_key: [u8; 32],
        /// Digest of the policy set in force.
        policy_digest: Digest,
        /// The workspace root.
        workspace: String,
        /// Confinement in force.
        confinement: Confinement,
        /// Start time, ms since the Unix epoch.
        started_at_ms: u64,
    },
    /// A decision: the exact request bytes and the signed receipt.
    Decision {
        /// `EncodedRequest::bytes`.
        request: Vec<u8>,
        /// The receipt sent back.
        receipt: SignedReceipt,
    },
}

/// Encodes `record` with its length prefix, ready to append.
pub fn frame_record(record: &Record) -> Vec<u8> {
    let body = encode(RECORD_TAG, record);
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes one record's bytes (without the length prefix).
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode(RECORD_TAG, bytes, MAX_RECORD_BYTES)
}

/// What is wrong with an evidence file, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record {index}: {problem}")]
pub struct LogError {
    /// Index of the first record at fault.
    pub index: u64,
    /// What is wrong.
    pub problem: LogProblem,
}

/// The kinds of fault [`verify_log`] finds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogProblem {
    /// The file ends inside a record.
    #[error("file ends inside a record ({0} bytes left over)")]
    Torn(usize),
    /// A record does not decode.
    #[error("record does not decode: {0}")]
    Decode(DecodeError),
    /// A decision appears before any session start.
    #[error("decision before any session start")]
    NoSession,
    /// The session's key is not the expected one.
    #[error("session key {0} is not the expected enforcer key")]
    UnexpectedKey(String),
    /// The session's key is not a usable ed25519 key.
    #[error("session key is not a valid ed25519 key")]
    BadKey,
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
}

/// Counts from a sound evidence file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSummary {
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
}

/// Splits an evidence file into record bodies. A trailing partial record
/// is reported as [`LogProblem::Torn`].
pub fn split_records(bytes: &[u8]) -> Result<Vec<&[u8]>, LogError> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let torn = |left: usize| LogError {
            index,
            problem: LogProblem::Torn(left),
        };
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| torn(rest.len()))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len > MAX_RECORD_BYTES {
            return Err(LogError {
                index,
                problem: LogProblem::Decode(DecodeError::Oversize {
                    size: len,
                    limit: MAX_RECORD_BYTES,
                }),
            });
        }
        let (body, after) = after
            .split_at_checked(len)
            .ok_or_else(|| torn(rest.len()))?;
        records.push(body);
        rest = after;
    }
    Ok(records)
}

/// Verifies an evidence file with public keys only: every record decodes,
/// every decision's receipt verifies under its session's key, binds the
/// stored request bytes and names its own position. When `expected_key` is
/// given, every session must use it.
pub fn verify_log(
    bytes: &[u8],
    expected_key: Option<&VerifyingKey>,
) -> Result<LogSummary, LogError> {
    let mut summary = LogSummary::default();
    let mut session: Option<(SessionId, VerifyingKey)> = None;
    for (position, body) in split_records(bytes)?.into_iter().enumerate() {
        let index = u64::try_from(position).unwrap_or(u64::MAX);
        let fail = |problem| LogError { index, problem };
        match decode_record(body).map_err(|e| fail(LogProblem::Decode(e)))? {
            Record::SessionStart {
                session: id,
                public_key,
                ..
            } => {
                let key =
                    public_key_from_bytes(&public_key).map_err(|_| fail(LogProblem::BadKey))?;
                if let Some(expected) = expected_key
                    && expected != &key
                {
                    return Err(fail(LogProblem::UnexpectedKey(
                        crate::keys::format_public_key(&key),
                    )));
                }
                session = Some((id, key));
                summary.sessions += 1;
            }
            Record::Decision { request, receipt } => {
                let (id, key) = session
                    .as_ref()
                    .ok_or_else(|| fail(LogProblem::NoSession))?;
                let verified = verify_receipt_signature(&receipt, key)
                    .map_err(|e| fail(LogProblem::Receipt(e)))?;
                let request =
                    EncodedRequest::decode(&request).map_err(|e| fail(LogProblem::Request(e)))?;
                let body = verified.body();
                if body.request_digest != request.digest()
                    || body.session != *id
                    || request.request().session != *id
                    || body.seq != request.request().seq
                {
                    return Err(fail(LogProblem::Mismatch));
                }
                if body.log_index != index {
                    return Err(fail(LogProblem::WrongIndex(body.log_index)));
                }
                match body.decision {
                    Decision::Allow => summary.allowed += 1,
                    Decision::Deny => summary.denied += 1,
                    Decision::Ask => summary.asked += 1,
                }
            }
        }
        summary.records += 1;
    }
    Ok(summary)
}
