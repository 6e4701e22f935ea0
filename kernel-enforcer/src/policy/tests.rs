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

fn canon(action: Action) -> CanonicalAction {
    CanonicalAction::new(action, Some("/ws")).unwrap()
}

fn decision(engine: &PolicyEngine, action: Action) -> Decision {
    kernel_core::decide(&kernel_core::DecisionInputs {
        kernel: kernel_core::KernelState::Serving,
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
