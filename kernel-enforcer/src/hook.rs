//! Pre-tool-use hook adapters for coding agents (Claude Code's
//! `PreToolUse` and Codex's `PreToolUse` hooks): a tool call described in
//! the agent's JSON becomes a typed action, is decided by a running
//! enforcer through the [decision endpoint](crate::endpoint), and the
//! verdict is printed in the agent's format.
//!
//! The shapes, from the agents' public hook documentation (both agents use
//! the same envelope), are in `docs/GATEWAYS.md`. In short: standard input
//! carries `{"hook_event_name": "PreToolUse", "tool_name": ..,
//! "tool_input": {..}, "cwd": .., "session_id": .., ..}`; exit status 2
//! blocks the call and shows standard error to the model; exit status 0
//! lets the agent go on with its own permission rules.
//!
//! What it guarantees: a tool call is let through only on a verified
//! `Allow` receipt for exactly the action it was mapped to. The payload is
//! read strictly ([`kernel_core::json::parse_strict`]): duplicate keys,
//! keys equal but for letter case, and U+0000 are refused at any depth, so
//! the agent cannot read a field other than the one decided. A `Bash`
//! command becomes an `Exec` with an argument vector, never a shell
//! string; a command the shell would not run as exactly that vector (a
//! pipe, a list, a redirection, a substitution, an expansion, a glob, an
//! assignment) is blocked with the reason. Everything else that goes wrong
//! (malformed input, no enforcer, a timeout, an answer that does not
//! verify) blocks too. An allow is never turned into the agent's own
//! "allow" (which would skip its permission prompts): the hook only ever
//! vetoes.
//!
//! What it cannot guarantee: the agent runs the tool itself after the
//! hook, so the hook is only as strong as the agent's honouring of it. For
//! an agent that must not be able to skip it, run the agent under
//! `kernel-enforcer run` (OS confinement) as well.

use crate::endpoint::{self, AskError, AskOptions};
use kernel_core::{Action, Verified};

/// Which agent's hook format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Claude Code's `PreToolUse` hook.
    ClaudeCode,
    /// Codex's `PreToolUse` hook.
    Codex,
}

/// Largest hook payload read, in bytes.
pub const MAX_HOOK_INPUT: u64 = 4 * 1024 * 1024;

/// What the hook prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookVerdict {
    /// Exit status: 0 to let the call go on, 2 to block it.
    pub exit: u8,
    /// Standard output (JSON in the agent's format).
    pub stdout: String,
    /// Standard error (the reason shown to the model when blocked).
    pub stderr: String,
}

impl HookVerdict {
    fn allow(agent: Agent, detail: &str) -> Self {
        let stdout = match agent {
            Agent::ClaudeCode => serde_json::json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "additionalContext": format!("agent-kernel: {detail}"),
                }
            })
            .to_string(),
            // Codex reads an empty object as "no objection".
            Agent::Codex => "{}".to_owned(),
        };
        Self {
            exit: 0,
            stdout,
            stderr: String::new(),
        }
    }

    /// Blocks the tool call, giving `reason` to the model.
    pub fn blocked(reason: &str) -> Self {
        let reason = format!("agent-kernel: {reason}");
        Self {
            exit: 2,
            stdout: serde_json::json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            })
            .to_string(),
            stderr: reason,
        }
    }
}

/// Decides one hook payload: maps it to an action, asks the enforcer, and
/// returns the verdict to print. Total: every input gets a verdict, and
/// every failure blocks.
pub fn decide(agent: Agent, input: &str, options: &AskOptions) -> HookVerdict {
    let (action, cwd) = match map_payload(agent, input) {
        Ok(mapped) => mapped,
        Err(reason) => return HookVerdict::blocked(&format!("blocked: {reason}")),
    };
    let action = match endpoint::canonicalize(action, cwd.as_deref()) {
        Ok(action) => action,
        Err(e) => return HookVerdict::blocked(&format!("blocked: {e}")),
    };
    match endpoint::ask(options, action, None) {
        Ok(answer) => match answer.verified {
            Verified::Permit(permit) => HookVerdict::allow(
                agent,
                &format!(
                    "allowed by the kernel (receipt at log index {})",
                    permit.receipt().body().log_index
                ),
            ),
            Verified::Denied(receipt) | Verified::Ask(receipt) => {
                let body = receipt.body();
                let reasons = if body.reasons.is_empty() {
                    "no policy allows it".to_owned()
                } else {
                    body.reasons.join("; ")
                };
                HookVerdict::blocked(&format!(
                    "denied by policy: {reasons} (receipt at log index {})",
                    body.log_index
                ))
            }
        },
        Err(e @ AskError::NoEnforcer { .. }) => {
            HookVerdict::blocked(&format!("blocked, fail closed: {e}"))
        }
        Err(e) => HookVerdict::blocked(&format!("blocked, fail closed: {e}")),
    }
}

/// Maps a hook payload to an action and the directory it runs in.
pub fn map_payload(agent: Agent, input: &str) -> Result<(Action, Option<String>), String> {
    let payload = kernel_core::json::parse_strict(input)
        .map_err(|e| format!("malformed hook payload: {e}"))?;
    let event = payload
        .get("hook_event_name")
        .and_then(serde_json::Value::as_str);
    if event.is_some_and(|event| event != "PreToolUse") {
        return Err(format!(
            "this hook handles `PreToolUse` events, not `{}`",
            event.unwrap_or_default()
        ));
    }
    let tool = payload
        .get("tool_name")
        .and_then(serde_json::Value::as_str)
        .ok_or("hook payload has no `tool_name`")?;
    let input = payload
        .get("tool_input")
        .filter(|input| input.is_object())
        .ok_or("hook payload has no `tool_input` object")?;
    let cwd = payload
        .get("cwd")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let text = |field: &str| {
        input
            .get(field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("`{tool}` input has no `{field}` string"))
    };
    let action = match (agent, tool) {
        (_, "Bash") => {
            let argv = match input.get("command") {
                Some(serde_json::Value::String(command)) => {
                    let mut actions = crate::shell::command_actions(command, cwd.as_deref())?;
                    match (actions.pop(), actions.is_empty()) {
                        (Some(action), true) => return Ok((action, cwd)),
                        _ => return Err(format!("`{command}` does more than one thing")),
                    }
                }
                // Codex may pass the argument vector itself.
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("`Bash` command array holds a non-string")?,
                _ => return Err("`Bash` input has no `command`".into()),
            };
            let Some((program, args)) = argv.split_first() else {
                return Err("empty command".into());
            };
            let mut exec = kernel_core::Exec::new(program.clone()).args(args.iter().cloned());
            exec.cwd = cwd.clone();
            Action::Exec(exec)
        }
        (Agent::ClaudeCode, "Read") => Action::file_read(text("file_path")?),
        (Agent::ClaudeCode, "Write") => {
            Action::file_write(text("file_path")?, text("content")?.as_bytes())
        }
        // The edit's result is not known before it runs: decided as a
        // write of unknown content (a policy bounding the size denies it).
        (Agent::ClaudeCode, "Edit" | "MultiEdit") => {
            Action::file_write_descriptor(text("file_path")?)
        }
        (Agent::ClaudeCode, "NotebookEdit") => {
            Action::file_write_descriptor(text("notebook_path")?)
        }
        (Agent::ClaudeCode, "WebFetch") => Action::http("GET", text("url")?),
        (_, name) => Action::tool_call(name, input),
    };
    Ok((action, cwd))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn claude_code_tools_map_to_typed_actions() {
        let (action, cwd) = map_payload(
            Agent::ClaudeCode,
            r#"{"hook_event_name":"PreToolUse","cwd":"/w","tool_name":"Bash","tool_input":{"command":"git status"}}"#,
        )
        .unwrap();
        assert_eq!(
            action,
            Action::Exec(kernel_core::Exec::new("git").arg("status").cwd("/w"))
        );
        assert_eq!(cwd.as_deref(), Some("/w"));
        let (action, _) = map_payload(
            Agent::ClaudeCode,
            r#"{"tool_name":"Write","tool_input":{"file_path":"/w/a","content":"x"}}"#,
        )
        .unwrap();
        assert_eq!(action, Action::file_write("/w/a", b"x"));
        let (action, _) = map_payload(
            Agent::ClaudeCode,
            r#"{"tool_name":"mcp__fs__read","tool_input":{"path":"/w/a"}}"#,
        )
        .unwrap();
        assert_eq!(
            action,
            Action::tool_call("mcp__fs__read", &serde_json::json!({"path":"/w/a"}))
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for input in [
            "",
            "not json",
            "[]",
            r#"{"tool_input":{}}"#,
            r#"{"tool_name":"Bash"}"#,
            r#"{"tool_name":"Bash","tool_input":{}}"#,
            r#"{"tool_name":"Bash","tool_input":"ls"}"#,
            r#"{"tool_name":"Read","tool_input":{"path":"/a"}}"#,
            r#"{"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
            // Two readings of one payload: refused, wherever they are.
            r#"{"tool_name":"Read","tool_name":"Bash","tool_input":{"command":"ls","file_path":"/a"}}"#,
            r#"{"tool_name":"Bash","tool_input":{"command":"ls","command":"rm -rf /"}}"#,
            r#"{"tool_name":"Write","tool_input":{"file_path":"/w/a","content":"x","meta":{"p":1,"p":2}}}"#,
            r#"{"tool_name":"Bash","tool_input":{"command":"ls","Command":"rm -rf /"}}"#,
            r#"{"hook_event_name":"PreToolUse","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
        ] {
            assert!(
                map_payload(Agent::ClaudeCode, input).is_err(),
                "accepted {input:?}"
            );
        }
    }
}
