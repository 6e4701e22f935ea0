//! What the gateways read from an agent: hook payloads (both formats),
//! shell commands, MCP messages and action documents. Any input gets an
//! answer, and a `tools/call` is forwarded only if the decision allowed it.
#![no_main]
use kernel_enforcer::hook::{Agent, map_payload, parse_command};
use kernel_enforcer::mcp::{FromAgent, from_agent, from_server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = map_payload(Agent::ClaudeCode, text);
    let _ = map_payload(Agent::Codex, text);
    if let Ok(argv) = parse_command(text) {
        assert!(!argv.is_empty());
    }
    let _ = kernel_enforcer::action_json::parse_action(text);
    let _ = from_server(text);
    let deny_all = |_: &str, _: &serde_json::Value| Err::<String, String>("no".into());
    if let FromAgent::Forward { id: Some(_) } = from_agent(text, &deny_all) {
        let message: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        assert_ne!(message["method"], "tools/call", "forwarded a denied call");
    }
});
