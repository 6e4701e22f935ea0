//! Versioned, domain-separated postcard encodings.
//!
//! Every encoded object starts with a fixed tag that names its kind and
//! version (for example `agent-kernel/request/v1\n`). Decoding refuses a
//! wrong or unknown tag, input over the size limit, trailing bytes, and any
//! encoding that is not the canonical one (decode-then-encode must give the
//! same bytes back), so one value has exactly one byte form and one digest.

use serde::{Serialize, de::DeserializeOwned};

/// Tag of an encoded [`Request`](crate::Request).
pub const REQUEST_TAG: &[u8] = b"agent-kernel/request/v1\n";
/// Tag of the signed body of a receipt ([`ReceiptBody`](crate::ReceiptBody)).
pub const RECEIPT_TAG: &[u8] = b"agent-kernel/receipt/v1\n";
/// Tag of a frame sent by the client.
pub const CLIENT_FRAME_TAG: &[u8] = b"agent-kernel/client-frame/v1\n";
/// Tag of a frame sent by the enforcer.
pub const ENFORCER_FRAME_TAG: &[u8] = b"agent-kernel/enforcer-frame/v1\n";
/// Tag of an evidence record.
pub const RECORD_TAG: &[u8] = b"agent-kernel/record/v1\n";
/// Tag of a signed evidence event.
pub const EVENT_TAG: &[u8] = b"agent-kernel/event/v1\n";

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the limit for its kind.
    #[error("input of {size} bytes is over the {limit}-byte limit")]
    Oversize {
        /// Size of the input.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The input does not start with the expected kind and version tag.
    #[error("unknown kind or version tag: expected `{expected}`")]
    WrongTag {
        /// The tag that was expected, as text.
        expected: String,
    },
    /// The body is not a valid encoding of the expected type.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Bytes remain after a complete value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// The value decoded, but its canonical encoding differs from the input.
    #[error("encoding is not canonical")]
    NotCanonical,
}

/// Encodes `value` as `tag || postcard(value)`.
pub(crate) fn encode<T: Serialize>(tag: &[u8], value: &T) -> Vec<u8> {
    let out = tag.to_vec();
    // postcard's serializer is infallible for the kernel's types (no maps
    // with non-string keys, no unsized sequences), and an error would leave
    // a tag-only buffer that every decoder refuses: fail closed either way.
    match postcard::to_extend(value, out) {
        Ok(bytes) => bytes,
        Err(_) => tag.to_vec(),
    }
}

/// Decodes `tag || postcard(T)` strictly: size limit, tag, no trailing
/// bytes, canonical form.
pub(crate) fn decode<T: Serialize + DeserializeOwned>(
    tag: &[u8],
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    let body = strip_tag(tag, bytes, limit)?;
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    if encode(tag, &value) != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

/// Checks size and tag and returns the body after the tag.
pub(crate) fn strip_tag<'a>(
    tag: &[u8],
    bytes: &'a [u8],
    limit: usize,
) -> Result<&'a [u8], DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversize {
            size: bytes.len(),
            limit,
        });
    }
    bytes
        .strip_prefix(tag)
        .ok_or_else(|| DecodeError::WrongTag {
            expected: String::from_utf8_lossy(tag).trim_end().to_owned(),
        })
}

/// Serde helpers for 64-byte signatures (postcard has no 64-element arrays).
pub(crate) mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes = <Vec<u8>>::deserialize(d)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))
    }
}
