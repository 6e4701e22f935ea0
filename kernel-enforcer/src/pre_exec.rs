//! Everything a child process of the enforcer runs between `fork` and
//! `exec`: the confinement of an agent or a brokered program, the request
//! to be traced, and the notification filter with its listener. No other
//! module registers a `pre_exec` closure.
//!
//! # The rule: only async-signal-safe work
//!
//! The enforcer always has other threads when it forks:
//!
//! - supervised mode (`run`) forks the agent from the main thread, with
//!   the evidence flusher running under `--evidence-window`;
//! - governed mode (`run --govern-syscalls`) forks the agent from the
//!   tracer thread (a `PTRACE_TRACEME` child is traced by the thread that
//!   forked it), while the main thread waits for the notification
//!   listener and the egress proxy's acceptor and the evidence flusher
//!   may run;
//! - the broker forks brokered programs from whichever thread serves the
//!   request, with the serving loop, the control socket, signal watching,
//!   the hand-off acceptor and output captures all running.
//!
//! The child is a copy of the forking thread alone, with every lock as the
//! other threads left it: one held at the fork is never released there.
//! So the child may only do what POSIX calls async-signal-safe: system
//! calls on memory prepared before the fork. Nothing here allocates or
//! frees memory, takes a lock, formats a message or panics, on any path,
//! success or failure. (glibc happens to make its allocator usable after
//! `fork`, but POSIX does not promise it, and a child blocked on a lock
//! would block the enforcer with it: `Command::spawn` waits until the child
//! has called `exec` or reported an error.)
//!
//! A failure is an OS error number returned from the closure; the standard
//! library passes it to the parent, whose `spawn` fails with it, and the
//! program is never executed. Closures run in the order they are
//! registered: [`trace`] before [`confine`], whose seccomp filter refuses
//! `ptrace`; the notification filter is installed last, after the
//! confinement has set `no_new_privs`.

use kernel_confine::Prepared;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Has the child that `command` starts apply `prepared` between `fork` and
/// `exec`, then, with `notify`, install the notification filter and send
/// its listener to the enforcer; so not one instruction of the program
/// runs unconfined or ungoverned. If either fails, `spawn` fails and
/// nothing runs.
pub(crate) fn confine(command: &mut Command, mut prepared: Prepared, notify: Option<NotifyFilter>) {
    #[allow(
        unsafe_code,
        reason = "pre_exec is how a child is confined before exec"
    )]
    // SAFETY: the closure runs in the child between fork and exec and keeps
    // this module's rule: `Prepared::apply` only makes system calls
    // (prctl, landlock_restrict_self, seccomp) on the descriptor and
    // filters prepared before the fork, and allocates nothing on any path;
    // `NotifyFilter::install` makes system calls on its own prepared
    // filter and socket, likewise.
    unsafe {
        command.pre_exec(move || {
            prepared.apply()?;
            match &notify {
                Some(notify) => notify.install(),
                None => Ok(()),
            }
        });
    }
}

/// Has the child that `command` starts ask, between `fork` and `exec`, to
/// be traced by the thread that spawns it (which must then trace it; see
/// `governed::exec_trace`). Register it before [`confine`].
pub(crate) fn trace(command: &mut Command) {
    #[allow(unsafe_code, reason = "pre_exec is how a child asks to be traced")]
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one system call, allocating nothing (this module's rule).
    unsafe {
        command.pre_exec(trace_me);
    }
}

/// In the agent's process, between `fork` and its own `exec`: asks to be
/// traced by the enforcer thread that forked it. Only a system call.
fn trace_me() -> std::io::Result<()> {
    #[allow(unsafe_code, reason = "ptrace(2) has no safe wrapper")]
    // SAFETY: PTRACE_TRACEME takes no pointers; the other arguments are
    // ignored.
    let done = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What the child needs to install the notification filter and hand the
/// listener to the enforcer, prepared before `fork` (see
/// `governed::notify`).
#[derive(Debug)]
pub(crate) struct NotifyFilter {
    filter: Vec<libc::sock_filter>,
    /// `filter.len()`, checked to fit the kernel's `u16` before the fork.
    filter_len: u16,
    socket: OwnedFd,
}

impl NotifyFilter {
    /// `filter`, to be installed with a new listener that is sent over
    /// `socket`. Refuses a filter longer than seccomp takes.
    pub(crate) fn new(filter: Vec<libc::sock_filter>, socket: OwnedFd) -> std::io::Result<Self> {
        let filter_len = u16::try_from(filter.len()).map_err(|_| {
            std::io::Error::other(format!(
                "the notification filter has {} instructions, more than seccomp takes",
                filter.len()
            ))
        })?;
        Ok(Self {
            filter,
            filter_len,
            socket,
        })
    }

    /// In the child, after the confinement: installs the filter, sends the
    /// listener to the enforcer and closes it here. Only system calls.
    fn install(&self) -> std::io::Result<()> {
        let program = libc::sock_fprog {
            len: self.filter_len,
            filter: self.filter.as_ptr().cast_mut(),
        };
        #[allow(
            unsafe_code,
            reason = "seccomp(2) has no safe wrapper that returns the listener"
        )]
        // SAFETY: `program` points at `self.filter`, alive for the call;
        // the kernel copies the filter. `no_new_privs` was set by the
        // confinement applied before, as seccomp requires.
        let listener = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                // Killable wait: a signal to the waiting agent does not
                // withdraw the call (and restart it) while the enforcer
                // performs it, which would make the effect happen twice.
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                &raw const program,
            )
        };
        let listener = i32::try_from(listener)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(std::io::Error::last_os_error)?;
        #[allow(
            unsafe_code,
            reason = "the listener is a fresh descriptor the kernel just returned"
        )]
        // SAFETY: `listener` was just returned by seccomp(2) and nothing
        // else owns it.
        let listener = unsafe { OwnedFd::from_raw_fd(listener) };
        let sent = send_fd(self.socket.as_fd(), listener.as_fd());
        drop(listener);
        sent
    }
}

/// Sends one descriptor with a one-byte message, from buffers on the
/// stack: no allocation, on any path.
fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let descriptors = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&descriptors)) {
        // Sized for one descriptor above, so it does not happen; an OS
        // error number, unlike a message, needs no allocation.
        return Err(std::io::Error::from_raw_os_error(libc::ENOBUFS));
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(b"L")],
        &mut control,
        rustix::net::SendFlags::NOSIGNAL,
    )?;
    Ok(())
}
