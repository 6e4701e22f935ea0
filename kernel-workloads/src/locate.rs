//! Finding what the suite runs: the enforcer, the policy, the driver and
//! the tools.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Directories searched first for tools, in this order: the trees the
/// confinement lets a governed agent execute, so that where a machine has
/// both a system tool and a per-user one (a pyenv shim, an nvm node), the
/// one that can run governed is chosen for both runs.
pub const SYSTEM_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The environment variable naming the enforcer binary.
pub const ENFORCER_ENV: &str = "KERNEL_ENFORCER";

/// The enforcer binary: `explicit`, else `$KERNEL_ENFORCER`, else
/// `kernel-enforcer` in the directory of the current executable or one of
/// its parents (`target/<profile>/` holds both the suite's binary and,
/// one level up from `deps/`, its test executables).
pub fn enforcer(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return existing(path, "--enforcer");
    }
    if let Some(path) = std::env::var_os(ENFORCER_ENV) {
        return existing(Path::new(&path), ENFORCER_ENV);
    }
    let me = std::env::current_exe().map_err(|e| format!("the current executable: {e}"))?;
    let mut dir = me.parent();
    for _ in 0..3 {
        let Some(here) = dir else { break };
        let candidate = here.join("kernel-enforcer");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = here.parent();
    }
    Err(format!(
        "no kernel-enforcer next to {} or above it: build it (`cargo build -p kernel-enforcer`), \
         or name it with --enforcer or {ENFORCER_ENV}",
        me.display()
    ))
}

fn existing(path: &Path, from: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        std::path::absolute(path).map_err(|e| format!("{from} `{}`: {e}", path.display()))
    } else {
        Err(format!("{from} `{}` is not a file", path.display()))
    }
}

/// The repository's root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).to_owned()
}

/// The coding agent's policy, relative to the repository root.
pub const CODING_AGENT_POLICY: &str = "examples/policies/coding-agent.cedar";

/// The policy governed runs use, and where it came from: `explicit`,
/// else [`CODING_AGENT_POLICY`] when it exists, else this crate's
/// `tests/permissive.cedar`.
pub fn policy(explicit: Option<&Path>) -> Result<(PathBuf, &'static str), String> {
    if let Some(path) = explicit {
        return existing(path, "--policy").map(|p| (p, "--policy"));
    }
    let coding_agent = repo_root().join(CODING_AGENT_POLICY);
    if coding_agent.is_file() {
        return Ok((coding_agent, "the coding agent's policy"));
    }
    let permissive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/permissive.cedar");
    existing(&permissive, "the permissive test policy")
        .map(|p| (p, "the permissive test policy (no coding-agent.cedar yet)"))
}

/// A Rust toolchain, used directly rather than through rustup's proxies
/// (which need the user's real home to find their toolchains).
#[derive(Debug, Clone)]
pub struct Rust {
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
}

impl Rust {
    /// The toolchain's `bin` directory.
    pub fn bin(&self) -> PathBuf {
        self.sysroot.join("bin")
    }
}

/// Where each tool the workloads use was found (or why not), and the
/// `PATH` both runs get.
#[derive(Debug, Clone)]
pub struct Toolbox {
    found: BTreeMap<String, Result<PathBuf, String>>,
    rust: Result<Rust, String>,
    path: Vec<PathBuf>,
}

impl Toolbox {
    /// Looks up `tools` (by name) in [`SYSTEM_DIRS`], then in the
    /// inherited `PATH`; `cargo` and `rustc` come from the toolchain
    /// `rustc --print sysroot` names.
    pub fn discover(tools: &[&str]) -> Self {
        let inherited: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let search: Vec<PathBuf> = SYSTEM_DIRS
            .iter()
            .map(PathBuf::from)
            .chain(inherited.iter().cloned())
            .collect();
        let rust = find_in(&search, "rustc")
            .and_then(|rustc| sysroot(&rustc))
            .map(|sysroot| Rust { sysroot });
        let mut found = BTreeMap::new();
        for tool in tools {
            let location = match *tool {
                "cargo" | "rustc" | "rustdoc" => rust.clone().and_then(|rust| {
                    let path = rust.bin().join(tool);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(format!("no {tool} in {}", rust.bin().display()))
                    }
                }),
                _ => find_in(&search, tool),
            };
            found.insert((*tool).to_owned(), location);
        }
        let mut path: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
        for dir in found
            .values()
            .filter_map(|f| f.as_ref().ok())
            .filter_map(|p| p.parent())
        {
            if !path.iter().any(|known| known == dir) {
                path.push(dir.to_owned());
            }
        }
        Self { found, rust, path }
    }

    /// Where `tool` is, or why it is not available.
    pub fn get(&self, tool: &str) -> Result<&Path, String> {
        match self.found.get(tool) {
            Some(Ok(path)) => Ok(path),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("{tool} was not looked up")),
        }
    }

    /// Trees of found tools that lie outside the system directories (a
    /// Rust toolchain installed by rustup): a governed agent may run them
    /// only when the enforcer is given each with `--system-tree`.
    pub fn trees_outside_the_system(&self) -> Vec<PathBuf> {
        let system = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"];
        self.rust
            .as_ref()
            .ok()
            .map(|rust| rust.sysroot.clone())
            .filter(|sysroot| !system.iter().any(|dir| sysroot.starts_with(dir)))
            .into_iter()
            .collect()
    }

    /// The Rust toolchain, if one was found.
    pub fn rust(&self) -> Option<&Rust> {
        self.rust.as_ref().ok()
    }

    /// The `PATH` both runs get: [`SYSTEM_DIRS`], then the directories of
    /// tools found elsewhere.
    pub fn path_var(&self) -> OsString {
        std::env::join_paths(&self.path).unwrap_or_default()
    }
}

fn find_in(search: &[PathBuf], tool: &str) -> Result<PathBuf, String> {
    search
        .iter()
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{tool} is not installed (not in the system directories or PATH)"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn sysroot(rustc: &Path) -> Result<PathBuf, String> {
    let output = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("{}: {e}", rustc.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed: {}",
            rustc.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if text.is_empty() {
        return Err("rustc printed no sysroot".into());
    }
    Ok(PathBuf::from(text))
}
