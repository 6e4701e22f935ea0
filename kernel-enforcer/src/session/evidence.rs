//! The evidence file: append-only, durable before every reply.
//!
//! Opening an existing file continues it, after checking it. Where the
//! start-up index beside the file (`evidence_index.rs`) points at a
//! checkpoint that stores its frontier, only the records from that
//! checkpoint on are read and verified ([`kernel_core::resume`]): the time
//! to start does not grow with the log. Otherwise (a log written before
//! checkpoints stored their frontier, a missing or stale index) every
//! record is verified ([`kernel_core::audit`]), once; the index is written
//! again for the next start.

use crate::session::evidence_index::{self, Hint, IndexFile, Stored};
use crate::session::evidence_segments::{self, SegmentDir};
use crate::session::evidence_window::{MIN_WINDOW, Windowed};
use kernel_core::merkle::{Frontier, Hash, leaf_hash};
use kernel_core::note::{Checkpoint, ENFORCER_KEY_NAME, SignedNote};
use kernel_core::{
    AuditOptions, LogError, LogProblem, LogTip, Record, ResumeError, SessionId, SigningKey, audit,
    encode_record, frame_record_bytes, resume, split_records_prefix,
};
use kernel_sync::{CommitError, GroupCommit};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    /// The log's active segment does not fit its closed segments.
    #[error("evidence file `{path}`: {problem}; refusing to continue it")]
    Segments {
        /// The log (its active segment).
        path: PathBuf,
        /// What does not fit.
        problem: LayoutProblem,
    },
}

/// Why the active segment of an evidence log does not fit its closed
/// segments (see [`EvidenceLog::set_segment_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutProblem {
    /// The active segment is missing or empty, but closed segments exist.
    #[error(
        "it is missing or empty, but closed segments exist (the newest is `{}`): it was \
         removed, moved or emptied; restore it (a new log beside the closed segments would not \
         continue their chain)",
        newest.display()
    )]
    ActiveMissing {
        /// The newest closed segment.
        newest: PathBuf,
    },
    /// A closed segment begins at or after the active segment's first
    /// record: the active segment is an older one, or another log's.
    #[error(
        "it begins at record {active_first}, but the closed segment `{}` begins at record \
         {closed_first}: it is older than its closed segments (restored from an older copy, or \
         replaced by another log); continuing it would fork the log",
        closed.display()
    )]
    ActiveBehind {
        /// Where the active segment begins.
        active_first: u64,
        /// The closed segment.
        closed: PathBuf,
        /// Where that one begins.
        closed_first: u64,
    },
    /// The active segment begins with a checkpoint that cannot be read as
    /// one.
    #[error(
        "it does not begin with a checkpoint that stores its frontier, as a later segment does"
    )]
    NoStart,
}

/// A rotation that a crash interrupted, found and undone when the log was
/// opened: the active segment still held every record, and the rotation
/// happens again at the next commit that finds the segment full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The new segment was being prepared: it was removed.
    NextDiscarded,
    /// The active segment had been given its closed name, but the new
    /// segment had not taken the log's name yet: the closed name and the
    /// new segment were removed.
    LinkUndone,
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
    /// What makes everything appended before it is called durable, callable
    /// from another thread while this storage goes on appending (an
    /// `fdatasync` of the same file), if [`sync`](Self::sync) is such a
    /// sync. `None` (the default): every commit syncs in place.
    fn detached_sync(&self) -> Option<DetachedSync> {
        None
    }
}

/// See [`Storage::detached_sync`].
pub type DetachedSync = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

impl Storage for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }

    fn detached_sync(&self) -> Option<DetachedSync> {
        // `fdatasync` through another descriptor of the same open file
        // makes every write made before it durable.
        let file = self.try_clone().ok()?;
        Some(Box::new(move || file.sync_data()))
    }
}

/// Why records could not be made durable ([`Syncer::sync_through`],
/// [`PendingSync::sync`]): an `fdatasync` of the evidence failed, now or
/// earlier (a failure is sticky, see [`Syncer`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("`fdatasync` of the evidence failed: {source}")]
pub struct SyncError {
    /// What the first failed `fdatasync` returned (shared: every later
    /// sync reports the same failure).
    #[source]
    pub source: std::sync::Arc<std::io::Error>,
}

/// Makes records already written to an evidence file durable without the
/// log itself, so that its owner can decide and write the next records
/// while the `fdatasync` of these runs ([`EvidenceLog::write_staged`]).
///
/// Syncs do not overlap, and one covers every record written before it
/// started. A failed sync is sticky: every later sync fails, and so does
/// every later write or commit of the log, so no record is ever reported
/// durable after one was lost (after a failed `fdatasync`, a later one may
/// report success for a file that lost data).
pub struct Syncer {
    sync: DetachedSync,
    /// Records written to the file so far (stored after their write).
    written: std::sync::atomic::AtomicU64,
    state: parking_lot::Mutex<SyncState>,
    /// Why the first failed sync failed: shared with the syncer of every
    /// later segment of the log, so that a failure in one is a failure of
    /// them all.
    failed: std::sync::Arc<parking_lot::Mutex<Option<SyncError>>>,
}

#[derive(Debug)]
struct SyncState {
    /// Records known durable.
    synced: u64,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("written", &self.written)
            .field("state", &*self.state.lock())
            .field("failed", &*self.failed.lock())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    fn new(sync: DetachedSync, records: u64) -> Self {
        Self::sharing_failure(sync, records, std::sync::Arc::default())
    }

    /// A syncer of records from `records` on, failed whenever `failed`
    /// says so.
    fn sharing_failure(
        sync: DetachedSync,
        records: u64,
        failed: std::sync::Arc<parking_lot::Mutex<Option<SyncError>>>,
    ) -> Self {
        Self {
            sync,
            written: std::sync::atomic::AtomicU64::new(records),
            state: parking_lot::Mutex::new(SyncState { synced: records }),
            failed,
        }
    }

    /// Returns once every record below `records` (all written already) is
    /// durable, or why that cannot be known.
    pub fn sync_through(&self, records: u64) -> Result<(), SyncError> {
        use std::sync::atomic::Ordering;
        let mut state = self.state.lock();
        if let Some(failed) = self.failed() {
            return Err(failed);
        }
        if state.synced >= records {
            // A sync that started after these records were written has
            // already succeeded.
            return Ok(());
        }
        // Everything written before the sync starts is covered by it.
        let covered = self.written.load(Ordering::SeqCst).max(records);
        let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.sync)()))
            .unwrap_or_else(|_| Err(std::io::Error::other("the sync panicked")));
        match synced {
            Ok(()) => {
                state.synced = covered;
                Ok(())
            }
            Err(e) => {
                let failed = SyncError {
                    source: std::sync::Arc::new(e),
                };
                self.failed.lock().get_or_insert_with(|| failed.clone());
                Err(failed)
            }
        }
    }

    /// Records known durable.
    fn synced(&self) -> u64 {
        self.state.lock().synced
    }

    /// Why a sync failed, if one did.
    fn failed(&self) -> Option<SyncError> {
        self.failed.lock().clone()
    }
}

/// Records written by [`EvidenceLog::write_staged`] and not yet known
/// durable: [`sync`](Self::sync) makes them so.
#[derive(Debug)]
#[must_use = "records written are durable only once synced"]
pub struct PendingSync {
    syncer: std::sync::Arc<Syncer>,
    /// Records of the log once these are durable.
    records: u64,
}

impl PendingSync {
    /// Makes the records durable (see [`Syncer::sync_through`]); returns
    /// how many records of the log are then durable.
    pub fn sync(self) -> Result<u64, SyncError> {
        self.syncer
            .sync_through(self.records)
            .map(|()| self.records)
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

impl Storage for Windowed {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        Windowed::append(self, bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        Windowed::sync(self)
    }

    fn sync_now(&mut self) -> std::io::Result<()> {
        Windowed::sync_now(self)
    }
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

/// How the records already in an evidence file were checked when it was
/// opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Only the records from the newest checkpoint that stores its
    /// frontier on were read and verified; the records before it are
    /// trusted because that checkpoint, signed, commits to them.
    Resumed {
        /// The checkpoint's record index.
        checkpoint: u64,
        /// Records in the log.
        records: u64,
    },
    /// Every record was read and verified.
    Verified {
        /// Records in the log.
        records: u64,
        /// Why.
        why: FullCheck,
    },
    /// Every record of the active segment, a later segment of the log,
    /// was read and verified, from the checkpoint it begins with on; the
    /// records of the segments before it are trusted because that
    /// checkpoint, signed, commits to them.
    Segment {
        /// Index of the segment's first record, its checkpoint.
        first: u64,
        /// Records in the log.
        records: u64,
        /// Why not only those after the newest checkpoint.
        why: FullCheck,
    },
}

/// Why every record of an evidence file was verified at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullCheck {
    /// The contents were given whole ([`EvidenceLog::with_storage`]).
    Given,
    /// There is no start-up index: the file is new, was written before
    /// checkpoints stored their frontier, or its index was removed.
    NoIndex,
    /// The start-up index does not point at a checkpoint of this file that
    /// stores its frontier: the log was copied, restored or replaced
    /// without it, or lost records in an OS crash.
    IndexMismatch,
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
    /// The file's length once every staged record is written.
    end: u64,
    /// The newest checkpoint that stores its frontier, staged or written.
    resumable: Option<Hint>,
    /// Whether `resumable` changed since the index was last written.
    resumable_staged: bool,
    /// The start-up index, if this log keeps one.
    index: Option<IndexFile>,
    opened: Opened,
    /// Syncs made apart from the log, if its storage can make them.
    syncer: Option<std::sync::Arc<Syncer>>,
    /// Index of the active segment's first record (0 in a log's first
    /// segment).
    first_index: u64,
    /// Rotate to a new segment once the active one holds this many bytes.
    segment_bytes: Option<u64>,
    /// The active segment's file, for a rotation (`None` for a log over
    /// other storage, which never rotates).
    file: Option<File>,
    durability: Durability,
    /// A rotation a crash interrupted, undone by the open.
    interrupted: Option<Interrupted>,
    /// Tests: stop a rotation after this step, as a crash would.
    #[cfg(test)]
    crash_after: Option<u8>,
}

/// What opening found: the log's state and where it ends.
struct Found {
    tip: LogTip,
    end: u64,
    resumable: Option<Hint>,
    opened: Opened,
}

impl EvidenceLog {
    /// Opens (or creates, mode 0600) the evidence file and verifies what is
    /// already there: the records from the newest checkpoint that stores
    /// its frontier on, if the start-up index points at one (see
    /// [`Opened::Resumed`]), every record otherwise. A torn final record,
    /// left by a crash before it was synced and so never acknowledged, is
    /// cut off; any other fault in what is verified refuses the open with
    /// the index of the first faulty record.
    pub fn open(path: &Path) -> Result<Self, EvidenceError> {
        Self::open_with(path, Durability::Synced)
    }

    /// Like [`open`](Self::open), with commits taken as far as
    /// `durability` says.
    ///
    /// A log kept in segments ([`set_segment_bytes`](Self::set_segment_bytes))
    /// is opened by its active segment, `path`, alone: the closed segments
    /// beside it are listed, not read. A rotation that a crash interrupted
    /// is undone ([`interrupted`](Self::interrupted)). The open is refused
    /// when the active segment is missing, empty or older than a closed
    /// segment ([`LayoutProblem`]).
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        let layout = |problem| EvidenceError::Segments {
            path: path.to_owned(),
            problem,
        };
        let mut closed = evidence_segments::closed_segments(path).map_err(io)?;
        if let Some(newest) = closed.last()
            && !path.exists()
        {
            return Err(layout(LayoutProblem::ActiveMissing {
                newest: newest.path.clone(),
            }));
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // One writer per log: a second enforcer on the same file would
        // interleave records and break the tree. A rotation locks the new
        // segment before it takes the log's name, so the name always
        // names a locked file while an enforcer runs.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                io(std::io::Error::other(
                    "another enforcer is using this evidence file",
                ))
            },
        )?;
        let interrupted = Self::undo_rotation(path, &file, &mut closed).map_err(io)?;
        let index_path = evidence_index::path_for(path);
        let len = file.metadata().map_err(io)?.len();
        let first_index = match first_record(&file, len).map_err(io)? {
            None => 0,
            Some(record) => match kernel_core::SegmentHead::read(&record) {
                Ok(head) => head.first,
                // Damage in the first record: a full check names it.
                Err(_) if closed.is_empty() => 0,
                Err(_) => return Err(layout(LayoutProblem::NoStart)),
            },
        };
        if let Some(newest) = closed.last() {
            if len == 0 {
                return Err(layout(LayoutProblem::ActiveMissing {
                    newest: newest.path.clone(),
                }));
            }
            if newest.first >= first_index {
                return Err(layout(LayoutProblem::ActiveBehind {
                    active_first: first_index,
                    closed: newest.path.clone(),
                    closed_first: newest.first,
                }));
            }
        }
        let (resumed, why) = match evidence_index::read(&index_path) {
            // Every record takes at least one byte: a hint naming more
            // records than bytes before it in this segment is wrong.
            Stored::Hint(hint)
                if hint.offset < len
                    && hint.index >= first_index
                    && hint.index - first_index <= hint.offset =>
            {
                (
                    Self::resume_at(path, &file, hint, len)?,
                    FullCheck::IndexMismatch,
                )
            }
            Stored::Hint(_) | Stored::Unreadable => (None, FullCheck::IndexMismatch),
            Stored::Nothing => (None, FullCheck::NoIndex),
        };
        let found = match resumed {
            Some(found) => found,
            // A later segment begins with a checkpoint that stores its
            // frontier: verify the segment from there.
            None if first_index > 0 => {
                let hint = Hint {
                    index: first_index,
                    offset: 0,
                };
                let mut found = Self::resume_at(path, &file, hint, len)?
                    .ok_or_else(|| layout(LayoutProblem::NoStart))?;
                found.opened = Opened::Segment {
                    first: first_index,
                    records: found.tip.frontier.size(),
                    why,
                };
                found
            }
            None => Self::verify_all(path, &file, why)?,
        };
        // The index is a hint: if it cannot be kept, the next start
        // verifies every record, as without it.
        let index = IndexFile::open(&index_path).ok();
        if let Some(index) = &index {
            let _ = match found.resumable {
                Some(hint) => index.write(hint),
                None => index.clear(),
            };
        }
        let active = file.try_clone().map_err(io)?;
        let storage = storage_for(file, durability).map_err(io)?;
        let mut log = Self::from_found(path, storage, found);
        log.index = index;
        log.first_index = first_index;
        log.file = Some(active);
        log.durability = durability;
        log.interrupted = interrupted;
        if let Durability::Windowed(window) = durability {
            log.window = Some(window.max(MIN_WINDOW));
        }
        Ok(log)
    }

    /// Undoes a rotation a crash interrupted (see `evidence_segments`):
    /// the active segment, `file`, still holds every record; a closed
    /// segment that is the same file, and a new segment being prepared,
    /// are removed. `closed` loses what was removed.
    fn undo_rotation(
        path: &Path,
        file: &File,
        closed: &mut Vec<evidence_segments::Closed>,
    ) -> std::io::Result<Option<Interrupted>> {
        let Some(dir) = SegmentDir::open(path)? else {
            return Ok(None);
        };
        let mut undone = None;
        if let Some(newest) = closed.last()
            && let Some(name) = newest.path.file_name()
            && dir.is(name, file)?
        {
            dir.remove(name)?;
            closed.pop();
            undone = Some(Interrupted::LinkUndone);
        }
        if dir.remove_next()? {
            undone.get_or_insert(Interrupted::NextDiscarded);
        }
        if undone.is_some() {
            dir.sync()?;
        }
        Ok(undone)
    }

    /// Continues the log from the checkpoint `hint` points at, reading
    /// only from there on. `None` if no such checkpoint begins there: the
    /// hint is wrong, and nothing was changed.
    fn resume_at(
        path: &Path,
        file: &File,
        hint: Hint,
        len: u64,
    ) -> Result<Option<Found>, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        let damaged = |source| EvidenceError::Damaged {
            path: path.to_owned(),
            source,
        };
        let size = usize::try_from(len.saturating_sub(hint.offset))
            .map_err(|_| io(std::io::Error::other("evidence file too large to read")))?;
        let mut tail = vec![0u8; size];
        file.read_exact_at(&mut tail, hint.offset).map_err(io)?;
        let (records, framing) = split_records_prefix(&tail);
        let whole = framed_len(&records);
        let tip = match resume(hint.index, tail.get(..whole).unwrap_or_default()) {
            Ok(tip) => tip,
            Err(ResumeError::NoCheckpoint(_)) => return Ok(None),
            Err(ResumeError::Damaged(error)) => return Err(damaged(error)),
            Err(other) => {
                return Err(damaged(LogError {
                    index: hint.index,
                    problem: LogProblem::Decode(kernel_core::DecodeError::Malformed(
                        other.to_string(),
                    )),
                }));
            }
        };
        // Only now that the checkpoint is found is the end of the file
        // known to be a record boundary or a torn record.
        let end = hint
            .offset
            .saturating_add(u64::try_from(whole).unwrap_or(u64::MAX));
        match framing {
            None => {}
            Some(LogError {
                problem: LogProblem::Torn(_),
                ..
            }) => cut(file, end).map_err(io)?,
            Some(mut error) => {
                error.index = error.index.saturating_add(hint.index);
                return Err(damaged(error));
            }
        }
        let resumable = tip.resumable_from.map(|index| Hint {
            index,
            offset: hint
                .offset
                .saturating_add(offset_of(&records, index.saturating_sub(hint.index))),
        });
        let opened = Opened::Resumed {
            checkpoint: hint.index,
            records: tip.frontier.size(),
        };
        Ok(Some(Found {
            tip,
            end,
            resumable,
            opened,
        }))
    }

    /// Reads and verifies every record, after cutting off a torn final
    /// one.
    fn verify_all(path: &Path, file: &File, why: FullCheck) -> Result<Found, EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        let mut existing = std::fs::read(path).map_err(io)?;
        if let (records, Some(error)) = split_records_prefix(&existing)
            && let LogProblem::Torn(_) = error.problem
        {
            let keep = framed_len(&records);
            cut(file, u64::try_from(keep).unwrap_or(u64::MAX)).map_err(io)?;
            existing.truncate(keep);
        }
        let mut found = Self::verify(path, &existing)?;
        if let Opened::Verified { records, .. } = found.opened {
            found.opened = Opened::Verified { records, why };
        }
        Ok(found)
    }

    /// Verifies every record of `existing`.
    fn verify(path: &Path, existing: &[u8]) -> Result<Found, EvidenceError> {
        let report =
            audit(existing, &AuditOptions::default()).map_err(|source| EvidenceError::Damaged {
                path: path.to_owned(),
                source,
            })?;
        let tip = report.tip();
        let resumable = tip.resumable_from.map(|index| Hint {
            index,
            offset: offset_of(&split_records_prefix(existing).0, index),
        });
        Ok(Found {
            opened: Opened::Verified {
                records: tip.frontier.size(),
                why: FullCheck::Given,
            },
            end: u64::try_from(existing.len()).unwrap_or(u64::MAX),
            tip,
            resumable,
        })
    }

    /// An evidence log over any [`Storage`] that already holds `existing`
    /// (every record verified here). `path` names it in messages. It keeps
    /// no start-up index.
    pub fn with_storage(
        path: &Path,
        existing: &[u8],
        storage: Box<dyn Storage>,
    ) -> Result<Self, EvidenceError> {
        Ok(Self::from_found(
            path,
            storage,
            Self::verify(path, existing)?,
        ))
    }

    fn from_found(path: &Path, storage: Box<dyn Storage>, found: Found) -> Self {
        let Found {
            tip,
            end,
            resumable,
            opened,
        } = found;
        let syncer = storage
            .detached_sync()
            .map(|sync| std::sync::Arc::new(Syncer::new(sync, tip.frontier.size())));
        Self {
            path: path.to_owned(),
            syncer,
            storage,
            newest_checkpoint: tip.newest_checkpoint.as_ref().map(|c| (c.size, c.root)),
            origin: (!tip.origin.is_empty()).then_some(tip.origin),
            since_checkpoint: tip.uncovered,
            staged: GroupCommit::new(tip.frontier.size()),
            tree: tip.frontier,
            window: None,
            end,
            resumable,
            resumable_staged: false,
            index: None,
            opened,
            first_index: 0,
            segment_bytes: None,
            file: None,
            durability: Durability::Synced,
            interrupted: None,
            #[cfg(test)]
            crash_after: None,
        }
    }

    /// How the records already in the file were checked at open.
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// What a writer needs to continue the log, as it stands with every
    /// staged record: for the same records, equal whether the log was
    /// opened by [`resume`] or by a full [`audit`].
    pub fn tip(&self) -> LogTip {
        let origin = self.origin.clone().unwrap_or_default();
        LogTip {
            newest_checkpoint: self.newest_checkpoint.map(|(size, root)| Checkpoint {
                origin: origin.clone(),
                size,
                root,
            }),
            origin,
            frontier: self.tree.clone(),
            uncovered: self.since_checkpoint,
            resumable_from: self.resumable.map(|hint| hint.index),
        }
    }

    /// The length of the file, in bytes, once every staged record is
    /// written.
    pub fn file_len(&self) -> u64 {
        self.end
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
        let framed = frame_record_bytes(&bytes);
        let offset = self.end;
        self.end = offset.saturating_add(u64::try_from(framed.len()).unwrap_or(u64::MAX));
        self.staged.stage(framed);
        let index = self.tree.size();
        let checkpoint = record.checkpoint_note().is_some();
        if checkpoint {
            // A checkpoint commits to the records before it.
            self.newest_checkpoint = Some((index, self.tree.root()));
        }
        if matches!(record, Record::FrontierCheckpoint { .. }) {
            self.resumable = Some(Hint { index, offset });
            self.resumable_staged = true;
        }
        self.tree.push(leaf_hash(&bytes));
        if checkpoint {
            self.since_checkpoint = 0;
        } else {
            self.since_checkpoint += 1;
        }
        index
    }

    /// Signs with `key` a checkpoint of every record so far, written in
    /// `session`, storing the tree's frontier (so that a restart can
    /// continue the log from it), and stages it. Returns its index.
    pub fn stage_checkpoint(&mut self, session: SessionId, key: &SigningKey) -> u64 {
        let checkpoint = Checkpoint {
            origin: self.origin.clone().unwrap_or_default(),
            size: self.tree.size(),
            root: self.tree.root(),
        };
        let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, key);
        self.stage(&Record::FrontierCheckpoint {
            note: note.to_text(),
            session,
            key: key.verifying_key().to_bytes(),
            frontier: self.tree.peaks().to_vec(),
        })
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
    ///
    /// Once a checkpoint that stores its frontier is committed, the
    /// start-up index is pointed at it (not synced: it is a hint).
    pub fn commit(&mut self) -> Result<(), EvidenceError> {
        self.write(true)?;
        self.write_hint(self.next_index());
        Ok(())
    }

    /// Whether a commit's sync can run apart from the log, beside the
    /// writing of later records ([`write_staged`](Self::write_staged)
    /// returns a [`PendingSync`]): a plain evidence file, synced on every
    /// commit. Not an evidence window or OS-buffered evidence, whose
    /// commits have no `fdatasync` to wait for.
    pub fn syncs_apart(&self) -> bool {
        self.syncer.is_some()
    }

    /// Writes every staged record to the file like [`commit`](Self::commit)
    /// but, when the log can sync apart from itself (a plain evidence
    /// file), without making them durable: the records are durable, and
    /// replies that depend on them may leave, only once the returned
    /// [`PendingSync`] has synced. The caller may stage and write more
    /// records meanwhile. Otherwise (an evidence window, OS-buffered
    /// evidence, a storage given by a test) this commits, and returns
    /// `None`: nothing is left to sync. Fails, like `commit`, after any
    /// earlier failure, a failed [`PendingSync`] included.
    pub fn write_staged(&mut self) -> Result<Option<PendingSync>, EvidenceError> {
        let Some(syncer) = self.syncer.clone() else {
            self.commit()?;
            return Ok(None);
        };
        self.write(false)?;
        let records = self.next_index();
        syncer
            .written
            .store(records, std::sync::atomic::Ordering::SeqCst);
        // The start-up index only ever names a checkpoint known durable.
        self.write_hint(syncer.synced());
        Ok(Some(PendingSync { syncer, records }))
    }

    /// Writes the staged records, and syncs them if `sync`.
    fn write(&mut self, sync: bool) -> Result<(), EvidenceError> {
        let io = |path: &Path, source| EvidenceError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(failed) = self.syncer.as_ref().and_then(|s| s.failed()) {
            return Err(io(&self.path, std::io::Error::other(failed)));
        }
        let storage = &mut self.storage;
        self.staged
            .commit(|records| {
                storage.append(&records.concat())?;
                if sync { storage.sync() } else { Ok(()) }
            })
            .map_err(|error| {
                io(
                    &self.path,
                    match error {
                        CommitError::Failed(source) => source,
                        CommitError::Broken => std::io::Error::other(
                            "an earlier write failed, so nothing more is written to this file",
                        ),
                    },
                )
            })?;
        if sync && let Some(syncer) = &self.syncer {
            // Everything written is durable.
            let records = self.next_index();
            syncer
                .written
                .store(records, std::sync::atomic::Ordering::SeqCst);
            let mut state = syncer.state.lock();
            state.synced = state.synced.max(records);
        }
        Ok(())
    }

    /// Points the start-up index at the newest checkpoint that stores its
    /// frontier, if that changed and its record is among the `durable`
    /// first records.
    fn write_hint(&mut self, durable: u64) {
        if self.resumable_staged
            && let (Some(index), Some(hint)) = (&self.index, self.resumable)
            && hint.index < durable
        {
            self.resumable_staged = false;
            // A hint that cannot be written costs the next start a full
            // verification, nothing else.
            let _ = index.write(hint);
        }
    }

    /// Stages `record` and commits it: durable when this returns `Ok`.
    pub fn append(&mut self, record: &Record) -> Result<u64, EvidenceError> {
        let index = self.stage(record);
        self.commit()?;
        Ok(index)
    }

    /// Keeps the log in segments of about `bytes` bytes (`None`: one file,
    /// the default): once a commit leaves the active segment at `bytes` or
    /// more, [`rotation_due`](Self::rotation_due) says so, and
    /// [`rotate`](Self::rotate) closes it. A segment holds at most `bytes`
    /// plus one commit's records. Only a log opened from a file rotates.
    pub fn set_segment_bytes(&mut self, bytes: Option<u64>) {
        self.segment_bytes = bytes;
    }

    /// Whether the active segment is full: one comparison, so that a log
    /// that is not rotating costs nothing more per decision.
    pub fn rotation_due(&self) -> bool {
        self.segment_bytes.is_some_and(|limit| self.end >= limit)
    }

    /// Index of the active segment's first record (0 in a log's first
    /// segment).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// A rotation that a crash interrupted, undone when the log was
    /// opened.
    pub fn interrupted(&self) -> Option<Interrupted> {
        self.interrupted
    }

    /// Closes the active segment and begins a new one, between commits:
    /// the active segment is made durable, then moved to the segments
    /// directory beside the log under its closed name, and the log's path
    /// names a new segment whose first record is a checkpoint of every
    /// record so far, signed with `key` in `session` and storing the
    /// tree's frontier (see `evidence_segments` for the steps and what a
    /// crash between them leaves). Record indexes, the tree and the
    /// session carry on. Refused while records are staged.
    ///
    /// An error leaves the log in an unknown state, as a failed commit
    /// does: the caller must halt. On disk the log is always either as
    /// before the rotation or as after it, up to what opening it undoes.
    pub fn rotate(&mut self, session: SessionId, key: &SigningKey) -> Result<(), EvidenceError> {
        let io = |source| EvidenceError::Io {
            path: self.path.clone(),
            source,
        };
        if self.staged.has_pending() || self.staged.is_broken() {
            return Err(io(std::io::Error::other(
                "a rotation must come between commits",
            )));
        }
        let Some(active) = &self.file else {
            return Ok(());
        };
        // What is acknowledged stays in a synced segment.
        self.storage.sync_now().map_err(io)?;
        let dir = SegmentDir::create(&self.path).map_err(io)?;
        let size = self.tree.size();
        let root = self.tree.root();
        let checkpoint = Checkpoint {
            origin: self.origin.clone().unwrap_or_default(),
            size,
            root,
        };
        let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, key);
        let record = encode_record(&Record::FrontierCheckpoint {
            note: note.to_text(),
            session,
            key: key.verifying_key().to_bytes(),
            frontier: self.tree.peaks().to_vec(),
        });
        let framed = frame_record_bytes(&record);
        let next = dir.write_next(&framed).map_err(io)?;
        self.crash_point(1)?;
        let closed = evidence_segments::closed_name(&self.path, self.first_index);
        dir.link_closed(&self.path, &closed).map_err(io)?;
        self.crash_point(2)?;
        dir.rename_next_over(&self.path).map_err(io)?;
        self.crash_point(3)?;
        // Closed: read only from now on (a hint to whoever looks; the
        // floor and the confinement are what keep agents away).
        let _ = rustix::fs::fchmod(active, rustix::fs::Mode::from_raw_mode(0o400));
        let new_active = next.try_clone().map_err(io)?;
        // The old storage goes (a windowed one syncs and stops its
        // flusher); everything in it was synced above.
        self.storage = storage_for(next, self.durability).map_err(io)?;
        self.file = Some(new_active);
        self.first_index = size;
        self.end = u64::try_from(framed.len()).unwrap_or(u64::MAX);
        self.newest_checkpoint = Some((size, root));
        self.since_checkpoint = 0;
        let hint = Hint {
            index: size,
            offset: 0,
        };
        self.resumable = Some(hint);
        self.resumable_staged = false;
        self.tree.push(leaf_hash(&record));
        self.staged = GroupCommit::new(self.tree.size());
        // Syncs from now on are of the new segment (those of records in
        // the old one, synced above, still go to the old one), and fail
        // if any sync of the log ever failed.
        self.syncer = match (self.storage.detached_sync(), self.syncer.take()) {
            (Some(sync), Some(old)) => Some(std::sync::Arc::new(Syncer::sharing_failure(
                sync,
                size,
                std::sync::Arc::clone(&old.failed),
            ))),
            (Some(sync), None) => Some(std::sync::Arc::new(Syncer::new(sync, size))),
            (None, _) => None,
        };
        if let Some(syncer) = &self.syncer {
            syncer
                .written
                .store(self.tree.size(), std::sync::atomic::Ordering::SeqCst);
        }
        if let Some(index) = &self.index {
            // A hint: a stale one costs the next start the active
            // segment's verification, nothing else.
            let _ = index.write(hint);
        }
        Ok(())
    }

    /// Tests stop the rotation after `step`, as a crash there would;
    /// nothing otherwise.
    fn crash_point(&self, step: u8) -> Result<(), EvidenceError> {
        #[cfg(test)]
        if self.crash_after == Some(step) {
            return Err(EvidenceError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!("crash after step {step}")),
            });
        }
        let _ = step;
        Ok(())
    }
}

/// The storage of `file` for commits as durable as `durability` says.
fn storage_for(file: File, durability: Durability) -> std::io::Result<Box<dyn Storage>> {
    Ok(match durability {
        Durability::Synced => Box::new(file),
        Durability::DangerOsBuffered => Box::new(OsBuffered(file)),
        Durability::Windowed(window) => Box::new(crate::session::evidence_window::Windowed::new(
            file, window,
        )?),
    })
}

/// The first record of `file` (`len` bytes long), without its length
/// prefix; `None` when the file is empty or ends inside that record.
fn first_record(file: &File, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    if len < 4 {
        return Ok(None);
    }
    file.read_exact_at(&mut prefix, 0)?;
    let size = u64::from(u32::from_be_bytes(prefix));
    let limit = u64::try_from(kernel_core::MAX_RECORD_BYTES).unwrap_or(u64::MAX);
    if size > limit || size > len - 4 {
        return Ok(None);
    }
    let mut record = vec![0u8; usize::try_from(size).unwrap_or(0)];
    file.read_exact_at(&mut record, 4)?;
    Ok(Some(record))
}

/// Bytes of `records` with their length prefixes.
fn framed_len(records: &[&[u8]]) -> usize {
    records.iter().map(|r| r.len().saturating_add(4)).sum()
}

/// Byte offset of record `position` among `records` (which start at 0).
fn offset_of(records: &[&[u8]], position: u64) -> u64 {
    let before = records
        .get(..usize::try_from(position).unwrap_or(usize::MAX))
        .unwrap_or(records);
    u64::try_from(framed_len(before)).unwrap_or(u64::MAX)
}

/// Cuts `file` to `len` bytes, durably: what is cut is a torn record that
/// was never acknowledged.
fn cut(file: &File, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_all()
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

    /// Only a log synced on every commit has a sync to run beside the next
    /// batch (the enforcer serves it on two threads, and the others on
    /// one).
    #[test]
    fn only_a_synced_log_syncs_apart() {
        let dir = tempfile::tempdir().unwrap();
        for (name, durability, apart) in [
            ("synced", Durability::Synced, true),
            ("buffered", Durability::DangerOsBuffered, false),
            (
                "windowed",
                Durability::Windowed(std::time::Duration::from_millis(10)),
                false,
            ),
        ] {
            let log = EvidenceLog::open_with(&dir.path().join(name), durability).unwrap();
            assert_eq!(log.syncs_apart(), apart, "{name}");
        }
    }

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
    use kernel_core::{
        Confinement, Digest, Event, SessionId, SignedEvent, decode_record, frame_record,
    };

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

    /// Writes logs as the enforcer does (session starts, decisions whose
    /// receipts name their index, checkpoints of both kinds), through
    /// `EvidenceLog`, with fixed keys so that two copies can be continued
    /// byte for byte alike.
    struct Writer {
        log: Option<EvidenceLog>,
        path: PathBuf,
        session: SessionId,
        key: SigningKey,
        seq: u64,
        /// Segment size of the logs it opens, rotated after every commit
        /// that fills one, as a session does.
        segment: Option<u64>,
        durability: Durability,
    }

    /// Opens `path`, waiting while its lock is held elsewhere: other tests
    /// of this process fork children, and a child forked while this test
    /// held the file open keeps a copy of the locked descriptor until it
    /// runs `exec` (close-on-exec), which on a loaded machine takes a
    /// while. Any other error, or a lock held for 10 s, is returned.
    fn open_quick(path: &Path) -> Result<EvidenceLog, EvidenceError> {
        open_quick_with(path, Durability::DangerOsBuffered)
    }

    fn open_quick_with(path: &Path, durability: Durability) -> Result<EvidenceLog, EvidenceError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match EvidenceLog::open_with(path, durability) {
                Err(EvidenceError::Io { source, .. })
                    if source.to_string().contains("another enforcer")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    impl Writer {
        fn new(path: &Path) -> Self {
            Self {
                log: Some(open_quick(path).unwrap()),
                path: path.to_owned(),
                session: SessionId([0; 16]),
                key: SigningKey::from_bytes(&[0; 32]),
                seq: 0,
                segment: None,
                durability: Durability::DangerOsBuffered,
            }
        }

        /// A writer that keeps the log in segments of `bytes`.
        fn segmented(path: &Path, bytes: u64) -> Self {
            let mut writer = Self::new(path);
            writer.segment = Some(bytes);
            writer.log().set_segment_bytes(Some(bytes));
            writer
        }

        fn log(&mut self) -> &mut EvidenceLog {
            let segment = self.segment;
            self.log.get_or_insert_with(|| {
                let mut log = open_quick_with(&self.path, self.durability).unwrap();
                log.set_segment_bytes(segment);
                log
            })
        }

        /// Rotates if the last commit filled the active segment.
        fn rotate_if_due(&mut self) {
            let (session, key) = (self.session, self.key.clone());
            let log = self.log();
            if log.rotation_due() {
                log.rotate(session, &key).unwrap();
            }
        }

        fn start(&mut self, seed: u8) {
            self.session = SessionId([seed; 16]);
            self.key = SigningKey::from_bytes(&[seed; 32]);
            self.seq = 0;
            let (session, key) = (self.session, self.key.clone());
            let log = self.log();
            log.set_origin(kernel_core::origin_for(session));
            let origin = log.origin().unwrap().to_owned();
            let event = Event::SessionStart {
                session,
                public_key: key.verifying_key().to_bytes(),
                policy_digest: Digest([2; 32]),
                workspace: "/ws".into(),
                confinement: Confinement::Unconfined,
                origin,
                at_ms: 1,
            };
            log.append(&Record::Event(SignedEvent::sign(&event, &key)))
                .unwrap();
            self.rotate_if_due();
        }

        fn decisions(&mut self, n: u8) {
            for _ in 0..n {
                self.seq += 1;
                let (session, key, seq) = (self.session, self.key.clone(), self.seq);
                let log = self.log();
                let record = decision(session, &key, seq, log.next_index());
                log.append(&record).unwrap();
                self.rotate_if_due();
            }
        }

        fn checkpoint(&mut self, with_frontier: bool) {
            let (session, key) = (self.session, self.key.clone());
            let log = self.log();
            if with_frontier {
                log.stage_checkpoint(session, &key);
            } else {
                let checkpoint = Checkpoint {
                    origin: log.origin().unwrap_or_default().to_owned(),
                    size: log.next_index(),
                    root: log.root(),
                };
                let note = SignedNote::sign(checkpoint.body(), ENFORCER_KEY_NAME, &key);
                log.stage(&Record::Checkpoint {
                    note: note.to_text(),
                });
            }
            log.commit().unwrap();
            self.rotate_if_due();
        }

        /// Closes the log (as a crash would: no final checkpoint).
        fn close(&mut self) {
            self.log = None;
        }

        /// Closes the log, then leaves a record cut short at the end of
        /// the file, as a crash in the middle of a write does.
        fn tear(&mut self, keep: usize) {
            // Opened first, so that an earlier tear is cut off before this
            // one: two in a row would make one whole, damaged record.
            self.log();
            self.close();
            let framed = frame_record(&decision(self.session, &self.key, 999, 999));
            let mut file = OpenOptions::new().append(true).open(&self.path).unwrap();
            file.write_all(&framed[..keep.min(framed.len() - 1)])
                .unwrap();
        }
    }

    fn decision(session: SessionId, key: &SigningKey, seq: u64, index: u64) -> Record {
        let request = kernel_core::EncodedRequest::new(kernel_core::Request {
            session,
            seq,
            nonce: [7; 16],
            action: kernel_core::CanonicalAction::new(
                kernel_core::Action::file_read(format!("/ws/{seq}")),
                None,
            )
            .unwrap(),
            deadline_ms: 100,
        });
        let body = kernel_core::ReceiptBody {
            session,
            seq,
            request_digest: request.digest(),
            decision: kernel_core::Decision::Deny,
            policies: Vec::new(),
            reasons: vec!["default deny".into()],
            policy_digest: Digest([2; 32]),
            log_index: index,
            issued_at_ms: 1,
            expires_at_ms: 2,
        };
        Record::Decision {
            request: request.bytes().to_vec(),
            receipt: kernel_core::sign_receipt(key, &body),
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Session(u8),
        Decisions(u8),
        Checkpoint { with_frontier: bool },
        Reopen,
        Tear(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            1 => (1u8..200).prop_map(Step::Session),
            4 => (1u8..8).prop_map(Step::Decisions),
            3 => any::<bool>().prop_map(|with_frontier| Step::Checkpoint { with_frontier }),
            1 => Just(Step::Reopen),
            1 => (0usize..300).prop_map(Step::Tear),
        ]
    }

    fn run(writer: &mut Writer, steps: &[Step]) {
        for step in steps {
            match step {
                Step::Session(seed) => writer.start(*seed),
                Step::Decisions(n) => writer.decisions(*n),
                Step::Checkpoint { with_frontier } => writer.checkpoint(*with_frontier),
                Step::Reopen => writer.close(),
                Step::Tear(keep) => writer.tear(*keep),
            }
        }
    }

    fn assert_same(fast: &EvidenceLog, full: &EvidenceLog) {
        assert_eq!(fast.tip(), full.tip());
        assert_eq!(fast.file_len(), full.file_len());
        assert_eq!(fast.next_index(), full.next_index());
        assert_eq!(fast.root(), full.root());
        assert_eq!(fast.origin(), full.origin());
        assert_eq!(fast.newest_checkpoint(), full.newest_checkpoint());
        assert_eq!(fast.since_checkpoint(), full.since_checkpoint());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Opening from the newest checkpoint that stores its frontier
        /// gives the enforcer the state a full verification gives (origin,
        /// tree, newest checkpoint, records since it, next index, where the
        /// file ends), on logs of several sessions, with and without
        /// checkpoints of either kind, reopened and torn along the way;
        /// and both continue the file byte for byte alike.
        #[test]
        fn opening_from_the_newest_checkpoint_equals_verifying_everything(
            steps in proptest::collection::vec(step(), 0..24),
            torn in proptest::option::of(0usize..300),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.log");
            let mut writer = Writer::new(&path);
            writer.start(1);
            run(&mut writer, &steps);
            match torn {
                Some(keep) => writer.tear(keep),
                None => writer.close(),
            }
            let copy = dir.path().join("copy.log");
            std::fs::copy(&path, &copy).unwrap();
            let fast = open_quick(&path).unwrap();
            let full = open_quick(&copy).unwrap();
            match full.opened() {
                Opened::Verified { why: FullCheck::NoIndex, .. } => {}
                other => panic!("the copy has no index: {other:?}"),
            }
            match (fast.opened(), full.tip().resumable_from) {
                (Opened::Resumed { checkpoint, records }, Some(newest)) => {
                    // The index points at the newest frontier checkpoint
                    // the log had when it was last committed to.
                    assert!(checkpoint <= newest);
                    assert_eq!(records, full.next_index());
                }
                (Opened::Verified { why: FullCheck::NoIndex, .. }, None) => {}
                other => panic!("opened {other:?}"),
            }
            assert_same(&fast, &full);
            assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&copy).unwrap());
            // Continued alike, both stay the same file.
            let mut writers = [fast, full].map(|log| Writer {
                path: PathBuf::new(),
                log: Some(log),
                session: SessionId([0; 16]),
                key: SigningKey::from_bytes(&[0; 32]),
                seq: 0,
                segment: None,
                durability: Durability::DangerOsBuffered,
            });
            for writer in &mut writers {
                writer.start(250);
                writer.decisions(3);
                writer.checkpoint(true);
                writer.decisions(2);
            }
            let [fast, full] = writers.map(|w| w.log.unwrap());
            assert_same(&fast, &full);
            drop((fast, full));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes, std::fs::read(&copy).unwrap());
            audit(&bytes, &AuditOptions::default()).unwrap();
        }
    }

    /// A log whose newest checkpoint stores its frontier, followed by
    /// decisions of a session cut short (no final checkpoint): the index
    /// record of the checkpoint and the file's bytes.
    fn crashed_log(dir: &Path) -> (PathBuf, u64) {
        let path = dir.join("evidence.log");
        let mut writer = Writer::new(&path);
        writer.start(1);
        writer.decisions(5);
        writer.checkpoint(true);
        writer.start(2);
        writer.decisions(4);
        writer.checkpoint(true);
        let index = writer.log().next_index() - 1;
        writer.start(3);
        writer.decisions(5);
        writer.close();
        (path, index)
    }

    fn refused(path: &Path) -> kernel_core::LogError {
        match EvidenceLog::open(path) {
            Err(EvidenceError::Damaged { source, .. }) => source,
            other => panic!("damage accepted: {other:?}"),
        }
    }

    fn framed(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|r| frame_record_bytes(r)).collect()
    }

    /// The records after the newest checkpoint are verified strictly at
    /// open: a flipped bit in a signature, a removed record and two
    /// swapped records each refuse the open at the record at fault, and
    /// leave the file as it was.
    #[test]
    fn tampering_after_the_newest_checkpoint_refuses_the_open_at_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, checkpoint) = crashed_log(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let records = kernel_core::split_records(&bytes).unwrap();
        let first = usize::try_from(checkpoint).unwrap() + 1;
        let last = records.len() - 1;
        let mut cases: Vec<(String, Vec<u8>, u64)> = Vec::new();
        for at in first..=last {
            let mut record = decode_record(records[at]).unwrap();
            match &mut record {
                Record::Decision { receipt, .. } => receipt.signature[17] ^= 0x08,
                Record::Event(signed) => signed.signature[40] ^= 0x01,
                _ => unreachable!("no checkpoint after the newest"),
            }
            let bytes = encode_record(&record);
            let mut flipped = records.clone();
            flipped[at] = &bytes;
            cases.push((format!("signature of {at}"), framed(&flipped), at as u64));
        }
        // A decision removed: the next decision's receipt names its old
        // index.
        let mut fewer = records.clone();
        fewer.remove(last - 2);
        cases.push((
            "a decision removed".into(),
            framed(&fewer),
            (last - 2) as u64,
        ));
        // Two decisions swapped: the first of them is out of place.
        let mut swapped = records.clone();
        swapped.swap(last - 3, last - 1);
        cases.push((
            "two decisions swapped".into(),
            framed(&swapped),
            (last - 3) as u64,
        ));
        // The session start and its first decision swapped.
        let mut swapped = records.clone();
        swapped.swap(first, first + 1);
        cases.push((
            "a session start moved".into(),
            framed(&swapped),
            first as u64,
        ));
        for (what, tampered, at) in cases {
            std::fs::write(&path, &tampered).unwrap();
            let error = refused(&path);
            assert_eq!(error.index, at, "{what}: {error}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                tampered,
                "{what}: file changed"
            );
        }
        // The untouched log opens from its newest checkpoint.
        std::fs::write(&path, &bytes).unwrap();
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(
            log.opened(),
            Opened::Resumed {
                checkpoint,
                records: records.len() as u64
            }
        );
    }

    /// A newest checkpoint whose stored frontier does not lead to its
    /// signed root refuses the open, naming that checkpoint (it does not
    /// fall back to reading everything: a full verification would refuse
    /// the same record).
    #[test]
    fn a_frontier_that_does_not_match_its_root_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, checkpoint) = crashed_log(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let mut records = kernel_core::split_records(&bytes).unwrap();
        let at = usize::try_from(checkpoint).unwrap();
        let Record::FrontierCheckpoint {
            note,
            session,
            key,
            mut frontier,
        } = decode_record(records[at]).unwrap()
        else {
            unreachable!("a frontier checkpoint")
        };
        frontier[0][0] ^= 0x01;
        let altered = encode_record(&Record::FrontierCheckpoint {
            note,
            session,
            key,
            frontier,
        });
        records[at] = &altered;
        let tampered = framed(&records);
        std::fs::write(&path, &tampered).unwrap();
        let error = refused(&path);
        assert_eq!(error.index, checkpoint);
        assert_eq!(
            error.problem,
            LogProblem::FrontierMismatch { size: checkpoint }
        );
        assert_eq!(std::fs::read(&path).unwrap(), tampered);
        assert_eq!(
            audit(&tampered, &AuditOptions::default()).unwrap_err(),
            error,
            "the auditor finds the same"
        );
    }

    /// What the open trusts: a record changed before the newest checkpoint
    /// is not read, so the enforcer continues the log; the auditor's full
    /// check finds it.
    #[test]
    fn damage_before_the_newest_checkpoint_is_left_to_the_auditor() {
        let dir = tempfile::tempdir().unwrap();
        let (path, checkpoint) = crashed_log(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let records = kernel_core::split_records(&bytes).unwrap();
        let offset: usize = records[..3].iter().map(|r| r.len() + 4).sum();
        bytes[offset + 40] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let log = EvidenceLog::open(&path).unwrap();
        assert!(matches!(log.opened(), Opened::Resumed { checkpoint: c, .. } if c == checkpoint));
        assert_eq!(
            audit(&bytes, &AuditOptions::default()).unwrap_err().index,
            3
        );
    }

    /// A log written before checkpoints stored their frontier opens by
    /// verifying every record, and says why; the first frontier checkpoint
    /// written after makes the next open read from it. A stale or
    /// damaged index, or one pointing elsewhere, falls back to verifying
    /// everything.
    #[test]
    fn an_old_log_or_a_wrong_index_is_verified_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut writer = Writer::new(&path);
        writer.start(1);
        writer.decisions(4);
        writer.checkpoint(false);
        writer.decisions(2);
        writer.close();
        let index = evidence_index::path_for(&path);
        std::fs::remove_file(&index).unwrap();
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(
            log.opened(),
            Opened::Verified {
                records: 8,
                why: FullCheck::NoIndex
            }
        );
        drop(log);
        let mut writer = Writer::new(&path);
        writer.start(2);
        writer.checkpoint(true);
        writer.close();
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(
            log.opened(),
            Opened::Resumed {
                checkpoint: 9,
                records: 10
            }
        );
        drop(log);
        let good = std::fs::read(&index).unwrap();
        let checkpoint_offset = crate::session::evidence_index::tests_support::offset(&good);
        for (what, hint) in [
            (
                "pointing at another record",
                Hint {
                    index: 8,
                    offset: 0,
                },
            ),
            (
                "naming another index",
                Hint {
                    index: 3,
                    offset: checkpoint_offset,
                },
            ),
            (
                "beyond the end",
                Hint {
                    index: 9,
                    offset: 1 << 40,
                },
            ),
        ] {
            IndexFile::open(&index).unwrap().write(hint).unwrap();
            let log = EvidenceLog::open(&path).unwrap();
            assert_eq!(
                log.opened(),
                Opened::Verified {
                    records: 10,
                    why: FullCheck::IndexMismatch
                },
                "{what}"
            );
            drop(log);
            // The open put the right hint back.
            assert_eq!(std::fs::read(&index).unwrap(), good, "{what}");
        }
        std::fs::write(&index, b"garbage").unwrap();
        let log = EvidenceLog::open(&path).unwrap();
        assert!(matches!(
            log.opened(),
            Opened::Verified {
                why: FullCheck::IndexMismatch,
                ..
            }
        ));
    }

    /// The files of a segmented log, oldest first: its closed segments,
    /// then the active one.
    fn segment_files(path: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = evidence_segments::closed_segments(path)
            .unwrap()
            .into_iter()
            .map(|c| c.path)
            .collect();
        files.push(path.to_owned());
        files
    }

    fn verify_files(
        files: &[PathBuf],
    ) -> Result<(kernel_core::AuditReport, Vec<kernel_core::SegmentSpan>), kernel_core::SegmentError>
    {
        let options = AuditOptions::default();
        let mut audit = kernel_core::SegmentedAudit::new(&options);
        for file in files {
            audit.push(&std::fs::read(file).unwrap())?;
        }
        let spans = audit.spans();
        Ok((audit.finish()?, spans))
    }

    /// Writes a log of a few sessions into segments of `bytes`, reopened
    /// between them.
    fn segmented_log(path: &Path, bytes: u64) -> Writer {
        let mut writer = Writer::segmented(path, bytes);
        writer.start(1);
        writer.decisions(6);
        writer.checkpoint(true);
        writer.close();
        writer.start(2);
        writer.decisions(7);
        writer.close();
        writer.start(3);
        writer.decisions(5);
        writer.checkpoint(true);
        writer.decisions(2);
        writer
    }

    /// A log kept in small segments, under every durability: each closed
    /// segment is named by its first record and read only; the active one
    /// begins with a checkpoint; the segments verify as one log, equal to
    /// the same records in one file; a restart opens the active segment
    /// alone and the chain continues.
    #[test]
    fn a_log_rotates_into_segments_that_verify_as_one_log() {
        for durability in [
            Durability::Synced,
            Durability::DangerOsBuffered,
            Durability::Windowed(std::time::Duration::from_millis(4)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.log");
            let mut writer = Writer::segmented(&path, 1500);
            writer.close();
            writer.durability = durability;
            writer.start(1);
            writer.decisions(6);
            writer.checkpoint(true);
            writer.close();
            writer.start(2);
            writer.decisions(7);
            writer.close();
            let closed = evidence_segments::closed_segments(&path).unwrap();
            assert!(closed.len() >= 3, "{durability:?}: {closed:?}");
            let files = segment_files(&path);
            let (report, spans) = verify_files(&files).unwrap();
            assert_eq!(spans.len(), files.len());
            for (segment, span) in closed.iter().zip(&spans) {
                assert_eq!(segment.first, span.first, "named by its first record");
                let mode = std::fs::metadata(&segment.path).unwrap().permissions();
                assert_eq!(
                    std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                    0o400
                );
            }
            let whole: Vec<u8> = files
                .iter()
                .flat_map(|f| std::fs::read(f).unwrap())
                .collect();
            assert_eq!(report, audit(&whole, &AuditOptions::default()).unwrap());
            assert_eq!(report.sessions, 2);

            // A restart reads the active segment only and continues it.
            let log = open_quick(&path).unwrap();
            assert!(
                matches!(log.opened(), Opened::Resumed { checkpoint, records }
                    if checkpoint >= spans.last().unwrap().first && records == report.records),
                "{:?}",
                log.opened()
            );
            assert_eq!(log.first_index(), spans.last().unwrap().first);
            assert_eq!(log.next_index(), report.records);
            drop(log);
            writer.start(3);
            writer.decisions(4);
            writer.close();
            let (after, _) = verify_files(&segment_files(&path)).unwrap();
            assert_eq!(after.sessions, 3);
            assert_eq!(after.origin, report.origin, "the same log");
            assert_eq!(after.root_at(report.records), Some(report.frontier.root()));
        }
    }

    /// Without its start-up index, the active segment is verified from the
    /// checkpoint it begins with, not from the log's first record (which
    /// is in another file).
    #[test]
    fn without_its_index_the_active_segment_is_verified_from_its_first_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut writer = segmented_log(&path, 1200);
        writer.close();
        std::fs::remove_file(evidence_index::path_for(&path)).unwrap();
        let (report, spans) = verify_files(&segment_files(&path)).unwrap();
        let log = open_quick(&path).unwrap();
        let first = spans.last().unwrap().first;
        assert!(first > 0);
        assert_eq!(
            log.opened(),
            Opened::Segment {
                first,
                records: report.records,
                why: FullCheck::NoIndex
            }
        );
        assert_eq!(log.tip(), report.tip());
    }

    /// A crash at each step of a rotation, and a new segment torn while it
    /// was written: the next open undoes what the rotation left, nothing
    /// acknowledged is lost, the rotation happens again, and the segments
    /// verify as one log.
    #[test]
    fn a_crash_during_a_rotation_is_undone_or_finished_at_the_next_open() {
        for step in [0u8, 1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.log");
            let mut writer = Writer::segmented(&path, 1 << 20);
            writer.start(1);
            writer.decisions(5);
            let before = std::fs::read(&path).unwrap();
            let records = writer.log().next_index();
            let key = writer.key.clone();
            let session = writer.session;
            let log = writer.log();
            if step == 0 {
                // The new segment cut short while it was written.
                std::fs::create_dir(evidence_segments::directory_for(&path)).unwrap();
                std::fs::write(
                    evidence_segments::directory_for(&path).join(".next"),
                    &frame_record(&start())[..20],
                )
                .unwrap();
            } else {
                log.crash_after = Some(step);
                let error = log.rotate(session, &key).unwrap_err();
                assert!(error.to_string().contains("crash after step"), "{error}");
            }
            writer.close();
            let log = open_quick(&path).unwrap();
            let expected = match step {
                0 | 1 => Some(Interrupted::NextDiscarded),
                2 => Some(Interrupted::LinkUndone),
                _ => None,
            };
            assert_eq!(log.interrupted(), expected, "step {step}");
            assert_eq!(
                log.next_index(),
                records + u64::from(step == 3),
                "step {step}"
            );
            assert!(
                !evidence_segments::directory_for(&path)
                    .join(".next")
                    .exists(),
                "step {step}"
            );
            if step < 3 {
                assert_eq!(std::fs::read(&path).unwrap(), before, "step {step}");
                assert!(
                    evidence_segments::closed_segments(&path)
                        .unwrap()
                        .is_empty()
                );
            } else {
                assert_eq!(log.first_index(), records);
                let closed = evidence_segments::closed_segments(&path).unwrap();
                assert_eq!(std::fs::read(&closed[0].path).unwrap(), before);
            }
            drop(log);
            // The log goes on and rotates again.
            writer.segment = Some(600);
            writer.decisions(6);
            writer.close();
            let (report, spans) = verify_files(&segment_files(&path)).unwrap();
            assert!(spans.len() >= 2, "step {step}: {spans:?}");
            assert_eq!(report.records, writer.log().next_index(), "step {step}");
        }
    }

    /// What the open refuses, naming the problem and changing nothing: an
    /// active segment removed, emptied, replaced by an older segment, or
    /// by another log.
    #[test]
    fn an_active_segment_that_does_not_fit_its_closed_segments_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut writer = segmented_log(&path, 1200);
        writer.close();
        let active = std::fs::read(&path).unwrap();
        let closed = evidence_segments::closed_segments(&path).unwrap();
        assert!(closed.len() >= 2);
        let layout = |what: &str| match EvidenceLog::open(&path) {
            Err(EvidenceError::Segments { problem, .. }) => problem,
            other => panic!("{what}: opened {other:?}"),
        };

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            layout("removed"),
            LayoutProblem::ActiveMissing { newest } if newest == closed.last().unwrap().path
        ));
        assert!(!path.exists(), "nothing created in its place");

        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            layout("emptied"),
            LayoutProblem::ActiveMissing { .. }
        ));

        let older = std::fs::read(&closed[1].path).unwrap();
        std::fs::write(&path, &older).unwrap();
        let problem = layout("older");
        assert!(
            matches!(problem, LayoutProblem::ActiveBehind { active_first, closed_first, .. }
                if active_first == closed[1].first && closed_first == closed.last().unwrap().first),
            "{problem}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), older, "left as it was");

        let other = dir.path().join("other.log");
        let mut another = Writer::new(&other);
        another.start(9);
        another.decisions(2);
        another.close();
        std::fs::copy(&other, &path).unwrap();
        assert!(matches!(
            layout("another log"),
            LayoutProblem::ActiveBehind {
                active_first: 0,
                ..
            }
        ));

        std::fs::write(&path, &active).unwrap();
        assert!(EvidenceLog::open(&path).is_ok());
    }

    /// One enforcer per log, across rotations: the log's name always names
    /// a locked file while the log is open.
    #[test]
    fn the_lock_follows_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.log");
        let mut writer = Writer::segmented(&path, 800);
        writer.start(1);
        writer.decisions(8);
        assert!(
            !evidence_segments::closed_segments(&path)
                .unwrap()
                .is_empty()
        );
        match EvidenceLog::open(&path) {
            Err(EvidenceError::Io { source, .. }) => {
                assert!(source.to_string().contains("another enforcer"), "{source}");
            }
            other => panic!("a second writer opened the log: {other:?}"),
        }
    }
}
