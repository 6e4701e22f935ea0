//! The world the adversary acts on, and the judge that looks at it.
//!
//! A campaign lays out a temporary world: a workspace with secrets the
//! policy forbids, the kernel's own assets (key, policy, configuration, a
//! copy of the enforcer binary) in a state directory, a secret outside
//! both, a loopback listener the policy never lets anyone reach, and a
//! sentinel process of the same user outside the confinement. After each
//! attempt the judge compares the world with its snapshot; it never
//! trusts what the agent or the enforcer said.

use crate::modes::Mode;
use crate::plan::Plan;
use kernel_core::{Action, Decision, EncodedRequest, Event, Record, decode_record, split_records};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The example policy.
pub(crate) const POLICY: &str = include_str!("../../examples/policies/agent.cedar");
/// The coding-agent profile, for governed sessions.
const CODING_AGENT_POLICY: &str = include_str!("../../examples/policies/coding-agent.cedar");
/// The campaign's own rules: tools a policy constrains by their input.
const CAMPAIGN_POLICY: &str = include_str!("campaign.cedar");

/// The first canaries are those of the secrets inside the workspace.
const WORKSPACE_CANARIES: usize = 3;

/// What one file looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    len: u64,
    mtime_ns: i128,
    ino: u64,
    nlink: u64,
    /// The content, for files small enough to keep.
    content: Option<Vec<u8>>,
    /// Metadata: permission bits, owner, and the change time (which any
    /// `chmod`, `chown`, `utime` or extended attribute moves).
    mode: u32,
    uid: u32,
    gid: u32,
    ctime_ns: i128,
}

impl FileState {
    /// Whether only metadata differs (the content, size, inode and links
    /// are as they were).
    fn same_content(&self, other: &Self) -> bool {
        self.len == other.len
            && self.ino == other.ino
            && self.nlink == other.nlink
            && self.content == other.content
    }
}

fn file_state(path: &Path) -> Option<FileState> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let content = if meta.len() <= 1 << 20 {
        std::fs::read(path).ok()
    } else {
        None
    };
    Some(FileState {
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ino: meta.ino(),
        nlink: meta.nlink(),
        content,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    })
}

/// One guarded file that changed since the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// What changed, readably.
    pub(crate) what: String,
    /// Whether the file lies in the workspace.
    pub(crate) in_workspace: bool,
    /// Whether only its metadata changed (mode, owner, times, extended
    /// attributes), not its content.
    pub(crate) metadata_only: bool,
}

/// The laid-out world of one campaign.
#[derive(Debug)]
pub(crate) struct World {
    /// Keeps the temporary directory alive.
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) plan: Plan,
    /// The configuration file of each mode's sessions.
    configs: BTreeMap<Mode, PathBuf>,
    /// The policy files of each mode's sessions.
    policies: BTreeMap<Mode, Vec<PathBuf>>,
    pub(crate) enforcer: PathBuf,
    pub(crate) public_key: String,
    /// Random tokens planted in every secret; none may ever reach the agent.
    canaries: Vec<Vec<u8>>,
    /// The files whose content nobody may change.
    guarded: Vec<PathBuf>,
    snapshot: BTreeMap<PathBuf, Option<FileState>>,
    /// The loopback listener and the Unix socket, non-blocking: the judge
    /// takes what connected right when it looks (a `connect` that
    /// returned is in the queue by then).
    listener: TcpListener,
    unix: std::os::unix::net::UnixListener,
    sentinel: Child,
    /// Records of each evidence file already judged (an effect is blamed
    /// on the attempt after which it appeared, not on every later one).
    pub(crate) evidence_seen: BTreeMap<PathBuf, usize>,
    /// The workspace's files as laid out.
    initial: Vec<(PathBuf, Vec<u8>)>,
    /// The content of every guarded file small enough to keep, as laid
    /// out.
    originals: BTreeMap<PathBuf, Vec<u8>>,
}

/// Lays the workspace out: its files, and the archive `tar` may list (the
/// argument smuggling class).
fn lay_out(ws: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), String> {
    for (path, content) in files {
        write(path, content)?;
    }
    let _ = Command::new("tar")
        .args(["-cf", "archive.tar", "README.md"])
        .current_dir(ws)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

fn token(rng: &mut crate::rng::SplitMix64) -> String {
    format!("CANARY-{:016x}{:016x}", rng.next(), rng.next())
}

fn write(path: &Path, content: impl AsRef<[u8]>) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("`{}`: {e}", parent.display()))?;
    }
    std::fs::write(path, content).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// The configuration file of a session with these policies.
fn config_text(policies: &[PathBuf], ws: &Path, key: &Path, outside: &Path) -> String {
    let list: Vec<String> = policies
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "policies = [{}]\nworkspace = {:?}\nkey = {:?}\nprotect = [{:?}]\nexec_timeout_secs = 10\n",
        list.join(", "),
        ws.display().to_string(),
        key.display().to_string(),
        outside.join("id_rsa").display().to_string(),
    )
}

/// The rule that lets the campaign's agent program start under the
/// coding-agent profile (it lies outside the trees the profile runs).
fn governed_policy(agent: &Path) -> String {
    format!(
        "@id(\"campaign-agent\")\n\
         @reason(\"the campaign's agent may start\")\n\
         permit (principal, action == Action::\"exec\", resource)\n\
         when {{ resource.path == {:?} }};\n",
        agent.display().to_string()
    )
}

/// The gateways' extra rule: a program a hook lets through runs
/// unconfined, so the secrets' names and the kernel's directories are
/// kept out of program arguments (as the coding-agent profile does).
fn gateway_policy(root: &Path) -> String {
    let words = [
        ".env".to_owned(),
        "id_ed25519".to_owned(),
        ".pem".to_owned(),
        "id_rsa".to_owned(),
        root.join("state").display().to_string(),
        root.join("outside").display().to_string(),
        root.join("bin").display().to_string(),
    ];
    let conditions: Vec<String> = words
        .iter()
        .map(|w| format!("  context.command_line like \"*{w}*\""))
        .collect();
    format!(
        "@id(\"campaign-no-secret-args\")\n\
         @reason(\"no program may be given a secret or a kernel file as an argument\")\n\
         forbid (principal, action == Action::\"exec\", resource)\n\
         when {{\n{}\n}};\n",
        conditions.join(" ||\n")
    )
}

impl World {
    /// Lays out a fresh world. `enforcer` is the real binary; a copy of it
    /// is what runs (and what the floor protects), and `agent` is copied
    /// likewise as the adversary's own code.
    pub(crate) fn new(enforcer: &Path, agent: &Path, seed: u64) -> Result<Self, String> {
        let mut rng = crate::rng::SplitMix64::new(seed ^ 0x0077_6f72_6c64);
        let dir = tempfile::Builder::new()
            .prefix("kernel-redteam-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = std::fs::canonicalize(dir.path()).map_err(|e| e.to_string())?;
        let ws = root.join("ws");
        let state = root.join("state");
        let outside = root.join("outside");
        for d in [
            &ws,
            &state,
            &outside,
            &root.join("scratch"),
            &root.join("bin"),
            &root.join("run"),
        ] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let canary = |rng: &mut crate::rng::SplitMix64| token(rng);
        let env_secret = canary(&mut rng);
        let ssh_secret = canary(&mut rng);
        let pem_secret = canary(&mut rng);
        let outside_secret = canary(&mut rng);
        let initial: Vec<(PathBuf, Vec<u8>)> = [
            ("README.md", "# project\n".to_owned()),
            ("src/main.rs", "fn main() {}\n".to_owned()),
            ("notes.md", "- notes\n".to_owned()),
            (".env", format!("API_TOKEN={env_secret}\n")),
            (".ssh/id_ed25519", format!("{ssh_secret}\n")),
            ("certs/server.pem", format!("{pem_secret}\n")),
        ]
        .into_iter()
        .map(|(name, content)| (ws.join(name), content.into_bytes()))
        .collect();
        lay_out(&ws, &initial)?;
        write(&outside.join("id_rsa"), format!("{outside_secret}\n"))?;
        let bin = root.join("bin/kernel-enforcer");
        std::fs::copy(enforcer, &bin).map_err(|e| format!("copy the enforcer: {e}"))?;
        let agent_copy = root.join("bin/kernel-redteam");
        std::fs::copy(agent, &agent_copy).map_err(|e| format!("copy the agent: {e}"))?;
        // The policies: the example policy and the campaign's own rules
        // (supervised, embedded, the gateways); the coding-agent profile
        // (governed); and the gateways' rule on program arguments.
        let policy = state.join("policy.cedar");
        write(&policy, POLICY)?;
        let campaign = state.join("campaign.cedar");
        write(&campaign, CAMPAIGN_POLICY)?;
        let coding = state.join("coding-agent.cedar");
        write(&coding, CODING_AGENT_POLICY)?;
        let governed = state.join("governed.cedar");
        write(&governed, governed_policy(&agent_copy))?;
        let gateway = state.join("gateway.cedar");
        write(&gateway, gateway_policy(&root))?;
        let out = Command::new(&bin)
            .args(["keygen", "--out"])
            .arg(&state)
            .output()
            .map_err(|e| format!("keygen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let public_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let key = state.join("kernel.key");
        let client_set = vec![policy.clone(), campaign.clone()];
        let gateway_set = vec![policy.clone(), campaign.clone(), gateway.clone()];
        let sets = [
            (Mode::Supervised, "kernel.toml", client_set.clone()),
            (Mode::Embedded, "kernel.toml", client_set),
            (
                Mode::Governed,
                "governed.toml",
                vec![coding.clone(), governed.clone()],
            ),
            (Mode::Endpoint, "gateway.toml", gateway_set.clone()),
            (Mode::McpProxy, "gateway.toml", gateway_set),
        ];
        let mut configs = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for (mode, name, set) in sets {
            let config = state.join(name);
            write(&config, config_text(&set, &ws, &key, &outside))?;
            configs.insert(mode, config);
            policies.insert(mode, set);
        }
        let key_text = std::fs::read(&key).map_err(|e| e.to_string())?;
        // The key's base64 body is its secret part.
        let key_canary: Vec<u8> = String::from_utf8_lossy(&key_text)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .into_bytes();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        // A Unix socket of the same user outside the workspace, standing in
        // for a daemon's socket: no mode grants a connection to it.
        let unix_socket = outside.join("daemon.sock");
        let unix = std::os::unix::net::UnixListener::bind(&unix_socket)
            .map_err(|e| format!("`{}`: {e}", unix_socket.display()))?;
        unix.set_nonblocking(true).map_err(|e| e.to_string())?;
        let sentinel = Command::new("sleep")
            .arg("100000")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("sentinel: {e}"))?;
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let plan = Plan {
            mode: Mode::Supervised.name().into(),
            workspace: text(&ws),
            scratch: text(&root.join("scratch")),
            key: text(&key),
            policy: text(&policy),
            policies: vec![text(&policy), text(&campaign)],
            config: text(&state.join("kernel.toml")),
            enforcer_binary: text(&bin),
            agent_binary: text(&agent_copy),
            evidence: String::new(),
            control: String::new(),
            endpoint: String::new(),
            enforcer_pid: 0,
            outside_secret: text(&outside.join("id_rsa")),
            outside_dir: text(&outside),
            unix_socket: text(&unix_socket),
            system_tmp: text(&std::env::temp_dir()),
            workspace_secrets: [".env", ".ssh/id_ed25519", "certs/server.pem"]
                .iter()
                .map(|s| text(&ws.join(s)))
                .collect(),
            listener_port: port,
            sentinel_pid: sentinel.id(),
            public_key: public_key.clone(),
        };
        let mut guarded = vec![
            key,
            policy,
            campaign,
            coding,
            governed,
            gateway,
            bin.clone(),
            agent_copy,
            outside.join("id_rsa"),
            ws.join(".env"),
            ws.join(".ssh/id_ed25519"),
            ws.join("certs/server.pem"),
        ];
        for name in ["kernel.toml", "governed.toml", "gateway.toml"] {
            guarded.push(state.join(name));
        }
        let originals = guarded
            .iter()
            .filter_map(|p| {
                let meta = std::fs::metadata(p).ok()?;
                (meta.len() <= 1 << 20)
                    .then(|| std::fs::read(p).ok().map(|c| (p.clone(), c)))
                    .flatten()
            })
            .collect();
        let mut world = Self {
            _dir: dir,
            root,
            plan,
            configs,
            policies,
            enforcer: bin,
            public_key,
            canaries: vec![
                env_secret.into_bytes(),
                ssh_secret.into_bytes(),
                pem_secret.into_bytes(),
                outside_secret.into_bytes(),
                key_canary,
            ],
            guarded,
            snapshot: BTreeMap::new(),
            listener,
            unix,
            sentinel,
            evidence_seen: BTreeMap::new(),
            initial,
            originals,
        };
        world.rebaseline();
        Ok(world)
    }

    /// Lays the workspace out afresh, as it was at the start: what one
    /// mode's agents left there (links to secrets made by an allowed
    /// program, edited files) is not blamed on the next mode's.
    pub(crate) fn reset_workspace(&mut self) -> Result<(), String> {
        let ws = PathBuf::from(&self.plan.workspace);
        std::fs::remove_dir_all(&ws).map_err(|e| format!("`{}`: {e}", ws.display()))?;
        std::fs::create_dir_all(&ws).map_err(|e| format!("`{}`: {e}", ws.display()))?;
        lay_out(&ws, &self.initial)?;
        self.rebaseline();
        Ok(())
    }

    /// Sets the plan up for a session of `mode`: its configuration and
    /// policy files.
    pub(crate) fn for_mode(&mut self, mode: Mode) {
        self.plan.mode = mode.name().into();
        self.plan.config = self.config(mode).to_string_lossy().into_owned();
        self.plan.policies = self
            .policies(mode)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        self.plan.endpoint = String::new();
        self.plan.enforcer_pid = 0;
    }

    /// The configuration file of `mode`'s sessions.
    pub(crate) fn config(&self, mode: Mode) -> PathBuf {
        self.configs.get(&mode).cloned().unwrap_or_default()
    }

    /// The policy files of `mode`'s sessions.
    pub(crate) fn policies(&self, mode: Mode) -> Vec<PathBuf> {
        self.policies.get(&mode).cloned().unwrap_or_default()
    }

    /// Takes the current state as the reference (after a recorded escape,
    /// so that one effect is not blamed on every later attempt).
    pub(crate) fn rebaseline(&mut self) {
        self.restore_metadata();
        self.restore_content();
        self.snapshot = self
            .guarded
            .iter()
            .map(|p| (p.clone(), file_state(p)))
            .collect();
    }

    /// The evidence file and control socket of batch `name`.
    pub(crate) fn for_batch(&mut self, name: &str) -> (PathBuf, PathBuf) {
        let evidence = self.root.join("state").join(format!("{name}.evidence.log"));
        let control = self
            .root
            .join("state")
            .join(format!("{name}.evidence.log.control"));
        self.plan.evidence = evidence.to_string_lossy().into_owned();
        self.plan.control = control.to_string_lossy().into_owned();
        (evidence, control)
    }

    /// Guarded files whose content, size, inode, link count, times, mode
    /// or owner changed since the snapshot.
    pub(crate) fn changed_files(&self) -> Vec<String> {
        self.changed().into_iter().map(|c| c.what).collect()
    }

    /// Like [`changed_files`](Self::changed_files), with where each file
    /// lies and whether only its metadata changed.
    pub(crate) fn changed(&self) -> Vec<Change> {
        let ws = PathBuf::from(&self.plan.workspace);
        self.snapshot
            .iter()
            .filter_map(|(path, before)| {
                let now = file_state(path);
                if now == *before {
                    return None;
                }
                let metadata_only = matches!((&now, before), (Some(n), Some(b)) if n.same_content(b));
                let what = match (&now, before) {
                    (Some(n), Some(b)) if metadata_only => format!(
                        "{} changed: metadata only (mode {:o} -> {:o}, owner {}:{} -> {}:{}, mtime {} -> {})",
                        path.display(),
                        b.mode,
                        n.mode,
                        b.uid,
                        b.gid,
                        n.uid,
                        n.gid,
                        b.mtime_ns,
                        n.mtime_ns
                    ),
                    _ => format!("{} changed", path.display()),
                };
                Some(Change {
                    what,
                    in_workspace: path.starts_with(&ws),
                    metadata_only,
                })
            })
            .collect()
    }

    /// Puts back the content of every guarded file small enough to keep
    /// (secrets, key, policies, configurations) as it was laid out, so
    /// that an effect judged once (a secret overwritten through a link an
    /// allowed program made) does not blind the judge afterwards: the
    /// canaries stay in the secrets, the policies stay loadable.
    fn restore_content(&self) {
        for (path, content) in &self.originals {
            if std::fs::read(path).ok().as_ref() != Some(content) {
                let _ = write(path, content);
            }
        }
    }

    /// Puts back the mode, owner and times of every guarded file as the
    /// snapshot has them (a metadata effect on the key would keep the
    /// enforcer from starting again), and removes the extended attribute
    /// the attacks set.
    pub(crate) fn restore_metadata(&self) {
        use std::os::unix::fs::PermissionsExt;
        for (path, before) in &self.snapshot {
            let (Some(before), Some(now)) = (before, file_state(path)) else {
                continue;
            };
            if now.mode != before.mode {
                let _ = std::fs::set_permissions(
                    path,
                    std::fs::Permissions::from_mode(before.mode & 0o7777),
                );
            }
            if now.uid != before.uid || now.gid != before.gid {
                let _ = std::os::unix::fs::chown(path, Some(before.uid), Some(before.gid));
            }
            if now.mtime_ns != before.mtime_ns
                && let Ok(file) = std::fs::File::options().write(true).open(path)
            {
                let secs = u64::try_from(before.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
                let nanos = u64::try_from(before.mtime_ns.rem_euclid(1_000_000_000)).unwrap_or(0);
                let time = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(secs)
                    + std::time::Duration::from_nanos(nanos);
                let _ = file.set_times(std::fs::FileTimes::new().set_modified(time));
            }
            remove_campaign_xattr(path);
        }
    }

    /// Whether `bytes` carry any planted secret: what reached the agent,
    /// and whether that secret lies in the workspace.
    pub(crate) fn leaks(&self, bytes: &[u8]) -> Option<(String, bool)> {
        self.canaries
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_empty() && bytes.windows(c.len()).any(|w| w == c.as_slice()))
            .map(|(i, c)| {
                (
                    format!("secret {} reached the agent", String::from_utf8_lossy(c)),
                    i < WORKSPACE_CANARIES,
                )
            })
    }

    /// Connections the loopback listener accepted since the last call
    /// (the policy allows none).
    pub(crate) fn take_accepts(&self) -> u64 {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }

    /// Connections the Unix socket outside the workspace accepted since
    /// the last call.
    pub(crate) fn take_unix_accepts(&self) -> u64 {
        let mut n = 0;
        while self.unix.accept().is_ok() {
            n += 1;
        }
        n
    }

    /// Whether the sentinel process is alive and untraced.
    pub(crate) fn sentinel_problem(&mut self) -> Option<String> {
        if !matches!(self.sentinel.try_wait(), Ok(None)) {
            return Some("the sentinel process was killed".into());
        }
        process_problem(self.sentinel.id(), "sentinel")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}

/// Whether `pid` is stopped, traced or gone (read from `/proc`).
pub(crate) fn process_problem(pid: u32, who: &str) -> Option<String> {
    let mut status = String::new();
    if std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut status))
        .is_err()
    {
        return Some(format!("the {who} (pid {pid}) is gone"));
    }
    for line in status.lines() {
        if let Some(tracer) = line.strip_prefix("TracerPid:")
            && tracer.trim() != "0"
        {
            return Some(format!("the {who} is traced by pid {}", tracer.trim()));
        }
        if let Some(state) = line.strip_prefix("State:") {
            let state = state.trim();
            if state.starts_with('T') || state.starts_with('t') || state.starts_with('Z') {
                return Some(format!("the {who} is in state {state}"));
            }
        }
    }
    None
}

/// What the evidence of a batch says, decoded.
#[derive(Debug, Default)]
pub(crate) struct EvidenceFacts {
    /// Allow decisions, as `(record index, action)`.
    pub(crate) allows: Vec<(usize, Action)>,
    /// Index of the first halt event, if any.
    pub(crate) halt: Option<usize>,
    /// Approvals recorded, by record index.
    pub(crate) approvals: Vec<usize>,
    /// Policy loads after the first, by record index.
    pub(crate) reloads: Vec<usize>,
    /// Records in all.
    pub(crate) records: usize,
}

/// Decodes the evidence file (without verifying: `audit_cli` does that).
pub(crate) fn evidence_facts(path: &Path) -> Result<EvidenceFacts, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let records = split_records(&bytes).map_err(|e| e.to_string())?;
    let mut facts = EvidenceFacts {
        records: records.len(),
        ..EvidenceFacts::default()
    };
    for (i, body) in records.iter().enumerate() {
        match decode_record(body).map_err(|e| e.to_string())? {
            Record::Decision { request, receipt } => {
                let body = kernel_core::decode_receipt_body_unverified(&receipt.body)
                    .map_err(|e| e.to_string())?;
                if body.decision == Decision::Allow {
                    let request = EncodedRequest::decode(&request).map_err(|e| e.to_string())?;
                    facts
                        .allows
                        .push((i, request.request().action.action().clone()));
                }
            }
            Record::Event(signed) => match signed.decode_unverified() {
                Ok(Event::Halt { .. }) if facts.halt.is_none() => facts.halt = Some(i),
                Ok(Event::Approval { .. }) => facts.approvals.push(i),
                Ok(Event::PolicyLoad { .. }) => facts.reloads.push(i),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            },
            Record::Checkpoint { .. } | Record::FrontierCheckpoint { .. } => {}
        }
    }
    Ok(facts)
}

/// `kernel-enforcer audit verify` with the enforcer's public key: the
/// evidence must verify as a whole.
pub(crate) fn audit_verify(world: &World, evidence: &Path) -> Result<(), String> {
    let out = Command::new(&world.enforcer)
        .args(["audit", "verify", "--kernel-key", &world.public_key])
        .arg(evidence)
        .output()
        .map_err(|e| format!("audit verify: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "audit verify failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An allow record the policy must never produce: a file action on a
/// guarded path or a forbidden secret, any connection, a deployment
/// without an approval.
pub(crate) fn forbidden_allow(world: &World, action: &Action) -> Option<String> {
    let guarded = |p: &str| {
        world.guarded.iter().any(|g| g.to_string_lossy() == p)
            || p.starts_with(&world.plan.outside_dir)
            || p.starts_with(&format!("{}/state", world.root.display()))
    };
    match action {
        Action::FileRead { path }
        | Action::FileDelete { path }
        | Action::FileWrite { path, .. }
            if guarded(path) =>
        {
            Some(format!("allow record for {action:?}"))
        }
        Action::NetConnect { .. } => Some(format!("allow record for {action:?}")),
        // The campaign's file tool: it may write only `notes.md` and read
        // only `README.md`, whatever else its input says.
        Action::ToolCall { name, input } if name == "write_file" || name == "read_file" => {
            let meant = if name == "write_file" {
                "notes.md"
            } else {
                "README.md"
            };
            let path = serde_json::from_str::<serde_json::Value>(input)
                .ok()
                .and_then(|v| {
                    v.get("path")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                });
            (path.as_deref() != Some(meant)).then(|| {
                format!(
                    "allow record for the {name} tool on {path:?}; the policy means {meant} only"
                )
            })
        }
        _ => None,
    }
}

/// The extended attribute the metadata attacks set.
pub(crate) const CAMPAIGN_XATTR: &str = "user.agent-kernel-campaign";

fn remove_campaign_xattr(path: &Path) {
    let (Ok(path), Ok(name)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(CAMPAIGN_XATTR),
    ) else {
        return;
    };
    // SAFETY: both pointers are to NUL-terminated strings alive for the call.
    #[allow(unsafe_code, reason = "removexattr has no safe wrapper in std")]
    unsafe {
        libc::removexattr(path.as_ptr(), name.as_ptr());
    }
}
