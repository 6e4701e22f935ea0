//! The decision endpoint of a running enforcer (`kernel-enforcer listen`,
//! `ask`) and the gateways that reach it: coding agents' hooks and the MCP
//! gateway. The translators of what they receive (shell command lines,
//! Codex patches, JSON actions, MCP tool arguments) into actions are the
//! pure crate `kernel-translate`, re-exported here under their old paths.

pub mod endpoint;
pub mod hook;
pub mod mcp;

pub use kernel_translate::{action_json, input_schema, shell};
