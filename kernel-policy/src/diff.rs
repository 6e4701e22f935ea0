//! `policy diff`: does a new policy set allow anything the old one did not?
//!
//! Answered with Cedar's own symbolic analysis (`cedar-policy-symcc`, which
//! compiles policies to SMT and asks the `cvc5` solver), once per kind of
//! action, over every request the kernel's Cedar schema admits. Both sets
//! include the kernel floor. The kernel's decision differs from Cedar's in
//! two ways the analysis accounts for:
//!
//! - `@ask`: a request is *allowed* only if no `@ask` permit matches.
//!   Besides Cedar's allow (which here means "allowed or asked"), the sets
//!   are compared with their `@ask` permits turned into forbids, which is
//!   exactly the kernel's "allowed without an approval".
//! - Evaluation errors deny. Cedar's analysis, like Cedar, skips a policy
//!   that fails. So each old-set policy is checked to never fail; where
//!   one can fail, the request it fails on is tried against the new set,
//!   and the answer for that kind of action is left open otherwise.
//!
//! Every counterexample is decoded into the kernel's action terms and
//! decided again by the real decision path
//! ([`PolicyEngine::decide_fresh`]) under both sets; only one the kernel
//! reproduces is reported as a new permission. Cedar's schema does not
//! know everything the kernel guarantees about a request (that a file's
//! `name` is the last component of its `path`, for instance), so the
//! solver may find a request the kernel would never build: that is
//! reported as not reproduced, never as "no difference".
//!
//! Not covered: `@limit` (a rate-limited permit counts as within its
//! limit; changed limits are listed as notes), anything decided before
//! Cedar (canonicalisation, the client's refusals), and a tool call's
//! arguments or an MCP request's parameters (`context.args`, which the
//! schema declares without attributes: when either set reads it, that
//! kind of action is left open).

use super::request::{RequestSpec, action_kind};
use super::{
    Decided, Environment, FLOOR_ID_PREFIX, PolicyEngine, PolicyLoadError, PolicyMeta, build_set,
    schema,
};
use cedar_policy::{
    ActionConstraint, Effect, Entity, EntityUid, EvalResult, Policy, PolicyId, PolicySet,
    RequestEnv, Schema,
};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet, Env};
use kernel_core::{ActionKind, Decision, Evaluation, WriteMode};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// Arguments the solver is run with: `--strings-exp` is what lets Debian's
/// cvc5 1.0 decide Cedar's `like`; the per-query limit keeps a hard query
/// from hanging the command.
pub const CVC5_ARGS: [&str; 2] = ["--strings-exp", "--tlimit-per=60000"];

/// Stack of the thread the analysis runs on (reserved, not committed).
const ANALYSIS_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Most counterexample decodings tried per finding.
const MAX_CANDIDATES: usize = 16;

/// Ids of the well-formedness policies added for the analysis only; the
/// floor's reserved prefix keeps them apart from any user policy.
const ANALYSIS_ID_PREFIX: &str = "kernel-floor-analysis";

/// Why a diff could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// No usable `cvc5` executable.
    #[error(
        "policy diff needs the cvc5 SMT solver, and `{command}` could not be run ({why}): install it (Debian and Ubuntu: `apt-get install cvc5`) or set CVC5 to its path; no comparison was made"
    )]
    NoSolver {
        /// The command tried.
        command: String,
        /// What went wrong.
        why: String,
    },
    /// One of the policy sets does not load.
    #[error("{which} policy set: {source}")]
    Policy {
        /// `old` or `new`.
        which: &'static str,
        /// Why.
        source: PolicyLoadError,
    },
    /// The workspace or a protected path cannot be used.
    #[error("workspace or protected path: {0}")]
    Workspace(#[source] crate::EnvironmentError),
    /// The workspace has characters the analysis cannot express.
    #[error(
        "workspace `{0}` has characters the analysis cannot express (`\"`, `\\`, `*` or control characters): choose another with `--workspace`"
    )]
    InexpressibleWorkspace(String),
    /// A policy text to compare does not parse.
    #[error(transparent)]
    Unparsable(#[from] crate::suggest::SplitError),
    /// The symbolic analysis failed.
    #[error("the symbolic analysis failed for `{action}`: {why}; no comparison was made")]
    Analysis {
        /// The action kind.
        action: String,
        /// What failed.
        why: String,
    },
}

/// What kind of new permission a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Denied by the old set, allowed or asked by the new one.
    Admits,
    /// Not allowed outright by the old set (denied or asked), allowed
    /// without an approval by the new one.
    SkipsApproval,
    /// The old set fails to evaluate on it (so denies), the new one
    /// allows or asks.
    OldFails,
}

/// A request on which the new set is more permissive than the old one.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Which question found it.
    pub change: Change,
    /// The request, in the kernel's action terms.
    pub request: RequestSpec,
    /// The canonical request on one line, or why it has no canonical form.
    pub description: String,
    /// What the old set decides on it.
    pub old: Option<Decided>,
    /// What the new set decides on it.
    pub new: Option<Decided>,
    /// Whether the real decision path agrees that the new set is more
    /// permissive on it.
    pub confirmed: bool,
}

impl Finding {
    /// Whether the new set failed to evaluate on the request.
    pub fn new_fails(&self) -> bool {
        matches!(
            &self.new,
            Some(Decided {
                evaluation: Evaluation::Completed { errors, .. },
                ..
            }) if !errors.is_empty()
        ) || matches!(
            &self.new,
            Some(Decided {
                evaluation: Evaluation::Failed { .. },
                ..
            })
        )
    }
}

/// The comparison for one kind of action.
#[derive(Debug, Clone)]
pub struct ActionReport {
    /// The kind of action.
    pub kind: ActionKind,
    /// Requests the new set is more permissive on.
    pub findings: Vec<Finding>,
    /// Why the answer is incomplete, when it is.
    pub open: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// The solver's version line.
    pub solver: String,
    /// The workspace requests were decided in.
    pub workspace: String,
    /// One report per kind of action, in a fixed order.
    pub actions: Vec<ActionReport>,
    /// Things the analysis does not cover but that differ, such as limits.
    pub notes: Vec<String>,
}

/// What the comparison found, overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOutcome {
    /// Proven: the new set allows nothing the old one did not.
    NoNewPermissions,
    /// At least one request the new set is more permissive on, confirmed
    /// by the real decision path.
    NewPermissions,
    /// Neither could be established.
    Undecided,
}

impl DiffReport {
    /// The overall result.
    pub fn outcome(&self) -> DiffOutcome {
        let findings = self.actions.iter().flat_map(|a| &a.findings);
        if findings.clone().any(|f| f.confirmed) {
            DiffOutcome::NewPermissions
        } else if findings.clone().next().is_some()
            || self.actions.iter().any(|a| !a.open.is_empty())
        {
            DiffOutcome::Undecided
        } else {
            DiffOutcome::NoNewPermissions
        }
    }

    /// The report as text for an operator.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "analysis: cedar-policy-symcc with {}, over the kernel's Cedar schema, both sets with the kernel floor",
            self.solver
        );
        let _ = writeln!(
            out,
            "requests decoded and decided again in workspace `{}`",
            self.workspace
        );
        let _ = writeln!(out);
        for action in &self.actions {
            let name = action.kind.as_str();
            if action.findings.is_empty() && action.open.is_empty() {
                let _ = writeln!(out, "{name:<12} no new permissions");
            }
            for finding in &action.findings {
                let headline = match (finding.confirmed, finding.change) {
                    (true, Change::Admits) => {
                        "NEW PERMISSION: denied by the old set, not by the new one"
                    }
                    (true, Change::SkipsApproval) => {
                        "NEW PERMISSION: allowed without an approval by the new set, not by the old one"
                    }
                    (true, Change::OldFails) => {
                        "NEW PERMISSION: the old set fails to evaluate (so denies), the new one does not deny"
                    }
                    (false, _) if finding.new_fails() => {
                        "POSSIBLE NEW PERMISSION, not reproduced: the new set fails to evaluate on the request found, and the kernel denies it; others may exist"
                    }
                    (false, _) => {
                        "POSSIBLE NEW PERMISSION, not reproduced: the schema admits a request the kernel does not build this way"
                    }
                };
                let _ = writeln!(out, "{name:<12} {headline}");
                let _ = writeln!(out, "  request:   {}", shorten(&finding.description));
                for (label, decided) in [("old:", &finding.old), ("new:", &finding.new)] {
                    if let Some(decided) = decided {
                        let _ = writeln!(
                            out,
                            "  {label:<10} {} ({})",
                            decided.verdict.decision.as_str(),
                            super::suite::why(&decided.verdict)
                        );
                    }
                }
                for (index, field) in finding
                    .request
                    .toml_fields()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let label = if index == 0 { "as toml:" } else { "" };
                    let _ = writeln!(out, "  {label:<10} {}", shorten(&field));
                }
            }
            for open in &action.open {
                let _ = writeln!(out, "{name:<12} OPEN: {open}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(out);
        let _ = match self.outcome() {
            DiffOutcome::NoNewPermissions => writeln!(
                out,
                "result: no new permissions (for every request the schema admits)"
            ),
            DiffOutcome::NewPermissions => writeln!(out, "result: new permissions found"),
            DiffOutcome::Undecided => writeln!(
                out,
                "result: undecided: no new permission was reproduced, but none could be ruled out"
            ),
        };
        out
    }
}

/// Longest line of a counterexample shown in full.
const MAX_SHOWN: usize = 300;

/// `text`, cut to [`MAX_SHOWN`] bytes with a mark when longer: the solver
/// may pick thousands of arguments.
fn shorten(text: &str) -> String {
    if text.len() <= MAX_SHOWN {
        return text.to_owned();
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} ... ({} more bytes)",
        text.get(..end).unwrap_or_default(),
        text.len() - end
    )
}

/// Where requests are decided when counterexamples are replayed, and what
/// the floor protects there.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The workspace (absolute).
    pub workspace: String,
    /// Paths the floor protects.
    pub assets: Vec<String>,
}

/// A Cedar string literal for `text`, when it needs no escaping and means
/// the same inside a `like` pattern.
fn literal(text: &str) -> Option<String> {
    if text
        .chars()
        .any(|c| c == '"' || c == '\\' || c == '*' || c.is_control())
    {
        return None;
    }
    Some(format!("\"{text}\""))
}

/// Most literals used to tie attributes together; past it the analysis
/// stays sound but may report more requests as not reproduced.
const MAX_LITERALS: usize = 500;

/// Cedar for "`expr` is the workspace or lies beneath it", as the kernel
/// decides membership.
fn within(expr: &str, workspace: &str) -> Result<String, DiffError> {
    if workspace == "/" {
        return Ok("true".to_owned());
    }
    literal(workspace).ok_or_else(|| DiffError::InexpressibleWorkspace(workspace.to_owned()))?;
    Ok(format!(
        "({expr} == \"{workspace}\" || {expr} like \"{workspace}/*\")"
    ))
}

/// The string and entity literals the policies use: the values whose
/// relations between attributes matter to them.
#[derive(Debug, Default)]
struct Literals {
    strings: BTreeSet<String>,
    /// `(entity type, id)`.
    uids: BTreeSet<(String, String)>,
    /// `L` of every `like "*L"` pattern.
    suffixes: BTreeSet<String>,
}

impl Literals {
    /// Collects from a policy's JSON form: `{"Value": "text"}` and any
    /// `{"type": T, "id": I}`.
    fn collect(&mut self, json: &serde_json::Value) {
        use serde_json::Value;
        match json {
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("Value") {
                    self.strings.insert(text.clone());
                }
                if let (Some(Value::String(kind)), Some(Value::String(id))) =
                    (map.get("type"), map.get("id"))
                {
                    self.uids.insert((kind.clone(), id.clone()));
                }
                // A pattern is a list of "Wildcard" and {"Literal": text}
                // (possibly one per character): keep `*` then text only.
                if let Some(Value::Array(pattern)) = map.get("pattern")
                    && let Some((Value::String(first), rest)) = pattern.split_first()
                    && first == "Wildcard"
                    && !rest.is_empty()
                {
                    let suffix: Option<String> = rest
                        .iter()
                        .map(|e| e.get("Literal").and_then(Value::as_str))
                        .collect();
                    if let Some(suffix) = suffix {
                        self.suffixes.insert(suffix);
                    }
                }
                map.values().for_each(|v| self.collect(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.collect(v)),
            _ => {}
        }
    }

    fn of(&self, kind: &str) -> impl Iterator<Item = &str> {
        self.uids
            .iter()
            .filter(move |(k, _)| k == kind)
            .map(|(_, id)| id.as_str())
    }
}

/// A literal usable as a path component: `name == L` holds exactly when
/// the canonical path ends in `/L`.
fn component(text: &str) -> bool {
    literal(text).is_some() && !text.is_empty() && !text.contains('/')
}

/// A literal usable as a host in a URL pattern.
fn host_like(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// `parts` joined by `&&` as a balanced tree: a long flat chain nests as
/// deep as it is long, and the symbolic compiler recurses on that depth.
fn balanced(parts: &[String]) -> String {
    match parts {
        [] => "true".to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            format!("({} && {})", balanced(left), balanced(right))
        }
    }
}

/// What the kernel guarantees about every request it builds that Cedar's
/// schema does not say, as one Cedar condition per kind of action: the
/// membership of `Workspace::"root"` as the kernel computes it, port
/// ranges, URL schemes, and, for every literal the policies use, that a
/// `name` or `extension` agrees with the `path`, an entity's uid with its
/// `path` or `name`, and a host with the URL. Each condition is true of
/// every request the kernel builds, so requiring it hides no difference
/// between two sets; it only keeps the solver to requests the kernel can
/// build.
#[derive(Debug, Clone)]
pub struct WellFormed {
    conditions: BTreeMap<ActionKind, String>,
}

impl WellFormed {
    fn new(workspace: &str, assets: &[String], literals: &Literals) -> Result<Self, DiffError> {
        let path_within = within("resource.path", workspace)?;
        // `context.kernel_asset` as the kernel computes it, for the
        // protected paths a literal can name.
        let assets: Vec<&str> = assets
            .iter()
            .map(String::as_str)
            .filter(|a| literal(a).is_some())
            .take(MAX_LITERALS)
            .collect();
        let any = |parts: Vec<String>| {
            if parts.is_empty() {
                "false".to_owned()
            } else {
                format!("({})", parts.join(" || "))
            }
        };
        let mut touches = Vec::new();
        let mut holds = Vec::new();
        let mut mentions = Vec::new();
        for asset in &assets {
            touches.push(within("resource.path", asset)?);
            let mut ancestor = *asset;
            while let Some((parent, _)) = ancestor.rsplit_once('/') {
                let parent = if parent.is_empty() { "/" } else { parent };
                holds.push(format!("resource.path == \"{parent}\""));
                if parent == "/" {
                    break;
                }
                ancestor = parent;
            }
            mentions.push(format!("{{}} like \"*{asset}*\""));
        }
        let touches = any(touches);
        let reaches = format!("({touches} || {})", any(holds));
        let mentions = |expr: &str| any(mentions.iter().map(|m| m.replace("{}", expr)).collect());
        let suffixes: Vec<&str> = literals
            .suffixes
            .iter()
            .map(String::as_str)
            .filter(|l| component(l))
            .take(MAX_LITERALS)
            .collect();
        let suffix_is = suffixes
            .iter()
            .map(|l| format!("((resource.name like \"*{l}\") == (resource.path like \"*{l}\"))"));
        let cwd_within = within("context.cwd", workspace)?;
        let max_args = kernel_core::limits::MAX_ARGS;
        let names: Vec<&str> = literals
            .strings
            .iter()
            .map(String::as_str)
            .filter(|l| component(l))
            .take(MAX_LITERALS)
            .collect();
        let uid_is = |kind: &'static str, attribute: &'static str| {
            literals
                .of(kind)
                .filter(|id| literal(id).is_some())
                .take(MAX_LITERALS)
                .map(move |id| {
                    format!(
                        "((resource == {kind}::\"{id}\") == (resource.{attribute} == \"{id}\"))"
                    )
                })
        };
        let name_is = names
            .iter()
            .map(|l| format!("((resource.name == \"{l}\") == (resource.path like \"*/{l}\"))"));
        let extension_is = names.iter().filter(|l| !l.contains('.')).map(|l| {
            format!("((resource.extension == \"{l}\") == (resource.path like \"*.{l}\"))")
        });
        let mut file: Vec<String> = vec![
            "resource.path like \"/*\"".into(),
            format!("(resource in Workspace::\"root\") == {path_within}"),
        ];
        file.extend(name_is.clone());
        file.extend(extension_is);
        file.extend(suffix_is.clone());
        file.extend(uid_is("File", "path"));
        let mut read = file.clone();
        read.push(format!("context.kernel_asset == {touches}"));
        file.push(format!("context.kernel_asset == {reaches}"));
        let mut write = file.clone();
        write.push("context.size >= 0".into());
        // Every mode the kernel builds: a client's writes and the effects
        // of a governed program's own system calls.
        let modes: Vec<String> = [
            WriteMode::CreateNew,
            WriteMode::Overwrite,
            WriteMode::Append,
            WriteMode::Descriptor,
            WriteMode::Symlink,
            WriteMode::HardLink,
            WriteMode::Metadata,
            WriteMode::Connect,
        ]
        .iter()
        .map(|mode| format!("\"{}\"", mode.as_str()))
        .collect();
        write.push(format!("[{}].contains(context.mode)", modes.join(", ")));
        let mut exec: Vec<String> = vec![
            "resource.path like \"/*\"".into(),
            format!("(resource in Workspace::\"root\") == {path_within}"),
            "context.cwd like \"/*\"".into(),
            format!("context.cwd_in_workspace == {cwd_within}"),
            format!("context.argc >= 0 && context.argc <= {max_args}"),
            "(context.argc == 0) == context.args.isEmpty()".into(),
            "!context.env_names.contains(\"\")".into(),
        ];
        exec.extend(name_is);
        exec.extend(suffix_is);
        exec.extend(uid_is("Program", "path"));
        exec.push(format!("(context.kernel_asset || !{touches})"));
        let port = "context.port >= 1 && context.port <= 65535".to_owned();
        let named = "resource.name != \"\"".to_owned();
        let mut net = vec![port.clone(), named.clone(), "!context.kernel_asset".into()];
        net.extend(uid_is("Host", "name"));
        let mut http = vec![
            port,
            named.clone(),
            format!("context.kernel_asset == {}", mentions("context.url")),
            "context.method != \"\"".into(),
            "context.path like \"/*\"".into(),
            "((context.scheme == \"http\" && context.url like \"http://*\") || (context.scheme == \"https\" && context.url like \"https://*\"))".into(),
        ];
        http.extend(uid_is("Host", "name"));
        let hosts: BTreeSet<&str> = literals
            .strings
            .iter()
            .map(String::as_str)
            .chain(literals.of("Host"))
            .filter(|l| host_like(l))
            .take(MAX_LITERALS)
            .collect();
        http.extend(hosts.into_iter().map(|h| {
            format!(
                "((resource.name == \"{h}\") == (context.url like \"http://{h}/*\" || context.url like \"https://{h}/*\" || context.url like \"http://{h}:*\" || context.url like \"https://{h}:*\"))"
            )
        }));
        let mut tool = vec![
            named.clone(),
            format!("context.kernel_asset == {}", mentions("context.input")),
        ];
        tool.extend(uid_is("Tool", "name"));
        let mut custom = vec![
            named.clone(),
            format!("context.kernel_asset == {}", mentions("context.payload")),
        ];
        custom.extend(uid_is("CustomKind", "name"));
        let mut mcp = vec![
            named,
            format!("context.kernel_asset == {}", mentions("context.params")),
        ];
        mcp.extend(uid_is("McpMethod", "name"));
        let join = |parts: Vec<String>| balanced(&parts);
        Ok(Self {
            conditions: BTreeMap::from([
                (ActionKind::FileRead, join(read)),
                (ActionKind::FileDelete, join(file)),
                (ActionKind::FileWrite, join(write)),
                (ActionKind::Exec, join(exec)),
                (ActionKind::NetConnect, join(net)),
                (ActionKind::Http, join(http)),
                (ActionKind::ToolCall, join(tool)),
                (ActionKind::Custom, join(custom)),
                (ActionKind::McpRequest, join(mcp.clone())),
                (ActionKind::McpServerRequest, join(mcp)),
            ]),
        })
    }

    /// The condition for `kind`.
    pub fn condition(&self, kind: ActionKind) -> &str {
        self.conditions.get(&kind).map_or("true", String::as_str)
    }

    /// One forbid per kind of action, matching exactly the requests the
    /// kernel never builds.
    pub fn forbids(&self) -> String {
        let mut text = String::new();
        for kind in ActionKind::ALL {
            let _ = writeln!(
                text,
                "@id(\"{ANALYSIS_ID_PREFIX}-{}\")\nforbid (principal, action == Action::\"{}\", resource)\nunless {{\n  {}\n}};",
                kind.as_str(),
                kind.as_str(),
                self.condition(kind)
            );
        }
        text
    }

    /// `policy` with the condition for `kind` put before its own, so that
    /// it is only evaluated on requests the kernel can build (Cedar
    /// evaluates conditions in order and stops at the first false one).
    fn guard(&self, policy: &Policy, kind: ActionKind) -> Result<Policy, String> {
        let carrier = Policy::parse(
            None,
            format!(
                "permit (principal, action, resource) when {{ {} }};",
                self.condition(kind)
            ),
        )
        .map_err(|e| e.to_string())?;
        let carrier = carrier.to_json().map_err(|e| e.to_string())?;
        let condition = carrier
            .get("conditions")
            .and_then(|c| c.get(0))
            .cloned()
            .ok_or("the well-formedness condition has no body")?;
        let mut json = policy.to_json().map_err(|e| e.to_string())?;
        match json.get_mut("conditions") {
            Some(serde_json::Value::Array(conditions)) => conditions.insert(0, condition),
            _ => {
                if let Some(map) = json.as_object_mut() {
                    map.insert(
                        "conditions".into(),
                        serde_json::Value::Array(vec![condition]),
                    );
                }
            }
        }
        Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())
    }
}

/// One policy set in the two forms the analysis compares.
struct Sets {
    /// The set as the kernel loads it (with the floor), plus the
    /// well-formedness forbids: Cedar allows exactly what the kernel
    /// allows or asks (evaluation errors aside).
    full: PolicySet,
    /// The same with `@ask` permits turned into forbids: Cedar allows
    /// exactly what the kernel allows without an approval.
    plain: PolicySet,
    meta: HashMap<PolicyId, PolicyMeta>,
    /// The user's policies (no floor), to check that they never fail.
    user: Vec<Policy>,
    asks: bool,
}

fn prepare(
    (set, meta): (PolicySet, HashMap<PolicyId, PolicyMeta>),
    well_formed: &PolicySet,
) -> Result<Sets, String> {
    let mut full = set.clone();
    let mut plain = PolicySet::new();
    let mut user = Vec::new();
    let mut asks = false;
    for policy in set.policies() {
        if !policy.id().to_string().starts_with(FLOOR_ID_PREFIX) {
            user.push(policy.clone());
        }
        let ask = meta.get(policy.id()).is_some_and(|m| m.ask);
        let policy = if ask {
            asks = true;
            let mut json = policy.to_json().map_err(|e| e.to_string())?;
            if let Some(effect) = json.get_mut("effect") {
                *effect = serde_json::Value::String("forbid".into());
            }
            Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())?
        } else {
            policy.clone()
        };
        plain.add(policy).map_err(|e| e.to_string())?;
    }
    for policy in well_formed.policies() {
        full.add(policy.clone()).map_err(|e| e.to_string())?;
        plain.add(policy.clone()).map_err(|e| e.to_string())?;
    }
    Ok(Sets {
        full,
        plain,
        meta,
        user,
        asks,
    })
}

/// The solver's version line, or why it cannot be run.
pub fn solver_version() -> Result<String, DiffError> {
    let command = std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into());
    let output = std::process::Command::new(&command)
        .arg("--version")
        .output()
        .map_err(|e| DiffError::NoSolver {
            command: command.clone(),
            why: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or_default();
    if !output.status.success() || !first.contains("cvc5") {
        return Err(DiffError::NoSolver {
            command,
            why: "it did not answer `--version` as cvc5 does".into(),
        });
    }
    Ok(first
        .strip_prefix("This is ")
        .unwrap_or(first)
        .replace(" version", ""))
}

fn applies_to(policy: &Policy, action: &EntityUid) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => &uid == action,
        ActionConstraint::In(uids) => uids.contains(action),
    }
}

fn rank(decision: Decision) -> u8 {
    match decision {
        Decision::Deny | Decision::ShadowDeny => 0,
        Decision::Ask | Decision::ShadowAsk => 1,
        Decision::Allow => 2,
    }
}

/// Compares `old` with `new` (each a list of `(name, text)` policy
/// sources). Needs a `cvc5` executable; without one it fails and compares
/// nothing.
pub fn diff(
    old: &[(String, String)],
    new: &[(String, String)],
    options: &DiffOptions,
) -> Result<DiffReport, DiffError> {
    let solver = solver_version()?;
    let env =
        Environment::new(&options.workspace, &options.assets).map_err(DiffError::Workspace)?;
    let replay_old =
        PolicyEngine::from_sources(old, env.clone()).map_err(|source| DiffError::Policy {
            which: "old",
            source,
        })?;
    let replay_new = PolicyEngine::from_sources(new, env).map_err(|source| DiffError::Policy {
        which: "new",
        source,
    })?;
    let old_loaded = build_set(old).map_err(|source| DiffError::Policy {
        which: "old",
        source,
    })?;
    let new_loaded = build_set(new).map_err(|source| DiffError::Policy {
        which: "new",
        source,
    })?;
    let mut literals = Literals::default();
    for policy in old_loaded.0.policies().chain(new_loaded.0.policies()) {
        if let Ok(json) = policy.to_json() {
            literals.collect(&json);
        }
    }
    let well_formed = WellFormed::new(
        replay_old.environment().workspace(),
        replay_old.environment().assets(),
        &literals,
    )?;
    let internal = |why: String| DiffError::Analysis {
        action: "all".into(),
        why,
    };
    let forbids: PolicySet = well_formed
        .forbids()
        .parse()
        .map_err(|e: cedar_policy::ParseErrors| internal(e.to_string()))?;
    let old_sets = prepare(old_loaded, &forbids).map_err(internal)?;
    let new_sets = prepare(new_loaded, &forbids).map_err(internal)?;
    let schema = schema().map_err(|source| DiffError::Policy {
        which: "kernel",
        source,
    })?;
    let replay = Replay {
        old: &replay_old,
        new: &replay_new,
    };
    // The symbolic compiler recurses on the depth of policy expressions:
    // give it a thread with a stack to match, whatever thread calls this.
    let analysis = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| internal(format!("cannot start the async runtime: {e}")))?;
        runtime.block_on(compare_all(
            &schema,
            &old_sets,
            &new_sets,
            &well_formed,
            &replay,
        ))
    };
    let actions = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("policy-diff".into())
            .stack_size(ANALYSIS_STACK_BYTES)
            .spawn_scoped(scope, analysis)
            .map_err(|e| internal(format!("cannot start the analysis thread: {e}")))?
            .join()
            .map_err(|_| internal("the analysis thread panicked".into()))?
    })?;
    Ok(DiffReport {
        solver,
        workspace: replay_old.environment().workspace().to_owned(),
        actions,
        notes: limit_notes(&old_sets.meta, &new_sets.meta),
    })
}

fn limit_notes(
    old: &HashMap<PolicyId, PolicyMeta>,
    new: &HashMap<PolicyId, PolicyMeta>,
) -> Vec<String> {
    let text = |meta: &HashMap<PolicyId, PolicyMeta>, id: &PolicyId| {
        meta.get(id)
            .and_then(|m| m.limit.as_ref())
            .map(|l| l.text.clone())
    };
    let ids: BTreeMap<String, &PolicyId> = old
        .keys()
        .chain(new.keys())
        .filter(|id| {
            old.get(*id).is_none_or(|m| m.effect == Effect::Permit)
                && new.get(*id).is_none_or(|m| m.effect == Effect::Permit)
        })
        .map(|id| (id.to_string(), id))
        .collect();
    ids.into_iter()
        .filter_map(|(name, id)| {
            let (before, after) = (text(old, id), text(new, id));
            if before == after || (before.is_none() && !old.contains_key(id)) {
                return None;
            }
            let show = |t: Option<String>| t.map_or("none".to_owned(), |t| format!("\"{t}\""));
            Some(format!(
                "`@limit` of `{name}` changed from {} to {}; rate limits are not part of the analysis",
                show(before),
                show(after)
            ))
        })
        .collect()
}

struct Replay<'a> {
    old: &'a PolicyEngine,
    new: &'a PolicyEngine,
}

impl Replay<'_> {
    /// Decides each candidate under both sets and keeps the first on which
    /// the new set is more permissive, or else the first candidate.
    fn finding(&self, change: Change, candidates: Vec<RequestSpec>) -> Option<Finding> {
        let workspace = self.old.environment().workspace();
        let mut first = None;
        for request in candidates.into_iter().take(MAX_CANDIDATES) {
            let finding = match request.canonical(workspace) {
                Ok(action) => {
                    let old = self.old.decide_fresh(&action);
                    let new = self.new.decide_fresh(&action);
                    let confirmed = rank(new.verdict.decision) > rank(old.verdict.decision);
                    Finding {
                        change,
                        description: crate::describe::action(action.action()),
                        request: request.canonicalised(&action),
                        old: Some(old),
                        new: Some(new),
                        confirmed,
                    }
                }
                Err(why) => Finding {
                    change,
                    description: format!("{} ({why})", request.action),
                    request,
                    old: None,
                    new: None,
                    confirmed: false,
                },
            };
            if finding.confirmed {
                return Some(finding);
            }
            first.get_or_insert(finding);
        }
        first
    }
}

async fn compare_all(
    schema: &Schema,
    old: &Sets,
    new: &Sets,
    well_formed: &WellFormed,
    replay: &Replay<'_>,
) -> Result<Vec<ActionReport>, DiffError> {
    let cvc5 = LocalSolver::cvc5_with_args(CVC5_ARGS).map_err(|e| DiffError::NoSolver {
        command: std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into()),
        why: e.to_string(),
    })?;
    let mut compiler = CedarSymCompiler::new(cvc5).map_err(|e| DiffError::Analysis {
        action: "all".into(),
        why: e.to_string(),
    })?;
    let envs: HashMap<ActionKind, RequestEnv> = schema
        .request_envs()
        .filter_map(|env| action_kind(env.action().id().unescaped()).map(|kind| (kind, env)))
        .collect();
    let mut reports = Vec::new();
    for kind in ActionKind::ALL {
        let Some(env) = envs.get(&kind) else {
            return Err(DiffError::Analysis {
                action: kind.as_str().into(),
                why: "the schema has no request environment for it".into(),
            });
        };
        let sets = (old, new);
        reports.push(
            compare_action(&mut compiler, schema, env, kind, sets, well_formed, replay).await?,
        );
    }
    Ok(reports)
}

async fn compare_action(
    compiler: &mut CedarSymCompiler<LocalSolver>,
    schema: &Schema,
    env: &RequestEnv,
    kind: ActionKind,
    (old, new): (&Sets, &Sets),
    well_formed: &WellFormed,
    replay: &Replay<'_>,
) -> Result<ActionReport, DiffError> {
    let failed = |why: String| DiffError::Analysis {
        action: kind.as_str().into(),
        why,
    };
    let compile = |set: &PolicySet| {
        CompiledPolicySet::compile(set, env, schema).map_err(|e| failed(e.to_string()))
    };
    let mut report = ActionReport {
        kind,
        findings: Vec::new(),
        open: Vec::new(),
    };
    // A new set without a permit for this kind of action allows (or asks
    // about) none of it: nothing new, whatever the old set does.
    if !new
        .user
        .iter()
        .any(|p| p.effect() == Effect::Permit && applies_to(p, env.action()))
    {
        return Ok(report);
    }
    // The schema gives `context.args` (a tool's arguments, an MCP
    // request's parameters) no attributes, so the analysis sees only
    // requests without them: a policy that reads them can allow requests
    // it cannot see.
    if matches!(
        kind,
        ActionKind::ToolCall | ActionKind::McpRequest | ActionKind::McpServerRequest
    ) && let Some(reader) = old
        .user
        .iter()
        .chain(&new.user)
        .filter(|p| applies_to(p, env.action()))
        .find(|p| p.to_string().contains("args"))
    {
        report.open.push(format!(
            "policy `{}` reads `context.args`, whose attributes (a tool's arguments, an MCP request's parameters) the schema cannot declare; the analysis sees only requests without them, so a new permission that depends on them is not ruled out",
            reader.id()
        ));
    }
    let mut questions = vec![(Change::Admits, compile(&new.full)?, compile(&old.full)?)];
    if old.asks || new.asks {
        questions.push((
            Change::SkipsApproval,
            compile(&new.plain)?,
            compile(&old.plain)?,
        ));
    }
    for (change, new_set, old_set) in &questions {
        let counterexample = compiler
            .check_implies_with_counterexample_opt(new_set, old_set)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Some(cex) = counterexample
            && let Some(finding) = replay.finding(*change, decode(kind, &cex))
            && !report.findings.iter().any(|f| f.request == finding.request)
        {
            report.findings.push(finding);
        }
    }
    // Cedar's analysis, like Cedar, skips a policy that fails; the kernel
    // denies. An old policy that can fail can hide a new permission.
    for policy in old.user.iter().filter(|p| applies_to(p, env.action())) {
        let guarded = well_formed.guard(policy, kind).map_err(failed)?;
        let compiled =
            CompiledPolicy::compile(&guarded, env, schema).map_err(|e| failed(e.to_string()))?;
        let Some(cex) = compiler
            .check_never_errors_with_counterexample_opt(&compiled)
            .await
            .map_err(|e| failed(e.to_string()))?
        else {
            continue;
        };
        let finding = replay.finding(Change::OldFails, decode(kind, &cex));
        let example = finding
            .as_ref()
            .map(|f| format!(" (such as {})", shorten(&f.description)))
            .unwrap_or_default();
        report.open.push(format!(
            "old policy `{}` can fail to evaluate{example}; the kernel denies such requests, and whether the new set allows others of them is not decided here",
            policy.id()
        ));
        if let Some(finding) = finding.filter(|f| f.confirmed)
            && !report.findings.iter().any(|f| f.confirmed)
        {
            report.findings.push(finding);
        }
    }
    Ok(report)
}

fn string_of(value: Option<EvalResult>) -> Option<String> {
    match value {
        Some(EvalResult::String(text)) => Some(text),
        _ => None,
    }
}

fn long_of(value: Option<EvalResult>) -> Option<i64> {
    match value {
        Some(EvalResult::Long(n)) => Some(n),
        _ => None,
    }
}

fn strings_of(value: Option<EvalResult>) -> Vec<String> {
    match value {
        Some(EvalResult::Set(set)) => set
            .iter()
            .filter_map(|v| match v {
                EvalResult::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn attribute(entity: Option<&Entity>, name: &str) -> Option<String> {
    string_of(entity.and_then(|e| e.attr(name)).and_then(Result::ok))
}

fn push_unique(list: &mut Vec<String>, value: Option<String>) {
    if let Some(value) = value
        && !list.contains(&value)
    {
        list.push(value);
    }
}

/// A file name whose extension, as the kernel derives it, is `extension`.
fn with_extension(name: &str, extension: &str) -> String {
    let current = name
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or_default();
    if current == extension {
        name.to_owned()
    } else if extension.is_empty() {
        name.replace('.', "_")
    } else if name.is_empty() {
        format!("file.{extension}")
    } else {
        format!("{name}.{extension}")
    }
}

/// Paths for a `File` or `Program` counterexample: from its `path`
/// attribute and its uid, and each with the last component replaced by
/// the `name` (and `extension`) the solver chose, since the schema does
/// not tie them to the path as the kernel does.
fn paths(uid: &EntityUid, entity: Option<&Entity>) -> Vec<String> {
    let mut bases = Vec::new();
    push_unique(&mut bases, attribute(entity, "path"));
    push_unique(&mut bases, Some(uid.id().unescaped().to_owned()));
    let name = attribute(entity, "name");
    let extension = attribute(entity, "extension");
    let mut out = Vec::new();
    for base in bases {
        push_unique(&mut out, Some(base.clone()));
        let last = base.rsplit('/').next().unwrap_or_default();
        let wanted = match (&name, &extension) {
            (Some(name), Some(ext)) => Some(with_extension(name, ext)),
            (Some(name), None) => Some(name.clone()),
            (None, Some(ext)) => Some(with_extension(last, ext)),
            (None, None) => None,
        };
        if let Some(wanted) = wanted.filter(|w| !w.is_empty() && !w.contains('/') && w != last) {
            // In place of the last component, or beneath the path (which
            // keeps it inside a directory such as the workspace).
            let parent = base.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
            push_unique(&mut out, Some(format!("{parent}/{wanted}")));
            push_unique(
                &mut out,
                Some(format!("{}/{wanted}", base.trim_end_matches('/'))),
            );
        }
    }
    out
}

/// Names for a `Host`, `Tool` or `CustomKind` counterexample: its uid
/// (what `resource == Host::"..."` tests) and its `name` attribute.
fn names(uid: &EntityUid, entity: Option<&Entity>, allowed: fn(char) -> bool) -> Vec<String> {
    let mut out = vec![uid.id().unescaped().to_owned()];
    push_unique(&mut out, attribute(entity, "name"));
    // Last resort: the same name with what the client refuses replaced.
    let first = out.first().cloned().unwrap_or_default();
    let cleaned: String = first
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    push_unique(
        &mut out,
        Some(if cleaned.is_empty() {
            "x".to_owned()
        } else {
            cleaned
        }),
    );
    out
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

fn tool_char(c: char) -> bool {
    !c.is_control() && !c.is_whitespace()
}

fn method_char(c: char) -> bool {
    c.is_ascii_graphic()
}

fn kind_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | ':')
}

/// Turns a counterexample into requests in the kernel's action terms, most
/// faithful first.
fn decode(kind: ActionKind, cex: &Env) -> Vec<RequestSpec> {
    let Some(resource) = cex.request.resource() else {
        return Vec::new();
    };
    let entity = cex.entities.get(resource);
    let context = |name: &str| cex.request.context().and_then(|c| c.get(name));
    let base = RequestSpec {
        action: kind.as_str().to_owned(),
        ..RequestSpec::default()
    };
    match kind {
        ActionKind::FileRead | ActionKind::FileDelete => paths(resource, entity)
            .into_iter()
            .map(|path| RequestSpec {
                path: Some(path),
                ..base.clone()
            })
            .collect(),
        ActionKind::FileWrite => {
            let mode = string_of(context("mode"));
            // Only a client's writes have a size of their own; the other
            // modes' size follows from the mode.
            let sized = mode
                .as_deref()
                .is_none_or(|m| ["create_new", "overwrite", "append"].contains(&m));
            let size = long_of(context("size"))
                .and_then(|n| u64::try_from(n).ok())
                .filter(|_| sized);
            paths(resource, entity)
                .into_iter()
                .map(|path| RequestSpec {
                    path: Some(path),
                    size,
                    mode: mode.clone(),
                    ..base.clone()
                })
                .collect()
        }
        ActionKind::Exec => {
            let args = strings_of(context("args"));
            let argc = long_of(context("argc"))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(args.len());
            // The schema has the arguments as a set and their number
            // apart: try them as they are, then with the last repeated to
            // match the count.
            let mut padded = args.clone();
            if let Some(last) = args.last() {
                while padded.len() < argc.min(kernel_core::limits::MAX_ARGS) {
                    padded.push(last.clone());
                }
            }
            let env: BTreeMap<String, String> = strings_of(context("env_names"))
                .into_iter()
                .filter(|name| !name.is_empty() && !name.contains('='))
                .map(|name| (name, String::new()))
                .collect();
            let cwd = string_of(context("cwd"));
            let line = string_of(context("command_line"));
            let mut out = Vec::new();
            for program in paths(resource, entity) {
                // The arguments as the command line spells them, when it
                // has as many as the count says (the last taking what is
                // left): what a policy on `command_line` looks at.
                let spelled = line.as_deref().and_then(|line| {
                    if line == program && argc == 0 {
                        return Some(Vec::new());
                    }
                    let rest = line.strip_prefix(program.as_str())?.strip_prefix(' ')?;
                    let parts: Vec<String> =
                        rest.splitn(argc.max(1), ' ').map(str::to_owned).collect();
                    (argc > 0 && parts.len() == argc).then_some(parts)
                });
                for args in spelled.iter().chain([&args, &padded]) {
                    let request = RequestSpec {
                        program: Some(program.clone()),
                        args: Some(args.clone()),
                        env: (!env.is_empty()).then(|| env.clone()),
                        cwd: cwd.clone(),
                        ..base.clone()
                    };
                    if !out.contains(&request) {
                        out.push(request);
                    }
                }
            }
            out
        }
        ActionKind::NetConnect => {
            let port = long_of(context("port")).and_then(|n| u16::try_from(n).ok());
            names(resource, entity, host_char)
                .into_iter()
                .map(|host| RequestSpec {
                    host: Some(host),
                    port,
                    ..base.clone()
                })
                .collect()
        }
        ActionKind::Http => {
            let method = string_of(context("method")).map(|m| {
                let token: String = m.chars().filter(char::is_ascii_uppercase).collect();
                if token.is_empty() {
                    "GET".to_owned()
                } else {
                    token
                }
            });
            let mut urls = Vec::new();
            push_unique(&mut urls, string_of(context("url")));
            let scheme = string_of(context("scheme")).unwrap_or_else(|| "https".into());
            let path = string_of(context("path")).unwrap_or_else(|| "/".into());
            let port = long_of(context("port")).unwrap_or(443);
            for host in names(resource, entity, host_char) {
                push_unique(&mut urls, Some(format!("{scheme}://{host}:{port}{path}")));
            }
            urls.into_iter()
                .map(|url| RequestSpec {
                    method: method.clone(),
                    url: Some(url),
                    ..base.clone()
                })
                .collect()
        }
        ActionKind::ToolCall => {
            let input = string_of(context("input"))
                .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)));
            names(resource, entity, tool_char)
                .into_iter()
                .map(|tool| RequestSpec {
                    tool: Some(tool),
                    input: input.clone(),
                    ..base.clone()
                })
                .collect()
        }
        ActionKind::Custom => names(resource, entity, kind_char)
            .into_iter()
            .map(|kind| RequestSpec {
                kind: Some(kind),
                payload: string_of(context("payload")),
                ..base.clone()
            })
            .collect(),
        ActionKind::McpRequest | ActionKind::McpServerRequest => {
            // The parameters are an object: the text as one if it is one,
            // else inside one (its canonical text then holds the text).
            let params = string_of(context("params")).map(|text| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({ "params": text }))
            });
            names(resource, entity, method_char)
                .into_iter()
                .map(|method| RequestSpec {
                    method: Some(method),
                    params: params.clone(),
                    ..base.clone()
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn well_formed_forbids_validate_and_odd_workspaces_are_refused() {
        let mut literals = Literals::default();
        literals.collect(&serde_json::json!({"Value": ".env"}));
        literals.collect(&serde_json::json!({"type": "Host", "id": "api.example.com"}));
        let text = WellFormed::new(
            "/home/agent/project",
            &["/state/kernel.key".into()],
            &literals,
        )
        .unwrap()
        .forbids()
        .replace(ANALYSIS_ID_PREFIX, "wf");
        assert!(text.contains(r#"resource.path like "*/.env""#), "{text}");
        assert!(
            text.contains(r#"context.url like "https://api.example.com/*""#),
            "{text}"
        );
        let engine = PolicyEngine::from_sources(
            &[("wf.cedar".into(), text)],
            Environment::new("/home/agent/project", &[]).unwrap(),
        );
        assert!(engine.is_ok(), "{engine:?}");
        assert!(WellFormed::new("/a*b", &[], &literals).is_err());
        assert!(
            WellFormed::new("/", &[], &literals)
                .unwrap()
                .condition(ActionKind::FileRead)
                .contains("== true")
        );
    }

    fn literals() -> Literals {
        let mut literals = Literals::default();
        for text in [
            ".env",
            "git",
            "pem",
            "a.pem",
            "api.github.com",
            "x",
            "log",
            "tmp",
        ] {
            literals.collect(&serde_json::json!({ "Value": text }));
        }
        for suffix in [".tmp", "key", "t"] {
            literals
                .collect(&serde_json::json!({ "pattern": ["Wildcard", { "Literal": suffix }] }));
        }
        // As Cedar writes `like "*.pem"`: one literal per character.
        literals.collect(&serde_json::json!({ "pattern": [
            "Wildcard", { "Literal": "." }, { "Literal": "p" }, { "Literal": "e" }, { "Literal": "m" }
        ] }));
        assert!(literals.suffixes.contains(".pem"));
        for (kind, id) in [
            ("File", "/ws/x"),
            ("Program", "/usr/bin/git"),
            ("Host", "api.github.com"),
            ("Tool", "deploy"),
            ("CustomKind", "k"),
        ] {
            literals.collect(&serde_json::json!({ "type": kind, "id": id }));
        }
        literals
    }

    fn assets() -> Vec<String> {
        vec!["/state/kernel.key".into(), "/ws/x/evidence".into()]
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(".env".to_owned()),
            Just("git".to_owned()),
            Just("a.pem".to_owned()),
            Just("pem".to_owned()),
            Just("x".to_owned()),
            Just("ws".to_owned()),
            Just("..".to_owned()),
            Just("state".to_owned()),
            Just("kernel.key".to_owned()),
            Just("evidence".to_owned()),
            Just("a.tmp".to_owned()),
            "[a-z.]{0,4}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), proptest::collection::vec(segment(), 0..4)).prop_map(|(absolute, parts)| {
            let joined = parts.join("/");
            if absolute {
                format!("/{joined}")
            } else {
                joined
            }
        })
    }

    /// Permits everything except what the well-formedness conditions
    /// forbid; built once, since validating it is the slow part.
    fn well_formed_engine() -> &'static PolicyEngine {
        static ENGINE: std::sync::OnceLock<PolicyEngine> = std::sync::OnceLock::new();
        ENGINE.get_or_init(|| {
            let text = WellFormed::new("/ws", &assets(), &literals())
                .unwrap()
                .forbids()
                .replace(ANALYSIS_ID_PREFIX, "wf");
            let policies = format!("@id(\"all\") permit (principal, action, resource);\n{text}");
            PolicyEngine::from_sources(
                &[("wf.cedar".into(), policies)],
                Environment::new("/ws", &assets()).unwrap(),
            )
            .unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The well-formedness conditions are true of every request the
        /// kernel builds: required on both sides of a comparison, they can
        /// hide nothing.
        #[test]
        fn every_request_the_kernel_builds_is_well_formed(
            file in path(),
            program in path(),
            cwd in prop_oneof![Just("/ws".to_owned()), Just("/tmp".to_owned()), Just("/ws/x".to_owned()), Just("/".to_owned())],
            args in proptest::collection::vec("[a-z-]{0,3}", 0..4),
            host in prop_oneof![Just("api.github.com".to_owned()), Just("API.github.com".to_owned()), "[a-z]{1,4}(\\.[a-z]{1,3})?", Just("127.0.0.1".to_owned())],
            port in 1u16..,
            https in any::<bool>(),
            explicit_port in any::<bool>(),
            url_path in prop_oneof!["(/[a-z]{0,3}){0,3}", Just("/f?p=/state/kernel.key".to_owned())],
            payload in prop_oneof!["[a-z]{0,3}", Just("see /ws/x/evidence/1".to_owned())],
            tool in prop_oneof![Just("deploy".to_owned()), "[a-z_]{1,6}"],
            size in 0u64..4_000_000,
        ) {
            let engine = well_formed_engine();
            let scheme = if https { "https" } else { "http" };
            let authority = if explicit_port { format!("{host}:{port}") } else { host.clone() };
            let program = if program.contains('/') { program } else { format!("/usr/bin/{program}") };
            let requests = [
                kernel_core::Action::file_read(file.clone()),
                kernel_core::Action::file_delete(file.clone()),
                kernel_core::Action::FileWrite {
                    path: file.clone(),
                    content_sha256: kernel_core::Digest::of_content(b""),
                    size,
                    mode: kernel_core::WriteMode::Append,
                },
                kernel_core::Action::file_write_descriptor(file.clone()),
                kernel_core::Action::file_symlink(file.clone(), &payload),
                kernel_core::Action::file_write_without_content(file.clone(), kernel_core::WriteMode::HardLink),
                kernel_core::Action::file_write_without_content(file.clone(), kernel_core::WriteMode::Metadata),
                kernel_core::Action::file_connect(file.clone()),
                kernel_core::Action::exec(kernel_core::Exec::new(program).args(args).cwd(cwd.clone())),
                kernel_core::Action::net_connect(host.clone(), port),
                kernel_core::Action::http("GET", format!("{scheme}://{authority}{url_path}")),
                kernel_core::Action::tool_call(tool.clone(), &serde_json::json!({"a": payload})),
                kernel_core::Action::custom("k", payload.clone()),
                kernel_core::Action::mcp_request(kernel_core::McpPeer::Agent, tool.clone(), &serde_json::json!({"uri": payload})),
                kernel_core::Action::mcp_request(kernel_core::McpPeer::Server, "roots/list", &serde_json::json!({"a": payload})),
            ];
            for action in requests {
                let Ok(action) = kernel_core::CanonicalAction::new(action.clone(), Some(&cwd)) else {
                    continue;
                };
                let decided = engine.decide_fresh(&action);
                let Evaluation::Completed { forbids, errors, .. } = &decided.evaluation else {
                    return Err(TestCaseError::fail(format!("{action:?}: {decided:?}")));
                };
                prop_assert!(errors.is_empty(), "{:?}: {:?}", action, errors);
                prop_assert!(
                    forbids.iter().all(|f| !f.id.starts_with("wf")),
                    "{:?}: {:?}",
                    action,
                    forbids
                );
            }
        }
    }

    #[test]
    fn extension_and_name_reconciliation() {
        assert_eq!(with_extension("key", "pem"), "key.pem");
        assert_eq!(with_extension("key.pem", "pem"), "key.pem");
        assert_eq!(with_extension("a.b", ""), "a_b");
        assert_eq!(with_extension("", "md"), "file.md");
    }
}
