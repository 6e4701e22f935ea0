//! `kernel-enforcer init claude-code|codex`: everything a coding agent
//! needs to be governed through its pre-tool-use hook, in one command.
//!
//! For the project `P` (`--project`, default the current directory) it
//! sets up one enforcer, named `<agent>-<project name>-<8 hex digits of
//! the project path's SHA-256>` (`NAME`), with:
//! - a state directory `$XDG_STATE_HOME/agent-kernel/NAME/` (mode 0700)
//!   holding its signing key (`kernel.key`, mode 0600, never overwritten;
//!   `kernel.pub`), its evidence (`evidence.log`, and the control key file
//!   `evidence.log.control` the enforcer writes) and its endpoint socket
//!   (`endpoint.sock`). One per agent and project, so that the evidence of
//!   one project never mixes with another's, and each can be stopped,
//!   audited or removed alone;
//! - the agent's policy profile, `$XDG_CONFIG_HOME/agent-kernel/<agent>.cedar`,
//!   shared by that agent's projects; installed if missing, and never
//!   replaced once there (edit it: your version is kept);
//! - the `listen` configuration `$XDG_CONFIG_HOME/agent-kernel/NAME.toml`
//!   naming policy, key, evidence, workspace (`P`) and socket, and the
//!   agent's hook settings as extra protected paths: the floor then denies
//!   the agent any action on the files that could switch its hook off
//!   (for Codex also the `.codex` directory of `P` and of every directory
//!   above it, whose `config.toml` Codex reads as project configuration;
//!   for Claude Code also the files naming MCP servers, whose commands it
//!   starts outside the hook: `.mcp.json` in `P` and above, `~/.claude.json`;
//!   and the configuration and state directories of every enforcer, so
//!   that no agent rewrites another's configuration or profile);
//! - the hook in the agent's settings, merged into what is there: Claude
//!   Code's `P/.claude/settings.local.json` (the project's personal
//!   settings, which Claude Code keeps out of version control: the hook
//!   names paths of this machine, and in the shared `settings.json` it
//!   would block every tool call of everyone else), or the user's
//!   `settings.json` in `$CLAUDE_CONFIG_DIR` (default `~/.claude`) with
//!   `--user`; Codex's `$CODEX_HOME/hooks.json` (Codex reads hooks per
//!   user) with its trust recorded in `$CODEX_HOME/config.toml`;
//! - a systemd user unit `agent-kernel-NAME.service` running `listen
//!   --config`, when `systemctl --user` works (else the command to run is
//!   printed). It does not restart by itself: after a halt the enforcer
//!   stays down, and the hook blocks every call, until the operator starts
//!   it again.
//!
//! Running it again changes nothing that is in place and says so. A file
//! of the user's is never overwritten: a key is kept, a profile, a
//! configuration or a unit that differs from what init would write is
//! kept and reported, and settings are merged (refused, naming the file,
//! when they are not valid JSON or TOML). `--dry-run` reports the same
//! without writing anything.

mod agents;
mod json_doc;

use crate::cli::instances;
use crate::gateways::hook::CodingAgent;
use crate::session::keys;
use kernel_core::format_public_key;
use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The policy profile installed for Claude Code: the three files of the
/// shipped profile (`examples/policies/claude-code.cedar`, the hook rules
/// and the coding-agent rules they share with Codex's), as one file.
const CLAUDE_CODE_PROFILE: &str = concat!(
    include_str!("../../../../examples/policies/claude-code.cedar"),
    "\n",
    include_str!("../../../../examples/policies/coding-agent-hooks.cedar"),
    "\n",
    include_str!("../../../../examples/policies/coding-agent.cedar"),
);
/// The policy profile installed for Codex, likewise
/// (`examples/policies/codex.cedar` and the shared files).
const CODEX_PROFILE: &str = concat!(
    include_str!("../../../../examples/policies/codex.cedar"),
    "\n",
    include_str!("../../../../examples/policies/coding-agent-hooks.cedar"),
    "\n",
    include_str!("../../../../examples/policies/coding-agent.cedar"),
);

/// Longest path a Unix socket address can hold (`sun_path`, without its
/// final NUL).
const MAX_SOCKET_PATH: usize = 107;

impl CodingAgent {
    fn name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
        }
    }

    fn profile(self) -> &'static str {
        match self {
            Self::ClaudeCode => CLAUDE_CODE_PROFILE,
            Self::Codex => CODEX_PROFILE,
        }
    }

    fn program(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude",
            Self::Codex => "codex",
        }
    }
}

/// `init`: set up an enforcer and the agent's hook for a project.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The coding agent to govern.
    #[arg(value_enum)]
    agent: CodingAgent,
    /// The project the agent works in, which becomes the enforcer's
    /// workspace [default: the current directory].
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Claude Code: put the hook in the user's settings
    /// (`$CLAUDE_CONFIG_DIR/settings.json`, default
    /// `~/.claude/settings.json`), for every project, instead of the
    /// project's `.claude/settings.local.json` (Codex reads hooks per user
    /// only).
    #[arg(long)]
    user: bool,
    /// Report what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write no systemd user unit; print the command that starts the
    /// enforcer instead.
    #[arg(long)]
    no_service: bool,
}

/// What happened, or would, to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
    /// Left as the user has it, and why.
    Kept(String),
}

/// A write to make once everything has been checked.
#[derive(Debug)]
enum Write {
    Dir,
    File { text: String, mode: u32 },
    Key,
}

#[derive(Debug)]
struct Step {
    path: PathBuf,
    what: String,
    change: Change,
    write: Option<Write>,
}

/// Every path init uses for one agent and project.
#[derive(Debug)]
struct Layout {
    agent: CodingAgent,
    name: String,
    project: PathBuf,
    exe: PathBuf,
    state_root: PathBuf,
    state: PathBuf,
    key: PathBuf,
    public_key: PathBuf,
    evidence: PathBuf,
    control: PathBuf,
    socket: PathBuf,
    config_root: PathBuf,
    profile: PathBuf,
    config: PathBuf,
    unit: PathBuf,
    /// The agent's settings file that gets the hook.
    hook_file: PathBuf,
    /// Codex's configuration, where its trust in the hook is recorded.
    codex_config: Option<PathBuf>,
    /// Files that could switch the hook off: protected by the floor.
    protect: Vec<PathBuf>,
}

/// Text usable in every file init writes: UTF-8 without control
/// characters.
fn plain(path: &Path) -> Result<&str, String> {
    path.to_str()
        .filter(|text| !text.chars().any(char::is_control))
        .ok_or_else(|| {
            format!(
                "`{}` is not UTF-8 text without control characters, which the settings files \
                 need: choose another path",
                path.display()
            )
        })
}

/// The enforcer's name: the agent, the project's name, and a short digest
/// of its full path (two projects of the same name stay apart).
fn instance_name(agent: CodingAgent, project: &Path) -> String {
    use sha2::Digest as _;
    let base = project
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut slug = String::new();
    for c in base.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(24).collect();
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "project" } else { slug };
    let digest = sha2::Sha256::digest(project.as_os_str().as_encoded_bytes());
    format!(
        "{}-{slug}-{}",
        agent.name(),
        kernel_core::hex(digest.get(..4).unwrap_or_default())
    )
}

/// `name` in `project` and in every directory above it but the root
/// directory, where the agents look for project settings too. The root is
/// left out: only the superuser may write there, and the floor also matches
/// an asset's path as text in arguments, where `/.codex` would match every
/// `.codex` anywhere.
fn in_project_and_above(project: &Path, name: &str) -> Vec<PathBuf> {
    project
        .ancestors()
        .filter(|dir| dir.parent().is_some())
        .map(|dir| dir.join(name))
        .collect()
}

/// Claude Code's configuration directory (its user settings are
/// `settings.json` there) and its own configuration file, as Claude Code
/// finds them: `$CLAUDE_CONFIG_DIR` and `.claude.json` in it, or
/// `~/.claude` and `~/.claude.json`.
fn claude_config(home: &Path) -> Result<(PathBuf, PathBuf), String> {
    match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|value| !value.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(format!(
                    "CLAUDE_CONFIG_DIR is `{}`, which is not an absolute path: set it to one or \
                     unset it",
                    dir.display()
                ));
            }
            let claude_json = dir.join(".claude.json");
            Ok((dir, claude_json))
        }
        None => Ok((home.join(".claude"), home.join(".claude.json"))),
    }
}

/// `$CODEX_HOME` (it must exist, and Codex names it canonically) or
/// `~/.codex`, as Codex finds its home.
fn codex_home(home: &Path) -> Result<PathBuf, String> {
    match std::env::var_os("CODEX_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => std::fs::canonicalize(&dir)
            .ok()
            .filter(|dir| dir.is_dir())
            .ok_or_else(|| {
                format!(
                    "CODEX_HOME is `{}`, which is not a directory: create it or unset CODEX_HOME",
                    PathBuf::from(dir).display()
                )
            }),
        None => Ok(home.join(".codex")),
    }
}

impl Layout {
    fn new(args: &InitArgs) -> Result<Self, String> {
        if args.user && args.agent == CodingAgent::Codex {
            return Err(
                "`--user` is for Claude Code: Codex reads hooks per user in any case".into(),
            );
        }
        let home = instances::home()?;
        let exe = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .map_err(|e| format!("cannot find this program's own path: {e}"))?;
        let project = match &args.project {
            Some(dir) => dir.clone(),
            None => std::env::current_dir()
                .map_err(|e| format!("cannot find the current directory: {e}"))?,
        };
        let project = std::fs::canonicalize(&project)
            .ok()
            .filter(|dir| dir.is_dir())
            .ok_or_else(|| format!("the project `{}` is not a directory", project.display()))?;
        let name = instance_name(args.agent, &project);
        let state_root = instances::state_root()?;
        let state = state_root.join(&name);
        let evidence = state.join("evidence.log");
        let config_root = instances::config_root()?;
        let unit = instances::systemd_user_dir()?.join(format!("agent-kernel-{name}.service"));
        let (hook_file, codex_config, mut protect) = match args.agent {
            CodingAgent::ClaudeCode => {
                let (claude_dir, claude_json) = claude_config(&home)?;
                let user_settings = claude_dir.join("settings.json");
                let local_settings = project.join(".claude/settings.local.json");
                let hook_file = if args.user {
                    user_settings.clone()
                } else {
                    local_settings.clone()
                };
                // Any of them can switch hooks off (`disableAllHooks`).
                let mut protect = vec![
                    project.join(".claude/settings.json"),
                    local_settings,
                    user_settings,
                    // Claude Code's own configuration, with the MCP servers
                    // of the user and of each project, whose commands it
                    // starts by itself, outside the hook; and the older
                    // name it reads when that file is missing.
                    claude_json,
                    claude_dir.join(".config.json"),
                ];
                // The project's MCP servers, read from `.mcp.json` in the
                // project and in every directory above it: the same.
                protect.extend(in_project_and_above(&project, ".mcp.json"));
                (hook_file, None, protect)
            }
            CodingAgent::Codex => {
                let codex = codex_home(&home)?;
                let hooks = codex.join("hooks.json");
                let config = codex.join("config.toml");
                let mut protect = vec![hooks.clone(), config.clone()];
                // A project's `.codex/config.toml`, read from the project's
                // root down to where Codex starts, can switch hooks off
                // (`[features] hooks = false`) or start programs of its own
                // (MCP servers, `notify`) outside the hook.
                protect.extend(in_project_and_above(&project, ".codex"));
                (hooks, Some(config), protect)
            }
        };
        // Every enforcer's configuration, profiles and state, not only this
        // one's: an agent that may rewrite another project's configuration
        // or the other agent's profile chooses that enforcer's policy the
        // next time it starts.
        protect.extend([config_root.clone(), state_root.clone()]);
        let layout = Self {
            agent: args.agent,
            key: state.join(keys::PRIVATE_KEY_FILE),
            public_key: state.join(keys::PUBLIC_KEY_FILE),
            control: PathBuf::from(format!("{}.control", evidence.display())),
            socket: state.join("endpoint.sock"),
            profile: config_root.join(format!("{}.cedar", args.agent.name())),
            config: config_root.join(format!("{name}.toml")),
            name,
            project,
            exe,
            state_root,
            state,
            evidence,
            config_root,
            unit,
            hook_file,
            codex_config,
            protect,
        };
        // Every path written into a file, the protected ones included: a
        // path written as lossy text would protect another file.
        for path in [
            &layout.exe,
            &layout.project,
            &layout.state,
            &layout.config_root,
            &layout.unit,
            &layout.hook_file,
        ]
        .into_iter()
        .chain(&layout.protect)
        {
            plain(path)?;
        }
        let socket_len = layout.socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(format!(
                "the endpoint socket `{}` would be {socket_len} bytes long, over the \
                 {MAX_SOCKET_PATH} a Unix socket path may have: set XDG_STATE_HOME to a shorter \
                 directory",
                layout.socket.display()
            ));
        }
        Ok(layout)
    }

    /// The hook command as the agent's shell runs it.
    fn hook_command(&self) -> String {
        format!(
            "{} hook {} --socket {}",
            shell_words::quote(&self.exe.to_string_lossy()),
            self.agent.name(),
            shell_words::quote(&self.socket.to_string_lossy())
        )
    }

    /// The command that runs the enforcer, for a shell.
    fn listen_command(&self) -> String {
        format!(
            "{} listen --config {}",
            shell_words::quote(&self.exe.to_string_lossy()),
            shell_words::quote(&self.config.to_string_lossy())
        )
    }

    fn unit_name(&self) -> String {
        format!("agent-kernel-{}.service", self.name)
    }

    /// The `listen` configuration.
    fn config_text(&self, protect: &[PathBuf]) -> String {
        let string =
            |path: &Path| toml_edit::Value::from(path.to_string_lossy().as_ref()).to_string();
        let mut text = format!(
            "# The enforcer of `{}` in {}, written by `kernel-enforcer init {}`.\n\
             # Run it with: kernel-enforcer listen --config {}\n",
            self.agent.name(),
            self.project.display(),
            self.agent.name(),
            self.config.display()
        );
        let _ = writeln!(text, "policies = [{}]", string(&self.profile));
        let _ = writeln!(text, "workspace = {}", string(&self.project));
        let _ = writeln!(text, "key = {}", string(&self.key));
        let _ = writeln!(text, "evidence = {}", string(&self.evidence));
        let _ = writeln!(text, "socket = {}", string(&self.socket));
        let _ = writeln!(text, "control = {}", string(&self.control));
        text.push_str(
            "# The agent's hook settings: the agent may not touch them (the floor denies it).\n",
        );
        text.push_str("protect = [\n");
        for path in protect {
            let _ = writeln!(text, "  {},", string(path));
        }
        text.push_str("]\n");
        text
    }

    /// The systemd user unit.
    fn unit_text(&self) -> String {
        // Quoted for systemd: `\` and `"` escaped, `%` (specifiers) and `$`
        // (variables) doubled.
        let quote = |text: &str| {
            let mut quoted = String::from("\"");
            for c in text.chars() {
                match c {
                    '\\' | '"' => {
                        quoted.push('\\');
                        quoted.push(c);
                    }
                    '%' | '$' => {
                        quoted.push(c);
                        quoted.push(c);
                    }
                    _ => quoted.push(c),
                }
            }
            quoted.push('"');
            quoted
        };
        let project = self.project.to_string_lossy().replace('%', "%%");
        format!(
            "# Written by `kernel-enforcer init {agent}`.\n\
             [Unit]\n\
             Description=agent-kernel enforcer for {agent} in {project}\n\
             \n\
             [Service]\n\
             ExecStart={exe} listen --config {config}\n\
             # No automatic restart: after a halt (the kill switch) the enforcer\n\
             # stays down, and the hook blocks every tool call, until the operator\n\
             # starts it again.\n\
             Restart=no\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n",
            agent = self.agent.name(),
            exe = quote(&self.exe.to_string_lossy()),
            config = quote(&self.config.to_string_lossy()),
        )
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// A file init writes whole: created if missing, kept as it is otherwise
/// (the user's version wins; `why` says what to do to have it rewritten).
fn whole_file(path: &Path, what: &str, text: String, mode: u32) -> Result<Step, String> {
    let change = match read_optional(path)? {
        None => Change::Created,
        Some(existing) if existing == text => Change::Unchanged,
        Some(_) => Change::Kept(
            "differs from what init writes: yours is kept (remove it and run init again to \
             have it written)"
                .into(),
        ),
    };
    Ok(Step {
        path: path.to_owned(),
        what: what.to_owned(),
        write: (change == Change::Created).then_some(Write::File { text, mode }),
        change,
    })
}

/// A directory init creates with mode 0700; an existing one others may
/// write into is refused (the key files in it would prove nothing).
fn private_dir(path: &Path, what: &str) -> Result<Step, String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if meta.mode() & 0o022 != 0 {
                return Err(format!(
                    "`{}` is writable by group or others: run `chmod 700` on it, then init again",
                    path.display()
                ));
            }
            Ok(Step {
                path: path.to_owned(),
                what: what.to_owned(),
                change: Change::Unchanged,
                write: None,
            })
        }
        Ok(_) => Err(format!(
            "`{}` exists and is not a directory",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Step {
            path: path.to_owned(),
            what: what.to_owned(),
            change: Change::Created,
            write: Some(Write::Dir),
        }),
        Err(e) => Err(format!("`{}`: {e}", path.display())),
    }
}

/// Whether `systemctl --user` answers (within a few seconds).
fn systemd_user_usable() -> bool {
    let Ok(mut child) = std::process::Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Everything init would do, checked before anything is written.
struct Plan {
    steps: Vec<Step>,
    service: bool,
    only_hook: bool,
    codex_key: Option<String>,
    codex_disabled: bool,
}

fn plan(layout: &Layout, args: &InitArgs) -> Result<Plan, String> {
    let mut steps = vec![
        private_dir(&layout.state_root, "state directory")?,
        private_dir(&layout.state, "enforcer state")?,
    ];
    // The key: created once, never replaced.
    let key = match std::fs::symlink_metadata(&layout.key) {
        Ok(_) => Some(keys::load_private(&layout.key).map_err(|e| {
            format!("{e}; init never replaces a key: fix or remove it, then run init again")
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("`{}`: {e}", layout.key.display())),
    };
    match key {
        None => {
            steps.push(Step {
                path: layout.key.clone(),
                what: "signing key".into(),
                change: Change::Created,
                write: Some(Write::Key),
            });
            steps.push(Step {
                path: layout.public_key.clone(),
                what: "public key".into(),
                change: Change::Created,
                write: None,
            });
        }
        Some(key) => {
            steps.push(Step {
                path: layout.key.clone(),
                what: "signing key".into(),
                change: Change::Unchanged,
                write: None,
            });
            let text = format!("{}\n", format_public_key(&key.verifying_key()));
            let change = match read_optional(&layout.public_key)? {
                None => Change::Created,
                Some(existing) if existing == text => Change::Unchanged,
                Some(_) => Change::Updated,
            };
            steps.push(Step {
                path: layout.public_key.clone(),
                what: "public key".into(),
                write: (change != Change::Unchanged).then_some(Write::File { text, mode: 0o644 }),
                change,
            });
        }
    }
    steps.push(whole_file(
        &layout.profile,
        "policy profile",
        layout.agent.profile().to_owned(),
        0o644,
    )?);
    let service = !args.no_service && systemd_user_usable();
    let mut protect = layout.protect.clone();
    if service {
        protect.push(layout.unit.clone());
    }
    steps.push(whole_file(
        &layout.config,
        "enforcer config",
        layout.config_text(&protect),
        0o644,
    )?);
    if service {
        steps.push(whole_file(
            &layout.unit,
            "systemd user unit",
            layout.unit_text(),
            0o644,
        )?);
    }
    let command = layout.hook_command();
    let existing = read_optional(&layout.hook_file)?;
    let edit = agents::add_hook(
        existing.as_deref(),
        &layout.hook_file,
        layout.agent,
        &command,
        &layout.socket.to_string_lossy(),
    )
    .map_err(|e| e.to_string())?;
    let hook_what = match layout.agent {
        CodingAgent::ClaudeCode => "Claude Code hook",
        CodingAgent::Codex => "Codex hook",
    };
    // The file's own mode is kept; a new one is private (settings can
    // hold tokens).
    let mode = |path: &Path| {
        std::fs::metadata(path).map_or(0o600, |meta| meta.permissions().mode() & 0o7777)
    };
    steps.push(Step {
        path: layout.hook_file.clone(),
        what: hook_what.into(),
        change: match (&existing, &edit.text) {
            (_, None) => Change::Unchanged,
            (None, Some(_)) => Change::Created,
            (Some(_), Some(_)) => Change::Updated,
        },
        write: edit.text.clone().map(|text| Write::File {
            text,
            mode: mode(&layout.hook_file),
        }),
    });
    let mut codex_key = None;
    let mut codex_disabled = false;
    if let Some(config) = &layout.codex_config {
        let key = agents::codex_trust_key(&layout.hook_file, edit.position);
        let hash = agents::codex_trust_hash(&command);
        let existing = read_optional(config)?;
        let (text, disabled) = agents::codex_trust(existing.as_deref(), config, &key, &hash)
            .map_err(|e| e.to_string())?;
        steps.push(Step {
            path: config.clone(),
            what: "Codex hook trust".into(),
            change: match (&existing, &text) {
                (_, None) => Change::Unchanged,
                (None, Some(_)) => Change::Created,
                (Some(_), Some(_)) => Change::Updated,
            },
            write: text.map(|text| Write::File {
                text,
                mode: mode(config),
            }),
        });
        codex_key = Some(key);
        codex_disabled = disabled;
    }
    Ok(Plan {
        steps,
        service,
        only_hook: edit.only_hook,
        codex_key,
        codex_disabled,
    })
}

/// Writes `text` to `path` through a fresh file in the same directory
/// renamed over it, with `mode` ([`keys::replace_file`]). A symbolic link
/// at `path` (a settings file kept with one's dotfiles) is written
/// through, not replaced.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let target = if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::canonicalize(path).map_err(|e| format!("`{}`: {e}", path.display()))?
    } else {
        path.to_owned()
    };
    let io = |e: std::io::Error| format!("cannot write `{}`: {e}", target.display());
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    keys::replace_file(&target, text.as_bytes(), mode).map_err(io)
}

fn apply(layout: &Layout, steps: &[Step]) -> Result<(), String> {
    for step in steps {
        match &step.write {
            None => {}
            Some(Write::Dir) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&step.path)
                .map_err(|e| format!("cannot create `{}`: {e}", step.path.display()))?,
            Some(Write::File { text, mode }) => {
                if step.path == layout.config || step.path == layout.profile {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&layout.config_root)
                        .map_err(|e| {
                            format!("cannot create `{}`: {e}", layout.config_root.display())
                        })?;
                }
                write_file(&step.path, text, *mode)?;
            }
            Some(Write::Key) => {
                let key = keys::generate().map_err(|e| e.to_string())?;
                keys::write_private(&key, &step.path).map_err(|e| e.to_string())?;
                keys::write_public(&layout.public_key, &key.verifying_key())
                    .map_err(|e| format!("cannot write `{}`: {e}", layout.public_key.display()))?;
            }
        }
    }
    Ok(())
}

fn report(layout: &Layout, plan: &Plan, dry_run: bool) -> String {
    let mut out = format!(
        "kernel-enforcer init {}: project {} (enforcer `{}`){}\n",
        layout.agent.name(),
        layout.project.display(),
        layout.name,
        if dry_run {
            ", dry run: nothing written"
        } else {
            ""
        }
    );
    for step in &plan.steps {
        let change = match (&step.change, dry_run) {
            (Change::Created, false) => "created",
            (Change::Created, true) => "would create",
            (Change::Updated, false) => "updated",
            (Change::Updated, true) => "would update",
            (Change::Unchanged, _) => "unchanged",
            (Change::Kept(_), _) => "kept",
        };
        let _ = writeln!(
            out,
            "  {change:<12} {:<17} {}",
            step.what,
            step.path.display()
        );
        if let Change::Kept(why) = &step.change {
            let _ = writeln!(out, "{:<33}{why}", "");
        }
    }
    if plan
        .steps
        .iter()
        .all(|step| matches!(step.change, Change::Unchanged | Change::Kept(_)))
    {
        out.push_str("Nothing changed: everything was already in place.\n");
    }
    if plan.codex_disabled {
        let _ = writeln!(
            out,
            "WARNING: the hook is disabled in Codex's configuration (`enabled = false` under \
             [hooks.state.\"{}\"]): Codex will not run it until you remove that line.",
            plan.codex_key.as_deref().unwrap_or("")
        );
    }
    let exe = shell_words::quote(&layout.exe.to_string_lossy()).into_owned();
    let q = |path: &Path| shell_words::quote(&path.to_string_lossy()).into_owned();
    out.push_str("\nNext:\n");
    if plan.service {
        let _ = writeln!(
            out,
            "  1. start the enforcer (now and at every login):\n       \
             systemctl --user daemon-reload && systemctl --user enable --now {}",
            layout.unit_name()
        );
    } else {
        let _ = writeln!(
            out,
            "  1. start the enforcer (it runs in the foreground; keep it running):\n       {}",
            layout.listen_command()
        );
    }
    let _ = writeln!(
        out,
        "     Until it runs, the hook blocks every tool call of the agent (fail closed).\n  \
         2. check it: {exe} status   (with several running: --control {})\n  \
         3. run the agent in the project: cd {} && {}\n     \
         What it may do: {}; decisions are recorded in {} ({exe} audit verify --help).",
        q(&layout.control),
        q(&layout.project),
        layout.agent.program(),
        layout.profile.display(),
        layout.evidence.display()
    );
    if layout.agent == CodingAgent::Codex {
        let _ = writeln!(
            out,
            "     Codex runs the hook because its hash is recorded as trusted in {}; after editing \
             {}, run this init again (or review the hook with /hooks in Codex).",
            layout
                .codex_config
                .as_deref()
                .unwrap_or(Path::new(""))
                .display(),
            layout.hook_file.display()
        );
    }
    out.push_str("\nTo undo:\n");
    if plan.service {
        let _ = writeln!(
            out,
            "  systemctl --user disable --now {unit}\n  rm {} && systemctl --user daemon-reload",
            q(&layout.unit),
            unit = layout.unit_name()
        );
    } else {
        out.push_str("  stop the enforcer (Ctrl-C where it runs)\n");
    }
    if plan.only_hook {
        let _ = writeln!(out, "  rm {}", q(&layout.hook_file));
    } else {
        let _ = writeln!(
            out,
            "  remove from {} the PreToolUse hook whose command is:\n    {}",
            layout.hook_file.display(),
            layout.hook_command()
        );
    }
    if let (Some(config), Some(key)) = (&layout.codex_config, &plan.codex_key) {
        let _ = writeln!(
            out,
            "  remove from {} the table [hooks.state.\"{key}\"]",
            config.display()
        );
    }
    let _ = writeln!(
        out,
        "  rm {}\n  rm {}   (shared by every {} project set up by init)\n  \
         rm -r {}   (the key and the evidence: keep the evidence while you may need to audit it)",
        q(&layout.config),
        q(&layout.profile),
        layout.agent.name(),
        q(&layout.state)
    );
    out
}

/// `kernel-enforcer init`.
pub(crate) fn run(args: &InitArgs) -> ExitCode {
    let result = Layout::new(args).and_then(|layout| {
        let plan = plan(&layout, args)?;
        if !args.dry_run {
            apply(&layout, &plan.steps)?;
        }
        Ok(report(&layout, &plan, args.dry_run))
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn names_keep_projects_apart() {
        let a = instance_name(CodingAgent::ClaudeCode, Path::new("/home/u/My Project!"));
        assert!(a.starts_with("claude-code-my-project-"), "{a}");
        assert_eq!(a.len(), "claude-code-my-project-".len() + 8);
        let b = instance_name(CodingAgent::ClaudeCode, Path::new("/other/My Project!"));
        assert_ne!(a, b);
        assert_ne!(
            a,
            instance_name(CodingAgent::Codex, Path::new("/home/u/My Project!"))
        );
        assert!(instance_name(CodingAgent::Codex, Path::new("/")).starts_with("codex-project-"));
        let long = instance_name(
            CodingAgent::Codex,
            Path::new(&format!("/{}", "x".repeat(100))),
        );
        assert!(long.len() <= "codex-".len() + 24 + 9, "{long}");
    }

    #[test]
    fn the_profiles_are_valid_policies() {
        for agent in [CodingAgent::ClaudeCode, CodingAgent::Codex] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("profile.cedar");
            std::fs::write(&file, agent.profile()).unwrap();
            kernel_policy::check_files(&[file]).unwrap();
        }
    }
}
