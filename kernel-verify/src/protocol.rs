//! The client–enforcer protocol as a finite model, for stateright.
//!
//! What is modelled, after `kernel-client` and `kernel-enforcer`'s
//! `session` and `serve`:
//!
//! - **Handshake.** The client sends `Hello` with a fresh challenge; the
//!   enforcer answers once per session with its session id and the
//!   challenge (signed, in the code). The client accepts only the answer to
//!   its own challenge.
//! - **Requests** carry the session id, a sequence number and a deadline.
//!   The enforcer refuses a request before the handshake, for another
//!   session, or whose sequence number is not above the last one it saw
//!   (a replay), and decides the rest with the real
//!   [`kernel_core::decide`] (halted or serving, deadline open or passed).
//! - **Group commit.** Decisions are staged with their replies held back;
//!   one commit makes every staged record durable and only then releases
//!   the held replies. The session lock is held from the first decision of
//!   a batch to the release, so an operator's halt cannot fall in between.
//!   A failed commit halts the session for good and turns the held
//!   receipts into refusals.
//! - **Receipts** name session and sequence number, the decision and an
//!   expiry. The client turns a receipt into a permit only for a request
//!   it is still waiting for, in its current session, if it says `Allow`
//!   and has not expired; it stops waiting for that request either way.
//! - **Halt** (operator): sticky, recorded durably unless the evidence is
//!   broken.
//! - **Crash and restart** of the enforcer: the evidence file survives;
//!   the session, its last sequence number, its halt, staged records and
//!   held replies are lost. A restarted enforcer has a fresh session id,
//!   and the client connects again.
//! - **The network** loses, duplicates and reorders: messages in flight
//!   form a set, delivering one leaves it in flight (so it can be delivered
//!   again, which is also how an attacker's replay looks), and any may
//!   never be delivered. (Loss needs no step of its own: a lost message is
//!   one that is not delivered again, and every property is about states,
//!   not about what is in flight.)
//! - **Time** advances in ticks; receipts are valid for [`ProtocolModel::ttl`]
//!   ticks after the one they are issued in, and a request's deadline is
//!   the tick it is sent in.
//!
//! Not modelled: signatures and digests (the SMT proof and the exhaustive
//! tests cover what verification checks), approvals, rate limits, brokered
//! effects, and the records that do not bear on permits (session starts,
//! checkpoints).
//!
//! The properties ([`ProtocolModel::properties`]) are checked by
//! breadth-first search over every state reachable within the bounds of
//! [`ProtocolModel`] in at most [`CHECKED_DEPTH`] steps; each [`Bug`]
//! makes one of them fail.

use kernel_core::{
    Approval, Deadline, Decision, DecisionInputs, EnforcerState, Evaluation, LimitState,
    MatchedPermit, decide,
};
use stateright::{Model, Property};
use std::collections::BTreeSet;

/// How many steps deep the test suite searches: every state reachable in
/// at most this many steps (about 65,000 distinct states, 2.5 s in a debug
/// build) is checked. The shortest path to each injected bug is at most 14
/// steps, and so is the shortest path to a permit from a restarted
/// enforcer.
pub const CHECKED_DEPTH: usize = 15;

/// A defect injected into the model, to show the checker finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The enforcer sends a receipt as soon as it decides, before the
    /// record is durable.
    ReleaseBeforeDurable,
    /// The operator's halt does not wait for the session lock, so it can
    /// fall between a decision and the release of its receipt.
    HaltWithoutLock,
    /// The client does not stop waiting for a request once answered.
    ClientAcceptsReplays,
    /// A restarted enforcer reuses the previous session id.
    ReusedSessionId,
}

/// The bounds of the model and an optional injected bug.
#[derive(Clone, Debug)]
pub struct ProtocolModel {
    /// Requests the client sends per session.
    pub requests: u8,
    /// Times the client connects (sends `Hello`).
    pub connects: u8,
    /// Enforcer crashes.
    pub crashes: u8,
    /// Evidence commits that fail.
    pub faults: u8,
    /// Last tick of the clock.
    pub max_time: u8,
    /// How many ticks an allow receipt stays valid.
    pub ttl: u8,
    /// Most replies one batch may hold.
    pub batch: usize,
    /// The injected defect, if any.
    pub bug: Option<Bug>,
}

impl Default for ProtocolModel {
    /// The bounds the test suite checks: two requests per session, two
    /// connections, one crash, one failed commit, clock ticks 0 and 1,
    /// receipts valid in the tick they are issued, batches of up to two
    /// replies.
    fn default() -> Self {
        Self {
            requests: 2,
            connects: 2,
            crashes: 1,
            faults: 1,
            max_time: 1,
            ttl: 0,
            batch: 2,
            bug: None,
        }
    }
}

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// Client to enforcer: start a session.
    Hello {
        /// The client's challenge.
        challenge: u8,
    },
    /// Client to enforcer: decide a request.
    Request {
        /// The session it names.
        session: u8,
        /// Its sequence number.
        seq: u8,
        /// The last tick at which it may be allowed.
        deadline: u8,
    },
    /// Enforcer to client: the signed handshake.
    Handshake {
        /// The enforcer's session id.
        session: u8,
        /// The challenge it answers.
        challenge: u8,
    },
    /// Enforcer to client: a signed receipt.
    Receipt {
        /// Its session.
        session: u8,
        /// Its sequence number.
        seq: u8,
        /// Whether it allows.
        allow: bool,
        /// The last tick at which it is valid.
        expires: u8,
    },
    /// Enforcer to client: a refusal without a decision.
    Refused {
        /// The session it was sent in.
        session: u8,
        /// The sequence number refused.
        seq: u8,
    },
}

/// A record in the evidence file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Record {
    /// A decision.
    Decision {
        /// Session.
        session: u8,
        /// Sequence number.
        seq: u8,
        /// Whether it allowed.
        allow: bool,
    },
    /// A halt.
    Halt {
        /// Session.
        session: u8,
    },
}

/// A running enforcer's volatile state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Enforcer {
    /// Its session id.
    pub session: u8,
    /// Whether the handshake happened.
    pub greeted: bool,
    /// The last sequence number seen.
    pub last_seq: Option<u8>,
    /// Halted (sticky for this session).
    pub halted: bool,
    /// A commit failed: nothing can be recorded any more.
    pub broken: bool,
    /// A batch is open: the session lock is held.
    pub in_batch: bool,
    /// Records staged, not yet durable.
    pub staged: Vec<Record>,
    /// Replies held until the commit.
    pub held: Vec<Msg>,
}

/// A permit the client obtained.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermitHeld {
    /// Session of its receipt.
    pub session: u8,
    /// Sequence number of its receipt.
    pub seq: u8,
    /// Last tick of its validity.
    pub expires: u8,
}

/// The client's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Client {
    /// Connections started.
    pub connects: u8,
    /// The challenge of the connection in progress.
    pub challenge: Option<u8>,
    /// The session, once the handshake is accepted.
    pub session: Option<u8>,
    /// The next sequence number.
    pub next_seq: u8,
    /// Requests sent and not yet answered.
    pub waiting: BTreeSet<u8>,
    /// Every permit obtained (sorted, duplicates kept).
    pub permits: Vec<PermitHeld>,
}

/// A state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The clock.
    pub now: u8,
    /// Messages in flight.
    pub network: BTreeSet<Msg>,
    /// The evidence file: survives crashes. Kept sorted: the order of
    /// records does not bear on the properties, and sorting merges states
    /// that differ only in it.
    pub durable: Vec<Record>,
    /// The enforcer, if it is running.
    pub enforcer: Option<Enforcer>,
    /// Sessions started so far (the next session id).
    pub sessions: u8,
    /// Crashes so far.
    pub crashes: u8,
    /// Failed commits so far.
    pub faults: u8,
    /// The client.
    pub client: Client,
    /// For the properties: when each session's halt was acknowledged.
    pub halts: Vec<(u8, u8)>,
    /// For the properties: an allow receipt was released after its
    /// session's halt.
    pub allow_after_halt: bool,
}

/// A step of the system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The clock ticks.
    Tick,
    /// The network delivers a message (and keeps a copy in flight).
    Deliver(Msg),
    /// The client connects: `Hello` with a fresh challenge.
    Connect,
    /// The client sends its next request.
    Send,
    /// The enforcer commits its batch and releases the replies.
    Commit,
    /// The commit fails (disk full, I/O error).
    CommitFails,
    /// The operator halts the enforcer.
    Halt,
    /// The enforcer crashes.
    Crash,
    /// The operator starts the enforcer again.
    Restart,
}

impl ProtocolModel {
    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn fresh_enforcer(session: u8) -> Enforcer {
        Enforcer {
            session,
            greeted: false,
            last_seq: None,
            halted: false,
            broken: false,
            in_batch: false,
            staged: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Puts replies on the network, noting an allow released after a halt.
    fn release(state: &mut State, replies: Vec<Msg>) {
        for reply in replies {
            if let Msg::Receipt {
                session,
                allow: true,
                ..
            } = reply
                && state.halts.iter().any(|(s, _)| *s == session)
            {
                state.allow_after_halt = true;
            }
            state.network.insert(reply);
        }
    }

    /// The real combinator, on what the modelled enforcer knows.
    fn decision(halted: bool, deadline_passed: bool) -> bool {
        let verdict = decide(&DecisionInputs {
            kernel: if halted {
                EnforcerState::Halted
            } else {
                EnforcerState::Serving
            },
            deadline: if deadline_passed {
                Deadline::Passed
            } else {
                Deadline::Open
            },
            evaluation: Evaluation::Completed {
                permits: vec![MatchedPermit {
                    id: "permit-all".into(),
                    ask: false,
                    reason: None,
                }],
                forbids: Vec::new(),
                errors: Vec::new(),
            },
            limits: LimitState::Within,
            approval: Approval::None,
        });
        verdict.decision == Decision::Allow
    }

    /// The enforcer handles one frame, inside a batch.
    fn enforcer_receives(&self, state: &mut State, msg: &Msg) {
        let now = state.now;
        let Some(enforcer) = state.enforcer.as_mut() else {
            return;
        };
        enforcer.in_batch = true;
        let reply = match *msg {
            Msg::Hello { challenge } => {
                if enforcer.greeted {
                    return;
                }
                enforcer.greeted = true;
                Msg::Handshake {
                    session: enforcer.session,
                    challenge,
                }
            }
            Msg::Request {
                session,
                seq,
                deadline,
            } => {
                let refused = Msg::Refused { session, seq };
                if !enforcer.greeted
                    || session != enforcer.session
                    || enforcer.last_seq.is_some_and(|last| seq <= last)
                {
                    refused
                } else {
                    enforcer.last_seq = Some(seq);
                    if enforcer.broken {
                        refused
                    } else {
                        let allow = Self::decision(enforcer.halted, now > deadline);
                        enforcer.staged.push(Record::Decision {
                            session,
                            seq,
                            allow,
                        });
                        let receipt = Msg::Receipt {
                            session,
                            seq,
                            allow,
                            expires: now.saturating_add(self.ttl),
                        };
                        if self.has(Bug::ReleaseBeforeDurable) {
                            Self::release(state, vec![receipt]);
                            return;
                        }
                        receipt
                    }
                }
            }
            Msg::Handshake { .. } | Msg::Receipt { .. } | Msg::Refused { .. } => return,
        };
        enforcer.held.push(reply);
    }

    /// The client handles one frame.
    fn client_receives(&self, state: &mut State, msg: &Msg) {
        let now = state.now;
        let client = &mut state.client;
        match *msg {
            Msg::Handshake { session, challenge } => {
                if client.challenge == Some(challenge) && client.session.is_none() {
                    client.session = Some(session);
                    client.next_seq = 0;
                    client.waiting.clear();
                }
            }
            Msg::Receipt {
                session,
                seq,
                allow,
                expires,
            } => {
                if client.session != Some(session) || !client.waiting.contains(&seq) {
                    return;
                }
                if !self.has(Bug::ClientAcceptsReplays) {
                    client.waiting.remove(&seq);
                }
                if allow && now <= expires {
                    client.permits.push(PermitHeld {
                        session,
                        seq,
                        expires,
                    });
                    client.permits.sort();
                }
            }
            Msg::Refused { session, seq } => {
                if client.session == Some(session) {
                    client.waiting.remove(&seq);
                }
            }
            Msg::Hello { .. } | Msg::Request { .. } => {}
        }
    }
}

fn to_enforcer(msg: &Msg) -> bool {
    matches!(msg, Msg::Hello { .. } | Msg::Request { .. })
}

impl Model for ProtocolModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            now: 0,
            network: BTreeSet::new(),
            durable: Vec::new(),
            enforcer: Some(Self::fresh_enforcer(0)),
            sessions: 1,
            crashes: 0,
            faults: 0,
            client: Client::default(),
            halts: Vec::new(),
            allow_after_halt: false,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.now < self.max_time {
            actions.push(Action::Tick);
        }
        for msg in &state.network {
            let deliverable = if to_enforcer(msg) {
                state
                    .enforcer
                    .as_ref()
                    .is_some_and(|e| e.held.len() < self.batch)
            } else {
                true
            };
            if deliverable {
                actions.push(Action::Deliver(msg.clone()));
            }
        }
        let client = &state.client;
        if client.connects < self.connects {
            actions.push(Action::Connect);
        }
        if client.session.is_some() && client.next_seq < self.requests {
            actions.push(Action::Send);
        }
        match &state.enforcer {
            Some(enforcer) => {
                if enforcer.in_batch {
                    actions.push(Action::Commit);
                    if state.faults < self.faults {
                        actions.push(Action::CommitFails);
                    }
                }
                let lock_free = !enforcer.in_batch || self.has(Bug::HaltWithoutLock);
                if !enforcer.halted && lock_free {
                    actions.push(Action::Halt);
                }
                if state.crashes < self.crashes {
                    actions.push(Action::Crash);
                }
            }
            None => actions.push(Action::Restart),
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Tick => state.now += 1,
            Action::Deliver(msg) => {
                if to_enforcer(&msg) {
                    self.enforcer_receives(&mut state, &msg);
                } else {
                    self.client_receives(&mut state, &msg);
                }
            }
            Action::Connect => {
                let challenge = state.client.connects;
                state.client.connects += 1;
                state.client.challenge = Some(challenge);
                state.client.session = None;
                state.client.waiting.clear();
                state.network.insert(Msg::Hello { challenge });
            }
            Action::Send => {
                let session = state.client.session?;
                let seq = state.client.next_seq;
                state.client.next_seq += 1;
                state.client.waiting.insert(seq);
                state.network.insert(Msg::Request {
                    session,
                    seq,
                    deadline: state.now,
                });
            }
            Action::Commit => {
                let enforcer = state.enforcer.as_mut()?;
                enforcer.in_batch = false;
                let staged = std::mem::take(&mut enforcer.staged);
                let held = std::mem::take(&mut enforcer.held);
                state.durable.extend(staged);
                state.durable.sort();
                Self::release(&mut state, held);
            }
            Action::CommitFails => {
                state.faults += 1;
                let enforcer = state.enforcer.as_mut()?;
                enforcer.in_batch = false;
                enforcer.halted = true;
                enforcer.broken = true;
                enforcer.staged.clear();
                let held: Vec<Msg> = std::mem::take(&mut enforcer.held)
                    .into_iter()
                    .map(|reply| match reply {
                        Msg::Receipt { session, seq, .. } => Msg::Refused { session, seq },
                        other => other,
                    })
                    .collect();
                Self::release(&mut state, held);
            }
            Action::Halt => {
                let now = state.now;
                let enforcer = state.enforcer.as_mut()?;
                enforcer.halted = true;
                let session = enforcer.session;
                if !enforcer.broken {
                    // `Session::halt` stages the halt record and commits
                    // (with whatever else is staged).
                    let staged = std::mem::take(&mut enforcer.staged);
                    state.durable.extend(staged);
                    state.durable.push(Record::Halt { session });
                    state.durable.sort();
                }
                state.halts.push((session, now));
                state.halts.sort();
            }
            Action::Crash => {
                state.crashes += 1;
                state.enforcer = None;
            }
            Action::Restart => {
                let session = if self.has(Bug::ReusedSessionId) {
                    state.sessions.saturating_sub(1)
                } else {
                    state.sessions
                };
                state.sessions += 1;
                state.enforcer = Some(Self::fresh_enforcer(session));
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "no permit without a durable allow record",
                |_, state: &State| {
                    state.client.permits.iter().all(|p| {
                        state.durable.contains(&Record::Decision {
                            session: p.session,
                            seq: p.seq,
                            allow: true,
                        })
                    })
                },
            ),
            Property::always("no allow leaves after a halt", |_, state: &State| {
                !state.allow_after_halt
            }),
            Property::always(
                "a permit outlives a halt by at most its validity",
                |model: &Self, state: &State| {
                    state.client.permits.iter().all(|p| {
                        state
                            .halts
                            .iter()
                            .filter(|(s, _)| *s == p.session)
                            .all(|(_, at)| p.expires <= at.saturating_add(model.ttl))
                    })
                },
            ),
            Property::always(
                "a replayed receipt never yields a second permit",
                |_, state: &State| {
                    let permits = &state.client.permits;
                    permits.iter().enumerate().all(|(i, p)| {
                        permits
                            .iter()
                            .skip(i + 1)
                            .all(|q| (q.session, q.seq) != (p.session, p.seq))
                    })
                },
            ),
            Property::always(
                "a replayed request is never allowed twice",
                |_, state: &State| {
                    let allows: Vec<(u8, u8)> = state
                        .durable
                        .iter()
                        .filter_map(|r| match r {
                            Record::Decision {
                                session,
                                seq,
                                allow: true,
                            } => Some((*session, *seq)),
                            _ => None,
                        })
                        .collect();
                    let unique: BTreeSet<&(u8, u8)> = allows.iter().collect();
                    unique.len() == allows.len()
                },
            ),
            Property::sometimes("a permit is obtained", |_, state: &State| {
                !state.client.permits.is_empty()
            }),
            Property::sometimes(
                "a permit is obtained from a restarted enforcer",
                |_, state: &State| state.client.permits.iter().any(|p| p.session > 0),
            ),
            Property::sometimes(
                "a permit is held when a halt is acknowledged",
                |_, state: &State| {
                    state
                        .halts
                        .iter()
                        .any(|(s, _)| state.client.permits.iter().any(|p| p.session == *s))
                },
            ),
        ]
    }
}
