//! The start-up index beside an evidence file (`LOG.index`): where the
//! newest checkpoint that stores its frontier begins, so that a restart
//! reads the log from there instead of from its first byte.
//!
//! The index is a hint, never evidence. It is written after the checkpoint
//! it points at was committed, without a sync of its own; it carries a
//! checksum, so a torn or foreign file is ignored; and what it points at
//! is only used once [`kernel_core::resume`] has found there a checkpoint
//! record, signed, covering exactly the records before the index it names,
//! whose frontier leads to its signed root. A missing, stale or wrong index
//! makes the enforcer verify the whole log instead, as it did before the
//! index existed; it cannot make a damaged log acceptable.
//!
//! Layout (79 bytes): the tag `agent-kernel/evidence-index/v1\n`, the
//! checkpoint record's index and the byte offset of its length prefix
//! (each a big-endian `u64`), then the first 32 bytes of the SHA-256 of
//! everything before.

use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const TAG: &[u8] = b"agent-kernel/evidence-index/v1\n";
const LEN: usize = TAG.len() + 8 + 8 + 32;

/// Where a checkpoint record that stores its frontier begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hint {
    /// The checkpoint's record index (its size).
    pub(crate) index: u64,
    /// The byte offset of its length prefix in the evidence file.
    pub(crate) offset: u64,
}

impl Hint {
    fn encode(self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        let body: Vec<u8> = [TAG, &self.index.to_be_bytes(), &self.offset.to_be_bytes()].concat();
        let sum = Sha256::digest(&body);
        for (slot, byte) in out.iter_mut().zip(body.iter().chain(sum.iter())) {
            *slot = *byte;
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEN {
            return None;
        }
        let (body, sum) = bytes.split_at(LEN - 32);
        if Sha256::digest(body).as_slice() != sum {
            return None;
        }
        let rest = body.strip_prefix(TAG)?;
        let (index, offset) = rest.split_first_chunk::<8>()?;
        let offset: [u8; 8] = offset.try_into().ok()?;
        Some(Self {
            index: u64::from_be_bytes(*index),
            offset: u64::from_be_bytes(offset),
        })
    }
}

/// The index file of the evidence file `log`: its name with `.index`
/// appended.
pub(crate) fn path_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".index");
    PathBuf::from(name)
}

/// What an index file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// No index file, or an empty one: no checkpoint to point at.
    Nothing,
    /// An intact hint.
    Hint(Hint),
    /// Something else: a torn write, or not an index at all.
    Unreadable,
}

/// What the index file at `path` holds. Never follows a symbolic link.
pub(crate) fn read(path: &Path) -> Stored {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Stored::Nothing,
        Err(_) => return Stored::Unreadable,
    };
    let mut bytes = [0u8; LEN + 1];
    match file.read_at(&mut bytes, 0) {
        Ok(0) => Stored::Nothing,
        Ok(read) => bytes
            .get(..read)
            .and_then(Hint::decode)
            .map_or(Stored::Unreadable, Stored::Hint),
        Err(_) => Stored::Unreadable,
    }
}

/// An open index file, written in place after every committed checkpoint
/// that stores its frontier.
#[derive(Debug)]
pub(crate) struct IndexFile {
    file: File,
}

impl IndexFile {
    /// Opens (or creates, mode 0600) the index file at `path`, refusing a
    /// symbolic link.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Self { file })
    }

    /// Records `hint` (one write of the whole file, not synced: a torn or
    /// lost write only costs the next start a full verification).
    pub(crate) fn write(&self, hint: Hint) -> std::io::Result<()> {
        self.file.write_all_at(&hint.encode(), 0)?;
        self.file.set_len(u64::try_from(LEN).unwrap_or(u64::MAX))
    }

    /// Empties the index: there is no checkpoint to point at.
    pub(crate) fn clear(&self) -> std::io::Result<()> {
        self.file.set_len(0)
    }
}

/// Reading a stored hint's fields, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    /// The offset in an index file's bytes.
    pub(crate) fn offset(bytes: &[u8]) -> u64 {
        match super::Hint::decode(bytes) {
            Some(hint) => hint.offset,
            None => u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn a_hint_round_trips_and_any_damage_is_ignored() {
        let hint = Hint {
            index: 10_000_123,
            offset: 3_470_000_000,
        };
        let bytes = hint.encode();
        assert_eq!(bytes.len(), 79, "as docs/EVIDENCE.md says");
        assert_eq!(Hint::decode(&bytes), Some(hint));
        for at in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[at] ^= 0x20;
            assert_eq!(Hint::decode(&damaged), None, "byte {at}");
        }
        assert_eq!(Hint::decode(&bytes[..LEN - 1]), None);
        assert_eq!(Hint::decode(&[bytes.as_slice(), &[0]].concat()), None);
    }

    #[test]
    fn the_file_holds_the_newest_hint_and_a_cleared_one_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("evidence.log"));
        assert_eq!(read(&path), Stored::Nothing);
        let index = IndexFile::open(&path).unwrap();
        for n in [5, 1_000_000, 7] {
            let hint = Hint {
                index: n,
                offset: n * 300,
            };
            index.write(hint).unwrap();
            assert_eq!(read(&path), Stored::Hint(hint));
        }
        index.clear().unwrap();
        assert_eq!(read(&path), Stored::Nothing);
        std::fs::write(&path, b"not an index").unwrap();
        assert_eq!(read(&path), Stored::Unreadable);
    }
}
