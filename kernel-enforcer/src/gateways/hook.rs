//! Pre-tool-use hook adapters for coding agents (Claude Code's and Codex's
//! `PreToolUse` hooks): a tool call described in the agent's JSON becomes
//! the typed actions it performs, each is decided by a running enforcer
//! through the [decision endpoint](crate::gateways::endpoint), and the verdict is
//! given in the agent's own terms.
//!
//! The shapes, checked against the agents' published types and schemas,
//! are in `docs/GATEWAYS.md`. In short: standard input carries
//! `{"hook_event_name": "PreToolUse", "tool_name": .., "tool_input": {..},
//! "cwd": .., "session_id": .., ..}`; exit status 2 blocks the call and
//! shows standard error to the model; exit status 0 lets the agent go on
//! with its own permission rules, or, for Claude Code, with the
//! `permissionDecision` printed on standard output.
//!
//! What it guarantees: a tool call is let through only when every action
//! it was mapped to has a verified `Allow` receipt ([`decide`]), or when it
//! is one of the agent's own tools that touch nothing outside the agent,
//! named on a fixed list ([`CLAUDE_CODE_INTERNAL_TOOLS`],
//! [`CODEX_INTERNAL_TOOLS`]); any other tool, known or not, is decided by
//! policy. The payload is read strictly ([`kernel_core::json::parse_strict`]):
//! duplicate keys, keys equal but for letter case, and U+0000 are refused
//! at any depth, so the agent cannot read a field other than the one
//! decided. Shell command lines become the actions the shell would perform
//! ([`crate::gateways::shell::command_actions`]); a line whose effect cannot be known
//! before it runs is blocked with the reason. Everything else that goes
//! wrong (malformed input, no enforcer, a timeout, an answer that does not
//! verify) blocks too. An allow is never turned into the agent's own
//! "allow" (which would skip its permission prompts): the hook vetoes, or
//! for a policy's `@ask` hands the call to Claude Code's own prompt.
//!
//! What it cannot guarantee: the agent runs the tool itself after the
//! hook, so the hook is only as strong as the agent's honouring of it. For
//! an agent that must not be able to skip it, run the agent under
//! `kernel-enforcer run` (OS confinement) as well.

use kernel_translate::patch;
pub use kernel_translate::patch::{PatchError, PatchInvocationError};

use crate::gateways::endpoint::{self, AskOptions};
use kernel_core::{Action, CanonicalAction, Verified};
use serde_json::Value;

/// A coding agent the kernel governs through its `PreToolUse` hook: which
/// hook format to speak, and (for `init`) whose settings to edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodingAgent {
    /// Claude Code (`claude-code`).
    #[value(help = "Claude Code: a `PreToolUse` hook in `.claude/settings.local.json`")]
    ClaudeCode,
    /// Codex (`codex`).
    #[value(
        help = "Codex: a `PreToolUse` hook in `~/.codex/hooks.json`, trusted in `~/.codex/config.toml`"
    )]
    Codex,
}

/// Largest hook payload read, in bytes.
pub const MAX_HOOK_INPUT: u64 = 4 * 1024 * 1024;

/// Claude Code's tools that touch nothing outside the agent: its task
/// list, plan mode, questions to its user and its search of its own tool
/// list. Let through without asking the enforcer (and so not recorded).
/// Every other tool, including `Agent` (a subagent may run in a new
/// worktree or remotely), `Skill`, `SendMessage` and every tool not known
/// here, is decided by policy as a `tool_call`.
pub const CLAUDE_CODE_INTERNAL_TOOLS: &[&str] = &[
    "AskUserQuestion",
    "EnterPlanMode",
    "ExitPlanMode",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskUpdate",
    "TodoWrite",
    "ToolSearch",
];

/// Codex's tools that touch nothing outside the agent: its plan, its goal,
/// questions to its user and its search of its own tool list. As
/// [`CLAUDE_CODE_INTERNAL_TOOLS`].
pub const CODEX_INTERNAL_TOOLS: &[&str] = &[
    "create_goal",
    "get_goal",
    "request_user_input",
    "tool_search",
    "update_goal",
    "update_plan",
];

/// What a tool call does, as the kernel decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// One of the agent's own tools that touch nothing outside it (on
    /// [`CLAUDE_CODE_INTERNAL_TOOLS`] or [`CODEX_INTERNAL_TOOLS`]): let
    /// through without asking.
    Internal {
        /// The tool's name.
        tool: String,
    },
    /// The actions the call performs, in the order it performs them (never
    /// empty: [`map_payload`] refuses a call it cannot map).
    Actions {
        /// The actions.
        actions: Vec<Action>,
        /// The payload's working directory (absolute), against which
        /// relative paths are resolved.
        cwd: String,
    },
}

/// How the hook process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookExit {
    /// Exit status 0: no objection (the agent's own rules, or Claude
    /// Code's prompt for an `ask`, apply).
    Proceed,
    /// Exit status 2: the call is blocked; standard error says why.
    Block,
}

impl HookExit {
    /// The process exit status: 0 or 2, nothing else.
    pub fn code(self) -> u8 {
        match self {
            Self::Proceed => 0,
            Self::Block => 2,
        }
    }
}

/// What the hook prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookVerdict {
    exit: HookExit,
    stdout: String,
    stderr: String,
}

/// Prefix of everything the hook says to the agent.
const SPEAKER: &str = "agent-kernel";

impl HookVerdict {
    /// How the process exits.
    pub fn exit(&self) -> HookExit {
        self.exit
    }

    /// Standard output: empty, or one JSON object in the agent's format.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Standard error: the reason shown to the model when blocked.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// No objection. Adds nothing to the model's context, unless
    /// `verbose`: then `detail` as additional context.
    fn proceed(verbose: bool, detail: &str) -> Self {
        let stdout = if verbose {
            serde_json::json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "additionalContext": format!("{SPEAKER}: {detail}"),
                }
            })
            .to_string()
        } else {
            String::new()
        };
        Self {
            exit: HookExit::Proceed,
            stdout,
            stderr: String::new(),
        }
    }

    /// A policy's `@ask`: Claude Code asks its user (its own permission
    /// prompt, with `reason`); Codex, which accepts no "ask" from a hook,
    /// blocks the call with a reason that says approval is needed.
    fn ask(agent: CodingAgent, reason: &str) -> Self {
        match agent {
            CodingAgent::ClaudeCode => Self {
                exit: HookExit::Proceed,
                stdout: serde_json::json!({
                    "hookSpecificOutput": {
                        "hookEventName": "PreToolUse",
                        "permissionDecision": "ask",
                        "permissionDecisionReason": format!("{SPEAKER}: needs approval: {reason}"),
                    }
                })
                .to_string(),
                stderr: String::new(),
            },
            CodingAgent::Codex => Self::blocked(&format!(
                "needs approval: {reason}; a Codex hook cannot ask, so the call is blocked \
                 (an operator can grant it with `kernel-enforcer approve`, then retry)"
            )),
        }
    }

    /// Blocks the tool call, giving `reason` to the model (never empty).
    pub fn blocked(reason: &str) -> Self {
        let reason = if reason.trim().is_empty() {
            format!("{SPEAKER}: blocked")
        } else {
            format!("{SPEAKER}: {reason}")
        };
        Self {
            exit: HookExit::Block,
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

/// The enforcer's answer about one action.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ruling {
    Allowed { log_index: u64 },
    Denied { reasons: String, log_index: u64 },
    Ask { reasons: String, log_index: u64 },
}

impl Ruling {
    fn of(verified: &Verified) -> Self {
        let reasons = |reasons: &[String]| {
            if reasons.is_empty() {
                "no policy allows it".to_owned()
            } else {
                reasons.join("; ")
            }
        };
        match verified {
            Verified::Permit(permit) => Self::Allowed {
                log_index: permit.receipt().body().log_index,
            },
            Verified::Denied(receipt) => Self::Denied {
                reasons: reasons(&receipt.body().reasons),
                log_index: receipt.body().log_index,
            },
            Verified::Ask(receipt) => Self::Ask {
                reasons: reasons(&receipt.body().reasons),
                log_index: receipt.body().log_index,
            },
        }
    }
}

/// Decides one hook payload: maps it to its actions, asks the enforcer
/// about each in order, and returns the verdict to print. Allowed only if
/// every action is allowed; the first one denied stops the rest (they
/// would not run). Total: every input gets a verdict, and every failure
/// blocks. With `verbose`, an allow tells the model which receipts allowed
/// it; otherwise it adds nothing to the model's context.
pub fn decide(agent: CodingAgent, input: &str, options: &AskOptions, verbose: bool) -> HookVerdict {
    decide_with(agent, input, verbose, &mut |action| {
        endpoint::ask(options, action, None)
            .map(|answer| Ruling::of(&answer.verified))
            .map_err(|e| e.to_string())
    })
}

fn decide_with(
    agent: CodingAgent,
    input: &str,
    verbose: bool,
    ask: &mut dyn FnMut(CanonicalAction) -> Result<Ruling, String>,
) -> HookVerdict {
    #[cfg(debug_assertions)]
    injected_fault();
    let (actions, cwd) = match map_payload(agent, input) {
        Ok(Mapped::Actions { actions, cwd }) => (actions, cwd),
        Ok(Mapped::Internal { tool }) => {
            return HookVerdict::proceed(
                verbose,
                &format!("`{tool}` touches nothing outside the agent; not asked"),
            );
        }
        Err(reason) => return HookVerdict::blocked(&format!("blocked: {reason}")),
    };
    if actions.is_empty() {
        return HookVerdict::blocked("blocked: the call maps to no action");
    }
    // Every part is checked before any is decided: a call that cannot be
    // decided whole records no decision for its first parts.
    let mut canonical = Vec::with_capacity(actions.len());
    for action in actions {
        match endpoint::canonicalize(action, Some(&cwd)) {
            Ok(action) => canonical.push(action),
            Err(e) => return HookVerdict::blocked(&format!("blocked: {e}")),
        }
    }
    let total = canonical.len();
    let mut allowed = Vec::new();
    let mut asks = Vec::new();
    for (index, action) in canonical.into_iter().enumerate() {
        let part = part_name(index, total, action.action());
        match ask(action) {
            Ok(Ruling::Allowed { log_index }) => allowed.push(log_index),
            Ok(Ruling::Denied { reasons, log_index }) => {
                return HookVerdict::blocked(&format!(
                    "denied by policy{part}: {reasons} (receipt at log index {log_index})"
                ));
            }
            Ok(Ruling::Ask { reasons, log_index }) => {
                let asked = format!("{reasons}{part} (receipt at log index {log_index})");
                match agent {
                    // Blocked anyway: the later parts would not run.
                    CodingAgent::Codex => return HookVerdict::ask(agent, &asked),
                    // If the user approves, every part runs: each is
                    // decided, and a later denial still blocks.
                    CodingAgent::ClaudeCode => asks.push(asked),
                }
            }
            Err(e) => return HookVerdict::blocked(&format!("blocked, fail closed{part}: {e}")),
        }
    }
    if !asks.is_empty() {
        return HookVerdict::ask(agent, &asks.join("; "));
    }
    let indexes: Vec<String> = allowed.iter().map(u64::to_string).collect();
    HookVerdict::proceed(
        verbose,
        &format!(
            "allowed by the kernel (receipt{} at log index {})",
            if indexes.len() == 1 { "" } else { "s" },
            indexes.join(", ")
        ),
    )
}

/// ` (part I of N: ACTION)` for a call of several actions, else nothing.
fn part_name(index: usize, total: usize, action: &Action) -> String {
    if total <= 1 {
        return String::new();
    }
    let mut described = kernel_policy::describe::action(action);
    if described.chars().count() > 200 {
        described = described.chars().take(200).collect::<String>() + "…";
    }
    format!(" (part {} of {total}: {described})", index + 1)
}

/// Debug builds only, for the tests: `AGENT_KERNEL_TEST_FAULT=panic:hook`
/// in the hook's environment makes it panic before deciding, to show that
/// a hook that fails still blocks (exit 2). Release builds do not have it.
#[cfg(debug_assertions)]
fn injected_fault() {
    if std::env::var("AGENT_KERNEL_TEST_FAULT").is_ok_and(|fault| fault == "panic:hook") {
        #[expect(clippy::panic, reason = "an injected fault, debug builds only")]
        {
            panic!("injected fault: a panic in the hook")
        }
    }
}

/// Why a hook payload is refused ([`map_payload`]): it is not a
/// well-formed `PreToolUse` event, or the call's actions cannot be known
/// before it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookPayloadError {
    /// Not strict JSON (a key read twice included).
    #[error("malformed hook payload: {0}")]
    Malformed(String),
    /// Another hook event than `PreToolUse`.
    #[error("this hook handles `PreToolUse` events, not `{0}`")]
    OtherEvent(String),
    /// No `hook_event_name`.
    #[error("hook payload has no `hook_event_name`")]
    NoEventName,
    /// No `tool_name`.
    #[error("hook payload has no `tool_name`")]
    NoToolName,
    /// No `tool_input` object.
    #[error("hook payload has no `tool_input` object")]
    NoToolInput,
    /// No `cwd`.
    #[error("hook payload has no `cwd`")]
    NoCwd,
    /// A `cwd` that is not absolute.
    #[error("hook payload's `cwd` `{0}` is not an absolute path")]
    RelativeCwd(String),
    /// The tool's call performs no action the kernel decides.
    #[error("`{0}` maps to no action")]
    NoAction(String),
    /// A required string field of the tool's input is missing.
    #[error("`{tool}` input has no `{field}` string")]
    MissingText {
        /// The tool.
        tool: String,
        /// The field.
        field: String,
    },
    /// A field of the tool's input that is not a string.
    #[error("`{tool}` input's `{field}` is not a string")]
    NotText {
        /// The tool.
        tool: String,
        /// The field.
        field: String,
    },
    /// An empty path.
    #[error("`{tool}` input's `{field}` is empty")]
    EmptyPath {
        /// The tool.
        tool: String,
        /// The field.
        field: String,
    },
    /// A path starting with `~`, which the agent may expand and the
    /// kernel would not.
    #[error("`{tool}` input's `{field}` `{path}` starts with `~`: give an absolute path")]
    TildePath {
        /// The tool.
        tool: String,
        /// The field.
        field: String,
        /// The path.
        path: String,
    },
    /// `Monitor`'s `ws` has no `url`.
    #[error("`Monitor` input's `ws` has no `url` string")]
    MonitorWithoutUrl,
    /// `Monitor` with neither `command` nor `ws`.
    #[error("`Monitor` input has neither `command` nor `ws`")]
    MonitorWithoutTarget,
    /// A PowerShell command line.
    #[error(
        "PowerShell command lines are not read by the kernel (only POSIX shell command lines are): use `Bash`"
    )]
    PowerShell,
    /// A `Bash` argument vector with an item that is not a string.
    #[error("`Bash` command array holds a non-string")]
    NonStringArgument,
    /// `Bash` without a `command`.
    #[error("`Bash` input has no `command`")]
    NoCommand,
    /// An empty argument vector.
    #[error("empty command")]
    EmptyCommand,
    /// Codex's `apply_patch` program run inside a larger command line.
    #[error(
        "`apply_patch` inside a larger command line cannot be decided: run it on its own (`apply_patch <<'EOF'` with the patch, then `EOF`)"
    )]
    PatchInCommandLine,
    /// A patch that does not parse.
    #[error("`apply_patch`: {0}")]
    Patch(#[from] PatchError),
    /// An `apply_patch` command line not in a form Codex intercepts and
    /// whose reading is certain.
    #[error(transparent)]
    PatchInvocation(#[from] PatchInvocationError),
    /// A patch that changes no file.
    #[error("`apply_patch`: the patch changes no file")]
    EmptyPatch,
    /// A `Glob` pattern that could reach outside the directory it names.
    #[error("`Glob` pattern `{pattern}` {why}: give the directory to search as `path`")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A command line (or `apply_patch` invocation) the shell reader
    /// cannot decide; the reason says why.
    #[error("{0}")]
    CommandLine(String),
}

/// Maps a hook payload to what the call does: the actions it performs (in
/// order) and the directory they run in, or [`Mapped::Internal`] for a
/// tool on the agent's list of tools that touch nothing. Refuses (with the
/// reason) a payload that is not a well-formed `PreToolUse` event, and a
/// call whose actions cannot be known before it runs.
pub fn map_payload(agent: CodingAgent, input: &str) -> Result<Mapped, HookPayloadError> {
    let payload = kernel_core::json::parse_strict(input)
        .map_err(|e| HookPayloadError::Malformed(e.to_string()))?;
    match payload.get("hook_event_name").and_then(Value::as_str) {
        Some("PreToolUse") => {}
        Some(other) => return Err(HookPayloadError::OtherEvent(other.to_owned())),
        None => return Err(HookPayloadError::NoEventName),
    }
    let tool = payload
        .get("tool_name")
        .and_then(Value::as_str)
        .ok_or(HookPayloadError::NoToolName)?;
    let input = payload
        .get("tool_input")
        .filter(|input| input.is_object())
        .ok_or(HookPayloadError::NoToolInput)?;
    let cwd = payload
        .get("cwd")
        .and_then(Value::as_str)
        .ok_or(HookPayloadError::NoCwd)?;
    if !cwd.starts_with('/') {
        return Err(HookPayloadError::RelativeCwd(cwd.to_owned()));
    }
    let call = Call { tool, input, cwd };
    let actions = match agent {
        CodingAgent::ClaudeCode if CLAUDE_CODE_INTERNAL_TOOLS.contains(&tool) => None,
        CodingAgent::Codex if CODEX_INTERNAL_TOOLS.contains(&tool) => None,
        CodingAgent::ClaudeCode => Some(call.claude_code()?),
        CodingAgent::Codex => Some(call.codex()?),
    };
    match actions {
        None => Ok(Mapped::Internal {
            tool: tool.to_owned(),
        }),
        Some(actions) if actions.is_empty() => Err(HookPayloadError::NoAction(tool.to_owned())),
        Some(actions) => Ok(Mapped::Actions {
            actions,
            cwd: cwd.to_owned(),
        }),
    }
}

/// One tool call of a payload.
struct Call<'a> {
    tool: &'a str,
    input: &'a Value,
    cwd: &'a str,
}

impl Call<'_> {
    /// Claude Code's tools (names and inputs as in the Claude Agent SDK's
    /// `sdk-tools.d.ts`).
    fn claude_code(&self) -> Result<Vec<Action>, HookPayloadError> {
        let tool = self.tool;
        Ok(match tool {
            "Bash" => {
                self.command_line(CodingAgent::ClaudeCode, self.text("command")?, self.cwd)?
            }
            "Monitor" => {
                let mut actions = Vec::new();
                if let Some(command) = self.optional_text("command")? {
                    actions.extend(self.command_line(
                        CodingAgent::ClaudeCode,
                        command,
                        self.cwd,
                    )?);
                }
                if let Some(ws) = self.input.get("ws") {
                    let url = ws
                        .get("url")
                        .and_then(Value::as_str)
                        .ok_or(HookPayloadError::MonitorWithoutUrl)?;
                    actions.push(Action::http("GET", websocket_handshake(url)));
                }
                if actions.is_empty() {
                    return Err(HookPayloadError::MonitorWithoutTarget);
                }
                actions
            }
            "PowerShell" => return Err(HookPayloadError::PowerShell),
            "Read" => vec![Action::file_read(self.path("file_path")?)],
            "Write" => vec![Action::file_write(
                self.path("file_path")?,
                self.text("content")?.as_bytes(),
            )],
            // The edit's result is not known before it runs: decided as a
            // write of unknown content (a policy bounding the size denies
            // it).
            "Edit" | "MultiEdit" => vec![Action::file_write_descriptor(self.path("file_path")?)],
            "NotebookEdit" => vec![Action::file_write_descriptor(self.path("notebook_path")?)],
            // A search reads what lies beneath the path it searches (the
            // file itself, for a `Grep` of one file).
            "Grep" | "LS" => vec![Action::file_read(
                self.optional_path("path")?.unwrap_or(self.cwd),
            )],
            "Glob" => vec![Action::file_read(glob_root(
                self.text("pattern")?,
                self.optional_path("path")?.unwrap_or(self.cwd),
            )?)],
            "WebFetch" => vec![Action::http("GET", self.text("url")?)],
            // `WebSearch`, `Agent`, `Skill`, MCP tools (`mcp__SERVER__TOOL`,
            // the name kept whole), and any tool not known here.
            _ => vec![Action::tool_call(tool, self.input)],
        })
    }

    /// Codex's tools (as Codex 0.171.0 sends them to hooks: `exec_command`
    /// as `Bash` with `{"command": CMD}`, `apply_patch` with `{"command":
    /// PATCH}`).
    fn codex(&self) -> Result<Vec<Action>, HookPayloadError> {
        Ok(match self.tool {
            "Bash" => match self.input.get("command") {
                Some(Value::String(command)) => {
                    self.command_line(CodingAgent::Codex, command, self.cwd)?
                }
                // An argument vector (Codex's older `shell` and
                // `local_shell` tools).
                Some(Value::Array(items)) => {
                    let argv = items
                        .iter()
                        .map(|item| item.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(HookPayloadError::NonStringArgument)?;
                    self.argv_actions(&argv, self.cwd)?
                }
                _ => return Err(HookPayloadError::NoCommand),
            },
            "apply_patch" => patch_actions(self.text("command")?, self.cwd)?,
            "view_image" => vec![Action::file_read(self.path("path")?)],
            // MCP tools and any tool not known here.
            _ => vec![Action::tool_call(self.tool, self.input)],
        })
    }

    /// The actions of a shell command line run in `cwd`: what
    /// [`crate::gateways::shell::command_actions`] finds (which decides `sh -c
    /// SCRIPT` as the actions of `SCRIPT`); for Codex, the `apply_patch`
    /// forms it applies itself become the patch's file actions.
    fn command_line(
        &self,
        agent: CodingAgent,
        command: &str,
        cwd: &str,
    ) -> Result<Vec<Action>, HookPayloadError> {
        if agent == CodingAgent::Codex {
            match patch::invocation(command) {
                Some(Ok(invocation)) => {
                    let dir = match &invocation.cd {
                        Some(dir) => join(cwd, dir),
                        None => cwd.to_owned(),
                    };
                    return patch_actions(&invocation.patch, &dir);
                }
                Some(Err(reason)) => return Err(reason.into()),
                None => {}
            }
        }
        let actions = crate::gateways::shell::command_actions(command, Some(cwd))
            .map_err(HookPayloadError::CommandLine)?;
        for action in &actions {
            if let Action::Exec(exec) = action {
                check_not_apply_patch(agent, &exec.program)?;
            }
        }
        Ok(actions)
    }

    /// An argument vector run without a shell (Codex's older tools): the
    /// patch of `apply_patch PATCH`; the script of `sh -c SCRIPT` (which
    /// may be a patch Codex applies itself); otherwise the command line
    /// that runs exactly these words ([`crate::gateways::shell::quote`]), so that a
    /// vector is decided as the same words written as a command line are.
    fn argv_actions(&self, argv: &[String], cwd: &str) -> Result<Vec<Action>, HookPayloadError> {
        match argv {
            [] => Err(HookPayloadError::EmptyCommand),
            [program, patch] if is_apply_patch(program) => patch_actions(patch, cwd),
            _ => match crate::gateways::shell::shell_script(argv) {
                Some(script) => self.command_line(
                    CodingAgent::Codex,
                    script.map_err(HookPayloadError::CommandLine)?,
                    cwd,
                ),
                None => self.command_line(
                    CodingAgent::Codex,
                    &crate::gateways::shell::quote(argv),
                    cwd,
                ),
            },
        }
    }

    fn text(&self, field: &str) -> Result<&str, HookPayloadError> {
        self.input
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| HookPayloadError::MissingText {
                tool: self.tool.to_owned(),
                field: field.to_owned(),
            })
    }

    fn optional_text(&self, field: &str) -> Result<Option<&str>, HookPayloadError> {
        match self.input.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(HookPayloadError::NotText {
                tool: self.tool.to_owned(),
                field: field.to_owned(),
            }),
        }
    }

    fn path(&self, field: &str) -> Result<&str, HookPayloadError> {
        checked_path(self.tool, field, self.text(field)?)
    }

    fn optional_path(&self, field: &str) -> Result<Option<&str>, HookPayloadError> {
        self.optional_text(field)?
            .map(|path| checked_path(self.tool, field, path))
            .transpose()
    }
}

/// A path field as decided: not empty, and not starting with `~` (which
/// an agent may expand to a home directory, while the kernel would read
/// it as a relative path).
fn checked_path<'a>(tool: &str, field: &str, path: &'a str) -> Result<&'a str, HookPayloadError> {
    if path.is_empty() {
        return Err(HookPayloadError::EmptyPath {
            tool: tool.to_owned(),
            field: field.to_owned(),
        });
    }
    if path.starts_with('~') {
        return Err(HookPayloadError::TildePath {
            tool: tool.to_owned(),
            field: field.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(path)
}

/// The HTTP URL of a WebSocket's opening handshake (a `GET` upgraded to
/// the socket): `wss:` is `https:`, `ws:` is `http:`.
fn websocket_handshake(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("wss://") {
        format!("https://{}", url.get(6..).unwrap_or_default())
    } else if lower.starts_with("ws://") {
        format!("http://{}", url.get(5..).unwrap_or_default())
    } else {
        url.to_owned()
    }
}

/// `dir` resolved against `cwd` (an absolute `dir` stands alone).
fn join(cwd: &str, dir: &str) -> String {
    if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("{cwd}/{dir}")
    }
}

fn is_apply_patch(program: &str) -> bool {
    matches!(
        crate::gateways::shell::basename(program),
        "apply_patch" | "applypatch"
    )
}

/// Codex provides `apply_patch` as a program too: run by a shell inside a
/// larger command line, it writes files the kernel would not see.
fn check_not_apply_patch(agent: CodingAgent, program: &str) -> Result<(), HookPayloadError> {
    if agent == CodingAgent::Codex && is_apply_patch(program) {
        return Err(HookPayloadError::PatchInCommandLine);
    }
    Ok(())
}

/// The file actions of a Codex patch applied in `cwd`: an added file is
/// written with its content; an updated one is written (content not known
/// before it runs); a moved one is deleted and its new path written; a
/// deleted one is deleted.
fn patch_actions(text: &str, cwd: &str) -> Result<Vec<Action>, HookPayloadError> {
    let hunks = patch::parse(text)?;
    if hunks.is_empty() {
        return Err(HookPayloadError::EmptyPatch);
    }
    let resolve = |path: &str| -> Result<String, HookPayloadError> {
        Ok(join(cwd, checked_path("apply_patch", "path", path)?))
    };
    let mut actions = Vec::new();
    for hunk in hunks {
        match hunk {
            patch::Hunk::Add { path, content } => {
                actions.push(Action::file_write(resolve(&path)?, content.as_bytes()));
            }
            patch::Hunk::Delete { path } => actions.push(Action::file_delete(resolve(&path)?)),
            patch::Hunk::Update {
                path,
                move_to: None,
            } => actions.push(Action::file_write_descriptor(resolve(&path)?)),
            patch::Hunk::Update {
                path,
                move_to: Some(to),
            } => {
                actions.push(Action::file_delete(resolve(&path)?));
                actions.push(Action::file_write_descriptor(resolve(&to)?));
            }
        }
    }
    Ok(actions)
}

/// The directory a `Glob` of `pattern` under `base` lists: `base` joined
/// with the pattern's leading segments that hold no pattern characters (an
/// absolute pattern stands alone). Refused when the pattern could reach
/// outside that directory in a way the join does not show: `..` after a
/// pattern character, a brace group holding `/` or `..`, or a leading `~`.
fn glob_root(pattern: &str, base: &str) -> Result<String, HookPayloadError> {
    let refuse = |why: &'static str| {
        Err(HookPayloadError::Glob {
            pattern: pattern.to_owned(),
            why,
        })
    };
    if pattern.is_empty() {
        return refuse("is empty");
    }
    if pattern.starts_with('~') {
        return refuse("starts with `~`");
    }
    let mut depth = 0usize;
    let mut group = String::new();
    for c in pattern.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return refuse("has an unbalanced `}`"),
            '}' => {
                depth -= 1;
                if depth == 0 {
                    if group.contains('/') || group.contains("..") {
                        return refuse("has a brace group with `/` or `..`");
                    }
                    group.clear();
                }
            }
            _ if depth > 0 => group.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return refuse("has an unbalanced `{`");
    }
    let special = |segment: &str| segment.contains(['*', '?', '[', ']', '{', '}', '\\']);
    let segments: Vec<&str> = pattern.split('/').collect();
    let literal = segments
        .iter()
        .take_while(|segment| !special(segment))
        .count();
    if segments
        .iter()
        .skip(literal)
        .any(|segment| *segment == "..")
    {
        return refuse("has `..` after a pattern character");
    }
    let prefix = segments
        .get(..literal)
        .map(|parts| parts.join("/"))
        .unwrap_or_default();
    Ok(if pattern.starts_with('/') {
        if prefix.is_empty() {
            "/".to_owned()
        } else {
            prefix
        }
    } else if prefix.is_empty() {
        base.to_owned()
    } else {
        join(base, &prefix)
    })
}

#[cfg(test)]
mod tests;
