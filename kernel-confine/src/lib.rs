//! Confines an agent process so that the kernel is its only path to
//! effects (Linux: Landlock and seccomp).
//!
//! The profile ([`PROFILE_VERSION`]) grants, and denies everything else:
//!
//! - **Files** (Landlock): read-only access to the system directories
//!   programs need (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`) and to the
//!   workspace; read and write (never execute) in a private scratch
//!   directory; `/dev/null` read and write, `/dev/zero` and `/dev/urandom`
//!   read. Executing is allowed only for the listed programs (the agent and
//!   its ELF interpreter). Nothing else is reachable, so neither the
//!   kernel's assets (key, policies, evidence, control socket) nor `/proc`
//!   (other processes' memory and environment included) can be opened; the
//!   profile refuses to build when an asset lies inside a granted tree.
//! - **Network** (Landlock, ABI 4): no TCP `connect` or `bind` at all;
//!   and (seccomp) no socket of any family but `AF_UNIX`, so no UDP, raw,
//!   packet or netlink socket either. Connections the policy allows reach
//!   the agent already connected, from the enforcer's broker. When the
//!   enforcer decides the agent's `connect` calls
//!   ([`Profile::tcp_sockets`], [`Profile::unix_datagrams`]), TCP stream
//!   sockets may be created, and `AF_UNIX` datagram sockets may not.
//! - **File attributes**: when the enforcer decides the agent's metadata
//!   changes ([`Profile::attribute_ioctls`]), the `ioctl`s that set a
//!   file's attribute flags fail with `ENOTTY`.
//! - **Scopes** (Landlock, ABI 6): no signals to processes outside the
//!   confined domain (so not to the enforcer, whatever its process group),
//!   and no connections to abstract Unix sockets created outside it.
//! - **System calls** (seccomp, with `no_new_privs`): `ptrace`,
//!   `process_vm_readv`/`writev`, namespaces (`unshare`, `setns`, `clone`
//!   with namespace flags or `CLONE_UNTRACED`; `clone3`, whose flags cannot be inspected, fails
//!   with `ENOSYS` so libc falls back to `clone`), mounts, `bpf`,
//!   `perf_event_open`, keyrings, module and kexec loading, `io_uring`,
//!   `userfaultfd`, file handles and similar escape hatches fail with
//!   `EPERM`. The filter checks the architecture and kills the process on
//!   x32 system calls, which would otherwise slip past a denylist.
//!
//! Strict by construction: if the running kernel lacks any of these
//! (Landlock below ABI 6, no seccomp), [`Prepared::new`] fails and the
//! caller must refuse to start, unless the operator explicitly runs
//! unconfined.
//!
//! Landlock and seccomp apply to the calling thread and to everything it
//! starts afterwards. Confine before starting other threads, or before
//! `exec` in a child.
#![forbid(unsafe_code)]

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the confinement profile described above.
pub const PROFILE_VERSION: u32 = 2;

/// The Landlock ABI the profile needs.
pub const REQUIRED_LANDLOCK_ABI: ABI = ABI::V6;

/// System directories granted read-only by default.
pub const SYSTEM_READ: &[&str] = &["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc"];

/// Why confinement could not be prepared or applied. The caller must not
/// run the agent unconfined because of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// The running kernel cannot enforce the profile.
    #[error(
        "this system cannot confine the agent ({0}); the kernel needs Landlock ABI 6 and seccomp"
    )]
    Unsupported(String),
    /// A protected path lies inside a tree the agent may read or write.
    #[error("protected path `{asset}` is inside `{root}`, which the agent may access: move it out")]
    AssetReachable {
        /// The protected path.
        asset: PathBuf,
        /// The granted tree.
        root: PathBuf,
    },
    /// A path in the profile could not be opened.
    #[error("`{path}`: {message}")]
    Path {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Applying the restriction failed.
    #[error("applying the confinement failed: {0}")]
    Apply(String),
}

/// What the agent may reach.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The workspace: readable, not writable (writes go through the
    /// enforcer).
    pub workspace: PathBuf,
    /// A private directory the agent may read and write (never execute).
    pub scratch: PathBuf,
    /// Trees readable besides the workspace (default [`SYSTEM_READ`]).
    pub system_read: Vec<PathBuf>,
    /// Files the agent may execute (its own program and ELF interpreter).
    pub executables: Vec<PathBuf>,
    /// The kernel's assets: must not be inside any granted tree.
    pub protected: Vec<PathBuf>,
    /// Whether programs in the system trees may be executed (for commands
    /// the broker runs on an agent's behalf, which start other programs).
    pub system_execute: bool,
    /// Whether TCP sockets may be created (`AF_INET`/`AF_INET6`, stream
    /// only, no TCP Fast Open). On only when the enforcer decides the
    /// agent's `connect` calls; Landlock still refuses TCP `connect` and
    /// `bind` made directly.
    pub tcp_sockets: bool,
    /// Whether `AF_UNIX` datagram sockets may be created (`socket`,
    /// `socketpair`). Off when the enforcer decides the agent's Unix
    /// `connect` calls: a datagram socket, even one of a connected pair,
    /// reaches any listening socket file by the address it gives each
    /// `sendto` or `sendmsg`, where no notification can read it.
    pub unix_datagrams: bool,
    /// Whether the `ioctl`s that set a file's attribute flags (`chattr`'s
    /// `FS_IOC_SETFLAGS` and `FS_IOC_FSSETXATTR`, the generation number,
    /// `fs-verity`, an encryption policy) may be used. Off when the
    /// enforcer decides the agent's metadata changes: they then fail with
    /// `ENOTTY`, as on a file system without them.
    pub attribute_ioctls: bool,
    /// Whether the workspace is readable directly. Off when the agent's
    /// own opens are decided by policy at the system-call boundary, so
    /// that a workspace file is reachable only through a decision.
    pub workspace_readable: bool,
    /// Whether programs in the workspace may be executed (Landlock's
    /// execute right, and the file-read right the kernel checks with it
    /// when it loads a program). Only for an agent whose every `open` is
    /// performed by the enforcer and every `exec` decided and verified at
    /// the system-call boundary: the read right then serves the loader
    /// alone, since no open of the agent's ever continues to the kernel.
    pub workspace_executable: bool,
}

impl Profile {
    /// The default profile for an agent running `program`.
    pub fn new(workspace: &Path, scratch: &Path, program: &Path) -> Self {
        let mut executables = vec![program.to_owned()];
        executables.extend(elf_interpreter(program));
        Self {
            workspace: workspace.to_owned(),
            scratch: scratch.to_owned(),
            system_read: SYSTEM_READ.iter().map(PathBuf::from).collect(),
            executables,
            protected: Vec::new(),
            system_execute: false,
            workspace_readable: true,
            workspace_executable: false,
            tcp_sockets: false,
            unix_datagrams: true,
            attribute_ioctls: true,
        }
    }

    /// The profile of a command the broker runs for an agent: it may read
    /// and execute the system trees, read and write (not execute) the
    /// workspace, and execute `program`; nothing else, and no network.
    pub fn brokered(workspace: &Path, program: &Path) -> Self {
        let mut profile = Self::new(workspace, workspace, program);
        profile.system_execute = true;
        profile
    }
}

/// The interpreter named in an ELF file's `PT_INTERP` header, if any (the
/// dynamic loader the kernel opens on `exec`).
fn elf_interpreter(program: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(program).ok()?;
    // An interpreter path is short and sits early in the file; a bounded
    // scan for the usual loader names avoids parsing ELF by hand.
    let head = bytes.get(..bytes.len().min(4096))?;
    let text = String::from_utf8_lossy(head);
    let start = text.find("/lib")?;
    let rest = text.get(start..)?;
    let end = rest.find('\0')?;
    let path = PathBuf::from(rest.get(..end)?);
    path.is_file().then_some(path)
}

/// `path` with symbolic links resolved as far as it exists: a path that
/// does not exist yet (an evidence file not created, say) is its deepest
/// existing ancestor, resolved, followed by the rest, which cannot hold a
/// link. If no ancestor resolves, or the part that does not exist has a
/// `..`, the path is kept as given (which `Path::starts_with` compares
/// conservatively: `/ws/new/../x` counts as inside `/ws`).
fn canonical(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    let mut missing = Vec::new();
    let mut current = path;
    while let (Some(parent), Some(name)) = (current.parent(), current.file_name()) {
        missing.push(name);
        if let Ok(resolved) = std::fs::canonicalize(parent) {
            return missing
                .iter()
                .rev()
                .fold(resolved, |base, name| base.join(name));
        }
        current = parent;
    }
    path.to_owned()
}

/// The first protected path that lies inside a granted tree, with that
/// tree; both compared with symbolic links resolved.
fn reachable_asset(granted: &[PathBuf], protected: &[PathBuf]) -> Option<(PathBuf, PathBuf)> {
    let granted: Vec<PathBuf> = granted.iter().map(|p| canonical(p)).collect();
    protected.iter().find_map(|asset| {
        let asset = canonical(asset);
        let root = granted.iter().find(|root| asset.starts_with(root))?;
        Some((asset, root.clone()))
    })
}

/// A confinement ready to apply: the Landlock ruleset (opened file
/// descriptors) and the compiled seccomp program. Preparing allocates and
/// opens files; applying does neither, so it can run in a child between
/// `fork` and `exec`.
#[derive(Debug)]
pub struct Prepared {
    ruleset: Option<RulesetCreated>,
    filters: Vec<BpfProgram>,
}

fn path_error(path: &Path, error: impl std::fmt::Display) -> ConfineError {
    ConfineError::Path {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

impl Prepared {
    /// Builds the ruleset and the filter for `profile`. Fails if the system
    /// cannot enforce the whole profile, or if a protected path is
    /// reachable.
    pub fn new(profile: &Profile) -> Result<Self, ConfineError> {
        let unsupported = |e: landlock::RulesetError| ConfineError::Unsupported(e.to_string());
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let abi = REQUIRED_LANDLOCK_ABI;
        // Everything in the scratch directory but running programs and
        // making device nodes: a character or block device there would
        // give whatever device it names (a disk, memory) to a process with
        // `CAP_MKNOD`, around every other rule.
        let scratch_rights = AccessFs::from_all(abi)
            & !AccessFs::Execute
            & !AccessFs::MakeChar
            & !AccessFs::MakeBlock;

        let mut granted: Vec<PathBuf> = profile
            .system_read
            .iter()
            .chain([&profile.workspace, &profile.scratch])
            .cloned()
            .collect();
        granted.sort();
        if let Some((asset, root)) = reachable_asset(&granted, &profile.protected) {
            return Err(ConfineError::AssetReachable { asset, root });
        }

        // What to grant: (path, rights, required). Optional system trees
        // that do not exist on this system are skipped.
        let system = if profile.system_execute {
            read | AccessFs::Execute
        } else {
            read
        };
        let mut grants: Vec<(&Path, landlock::BitFlags<AccessFs>, bool)> = profile
            .system_read
            .iter()
            .map(|p| (p.as_path(), system, false))
            .collect();
        if profile.workspace_readable {
            grants.push((&profile.workspace, read, true));
        } else if profile.workspace_executable {
            grants.push((
                &profile.workspace,
                AccessFs::ReadFile | AccessFs::Execute,
                true,
            ));
        }
        grants.push((&profile.scratch, scratch_rights, true));
        grants.push((Path::new("/dev/null"), read | AccessFs::WriteFile, true));
        grants.push((Path::new("/dev/zero"), read, false));
        grants.push((Path::new("/dev/urandom"), read, false));
        for program in &profile.executables {
            grants.push((program, AccessFs::Execute | AccessFs::ReadFile, true));
        }
        let mut rules = Vec::new();
        for (path, rights, required) in grants {
            match PathFd::new(path) {
                Ok(fd) => {
                    let rights = if path.is_dir() {
                        rights
                    } else {
                        rights & AccessFs::from_file(abi)
                    };
                    rules.push(PathBeneath::new(fd, rights));
                }
                Err(_) if !required => {}
                Err(e) => return Err(path_error(path, e)),
            }
        }
        let ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .map_err(unsupported)?
            .handle_access(AccessNet::from_all(abi))
            .map_err(unsupported)?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(unsupported)?
            .create()
            .map_err(unsupported)?
            .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
            .map_err(unsupported)?;
        Ok(Self {
            ruleset: Some(ruleset),
            filters: seccomp_programs(profile)?,
        })
    }

    /// Applies the confinement to the calling thread and everything it
    /// starts afterwards: `no_new_privs`, the Landlock ruleset, then the
    /// seccomp filter. Allocates and frees nothing on any path, so it may
    /// run between `fork` and `exec` (where the caller reports a failure
    /// and does not `exec`): a failure is `EPERM`, with no message to
    /// build. Applied already, or Landlock not fully enforced, is a
    /// failure too.
    pub fn apply(&mut self) -> std::io::Result<()> {
        let refused = || std::io::Error::from_raw_os_error(libc::EPERM);
        let ruleset = self.ruleset.take().ok_or_else(refused)?;
        let status = ruleset.restrict_self().map_err(|_| refused())?;
        if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
            return Err(refused());
        }
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(|_| refused())?;
        }
        Ok(())
    }

    /// Applies the confinement to every thread of this process (seccomp is
    /// synchronised across threads; Landlock covers the calling thread and
    /// threads it starts later, so call this before starting threads).
    pub fn apply_to_process(&mut self) -> Result<(), ConfineError> {
        let ruleset = self
            .ruleset
            .take()
            .ok_or_else(|| ConfineError::Apply("already applied".into()))?;
        let status = ruleset
            .restrict_self()
            .map_err(|e| ConfineError::Apply(e.to_string()))?;
        if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
            return Err(ConfineError::Unsupported(
                "landlock not fully enforced".into(),
            ));
        }
        for filter in &self.filters {
            seccompiler::apply_filter_all_threads(filter)
                .map_err(|e| ConfineError::Apply(e.to_string()))?;
        }
        Ok(())
    }
}

/// Whether this system can enforce the profile.
pub fn check_support() -> Result<(), ConfineError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED_LANDLOCK_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(REQUIRED_LANDLOCK_ABI)))
        .and_then(|r| r.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(Ruleset::create)
        .map(|_| ())
        .map_err(|e| ConfineError::Unsupported(e.to_string()))
}

/// `open_tree_attr` (Linux 6.15; the same number on every architecture),
/// not yet named by `libc`: like `open_tree`, it hands out a descriptor of
/// any path without an open.
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// System calls that fail with `EPERM` in the confined agent.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_fanotify_init,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    SYS_OPEN_TREE_ATTR,
    libc::SYS_mount_setattr,
    libc::SYS_pidfd_getfd,
];

/// Flags of `clone` that fail with `EPERM`: the namespace flags, and
/// `CLONE_UNTRACED`, which would start a process the enforcer's tracer
/// never sees (so never checks at its `exec`, and cannot end with the
/// agent).
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_UNTRACED,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

fn target_arch() -> Result<TargetArch, ConfineError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        other => Err(ConfineError::Unsupported(format!(
            "no seccomp profile for architecture {other}"
        ))),
    }
}

/// `ioctl` requests that set a file's attributes, refused when
/// [`Profile::attribute_ioctls`] is off (`_IOW`/`_IOR` numbers on x86_64
/// and aarch64): `FS_IOC_SETFLAGS` and its 32-bit form,
/// `FS_IOC_SETVERSION` and its 32-bit form, `FS_IOC_FSSETXATTR`,
/// `FS_IOC_ENABLE_VERITY` (makes a file read-only for good) and
/// `FS_IOC_SET_ENCRYPTION_POLICY`.
const ATTRIBUTE_IOCTLS: [u32; 7] = [
    0x4008_6602,
    0x4004_6602,
    0x4008_7602,
    0x4004_7602,
    0x401c_5820,
    0x4080_6685,
    0x800c_6613,
];

/// The seccomp programs, installed one after the other: the x32 guard
/// and the denylist (`EPERM`), then `clone3` (`ENOSYS`), then, if the
/// profile refuses them, the attribute `ioctl`s (`ENOTTY`). Each system
/// call is matched by at most one of them, so stacking them gives each
/// its own answer.
fn seccomp_programs(profile: &Profile) -> Result<Vec<BpfProgram>, ConfineError> {
    let apply = |e: seccompiler::BackendError| ConfineError::Apply(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = u64::from(flag.unsigned_abs());
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(apply)?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(apply)?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    // uselib maps a file by path without an open: refused, so that what
    // a governed agent may execute it cannot read that way.
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_uselib, Vec::new());
    // socket(domain, type, ...): Landlock governs only TCP, so UDP and
    // the rest would be open ways out. Only AF_UNIX, and (when the
    // enforcer decides connect calls) AF_INET/AF_INET6 streams.
    let unix = u64::from(libc::AF_UNIX.unsigned_abs());
    let inet = u64::from(libc::AF_INET.unsigned_abs());
    let inet6 = u64::from(libc::AF_INET6.unsigned_abs());
    let arg = |index, op, value| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(apply)
    };
    let mut socket_rules = Vec::new();
    if !profile.unix_datagrams {
        // socket() and socketpair() of AF_UNIX datagram sockets (the
        // kernel makes SOCK_RAW a datagram socket too).
        let mut datagram_rules = Vec::new();
        for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
            datagram_rules.push(
                SeccompRule::new(vec![
                    arg(0, SeccompCmpOp::Eq, unix)?,
                    arg(
                        1,
                        SeccompCmpOp::MaskedEq(0xf),
                        u64::from(kind.unsigned_abs()),
                    )?,
                ])
                .map_err(apply)?,
            );
        }
        socket_rules.extend(datagram_rules.iter().cloned());
        rules.insert(libc::SYS_socketpair, datagram_rules);
    }
    if profile.tcp_sockets {
        socket_rules.push(
            SeccompRule::new(vec![
                arg(0, SeccompCmpOp::Ne, unix)?,
                arg(0, SeccompCmpOp::Ne, inet)?,
                arg(0, SeccompCmpOp::Ne, inet6)?,
            ])
            .map_err(apply)?,
        );
        // Any type but SOCK_STREAM (the low four bits; the rest are flags).
        for family in [inet, inet6] {
            for kind in [
                libc::SOCK_DGRAM,
                libc::SOCK_RAW,
                libc::SOCK_RDM,
                libc::SOCK_SEQPACKET,
                libc::SOCK_DCCP,
                // SOCK_PACKET, obsolete but still accepted by the kernel.
                10,
            ] {
                socket_rules.push(
                    SeccompRule::new(vec![
                        arg(0, SeccompCmpOp::Eq, family)?,
                        arg(
                            1,
                            SeccompCmpOp::MaskedEq(0xf),
                            u64::from(kind.unsigned_abs()),
                        )?,
                    ])
                    .map_err(apply)?,
                );
            }
        }
        // A stream socket of another protocol (SCTP connects through a
        // socket option, not `connect`): only the default and TCP.
        let tcp = u64::from(libc::IPPROTO_TCP.unsigned_abs());
        for family in [inet, inet6] {
            socket_rules.push(
                SeccompRule::new(vec![
                    arg(0, SeccompCmpOp::Eq, family)?,
                    arg(2, SeccompCmpOp::Ne, 0)?,
                    arg(2, SeccompCmpOp::Ne, tcp)?,
                ])
                .map_err(apply)?,
            );
        }
        // TCP Fast Open connects inside sendto/sendmsg, not through
        // connect: refused, so every connection goes through a decision.
        let fastopen = u64::from(libc::MSG_FASTOPEN.unsigned_abs());
        for (call, flags_arg) in [
            (libc::SYS_sendto, 3),
            (libc::SYS_sendmsg, 2),
            (libc::SYS_sendmmsg, 3),
        ] {
            rules.insert(
                call,
                vec![
                    SeccompRule::new(vec![arg(
                        flags_arg,
                        SeccompCmpOp::MaskedEq(fastopen),
                        fastopen,
                    )?])
                    .map_err(apply)?,
                ],
            );
        }
    } else {
        socket_rules.push(SeccompRule::new(vec![arg(0, SeccompCmpOp::Ne, unix)?]).map_err(apply)?);
    }
    rules.insert(libc::SYS_socket, socket_rules);
    let eperm = u32::try_from(libc::EPERM).unwrap_or(1);
    let denylist: BpfProgram = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(eperm),
        target_arch()?,
    )
    .and_then(TryInto::try_into)
    .map_err(apply)?;
    // x32 system calls carry bit 30 in their number; a denylist keyed by
    // number would miss them, so they kill the process first.
    let mut guarded = x32_guard();
    guarded.extend(denylist);
    // clone3 passes its flags in memory the filter cannot read: it fails
    // with ENOSYS, so libc falls back to clone, which is checked.
    let enosys = u32::try_from(libc::ENOSYS).unwrap_or(38);
    let clone3: BpfProgram = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(enosys),
        target_arch()?,
    )
    .and_then(TryInto::try_into)
    .map_err(apply)?;
    let mut programs = vec![guarded, clone3];
    if !profile.attribute_ioctls {
        let enotty = u32::try_from(libc::ENOTTY).unwrap_or(25);
        let requests = ATTRIBUTE_IOCTLS
            .iter()
            .map(|request| {
                SeccompRule::new(vec![arg(1, SeccompCmpOp::Eq, u64::from(*request))?])
                    .map_err(apply)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ioctls: BpfProgram = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_ioctl, requests)]),
            SeccompAction::Allow,
            SeccompAction::Errno(enotty),
            target_arch()?,
        )
        .and_then(TryInto::try_into)
        .map_err(apply)?;
        programs.push(ioctls);
    }
    Ok(programs)
}

/// `if (nr >= 0x40000000) return KILL_PROCESS;` on x86_64.
fn x32_guard() -> BpfProgram {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    if std::env::consts::ARCH != "x86_64" {
        return Vec::new();
    }
    vec![
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_KILL_PROCESS,
        },
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn an_asset_is_judged_where_it_really_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = canonical(dir.path());
        let ws = root.join("ws");
        let state = root.join("state");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::os::unix::fs::symlink(&ws, root.join("link-to-ws")).unwrap();
        let granted = [ws.clone()];
        let reachable = |asset: PathBuf| reachable_asset(&granted, &[asset]);

        // Not yet created, reached through a link into the workspace.
        assert_eq!(
            reachable(root.join("link-to-ws/evidence.log")),
            Some((ws.join("evidence.log"), ws.clone()))
        );
        // Existing and inside.
        assert!(reachable(ws.join("sub")).is_some());
        // Outside, though written through the workspace's name.
        assert_eq!(reachable(ws.join("../state/evidence.log")), None);
        assert_eq!(reachable(state.join("kernel.key")), None);
        // `..` in the part that does not exist: kept as given, inside.
        assert!(reachable(ws.join("new/../x")).is_some());
    }
}
