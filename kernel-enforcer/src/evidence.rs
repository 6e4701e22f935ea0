//! The evidence file: append-only, durable before every reply.

use kernel_core::merkle::{Frontier, Hash, leaf_hash};
use kernel_core::{
    AuditOptions, LogProblem, Record, audit, encode_record, frame_record_bytes, split_records,
};
use kernel_sync::{CommitError, GroupCommit};
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
    /// Writing the evidence panicked; its state is unknown.
    #[error("writing the evidence panicked; its state is unknown")]
    Panicked,
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

/// Where evidence bytes go: appended, then made durable. A `File` in
/// production; anything else (a failing device, say) in tests that inject
/// faults, through [`EvidenceLog::with_storage`].
pub trait Storage: Send + std::fmt::Debug {
    /// Appends `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Makes everything appended so far durable (or, for a log with an
    /// evidence window, arranges for it to be within the window).
    fn sync(&mut self) -> std::io::Result<()>;
    /// Makes everything appended so far durable now.
    fn sync_now(&mut self) -> std::io::Result<()> {
        self.sync()
    }
}

impl Storage for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// How far a commit takes the evidence before replies leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written and `fdatasync`ed: a decision survives a crash of the
    /// enforcer, of the OS and a power loss. The default.
    #[default]
    Synced,
    /// Written to the OS only (no `fdatasync`): a decision survives a
    /// crash of the enforcer but not of the OS or a power loss. Weaker;
    /// only through `--danger-evidence-os-buffered`.
    DangerOsBuffered,
    /// Written before every decision takes effect (it survives a crash of
    /// the enforcer at once) and made durable within this window, by a
    /// flusher syncing every half window; recorded at the start of every
    /// session (`--evidence-window`).
    Windowed(std::time::Duration),
}

/// A file whose `sync` only writes to the OS (see
/// [`Durability::DangerOsBuffered`]).
#[derive(Debug)]
struct OsBuffered(File);

impl Storage for OsBuffered {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An open evidence file positioned at its end, with the Merkle tree of
/// its records.
#[derive(Debug)]
pub struct EvidenceLog {
    path: PathBuf,
    storage: Box<dyn Storage>,
    tree: Frontier,
    origin: Option<String>,
    since_checkpoint: u64,
    newest_checkpoint: Option<(u64, Hash)>,
    /// Framed records staged but not yet written and synced.
    staged: GroupCommit<Vec<u8>>,
    /// The evidence window, if commits are durable only within one.
    window: Option<std::time::Duration>,
}

impl EvidenceLog {
    /// Opens (or creates, mode 0600) the evidence file and verifies what is
    /// already there (every signature, every checkpoint, the tree). A torn
    /// final record, left by a crash before it was synced and so never
    /// acknowledged, is cut off; any other fault refuses the open with the
    /// index of the first faulty record.
    pub fn open(path: &Path) -> Result<Self, EvidenceError> {
        Self::open_with(path, Durability::Synced)
    }

    /// Like [`open`](Self::open), with commits taken as far as
    /// `durability` says.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // One writer per log: a second enforcer on the same file would
        // interleave records and break the tree.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                io(std::io::Error::other(
                    "another enforcer is using this evidence file",
                ))
            },
        )?;
        let mut existing = std::fs::read(path).map_err(io)?;
        if let Err(error) = split_records(&existing)
            && let LogProblem::Torn(left) = error.problem
        {
            let keep = existing.len().saturating_sub(left);
            file.set_len(u64::try_from(keep).unwrap_or(u64::MAX))
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            existing.truncate(keep);
        }
        let storage: Box<dyn Storage> = match durability {
            Durability::Synced => Box::new(file),
            Durability::DangerOsBuffered => Box::new(OsBuffered(file)),
            Durability::Windowed(window) => {
                Box::new(crate::evidence_window::Windowed::new(file, window).map_err(io)?)
            }
        };
        let mut log = Self::with_storage(path, &existing, storage)?;
        if let Durability::Windowed(window) = durability {
            log.window = Some(window.max(crate::evidence_window::MIN_WINDOW));
        }
        Ok(log)
    }

    /// An evidence log over any [`Storage`] that already holds `existing`
    /// (verified here like a file's contents). `path` names it in messages.
    pub fn with_storage(
        path: &Path,
        existing: &[u8],
        storage: Box<dyn Storage>,
    ) -> Result<Self, EvidenceError> {
        let report =
            audit(existing, &AuditOptions::default()).map_err(|source| EvidenceError::Damaged {
                path: path.to_owned(),
                source,
            })?;
        let mut tree = Frontier::new();
        for leaf in &report.leaves {
            tree.push(*leaf);
        }
        Ok(Self {
            path: path.to_owned(),
            storage,
            tree,
            newest_checkpoint: report.newest_checkpoint().map(|c| (c.size, c.root)),
            origin: (!report.origin.is_empty()).then_some(report.origin),
            since_checkpoint: report.uncovered,
            staged: GroupCommit::new(u64::try_from(report.leaves.len()).unwrap_or(u64::MAX)),
            window: None,
        })
    }

    /// The evidence window, if this log's commits are durable only within
    /// one ([`Durability::Windowed`]).
    pub fn window(&self) -> Option<std::time::Duration> {
        self.window
    }

    /// Makes every record written so far durable now, whatever the
    /// durability of commits.
    pub fn sync_now(&mut self) -> Result<(), EvidenceError> {
        self.storage.sync_now().map_err(|source| EvidenceError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The index the next record will get.
    pub fn next_index(&self) -> u64 {
        self.tree.size()
    }

    /// The root of the tree of every record so far.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The log's origin, once it has a session start.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// Sets the origin of a new log.
    pub fn set_origin(&mut self, origin: String) {
        self.origin.get_or_insert(origin);
    }

    /// Size and root of the newest checkpoint written.
    pub fn newest_checkpoint(&self) -> Option<(u64, Hash)> {
        self.newest_checkpoint
    }

    /// Records appended since the last checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stages `record` as the next leaf and returns its index. Nothing is
    /// durable, and no reply that depends on it may leave, until
    /// [`commit`](Self::commit) succeeds.
    pub fn stage(&mut self, record: &Record) -> u64 {
        let bytes = encode_record(record);
        self.staged.stage(frame_record_bytes(&bytes));
        let index = self.tree.size();
        if matches!(record, Record::Checkpoint { .. }) {
            // A checkpoint commits to the records before it.
            self.newest_checkpoint = Some((index, self.tree.root()));
        }
        self.tree.push(leaf_hash(&bytes));
        if matches!(record, Record::Checkpoint { .. }) {
            self.since_checkpoint = 0;
        } else {
            self.since_checkpoint += 1;
        }
        index
    }

    /// Whether staged records wait for a commit.
    pub fn has_pending(&self) -> bool {
        self.staged.has_pending()
    }

    /// Writes every staged record and makes them durable with one
    /// `fdatasync` (group commit). An error leaves the log in an unknown
    /// state: the caller must halt, and must not send any reply that
    /// depends on the staged records. After an error (or a panic in the
    /// storage) every later commit fails without writing, so no record
    /// ever follows a torn one.
    pub fn commit(&mut self) -> Result<(), EvidenceError> {
        let storage = &mut self.storage;
        self.staged
            .commit(|records| {
                storage.append(&records.concat())?;
                storage.sync()
            })
            .map_err(|error| EvidenceError::Io {
                path: self.path.clone(),
                source: match error {
                    CommitError::Failed(source) => source,
                    CommitError::Broken => std::io::Error::other(
                        "an earlier write failed, so nothing more is written to this file",
                    ),
                },
            })
    }

    /// Stages `record` and commits it: durable when this returns `Ok`.
    pub fn append(&mut self, record: &Record) -> Result<u64, EvidenceError> {
        let index = self.stage(record);
        self.commit()?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use super::*;

    #[test]
    fn an_os_buffered_log_writes_every_record_before_the_commit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut log = EvidenceLog::open_with(&path, Durability::DangerOsBuffered).unwrap();
        let start = kernel_core::SignedEvent::sign(
            &kernel_core::Event::SessionStart {
                session: kernel_core::SessionId([1; 16]),
                public_key: key.verifying_key().to_bytes(),
                policy_digest: kernel_core::Digest([2; 32]),
                workspace: "/ws".into(),
                confinement: kernel_core::Confinement::Unconfined,
                origin: "test".into(),
                at_ms: 1,
            },
            &key,
        );
        log.append(&Record::Event(start)).unwrap();
        // Another reader sees it at once: written to the OS, only not synced.
        let on_disk = std::fs::read(&path).unwrap();
        assert!(!on_disk.is_empty());
        assert_eq!(
            audit(&on_disk, &AuditOptions::default()).unwrap().sessions,
            1
        );
    }
    use kernel_core::{Confinement, Digest, Event, SessionId, SignedEvent, frame_record};

    fn start() -> Record {
        let key = kernel_core::SigningKey::from_bytes(&[4; 32]);
        Record::Event(SignedEvent::sign(
            &Event::SessionStart {
                session: SessionId([1; 16]),
                public_key: key.verifying_key().to_bytes(),
                policy_digest: Digest([2; 32]),
                workspace: "/ws".into(),
                confinement: Confinement::Unconfined,
                origin: "test".into(),
                at_ms: 1,
            },
            &key,
        ))
    }

    #[test]
    fn continues_an_existing_log_and_drops_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut log = EvidenceLog::open(&path).unwrap();
        assert_eq!(log.append(&start()).unwrap(), 0);
        assert_eq!(log.append(&start()).unwrap(), 1);
        let root = log.root();
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
        assert_eq!(log.root(), root, "the tree continues");
        assert_eq!(log.origin(), Some("test"));
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
        let at = bytes.len() - 10;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        match EvidenceLog::open(&path) {
            Err(EvidenceError::Damaged { source, .. }) => assert_eq!(source.index, 1),
            other => panic!("damage accepted: {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a damaged log is left as it is"
        );
    }
}
