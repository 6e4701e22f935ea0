//! The command line as a user meets it, through the real binary: what it
//! says when a program, a path or a file is not what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_testkit::{
    Entry, Fixture, Listener, alive, enforcer, fixture, log, operator, run_enforcer as run, signal,
    text,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const POLICY: &str = r#"
@id("read-workspace") @reason("project files may be read")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
@id("git") @reason("git may run")
permit (principal, action == Action::"exec", resource) when { resource.name == "git" };
"#;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn run_says_a_missing_agent_program_does_not_exist() {
    let fixture = fixture(POLICY);
    let base = [
        "run",
        "--policy",
        s(&fixture.policy),
        "--workspace",
        s(&fixture.workspace),
        "--evidence",
        s(&fixture.evidence),
        "--",
    ];
    let missing = fixture.dir.path().join("no/such/agent");
    let output = run(&[&base[..], &[s(&missing)]].concat());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the agent program `{}` does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("danger-unconfined"), "{stderr}");

    let output = run(&[&base[..], &["no-such-agent-program"]].concat());
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("`no-such-agent-program` was not found on PATH"),
        "{stderr}"
    );
    assert!(!stderr.contains("danger-unconfined"), "{stderr}");

    let plain = fixture.dir.path().join("not-executable");
    std::fs::write(&plain, "x").unwrap();
    let output = run(&[&base[..], &[s(&plain)]].concat());
    let (_, stderr) = text(&output);
    assert!(stderr.contains("is not executable"), "{stderr}");
    // Refused before any session was started.
    assert!(!fixture.evidence.exists());
}

#[test]
fn an_evidence_path_under_a_file_names_the_component_that_is_not_a_directory() {
    let fixture = fixture(POLICY);
    let file = fixture.dir.path().join("somefile");
    std::fs::write(&file, "x").unwrap();
    for evidence in [file.join("evidence.log"), file.join("a/b/evidence.log")] {
        let output = run(&[
            "run",
            "--policy",
            s(&fixture.policy),
            "--workspace",
            s(&fixture.workspace),
            "--evidence",
            s(&evidence),
            "--",
            "/bin/true",
        ]);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("`{}` is not a directory", file.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("File exists"), "{stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn audit_verify_says_a_file_that_is_not_evidence_is_not_evidence() {
    let fixture = fixture(POLICY);
    let output = run(&["audit", "verify", s(&fixture.policy)]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not an evidence file"), "{stderr}");
    assert!(!stderr.contains("bytes"), "{stderr}");
    for command in ["inspect", "prove"] {
        let mut args = vec!["audit", command, s(&fixture.policy)];
        if command == "prove" {
            args.extend(["--index", "0"]);
        }
        let (_, stderr) = text(&run(&args));
        assert!(
            stderr.contains("is not an evidence file"),
            "{command}: {stderr}"
        );
    }

    // A real log, and one torn inside its first record, are still taken
    // for what they are.
    drop(fixture.spawn());
    let output = run(&["audit", "verify", s(&fixture.evidence)]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let torn = fixture.dir.path().join("torn.log");
    let bytes = std::fs::read(&fixture.evidence).unwrap();
    std::fs::write(&torn, &bytes[..20]).unwrap();
    let (_, stderr) = text(&run(&["audit", "verify", s(&torn)]));
    assert!(stderr.contains("ends inside a record"), "{stderr}");
}

#[test]
fn explain_finds_a_bare_program_where_path_finds_it() {
    let fixture = fixture(POLICY);
    let bin = fixture.dir.path().join("local-bin");
    std::fs::create_dir(&bin).unwrap();
    script(&bin.join("git"), "exit 0");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let output = Command::new(enforcer())
        .env("PATH", &path)
        .args([
            "policy",
            "explain",
            "--policy",
            s(&fixture.policy),
            "--workspace",
            s(&fixture.workspace),
            "exec",
            "git",
            "status",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("request:   exec {}/git status", bin.display())),
        "{stdout}"
    );
    assert!(stdout.contains("decision:  allow"), "{stdout}");

    let output = Command::new(enforcer())
        .env("PATH", &path)
        .args([
            "policy",
            "explain",
            "--policy",
            s(&fixture.policy),
            "exec",
            "no-such-program-here",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`no-such-program-here` not found on PATH"),
        "{stderr}"
    );
}

#[test]
fn exec_says_a_missing_program_is_not_on_path() {
    let fixture = fixture(POLICY);
    let output = run(&[
        "exec",
        "--socket",
        s(&fixture.dir.path().join("endpoint.sock")),
        "--",
        "no-such-program-here",
    ]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("`no-such-program-here` not found on PATH"),
        "{stderr}"
    );
    assert!(!stderr.contains("is not a path"), "{stderr}");
}

/// A running `kernel-enforcer listen` of `fixture`, killed when dropped.
fn listen(fixture: &Fixture) -> Listener {
    let _ = std::fs::remove_file(fixture.state().join("endpoint.sock"));
    Listener::of(fixture, &[])
}

/// Polls `done` until it holds, or fails after 20 s.
fn wait_for(what: &str, done: impl FnMut() -> bool) {
    kernel_testkit::wait_for(what, std::time::Duration::from_secs(20), done);
}

/// The halt events of a log.
fn halts(evidence: &Path) -> Vec<String> {
    log(evidence)
        .iter()
        .filter_map(|entry| entry.halt_cause().map(str::to_owned))
        .collect()
}

#[test]
fn exec_under_listen_says_a_missing_program_is_not_on_path() {
    let fixture = fixture(POLICY);
    let listener = listen(&fixture);
    let output = Command::new(enforcer())
        .args(["exec", "--socket", s(&listener.socket), "--"])
        .arg("no-such-program-here")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("`no-such-program-here` not found on PATH"),
        "{stderr}"
    );
    // Never sent: nothing was decided.
    drop(listener);
    assert!(
        !log(&fixture.evidence)
            .iter()
            .any(|e| matches!(e, Entry::Decision { .. }))
    );
}

/// `listen` ends when halted; a second `halt` finds the record it left and
/// says the enforcer is already halted, and a new enforcer at the same
/// path is not taken for halted.
#[test]
fn a_second_halt_says_already_halted_after_the_enforcer_ended() {
    let fixture = fixture(POLICY);
    let control = fixture.control();
    let mut listener = listen(&fixture);
    let first = operator(&control, &["halt", "--reason", "incident 9"]);
    assert!(first.status.success(), "{:?}", text(&first));
    assert!(
        text(&first)
            .0
            .contains("halted: every request is now denied")
    );
    wait_for("the halted enforcer to end", || {
        listener.child.0.try_wait().unwrap().is_some()
    });

    let second = operator(&control, &["halt", "--reason", "again"]);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("already halted"), "{stdout}");
    assert!(stdout.contains("incident 9"), "{stdout}");
    assert!(!stderr.contains("cannot reach"), "{stderr}");
    let json = operator(&control, &["halt", "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["data"]["already_halted"], true, "{answer}");
    assert_eq!(answer["data"]["cause"], "incident 9", "{answer}");
    // Other commands fail, saying why.
    let status = operator(&control, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        text(&status).1.contains("ended halted (incident 9)"),
        "{:?}",
        text(&status)
    );
    assert_eq!(halts(&fixture.evidence), vec!["incident 9".to_owned()]);

    // A record whose text was changed is no record.
    let record = control.with_file_name("evidence.log.control.halted");
    let original = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, original.replace("incident 9", "incident 8")).unwrap();
    let forged = operator(&control, &["halt"]);
    assert_eq!(forged.status.code(), Some(1), "{:?}", text(&forged));
    assert!(
        text(&forged).1.contains("cannot reach"),
        "{:?}",
        text(&forged)
    );
    std::fs::write(&record, &original).unwrap();

    // A new enforcer at the same path is not halted, and is halted anew.
    drop(listener);
    let _listener = listen(&fixture);
    assert!(!record.exists(), "the old record outlived a new enforcer");
    let status = operator(&control, &["status", "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        answer["data"]["halted"],
        serde_json::Value::Null,
        "{answer}"
    );
    let halt = operator(&control, &["halt", "--reason", "incident 10"]);
    assert!(
        text(&halt)
            .0
            .contains("halted: every request is now denied")
    );
}

/// An enforcer that keeps running halted (one a library started) answers
/// a second halt itself: already halted, recorded once, and still halted.
#[test]
fn a_second_halt_of_a_running_enforcer_is_already_halted_and_recorded_once() {
    let fixture = fixture(POLICY);
    let control = fixture.control();
    let kernel = fixture.spawn();
    let first = operator(&control, &["halt", "--reason", "first"]);
    assert!(first.status.success(), "{:?}", text(&first));
    let second = operator(&control, &["halt", "--reason", "second"]);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("already halted (first)"), "{stdout}");
    // Denied as halted: an enforcer that was lost would be an error too.
    let read = kernel.authorize(kernel_client::Action::file_read(fixture.ws("a.txt")));
    assert!(
        matches!(&read, Err(kernel_client::Denial::Halted))
            || matches!(&read, Err(kernel_client::Denial::Policy { reasons, .. }) if reasons == &["halted"]),
        "not halted after two halts: {read:?}"
    );
    drop(kernel);
    assert_eq!(halts(&fixture.evidence), vec!["first".to_owned()]);
}

/// Flags that a command would silently ignore are refused instead.
#[test]
fn flags_that_would_be_ignored_are_refused() {
    let cases = [
        (
            "mcp-proxy --socket /s --policy p.cedar -- cat",
            "cannot be used with",
        ),
        (
            "mcp-proxy --socket /s --evidence e.log -- cat",
            "cannot be used with",
        ),
        (
            "mcp-proxy --socket /s --config c.toml -- cat",
            "cannot be used with",
        ),
        (
            "mcp-proxy --policy p.cedar --pubkey k.pub -- cat",
            "cannot be used with",
        ),
        ("mcp-proxy --pubkey k.pub -- cat", "--socket"),
        (
            "run --policy p.cedar --syscall-rate 5 -- true",
            "--govern-syscalls",
        ),
        ("audit verify --cosignatures c e.log", "--witness-key"),
        ("audit verify --witness-name w e.log", "--witness-key"),
    ];
    for (line, expected) in cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let args = args.as_slice();
        let output = run(args);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A configuration file's evidence window is not silently replaced by
    // the weaker mode.
    let fixture = fixture(POLICY);
    let config = fixture.dir.path().join("kernel.toml");
    std::fs::write(&config, "evidence_window_ms = 10\n").unwrap();
    let output = run(&[
        "run",
        "--config",
        s(&config),
        "--policy",
        s(&fixture.policy),
        "--danger-evidence-os-buffered",
        "--",
        "/bin/true",
    ]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be combined"), "{stderr}");
    // Under `run`, `exec` uses the agent's channel: a key given for a
    // socket is refused rather than left unused.
    let output = Command::new(enforcer())
        .env("AGENT_KERNEL_CHANNEL", "no-such-channel")
        .env_remove("AGENT_KERNEL_ENDPOINT")
        .args(["exec", "--pubkey", "k.pub", "--", "/bin/true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("pass --socket too, or drop --pubkey"),
        "{stderr}"
    );
}

/// A process killed when dropped (a failing test leaves nothing running),
/// with a process it started.
struct Reap(std::process::Child, Option<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(pid) = self.1.filter(|&pid| alive(pid)) {
            signal(pid, "KILL");
        }
    }
}

/// `mcp-proxy` ends promptly on `SIGTERM` although the agent keeps its
/// input open, and its MCP server with it; with a session of its own, the
/// evidence ends as on a normal end (a final checkpoint, sound).
#[test]
fn mcp_proxy_ends_on_sigterm_with_its_server() {
    let fixture = fixture(POLICY);
    let listener = listen(&fixture);
    let own_evidence = fixture.dir.path().join("state/proxy-evidence.log");
    let modes: [Vec<String>; 2] = [
        vec![
            "--policy".into(),
            s(&fixture.policy).into(),
            "--workspace".into(),
            s(&fixture.workspace).into(),
            "--evidence".into(),
            s(&own_evidence).into(),
        ],
        vec!["--socket".into(), s(&listener.socket).into()],
    ];
    for (round, mode) in modes.iter().enumerate() {
        let pid_file = fixture.dir.path().join(format!("server-{round}.pid"));
        // A server that says who it is and then waits for input forever.
        let mut proxy = Command::new(enforcer())
            .arg("mcp-proxy")
            .args(mode)
            .args([
                "--",
                "/bin/sh",
                "-c",
                "echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\" && exec sleep 600",
            ])
            .arg(&pid_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _input_held_open = proxy.stdin.take().unwrap();
        let mut proxy = Reap(proxy, None);
        wait_for("the server to start", || pid_file.exists());
        let server: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        proxy.1 = Some(server);
        assert!(alive(server));
        signal(proxy.0.id(), "TERM");
        let mut status = None;
        wait_for("mcp-proxy to end on SIGTERM", || {
            status = proxy.0.try_wait().unwrap();
            status.is_some()
        });
        assert_eq!(status.unwrap().code(), Some(128 + 15), "{mode:?}");
        wait_for("the MCP server to be gone", || !alive(server));
    }
    let bytes = std::fs::read(&own_evidence).unwrap();
    let records = kernel_core::split_records(&bytes).unwrap();
    assert!(
        records.last().is_some_and(|r| kernel_core::decode_record(r)
            .unwrap()
            .checkpoint_note()
            .is_some()),
        "the evidence does not end with a checkpoint"
    );
    let verify = run(&["audit", "verify", s(&own_evidence)]);
    assert_eq!(verify.status.code(), Some(0), "{:?}", text(&verify));
}

fn completions(shell: &str) -> String {
    let output = run(&["completions", shell]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{shell}: {:?}",
        text(&output)
    );
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("kernel-enforcer"), "{shell}: {script}");
    script
}

/// Runs `check` on `script` with `shell` (a syntax check), if the shell is
/// installed; whether it ran.
fn shell_accepts(shell: &str, flag: &str, script: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("completions");
    std::fs::write(&file, script).unwrap();
    let Ok(output) = Command::new(shell).arg(flag).arg(&file).output() else {
        eprintln!("`{shell}` is not installed: its completions were not syntax-checked");
        return false;
    };
    assert!(
        output.status.success(),
        "{shell} {flag}: {:?}",
        text(&output)
    );
    true
}

/// What bash completes for `line` (the words typed so far, the last one
/// being completed) with the script loaded.
fn bash_completes(script: &str, line: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("completions.bash");
    std::fs::write(&file, script).unwrap();
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _kernel__enforcer kernel-enforcer '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        words.join(" "),
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len() - 2],
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&program)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    text(&output).0.lines().map(str::to_owned).collect()
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let bash = completions("bash");
    assert!(shell_accepts("bash", "-n", &bash));
    // It completes, after a subcommand too.
    let top = bash_completes(&bash, &["kernel-enforcer", "pol"]);
    assert_eq!(top, vec!["policy".to_owned()]);
    let policy = bash_completes(&bash, &["kernel-enforcer", "policy", ""]);
    for expected in ["check", "test", "explain"] {
        assert!(policy.iter().any(|w| w == expected), "{policy:?}");
    }
    let proxy = bash_completes(&bash, &["kernel-enforcer", "mcp-proxy", "--so"]);
    assert_eq!(proxy, vec!["--socket".to_owned()]);
    let shells = bash_completes(&bash, &["kernel-enforcer", "completions", ""]);
    for expected in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|w| w == expected), "{shells:?}");
    }

    let zsh = completions("zsh");
    assert!(zsh.starts_with("#compdef kernel-enforcer"), "{zsh}");
    shell_accepts("zsh", "-n", &zsh);
    let fish = completions("fish");
    assert!(fish.contains("complete -c kernel-enforcer"), "{fish}");
    shell_accepts("fish", "--no-execute", &fish);

    let output = run(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
}

fn json_of(output: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(output);
    assert_eq!(
        stdout.lines().count(),
        1,
        "not one document: {stdout}{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn policy_check_json_gives_the_count_or_each_problem_with_its_position() {
    let fixture = fixture(POLICY);
    let output = run(&["policy", "check", "--json", s(&fixture.policy)]);
    assert_eq!(output.status.code(), Some(0));
    let document = json_of(&output);
    assert_eq!(document["ok"], true);
    assert_eq!(document["policies"], 2);
    assert_eq!(document["problems"], serde_json::json!([]));

    let bad = fixture.dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "@id(\"x\")\npermit (principal, action == Action::\"nope\", resource);\n",
    )
    .unwrap();
    let output = run(&["policy", "check", "--json", s(&bad)]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "same status as the text form"
    );
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    let problem = &document["problems"][0];
    assert_eq!(problem["file"], s(&bad));
    assert_eq!(problem["line"], 2);
    assert!(problem["column"].is_u64(), "{problem}");
    assert!(
        problem["message"].as_str().unwrap().contains("nope"),
        "{problem}"
    );
}

#[test]
fn policy_test_json_shows_each_case_and_a_failing_one_as_failed() {
    let fixture = fixture(POLICY);
    let tests = fixture.dir.path().join("state/policy.tests.toml");
    std::fs::write(
        &tests,
        r#"policies = ["policy.cedar"]

[environment]
workspace = "/home/agent/project"

[[case]]
name = "reads in the workspace"
action = "file_read"
path = "src/main.rs"
expect = "allow"
policy = "read-workspace"

[[case]]
name = "wrongly expects /etc/passwd to be readable"
action = "file_read"
path = "/etc/passwd"
expect = "allow"
"#,
    )
    .unwrap();
    let text_form = run(&["policy", "test", s(&tests)]);
    let output = run(&["policy", "test", "--json", s(&tests)]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(output.status.code(), text_form.status.code());
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    assert_eq!(document["passed"], 1);
    assert_eq!(document["failed"], 1);
    assert_eq!(document["workspace"], "/home/agent/project");
    let cases = document["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["passed"], true);
    assert_eq!(cases[0]["decision"], "allow");
    assert_eq!(cases[0]["policies"], serde_json::json!(["read-workspace"]));
    assert_eq!(
        cases[0]["request"],
        "file_read /home/agent/project/src/main.rs"
    );
    assert_eq!(cases[1]["passed"], false);
    assert_eq!(
        cases[1]["name"],
        "wrongly expects /etc/passwd to be readable"
    );
    assert_eq!(cases[1]["expect"], "allow");
    assert_eq!(cases[1]["decision"], "deny");
    assert_eq!(cases[1]["line"], 13);
    assert_eq!(cases[1]["failures"], serde_json::json!(["expected allow"]));

    // An invalid test file: exit 2, and still one document.
    std::fs::write(&tests, "[[case]]\nnonsense = 1\n").unwrap();
    let output = run(&["policy", "test", "--json", s(&tests)]);
    assert_eq!(output.status.code(), Some(2));
    let document = json_of(&output);
    assert_eq!(document["ok"], false);
    assert!(document["error"].as_str().unwrap().contains("problem(s)"));
    assert!(!document["problems"].as_array().unwrap().is_empty());
}

#[test]
fn policy_explain_json_names_the_decision_and_what_decided_it() {
    let fixture = fixture(POLICY);
    let key = fixture.dir.path().join("state/kernel.key");
    let explain = |action: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--json",
            "--policy",
            s(&fixture.policy),
            "--workspace",
            s(&fixture.workspace),
            "--protect",
            s(&key),
        ];
        args.extend(action);
        let output = run(&args);
        assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
        json_of(&output)
    };
    let read = explain(&["file_read", "notes.md"]);
    assert_eq!(read["decision"], "allow");
    let expected_path = fixture.workspace.join("notes.md");
    assert_eq!(
        read["request"],
        format!("file_read {}", expected_path.display())
    );
    assert_eq!(read["cedar"]["action"], "file_read");
    assert_eq!(read["cedar"]["in_workspace"], true);
    assert_eq!(
        read["because"],
        serde_json::json!([{"policy": "read-workspace", "role": "permit", "reason": "project files may be read"}])
    );
    assert_eq!(
        read["floor"],
        serde_json::json!({"decided": false, "applies": false})
    );
    assert_eq!(read["errors"], serde_json::json!([]));

    let secret = explain(&["file_read", s(&key)]);
    assert_eq!(secret["decision"], "deny");
    assert_eq!(secret["floor"]["decided"], true);
    assert_eq!(secret["because"][0]["role"], "forbid");
    assert!(
        secret["policies"][0]
            .as_str()
            .unwrap()
            .starts_with("kernel-floor")
    );

    let nothing = explain(&["net_connect", "example.com", "443"]);
    assert_eq!(nothing["decision"], "deny");
    assert_eq!(nothing["because"][0]["policy"], serde_json::Value::Null);
}

#[test]
fn audit_verify_json_counts_the_log_and_names_the_first_fault() {
    let fixture = fixture(POLICY);
    let kernel = fixture.spawn();
    std::fs::write(fixture.workspace.join("a.txt"), "a").unwrap();
    kernel
        .authorize(kernel_client::Action::file_read(fixture.ws("a.txt")))
        .unwrap();
    assert!(
        kernel
            .authorize(kernel_client::Action::file_read("/etc/passwd"))
            .is_err()
    );
    drop(kernel);
    let text_form = run(&["audit", "verify", s(&fixture.evidence)]);
    let output = run(&["audit", "verify", "--json", s(&fixture.evidence)]);
    assert_eq!(output.status.code(), Some(0));
    let document = json_of(&output);
    assert_eq!(document["ok"], true);
    assert_eq!(document["allowed"], 1);
    assert_eq!(document["denied"], 1);
    assert_eq!(document["sessions"], 1);
    assert_eq!(document["kernel_key_given"], false);
    let records = document["records"].as_u64().unwrap();
    assert_eq!(document["newest_checkpoint"]["size"], records - 1);
    assert!(
        text(&text_form).0.contains(&format!(
            "ok: {records} records (1 sessions, 1 allowed, 1 denied"
        )),
        "{:?}",
        text(&text_form)
    );

    // One byte changed in the second record's body: unsound, at record 1.
    let mut bytes = std::fs::read(&fixture.evidence).unwrap();
    let first = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let at = 4 + first + 4 + 40;
    bytes[at] ^= 1;
    std::fs::write(&fixture.evidence, &bytes).unwrap();
    let output = run(&["audit", "verify", "--json", s(&fixture.evidence)]);
    assert_eq!(output.status.code(), Some(1));
    let document = json_of(&output);
    assert_eq!(document["ok"], false, "{document}");
    assert_eq!(document["index"], 1, "{document}");
    assert!(document["error"].as_str().unwrap().contains("not sound"));
}

/// The halt record is one of the kernel's own assets: a policy that
/// allows everything still cannot have it written or deleted.
#[test]
fn the_halt_record_is_a_floor_asset() {
    let fixture = fixture("@id(\"all\") permit (principal, action, resource);");
    let control = fixture.control();
    let record = format!("{}.halted", control.display());
    let kernel = fixture.spawn();
    for action in [
        kernel_client::Action::file_write(record.clone(), b"{}"),
        kernel_client::Action::file_delete(record.clone()),
    ] {
        match kernel.authorize(action) {
            Err(kernel_client::Denial::Policy { policies, .. }) => {
                assert!(
                    policies.iter().any(|p| p.starts_with("kernel-floor")),
                    "{policies:?}"
                );
            }
            other => panic!("the halt record is not protected: {other:?}"),
        }
    }
    // The same policy allows a file beside it.
    assert!(
        kernel
            .authorize(kernel_client::Action::file_write(
                format!("{}.other", control.display()),
                b"{}"
            ))
            .is_ok()
    );
}

/// `halt` without `--control` finds the one running enforcer; once that
/// one has ended halted, a second such `halt` finds its record instead.
#[test]
fn a_second_halt_that_names_no_enforcer_says_already_halted() {
    let fixture = fixture(POLICY);
    let state = fixture.dir.path().join("xdg-state");
    let evidence = state.join("agent-kernel/evidence.log");
    let socket = fixture.dir.path().join("endpoint.sock");
    let mut listener = Listener::start(
        kernel_testkit::listen_command(&fixture.policy, &fixture.workspace, &evidence, &socket)
            .env("XDG_STATE_HOME", &state),
        &socket,
    );
    let halt = || {
        Command::new(enforcer())
            .env("XDG_STATE_HOME", &state)
            .env_remove("AGENT_KERNEL_CONTROL")
            .args(["halt", "--reason", "incident 11"])
            .output()
            .unwrap()
    };
    let first = halt();
    assert!(first.status.success(), "{:?}", text(&first));
    assert!(
        text(&first)
            .0
            .contains("halted: every request is now denied")
    );
    wait_for("the halted enforcer to end", || {
        listener.child.0.try_wait().unwrap().is_some()
    });
    let second = halt();
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("already halted"), "{stdout}");
    assert!(stdout.contains("incident 11"), "{stdout}");
    // Other commands still say that nothing runs.
    let status = Command::new(enforcer())
        .env("XDG_STATE_HOME", &state)
        .env_remove("AGENT_KERNEL_CONTROL")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert!(
        text(&status).1.contains("no running enforcer"),
        "{:?}",
        text(&status)
    );
}
