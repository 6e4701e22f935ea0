//! The real enforcer binary, and the files a test gives it.

use crate::wait::{Reaped, signal, wait_for};
use kernel_client::{Action, Denial, Kernel, Permit, SpawnConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `kernel-enforcer` binary under test: the one cargo built for this
/// test or benchmark (`CARGO_BIN_EXE_kernel-enforcer`, which cargo sets
/// when it runs the enforcer's own tests), else the one beside the test
/// binary's directory (`target/<profile>/`, which `cargo test
/// --workspace` builds). Fails the test when there is none.
pub fn enforcer() -> &'static Path {
    static ENFORCER: OnceLock<PathBuf> = OnceLock::new();
    ENFORCER.get_or_init(|| {
        if let Some(path) = std::env::var_os("CARGO_BIN_EXE_kernel-enforcer") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let path = exe
            .parent()
            .and_then(Path::parent)
            .map(|profile| profile.join("kernel-enforcer"))
            .unwrap_or_default();
        assert!(
            path.is_file(),
            "no `{}`: build the enforcer first (`cargo build -p kernel-enforcer`)",
            path.display()
        );
        path
    })
}

/// `kernel-enforcer` with `args`, run to its end.
pub fn run_enforcer(args: &[&str]) -> Output {
    Command::new(enforcer())
        .args(args)
        .output()
        .expect("run the enforcer")
}

/// What a command printed: its standard output and standard error, as
/// text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What a command said: its exit code (-1 when a signal ended it) and
/// everything it printed, standard output first.
pub fn said(output: &Output) -> (i32, String) {
    let (stdout, stderr) = text(output);
    (output.status.code().unwrap_or(-1), stdout + &stderr)
}

/// A temporary directory holding a workspace (`ws/`), a state directory
/// (`state/`) with a policy file and, once an enforcer ran, its evidence,
/// and a directory that is neither (`outside/`). Removed when dropped.
#[derive(Debug)]
pub struct Fixture {
    /// The temporary directory itself.
    pub dir: tempfile::TempDir,
    /// The directory, with every symbolic link in its path resolved: the
    /// paths below are beneath it, as the enforcer names them.
    pub root: PathBuf,
    /// The agent's workspace, `ws/`.
    pub workspace: PathBuf,
    /// The policy, `state/policy.cedar`.
    pub policy: PathBuf,
    /// The evidence log, `state/evidence.log` (not created here).
    pub evidence: PathBuf,
    /// A directory beside the workspace and the state, `outside/`: where
    /// an agent has no business.
    pub outside: PathBuf,
}

/// A [`Fixture`] whose policy file holds `policy`, in the system's
/// temporary directory.
pub fn fixture(policy: &str) -> Fixture {
    fixture_in(&std::env::temp_dir(), policy)
}

/// A [`Fixture`] whose policy file holds `policy`, in a new directory
/// inside `base` (a benchmark's on the disk it measures, say).
pub fn fixture_in(base: &Path, policy: &str) -> Fixture {
    std::fs::create_dir_all(base).expect("the base directory");
    let dir = tempfile::Builder::new()
        .prefix("kernel-")
        .tempdir_in(base)
        .expect("a temporary directory");
    let root = std::fs::canonicalize(dir.path()).expect("the temporary directory's path");
    let workspace = root.join("ws");
    let state = root.join("state");
    let outside = root.join("outside");
    for made in [&workspace, &state, &outside] {
        std::fs::create_dir_all(made).expect("the fixture's directories");
    }
    let policy_path = state.join("policy.cedar");
    std::fs::write(&policy_path, policy).expect("the policy file");
    Fixture {
        workspace,
        policy: policy_path,
        evidence: state.join("evidence.log"),
        outside,
        root,
        dir,
    }
}

impl Fixture {
    /// The state directory, beside the workspace.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// How the client spawns the enforcer over this fixture (a 5 s
    /// timeout per request).
    pub fn config(&self) -> SpawnConfig {
        SpawnConfig::new(&self.policy, &self.workspace, &self.evidence)
            .enforcer(enforcer())
            .timeout(Duration::from_secs(5))
    }

    /// The enforcer spawned with [`Fixture::config`].
    pub fn spawn(&self) -> Kernel {
        Kernel::spawn(self.config()).expect("spawn the enforcer")
    }

    /// `name` inside the workspace, as a string (a path an action names).
    pub fn ws(&self, name: &str) -> String {
        self.workspace.join(name).to_string_lossy().into_owned()
    }

    /// The control socket a spawned enforcer serves.
    pub fn control(&self) -> PathBuf {
        control_path(&self.evidence)
    }

    /// An operator command (`status`, `halt`, `approve 1`...) on this
    /// fixture's control socket.
    pub fn operator(&self, args: &[&str]) -> Output {
        operator(&self.control(), args)
    }

    /// `kernel-enforcer run` (supervised) over this fixture with `flags`;
    /// the caller adds `--` and the agent.
    pub fn run_command(&self, flags: &[&str]) -> Command {
        let mut command = Command::new(enforcer());
        command
            .arg("run")
            .args(flags)
            .arg("--policy")
            .arg(&self.policy)
            .arg("--workspace")
            .arg(&self.workspace)
            .arg("--evidence")
            .arg(&self.evidence);
        command
    }

    /// `kernel-enforcer run --govern-syscalls` over this fixture with
    /// `flags`; the caller adds `--` and the agent.
    pub fn governed_run(&self, flags: &[&str]) -> Command {
        let mut command = self.run_command(&["--govern-syscalls"]);
        command.args(flags);
        command
    }

    /// [`Fixture::governed_run`] of `program` with `args`.
    pub fn governed(&self, flags: &[&str], program: &str, args: &[&str]) -> Command {
        let mut command = self.governed_run(flags);
        command.arg("--").arg(program).args(args);
        command
    }
}

/// The control socket `SpawnConfig` puts beside `evidence`.
pub fn control_path(evidence: &Path) -> PathBuf {
    let mut path = evidence.as_os_str().to_owned();
    path.push(".control");
    PathBuf::from(path)
}

/// `kernel-enforcer ARGS --control CONTROL`: an operator's command to the
/// enforcer serving `control`, run to its end.
pub fn operator(control: &Path, args: &[&str]) -> Output {
    Command::new(enforcer())
        .args(args)
        .arg("--control")
        .arg(control)
        .output()
        .expect("run the operator's command")
}

/// `kernel-enforcer ARGS PATH`, run to its end.
fn enforcer_on(args: &[&str], path: &Path) -> Output {
    Command::new(enforcer())
        .args(args)
        .arg(path)
        .output()
        .expect("run the enforcer")
}

/// Runs `kernel-enforcer keygen --out dir`; returns the private key file
/// and the public key it printed.
pub fn keygen(dir: &Path) -> (PathBuf, kernel_core::VerifyingKey) {
    let out = enforcer_on(&["keygen", "--out"], dir);
    assert!(out.status.success(), "keygen failed: {out:?}");
    let printed = String::from_utf8(out.stdout).expect("a printed key");
    let key = kernel_core::parse_public_key(&printed).expect("a public key");
    (dir.join("kernel.key"), key)
}

/// What `kernel-enforcer audit verify` says of `evidence`, which must
/// verify.
pub fn audit_verify(evidence: &Path) -> String {
    let out = enforcer_on(&["audit", "verify"], evidence);
    assert!(
        out.status.success(),
        "the evidence does not verify: {out:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines `kernel-enforcer audit inspect` prints for `evidence`.
pub fn audit_inspect(evidence: &Path) -> String {
    let out = enforcer_on(&["audit", "inspect"], evidence);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kernel-enforcer listen` deciding by `policy` over `workspace`,
/// recording to `evidence` and serving `socket`, its input and output
/// discarded; more arguments (`--policy`, `--key`, `--shadow`) may follow.
pub fn listen_command(policy: &Path, workspace: &Path, evidence: &Path, socket: &Path) -> Command {
    let mut command = Command::new(enforcer());
    command
        .arg("listen")
        .arg("--policy")
        .arg(policy)
        .arg("--workspace")
        .arg(workspace)
        .arg("--evidence")
        .arg(evidence)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A running `kernel-enforcer listen`, killed when dropped.
#[derive(Debug)]
pub struct Listener {
    /// The `listen` process.
    pub child: Reaped,
    /// The socket it serves.
    pub socket: PathBuf,
}

impl Listener {
    /// Starts `command`, a `listen` serving `socket`, and waits (at most
    /// 20 s) until the socket takes connections.
    pub fn start(command: &mut Command, socket: &Path) -> Self {
        let child = Reaped(command.spawn().expect("start listen"));
        wait_for("listen to come up", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(socket).is_ok()
        });
        Self {
            child,
            socket: socket.to_owned(),
        }
    }

    /// The `listen` of `fixture`'s policy, workspace and evidence, its
    /// socket `endpoint.sock` in the state directory, with `extra`
    /// arguments.
    pub fn of(fixture: &Fixture, extra: &[&str]) -> Self {
        let socket = fixture.state().join("endpoint.sock");
        Self::start(
            listen_command(
                &fixture.policy,
                &fixture.workspace,
                &fixture.evidence,
                &socket,
            )
            .args(extra),
            &socket,
        )
    }

    /// Ends it as an operator does (`SIGTERM`, so that its final
    /// checkpoint is written) and waits (at most 20 s) until it has.
    pub fn terminate(&mut self) {
        signal(self.child.0.id(), "TERM");
        wait_for("listen to stop", Duration::from_secs(20), || {
            self.child.0.try_wait().expect("wait for listen").is_some()
        });
    }
}

/// One `authorize` of a file read, as the thread that asked saw it.
#[derive(Debug)]
pub struct Call {
    /// Which of the test's threads asked.
    pub thread: usize,
    /// The file asked to read.
    pub path: String,
    /// When the call started.
    pub started: Instant,
    /// When its answer came.
    pub finished: Instant,
    /// The answer.
    pub outcome: Result<Permit, Denial>,
}

impl Call {
    /// Asks `kernel` to read `path`, for `thread`, timing the call.
    pub fn read(kernel: &Kernel, thread: usize, path: String) -> Self {
        let started = Instant::now();
        let outcome = kernel.authorize(Action::file_read(path.as_str()));
        Self {
            thread,
            path,
            started,
            finished: Instant::now(),
            outcome,
        }
    }
}

/// Fails the test unless every file still holds the content paired with
/// it: the effect that was refused did not happen.
pub fn assert_unchanged<'a>(files: impl IntoIterator<Item = &'a (PathBuf, String)>) {
    for (path, content) in files {
        assert_eq!(
            std::fs::read_to_string(path).ok().as_deref(),
            Some(content.as_str()),
            "`{}` changed",
            path.display()
        );
    }
}

/// Plants a private key holding `content` at `home/.ssh/id_ed25519`;
/// returns the key's path.
pub fn plant_ssh_key(home: &Path, content: &str) -> PathBuf {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).expect("the .ssh directory");
    let key = ssh.join("id_ed25519");
    std::fs::write(&key, content).expect("the key");
    key
}
