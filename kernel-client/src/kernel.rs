//! The connection to the enforcer and the authorization round trip.

use crate::config::{ClientConfig, SpawnConfig};
use crate::denial::Denial;
use crate::handoff::HandoffInbox;
use crate::resolve::search_path;
use crate::spawn::{SpawnError, spawn_enforcer};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use kernel_core::{
    Action, CanonicalAction, ClientFrame, EncodedRequest, EnforcerFrame, Expectation, Handshake,
    Outcome, PROTOCOL_VERSION, Permit, Refusal, Request, Verified, VerifyingKey,
    decode_enforcer_frame, encode_client_frame, format_public_key, now_ms, public_key_from_bytes,
    verify_receipt,
};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use kernel_core::CHANNEL_ENV;

/// The ends the enforcer uses when the agent joins it: requests in,
/// replies out. For the side that plays the enforcer (which uses
/// `ipc-channel` itself); no function of this crate takes or returns it.
pub type EnforcerEnds = (IpcReceiver<Vec<u8>>, IpcSender<Vec<u8>>);

/// The sending half. The next sequence number and the sender sit under
/// one lock, so frames leave in sequence order: the enforcer refuses any
/// sequence number that does not increase.
#[derive(Debug)]
struct Outbox {
    requests: IpcSender<Vec<u8>>,
    next_seq: u64,
}

/// Where callers wait for their answers (leader/follower, no background
/// thread). A caller that needs a reply and finds nobody receiving becomes
/// the receiver: it reads the channel with its own remaining time, files
/// answers for other waiting callers here and wakes each one's own
/// condition variable (so an answer wakes its caller, not every caller).
/// The others wait with their own deadlines; when the receiver leaves, it
/// wakes one of them to take over receiving.
#[derive(Debug, Default)]
struct Inbox {
    /// Callers still waiting, by sequence number, each with the condition
    /// variable it waits on. An answer for any other number (a late answer
    /// to a request that already timed out, or a number never sent) is
    /// dropped, never delivered to another request.
    waiting: HashMap<u64, Arc<Condvar>>,
    /// Answers received for waiting callers, by sequence number.
    filed: HashMap<u64, EnforcerFrame>,
    /// Callers asleep on their condition variable right now (the others
    /// are sending, verifying, or about to look at the inbox, and need no
    /// wake-up to see it).
    sleeping: HashSet<u64>,
    /// Whether a caller is reading the reply channel now.
    receiving: bool,
}

/// What one read of the reply channel gave.
enum Received {
    Frame(Vec<u8>),
    Empty,
    Disconnected,
    Failed(String),
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
/// A `Kernel` is `Send + Sync`: threads may share one (`&Kernel`,
/// `Arc<Kernel>`) and have several requests in flight at once. Each answer
/// is routed to its caller by sequence number, and each caller verifies
/// its receipt against its own request; every caller has its own timeout.
/// The enforcer decides the requests one at a time, in the order sent.
#[derive(Debug)]
pub struct Kernel {
    outbox: Mutex<Option<Outbox>>,
    replies: Mutex<Option<IpcReceiver<Vec<u8>>>>,
    inbox: Mutex<Inbox>,
    handshake: Handshake,
    key: VerifyingKey,
    timeout: Duration,
    approval_timeout: Option<Duration>,
    pinned_policy: Option<kernel_core::Digest>,
    locked_down: AtomicBool,
    protected: Vec<std::path::PathBuf>,
    gone: AtomicBool,
    child: Mutex<Option<Child>>,
    handoff: Mutex<HandoffInbox>,
}

impl Kernel {
    /// Starts the enforcer binary, joins its channel and completes the
    /// handshake. Any failure is a [`SpawnError`]: there is no way to get a
    /// `Kernel` without a running, answering enforcer.
    pub fn spawn(config: SpawnConfig) -> Result<Self, SpawnError> {
        let (mut child, (requests, replies)) = spawn_enforcer(&config)?;
        let joined = Self::handshake(requests, replies, &config.client).and_then(|kernel| {
            if kernel.handshake.shadow == config.shadow {
                Ok(kernel)
            } else {
                Err(SpawnError::Handshake(format!(
                    "the enforcer announced shadow mode {}, but it was started with it {}",
                    if kernel.handshake.shadow { "on" } else { "off" },
                    if config.shadow { "on" } else { "off" },
                )))
            }
        });
        match joined {
            Ok(mut kernel) => {
                kernel.child = Mutex::new(Some(child));
                kernel.protected = config.protected_paths();
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
        // The path comes from the signed handshake, and its directory is
        // private to the enforcer's user: joining here, before any
        // lockdown, is what lets brokered connections reach this process.
        let handoff = match &handshake.handoff {
            Some(path) => HandoffInbox::join(path)
                .map_err(|e| SpawnError::Channel(format!("descriptor hand-off `{path}`: {e}")))?,
            None => HandoffInbox::default(),
        };
        // Its permits are good from here until the `Kernel` is dropped,
        // shut down or loses its enforcer.
        crate::live::begin(handshake.session);
        Ok(Self {
            outbox: Mutex::new(Some(Outbox {
                requests,
                next_seq: 0,
            })),
            replies: Mutex::new(Some(replies)),
            inbox: Mutex::new(Inbox::default()),
            handshake,
            key,
            timeout: config.timeout,
            approval_timeout: config.approval_timeout,
            pinned_policy: config.pinned_policy,
            locked_down: AtomicBool::new(false),
            protected: Vec::new(),
            gone: AtomicBool::new(false),
            child: Mutex::new(None),
            handoff: Mutex::new(handoff),
        })
    }

    /// Whether guarded effects go through the enforcer's broker: the agent
    /// is confined (supervised, or after [`lockdown`](Self::lockdown)) and
    /// cannot perform them itself.
    pub fn is_brokered(&self) -> bool {
        self.locked_down.load(Ordering::SeqCst)
            || !matches!(
                self.handshake.confinement,
                kernel_core::Confinement::Unconfined
            )
    }

    /// Confines this process (embedded mode): from now on it can read the
    /// system trees and the workspace, write only `scratch`, run no other
    /// program, open no TCP connection, signal nothing outside itself, and
    /// reach none of the kernel's files; guarded effects go through the
    /// enforcer's broker. The enforcer, started before, stays outside the
    /// confinement.
    ///
    /// Ordering rule: call it from the main thread right after
    /// [`spawn`](Self::spawn), before any untrusted code runs and before
    /// starting other threads (Landlock confines the calling thread and
    /// the threads it starts later; seccomp covers all threads). Fails,
    /// and the agent must stop, if the system cannot confine.
    pub fn lockdown(&self, scratch: &std::path::Path) -> Result<(), kernel_confine::ConfineError> {
        let program = std::env::current_exe().unwrap_or_default();
        let mut profile = kernel_confine::Profile::new(
            std::path::Path::new(&self.handshake.workspace),
            scratch,
            &program,
        );
        profile.protected = self.protected.clone();
        kernel_confine::Prepared::new(&profile)?.apply_to_process()?;
        self.locked_down.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Takes the descriptor the broker handed over for request `seq`.
    pub(crate) fn take_descriptor(&self, seq: u64) -> std::io::Result<std::os::fd::OwnedFd> {
        self.handoff.lock().take(seq, self.timeout)
    }

    /// What the enforcer announced: session, key, policy digest,
    /// workspace, confinement.
    pub fn handshake_info(&self) -> &Handshake {
        &self.handshake
    }

    /// Whether the enforcer runs in shadow mode (announced in its signed
    /// handshake): actions its policy denies proceed, with permits that
    /// say so ([`Permit::is_shadow`]).
    pub fn is_shadow(&self) -> bool {
        self.handshake.shadow
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
        // The current directory is asked of the OS only when the action has
        // something relative to resolve: an absolute path canonicalises the
        // same with or without it, and most requests carry one.
        let cwd = needs_current_dir(&action)
            .then(std::env::current_dir)
            .and_then(Result::ok)
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
        self.request(action, None).map(|(permit, _)| permit)
    }

    /// Asks the enforcer to decide `action` and, if it is allowed, to
    /// perform it itself (the broker), and returns the verified permit and
    /// what the effect did. This is how a confined agent acts: it has no
    /// right to perform the effect itself. `payload` is the content of a
    /// `FileWrite` (whose digest the action binds), empty otherwise.
    pub fn broker(&self, action: Action, payload: Vec<u8>) -> Result<(Permit, Outcome), Denial> {
        let action = self.canonicalize(action)?;
        match self.request(action, Some(payload))? {
            (permit, Some(outcome)) => Ok((permit, outcome)),
            (_, None) => Err(Denial::Protocol("a brokered request got no outcome".into())),
        }
    }

    fn request(
        &self,
        action: CanonicalAction,
        payload: Option<Vec<u8>>,
    ) -> Result<(Permit, Option<Outcome>), Denial> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(Denial::EnforcerGone);
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| Denial::Transport(e.to_string()))?;
        let started = Instant::now();
        let request = self.send(action, nonce, payload)?;
        let seq = request.request().seq;
        let outcome = self.exchange(&request, started);
        let mut inbox = self.inbox.lock();
        inbox.waiting.remove(&seq);
        inbox.filed.remove(&seq);
        outcome
    }

    /// Waits for the answer and verifies it; after an authentic `Ask`,
    /// waits on (when approvals are awaited) for the enforcer's final
    /// answer, which arrives once an operator approves or rejects.
    fn exchange(
        &self,
        request: &EncodedRequest,
        started: Instant,
    ) -> Result<(Permit, Option<Outcome>), Denial> {
        let seq = request.request().seq;
        let frame = self.await_answer(seq, started + self.timeout)?;
        match (self.settle(frame, request), self.approval_timeout) {
            (Err(Denial::ApprovalRequired { policies, .. }), Some(wait)) => {
                match self.await_answer(seq, started + wait.max(self.timeout)) {
                    Ok(frame) => self.settle(frame, request),
                    Err(Denial::Timeout(_)) => Err(Denial::NoApproval {
                        policies,
                        waited: wait,
                    }),
                    Err(other) => Err(other),
                }
            }
            (outcome, _) => outcome,
        }
    }

    /// Assigns the next sequence number, registers it as waiting and sends
    /// the request, all under the outbox lock so that frames leave in
    /// sequence order.
    fn send(
        &self,
        action: CanonicalAction,
        nonce: [u8; 16],
        payload: Option<Vec<u8>>,
    ) -> Result<EncodedRequest, Denial> {
        let mut outbox = self.outbox.lock();
        let Some(out) = outbox.as_mut() else {
            return Err(Denial::EnforcerGone);
        };
        let seq = out.next_seq;
        out.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| Denial::Transport("sequence numbers exhausted".into()))?;
        // The enforcer must not allow after this instant: the longest this
        // caller will wait, for a decision or for an operator's approval.
        let wait = self
            .approval_timeout
            .map_or(self.timeout, |a| a.max(self.timeout));
        let timeout_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let request = EncodedRequest::new(Request {
            session: self.handshake.session,
            seq,
            nonce,
            action,
            deadline_ms: now_ms().saturating_add(timeout_ms),
        });
        let frame = encode_client_frame(&match payload {
            None => ClientFrame::Authorize {
                request: request.bytes().to_vec(),
            },
            Some(payload) => ClientFrame::Broker {
                request: request.bytes().to_vec(),
                payload,
            },
        });
        // Registered before sending, so that whoever is receiving files the
        // answer instead of dropping it as unknown.
        {
            let mut inbox = self.inbox.lock();
            if inbox.waiting.contains_key(&seq) {
                return Err(Denial::Transport(format!("sequence number {seq} reused")));
            }
            inbox.waiting.insert(seq, Arc::new(Condvar::new()));
        }
        if out.requests.send(frame).is_err() {
            drop(outbox);
            self.inbox.lock().waiting.remove(&seq);
            self.mark_gone();
            return Err(Denial::EnforcerGone);
        }
        Ok(request)
    }

    /// Waits until `deadline` for the next answer to `seq`: takes it when
    /// another caller filed it, or becomes the receiver when nobody is
    /// receiving. Returns only a frame that names `seq`; the caller still
    /// has to verify it. `seq` stays registered as waiting (the caller
    /// removes it when it is done), so a second answer to the same request
    /// (after an approval) is filed, not dropped.
    fn await_answer(&self, seq: u64, deadline: Instant) -> Result<EnforcerFrame, Denial> {
        let mut inbox = self.inbox.lock();
        let result = self.await_answer_locked(&mut inbox, seq, deadline);
        // Whoever leaves while nobody receives hands the role on.
        Self::hand_over(&inbox, seq, self.gone.load(Ordering::SeqCst));
        result
    }

    /// Wakes the callers that must act now: every one when the enforcer is
    /// gone; otherwise, when nobody is receiving, one caller other than
    /// `me` still waiting for an answer (it takes over receiving).
    fn hand_over(inbox: &Inbox, me: u64, gone: bool) {
        if gone {
            inbox.waiting.values().for_each(|waiter| {
                waiter.notify_all();
            });
            return;
        }
        if inbox.receiving {
            return;
        }
        if let Some(next) = inbox
            .sleeping
            .iter()
            .find(|seq| **seq != me && !inbox.filed.contains_key(seq))
            .and_then(|seq| inbox.waiting.get(seq))
        {
            next.notify_all();
        }
    }

    fn await_answer_locked(
        &self,
        inbox: &mut MutexGuard<'_, Inbox>,
        seq: u64,
        deadline: Instant,
    ) -> Result<EnforcerFrame, Denial> {
        let Some(mine) = inbox.waiting.get(&seq).cloned() else {
            return Err(Denial::Transport(format!(
                "sequence number {seq} not registered"
            )));
        };
        loop {
            if let Some(frame) = inbox.filed.remove(&seq) {
                break Ok(frame);
            }
            if self.gone.load(Ordering::SeqCst) {
                break Err(Denial::EnforcerGone);
            }
            let Some(remaining) = deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
            else {
                break Err(Denial::Timeout(self.timeout));
            };
            if inbox.receiving {
                // Woken when this caller's answer is filed, when it is its
                // turn to receive, or when the enforcer is gone; otherwise
                // at its own deadline.
                inbox.sleeping.insert(seq);
                let _ = mine.wait_for(inbox, remaining);
                inbox.sleeping.remove(&seq);
                continue;
            }
            inbox.receiving = true;
            let received = MutexGuard::unlocked(inbox, || self.receive(remaining));
            inbox.receiving = false;
            let bytes = match received {
                Received::Frame(bytes) => bytes,
                Received::Empty => continue,
                Received::Disconnected => {
                    self.gone.store(true, Ordering::SeqCst);
                    crate::live::end(self.handshake.session);
                    continue;
                }
                Received::Failed(why) => break Err(Denial::Transport(why)),
            };
            match decode_enforcer_frame(&bytes) {
                Ok(
                    frame @ (EnforcerFrame::Receipt { seq: s, .. }
                    | EnforcerFrame::Brokered { seq: s, .. }
                    | EnforcerFrame::Refused { seq: Some(s), .. }),
                ) => {
                    if s == seq {
                        break Ok(frame);
                    }
                    if let Some(waiter) = inbox.waiting.get(&s).cloned() {
                        inbox.filed.entry(s).or_insert(frame);
                        waiter.notify_all();
                    }
                    // Otherwise a late answer to a request that timed out
                    // (or a number never sent): dropped.
                }
                // A refusal without a sequence number answers a frame that
                // did not decode far enough to have one. This client never
                // sends such frames, so it cannot be attributed to any
                // request: it is delivered to nobody, and every waiter
                // keeps waiting (at worst until its own timeout, which is
                // a denial too).
                Ok(EnforcerFrame::Refused { seq: None, .. }) => {}
                // Protocol violations by the enforcer that name no request:
                // the caller that received them is denied (fail closed);
                // the others keep waiting.
                Ok(EnforcerFrame::Hello { .. }) => {
                    break Err(Denial::Protocol("unexpected hello".into()));
                }
                Err(e) => break Err(Denial::Protocol(e.to_string())),
            }
        }
    }

    /// One read of the reply channel, for at most `remaining`. Called only
    /// by the receiver, without the inbox lock.
    fn receive(&self, remaining: Duration) -> Received {
        // A panic must not escape with `receiving` still set, which would
        // leave every other caller waiting until its timeout.
        catch_unwind(AssertUnwindSafe(|| {
            let replies = self.replies.lock();
            let Some(replies) = replies.as_ref() else {
                return Received::Disconnected;
            };
            match replies.try_recv_timeout(remaining) {
                Ok(bytes) => Received::Frame(bytes),
                Err(TryRecvError::Empty) => Received::Empty,
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => Received::Disconnected,
                // A signal delivered to the agent interrupts the wait; the
                // caller's deadline still bounds it.
                Err(TryRecvError::IpcError(IpcError::Io(e)))
                    if e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    Received::Empty
                }
                Err(TryRecvError::IpcError(e)) => Received::Failed(format!("{e:?}")),
            }
        }))
        .unwrap_or_else(|_| Received::Failed("panic while receiving".into()))
    }

    /// Marks the enforcer gone and wakes every waiter, so each returns
    /// [`Denial::EnforcerGone`] promptly.
    fn mark_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
        crate::live::end(self.handshake.session);
        let inbox = self.inbox.lock();
        Self::hand_over(&inbox, u64::MAX, true);
    }

    /// Turns the answer to `request` into a permit or a denial. The receipt
    /// is verified against this caller's own request.
    fn settle(
        &self,
        frame: EnforcerFrame,
        request: &EncodedRequest,
    ) -> Result<(Permit, Option<Outcome>), Denial> {
        let (receipt, outcome) = match frame {
            EnforcerFrame::Receipt { receipt, .. } => (receipt, None),
            EnforcerFrame::Brokered {
                receipt, outcome, ..
            } => (receipt, Some(outcome)),
            EnforcerFrame::Refused {
                refusal: Refusal::Halted,
                ..
            } => return Err(Denial::Halted),
            EnforcerFrame::Refused { refusal, .. } => return Err(Denial::Refused(refusal)),
            EnforcerFrame::Hello { .. } => {
                return Err(Denial::Protocol("unexpected hello".into()));
            }
        };
        let expected = Expectation {
            key: &self.key,
            request,
            // The operator may reload the policy; the digest stays in the
            // receipt and the evidence. Pinned only on request.
            policy_digest: self.pinned_policy.as_ref(),
            now_ms: now_ms(),
            // A permit of shadow mode only from a session whose signed
            // handshake announced it.
            shadow: self.handshake.shadow,
        };
        match verify_receipt(&receipt, &expected)? {
            Verified::Permit(permit) => Ok((permit, outcome)),
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
        }
    }

    /// Closes the channel and waits (up to `grace`) for a spawned enforcer
    /// to write its last evidence and exit; kills it after that. Returns
    /// its exit status, or `None` when the kernel was joined, not spawned.
    pub fn shutdown(self, grace: Duration) -> Option<ExitStatus> {
        self.close(grace)
    }

    fn close(&self, grace: Duration) -> Option<ExitStatus> {
        // Reached only through `shutdown(self)` or `drop`, so no caller is
        // waiting and no lock here can be held by a receiver.
        drop(self.outbox.lock().take());
        drop(self.replies.lock().take());
        self.mark_gone();
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

// Threads share one `Kernel`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Kernel>();
};

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.close(Duration::from_secs(2));
    }
}

/// Whether canonicalising `action` can depend on the current directory: a
/// relative path, or a program run without an absolute working directory.
/// Anything else canonicalises the same without it.
fn needs_current_dir(action: &Action) -> bool {
    let relative = |path: &str| !path.starts_with('/');
    match action {
        Action::FileRead { path }
        | Action::FileWrite { path, .. }
        | Action::FileDelete { path } => relative(path),
        Action::Exec(exec) => exec.cwd.as_deref().is_none_or(relative),
        Action::NetConnect { .. }
        | Action::Http { .. }
        | Action::ToolCall { .. }
        | Action::Custom { .. }
        | Action::McpRequest { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use kernel_core::{Exec, WriteMode};

    /// Skipping the current directory is sound only where it cannot change
    /// the canonical form: for every action said not to need it, the result
    /// with and without a working directory is the same, and every
    /// relative path is said to need it.
    #[test]
    fn the_current_directory_is_skipped_only_where_it_cannot_matter() {
        let digest = kernel_core::Digest([3; 32]);
        let cases = [
            (Action::file_read("/ws/a.txt"), false),
            (Action::file_read("/ws/../etc/./passwd"), false),
            (Action::file_read("a.txt"), true),
            (Action::file_read("../a.txt"), true),
            (
                Action::FileWrite {
                    path: "/ws/out".into(),
                    content_sha256: digest,
                    size: 3,
                    mode: WriteMode::Overwrite,
                },
                false,
            ),
            (
                Action::FileWrite {
                    path: "out".into(),
                    content_sha256: digest,
                    size: 3,
                    mode: WriteMode::Overwrite,
                },
                true,
            ),
            (Action::FileDelete { path: "x".into() }, true),
            (
                Action::FileDelete {
                    path: "/x/y".into(),
                },
                false,
            ),
            (Action::Exec(Exec::new("/bin/ls")), true),
            (Action::Exec(Exec::new("/bin/ls").cwd("rel")), true),
            (Action::Exec(Exec::new("./run").cwd("/ws")), false),
            (Action::Exec(Exec::new("/bin/ls").cwd("/ws/../tmp")), false),
            (
                Action::NetConnect {
                    host: "Example.COM".into(),
                    port: 443,
                },
                false,
            ),
            (
                Action::Http {
                    method: "GET".into(),
                    url: "https://example.com/a/../b".into(),
                },
                false,
            ),
        ];
        for (action, needed) in cases {
            assert_eq!(needs_current_dir(&action), needed, "{action:?}");
            if !needed {
                assert_eq!(
                    CanonicalAction::new(action.clone(), Some("/somewhere/else")).unwrap(),
                    CanonicalAction::new(action.clone(), None).unwrap(),
                    "{action:?}"
                );
            } else {
                assert!(
                    CanonicalAction::new(action.clone(), None).is_err(),
                    "{action:?} resolves without a directory"
                );
            }
        }
    }
}
