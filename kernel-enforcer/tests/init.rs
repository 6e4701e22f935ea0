//! `kernel-enforcer init claude-code|codex` in a temporary home: what it
//! writes, that running it again changes nothing, that it merges into the
//! agents' settings without losing anything, that the hook it installs
//! really decides with the enforcer it configured, and that operator
//! commands find that enforcer without `--control`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kernel_testkit::{Reaped, enforcer};

/// A temporary home and project, with a directory for fake programs put
/// first on `PATH`.
struct Home {
    dir: tempfile::TempDir,
    home: PathBuf,
    bin: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("ik").tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let home = root.join("home");
        let bin = root.join("bin");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        Self { dir, home, bin }
    }

    fn project(&self, name: &str) -> PathBuf {
        let project = self.dir.path().join(name);
        std::fs::create_dir_all(&project).unwrap();
        std::fs::canonicalize(project).unwrap()
    }

    /// A command of the enforcer with this home and no other.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(enforcer());
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .args(args)
            .env("HOME", &self.home)
            .env("PATH", path)
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CODEX_HOME")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("AGENT_KERNEL_CONTROL")
            .env_remove("AGENT_KERNEL_ENDPOINT");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn init(&self, agent: &str, project: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["init", agent, "--project", project.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// A `systemctl` that answers `status` with `code`.
    fn fake_systemctl(&self, code: i32) {
        let path = self.bin.join("systemctl");
        std::fs::write(&path, format!("#!/bin/sh\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn state(&self) -> PathBuf {
        self.home.join(".local/state/agent-kernel")
    }

    fn config(&self) -> PathBuf {
        self.home.join(".config/agent-kernel")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Every file and directory under `root`, with its mode and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                pending.push(path.clone());
                files.insert(path, (mode, None));
            } else {
                files.insert(path.clone(), (mode, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    files
}

fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The one hook command of the kernel's in a settings file.
fn hook_command(settings: &Path) -> String {
    let value = json(settings);
    let commands: Vec<String> = value["hooks"]["PreToolUse"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["hooks"].as_array().unwrap().clone())
        .filter_map(|hook| hook["command"].as_str().map(str::to_owned))
        .filter(|command| command.contains("kernel-enforcer"))
        .collect();
    assert_eq!(commands.len(), 1, "{value}");
    commands.into_iter().next().unwrap()
}

#[test]
fn a_second_run_changes_nothing() {
    let home = Home::new();
    let project = home.project("proj");
    let first = ok(&home.init("claude-code", &project, &["--no-service"]));
    assert!(first.contains("created"), "{first}");
    assert!(!first.contains("Nothing changed"), "{first}");
    let before = snapshot(home.dir.path());
    let second = ok(&home.init("claude-code", &project, &["--no-service"]));
    assert!(second.contains("Nothing changed"), "{second}");
    // Every path reported before the summary is unchanged.
    let steps: Vec<&str> = second
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert_eq!(steps.len(), 7, "{second}");
    for line in steps {
        assert!(line.trim_start().starts_with("unchanged"), "{line}");
    }
    assert_eq!(
        snapshot(home.dir.path()),
        before,
        "the second run changed files"
    );

    // What the first run made, and how private it is.
    let state = only_file(&home.state(), "");
    assert!(
        state
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("claude-code-proj-")
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.state()), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("kernel.key")), 0o600);
    assert!(state.join("kernel.pub").is_file());
    assert_eq!(
        std::fs::read_to_string(home.config().join("claude-code.cedar"))
            .unwrap()
            .len(),
        concat!(
            include_str!("../../examples/policies/claude-code.cedar"),
            "\n",
            include_str!("../../examples/policies/coding-agent-hooks.cedar"),
            "\n",
            include_str!("../../examples/policies/coding-agent.cedar"),
        )
        .len()
    );
    let settings = project.join(".claude/settings.local.json");
    let command = hook_command(&settings);
    assert!(
        command.starts_with(&format!(
            "{} hook claude-code --socket ",
            std::fs::canonicalize(enforcer()).unwrap().display()
        )),
        "{command}"
    );
    assert!(
        command.ends_with(&format!("{}", state.join("endpoint.sock").display())),
        "{command}"
    );
    // A hook that crashes or cannot be found blocks the call in Claude
    // Code, instead of letting it run.
    let handler = &json(&settings)["hooks"]["PreToolUse"][0]["hooks"][0];
    assert_eq!(handler["onFailure"], "block", "{handler}");
    // The settings the project shares are left alone.
    assert!(!project.join(".claude/settings.json").exists());
}

#[test]
fn a_dry_run_writes_nothing() {
    let home = Home::new();
    let project = home.project("proj");
    let before = snapshot(home.dir.path());
    let out = ok(&home.init("codex", &project, &["--dry-run", "--no-service"]));
    assert!(
        out.contains("would create") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(snapshot(home.dir.path()), before);
}

/// New settings are private to their owner (they can hold tokens);
/// existing ones keep their mode, and one that is a symbolic link (kept
/// with one's dotfiles) is written through the link, which stays.
#[test]
fn settings_keep_their_mode_and_their_link() {
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let home = Home::new();
    let fresh = home.project("fresh");
    ok(&home.init("claude-code", &fresh, &["--no-service"]));
    assert_eq!(mode(&fresh.join(".claude/settings.local.json")), 0o600);

    let linked = home.project("linked");
    let dotfiles = home.home.join("dotfiles/settings.json");
    std::fs::create_dir_all(dotfiles.parent().unwrap()).unwrap();
    std::fs::write(&dotfiles, "{\"model\": \"opus\"}\n").unwrap();
    std::fs::set_permissions(&dotfiles, std::fs::Permissions::from_mode(0o640)).unwrap();
    let settings = linked.join(".claude/settings.local.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&dotfiles, &settings).unwrap();
    ok(&home.init("claude-code", &linked, &["--no-service"]));
    assert!(
        std::fs::symlink_metadata(&settings)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(json(&dotfiles)["model"], "opus");
    assert!(hook_command(&dotfiles).contains("kernel-enforcer"));
    assert_eq!(mode(&dotfiles), 0o640);
}

#[test]
fn existing_settings_keep_their_keys_and_hooks() {
    let home = Home::new();
    let project = home.project("proj");
    let settings = project.join(".claude/settings.local.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let mine = r#"{
  "permissions": {"allow": ["Bash(npm test:*)"], "deny": ["Read(./.env)"]},
  "hooks": {
    "PreToolUse": [
      {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-bash.sh", "timeout": 5}]}
    ],
    "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
  },
  "env": {"FOO": "bar"}
}"#;
    std::fs::write(&settings, mine).unwrap();
    let out = ok(&home.init("claude-code", &project, &["--no-service"]));
    assert!(
        out.contains("updated") && out.contains("settings.local.json"),
        "{out}"
    );
    let value = json(&settings);
    let before: serde_json::Value = serde_json::from_str(mine).unwrap();
    assert_eq!(value["permissions"], before["permissions"]);
    assert_eq!(value["env"], before["env"]);
    assert_eq!(value["hooks"]["Stop"], before["hooks"]["Stop"]);
    let groups = value["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0], before["hooks"]["PreToolUse"][0]);
    assert_eq!(groups[1]["matcher"], "*");
    assert!(
        groups[1]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .contains(" hook claude-code --socket ")
    );
    // The keys stay in the user's order.
    let written = std::fs::read_to_string(&settings).unwrap();
    let at = |key: &str| written.find(key).unwrap();
    assert!(
        at("\"permissions\"") < at("\"hooks\"") && at("\"hooks\"") < at("\"env\""),
        "{written}"
    );
    // The undo instructions say what to take out, not to delete the file.
    assert!(
        out.contains("remove from") && !out.contains(&format!("rm {}", settings.display())),
        "{out}"
    );
    assert!(ok(&home.init("claude-code", &project, &["--no-service"])).contains("Nothing changed"));
}

#[test]
fn settings_that_are_not_json_are_refused_before_anything_is_written() {
    let home = Home::new();
    let project = home.project("proj");
    let settings = project.join(".claude/settings.local.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{\"hooks\": {,}}").unwrap();
    let before = snapshot(home.dir.path());
    let output = home.init("claude-code", &project, &["--no-service"]);
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(
        error.contains(&format!("`{}` is not valid JSON", settings.display())),
        "{error}"
    );
    assert_eq!(snapshot(home.dir.path()), before, "something was written");
}

/// A protected path that is not UTF-8 text (Claude Code's configuration
/// directory here, which holds the user settings that can switch the
/// hook off) is refused: written as lossy text into the configuration, it
/// would protect another file and leave this one open.
#[test]
fn a_protected_path_that_is_not_text_is_refused_before_anything_is_written() {
    use std::os::unix::ffi::OsStrExt as _;
    let home = Home::new();
    let project = home.project("proj");
    let mut claude_dir = home.home.as_os_str().to_owned();
    claude_dir.push(std::ffi::OsStr::from_bytes(b"/claude-\xff"));
    let before = snapshot(home.dir.path());
    let output = home
        .command(&[
            "init",
            "claude-code",
            "--project",
            project.to_str().unwrap(),
            "--no-service",
        ])
        .env("CLAUDE_CONFIG_DIR", &claude_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output.stdout));
    let error = text(&output.stderr);
    assert!(error.contains("is not UTF-8 text"), "{error}");
    assert_eq!(snapshot(home.dir.path()), before, "something was written");
}

#[test]
fn an_edited_profile_and_an_existing_key_are_kept() {
    let home = Home::new();
    let project = home.project("proj");
    ok(&home.init("claude-code", &project, &["--no-service"]));
    let profile = home.config().join("claude-code.cedar");
    let edited = format!("{}\n// mine\n", std::fs::read_to_string(&profile).unwrap());
    std::fs::write(&profile, &edited).unwrap();
    let key = only_file(&home.state(), "").join("kernel.key");
    let key_bytes = std::fs::read(&key).unwrap();
    let out = ok(&home.init("claude-code", &project, &["--no-service"]));
    assert!(
        out.contains("kept") && out.contains("yours is kept"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), edited);
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
    // A key init did not make (here: unreadable as a key) is refused, not
    // replaced.
    std::fs::write(&key, "not a key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = home.init("claude-code", &project, &["--no-service"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("never replaces a key"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), b"not a key");
}

#[test]
fn codex_gets_a_trusted_hook_in_its_home_and_keeps_its_configuration() {
    let home = Home::new();
    let project = home.project("proj");
    let codex = home.home.join(".codex");
    std::fs::create_dir_all(&codex).unwrap();
    let config =
        "# my settings\nmodel = \"o3\"\n\n[projects.\"/elsewhere\"]\ntrust_level = \"trusted\"\n";
    std::fs::write(codex.join("config.toml"), config).unwrap();
    ok(&home.init("codex", &project, &["--no-service"]));
    let hooks = codex.join("hooks.json");
    let command = hook_command(&hooks);
    assert!(command.contains(" hook codex --socket "), "{command}");
    assert_eq!(
        json(&hooks)["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"],
        30
    );
    let written = std::fs::read_to_string(codex.join("config.toml")).unwrap();
    assert!(written.starts_with(config), "{written}");
    let key = format!("[hooks.state.\"{}:pre_tool_use:0:0\"]", hooks.display());
    assert!(written.contains(&key), "{written}");
    assert!(written.contains("trusted_hash = \"sha256:"), "{written}");
    let before = snapshot(home.dir.path());
    assert!(ok(&home.init("codex", &project, &["--no-service"])).contains("Nothing changed"));
    assert_eq!(snapshot(home.dir.path()), before);

    // Codex reads hooks per user: a second project's enforcer would be
    // asked on every call as well, so it is refused, naming the file.
    let other = home.project("other");
    let output = home.init("codex", &other, &["--no-service"]);
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(
        error.contains(&format!(
            "`{}` already runs the kernel's codex hook",
            hooks.display()
        )),
        "{error}"
    );
    assert_eq!(
        snapshot(home.dir.path()).len(),
        before.len() + 1,
        "only the other project's directory is new"
    );
    let refused = home.init("codex", &project, &["--user", "--no-service"]);
    assert!(!refused.status.success());
}

#[test]
fn a_systemd_user_unit_is_written_only_where_systemctl_works() {
    let home = Home::new();
    let project = home.project("proj");
    home.fake_systemctl(1);
    let out = ok(&home.init("claude-code", &project, &[]));
    assert!(!home.home.join(".config/systemd").exists());
    assert!(out.contains(" listen --config "), "{out}");

    let home = Home::new();
    let project = home.project("proj");
    home.fake_systemctl(0);
    let out = ok(&home.init("claude-code", &project, &[]));
    let unit = only_file(&home.home.join(".config/systemd/user"), ".service");
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("agent-kernel-claude-code-proj-"), "{name}");
    assert!(
        out.contains(&format!("systemctl --user enable --now {name}")),
        "{out}"
    );
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let config = only_file(&home.config(), ".toml");
    assert!(
        unit_text.contains(&format!(
            "ExecStart=\"{}\" listen --config \"{}\"",
            std::fs::canonicalize(enforcer()).unwrap().display(),
            config.display()
        )),
        "{unit_text}"
    );
    assert!(unit_text.contains("Restart=no"), "{unit_text}");
    // The unit is protected from the agent like the hook settings.
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains(&unit.display().to_string())
    );
}

/// Starts a `listen` of each configuration init wrote; each is killed
/// when dropped.
fn listen(home: &Home) -> Vec<Reaped> {
    let mut started = Vec::new();
    for config in std::fs::read_dir(home.config()).unwrap() {
        let config = config.unwrap().path();
        if config.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let child = home
            .command(&["listen", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        started.push((Reaped(child), config));
    }
    for (_, config) in &started {
        let text = std::fs::read_to_string(config).unwrap();
        let socket = text
            .lines()
            .find_map(|line| line.strip_prefix("socket = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let control = text
            .lines()
            .find_map(|line| line.strip_prefix("control = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        kernel_testkit::wait_for(
            &format!("listen to come up for {}", config.display()),
            Duration::from_secs(30),
            || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
                    && Path::new(&control).exists()
            },
        );
    }
    started.into_iter().map(|(listener, _)| listener).collect()
}

/// Runs `command` exactly as the agent does: through the shell, with the
/// payload on standard input.
fn run_hook(home: &Home, command: &str, payload: &serde_json::Value) -> Output {
    kernel_testkit::output_with_input(
        Command::new("sh")
            .args(["-c", command])
            .env("HOME", &home.home)
            .env_remove("AGENT_KERNEL_ENDPOINT"),
        payload.to_string().as_bytes(),
    )
}

fn claude_read(project: &Path, file: &Path) -> serde_json::Value {
    serde_json::json!({
        "session_id": "s", "hook_event_name": "PreToolUse", "cwd": project,
        "tool_name": "Read", "tool_input": {"file_path": file},
        "tool_use_id": "toolu_1", "permission_mode": "default",
    })
}

#[test]
fn the_installed_hook_decides_with_the_enforcer_init_configured() {
    let home = Home::new();
    let project = home.project("proj");
    std::fs::write(project.join("README.md"), "hello\n").unwrap();
    let key = kernel_testkit::plant_ssh_key(&home.home, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    ok(&home.init("claude-code", &project, &["--no-service"]));
    let settings = project.join(".claude/settings.local.json");
    let command = hook_command(&settings);

    // Before the enforcer runs, the hook blocks (fail closed).
    let early = run_hook(
        &home,
        &command,
        &claude_read(&project, &project.join("README.md")),
    );
    assert_eq!(early.status.code(), Some(2), "{}", text(&early.stderr));

    let _running = listen(&home);
    let denied = run_hook(&home, &command, &claude_read(&project, &key));
    assert_eq!(denied.status.code(), Some(2), "{}", text(&denied.stderr));
    // Denied by a decision of the enforcer (it has a receipt), not by a
    // failure to reach it.
    assert!(
        text(&denied.stderr).contains("denied by policy"),
        "{}",
        text(&denied.stderr)
    );
    let allowed = run_hook(
        &home,
        &command,
        &claude_read(&project, &project.join("README.md")),
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed.stderr));
    // An allow adds nothing to the model's context.
    assert!(
        text(&allowed.stdout).trim().is_empty(),
        "{}",
        text(&allowed.stdout)
    );
    // The agent may not switch its own hook off: the settings that hold it
    // are protected by the floor, inside the workspace as they are.
    let tamper = serde_json::json!({
        "session_id": "s", "hook_event_name": "PreToolUse", "cwd": project,
        "tool_name": "Write",
        "tool_input": {"file_path": settings, "content": "{\"disableAllHooks\": true}"},
    });
    let blocked = run_hook(&home, &command, &tamper);
    assert_eq!(blocked.status.code(), Some(2), "{}", text(&blocked.stderr));
    assert!(
        text(&blocked.stderr).contains("the kernel's own assets"),
        "{}",
        text(&blocked.stderr)
    );

    // The operator finds the one running enforcer without --control.
    let status = home.run(&["status", "--json"]);
    let out = ok(&status);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["ok"], true, "{out}");
    let evidence = value["data"]["evidence_path"].as_str().unwrap();
    assert!(
        evidence.starts_with(home.state().to_str().unwrap()),
        "{evidence}"
    );
    assert!(
        text(&status.stderr).contains("the only one running"),
        "{}",
        text(&status.stderr)
    );
    // Two decisions and their records, and nothing else.
    assert_eq!(value["data"]["decisions"]["allowed"], 1, "{out}");
    assert_eq!(value["data"]["decisions"]["denied"], 2, "{out}");
}

#[test]
fn operator_commands_refuse_to_guess_between_enforcers() {
    let home = Home::new();
    let none = home.run(&["status"]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no running enforcer"),
        "{}",
        text(&none.stderr)
    );

    let first = home.project("first");
    let second = home.project("second");
    ok(&home.init("claude-code", &first, &["--no-service"]));
    ok(&home.init("codex", &second, &["--no-service"]));
    let never = home.run(&["status"]);
    assert!(!never.status.success());
    assert!(
        text(&never.stderr).contains("no running enforcer"),
        "{}",
        text(&never.stderr)
    );

    let mut running = listen(&home);
    assert_eq!(running.len(), 2);
    let controls: Vec<PathBuf> = std::fs::read_dir(home.state())
        .unwrap()
        .map(|entry| entry.unwrap().path().join("evidence.log.control"))
        .collect();
    assert_eq!(controls.len(), 2);
    for verb in [
        &["status"][..],
        &["pending"],
        &["halt", "--reason", "guess"],
    ] {
        let output = home.run(verb);
        assert!(!output.status.success(), "{verb:?}");
        let error = text(&output.stderr);
        assert!(error.contains("2 enforcers are running"), "{error}");
        for control in &controls {
            assert!(error.contains(&control.display().to_string()), "{error}");
        }
    }
    // Neither was halted by the refused `halt`.
    for control in &controls {
        let status = home.run(&["status", "--json", "--control", control.to_str().unwrap()]);
        let value: serde_json::Value = serde_json::from_str(&ok(&status)).unwrap();
        assert_eq!(value["data"]["halted"], serde_json::Value::Null, "{value}");
    }
    // With one of them stopped (its key file stays behind), the other is
    // the obvious choice.
    drop(running.pop());
    let one = home.run(&["status"]);
    ok(&one);
    assert!(
        text(&one.stderr).contains("the only one running"),
        "{}",
        text(&one.stderr)
    );
    drop(running);
    let stopped = home.run(&["status"]);
    assert!(!stopped.status.success());
    let error = text(&stopped.stderr);
    assert!(
        error.contains("no running enforcer") && error.contains("not answering"),
        "{error}"
    );
    for control in &controls {
        assert!(error.contains(&control.display().to_string()), "{error}");
    }
}

/// A tool call as the agent makes it: the hook decides, and only when it
/// lets the call through does the tool run (`Bash` in the project through
/// the shell, `Write` of the file). Returns the hook's output.
fn agent_call(
    home: &Home,
    hook: &str,
    project: &Path,
    tool: &str,
    input: serde_json::Value,
) -> Output {
    let payload = serde_json::json!({
        "session_id": "s", "hook_event_name": "PreToolUse", "cwd": project,
        "tool_name": tool, "tool_input": input, "tool_use_id": "toolu_1",
    });
    let verdict = run_hook(home, hook, &payload);
    if verdict.status.code() == Some(0) {
        match tool {
            "Bash" => {
                let status = Command::new("sh")
                    .args(["-c", input["command"].as_str().unwrap()])
                    .current_dir(project)
                    .env("HOME", &home.home)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "{input}");
            }
            "Write" => {
                let path = Path::new(input["file_path"].as_str().unwrap());
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, input["content"].as_str().unwrap()).unwrap();
            }
            _ => panic!("no such tool here: {tool}"),
        }
    }
    verdict
}

/// Blocked by the floor, not by the profile or a failure.
fn assert_floor(output: &Output, what: &str) {
    assert_eq!(output.status.code(), Some(2), "{what}: allowed");
    assert!(
        text(&output.stderr).contains("the kernel's own assets"),
        "{what}: {}",
        text(&output.stderr)
    );
}

#[test]
fn codex_hooks_cannot_be_switched_off_by_a_project_configuration() {
    let home = Home::new();
    let project = home.project("proj");
    ok(&home.init("codex", &project, &["--no-service"]));
    let hook = hook_command(&home.home.join(".codex/hooks.json"));
    let _running = listen(&home);
    let bash = |command: &str| {
        agent_call(
            &home,
            &hook,
            &project,
            "Bash",
            serde_json::json!({"command": command}),
        )
    };
    // Ordinary work in the project is still decided and allowed.
    assert_eq!(bash("mkdir src").status.code(), Some(0));
    assert!(project.join("src").is_dir());
    // Codex reads `.codex/config.toml` in the project, and in every
    // directory from the project's root down to it: `[features] hooks =
    // false` there switches every hook off for the next session.
    let parent = project.parent().unwrap();
    for (command, dir) in [
        ("mkdir .codex", project.join(".codex")),
        ("mkdir ../.codex", parent.join(".codex")),
    ] {
        assert_floor(&bash(command), command);
        assert!(!dir.exists(), "{command}");
    }
    for command in [
        "git config -f .codex/config.toml features.hooks false",
        "git config -f ../.codex/config.toml features.hooks false",
        "git config -f src/../.codex/config.toml features.hooks false",
    ] {
        assert_floor(&bash(command), command);
    }
    assert!(!project.join(".codex").exists());
    assert!(!parent.join(".codex").exists());
}

#[test]
fn claude_code_mcp_servers_cannot_be_added_outside_the_hook() {
    let home = Home::new();
    let project = home.project("proj");
    std::fs::write(project.join("servers.json"), "{}").unwrap();
    ok(&home.init("claude-code", &project, &["--no-service"]));
    let hook = hook_command(&project.join(".claude/settings.local.json"));
    let _running = listen(&home);
    // Claude Code starts the commands of the MCP servers named in
    // `.mcp.json` (in the project and every directory above it) and in its
    // own `~/.claude.json` by itself, outside the hook: such a command could
    // rewrite the hook's settings before the next session.
    let servers =
        serde_json::json!({"mcpServers": {"x": {"command": "sh", "args": ["-c", "true"]}}});
    let mcp = project.join(".mcp.json");
    let write = agent_call(
        &home,
        &hook,
        &project,
        "Write",
        serde_json::json!({"file_path": mcp, "content": servers.to_string()}),
    );
    assert_floor(&write, "Write .mcp.json");
    assert!(!mcp.exists());
    let parent = project.parent().unwrap();
    let claude_json = home.home.join(".claude.json");
    for (command, file) in [
        ("cp servers.json .mcp.json".to_owned(), mcp.clone()),
        (
            "cp servers.json ../.mcp.json".to_owned(),
            parent.join(".mcp.json"),
        ),
        (
            format!("cp servers.json {}", claude_json.display()),
            claude_json.clone(),
        ),
    ] {
        let output = agent_call(
            &home,
            &hook,
            &project,
            "Bash",
            serde_json::json!({"command": command}),
        );
        assert_floor(&output, &command);
        assert!(!file.exists(), "{command}");
    }
    // Other files of the project are written as before.
    let notes = project.join("notes.md");
    let write = agent_call(
        &home,
        &hook,
        &project,
        "Write",
        serde_json::json!({"file_path": notes, "content": "notes\n"}),
    );
    assert_eq!(write.status.code(), Some(0), "{}", text(&write.stderr));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "notes\n");
}

#[test]
fn the_user_hook_goes_where_claude_code_reads_its_user_settings() {
    let home = Home::new();
    let project = home.project("proj");
    // With `CLAUDE_CONFIG_DIR` set, Claude Code reads its user settings
    // there and never `~/.claude/settings.json`: a hook put there would
    // not run, and a `disableAllHooks` in the settings it does read would
    // not be protected.
    let claude = home.dir.path().join("claude-config");
    let out = home
        .command(&[
            "init",
            "claude-code",
            "--user",
            "--no-service",
            "--project",
            project.to_str().unwrap(),
        ])
        .env("CLAUDE_CONFIG_DIR", &claude)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let settings = claude.join("settings.json");
    let hook = hook_command(&settings);
    assert!(!home.home.join(".claude").exists());
    let config = std::fs::read_to_string(only_file(&home.config(), ".toml")).unwrap();
    for protected in [&settings, &claude.join(".claude.json")] {
        assert!(
            config.contains(&format!("\"{}\"", protected.display())),
            "{config}"
        );
    }
    let _running = listen(&home);
    let write = agent_call(
        &home,
        &hook,
        &project,
        "Bash",
        serde_json::json!({"command": format!("cp /dev/null {}", settings.display())}),
    );
    assert_floor(&write, "cp over the user settings");
    assert!(hook_command(&settings).contains(" hook claude-code "));

    let relative = home
        .command(&[
            "init",
            "claude-code",
            "--no-service",
            "--project",
            project.to_str().unwrap(),
        ])
        .env("CLAUDE_CONFIG_DIR", "claude-config")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!relative.status.success());
    assert!(
        text(&relative.stderr).contains("CLAUDE_CONFIG_DIR is `claude-config`"),
        "{}",
        text(&relative.stderr)
    );
}

#[test]
fn an_agent_cannot_rewrite_another_enforcers_configuration_or_state() {
    let home = Home::new();
    let first = home.project("first");
    let second = home.project("second");
    ok(&home.init("claude-code", &first, &["--no-service"]));
    ok(&home.init("claude-code", &second, &["--no-service"]));
    ok(&home.init("codex", &second, &["--no-service"]));
    let configs: Vec<PathBuf> = std::fs::read_dir(home.config())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let theirs = configs
        .iter()
        .find(|path| path.to_string_lossy().contains("claude-code-second-"))
        .unwrap()
        .clone();
    let codex_profile = home.config().join("codex.cedar");
    let states: Vec<PathBuf> = std::fs::read_dir(home.state())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.to_string_lossy().contains("claude-code-first-"))
        .collect();
    let before = snapshot(&home.config());
    let states_before: Vec<_> = states.iter().map(|state| snapshot(state)).collect();
    // Only the first project's enforcer runs; its agent works in `first`.
    let mine = configs
        .iter()
        .find(|path| path.to_string_lossy().contains("claude-code-first-"))
        .unwrap();
    let child = home
        .command(&["listen", "--config", mine.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Reaped(child);
    let hook = hook_command(&first.join(".claude/settings.local.json"));
    let socket = hook.rsplit(' ').next().unwrap().to_owned();
    kernel_testkit::wait_for("listen to come up", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    std::fs::write(
        first.join("allow.cedar"),
        "permit (principal, action, resource);\n",
    )
    .unwrap();
    let mut commands = vec![
        format!("cp allow.cedar {}", theirs.display()),
        format!("cp allow.cedar {}", codex_profile.display()),
    ];
    for state in &states {
        commands.push(format!("rm -f {}", state.join("kernel.key").display()));
    }
    for command in &commands {
        let output = agent_call(
            &home,
            &hook,
            &first,
            "Bash",
            serde_json::json!({"command": command}),
        );
        assert_floor(&output, command);
    }
    assert_eq!(snapshot(&home.config()), before);
    let states_now: Vec<_> = states.iter().map(|state| snapshot(state)).collect();
    assert_eq!(states_now, states_before);
}

/// The hook's file actions are decided where their paths lead: a link in
/// the project that leads to the hook's own settings, to a private key or
/// back into the project is followed from its own directory, as the
/// kernel follows it when the tool runs; a path that cannot be resolved is
/// blocked; and the enforcer denies a request whose path goes through a
/// link, so a client that does not resolve cannot get an allow for a file
/// it did not name.
#[test]
fn links_are_decided_where_they_lead() {
    use std::os::unix::fs::symlink;
    let home = Home::new();
    let project = home.project("proj");
    std::fs::write(project.join("README.md"), "hello\n").unwrap();
    let key = kernel_testkit::plant_ssh_key(&home.home, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    ok(&home.init("claude-code", &project, &["--no-service"]));
    let local = project.join(".claude/settings.local.json");
    let shared = project.join(".claude/settings.json");
    let hook = hook_command(&local);
    let settings_before = std::fs::read(&local).unwrap();
    let _running = listen(&home);
    let call =
        |tool: &str, input: serde_json::Value| agent_call(&home, &hook, &project, tool, input);
    let write = |path: &Path| {
        call(
            "Write",
            serde_json::json!({"file_path": path, "content": "{\"disableAllHooks\": true}"}),
        )
    };
    let read = |path: &Path| {
        let output = run_hook(&home, &hook, &claude_read(&project, path));
        (output.status.code(), text(&output.stderr))
    };

    // The route: a directory, then a link in it whose relative target
    // leads from `a/b` (not from the project) to `.claude`.
    let mkdir = call("Bash", serde_json::json!({"command": "mkdir -p a/b"}));
    assert_eq!(mkdir.status.code(), Some(0), "{}", text(&mkdir.stderr));
    let ln = call(
        "Bash",
        serde_json::json!({"command": "ln -s ../../.claude a/b/c"}),
    );
    assert_floor(&ln, "ln -s ../../.claude a/b/c");
    assert!(std::fs::symlink_metadata(project.join("a/b/c")).is_err());
    // The same link arrives otherwise (a checkout, an earlier session):
    // writes through it are writes of the settings, and blocked.
    symlink("../../.claude", project.join("a/b/c")).unwrap();
    assert_floor(
        &write(&project.join("a/b/c/settings.json")),
        "Write a/b/c/settings.json",
    );
    assert!(!shared.exists(), "the shared settings were written");
    assert_floor(
        &write(&project.join("a/b/c/settings.local.json")),
        "Write a/b/c/settings.local.json",
    );
    let copy = call(
        "Bash",
        serde_json::json!({"command": "cp README.md a/b/c/settings.local.json"}),
    );
    assert_floor(&copy, "cp README.md a/b/c/settings.local.json");
    assert_eq!(std::fs::read(&local).unwrap(), settings_before);

    // A private key read through a link in the project: the profile's
    // secret rule sees the key's path.
    symlink(&key, project.join("notes.txt")).unwrap();
    let (code, stderr) = read(&project.join("notes.txt"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("denied by policy") && stderr.contains("private keys"),
        "{stderr}"
    );
    // A read through a link from outside into the project is a read of
    // the project.
    let outside = home.home.join("proj-link");
    symlink(&project, &outside).unwrap();
    let (code, stderr) = read(&outside.join("README.md"));
    assert_eq!(code, Some(0), "{stderr}");
    // What cannot be resolved is blocked, not decided as written.
    symlink("loop", project.join("loop")).unwrap();
    let (code, stderr) = read(&project.join("loop"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot resolve"), "{stderr}");

    // A client that asks about the path as written, through the link: the
    // enforcer denies it, naming where it leads.
    let config = std::fs::read_to_string(only_file(&home.config(), ".toml")).unwrap();
    let socket = config
        .lines()
        .find_map(|line| line.strip_prefix("socket = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let options = kernel_enforcer::gateways::endpoint::AskOptions::pinned(
        PathBuf::from(socket),
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    let through = project.join("a/b/c/settings.local.json");
    let action = kernel_core::CanonicalAction::new(
        kernel_core::Action::file_write(through.to_str().unwrap(), b"{}"),
        None,
    )
    .unwrap();
    let answer = kernel_enforcer::gateways::endpoint::ask(&options, action, None).unwrap();
    match answer.verified {
        kernel_core::Verified::Denied(receipt) => {
            let reasons = receipt.body().reasons.join("; ");
            assert!(
                reasons.contains("leads through a symbolic link")
                    && reasons.contains(local.to_str().unwrap()),
                "{reasons}"
            );
        }
        other => panic!("a write through the link was not denied: {other:?}"),
    }
    assert_eq!(std::fs::read(&local).unwrap(), settings_before);
}
