//! Stack for the threads that decide.
//!
//! Cedar needs stack in proportion to a policy's depth
//! ([`super::depth`]): about 57 KiB a level to parse nested brackets and
//! 50 KiB a level to evaluate a chain of `||` in a debug build, less
//! optimised. A thread's stack is 2 MiB unless asked for, and Cedar's
//! evaluator gives up (an error, so a deny) with less than 100 KiB left, so
//! a policy with 34 chained `||` was denied by an endpoint connection
//! thread while `policy test`, on the main thread's 8 MiB, allowed it. So
//! the kernel loads no policy deeper than [`MAX_POLICY_DEPTH`], every
//! thread it starts to decide gets [`DECIDER_STACK_BYTES`]
//! ([`spawn_decider`], [`spawn_scoped_decider`]), and loading and
//! evaluating on any other thread move to such a thread when the stack
//! left there is short of what the policy set needs ([`with_stack`]). The
//! same policy then gets the same answer on every path.

use std::io;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

/// The deepest policy the kernel loads, as estimated from its text (every
/// bracket, and every operator of each precedence level along the way,
/// counts one: a chain of 200 `||` is about 210): a deeper one is refused
/// at load, by `policy check` as by the enforcer.
pub const MAX_POLICY_DEPTH: usize = 256;

/// Stack allowed for one level of a policy in Cedar's parser, validator
/// or evaluator: over twice the most measured (57 KiB, parsing nested
/// sets in a debug build).
pub const STACK_PER_LEVEL: usize = 128 * 1024;

/// What Cedar keeps free (it refuses to recurse with less left), and room
/// for the frames between the caller and Cedar.
const STACK_RESERVE: usize = 1024 * 1024;

/// Stack of every thread the enforcer starts to decide (reserved address
/// space; only what is used is committed): room for a policy set at
/// [`MAX_POLICY_DEPTH`] and the thread's own frames.
pub const DECIDER_STACK_BYTES: usize = 40 * 1024 * 1024;

const _: () = assert!(DECIDER_STACK_BYTES >= stack_needed(MAX_POLICY_DEPTH) + 4 * 1024 * 1024);

/// The stack that loading or evaluating a policy set of `depth` needs.
pub(crate) const fn stack_needed(depth: usize) -> usize {
    depth
        .saturating_add(2)
        .saturating_mul(STACK_PER_LEVEL)
        .saturating_add(STACK_RESERVE)
}

/// Starts a thread named `name` with [`DECIDER_STACK_BYTES`] of stack: for
/// every thread that evaluates or loads policy.
pub fn spawn_decider<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .name(name.to_owned())
        .stack_size(DECIDER_STACK_BYTES)
        .spawn(f)
}

/// [`spawn_decider`] in a [`std::thread::scope`].
pub fn spawn_scoped_decider<'scope, 'env, F, T>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    f: F,
) -> io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    Builder::new()
        .name(name.to_owned())
        .stack_size(DECIDER_STACK_BYTES)
        .spawn_scoped(scope, f)
}

/// Runs `f` on this thread if it has `needed` bytes of stack left (so a
/// decider thread runs it in place), else on a decider thread, waiting for
/// it. A panic in `f` is a panic here either way. Fails only when that
/// thread cannot be started.
pub(crate) fn with_stack<T: Send>(needed: usize, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    if stacker::remaining_stack().is_some_and(|left| left >= needed) {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let handle = spawn_scoped_decider(scope, "policy", f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn a_decider_thread_has_the_stack_for_the_deepest_policy() {
        let left = spawn_decider("test", stacker::remaining_stack)
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert!(left >= stack_needed(MAX_POLICY_DEPTH), "{left}");
    }

    #[test]
    fn short_stack_moves_the_work_to_a_decider_thread() {
        let here = std::thread::current().id();
        let moved = with_stack(usize::MAX, || std::thread::current().id()).unwrap();
        assert_ne!(moved, here);
        let stayed = with_stack(0, || std::thread::current().id()).unwrap();
        assert_eq!(stayed, here);
    }
}
