//! The descriptor hand-off: how a brokered connection reaches the agent.
//!
//! The channel to the agent cannot carry file descriptors, and a confined
//! agent may not open TCP connections itself. So for an allowed
//! `NetConnect` the enforcer connects, then sends the connected socket over
//! a side Unix socket (`SOCK_SEQPACKET`, `SCM_RIGHTS`), one message per
//! descriptor: the request's sequence number (8 bytes, little endian) with
//! the descriptor attached.
//!
//! The side socket lives in a fresh directory only the enforcer's user can
//! enter (mode 0700). Its path is announced in the signed handshake. It
//! accepts exactly one connection, and only from the expected process (the
//! supervised agent, or the embedding program that started the enforcer),
//! checked with `SO_PEERCRED`; then the path is removed. Connections from
//! any other process are closed unanswered.

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, sockopt,
};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Name of the socket inside its private directory.
const SOCKET_NAME: &str = "handoff.sock";

/// The enforcer's side of the hand-off, shared by the broker (which sends)
/// and the thread that accepts the agent's connection. Until the agent
/// has joined, sending fails and the connection is not handed over.
#[derive(Clone, Debug, Default)]
pub struct Handoff {
    path: Option<PathBuf>,
    joined: Arc<OnceLock<OwnedFd>>,
    /// The private directory holding the socket, until it is removed.
    dir: Arc<parking_lot::Mutex<Option<tempfile::TempDir>>>,
}

impl Handoff {
    /// A hand-off that never connects (no side socket): brokered
    /// connections fail with a clear error.
    pub fn none() -> Self {
        Self::default()
    }

    /// Path announced to the agent, if there is a side socket.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Removes the socket and its directory (once the agent has joined,
    /// when the wait is over, and when the session ends). A process killed
    /// outright leaves the directory behind; the next enforcer of the same
    /// user removes it.
    pub fn remove_socket(&self) {
        drop(self.dir.lock().take());
    }

    /// Whether the agent has joined.
    pub fn joined(&self) -> bool {
        self.joined.get().is_some()
    }

    /// Sends `descriptor` to the agent, tagged with `seq`. Fails when the
    /// agent has not joined or the socket is gone; the caller then reports
    /// the effect as failed (and closes the descriptor).
    pub fn send(&self, seq: u64, descriptor: BorrowedFd<'_>) -> std::io::Result<()> {
        let Some(socket) = self.joined.get() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the agent has not joined the descriptor hand-off socket",
            ));
        };
        let descriptors = [descriptor];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&descriptors)) {
            return Err(std::io::Error::other("ancillary buffer too small"));
        }
        let tag = seq.to_le_bytes();
        let sent = rustix::net::sendmsg(
            socket,
            &[std::io::IoSlice::new(&tag)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if sent != tag.len() {
            return Err(std::io::Error::other("short send on the hand-off socket"));
        }
        Ok(())
    }
}

/// Name prefix of hand-off directories, followed by the enforcer's pid.
const DIR_PREFIX: &str = "agent-kernel-handoff-";

/// Removes, under `tmp`, the hand-off directories of this user whose
/// enforcer process no longer exists (killed before it could clean up).
/// Only real directories owned by this user, holding nothing but the
/// socket, are touched; anything unexpected is left alone.
fn remove_abandoned(tmp: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let me = rustix::process::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let owned_dir =
            std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir() && meta.uid() == me);
        if !owned_dir || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let only_the_socket = std::fs::read_dir(&path).is_ok_and(|inside| {
            inside.flatten().all(|item| {
                item.file_name() == SOCKET_NAME
                    && item.file_type().is_ok_and(|kind| kind.is_socket())
            })
        });
        if only_the_socket {
            let _ = std::fs::remove_file(path.join(SOCKET_NAME));
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// A bound, listening hand-off socket waiting for the agent.
#[derive(Debug)]
pub struct HandoffListener {
    listener: OwnedFd,
    handoff: Handoff,
}

impl HandoffListener {
    /// Creates a private directory (mode 0700), named after this process,
    /// and listens on a socket in it. Directories an earlier enforcer of
    /// this user left behind when it was killed outright (its process is
    /// gone) are removed first.
    pub fn bind() -> std::io::Result<Self> {
        remove_abandoned(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()?;
        let path = dir.path().join(SOCKET_NAME);
        let listener = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&listener, &SocketAddrUnix::new(&path)?)?;
        rustix::net::listen(&listener, 4)?;
        Ok(Self {
            listener,
            handoff: Handoff {
                path: Some(path),
                joined: Arc::new(OnceLock::new()),
                dir: Arc::new(parking_lot::Mutex::new(Some(dir))),
            },
        })
    }

    /// The shared hand-off the broker sends on.
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Waits (on a thread of its own) until process `expected_pid`
    /// connects, at most `timeout`; then stops listening and removes the
    /// socket. Connections from other processes are closed.
    pub fn accept_in_background(self, expected_pid: u32, timeout: Duration) {
        std::thread::spawn(move || {
            let _ = self.accept(expected_pid, timeout);
        });
    }

    /// Waits until process `expected_pid` connects, at most `timeout`.
    /// Returns whether it did. The socket and its directory are removed
    /// either way.
    pub fn accept(self, expected_pid: u32, timeout: Duration) -> bool {
        let joined = self.wait_for(expected_pid, timeout);
        self.handoff.remove_socket();
        joined
    }

    fn wait_for(&self, expected_pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || self.handoff.dir.lock().is_none() {
                return false;
            }
            // Short waits, so a session that ends stops the wait soon.
            let wait =
                rustix::event::Timespec::try_from(remaining.min(Duration::from_millis(200))).ok();
            let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
            match poll(&mut fds, wait.as_ref()) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => return false,
            }
            let Ok(peer) = rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC) else {
                continue;
            };
            let from_expected = sockopt::socket_peercred(&peer).is_ok_and(|cred| {
                u32::try_from(cred.pid.as_raw_nonzero().get()) == Ok(expected_pid)
            });
            if from_expected {
                // Nothing is ever read from the agent on this socket.
                let _ = rustix::net::shutdown(&peer, rustix::net::Shutdown::Read);
                let _ = self.handoff.joined.set(peer);
                return true;
            }
            drop(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::os::fd::AsFd;

    #[test]
    fn only_directories_of_dead_enforcers_holding_just_the_socket_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let make = |pid: u32, tag: &str, extra: bool| {
            let dir = tmp.path().join(format!("{DIR_PREFIX}{pid}-{tag}"));
            std::fs::create_dir(&dir).unwrap();
            let socket = std::os::unix::net::UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
            drop(socket);
            if extra {
                std::fs::write(dir.join("other"), "keep").unwrap();
            }
            dir
        };
        let abandoned = make(dead, "a", false);
        let live = make(std::process::id(), "b", false);
        let unexpected = make(dead, "c", true);
        let not_a_dir = tmp.path().join(format!("{DIR_PREFIX}{dead}-d"));
        std::fs::write(&not_a_dir, "file").unwrap();
        remove_abandoned(tmp.path());
        assert!(
            !abandoned.exists(),
            "a dead enforcer's directory is removed"
        );
        assert!(live.join(SOCKET_NAME).exists(), "a live one's is kept");
        assert!(
            unexpected.join("other").exists(),
            "unexpected content is kept"
        );
        assert!(not_a_dir.exists(), "a file of that name is kept");
    }

    fn join(path: &Path) -> OwnedFd {
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::connect(&socket, &SocketAddrUnix::new(path).unwrap()).unwrap();
        socket
    }

    #[test]
    fn a_stranger_is_refused_and_nothing_can_be_sent() {
        let listener = HandoffListener::bind().unwrap();
        let handoff = listener.handoff();
        let path = handoff.path().unwrap().to_owned();
        let _stranger = join(&path);
        let other = std::process::id().wrapping_add(1);
        assert!(!listener.accept(other, Duration::from_millis(200)));
        assert!(!handoff.joined());
        assert!(!path.exists(), "the socket is removed after the wait");
        let (file, _) = tempfile::NamedTempFile::new().unwrap().into_parts();
        assert!(handoff.send(7, file.as_fd()).is_err(), "nobody joined");
    }

    #[test]
    fn the_expected_process_joins_and_receives_tagged_descriptors() {
        let listener = HandoffListener::bind().unwrap();
        let handoff = listener.handoff();
        let path = handoff.path().unwrap().to_owned();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "the socket's directory is private");
        let me = join(&path);
        assert!(listener.accept(std::process::id(), Duration::from_secs(5)));
        assert!(handoff.joined());
        assert!(!path.exists(), "the socket is removed once joined");
        let (file, _) = tempfile::NamedTempFile::new().unwrap().into_parts();
        std::io::Write::write_all(&mut &file, b"handed over").unwrap();
        handoff.send(42, file.as_fd()).unwrap();

        let mut tag = [0u8; 8];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &me,
            &mut [std::io::IoSliceMut::new(&mut tag)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        assert_eq!(got.bytes, 8);
        assert_eq!(u64::from_le_bytes(tag), 42);
        let mut received = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                received.extend(fds);
            }
        }
        assert_eq!(received.len(), 1);
        let mut content = String::new();
        let mut handed = std::fs::File::from(received.pop().unwrap());
        std::io::Seek::rewind(&mut handed).unwrap();
        std::io::Read::read_to_string(&mut handed, &mut content).unwrap();
        assert_eq!(content, "handed over");
    }
}
