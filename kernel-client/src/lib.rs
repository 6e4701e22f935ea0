//! The client of the agent safety kernel: the thin crate an agent links.
//!
//! It holds no key and no policy and can authorize nothing by itself: it
//! links `kernel-core` without that crate's `signing` feature, so nothing
//! it reaches can sign a receipt, and it verifies every receipt against the
//! enforcer's key from the signed handshake (pinned with
//! [`ClientConfig::pin_public_key`] or [`SpawnConfig::pin_public_key`]). It
//! starts (or joins) the separate `kernel-enforcer` process, forwards each
//! proposed [`Action`] to it, and returns a [`Permit`] only for an
//! authentic, signed `Allow` receipt that answers exactly that request.
//! Everything else — a policy denial, a timeout, a dead or stopped
//! enforcer, a malformed or oversize frame, a bad signature, a receipt for
//! another request — is a [`Denial`].
//!
//! Guarded effects ([`Kernel::exec`], [`Kernel::read_file`],
//! [`Kernel::write_file`], [`Kernel::delete_file`]) run only with a permit
//! for exactly their canonical action, and consume it. Network effects
//! ([`Kernel::connect_tcp`], [`Kernel::http`]) are always performed by the
//! enforcer's broker: it connects (or makes the request) itself and hands
//! back the connected socket (or the response). A permit is good only
//! while the `Kernel` that obtained it is open and has its enforcer.
//!
//! No kernel, no agent: [`Kernel::spawn`] fails with a [`SpawnError`] if the
//! enforcer cannot be found, started, or handshaken with; once the
//! enforcer is gone, [`Kernel::state`] says so and every call is denied.
//!
//! ```no_run
//! use kernel_client::{Action, Kernel, SpawnConfig};
//!
//! let kernel = Kernel::spawn(SpawnConfig::new("agent.cedar", "/home/dev/project", "/var/lib/agent/evidence.log"))?;
//! match kernel.authorize(Action::file_read("/home/dev/project/README.md")) {
//!     Ok(permit) => println!("allowed, receipt at log index {}", permit.receipt().body().log_index),
//!     Err(denial) => println!("denied: {denial}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod config;
mod denial;
mod effects;
mod handoff;
mod kernel;
mod live;
mod resolve;
mod spawn;

pub use config::{ClientConfig, DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT, SpawnConfig};
pub use denial::Denial;
pub use effects::{
    EffectError, HttpResponse, delete_permitted, read_permitted, run_exec, write_permitted,
};
pub use kernel::{CHANNEL_ENV, EnforcerEnds, Kernel, KernelState};
/// Types that the functions above take or return, re-exported so that a
/// user of this crate needs no other crate to name them.
pub use kernel_confine::ConfineError;
pub use kernel_core::{Action, CanonicalAction, Decision, Exec, Permit, VerifyingKey, WriteMode};
pub use kernel_core::{
    ActionError, ActionKind, Confinement, Digest, Handshake, HandshakeSignatureError, McpPeer,
    Outcome, ReceiptBody, Refusal, SessionId, SignedReceipt, VerifiedReceipt, VerifyError,
};
pub use resolve::ENFORCER_ENV;
/// The JSON value type that [`Action::tool_call`] takes.
pub use serde_json::Value as JsonValue;
pub use spawn::SpawnError;
