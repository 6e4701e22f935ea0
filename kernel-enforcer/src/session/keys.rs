//! The enforcer's signing key: generation, storage, loading.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding,
};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kernel_core::{VerifyingKey, format_public_key, parse_public_key};

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

/// A public key read from a file a client trusts, with the uid that owns
/// the file: the enforcer that wrote it runs as that uid.
#[derive(Debug, Clone, Copy)]
pub struct PublicKeyFile {
    /// The key.
    pub key: VerifyingKey,
    /// The file's owner.
    pub owner: u32,
}

/// Why a public key file cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyFileError {
    /// It cannot be read.
    #[error("cannot read the key file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not a regular file.
    #[error("`{0}` is not a key file")]
    NotAFile(PathBuf),
    /// Others than its owner may write it, so anyone of them could have.
    #[error("the key file `{0}` is writable by group or others, so it proves nothing")]
    Writable(PathBuf),
    /// Others than its owner may replace it: its directory is writable by
    /// group or others and not sticky.
    #[error(
        "the directory of the key file `{0}` is writable by group or others (and not sticky), \
         so anyone of them could have replaced the file"
    )]
    WritableDirectory(PathBuf),
    /// It does not hold a public key.
    #[error("the key file `{path}` does not hold a public key: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads a public key in the `kernel.pub` format from `path` (symbolic
/// links followed), refusing a file that is not regular or that group or
/// others may write, or one in a directory where group or others may
/// replace it (writable and not sticky). The checks and the read are made
/// on one open descriptor.
pub fn read_public(path: &Path) -> Result<PublicKeyFile, PublicKeyFileError> {
    let (text, owner) = read_checked(path, 4096)?;
    let key = parse_public_key(&text).map_err(|e| PublicKeyFileError::Format {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    Ok(PublicKeyFile { key, owner })
}

/// Reads at most `limit` bytes of the text file at `path`, with the uid
/// that owns it, under the checks of [`read_public`]: a regular file that
/// only its owner may write, in a directory only its owner may replace it
/// in (or a sticky one), checked and read through one descriptor.
pub(crate) fn read_checked(path: &Path, limit: u64) -> Result<(String, u32), PublicKeyFileError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let io = |source| PublicKeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let directory = std::path::absolute(path)
        .map_err(io)?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/"));
    let dir_mode = std::fs::metadata(&directory).map_err(io)?.mode();
    if dir_mode & 0o022 != 0 && dir_mode & 0o1000 == 0 {
        return Err(PublicKeyFileError::WritableDirectory(path.to_owned()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PublicKeyFileError::NotAFile(path.to_owned()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PublicKeyFileError::Writable(path.to_owned()));
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text).map_err(io)?;
    Ok((text, meta.uid()))
}

/// Writes `key` in the `kernel.pub` format to `path`, mode 0644, through a
/// fresh file in the same directory renamed over it: readers see the old
/// file or the new one, and a symbolic link at `path` is replaced, never
/// followed.
pub fn write_public(path: &Path, key: &VerifyingKey) -> std::io::Result<()> {
    write_readable(path, format!("{}\n", format_public_key(key)).as_bytes())
}

/// Replaces the file at `path` with `contents` atomically (a temporary
/// file beside it, synced, then renamed over it), mode 0644 whatever the
/// umask: a file others read to check the enforcer.
pub(crate) fn write_readable(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    replace_file(path, contents, 0o644)
}

/// Replaces the file at `path` with `contents` atomically (a temporary
/// file beside it, private until it is complete, synced, then renamed over
/// it), with `mode` whatever the umask. A symbolic link at `path` is
/// replaced, never followed.
pub(crate) fn replace_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
