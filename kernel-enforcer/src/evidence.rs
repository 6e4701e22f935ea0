//! The evidence file: append-only, durable before every reply.

use kernel_core::{LogProblem, Record, frame_record, split_records, verify_log};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the evidence file could not be opened or appended to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Opening, reading, writing or syncing failed.
    #[error("evidence file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The existing file is damaged somewhere other than a torn final
    /// record.
    #[error("evidence file `{path}` is damaged, refusing to continue it: {source}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: kernel_core::LogError,
    },
}

/// An open evidence file positioned at its end.
#[derive(Debug)]
pub struct EvidenceLog {
    path: PathBuf,
    file: File,
    next_index: u64,
}

impl EvidenceLog {
    /// Opens (or creates, mode 0600) the evidence file and checks what is
    /// already there. A torn final record, left by a crash before it was
    /// synced and so never acknowledged, is cut off; any other damage
    /// refuses the open.
    pub fn open(path: &Path) -> Result<Self, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let existing = std::fs::read(path).map_err(io)?;
        let next_index = match verify_log(&existing, None) {
            Ok(summary) => summary.records,
            Err(error) => match error.problem {
                LogProblem::Torn(left) => {
                    let keep = existing.len().saturating_sub(left);
                    file.set_len(u64::try_from(keep).unwrap_or(u64::MAX))
                        .map_err(io)?;
                    file.sync_all().map_err(io)?;
                    let kept = existing.get(..keep).unwrap_or_default();
                    u64::try_from(split_records(kept).map(|r| r.len()).unwrap_or(0))
                        .unwrap_or(u64::MAX)
                }
                _ => {
                    return Err(EvidenceError::Damaged {
                        path: path.to_owned(),
                        source: error,
                    });
                }
            },
        };
        file.flush().map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            next_index,
        })
    }

    /// The index the next record will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and makes it durable (`fdatasync`) before
    /// returning its index. An error leaves the log in an unknown state:
    /// the caller must halt.
    pub fn append(&mut self, record: &Record) -> Result<u64, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&frame_record(record)).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        let index = self.next_index;
        self.next_index += 1;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use kernel_core::{Confinement, Digest, SessionId};

    fn start() -> Record {
        Record::SessionStart {
            session: SessionId([1; 16]),
            public_key: kernel_core::SigningKey::from_bytes(&[4; 32])
                .verifying_key()
                .to_bytes(),
            policy_digest: Digest([2; 32]),
            workspace: "/ws".into(),
            confinement: Confinement::Unconfined,
            started_at_ms: 1,
        }
    }

    #[test]
    fn continues_an_existing_log_and_drops_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut log = EvidenceLog::open(&path).unwrap();
        assert_eq!(log.append(&start()).unwrap(), 0);
        assert_eq!(log.append(&start()).unwrap(), 1);
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of a third record.
        let third = frame_record(&start());
        std::fs::write(
            &path,
            [whole.as_slice(), &third[..third.len() / 2]].concat(),
        )
        .unwrap();
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(log.next_index(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn refuses_a_log_damaged_anywhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut log = EvidenceLog::open(&path).unwrap();
        log.append(&start()).unwrap();
        log.append(&start()).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            EvidenceLog::open(&path),
            Err(EvidenceError::Damaged { .. })
        ));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a damaged log is left as it is"
        );
    }
}
