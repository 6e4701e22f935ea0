//! `kernel-enforcer policy test|explain|diff`: tools for operators who
//! write policies. Each decides requests with the enforcer's own decision
//! path ([`PolicyEngine::decide_fresh`]).

use kernel_policy::request::RequestSpec;
use kernel_policy::suite::{self, SuiteError};
use kernel_policy::{Environment, PolicyDiagnostic, PolicyEngine, PolicyLoadError, floor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when every case passed, or no new permission was found.
const PASS: u8 = 0;
/// Exit status when a case failed, or a new permission was found.
const FOUND: u8 = 1;
/// Exit status when the input was invalid or the question undecided.
const ERROR: u8 = 2;

fn error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(ERROR)
}

/// Reports an input that could not be tested: as text on standard error,
/// or, with `json`, also as one JSON document on standard output. Exits 2.
fn test_error(
    json: bool,
    message: impl std::fmt::Display,
    problems: &[PolicyDiagnostic],
) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": false,
                "error": message.to_string(),
                "problems": kernel_policy::diagnostics_json(problems),
                "cases": [],
                "passed": 0,
                "failed": 0,
            })
        );
    } else {
        for diagnostic in problems {
            eprintln!("{diagnostic}");
        }
    }
    error(message)
}

/// `policy test FILE`: runs every case and prints one line per case, or,
/// with `json`, one JSON document with every case.
pub(crate) fn test(file: &Path, policies: &[PathBuf], json: bool) -> ExitCode {
    let suite = match suite::load(file) {
        Ok(suite) => suite,
        Err(SuiteError::Invalid(diagnostics)) => {
            return test_error(
                json,
                format!(
                    "{} problem(s) in the test file, no case was run",
                    diagnostics.len()
                ),
                &diagnostics,
            );
        }
        Err(e) => return test_error(json, e, &[]),
    };
    let policies = if policies.is_empty() {
        suite.policies.clone()
    } else {
        policies.to_vec()
    };
    if policies.is_empty() {
        return test_error(
            json,
            format!(
                "no policy to test: name the files in `{}` with `policies = [\"...\"]`, or pass `--policy FILE`",
                file.display()
            ),
            &[],
        );
    }
    let sources = match kernel_policy::read_sources(&policies) {
        Ok(sources) => sources,
        Err(e) => return test_error(json, e, &[]),
    };
    let assets = match floor::assets(&policies) {
        Ok(assets) => assets,
        Err(e) => return test_error(json, e, &[]),
    };
    let outcomes = match suite::run(&suite, &sources, &assets) {
        Ok(outcomes) => outcomes,
        Err(SuiteError::Invalid(diagnostics)) => {
            return test_error(
                json,
                format!(
                    "{} problem(s) in the test file, no case was run",
                    diagnostics.len()
                ),
                &diagnostics,
            );
        }
        Err(SuiteError::Policy(PolicyLoadError::Invalid(diagnostics))) => {
            return test_error(
                json,
                "the policies under test are invalid: run `kernel-enforcer policy check` on them",
                &diagnostics,
            );
        }
        Err(e) => return test_error(json, e, &[]),
    };
    let names: Vec<String> = policies.iter().map(|p| p.display().to_string()).collect();
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let code = ExitCode::from(if failed == 0 { PASS } else { FOUND });
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": failed == 0,
                "error": null,
                "problems": [],
                "file": suite.file,
                "policies": names,
                "workspace": suite.workspace,
                "cases": outcomes.iter().map(suite::Outcome::to_json).collect::<Vec<_>>(),
                "passed": outcomes.len() - failed,
                "failed": failed,
            })
        );
        return code;
    }
    println!(
        "testing {} against {} (with the kernel floor), workspace `{}`",
        suite.file,
        names.join(", "),
        suite.workspace
    );
    for outcome in &outcomes {
        println!("{}", suite::render_outcome(&suite.file, outcome));
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    code
}

/// The action of `policy explain`, given as a subcommand.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ExplainAction {
    /// Read a file.
    #[command(name = "file_read", alias = "file-read")]
    FileRead {
        /// The file (relative to `--cwd`).
        path: String,
    },
    /// Write a file.
    #[command(name = "file_write", alias = "file-write")]
    FileWrite {
        /// The file (relative to `--cwd`).
        path: String,
        /// The content to write.
        #[arg(long)]
        content: Option<String>,
        /// Bytes to write (default: the length of the content).
        #[arg(long)]
        size: Option<u64>,
        /// `create_new`, `overwrite` (default) or `append`.
        #[arg(long)]
        mode: Option<String>,
    },
    /// Delete a file.
    #[command(name = "file_delete", alias = "file-delete")]
    FileDelete {
        /// The file (relative to `--cwd`).
        path: String,
    },
    /// Run a program.
    Exec {
        /// An environment variable the program gets, as NAME=VALUE.
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// The program: a path, or a bare name found on PATH as
        /// `kernel-enforcer exec` and the client find it.
        program: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Open a network connection.
    #[command(name = "net_connect", alias = "net-connect")]
    NetConnect {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Make an HTTP request.
    Http {
        /// Method, such as GET.
        method: String,
        /// Absolute http(s) URL.
        url: String,
    },
    /// Call a tool.
    #[command(name = "tool_call", alias = "tool-call")]
    ToolCall {
        /// The tool's name.
        name: String,
        /// Its input as JSON (default `{}`).
        input: Option<String>,
    },
    /// An application-defined action.
    Custom {
        /// The kind.
        kind: String,
        /// The payload.
        payload: Option<String>,
    },
    /// An MCP request of the agent to its server (not `tools/call`).
    #[command(name = "mcp_request", alias = "mcp-request")]
    McpRequest {
        /// The JSON-RPC method, such as `resources/read`.
        method: String,
        /// Its parameters as a JSON object (default `{}`).
        params: Option<String>,
    },
    /// An MCP request of the server to the agent.
    #[command(name = "mcp_server_request", alias = "mcp-server-request")]
    McpServerRequest {
        /// The JSON-RPC method, such as `sampling/createMessage`.
        method: String,
        /// Its parameters as a JSON object (default `{}`).
        params: Option<String>,
    },
}

/// JSON given on the command line, read strictly.
fn json_argument(what: &str, text: Option<&String>) -> Result<Option<serde_json::Value>, String> {
    text.map(|text| {
        kernel_core::json::parse_strict(text).map_err(|e| {
            format!(
                "{what} `{text}` is not JSON ({e}): quote it for the shell, such as '{{\"q\": 1}}'"
            )
        })
    })
    .transpose()
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

impl ExplainAction {
    fn spec(&self) -> Result<RequestSpec, String> {
        let base = |action: &str| RequestSpec {
            action: action.to_owned(),
            ..RequestSpec::default()
        };
        Ok(match self {
            Self::FileRead { path } => RequestSpec {
                path: Some(path.clone()),
                ..base("file_read")
            },
            Self::FileWrite {
                path,
                content,
                size,
                mode,
            } => RequestSpec {
                path: Some(path.clone()),
                content: content.clone(),
                size: *size,
                mode: mode.clone(),
                ..base("file_write")
            },
            Self::FileDelete { path } => RequestSpec {
                path: Some(path.clone()),
                ..base("file_delete")
            },
            Self::Exec { env, program, args } => RequestSpec {
                program: Some(program.clone()),
                args: Some(args.clone()),
                env: (!env.is_empty()).then(|| env.iter().cloned().collect::<BTreeMap<_, _>>()),
                ..base("exec")
            },
            Self::NetConnect { host, port } => RequestSpec {
                host: Some(host.clone()),
                port: Some(*port),
                ..base("net_connect")
            },
            Self::Http { method, url } => RequestSpec {
                method: Some(method.clone()),
                url: Some(url.clone()),
                ..base("http")
            },
            Self::ToolCall { name, input } => RequestSpec {
                tool: Some(name.clone()),
                input: json_argument("tool input", input.as_ref())?,
                ..base("tool_call")
            },
            Self::Custom { kind, payload } => RequestSpec {
                kind: Some(kind.clone()),
                payload: payload.clone(),
                ..base("custom")
            },
            Self::McpRequest { method, params } => RequestSpec {
                method: Some(method.clone()),
                params: json_argument("params", params.as_ref())?,
                ..base("mcp_request")
            },
            Self::McpServerRequest { method, params } => RequestSpec {
                method: Some(method.clone()),
                params: json_argument("params", params.as_ref())?,
                ..base("mcp_server_request")
            },
        })
    }
}

/// `policy explain`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// Cedar policy file (repeat for several).
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// The agent's workspace, as the enforcer's `--workspace`.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Extra paths the floor protects, as the enforcer's `--protect`
    /// (the policy files and this binary always are).
    #[arg(long = "protect")]
    protect: Vec<PathBuf>,
    /// The directory the request is made from (default: the workspace).
    #[arg(long)]
    cwd: Option<String>,
    /// A request file (TOML, or JSON if it ends in `.json`) with the
    /// fields of a test case's request, instead of an action.
    #[arg(long)]
    request: Option<PathBuf>,
    /// Print one JSON document instead of text (see the README); the exit
    /// status is the same.
    #[arg(long)]
    json: bool,
    /// The action to explain.
    #[command(subcommand)]
    action: Option<ExplainAction>,
}

fn absolute(path: &Path) -> Result<String, String> {
    std::path::absolute(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("workspace `{}`: {e}", path.display()))
}

/// `policy explain`: how one request is decided, and why.
pub(crate) fn explain(args: &ExplainArgs) -> ExitCode {
    match (explain_request(args), args.json) {
        (Ok(explanation), false) => {
            print!("{}", explanation.render());
            ExitCode::SUCCESS
        }
        (Ok(explanation), true) => {
            println!("{}", explanation.to_json());
            ExitCode::SUCCESS
        }
        (Err(message), json) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": message}));
            }
            error(message)
        }
    }
}

fn explain_request(args: &ExplainArgs) -> Result<kernel_policy::explain::Explanation, String> {
    let mut spec = match (&args.request, &args.action) {
        (Some(_), Some(_)) => {
            return Err("give either an action or `--request FILE`, not both".into());
        }
        (Some(path), None) => RequestSpec::read(path).map_err(|e| e.to_string())?,
        (None, Some(action)) => action.spec()?,
        (None, None) => {
            return Err(
                "no request given: name an action (such as `file_read PATH`) or pass `--request FILE`"
                    .into(),
            );
        }
    };
    if args.cwd.is_some() {
        spec.cwd.clone_from(&args.cwd);
    }
    // A bare program name means what it means to `kernel-enforcer exec`
    // and the client here: the program this PATH finds.
    if spec.action == "exec"
        && let Some(program) = spec.program.as_mut()
        && !program.contains('/')
        && !program.is_empty()
    {
        *program = kernel_policy::request::search_path(program).ok_or_else(|| {
            format!("program `{program}` not found on PATH: give the path the client would run")
        })?;
    }
    let workspace = absolute(&args.workspace)?;
    let protected: Vec<PathBuf> = args.policies.iter().chain(&args.protect).cloned().collect();
    let env = Environment::new(
        &workspace,
        &floor::assets(&protected).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let engine = PolicyEngine::load(&args.policies, env).map_err(|e| match e {
        PolicyLoadError::Invalid(_) => format!("invalid policy:\n{e}"),
        other => other.to_string(),
    })?;
    let action = spec
        .canonical(engine.environment().workspace())
        .map_err(|e| e.to_string())?;
    Ok(engine.explain(&action))
}

/// `policy diff`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// The policy set in force now (repeat for several files).
    #[arg(long = "old", required = true)]
    old: Vec<PathBuf>,
    /// The policy set that would replace it (repeat for several files).
    #[arg(long = "new", required = true)]
    new: Vec<PathBuf>,
    /// The agent's workspace, as the enforcer's `--workspace`: where
    /// counterexamples are decided again.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Extra paths the floor protects, as the enforcer's `--protect`.
    #[arg(long = "protect")]
    protect: Vec<PathBuf>,
}

/// `policy diff`: exits 0 when the new set allows nothing the old one did
/// not, 1 when it does (with counterexamples), 2 when that could not be
/// decided, including when no solver is installed.
pub(crate) fn diff(args: &DiffArgs) -> ExitCode {
    #[cfg(feature = "symbolic")]
    {
        use kernel_policy::diff::{self, DiffOptions, DiffOutcome};
        let run = || -> Result<diff::DiffReport, String> {
            let old = kernel_policy::read_sources(&args.old)
                .map_err(|e| format!("old policy set: {e}"))?;
            let new = kernel_policy::read_sources(&args.new)
                .map_err(|e| format!("new policy set: {e}"))?;
            let protected: Vec<PathBuf> = args
                .old
                .iter()
                .chain(&args.new)
                .chain(&args.protect)
                .cloned()
                .collect();
            let options = DiffOptions {
                workspace: absolute(&args.workspace)?,
                assets: floor::assets(&protected).map_err(|e| e.to_string())?,
            };
            diff::diff(&old, &new, &options).map_err(|e| e.to_string())
        };
        match run() {
            Ok(report) => {
                let show = |paths: &[PathBuf]| {
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!("old: {}", show(&args.old));
                println!("new: {}", show(&args.new));
                print!("{}", report.render());
                ExitCode::from(match report.outcome() {
                    DiffOutcome::NoNewPermissions => PASS,
                    DiffOutcome::NewPermissions => FOUND,
                    DiffOutcome::Undecided => ERROR,
                })
            }
            Err(message) => error(message),
        }
    }
    #[cfg(not(feature = "symbolic"))]
    {
        let _ = args;
        error(
            "this kernel-enforcer was built without the `symbolic` feature, so it cannot compare policy sets: rebuild it with default features; no comparison was made",
        )
    }
}

/// `policy suggest`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SuggestArgs {
    /// Evidence logs; each must pass `audit verify`, or nothing is
    /// suggested. A log kept in segments is read with the closed segments
    /// beside it, as `audit verify LOG` reads it.
    #[arg(required = true)]
    evidence: Vec<PathBuf>,
    /// The policy the suggestion builds on (repeat for several files): its
    /// forbids are copied on top of the suggestion, an action one of them
    /// forbids gets no permit, and the analysis reports what the
    /// suggestion allows beyond it.
    #[arg(long = "base")]
    base: Vec<PathBuf>,
    /// Write the suggested policy here instead of to standard output (the
    /// report then goes to standard output rather than standard error).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a policy test file: each distinct recorded action with
    /// the answer the suggestion must give it (needs `--out`, which the
    /// test file names).
    #[arg(long, requires = "out")]
    tests_out: Option<PathBuf>,
    /// The enforcer's public key (`ed25519:...` or a file holding it):
    /// every session of the evidence must use it, as for `audit verify`.
    #[arg(long)]
    kernel_key: Option<String>,
    /// The workspace the suggestion is for. Default: the one the
    /// evidence's sessions recorded (they must agree).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Extra paths the floor protects, as the enforcer's `--protect` (the
    /// base, the output files, the evidence and this binary always are).
    #[arg(long = "protect")]
    protect: Vec<PathBuf>,
    /// Fail (exit 1) when a suggested permit allows a request of a class
    /// that no record exercised, with a counterexample; exit 2 when that
    /// cannot be decided (no solver, or the analysis is open).
    #[arg(long)]
    max_widening: bool,
    /// Analyse this policy (a suggestion, edited perhaps) against the
    /// evidence instead of writing a new one.
    #[arg(long, conflicts_with_all = ["out", "tests_out"])]
    review: Option<PathBuf>,
    /// Skip the symbolic analysis.
    #[arg(long, conflicts_with = "max_widening")]
    no_analysis: bool,
}

/// `policy suggest`: a policy from verified evidence, what the analysis
/// finds it allows beyond the base, and (with `--max-widening`) whether
/// it stays within what the evidence exercised.
pub(crate) fn suggest(args: &SuggestArgs) -> ExitCode {
    match suggest_run(args) {
        Ok(code) => code,
        Err(message) => error(message),
    }
}

fn suggest_run(args: &SuggestArgs) -> Result<ExitCode, String> {
    use kernel_policy::suggest::{self, SuggestOptions};
    let kernel_key = args
        .kernel_key
        .as_deref()
        .map(crate::cli::audit::read_public_key)
        .transpose()?;
    let options = kernel_core::AuditOptions {
        kernel_key: kernel_key.as_ref(),
        ..kernel_core::AuditOptions::default()
    };
    let mut observations = Vec::new();
    let mut workspaces = std::collections::BTreeSet::new();
    let mut records = 0;
    for log in &args.evidence {
        // Each segment's decisions are read from the bytes that verified;
        // used only once the whole log verified.
        let mut seen = Vec::new();
        let files = crate::cli::audit::segment_files(std::slice::from_ref(log), false)?;
        let verified = crate::cli::audit::verify_files(&files, &options, |_, bytes| {
            seen.push(suggest::observe(bytes));
        })
        .map_err(|e| {
            format!(
                "`{}` is not sound evidence ({e}); nothing is suggested from evidence that does not verify",
                log.display()
            )
        })?;
        if !verified.report.is_complete() {
            eprintln!(
                "kernel-enforcer: `{}` begins at record {}: the suggestion uses the records \
                 verified from there on; the log's earlier segments were not given",
                log.display(),
                verified.report.first_record
            );
        }
        records += verified
            .report
            .records
            .saturating_sub(verified.report.first_record);
        for evidence in seen {
            workspaces.extend(evidence.workspaces);
            observations.extend(evidence.observations);
        }
    }
    let workspace = match (&args.workspace, workspaces.len()) {
        (Some(dir), _) => absolute(dir)?,
        (None, 1) => workspaces.into_iter().next().unwrap_or_default(),
        (None, 0) => return Err("the evidence holds no session: nothing to suggest from".into()),
        (None, _) => {
            return Err(format!(
                "the evidence's sessions ran in different workspaces ({}): choose one with `--workspace`",
                workspaces
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let base = if args.base.is_empty() {
        Vec::new()
    } else {
        kernel_policy::read_sources(&args.base).map_err(|e| format!("base policy: {e}"))?
    };
    let protected: Vec<PathBuf> = args
        .base
        .iter()
        .chain(&args.out)
        .chain(&args.tests_out)
        .chain(&args.review)
        .chain(&args.protect)
        .cloned()
        .chain(args.evidence.iter().flat_map(|e| {
            // The files the enforcer and `audit` keep beside the evidence
            // by default (the control path as `run` and `listen` name it).
            let mut control = e.as_os_str().to_owned();
            control.push(".control");
            let control = PathBuf::from(control);
            [
                e.clone(),
                crate::session::evidence_index::path_for(e),
                crate::session::evidence_segments::directory_for(e),
                crate::cli::audit::default_cosignatures(e),
                crate::session::control::halt_record_path(&control),
                control,
            ]
        }))
        .collect();
    let assets = floor::assets(&protected).map_err(|e| e.to_string())?;
    let suggestion = suggest::suggest(
        &observations,
        &SuggestOptions {
            workspace: workspace.clone(),
            assets: assets.clone(),
            base: base.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    let names = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let header = vec![
        format!(
            "Suggested by `kernel-enforcer policy suggest` from the verified evidence {} ({records} records),",
            names(&args.evidence)
        ),
        format!("for the workspace `{workspace}`."),
        format!(
            "{} recorded actions that proceeded ({} of them under shadow mode) are covered by {} permits.",
            suggestion.covered,
            suggestion.covered_shadowed,
            suggestion.permits.len()
        ),
        if args.base.is_empty() {
            "No base policy: only the kernel floor is on top of these permits.".to_owned()
        } else {
            format!(
                "The forbids of the base {} are kept on top.",
                names(&args.base)
            )
        },
        "Review it, and what `policy suggest` printed of it, before enforcing it (docs/POLICY.md)."
            .to_owned(),
    ];
    let (text, analysed, label) = match &args.review {
        Some(file) => {
            let text = kernel_policy::read_sources(std::slice::from_ref(file))
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .map(|(_, t)| t)
                .unwrap_or_default();
            (text.clone(), text, file.display().to_string())
        }
        None => (
            suggestion.render(&header, false),
            suggestion.render(&header, true),
            args.out
                .as_ref()
                .map_or_else(|| "the suggestion".to_owned(), |p| p.display().to_string()),
        ),
    };
    // The report goes where the policy does not.
    let mut report = String::new();
    let mut say = |line: String| {
        report.push_str(&line);
        report.push('\n');
    };
    say(format!(
        "evidence: {} verified ({records} records, {} decisions), workspace `{workspace}`",
        names(&args.evidence),
        observations.len()
    ));
    for line in suggestion.summary() {
        say(line);
    }
    let code = analyse(
        args,
        &suggestion,
        &base,
        &text,
        &analysed,
        &label,
        &workspace,
        &assets,
        &mut say,
    );
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| format!("`{}`: {e}", path.display()))?
        }
        None if args.review.is_none() => print!("{text}"),
        None => {}
    }
    if let (Some(tests), Some(out)) = (&args.tests_out, &args.out) {
        let policy_name = match (tests.parent(), out.parent()) {
            (Some(a), Some(b)) if absolute(a)? == absolute(b)? => out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => absolute(out)?,
        };
        let protect: Vec<String> = args
            .evidence
            .iter()
            .chain(&args.base)
            .chain(&args.protect)
            .map(|p| absolute(p))
            .collect::<Result<_, _>>()?;
        let tests_header = [
            format!(
                "Made by `kernel-enforcer policy suggest` from {}: every distinct recorded action,",
                names(&args.evidence)
            ),
            "with the answer the suggested policy must give it. Run `kernel-enforcer policy test` on it."
                .to_owned(),
        ];
        let files = suggest::tests_files(
            &suggestion.tests,
            &policy_name,
            &workspace,
            &protect,
            &tests_header,
        );
        // More cases than one test file may hold go to `NAME-2.toml`,
        // `NAME-3.toml`, ... beside it; parts a longer earlier run left
        // are removed, so that the files there are this suggestion's.
        let part = |n: usize| -> PathBuf {
            if n == 1 {
                return tests.clone();
            }
            let name = tests
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = name.strip_suffix(".toml").unwrap_or(&name);
            tests.with_file_name(format!("{stem}-{n}.toml"))
        };
        let mut written = Vec::new();
        for (index, text) in files.iter().enumerate() {
            let path = part(index + 1);
            std::fs::write(&path, text).map_err(|e| format!("`{}`: {e}", path.display()))?;
            written.push(format!("`{}`", path.display()));
        }
        let mut stale = files.len() + 1;
        while part(stale).is_file() {
            let path = part(stale);
            std::fs::remove_file(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
            stale += 1;
        }
        say(format!(
            "tests: {} cases written to {}",
            suggestion.tests.len(),
            written.join(", ")
        ));
    }
    if args.out.is_some() || args.review.is_some() {
        print!("{report}");
    } else {
        eprint!("{report}");
    }
    Ok(code)
}

/// The symbolic analysis of `policy suggest`: what the policy allows
/// beyond the base, and whether it stays within the request classes the
/// evidence exercised. Returns the exit status.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one command's state, used once"
)]
fn analyse(
    args: &SuggestArgs,
    suggestion: &kernel_policy::suggest::Suggestion,
    base: &[(String, String)],
    text: &str,
    analysed: &str,
    label: &str,
    workspace: &str,
    assets: &[String],
    say: &mut dyn FnMut(String),
) -> ExitCode {
    if args.no_analysis {
        say("analysis: skipped (--no-analysis)".into());
        return ExitCode::from(PASS);
    }
    #[cfg(feature = "symbolic")]
    {
        use kernel_policy::diff::{self, DiffOptions, DiffOutcome};
        let options = DiffOptions {
            workspace: workspace.to_owned(),
            assets: assets.to_vec(),
        };
        let old: Vec<(String, String)> = if base.is_empty() {
            vec![("(no base: the floor only)".to_owned(), String::new())]
        } else {
            base.to_vec()
        };
        let new = [(label.to_owned(), text.to_owned())];
        say(String::new());
        say(format!(
            "what {label} allows beyond {}, as the analyser finds it (`policy diff`):",
            if base.is_empty() {
                "the floor alone".to_owned()
            } else {
                args.base
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        // The widening check does not depend on the review's answer: it
        // runs beside it (each has a solver of its own), and its result
        // is reported after it.
        let (reviewed, widened) = std::thread::scope(|scope| {
            let widening = args.max_widening.then(|| {
                scope.spawn(|| {
                    kernel_policy::suggest::widening(
                        analysed,
                        &suggestion.envelope,
                        &suggestion.base_forbids,
                        &options,
                    )
                })
            });
            let reviewed = diff::diff(&old, &new, &options);
            (reviewed, widening.map(std::thread::ScopedJoinHandle::join))
        });
        match reviewed {
            Ok(report) => {
                for line in report.render().lines() {
                    say(format!("  {line}"));
                }
                if report.outcome() == DiffOutcome::Undecided {
                    say("  (some of it could not be decided: see OPEN above)".into());
                }
            }
            Err(e) => {
                say(format!("  not analysed: {e}"));
                if args.max_widening {
                    return ExitCode::from(ERROR);
                }
                return ExitCode::from(PASS);
            }
        }
        if !args.max_widening {
            return ExitCode::from(PASS);
        }
        say(String::new());
        say(format!(
            "widening: does {label} allow a request of a class no record exercised ({} classes exercised; docs/POLICY.md defines them)?",
            suggestion.classes
        ));
        // INVARIANT: with `--max-widening` the check was started above.
        let Some(widened) = widened else {
            return ExitCode::from(ERROR);
        };
        let widened = widened.unwrap_or_else(|_| {
            Err(diff::DiffError::Analysis {
                action: "all".into(),
                why: "the widening check panicked".into(),
            })
        });
        match widened {
            Ok(widening) => {
                for (ids, finding) in &widening.wider {
                    say(format!(
                        "  WIDER THAN THE EVIDENCE: {} allows {}",
                        ids.iter()
                            .map(|i| format!("`{i}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        finding.description
                    ));
                    if let Some(fields) = finding.request.toml_fields() {
                        for (index, field) in fields.iter().enumerate() {
                            let label = if index == 0 { "as toml:" } else { "" };
                            say(format!("    {label:<10} {field}"));
                        }
                    }
                }
                for open in &widening.open {
                    say(format!("  OPEN: {open}"));
                }
                if !widening.wider.is_empty() {
                    say("result: wider than the evidence".into());
                    ExitCode::from(FOUND)
                } else if !widening.open.is_empty() {
                    say("result: undecided".into());
                    ExitCode::from(ERROR)
                } else {
                    say("result: every permit stays within the request classes the evidence exercised".into());
                    ExitCode::from(PASS)
                }
            }
            Err(e) => {
                say(format!("  not analysed: {e}"));
                ExitCode::from(ERROR)
            }
        }
    }
    #[cfg(not(feature = "symbolic"))]
    {
        let _ = (suggestion, base, text, analysed, label, workspace, assets);
        say("analysis: not available: this kernel-enforcer was built without the `symbolic` feature".into());
        ExitCode::from(if args.max_widening { ERROR } else { PASS })
    }
}
