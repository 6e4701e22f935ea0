//! Machine-checked arguments about the agent safety kernel.
//!
//! Tests elsewhere check examples; this crate checks claims over whole
//! state spaces, against the real code:
//!
//! - **Fail-closed, in SMT** (feature `smt`, needs the system's Z3): the
//!   decision combinator [`kernel_core::decide`] and receipt verification
//!   [`kernel_core::verify_receipt`] are encoded for Z3 (module `smt`), the
//!   encoding is checked to agree with the real functions at every point
//!   of the finite [`abstraction`] (and, for times, at every boundary), and
//!   Z3 proves that no assignment with an error, a halt, a passed deadline
//!   or a failed check of the receipt yields `Allow` or a permit. Z3 also
//!   finds a permit (the proof is not vacuous) and a counterexample for
//!   each deliberately broken encoding (`smt::Mutation`).
//! - **The protocol, model-checked** ([`protocol`]): a
//!   [stateright](https://docs.rs/stateright) model of client, enforcer and
//!   evidence file over a network that loses, duplicates and reorders
//!   messages, with enforcer crashes and restarts, evidence faults and the
//!   operator's halt. Breadth-first search checks that no permit exists
//!   without a durable allow record, that no allow leaves the enforcer
//!   after a halt (so a permit outlives a halt by at most its validity),
//!   and that a replayed receipt or request never yields a second permit;
//!   it also finds a permit, and finds a counterexample for each injected
//!   bug ([`protocol::Bug`]).
//!
//! The abstraction of the combinator's inputs is itself checked: a
//! property test shows the decision of any input equals the decision at
//! its abstraction.
#![forbid(unsafe_code)]

pub mod abstraction;
pub mod protocol;
#[cfg(feature = "smt")]
pub mod smt;

pub use abstraction::{DECISION_FACTS, DECISIONS, DecisionPoint, ReceiptPoint, TIME_SAMPLES};
