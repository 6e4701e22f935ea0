//! What an agent's tool call means, as the kernel's actions: the pure
//! translators the enforcer's gateways use before anything is decided.
//!
//! - [`shell`]: a shell command line (what a coding agent's `Bash` tool
//!   runs) into the actions it would perform, or a refusal with the reason
//!   when they cannot be known before it runs.
//! - [`patch`]: a Codex `apply_patch` invocation and its patch into the
//!   files it adds, updates, moves and deletes.
//! - [`action_json`]: the versioned JSON action document of `ask` and the
//!   endpoint into an [`kernel_core::Action`].
//! - [`input_schema`]: an MCP tool's arguments checked against the input
//!   schema its server announced.
//!
//! Every function is total and fails closed: what it cannot translate
//! with certainty it refuses, and a gateway denies what is refused. The
//! crate has no I/O and no `unsafe`; it depends on `kernel-core` only for
//! the action types.
#![forbid(unsafe_code)]

pub mod action_json;
pub mod input_schema;
pub mod patch;
pub mod shell;
