//! The enforcer of the agent safety kernel.
//!
//! A separate process that alone holds the ed25519 signing key, evaluates
//! Cedar policies (with a floor that protects its own assets), fails
//! closed, and makes every decision durable in an evidence file before it
//! replies. The `kernel-enforcer` binary is the way to run it; this library
//! exposes its parts for tests, benchmarks and tools.
//!
//! The policy engine itself (loading, the floor, evaluation, `policy
//! test|explain|diff|suggest`) is the `kernel-policy` crate; this one is
//! what runs around it, one module per job:
//!
//! - [`session`]: one session: the frame handler, its serving loop and
//!   control socket, the evidence store, the signing key, and the broker
//!   that performs allowed effects;
//! - [`governed`]: supervised mode (`run`) and governed mode (`run
//!   --govern-syscalls`): the agent started confined, its system calls
//!   decided, its programs verified, its egress proxied;
//! - [`gateways`]: the decision endpoint (`listen`, `ask`) and what
//!   reaches it: hooks of coding agents, the MCP gateway, shell command
//!   lines and JSON actions;
//! - [`cli`]: the command line.
//!
//! Imports go one way: `cli` uses everything, `gateways` and `governed`
//! use `session`, and `session` uses none of them; the code that runs in a
//! child between `fork` and `exec` is in one private module of its own.
//!
//! What it refuses: policy sets that do not validate against the kernel's
//! schema, unknown annotations, reserved or duplicate policy ids; frames
//! over the size limit, malformed, out of order, for another session, or
//! replayed; and, once halted, everything.
//!
//! Guarantee on any input: the frame handler does not panic; if it ever
//! did, the session halts and denies everything after.

pub mod cli;
#[cfg(debug_assertions)]
mod fault;
pub mod gateways;
pub mod governed;
mod pre_exec;
pub mod session;
