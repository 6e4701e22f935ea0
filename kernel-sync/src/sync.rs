//! The one place that chooses between the standard library's locks and
//! loom's model-checked ones (`--cfg loom`).

#[cfg(loom)]
use loom::sync::{Mutex as Inner, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex as Inner, MutexGuard};

/// A mutex whose `lock` does not report poisoning: every value kept here
/// is consistent at every point where a panic could happen, so the state
/// left by a panicking holder is still valid.
pub(crate) struct Mutex<T>(Inner<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
