//! The enforcer's signing key: generation, storage, loading.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding,
};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the private key written by `keygen`.
pub const PRIVATE_KEY_FILE: &str = "kernel.key";
/// File name of the public key written by `keygen`.
pub const PUBLIC_KEY_FILE: &str = "kernel.pub";

/// Why a key could not be made, stored or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's randomness failed.
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
    /// Reading or writing a key file failed.
    #[error("key file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key file is readable by others than its owner.
    #[error("key file `{0}` is readable by group or others: run `chmod 600` on it")]
    TooOpen(PathBuf),
    /// The key file is not a PKCS#8 PEM ed25519 private key.
    #[error("key file `{0}` is not a PKCS#8 PEM ed25519 private key")]
    Format(PathBuf),
}

/// A fresh key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` as an unencrypted PKCS#8 v1 PEM file (readable by OpenSSL)
/// with mode 0600, refusing to overwrite an existing file.
pub fn write_private(key: &SigningKey, path: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Loads a PKCS#8 PEM private key, refusing files others can read.
pub fn load_private(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen(path.to_owned()));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyError::Format(path.to_owned()))
}
