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
    /// Effects started through [`start_effect`](Self::start_effect) and
    /// not yet finished.
    effects: Mutex<usize>,
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
            effects: Mutex::new(0),
        }
    }

    /// Starts an effect that may take a while (a system call the enforcer
    /// makes for a governed agent): `None` when halted; otherwise a guard
    /// that counts the effect as in progress until it is dropped. Counted
    /// under the same lock a halt takes, so a halt either comes first (and
    /// this returns `None`) or sees the effect in
    /// [`wait_for_effects`](Self::wait_for_effects).
    pub fn start_effect(&self) -> Option<EffectInProgress<'_>> {
        let cause = self.cause.lock();
        if cause.is_some() {
            return None;
        }
        *self.effects.lock() += 1;
        Some(EffectInProgress { latch: self })
    }

    /// Waits until no effect started through
    /// [`start_effect`](Self::start_effect) is in progress, at most
    /// `patience`; returns whether none is. Call it after a halt and
    /// before acknowledging it, so that "halted" means no effect runs.
    pub fn wait_for_effects(&self, patience: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        loop {
            if *self.effects.lock() == 0 {
                return true;
            }
            if started.elapsed() >= patience {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
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

/// An effect in progress (see [`HaltLatch::start_effect`]); it ends when
/// this is dropped.
#[must_use = "the effect counts as in progress only while this lives"]
pub struct EffectInProgress<'a> {
    latch: &'a HaltLatch,
}

impl fmt::Debug for EffectInProgress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EffectInProgress")
    }
}

impl Drop for EffectInProgress<'_> {
    fn drop(&mut self) {
        let mut effects = self.latch.effects.lock();
        *effects = effects.saturating_sub(1);
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

    /// An effect started before a halt holds up `wait_for_effects` until
    /// it ends; none starts after the halt.
    #[test]
    fn a_halt_waits_for_effects_in_progress_and_none_starts_after() {
        let latch = HaltLatch::new();
        let effect = latch.start_effect();
        assert!(effect.is_some());
        assert!(latch.halt("operator"));
        assert!(latch.start_effect().is_none());
        assert!(!latch.wait_for_effects(std::time::Duration::from_millis(5)));
        drop(effect);
        assert!(latch.wait_for_effects(std::time::Duration::ZERO));
    }
}
