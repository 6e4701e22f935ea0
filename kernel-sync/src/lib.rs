//! The enforcer's shared state, in pieces small enough to model-check.
//!
//! Several threads of the enforcer touch the same state: the serving loop
//! decides batches of requests, the control plane halts, approves,
//! rejects and reloads, a signal handler halts, and the idle tick expires
//! approvals. Each piece of state they share is one of these types, and
//! each keeps its guarantee by itself, whatever the interleaving:
//!
//! - [`HaltLatch`]: sticky halt, first cause kept, seen by every thread
//!   once set;
//! - [`GroupCommit`]: a record is reported durable only after a sync that
//!   covered it succeeded, and nothing is written after a failed sync;
//! - [`Pending`]: each request waiting for an operator gets exactly one
//!   final answer (approval, rejection, expiry or halt), and the table
//!   never holds more than its capacity;
//! - [`Grants`]: a standing grant of `n` uses allows at most `n` times;
//! - [`RateCounters`]: a `@limit("N/period")` policy allows at most `N`
//!   times in any period.
//!
//! The crate has no dependencies. Built with `RUSTFLAGS="--cfg loom"` its
//! locks are [loom](https://docs.rs/loom)'s, and `tests/loom.rs` checks
//! every guarantee above under every interleaving of two or three threads:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p kernel-sync --test loom
//! ```
#![forbid(unsafe_code)]

mod approvals;
mod commit;
mod halt;
mod rate;
mod sync;

pub use approvals::{Grants, Pending};
pub use commit::{CommitError, GroupCommit, Ticket};
pub use halt::{EffectInProgress, HaltLatch};
pub use rate::{Limit, RateCounters};
