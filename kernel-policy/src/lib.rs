//! The policy engine of the agent safety kernel: Cedar policies over the
//! kernel's action model, the floor that protects the kernel's own assets,
//! and the tools operators use on policies before deploying them.
//!
//! What it guarantees:
//!
//! - Policies are validated against the kernel's shipped schema
//!   ([`SCHEMA`]) in strict mode; any parse or validation error, unknown
//!   annotation, template, or duplicate or reserved id refuses the whole
//!   set ([`PolicyLoadError`]).
//! - The floor ([`FLOOR`]) is added after the user's policies and cannot
//!   be removed or lifted (forbid wins). What it protects is built by
//!   [`floor::assets`], which refuses an asset it cannot resolve; where a
//!   path really leads is checked against it by [`resolve::check`].
//! - Evaluation maps Cedar's response to a [`kernel_core::Evaluation`]
//!   that keeps Cedar's per-policy errors, so [`kernel_core::decide`]
//!   denies whenever any policy failed to evaluate (Cedar itself would
//!   skip it). A request that cannot be built is a failed evaluation,
//!   never an error.
//!
//! The tools: [`suite`] (`policy test`), [`explain`] (`policy explain`),
//! `diff` (`policy diff`, a symbolic comparison of two policy sets with
//! cedar-policy-symcc, behind the `symbolic` feature) and [`suggest`]
//! (`policy suggest`, a policy from observed work). The signing key, the
//! evidence and the sessions are the enforcer's (`kernel-enforcer`); this
//! crate reads policy files and, for the floor and path resolution, the
//! file system, and has no other I/O.
//!
//! ```
//! use kernel_core::{Action, CanonicalAction, Decision};
//! use kernel_policy::{Environment, PolicyEngine};
//!
//! let env = Environment::new("/ws", &["/state/kernel.key".to_owned()])?;
//! let policy = r#"@id("read-workspace")
//! permit (principal, action == Action::"file_read", resource in Workspace::"root");"#;
//! let engine = PolicyEngine::from_sources(&[("agent.cedar".into(), policy.into())], env)?;
//! let read = |path: &str| CanonicalAction::new(Action::file_read(path), Some("/ws"));
//! // Allowed by the policy; the key is the floor's, whatever policies say.
//! assert_eq!(engine.decide_fresh(&read("src/lib.rs")?).verdict.decision, Decision::Allow);
//! assert_eq!(engine.decide_fresh(&read("/state/kernel.key")?).verdict.decision, Decision::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod depth;
pub mod describe;
#[cfg(feature = "symbolic")]
pub mod diff;
mod entities;
pub mod explain;
pub mod floor;
mod index;
pub mod limit;
pub mod request;
pub mod resolve;
mod stack;
pub mod suggest;
pub mod suite;

use cedar_policy::{Authorizer, Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use kernel_core::{
    Approval, CanonicalAction, Deadline, DecisionInputs, Digest, EnforcerState, Evaluation,
    LimitState, MatchedForbid, MatchedPermit, Verdict,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub(crate) use entities::link_directories;
pub use entities::{Environment, EnvironmentError, RequestBuildError, RequestView};
pub use stack::{
    DECIDER_STACK_BYTES, MAX_POLICY_DEPTH, STACK_PER_LEVEL, spawn_decider, spawn_scoped_decider,
};

/// The kernel's Cedar schema for its action model.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// The floor: forbids that protect the kernel's own assets. Added to every
/// policy set; no user policy can remove or override them (forbid wins).
pub const FLOOR: &str = r#"@id("kernel-floor-assets")
@reason("the kernel's own assets (key, policies, evidence, binary) are off limits")
forbid (principal, action, resource) when { context.kernel_asset };
"#;

/// The id of the floor's policy (in [`FLOOR`]): the enforcer names it too
/// when it denies an action for where its paths lead
/// ([`crate::resolve::check`]).
pub const FLOOR_ASSETS_ID: &str = "kernel-floor-assets";

/// Prefix reserved for floor policy ids.
pub const FLOOR_ID_PREFIX: &str = "kernel-floor";

/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_FILE_BYTES: usize = 1024 * 1024;
/// Most policies accepted across all files.
pub const MAX_POLICIES: usize = 10_000;

const KNOWN_ANNOTATIONS: [&str; 4] = ["id", "reason", "ask", "limit"];
const POLICY_DIGEST_TAG: &[u8] = b"agent-kernel/policy-set/v1\n";

/// One problem in a policy file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a policy set was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// A policy file could not be read.
    #[error("cannot read policy file `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more policies are invalid.
    #[error("{}", render(.0))]
    Invalid(Vec<PolicyDiagnostic>),
    /// No policy file was given.
    #[error("no policy file given: pass at least one with `--policy FILE`")]
    NoPolicies,
}

/// Diagnostics as JSON objects: `file`, `line` and `column` (`null` when
/// unknown), `message`.
pub fn diagnostics_json(diagnostics: &[PolicyDiagnostic]) -> serde_json::Value {
    diagnostics
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file, "line": d.line, "column": d.column, "message": d.message,
            })
        })
        .collect()
}

fn render(diagnostics: &[PolicyDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone)]
struct PolicyMeta {
    effect: Effect,
    ask: bool,
    reason: Option<String>,
    limit: Option<limit::RateLimit>,
}

/// One decision as a serving session makes it, with what led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Cedar's evaluation, with the per-policy errors Cedar skips.
    pub evaluation: Evaluation,
    /// The kernel's verdict on it.
    pub verdict: Verdict,
}

/// A validated policy set with the floor, ready to evaluate.
#[derive(Debug)]
pub struct PolicyEngine {
    set: PolicySet,
    schema: Schema,
    meta: HashMap<PolicyId, PolicyMeta>,
    digest: Digest,
    env: Environment,
    authorizer: Authorizer,
    index: index::PolicyIndex,
    /// The stack that evaluating this set needs ([`stack::with_stack`]).
    stack: usize,
}

/// Reads policy files and validates them with the floor: what
/// `kernel-enforcer policy check` runs. Returns the number of user policies.
pub fn check_files(paths: &[PathBuf]) -> Result<usize, PolicyLoadError> {
    let sources = read_sources(paths)?;
    let (set, _) = build_set(&sources)?;
    Ok(set
        .policies()
        .filter(|p| !p.id().to_string().starts_with(FLOOR_ID_PREFIX))
        .count())
}

/// Reads policy files as `(name, text)` pairs, refusing an empty list, an
/// unreadable file, one over [`MAX_POLICY_FILE_BYTES`], or one that is not
/// UTF-8.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, PolicyLoadError> {
    if paths.is_empty() {
        return Err(PolicyLoadError::NoPolicies);
    }
    paths
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let text = read_limited(path).map_err(|source| PolicyLoadError::Read {
                path: name.clone(),
                source,
            })?;
            Ok((name, text))
        })
        .collect()
}

fn read_limited(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    if bytes.len() > MAX_POLICY_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "file is {} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit",
            bytes.len()
        )));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("file is not valid UTF-8"))
}

fn schema() -> Result<Schema, PolicyLoadError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| {
            PolicyLoadError::Invalid(vec![PolicyDiagnostic {
                file: "<kernel schema>".into(),
                line: None,
                column: None,
                message: e.to_string(),
            }])
        })
}

/// Parses, re-keys and validates every file, then adds the floor.
fn build_set(
    sources: &[(String, String)],
) -> Result<(PolicySet, HashMap<PolicyId, PolicyMeta>), PolicyLoadError> {
    build_set_deep(sources).map(|(set, meta, _)| (set, meta))
}

/// [`build_set`], and the deepest policy's depth: checks every file's
/// depth first, then parses and validates with the stack it needs.
fn build_set_deep(
    sources: &[(String, String)],
) -> Result<(PolicySet, HashMap<PolicyId, PolicyMeta>, usize), PolicyLoadError> {
    let mut deepest = 0;
    let mut too_deep = Vec::new();
    for (file, text) in sources {
        let (depth, at) = depth::estimate(text);
        deepest = deepest.max(depth);
        if depth > MAX_POLICY_DEPTH {
            too_deep.push(located(
                file,
                text,
                Some(at),
                format!(
                    "policy nests {depth} levels deep, over the kernel's limit of \
                     {MAX_POLICY_DEPTH} (each bracket, and each operator along the way, is \
                     a level): split it, or test membership in a set \
                     (`[\"a\", \"b\"].contains(x)`) instead of chaining `||`"
                ),
            ));
        }
    }
    if !too_deep.is_empty() {
        return Err(PolicyLoadError::Invalid(too_deep));
    }
    let (set, meta) =
        stack::with_stack(stack::stack_needed(deepest), || parse_and_validate(sources)).map_err(
            |e| {
                PolicyLoadError::Invalid(vec![plain(
                    "<all files>",
                    &format!("cannot start a thread to load the policies: {e}"),
                )])
            },
        )??;
    Ok((set, meta, deepest))
}

/// [`build_set`] once the depth is known to be within the limit and the
/// stack to suffice.
fn parse_and_validate(
    sources: &[(String, String)],
) -> Result<(PolicySet, HashMap<PolicyId, PolicyMeta>), PolicyLoadError> {
    let schema = schema()?;
    let validator = Validator::new(schema);
    let mut diagnostics = Vec::new();
    let mut combined = PolicySet::new();
    let mut meta = HashMap::new();
    let mut count = 0usize;
    let floor = [("<kernel floor>".to_owned(), FLOOR.to_owned())];
    for (index, (file, text)) in sources.iter().chain(floor.iter()).enumerate() {
        let is_floor = index == sources.len();
        let parsed = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(errors) => {
                for error in errors.iter() {
                    diagnostics.push(diagnostic(file, text, error));
                }
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            diagnostics.push(plain(file, "policy templates are not supported"));
        }
        let validation = validator.validate(&parsed, ValidationMode::Strict);
        for error in validation.validation_errors() {
            diagnostics.push(diagnostic(file, text, error));
        }
        for (position, policy) in parsed.policies().enumerate() {
            count += 1;
            // Cedar does not expose a policy's position; point at the
            // first occurrence of the offending text instead.
            let at_text =
                |needle: &str, message: String| located(file, text, text.find(needle), message);
            for (key, _) in policy.annotations() {
                if !KNOWN_ANNOTATIONS.contains(&key) {
                    diagnostics.push(at_text(&format!("@{key}"), format!(
                        "unknown annotation `@{key}`: the kernel understands @id, @reason, @ask and @limit"
                    )));
                }
            }
            let rate_limit = match policy.annotation("limit") {
                None => None,
                Some(text) => match limit::parse_limit(text) {
                    Ok(parsed) if policy.effect() == Effect::Permit => Some(parsed),
                    Ok(_) => {
                        diagnostics.push(at_text(
                            "@limit",
                            "`@limit` only makes sense on a permit policy".to_owned(),
                        ));
                        None
                    }
                    Err(error) => {
                        diagnostics.push(at_text("@limit", error.to_string()));
                        None
                    }
                },
            };
            let ask = policy.annotation("ask").is_some();
            if ask && policy.effect() == Effect::Forbid {
                diagnostics.push(at_text(
                    "@ask",
                    "`@ask` only makes sense on a permit policy".to_owned(),
                ));
            }
            let id = match policy.annotation("id") {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => format!("{}#{position}", short_name(file)),
            };
            if !is_floor && id.starts_with(FLOOR_ID_PREFIX) {
                diagnostics.push(at_text(
                    &id,
                    format!("policy id `{id}` is reserved for the kernel's floor"),
                ));
                continue;
            }
            let policy_id = PolicyId::new(&id);
            if meta.contains_key(&policy_id) {
                diagnostics.push(at_text(&id, format!("policy id `{id}` is used twice")));
                continue;
            }
            meta.insert(
                policy_id.clone(),
                PolicyMeta {
                    effect: policy.effect(),
                    ask,
                    reason: policy.annotation("reason").map(str::to_owned),
                    limit: rate_limit,
                },
            );
            if let Err(e) = combined.add(policy.new_id(policy_id)) {
                diagnostics.push(plain(file, &e.to_string()));
            }
        }
    }
    if count > MAX_POLICIES {
        diagnostics.push(plain(
            "<all files>",
            &format!("{count} policies, over the limit of {MAX_POLICIES}"),
        ));
    }
    if diagnostics.is_empty() {
        Ok((combined, meta))
    } else {
        Err(PolicyLoadError::Invalid(diagnostics))
    }
}

fn short_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned())
}

fn plain(file: &str, message: &str) -> PolicyDiagnostic {
    PolicyDiagnostic {
        file: file.to_owned(),
        line: None,
        column: None,
        message: message.to_owned(),
    }
}

fn diagnostic(file: &str, text: &str, error: &dyn miette::Diagnostic) -> PolicyDiagnostic {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let mut message = error.to_string();
    if let Some(help) = error.help() {
        message = format!("{message} (help: {help})");
    }
    located(file, text, offset, message)
}

/// A diagnostic at byte `offset` of `text` (line and column), if known.
pub(crate) fn located(
    file: &str,
    text: &str,
    offset: Option<usize>,
    message: String,
) -> PolicyDiagnostic {
    let (line, column) = match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    PolicyDiagnostic {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (at, c) in text.char_indices() {
        if at >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// The line numbers of byte offsets in one text, as [`line_column`]
/// counts them, by binary search over the text's line breaks: a test file
/// of 10,000 cases asks 10,000 times, which counting from the start each
/// time made quadratic.
#[derive(Debug)]
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        Self(text.match_indices('\n').map(|(at, _)| at).collect())
    }

    /// The line (from 1) of `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&at| at < offset) + 1
    }
}

fn policy_digest(sources: &[(String, String)]) -> Digest {
    let mut bytes = Vec::new();
    for (name, text) in sources.iter().map(|(n, t)| (short_name(n), t.as_str())) {
        for part in [name.as_bytes(), text.as_bytes()] {
            bytes.extend_from_slice(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    bytes.extend_from_slice(FLOOR.as_bytes());
    bytes.extend_from_slice(SCHEMA.as_bytes());
    Digest::tagged(POLICY_DIGEST_TAG, &bytes)
}

impl PolicyEngine {
    /// Loads and validates the given policy files, adds the floor, and
    /// binds the environment (workspace and protected assets).
    pub fn load(paths: &[PathBuf], env: Environment) -> Result<Self, PolicyLoadError> {
        let sources = read_sources(paths)?;
        Self::from_sources(&sources, env)
    }

    /// Like [`load`](Self::load), from in-memory `(name, text)` pairs.
    pub fn from_sources(
        sources: &[(String, String)],
        env: Environment,
    ) -> Result<Self, PolicyLoadError> {
        let (set, meta, depth) = build_set_deep(sources)?;
        let schema = schema()?;
        let index = index::PolicyIndex::new(&set, &schema)
            .map_err(|message| PolicyLoadError::Invalid(vec![plain("<all files>", &message)]))?;
        Ok(Self {
            set,
            schema,
            index,
            meta,
            digest: policy_digest(sources),
            env,
            authorizer: Authorizer::new(),
            stack: stack::stack_needed(depth),
        })
    }

    /// The `@limit` of a policy, if it has one.
    pub fn limit_of(&self, id: &str) -> Option<&limit::RateLimit> {
        self.meta
            .get(&PolicyId::new(id))
            .and_then(|m| m.limit.as_ref())
    }

    /// Digest of the policy files, the floor and the schema.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The environment policies are evaluated in.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// Decides `action` as a serving session decides a fresh request:
    /// kernel serving, deadline open, no `@limit` reached, no approval
    /// given. These are the two steps the session takes,
    /// [`evaluate`](Self::evaluate) and then [`kernel_core::decide`], so a
    /// policy evaluation error is a deny here exactly as it is there.
    pub fn decide_fresh(&self, action: &CanonicalAction) -> Decided {
        let evaluation = self.evaluate(action);
        let verdict = kernel_core::decide(&DecisionInputs {
            kernel: EnforcerState::Serving,
            deadline: Deadline::Open,
            evaluation: evaluation.clone(),
            limits: LimitState::Within,
            approval: Approval::None,
        });
        Decided {
            evaluation,
            verdict,
        }
    }

    /// What policies see of `action`: its resource entity and context.
    /// Fails exactly when evaluation fails to build the request.
    pub fn view(&self, action: &CanonicalAction) -> Result<RequestView, RequestBuildError> {
        entities::view(action, &self.env)
    }

    /// Evaluates `action`. Never fails: a request that cannot be built is
    /// [`Evaluation::Failed`], and per-policy errors are kept. Only the
    /// policies whose scope can match the request are evaluated (the set
    /// is indexed at load by action and resource entity); the result is
    /// the one the whole set gives.
    pub fn evaluate(&self, action: &CanonicalAction) -> Evaluation {
        self.evaluate_with(action, true)
    }

    /// Evaluates with the stack this set needs: here, or on a decider
    /// thread when this one has less left ([`stack::with_stack`]).
    fn evaluate_with(&self, action: &CanonicalAction, indexed: bool) -> Evaluation {
        stack::with_stack(self.stack, || self.evaluate_here(action, indexed)).unwrap_or_else(|e| {
            Evaluation::Failed {
                reason: format!("cannot start a thread to evaluate the policies: {e}"),
            }
        })
    }

    fn evaluate_here(&self, action: &CanonicalAction, indexed: bool) -> Evaluation {
        let (request, entities) = match entities::build(action, &self.env, &self.schema) {
            Ok(built) => built,
            Err(reason) => {
                return Evaluation::Failed {
                    reason: reason.to_string(),
                };
            }
        };
        let combined = indexed
            .then(|| self.index.evaluate(&self.authorizer, &request, &entities))
            .flatten()
            .unwrap_or_else(|| {
                index::evaluate_whole(&self.authorizer, &request, &self.set, &entities)
            });
        let mut errors = combined.errors;
        let mut permits = Vec::new();
        let mut forbids = Vec::new();
        for id in &combined.reason {
            match self.meta.get(id) {
                Some(meta) if meta.effect == Effect::Permit => permits.push(MatchedPermit {
                    id: id.to_string(),
                    ask: meta.ask,
                    reason: meta.reason.clone(),
                }),
                Some(meta) => forbids.push(MatchedForbid {
                    id: id.to_string(),
                    reason: meta.reason.clone(),
                }),
                None => {
                    return Evaluation::Failed {
                        reason: format!("policy `{id}` has no metadata"),
                    };
                }
            }
        }
        if !combined.allowed && !permits.is_empty() {
            // Cedar reports forbids as the reason for a deny; permits here
            // would mean the engine and the kernel disagree: fail closed.
            return Evaluation::Failed {
                reason: "engine denied while reporting permits".into(),
            };
        }
        // Cedar reports policies in no particular order; receipts and
        // evidence list them sorted, so equal decisions read the same.
        permits.sort_by(|a, b| a.id.cmp(&b.id));
        forbids.sort_by(|a, b| a.id.cmp(&b.id));
        errors.sort();
        Evaluation::Completed {
            permits,
            forbids,
            errors,
        }
    }

    /// Evaluates `action` against the whole set, without the index: the
    /// reference the index is tested against, and the baseline benchmarks
    /// compare it with. Same result as [`evaluate`](Self::evaluate),
    /// slower for large sets.
    pub fn evaluate_unindexed(&self, action: &CanonicalAction) -> Evaluation {
        self.evaluate_with(action, false)
    }
}

#[cfg(test)]
mod tests;
