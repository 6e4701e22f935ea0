//! Which sessions are live in this process.
//!
//! A [`Permit`](kernel_core::Permit) is good only while the [`Kernel`]
//! that obtained it is: once that `Kernel` is dropped or shut down, or has
//! found its enforcer gone, the guarded effects refuse its permits even
//! before they expire. Without this, a permit would outlive the kernel
//! that issued it (and its kill switch) for up to its time to live.
//!
//! [`Kernel`]: crate::Kernel

use kernel_core::SessionId;
use parking_lot::Mutex;

/// Sessions of `Kernel`s that are open in this process.
static LIVE: Mutex<Vec<SessionId>> = Mutex::new(Vec::new());

/// Marks `session` live (at the handshake).
pub(crate) fn begin(session: SessionId) {
    let mut live = LIVE.lock();
    if !live.contains(&session) {
        live.push(session);
    }
}

/// Marks `session` ended: its permits are refused from now on.
pub(crate) fn end(session: SessionId) {
    LIVE.lock().retain(|live| *live != session);
}

/// Whether `session` is live.
pub(crate) fn is_live(session: SessionId) -> bool {
    LIVE.lock().contains(&session)
}
