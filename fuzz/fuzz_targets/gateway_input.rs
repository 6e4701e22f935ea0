//! What the gateways read from an agent: hook payloads (both formats),
//! shell commands, MCP messages and action documents. Any input gets an
//! answer; with every decision a denial, nothing but housekeeping,
//! notifications and answers is forwarded either way; and what is
//! forwarded is one line of strict JSON.
#![no_main]
use kernel_enforcer::gateways::hook::{CodingAgent, map_payload};
use kernel_enforcer::gateways::mcp::{
    AGENT_HOUSEKEEPING, FromAgent, FromServer, Gateway, NOTIFICATION_PREFIX, SERVER_HOUSEKEEPING,
};
use kernel_enforcer::gateways::shell::command_actions;
use libfuzzer_sys::fuzz_target;

/// Whether a forwarded message with `method` could have passed undecided.
fn undecided(method: &serde_json::Value, housekeeping: &[&str]) -> bool {
    match method.as_str() {
        None => true,
        Some(method) => housekeeping.contains(&method) || method.starts_with(NOTIFICATION_PREFIX),
    }
}

fuzz_target!(|data: &[u8]| {
    let gateway = Gateway::new();
    let deny_all = |_: &kernel_core::Action| Err::<String, String>("no".into());
    if let FromServer::Forward(message) = gateway.from_server(data, &deny_all) {
        assert!(!message.contains('\n'));
        let message = kernel_core::json::parse_strict(&message).unwrap();
        assert!(
            undecided(&message["method"], &SERVER_HOUSEKEEPING),
            "forwarded a denied request to the agent"
        );
    }
    if let FromAgent::Forward { message, .. } = gateway.from_agent(data, &deny_all) {
        assert!(!message.contains('\n'));
        let message = kernel_core::json::parse_strict(&message).unwrap();
        assert!(
            undecided(&message["method"], &AGENT_HOUSEKEEPING),
            "forwarded a denied request to the server"
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = map_payload(CodingAgent::ClaudeCode, text);
    let _ = map_payload(CodingAgent::Codex, text);
    if let Ok(actions) = command_actions(text, Some("/w")) {
        assert!(!actions.is_empty());
        assert!(actions.len() <= kernel_enforcer::gateways::shell::MAX_ACTIONS);
    }
    let _ = kernel_enforcer::gateways::action_json::parse_action(text);
});
