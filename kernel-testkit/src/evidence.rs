//! The evidence read back, record by record, without checking signatures
//! (the tests that read it audit it separately).

use kernel_core::{
    Action, AuditOptions, Decision, EncodedRequest, Event, ReceiptBody, Record, VerifyingKey,
    decode_receipt_body_unverified, decode_record, split_records, split_records_prefix,
};
use std::path::Path;

/// One decoded evidence record.
#[derive(Debug)]
pub enum Entry {
    /// A signed event: a session start, a halt, a policy load, an
    /// approval...
    Event(Event),
    /// A decision: the request and its receipt's body.
    Decision {
        /// The request as the client sent it.
        request: Box<EncodedRequest>,
        /// What the enforcer decided and signed.
        body: ReceiptBody,
    },
    /// A checkpoint (of either form).
    Checkpoint,
}

impl Entry {
    /// The event, if this is one.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Self::Event(event) => Some(event),
            _ => None,
        }
    }

    /// The decision, if this is one.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Self::Decision { body, .. } => Some(body.decision),
            _ => None,
        }
    }

    /// The cause of a halt, if this records one.
    pub fn halt_cause(&self) -> Option<&str> {
        match self {
            Self::Event(Event::Halt { cause, .. }) => Some(cause),
            _ => None,
        }
    }
}

fn entry(record: &[u8]) -> Entry {
    match decode_record(record).expect("a record that decodes") {
        Record::Event(e) => Entry::Event(e.decode_unverified().expect("an event that decodes")),
        Record::Decision { request, receipt } => Entry::Decision {
            request: Box::new(EncodedRequest::decode(&request).expect("a request that decodes")),
            body: decode_receipt_body_unverified(&receipt.body).expect("a receipt that decodes"),
        },
        Record::Checkpoint { .. } | Record::FrontierCheckpoint { .. } => Entry::Checkpoint,
    }
}

/// Every record of a whole log, decoded; fails the test on a torn or
/// damaged one.
pub fn entries(bytes: &[u8]) -> Vec<Entry> {
    split_records(bytes)
        .expect("a log of whole records")
        .into_iter()
        .map(entry)
        .collect()
}

/// Every whole record of the log at `path`, decoded, in order: while an
/// enforcer is still writing, the record it is in the middle of is left
/// out. Empty when there is no log yet.
pub fn log(path: &Path) -> Vec<Entry> {
    let bytes = std::fs::read(path).unwrap_or_default();
    split_records_prefix(&bytes)
        .0
        .into_iter()
        .map(entry)
        .collect()
}

/// The path of a `file_read` request (fails the test on any other kind).
pub fn read_path(request: &EncodedRequest) -> &str {
    match request.request().action.action() {
        Action::FileRead { path } => path,
        other => panic!("only reads are asked for, the log has {other:?}"),
    }
}

/// Audit options that pin the enforcer's `key`.
pub fn pinned(key: &VerifyingKey) -> AuditOptions<'_> {
    AuditOptions {
        kernel_key: Some(key),
        ..AuditOptions::default()
    }
}
