//! What the gateways read from an agent: hook payloads (both formats),
//! shell commands, MCP messages and action documents. Any input gets an
//! answer; a `tools/call` is forwarded only if the decision allowed it;
//! and what is forwarded is one line of strict JSON.
#![no_main]
use kernel_enforcer::hook::{Agent, map_payload, parse_command};
use kernel_enforcer::mcp::{FromAgent, FromServer, Gateway};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let gateway = Gateway::new();
    if let FromServer::Forward(message) = gateway.from_server(data) {
        assert!(!message.contains('\n'));
        assert!(kernel_core::json::parse_strict(&message).is_ok());
    }
    let deny_all = |_: &str, _: &serde_json::Value| Err::<String, String>("no".into());
    if let FromAgent::Forward { message, .. } = gateway.from_agent(data, &deny_all) {
        assert!(!message.contains('\n'));
        let message = kernel_core::json::parse_strict(&message).unwrap();
        assert_ne!(message["method"], "tools/call", "forwarded a denied call");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = map_payload(Agent::ClaudeCode, text);
    let _ = map_payload(Agent::Codex, text);
    if let Ok(argv) = parse_command(text) {
        assert!(!argv.is_empty());
    }
    let _ = kernel_enforcer::action_json::parse_action(text);
});
