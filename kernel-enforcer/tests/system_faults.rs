//! Fail-closed at system level, in process: a failing or panicking
//! evidence device halts the session for good, and nothing is allowed
//! after, whatever arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{
    Action, AuditOptions, CanonicalAction, Decision, EnforcerFrame, Refusal, SessionId, audit,
    decode_enforcer_frame, decode_record, split_records,
};
use kernel_enforcer::session::serve::STALLED_SEND;
use kernel_enforcer::session::{
    Batch, Durable, OperatorAnswerError, Outgoing, Reply, Session, UnreleasedAllow, Withheld,
};
use kernel_testkit::session::{Fault, InProcess, Memory, READ_WORKSPACE, WORKSPACE};
use kernel_testkit::{
    Entry, authorize_frame as authorize_frame_of, broker_frame, entries, read_frame, request,
    request_until, this_thread, wait_for, wait_until_asleep,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

fn session(healthy: usize, fault: Fault) -> (Session, Memory, SessionId) {
    session_with(healthy, fault, READ_WORKSPACE)
}

fn session_with(healthy: usize, fault: Fault, policy: &str) -> (Session, Memory, SessionId) {
    session_in(WORKSPACE, healthy, fault, policy)
}

/// A session whose workspace is `workspace`, its evidence on a device
/// that works for `healthy` appends and then breaks by `fault`, greeted.
fn session_in(
    workspace: &str,
    healthy: usize,
    fault: Fault,
    policy: &str,
) -> (Session, Memory, SessionId) {
    let device = Memory::breaking_after(healthy, fault);
    let (session, handshake) = InProcess::new(policy)
        .workspace(workspace)
        .key(kernel_core::SigningKey::from_bytes(&[5; 32]))
        .evidence(device.log())
        .start();
    (session, device, handshake.session)
}

/// The frame asking to read `/ws/a` (allowed) as request `seq`.
fn authorize_frame(id: SessionId, seq: u64) -> Vec<u8> {
    read_frame(id, seq, "/ws/a")
}

fn ask(session: &mut Session, id: SessionId, seq: u64) -> EnforcerFrame {
    decode_enforcer_frame(&session.handle(&authorize_frame(id, seq))).unwrap()
}

/// The frame an allow becomes when released with `durable`.
fn released(allow: UnreleasedAllow, durable: &Durable) -> EnforcerFrame {
    let bytes = allow
        .release(durable, |frame| frame)
        .unwrap_or_else(Withheld::into_frame);
    decode_enforcer_frame(&bytes).unwrap()
}

/// The one reply of a batch of one frame, with the batch's proof.
fn only_reply(batch: Batch<Reply>) -> (Reply, Durable) {
    let Batch {
        mut replies,
        durable,
    } = batch;
    assert_eq!(replies.len(), 1);
    (replies.pop().unwrap(), durable)
}

/// Whether `frame` refuses request `seq` as halted (a withheld permit).
fn is_withheld(frame: &EnforcerFrame, seq: u64) -> bool {
    matches!(frame, EnforcerFrame::Refused { seq: Some(s), refusal: Refusal::Halted } if *s == seq)
}

fn is_allow(frame: &EnforcerFrame) -> bool {
    matches!(frame, EnforcerFrame::Receipt { receipt, .. }
        if kernel_core::decode_receipt_body_unverified(&receipt.body).unwrap().decision == Decision::Allow)
}

#[test]
fn a_failing_device_halts_for_good_and_withholds_every_receipt() {
    for fault in [Fault::FailWrite, Fault::FailSync, Fault::Panic] {
        // The session start and two decisions get through.
        let (mut session, device, id) = session(3, fault);
        assert!(is_allow(&ask(&mut session, id, 1)), "{fault:?}");
        assert!(is_allow(&ask(&mut session, id, 2)), "{fault:?}");
        let durable_before = device.bytes();
        // The device breaks: the decision is not durable, so its receipt
        // is withheld, and the session halts.
        let reply = ask(&mut session, id, 3);
        assert!(
            matches!(
                reply,
                EnforcerFrame::Refused {
                    refusal: Refusal::Halted,
                    ..
                }
            ),
            "{fault:?}: {reply:?}"
        );
        assert!(session.halted().is_some(), "{fault:?}");
        // Sticky: nothing is allowed after, even once the device works.
        device.repair();
        for seq in 4..20 {
            let reply = ask(&mut session, id, seq);
            assert!(
                !is_allow(&reply),
                "{fault:?}: allowed after the halt: {reply:?}"
            );
        }
        // What was acknowledged is intact and verifies.
        let report = audit(&durable_before, &AuditOptions::default()).unwrap();
        assert_eq!(report.allowed, 2);
    }
}

#[test]
fn an_operator_halt_is_recorded_and_every_later_request_is_a_signed_denial() {
    let (mut session, device, id) = session(usize::MAX, Fault::FailWrite);
    assert!(is_allow(&ask(&mut session, id, 1)));
    let _ = session.halt("incident 42", "operator uid 0 (pid 1)");
    for seq in 2..6 {
        let reply = ask(&mut session, id, seq);
        let EnforcerFrame::Receipt { receipt, .. } = reply else {
            panic!("expected a signed denial, got {reply:?}");
        };
        let body = kernel_core::decode_receipt_body_unverified(&receipt.body).unwrap();
        assert_eq!(body.decision, Decision::Deny);
        assert_eq!(body.reasons, vec!["halted".to_owned()]);
    }
    let bytes = device.bytes();
    let report = audit(&bytes, &AuditOptions::default()).unwrap();
    assert_eq!((report.allowed, report.denied, report.events), (1, 4, 1));
    let halt = entries(&bytes)
        .iter()
        .position(|entry| {
            matches!(entry.event(), Some(kernel_core::Event::Halt { cause, by, .. })
                if cause == "incident 42" && by.starts_with("operator"))
        })
        .expect("the halt is recorded");
    assert_eq!(halt, 2, "right after the one allowed decision");
}

/// Serves `shared` over `requests` and `replies` on a thread of its own,
/// as a client session without a control socket; the result arrives on
/// the returned channel.
fn serve_in_background(
    shared: &Arc<Mutex<Session>>,
    requests: ipc_channel::ipc::IpcReceiver<Vec<u8>>,
    replies: ipc_channel::ipc::IpcSender<Vec<u8>>,
) -> std::sync::mpsc::Receiver<Option<String>> {
    use kernel_enforcer::session::serve::{ServeOptions, serve_channels};
    let options = ServeOptions {
        control: None,
        operator_uid: 0,
        policies: Vec::new(),
        end_on_halt: false,
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let serving = Arc::clone(shared);
    std::thread::spawn(move || {
        let _ = done_tx.send(serve_channels(requests, replies, serving, &options).unwrap());
    });
    done
}

/// Returns once the enforcer waits on a client that does not read: the
/// thread that decides has recorded decisions and now sleeps (blocked on
/// the full reply channel), well before `STALLED_SEND` ends the session.
fn wait_until_the_enforcer_waits(device: &Memory) {
    // The session was started (its first record written) by this thread.
    let me = this_thread();
    let mut decider = None;
    wait_for(
        "the serving thread to decide",
        Duration::from_secs(20),
        || {
            decider = device.writer().filter(|writer| *writer != me);
            decider.is_some()
        },
    );
    wait_until_asleep(&[decider.unwrap()]);
}

/// A client that sends requests and never reads the answers: once the
/// reply channel is full, the serving thread waits on it, but never while
/// holding the session (the kill switch takes it within a second), and the
/// enforcer ends the session on its own, recorded as a halt.
#[test]
fn a_client_that_stops_reading_holds_up_nothing_and_its_session_ends() {
    use ipc_channel::ipc;
    let (session, device, id) = session(usize::MAX, Fault::FailWrite);
    let shared = Arc::new(Mutex::new(session));
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().unwrap();
    let (replies, _never_read) = ipc::channel::<Vec<u8>>().unwrap();
    let done = serve_in_background(&shared, requests, replies);
    std::thread::spawn(move || {
        for seq in 1..100_000u64 {
            if requests_tx.send(authorize_frame(id, seq)).is_err() {
                return;
            }
        }
    });
    // Until the channel fills, requests are decided; then the serving
    // thread waits on the client, and the session stays free.
    wait_until_the_enforcer_waits(&device);
    {
        let session = shared
            .try_lock_for(std::time::Duration::from_secs(1))
            .expect("a client that does not read holds the session lock");
        assert!(session.halted().is_none());
    }
    let halted = done
        .recv_timeout(STALLED_SEND * 10)
        .expect("the session did not end");
    let cause = halted.expect("the session ended without a halt");
    assert!(cause.contains("stopped reading"), "{cause}");
    let bytes = device.bytes();
    let report = audit(&bytes, &AuditOptions::default()).unwrap();
    assert!(report.allowed > 0);
    let halts: Vec<String> = entries(&bytes)
        .iter()
        .filter_map(|entry| entry.halt_cause().map(str::to_owned))
        .collect();
    assert_eq!(halts, vec![cause]);
}

/// A permit decided before a halt but not yet sent when the halt is
/// acknowledged is withheld: the client gets a `Halted` refusal for it,
/// although its allow stays in the evidence.
#[test]
fn a_permit_not_yet_sent_when_the_halt_comes_is_withheld() {
    let (mut halted, device, id) = session(usize::MAX, Fault::FailWrite);
    let frame = authorize_frame(id, 1);
    let (Reply::Allow(permit), durable) = only_reply(halted.decide_batch(&[frame])) else {
        panic!("an allowed request is not a permit");
    };
    let _ = halted.halt("incident 7", "operator test");
    let sent = released(permit, &durable);
    assert!(is_withheld(&sent, 1), "{sent:?}");
    let report = audit(&device.bytes(), &AuditOptions::default()).unwrap();
    assert_eq!(report.allowed, 1, "the decision itself stays recorded");
    // Without a halt, the same permit is released as the allow receipt.
    let (mut serving, _, id) = session(usize::MAX, Fault::FailWrite);
    let frame = authorize_frame(id, 1);
    let (Reply::Allow(permit), durable) = only_reply(serving.decide_batch(&[frame])) else {
        panic!("an allowed request is not a permit");
    };
    let sent = released(permit, &durable);
    assert!(is_allow(&sent), "{sent:?}");
}

/// End to end through the serving loop: a client that does not read has
/// hundreds of permits decided for it; the serving thread waits on the
/// full channel; the operator halts. When the client finally reads, every
/// allow recorded before the halt reached it exactly once, as the permit
/// or (those not yet sent at the halt) as a `Halted` refusal, and no
/// permit comes after the first refusal.
#[test]
fn permits_waiting_on_a_client_that_does_not_read_are_withheld_at_a_halt() {
    use ipc_channel::ipc;
    // Large receipts (the permit's reason is in each), so that the reply
    // channel holds a few dozen and the first batch cannot all be sent.
    let policy = format!(
        "@reason(\"{}\")\npermit (principal, action == Action::\"file_read\", resource in Workspace::\"root\");",
        "r".repeat(8_000)
    );
    let (session, device, id) = session_with(usize::MAX, Fault::FailWrite, &policy);
    let shared = Arc::new(Mutex::new(session));
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().unwrap();
    let (replies, client) = ipc::channel::<Vec<u8>>().unwrap();
    // The requests are waiting before the enforcer starts: one full batch.
    // The sender then sleeps: blocked on the full channel, or kept open
    // (so that the session does not end for lack of a client).
    let (sender_tx, sender) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender_tx.send(this_thread());
        for seq in 1..=300 {
            if requests_tx.send(authorize_frame(id, seq)).is_err() {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
    wait_until_asleep(&[sender.recv().unwrap()]);
    let _done = serve_in_background(&shared, requests, replies);
    // Wait until the enforcer waits on the client, then halt (well within
    // STALLED_SEND, after which the enforcer would halt by itself).
    wait_until_the_enforcer_waits(&device);
    let _ = shared.lock().halt("incident 9", "operator test");
    let allowed_before_halt = entries(&device.bytes())
        .iter()
        .filter(|entry| entry.decision() == Some(Decision::Allow))
        .count();
    // The client reads now.
    let (mut permits, mut withheld, mut permit_after_refusal) = (0, 0, false);
    while let Ok(bytes) = client.try_recv_timeout(std::time::Duration::from_secs(1)) {
        let frame = decode_enforcer_frame(&bytes).unwrap();
        if is_allow(&frame) {
            permits += 1;
            permit_after_refusal |= withheld > 0;
        } else if matches!(
            frame,
            EnforcerFrame::Refused {
                refusal: Refusal::Halted,
                ..
            }
        ) {
            withheld += 1;
        }
    }
    assert!(withheld > 0, "no permit was withheld ({permits} sent)");
    assert!(
        !permit_after_refusal,
        "a permit was sent after a withheld one"
    );
    assert_eq!(
        permits + withheld,
        allowed_before_halt,
        "every allow recorded before the halt is answered exactly once"
    );
}

/// Replies made outside the serving loop (an approval's answer) come out
/// typed: the approved allow is an `UnreleasedAllow`, withheld once the
/// session halts, and the rejection a plain frame.
#[test]
fn an_approvals_allow_is_typed_and_withheld_after_a_halt() {
    let (mut session, _, id) = session_with(
        usize::MAX,
        Fault::FailWrite,
        r#"@ask
permit (principal, action == Action::"file_read", resource in Workspace::"root");"#,
    );
    // Three requests wait for an answer.
    for seq in [1, 2, 3] {
        let frames = [authorize_frame(id, seq)];
        assert!(matches!(
            only_reply(session.decide_batch(&frames)),
            (Reply::Frame(_), _)
        ));
    }
    let ids: Vec<u64> = session.pending().iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 3, "the requests are pending");
    let approved = session.approve(ids[0], "operator test", None);
    assert_eq!(approved.outcome, Ok(()));
    let approved = approved.replies;
    let durable = approved.durable;
    let [Outgoing::Allow(allow)] = <[Outgoing; 1]>::try_from(approved.replies).unwrap() else {
        panic!("an approval's allow is not typed as one");
    };
    let rejected = session.reject(ids[1], "operator test");
    assert_eq!(rejected.outcome, Ok(()));
    let rejected = rejected.replies;
    let [Outgoing::Frame(denial)] = <[Outgoing; 1]>::try_from(rejected.replies).unwrap() else {
        panic!("a rejection is a plain frame");
    };
    assert!(!is_allow(&decode_enforcer_frame(&denial).unwrap()));
    let seq = allow.seq();
    let halted = session.halt("incident 11", "operator test");
    let sent = released(allow, &durable);
    assert!(is_withheld(&sent, seq), "{sent:?}");
    // The request still waiting is denied by the halt, and an approval
    // after the halt releases nothing.
    let [Outgoing::Frame(denial)] = <[Outgoing; 1]>::try_from(halted.replies).unwrap() else {
        panic!("a halt's answer to a waiting request is not a plain frame");
    };
    assert!(!is_allow(&decode_enforcer_frame(&denial).unwrap()));
    let late = session.approve(ids[2], "operator test", None);
    assert!(late.outcome.is_err());
    assert!(
        late.replies.replies.is_empty(),
        "the halt already answered it"
    );
}

/// The release checks the proof of the commit itself, not only the halt
/// latch: the proof of an earlier commit, or of another session's, lets
/// no allow out whose record it does not cover, although nothing halted.
/// (This is what lets a later batch be decided while an earlier one is
/// made durable: each batch's allows go out with its own commit's proof.)
#[test]
fn a_proof_of_an_earlier_commit_releases_no_later_allow() {
    let (mut first_session, _, id) = session(usize::MAX, Fault::FailWrite);
    let (Reply::Allow(first), first_durable) =
        only_reply(first_session.decide_batch(&[authorize_frame(id, 1)]))
    else {
        panic!("an allowed request is not a permit");
    };
    let (Reply::Allow(second), second_durable) =
        only_reply(first_session.decide_batch(&[authorize_frame(id, 2)]))
    else {
        panic!("an allowed request is not a permit");
    };
    let sent = released(second, &first_durable);
    assert!(is_withheld(&sent, 2), "{sent:?}");
    assert!(first_session.halted().is_none());
    // A later commit's proof covers the records before it.
    let sent = released(first, &second_durable);
    assert!(is_allow(&sent), "{sent:?}");
    // Another session's proof, covering more records than this session
    // has, covers none of them.
    let (mut other, _, other_id) = session(usize::MAX, Fault::FailWrite);
    let frames: Vec<Vec<u8>> = (1..20).map(|seq| authorize_frame(other_id, seq)).collect();
    let other_durable = other.decide_batch(&frames).durable;
    let (Reply::Allow(third), _) =
        only_reply(first_session.decide_batch(&[authorize_frame(id, 3)]))
    else {
        panic!("an allowed request is not a permit");
    };
    let sent = released(third, &other_durable);
    assert!(is_withheld(&sent, 3), "{sent:?}");
}

/// The frame asking the broker to delete `path` as request `seq`.
fn delete_frame(id: SessionId, seq: u64, path: &std::path::Path) -> Vec<u8> {
    let delete = Action::file_delete(path.to_str().unwrap());
    broker_frame(&request(id, seq, delete), Vec::new())
}

/// A brokered effect whose record cannot be synced does not happen: the
/// file stays, the agent is told `halted`, and the session halts. The
/// same request with a working device does delete.
#[test]
fn a_brokered_effect_whose_record_is_not_synced_does_not_happen() {
    use kernel_enforcer::session::broker::Broker;
    use kernel_enforcer::session::handoff::Handoff;
    let ws = tempfile::tempdir().unwrap();
    let workspace = ws.path().canonicalize().unwrap();
    let policy =
        r#"permit (principal, action == Action::"file_delete", resource in Workspace::"root");"#;
    let broker = || Broker {
        workspace: workspace.clone(),
        protected: Vec::new(),
        exec_timeout: std::time::Duration::from_secs(5),
        confine: false,
        handoff: Handoff::none(),
    };
    let root = workspace.to_str().unwrap();
    for (healthy, deleted) in [(usize::MAX, true), (1, false)] {
        let victim = workspace.join("victim");
        std::fs::write(&victim, "still here").unwrap();
        // One append (the session start) works; the decision's sync fails.
        let (mut session, _, id) = session_in(root, healthy, Fault::FailSync, policy);
        session.set_broker(broker());
        let reply = decode_enforcer_frame(&session.handle(&delete_frame(id, 1, &victim))).unwrap();
        assert_eq!(!victim.exists(), deleted, "{reply:?}");
        if deleted {
            assert!(
                matches!(reply, EnforcerFrame::Brokered { seq: 1, .. }),
                "{reply:?}"
            );
            continue;
        }
        assert!(is_withheld(&reply, 1), "{reply:?}");
        assert!(session.halted().is_some());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "still here");
    }
}

/// An operator's approval whose record cannot be synced is never
/// released: the agent gets `halted`, not the allow, and the operator is
/// told that the approval did not take effect, naming the halt.
#[test]
fn an_approval_whose_record_is_not_synced_is_never_released() {
    // The session start and the ask are written; the approval's commit
    // fails.
    let (mut session, _, id) = session_with(
        2,
        Fault::FailSync,
        r#"@ask
permit (principal, action == Action::"file_read", resource in Workspace::"root");"#,
    );
    let frames = [authorize_frame(id, 1)];
    assert!(matches!(
        only_reply(session.decide_batch(&frames)),
        (Reply::Frame(_), _)
    ));
    let ids: Vec<u64> = session.pending().iter().map(|p| p.id).collect();
    let answered = session.approve(ids[0], "operator test", None);
    assert!(session.halted().is_some());
    assert!(
        matches!(
            &answered.outcome,
            Err(OperatorAnswerError::Uncommitted { id, approved: true, .. }) if *id == ids[0]
        ),
        "{:?}",
        answered.outcome
    );
    let approved = answered.replies;
    let durable = approved.durable;
    let [Outgoing::Allow(allow)] = <[Outgoing; 1]>::try_from(approved.replies).unwrap() else {
        panic!("an approval's allow is not typed as one");
    };
    let sent = released(allow, &durable);
    assert!(is_withheld(&sent, 1), "{sent:?}");
}

/// A governed system call (or egress request) whose record cannot be
/// synced does not proceed; with a working device, the same call does.
#[test]
fn a_governed_call_whose_record_is_not_synced_does_not_proceed() {
    for (healthy, proceeds) in [(usize::MAX, true), (1, false)] {
        let (mut session, _, _) = session(healthy, Fault::FailSync);
        let read = CanonicalAction::new(Action::file_read("/ws/a"), None).unwrap();
        assert_eq!(session.decide_system_call(read).release(), proceeds);
        assert_eq!(session.halted().is_some(), !proceeds);
    }
}

/// After `finish` (the final checkpoint), the session records nothing:
/// requests are refused, periodic work and halts add no record, and the
/// log still verifies with the checkpoint last.
#[test]
fn a_finished_session_records_nothing_more() {
    let (mut session, device, id) = session(usize::MAX, Fault::FailWrite);
    assert!(is_allow(&ask(&mut session, id, 1)));
    session.finish();
    let finished = device.bytes();
    let reply = ask(&mut session, id, 2);
    assert!(
        matches!(
            reply,
            EnforcerFrame::Refused {
                refusal: Refusal::Halted,
                ..
            }
        ),
        "{reply:?}"
    );
    let _ = session.tick();
    let _ = session.halt("after the end", "operator test");
    assert_eq!(
        device.bytes(),
        finished,
        "something was recorded after finish"
    );
    let records = split_records(&finished).unwrap();
    assert!(
        decode_record(records.last().unwrap())
            .unwrap()
            .checkpoint_note()
            .is_some()
    );
    audit(&finished, &AuditOptions::default()).unwrap();
}

/// A session over a device that syncs apart from the log, as an evidence
/// file does (so batches are pipelined), greeted.
fn pipelined_session(workspace: &str, policy: &str) -> (Session, Memory, SessionId) {
    let device = Memory::syncing_apart();
    let (session, handshake) = InProcess::new(policy)
        .workspace(workspace)
        .key(kernel_core::SigningKey::from_bytes(&[5; 32]))
        .evidence(device.log())
        .start();
    (session, device, handshake.session)
}

/// Batches decided while an earlier one waits for its `fdatasync`: when
/// that sync fails, nothing of its batch is released (the allow is
/// withheld, the denial's receipt replaced by `halted`), the session
/// halts, and nothing of a later batch is released either, not even when
/// the device reports its next sync as successful (after a failed
/// `fdatasync`, a later one may succeed over lost data). A brokered
/// delete in the later batch does not happen.
#[test]
fn a_pipelined_batch_whose_sync_fails_releases_nothing_after_it() {
    use kernel_enforcer::session::broker::Broker;
    use kernel_enforcer::session::handoff::Handoff;
    let ws = tempfile::tempdir().unwrap();
    let workspace = ws.path().canonicalize().unwrap();
    let root = workspace.to_str().unwrap();
    let policy = r#"permit (principal, action in [Action::"file_read", Action::"file_delete"], resource in Workspace::"root");"#;
    let victim = workspace.join("victim");
    std::fs::write(&victim, "still here").unwrap();
    let (mut session, device, id) = pipelined_session(root, policy);
    session.set_broker(Broker {
        workspace: workspace.clone(),
        protected: Vec::new(),
        exec_timeout: std::time::Duration::from_secs(5),
        confine: false,
        handoff: Handoff::none(),
    });
    let inside = format!("{root}/a");
    let first = session
        .decide_batch_deferred(&[read_frame(id, 1, &inside), read_frame(id, 2, "/outside/b")]);
    let second =
        session.decide_batch_deferred(&[read_frame(id, 3, &inside), delete_frame(id, 4, &victim)]);
    // Both batches are written, neither synced yet.
    assert_eq!(device.detached_syncs(), 0);
    device.break_syncs();
    let (Batch { replies, durable }, failed) = first.sync();
    assert!(failed.is_some());
    assert!(session.halted().is_some());
    session.sync_failed(&failed.unwrap());
    let frames: Vec<EnforcerFrame> = replies
        .into_iter()
        .map(|reply| decode_enforcer_frame(&reply.release(&durable, session.broker())).unwrap())
        .collect();
    assert!(is_withheld(&frames[0], 1), "{:?}", frames[0]);
    assert!(is_withheld(&frames[1], 2), "{:?}", frames[1]);
    // The device works again; the failure stays.
    device.repair();
    let (Batch { replies, durable }, failed) = second.sync();
    assert!(failed.is_some());
    let frames: Vec<EnforcerFrame> = replies
        .into_iter()
        .map(|reply| decode_enforcer_frame(&reply.release(&durable, session.broker())).unwrap())
        .collect();
    assert!(is_withheld(&frames[0], 3), "{:?}", frames[0]);
    assert!(is_withheld(&frames[1], 4), "{:?}", frames[1]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "still here");
    // And nothing later is allowed.
    let (later, failed) = session
        .decide_batch_deferred(&[read_frame(id, 5, &inside)])
        .sync();
    assert!(failed.is_none());
    let Batch { replies, durable } = later;
    for reply in replies {
        let frame = decode_enforcer_frame(&reply.release(&durable, None)).unwrap();
        assert!(!is_allow(&frame), "{frame:?}");
    }
}

/// A pipelined batch goes out only with the proof of a sync that began
/// after its records were written, and one sync serves every batch
/// written before it began: the second batch, written before the first
/// one's sync, needs no sync of its own.
#[test]
fn a_pipelined_batch_is_released_with_its_own_sync() {
    let (mut session, device, id) = pipelined_session(WORKSPACE, READ_WORKSPACE);
    let first = session.decide_batch_deferred(&[authorize_frame(id, 1)]);
    let second = session.decide_batch_deferred(&[authorize_frame(id, 2)]);
    let written = device.len();
    assert_eq!(device.detached_syncs(), 0);
    let (Batch { replies, durable }, failed) = first.sync();
    assert!(failed.is_none());
    assert_eq!(device.detached_syncs(), 1);
    let [Reply::Allow(allow)] = <[Reply; 1]>::try_from(replies).unwrap() else {
        panic!("an allowed request is not a permit");
    };
    assert!(is_allow(&released(allow, &durable)));
    let (Batch { replies, durable }, failed) = second.sync();
    assert!(failed.is_none());
    assert_eq!(
        device.detached_syncs(),
        1,
        "the first sync covered the second batch"
    );
    let [Reply::Allow(allow)] = <[Reply; 1]>::try_from(replies).unwrap() else {
        panic!("an allowed request is not a permit");
    };
    assert!(is_allow(&released(allow, &durable)));
    // A third batch, written after that sync, gets a sync of its own.
    let (Batch { replies, durable }, _) = session
        .decide_batch_deferred(&[authorize_frame(id, 3)])
        .sync();
    assert!(device.len() > written);
    assert_eq!(device.detached_syncs(), 2);
    let [Reply::Allow(allow)] = <[Reply; 1]>::try_from(replies).unwrap() else {
        panic!("an allowed request is not a permit");
    };
    assert!(is_allow(&released(allow, &durable)));
}

/// The frame asking to read `/ws/a` as request `seq`, with its deadline.
fn read_frame_until(id: SessionId, seq: u64, deadline_ms: u64) -> Vec<u8> {
    authorize_frame_of(&request_until(
        id,
        seq,
        Action::file_read("/ws/a"),
        deadline_ms,
    ))
}

/// The decisions and approval events a device holds, in order, as
/// `(decision, log index)` for decisions and `None` for approvals.
fn decisions_and_approvals(device: &Memory) -> Vec<Option<(Decision, u64)>> {
    entries(&device.bytes())
        .iter()
        .filter_map(|entry| match entry {
            Entry::Decision { body, .. } => Some(Some((body.decision, body.log_index))),
            Entry::Event(kernel_core::Event::Approval { .. }) => Some(None),
            _ => None,
        })
        .collect()
}

const ASK_READS: &str = r#"@ask
permit (principal, action == Action::"file_read", resource in Workspace::"root");"#;

/// An approval that comes after the request's deadline (before any
/// periodic work expired it) is refused, and the request is answered
/// right then, once, with the denial that is recorded: the agent is not
/// left waiting for an answer that never comes.
#[test]
fn a_late_approval_is_refused_and_the_agent_gets_the_recorded_denial() {
    for approve in [true, false] {
        let (mut session, device, id) = session_with(usize::MAX, Fault::FailWrite, ASK_READS);
        let deadline = kernel_core::now_ms() + 100;
        let frames = [read_frame_until(id, 1, deadline)];
        assert!(matches!(
            only_reply(session.decide_batch(&frames)),
            (Reply::Frame(_), _)
        ));
        let ids: Vec<u64> = session.pending().iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 1);
        // Waits for the deadline to pass; no periodic work runs meanwhile.
        while kernel_core::now_ms() <= deadline + 1 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let answered = if approve {
            session.approve(ids[0], "operator test", None)
        } else {
            session.reject(ids[0], "operator test")
        };
        assert!(
            matches!(
                &answered.outcome,
                Err(OperatorAnswerError::PassedDeadline { id, halted: None }) if *id == ids[0]
            ),
            "{:?}",
            answered.outcome
        );
        // The one reply is the signed denial, recorded at that log index.
        let [Outgoing::Frame(frame)] = <[Outgoing; 1]>::try_from(answered.replies.replies)
            .unwrap_or_else(|r| panic!("the agent gets one answer, not {r:?}"))
        else {
            panic!("a late answer's denial is not a plain frame");
        };
        let EnforcerFrame::Receipt { seq: 1, receipt } = decode_enforcer_frame(&frame).unwrap()
        else {
            panic!("not a receipt for request 1: {frame:?}");
        };
        let body = kernel_core::decode_receipt_body_unverified(&receipt.body).unwrap();
        assert_eq!(body.decision, Decision::Deny);
        let recorded = decisions_and_approvals(&device);
        assert_eq!(
            recorded,
            [
                Some((Decision::Ask, recorded[0].unwrap().1)),
                Some((Decision::Deny, body.log_index))
            ],
            "the late answer is not recorded as an approval"
        );
        // Nothing else answers it later.
        assert!(session.pending().is_empty());
        assert!(session.tick().replies.is_empty());
    }
}

/// An approval (or rejection) whose records cannot be written does not
/// take effect, and nothing says it did: the operator is told so, naming
/// the halt, the agent gets `halted`, and the evidence holds neither the
/// approval nor a decision after the ask.
#[test]
fn an_answer_whose_commit_fails_is_reported_as_not_taking_effect() {
    for approve in [true, false] {
        // The session start and the ask are written; the answer's write
        // fails.
        let (mut session, device, id) = session_with(2, Fault::FailWrite, ASK_READS);
        let frames = [authorize_frame(id, 1)];
        assert!(matches!(
            only_reply(session.decide_batch(&frames)),
            (Reply::Frame(_), _)
        ));
        let ids: Vec<u64> = session.pending().iter().map(|p| p.id).collect();
        let answered = if approve {
            session.approve(ids[0], "operator test", None)
        } else {
            session.reject(ids[0], "operator test")
        };
        let cause = session.halted().expect("the failed commit halts");
        assert_eq!(
            answered.outcome,
            Err(OperatorAnswerError::Uncommitted {
                id: ids[0],
                approved: approve,
                halted: cause,
            })
        );
        let durable = answered.replies.durable;
        let [reply] = <[Outgoing; 1]>::try_from(answered.replies.replies).unwrap();
        let sent = match reply {
            Outgoing::Allow(allow) => released(allow, &durable),
            Outgoing::Frame(frame) => decode_enforcer_frame(&frame).unwrap(),
        };
        assert!(is_withheld(&sent, 1), "{sent:?}");
        let recorded = decisions_and_approvals(&device);
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].unwrap().0, Decision::Ask);
    }
}
