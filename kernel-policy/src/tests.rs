#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]
use super::*;
use kernel_core::{Action, Decision, Exec};

pub(super) fn engine(policy: &str) -> PolicyEngine {
    let env = Environment::new(
        "/ws",
        &["/state/kernel.key".into(), "/state/evidence".into()],
    )
    .unwrap();
    PolicyEngine::from_sources(&[("test.cedar".into(), policy.into())], env).unwrap()
}

/// An engine that permits every action, with workspace `workspace` and the
/// kernel's assets `protected`: what it still denies, the floor denies.
fn permitting_everything(workspace: &str, protected: &[&str]) -> PolicyEngine {
    let protected: Vec<String> = protected.iter().map(|&p| p.to_owned()).collect();
    let env = Environment::new(workspace, &protected).unwrap();
    PolicyEngine::from_sources(
        &[(
            "t.cedar".into(),
            r#"permit (principal, action, resource);"#.into(),
        )],
        env,
    )
    .unwrap()
}

fn canon(action: Action) -> CanonicalAction {
    CanonicalAction::new(action, Some("/ws")).unwrap()
}

fn decision(engine: &PolicyEngine, action: Action) -> Decision {
    kernel_core::decide(&kernel_core::DecisionInputs {
        kernel: kernel_core::EnforcerState::Serving,
        deadline: kernel_core::Deadline::Open,
        evaluation: engine.evaluate(&canon(action)),
        limits: kernel_core::LimitState::Within,
        approval: kernel_core::Approval::None,
    })
    .decision
}

#[test]
fn workspace_membership_and_floor() {
    let engine = engine(
        r#"@id("all-files") permit (principal, action in [Action::"file_read", Action::"file_write"], resource in Workspace::"root");
           @id("anything") permit (principal, action, resource);"#,
    );
    assert_eq!(
        decision(&engine, Action::file_read("src/lib.rs")),
        Decision::Allow
    );
    // The floor beats a permit-everything policy.
    assert_eq!(
        decision(&engine, Action::file_read("/state/kernel.key")),
        Decision::Deny
    );
    assert_eq!(
        decision(&engine, Action::file_delete("/state")),
        Decision::Deny
    );
    assert_eq!(
        decision(
            &engine,
            Action::exec(Exec::new("/bin/rm").args(["-rf", "/"]))
        ),
        Decision::Deny
    );
    assert_eq!(
        decision(
            &engine,
            Action::exec(Exec::new("/bin/cat").arg("../state/evidence"))
        ),
        Decision::Deny
    );
    assert_eq!(
        decision(&engine, Action::exec(Exec::new("/bin/ls").arg("src"))),
        Decision::Allow
    );
}

#[test]
fn evaluation_error_is_deny_even_though_cedar_skips_it() {
    let engine = engine(
        r#"@id("all") permit (principal, action, resource);
           @id("overflowing-forbid") forbid (principal, action == Action::"exec", resource)
             when { context.argc * 9223372036854775807 > 1 };"#,
    );
    let action = canon(Action::exec(Exec::new("/bin/ls").args(["a", "b"])));
    let Evaluation::Completed {
        errors, permits, ..
    } = engine.evaluate(&action)
    else {
        panic!("expected a completed evaluation");
    };
    assert_eq!(errors.len(), 1, "the overflow is reported");
    assert!(
        !permits.is_empty(),
        "cedar itself allowed: it skipped the forbid"
    );
    assert_eq!(
        decision(&engine, Action::exec(Exec::new("/bin/ls").args(["a", "b"]))),
        Decision::Deny
    );
}

#[test]
fn refuses_unknown_annotations_reserved_and_duplicate_ids() {
    let env = Environment::new("/ws", &[]).unwrap();
    for bad in [
        r#"@aks permit (principal, action, resource);"#,
        r#"@id("kernel-floor-x") permit (principal, action, resource);"#,
        r#"@id("a") permit (principal, action, resource); @id("a") permit (principal, action, resource);"#,
        r#"@ask forbid (principal, action, resource);"#,
        r#"@limit("1/fortnight") permit (principal, action, resource);"#,
        r#"@limit("1/minute") forbid (principal, action, resource);"#,
        r#"permit (principal, action == Action::"exec", resource) when { context.nonexistent };"#,
    ] {
        let result = PolicyEngine::from_sources(&[("bad.cedar".into(), bad.into())], env.clone());
        assert!(
            matches!(result, Err(PolicyLoadError::Invalid(_))),
            "accepted: {bad}"
        );
    }
}

#[test]
fn ask_annotation_yields_ask() {
    let engine = engine(
        r#"@id("ask-net") @ask permit (principal, action == Action::"net_connect", resource);"#,
    );
    assert_eq!(
        decision(&engine, Action::net_connect("example.com", 443)),
        Decision::Ask
    );
}

#[test]
fn empty_policy_denies_everything() {
    let engine = engine("");
    for action in [
        Action::file_read("a"),
        Action::net_connect("example.com", 80),
        Action::http("GET", "https://example.com/"),
        Action::tool_call("t", &serde_json::json!({})),
        Action::custom("k", "p"),
        Action::exec(Exec::new("/bin/true")),
    ] {
        assert_eq!(decision(&engine, action), Decision::Deny);
    }
}

#[test]
fn diagnostics_carry_line_and_column() {
    let text = "permit (principal, action, resource);\npermit (principal, acton, resource);\n";
    let Err(PolicyLoadError::Invalid(diagnostics)) = PolicyEngine::from_sources(
        &[("typo.cedar".into(), text.into())],
        Environment::new("/ws", &[]).unwrap(),
    ) else {
        panic!("typo accepted");
    };
    assert_eq!(diagnostics[0].line, Some(2), "{diagnostics:?}");
    assert!(diagnostics[0].column.is_some());
}

#[test]
fn a_forbidden_url_path_has_no_other_spelling() {
    let engine = engine(
        r#"@id("api") permit (principal, action == Action::"http", resource == Host::"h.example");
           @id("no-admin") forbid (principal, action == Action::"http", resource)
           when { context.path like "/admin*" };"#,
    );
    let get = |url: &str| Action::http("GET", url);
    assert_eq!(
        decision(&engine, get("https://h.example/public")),
        Decision::Allow
    );
    for spelling in [
        "https://h.example/admin",
        "https://h.example/%61dmin",
        "https://h.example/%61%64%6D%69%6E/users",
        "https://h.example/x/%2e%2e/admin",
        "https://h.example/./admin",
    ] {
        assert_eq!(
            decision(&engine, get(spelling)),
            Decision::Deny,
            "{spelling}"
        );
    }
    // Spellings servers disagree on cannot be canonicalised, so they are
    // never decided (the client and the enforcer deny them).
    for ambiguous in [
        "https://h.example//admin",
        "https://h.example/x%2F..%2Fadmin",
        "https://h.example/%2561dmin",
    ] {
        assert!(
            CanonicalAction::new(get(ambiguous), Some("/ws")).is_err(),
            "{ambiguous}"
        );
    }
}

#[test]
fn extension_functions_are_part_of_the_language_in_every_build() {
    let engine = engine(
        r#"@id("loopback") permit (principal, action == Action::"net_connect", resource)
           when { ip("127.0.0.1").isLoopback() && decimal("1.5").lessThan(decimal("2.0")) };"#,
    );
    assert_eq!(
        decision(&engine, Action::net_connect("example.com", 80)),
        Decision::Allow
    );
}

#[test]
fn decide_fresh_is_the_sessions_decision_and_view_shows_what_policies_see() {
    let engine = engine(
        r#"@id("read") @reason("may read") permit (principal, action == Action::"file_read", resource in Workspace::"root");"#,
    );
    let action = canon(Action::file_read("src/lib.rs"));
    let decided = engine.decide_fresh(&action);
    assert_eq!(decided.verdict.decision, Decision::Allow);
    assert_eq!(decided.verdict.policies, ["read"]);
    assert_eq!(decided.verdict.reasons, ["may read"]);
    let view = engine.view(&action).unwrap();
    assert_eq!(view.action, "file_read");
    assert_eq!(view.resource, r#"File::"/ws/src/lib.rs""#);
    assert!(view.in_workspace);
    assert!(
        view.attributes
            .contains(&("extension".into(), "\"rs\"".into()))
    );
    assert!(!view.kernel_asset());
    let key = canon(Action::file_read("/state/kernel.key"));
    assert!(engine.view(&key).unwrap().kernel_asset());
    assert_eq!(
        engine.decide_fresh(&key).verdict.policies,
        ["kernel-floor-assets"]
    );
}

/// Tool arguments are a typed record: matched by value and type, never by
/// text, so a path smuggled beside another is not the path.
#[test]
fn tool_arguments_are_a_typed_record() {
    let engine = engine(
        r#"@id("notes") permit (principal, action == Action::"tool_call", resource == Tool::"write_file")
             when { context.args has path && context.args.path == "notes.md" };
           @id("typed") permit (principal, action == Action::"tool_call", resource == Tool::"typed")
             when { context.args has n && context.args.n > 3 &&
                    context.args has flags && context.args.flags.contains("x") &&
                    context.args has "odd key" && context.args["odd key"] == true &&
                    context.args has meta && context.args.meta has path && context.args.meta.path == "a" };"#,
    );
    let call =
        |name: &str, input: serde_json::Value| decision(&engine, Action::tool_call(name, &input));
    assert_eq!(
        call(
            "write_file",
            serde_json::json!({"path": "notes.md", "content": "x"})
        ),
        Decision::Allow
    );
    for denied in [
        serde_json::json!({"path": "smuggled.txt", "content": "x", "meta": {"path": "notes.md"}}),
        serde_json::json!({"path": ["notes.md"], "content": "x"}),
        serde_json::json!({"Path ": "notes.md", "content": "x"}),
        serde_json::json!({"content": "\"path\":\"notes.md\""}),
        serde_json::json!({"path": "notes.md", "content": null}),
    ] {
        assert_eq!(
            call("write_file", denied.clone()),
            Decision::Deny,
            "{denied}"
        );
    }
    assert_eq!(
        call(
            "typed",
            serde_json::json!({"n": 4, "flags": ["x", "y"], "odd key": true, "meta": {"path": "a"}})
        ),
        Decision::Allow
    );
    for denied in [
        serde_json::json!({"n": "4", "flags": ["x"], "odd key": true, "meta": {"path": "a"}}),
        serde_json::json!({"n": 4, "flags": "x", "odd key": true, "meta": {"path": "a"}}),
        serde_json::json!({"n": 4, "flags": ["x"], "odd key": "true", "meta": {"path": "a"}}),
        serde_json::json!({"n": 4, "flags": ["x"], "odd key": true, "meta": "a"}),
    ] {
        assert_eq!(call("typed", denied.clone()), Decision::Deny, "{denied}");
    }
}

/// What Cedar cannot hold exactly leaves `context.args` absent: a policy
/// that reads it fails, which denies; one that does not is unaffected.
#[test]
fn arguments_without_an_exact_cedar_form_deny_any_policy_that_reads_them() {
    let engine = engine(
        r#"@id("any-args") permit (principal, action == Action::"tool_call", resource == Tool::"reads")
             when { context.args has path };
           @id("no-args") permit (principal, action == Action::"tool_call", resource == Tool::"plain");
           @id("guard") forbid (principal, action == Action::"tool_call", resource == Tool::"guarded")
             when { context.args has path && context.args.path == "/etc/shadow" };
           @id("guarded") permit (principal, action == Action::"tool_call", resource == Tool::"guarded");"#,
    );
    for (input, why) in [
        (r#"{"path":"a","x":1.5}"#, "`x` is the number 1.5"),
        (r#"{"path":"a","x":1.0}"#, "`x` is the number 1.0"),
        (
            r#"{"path":"a","x":9223372036854775808}"#,
            "9223372036854775808",
        ),
        (r#"{"path":"a","x":-9223372036854775809}"#, "not an integer"),
        (r#"{"path":"a","x":null}"#, "`x` is null"),
        (r#"{"path":"a","x":["b","b"]}"#, "`x[1]` repeats"),
        (r#"{"path":"a","x":[{"k":1},{"k":1}]}"#, "`x[1]` repeats"),
        (
            r#"{"path":"a","m":{"odd key":[null]}}"#,
            r#"`m["odd key"][0]` is null"#,
        ),
        (r#"["path"]"#, "not a JSON object"),
        (r#""path""#, "not a JSON object"),
    ] {
        let action = |name: &str| {
            canon(Action::ToolCall {
                name: name.into(),
                input: input.into(),
            })
        };
        let view = engine.view(&action("reads")).unwrap();
        let (_, shown) = view.context.iter().find(|(n, _)| n == "args").unwrap();
        assert!(
            shown.contains("absent") && shown.contains(why),
            "{input}: {shown}"
        );
        assert_eq!(
            engine.decide_fresh(&action("reads")).verdict.decision,
            Decision::Deny,
            "{input}"
        );
        assert_eq!(
            engine.decide_fresh(&action("plain")).verdict.decision,
            Decision::Allow,
            "{input}"
        );
        // A forbid that reads the arguments fails, and so denies, too.
        assert_eq!(
            engine.decide_fresh(&action("guarded")).verdict.decision,
            Decision::Deny,
            "{input}"
        );
    }
    // The limits of the exact forms are themselves exact.
    let view = engine
        .view(&canon(Action::ToolCall {
            name: "reads".into(),
            input:
                r#"{"max":9223372036854775807,"min":-9223372036854775808,"s":[],"set":[1,"1",[1]]}"#
                    .into(),
        }))
        .unwrap();
    let (_, shown) = view.context.iter().find(|(n, _)| n == "args").unwrap();
    assert!(
        shown.contains("9223372036854775807") && !shown.contains("absent"),
        "{shown}"
    );
}

/// The floor sees a protected path inside the arguments, even where the
/// JSON text spells it with escapes.
#[test]
fn the_floor_sees_protected_paths_in_arguments() {
    let engine = permitting_everything("/ws", &["/state/we\"ird\\key"]);
    let action = canon(Action::tool_call(
        "t",
        &serde_json::json!({"nested": {"p": "/state/we\"ird\\key"}}),
    ));
    assert!(engine.view(&action).unwrap().kernel_asset());
    assert_eq!(
        engine.decide_fresh(&action).verdict.decision,
        Decision::Deny
    );
}

/// A symbolic link's relative target leads from the link's directory: the
/// floor reads a relative argument from there too, so a link made to lead
/// to a protected file is refused when it is made (it was read from the
/// working directory only: `../../.claude` from `/ws` is `/.claude`).
#[test]
fn the_floor_reads_a_link_target_from_the_links_directory() {
    let engine = permitting_everything("/ws", &["/ws/.claude/settings.json"]);
    let ln = |args: &[&str]| {
        let action = canon(Action::exec(
            Exec::new("/usr/bin/ln").args(args.iter().copied()),
        ));
        engine.view(&action).unwrap().kernel_asset()
    };
    for args in [
        &["-s", "../../.claude", "a/b/c"][..],
        &["-s", "../../.claude", "a/b/"],
        &["-s", "../../.claude/settings.json", "a/b/c"],
        &["-sf", "../../../.claude", "a/b/c/d"],
        &["-st", "a/b", "../../.claude"],
        &["-s", "-t", "a/b", "../../.claude"],
        &["--symbolic", "--target-directory=a/b", "../../.claude"],
        &["-s", "--target-directory", "a/b", "../../.claude"],
    ] {
        assert!(ln(args), "{args:?}");
    }
    // Links that lead elsewhere are made as before.
    for args in [
        &["-s", "../../src", "a/b/c"][..],
        &["-s", "../.claude", "a/b/c"],
        &["-s", "/etc/hosts", "hosts"],
    ] {
        assert!(!ln(args), "{args:?}");
    }
}

/// The target directory of `ln`, `cp`, `mv` and `install` is read as
/// their option parser reads it: `-t DIR`, `-tDIR`, `t` after flags in one
/// word (`-st DIR`, `-vsfDIR` is not one), `--target-directory` and any
/// prefix of it (`--target=DIR`, `--t DIR`, which GNU `ln` takes). Whatever
/// the program, as wrappers (`env`, `xargs`, `timeout`) pass the options
/// on.
#[test]
fn the_floor_reads_a_target_directory_as_the_option_parser_does() {
    let engine = permitting_everything("/ws", &["/ws/.claude/settings.json"]);
    let reaches = |program: &str, args: &[&str]| {
        let action = canon(Action::exec(
            Exec::new(program).args(args.iter().copied()).cwd("/ws"),
        ));
        engine.view(&action).unwrap().kernel_asset()
    };
    for (program, args) in [
        ("/usr/bin/ln", &["-vst", "a/b", "../../.claude"][..]),
        ("/usr/bin/ln", &["-fsta/b", "../../.claude"]),
        ("/usr/bin/ln", &["-s", "--target=a/b", "../../.claude"]),
        ("/usr/bin/ln", &["-s", "--t", "a/b", "../../.claude"]),
        (
            "/usr/bin/ln",
            &["-s", "--target-dir", "a/b", "../../.claude"],
        ),
        ("/usr/bin/cp", &["-rst", "a/b", "../../.claude"]),
        ("/usr/bin/env", &["ln", "-st", "a/b", "../../.claude"]),
        (
            "/usr/bin/timeout",
            &["5", "ln", "-s", "-t", "a/b", "../../.claude"],
        ),
    ] {
        assert!(reaches(program, args), "{program} {args:?}");
    }
}

/// A compiler's command line is not read as a list of target directories:
/// every word with a `t` after a dash was one (`-Iinclude/tests`), and past
/// 64 of them the floor took every relative argument as reaching the
/// kernel's assets, so a build with many include directories was refused.
#[test]
fn a_long_compiler_line_is_not_a_list_of_target_directories() {
    let engine = permitting_everything("/ws", &["/ws/.claude/settings.json"]);
    let mut args: Vec<String> = (0..200)
        .map(|i| format!("-Ithird_party/lib{i}/include/tests"))
        .collect();
    args.extend(
        [
            "-std=c11",
            "-Wall",
            "-lpthread",
            "-c",
            "src/main.c",
            "-o",
            "out/main.o",
        ]
        .map(String::from),
    );
    let action = canon(Action::exec(
        Exec::new("/usr/bin/cc").args(args.clone()).cwd("/ws"),
    ));
    assert!(!engine.view(&action).unwrap().kernel_asset());
    assert_eq!(
        engine.decide_fresh(&action).verdict.decision,
        Decision::Allow
    );
    // The same line naming an asset is still refused.
    args.extend(["-include", ".claude/settings.json"].map(String::from));
    let action = canon(Action::exec(Exec::new("/usr/bin/cc").args(args).cwd("/ws")));
    assert!(engine.view(&action).unwrap().kernel_asset());
}

/// A program whose last argument can only be a directory (`.`, `..`, a
/// name ending in `/`) makes no link named so, so the floor does not read
/// the other arguments from that directory's parent: `grep -rn TODO .` in
/// a project under the home directory, which holds the kernel's state,
/// was refused as reaching the kernel's key (`.` read from the home
/// directory). A link made in such a directory is still read from it.
#[test]
fn a_directory_named_last_is_no_links_name() {
    let engine = permitting_everything(
        "/home/u/project",
        &["/home/u/.local/state/agent-kernel/kernel.key"],
    );
    let reaches = |program: &str, args: &[&str]| {
        let action = canon(Action::exec(
            Exec::new(program)
                .args(args.iter().copied())
                .cwd("/home/u/project"),
        ));
        engine.view(&action).unwrap().kernel_asset()
    };
    for (program, args) in [
        ("/usr/bin/grep", &["-rn", "TODO", "."][..]),
        ("/usr/bin/find", &["."]),
        ("/usr/bin/ls", &["-la", "./"]),
        ("/usr/bin/cp", &["notes.md", "docs/."]),
        ("/usr/bin/tar", &["czf", "out.tgz", "."]),
    ] {
        assert!(!reaches(program, args), "{program} {args:?}");
    }
    for (program, args) in [
        // The link is made in `.`, and its target read from there.
        (
            "/usr/bin/ln",
            &["-s", "../.local/state/agent-kernel/kernel.key", "."][..],
        ),
        ("/usr/bin/ln", &["-s", "../../.local/state", "docs/."]),
        // Named as a link in the project: its target leads from there.
        ("/usr/bin/ln", &["-s", "../.local", "state"]),
        // The home directory itself holds the key.
        ("/usr/bin/grep", &["-rn", "TODO", ".."]),
    ] {
        assert!(reaches(program, args), "{program} {args:?}");
    }
}

/// The index (`index.rs`) against the whole set, on generated policy sets:
/// permits and forbids, every kind of action and resource scope, `when`
/// and `unless` conditions, and conditions that fail at evaluation (an
/// integer overflow), which Cedar skips and the kernel denies on.
mod index_equivalence {
    use super::*;
    use kernel_core::{Digest, WriteMode};
    use proptest::prelude::*;

    /// The actions of the schema with the resource type each applies to,
    /// and conditions valid for it (the last one overflows for most
    /// requests: an evaluation error).
    const ACTIONS: [(&str, &str, &[&str]); 6] = [
        (
            "file_read",
            "File",
            &[
                r#"resource.path like "/ws/*""#,
                r#"resource.extension == "txt""#,
            ],
        ),
        (
            "file_write",
            "File",
            &[
                r#"context.mode == "overwrite""#,
                "context.size * 9223372036854775807 > 1",
            ],
        ),
        ("file_delete", "File", &[r#"resource.name == "a.txt""#]),
        (
            "exec",
            "Program",
            &[
                r#"context.args.contains("-rf")"#,
                "context.argc * 9223372036854775807 > 1",
            ],
        ),
        (
            "http",
            "Host",
            &[
                r#"context.method == "GET""#,
                "context.port * 9223372036854775807 > 1",
            ],
        ),
        (
            "tool_call",
            "Tool",
            &[
                r#"context.input like "*secret*""#,
                r#"context.args has q && context.args.q == "secret""#,
                "context.args has n && context.args.n * 9223372036854775807 > 1",
            ],
        ),
    ];

    fn entities_of(kind: &str) -> &'static [&'static str] {
        match kind {
            "File" => &["/ws/a.txt", "/etc/passwd", "/ws/b.md"],
            "Program" => &["/bin/ls", "/ws/run.sh", "/bin/rm"],
            "Host" => &["h1.example", "h2.example"],
            _ => &["t1", "t2"],
        }
    }

    /// One generated policy, as Cedar text.
    fn policy() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            0..ACTIONS.len() + 2,
            0..6usize,
            0..4usize,
            0..3usize,
            0..8usize,
        )
            .prop_map(|(forbid, action, resource, entity, condition, which)| {
                let effect = if forbid { "forbid" } else { "permit" };
                let (scope, kind, conditions): (String, Option<&str>, &[&str]) =
                    match ACTIONS.get(action) {
                        Some((name, kind, conditions)) => (
                            format!(r#"action == Action::"{name}""#),
                            Some(kind),
                            conditions,
                        ),
                        None if action == ACTIONS.len() => ("action".into(), None, &[]),
                        None => (
                            r#"action in [Action::"file_read", Action::"file_delete"]"#.into(),
                            Some("File"),
                            &[],
                        ),
                    };
                let resource = match (kind, resource) {
                    (_, 0) | (None, _) => "resource".to_owned(),
                    (Some(kind), 1 | 2) => {
                        let names = entities_of(kind);
                        let name = names[entity % names.len()];
                        format!(r#"resource == {kind}::"{name}""#)
                    }
                    (Some(kind @ ("File" | "Program")), 3) => {
                        let _ = kind;
                        r#"resource in Workspace::"root""#.to_owned()
                    }
                    (Some(kind @ ("File" | "Program")), 4) => {
                        format!(r#"resource is {kind} in Workspace::"root""#)
                    }
                    (Some(kind), _) => format!("resource is {kind}"),
                };
                let body = match (condition, conditions.get(which % conditions.len().max(1))) {
                    (1, Some(c)) => format!(" when {{ {c} }}"),
                    (2, Some(c)) => format!(" unless {{ {c} }}"),
                    (1, None) => " when { context.kernel_asset }".to_owned(),
                    (2, None) => " unless { context.kernel_asset }".to_owned(),
                    _ => String::new(),
                };
                format!("{effect} (principal, {scope}, {resource}){body};")
            })
    }

    fn requests() -> Vec<Action> {
        let write = |path: &str, mode| Action::FileWrite {
            path: path.into(),
            content_sha256: Digest([1; 32]),
            size: 7,
            mode,
        };
        vec![
            Action::file_read("/ws/a.txt"),
            Action::file_read("/ws/b.md"),
            Action::file_read("/etc/passwd"),
            Action::file_read("/state/kernel.key"),
            write("/ws/a.txt", WriteMode::Overwrite),
            write("/etc/passwd", WriteMode::Append),
            Action::file_delete("/ws/a.txt"),
            Action::file_delete("/etc/passwd"),
            Action::exec(Exec::new("/bin/ls").args(["-l"])),
            Action::exec(Exec::new("/bin/rm").args(["-rf", "/ws"])),
            Action::exec(Exec::new("/ws/run.sh")),
            Action::Http {
                method: "GET".into(),
                url: "https://h1.example/x".into(),
            },
            Action::Http {
                method: "POST".into(),
                url: "http://h2.example/y".into(),
            },
            Action::NetConnect {
                host: "h1.example".into(),
                port: 443,
            },
            Action::ToolCall {
                name: "t1".into(),
                input: r#"{"q":"secret"}"#.into(),
            },
            Action::ToolCall {
                name: "t3".into(),
                input: "{}".into(),
            },
            Action::ToolCall {
                name: "t2".into(),
                input: r#"{"n":2,"q":"secret"}"#.into(),
            },
            Action::ToolCall {
                name: "t1".into(),
                input: r#"{"n":0.5}"#.into(),
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_index_never_changes_an_evaluation(
            policies in proptest::collection::vec(policy(), 0..14),
        ) {
            let text: String = policies
                .iter()
                .enumerate()
                .map(|(i, p)| format!("@id(\"p{i}\")\n{p}\n"))
                .collect();
            let env = Environment::new("/ws", &["/state/kernel.key".into()]).unwrap();
            let engine = PolicyEngine::from_sources(&[("gen.cedar".into(), text.clone())], env);
            let engine = match engine {
                Ok(engine) => engine,
                Err(e) => panic!("generated set refused: {e}\n{text}"),
            };
            for action in requests() {
                let action = canon(action);
                prop_assert_eq!(
                    engine.evaluate(&action),
                    engine.evaluate_unindexed(&action),
                    "{:?} under\n{}", action, text
                );
            }
        }
    }

    /// The generator is not vacuous: the cases the property is about occur,
    /// and the index agrees on them.
    #[test]
    fn the_index_agrees_on_forbids_errors_and_unconstrained_policies() {
        let engine = engine(
            r#"@id("any") permit (principal, action, resource) when { context.kernel_asset == false };
               @id("no-ssh") forbid (principal, action == Action::"file_read", resource) when { resource.path like "/home/*/.ssh/*" };
               @id("overflow") forbid (principal, action == Action::"http", resource == Host::"h1.example") unless { context.port * 9223372036854775807 > 1 };
               @id("ws") permit (principal, action in [Action::"file_read", Action::"file_write"], resource in Workspace::"root");"#,
        );
        let cases = [
            (
                Action::file_read("/home/u/.ssh/id_ed25519"),
                Some("no-ssh"),
                false,
            ),
            (
                Action::Http {
                    method: "GET".into(),
                    url: "https://h1.example/".into(),
                },
                None,
                true,
            ),
            (Action::file_read("/ws/a.txt"), None, false),
        ];
        for (action, forbid, error) in cases {
            let action = canon(action);
            let indexed = engine.evaluate(&action);
            assert_eq!(indexed, engine.evaluate_unindexed(&action), "{action:?}");
            let Evaluation::Completed {
                permits,
                forbids,
                errors,
            } = indexed
            else {
                panic!("{action:?} did not evaluate");
            };
            assert_eq!(forbids.first().map(|f| f.id.as_str()), forbid, "{action:?}");
            assert_eq!(!errors.is_empty(), error, "{action:?}");
            if forbid.is_none() && !error {
                let ids: Vec<_> = permits.iter().map(|p| p.id.as_str()).collect();
                assert_eq!(ids, ["any", "ws"], "{action:?}");
            }
        }
    }
}

/// The deepest policies the kernel loads, of every shape that nests, load
/// with their validation done (the same text with an ill-typed innermost
/// condition is refused: Cedar's validator, short of stack, passed what it
/// did not check) and evaluate without error, on this test's thread (2 MiB:
/// the work moves to a decider thread) and on a decider thread; one level
/// deeper is refused at load. Run by a debug build, whose frames are the
/// largest.
#[test]
fn the_deepest_policy_loads_and_evaluates_on_every_thread() {
    type Shape = fn(usize, &str) -> String;
    let shapes: [(&str, Shape); 7] = [
        ("||", |n, leaf| {
            std::iter::once(leaf.to_owned())
                .chain((0..n).map(|i| format!("context.cwd == \"/x{i}\"")))
                .collect::<Vec<_>>()
                .join(" || ")
        }),
        ("&&", |n, leaf| {
            std::iter::once(format!("!({leaf})"))
                .chain((0..n).map(|i| format!("context.cwd != \"/x{i}\"")))
                .chain(std::iter::once("context.argc == 7".to_owned()))
                .collect::<Vec<_>>()
                .join(" && ")
        }),
        ("()", |n, leaf| {
            format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n))
        }),
        ("[]", |n, leaf| {
            let set = format!("{}{leaf}{}", "[".repeat(n), "]".repeat(n));
            format!("{set} == {set} && context.argc == 7")
        }),
        ("{}", |n, leaf| {
            let record = format!("{}{leaf}{}", "{a: ".repeat(n), "}".repeat(n));
            format!("{record}{}", ".a".repeat(n))
        }),
        ("!", |n, leaf| {
            format!("{}{leaf}{}", "!(!(".repeat(n), "))".repeat(n))
        }),
        ("if", |n, leaf| {
            "if context.argc == 7 then true else ".repeat(n) + leaf
        }),
    ];
    let policy = |condition: &str| {
        format!(
            "@id(\"allow\") permit (principal, action, resource);\n\
             @id(\"deep\") forbid (principal, action == Action::\"exec\", resource) \
             when {{ {condition} }};"
        )
    };
    let action = canon(Action::exec(Exec::new("/bin/true").cwd("/ws")));
    let load = |text: String| {
        PolicyEngine::from_sources(
            &[("p.cedar".into(), text)],
            Environment::new("/ws", &[]).unwrap(),
        )
    };
    let good = "context.cwd == \"/nowhere\"";
    let ill_typed = "context.cwd < 7";
    for (name, shape) in shapes {
        let estimate = |n: usize| depth::estimate(&policy(&shape(n, good))).0;
        let n = (1..)
            .take_while(|&n| estimate(n) <= MAX_POLICY_DEPTH)
            .last()
            .unwrap();
        assert!(
            estimate(n) > MAX_POLICY_DEPTH - 4,
            "{name}: {}",
            estimate(n)
        );

        let engine = load(policy(&shape(n, good)))
            .unwrap_or_else(|e| panic!("{name} at depth {}: {e}", estimate(n)));
        let here = engine.evaluate(&action);
        assert!(
            matches!(&here, Evaluation::Completed { errors, forbids, .. } if errors.is_empty() && forbids.is_empty()),
            "{name}: {here:?}"
        );
        let engine = std::sync::Arc::new(engine);
        let shared = std::sync::Arc::clone(&engine);
        let action_there = action.clone();
        let there = spawn_decider("test", move || shared.evaluate(&action_there))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(there, here, "{name}");

        assert!(
            load(policy(&shape(n, ill_typed))).is_err(),
            "{name}: an ill-typed condition at depth {} passed validation",
            estimate(n)
        );
        let refused = load(policy(&shape(n + 1, good))).unwrap_err().to_string();
        assert!(refused.contains("levels deep"), "{name}: {refused}");
    }
}

proptest::proptest! {
    /// Line numbers by binary search are those counted from the start,
    /// at every offset (multi-byte characters and line breaks included).
    #[test]
    fn lines_agree_with_line_column(text in "[a\né\n\r\\[]{0,80}") {
        let lines = Lines::new(&text);
        for offset in 0..=text.len() + 1 {
            proptest::prop_assert_eq!(lines.line(offset), line_column(&text, offset).0, "at {}", offset);
        }
    }
}

/// A write whose size a policy integer cannot hold is not decided by a
/// wrapped number: its request cannot be built, `view` says why by
/// variant, and the evaluation fails, which denies even under a policy
/// that permits every write.
#[test]
fn a_request_that_cannot_be_built_is_refused_by_variant_and_denied() {
    let engine = engine(
        r#"permit (principal, action == Action::"file_write", resource in Workspace::"root");"#,
    );
    let huge = Action::FileWrite {
        path: "/ws/big".into(),
        content_sha256: kernel_core::Digest([0; 32]),
        size: u64::MAX,
        mode: kernel_core::WriteMode::Overwrite,
    };
    let small = Action::FileWrite {
        path: "/ws/big".into(),
        content_sha256: kernel_core::Digest([0; 32]),
        size: 7,
        mode: kernel_core::WriteMode::Overwrite,
    };
    assert_eq!(
        engine.view(&canon(huge.clone())).unwrap_err(),
        RequestBuildError::TooLarge(u64::MAX)
    );
    assert!(matches!(
        engine.evaluate(&canon(huge.clone())),
        Evaluation::Failed { reason } if reason.contains("does not fit a policy integer")
    ));
    assert_eq!(decision(&engine, huge), Decision::Deny);
    assert_eq!(decision(&engine, small), Decision::Allow);
}
