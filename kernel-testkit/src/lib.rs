//! What the workspace's tests, benchmarks and fuzz targets share, in one
//! place instead of a copy per file (as rustls has `rustls-test`).
//!
//! It is test code: never published, and only ever a dev-dependency (the
//! fuzz crate, itself a test harness, is the one exception). It holds no
//! key, grants nothing and bypasses nothing: every fixture drives the real
//! enforcer binary, or a real `Session` of the enforcer's library through
//! the same public API the binary uses. A fixture that fails
//! fails the test that uses it, with a message saying what was expected.
//!
//! - [`Fixture`]: a temporary workspace, policy and evidence file, and the
//!   enforcer run over them: spawned by the client
//!   ([`Fixture::spawn`]), as `listen` ([`Listener`]), governed
//!   ([`Fixture::governed`]), or hand-driven frame by frame
//!   ([`RawClient`]); the operator's commands on its control socket
//!   ([`operator`]).
//! - Waiting for a condition, never for a fixed time ([`wait_for`],
//!   [`wait_until_asleep`], [`output_within`]): a test that sleeps and
//!   then asserts fails on a loaded machine, one that polls until a
//!   deadline does not.
//! - Frames a client sends ([`authorize_frame`], [`read_frame`]) and the
//!   evidence read back ([`entries`], [`log`]) without checking
//!   signatures: the tests audit the log separately.
//! - A seeded generator ([`Seeded`]) and the seed a run takes from its
//!   environment ([`seed_from_env`]), so that a failing schedule can be
//!   replayed.
//! - With the `session` feature: sessions in the test's own process over
//!   evidence kept in memory, which can be made to fail
//!   (`session::InProcess`, `session::Memory`). Off by default, so a
//!   crate whose tests only run the binary does not build the enforcer's
//!   library for them.
//!
//! ```no_run
//! use kernel_testkit::{fixture, wait_for};
//! use std::time::Duration;
//!
//! let f = fixture(r#"permit (principal, action == Action::"file_read", resource in Workspace::"root");"#);
//! std::fs::write(f.workspace.join("a"), "x").unwrap();
//! let kernel = f.spawn();
//! assert!(kernel.read_file(&f.ws("a")).is_ok());
//! wait_for("the first decision on record", Duration::from_secs(10), || {
//!     !kernel_testkit::log(&f.evidence).is_empty()
//! });
//! ```
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test kit fails the test that uses it, with a message"
)]

mod enforcer;
mod evidence;
mod frames;
pub mod policies;
mod raw;
mod seed;
#[cfg(feature = "session")]
pub mod session;
mod wait;

pub use enforcer::{
    Call, Fixture, Listener, assert_unchanged, audit_inspect, audit_verify, control_path, enforcer,
    fixture, fixture_in, keygen, listen_command, operator, plant_ssh_key, run_enforcer, said, text,
};
pub use evidence::{Entry, entries, log, pinned, read_path};
pub use frames::{authorize_frame, broker_frame, hello_frame, read_frame, request, request_until};
pub use raw::RawClient;
pub use seed::{Seeded, seed_from_env};
pub use wait::{
    Reaped, alive, asleep, ended, holds_within, output_with_input, output_within, signal,
    this_thread, wait_for, wait_until_asleep, works_in,
};
