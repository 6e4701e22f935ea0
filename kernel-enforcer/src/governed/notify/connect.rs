//! Connections. `connect` to an IPv4 or IPv6 address is a `NetConnect`
//! of the address (IPv6 in brackets, as a host is written); to a Unix
//! socket file, a `FileWrite` in [`WriteMode::Connect`] mode of the
//! socket's path. Either is made by the enforcer, whose connected socket
//! then replaces the agent's (same descriptor number, blocking mode and
//! close-on-exec flag kept): the address the agent could rewrite after
//! the check is never read again. Connections to abstract Unix addresses
//! are refused. The one address connected to without a decision is the
//! egress proxy's ([`crate::governed::egress`]): the kernel's own service, where
//! each request is decided.
//!
//! [`WriteMode::Connect`]: kernel_core::WriteMode::Connect

use super::call::{CallingThread, Governor, Response, descriptor_flags, low_int, take};
use kernel_core::{Action, CanonicalAction};
use rustix::fs::{Mode, OFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Longest the enforcer waits for a Unix socket's listener to take a
/// connection into its backlog, for an agent socket that blocks (the
/// kernel would wait as long as it takes); then the call fails with
/// `EAGAIN`.
pub const UNIX_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `sizeof(struct sockaddr_un)`: the family and 108 bytes of path.
const SOCKADDR_UN_SIZE: usize = 110;

impl Governor {
    /// `connect`: by the address family the agent passes. IPv4 and IPv6
    /// are a `NetConnect` to the address (not a name); a Unix socket file
    /// is a `FileWrite` in `connect` mode of its physical path (see
    /// [`Governor::connect_unix`]); other families are refused.
    pub(super) fn connect(
        &self,
        agent: &CallingThread<'_>,
        args: &[u64; 6],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let socket = low_int(args[0])?;
        let length = usize::try_from(args[2]).ok()?.min(128);
        let mut address = vec![0u8; length];
        agent.memory.read_exact_at(&mut address, args[1]).ok()?;
        if !(agent.still_valid)() {
            return None;
        }
        let family = u16::from_ne_bytes([*address.first()?, *address.get(1)?]);
        let peer = match i32::from(family) {
            libc::AF_UNIX => return self.connect_unix(agent, socket, args[2], &address, decide),
            libc::AF_INET => {
                let port = u16::from_be_bytes([*address.get(2)?, *address.get(3)?]);
                let ip = std::net::Ipv4Addr::new(
                    *address.get(4)?,
                    *address.get(5)?,
                    *address.get(6)?,
                    *address.get(7)?,
                );
                std::net::SocketAddr::from((ip, port))
            }
            libc::AF_INET6 => {
                let port = u16::from_be_bytes([*address.get(2)?, *address.get(3)?]);
                let octets: [u8; 16] = address.get(8..24)?.try_into().ok()?;
                std::net::SocketAddr::from((std::net::Ipv6Addr::from(octets), port))
            }
            _ => return None,
        };
        let connected = match &self.egress {
            // The kernel's own egress proxy: no decision (each request
            // through it is decided there), and the connection is the
            // enforcer's, which is how the proxy knows it is the agent's.
            Some(door) if door.address() == peer => door.connect(),
            _ => {
                let action =
                    Action::net_connect(crate::governed::egress::ip_host(peer.ip()), peer.port());
                let canonical = CanonicalAction::new(action, None).ok()?;
                if !decide(canonical) {
                    return None;
                }
                std::net::TcpStream::connect_timeout(&peer, crate::session::broker::CONNECT_TIMEOUT)
            }
        };
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                return Some(Response::Fail(
                    e.raw_os_error().unwrap_or(libc::ECONNREFUSED),
                ));
            }
        };
        // Keep the agent's blocking mode on the socket it gets back.
        let (nonblocking, cloexec) = descriptor_flags(agent.pid, socket).unwrap_or((false, false));
        if stream.set_nonblocking(nonblocking).is_err() {
            return None;
        }
        Some(Response::Replace {
            fd: OwnedFd::from(stream),
            target: socket,
            cloexec,
        })
    }

    /// `connect` of the agent's Unix socket `socket` to the file named in
    /// `address` (of `length` bytes, as the agent gave it). The path is
    /// resolved physically and the socket file pinned (`O_PATH`, no
    /// links); the decision is a `FileWrite` in `connect` mode of the
    /// pinned file's path (none for the scratch directory, whose sockets
    /// are the agent's own); the enforcer then connects a socket of the
    /// agent's socket's type to the pinned file and puts it in place of
    /// the agent's. Refused without a decision: abstract addresses
    /// (`EPERM`: Landlock's scope already refuses those created outside
    /// the agent's domain, the kernel's control socket among them, and one
    /// inside it could only be reached by continuing a call whose address
    /// the agent can rewrite after the check), and what the kernel would
    /// refuse (`ENOENT` for no file, `ECONNREFUSED` for a file that is no
    /// socket, `EISCONN`, `EINVAL`, `EAFNOSUPPORT`).
    fn connect_unix(
        &self,
        agent: &CallingThread<'_>,
        socket: i32,
        length: u64,
        address: &[u8],
        decide: &mut impl FnMut(CanonicalAction) -> bool,
    ) -> Option<Response> {
        let fail = |errno| Some(Response::Fail(errno));
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if !(3..=SOCKADDR_UN_SIZE).contains(&length) {
            // No path (an unnamed address), or longer than an address.
            return fail(libc::EINVAL);
        }
        let path = address.get(2..length)?;
        if path.first() == Some(&0) {
            return fail(libc::EPERM);
        }
        let path = std::str::from_utf8(path.split(|b| *b == 0).next()?).ok()?;
        // The agent's socket as it is now: what kind to connect, and
        // whether it may.
        let taken = match take(&agent.caller, socket) {
            Ok(taken) => taken,
            Err(errno) => return fail(errno),
        };
        let Ok(domain) = rustix::net::sockopt::socket_domain(&taken) else {
            return fail(libc::ENOTSOCK);
        };
        if domain != AddressFamily::UNIX {
            return fail(libc::EAFNOSUPPORT);
        }
        let kind = rustix::net::sockopt::socket_type(&taken).ok()?;
        if rustix::net::sockopt::socket_acceptconn(&taken).unwrap_or(true) {
            return fail(libc::EINVAL);
        }
        if kind != SocketType::DGRAM && rustix::net::getpeername(&taken).is_ok() {
            return fail(libc::EISCONN);
        }
        let Some((nonblocking, cloexec)) = descriptor_flags(agent.pid, socket) else {
            return fail(libc::EBADF);
        };
        drop(taken);
        let target = match agent.path_of(libc::AT_FDCWD, path, true) {
            Ok(target) => target,
            Err(errno) => return fail(errno),
        };
        let pinned = match self
            .broker
            .open(&target, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
        {
            Ok(pinned) => OwnedFd::from(pinned),
            Err(e) => return fail(e.raw_os_error().unwrap_or(libc::EACCES)),
        };
        if !rustix::fs::fstat(&pinned)
            .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_socket())
        {
            return fail(libc::ECONNREFUSED);
        }
        let handle = format!("/proc/self/fd/{}", pinned.as_raw_fd());
        let file = std::fs::read_link(&handle).ok()?;
        if !file.is_absolute() {
            return None;
        }
        let canonical = CanonicalAction::new(Action::file_connect(file.to_str()?), None).ok()?;
        if !self.granted(&file, true) && !decide(canonical) {
            return None;
        }
        let flags = SocketFlags::CLOEXEC
            | if nonblocking {
                SocketFlags::NONBLOCK
            } else {
                SocketFlags::empty()
            };
        let connected =
            rustix::net::socket_with(AddressFamily::UNIX, kind, flags, None).and_then(|stream| {
                if !nonblocking {
                    rustix::net::sockopt::set_socket_timeout(
                        &stream,
                        rustix::net::sockopt::Timeout::Send,
                        Some(UNIX_CONNECT_WAIT),
                    )?;
                }
                // Through the pin's magic link: the very socket file that
                // was decided on.
                rustix::net::connect(&stream, &rustix::net::SocketAddrUnix::new(handle.as_str())?)?;
                if !nonblocking {
                    rustix::net::sockopt::set_socket_timeout(
                        &stream,
                        rustix::net::sockopt::Timeout::Send,
                        None,
                    )?;
                }
                Ok(stream)
            });
        Some(match connected {
            Ok(stream) => Response::Replace {
                fd: stream,
                target: socket,
                cloexec,
            },
            Err(errno) => Response::Fail(errno.raw_os_error()),
        })
    }
}
