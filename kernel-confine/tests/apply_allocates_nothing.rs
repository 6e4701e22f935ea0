//! `Prepared::apply` runs in a child between `fork` and `exec`, where a
//! lock another thread of the parent held at the fork (the allocator's,
//! say) is never released: it must not allocate or free memory on any
//! path, success or failure. Counted here with an allocator that notes
//! every call made on the applying thread.
#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only counts and delegates"
)]
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use kernel_confine::{Prepared, Profile};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Allocator calls made on this thread (a constant initialiser and no
    /// destructor: reading it allocates nothing).
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method delegates to `System` with the caller's arguments,
// so `System`'s guarantees hold; the count is a thread-local `Cell`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.with(|calls| calls.set(calls.get() + 1));
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CALLS.with(|calls| calls.set(calls.get() + 1));
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.with(|calls| calls.set(calls.get() + 1));
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocator calls `f` makes on this thread, and what it returned.
fn counted<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = CALLS.with(Cell::get);
    let result = f();
    (CALLS.with(Cell::get) - before, result)
}

#[test]
fn applying_allocates_nothing_whether_it_succeeds_or_fails() {
    if kernel_confine::check_support().is_err() {
        eprintln!("SKIPPED: this system cannot confine (Landlock ABI 6 and seccomp needed)");
        return;
    }
    let workspace = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let profile = Profile::new(workspace.path(), scratch.path(), "/bin/true".as_ref());
    let mut prepared = Prepared::new(&profile).unwrap();
    // Landlock and seccomp confine the calling thread: a thread of its own,
    // so that the test harness stays unconfined.
    let (first, second) = std::thread::spawn(move || {
        let (calls, applied) = counted(|| prepared.apply());
        let first = (calls, applied.map_err(|e| e.raw_os_error()));
        // A second application fails (it was applied already): the
        // failure path, which used to build an error message.
        let (calls, applied) = counted(|| prepared.apply());
        let second = (calls, applied.map_err(|e| e.raw_os_error()));
        (first, second)
    })
    .join()
    .unwrap();
    assert_eq!(first, (0, Ok(())), "applying allocated, or failed");
    assert_eq!(second, (0, Err(Some(libc::EPERM))), "failing allocated");
}
