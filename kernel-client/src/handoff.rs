//! The agent's side of the descriptor hand-off: where the enforcer's
//! broker delivers the sockets of connections it made for the agent.
//!
//! Each message is the request's sequence number (8 bytes, little endian)
//! with one descriptor attached (`SCM_RIGHTS`). A caller takes the
//! descriptor for its own request only: descriptors for other requests are
//! kept for their callers (at most [`MAX_KEPT`], the oldest closed first,
//! which also disposes of those whose callers timed out). Malformed
//! messages are dropped, their descriptors closed.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Most descriptors kept for other callers; beyond it the oldest is
/// closed.
const MAX_KEPT: usize = 64;

/// The joined hand-off socket, or none.
#[derive(Debug, Default)]
pub(crate) struct HandoffInbox {
    socket: Option<OwnedFd>,
    kept: BTreeMap<u64, OwnedFd>,
}

impl HandoffInbox {
    /// Joins the enforcer's hand-off socket at `path`.
    pub(crate) fn join(path: &str) -> std::io::Result<Self> {
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&socket, &SocketAddrUnix::new(path)?)?;
        Ok(Self {
            socket: Some(socket),
            kept: BTreeMap::new(),
        })
    }

    /// Takes the descriptor sent for request `seq`, waiting at most
    /// `timeout` for it.
    pub(crate) fn take(&mut self, seq: u64, timeout: Duration) -> std::io::Result<OwnedFd> {
        if let Some(fd) = self.kept.remove(&seq) {
            return Ok(fd);
        }
        let Some(socket) = &self.socket else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the enforcer offered no descriptor hand-off",
            ));
        };
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the connection's descriptor did not arrive in time",
                ));
            }
            rustix::net::sockopt::set_socket_timeout(
                socket,
                rustix::net::sockopt::Timeout::Recv,
                Some(remaining.max(Duration::from_millis(1))),
            )?;
            let mut tag = [0u8; 9];
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = match rustix::net::recvmsg(
                socket,
                &mut [std::io::IoSliceMut::new(&mut tag)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(received) => received,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => continue,
                Err(e) => return Err(e.into()),
            };
            if received.bytes == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the enforcer closed the descriptor hand-off",
                ));
            }
            let mut descriptors: Vec<OwnedFd> = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    descriptors.extend(fds);
                }
            }
            let truncated = received.flags.contains(rustix::net::ReturnFlags::CTRUNC)
                || received.flags.contains(rustix::net::ReturnFlags::TRUNC);
            let (Some(number), false, 1) = (
                tag.get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .filter(|_| received.bytes == 8),
                truncated,
                descriptors.len(),
            ) else {
                // Malformed: its descriptors close as they drop.
                continue;
            };
            let Some(fd) = descriptors.pop() else {
                continue;
            };
            let number = u64::from_le_bytes(number);
            if number == seq {
                return Ok(fd);
            }
            self.kept.insert(number, fd);
            while self.kept.len() > MAX_KEPT {
                self.kept.pop_first();
            }
        }
    }
}
