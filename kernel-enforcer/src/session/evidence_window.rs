//! Evidence written before every decision takes effect and made durable
//! within a bounded window (`--evidence-window MS`).
//!
//! Each commit writes its records to the file (the OS holds them: they
//! survive a crash of the enforcer) and returns; a flusher thread makes
//! them durable with one `fdatasync` at most every half window, so a record
//! is on disk at most half a window plus one `fdatasync` (or two
//! `fdatasync`s, if longer) after it was written.
//! One sync serves every record of its half window, which is where the
//! time goes: a decision no longer waits for the disk.
//!
//! A failed `fdatasync` is sticky: every later append and commit fails,
//! so the session halts on its next record and nothing more is decided
//! (with one shared file description, a second `fdatasync` may report
//! success after the first lost data).

use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest window (the flusher's period is half of it).
pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(2);

#[derive(Debug, Default)]
struct State {
    /// When the oldest record not yet synced was committed.
    unsynced_since: Option<Instant>,
    /// The first sync that failed.
    failed: Option<String>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// An evidence file whose commits are durable within a window.
#[derive(Debug)]
pub(crate) struct Windowed {
    file: File,
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Windowed {
    /// Starts the flusher of `file`, syncing every half `window`.
    pub(crate) fn new(file: File, window: Duration) -> std::io::Result<Self> {
        let period = window.max(MIN_WINDOW) / 2;
        let shared = Arc::new(Shared::default());
        let flusher = {
            let shared = Arc::clone(&shared);
            let file = file.try_clone()?;
            std::thread::Builder::new()
                .name("evidence-flusher".into())
                .spawn(move || flush_every(&file, &shared, period))?
        };
        Ok(Self {
            file,
            shared,
            flusher: Some(flusher),
        })
    }

    fn failed(&self) -> std::io::Result<()> {
        match &self.shared.state.lock().failed {
            Some(cause) => Err(std::io::Error::other(format!(
                "an earlier sync of the evidence failed: {cause}"
            ))),
            None => Ok(()),
        }
    }

    /// Whether some committed record is not durable yet.
    #[cfg(test)]
    fn unsynced(&self) -> bool {
        self.shared.state.lock().unsynced_since.is_some()
    }
}

/// The flusher: syncs what was committed since the last sync, at most
/// `period` after it was committed; records committed while a sync runs
/// are synced right after it. So a record is durable within `period` plus
/// one sync, or two syncs, whichever is longer. Until told to stop.
fn flush_every(file: &File, shared: &Shared, period: Duration) {
    let mut state = shared.state.lock();
    loop {
        if state.stop || state.failed.is_some() {
            return;
        }
        if state.unsynced_since.is_none() {
            shared.wake.wait_for(&mut state, period);
        }
        if state.unsynced_since.take().is_some() {
            drop(state);
            let synced = file.sync_data();
            state = shared.state.lock();
            if let Err(e) = synced {
                state.failed = Some(e.to_string());
            }
        }
    }
}

impl Windowed {
    /// Appends `bytes` at the end; fails once a sync has failed.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.failed()?;
        self.file.write_all(bytes)
    }

    /// Returns at once: the flusher makes the records durable within the
    /// window.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.failed()?;
        let mut state = self.shared.state.lock();
        state.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Makes everything appended so far durable now.
    pub(crate) fn sync_now(&mut self) -> std::io::Result<()> {
        self.failed()?;
        if let Err(e) = self.file.sync_data() {
            self.shared.state.lock().failed = Some(e.to_string());
            return Err(e);
        }
        self.shared.state.lock().unsynced_since = None;
        Ok(())
    }
}

impl Drop for Windowed {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        let _ = self.file.sync_data();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_commit_returns_at_once_and_is_synced_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        let mut storage = Windowed::new(file, Duration::from_millis(20)).unwrap();
        storage.append(b"record").unwrap();
        storage.sync().unwrap();
        // Written to the file at once (another reader sees it)...
        assert_eq!(std::fs::read(&path).unwrap(), b"record");
        // ...and synced by the flusher, without another commit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.unsynced() {
            assert!(Instant::now() < deadline, "never synced");
            std::thread::sleep(Duration::from_millis(1));
        }
        // An immediate sync leaves nothing pending either.
        storage.append(b"more").unwrap();
        storage.sync().unwrap();
        storage.sync_now().unwrap();
        assert!(!storage.unsynced());
    }

    #[test]
    fn a_failed_sync_fails_every_later_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("log")).unwrap();
        let mut storage = Windowed::new(file, Duration::from_millis(20)).unwrap();
        storage.shared.state.lock().failed = Some("injected".into());
        assert!(storage.append(b"x").is_err());
        assert!(storage.sync().is_err());
        assert!(storage.sync_now().is_err());
    }
}
