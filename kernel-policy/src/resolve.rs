//! Where a path named to the decision endpoint leads, so that a file
//! action is decided on the file it reaches and not on the text that
//! names it.
//!
//! A client of the endpoint (a hook, `kernel-enforcer ask`, the MCP
//! proxy) does not perform the effect under the enforcer's eyes: the
//! agent does, afterwards, through the kernel's path lookup, which
//! follows symbolic links. A write of `a/b/c/settings.json` where
//! `a/b/c` is a link to `../../.claude` writes `.claude/settings.json`;
//! deciding the text `a/b/c/settings.json` would decide another file. So
//! the path is resolved **physically**, the way the kernel resolves it:
//! component by component, a link's target read and resolved from the
//! link's own directory, `..` applied to where a link led, at most
//! [`MAX_LINKS`] links. The last component is followed for a read and a
//! write (an open follows links) and not for a delete (`rm link` removes
//! the link) or for a new name ([`WriteMode::Symlink`],
//! [`WriteMode::HardLink`]).
//!
//! As far as the path exists: a name that does not exist yet (a file to
//! be created, directories a tool creates on the way) is kept as written,
//! and so is everything after it, except that `..` back out of it resumes
//! the resolution where it came back to.
//!
//! Refused (fail closed), never decided as written: a loop or more than
//! [`MAX_LINKS`] links, a component that may not be searched, a
//! component that is not a directory, a link target that is not UTF-8,
//! and a path that goes through one of a process's links in `/proc`
//! (`/proc/self/cwd`, `/proc/self/root`, below `/proc/self/fd/N`): those
//! lead wherever the process that opens them stands, which is not the
//! process that asks. Below `/proc` nothing else is followed (its links
//! name the resolving process's own objects): a path there is decided as
//! written.
//!
//! Two places resolve, with the same function ([`physical`]):
//! - the client, before it asks ([`request_path`]), on the path as the
//!   tool received it, before any `..` is applied lexically (lexical
//!   normalisation, which canonical actions carry, would apply a `..`
//!   after a link to the link's name instead of to where it leads). Where
//!   the two readings differ (a `..` after a link), the client refuses
//!   rather than guess which one the tool will use: the kernel's
//!   (`open`) or a shell's (`cd`, which applies `..` to the name);
//! - the enforcer, when it receives the request ([`check`]): a path that
//!   does not resolve to itself (it leads through a link, or cannot be
//!   resolved) is denied with the reason. So the receipt always names
//!   the file that was decided, and a client that does not resolve, or
//!   resolves wrongly, gets a denial, never an allow for a file it did
//!   not name. For a program's arguments the enforcer adds the floor's
//!   check of where each one leads.
//!
//! The enforcer's governed mode resolves the agent's own system calls with
//! a resolution of its own, which reads the agent's `/proc/self` and
//! fails on a missing directory (the call itself would); this one
//! runs in the enforcer's own view of the same file system, which for
//! `listen` is the same machine and user as the agent's.
//!
//! What it cannot do: the agent acts after the decision, so a link
//! changed between the decision and the tool's run is not seen here (the
//! governed mode opens the file itself and closes that window).
//!
//! [`WriteMode::Symlink`]: kernel_core::WriteMode::Symlink
//! [`WriteMode::HardLink`]: kernel_core::WriteMode::HardLink

use crate::Environment;
use kernel_core::{Action, CanonicalAction, Evaluation, MatchedForbid, WriteMode, canonical_path};
use std::path::{Path, PathBuf};

/// The most symbolic links one resolution follows (the kernel's limit).
pub const MAX_LINKS: usize = 40;

/// Why a path cannot be resolved: it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve `{path}`: {why}")]
pub struct Unresolved {
    /// The path, as given.
    pub path: String,
    /// What stopped the resolution.
    pub why: String,
}

/// Why a client's path cannot be named in a request ([`request_path`],
/// [`request_action`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestPathError {
    /// A relative path with no directory to resolve it against.
    #[error("`{0}` is relative and there is no directory to resolve it against")]
    Relative(String),
    /// The path does not resolve.
    #[error(transparent)]
    Unresolved(#[from] Unresolved),
    /// The path is not one the kernel accepts (NUL byte, too long, ...).
    #[error(transparent)]
    Invalid(#[from] kernel_core::ActionError),
    /// `..` after a symbolic link: the path leads elsewhere than it reads.
    #[error(
        "`{path}` has `..` after a symbolic link: it leads to `{physically}` when opened, \
         and to `{lexically}` after a shell's `cd`; name the file without `..`"
    )]
    DotDotAfterLink {
        /// The path, as given.
        path: String,
        /// Where it leads when opened.
        physically: String,
        /// Where it leads after a shell's `cd`.
        lexically: String,
    },
}

/// `path` (absolute, as written: `.` and `..` not yet applied) resolved
/// physically as far as it exists; the last component's link followed
/// only if `follow_last`. See the [module](self) for what is refused.
pub fn physical(path: &str, follow_last: bool) -> Result<String, Unresolved> {
    let fail = |why: String| Unresolved {
        path: path.to_owned(),
        why,
    };
    if !path.starts_with('/') {
        return Err(fail("not an absolute path".into()));
    }
    let resolved = walk(PathBuf::from("/"), path, follow_last).map_err(fail)?;
    resolved
        .into_os_string()
        .into_string()
        .map_err(|_| fail("it leads to a name that is not UTF-8".into()))
}

/// The names of `path` that [`walk`] still has to take, last first.
fn pending_names(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|name| !name.is_empty() && *name != ".")
        .rev()
        .map(str::to_owned)
        .collect()
}

/// Resolves the names of `rest` (relative, or absolute to restart at `/`)
/// from `start`, a directory already resolved (no link, no `..`).
fn walk(start: PathBuf, rest: &str, follow_last: bool) -> Result<PathBuf, String> {
    let mut resolved = if rest.starts_with('/') {
        PathBuf::from("/")
    } else {
        start
    };
    let mut pending = pending_names(rest);
    // How many of `resolved`'s last names do not exist (kept as written).
    let mut missing = 0usize;
    let mut links = 0usize;
    while let Some(name) = pending.pop() {
        if name == ".." {
            missing = missing.saturating_sub(1);
            resolved.pop();
            continue;
        }
        if missing > 0 {
            resolved.push(&name);
            missing += 1;
            continue;
        }
        if resolved == Path::new("/proc") {
            return in_proc(name, pending);
        }
        let candidate = resolved.join(&name);
        let last = pending.is_empty();
        if last && !follow_last {
            return Ok(candidate);
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "more than {MAX_LINKS} symbolic links (a loop?) at `{}`",
                        candidate.display()
                    ));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| format!("cannot read the link `{}`: {e}", candidate.display()))?;
                let target = target.to_str().ok_or_else(|| {
                    format!(
                        "the link `{}` leads to a name that is not UTF-8",
                        candidate.display()
                    )
                })?;
                if target.is_empty() {
                    return Err(format!("the link `{}` is empty", candidate.display()));
                }
                if target.starts_with('/') {
                    resolved = PathBuf::from("/");
                }
                pending.extend(pending_names(target));
            }
            Ok(meta) => {
                if !last && !meta.is_dir() {
                    return Err(format!("`{}` is not a directory", candidate.display()));
                }
                resolved = candidate;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                resolved = candidate;
                missing = 1;
            }
            Err(e) => return Err(format!("`{}`: {e}", candidate.display())),
        }
    }
    Ok(resolved)
}

/// The rest of a path below `/proc` (`first`, then `pending`, last
/// first), as written; refused where it goes through a process's link.
fn in_proc(first: String, mut pending: Vec<String>) -> Result<PathBuf, String> {
    pending.push(first);
    let names: Vec<String> = pending.into_iter().rev().collect();
    let shown = || format!("/proc/{}", names.join("/"));
    if names.iter().any(|name| name == "..") {
        return Err(format!(
            "`{}` has `..` below /proc: name the file itself",
            shown()
        ));
    }
    let number = |name: Option<&String>| {
        name.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let first = names.first();
    let process =
        matches!(first.map(String::as_str), Some("self" | "thread-self")) || number(first);
    if process {
        // The process's directory, or one of its threads' (`task/<tid>`).
        let mut at = 1;
        if names.get(at).is_some_and(|n| n == "task") && number(names.get(at + 1)) {
            at += 2;
        }
        let entry = names.get(at).map(String::as_str).unwrap_or_default();
        // How many names the link itself takes: `cwd`, `root` and `exe`
        // are one, `fd/N` and `map_files/N` two. Anything after it goes
        // through it; so does ending at `cwd` or `root`, a directory read
        // beneath.
        let through = match entry {
            "cwd" | "root" => true,
            "exe" => names.len() > at + 1,
            "fd" | "map_files" => names.len() > at + 2,
            _ => false,
        };
        if through {
            return Err(format!(
                "`{}` goes through a process's link (`{entry}`), which leads wherever the \
                 process that opens it stands: name the file itself",
                shown()
            ));
        }
    }
    let mut path = PathBuf::from("/proc");
    path.extend(&names);
    Ok(path)
}

/// Whether the last component of `action`'s path is followed: not for a
/// delete, nor for a write that makes a new name there.
fn follows_last(action: &Action) -> Option<(&str, bool)> {
    match action {
        Action::FileRead { path } => Some((path, true)),
        Action::FileWrite { path, mode, .. } => Some((
            path,
            !matches!(mode, WriteMode::Symlink | WriteMode::HardLink),
        )),
        Action::FileDelete { path } => Some((path, false)),
        _ => None,
    }
}

/// The path a client names in its request for a file action on `path`
/// (relative to `base` if it is relative): where it leads ([`physical`]).
/// Refuses a path that cannot be resolved, and one whose `..` after a
/// symbolic link makes it lead elsewhere than its lexical reading (a
/// shell's `cd` reads it lexically, the kernel physically). Other actions
/// are returned unchanged.
pub fn request_action(action: Action, base: Option<&str>) -> Result<Action, RequestPathError> {
    let Some((path, follow)) = follows_last(&action) else {
        return Ok(action);
    };
    let resolved = request_path(path, base, follow)?;
    Ok(match action {
        Action::FileRead { .. } => Action::FileRead { path: resolved },
        Action::FileWrite {
            content_sha256,
            size,
            mode,
            ..
        } => Action::FileWrite {
            path: resolved,
            content_sha256,
            size,
            mode,
        },
        Action::FileDelete { .. } => Action::FileDelete { path: resolved },
        other => other,
    })
}

/// See [`request_action`].
pub fn request_path(
    path: &str,
    base: Option<&str>,
    follow_last: bool,
) -> Result<String, RequestPathError> {
    let raw = if path.starts_with('/') {
        path.to_owned()
    } else {
        let base = base.ok_or_else(|| RequestPathError::Relative(path.to_owned()))?;
        format!("{base}/{path}")
    };
    let physically = physical(&raw, follow_last)?;
    let lexical = canonical_path(&raw, None)?;
    let lexically = physical(&lexical, follow_last)?;
    if physically != lexically {
        return Err(RequestPathError::DotDotAfterLink {
            path: path.to_owned(),
            physically,
            lexically,
        });
    }
    Ok(physically)
}

/// The floor's reason for a denial on where an argument leads.
const FLOOR_REASON: &str =
    "the kernel's own assets (key, policies, evidence, binary) are off limits";

/// What the enforcer's check of a request found wrong ([`check`]): the
/// evaluation to decide on instead of the policy's, always a denial.
/// `None` when the action's paths are where they lead.
///
/// For a file action: its path must resolve to itself (see
/// [`physical`]); otherwise `Evaluation::Failed` with the reason. For a
/// program: the floor also sees where its program and each argument
/// (relative to its working directory) lead through links, followed or
/// not at the end; one that reaches a protected path is a match of the
/// floor (`kernel-floor-assets`). Arguments that do not resolve are left
/// to the floor's lexical check: an argument need not be a path.
pub fn check(action: &CanonicalAction, env: &Environment) -> Option<Evaluation> {
    if let Some((path, follow)) = follows_last(action.action()) {
        return match physical(path, follow) {
            Ok(resolved) if resolved == path => None,
            Ok(resolved) => Some(Evaluation::Failed {
                reason: format!(
                    "`{path}` leads through a symbolic link to `{resolved}`: a request must name \
                     the file it reaches (kernel-enforcer ask and the hooks resolve links before \
                     asking)"
                ),
            }),
            Err(e) => Some(Evaluation::Failed {
                reason: format!("{e}; refused rather than decided as written"),
            }),
        };
    }
    let Action::Exec(exec) = action.action() else {
        return None;
    };
    let cwd = exec.cwd.as_deref()?;
    let floor = |what: &str, resolved: &Path| Evaluation::Completed {
        permits: Vec::new(),
        forbids: vec![MatchedForbid {
            id: crate::FLOOR_ASSETS_ID.to_owned(),
            reason: Some(format!(
                "{FLOOR_REASON} (`{what}` leads to `{}`)",
                resolved.display()
            )),
        }],
        errors: Vec::new(),
    };
    let reaches = |path: &Path| path.to_str().is_some_and(|p| env.reaches_asset(p));
    if let Ok(program) = walk(PathBuf::from("/"), &exec.program, true)
        && reaches(&program)
    {
        return Some(floor(&exec.program, &program));
    }
    // A relative argument leads from the working directory, and, as the
    // target of a link the program may make, from that link's directory
    // (see `link_directories`): each as it resolves.
    let mut bases: Vec<PathBuf> = walk(PathBuf::from("/"), cwd, true).into_iter().collect();
    if let Some(dirs) = crate::link_directories(&exec.args, cwd) {
        bases.extend(
            dirs.iter()
                .filter_map(|dir| walk(PathBuf::from("/"), dir, true).ok()),
        );
    }
    bases.sort();
    bases.dedup();
    for arg in &exec.args {
        let candidates = [Some(arg.as_str()), arg.split_once('=').map(|(_, v)| v)];
        for candidate in candidates.into_iter().flatten() {
            if candidate.is_empty() {
                continue;
            }
            let root = [PathBuf::from("/")];
            let from = if candidate.starts_with('/') {
                &root[..]
            } else {
                &bases[..]
            };
            for base in from {
                for follow in [false, true] {
                    if let Ok(resolved) = walk(base.clone(), candidate, follow)
                        && reaches(&resolved)
                    {
                        return Some(floor(candidate, &resolved));
                    }
                }
            }
        }
    }
    None
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
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        (dir, root)
    }

    #[test]
    fn the_floor_reason_is_the_floors() {
        assert!(crate::FLOOR.contains(FLOOR_REASON));
        assert!(crate::FLOOR.contains(&format!("@id(\"{}\")", crate::FLOOR_ASSETS_ID)));
    }

    #[test]
    fn links_are_followed_from_their_own_directory() {
        let (_dir, root) = root();
        std::fs::create_dir_all(format!("{root}/ws/a/b")).unwrap();
        std::fs::create_dir_all(format!("{root}/ws/.claude")).unwrap();
        symlink("../../.claude", format!("{root}/ws/a/b/c")).unwrap();
        let at = |p: &str| format!("{root}/{p}");
        // The attack: the link's target is relative to `a/b`, not to the
        // working directory.
        assert_eq!(
            physical(&at("ws/a/b/c/settings.json"), true).unwrap(),
            at("ws/.claude/settings.json")
        );
        // `..` after the link applies to where it led.
        assert_eq!(physical(&at("ws/a/b/c/../x"), true).unwrap(), at("ws/x"));
        // A delete does not follow the last link: `rm a/b/c` removes the
        // link.
        assert_eq!(physical(&at("ws/a/b/c"), false).unwrap(), at("ws/a/b/c"));
        assert_eq!(physical(&at("ws/a/b/c"), true).unwrap(), at("ws/.claude"));
    }

    #[test]
    fn names_that_do_not_exist_are_kept_as_written() {
        let (_dir, root) = root();
        std::fs::create_dir_all(format!("{root}/ws")).unwrap();
        std::fs::create_dir_all(format!("{root}/elsewhere")).unwrap();
        symlink(format!("{root}/elsewhere"), format!("{root}/ws/l")).unwrap();
        let at = |p: &str| format!("{root}/{p}");
        assert_eq!(
            physical(&at("ws/new/dir/file"), true).unwrap(),
            at("ws/new/dir/file")
        );
        // Back out of what does not exist, the resolution goes on: the link
        // is followed.
        assert_eq!(
            physical(&at("ws/new/../l/file"), true).unwrap(),
            at("elsewhere/file")
        );
        // A dangling link is followed to where a write would create the
        // file.
        symlink("../elsewhere/target", format!("{root}/ws/dangling")).unwrap();
        assert_eq!(
            physical(&at("ws/dangling"), true).unwrap(),
            at("elsewhere/target")
        );
    }

    #[test]
    fn what_cannot_be_resolved_is_refused() {
        let (_dir, root) = root();
        std::fs::create_dir_all(format!("{root}/ws")).unwrap();
        std::fs::write(format!("{root}/ws/file"), "x").unwrap();
        symlink("loop", format!("{root}/ws/loop")).unwrap();
        symlink("b", format!("{root}/ws/a")).unwrap();
        symlink("a", format!("{root}/ws/b")).unwrap();
        let at = |p: &str| format!("{root}/{p}");
        assert!(physical(&at("ws/loop"), true).is_err());
        assert!(physical(&at("ws/a/x"), true).is_err());
        assert!(physical(&at("ws/file/x"), true).is_err());
        assert!(physical("relative", true).is_err());
        // The loop itself may be deleted.
        assert_eq!(physical(&at("ws/loop"), false).unwrap(), at("ws/loop"));
    }

    #[test]
    fn a_directory_that_may_not_be_searched_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, root) = root();
        let closed = format!("{root}/closed");
        std::fs::create_dir_all(format!("{closed}/inner")).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root searches every directory: nothing to show then.
        let searchable = std::fs::symlink_metadata(format!("{closed}/inner")).is_ok();
        let result = physical(&format!("{closed}/inner/x"), true);
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        if !searchable {
            let error = result.unwrap_err();
            assert!(error.why.contains("ermission denied"), "{error}");
        }
    }

    #[test]
    fn paths_under_proc_are_taken_as_written_but_not_through_a_process_link() {
        assert_eq!(
            physical("/proc/self/status", true).unwrap(),
            "/proc/self/status"
        );
        assert_eq!(
            physical("/proc/self/fd/1", true).unwrap(),
            "/proc/self/fd/1"
        );
        // `/dev/fd` leads into `/proc/self/fd`.
        if std::fs::read_link("/dev/fd").is_ok() {
            assert_eq!(physical("/dev/fd/1", true).unwrap(), "/proc/self/fd/1");
            assert!(physical("/dev/fd/3/x", true).is_err());
        }
        for refused in [
            "/proc/self/cwd/.claude/settings.json",
            "/proc/self/cwd",
            "/proc/1/root/etc/passwd",
            "/proc/self/fd/3/x",
            "/proc/thread-self/cwd/x",
            "/proc/self/task/1/root",
            "/proc/self/exe/x",
            "/proc/self/../1/environ",
        ] {
            assert!(physical(refused, true).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_client_refuses_a_dotdot_that_leads_two_ways() {
        let (_dir, root) = root();
        std::fs::create_dir_all(format!("{root}/ws/sub")).unwrap();
        std::fs::create_dir_all(format!("{root}/deep/er")).unwrap();
        symlink(format!("{root}/deep/er"), format!("{root}/ws/l")).unwrap();
        symlink("sub", format!("{root}/ws/near")).unwrap();
        let ws = format!("{root}/ws");
        // `cd l/..` in a shell is `ws`; an open of `l/../x` is `deep/x`.
        let error = request_path("l/../.claude/settings.json", Some(&ws), true);
        assert!(
            matches!(
                &error,
                Err(RequestPathError::DotDotAfterLink { physically, lexically, .. })
                    if physically.ends_with("/deep/.claude/settings.json")
                        && lexically.ends_with("/ws/.claude/settings.json")
            ),
            "{error:?}"
        );
        // Where both readings agree, the path is resolved.
        assert_eq!(
            request_path("near/../sub/f", Some(&ws), true).unwrap(),
            format!("{ws}/sub/f")
        );
        assert_eq!(
            request_path("near/f", Some(&ws), true).unwrap(),
            format!("{ws}/sub/f")
        );
    }

    #[test]
    fn the_enforcer_denies_a_path_that_does_not_lead_to_itself() {
        let (_dir, root) = root();
        std::fs::create_dir_all(format!("{root}/ws/a/b")).unwrap();
        std::fs::create_dir_all(format!("{root}/ws/.claude")).unwrap();
        symlink("../../.claude", format!("{root}/ws/a/b/c")).unwrap();
        let ws = format!("{root}/ws");
        let settings = format!("{ws}/.claude/settings.json");
        let env = Environment::new(&ws, std::slice::from_ref(&settings)).unwrap();
        let decided = |action: Action| check(&CanonicalAction::new(action, None).unwrap(), &env);
        assert!(matches!(
            decided(Action::file_write(format!("{ws}/a/b/c/settings.json"), b"{}")),
            Some(Evaluation::Failed { reason }) if reason.contains(&settings)
        ));
        assert_eq!(decided(Action::file_write(settings.clone(), b"{}")), None);
        // The link itself may be deleted: it is where it is.
        assert_eq!(decided(Action::file_delete(format!("{ws}/a/b/c"))), None);
        // A program's argument through the link reaches the asset.
        let exec = kernel_core::Exec::new("/bin/cp")
            .args(["/dev/null", "a/b/c/settings.json"])
            .cwd(ws.clone());
        match decided(Action::exec(exec)) {
            Some(Evaluation::Completed { forbids, .. }) => {
                assert_eq!(forbids[0].id, crate::FLOOR_ASSETS_ID);
                assert!(forbids[0].reason.as_ref().unwrap().contains(&settings));
            }
            other => panic!("{other:?}"),
        }
        // A link made through a link: its target leads from where the
        // link lands (`x/c` is `a/b/c`).
        symlink("a/b", format!("{ws}/x")).unwrap();
        let ln = kernel_core::Exec::new("/usr/bin/ln")
            .args(["-s", "../../.claude", "x/d"])
            .cwd(ws.clone());
        assert!(matches!(
            decided(Action::exec(ln)),
            Some(Evaluation::Completed { forbids, .. }) if forbids.len() == 1
        ));
        let harmless = kernel_core::Exec::new("/bin/cp")
            .args(["/dev/null", "a/b/notes"])
            .cwd(ws);
        assert_eq!(decided(Action::exec(harmless)), None);
    }
}
