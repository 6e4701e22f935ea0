//! The sticky halt.

use crate::sync::Mutex;
use std::fmt;

/// The kernel's halted state: once set it stays set, and the first cause
/// is kept. Shared by every thread that decides, performs effects or
/// halts (the serving loop, the control plane, the signal handler).
///
/// Guarantees: a `halt` that has returned is seen by every later
/// [`is_halted`](Self::is_halted) on any thread; of concurrent halts
/// exactly one reports that it was first and its cause is the one kept;
/// and nothing [`admit`](Self::admit)ted starts after a halt has
/// returned.
pub struct HaltLatch {
    cause: Mutex<Option<String>>,
}

impl Default for HaltLatch {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HaltLatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaltLatch")
            .field("cause", &self.cause())
            .finish()
    }
}

impl HaltLatch {
    /// A latch that is not halted.
    pub fn new() -> Self {
        Self {
            cause: Mutex::new(None),
        }
    }

    /// Halts with `cause`. Returns whether this call halted (false when
    /// already halted: the first cause stays).
    pub fn halt(&self, cause: &str) -> bool {
        let mut current = self.cause.lock();
        if current.is_some() {
            return false;
        }
        *current = Some(cause.to_owned());
        true
    }

    /// Starts something only while not halted: calls `start` with `item`
    /// holding the latch, so that once a [`halt`](Self::halt) has returned
    /// no `start` runs, and a halt that arrives meanwhile returns only
    /// after `start` has. Keep `start` short: begin an effect, do not wait
    /// for it. When halted, `item` is given back untouched.
    pub fn admit<A, T>(&self, item: A, start: impl FnOnce(A) -> T) -> Result<T, A> {
        let cause = self.cause.lock();
        if cause.is_some() {
            return Err(item);
        }
        Ok(start(item))
    }

    /// Whether halted.
    pub fn is_halted(&self) -> bool {
        self.cause.lock().is_some()
    }

    /// Why halted, if halted.
    pub fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_stays_and_nothing_is_admitted_after() {
        let latch = HaltLatch::new();
        assert_eq!(latch.admit(1, |n| n + 1), Ok(2));
        assert!(latch.halt("operator"));
        assert!(!latch.halt("later"));
        assert_eq!(latch.cause().as_deref(), Some("operator"));
        assert_eq!(latch.admit(1, |n| n + 1), Err(1));
    }
}
