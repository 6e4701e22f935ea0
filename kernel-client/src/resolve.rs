//! Locating programs: the enforcer binary and `Exec` programs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name of the enforcer binary.
pub(crate) const ENFORCER_BINARY: &str = "kernel-enforcer";

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Searches `PATH` for an executable named `name`.
pub(crate) fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

/// Finds the enforcer: the explicit path if given (and only it), else next
/// to the current executable, else on `PATH`. Returns the places searched
/// on failure.
pub(crate) fn locate_enforcer(explicit: Option<&Path>) -> Result<PathBuf, Vec<PathBuf>> {
    if let Some(path) = explicit {
        return if is_executable_file(path) {
            Ok(path.to_owned())
        } else {
            Err(vec![path.to_owned()])
        };
    }
    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        let candidate = dir.join(ENFORCER_BINARY);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    match search_path(ENFORCER_BINARY) {
        Some(found) => Ok(found),
        None => {
            searched.push(PathBuf::from(format!("$PATH/{ENFORCER_BINARY}")));
            Err(searched)
        }
    }
}
