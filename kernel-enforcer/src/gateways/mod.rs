//! The decision endpoint of a running enforcer (`kernel-enforcer listen`,
//! `ask`) and the gateways that reach it: coding agents' hooks, the MCP
//! gateway, and the translators of what they receive (shell command lines,
//! JSON actions, MCP tool arguments) into actions.

pub mod action_json;
pub mod endpoint;
pub mod hook;
pub mod input_schema;
pub mod mcp;
pub mod shell;
