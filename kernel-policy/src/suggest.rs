//! `policy suggest`: Cedar permits written from what an agent was seen to
//! do, as its verified evidence records it.
//!
//! Every recorded action that proceeded (an `allow`, or a decision of
//! shadow mode) gets a permit, unless the kernel floor or a forbid of the
//! base policy is involved in it (those are dropped, and said so). The
//! permits generalise only this far:
//!
//! - **files**: grouped by action and by the entry of the workspace they
//!   lie under (its first path component below the root); a group of two
//!   or more paths becomes the smallest directory that holds them all
//!   (`resource.path like "<dir>/*"`), unless one of the kernel's own
//!   files lies there. Everything else is an exact path: a single path,
//!   the workspace root itself, and every path outside the workspace
//!   (never a directory outside it, so never `/` or a home directory).
//!   Writes keep the write modes seen (`context.mode`).
//! - **programs**: by program and argument shape: the number of
//!   arguments, and at each position the argument itself when it is an
//!   option (starts with `-`) or a word (letters, digits, `_` and `-`,
//!   starting with a letter: a subcommand such as `status`, `test`), or
//!   else a value (a path, a message, a number), which becomes `*` only
//!   where it varied between the records of the shape. An option carrying
//!   a value (`--out=PATH`, up to its last `=`; `-LPATH`, `-Wl,-rpath,PATH`,
//!   up to the first `/` of a path) keeps its option text and is
//!   followed by a value, free where it varied (a linker's temporary
//!   files). A shape with 16 values or more of which one varied is a
//!   generated command line (a compiler driver's link line): every value
//!   in it is free, since the others are build products that change with
//!   the next build, and each file the program opens is decided on its
//!   own. The working
//!   directory is the workspace (when every record ran there) or the
//!   exact directories seen.
//! - **network**: a host with the ports seen; HTTP by host, scheme and
//!   port, with the methods seen.
//! - **tools**: by name, with the argument names seen (`context.args
//!   has`); custom actions and MCP requests by kind or method.
//!
//! An action the policy only let through with an operator's approval
//! (`shadow-ask`) gets a permit that keeps `@ask`.
//!
//! # Request classes
//!
//! `--max-widening` asks whether a suggested permit allows a request of a
//! class that no record exercised. A request's class is:
//!
//! | action | class |
//! |---|---|
//! | `file_read`, `file_delete` | the action and the file's *region*: the workspace root itself; the entry of the workspace the path lies under (its first component below the root: `src` for `src/lib/a.rs`); or, outside the workspace, the exact path |
//! | `file_write` | the same, and the write mode |
//! | `exec` | the program, the number of arguments, and at each position the option or word there, or "a value" (after an option's text up to `=`, or up to an attached path's `/`) |
//! | `net_connect` | host and port |
//! | `http` | host, method, scheme and port |
//! | `tool_call` | the tool |
//! | `custom` | the kind |
//! | `mcp_request`, `mcp_server_request` | the method |
//!
//! [`Suggestion::envelope`] is the set of classes exercised, written as
//! Cedar permits (values are `*` in `context.command_line`, which, as
//! Cedar sees arguments joined by spaces, lets one value stand for
//! several words). A permit is no wider than the evidence when everything
//! it allows (the floor and the base's forbids on top) lies in the
//! envelope; the symbolic analysis ([`super::diff`]) checks that.

use super::entities::is_within;
use super::request::{RequestSpec, toml_string};
use super::{Environment, FLOOR_ID_PREFIX, PolicyEngine, PolicyLoadError};
use cedar_policy::{Effect, PolicySet};
use kernel_core::{
    Action, ActionKind, CanonicalAction, Decision, Evaluation, McpPeer, REASON_DEADLINE,
    REASON_HALTED,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::str::FromStr;

/// One recorded decision, as read from verified evidence.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The action, in canonical form, as the client sent it.
    pub action: CanonicalAction,
    /// The recorded decision.
    pub decision: Decision,
    /// The recorded reasons.
    pub reasons: Vec<String>,
}

/// Where the suggestion is for, and what stays on top of it.
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// The workspace (absolute): `Workspace::"root"`.
    pub workspace: String,
    /// The paths the floor protects.
    pub assets: Vec<String>,
    /// The base policy set, as `(name, text)`: its forbids are copied on
    /// top of the suggestion, and an action one of them forbids gets no
    /// permit.
    pub base: Vec<(String, String)>,
}

/// Why no suggestion was made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuggestError {
    /// The base policy set does not load.
    #[error("base policy: {0}")]
    Base(PolicyLoadError),
    /// The workspace or a protected path cannot be used.
    #[error(transparent)]
    Environment(#[from] crate::EnvironmentError),
    /// The suggestion failed its own checks (a bug: nothing is written).
    #[error("the suggestion failed its own check, so none is written: {0}")]
    SelfCheck(String),
}

/// One suggested permit.
#[derive(Debug, Clone)]
pub struct SuggestedPermit {
    /// Its `@id`.
    pub id: String,
    /// The kind of action it permits.
    pub kind: ActionKind,
    /// Recorded actions it was made from.
    pub records: usize,
    /// Of those, how many proceeded under shadow mode.
    pub shadowed: usize,
    /// What it permits, in a few words.
    pub summary: String,
    /// The policy's text.
    pub text: String,
    /// The text the widening analysis checks: the same, without the
    /// conditions on `context.args` (which only narrow it, and which the
    /// analysis cannot see into), and a program's argument shapes as
    /// their classes (the values seen only narrow a shape within its
    /// class).
    pub analysed: String,
}

/// Recorded actions that got no permit, by why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The action, readably.
    pub action: String,
    /// How many records.
    pub count: usize,
    /// Why.
    pub why: String,
}

/// A test case made from a recorded action, with the answer the
/// suggestion must give it.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// The request, in the kernel's action terms.
    pub request: RequestSpec,
    /// The decision it must get.
    pub expect: Decision,
}

/// A suggested policy, with what it was made from.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// The workspace it is for.
    pub workspace: String,
    /// The base's forbids, as written there.
    pub base_forbids: Vec<String>,
    /// The suggested permits.
    pub permits: Vec<SuggestedPermit>,
    /// The request classes the evidence exercised, as Cedar permits.
    pub envelope: String,
    /// How many classes that is.
    pub classes: usize,
    /// Recorded actions the kernel floor is involved in: no permit.
    pub floor: Vec<Dropped>,
    /// Recorded actions a forbid of the base denies (or that cannot be
    /// evaluated): no permit.
    pub forbidden: Vec<Dropped>,
    /// Recorded denials (not of shadow mode) that the suggestion allows.
    pub denied_now_allowed: Vec<Dropped>,
    /// Recorded actions that proceeded and are covered.
    pub covered: usize,
    /// Of those, how many proceeded under shadow mode.
    pub covered_shadowed: usize,
    /// One test case per distinct recorded request.
    pub tests: Vec<TestCase>,
}

impl Suggestion {
    /// What the suggestion covers and what it dropped, one line each, for
    /// an operator to review: the recorded actions its permits cover, each
    /// permit, and the actions left out (those that reach the kernel's
    /// files, that the base forbids, that were denied and would now be
    /// allowed; the first 20 of each).
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "covered: {} recorded actions that proceeded ({} under shadow mode), by {} permits",
            self.covered,
            self.covered_shadowed,
            self.permits.len()
        )];
        for permit in &self.permits {
            lines.push(format!(
                "  {:<28} {} ({} records)",
                permit.id, permit.summary, permit.records
            ));
        }
        for (list, what) in [
            (&self.floor, "reach the kernel's own files: no permit"),
            (&self.forbidden, "are forbidden by the base: no permit"),
            (
                &self.denied_now_allowed,
                "were denied, and the suggestion does not deny them: review",
            ),
        ] {
            if list.is_empty() {
                continue;
            }
            let total: usize = list.iter().map(|d| d.count).sum();
            lines.push(format!("dropped: {total} recorded actions {what}"));
            for dropped in list.iter().take(20) {
                lines.push(format!(
                    "  {} (x{}): {}",
                    dropped.action, dropped.count, dropped.why
                ));
            }
            if list.len() > 20 {
                lines.push(format!("  ... and {} more", list.len() - 20));
            }
        }
        lines
    }

    /// The policy text: `header` comment lines, the base's forbids, then
    /// the permits (their [`analysed`](SuggestedPermit::analysed) form
    /// when `analysed`).
    pub fn render(&self, header: &[String], analysed: bool) -> String {
        let mut out = String::new();
        comment(&mut out, "//", header);
        if !self.base_forbids.is_empty() {
            let _ = writeln!(out, "\n// The forbids of the base policy, kept on top:\n");
            for forbid in &self.base_forbids {
                let _ = writeln!(out, "{}\n", forbid.trim_end());
            }
        }
        if self.permits.is_empty() {
            let _ = writeln!(out, "\n// No recorded action needs a permit.");
        } else {
            let _ = writeln!(out, "\n// Suggested permits:\n");
        }
        for permit in &self.permits {
            let text = if analysed {
                &permit.analysed
            } else {
                &permit.text
            };
            let _ = writeln!(out, "{}\n", text.trim_end());
        }
        out
    }
}

/// Writes `lines` as comment lines starting with `marker`. A line break
/// inside a line (a file or workspace named with one) starts another
/// comment line, never text of the policy or test file.
fn comment(out: &mut String, marker: &str, lines: &[String]) {
    for line in lines.iter().flat_map(|l| l.split(['\n', '\r'])) {
        let _ = writeln!(out, "{marker} {line}");
    }
}

/// A Cedar string literal for `text`.
pub fn cedar_string(text: &str) -> String {
    escape(text, false)
}

/// A Cedar `like` pattern literal matching `text` exactly.
fn like_literal(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, star: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '*' if star => out.push_str("\\*"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The inside of a pattern literal (without its quotes).
fn like_part(text: &str) -> String {
    let quoted = like_literal(text);
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// `parts` joined by `op` as a balanced tree: a long flat chain nests as
/// deep as it is long, and the symbolic compiler recurses on that depth.
fn balanced(parts: &[String], op: &str, empty: &str) -> String {
    match parts {
        [] => empty.to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            format!(
                "({} {op} {})",
                balanced(left, op, empty),
                balanced(right, op, empty)
            )
        }
    }
}

fn any_of(parts: &[String]) -> String {
    balanced(parts, "||", "false")
}

/// Most alternatives written one per line in a flat chain; longer lists
/// are split into chains of this length joined as a balanced tree.
const CHAIN: usize = 64;

/// `parts` joined by `||`, one per line (for the alternatives a reader
/// reviews: argument shapes, routes), parenthesised.
fn any_of_lines(parts: &[String]) -> String {
    match parts {
        [] => "false".to_owned(),
        [one] => one.clone(),
        _ if parts.len() <= CHAIN => format!("(\n    {}\n  )", parts.join(" ||\n    ")),
        _ => {
            let chains: Vec<String> = parts
                .chunks(CHAIN)
                .map(|chunk| format!("({})", chunk.join(" ||\n    ")))
                .collect();
            format!("(\n    {}\n  )", any_of(&chains))
        }
    }
}

fn all_of(parts: &[String]) -> String {
    balanced(parts, "&&", "true")
}

/// `value` is one of `items` (exactly, for one item; a long list one
/// item per line).
fn one_of<'a>(value: &str, items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(cedar_string).collect();
    match items.as_slice() {
        [one] => format!("{value} == {one}"),
        _ if items.len() <= 4 => format!("[{}].contains({value})", items.join(", ")),
        _ => format!("[\n    {}\n  ].contains({value})", items.join(",\n    ")),
    }
}

/// Where a file lies, for grouping and for its request class.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    /// The workspace root itself.
    Root,
    /// Beneath the workspace, under (or at) this entry of it.
    Top(String),
    /// Outside the workspace: this exact path.
    Outside(String),
}

fn region(path: &str, workspace: &str) -> Region {
    if path == workspace {
        return Region::Root;
    }
    if is_within(path, workspace) {
        let rest = if workspace == "/" {
            path.trim_start_matches('/')
        } else {
            path.get(workspace.len()..)
                .unwrap_or_default()
                .trim_start_matches('/')
        };
        let first = rest.split('/').next().unwrap_or_default();
        let top = if workspace == "/" {
            format!("/{first}")
        } else {
            format!("{workspace}/{first}")
        };
        return Region::Top(top);
    }
    Region::Outside(path.to_owned())
}

/// The condition of a region's class.
fn region_condition(region: &Region, workspace: &str) -> String {
    match region {
        Region::Root => format!("resource.path == {}", cedar_string(workspace)),
        Region::Top(top) => format!(
            "(resource.path == {} || resource.path like \"{}/*\")",
            cedar_string(top),
            like_part(top)
        ),
        Region::Outside(path) => format!("resource.path == {}", cedar_string(path)),
    }
}

/// The deepest directory that holds every path of `paths` (or is one of
/// them), component by component.
fn common_directory<'a>(paths: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let mut common: Option<Vec<&str>> = None;
    for path in paths {
        let parts: Vec<&str> = path.split('/').collect();
        common = Some(match common {
            None => parts,
            Some(prefix) => prefix
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    let joined = common?.join("/");
    Some(if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    })
}

/// One argument position of an argument shape: the text an option or a
/// word must have there, and whether a value follows that text (`*`
/// where it varied). A plain value has an empty prefix; an option with
/// `=` is its text up to the last `=` followed by a value; one without
/// `=` but with a path attached (`-L/usr/lib`, `-Wl,-rpath,/opt/lib`) is
/// its text up to the first `/` followed by a value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    prefix: String,
    value: bool,
}

/// A word kept literal in an argument shape: letters, digits, `_` and
/// `-`, starting with a letter (a subcommand such as `status`).
fn word(arg: &str) -> bool {
    arg.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn slot(arg: &str) -> Slot {
    if arg.starts_with('-') {
        if let Some(at) = arg.rfind('=') {
            return Slot {
                prefix: arg.get(..=at).unwrap_or(arg).to_owned(),
                value: true,
            };
        }
        if let Some(at) = arg.find('/') {
            return Slot {
                prefix: arg.get(..at).unwrap_or(arg).to_owned(),
                value: true,
            };
        }
        return Slot {
            prefix: arg.to_owned(),
            value: false,
        };
    }
    if word(arg) {
        Slot {
            prefix: arg.to_owned(),
            value: false,
        }
    } else {
        Slot {
            prefix: String::new(),
            value: true,
        }
    }
}

/// Values in an argument shape from which, when one of them varied
/// between the records, the shape counts as generated (a compiler
/// driver's or linker's command line, with its temporary files) and every
/// value is free. Its other values are build products, named by hashes
/// that change with the next build; each file the program then opens is
/// decided on its own; and long literals between free values are what
/// the symbolic analysis cannot decide in time (`--max-widening`).
const GENERATED_VALUES: usize = 16;

/// An exec's class: the program and the slot of each argument.
fn exec_class(program: &str, args: &[String]) -> (String, Vec<Slot>) {
    (program.to_owned(), args.iter().map(|a| slot(a)).collect())
}

/// One argument of a shape: exactly this text, or this prefix and any
/// value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Exact(String),
    Free(String),
}

/// `context.argc == N && context.command_line <matches>` for a program
/// and its argument parts.
fn shape_condition(program: &str, parts: &[Part]) -> String {
    let argc = format!("context.argc == {}", parts.len());
    let exact: Option<Vec<&str>> = parts
        .iter()
        .map(|p| match p {
            Part::Exact(text) => Some(text.as_str()),
            Part::Free(_) => None,
        })
        .collect();
    if let Some(exact) = exact {
        let line = std::iter::once(program)
            .chain(exact)
            .collect::<Vec<_>>()
            .join(" ");
        return format!("{argc} && context.command_line == {}", cedar_string(&line));
    }
    let mut pattern = like_part(program);
    for part in parts {
        pattern.push(' ');
        match part {
            Part::Exact(text) => pattern.push_str(&like_part(text)),
            Part::Free(prefix) => {
                pattern.push_str(&like_part(prefix));
                pattern.push('*');
            }
        }
    }
    format!("{argc} && context.command_line like \"{pattern}\"")
}

/// The parts of a class with every value free: its envelope.
fn class_parts(slots: &[Slot]) -> Vec<Part> {
    slots
        .iter()
        .map(|s| {
            if s.value {
                Part::Free(s.prefix.clone())
            } else {
                Part::Exact(s.prefix.clone())
            }
        })
        .collect()
}

/// The names of a JSON object's members, or `None` for anything else.
fn member_names(json: &str) -> Option<BTreeSet<String>> {
    match kernel_core::json::parse_strict(json).ok()? {
        serde_json::Value::Object(map) => Some(map.keys().cloned().collect()),
        _ => None,
    }
}

/// What one kept record contributes, by kind.
#[derive(Debug, Default)]
struct Tally {
    records: usize,
    shadowed: usize,
}

impl Tally {
    fn add(&mut self, decision: Decision) {
        self.records += 1;
        if decision.is_shadow() {
            self.shadowed += 1;
        }
    }
}

/// A permit being assembled.
struct Draft {
    kind: ActionKind,
    asked: bool,
    scope_in_workspace: bool,
    condition: String,
    analysed_condition: Option<String>,
    summary: String,
    tally: Tally,
}

/// Makes the suggestion. Fails only when the base does not load, the
/// environment is unusable, or the result fails its own check (every kept
/// record allowed, every dropped one denied).
pub fn suggest(
    observations: &[Observation],
    options: &SuggestOptions,
) -> Result<Suggestion, SuggestError> {
    let env =
        Environment::new(&options.workspace, &options.assets).map_err(SuggestError::Environment)?;
    let workspace = env.workspace().to_owned();
    let base =
        PolicyEngine::from_sources(&options.base, env.clone()).map_err(SuggestError::Base)?;
    let base_forbids = base_forbids(&options.base)?;

    let mut kept: Vec<&Observation> = Vec::new();
    let mut floor: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut forbidden: BTreeMap<String, (usize, String)> = BTreeMap::new();
    // (request, expected) for the tests, before the suggestion exists.
    let mut denied: Vec<&Observation> = Vec::new();
    for observation in observations {
        let described = crate::describe::action(observation.action.action());
        let fate = fate(&base, &observation.action);
        match (observation.decision.proceeds(), fate) {
            (true, Fate::Permit) => kept.push(observation),
            // The suggestion denies these, whether they proceeded or not.
            (_, Fate::Floor(why)) => {
                floor.entry(described).or_insert((0, why)).0 += 1;
                denied.push(observation);
            }
            (_, Fate::Forbidden(why)) => {
                forbidden.entry(described).or_insert((0, why)).0 += 1;
                denied.push(observation);
            }
            (false, Fate::Permit) => {
                let policy_decided = observation.decision == Decision::Deny
                    && !observation
                        .reasons
                        .iter()
                        .any(|r| r == REASON_HALTED || r == REASON_DEADLINE);
                if policy_decided {
                    denied.push(observation);
                }
            }
        }
    }
    let dropped = |map: BTreeMap<String, (usize, String)>| -> Vec<Dropped> {
        map.into_iter()
            .map(|(action, (count, why))| Dropped { action, count, why })
            .collect()
    };
    let floor = dropped(floor);
    let forbidden = dropped(forbidden);

    let drafts = drafts(&kept, &env);
    let (envelope, classes) = envelope(&kept, &workspace);
    let base_ids: BTreeSet<String> = base_ids(&options.base);
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut permits = Vec::new();
    for draft in drafts {
        let name = draft.kind.as_str();
        let counter = counters.entry(name).or_insert(0);
        *counter += 1;
        let mut id = format!("suggested-{name}-{counter}");
        while base_ids.contains(&id) {
            id.push_str("-s");
        }
        let reason = format!(
            "suggested from {} recorded action{}{}: {}",
            draft.tally.records,
            if draft.tally.records == 1 { "" } else { "s" },
            if draft.tally.shadowed > 0 {
                format!(", {} of them under shadow mode", draft.tally.shadowed)
            } else {
                String::new()
            },
            draft.summary
        );
        let head = |condition: &str| {
            let scope = if draft.scope_in_workspace {
                "resource in Workspace::\"root\""
            } else {
                "resource"
            };
            format!(
                "@id({})\n@reason({}){}\npermit (principal, action == Action::\"{name}\", {scope})\nwhen {{\n  {condition}\n}};",
                cedar_string(&id),
                cedar_string(&reason),
                if draft.asked { "\n@ask" } else { "" },
            )
        };
        permits.push(SuggestedPermit {
            text: head(&draft.condition),
            analysed: head(
                draft
                    .analysed_condition
                    .as_ref()
                    .unwrap_or(&draft.condition),
            ),
            id,
            kind: draft.kind,
            records: draft.tally.records,
            shadowed: draft.tally.shadowed,
            summary: draft.summary,
        });
    }
    let mut suggestion = Suggestion {
        workspace,
        base_forbids,
        permits,
        envelope,
        classes,
        floor,
        forbidden,
        denied_now_allowed: Vec::new(),
        covered: kept.len(),
        covered_shadowed: kept.iter().filter(|o| o.decision.is_shadow()).count(),
        tests: Vec::new(),
    };
    check_and_test(&mut suggestion, &kept, &denied, &env)?;
    Ok(suggestion)
}

/// What becomes of a recorded action.
enum Fate {
    Permit,
    Floor(String),
    Forbidden(String),
}

fn fate(base: &PolicyEngine, action: &CanonicalAction) -> Fate {
    match base.view(action) {
        Err(why) => return Fate::Forbidden(format!("cannot be evaluated: {why}")),
        Ok(view) if view.kernel_asset() => {
            return Fate::Floor("it reaches one of the kernel's own files".into());
        }
        Ok(_) => {}
    }
    match base.evaluate(action) {
        Evaluation::Failed { reason } => Fate::Forbidden(format!("cannot be evaluated: {reason}")),
        Evaluation::Completed {
            forbids, errors, ..
        } => {
            if forbids.iter().any(|f| f.id.starts_with(FLOOR_ID_PREFIX)) {
                Fate::Floor("the kernel floor forbids it".into())
            } else if !forbids.is_empty() {
                let ids: Vec<&str> = forbids.iter().map(|f| f.id.as_str()).collect();
                Fate::Forbidden(format!("the base forbids it ({})", ids.join(", ")))
            } else if !errors.is_empty() {
                let ids: Vec<&str> = errors.iter().map(|(id, _)| id.as_str()).collect();
                Fate::Forbidden(format!(
                    "base policies fail to evaluate on it ({}), which denies",
                    ids.join(", ")
                ))
            } else {
                Fate::Permit
            }
        }
    }
}

/// The forbid policies of `sources` (`(name, text)` pairs), each as
/// written, with its annotations: what a suggestion keeps on top.
pub fn base_forbids(sources: &[(String, String)]) -> Result<Vec<String>, SuggestError> {
    let mut forbids = Vec::new();
    for (_, text) in sources {
        let set = PolicySet::from_str(text).map_err(|e| {
            SuggestError::Base(PolicyLoadError::Invalid(vec![super::PolicyDiagnostic {
                file: "base".into(),
                line: None,
                column: None,
                message: e.to_string(),
            }]))
        })?;
        forbids.extend(
            set.policies()
                .filter(|p| p.effect() == Effect::Forbid)
                .map(ToString::to_string),
        );
    }
    Ok(forbids)
}

fn base_ids(sources: &[(String, String)]) -> BTreeSet<String> {
    sources
        .iter()
        .filter_map(|(_, text)| PolicySet::from_str(text).ok())
        .flat_map(|set| {
            set.policies()
                .filter_map(|p| p.annotation("id").map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The permits, kind by kind, in a fixed order.
fn drafts(kept: &[&Observation], env: &Environment) -> Vec<Draft> {
    let workspace = env.workspace();
    // Tools whose every recorded input is an object with members: only
    // their permits may read `context.args`. A permit that reads it fails
    // to evaluate on an input without it, and any failure denies, even a
    // request another permit allows.
    let mut readable: BTreeMap<&str, bool> = BTreeMap::new();
    for observation in kept {
        if let Action::ToolCall { name, input } = observation.action.action() {
            let object = member_names(input).is_some_and(|names| !names.is_empty());
            *readable.entry(name.as_str()).or_insert(true) &= object;
        }
    }
    let mut out = Vec::new();
    for asked in [false, true] {
        let of = |o: &&&Observation| (o.decision == Decision::ShadowAsk) == asked;
        let mine: Vec<&Observation> = kept.iter().filter(of).copied().collect();
        out.extend(file_drafts(&mine, env, asked));
        out.extend(exec_drafts(&mine, workspace, asked));
        out.extend(network_drafts(&mine, asked));
        out.extend(named_drafts(&mine, asked, &readable));
    }
    out
}

fn file_path(action: &Action) -> Option<(ActionKind, &str, Option<&'static str>)> {
    match action {
        Action::FileRead { path } => Some((ActionKind::FileRead, path, None)),
        Action::FileDelete { path } => Some((ActionKind::FileDelete, path, None)),
        Action::FileWrite { path, mode, .. } => {
            Some((ActionKind::FileWrite, path, Some(mode.as_str())))
        }
        _ => None,
    }
}

fn file_drafts(kept: &[&Observation], env: &Environment, asked: bool) -> Vec<Draft> {
    let workspace = env.workspace();
    let mut out = Vec::new();
    for kind in [
        ActionKind::FileRead,
        ActionKind::FileWrite,
        ActionKind::FileDelete,
    ] {
        // path -> modes (writes) and the records on it
        let mut regions: BTreeMap<Region, BTreeMap<String, (BTreeSet<&str>, Tally)>> =
            BTreeMap::new();
        for observation in kept {
            let Some((k, path, mode)) = file_path(observation.action.action()) else {
                continue;
            };
            if k != kind {
                continue;
            }
            let entry = regions
                .entry(region(path, workspace))
                .or_default()
                .entry(path.to_owned())
                .or_default();
            entry.0.extend(mode);
            entry.1.add(observation.decision);
        }
        // Exact paths, by the set of modes seen on them: inside the
        // workspace and outside it.
        // (inside the workspace, modes) -> (paths, tally)
        type Exact<'a> = BTreeMap<(bool, Vec<&'a str>), (Vec<String>, Tally)>;
        let mut exact: Exact<'_> = BTreeMap::new();
        let name = kind.as_str();
        for (region, paths) in regions {
            let prefix = match &region {
                Region::Top(_) if paths.len() > 1 => {
                    common_directory(paths.keys()).filter(|dir| !env.reaches_asset(dir))
                }
                _ => None,
            };
            let Some(dir) = prefix else {
                for (path, (modes, tally)) in paths {
                    let inside = !matches!(region, Region::Outside(_));
                    let entry = exact
                        .entry((inside, modes.into_iter().collect()))
                        .or_default();
                    entry.0.push(path);
                    entry.1.records += tally.records;
                    entry.1.shadowed += tally.shadowed;
                }
                continue;
            };
            let mut tally = Tally::default();
            let mut modes = BTreeSet::new();
            for (m, t) in paths.values() {
                modes.extend(m.iter().copied());
                tally.records += t.records;
                tally.shadowed += t.shadowed;
            }
            let mut parts = Vec::new();
            let under = format!("resource.path like \"{}/*\"", like_part(&dir));
            parts.push(if paths.contains_key(&dir) {
                format!("(resource.path == {} || {under})", cedar_string(&dir))
            } else {
                under
            });
            if !modes.is_empty() {
                parts.push(one_of("context.mode", modes.iter().copied()));
            }
            let count = paths.len();
            out.push(Draft {
                kind,
                asked,
                scope_in_workspace: true,
                condition: all_of(&parts),
                analysed_condition: None,
                summary: format!(
                    "{name} under `{dir}` ({count} paths seen{})",
                    modes_text(&modes)
                ),
                tally,
            });
        }
        for ((inside, modes), (paths, tally)) in exact {
            let mut parts = vec![one_of("resource.path", paths.iter().map(String::as_str))];
            if !modes.is_empty() {
                parts.push(one_of("context.mode", modes.iter().copied()));
            }
            let modes: BTreeSet<&str> = modes.into_iter().collect();
            out.push(Draft {
                kind,
                asked,
                scope_in_workspace: inside,
                condition: all_of(&parts),
                analysed_condition: None,
                summary: format!(
                    "{name} of {} exact path{} {} the workspace{}",
                    paths.len(),
                    if paths.len() == 1 { "" } else { "s" },
                    if inside { "in" } else { "outside" },
                    modes_text(&modes)
                ),
                tally,
            });
        }
    }
    out
}

fn modes_text(modes: &BTreeSet<&str>) -> String {
    if modes.is_empty() {
        String::new()
    } else {
        format!(
            ", mode {}",
            modes.iter().copied().collect::<Vec<_>>().join(", ")
        )
    }
}

fn exec_drafts(kept: &[&Observation], workspace: &str, asked: bool) -> Vec<Draft> {
    // program -> class -> (argument vectors, working directories, tally)
    type Shapes = BTreeMap<Vec<Slot>, (Vec<Vec<String>>, BTreeSet<String>, Tally)>;
    let mut programs: BTreeMap<String, Shapes> = BTreeMap::new();
    for observation in kept {
        let Action::Exec(exec) = observation.action.action() else {
            continue;
        };
        let (program, class) = exec_class(&exec.program, &exec.args);
        let entry = programs
            .entry(program)
            .or_default()
            .entry(class)
            .or_default();
        entry.0.push(exec.args.clone());
        entry.1.insert(exec.cwd.clone().unwrap_or_default());
        entry.2.add(observation.decision);
    }
    let mut out = Vec::new();
    for (program, shapes) in programs {
        let mut tally = Tally::default();
        let mut conditions = Vec::new();
        let mut classes = Vec::new();
        // Fewest arguments first: shorter command lines read first, and
        // the solver behind `--max-widening` and the analysis meets them
        // first (the order of a disjunction decides whether it answers in
        // seconds or not at all for long generated lines).
        let mut ordered: Vec<_> = shapes.iter().collect();
        ordered.sort_by(|a, b| (a.0.len(), a.0).cmp(&(b.0.len(), b.0)));
        for (class, (vectors, cwds, shape_tally)) in ordered {
            tally.records += shape_tally.records;
            tally.shadowed += shape_tally.shadowed;
            // A value is literal where every record had the same one; in
            // a generated command line, none is.
            let args: Vec<Part> = class
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let mut values = vectors.iter().filter_map(|v| v.get(i));
                    let first = values.next();
                    match first {
                        Some(first) if !slot.value || values.all(|v| v == first) => {
                            Part::Exact(first.clone())
                        }
                        _ => Part::Free(slot.prefix.clone()),
                    }
                })
                .collect();
            let generated = class.iter().filter(|s| s.value).count() >= GENERATED_VALUES
                && args.iter().any(|p| matches!(p, Part::Free(_)));
            let args = if generated { class_parts(class) } else { args };
            let mut parts = vec![shape_condition(&program, &args)];
            // INVARIANT: each part lies within its class's part (an exact
            // option or word is the class's text; an exact value starts
            // with its slot's prefix, which is all the class requires), so
            // the shape lies within its class, and the class form is what
            // the widening check is asked about.
            let mut class_form = vec![shape_condition(&program, &class_parts(class))];
            let (inside, outside): (Vec<&String>, Vec<&String>) =
                cwds.iter().partition(|cwd| is_within(cwd, workspace));
            let mut places = Vec::new();
            if !inside.is_empty() {
                places.push("context.cwd_in_workspace".to_owned());
            }
            if !outside.is_empty() {
                places.push(one_of("context.cwd", outside.iter().map(|c| c.as_str())));
            }
            parts.push(any_of(&places));
            class_form.push(any_of(&places));
            conditions.push(all_of(&parts));
            classes.push(all_of(&class_form));
        }
        let count = shapes.len();
        out.push(Draft {
            kind: ActionKind::Exec,
            asked,
            scope_in_workspace: false,
            condition: format!(
                "resource.path == {} && {}",
                cedar_string(&program),
                any_of_lines(&conditions)
            ),
            // The values seen narrow a shape within its class and are no
            // part of the class the widening check measures: it is asked
            // about the classes, whose patterns are the envelope's own.
            analysed_condition: Some(format!(
                "resource.path == {} && {}",
                cedar_string(&program),
                any_of_lines(&classes)
            )),
            summary: format!(
                "`{program}` with {count} argument shape{}",
                if count == 1 { "" } else { "s" }
            ),
            tally,
        });
    }
    out
}

fn network_drafts(kept: &[&Observation], asked: bool) -> Vec<Draft> {
    let mut connects: BTreeMap<String, (BTreeSet<u16>, Tally)> = BTreeMap::new();
    // host -> (scheme, port) -> (methods, tally)
    type Routes = BTreeMap<(String, u16), (BTreeSet<String>, Tally)>;
    let mut http: BTreeMap<String, Routes> = BTreeMap::new();
    for observation in kept {
        match observation.action.action() {
            Action::NetConnect { host, port } => {
                let entry = connects.entry(host.clone()).or_default();
                entry.0.insert(*port);
                entry.1.add(observation.decision);
            }
            Action::Http { method, url } => {
                let Ok(parsed) = url::Url::parse(url) else {
                    continue;
                };
                let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default())
                else {
                    continue;
                };
                let entry = http
                    .entry(host.to_owned())
                    .or_default()
                    .entry((parsed.scheme().to_owned(), port))
                    .or_default();
                entry.0.insert(method.clone());
                entry.1.add(observation.decision);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (host, (ports, tally)) in connects {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let port = match list.as_slice() {
            [one] => format!("context.port == {one}"),
            _ => format!("[{}].contains(context.port)", list.join(", ")),
        };
        out.push(Draft {
            kind: ActionKind::NetConnect,
            asked,
            scope_in_workspace: false,
            condition: format!("resource.name == {} && {port}", cedar_string(&host)),
            analysed_condition: None,
            summary: format!("connections to `{host}` on port {}", list.join(", ")),
            tally,
        });
    }
    for (host, routes) in http {
        let mut tally = Tally::default();
        let mut conditions = Vec::new();
        let mut methods_seen = BTreeSet::new();
        for ((scheme, port), (methods, route_tally)) in &routes {
            tally.records += route_tally.records;
            tally.shadowed += route_tally.shadowed;
            methods_seen.extend(methods.iter().cloned());
            conditions.push(all_of(&[
                format!("context.scheme == {}", cedar_string(scheme)),
                format!("context.port == {port}"),
                one_of("context.method", methods.iter().map(String::as_str)),
            ]));
        }
        out.push(Draft {
            kind: ActionKind::Http,
            asked,
            scope_in_workspace: false,
            condition: format!(
                "resource.name == {} && {}",
                cedar_string(&host),
                any_of_lines(&conditions)
            ),
            analysed_condition: None,
            summary: format!(
                "HTTP to `{host}` with {}",
                methods_seen.into_iter().collect::<Vec<_>>().join(", ")
            ),
            tally,
        });
    }
    out
}

fn named_drafts(kept: &[&Observation], asked: bool, readable: &BTreeMap<&str, bool>) -> Vec<Draft> {
    // (kind, name) -> (argument-name sets or None for a non-object, payloads, tally)
    type Named =
        BTreeMap<(ActionKind, String), (BTreeSet<Option<Vec<String>>>, BTreeSet<String>, Tally)>;
    let mut named: Named = BTreeMap::new();
    for observation in kept {
        let (kind, name, args, payload) = match observation.action.action() {
            Action::ToolCall { name, input } => (
                ActionKind::ToolCall,
                name,
                Some(member_names(input).map(|n| n.into_iter().collect())),
                None,
            ),
            Action::Custom { kind, payload } => (ActionKind::Custom, kind, None, Some(payload)),
            Action::McpRequest { from, method, .. } => (
                match from {
                    McpPeer::Agent => ActionKind::McpRequest,
                    McpPeer::Server => ActionKind::McpServerRequest,
                },
                method,
                None,
                None,
            ),
            _ => continue,
        };
        let entry = named.entry((kind, name.clone())).or_default();
        if let Some(args) = args {
            entry.0.insert(args);
        }
        if let Some(payload) = payload {
            entry.1.insert(payload.clone());
        }
        entry.2.add(observation.decision);
    }
    let mut out = Vec::new();
    for ((kind, name), (shapes, payloads, tally)) in named {
        let by_name = format!("resource.name == {}", cedar_string(&name));
        let mut condition = by_name.clone();
        let mut analysed = None;
        let mut summary = format!("{} `{name}`", kind.as_str());
        if kind == ActionKind::ToolCall && readable.get(name.as_str()) == Some(&true) {
            let objects: Option<Vec<&Vec<String>>> = shapes.iter().map(Option::as_ref).collect();
            if let Some(objects) = objects {
                let alternatives: Vec<String> = objects
                    .iter()
                    .map(|names| {
                        all_of(
                            &names
                                .iter()
                                .map(|n| format!("context.args has {}", cedar_string(n)))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                condition = all_of(&[by_name.clone(), any_of(&alternatives)]);
                analysed = Some(by_name.clone());
                let names: BTreeSet<&String> = objects.iter().flat_map(|n| n.iter()).collect();
                summary = format!(
                    "{summary} with arguments {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if kind == ActionKind::Custom
            && let [payload] = payloads.iter().collect::<Vec<_>>().as_slice()
        {
            condition = all_of(&[
                by_name.clone(),
                format!("context.payload == {}", cedar_string(payload)),
            ]);
        }
        out.push(Draft {
            kind,
            asked,
            scope_in_workspace: false,
            condition,
            analysed_condition: analysed,
            summary,
            tally,
        });
    }
    out
}

/// The request classes the kept records exercised, as one permit per kind
/// of action (ids `exercised-<kind>`), and how many classes.
fn envelope(kept: &[&Observation], workspace: &str) -> (String, usize) {
    let mut classes: BTreeMap<ActionKind, BTreeSet<String>> = BTreeMap::new();
    for observation in kept {
        let action = observation.action.action();
        let (kind, class) = match action {
            Action::FileRead { .. } | Action::FileDelete { .. } | Action::FileWrite { .. } => {
                let Some((kind, path, mode)) = file_path(action) else {
                    continue;
                };
                let mut condition = region_condition(&region(path, workspace), workspace);
                if let Some(mode) = mode {
                    condition = format!("({condition} && context.mode == {})", cedar_string(mode));
                }
                (kind, condition)
            }
            Action::Exec(exec) => {
                let (program, slots) = exec_class(&exec.program, &exec.args);
                (
                    ActionKind::Exec,
                    format!(
                        "(resource.path == {} && {})",
                        cedar_string(&program),
                        shape_condition(&program, &class_parts(&slots))
                    ),
                )
            }
            Action::NetConnect { host, port } => (
                ActionKind::NetConnect,
                format!(
                    "(resource.name == {} && context.port == {port})",
                    cedar_string(host)
                ),
            ),
            Action::Http { method, url } => {
                let Ok(parsed) = url::Url::parse(url) else {
                    continue;
                };
                let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default())
                else {
                    continue;
                };
                (
                    ActionKind::Http,
                    format!(
                        "(resource.name == {} && context.method == {} && context.scheme == {} && context.port == {port})",
                        cedar_string(host),
                        cedar_string(method),
                        cedar_string(parsed.scheme())
                    ),
                )
            }
            Action::ToolCall { name, .. } => (
                ActionKind::ToolCall,
                format!("resource.name == {}", cedar_string(name)),
            ),
            Action::Custom { kind, .. } => (
                ActionKind::Custom,
                format!("resource.name == {}", cedar_string(kind)),
            ),
            Action::McpRequest { from, method, .. } => (
                match from {
                    McpPeer::Agent => ActionKind::McpRequest,
                    McpPeer::Server => ActionKind::McpServerRequest,
                },
                format!("resource.name == {}", cedar_string(method)),
            ),
        };
        classes.entry(kind).or_default().insert(class);
    }
    let count = classes.values().map(BTreeSet::len).sum();
    let mut out = String::new();
    for (kind, classes) in classes {
        let name = kind.as_str();
        let classes: Vec<String> = classes.into_iter().collect();
        let _ = writeln!(
            out,
            "@id(\"exercised-{name}\")\npermit (principal, action == Action::\"{name}\", resource)\nwhen {{\n  {}\n}};\n",
            any_of(&classes)
        );
    }
    (out, count)
}

/// Checks the suggestion against every record (kept ones allowed or
/// asked, dropped ones denied) and makes the test cases.
fn check_and_test(
    suggestion: &mut Suggestion,
    kept: &[&Observation],
    denied: &[&Observation],
    env: &Environment,
) -> Result<(), SuggestError> {
    let text = suggestion.render(&[], false);
    let engine = PolicyEngine::from_sources(&[("suggestion".to_owned(), text)], env.clone())
        .map_err(|e| SuggestError::SelfCheck(format!("the suggested policy does not load: {e}")))?;
    let mut cases: BTreeMap<(String, &'static str), (TestCase, usize)> = BTreeMap::new();
    let mut add = |action: &CanonicalAction, expect: Decision| {
        let request = spec_of(action);
        let key = (
            request.toml_fields().unwrap_or_default().join("\n"),
            expect.as_str(),
        );
        let entry = cases.entry(key).or_insert_with(|| {
            (
                TestCase {
                    name: String::new(),
                    request,
                    expect,
                },
                0,
            )
        });
        entry.1 += 1;
    };
    for observation in kept {
        let decided = engine.decide_fresh(&observation.action).verdict.decision;
        let wanted = if observation.decision == Decision::ShadowAsk {
            Decision::Ask
        } else {
            Decision::Allow
        };
        // An allowed record may also match a permit that keeps `@ask`.
        if decided != wanted && decided != Decision::Ask {
            return Err(SuggestError::SelfCheck(format!(
                "`{}` was recorded as {} but the suggestion decides {}",
                crate::describe::action(observation.action.action()),
                observation.decision.as_str(),
                decided.as_str()
            )));
        }
        add(&observation.action, decided);
    }
    let mut now_allowed: BTreeMap<String, usize> = BTreeMap::new();
    for observation in denied {
        let decided = engine.decide_fresh(&observation.action).verdict.decision;
        if decided != Decision::Deny {
            *now_allowed
                .entry(crate::describe::action(observation.action.action()))
                .or_default() += 1;
        }
        add(&observation.action, Decision::Deny);
    }
    suggestion.denied_now_allowed = now_allowed
        .into_iter()
        .map(|(action, count)| Dropped {
            action,
            count,
            why: "recorded as denied, and the suggestion does not deny it".into(),
        })
        .collect();
    // `policy test` prints each case's request after its name.
    suggestion.tests = cases
        .into_values()
        .map(|(mut case, count)| {
            case.name = format!("recorded {count} time{}", if count == 1 { "" } else { "s" });
            case
        })
        .collect();
    Ok(())
}

/// The request of a recorded action, as a test case writes it. A write's
/// content is not in the evidence (only its digest): the case gives its
/// mode and size. Environment values are left out (policies see only the
/// names), so none is copied out of the evidence.
pub fn spec_of(action: &CanonicalAction) -> RequestSpec {
    let base = RequestSpec {
        action: action.kind().as_str().to_owned(),
        ..RequestSpec::default()
    };
    let mut spec = base.canonicalised(action);
    match action.action() {
        Action::FileWrite { size, mode, .. } => {
            spec.mode = Some(mode.as_str().to_owned());
            if matches!(
                mode,
                kernel_core::WriteMode::CreateNew
                    | kernel_core::WriteMode::Overwrite
                    | kernel_core::WriteMode::Append
            ) {
                spec.size = Some(*size);
            }
        }
        Action::Exec(_) => {
            if let Some(env) = spec.env.as_mut() {
                env.values_mut().for_each(String::clear);
            }
        }
        _ => {}
    }
    spec
}

/// What verified evidence holds for a suggestion.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Every decision record, in order.
    pub observations: Vec<Observation>,
    /// The workspace of each session, in order.
    pub workspaces: Vec<String>,
    /// What `audit verify` found.
    pub report: kernel_core::AuditReport,
}

/// Verifies an evidence file as `audit verify` does (with `options`) and,
/// only if it is sound, reads its decisions out of the same bytes.
pub fn read_evidence(
    bytes: &[u8],
    options: &kernel_core::AuditOptions<'_>,
) -> Result<Evidence, kernel_core::LogError> {
    let report = kernel_core::audit(bytes, options)?;
    let mut evidence = observe(bytes);
    evidence.report = report;
    Ok(evidence)
}

/// The decisions and workspaces in evidence `bytes`, decoded without
/// checking anything: only for bytes that were verified (a segment that
/// passed [`kernel_core::SegmentedAudit`], say). Its report is empty.
pub fn observe(bytes: &[u8]) -> Evidence {
    use kernel_core::{
        EncodedRequest, Event, Record, decode_receipt_body_unverified, decode_record,
    };
    let mut evidence = Evidence::default();
    // Sound: every record decodes and is authentic, so decoding without
    // checking again reads exactly what was verified.
    for body in kernel_core::split_records_prefix(bytes).0 {
        match decode_record(body) {
            Ok(Record::Event(signed)) => {
                if let Ok(Event::SessionStart { workspace, .. }) = signed.decode_unverified() {
                    evidence.workspaces.push(workspace);
                }
            }
            Ok(Record::Decision { request, receipt }) => {
                let (Ok(request), Ok(body)) = (
                    EncodedRequest::decode(&request),
                    decode_receipt_body_unverified(&receipt.body),
                ) else {
                    continue;
                };
                evidence.observations.push(Observation {
                    action: request.request().action.clone(),
                    decision: body.decision,
                    reasons: body.reasons,
                });
            }
            _ => {}
        }
    }
    evidence
}

/// The `policy test` file for `cases`, naming `policy`, in `workspace`,
/// with `protect` protected. One file, whatever its size: see
/// [`tests_files`] for files `policy test` accepts.
pub fn tests_file(
    cases: &[TestCase],
    policy: &str,
    workspace: &str,
    protect: &[String],
    header: &[String],
) -> String {
    let mut out = tests_preamble(policy, workspace, protect, header);
    for case in cases {
        out.push_str(&case_text(case));
    }
    out
}

/// The same cases as [`tests_file`], in as many files as the limits of
/// one test file ([`super::suite::MAX_TEST_FILE_BYTES`],
/// [`super::suite::MAX_CASES`]) need, each with the same header and
/// environment, in the order of `cases`. Never empty.
pub fn tests_files(
    cases: &[TestCase],
    policy: &str,
    workspace: &str,
    protect: &[String],
    header: &[String],
) -> Vec<String> {
    let preamble = tests_preamble(policy, workspace, protect, header);
    split_cases(
        cases,
        &preamble,
        super::suite::MAX_CASES,
        super::suite::MAX_TEST_FILE_BYTES,
    )
}

/// `cases` after `preamble` in files of at most `max_cases` cases and
/// `max_bytes` bytes (a single case longer than that alone in its file).
fn split_cases(
    cases: &[TestCase],
    preamble: &str,
    max_cases: usize,
    max_bytes: usize,
) -> Vec<String> {
    let mut files = vec![preamble.to_owned()];
    let mut in_file = 0;
    for case in cases {
        let text = case_text(case);
        if text.is_empty() {
            continue;
        }
        let full = files
            .last()
            .is_some_and(|file| in_file >= max_cases || file.len() + text.len() > max_bytes);
        if full && in_file > 0 {
            files.push(preamble.to_owned());
            in_file = 0;
        }
        if let Some(file) = files.last_mut() {
            file.push_str(&text);
        }
        in_file += 1;
    }
    files
}

/// A test file's header comment, `policies` and `[environment]`.
fn tests_preamble(policy: &str, workspace: &str, protect: &[String], header: &[String]) -> String {
    let mut out = String::new();
    comment(&mut out, "#", header);
    let _ = writeln!(out, "policies = [{}]\n", toml_string(policy));
    let _ = writeln!(out, "[environment]");
    let _ = writeln!(out, "workspace = {}", toml_string(workspace));
    let protect: Vec<String> = protect.iter().map(|p| toml_string(p)).collect();
    let _ = writeln!(out, "protect = [{}]", protect.join(", "));
    out
}

/// One `[[case]]` table, or nothing for a request a test file cannot
/// state.
fn case_text(case: &TestCase) -> String {
    let mut out = String::new();
    let Some(fields) = case.request.toml_fields() else {
        return out;
    };
    let _ = writeln!(out, "\n[[case]]\nname = {}", toml_string(&case.name));
    for field in fields {
        let _ = writeln!(out, "{field}");
    }
    let _ = writeln!(out, "expect = {}", toml_string(case.expect.as_str()));
    out
}

/// Why a policy text cannot be split into its policies ([`split_policies`]).
#[derive(Debug, thiserror::Error)]
#[error("`{name}`: {source}")]
pub struct SplitError {
    /// The name the text was given.
    pub name: String,
    /// Cedar's parse errors (boxed: they are large).
    #[source]
    pub source: Box<cedar_policy::ParseErrors>,
}

/// The policies of `text`, each as written, with an `@id` put before any
/// that has none (`<name>#<n>`, as the loader would name it), so that each
/// keeps its id when others are left out.
pub fn split_policies(name: &str, text: &str) -> Result<Vec<(String, String)>, SplitError> {
    let set = PolicySet::from_str(text).map_err(|source| SplitError {
        name: name.to_owned(),
        source: Box::new(source),
    })?;
    let mut policies: Vec<(usize, String, String)> = set
        .policies()
        .map(|policy| {
            // The parser numbers policies `policy0`, `policy1`, ... in the
            // order of the text.
            let position = policy
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let written = policy.to_string();
            match policy.annotation("id") {
                Some(id) => (position, id.to_owned(), written),
                None => {
                    let id = format!("{name}#{position}");
                    let text = format!("@id({})\n{written}", cedar_string(&id));
                    (position, id, text)
                }
            }
        })
        .collect();
    policies.sort_by_key(|(position, _, _)| *position);
    Ok(policies
        .into_iter()
        .map(|(_, id, text)| (id, text))
        .collect())
}

/// What the widening check found.
#[cfg(feature = "symbolic")]
#[derive(Debug, Clone)]
pub struct Widening {
    /// Permits that allow a request of a class no record exercised: their
    /// ids, and the analyser's counterexample, decided again by the real
    /// decision path.
    pub wider: Vec<(Vec<String>, super::diff::Finding)>,
    /// Why the answer is incomplete, when it is.
    pub open: Vec<String>,
}

#[cfg(feature = "symbolic")]
impl Widening {
    /// Whether every permit was shown to stay within the classes
    /// exercised.
    pub fn proven_within(&self) -> bool {
        self.wider.is_empty() && self.open.is_empty()
    }
}

/// Asks the symbolic analysis whether the policy `text` allows a request
/// of a class that no record exercised: `text` is compared with the
/// `envelope` of exercised classes plus the base's `forbids` (so what the
/// base forbids is not counted). Each permit found wider is left out and
/// the question asked again, until no permit is or the answer is open.
#[cfg(feature = "symbolic")]
pub fn widening(
    text: &str,
    envelope: &str,
    forbids: &[String],
    options: &super::diff::DiffOptions,
) -> Result<Widening, super::diff::DiffError> {
    use super::diff::diff;
    let mut old = envelope.to_owned();
    for forbid in forbids {
        old.push_str(forbid);
        old.push('\n');
    }
    let old = [("exercised".to_owned(), old)];
    let mut policies = split_policies("suggestion", text)?;
    let mut result = Widening {
        wider: Vec::new(),
        open: Vec::new(),
    };
    loop {
        let joined: Vec<&str> = policies.iter().map(|(_, t)| t.as_str()).collect();
        let new = [("suggestion".to_owned(), joined.join("\n\n"))];
        let report = diff(&old, &new, options)?;
        let mut found: Vec<String> = Vec::new();
        for action in report.actions {
            for finding in action.findings {
                let deciding: Vec<String> = finding
                    .new
                    .as_ref()
                    .map(|d| d.verdict.policies.clone())
                    .unwrap_or_default();
                if finding.confirmed && !deciding.is_empty() {
                    found.extend(deciding.iter().cloned());
                    result.wider.push((deciding, finding));
                } else {
                    result.open.push(format!(
                        "{}: a request the analysis found could not be decided again by the kernel ({})",
                        action.kind.as_str(),
                        finding.description
                    ));
                }
            }
            result.open.extend(
                action
                    .open
                    .iter()
                    .map(|o| format!("{}: {o}", action.kind.as_str())),
            );
        }
        let before = policies.len();
        policies.retain(|(id, _)| !found.contains(id));
        if found.is_empty() || policies.len() == before || !result.open.is_empty() {
            return Ok(result);
        }
    }
}

#[cfg(test)]
mod tests;
