//! Public keys in the text form the kernel prints and reads.

use crate::digest::{hex, unhex};
#[cfg(feature = "signing")]
pub use ed25519_dalek::SigningKey;
pub use ed25519_dalek::VerifyingKey;

/// Prefix of the text form of a public key.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// Why a public key could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The text is not `ed25519:` followed by 64 hex digits.
    #[error("public key must be `ed25519:` followed by 64 hex digits")]
    Format,
    /// The bytes are not a valid or usable ed25519 point.
    #[error("public key is not a valid ed25519 key")]
    Invalid,
}

/// The text form: `ed25519:` and 64 lowercase hex digits.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", hex(key.as_bytes()))
}

/// Reads the text form (surrounding whitespace allowed). Refuses invalid
/// points and weak (small-order) keys.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, PublicKeyError> {
    let digits = text
        .trim()
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or(PublicKeyError::Format)?;
    let bytes: [u8; 32] = unhex(digits)
        .and_then(|b| b.try_into().ok())
        .ok_or(PublicKeyError::Format)?;
    public_key_from_bytes(&bytes)
}

/// A public key from its 32 bytes. Refuses invalid points and weak keys.
pub fn public_key_from_bytes(bytes: &[u8; 32]) -> Result<VerifyingKey, PublicKeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| PublicKeyError::Invalid)?;
    if key.is_weak() {
        return Err(PublicKeyError::Invalid);
    }
    Ok(key)
}
