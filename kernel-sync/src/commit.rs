//! Group commit: staged records become durable together, and only then
//! count as durable.

use crate::sync::Mutex;
use std::fmt;

/// A staged record's place in the log: the number of records staged up to
/// and including it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Why a commit did not make the staged records durable.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitError<E> {
    /// This commit's write or sync failed.
    Failed(E),
    /// An earlier commit failed: the log is in an unknown state and
    /// nothing more may be written to it.
    Broken,
}

struct State<T> {
    staged: Vec<T>,
    staged_count: u64,
    durable: u64,
    broken: bool,
}

/// Records staged for a log that makes all of them durable with one
/// write and sync (group commit), and which of them are durable.
///
/// Guarantees, whatever the interleaving of the threads that stage and
/// commit: a commit hands its sync exactly the records staged and not yet
/// written, each once; a ticket is reported durable only after a sync that
/// was handed its record succeeded; the durable count never goes down; and
/// once a sync fails, no later commit syncs or succeeds, so nothing is
/// ever written after a possibly torn record.
pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
}

impl<T> fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("GroupCommit")
            .field("staged", &state.staged_count)
            .field("durable", &state.durable)
            .field("broken", &state.broken)
            .finish()
    }
}

impl<T> GroupCommit<T> {
    /// A log that already holds `durable` records.
    pub fn new(durable: u64) -> Self {
        Self {
            state: Mutex::new(State {
                staged: Vec::new(),
                staged_count: durable,
                durable,
                broken: false,
            }),
        }
    }

    /// Stages `record` and returns its ticket.
    pub fn stage(&self, record: T) -> Ticket {
        let mut state = self.state.lock();
        state.staged.push(record);
        state.staged_count = state.staged_count.saturating_add(1);
        Ticket(state.staged_count)
    }

    /// Hands every staged record, in order, to `sync`, which must write
    /// and sync them; on success they are durable. With nothing staged it
    /// succeeds without calling `sync`. After a failure every later commit
    /// returns [`CommitError::Broken`] without calling `sync`; so does every
    /// commit after a `sync` that panicked. The lock is
    /// held across `sync`, so commits do not overlap and no record is
    /// staged while one runs.
    pub fn commit<E>(
        &self,
        sync: impl FnOnce(Vec<T>) -> Result<(), E>,
    ) -> Result<(), CommitError<E>> {
        let mut state = self.state.lock();
        if state.broken {
            return Err(CommitError::Broken);
        }
        if state.staged.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut state.staged);
        let covered = state.staged_count;
        // Broken until the sync says otherwise, so that a sync that panics
        // leaves the log refusing further writes.
        state.broken = true;
        match sync(records) {
            Ok(()) => {
                state.broken = false;
                state.durable = covered;
                Ok(())
            }
            Err(e) => Err(CommitError::Failed(e)),
        }
    }

    /// Whether the record of `ticket` is durable.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.0 <= self.state.lock().durable
    }

    /// Whether records wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.state.lock().staged.is_empty()
    }

    /// Whether a commit failed.
    pub fn is_broken(&self) -> bool {
        self.state.lock().broken
    }

    /// Records durable so far.
    pub fn durable(&self) -> u64 {
        self.state.lock().durable
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;

    #[test]
    fn records_become_durable_together_and_never_after_a_failure() {
        let log = GroupCommit::new(5);
        assert_eq!(
            log.commit(|_: Vec<u8>| -> Result<(), ()> { panic!("nothing to sync") }),
            Ok(())
        );
        let a = log.stage(1u8);
        let b = log.stage(2);
        assert!(!log.is_durable(a));
        let mut written = Vec::new();
        assert_eq!(
            log.commit(|r| -> Result<(), ()> {
                written = r;
                Ok(())
            }),
            Ok(())
        );
        assert_eq!(written, vec![1, 2]);
        assert!(log.is_durable(a) && log.is_durable(b));
        assert_eq!(log.durable(), 7);
        let c = log.stage(3);
        assert_eq!(
            log.commit(|_| Err("full")),
            Err(CommitError::Failed("full"))
        );
        let d = log.stage(4);
        assert_eq!(log.commit(|_| Ok::<(), &str>(())), Err(CommitError::Broken));
        assert!(!log.is_durable(c) && !log.is_durable(d));
        assert!(log.is_broken());
    }

    #[test]
    fn a_sync_that_panics_breaks_the_log() {
        let log = std::sync::Arc::new(GroupCommit::new(0));
        log.stage(1u8);
        let panicking = std::sync::Arc::clone(&log);
        let result = std::panic::catch_unwind(move || {
            panicking.commit(|_| -> Result<(), ()> { panic!("driver bug") })
        });
        assert!(result.is_err());
        assert!(log.is_broken());
        assert_eq!(log.commit(|_| Ok::<(), ()>(())), Err(CommitError::Broken));
    }
}
