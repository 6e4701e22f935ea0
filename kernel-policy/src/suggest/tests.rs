//! The suggestion's laws: every recorded action that proceeded is allowed
//! by it (unless the floor or the base forbids it), no suggested permit
//! covers one of the kernel's own files, paths generalise only to the
//! smallest directory inside the workspace, and arguments only where they
//! varied.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use super::*;
use crate::suite;
use kernel_core::{Exec, WriteMode};
use proptest::prelude::*;

const WS: &str = "/ws";

fn observe(action: Action, decision: Decision) -> Observation {
    Observation {
        action: CanonicalAction::new(action, Some(WS)).unwrap(),
        decision,
        reasons: Vec::new(),
    }
}

fn shadow(action: Action) -> Observation {
    observe(action, Decision::ShadowDeny)
}

fn exec(program: &str, args: &[&str]) -> Action {
    Action::exec(Exec::new(program).args(args.iter().copied()).cwd(WS))
}

fn options(assets: &[&str], base: &str) -> SuggestOptions {
    SuggestOptions {
        workspace: WS.into(),
        assets: assets.iter().map(|a| (*a).to_owned()).collect(),
        base: if base.is_empty() {
            Vec::new()
        } else {
            vec![("base.cedar".into(), base.into())]
        },
    }
}

fn text(suggestion: &Suggestion) -> String {
    suggestion.render(&[], false)
}

#[test]
fn files_generalise_to_the_smallest_directory_inside_the_workspace_only() {
    let observations = [
        shadow(Action::file_read("/ws/src/lib/a.rs")),
        shadow(Action::file_read("/ws/src/lib/b.rs")),
        shadow(Action::file_read("/ws/Cargo.toml")),
        shadow(Action::file_read("/home/u/.gitconfig")),
        shadow(Action::file_read("/home/u/.config/git/ignore")),
        shadow(Action::file_write_descriptor("/ws/target/debug/app")),
        shadow(Action::file_write_descriptor("/ws/target/debug/deps/x.o")),
        shadow(Action::file_write_without_content(
            "/ws/target/debug/app",
            WriteMode::Metadata,
        )),
    ];
    let suggestion = suggest(&observations, &options(&[], "")).unwrap();
    let text = text(&suggestion);
    assert!(
        text.contains(r#"resource.path like "/ws/src/lib/*""#),
        "{text}"
    );
    assert!(
        text.contains(r#"resource.path like "/ws/target/debug/*""#),
        "{text}"
    );
    assert!(
        text.contains(r#"["descriptor", "metadata"].contains(context.mode)"#),
        "{text}"
    );
    // Exact paths: a single file of the workspace, and outside it.
    assert!(
        text.contains(r#"resource.path == "/ws/Cargo.toml""#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"["/home/u/.config/git/ignore", "/home/u/.gitconfig"].contains(resource.path)"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("\"/home/u/*\"") && !text.contains("\"/*\""),
        "{text}"
    );
    assert_eq!(suggestion.covered, observations.len());
    assert_eq!(suggestion.covered_shadowed, observations.len());
}

#[test]
fn a_directory_holding_a_kernel_file_is_not_generalised_to() {
    let observations = [
        shadow(Action::file_read("/ws/state/a.txt")),
        shadow(Action::file_read("/ws/state/b.txt")),
        shadow(Action::file_read("/ws/state/kernel.key")),
    ];
    let suggestion = suggest(&observations, &options(&["/ws/state/kernel.key"], "")).unwrap();
    let text = text(&suggestion);
    assert!(!text.contains("like \"/ws/state/*\""), "{text}");
    assert!(text.contains("\"/ws/state/a.txt\""), "{text}");
    assert!(!text.contains("\"/ws/state/kernel.key\""), "{text}");
    assert_eq!(suggestion.floor.len(), 1, "{:?}", suggestion.floor);
    assert_eq!(suggestion.floor[0].count, 1);
    assert_eq!(suggestion.covered, 2);
}

#[test]
fn arguments_are_free_only_where_they_varied_and_subcommands_stay_literal() {
    let observations = [
        shadow(exec("/usr/bin/git", &["status"])),
        shadow(exec("/usr/bin/git", &["status"])),
        shadow(exec("/usr/bin/git", &["-C", "repo", "log"])),
        shadow(exec("/usr/bin/git", &["-C", "repo", "diff"])),
        shadow(exec("/usr/bin/cat", &["a.txt"])),
        shadow(exec("/usr/bin/cat", &["b.txt"])),
        shadow(exec(
            "/usr/bin/cc",
            &["-o", "x", "-fresolution=/tmp/cc1.res"],
        )),
        shadow(exec(
            "/usr/bin/cc",
            &["-o", "x", "-fresolution=/tmp/cc2.res"],
        )),
        shadow(exec("/usr/bin/make", &[])),
        // A linker's temporary directory, attached to its option.
        shadow(exec(
            "/usr/bin/ld",
            &[
                "-L/ws/target/rustcAb12/raw-dylibs",
                "-lc",
                "-Wl,-rpath,/opt/a",
            ],
        )),
        shadow(exec(
            "/usr/bin/ld",
            &[
                "-L/ws/target/rustcZz99/raw-dylibs",
                "-lc",
                "-Wl,-rpath,/opt/a",
            ],
        )),
    ];
    let suggestion = suggest(&observations, &options(&[], "")).unwrap();
    let text = text(&suggestion);
    for expected in [
        r#"context.command_line like "/usr/bin/ld -L* -lc -Wl,-rpath,/opt/a""#,
        r#"context.command_line == "/usr/bin/git status""#,
        r#"context.command_line == "/usr/bin/git -C repo log""#,
        r#"context.command_line == "/usr/bin/git -C repo diff""#,
        r#"context.command_line like "/usr/bin/cat *""#,
        r#"context.command_line like "/usr/bin/cc -o x -fresolution=*""#,
        r#"context.argc == 0 && context.command_line == "/usr/bin/make""#,
        "context.cwd_in_workspace",
    ] {
        assert!(text.contains(expected), "no `{expected}` in\n{text}");
    }
    // The widening check sees each shape as its class: values free.
    let analysed = suggestion.render(&[], true);
    assert!(
        analysed.contains(r#"context.command_line like "/usr/bin/ld -L* -lc -Wl,-rpath,*""#),
        "{analysed}"
    );
    assert!(
        analysed.contains(r#"context.command_line == "/usr/bin/git status""#),
        "{analysed}"
    );
    // A generated command line (16 values or more, one of them varied):
    // every value is free; a long one that did not vary stays literal.
    let link = |tmp: &str| {
        let mut args: Vec<String> = vec!["-o".into(), "out/app".into()];
        args.extend((0..15).map(|i| format!("lib/dep{i}-5f3a.rlib")));
        args.push(format!("/tmp/{tmp}/symbols.o"));
        shadow(Action::exec(Exec::new("/usr/bin/cc").args(args).cwd(WS)))
    };
    let fixed = || {
        let args: Vec<String> = (0..20).map(|i| format!("src/m{i}.rs")).collect();
        shadow(Action::exec(Exec::new("/usr/bin/rustc").args(args).cwd(WS)))
    };
    let generated = suggest(
        &[link("cc1a"), link("cc2b"), fixed(), fixed()],
        &options(&[], ""),
    )
    .unwrap();
    let generated = generated.render(&[], false);
    let free = format!("/usr/bin/cc -o{}", " *".repeat(17));
    assert!(generated.contains(&free), "no `{free}` in\n{generated}");
    assert!(
        generated.contains("context.command_line == \"/usr/bin/rustc src/m0.rs src/m1.rs"),
        "{generated}"
    );
    // `git status` and `git -C repo log` are different programs' shapes
    // of one permit; a free subcommand never appears.
    assert!(!text.contains("/usr/bin/git *"), "{text}");
    assert!(!text.contains("/usr/bin/git -C repo *"), "{text}");
}

#[test]
fn what_the_base_forbids_and_the_floor_protects_gets_no_permit_and_stays_on_top() {
    let base = r#"
@id("no-env")
@reason("no .env")
forbid (principal, action == Action::"file_read", resource) when { resource.name == ".env" };
@id("broad")
permit (principal, action, resource);
"#;
    let observations = [
        shadow(Action::file_read("/ws/app/.env")),
        shadow(Action::file_read("/ws/app/main.py")),
        shadow(Action::file_read("/ws/app/util.py")),
        shadow(Action::file_read("/state/policy.cedar")),
        observe(Action::file_read("/ws/app/secret.key"), Decision::Deny),
    ];
    let suggestion = suggest(&observations, &options(&["/state/policy.cedar"], base)).unwrap();
    let text = text(&suggestion);
    // The base's forbid is copied, its permit is not.
    assert!(text.contains("@id(\"no-env\")"), "{text}");
    assert!(!text.contains("@id(\"broad\")"), "{text}");
    assert_eq!(suggestion.forbidden.len(), 1);
    assert!(suggestion.forbidden[0].why.contains("no-env"));
    assert_eq!(suggestion.floor.len(), 1);
    // The generalised directory covers .env, and the copied forbid still
    // denies it; the recorded denial stays denied... by nothing but the
    // generalisation, which is reported.
    let engine = PolicyEngine::from_sources(
        &[("s".into(), text.clone())],
        Environment::new(WS, &["/state/policy.cedar".to_owned()]).unwrap(),
    )
    .unwrap();
    let decide = |path: &str| {
        engine
            .decide_fresh(&CanonicalAction::new(Action::file_read(path), Some(WS)).unwrap())
            .verdict
    };
    assert_eq!(decide("/ws/app/.env").policies, vec!["no-env".to_owned()]);
    assert_eq!(decide("/ws/app/other.py").decision, Decision::Allow);
    assert_eq!(
        suggestion.denied_now_allowed,
        vec![Dropped {
            action: "file_read /ws/app/secret.key".into(),
            count: 1,
            why: "recorded as denied, and the suggestion does not deny it".into()
        }]
    );
    // The test cases: allowed, and denied for the floor, the forbid and
    // the recorded denial.
    let expect = |needle: &str| {
        suggestion
            .tests
            .iter()
            .find(|c| c.request.path.as_deref() == Some(needle))
            .map(|c| c.expect)
    };
    assert_eq!(expect("/ws/app/main.py"), Some(Decision::Allow));
    assert_eq!(expect("/ws/app/.env"), Some(Decision::Deny));
    assert_eq!(expect("/state/policy.cedar"), Some(Decision::Deny));
    assert_eq!(expect("/ws/app/secret.key"), Some(Decision::Deny));
}

#[test]
fn an_action_asked_about_keeps_its_ask_and_tools_keep_their_argument_names() {
    let observations = [
        observe(
            Action::tool_call("deploy", &serde_json::json!({"env": "prod"})),
            Decision::ShadowAsk,
        ),
        shadow(Action::tool_call(
            "search",
            &serde_json::json!({"query": "x", "limit": 3}),
        )),
        shadow(Action::tool_call(
            "search",
            &serde_json::json!({"query": "y"}),
        )),
        shadow(Action::net_connect("crates.io", 443)),
        shadow(Action::http("GET", "https://api.example.com/v1/a")),
        shadow(Action::http("POST", "https://api.example.com/v1/b")),
        observe(Action::custom("note", "hello"), Decision::Allow),
    ];
    let suggestion = suggest(&observations, &options(&[], "")).unwrap();
    let text = text(&suggestion);
    let deploy = suggestion
        .permits
        .iter()
        .find(|p| p.text.contains("\"deploy\""))
        .unwrap();
    assert!(deploy.text.contains("\n@ask\n"), "{}", deploy.text);
    let search = suggestion
        .permits
        .iter()
        .find(|p| p.text.contains("\"search\""))
        .unwrap();
    assert!(
        search.text.contains("context.args has \"limit\""),
        "{}",
        search.text
    );
    assert!(
        !search.analysed.contains("context.args"),
        "{}",
        search.analysed
    );
    for expected in [
        r#"resource.name == "crates.io" && context.port == 443"#,
        r#"["GET", "POST"].contains(context.method)"#,
        r#"context.payload == "hello""#,
    ] {
        assert!(text.contains(expected), "no `{expected}` in\n{text}");
    }
    assert_eq!(
        suggestion.covered_shadowed,
        observations.len() - 1,
        "all but the allowed custom action"
    );
}

#[test]
fn environment_values_are_not_copied_into_tests() {
    let action = CanonicalAction::new(
        Action::exec(
            Exec::new("/usr/bin/env")
                .cwd(WS)
                .env("TOKEN", "s3cr3t-value"),
        ),
        Some(WS),
    )
    .unwrap();
    let spec = spec_of(&action);
    let fields = spec.toml_fields().unwrap().join("\n");
    assert!(fields.contains("TOKEN"), "{fields}");
    assert!(!fields.contains("s3cr3t-value"), "{fields}");
}

/// A header line names files and the workspace; a line break in one of
/// those names (an evidence file called so) must not end the comment and
/// put its rest into the policy or the test file as text of their own.
#[test]
fn a_line_break_in_a_header_line_stays_inside_the_comment() {
    let suggestion = suggest(&[], &options(&[], "")).unwrap();
    let header = vec![
        "from `evidence\n@id(\"n\") permit (principal, action, resource); //`".to_owned(),
        "from `evidence\r@id(\"r\") permit (principal, action, resource); //`".to_owned(),
    ];
    let text = suggestion.render(&header, false);
    let engine = PolicyEngine::from_sources(
        &[("s".into(), text.clone())],
        Environment::new(WS, &[]).unwrap(),
    )
    .unwrap();
    let read = CanonicalAction::new(Action::file_read("/ws/a"), Some(WS)).unwrap();
    assert_eq!(
        engine.decide_fresh(&read).verdict.decision,
        Decision::Deny,
        "the name's text became a permit:\n{text}"
    );

    let header = vec!["from `evidence\n[[case]]\nname = \"injected\"\naction = \"file_read\"\npath = \"/ws/a\"\nexpect = \"allow\" #`".to_owned()];
    let case = TestCase {
        name: "recorded once".into(),
        request: spec_of(&read),
        expect: Decision::Deny,
    };
    let file = tests_file(&[case], "s.cedar", WS, &[], &header);
    let suite = suite::parse("t.toml", &file, std::path::Path::new("/"))
        .unwrap_or_else(|e| panic!("the name's text broke the test file: {e:?}\n{file}"));
    let names: Vec<&str> = suite.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["recorded once"],
        "the name's text became a case:\n{file}"
    );
}

#[test]
fn strings_are_escaped_for_cedar_and_like_patterns() {
    assert_eq!(cedar_string("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(like_part("a*b"), r"a\*b");
    assert_eq!(cedar_string("tab\there"), r#""tab\there""#);
}

// --- the laws, over generated evidence -----------------------------------

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("src".to_owned()),
        Just("a.rs".to_owned()),
        Just(".env".to_owned()),
        Just("state".to_owned()),
        Just("kernel.key".to_owned()),
        Just("with space".to_owned()),
        Just("star*".to_owned()),
        Just("quo\"te".to_owned()),
        Just("back\\slash".to_owned()),
        Just("ünï".to_owned()),
        "[a-z]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        // Often beside a kernel file: where generalising could reach it.
        prop_oneof![
            Just("/ws"),
            Just("/ws/state"),
            Just("/ws/state"),
            Just("/home/u"),
            Just("/etc/agent"),
            Just("/")
        ],
        proptest::collection::vec(segment(), 0..4),
    )
        .prop_map(|(root, parts)| {
            let mut path = root.trim_end_matches('/').to_owned();
            for part in parts {
                path.push('/');
                path.push_str(&part);
            }
            if path.is_empty() {
                "/".to_owned()
            } else {
                path
            }
        })
}

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("status".to_owned()),
        Just("-o".to_owned()),
        Just("--out=a b".to_owned()),
        Just("x.txt".to_owned()),
        Just("*".to_owned()),
        Just("/ws/state/kernel.key".to_owned()),
        "[a-z./-]{0,5}",
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        path().prop_map(Action::file_read),
        path().prop_map(Action::file_delete),
        path().prop_map(Action::file_write_descriptor),
        path().prop_map(|p| Action::file_write_without_content(p, WriteMode::Metadata)),
        (path(), 0u64..100).prop_map(|(p, size)| Action::FileWrite {
            path: p,
            content_sha256: kernel_core::Digest::of_content(b""),
            size,
            mode: WriteMode::Overwrite,
        }),
        (
            prop_oneof![
                Just("/usr/bin/git"),
                Just("/usr/bin/cat"),
                Just("/ws/bin/tool"),
                Just("/ws/state/kernel.key")
            ],
            proptest::collection::vec(argument(), 0..4),
            prop_oneof![Just("/ws"), Just("/ws/src"), Just("/tmp")],
        )
            .prop_map(|(program, args, cwd)| Action::exec(Exec::new(program).args(args).cwd(cwd))),
        (prop_oneof![Just("a.example"), Just("b.example")], 1u16..4)
            .prop_map(|(host, port)| Action::net_connect(host, port)),
        (
            prop_oneof![Just("GET"), Just("PUT")],
            prop_oneof![Just("https://a.example/x"), Just("http://a.example:8080/y")]
        )
            .prop_map(|(method, url)| Action::http(method, url)),
        (
            prop_oneof![Just("deploy"), Just("search")],
            prop_oneof![
                Just(serde_json::json!({"q": 1})),
                Just(serde_json::json!({"q": 1, "n": "/ws/state/kernel.key"})),
                Just(serde_json::json!({})),
                Just(serde_json::json!([1]))
            ]
        )
            .prop_map(|(tool, input)| Action::tool_call(tool, &input)),
        "[a-z]{1,3}".prop_map(|p| Action::custom("kind", p)),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        Just(Decision::Allow),
        Just(Decision::ShadowDeny),
        Just(Decision::ShadowAsk),
        Just(Decision::Deny),
    ]
}

const BASE: &str = r#"
@id("no-env")
forbid (principal, action in [Action::"file_read", Action::"file_write"], resource)
when { resource.name == ".env" };
@id("no-star")
forbid (principal, action == Action::"exec", resource) when { context.args.contains("*") };
"#;

/// Requests whose resource is `asset` or lies beneath it, of every kind
/// of action that names a file or a program.
fn requests_on(asset: &str) -> Vec<CanonicalAction> {
    let mut out = Vec::new();
    for path in [asset.to_owned(), format!("{asset}/x")] {
        for action in [
            Action::file_read(path.clone()),
            Action::file_delete(path.clone()),
            Action::file_write_descriptor(path.clone()),
            Action::file_write_without_content(path.clone(), WriteMode::Metadata),
            Action::FileWrite {
                path: path.clone(),
                content_sha256: kernel_core::Digest::of_content(b""),
                size: 1,
                mode: WriteMode::Overwrite,
            },
            Action::exec(Exec::new(path.clone()).cwd(WS)),
        ] {
            out.push(CanonicalAction::new(action, Some(WS)).unwrap());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every recorded action that proceeded is allowed by the suggestion
    /// (asked, if the policy asked), unless the floor or the base's forbid
    /// is involved; no suggested permit matches a request on one of the
    /// kernel's own files; and the test cases it writes pass, but for the
    /// recorded denials it reports as now allowed.
    #[test]
    fn every_recorded_action_is_allowed_and_no_permit_covers_a_floor_asset(
        recorded in proptest::collection::vec((action(), decision()), 1..24),
        protect_in_workspace in any::<bool>(),
    ) {
        let assets: Vec<&str> = if protect_in_workspace {
            vec!["/ws/state/kernel.key", "/etc/agent/policy.cedar"]
        } else {
            vec!["/etc/agent/policy.cedar"]
        };
        let observations: Vec<Observation> = recorded
            .into_iter()
            .filter_map(|(action, decision)| {
                CanonicalAction::new(action, Some(WS)).ok().map(|action| Observation {
                    action,
                    decision,
                    reasons: Vec::new(),
                })
            })
            .collect();
        let options = options(&assets, BASE);
        let suggestion = suggest(&observations, &options)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = text(&suggestion);
        let env = Environment::new(WS, &options.assets).unwrap();
        let engine = PolicyEngine::from_sources(&[("s".into(), text)], env.clone()).unwrap();
        let base = PolicyEngine::from_sources(&options.base, env).unwrap();
        for observation in observations.iter().filter(|o| o.decision.proceeds()) {
            let involved = base.view(&observation.action).map_or(true, |v| v.kernel_asset())
                || matches!(
                    base.evaluate(&observation.action),
                    Evaluation::Completed { ref forbids, ref errors, .. }
                        if !forbids.is_empty() || !errors.is_empty()
                );
            let decided = engine.decide_fresh(&observation.action).verdict.decision;
            if involved {
                prop_assert_eq!(decided, Decision::Deny, "{:?}", observation.action);
            } else if observation.decision == Decision::ShadowAsk {
                prop_assert_eq!(decided, Decision::Ask, "{:?}", observation.action);
            } else {
                prop_assert!(
                    decided == Decision::Allow || decided == Decision::Ask,
                    "{:?} was recorded as {:?}, decided {:?}",
                    observation.action, observation.decision, decided
                );
            }
        }
        // The permits alone, where nothing is protected (so the floor
        // cannot hide what they match): none matches a kernel file.
        let permits: Vec<String> = suggestion.permits.iter().map(|p| p.text.clone()).collect();
        let bare = PolicyEngine::from_sources(
            &[("permits".into(), permits.join("\n\n"))],
            Environment::new(WS, &[]).unwrap(),
        )
        .unwrap();
        for asset in &assets {
            for request in requests_on(asset) {
                if let Evaluation::Completed { permits, .. } = bare.evaluate(&request) {
                    prop_assert!(
                        permits.is_empty(),
                        "{} matches {:?}",
                        permits.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", "),
                        request
                    );
                }
            }
        }
        // The test cases the suggestion writes pass against it.
        let file = tests_file(&suggestion.tests, "s.cedar", WS, &[], &[]);
        let suite = suite::parse("t.toml", &file, std::path::Path::new("/"))
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{file}")))?;
        let outcomes = suite::run(
            &suite,
            &[("s.cedar".into(), suggestion.render(&[], false))],
            &options.assets,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reported: Vec<&str> = suggestion
            .denied_now_allowed
            .iter()
            .map(|d| d.action.as_str())
            .collect();
        for outcome in outcomes.iter().filter(|o| !o.passed()) {
            prop_assert!(
                reported.contains(&outcome.request.as_str()),
                "{}",
                suite::render_outcome("t.toml", outcome)
            );
        }
    }
}

/// More cases than one test file may hold (by count or by size) are
/// split into files that `policy test` accepts, each with the header and
/// environment, every case once and in order.
#[test]
fn tests_beyond_one_files_limits_are_split_into_files_policy_test_accepts() {
    let read = |path: String| TestCase {
        name: format!("read {path}"),
        request: spec_of(&CanonicalAction::new(Action::file_read(path), Some(WS)).unwrap()),
        expect: Decision::Allow,
    };
    let cases: Vec<TestCase> = (0..12).map(|i| read(format!("/ws/f{i:02}"))).collect();
    let preamble = tests_preamble("s.cedar", WS, &[], &["made here".to_owned()]);
    let one = case_text(&cases[0]).len();
    // By count (5 a file), by size (room for 3), and a case larger than
    // the limit alone in its file.
    for (max_cases, max_bytes, parts) in [
        (5, usize::MAX, 3),
        (usize::MAX, preamble.len() + 3 * one + 2, 4),
        (usize::MAX, preamble.len(), 12),
    ] {
        let files = split_cases(&cases, &preamble, max_cases, max_bytes);
        assert_eq!(files.len(), parts, "{max_cases} {max_bytes}");
        let mut names = Vec::new();
        for file in &files {
            assert!(file.starts_with("# made here\n"), "{file}");
            let suite = suite::parse("t.toml", file, std::path::Path::new("/"))
                .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(suite.workspace, WS);
            assert!(suite.cases.len() <= max_cases);
            if parts < 12 {
                assert!(file.len() <= max_bytes);
            }
            names.extend(suite.cases.into_iter().map(|c| c.name));
        }
        let expected: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, expected);
    }
    // Within the limits, one file, the same as `tests_file`.
    assert_eq!(
        tests_files(&cases, "s.cedar", WS, &[], &[]),
        [tests_file(&cases, "s.cedar", WS, &[], &[])]
    );
}
