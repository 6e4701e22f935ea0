//! The client against the real enforcer binary, in separate processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{
    Action, ClientConfig, Denial, EffectError, EnforcerEnds, Exec, Kernel, KernelState,
    SpawnConfig, SpawnError, write_permitted,
};
use kernel_core::{
    AuditOptions, ClientFrame, Decision, Digest, EncodedRequest, EnforcerFrame, Handshake,
    PROTOCOL_VERSION, ReceiptBody, Refusal, SigningKey, VerifyError, audit, decode_client_frame,
    encode_client_frame, encode_enforcer_frame, limits::MAX_FRAME_BYTES, sign_receipt,
};
use kernel_testkit::{
    Fixture, RawClient, alive, authorize_frame, ended, enforcer, fixture, hello_frame, request,
    signal, wait_for,
};
use std::time::{Duration, Instant};

const TOUCH_POLICY: &str = r#"
@id("touch-in-workspace")
permit (principal, action == Action::"exec", resource)
when { resource.name == "touch" && context.cwd_in_workspace };

@id("never-denied-txt")
@reason("denied.txt must never be created")
forbid (principal, action == Action::"exec", resource)
when { context.args.contains("denied.txt") };

@id("read-workspace")
permit (principal, action in [Action::"file_read", Action::"file_write"], resource in Workspace::"root");
"#;

fn touch(f: &Fixture, name: &str) -> Exec {
    Exec::new("/usr/bin/touch")
        .arg(name)
        .cwd(f.workspace.to_string_lossy())
}

#[test]
fn allowed_effects_happen_and_denied_ones_do_not() {
    let f = fixture(TOUCH_POLICY);
    let kernel = f.spawn();
    let output = kernel.exec(touch(&f, "allowed.txt")).unwrap();
    assert!(output.status.success());
    assert!(f.workspace.join("allowed.txt").exists());

    match kernel.exec(touch(&f, "denied.txt")) {
        Err(EffectError::Denied(Denial::Policy {
            policies, reasons, ..
        })) => {
            assert_eq!(policies, vec!["never-denied-txt".to_owned()]);
            assert_eq!(reasons, vec!["denied.txt must never be created".to_owned()]);
        }
        other => panic!("expected a policy denial, got {other:?}"),
    }
    assert!(
        !f.workspace.join("denied.txt").exists(),
        "the denied effect happened"
    );

    std::fs::write(f.workspace.join("data.txt"), b"payload").unwrap();
    assert_eq!(kernel.read_file(&f.ws("data.txt")).unwrap(), b"payload");
    // Outside the workspace: default deny.
    assert!(matches!(
        kernel.read_file("/etc/hostname"),
        Err(EffectError::Denied(Denial::Policy { .. }))
    ));

    let key = *kernel.public_key();
    let pid = kernel.enforcer_pid().unwrap();
    let status = kernel.shutdown(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "enforcer exit status {status}");
    assert!(!alive(pid));
    let options = AuditOptions {
        kernel_key: Some(&key),
        ..AuditOptions::default()
    };
    let report = audit(&std::fs::read(&f.evidence).unwrap(), &options).unwrap();
    assert_eq!((report.allowed, report.denied), (2, 2), "{report:?}");
    // The final checkpoint, written at shutdown, covers every record.
    assert_eq!(report.uncovered, 0);
    assert_eq!(report.newest_checkpoint().unwrap().size, report.records - 1);
}

#[test]
fn a_permit_covers_exactly_its_content() {
    let f = fixture(TOUCH_POLICY);
    let kernel = f.spawn();
    let path = f.ws("notes.md");
    let permit = kernel
        .authorize(Action::file_write(&path, b"agreed"))
        .unwrap();
    let result = write_permitted(permit, b"something else entirely");
    assert!(
        matches!(result, Err(EffectError::WrongPermit)),
        "{result:?}"
    );
    assert!(!f.workspace.join("notes.md").exists());
}

#[test]
fn evaluation_error_is_a_denial() {
    let f = fixture(
        r#"@id("all") permit (principal, action, resource);
           @id("overflows") forbid (principal, action == Action::"exec", resource)
             when { context.argc * 9223372036854775807 > 1 };"#,
    );
    let kernel = f.spawn();
    match kernel.exec(touch(&f, "x").arg("y")) {
        Err(EffectError::Denied(Denial::Policy {
            policies, reasons, ..
        })) => {
            assert_eq!(policies, vec!["overflows".to_owned()]);
            assert!(reasons[0].contains("failed to evaluate"), "{reasons:?}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(!f.workspace.join("x").exists());
}

#[test]
fn invalid_policy_fails_spawn_with_the_validation_message() {
    let f = fixture("permit (principal, action == Action::\"file_raed\", resource);\n");
    match Kernel::spawn(f.config()) {
        Err(SpawnError::EnforcerExited { message, status }) => {
            assert!(!status.success());
            let at = format!("{}:1:", f.policy.display());
            assert!(message.contains(&at), "no file:line:col in {message}");
            assert!(message.contains("file_raed"), "{message}");
        }
        other => panic!("expected spawn to fail, got {other:?}"),
    }
}

#[test]
fn missing_enforcer_binary_fails_spawn() {
    let f = fixture(TOUCH_POLICY);
    let config = SpawnConfig::new(&f.policy, &f.workspace, &f.evidence)
        .enforcer(f.dir.path().join("no-such-kernel-enforcer"));
    assert!(matches!(
        Kernel::spawn(config),
        Err(SpawnError::EnforcerNotFound { .. })
    ));
}

#[test]
fn pinned_key_must_match() {
    let f = fixture(TOUCH_POLICY);
    let keys = f.dir.path().join("keys");
    let out = std::process::Command::new(enforcer())
        .args(["keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = kernel_core::parse_public_key(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let key_file = keys.join("kernel.key");
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();

    let wrong = f.config().key_file(&key_file).pin_public_key(other);
    assert!(matches!(
        Kernel::spawn(wrong),
        Err(SpawnError::KeyMismatch { .. })
    ));
    let right = f.config().key_file(&key_file).pin_public_key(public);
    let kernel = Kernel::spawn(right).unwrap();
    assert_eq!(kernel.public_key(), &public);
}

#[test]
fn sigkill_mid_session_denies_promptly_and_for_good() {
    let f = fixture(TOUCH_POLICY);
    let timeout = Duration::from_secs(3);
    let kernel = Kernel::spawn(f.config().timeout(timeout)).unwrap();
    kernel.read_file(&f.ws(".")).ok();
    let pid = kernel.enforcer_pid().unwrap();
    signal(pid, "KILL");
    // Dead (a zombie until the client reaps it), whether or not the client
    // has noticed yet.
    wait_for("SIGKILL to kill", Duration::from_secs(10), || ended(pid));
    let started = Instant::now();
    let result = kernel.exec(touch(&f, "after-kill.txt"));
    assert!(
        matches!(
            result,
            Err(EffectError::Denied(
                Denial::EnforcerGone | Denial::Timeout(_)
            ))
        ),
        "{result:?}"
    );
    // At the latest at the timeout (with room for a loaded machine),
    // never a hang.
    assert!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(kernel.state(), KernelState::Gone);
    assert!(matches!(
        kernel.authorize(Action::file_read(f.ws("a"))),
        Err(Denial::EnforcerGone)
    ));
    assert!(!f.workspace.join("after-kill.txt").exists());
}

#[test]
fn sigstop_denies_at_the_timeout_and_late_answers_are_not_taken() {
    let f = fixture(TOUCH_POLICY);
    let timeout = Duration::from_secs(1);
    let kernel = Kernel::spawn(f.config().timeout(timeout)).unwrap();
    let pid = kernel.enforcer_pid().unwrap();
    signal(pid, "STOP");
    let started = Instant::now();
    let result = kernel.exec(touch(&f, "while-stopped.txt"));
    let waited = started.elapsed();
    signal(pid, "CONT");
    assert!(
        matches!(result, Err(EffectError::Denied(Denial::Timeout(_)))),
        "{result:?}"
    );
    // Not a performance claim: the denial must come from the timeout, not
    // before it (ipc-channel rounds the wait to whole milliseconds) and not
    // long after it.
    assert!(
        waited >= timeout * 9 / 10 && waited < timeout * 4,
        "waited {waited:?}"
    );
    assert!(!f.workspace.join("while-stopped.txt").exists());
    // The enforcer now answers the stale request too; the client must skip
    // it and take only the answer to the new request.
    kernel.exec(touch(&f, "after-cont.txt")).unwrap();
    assert!(f.workspace.join("after-cont.txt").exists());
    assert!(!f.workspace.join("while-stopped.txt").exists());
}

fn expect_refusal(client: &RawClient) -> Refusal {
    match client.recv() {
        EnforcerFrame::Refused { refusal, .. } => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn garbage_oversize_and_out_of_order_frames_are_refused_and_serving_continues() {
    let f = fixture(TOUCH_POLICY);
    let client = RawClient::start(&f);
    // Before the hello, even a valid-looking request is refused.
    client.send(encode_client_frame(&ClientFrame::Authorize {
        request: vec![1, 2, 3],
    }));
    assert!(matches!(expect_refusal(&client), Refusal::OutOfOrder(_)));
    let handshake = client.hello();

    let valid = request(
        handshake.session,
        1,
        kernel_core::Action::file_read(f.ws("a")),
    );
    let valid_frame = authorize_frame(&valid);
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        b"hello".to_vec(),
        vec![0xff; 4096],
        valid_frame[..valid_frame.len() - 1].to_vec(),
        [valid_frame.clone(), vec![0]].concat(),
    ];
    let mut wrong_tag = valid_frame.clone();
    wrong_tag[3] ^= 1;
    garbage.push(wrong_tag);
    for (seed, len) in [(1u8, 17usize), (2, 300), (3, 70_000)] {
        garbage.push(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect(),
        );
    }
    for frame in garbage {
        client.send(frame);
        assert!(matches!(expect_refusal(&client), Refusal::Malformed(_)));
    }
    client.send(vec![0u8; MAX_FRAME_BYTES + 1]);
    assert!(matches!(expect_refusal(&client), Refusal::Oversize { .. }));
    client.send(hello_frame([0; 32]));
    assert!(matches!(expect_refusal(&client), Refusal::OutOfOrder(_)));

    // Still serving: the valid request gets a signed receipt.
    client.send(valid_frame.clone());
    match client.recv() {
        EnforcerFrame::Receipt { seq, receipt } => {
            assert_eq!(seq, 1);
            let key = kernel_core::public_key_from_bytes(&handshake.enforcer_key).unwrap();
            let body = kernel_core::verify_receipt_signature(&receipt, &key).unwrap();
            assert_eq!(body.body().request_digest, valid.digest());
            assert_eq!(body.body().decision, Decision::Allow);
        }
        other => panic!("expected a receipt, got {other:?}"),
    }
    // Replaying it, or any older sequence number, is refused.
    client.send(valid_frame);
    assert!(matches!(expect_refusal(&client), Refusal::Replayed(1)));
    // A request for another session is refused.
    let mut other = handshake.clone();
    other.session.0[0] ^= 1;
    client.send(authorize_frame(&request(
        other.session,
        2,
        kernel_core::Action::file_read(f.ws("a")),
    )));
    assert!(matches!(expect_refusal(&client), Refusal::WrongSession));
}

type Tamper = fn(&mut ReceiptBody);

/// Runs a fake enforcer in this process that announces `announced` in a
/// correctly signed handshake but signs receipts with `signer`, optionally
/// tampering with the body first.
fn fake_enforcer(
    announced: SigningKey,
    signer: SigningKey,
    tamper: Tamper,
) -> (String, std::thread::JoinHandle<()>) {
    let (server, name) = ipc_channel::ipc::IpcOneShotServer::<EnforcerEnds>::new().unwrap();
    let handle = std::thread::spawn(move || {
        let (_, (requests, replies)) = server.accept().unwrap();
        let handshake = Handshake {
            protocol: PROTOCOL_VERSION,
            session: kernel_core::SessionId([5; 16]),
            enforcer_key: announced.verifying_key().to_bytes(),
            policy_digest: Digest([1; 32]),
            workspace: "/".into(),
            confinement: kernel_core::Confinement::Unconfined,
            permit_ttl_ms: 30_000,
            handoff: None,
            shadow: false,
        };
        while let Ok(bytes) = requests.recv() {
            let reply = match decode_client_frame(&bytes).unwrap() {
                ClientFrame::Hello { challenge, .. } => EnforcerFrame::Hello {
                    signature: handshake.sign(&announced, &challenge),
                    handshake: handshake.clone(),
                },
                ClientFrame::Authorize { request } | ClientFrame::Broker { request, .. } => {
                    let request = EncodedRequest::decode(&request).unwrap();
                    let now = kernel_core::now_ms();
                    let mut body = ReceiptBody {
                        session: handshake.session,
                        seq: request.request().seq,
                        request_digest: request.digest(),
                        decision: Decision::Allow,
                        policies: vec!["fake".into()],
                        reasons: vec![],
                        policy_digest: handshake.policy_digest,
                        log_index: 0,
                        issued_at_ms: now,
                        expires_at_ms: now + 30_000,
                    };
                    tamper(&mut body);
                    EnforcerFrame::Receipt {
                        seq: request.request().seq,
                        receipt: sign_receipt(&signer, &body),
                    }
                }
            };
            if replies.send(encode_enforcer_frame(&reply)).is_err() {
                break;
            }
        }
    });
    (name, handle)
}

#[test]
fn receipts_from_a_fake_enforcer_are_refused_and_nothing_runs() {
    let f = fixture(TOUCH_POLICY);
    let real = SigningKey::from_bytes(&[1; 32]);
    let impostor = SigningKey::from_bytes(&[2; 32]);
    let cases: [(SigningKey, Tamper, &str); 4] = [
        (impostor.clone(), |_| {}, "signed by another key"),
        (
            real.clone(),
            |b| b.request_digest = Digest([0; 32]),
            "for another request",
        ),
        (
            real.clone(),
            |b| b.policy_digest = Digest([0; 32]),
            "for another policy",
        ),
        (real.clone(), |b| b.expires_at_ms = 1, "expired"),
    ];
    for (signer, tamper, what) in cases {
        let (name, fake) = fake_enforcer(real.clone(), signer, tamper);
        // This client pins the policy digest the fake announces, so a
        // receipt naming another policy set is refused.
        let config = ClientConfig::default().pin_policy_digest(Digest([1; 32]));
        let kernel = Kernel::connect(&name, config).unwrap();
        let file = format!("fake-{}.txt", what.replace(' ', "-"));
        let result = kernel.exec(touch(&f, &file));
        match result {
            Err(EffectError::Denied(Denial::Verification(e))) => {
                let expected = match what {
                    "signed by another key" => matches!(e, VerifyError::BadSignature),
                    "for another request" => matches!(e, VerifyError::WrongRequest),
                    "for another policy" => matches!(e, VerifyError::WrongPolicy { .. }),
                    _ => matches!(e, VerifyError::Expired | VerifyError::BadTimes),
                };
                assert!(expected, "{what}: unexpected error {e:?}");
            }
            other => panic!("{what}: expected a verification denial, got {other:?}"),
        }
        assert!(
            !f.workspace.join(&file).exists(),
            "{what}: the effect happened"
        );
        drop(kernel);
        fake.join().unwrap();
    }
    // Control: an honest fake (right key, untouched body) does yield a
    // permit, so the refusals above are caused by the tampering.
    let (name, fake) = fake_enforcer(real.clone(), real, |_| {});
    let kernel = Kernel::connect(&name, ClientConfig::default()).unwrap();
    kernel.exec(touch(&f, "honest.txt")).unwrap();
    assert!(f.workspace.join("honest.txt").exists());
    drop(kernel);
    fake.join().unwrap();
}
