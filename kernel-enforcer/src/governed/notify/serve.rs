//! Serving notifications: the worker threads, the rate limit, the
//! watchdog that answers a call whose decision does not come, and the one
//! place that answers the kernel.

use super::call::{Governor, Response};
#[cfg(debug_assertions)]
use crate::fault::{injected_delay, injected_fault};
use crate::governed::rate::{Bucket, wait_for_turn};
use crate::session::SystemCall;
use kernel_core::CanonicalAction;
use kernel_sync::HaltLatch;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Notifications served at once (each may wait for a decision's
/// `fdatasync`).
pub const WORKERS: usize = 4;
/// Longest a governed call waits for its decision. A call whose decision
/// has not come by then (the session's lock or the evidence's disk is
/// stuck) fails with `EAGAIN`, and the session halts: a kernel that cannot
/// decide in time is at fault, and fails closed.
pub const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Where one notification's answer stands: still waiting for its decision,
/// claimed by its worker (allowed, being performed, or answered), or
/// answered by the watchdog after [`ANSWER_DEADLINE`].
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// The notifications being served, by id: when each arrived and where its
/// answer stands.
type InFlight = parking_lot::Mutex<
    std::collections::HashMap<
        u64,
        (
            std::time::Instant,
            std::sync::Arc<std::sync::atomic::AtomicU8>,
        ),
    >,
>;

/// Serves notifications from `listener` with [`WORKERS`] threads until the
/// agent is gone. `decide` decides one action and commits its record; the
/// call proceeds only if the decision's [`SystemCall::release`] says so.
/// `fault` is told of a fault of the enforcer's own (a handler that
/// panicked, a decision that did not come within [`ANSWER_DEADLINE`]); the
/// call it concerns fails with an error.
/// Every notification is answered exactly once.
pub fn serve(
    listener: OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> SystemCall + Sync),
    fault: &(impl Fn(&str) + Sync),
    latch: &HaltLatch,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let bucket = parking_lot::Mutex::new(Bucket::new(governor.rate));
    let inflight = InFlight::default();
    let serving = AtomicUsize::new(WORKERS);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            let started = kernel_policy::spawn_scoped_decider(scope, "governed-decider", || {
                serve_one_at_a_time(
                    &listener, governor, decide, fault, latch, &bucket, &inflight,
                );
                serving.fetch_sub(1, Ordering::SeqCst);
            });
            if started.is_err() {
                serving.fetch_sub(1, Ordering::SeqCst);
                fault("internal fault: cannot start a thread to decide system calls");
            }
        }
        scope.spawn(|| {
            while serving.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let overdue: Vec<u64> = inflight
                    .lock()
                    .iter()
                    .filter(|(_, (since, state))| {
                        since.elapsed() > ANSWER_DEADLINE
                            && state
                                .compare_exchange(
                                    PENDING,
                                    TIMED_OUT,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                )
                                .is_ok()
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in overdue {
                    respond(listener.as_fd(), id, Response::Fail(libc::EAGAIN));
                    fault(&format!(
                        "a governed system call had no decision within {} s",
                        ANSWER_DEADLINE.as_secs()
                    ));
                }
            }
        });
    });
}

fn serve_one_at_a_time(
    listener: &OwnedFd,
    governor: &Governor,
    decide: &(impl Fn(CanonicalAction) -> SystemCall + Sync),
    fault: &(impl Fn(&str) + Sync),
    latch: &HaltLatch,
    bucket: &parking_lot::Mutex<Bucket>,
    inflight: &InFlight,
) {
    use std::sync::atomic::{AtomicU8, Ordering};
    loop {
        let mut notification = zeroed_notification();
        #[allow(
            unsafe_code,
            reason = "the seccomp notification ioctls have no safe wrapper"
        )]
        // SAFETY: `notification` is a zeroed `seccomp_notif`, as the ioctl
        // requires, and lives across the call.
        let received = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &raw mut notification,
            )
        };
        if received != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // Interrupted, or the task died before we read it.
                Some(libc::EINTR | libc::ENOENT) => continue,
                // The agent and every process it started are gone.
                _ => return,
            }
        }
        let id = notification.id;
        let state = std::sync::Arc::new(AtomicU8::new(PENDING));
        inflight.lock().insert(
            id,
            (std::time::Instant::now(), std::sync::Arc::clone(&state)),
        );
        // Claims the answer for this worker; false once the watchdog has
        // answered the call.
        let claim = || {
            state
                .compare_exchange(PENDING, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
                || state.load(Ordering::SeqCst) == CLAIMED
        };
        let still_valid = || {
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: passes a pointer to a live u64, as the ioctl expects.
            let valid = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                    &raw const id,
                )
            };
            valid == 0
        };
        let mut limited = false;
        // An allowed call's effect (made by the enforcer, or the kernel's
        // once the answer lets the call continue) counts as in progress
        // from its decision until its answer is sent: a halt acknowledged
        // after that moment saw it end, and none starts after a halt.
        let mut effect = None;
        let mut decide = |action: CanonicalAction| {
            if !wait_for_turn(bucket) {
                limited = true;
                return false;
            }
            #[cfg(debug_assertions)]
            injected_fault(&action);
            #[cfg(debug_assertions)]
            let kind = action.action().kind().as_str();
            // A call proceeds only through its allow's release (its record
            // durable, the session not halted), and nothing is performed
            // for a call the watchdog has answered.
            if !(decide(action).release() && claim()) {
                return false;
            }
            match latch.start_effect() {
                Some(started) => {
                    effect = Some(started);
                    #[cfg(debug_assertions)]
                    injected_delay(kind);
                    true
                }
                None => false,
            }
        };
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            governor.answer(
                notification.pid,
                &notification.data,
                still_valid,
                &mut decide,
            )
        }));
        let answer = match answered {
            Ok(_) if limited => Response::Fail(libc::EAGAIN),
            Ok(answer) => answer,
            Err(_) => {
                fault("internal fault: a panic while answering a governed system call");
                Response::Fail(libc::EACCES)
            }
        };
        if claim() {
            respond(listener.as_fd(), id, answer);
        }
        drop(effect);
        inflight.lock().remove(&id);
    }
}

fn zeroed_notification() -> libc::seccomp_notif {
    libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data {
            nr: 0,
            arch: 0,
            instruction_pointer: 0,
            args: [0; 6],
        },
    }
}

/// Installs a descriptor in the agent (`SECCOMP_IOCTL_NOTIF_ADDFD`); the
/// errno if the kernel refuses (an `O_PATH` descriptor, a task that died).
fn add_fd(listener: BorrowedFd<'_>, addfd: &libc::seccomp_notif_addfd) -> Result<(), i32> {
    #[allow(
        unsafe_code,
        reason = "the seccomp notification ioctls have no safe wrapper"
    )]
    // SAFETY: `addfd` is a valid `seccomp_notif_addfd` whose source
    // descriptor the caller keeps open across the call.
    let installed = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            std::ptr::from_ref(addfd),
        )
    };
    if installed < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EACCES))
    } else {
        Ok(())
    }
}

/// Sends the answer. Every notification gets exactly one response: when
/// handing over a descriptor fails (the kernel refuses it, or the task
/// died meanwhile), the call fails with that error instead of being left
/// waiting. Errors of the final response need no handling: the task is
/// gone, and its system call with it.
fn respond(listener: BorrowedFd<'_>, id: u64, answer: Response) {
    match answer {
        Response::Inject { fd, cloexec } => {
            let addfd = libc::seccomp_notif_addfd {
                id,
                flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SEND).unwrap_or(0),
                srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
                newfd: 0,
                newfd_flags: if cloexec {
                    u32::try_from(libc::O_CLOEXEC).unwrap_or(0)
                } else {
                    0
                },
            };
            // With `SECCOMP_ADDFD_FLAG_SEND` the kernel installs the
            // descriptor and completes the call with its number, atomically.
            if let Err(errno) = add_fd(listener, &addfd) {
                respond(listener, id, Response::Fail(errno));
            }
            drop(fd);
        }
        Response::Replace {
            fd,
            target,
            cloexec,
        } => {
            // The copy goes to `target` in the agent, which stays blocked in
            // its system call until the response.
            let addfd = libc::seccomp_notif_addfd {
                id,
                flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SETFD).unwrap_or(0),
                srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
                newfd: u32::try_from(target).unwrap_or(u32::MAX),
                newfd_flags: if cloexec {
                    u32::try_from(libc::O_CLOEXEC).unwrap_or(0)
                } else {
                    0
                },
            };
            let answer = match add_fd(listener, &addfd) {
                Ok(()) => Response::Value(0),
                Err(errno) => Response::Fail(errno),
            };
            drop(fd);
            respond(listener, id, answer);
        }
        Response::Continue | Response::Fail(_) | Response::Value(_) => {
            let (val, error, flags) = match answer {
                Response::Fail(errno) => (0, -errno, 0),
                Response::Value(value) => (value, 0, 0),
                _ => (
                    0,
                    0,
                    u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(0),
                ),
            };
            let response = libc::seccomp_notif_resp {
                id,
                val,
                error,
                flags,
            };
            #[allow(
                unsafe_code,
                reason = "the seccomp notification ioctls have no safe wrapper"
            )]
            // SAFETY: `response` is a valid `seccomp_notif_resp`, alive
            // across the call.
            let _ = unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_SEND,
                    &raw const response,
                )
            };
        }
    }
}
