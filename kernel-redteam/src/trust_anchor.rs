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
            crate::fake::enforcer(&requests, &replies, &fake, announced);
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

/// The embedded client's trust anchor: `Kernel::spawn`, with the real key
/// pinned, starts a fake enforcer (this binary as `serve`), which
/// announces its own key, or the real public key while signing with its
/// own. The client must not start, and must never hold a permit.
pub(crate) fn embedded(
    world: &World,
    count: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    use kernel_client::{Kernel, SpawnConfig};
    let real = kernel_core::parse_public_key(&world.public_key).map_err(|e| e.to_string())?;
    let mut progress = Progress::new("trust-anchor", Mode::Embedded, count);
    for i in 0..count {
        let mode = i % 2;
        // The fake reads how to behave from its workspace's name, and the
        // real public key (only that) from the file it is told to protect.
        let ws = world.root.join("run").join(format!("trust-mode-{mode}"));
        std::fs::create_dir_all(&ws).map_err(|e| e.to_string())?;
        let config = SpawnConfig::new(&world.plan.policy, &ws, world.root.join("run/trust.log"))
            .enforcer(&world.plan.agent_binary)
            .protect(world.root.join("state/kernel.pub"))
            .pin_public_key(real)
            .startup_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(2));
        let spawned = Kernel::spawn(config);
        let secret = world.plan.key.clone();
        let (answer, held) = match &spawned {
            Ok(kernel) => match kernel.authorize(kernel_core::Action::file_read(secret)) {
                Ok(_) => ("started; permit issued".to_owned(), true),
                Err(e) => (format!("started; {e}"), false),
            },
            Err(e) => (e.to_string(), false),
        };
        drop(spawned);
        let mut effects = Vec::new();
        if held {
            effects.push("a pinned embedded client holds a permit from a fake enforcer".into());
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        progress.step(escaped);
        results.push(Judged {
            class: "trust-anchor".into(),
            mode: Mode::Embedded,
            what: if mode == 0 {
                "Kernel::spawn starts a fake enforcer announcing its own key; the real one pinned"
                    .into()
            } else {
                "Kernel::spawn starts a fake enforcer announcing the real key, signing with its own"
                    .into()
            },
            answer,
            escaped,
            effects,
            limits: Vec::new(),
        });
    }
    progress.finish();
    Ok(())
}

/// The endpoint's callers with the real key pinned (`ask --pubkey`, and
/// the library's `ask` with a pinned key) against a fake endpoint that
/// signs with its own key: they must not take its answer.
pub(crate) fn endpoint(
    world: &World,
    count: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let mut progress = Progress::new("trust-anchor", Mode::Endpoint, count);
    let real = kernel_core::parse_public_key(&world.public_key).map_err(|e| e.to_string())?;
    let pubkey = world.root.join("state/kernel.pub");
    for i in 0..count {
        let socket = world.root.join("run").join(format!("trust-{i}.sock"));
        let socket_text = socket.to_string_lossy().into_owned();
        let (fake, said) = crate::gates::start_fake(world, &["fake-endpoint", &socket_text])?;
        let readme = format!("{}/README.md", world.plan.workspace);
        let (what, allowed, answer) = if i % 2 == 0 {
            let document =
                format!(r#"{{"version":1,"action":{{"kind":"file_read","path":{readme:?}}}}}"#);
            let verdict = crate::gates::run_gate(
                world,
                &[
                    "ask",
                    "--socket",
                    &socket_text,
                    "--pubkey",
                    &pubkey.to_string_lossy(),
                    "--action-json",
                    "-",
                ],
                document.as_bytes(),
            );
            (
                "`ask --pubkey` against a fake endpoint",
                verdict.allowed(),
                format!("{said}; exit {:?}: {}", verdict.code, verdict.stdout),
            )
        } else {
            let options = kernel_enforcer::gateways::endpoint::AskOptions {
                socket: socket.clone(),
                pinned_key: real,
                server_uid: None,
                timeout: Duration::from_secs(5),
            };
            let asked = kernel_enforcer::gateways::endpoint::canonicalize(
                kernel_core::Action::file_read(readme),
                None,
            )
            .map_err(|e| e.to_string())
            .and_then(|a| {
                kernel_enforcer::gateways::endpoint::ask(&options, a, None)
                    .map_err(|e| e.to_string())
            });
            let allowed =
                matches!(&asked, Ok(a) if matches!(a.verified, kernel_core::Verified::Permit(_)));
            (
                "the library's pinned `ask` against a fake endpoint",
                allowed,
                format!("{said}; {:?}", asked.map(|a| format!("{:?}", a.verified))),
            )
        };
        crate::gates::end_fake(fake);
        let _ = std::fs::remove_file(&socket);
        let mut effects = Vec::new();
        if allowed {
            effects.push("a caller that pinned the real key took a fake endpoint's allow".into());
        }
        let escaped = !effects.is_empty();
        progress.step(escaped);
        results.push(Judged {
            class: "trust-anchor".into(),
            mode: Mode::Endpoint,
            what: what.into(),
            answer: answer.chars().take(240).collect(),
            escaped,
            effects,
            limits: Vec::new(),
        });
    }
    progress.finish();
    Ok(())
}
