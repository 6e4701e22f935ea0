//! What the floor protects: the kernel's own assets, as paths.
//!
//! The floor policy ([`crate::FLOOR`]) forbids every action on a kernel
//! asset; [`assets`] builds the list it checks against (handed to
//! [`Environment::new`](crate::Environment::new)): each protected path as
//! given (made absolute) and where it leads with symbolic links resolved,
//! and the running binary, which is protected from being written, deleted
//! or run by the agent. The confinement does not hide the binary, since it
//! may well be installed under a system tree the agent can read.
//!
//! Refused, never protected in part: a path that cannot be made absolute
//! or resolved (a loop, a component that is not a directory, a directory
//! that may not be searched, a `..` after a name that does not exist), and
//! a binary that cannot be found or resolved. Protecting only some forms
//! of a path would leave the others open.

use std::path::{Path, PathBuf};

/// Why the floor's asset list could not be built: the caller must not
/// start without it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FloorError {
    /// A protected path cannot be made absolute.
    #[error("cannot make the protected path `{}` absolute: {source}", .path.display())]
    Absolute {
        /// The path, as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A protected path cannot be resolved.
    #[error("cannot resolve the protected path `{}`: {}{why}", .path.display(), part(.at.as_deref()))]
    Unresolved {
        /// The path, as given.
        path: PathBuf,
        /// The part of it (made absolute) where resolution stopped, when
        /// it is not the whole path.
        at: Option<PathBuf>,
        /// What stopped it.
        why: String,
    },
    /// The running binary cannot be found.
    #[error("cannot find the enforcer's own binary to protect it: {0}")]
    NoBinary(std::io::Error),
    /// The running binary cannot be resolved: it was removed or replaced
    /// while running.
    #[error(
        "cannot resolve the enforcer's own binary `{}` to protect it: {source} (was it removed \
         or replaced?)",
        .path.display()
    )]
    BinaryUnresolved {
        /// The binary's path, as the system reports it.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The part where resolution stopped, when it is not the whole path.
fn part(at: Option<&Path>) -> String {
    at.map(|at| format!("`{}`: ", at.display()))
        .unwrap_or_default()
}

/// What the floor protects, given the protected paths: each as given
/// (made absolute) and with symbolic links resolved, and the running
/// binary. Refuses when any of them cannot be resolved.
pub fn assets(protected: &[PathBuf]) -> Result<Vec<String>, FloorError> {
    assets_with(protected, std::env::current_exe())
}

/// [`assets`] with the running binary as `current_exe` found it.
fn assets_with(
    protected: &[PathBuf],
    exe: std::io::Result<PathBuf>,
) -> Result<Vec<String>, FloorError> {
    let exe = exe.map_err(FloorError::NoBinary)?;
    // The binary is running, so it exists: unlike a protected file that
    // is created at start, a path that does not resolve (one the binary
    // was replaced at, ending in ` (deleted)`) protects nothing.
    let real = std::fs::canonicalize(&exe).map_err(|source| FloorError::BinaryUnresolved {
        path: exe.clone(),
        source,
    })?;
    let mut floor = Vec::new();
    for path in protected {
        floor.extend(path_forms(path)?);
    }
    floor.extend([
        exe.to_string_lossy().into_owned(),
        real.to_string_lossy().into_owned(),
    ]);
    Ok(floor)
}

/// A protected path made absolute, and with symbolic links resolved.
/// Refuses a path that cannot be made absolute or resolved, naming it.
fn path_forms(path: &Path) -> Result<[String; 2], FloorError> {
    let absolute = std::path::absolute(path).map_err(|source| FloorError::Absolute {
        path: path.to_owned(),
        source,
    })?;
    let resolved = resolve(&absolute).map_err(|(at, why)| FloorError::Unresolved {
        path: path.to_owned(),
        at: (at != absolute).then_some(at),
        why,
    })?;
    Ok([
        absolute.to_string_lossy().into_owned(),
        resolved.to_string_lossy().into_owned(),
    ])
}

/// How many symbolic links [`resolve`] follows, as the kernel's path
/// lookup does (`MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

/// `absolute` with symbolic links resolved, where it leads when it is
/// opened or created. A path that does not exist yet (an evidence file
/// created at start, say) is resolved through its deepest existing
/// ancestor, followed by the names that do not exist; a symbolic link to
/// a path that does not exist yet is followed to it. Fails on anything
/// else that stops resolution: a loop, a component that is not a
/// directory, a directory that may not be searched, a `..` after a name
/// that does not exist.
fn resolve(absolute: &Path) -> Result<PathBuf, (PathBuf, String)> {
    let mut pending = absolute.to_owned();
    // Names below `pending` that do not exist, deepest first.
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    loop {
        let error = match std::fs::canonicalize(&pending) {
            Ok(real) => {
                return Ok(missing
                    .iter()
                    .rev()
                    .fold(real, |path, name| path.join(name)));
            }
            Err(e) => e,
        };
        if error.kind() != std::io::ErrorKind::NotFound {
            return Err((pending, error.to_string()));
        }
        match std::fs::symlink_metadata(&pending) {
            // A link to something that does not exist (yet): follow it.
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err((pending, "too many levels of symbolic links".into()));
                }
                let target = match std::fs::read_link(&pending) {
                    Ok(target) => target,
                    Err(e) => return Err((pending, e.to_string())),
                };
                pending = match pending.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
            }
            Ok(_) => return Err((pending, error.to_string())),
            Err(_) => {
                let (Some(parent), Some(name)) = (pending.parent(), pending.file_name()) else {
                    return Err((pending, "does not exist".into()));
                };
                missing.push(name.to_owned());
                pending = parent.to_owned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::os::unix::fs::symlink;

    fn assets_of(protected: &[PathBuf]) -> Result<Vec<String>, String> {
        assets_with(protected, Ok(PathBuf::from("/proc/self/exe"))).map_err(|e| e.to_string())
    }

    fn text(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn a_path_not_created_yet_is_protected_where_it_will_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        // A link to a file that does not exist yet, as an evidence path
        // may be: opening it creates the target.
        symlink("real/target.log", root.join("dangling")).unwrap();
        symlink(root.join("chain"), root.join("chain-start")).unwrap();
        symlink("real/deeper/file", root.join("chain")).unwrap();
        let cases = [
            ("alias/new.log", "real/new.log"),
            (
                "alias/new-dir/deeper/new.log",
                "real/new-dir/deeper/new.log",
            ),
            ("dangling", "real/target.log"),
            ("chain-start", "real/deeper/file"),
            ("real/existing-dir-to-be/../x", "real/x"),
        ];
        std::fs::create_dir(root.join("real/existing-dir-to-be")).unwrap();
        for (given, resolved) in cases {
            let floor = assets_of(&[root.join(given)]).unwrap();
            assert!(
                floor.contains(&text(&root.join(given))),
                "{given}: {floor:?}"
            );
            assert!(
                floor.contains(&text(&root.join(resolved))),
                "{given}: {floor:?}"
            );
        }
    }

    #[test]
    fn a_path_that_cannot_be_resolved_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
        symlink(root.join("loop-a"), root.join("loop-b")).unwrap();
        for bad in [
            root.join("loop-a"),
            root.join("loop-a/under"),
            root.join("file/under"),
            root.join("missing/../x"),
        ] {
            let error = assets_of(&[root.join("fine"), bad.clone()]).unwrap_err();
            assert!(
                error.contains(&format!("protected path `{}`", bad.display())),
                "{error}"
            );
        }
    }

    #[test]
    fn the_enforcers_binary_must_be_found_and_resolved() {
        let error = assets_with(&[], Err(std::io::Error::other("no /proc")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("own binary"), "{error}");
        assert!(error.contains("no /proc"), "{error}");
        // Replaced while running: the kernel reports the old path with
        // ` (deleted)` appended.
        let dir = tempfile::tempdir().unwrap();
        let deleted = dir.path().join("kernel-enforcer (deleted)");
        let error = assets_with(&[], Ok(deleted)).unwrap_err().to_string();
        assert!(error.contains("(deleted)"), "{error}");
        let exe = std::env::current_exe().unwrap();
        let floor = assets_with(&[], Ok(exe.clone())).unwrap();
        assert!(floor.contains(&text(&exe)), "{floor:?}");
        // The real function finds this process's binary.
        assert!(assets(&[]).unwrap().contains(&text(&exe)));
    }
}
