//! The coding agents' hook configuration: adding the kernel's
//! `PreToolUse` hook to a settings file without disturbing anything else
//! in it, and Codex's record that the hook is trusted.
//!
//! Both agents read the same shape (Claude Code's `settings.json`,
//! Codex's `hooks.json`):
//!
//! ```json
//! {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
//!   {"type": "command", "command": "/usr/local/bin/kernel-enforcer hook claude-code --socket S",
//!    "onFailure": "block"}]}]}}
//! ```
//!
//! Codex runs a hook from a user's file only once it is trusted: its user
//! configuration (`config.toml`) holds, under
//! `[hooks.state."<hooks.json path>:pre_tool_use:<group>:<handler>"]`, a
//! `trusted_hash` of the hook's normalised form, and a hook whose hash is
//! missing or differs is skipped without a word (`codex exec`) or offered
//! for review (`/hooks` in the interactive client). [`codex_trust_hash`]
//! computes that hash as Codex does: SHA-256 of the compact JSON, keys
//! sorted, of `{"event_name": "pre_tool_use", "matcher": .., "hooks":
//! [{"type": "command", "command": .., "timeout": .., "async": false}]}`.

use super::json_doc;
use crate::gateways::hook::CodingAgent;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Seconds Codex gives the hook before it gives up on it (written into the
/// hook, so that its trusted hash does not depend on Codex's default).
pub(crate) const CODEX_HOOK_TIMEOUT_SECS: u64 = 30;

impl CodingAgent {
    /// The hook handler as it is written.
    fn handler(self, command: &str) -> Value {
        match self {
            // `onFailure: block`: a hook that crashes, is missing or
            // times out blocks the call instead of letting it run.
            Self::ClaudeCode => {
                json!({"type": "command", "command": command, "onFailure": "block"})
            }
            Self::Codex => {
                json!({"type": "command", "command": command, "timeout": CODEX_HOOK_TIMEOUT_SECS})
            }
        }
    }

    fn group(self, command: &str) -> Value {
        json!({"matcher": "*", "hooks": [self.handler(command)]})
    }

    /// A settings file holding the kernel's hook and nothing else.
    pub(crate) fn fresh(self, command: &str) -> Value {
        json!({"hooks": {"PreToolUse": [self.group(command)]}})
    }
}

/// A settings file with the kernel's hook in it.
#[derive(Debug)]
pub(crate) struct HookEdit {
    /// The new text, or `None` when the file already holds the hook as it
    /// should be.
    pub(crate) text: Option<String>,
    /// Where the hook is: its group's index in `PreToolUse` and its index
    /// in the group (Codex keys its trust by them).
    pub(crate) position: (usize, usize),
    /// The file holds the kernel's hook and nothing else.
    pub(crate) only_hook: bool,
}

/// The program, adapter and `--socket` of a hook command, when it runs the
/// kernel's hook adapter `adapter`.
fn kernel_hook_socket(command: &str, adapter: &str) -> Option<Option<String>> {
    let words = shell_words::split(command).ok()?;
    let (program, rest) = words.split_first()?;
    if Path::new(program).file_name()? != "kernel-enforcer"
        || rest.first().map(String::as_str) != Some("hook")
        || rest.get(1).map(String::as_str) != Some(adapter)
    {
        return None;
    }
    let mut socket = None;
    let mut words = rest.iter().skip(2);
    while let Some(word) = words.next() {
        if word == "--socket" {
            socket = words.next().cloned();
        } else if let Some(value) = word.strip_prefix("--socket=") {
            socket = Some(value.to_owned());
        }
    }
    Some(socket)
}

/// Why the kernel's hook cannot be added to an agent's settings file.
/// Each message names the file and ends with what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookEditError {
    /// The file is not strict JSON (a key given twice included).
    #[error(
        "`{}` is not valid JSON ({source}): fix it or move it away, then run init again",
        .file.display()
    )]
    NotJson {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but not an object.
    #[error(
        "`{}`: the file is not a JSON object; fix it or move it away, then run init again",
        .0.display()
    )]
    NotObject(PathBuf),
    /// `hooks` is not an object.
    #[error(
        "`{}`: `hooks` is not an object; fix it or move it away, then run init again",
        .0.display()
    )]
    HooksNotObject(PathBuf),
    /// `hooks.PreToolUse` is not an array.
    #[error(
        "`{}`: `hooks.PreToolUse` is not an array; fix it or move it away, then run init again",
        .0.display()
    )]
    PreToolUseNotArray(PathBuf),
    /// A group found holding the kernel's hook is no longer there.
    #[error("`{}`: internal; fix it or move it away, then run init again", .0.display())]
    Internal(PathBuf),
    /// The kernel's hook is there for another enforcer.
    #[error(
        "`{}` already runs the kernel's {agent} hook with another enforcer ({}): the agent would \
         ask both on every tool call. Remove that hook from the file (or run init for that \
         project's settings instead), then run init again",
        .file.display(),
        match .socket {
            Some(socket) => format!("socket `{socket}`"),
            None => "its socket from AGENT_KERNEL_ENDPOINT".to_owned(),
        }
    )]
    OtherEnforcer {
        file: PathBuf,
        /// The agent's name (`claude-code`, `codex`).
        agent: &'static str,
        /// The other hook's socket; `None`: taken from the environment.
        socket: Option<String>,
    },
    /// The edited settings could not be written as JSON.
    #[error("cannot write `{}` as JSON: {source}", .file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Why Codex's trust in the hook cannot be recorded in its configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodexTrustError {
    /// The configuration is not TOML.
    #[error(
        "`{}` is not valid TOML ({source}): fix it, then run init again",
        .file.display()
    )]
    NotToml {
        file: PathBuf,
        #[source]
        source: toml_edit::TomlError,
    },
    /// `hooks` is not a table.
    #[error("`{}`: `hooks` is not a table; fix it, then run init again", .0.display())]
    HooksNotTable(PathBuf),
    /// `hooks.state` is not a table.
    #[error("`{}`: `hooks.state` is not a table; fix it, then run init again", .0.display())]
    StateNotTable(PathBuf),
    /// The hook's own entry under `hooks.state` is not a table.
    #[error(
        "`{}`: `hooks.state.\"{key}\"` is not a table; fix it, then run init again",
        .file.display()
    )]
    EntryNotTable { file: PathBuf, key: String },
}

/// Adds the hook running `command` (the kernel's adapter for `format`,
/// asking the enforcer at `socket`) to the settings text `existing` of
/// `file` (`None`: no file yet), keeping every other key and hook.
///
/// A hook of the kernel's already there for the same socket is kept if it
/// is exactly this one, else brought up to date in place (a binary that
/// moved). Refused: text that is not a JSON object, `hooks` or
/// `hooks.PreToolUse` of the wrong type, and a hook of the kernel's for
/// another socket (another enforcer already governs this agent there).
pub(crate) fn add_hook(
    existing: Option<&str>,
    file: &Path,
    format: CodingAgent,
    command: &str,
    socket: &str,
) -> Result<HookEdit, HookEditError> {
    let fresh = format.fresh(command);
    let mut doc = match existing {
        None => Value::Object(Map::new()),
        Some(text) if text.trim().is_empty() => Value::Object(Map::new()),
        Some(text) => json_doc::parse(text).map_err(|source| HookEditError::NotJson {
            file: file.to_owned(),
            source,
        })?,
    };
    let groups = doc
        .as_object_mut()
        .ok_or_else(|| HookEditError::NotObject(file.to_owned()))?
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| HookEditError::HooksNotObject(file.to_owned()))?
        .entry("PreToolUse")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| HookEditError::PreToolUseNotArray(file.to_owned()))?;
    // Every hook of the kernel's adapter already there, with its socket.
    let mut ours = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let Some(handlers) = group.get("hooks").and_then(Value::as_array) else {
            continue;
        };
        for (h, handler) in handlers.iter().enumerate() {
            if let Some(found) = handler
                .get("command")
                .and_then(Value::as_str)
                .and_then(|command| kernel_hook_socket(command, format.name()))
            {
                ours.push((g, h, found));
            }
        }
    }
    if let Some((_, _, other)) = ours.iter().find(|(_, _, s)| s.as_deref() != Some(socket)) {
        return Err(HookEditError::OtherEnforcer {
            file: file.to_owned(),
            agent: format.name(),
            socket: other.clone(),
        });
    }
    let position = match ours.first() {
        Some(&(g, h, _)) => {
            // Only a group that is an object holding `hooks` has one.
            let group = groups
                .get_mut(g)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| HookEditError::Internal(file.to_owned()))?;
            let wanted = format.handler(command);
            let matcher = group.get("matcher").and_then(Value::as_str);
            let handler = group
                .get("hooks")
                .and_then(Value::as_array)
                .and_then(|handlers| handlers.get(h));
            if matcher == Some("*") && handler == Some(&wanted) {
                return Ok(HookEdit {
                    text: None,
                    position: (g, h),
                    only_hook: doc == fresh,
                });
            }
            // Every tool call goes through the kernel: the matcher is `*`.
            group.insert("matcher".to_owned(), Value::from("*"));
            if let Some(slot) = group
                .get_mut("hooks")
                .and_then(Value::as_array_mut)
                .and_then(|handlers| handlers.get_mut(h))
            {
                *slot = wanted;
            }
            (g, h)
        }
        None => {
            groups.push(format.group(command));
            (groups.len().saturating_sub(1), 0)
        }
    };
    let text = json_doc::to_pretty(&doc).map_err(|source| HookEditError::Write {
        file: file.to_owned(),
        source,
    })?;
    Ok(HookEdit {
        text: Some(text),
        position,
        only_hook: doc == fresh,
    })
}

/// The key under which Codex records its trust in the hook at `position`
/// of the `PreToolUse` hooks of `hooks_file` (an absolute path, as Codex
/// names its home).
pub(crate) fn codex_trust_key(hooks_file: &Path, position: (usize, usize)) -> String {
    format!(
        "{}:pre_tool_use:{}:{}",
        hooks_file.display(),
        position.0,
        position.1
    )
}

/// The hash Codex records when it trusts the `PreToolUse` hook running
/// `command` (with matcher `*` and the timeout this module writes).
pub(crate) fn codex_trust_hash(command: &str) -> String {
    use sha2::Digest as _;
    use std::collections::BTreeMap;
    // Sorted keys at every level, whatever features serde_json is built
    // with.
    let handler: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("async", serde_json::Value::Bool(false)),
        ("command", serde_json::Value::from(command)),
        ("timeout", serde_json::Value::from(CODEX_HOOK_TIMEOUT_SECS)),
        ("type", serde_json::Value::from("command")),
    ]);
    let identity: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("event_name", serde_json::Value::from("pre_tool_use")),
        (
            "hooks",
            serde_json::Value::Array(vec![serde_json::Value::Object(
                handler
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            )]),
        ),
        ("matcher", serde_json::Value::from("*")),
    ]);
    let text = serde_json::to_vec(&identity).unwrap_or_default();
    format!("sha256:{}", kernel_core::hex(&sha2::Sha256::digest(&text)))
}

/// Codex's configuration with its trust in the hook recorded: `existing`
/// (the text of `config.toml`, `None` if there is none) with
/// `hooks.state."<key>".trusted_hash` set to `hash`, everything else as it
/// was. Returns `None` when it is already so, and whether the user has
/// disabled that hook (`enabled = false`), which this leaves as it is.
pub(crate) fn codex_trust(
    existing: Option<&str>,
    file: &Path,
    key: &str,
    hash: &str,
) -> Result<(Option<String>, bool), CodexTrustError> {
    use toml_edit::{DocumentMut, Item, Table, value};
    let mut doc: DocumentMut =
        existing
            .unwrap_or("")
            .parse()
            .map_err(|source| CodexTrustError::NotToml {
                file: file.to_owned(),
                source,
            })?;
    let implicit = || {
        let mut table = Table::new();
        table.set_implicit(true);
        Item::Table(table)
    };
    let hooks = doc
        .entry("hooks")
        .or_insert_with(implicit)
        .as_table_like_mut()
        .ok_or_else(|| CodexTrustError::HooksNotTable(file.to_owned()))?;
    let state = hooks
        .entry("state")
        .or_insert(implicit())
        .as_table_like_mut()
        .ok_or_else(|| CodexTrustError::StateNotTable(file.to_owned()))?;
    let entry = state
        .entry(key)
        .or_insert(Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| CodexTrustError::EntryNotTable {
            file: file.to_owned(),
            key: key.to_owned(),
        })?;
    let disabled = entry
        .get("enabled")
        .and_then(Item::as_bool)
        .is_some_and(|enabled| !enabled);
    if entry.get("trusted_hash").and_then(Item::as_str) == Some(hash) {
        return Ok((None, disabled));
    }
    entry.insert("trusted_hash", value(hash));
    Ok((Some(doc.to_string()), disabled))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    const CMD: &str = "/usr/local/bin/kernel-enforcer hook claude-code --socket /s/endpoint.sock";
    const SOCKET: &str = "/s/endpoint.sock";

    fn add(existing: Option<&str>) -> Result<HookEdit, HookEditError> {
        add_hook(
            existing,
            Path::new("/p/settings.json"),
            CodingAgent::ClaudeCode,
            CMD,
            SOCKET,
        )
    }

    #[test]
    fn a_new_file_holds_the_hook_only() {
        let edit = add(None).unwrap();
        assert_eq!(edit.position, (0, 0));
        assert!(edit.only_hook);
        let text = edit.text.unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
                {"type": "command", "command": CMD, "onFailure": "block"}]}]}})
        );
        // Adding it again changes nothing.
        let again = add(Some(&text)).unwrap();
        assert!(again.text.is_none() && again.only_hook);
        assert_eq!(again.position, (0, 0));
        assert!(add(Some(" \n")).unwrap().only_hook);
    }

    #[test]
    fn other_keys_and_hooks_survive_in_their_order() {
        let existing = r#"{
  "model": "opus",
  "hooks": {
    "PostToolUse": [{"matcher": "Write", "hooks": [{"type": "command", "command": "fmt"}]}],
    "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh", "timeout": 5}]}]
  },
  "permissions": {"allow": ["Bash(ls:*)"]}
}"#;
        let edit = add(Some(existing)).unwrap();
        assert!(!edit.only_hook);
        assert_eq!(edit.position, (1, 0));
        let text = edit.text.unwrap();
        let keys: Vec<&str> = [
            "\"model\"",
            "\"hooks\"",
            "\"PostToolUse\"",
            "\"PreToolUse\"",
            "\"permissions\"",
        ]
        .into_iter()
        .collect();
        let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["model"], "opus");
        assert_eq!(value["permissions"]["allow"][0], "Bash(ls:*)");
        assert_eq!(
            value["hooks"]["PostToolUse"][0]["hooks"][0]["command"],
            "fmt"
        );
        assert_eq!(
            value["hooks"]["PreToolUse"][0]["hooks"][0]["command"],
            "audit.sh"
        );
        assert_eq!(value["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"], 5);
        assert_eq!(value["hooks"]["PreToolUse"][1]["hooks"][0]["command"], CMD);
        assert!(add(Some(&text)).unwrap().text.is_none());
    }

    #[test]
    fn a_moved_binary_is_updated_in_place_and_another_enforcer_refused() {
        let old = format!(
            r#"{{"hooks": {{"PreToolUse": [{{"matcher": "Bash", "hooks": [{{"type": "command", "command": "x"}}, {{"type": "command", "command": "'/old/kernel-enforcer' hook claude-code --socket={SOCKET}"}}]}}]}}}}"#
        );
        let edit = add(Some(&old)).unwrap();
        assert_eq!(edit.position, (0, 1));
        let value: serde_json::Value = serde_json::from_str(&edit.text.unwrap()).unwrap();
        assert_eq!(value["hooks"]["PreToolUse"][0]["matcher"], "*");
        assert_eq!(value["hooks"]["PreToolUse"][0]["hooks"][0]["command"], "x");
        assert_eq!(value["hooks"]["PreToolUse"][0]["hooks"][1]["command"], CMD);
        assert_eq!(value["hooks"]["PreToolUse"].as_array().unwrap().len(), 1);

        let other = r#"{"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": "kernel-enforcer hook claude-code --socket /other.sock"}]}]}}"#;
        let error = add(Some(other)).unwrap_err();
        assert!(
            matches!(
                &error,
                HookEditError::OtherEnforcer { file, agent: "claude-code", socket: Some(socket) }
                    if file == Path::new("/p/settings.json") && socket == "/other.sock"
            ),
            "{error:?}"
        );
        // What the user reads: which file, which other enforcer.
        let text = error.to_string();
        assert!(
            text.contains("`/other.sock`") && text.contains("/p/settings.json"),
            "{text}"
        );
        // A Codex hook in the same file is not the Claude Code one.
        let codex = r#"{"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "kernel-enforcer hook codex --socket /other.sock"}]}]}}"#;
        assert_eq!(add(Some(codex)).unwrap().position, (1, 0));
    }

    #[test]
    fn files_that_are_not_settings_are_refused_by_name() {
        let file = Path::new("/p/settings.json");
        for bad in ["{", r#"{"a": 1, "a": 2}"#, "// comment\n{}"] {
            let error = add(Some(bad)).unwrap_err();
            assert!(
                matches!(&error, HookEditError::NotJson { file: f, .. } if f == file),
                "{bad}: {error:?}"
            );
            assert!(error.to_string().contains("`/p/settings.json`"), "{bad}");
        }
        let error = add(Some("[]")).unwrap_err();
        assert!(
            matches!(&error, HookEditError::NotObject(f) if f == file),
            "{error:?}"
        );
        let error = add(Some(r#"{"hooks": []}"#)).unwrap_err();
        assert!(
            matches!(&error, HookEditError::HooksNotObject(f) if f == file),
            "{error:?}"
        );
        let error = add(Some(r#"{"hooks": {"PreToolUse": {}}}"#)).unwrap_err();
        assert!(
            matches!(&error, HookEditError::PreToolUseNotArray(f) if f == file),
            "{error:?}"
        );
        assert!(error.to_string().contains("`/p/settings.json`"), "{error}");
    }

    /// The hash Codex 0.171.0 itself reports (`currentHash` of `hooks/list`
    /// on its app server) for a `hooks.json` holding
    /// `{"hooks":{"PreToolUse":[{"matcher":"*","hooks":[{"type":"command",
    /// "command":"'/usr/bin/kernel-enforcer' hook codex --socket
    /// '/x/y.sock'","timeout":30}]}]}}`; with it recorded, the same server
    /// reports the hook `trusted`.
    #[test]
    fn the_trust_hash_is_the_one_codex_computes() {
        assert_eq!(
            codex_trust_hash("'/usr/bin/kernel-enforcer' hook codex --socket '/x/y.sock'"),
            "sha256:6ceedf80490f30ac2310dbc5b64fcd3511c598e70f8fa5f6c93f734460543418"
        );
        assert_eq!(
            codex_trust_key(Path::new("/h/.codex/hooks.json"), (2, 1)),
            "/h/.codex/hooks.json:pre_tool_use:2:1"
        );
    }

    #[test]
    fn trust_is_recorded_without_disturbing_the_configuration() {
        let file = Path::new("/h/.codex/config.toml");
        let (text, disabled) =
            codex_trust(None, file, "/h/hooks.json:pre_tool_use:0:0", "sha256:ab").unwrap();
        let text = text.unwrap();
        assert!(!disabled);
        assert_eq!(
            text,
            "[hooks.state.\"/h/hooks.json:pre_tool_use:0:0\"]\ntrusted_hash = \"sha256:ab\"\n"
        );
        assert_eq!(
            codex_trust(
                Some(&text),
                file,
                "/h/hooks.json:pre_tool_use:0:0",
                "sha256:ab"
            )
            .unwrap(),
            (None, false)
        );
        let existing = "# mine\nmodel = \"o3\"  # keep\n\n[hooks.state.\"k\"]\nenabled = false\ntrusted_hash = \"sha256:old\"\n\n[projects.\"/p\"]\ntrust_level = \"trusted\"\n";
        let (text, disabled) = codex_trust(Some(existing), file, "k", "sha256:new").unwrap();
        assert!(disabled);
        assert_eq!(text.unwrap(), existing.replace("sha256:old", "sha256:new"));
        let error = codex_trust(Some("hooks = 1\n"), file, "k", "h").unwrap_err();
        assert!(
            matches!(&error, CodexTrustError::HooksNotTable(f) if f == file),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "`/h/.codex/config.toml`: `hooks` is not a table; fix it, then run init again"
        );
        assert!(matches!(
            codex_trust(Some("hooks.state = 1\n"), file, "k", "h"),
            Err(CodexTrustError::StateNotTable(_))
        ));
        assert!(matches!(
            codex_trust(Some("[hooks.state]\nk = 1\n"), file, "k", "h"),
            Err(CodexTrustError::EntryNotTable { key, .. }) if key == "k"
        ));
        assert!(matches!(
            codex_trust(Some("x = \n"), file, "k", "h"),
            Err(CodexTrustError::NotToml { .. })
        ));
    }
}
