//! Locating programs: the enforcer binary and `Exec` programs.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name of the enforcer binary.
pub(crate) const ENFORCER_BINARY: &str = "kernel-enforcer";

/// Environment variable naming the enforcer binary that
/// [`Kernel::spawn`](crate::Kernel::spawn) starts when
/// [`SpawnConfig::enforcer`](crate::SpawnConfig::enforcer) is not given.
pub const ENFORCER_ENV: &str = "AGENT_KERNEL_ENFORCER";

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

/// What the search for the enforcer depends on, read from this process
/// (or given, in tests).
#[derive(Debug, Default)]
struct Lookup {
    /// [`ENFORCER_ENV`].
    named: Option<OsString>,
    /// The directory of the current executable.
    exe_dir: Option<PathBuf>,
    /// `PATH`.
    path: Option<OsString>,
    /// `CARGO_HOME`.
    cargo_home: Option<OsString>,
    /// `HOME`.
    home: Option<OsString>,
}

impl Lookup {
    fn from_process() -> Self {
        Self {
            named: std::env::var_os(ENFORCER_ENV),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_owned)),
            path: std::env::var_os("PATH"),
            cargo_home: std::env::var_os("CARGO_HOME"),
            home: std::env::var_os("HOME"),
        }
    }

    /// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else
    /// `~/.cargo/bin`.
    fn cargo_bin(&self) -> Option<PathBuf> {
        let absolute = |dir: &OsString| {
            let dir = PathBuf::from(dir);
            dir.is_absolute().then_some(dir)
        };
        match self.cargo_home.as_ref().filter(|dir| !dir.is_empty()) {
            Some(home) => absolute(home).map(|dir| dir.join("bin")),
            None => self
                .home
                .as_ref()
                .and_then(absolute)
                .map(|home| home.join(".cargo/bin")),
        }
    }

    /// The places to look, in order, when no path is given.
    fn candidates(&self) -> Vec<PathBuf> {
        let mut places: Vec<PathBuf> = Vec::new();
        let dirs = self.exe_dir.iter().cloned().chain(
            self.path
                .iter()
                .flat_map(std::env::split_paths)
                .filter(|dir| dir.is_absolute()),
        );
        for candidate in dirs
            .map(|dir| dir.join(ENFORCER_BINARY))
            .chain(self.cargo_bin().map(|dir| dir.join(ENFORCER_BINARY)))
        {
            if !places.contains(&candidate) {
                places.push(candidate);
            }
        }
        places
    }
}

/// Finds the enforcer: the explicit path if given (and only it), else the
/// path in [`ENFORCER_ENV`] if set (and only it), else `kernel-enforcer`
/// next to the current executable, in each directory on `PATH`, and in
/// `$CARGO_HOME/bin` (or `~/.cargo/bin`, where `cargo install` puts it).
/// Returns every place searched on failure.
pub(crate) fn locate_enforcer(explicit: Option<&Path>) -> Result<PathBuf, Vec<PathBuf>> {
    locate_in(explicit, &Lookup::from_process())
}

fn locate_in(explicit: Option<&Path>, lookup: &Lookup) -> Result<PathBuf, Vec<PathBuf>> {
    let named = lookup
        .named
        .as_ref()
        .filter(|named| !named.is_empty())
        .map(PathBuf::from);
    // A path that was given is the only one tried: finding another binary
    // instead would start an enforcer nobody chose.
    if let Some(path) = explicit.map(Path::to_owned).or(named) {
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(vec![path])
        };
    }
    let candidates = lookup.candidates();
    match candidates.iter().find(|c| is_executable_file(c)) {
        Some(found) => Ok(found.clone()),
        None => Err(candidates),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    /// An executable `kernel-enforcer` in `dir`.
    fn install(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let binary = dir.join(ENFORCER_BINARY);
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        binary
    }

    fn lookup(root: &Path) -> Lookup {
        Lookup {
            named: None,
            exe_dir: Some(root.join("exe")),
            path: Some(std::env::join_paths([root.join("bin1"), root.join("bin2")]).unwrap()),
            cargo_home: None,
            home: Some(root.join("home").into_os_string()),
        }
    }

    #[test]
    fn an_enforcer_installed_by_cargo_is_found_off_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let installed = install(&root.join("home/.cargo/bin"));
        assert_eq!(locate_in(None, &lookup(root)), Ok(installed));
        // CARGO_HOME moves it.
        let elsewhere = install(&root.join("cargo-home/bin"));
        let mut moved = lookup(root);
        moved.cargo_home = Some(root.join("cargo-home").into_os_string());
        assert_eq!(locate_in(None, &moved), Ok(elsewhere));
    }

    #[test]
    fn the_order_is_beside_the_program_then_path_then_cargo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install(&root.join("home/.cargo/bin"));
        let on_path = install(&root.join("bin2"));
        assert_eq!(locate_in(None, &lookup(root)), Ok(on_path));
        let beside = install(&root.join("exe"));
        assert_eq!(locate_in(None, &lookup(root)), Ok(beside));
    }

    #[test]
    fn a_given_path_is_the_only_one_tried() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let on_path = install(&root.join("bin1"));
        let chosen = install(&root.join("chosen"));
        let mut named = lookup(root);
        named.named = Some(chosen.clone().into_os_string());
        assert_eq!(locate_in(None, &named), Ok(chosen.clone()));
        // The configuration's path wins over the environment's.
        assert_eq!(locate_in(Some(&on_path), &named), Ok(on_path));
        // A wrong path fails, naming it, rather than falling back.
        let missing = root.join("missing/kernel-enforcer");
        named.named = Some(missing.clone().into_os_string());
        assert_eq!(locate_in(None, &named), Err(vec![missing.clone()]));
        assert_eq!(locate_in(Some(&missing), &lookup(root)), Err(vec![missing]));
    }

    #[test]
    fn a_failed_search_names_every_place_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut bare = lookup(root);
        // Relative directories on PATH are never searched.
        bare.path = Some(
            std::env::join_paths([
                root.join("bin1"),
                PathBuf::from("relative"),
                root.join("bin2"),
            ])
            .unwrap(),
        );
        let searched = locate_in(None, &bare).unwrap_err();
        let expected: Vec<PathBuf> = ["exe", "bin1", "bin2", "home/.cargo/bin"]
            .iter()
            .map(|dir| root.join(dir).join(ENFORCER_BINARY))
            .collect();
        assert_eq!(searched, expected);
        let message = crate::SpawnError::EnforcerNotFound { searched }.to_string();
        assert!(
            message.contains(&format!("`{}`", expected[3].display())),
            "{message}"
        );
        assert!(message.contains("cargo install"), "{message}");
        assert!(message.contains(ENFORCER_ENV), "{message}");
    }
}
