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
    AuditOptions, Decision, EnforcerFrame, Refusal, SessionId, audit, decode_enforcer_frame,
    decode_record, split_records,
};
use kernel_enforcer::serve::STALLED_SEND;
use kernel_enforcer::session::Session;
use kernel_testkit::session::{Fault, InProcess, Memory, READ_WORKSPACE};
use kernel_testkit::{entries, read_frame, this_thread, wait_for, wait_until_asleep};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// A session deciding by `policy`, its evidence on `device`.
fn session_on(device: &Memory, policy: &str) -> (Session, SessionId) {
    let (session, handshake) = InProcess::new(policy)
        .key(kernel_core::SigningKey::from_bytes(&[5; 32]))
        .evidence(device.log())
        .start();
    (session, handshake.session)
}

/// A session that reads the workspace, on a device that works for
/// `healthy` appends and then breaks by `fault`.
fn session(healthy: usize, fault: Fault) -> (Session, Memory, SessionId) {
    let device = Memory::breaking_after(healthy, fault);
    let (session, id) = session_on(&device, READ_WORKSPACE);
    (session, device, id)
}

/// A session deciding by `policy` on a device that works.
fn session_with(policy: &str) -> (Session, Memory, SessionId) {
    let device = Memory::new();
    let (session, id) = session_on(&device, policy);
    (session, device, id)
}

/// The frame asking to read `/ws/a` (allowed) as request `seq`.
fn authorize_frame(id: SessionId, seq: u64) -> Vec<u8> {
    read_frame(id, seq, "/ws/a")
}

fn ask(session: &mut Session, id: SessionId, seq: u64) -> EnforcerFrame {
    decode_enforcer_frame(&session.handle(&authorize_frame(id, seq))).unwrap()
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
    let (mut session, device, id) = session_with(READ_WORKSPACE);
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
    use kernel_enforcer::serve::{ServeOptions, serve_channels};
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
    let (session, device, id) = session_with(READ_WORKSPACE);
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
    use kernel_enforcer::session::Reply;
    let (mut halted, device, id) = session_with(READ_WORKSPACE);
    let frame = authorize_frame(id, 1);
    let Some(Reply::Allow(permit)) = halted.decide_batch(&[frame]).pop() else {
        panic!("an allowed request is not a permit");
    };
    let _ = halted.halt("incident 7", "operator test");
    let sent = decode_enforcer_frame(&permit.release(&halted.halt_latch())).unwrap();
    assert!(is_withheld(&sent, 1), "{sent:?}");
    let report = audit(&device.bytes(), &AuditOptions::default()).unwrap();
    assert_eq!(report.allowed, 1, "the decision itself stays recorded");
    // Without a halt, the same permit is released as the allow receipt.
    let (mut serving, _, id) = session_with(READ_WORKSPACE);
    let frame = authorize_frame(id, 1);
    let Some(Reply::Allow(permit)) = serving.decide_batch(&[frame]).pop() else {
        panic!("an allowed request is not a permit");
    };
    let sent = decode_enforcer_frame(&permit.release(&serving.halt_latch())).unwrap();
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
    let (session, device, id) = session_with(&policy);
    let shared = Arc::new(Mutex::new(session));
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().unwrap();
    let (replies, client) = ipc::channel::<Vec<u8>>().unwrap();
    // The requests are waiting before the enforcer starts: one full batch.
    // The sender then sleeps: blocked on the full channel, or kept open
    // (so that the session does not end for lack of a client).
    let (sender_tx, sender) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender_tx.send(kernel_testkit::this_thread());
        for seq in 1..=300 {
            if requests_tx.send(authorize_frame(id, seq)).is_err() {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
    kernel_testkit::wait_until_asleep(&[sender.recv().unwrap()]);
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
    use kernel_enforcer::session::{Outgoing, Reply};
    let (mut session, _, id) = session_with(
        r#"@ask
permit (principal, action == Action::"file_read", resource in Workspace::"root");"#,
    );
    // Both requests wait for an answer.
    for seq in [1, 2] {
        let frames = [authorize_frame(id, seq)];
        assert!(matches!(
            session.decide_batch(&frames).pop(),
            Some(Reply::Frame(_))
        ));
    }
    let ids: Vec<u64> = session.pending().iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 2, "both requests are pending");
    let approved = session.approve(ids[0], "operator test", None).unwrap();
    let [Outgoing::Allow(allow)] = <[Outgoing; 1]>::try_from(approved).unwrap() else {
        panic!("an approval's allow is not typed as one");
    };
    let rejected = session.reject(ids[1], "operator test").unwrap();
    let [Outgoing::Frame(denial)] = <[Outgoing; 1]>::try_from(rejected).unwrap() else {
        panic!("a rejection is a plain frame");
    };
    assert!(!is_allow(&decode_enforcer_frame(&denial).unwrap()));
    let seq = allow.seq();
    let _ = session.halt("incident 11", "operator test");
    let sent = decode_enforcer_frame(&allow.release(&session.halt_latch())).unwrap();
    assert!(is_withheld(&sent, seq), "{sent:?}");
}

/// After `finish` (the final checkpoint), the session records nothing:
/// requests are refused, periodic work and halts add no record, and the
/// log still verifies with the checkpoint last.
#[test]
fn a_finished_session_records_nothing_more() {
    let (mut session, device, id) = session_with(READ_WORKSPACE);
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
