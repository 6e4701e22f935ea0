//! Trust-anchor substitution, played against the client library: a fake
//! enforcer answers a client.

use crate::modes::Mode;
use crate::report::{Judged, Progress};
use crate::rng;
use crate::world::World;
use std::time::Duration;

/// Trust-anchor substitution, played against the client: a fake enforcer
/// answers a client that pinned the real key, announcing its own key, or
/// the real key with its own signature, and then hands out allow receipts
/// signed with its own key. The client must never hold a permit.
pub(crate) fn trust_anchor(
    world: &World,
    seed: u64,
    count: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    use ed25519_dalek::SigningKey;
    use ipc_channel::ipc::IpcOneShotServer;
    use kernel_client::{ClientConfig, EnforcerEnds, Kernel};
    use kernel_core::{
        ClientFrame, EnforcerFrame, Handshake, decode_client_frame, encode_enforcer_frame,
    };
    let real = kernel_core::parse_public_key(&world.public_key).map_err(|e| e.to_string())?;
    let mut rng = rng::SplitMix64::new(seed);
    let mut progress = Progress::new("trust-anchor", Mode::Supervised, count);
    for i in 0..count {
        let mut seed_bytes = [0u8; 32];
        seed_bytes.copy_from_slice(&rng.bytes(32));
        let fake = SigningKey::from_bytes(&seed_bytes);
        let mode = i % 3;
        let (server, name) = IpcOneShotServer::<EnforcerEnds>::new().map_err(|e| e.to_string())?;
        let announced = if mode == 1 {
            real.to_bytes()
        } else {
            fake.verifying_key().to_bytes()
        };
        let pinned = mode != 2;
        let fake_thread = std::thread::spawn(move || {
            let Ok((_, (requests, replies))) = server.accept() else {
                return;
            };
            let Ok(hello) = requests.recv() else { return };
            let Ok(ClientFrame::Hello { challenge, .. }) = decode_client_frame(&hello) else {
                return;
            };
            let handshake = Handshake {
                protocol: kernel_core::PROTOCOL_VERSION,
                session: kernel_core::SessionId([7; 16]),
                enforcer_key: announced,
                policy_digest: kernel_core::Digest([0; 32]),
                workspace: "/".into(),
                confinement: kernel_core::Confinement::Unconfined,
                permit_ttl_ms: 60_000,
                handoff: None,
            };
            let signature = handshake.sign(&fake, &challenge);
            let _ = replies.send(encode_enforcer_frame(&EnforcerFrame::Hello {
                handshake,
                signature,
            }));
            // Allow everything, signed by the fake key.
            while let Ok(frame) = requests.recv() {
                let Ok(ClientFrame::Authorize { request }) = decode_client_frame(&frame) else {
                    continue;
                };
                let Ok(request) = kernel_core::EncodedRequest::decode(&request) else {
                    continue;
                };
                let body = kernel_core::ReceiptBody {
                    session: request.request().session,
                    seq: request.request().seq,
                    request_digest: request.digest(),
                    decision: kernel_core::Decision::Allow,
                    policies: vec!["fake".into()],
                    reasons: vec![],
                    policy_digest: kernel_core::Digest([0; 32]),
                    log_index: 0,
                    issued_at_ms: 0,
                    expires_at_ms: u64::MAX,
                };
                let receipt = kernel_core::sign_receipt(&fake, &body);
                let seq = request.request().seq;
                let _ = replies.send(encode_enforcer_frame(&EnforcerFrame::Receipt {
                    seq,
                    receipt,
                }));
            }
        });
        let mut config = ClientConfig::default()
            .timeout(Duration::from_secs(2))
            .startup_timeout(Duration::from_secs(5));
        if pinned {
            config = config.pin_public_key(real);
        }
        let joined = Kernel::connect(&name, config);
        let what = match mode {
            0 => "a fake enforcer announcing its own key to a client that pinned the real one",
            1 => "a fake enforcer announcing the real key, signing with its own",
            _ => {
                "a fake enforcer with its own key, unpinned client: permits are real only for that enforcer"
            }
        };
        let (answer, held) = match &joined {
            Ok(kernel) => {
                match kernel.authorize(kernel_core::Action::file_read(world.plan.key.clone())) {
                    Ok(permit) => (
                        "joined; permit issued".to_owned(),
                        usize::from(
                            permit.action().action()
                                == &kernel_core::Action::file_read(world.plan.key.clone()),
                        ),
                    ),
                    Err(e) => (format!("joined; {e}"), 0),
                }
            }
            Err(e) => (e.to_string(), 0),
        };
        drop(joined);
        let _ = fake_thread.join();
        // Pinned clients must hold nothing; an unpinned client that chose
        // to trust an unknown enforcer holds a permit from that enforcer
        // only (that is what pinning is for), which the world never sees.
        let mut effects = Vec::new();
        if pinned && held > 0 {
            effects.push("a pinned client holds a permit from a fake enforcer".into());
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        progress.step(escaped);
        results.push(Judged {
            class: "trust-anchor".into(),
            mode: Mode::Supervised,
            what: what.into(),
            answer,
            escaped,
            effects,
            limits: Vec::new(),
        });
    }
    progress.finish();
    Ok(())
}
