//! `policy test`: example requests with the decisions a policy set must
//! reach, like unit tests for a policy.
//!
//! A test file is TOML:
//!
//! ```toml
//! policies = ["agent.cedar"]            # relative to this file
//!
//! [environment]
//! workspace = "/home/agent/project"     # default "/workspace"
//! protect = ["/var/lib/agent-kernel/kernel.key"]
//!
//! [[case]]
//! name = "project files may be read"
//! action = "file_read"
//! path = "src/main.rs"                  # relative to cwd, default the workspace
//! expect = "allow"                      # allow, deny or ask
//! policy = "read-workspace"             # optional: a determining policy's @id
//! reason = "may be read"                # optional: text in a reason
//! ```
//!
//! Each case is decided by [`PolicyEngine::decide_fresh`], the session's
//! own decision path: the same canonicalisation, Cedar evaluation, floor
//! and fail-closed combinator. The floor protects the policy files, the
//! `protect` paths and the enforcer's binary, as it does in a session.

use super::request::{REQUEST_FIELDS, RequestSpec};
use super::{Environment, Lines, PolicyDiagnostic, PolicyEngine, PolicyLoadError, located};
use kernel_core::{CanonicalAction, Decision, Verdict};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest test file accepted, in bytes.
pub const MAX_TEST_FILE_BYTES: usize = 1024 * 1024;
/// Most cases accepted in one file.
pub const MAX_CASES: usize = 10_000;
/// The workspace when a test file names none.
pub const DEFAULT_WORKSPACE: &str = "/workspace";

const CASE_FIELDS: [&str; 6] = ["name", "expect", "policy", "reason", "workspace", "action"];

/// Why a test file could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// The test file could not be read.
    #[error("cannot read test file `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The test file has errors, each with its position.
    #[error("{}", super::render(.0))]
    Invalid(Vec<PolicyDiagnostic>),
    /// The policies under test do not load.
    #[error("{0}")]
    Policy(#[from] PolicyLoadError),
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its name (default `case N`).
    pub name: String,
    /// 1-based line of the case in the test file.
    pub line: usize,
    /// The request.
    pub request: RequestSpec,
    /// A workspace for this case only.
    pub workspace: Option<String>,
    /// The decision it must get.
    pub expect: Decision,
    /// An `@id` that must be among the determining policies.
    pub policy: Option<String>,
    /// Text that must appear in one of the reasons.
    pub reason: Option<String>,
}

/// A parsed test file.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The test file, as given.
    pub file: String,
    /// The policy files it names, relative to the test file's directory.
    pub policies: Vec<PathBuf>,
    /// The workspace.
    pub workspace: String,
    /// Paths the floor protects besides the policy files and the binary.
    pub protect: Vec<String>,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    policies: Option<Vec<String>>,
    environment: Option<RawEnvironment>,
    #[serde(default)]
    case: Vec<toml::Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    workspace: Option<String>,
    protect: Option<Vec<String>>,
}

fn decision_named(name: &str) -> Option<Decision> {
    match name {
        "allow" => Some(Decision::Allow),
        "deny" => Some(Decision::Deny),
        "ask" => Some(Decision::Ask),
        _ => None,
    }
}

fn string_field(table: &mut toml::Table, key: &str, problems: &mut Vec<String>) -> Option<String> {
    match table.remove(key) {
        None => None,
        Some(toml::Value::String(value)) => Some(value),
        Some(other) => {
            problems.push(format!(
                "`{key}` must be a string, not {}",
                other.type_str()
            ));
            None
        }
    }
}

/// Parses a test file's text. `file` names it in messages; `base` is the
/// directory its policy paths are relative to. Every problem is reported,
/// each with its line.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Suite, Vec<PolicyDiagnostic>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        vec![located(
            file,
            text,
            e.span().map(|s| s.start),
            e.message().trim_end_matches('\n').to_owned(),
        )]
    })?;
    let mut diagnostics = Vec::new();
    if raw.case.is_empty() {
        diagnostics.push(located(
            file,
            text,
            None,
            "no test cases: add at least one `[[case]]`".to_owned(),
        ));
    }
    if raw.case.len() > MAX_CASES {
        diagnostics.push(located(
            file,
            text,
            None,
            format!("{} cases, over the limit of {MAX_CASES}", raw.case.len()),
        ));
    }
    let environment = raw.environment.unwrap_or(RawEnvironment {
        workspace: None,
        protect: None,
    });
    let mut cases = Vec::new();
    let lines = Lines::new(text);
    for (index, spanned) in raw.case.into_iter().enumerate() {
        let offset = spanned.span().start;
        let line = lines.line(offset);
        let mut table = spanned.into_inner();
        let mut problems = Vec::new();
        let name = string_field(&mut table, "name", &mut problems)
            .unwrap_or_else(|| format!("case {}", index + 1));
        if let Some(unknown) = table
            .keys()
            .find(|k| !CASE_FIELDS.contains(&k.as_str()) && !REQUEST_FIELDS.contains(&k.as_str()))
        {
            problems.push(format!(
                "unknown field `{unknown}`: a case has `name`, `action`, the action's fields, `cwd`, `workspace`, `expect`, `policy` and `reason`"
            ));
        }
        let expect = match string_field(&mut table, "expect", &mut problems) {
            None => {
                problems.push("missing `expect`: say `allow`, `deny` or `ask`".to_owned());
                None
            }
            Some(text) => {
                let decision = decision_named(&text);
                if decision.is_none() {
                    problems.push(format!(
                        "`expect = \"{text}\"` is not a decision: use `allow`, `deny` or `ask`"
                    ));
                }
                decision
            }
        };
        let policy = string_field(&mut table, "policy", &mut problems);
        let reason = string_field(&mut table, "reason", &mut problems);
        let workspace = string_field(&mut table, "workspace", &mut problems);
        if !table.contains_key("action") {
            problems.push(format!(
                "missing `action`: one of {}",
                kernel_core::ActionKind::ALL
                    .iter()
                    .map(|k| format!("`{}`", k.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let request = if problems.is_empty() {
            match toml::Value::Table(table).try_into::<RequestSpec>() {
                Ok(request) => match request.to_action() {
                    Ok(_) => Some(request),
                    Err(message) => {
                        problems.push(message.to_string());
                        None
                    }
                },
                Err(e) => {
                    problems.push(e.message().trim_end_matches('\n').to_owned());
                    None
                }
            }
        } else {
            None
        };
        match (request, expect, problems.is_empty()) {
            (Some(request), Some(expect), true) => cases.push(Case {
                name,
                line,
                request,
                workspace,
                expect,
                policy,
                reason,
            }),
            _ => {
                for problem in problems {
                    diagnostics.push(located(
                        file,
                        text,
                        Some(offset),
                        format!("case `{name}`: {problem}"),
                    ));
                }
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(Suite {
            file: file.to_owned(),
            policies: raw
                .policies
                .unwrap_or_default()
                .into_iter()
                .map(|p| base.join(p))
                .collect(),
            workspace: environment
                .workspace
                .unwrap_or_else(|| DEFAULT_WORKSPACE.to_owned()),
            protect: environment.protect.unwrap_or_default(),
            cases,
        })
    } else {
        Err(diagnostics)
    }
}

/// Reads and parses a test file.
pub fn load(path: &Path) -> Result<Suite, SuiteError> {
    let name = path.display().to_string();
    let read_error = |source| SuiteError::Read {
        path: name.clone(),
        source,
    };
    let bytes = std::fs::read(path).map_err(read_error)?;
    if bytes.len() > MAX_TEST_FILE_BYTES {
        return Err(read_error(std::io::Error::other(format!(
            "file is {} bytes, over the {MAX_TEST_FILE_BYTES}-byte limit",
            bytes.len()
        ))));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| read_error(std::io::Error::other("not UTF-8")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&name, &text, base).map_err(SuiteError::Invalid)
}

/// What one case got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case's name.
    pub name: String,
    /// Its line in the test file.
    pub line: usize,
    /// The canonical request, described on one line.
    pub request: String,
    /// The decision it had to get.
    pub expect: Decision,
    /// The kernel's verdict.
    pub verdict: Verdict,
    /// What did not match; empty when the case passed.
    pub failures: Vec<String>,
}

impl Outcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The outcome as JSON: the facts of its [`render_outcome`] line.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "line": self.line,
            "request": self.request,
            "expect": self.expect.as_str(),
            "decision": self.verdict.decision.as_str(),
            "policies": self.verdict.policies,
            "reasons": self.verdict.reasons,
            "passed": self.passed(),
            "failures": self.failures,
        })
    }
}

/// `id: reason` pairs of a verdict, or its reasons alone.
pub fn why(verdict: &Verdict) -> String {
    if !verdict.policies.is_empty() && verdict.policies.len() == verdict.reasons.len() {
        verdict
            .policies
            .iter()
            .zip(&verdict.reasons)
            .map(|(id, reason)| format!("{id}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        verdict.reasons.join("; ")
    }
}

/// Runs every case against the policy `sources` (name, text), with the
/// floor protecting `assets` (absolute paths) besides the suite's own
/// `protect` list. Refuses to run anything when a case cannot be made
/// into a request the client would send.
pub fn run(
    suite: &Suite,
    sources: &[(String, String)],
    assets: &[String],
) -> Result<Vec<Outcome>, SuiteError> {
    let assets: Vec<String> = assets.iter().chain(&suite.protect).cloned().collect();
    let mut engines: HashMap<&str, PolicyEngine> = HashMap::new();
    let mut diagnostics = Vec::new();
    let mut planned = Vec::new();
    for case in &suite.cases {
        let workspace = case.workspace.as_deref().unwrap_or(&suite.workspace);
        let problem = |message: String| PolicyDiagnostic {
            file: suite.file.clone(),
            line: Some(case.line),
            column: None,
            message: format!("case `{}`: {message}", case.name),
        };
        if !engines.contains_key(workspace) {
            match Environment::new(workspace, &assets) {
                Ok(env) => {
                    engines.insert(workspace, PolicyEngine::from_sources(sources, env)?);
                }
                Err(e) => {
                    diagnostics.push(problem(format!(
                        "the workspace `{workspace}` or a protected path is not usable: {e}"
                    )));
                    continue;
                }
            }
        }
        match case.request.canonical(workspace) {
            Ok(action) => planned.push((case, workspace, action)),
            Err(message) => diagnostics.push(problem(message.to_string())),
        }
    }
    if !diagnostics.is_empty() {
        return Err(SuiteError::Invalid(diagnostics));
    }
    Ok(planned
        .iter()
        .filter_map(|(case, workspace, action)| {
            // INVARIANT: every planned case's workspace has an engine.
            engines
                .get(workspace)
                .map(|engine| decide_case(engine, case, action))
        })
        .collect())
}

fn decide_case(engine: &PolicyEngine, case: &Case, action: &CanonicalAction) -> Outcome {
    let verdict = engine.decide_fresh(action).verdict;
    let mut failures = Vec::new();
    if verdict.decision != case.expect {
        failures.push(format!("expected {}", case.expect.as_str()));
    }
    if let Some(id) = &case.policy
        && !verdict.policies.contains(id)
    {
        failures.push(if verdict.policies.is_empty() {
            format!("expected policy `{id}` to decide, but no policy did")
        } else {
            format!(
                "expected policy `{id}` to decide, but {} did",
                verdict
                    .policies
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if let Some(text) = &case.reason
        && !verdict.reasons.iter().any(|r| r.contains(text.as_str()))
    {
        failures.push(format!("expected a reason containing \"{text}\""));
    }
    Outcome {
        name: case.name.clone(),
        line: case.line,
        request: crate::describe::action(action.action()),
        expect: case.expect,
        verdict,
        failures,
    }
}

/// One line per outcome, for an operator: `ok` or `FAIL`, the request,
/// what was expected and what came out, and why.
pub fn render_outcome(file: &str, outcome: &Outcome) -> String {
    let why = why(&outcome.verdict);
    if outcome.passed() {
        format!(
            "ok    {}: {} -> {} ({why})",
            outcome.name,
            outcome.request,
            outcome.verdict.decision.as_str()
        )
    } else {
        format!(
            "FAIL  {} ({file}:{}): {}: {}; got {} ({why})",
            outcome.name,
            outcome.line,
            outcome.request,
            outcome.failures.join("; "),
            outcome.verdict.decision.as_str(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use super::*;

    const POLICY: &str = r#"
@id("read-workspace") @reason("project files may be read")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
@id("deploy") @ask
permit (principal, action == Action::"tool_call", resource == Tool::"deploy");
"#;

    fn suite(text: &str) -> Result<Suite, Vec<PolicyDiagnostic>> {
        parse("t.toml", text, Path::new("."))
    }

    fn outcomes(text: &str) -> Vec<Outcome> {
        let suite = suite(text).unwrap();
        run(
            &suite,
            &[("p.cedar".into(), POLICY.into())],
            &["/state/kernel.key".into()],
        )
        .unwrap()
    }

    #[test]
    fn passes_and_fails_with_reasons() {
        let results = outcomes(
            r#"
[environment]
workspace = "/ws"

[[case]]
name = "read"
action = "file_read"
path = "src/lib.rs"
expect = "allow"
policy = "read-workspace"

[[case]]
name = "wrong expectation"
action = "file_read"
path = "/etc/passwd"
expect = "allow"

[[case]]
name = "floor"
action = "file_read"
path = "/state/kernel.key"
expect = "deny"
policy = "kernel-floor-assets"

[[case]]
action = "tool_call"
tool = "deploy"
input = { env = "prod" }
expect = "ask"
reason = "approval"
"#,
        );
        assert_eq!(results.len(), 4);
        assert!(results[0].passed(), "{:?}", results[0]);
        assert!(!results[1].passed());
        assert_eq!(results[1].line, 12);
        let line = render_outcome("t.toml", &results[1]);
        assert!(
            line.starts_with("FAIL  wrong expectation (t.toml:12)"),
            "{line}"
        );
        assert!(line.contains("expected allow; got deny"), "{line}");
        assert!(results[2].passed(), "{:?}", results[2]);
        assert!(results[3].passed(), "{:?}", results[3]);
        assert_eq!(results[3].name, "case 4");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let errors = suite(
            r#"
[[case]]
name = "typo"
action = "file_read"
pth = "a"
expect = "allow"

[[case]]
name = "bad decision"
action = "file_read"
path = "a"
expect = "permit"
"#,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].line, Some(2));
        assert!(errors[0].message.contains("unknown field `pth`"));
        assert_eq!(errors[1].line, Some(8));
        assert!(
            errors[1].to_string().starts_with("t.toml:8:"),
            "{}",
            errors[1]
        );
        let syntax = suite("[[case]\n").unwrap_err();
        assert_eq!(syntax[0].line, Some(1), "{syntax:?}");
        assert!(suite("").unwrap_err()[0].message.contains("no test cases"));
    }

    #[test]
    fn a_request_the_client_would_refuse_is_an_error_not_a_deny() {
        let parsed = suite(
            r#"
[[case]]
action = "exec"
program = "git"
expect = "deny"
"#,
        )
        .unwrap();
        let Err(SuiteError::Invalid(errors)) =
            run(&parsed, &[("p.cedar".into(), POLICY.into())], &[])
        else {
            panic!("accepted");
        };
        assert!(errors[0].message.contains("not a path"), "{errors:?}");
        assert_eq!(errors[0].line, Some(2));
    }
}
