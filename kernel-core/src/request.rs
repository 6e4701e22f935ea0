//! Requests: what the client asks the enforcer to decide.

use crate::action::CanonicalAction;
use crate::digest::{Digest, hex};
use crate::encoding::{DecodeError, REQUEST_TAG, decode, encode};
use crate::limits::MAX_FRAME_BYTES;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A session id: 16 random bytes chosen by the enforcer at the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", hex(&self.0))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// One request for a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The session this request belongs to.
    pub session: SessionId,
    /// The client's sequence number, strictly increasing within a session.
    pub seq: u64,
    /// Fresh randomness, so no two requests share a digest.
    pub nonce: [u8; 16],
    /// The action, in canonical form.
    pub action: CanonicalAction,
    /// Milliseconds since the Unix epoch after which the request must not
    /// be allowed.
    pub deadline_ms: u64,
}

/// A request together with its one encoding and that encoding's digest.
///
/// Built by [`EncodedRequest::new`] (client) or [`EncodedRequest::decode`]
/// (enforcer, auditor); either way the digest is of the exact bytes sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest {
    request: Request,
    bytes: Vec<u8>,
    digest: Digest,
}

impl EncodedRequest {
    /// Encodes `request`.
    pub fn new(request: Request) -> Self {
        let bytes = encode(REQUEST_TAG, &request);
        let digest = Digest::of_content(&bytes);
        Self {
            request,
            bytes,
            digest,
        }
    }

    /// Decodes request bytes strictly (tag, size, no trailing bytes,
    /// canonical encoding, canonical action).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request: Request = decode(REQUEST_TAG, bytes, MAX_FRAME_BYTES)?;
        Ok(Self {
            request,
            bytes: bytes.to_vec(),
            digest: Digest::of_content(bytes),
        })
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The encoded bytes (they begin with the request tag).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of [`bytes`](Self::bytes): what receipts bind to.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}
