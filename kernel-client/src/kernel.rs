//! The connection to the enforcer and the authorization round trip.

use crate::config::{ClientConfig, SpawnConfig};
use crate::denial::Denial;
use crate::resolve::search_path;
use crate::spawn::{SpawnError, spawn_enforcer};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use kernel_core::{
    Action, CanonicalAction, ClientFrame, EncodedRequest, EnforcerFrame, Expectation, Handshake,
    PROTOCOL_VERSION, Permit, Refusal, Request, Verified, VerifyingKey, decode_enforcer_frame,
    encode_client_frame, format_public_key, public_key_from_bytes, verify_receipt,
};
use parking_lot::Mutex;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable that carries the enforcer's channel name to an
/// agent started under supervision.
pub const CHANNEL_ENV: &str = "AGENT_KERNEL_CHANNEL";

/// The ends the enforcer uses when the agent joins it: requests in,
/// replies out.
pub type EnforcerEnds = (IpcReceiver<Vec<u8>>, IpcSender<Vec<u8>>);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug)]
struct Channel {
    requests: IpcSender<Vec<u8>>,
    replies: IpcReceiver<Vec<u8>>,
    next_seq: u64,
}

/// Whether the enforcer can still be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelState {
    /// The enforcer is reachable (a given request may still time out).
    Connected,
    /// The enforcer is gone; every action is denied. An agent loop should
    /// stop.
    Gone,
}

/// A connection to a running enforcer. Holds no key and no policy: it can
/// only forward requests and verify the signed answers.
///
/// Requests are sent one at a time per `Kernel`; use one `Kernel` per
/// concurrent agent.
#[derive(Debug)]
pub struct Kernel {
    channel: Mutex<Option<Channel>>,
    handshake: Handshake,
    key: VerifyingKey,
    timeout: Duration,
    gone: AtomicBool,
    child: Mutex<Option<Child>>,
}

impl Kernel {
    /// Starts the enforcer binary, joins its channel and completes the
    /// handshake. Any failure is a [`SpawnError`]: there is no way to get a
    /// `Kernel` without a running, answering enforcer.
    pub fn spawn(config: SpawnConfig) -> Result<Self, SpawnError> {
        let (mut child, (requests, replies)) = spawn_enforcer(&config)?;
        match Self::handshake(requests, replies, &config.client) {
            Ok(mut kernel) => {
                kernel.child = Mutex::new(Some(child));
                Ok(kernel)
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Joins an enforcer that is already running and waiting on the
    /// one-shot channel `name` (supervised mode).
    pub fn connect(name: &str, config: ClientConfig) -> Result<Self, SpawnError> {
        let channel = |e: std::io::Error| SpawnError::Channel(e.to_string());
        let (requests, requests_rx) = ipc::channel::<Vec<u8>>().map_err(channel)?;
        let (replies_tx, replies) = ipc::channel::<Vec<u8>>().map_err(channel)?;
        let bootstrap = IpcSender::<EnforcerEnds>::connect(name.to_owned()).map_err(channel)?;
        bootstrap
            .send((requests_rx, replies_tx))
            .map_err(|e| SpawnError::Channel(e.to_string()))?;
        Self::handshake(requests, replies, &config)
    }

    /// Joins the enforcer named in the [`CHANNEL_ENV`] environment
    /// variable.
    pub fn connect_from_env(config: ClientConfig) -> Result<Self, SpawnError> {
        let name = std::env::var(CHANNEL_ENV).map_err(|_| {
            SpawnError::Channel(format!(
                "`{CHANNEL_ENV}` is not set: start the agent under `kernel-enforcer run`"
            ))
        })?;
        Self::connect(&name, config)
    }

    fn handshake(
        requests: IpcSender<Vec<u8>>,
        replies: IpcReceiver<Vec<u8>>,
        config: &ClientConfig,
    ) -> Result<Self, SpawnError> {
        let failed = |why: String| SpawnError::Handshake(why);
        let mut challenge = [0u8; 32];
        getrandom::fill(&mut challenge).map_err(|e| failed(e.to_string()))?;
        let hello = encode_client_frame(&ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            challenge,
        });
        requests
            .send(hello)
            .map_err(|e| SpawnError::Channel(e.to_string()))?;
        let reply = match replies.try_recv_timeout(config.startup_timeout) {
            Ok(reply) => reply,
            Err(TryRecvError::Empty) => return Err(SpawnError::Timeout(config.startup_timeout)),
            Err(TryRecvError::IpcError(e)) => return Err(SpawnError::Channel(format!("{e:?}"))),
        };
        let (handshake, signature) = match decode_enforcer_frame(&reply) {
            Ok(EnforcerFrame::Hello {
                handshake,
                signature,
            }) => (handshake, signature),
            Ok(EnforcerFrame::Refused { refusal, .. }) => return Err(failed(refusal.to_string())),
            Ok(other) => return Err(failed(format!("unexpected frame {other:?}"))),
            Err(e) => return Err(failed(e.to_string())),
        };
        if handshake.protocol != PROTOCOL_VERSION {
            return Err(failed(format!(
                "enforcer speaks protocol {}, this client {PROTOCOL_VERSION}",
                handshake.protocol
            )));
        }
        let key =
            public_key_from_bytes(&handshake.enforcer_key).map_err(|e| failed(e.to_string()))?;
        if let Some(pinned) = &config.pinned_key
            && pinned != &key
        {
            return Err(SpawnError::KeyMismatch {
                expected: format_public_key(pinned),
                got: format_public_key(&key),
            });
        }
        handshake
            .verify(&key, &challenge, &signature)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            channel: Mutex::new(Some(Channel {
                requests,
                replies,
                next_seq: 0,
            })),
            handshake,
            key,
            timeout: config.timeout,
            gone: AtomicBool::new(false),
            child: Mutex::new(None),
        })
    }

    /// What the enforcer announced: session, key, policy digest,
    /// workspace, confinement.
    pub fn handshake_info(&self) -> &Handshake {
        &self.handshake
    }

    /// The enforcer's public key (verified at the handshake).
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether the enforcer can still be asked.
    pub fn state(&self) -> KernelState {
        if self.gone.load(Ordering::SeqCst) {
            KernelState::Gone
        } else {
            KernelState::Connected
        }
    }

    /// Puts `action` in canonical form, resolving relative paths against
    /// the current directory and bare program names through `PATH`.
    pub fn canonicalize(&self, action: Action) -> Result<CanonicalAction, Denial> {
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|dir| dir.to_str().map(str::to_owned));
        let action = match action {
            Action::Exec(mut exec) if !exec.program.contains('/') && !exec.program.is_empty() => {
                if let Some(found) =
                    search_path(&exec.program).and_then(|p| p.to_str().map(str::to_owned))
                {
                    exec.program = found;
                }
                Action::Exec(exec)
            }
            other => other,
        };
        Ok(CanonicalAction::new(action, cwd.as_deref())?)
    }

    /// Asks the enforcer about `action` and returns a permit only for an
    /// authentic `Allow` receipt that answers exactly this request. Every
    /// other outcome is a [`Denial`] saying why.
    pub fn authorize(&self, action: Action) -> Result<Permit, Denial> {
        let action = self.canonicalize(action)?;
        self.authorize_canonical(action)
    }

    /// Like [`authorize`](Self::authorize), for an action already in
    /// canonical form.
    pub fn authorize_canonical(&self, action: CanonicalAction) -> Result<Permit, Denial> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(Denial::EnforcerGone);
        }
        let mut guard = self.channel.lock();
        let Some(channel) = guard.as_mut() else {
            return Err(Denial::EnforcerGone);
        };
        let seq = channel.next_seq;
        channel.next_seq = seq.saturating_add(1);
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| Denial::Transport(e.to_string()))?;
        let started = Instant::now();
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let request = EncodedRequest::new(Request {
            session: self.handshake.session,
            seq,
            nonce,
            action,
            deadline_ms: now_ms().saturating_add(timeout_ms),
        });
        let frame = encode_client_frame(&ClientFrame::Authorize {
            request: request.bytes().to_vec(),
        });
        if channel.requests.send(frame).is_err() {
            self.gone.store(true, Ordering::SeqCst);
            return Err(Denial::EnforcerGone);
        }
        loop {
            let Some(remaining) = self.timeout.checked_sub(started.elapsed()) else {
                return Err(Denial::Timeout(self.timeout));
            };
            let reply = match channel.replies.try_recv_timeout(remaining) {
                Ok(reply) => reply,
                Err(TryRecvError::Empty) => return Err(Denial::Timeout(self.timeout)),
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => {
                    self.gone.store(true, Ordering::SeqCst);
                    return Err(Denial::EnforcerGone);
                }
                Err(TryRecvError::IpcError(e)) => return Err(Denial::Transport(format!("{e:?}"))),
            };
            let frame =
                decode_enforcer_frame(&reply).map_err(|e| Denial::Protocol(e.to_string()))?;
            match frame {
                // Late answers to requests that already timed out.
                EnforcerFrame::Receipt { seq: s, .. }
                | EnforcerFrame::Refused { seq: Some(s), .. }
                    if s < seq =>
                {
                    continue;
                }
                EnforcerFrame::Receipt { receipt, .. } => {
                    let expected = Expectation {
                        key: &self.key,
                        request: &request,
                        policy_digest: &self.handshake.policy_digest,
                        now_ms: now_ms(),
                    };
                    return match verify_receipt(&receipt, &expected)? {
                        Verified::Permit(permit) => Ok(permit),
                        Verified::Denied(receipt) => Err(Denial::Policy {
                            policies: receipt.body().policies.clone(),
                            reasons: receipt.body().reasons.clone(),
                            log_index: receipt.body().log_index,
                        }),
                        Verified::Ask(receipt) => Err(Denial::ApprovalRequired {
                            policies: receipt.body().policies.clone(),
                            reasons: receipt.body().reasons.clone(),
                            log_index: receipt.body().log_index,
                        }),
                    };
                }
                EnforcerFrame::Refused {
                    refusal: Refusal::Halted,
                    ..
                } => return Err(Denial::Halted),
                EnforcerFrame::Refused { refusal, .. } => return Err(Denial::Refused(refusal)),
                EnforcerFrame::Hello { .. } => {
                    return Err(Denial::Protocol("unexpected hello".into()));
                }
            }
        }
    }

    /// Closes the channel and waits (up to `grace`) for a spawned enforcer
    /// to write its last evidence and exit; kills it after that. Returns
    /// its exit status, or `None` when the kernel was joined, not spawned.
    pub fn shutdown(self, grace: Duration) -> Option<ExitStatus> {
        self.close(grace)
    }

    fn close(&self, grace: Duration) -> Option<ExitStatus> {
        drop(self.channel.lock().take());
        self.gone.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().take()?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if started.elapsed() > grace {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Process id of a spawned enforcer (for operators and tests).
    pub fn enforcer_pid(&self) -> Option<u32> {
        self.child.lock().as_ref().map(Child::id)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.close(Duration::from_secs(2));
    }
}
