//! Where the kernel keeps its per-user files, and finding the enforcer an
//! operator command means when none is named.
//!
//! Layout (the XDG base directories, so that a temporary `HOME` or
//! `XDG_*_HOME` moves everything):
//! - state: `$XDG_STATE_HOME/agent-kernel/` (default
//!   `~/.local/state/agent-kernel/`): the default evidence file of
//!   `listen`, `run` and `serve`, and one subdirectory per enforcer set up
//!   by `init` (its key, evidence, endpoint socket and control key file);
//! - configuration: `$XDG_CONFIG_HOME/agent-kernel/` (default
//!   `~/.config/agent-kernel/`): the installed policy profiles and the
//!   `listen` configuration of each enforcer `init` set up.
//!
//! A relative or empty `XDG_*_HOME` is ignored, as the XDG specification
//! asks.
//!
//! Finding the running enforcer ([`candidates`], [`choose`]): every
//! enforcer writes its public key to a file at its control path (by
//! default its evidence path with `.control` appended). The candidates are the files named
//! `*.control` in the state directory and in its subdirectories; a
//! candidate is live when an authenticated `status` request to it is
//! answered (see [`crate::session::control::request`]). Exactly one live candidate
//! is used; none or several is an error that lists what was found, so an
//! operator command never picks one enforcer of several by itself.

use crate::session::control::{self, ControlRequest, ControlResponse};
use std::path::{Path, PathBuf};

/// Name of the kernel's directory under the XDG base directories.
pub(crate) const DIR_NAME: &str = "agent-kernel";

/// The user's home directory, from `HOME` (absolute, or refused).
pub(crate) fn home() -> Result<PathBuf, String> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .ok_or_else(|| "cannot find your home directory: set `HOME` to an absolute path".into())
}

/// `$VAR` if it is set to an absolute path, else `~/fallback`.
fn xdg_base(var: &str, fallback: &str) -> Result<PathBuf, String> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Ok(dir),
        _ => home().map(|home| home.join(fallback)),
    }
}

/// `$XDG_STATE_HOME/agent-kernel` (or `~/.local/state/agent-kernel`).
pub(crate) fn state_root() -> Result<PathBuf, String> {
    xdg_base("XDG_STATE_HOME", ".local/state").map(|base| base.join(DIR_NAME))
}

/// `$XDG_CONFIG_HOME/agent-kernel` (or `~/.config/agent-kernel`).
pub(crate) fn config_root() -> Result<PathBuf, String> {
    xdg_base("XDG_CONFIG_HOME", ".config").map(|base| base.join(DIR_NAME))
}

/// `$XDG_CONFIG_HOME/systemd/user` (or `~/.config/systemd/user`): where
/// systemd looks for the user's own units.
pub(crate) fn systemd_user_dir() -> Result<PathBuf, String> {
    xdg_base("XDG_CONFIG_HOME", ".config").map(|base| base.join("systemd/user"))
}

/// The evidence file a session uses when none is given:
/// `evidence.log` in [`state_root`] (`./evidence.log` when there is no
/// home directory either).
pub(crate) fn default_evidence() -> PathBuf {
    state_root()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("evidence.log")
}

/// One control key file found, and what asking it gave.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// The control path (the key file).
    pub(crate) control: PathBuf,
    /// The enforcer's authenticated status, or why there was none.
    pub(crate) status: Result<ControlResponse, String>,
}

/// The control key files in the state directory and its subdirectories,
/// sorted.
fn control_files(root: &Path) -> Vec<PathBuf> {
    let is_control = |path: &Path| {
        path.extension().is_some_and(|ext| ext == "control")
            && std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file())
    };
    let entries = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect()
    };
    let mut found = Vec::new();
    for entry in entries(root) {
        if is_control(&entry) {
            found.push(entry);
        } else if std::fs::symlink_metadata(&entry).is_ok_and(|meta| meta.is_dir()) {
            found.extend(entries(&entry).into_iter().filter(|path| is_control(path)));
        }
    }
    found.sort();
    found
}

/// Asks every control key file under `root` for the enforcer's status.
pub(crate) fn candidates(root: &Path) -> Vec<Candidate> {
    control_files(root)
        .into_iter()
        .map(|control| Candidate {
            status: control::request(&control, &ControlRequest::Status).map_err(|e| e.to_string()),
            control,
        })
        .collect()
}

fn describe(candidate: &Candidate) -> String {
    match &candidate.status {
        Ok(status) => {
            let evidence = status
                .data
                .get("evidence_path")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            format!("  {}  (evidence {evidence})", candidate.control.display())
        }
        Err(why) => format!("  {}  (not running: {why})", candidate.control.display()),
    }
}

/// Why no single enforcer could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChooseError {
    /// No candidate answered; `found` describes those that did not.
    #[error("{}", none_running(root, found))]
    NoneRunning {
        /// Where the candidates were looked for.
        root: PathBuf,
        /// One line per candidate found but not answering.
        found: Vec<String>,
    },
    /// More than one answered; one line describing each.
    #[error("{}", several_running(.0))]
    Several(Vec<String>),
}

fn none_running(root: &Path, found: &[String]) -> String {
    let mut message = format!(
        "no running enforcer found under `{}` (where `init` and the default evidence \
         path put their control files)",
        root.display()
    );
    if !found.is_empty() {
        message.push_str(";\nfound, but not answering:");
        for line in found {
            message.push('\n');
            message.push_str(line);
        }
        message.push('\n');
    } else {
        message.push_str("; ");
    }
    message.push_str(
        "name the enforcer with `--control PATH` (or set AGENT_KERNEL_CONTROL); its \
         control path is its evidence path with `.control` appended unless it was \
         started with `--control`",
    );
    message
}

fn several_running(live: &[String]) -> String {
    let mut message = format!(
        "{} enforcers are running; choose one with `--control PATH` (or set \
         AGENT_KERNEL_CONTROL):",
        live.len()
    );
    for line in live {
        message.push('\n');
        message.push_str(line);
    }
    message
}

/// The control path of the one live candidate found under `root`, or an
/// error listing what was found (none, or several).
pub(crate) fn choose(root: &Path, candidates: &[Candidate]) -> Result<PathBuf, ChooseError> {
    let live: Vec<&Candidate> = candidates.iter().filter(|c| c.status.is_ok()).collect();
    match live.as_slice() {
        [one] => Ok(one.control.clone()),
        [] => Err(ChooseError::NoneRunning {
            root: root.to_owned(),
            found: candidates.iter().map(describe).collect(),
        }),
        several => Err(ChooseError::Several(
            several.iter().map(|c| describe(c)).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn live(path: &str) -> Candidate {
        Candidate {
            control: PathBuf::from(path),
            status: Ok(ControlResponse::ok(
                "status",
                serde_json::json!({"evidence_path": format!("{path}-evidence")}),
            )),
        }
    }

    fn dead(path: &str) -> Candidate {
        Candidate {
            control: PathBuf::from(path),
            status: Err("cannot reach".into()),
        }
    }

    #[test]
    fn only_one_live_enforcer_is_chosen() {
        let root = Path::new("/state");
        assert_eq!(
            choose(root, &[dead("/a"), live("/b"), dead("/c")]).unwrap(),
            PathBuf::from("/b")
        );
        let none = choose(root, &[dead("/a")]).unwrap_err();
        assert_eq!(
            none,
            ChooseError::NoneRunning {
                root: root.to_owned(),
                found: vec!["  /a  (not running: cannot reach)".into()],
            }
        );
        // What the operator reads: where it looked, what it found, what to do.
        let text = none.to_string();
        assert!(text.starts_with("no running enforcer"), "{text}");
        assert!(text.contains("/a  (not running: cannot reach)"), "{text}");
        assert!(text.contains("--control"), "{text}");
        let empty = choose(root, &[]).unwrap_err();
        assert_eq!(
            empty,
            ChooseError::NoneRunning {
                root: root.to_owned(),
                found: Vec::new(),
            }
        );
        let text = empty.to_string();
        assert!(
            text.contains("`/state`") && text.contains("--control"),
            "{text}"
        );
        let several = choose(root, &[live("/a"), dead("/b"), live("/c")]).unwrap_err();
        assert_eq!(
            several,
            ChooseError::Several(vec![
                "  /a  (evidence /a-evidence)".into(),
                "  /c  (evidence /c-evidence)".into(),
            ])
        );
        let text = several.to_string();
        assert!(text.starts_with("2 enforcers are running"), "{text}");
        assert!(!text.contains("/b"), "{text}");
    }

    #[test]
    fn control_files_are_found_one_level_down() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("evidence.log.control"), "").unwrap();
        std::fs::write(root.join("evidence.log"), "").unwrap();
        std::fs::create_dir_all(root.join("one/deeper")).unwrap();
        std::fs::write(root.join("one/evidence.log.control"), "").unwrap();
        std::fs::write(root.join("one/deeper/x.control"), "").unwrap();
        std::fs::create_dir(root.join("two.control")).unwrap();
        std::os::unix::fs::symlink(root.join("evidence.log.control"), root.join("link.control"))
            .unwrap();
        assert_eq!(
            control_files(root),
            [
                root.join("evidence.log.control"),
                root.join("one/evidence.log.control")
            ]
        );
    }
}
