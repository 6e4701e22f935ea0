//! Checkpoints in the C2SP `tlog-checkpoint` format, signed as C2SP
//! `signed-note`s, and witness co-signatures in the `tlog-cosignature`
//! (`cosignature/v1`) format.
//!
//! A checkpoint body is three lines: the log's origin, the tree size in
//! decimal, and the root hash in base64. A signed note is the body, a
//! blank line, and one line per signature: `— <name> <base64(key id ||
//! signature)>`. The key id is the first four bytes of
//! `SHA-256(name || "\n" || type || public key)`, with type `0x01` for an
//! ed25519 note signature and `0x04` for a co-signature, whose signed
//! message is `cosignature/v1\ntime <t>\n` followed by the body and whose
//! signature value is `key id || t (8 bytes, big endian) || signature`.

use crate::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
#[cfg(feature = "signing")]
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest as _, Sha256};

/// Key name the enforcer signs checkpoints with.
pub const ENFORCER_KEY_NAME: &str = "agent-kernel-enforcer";
/// Largest signed note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
const SIGNATURE_PREFIX: &str = "\u{2014} ";
const ED25519_TYPE: u8 = 0x01;
const COSIGNATURE_TYPE: u8 = 0x04;

/// Why a checkpoint or note was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The text is not a well-formed signed note or checkpoint.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature line from the expected key.
    #[error("no signature by `{0}` with the expected key")]
    MissingSignature(String),
    /// A signature from the expected key does not verify.
    #[error("signature by `{0}` does not verify")]
    BadSignature(String),
}

/// What a checkpoint commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, unique per log.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: origin, size, base64 root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a checkpoint body. Refuses extension lines, non-canonical
    /// numbers and roots that are not 32 bytes.
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("body must end with a newline"))?
            .split('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::Malformed("a checkpoint has exactly three lines"));
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(NoteError::Malformed("bad origin line"));
        }
        let parsed: u64 = size.parse().map_err(|_| NoteError::Malformed("bad size"))?;
        if parsed.to_string() != size {
            return Err(NoteError::Malformed("size is not in canonical decimal"));
        }
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::Malformed("root is not 32 bytes of base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size: parsed,
            root,
        })
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The decoded value: key id and signature (and, for co-signatures, a
    /// timestamp between them).
    pub value: Vec<u8>,
}

/// A signed note split into its body and signature lines. Not trusted
/// until a signature is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in a newline.
    pub body: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

/// The four-byte key id of `name` and `key` for signature type `kind`.
pub fn key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([kind]);
    hasher.update(key.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(['+', ' ', '\n']) || name.chars().any(char::is_control) {
        return Err(NoteError::Malformed("bad key name"));
    }
    Ok(())
}

impl SignedNote {
    /// Parses note text. Refuses text over [`MAX_NOTE_BYTES`], a body
    /// without a final newline, and malformed signature lines.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note is too large"));
        }
        let split = text
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (body, rest) = text.split_at(split + 1);
        let rest = rest
            .strip_prefix('\n')
            .and_then(|r| r.strip_suffix('\n'))
            .ok_or(NoteError::Malformed("signatures must end with a newline"))?;
        let mut signatures = Vec::new();
        for line in rest.split('\n') {
            let line = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed(
                    "signature line must start with an em dash",
                ))?;
            let (name, value) = line.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a value",
            ))?;
            check_name(name)?;
            let value = STANDARD
                .decode(value)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if value.len() < 4 {
                return Err(NoteError::Malformed("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                value,
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures"));
        }
        Ok(Self {
            body: body.to_owned(),
            signatures,
        })
    }

    /// The note text: body, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut text = self.body.clone();
        text.push('\n');
        for signature in &self.signatures {
            text.push_str(SIGNATURE_PREFIX);
            text.push_str(&signature.name);
            text.push(' ');
            text.push_str(&STANDARD.encode(&signature.value));
            text.push('\n');
        }
        text
    }

    /// Signs `body` as `name` with an ed25519 note signature. Only with the
    /// `signing` feature.
    #[cfg(feature = "signing")]
    pub fn sign(body: String, name: &str, key: &SigningKey) -> Self {
        let id = key_id(name, ED25519_TYPE, &key.verifying_key());
        let signature = key.sign(body.as_bytes()).to_bytes();
        Self {
            signatures: vec![NoteSignature {
                name: name.to_owned(),
                value: [id.as_slice(), &signature].concat(),
            }],
            body,
        }
    }

    /// Verifies the ed25519 note signature of `name` with `key`.
    pub fn verify(&self, name: &str, key: &VerifyingKey) -> Result<(), NoteError> {
        let id = key_id(name, ED25519_TYPE, key);
        let signature = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.value.get(..4) == Some(id.as_slice()))
            .ok_or_else(|| NoteError::MissingSignature(name.to_owned()))?;
        let bytes: [u8; 64] = signature
            .value
            .get(4..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| NoteError::BadSignature(name.to_owned()))?;
        key.verify_strict(self.body.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| NoteError::BadSignature(name.to_owned()))
    }

    /// Adds a `cosignature/v1` co-signature by `name` at `time` (seconds
    /// since the Unix epoch). Only with the `signing` feature.
    #[cfg(feature = "signing")]
    pub fn cosign(&mut self, name: &str, key: &SigningKey, time: u64) {
        let id = key_id(name, COSIGNATURE_TYPE, &key.verifying_key());
        let signature = key.sign(&cosigned_message(&self.body, time)).to_bytes();
        self.signatures.push(NoteSignature {
            name: name.to_owned(),
            value: [id.as_slice(), &time.to_be_bytes(), &signature].concat(),
        });
    }

    /// Verifies the `cosignature/v1` co-signature of `name` with `key` and
    /// returns its timestamp.
    pub fn verify_cosignature(&self, name: &str, key: &VerifyingKey) -> Result<u64, NoteError> {
        let id = key_id(name, COSIGNATURE_TYPE, key);
        let signature = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.value.get(..4) == Some(id.as_slice()))
            .ok_or_else(|| NoteError::MissingSignature(name.to_owned()))?;
        let bad = || NoteError::BadSignature(name.to_owned());
        let time = u64::from_be_bytes(
            signature
                .value
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?,
        );
        let bytes: [u8; 64] = signature
            .value
            .get(12..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        key.verify_strict(
            &cosigned_message(&self.body, time),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| bad())?;
        Ok(time)
    }
}

fn cosigned_message(body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sign_parse_verify_and_cosign() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let witness = SigningKey::from_bytes(&[2; 32]);
        let checkpoint = Checkpoint {
            origin: "agent-kernel/log/00".into(),
            size: 7,
            root: [9; 32],
        };
        let mut note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &key);
        note.cosign("witness", &witness, 1_700_000_000);
        let parsed = SignedNote::parse(&note.to_text()).unwrap();
        assert_eq!(parsed, note);
        parsed
            .verify(ENFORCER_KEY_NAME, &key.verifying_key())
            .unwrap();
        assert_eq!(
            parsed.verify_cosignature("witness", &witness.verifying_key()),
            Ok(1_700_000_000)
        );
        assert!(
            parsed
                .verify(ENFORCER_KEY_NAME, &witness.verifying_key())
                .is_err()
        );
        assert_eq!(Checkpoint::parse_body(&parsed.body).unwrap(), checkpoint);
        let tampered = note.to_text().replace("\n7\n", "\n8\n");
        assert!(
            SignedNote::parse(&tampered)
                .unwrap()
                .verify(ENFORCER_KEY_NAME, &key.verifying_key())
                .is_err()
        );
        for bad in ["a\n1\n", "a\n01\nAA==\n", "a\n1\nAAAA\n", "a\n1\n\n"] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
    }
}
