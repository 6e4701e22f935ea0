//! The enforcer of the agent safety kernel.
//!
//! A separate process that alone holds the ed25519 signing key, evaluates
//! Cedar policies (with a floor that protects its own assets), fails
//! closed, and makes every decision durable in an evidence file before it
//! replies. The `kernel-enforcer` binary is the way to run it; this library
//! exposes its parts for tests, benchmarks and tools.
//!
//! What it refuses: policy sets that do not validate against the kernel's
//! schema, unknown annotations, reserved or duplicate policy ids; frames
//! over the size limit, malformed, out of order, for another session, or
//! replayed; and, once halted, everything.
//!
//! Guarantee on any input: the frame handler does not panic; if it ever
//! did, the session halts and denies everything after.

pub mod action_json;
mod audit_cli;
pub mod broker;
mod cli_impl;
pub mod config;
pub mod control;
pub mod describe;
pub mod egress;
pub mod endpoint;
pub mod evidence;
mod evidence_index;
mod evidence_segments;
mod evidence_window;
pub mod exec_trace;
mod gateway_cli;
pub mod handoff;
pub mod hook;
mod init;
pub mod input_schema;
mod instances;
pub mod keys;
pub mod mcp;
pub mod notify;
pub mod policy;
mod policy_cli;
pub mod resolve;
pub mod serve;
pub mod session;
pub mod shell;
pub mod supervise;

/// The command line.
pub mod cli {
    pub use crate::cli_impl::main;
}
