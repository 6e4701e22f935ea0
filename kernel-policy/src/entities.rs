//! Turning a canonical action into a Cedar request and its entities.

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};
use kernel_core::{Action, CanonicalAction, canonical_path};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Why an [`Environment`] cannot be made: a path the kernel's canonical
/// form refuses (relative, a NUL byte, over the length limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// The workspace.
    #[error(transparent)]
    Workspace(kernel_core::ActionError),
    /// The workspace as its links resolve.
    #[error(transparent)]
    ResolvedWorkspace(kernel_core::ActionError),
    /// A protected path.
    #[error(transparent)]
    Asset(kernel_core::ActionError),
}

/// What policies are evaluated against besides the action: the agent's
/// workspace and the kernel's own assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    workspace: String,
    /// The workspace with symbolic links resolved, when that is another
    /// path ([`Environment::with_resolved_workspace`]).
    resolved_workspace: Option<String>,
    assets: Vec<String>,
}

impl Environment {
    /// `workspace` and every asset must be absolute; they are lexically
    /// normalised here. Callers should pass assets both as given and with
    /// symbolic links resolved.
    pub fn new(workspace: &str, assets: &[String]) -> Result<Self, EnvironmentError> {
        let mut assets = assets
            .iter()
            .map(|a| canonical_path(a, None).map_err(EnvironmentError::Asset))
            .collect::<Result<Vec<_>, _>>()?;
        assets.sort();
        assets.dedup();
        Ok(Self {
            workspace: canonical_path(workspace, None).map_err(EnvironmentError::Workspace)?,
            resolved_workspace: None,
            assets,
        })
    }

    /// Also counts paths beneath `resolved` (absolute: the workspace with
    /// symbolic links resolved) as in the workspace, so that a path
    /// decided where it leads is in the workspace when the workspace was
    /// named through a link. The workspace keeps its name as given.
    pub fn with_resolved_workspace(mut self, resolved: &str) -> Result<Self, EnvironmentError> {
        let resolved =
            canonical_path(resolved, None).map_err(EnvironmentError::ResolvedWorkspace)?;
        self.resolved_workspace = (resolved != self.workspace).then_some(resolved);
        Ok(self)
    }

    /// The workspace root.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// The protected assets.
    pub fn assets(&self) -> &[String] {
        &self.assets
    }

    /// Whether canonical `path` is the workspace or lies beneath it.
    pub(crate) fn in_workspace(&self, path: &str) -> bool {
        is_within(path, &self.workspace)
            || self
                .resolved_workspace
                .as_deref()
                .is_some_and(|resolved| is_within(path, resolved))
    }

    /// Whether `path` is an asset or lies beneath one.
    pub(crate) fn touches_asset(&self, path: &str) -> bool {
        self.assets.iter().any(|asset| is_within(path, asset))
    }

    /// Whether acting on `path` (possibly recursively) could reach an
    /// asset: it is one, lies beneath one, or contains one.
    pub(crate) fn reaches_asset(&self, path: &str) -> bool {
        self.assets
            .iter()
            .any(|asset| is_within(path, asset) || is_within(asset, path))
    }

    fn mentions_asset(&self, text: &str) -> bool {
        self.assets
            .iter()
            .any(|asset| text.contains(asset.as_str()))
    }
}

/// Most directories [`link_directories`] gives; beyond, the floor takes
/// every relative argument as reaching an asset (a program given that
/// many target directories is refused, not checked for minutes).
const MAX_LINK_DIRECTORIES: usize = 64;

/// The short options of GNU `ln`, `cp`, `mv` and `install` (and BusyBox's)
/// that take no argument: in one word, `t` after any of them is `-t` (its
/// directory the rest of the word, or the next word). After any other
/// letter it is not: these programs refuse a letter they do not know, and
/// the rest of the word after `-S`, `-g`, `-m` or `-o` is that option's
/// argument.
const FLAG_LETTERS: &str = "abcCdDfFHilLnpPrRsTuvxZ";

/// The directory that `arg` names as a target directory, the way the
/// option parser of `ln`, `cp`, `mv` and `install` reads it: `Some(None)`
/// when it is the next word.
fn target_directory(arg: &str) -> Option<Option<&str>> {
    if let Some(long) = arg.strip_prefix("--") {
        // getopt_long takes any unambiguous prefix: `--target=DIR` and
        // `--t DIR` are `--target-directory`.
        let (name, value) = long
            .split_once('=')
            .map_or((long, None), |(n, v)| (n, Some(v)));
        (!name.is_empty() && "target-directory".starts_with(name)).then_some(value)
    } else {
        let cluster = arg.strip_prefix('-')?;
        let rest = cluster
            .trim_start_matches(|c: char| FLAG_LETTERS.contains(c))
            .strip_prefix('t')?;
        Some((!rest.is_empty()).then_some(rest))
    }
}

/// Where a program given `args` in `cwd` may make a symbolic link whose
/// target is one of the other arguments: the directory of its last
/// argument (`ln -s TARGET DIR/LINK`), that argument itself (`ln -s
/// TARGET... DIR`), and each target directory named as the option parser
/// of `ln`, `cp` and the like reads one ([`target_directory`]: `-t DIR`,
/// `-tDIR`, `-st DIR`, `--target-directory=DIR`, `--target DIR`).
/// Whatever the program: the floor does not know which programs make
/// links, and wrappers (`env`, `xargs`, `timeout`) pass these options on.
/// A name that can only be a directory (a target directory, or one ending
/// in `/`, `.` or `..`: no link can be called `.`) holds the link, so its
/// own directory is not one. `None` when there are more than
/// [`MAX_LINK_DIRECTORIES`].
pub(crate) fn link_directories(args: &[String], cwd: &str) -> Option<Vec<String>> {
    let only_a_directory =
        |name: &str| name.ends_with('/') || matches!(name.rsplit('/').next(), Some("." | ".."));
    // Each name, and whether it can only be a directory.
    let mut named: Vec<(&str, bool)> = Vec::new();
    if let Some(last) = args.iter().rev().find(|arg| !arg.is_empty()) {
        named.push((last, only_a_directory(last)));
    }
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match target_directory(arg) {
            Some(Some(dir)) => named.push((dir, true)),
            Some(None) => named.extend(args.next().map(|dir| (dir.as_str(), true))),
            None => {}
        }
    }
    let mut dirs = Vec::new();
    for (name, directory) in named.into_iter().filter(|(name, _)| !name.is_empty()) {
        let Ok(path) = canonical_path(name, Some(cwd)) else {
            continue;
        };
        if !directory && let Some((parent, _)) = path.rsplit_once('/') {
            dirs.push(if parent.is_empty() { "/" } else { parent }.to_owned());
        }
        dirs.push(path);
    }
    dirs.sort();
    dirs.dedup();
    (dirs.len() <= MAX_LINK_DIRECTORIES).then_some(dirs)
}

/// Whether canonical `path` equals `root` or lies beneath it.
pub(crate) fn is_within(path: &str, root: &str) -> bool {
    if root == "/" {
        return true;
    }
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every entity type the kernel builds. Parsing a type name runs Cedar's
/// parser (microseconds, several times per request), so each is parsed
/// once.
const ENTITY_TYPES: [&str; 9] = [
    "Action",
    "Agent",
    "CustomKind",
    "File",
    "Host",
    "McpMethod",
    "Program",
    "Tool",
    "Workspace",
];

static PARSED_TYPES: std::sync::LazyLock<HashMap<&'static str, EntityTypeName>> =
    std::sync::LazyLock::new(|| {
        ENTITY_TYPES
            .iter()
            .filter_map(|&kind| Some((kind, EntityTypeName::from_str(kind).ok()?)))
            .collect()
    });

/// Why the Cedar request of an action could not be built
/// ([`crate::PolicyEngine::view`]). When deciding, such an action is a
/// failed evaluation, which denies (its text is the failure's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestBuildError {
    /// An `exec` without a working directory (a canonical action always
    /// has one).
    #[error("exec without a working directory")]
    ExecWithoutCwd,
    /// A number of the action beyond what a policy integer (64-bit
    /// signed) holds.
    #[error("value {0} does not fit a policy integer")]
    TooLarge(u64),
    /// The URL of an `http` action does not parse.
    #[error("{0}")]
    Url(#[from] url::ParseError),
    /// The URL of an `http` action names no host.
    #[error("url without a host")]
    UrlWithoutHost,
    /// The URL of an `http` action has no port and its scheme no default.
    #[error("url without a port")]
    UrlWithoutPort,
    /// A tool call's or MCP request's canonical JSON does not read again
    /// as strict JSON.
    #[error("{0}")]
    Json(String),
    /// Cedar refused what the kernel built (an entity, the context, the
    /// entity set or the request, with Cedar's message): the kernel's
    /// mapping and Cedar disagree, so nothing is decided by it.
    #[error("{0}")]
    Cedar(String),
}

/// [`RequestBuildError::Cedar`] with `error`'s message.
fn cedar(error: impl std::fmt::Display) -> RequestBuildError {
    RequestBuildError::Cedar(error.to_string())
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, RequestBuildError> {
    let kind = match PARSED_TYPES.get(kind) {
        Some(parsed) => parsed.clone(),
        None => EntityTypeName::from_str(kind).map_err(cedar)?,
    };
    Ok(EntityUid::from_type_name_and_id(kind, EntityId::new(id)))
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn long(value: u64) -> Result<RestrictedExpression, RequestBuildError> {
    i64::try_from(value)
        .map(RestrictedExpression::new_long)
        .map_err(|_| RequestBuildError::TooLarge(value))
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A request's context, by name.
type ContextPairs = Vec<(String, RestrictedExpression)>;

struct Built {
    action: &'static str,
    resource: Entity,
    context: ContextPairs,
    /// Why `context.args` is absent from a `tool_call`'s or MCP request's
    /// context, when it is.
    args_absent: Option<String>,
}

/// The actions whose context has `args`, a record of the shape of their
/// JSON input, which the schema declares without attributes.
const ACTIONS_WITH_ARGS: [&str; 3] = ["tool_call", "mcp_request", "mcp_server_request"];

/// A tool's arguments as a Cedar value, when Cedar can hold them exactly:
/// an object becomes a record (every key as it is: any string is a Cedar
/// attribute name, reached with `has "k"` and `["k"]` when it is not an
/// identifier), a string a `String`, a boolean a `Bool`, an integer in
/// the 64-bit signed range a `Long`, and an array whose elements are all
/// different a `Set` (its order is not kept). Anything else has no exact
/// Cedar form: a number with a fraction or exponent or beyond the `Long`
/// range, `null`, and an array that repeats an element; the error names
/// the place. Pure data in, no entity references or extension values out,
/// so no argument can pass for something the kernel built.
pub(super) fn cedar_value(
    value: &serde_json::Value,
    path: &mut String,
) -> Result<RestrictedExpression, String> {
    use serde_json::Value;
    let place = |path: &str| {
        if path.is_empty() {
            "the arguments".to_owned()
        } else {
            format!("`{path}`")
        }
    };
    Ok(match value {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(text) => string(text),
        Value::Number(number) => match number.as_i64() {
            Some(n) if number.is_i64() || number.is_u64() => RestrictedExpression::new_long(n),
            _ => {
                return Err(format!(
                    "{} is the number {number}, which is not an integer a policy can hold",
                    place(path)
                ));
            }
        },
        Value::Null => return Err(format!("{} is null", place(path))),
        Value::Array(items) => {
            let mut seen = HashSet::new();
            let mut set = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                if !seen.insert(item.to_string()) {
                    let error = format!("{} repeats an earlier element", place(path));
                    return Err(error);
                }
                let converted = cedar_value(item, path);
                path.truncate(len);
                set.push(converted?);
            }
            RestrictedExpression::new_set(set)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, item) in map {
                let len = path.len();
                if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                } else {
                    path.push_str(&format!("[{}]", serde_json::Value::String(key.clone())));
                }
                let converted = cedar_value(item, path);
                path.truncate(len);
                fields.push((key.clone(), converted?));
            }
            RestrictedExpression::new_record(fields).map_err(|e| e.to_string())?
        }
    })
}

/// `context.args` of a tool call whose canonical input is `input` (or of
/// an MCP request whose parameters are `input`): the record, or why there
/// is none.
fn tool_args(input: &serde_json::Value) -> Result<RestrictedExpression, String> {
    if !input.is_object() {
        return Err("the input is not a JSON object".into());
    }
    cedar_value(input, &mut String::new())
}

/// The context of an action with a JSON input (canonical text `text`):
/// the text as `text_name`, `args` when Cedar can hold the input exactly
/// (else why not), and `kernel_asset` when the text or any string in it
/// names an asset.
fn json_context(
    text_name: &str,
    text: &str,
    env: &Environment,
) -> Result<(ContextPairs, Option<String>), RequestBuildError> {
    // The canonical text is strict JSON already; read it again the same
    // way.
    let parsed = kernel_core::json::parse_strict(text)
        .map_err(|e| RequestBuildError::Json(e.to_string()))?;
    let mut texts = Vec::new();
    strings(&parsed, &mut texts);
    let kernel_asset = env.mentions_asset(text) || texts.iter().any(|t| env.mentions_asset(t));
    let mut context = vec![
        (text_name.to_owned(), string(text)),
        (
            "kernel_asset".to_owned(),
            RestrictedExpression::new_bool(kernel_asset),
        ),
    ];
    let args_absent = match tool_args(&parsed) {
        Ok(args) => {
            context.push(("args".to_owned(), args));
            None
        }
        Err(why) => Some(why),
    };
    Ok((context, args_absent))
}

/// Every string in `value`, keys included.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                out.push(key.clone());
                strings(item, out);
            }
        }
        _ => {}
    }
}

fn file_entity(path: &str, env: &Environment) -> Result<Entity, RequestBuildError> {
    let name = last_component(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or_default();
    let attrs = HashMap::from([
        ("path".to_owned(), string(path)),
        ("name".to_owned(), string(name)),
        ("extension".to_owned(), string(extension)),
    ]);
    let mut parents = HashSet::new();
    if env.in_workspace(path) {
        parents.insert(uid("Workspace", "root")?);
    }
    Entity::new(uid("File", path)?, attrs, parents).map_err(cedar)
}

fn named_entity(kind: &str, name: &str) -> Result<Entity, RequestBuildError> {
    let attrs = HashMap::from([("name".to_owned(), string(name))]);
    Entity::new(uid(kind, name)?, attrs, HashSet::new()).map_err(cedar)
}

fn build_parts(action: &CanonicalAction, env: &Environment) -> Result<Built, RequestBuildError> {
    let flag = |value: bool| {
        (
            "kernel_asset".to_owned(),
            RestrictedExpression::new_bool(value),
        )
    };
    Ok(match action.action() {
        Action::Exec(exec) => {
            let cwd = exec
                .cwd
                .as_deref()
                .ok_or(RequestBuildError::ExecWithoutCwd)?;
            let program = &exec.program;
            // Any argument may be a path (relative to cwd, or after `=`)
            // that a program acts on recursively: the floor treats each as
            // such. Conservative on purpose; confinement is the real guard.
            // A relative argument may also be the target of a symbolic
            // link the program makes (`ln -s ../../.claude a/b/c`), which
            // leads from the link's directory, not from cwd: the floor
            // reads each relative argument from there too.
            let link_dirs = link_directories(&exec.args, cwd);
            let argument_reaches = |arg: &str| {
                let candidates = [Some(arg), arg.split_once('=').map(|(_, v)| v)];
                candidates.into_iter().flatten().any(|candidate| {
                    !candidate.is_empty()
                        && (canonical_path(candidate, Some(cwd))
                            .is_ok_and(|path| env.reaches_asset(&path))
                            || (!candidate.starts_with('/')
                                && link_dirs.as_ref().is_none_or(|dirs| {
                                    dirs.iter().any(|dir| {
                                        canonical_path(candidate, Some(dir))
                                            .is_ok_and(|path| env.reaches_asset(&path))
                                    })
                                })))
                }) || env.mentions_asset(arg)
            };
            let kernel_asset = env.touches_asset(program)
                || exec.args.iter().any(|arg| argument_reaches(arg))
                || exec.env.iter().any(|(_, value)| env.mentions_asset(value));
            let mut parents = HashSet::new();
            if env.in_workspace(program) {
                parents.insert(uid("Workspace", "root")?);
            }
            let resource = Entity::new(
                uid("Program", program)?,
                HashMap::from([
                    ("path".to_owned(), string(program)),
                    ("name".to_owned(), string(last_component(program))),
                ]),
                parents,
            )
            .map_err(cedar)?;
            let command_line = std::iter::once(program.as_str())
                .chain(exec.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            Built {
                action: "exec",
                resource,
                context: vec![
                    (
                        "args".to_owned(),
                        RestrictedExpression::new_set(exec.args.iter().map(|a| string(a))),
                    ),
                    (
                        "argc".to_owned(),
                        long(u64::try_from(exec.args.len()).unwrap_or(u64::MAX))?,
                    ),
                    ("command_line".to_owned(), string(&command_line)),
                    ("cwd".to_owned(), string(cwd)),
                    (
                        "cwd_in_workspace".to_owned(),
                        RestrictedExpression::new_bool(env.in_workspace(cwd)),
                    ),
                    (
                        "env_names".to_owned(),
                        RestrictedExpression::new_set(exec.env.iter().map(|(n, _)| string(n))),
                    ),
                    flag(kernel_asset),
                ],
                args_absent: None,
            }
        }
        Action::FileRead { path } => Built {
            action: "file_read",
            resource: file_entity(path, env)?,
            context: vec![flag(env.touches_asset(path))],
            args_absent: None,
        },
        Action::FileWrite {
            path,
            content_sha256,
            size,
            mode,
        } => Built {
            action: "file_write",
            resource: file_entity(path, env)?,
            context: vec![
                ("mode".to_owned(), string(mode.as_str())),
                ("size".to_owned(), long(*size)?),
                (
                    "content_sha256".to_owned(),
                    string(&content_sha256.to_hex()),
                ),
                flag(env.reaches_asset(path)),
            ],
            args_absent: None,
        },
        Action::FileDelete { path } => Built {
            action: "file_delete",
            resource: file_entity(path, env)?,
            context: vec![flag(env.reaches_asset(path))],
            args_absent: None,
        },
        Action::NetConnect { host, port } => Built {
            action: "net_connect",
            resource: named_entity("Host", host)?,
            context: vec![("port".to_owned(), long(u64::from(*port))?), flag(false)],
            args_absent: None,
        },
        Action::Http { method, url } => {
            let parsed = url::Url::parse(url)?;
            let host = parsed.host_str().ok_or(RequestBuildError::UrlWithoutHost)?;
            let port = parsed
                .port_or_known_default()
                .ok_or(RequestBuildError::UrlWithoutPort)?;
            Built {
                action: "http",
                resource: named_entity("Host", host)?,
                context: vec![
                    ("method".to_owned(), string(method)),
                    ("url".to_owned(), string(url)),
                    ("scheme".to_owned(), string(parsed.scheme())),
                    ("port".to_owned(), long(u64::from(port))?),
                    ("path".to_owned(), string(parsed.path())),
                    flag(env.mentions_asset(url)),
                ],
                args_absent: None,
            }
        }
        Action::ToolCall { name, input } => {
            let (context, args_absent) = json_context("input", input, env)?;
            Built {
                action: "tool_call",
                resource: named_entity("Tool", name)?,
                context,
                args_absent,
            }
        }
        Action::McpRequest { method, params, .. } => {
            let (context, args_absent) = json_context("params", params, env)?;
            Built {
                action: action.kind().as_str(),
                resource: named_entity("McpMethod", method)?,
                context,
                args_absent,
            }
        }
        Action::Custom { kind, payload } => Built {
            action: "custom",
            resource: named_entity("CustomKind", kind)?,
            context: vec![
                ("payload".to_owned(), string(payload)),
                flag(env.mentions_asset(payload)),
            ],
            args_absent: None,
        },
    })
}

/// What policies see of one request: the resource entity and the context,
/// each value shown in Cedar's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// The Cedar action id, such as `file_read`.
    pub action: &'static str,
    /// The resource's entity uid, such as `File::"/ws/a.txt"`.
    pub resource: String,
    /// Whether the resource is in `Workspace::"root"`.
    pub in_workspace: bool,
    /// The resource's attributes, by name.
    pub attributes: Vec<(String, String)>,
    /// The context, by name.
    pub context: Vec<(String, String)>,
}

impl RequestView {
    /// The value of `context.kernel_asset`: whether the floor applies.
    pub fn kernel_asset(&self) -> bool {
        self.context
            .iter()
            .any(|(name, value)| name == "kernel_asset" && value == "true")
    }
}

/// The [`RequestView`] of `action`: built by the same function that builds
/// the request Cedar evaluates.
pub(super) fn view(
    action: &CanonicalAction,
    env: &Environment,
) -> Result<RequestView, RequestBuildError> {
    let built = build_parts(action, env)?;
    let workspace = uid("Workspace", "root")?;
    let missing = || "(missing)".to_owned();
    let attributes = ["path", "name", "extension"]
        .into_iter()
        .filter_map(|name| {
            let value = built.resource.attr(name)?;
            Some((
                name.to_owned(),
                value.map_or_else(|_| missing(), |v| v.to_string()),
            ))
        })
        .collect();
    let names: Vec<String> = built.context.iter().map(|(n, _)| n.clone()).collect();
    let context = Context::from_pairs(built.context).map_err(cedar)?;
    let resource = built.resource.uid().to_string();
    let (_, _, parents) = built.resource.into_inner();
    let mut shown: Vec<(String, String)> = names
        .into_iter()
        .map(|name| {
            let value = context.get(&name).map_or_else(missing, |v| v.to_string());
            (name, value)
        })
        .collect();
    if let Some(why) = built.args_absent {
        shown.push((
            "args".to_owned(),
            format!("(absent: {why}; a policy that reads it fails to evaluate, which denies)"),
        ));
    }
    Ok(RequestView {
        action: built.action,
        resource,
        in_workspace: parents.contains(&workspace),
        attributes,
        context: shown,
    })
}

/// Builds the Cedar request and entity set for `action`. The request is
/// validated against the schema; the entities are not (validating them,
/// and adding the schema's action entities, was half the cost of an
/// evaluation): they are built here, by code whose every output conforms
/// to the schema, which `tests::every_built_entity_set_conforms_to_the_schema`
/// checks for every kind of action. The schema declares no action groups,
/// so the action entities it would add change no decision. Any failure is
/// returned and becomes a denial.
pub(super) fn build(
    action: &CanonicalAction,
    env: &Environment,
    schema: &Schema,
) -> Result<(cedar_policy::Request, Entities), RequestBuildError> {
    let (request, entities) = build_unvalidated(action, env, schema)?;
    let entities = Entities::from_entities(entities, None).map_err(cedar)?;
    Ok((request, entities))
}

/// The request (validated) and the entities (not yet) of `action`.
fn build_unvalidated(
    action: &CanonicalAction,
    env: &Environment,
    schema: &Schema,
) -> Result<(cedar_policy::Request, [Entity; 3]), RequestBuildError> {
    let built = build_parts(action, env)?;
    let principal = uid("Agent", "agent")?;
    let resource_uid = built.resource.uid();
    let action_uid = uid("Action", built.action)?;
    let request = if ACTIONS_WITH_ARGS.contains(&built.action) {
        // `context.args` has the shape of the tool's arguments, which the
        // schema cannot declare (it says `{}`): everything else is checked
        // against the schema with an empty record in its place, and the
        // request evaluated is built from the real context unchecked.
        // Cedar evaluates dynamically: a policy that reads an attribute the
        // arguments lack, or compares values of different types in a way
        // that fails, fails to evaluate, and the kernel denies.
        let checked: Vec<(String, RestrictedExpression)> = built
            .context
            .iter()
            .filter(|(name, _)| name != "args")
            .cloned()
            .chain(std::iter::once((
                "args".to_owned(),
                RestrictedExpression::new_record(std::iter::empty()).map_err(cedar)?,
            )))
            .collect();
        let checked = Context::from_pairs(checked).map_err(cedar)?;
        cedar_policy::Request::new(
            principal.clone(),
            action_uid.clone(),
            resource_uid.clone(),
            checked,
            Some(schema),
        )
        .map_err(cedar)?;
        let context = Context::from_pairs(built.context).map_err(cedar)?;
        cedar_policy::Request::new(principal.clone(), action_uid, resource_uid, context, None)
            .map_err(cedar)?
    } else {
        let context = Context::from_pairs(built.context).map_err(cedar)?;
        cedar_policy::Request::new(
            principal.clone(),
            action_uid,
            resource_uid,
            context,
            Some(schema),
        )
        .map_err(cedar)?
    };
    let entities = [
        Entity::new_no_attrs(principal, HashSet::new()),
        Entity::new_no_attrs(uid("Workspace", "root")?, HashSet::new()),
        built.resource,
    ];
    Ok((request, entities))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use kernel_core::{Exec, WriteMode};
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::from_cedarschema_str(include_str!("schema.cedarschema"))
            .map(|(schema, _)| schema)
            .unwrap()
    }

    /// Paths inside and outside the workspace, on and beside an asset.
    fn path() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "/ws/a.txt",
            "/ws",
            "/ws/deep/er/file",
            "/etc/passwd",
            "/state/kernel.key",
            "/state",
            "/",
            "/ws/no-extension",
            "/ws/.hidden",
            "/ws/odd \"name\".txt",
        ])
        .prop_map(str::to_owned)
    }

    fn action() -> impl Strategy<Value = Action> {
        let text = "[a-z/=. -]{0,12}";
        prop_oneof![
            path().prop_map(Action::file_read),
            (path(), any::<u64>(), any::<bool>()).prop_map(|(path, size, append)| {
                Action::FileWrite {
                    path,
                    content_sha256: kernel_core::Digest::of_content(b"x"),
                    size,
                    mode: if append {
                        WriteMode::Append
                    } else {
                        WriteMode::Overwrite
                    },
                }
            }),
            path().prop_map(|path| Action::FileDelete { path }),
            (
                path(),
                prop::collection::vec(text, 0..4),
                prop::collection::vec((text, text), 0..3)
            )
                .prop_map(|(program, args, env)| {
                    let mut exec = Exec::new(program).args(args).cwd("/ws");
                    exec.env = env;
                    Action::exec(exec)
                }),
            ("[a-z]{1,8}\\.example", any::<u16>())
                .prop_map(|(host, port)| Action::NetConnect { host, port }),
            (
                "GET|POST",
                "https?://[a-z]{1,8}\\.example(:[0-9]{1,4})?/[a-z/]{0,8}"
            )
                .prop_map(|(method, url)| Action::Http { method, url }),
            ("[a-z_]{1,8}", text).prop_map(|(name, input)| Action::ToolCall { name, input }),
            ("[a-z_]{1,8}", text).prop_map(|(kind, payload)| Action::Custom { kind, payload }),
            (any::<bool>(), "[a-z/]{1,8}", text).prop_map(|(server, method, params)| {
                let from = if server {
                    kernel_core::McpPeer::Server
                } else {
                    kernel_core::McpPeer::Agent
                };
                Action::McpRequest {
                    from,
                    method,
                    params: format!("{{\"p\":{params:?}}}"),
                }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// What evaluation skips is checked here: the entities built for
        /// any action pass Cedar's schema conformance check.
        #[test]
        fn every_built_entity_set_conforms_to_the_schema(action in action()) {
            let env = Environment::new("/ws", &["/state/kernel.key".into()]).unwrap();
            let schema = schema();
            let Ok(action) = CanonicalAction::new(action, Some("/ws")) else {
                return Ok(());
            };
            // A request that cannot be built is denied; only built ones
            // reach Cedar.
            let Ok((_, entities)) = build_unvalidated(&action, &env, &schema) else {
                return Ok(());
            };
            prop_assert!(
                Entities::from_entities(entities, Some(&schema)).is_ok(),
                "{:?} builds entities the schema refuses", action
            );
        }
    }

    /// The check above can fail: an entity the schema does not describe is
    /// refused by it.
    #[test]
    fn the_conformance_check_refuses_a_stray_attribute() {
        let schema = schema();
        let stray = Entity::new(
            uid("File", "/ws/a").unwrap(),
            HashMap::from([("owner".to_owned(), string("root"))]),
            HashSet::new(),
        )
        .unwrap();
        assert!(Entities::from_entities([stray], Some(&schema)).is_err());
    }

    #[test]
    fn every_entity_type_is_parsed_once_and_matches_the_schema() {
        assert_eq!(PARSED_TYPES.len(), ENTITY_TYPES.len());
        let schema = include_str!("schema.cedarschema");
        for kind in ENTITY_TYPES.iter().filter(|&&kind| kind != "Action") {
            assert!(
                schema.contains(&format!("entity {kind}")),
                "`{kind}` is not an entity type of the schema"
            );
            assert_eq!(
                uid(kind, "x").map(|u| u.type_name().to_string()),
                Ok((*kind).to_owned())
            );
        }
    }
}
