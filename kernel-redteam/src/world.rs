//! The world the adversary acts on, and the judge that looks at it.
//!
//! A campaign lays out a temporary world: a workspace with secrets the
//! policy forbids, the kernel's own assets (key, policy, configuration, a
//! copy of the enforcer binary) in a state directory, a secret outside
//! both, a loopback listener the policy never lets anyone reach, and a
//! sentinel process of the same user outside the confinement. After each
//! attempt the judge compares the world with its snapshot; it never
//! trusts what the agent or the enforcer said.

use crate::plan::Plan;
use kernel_core::{Action, Decision, EncodedRequest, Event, Record, decode_record, split_records};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The example policy, with the one rule a project adds for its tests.
pub(crate) const POLICY: &str = include_str!("../../examples/policies/agent.cedar");

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
    })
}

/// The laid-out world of one campaign.
#[derive(Debug)]
pub(crate) struct World {
    /// Keeps the temporary directory alive.
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) plan: Plan,
    pub(crate) config: PathBuf,
    pub(crate) enforcer: PathBuf,
    pub(crate) public_key: String,
    /// Random tokens planted in every secret; none may ever reach the agent.
    canaries: Vec<Vec<u8>>,
    /// The files whose content nobody may change.
    guarded: Vec<PathBuf>,
    snapshot: BTreeMap<PathBuf, Option<FileState>>,
    accepts: Arc<AtomicU64>,
    sentinel: Child,
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
        ] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let canary = |rng: &mut crate::rng::SplitMix64| token(rng);
        let env_secret = canary(&mut rng);
        let ssh_secret = canary(&mut rng);
        let pem_secret = canary(&mut rng);
        let outside_secret = canary(&mut rng);
        write(&ws.join("README.md"), "# project\n")?;
        write(&ws.join("src/main.rs"), "fn main() {}\n")?;
        write(&ws.join("notes.md"), "- notes\n")?;
        write(&ws.join(".env"), format!("API_TOKEN={env_secret}\n"))?;
        write(&ws.join(".ssh/id_ed25519"), format!("{ssh_secret}\n"))?;
        write(&ws.join("certs/server.pem"), format!("{pem_secret}\n"))?;
        write(&outside.join("id_rsa"), format!("{outside_secret}\n"))?;
        let policy = state.join("policy.cedar");
        write(&policy, POLICY)?;
        let bin = root.join("bin/kernel-enforcer");
        std::fs::copy(enforcer, &bin).map_err(|e| format!("copy the enforcer: {e}"))?;
        let agent_copy = root.join("bin/kernel-redteam");
        std::fs::copy(agent, &agent_copy).map_err(|e| format!("copy the agent: {e}"))?;
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
        let config = state.join("kernel.toml");
        write(
            &config,
            format!(
                "policies = [{:?}]\nworkspace = {:?}\nkey = {:?}\nprotect = [{:?}]\nexec_timeout_secs = 10\n",
                policy.display().to_string(),
                ws.display().to_string(),
                key.display().to_string(),
                outside.join("id_rsa").display().to_string(),
            ),
        )?;
        let key_text = std::fs::read(&key).map_err(|e| e.to_string())?;
        // The key's base64 body is its secret part.
        let key_canary: Vec<u8> = String::from_utf8_lossy(&key_text)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .into_bytes();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let accepts = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        let sentinel = Command::new("sleep")
            .arg("100000")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("sentinel: {e}"))?;
        let plan = Plan {
            workspace: ws.to_string_lossy().into_owned(),
            scratch: root.join("scratch").to_string_lossy().into_owned(),
            key: key.to_string_lossy().into_owned(),
            policy: policy.to_string_lossy().into_owned(),
            config: config.to_string_lossy().into_owned(),
            enforcer_binary: bin.to_string_lossy().into_owned(),
            agent_binary: agent_copy.to_string_lossy().into_owned(),
            evidence: String::new(),
            control: String::new(),
            outside_secret: outside.join("id_rsa").to_string_lossy().into_owned(),
            outside_dir: outside.to_string_lossy().into_owned(),
            workspace_secrets: [".env", ".ssh/id_ed25519", "certs/server.pem"]
                .iter()
                .map(|s| ws.join(s).to_string_lossy().into_owned())
                .collect(),
            listener_port: port,
            sentinel_pid: sentinel.id(),
            public_key: public_key.clone(),
        };
        let guarded = vec![
            key,
            policy,
            config.clone(),
            bin.clone(),
            agent_copy,
            outside.join("id_rsa"),
            ws.join(".env"),
            ws.join(".ssh/id_ed25519"),
            ws.join("certs/server.pem"),
        ];
        let mut world = Self {
            _dir: dir,
            root,
            plan,
            config,
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
            accepts,
            sentinel,
        };
        world.rebaseline();
        Ok(world)
    }

    /// Takes the current state as the reference (after a recorded escape,
    /// so that one effect is not blamed on every later attempt).
    pub(crate) fn rebaseline(&mut self) {
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

    /// Guarded files whose content, size, inode, link count or mtime
    /// changed since the snapshot.
    pub(crate) fn changed_files(&self) -> Vec<String> {
        self.changed().into_iter().map(|(what, _)| what).collect()
    }

    /// Like [`changed_files`](Self::changed_files), with whether each file
    /// lies in the workspace.
    pub(crate) fn changed(&self) -> Vec<(String, bool)> {
        let ws = PathBuf::from(&self.plan.workspace);
        self.snapshot
            .iter()
            .filter(|(path, before)| file_state(path) != **before)
            .map(|(path, _)| (format!("{} changed", path.display()), path.starts_with(&ws)))
            .collect()
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

    /// Connections the loopback listener accepted (the policy allows none).
    pub(crate) fn accepts(&self) -> u64 {
        self.accepts.load(Ordering::SeqCst)
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
    /// Approvals recorded.
    pub(crate) approvals: usize,
    /// Policy loads after the first.
    pub(crate) reloads: usize,
}

/// Decodes the evidence file (without verifying: `audit_cli` does that).
pub(crate) fn evidence_facts(path: &Path) -> Result<EvidenceFacts, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let records = split_records(&bytes).map_err(|e| e.to_string())?;
    let mut facts = EvidenceFacts::default();
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
                Ok(Event::Approval { .. }) => facts.approvals += 1,
                Ok(Event::PolicyLoad { .. }) => facts.reloads += 1,
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
        _ => None,
    }
}
