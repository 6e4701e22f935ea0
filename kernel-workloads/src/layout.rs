//! Where a run happens and what environment it gets.
//!
//! A run's directory holds:
//!
//! - `ws/`: the workspace (`--workspace`), a fresh copy of the workload's
//!   template (contents, modes, symbolic links and modification times,
//!   so that caches keyed on them, like Python's bytecode, come out the
//!   same);
//! - `scratch/`: the enforcer's `--scratch` directory, which the
//!   confinement lets the agent read and write without a decision, with
//!   `home/` (`HOME`, holding `.gitconfig`), `tmp/` (`TMPDIR`) and
//!   `cargo-home/` (`CARGO_HOME`) in it: the same in both runs;
//! - `state/`: the evidence, outside everything the agent may reach.
//!
//! Both runs of a pair use the same directory, one after the other (the
//! workspace and scratch directory are recreated in between), so that
//! paths tools write into files and output are the same in both.

use crate::locate::Toolbox;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The fixed time every run's commits and reproducible builds use
/// (2023-11-14T22:13:20Z).
pub const EPOCH: &str = "1700000000";

/// The `.gitconfig` in every run's home.
pub const GITCONFIG: &str = "[user]\n\tname = Workload Suite\n\temail = workloads@example.invalid\n\
[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n";

/// The directories of one run.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The run's own directory.
    pub root: PathBuf,
    /// The workspace.
    pub ws: PathBuf,
    /// The enforcer's scratch directory.
    pub scratch: PathBuf,
    /// `HOME`.
    pub home: PathBuf,
    /// `TMPDIR`.
    pub tmp: PathBuf,
    /// `CARGO_HOME`.
    pub cargo_home: PathBuf,
    /// Evidence and other files of the runner's own.
    pub state: PathBuf,
}

impl Layout {
    /// The layout beneath `root` (nothing is created yet).
    pub fn new(root: &Path) -> Self {
        let scratch = root.join("scratch");
        Self {
            root: root.to_owned(),
            ws: root.join("ws"),
            home: scratch.join("home"),
            tmp: scratch.join("tmp"),
            cargo_home: scratch.join("cargo-home"),
            scratch,
            state: root.join("state"),
        }
    }

    /// Removes the workspace and the scratch directory and creates them
    /// afresh: the workspace as a copy of `template` (empty without one),
    /// the home with its `.gitconfig`.
    pub fn reset(&self, template: Option<&Path>) -> Result<(), String> {
        for dir in [&self.ws, &self.scratch] {
            remove_tree(dir)?;
        }
        for dir in [
            &self.ws,
            &self.home,
            &self.tmp,
            &self.cargo_home,
            &self.state,
        ] {
            std::fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        }
        let gitconfig = self.home.join(".gitconfig");
        std::fs::write(&gitconfig, GITCONFIG)
            .map_err(|e| format!("`{}`: {e}", gitconfig.display()))?;
        if let Some(template) = template {
            copy_tree(template, &self.ws)?;
        }
        Ok(())
    }

    /// The environment both runs get (nothing is inherited).
    pub fn environment(&self, tools: &Toolbox) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = vec![
            ("PATH".into(), tools.path_var()),
            ("HOME".into(), self.home.clone().into()),
            ("TMPDIR".into(), self.tmp.clone().into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("TZ".into(), "UTC".into()),
            ("TERM".into(), "dumb".into()),
            ("NO_COLOR".into(), "1".into()),
            ("SOURCE_DATE_EPOCH".into(), EPOCH.into()),
            // Git: this home's configuration only, fixed dates so that
            // commit ids are the same in both runs.
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            (
                "GIT_CONFIG_GLOBAL".into(),
                self.home.join(".gitconfig").into(),
            ),
            ("GIT_AUTHOR_DATE".into(), format!("{EPOCH} +0000").into()),
            ("GIT_COMMITTER_DATE".into(), format!("{EPOCH} +0000").into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            // Python: the same string hashing (and so the same frozensets
            // in bytecode), no network check by pip.
            ("PYTHONHASHSEED".into(), "0".into()),
            ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
            ("PIP_NO_INPUT".into(), "1".into()),
            // Cargo: no incremental directories (named by time), offline.
            ("CARGO_HOME".into(), self.cargo_home.clone().into()),
            ("CARGO_INCREMENTAL".into(), "0".into()),
            ("CARGO_NET_OFFLINE".into(), "true".into()),
            ("CARGO_TERM_COLOR".into(), "never".into()),
            // npm: nothing that would reach the network or draw.
            ("npm_config_update_notifier".into(), "false".into()),
            ("npm_config_audit".into(), "false".into()),
            ("npm_config_fund".into(), "false".into()),
            ("npm_config_color".into(), "false".into()),
            ("npm_config_progress".into(), "false".into()),
        ];
        if let Some(rust) = tools.rust() {
            env.push(("RUSTC".into(), rust.bin().join("rustc").into()));
            env.push(("RUSTDOC".into(), rust.bin().join("rustdoc").into()));
        }
        env
    }
}

/// Removes `dir` and everything in it (making directories writable
/// first if a tool left one that is not); a missing `dir` is fine.
pub fn remove_tree(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_writable(dir);
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing `{}`: {e}", dir.display()))
}

fn make_writable(dir: &Path) {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Copies the tree `from` into the existing directory `to`: directories,
/// regular files, symbolic links, permission bits and modification times.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let fail = |path: &Path, e: std::io::Error| format!("copying `{}`: {e}", path.display());
    let mut children: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| fail(from, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(from, e))?;
    children.sort();
    for source in children {
        let Some(name) = source.file_name() else {
            continue;
        };
        let target = to.join(name);
        let metadata = std::fs::symlink_metadata(&source).map_err(|e| fail(&source, e))?;
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            let link = std::fs::read_link(&source).map_err(|e| fail(&source, e))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| fail(&target, e))?;
            continue;
        }
        if file_type.is_dir() {
            std::fs::create_dir(&target).map_err(|e| fail(&target, e))?;
            copy_tree(&source, &target)?;
        } else if file_type.is_file() {
            std::fs::copy(&source, &target).map_err(|e| fail(&target, e))?;
        } else {
            return Err(format!(
                "`{}`: templates hold only directories, files and links",
                source.display()
            ));
        }
        std::fs::set_permissions(&target, metadata.permissions()).map_err(|e| fail(&target, e))?;
        let modified = metadata.modified().map_err(|e| fail(&source, e))?;
        std::fs::File::open(&target)
            .and_then(|f| f.set_modified(modified))
            .map_err(|e| fail(&target, e))?;
    }
    Ok(())
}
