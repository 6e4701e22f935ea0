//! The JSON form of actions and receipts for programs in any language
//! (`kernel-enforcer ask --action-json -`), version 1.
//!
//! Documented in `docs/ACTIONS.md`. An action document is
//!
//! ```json
//! {"version": 1, "cwd": "/abs/dir", "action": {"kind": "exec", "program": "git", "args": ["status"]}}
//! ```
//!
//! What it guarantees: a document maps to exactly one typed [`Action`]
//! (never a shell string); it is read once, strictly
//! ([`kernel_core::json::parse_strict`]: duplicate keys, keys equal but
//! for letter case, and U+0000 are refused at any depth, so no field has
//! two readings); every field is checked, unknown fields and
//! unknown kinds are refused, and a `version` other than
//! [`ACTION_JSON_VERSION`] is refused, so a newer caller never has a
//! field silently ignored. Canonicalisation (absolute paths, resolved
//! programs, lowercased hosts) happens afterwards, as for every client.

use kernel_core::{
    Action, CanonicalAction, Decision, Digest, Exec, McpPeer, VerifiedReceipt, VerifyingKey,
    WriteMode, format_public_key, hex,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The version of the action and receipt JSON documents.
pub const ACTION_JSON_VERSION: u32 = 1;

/// Largest action document read from standard input, in bytes.
pub const MAX_ACTION_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// An action document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    #[serde(default)]
    cwd: Option<String>,
    action: JsonAction,
}

/// One action, tagged by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum JsonAction {
    Exec {
        program: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    FileRead {
        path: String,
    },
    FileWrite {
        path: String,
        /// UTF-8 content; its digest and size are bound into the action.
        #[serde(default)]
        content: Option<String>,
        /// Or the digest and size of content given elsewhere.
        #[serde(default)]
        content_sha256: Option<String>,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        mode: Option<String>,
    },
    FileDelete {
        path: String,
    },
    NetConnect {
        host: String,
        port: u16,
    },
    Http {
        method: String,
        url: String,
    },
    ToolCall {
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    Custom {
        custom_kind: String,
        payload: String,
    },
    McpRequest {
        method: String,
        #[serde(default = "empty_object")]
        params: serde_json::Value,
    },
    McpServerRequest {
        method: String,
        #[serde(default = "empty_object")]
        params: serde_json::Value,
    },
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A parsed action document: the action, and the directory relative paths
/// in it are taken against (if the document named one).
#[derive(Debug)]
pub struct ParsedAction {
    /// The action, not yet canonical.
    pub action: Action,
    /// The document's `cwd`, if any.
    pub cwd: Option<String>,
    /// The content of a `file_write` given inline (what a brokered write
    /// would write).
    pub content: Option<Vec<u8>>,
}

/// Why an action document is refused ([`parse_action`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionDocError {
    /// Not strict JSON (a key read twice included), or not of the
    /// document's shape: unknown fields or kinds, wrong types.
    #[error("malformed action document: {0}")]
    Malformed(#[source] serde_json::Error),
    /// No numeric `version`.
    #[error("action document has no numeric `version`")]
    NoVersion,
    /// A version this enforcer does not read.
    #[error(
        "action document version {0} is not supported (this enforcer reads version {ACTION_JSON_VERSION})"
    )]
    UnsupportedVersion(u64),
    /// A `file_write` `mode` that is not a write mode.
    #[error(
        "unknown write mode `{0}`: use overwrite, create_new, append, descriptor, symlink, hard_link, metadata or connect"
    )]
    UnknownWriteMode(String),
    /// A `content_sha256` that is not a SHA-256 digest in hex.
    #[error("`content_sha256` `{0}` is not 64 hex digits")]
    BadDigest(String),
    /// A `file_write` whose content fields do not fit its mode.
    #[error(
        "a file_write needs either `content`, or `content_sha256` and `size`, or mode `descriptor` or `connect` with neither"
    )]
    WriteContent,
}

/// Parses an action document. Refuses malformed JSON, a missing or other
/// `version`, unknown fields or kinds, and inconsistent writes.
pub fn parse_action(text: &str) -> Result<ParsedAction, ActionDocError> {
    // One strict reading (duplicate keys refused at any depth), and the
    // typed document is read from that value, never from the text again.
    let value = kernel_core::json::parse_strict(text).map_err(ActionDocError::Malformed)?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(ACTION_JSON_VERSION) => {}
        Some(v) => return Err(ActionDocError::UnsupportedVersion(v)),
        None => return Err(ActionDocError::NoVersion),
    }
    let document: Document = serde_json::from_value(value).map_err(ActionDocError::Malformed)?;
    if document.version != ACTION_JSON_VERSION {
        return Err(ActionDocError::UnsupportedVersion(u64::from(
            document.version,
        )));
    }
    let mut content = None;
    let action = match document.action {
        JsonAction::Exec {
            program,
            args,
            cwd,
            env,
        } => Action::Exec(Exec {
            program,
            args,
            cwd,
            env: env.into_iter().collect(),
        }),
        JsonAction::FileRead { path } => Action::FileRead { path },
        JsonAction::FileWrite {
            path,
            content: inline,
            content_sha256,
            size,
            mode,
        } => {
            let mode = match mode.as_deref() {
                None | Some("overwrite") => WriteMode::Overwrite,
                Some("create_new") => WriteMode::CreateNew,
                Some("append") => WriteMode::Append,
                Some("descriptor") => WriteMode::Descriptor,
                Some("symlink") => WriteMode::Symlink,
                Some("hard_link") => WriteMode::HardLink,
                Some("metadata") => WriteMode::Metadata,
                Some("connect") => WriteMode::Connect,
                Some(other) => return Err(ActionDocError::UnknownWriteMode(other.to_owned())),
            };
            let (content_sha256, size) = match (inline, content_sha256, size, mode) {
                (None, None, None, m) if m.is_unbounded() => {
                    (Digest([0; 32]), kernel_core::DESCRIPTOR_WRITE_SIZE)
                }
                (Some(text), None, None, m) if !m.is_unbounded() => {
                    let bytes = text.into_bytes();
                    let digest = Digest::of_content(&bytes);
                    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                    content = Some(bytes);
                    (digest, size)
                }
                (None, Some(digest), Some(size), m) if !m.is_unbounded() => {
                    let digest = Digest::from_hex(&digest)
                        .ok_or_else(|| ActionDocError::BadDigest(digest.clone()))?;
                    (digest, size)
                }
                _ => return Err(ActionDocError::WriteContent),
            };
            Action::FileWrite {
                path,
                content_sha256,
                size,
                mode,
            }
        }
        JsonAction::FileDelete { path } => Action::FileDelete { path },
        JsonAction::NetConnect { host, port } => Action::NetConnect { host, port },
        JsonAction::Http { method, url } => Action::Http { method, url },
        JsonAction::ToolCall { name, input } => Action::tool_call(name, &input),
        JsonAction::Custom {
            custom_kind,
            payload,
        } => Action::Custom {
            kind: custom_kind,
            payload,
        },
        JsonAction::McpRequest { method, params } => {
            Action::mcp_request(McpPeer::Agent, method, &params)
        }
        JsonAction::McpServerRequest { method, params } => {
            Action::mcp_request(McpPeer::Server, method, &params)
        }
    };
    Ok(ParsedAction {
        action,
        cwd: document.cwd,
        content,
    })
}

/// The JSON form of a canonical action (the same shape as the input).
pub fn action_to_json(action: &CanonicalAction) -> serde_json::Value {
    use serde_json::json;
    match action.action() {
        Action::Exec(exec) => json!({
            "kind": "exec",
            "program": exec.program,
            "args": exec.args,
            "cwd": exec.cwd,
            "env": exec.env.iter().cloned().collect::<BTreeMap<_, _>>(),
        }),
        Action::FileRead { path } => json!({"kind": "file_read", "path": path}),
        Action::FileWrite {
            path,
            content_sha256,
            size,
            mode,
        } => json!({
            "kind": "file_write",
            "path": path,
            "content_sha256": content_sha256.to_hex(),
            "size": size,
            "mode": mode.as_str(),
        }),
        Action::FileDelete { path } => json!({"kind": "file_delete", "path": path}),
        Action::NetConnect { host, port } => {
            json!({"kind": "net_connect", "host": host, "port": port})
        }
        Action::Http { method, url } => json!({"kind": "http", "method": method, "url": url}),
        Action::ToolCall { name, input } => json!({
            "kind": "tool_call",
            "name": name,
            "input": serde_json::from_str::<serde_json::Value>(input).unwrap_or(serde_json::Value::Null),
        }),
        Action::Custom { kind, payload } => {
            json!({"kind": "custom", "custom_kind": kind, "payload": payload})
        }
        Action::McpRequest { method, params, .. } => json!({
            "kind": action.kind().as_str(),
            "method": method,
            "params": serde_json::from_str::<serde_json::Value>(params).unwrap_or(serde_json::Value::Null),
        }),
    }
}

/// The JSON form of a verified receipt: every field of its body, the
/// signed bytes and signature (hex) so anyone can check it again with the
/// public key, and the action it answers.
pub fn receipt_to_json(
    receipt: &VerifiedReceipt,
    key: &VerifyingKey,
    action: &CanonicalAction,
) -> serde_json::Value {
    let body = receipt.body();
    serde_json::json!({
        "version": ACTION_JSON_VERSION,
        "decision": decision_name(body.decision),
        "reasons": body.reasons,
        "policies": body.policies,
        "session": body.session.to_string(),
        "seq": body.seq,
        "request_digest": body.request_digest.to_hex(),
        "policy_digest": body.policy_digest.to_hex(),
        "log_index": body.log_index,
        "issued_at_ms": body.issued_at_ms,
        "expires_at_ms": body.expires_at_ms,
        "public_key": format_public_key(key),
        "receipt": {
            "body": hex(&receipt.signed().body),
            "signature": hex(&receipt.signed().signature),
        },
        "action": action_to_json(action),
    })
}

/// `allow`, `deny` or `ask`.
pub fn decision_name(decision: Decision) -> &'static str {
    decision.as_str()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn every_kind_parses_to_its_typed_action() {
        let exec = parse_action(
            r#"{"version":1,"action":{"kind":"exec","program":"/bin/echo","args":["a b"],"env":{"K":"V"}}}"#,
        )
        .unwrap();
        assert_eq!(
            exec.action,
            Action::Exec(Exec::new("/bin/echo").arg("a b").env("K", "V"))
        );
        let write = parse_action(
            r#"{"version":1,"action":{"kind":"file_write","path":"/w/a","content":"hi"}}"#,
        )
        .unwrap();
        assert_eq!(write.action, Action::file_write("/w/a", b"hi"));
        assert_eq!(write.content.as_deref(), Some(&b"hi"[..]));
        let tool = parse_action(
            r#"{"version":1,"action":{"kind":"tool_call","name":"search","input":{"q":1}}}"#,
        )
        .unwrap();
        assert_eq!(
            tool.action,
            Action::tool_call("search", &serde_json::json!({"q":1}))
        );
        let custom = parse_action(
            r#"{"version":1,"action":{"kind":"custom","custom_kind":"deploy","payload":"x"}}"#,
        )
        .unwrap();
        assert_eq!(custom.action, Action::custom("deploy", "x"));
        for (kind, from) in [
            ("mcp_request", McpPeer::Agent),
            ("mcp_server_request", McpPeer::Server),
        ] {
            let text = format!(
                r#"{{"version":1,"action":{{"kind":"{kind}","method":"resources/read","params":{{"uri":"docs://a"}}}}}}"#
            );
            let mcp = parse_action(&text).unwrap();
            let expected = Action::mcp_request(
                from,
                "resources/read",
                &serde_json::json!({"uri": "docs://a"}),
            );
            assert_eq!(mcp.action, expected);
            let canonical = CanonicalAction::new(expected, None).unwrap();
            assert_eq!(
                action_to_json(&canonical),
                serde_json::json!({"kind": kind, "method": "resources/read", "params": {"uri": "docs://a"}})
            );
        }
    }

    #[test]
    fn unknown_versions_fields_and_kinds_are_refused() {
        let refused = |text: &str| parse_action(text).map(|p| p.action).unwrap_err();
        assert!(matches!(
            refused(r#"{"action":{"kind":"file_read","path":"/a"}}"#),
            ActionDocError::NoVersion
        ));
        assert!(matches!(
            refused(r#"{"version":2,"action":{"kind":"file_read","path":"/a"}}"#),
            ActionDocError::UnsupportedVersion(2)
        ));
        assert!(matches!(
            refused(r#"{"version":"1","action":{"kind":"file_read","path":"/a"}}"#),
            ActionDocError::NoVersion
        ));
        for bad in [
            r#"{"version":1,"action":{"kind":"file_write","path":"/a"}}"#,
            r#"{"version":1,"action":{"kind":"file_write","path":"/a","content":"x","size":1}}"#,
        ] {
            assert!(
                matches!(refused(bad), ActionDocError::WriteContent),
                "{bad}"
            );
        }
        assert!(matches!(
            refused(r#"{"version":1,"action":{"kind":"file_write","path":"/a","mode":"chmod","content":"x"}}"#),
            ActionDocError::UnknownWriteMode(mode) if mode == "chmod"
        ));
        assert!(matches!(
            refused(r#"{"version":1,"action":{"kind":"file_write","path":"/a","content_sha256":"ab","size":1}}"#),
            ActionDocError::BadDigest(digest) if digest == "ab"
        ));
        for bad in [
            r#"{"version":1,"action":{"kind":"file_read","path":"/a","follow":true}}"#,
            r#"{"version":1,"action":{"kind":"shell","command":"ls"}}"#,
            r#"{"version":1,"action":{"kind":"net_connect","host":"a","port":70000}}"#,
            r#"{"version":1,"action":{"kind":"file_read","path":"/a"},"extra":1}"#,
            // Two readings of one field: refused, wherever they are.
            r#"{"version":1,"action":{"kind":"file_read","path":"/a","path":"/etc/passwd"}}"#,
            r#"{"version":1,"version":1,"action":{"kind":"file_read","path":"/a"}}"#,
            r#"{"version":1,"action":{"kind":"exec","program":"/bin/env","env":{"A":"1","A":"2"}}}"#,
            r#"{"version":1,"action":{"kind":"tool_call","name":"t","input":{"p":{"x":1,"x":2}}}}"#,
            r#"{"version":1,"action":{"kind":"file_read","kind":"file_delete","path":"/a"}}"#,
            r#"{"version":1,"action":{"kind":"file_read","Path":"/b","path":"/a"}}"#,
            "not json",
            "",
        ] {
            assert!(
                matches!(refused(bad), ActionDocError::Malformed(_)),
                "{bad}"
            );
        }
    }
}
