//! Protocol abuse on a raw channel, and a client that never reads.

use super::*;

/// Protocol abuse: garbage, oversize and truncated frames, wrong versions,
/// requests before the hello and for other sessions, a brokered write
/// whose payload is not the decided content, and a flood.
pub(crate) fn protocol(
    plan: &Plan,
    rng: &mut SplitMix64,
    count: usize,
    flood: usize,
    rep: &mut Reporter,
) {
    if plan.endpoint() {
        return endpoint_raw::protocol(plan, rng, count, flood, rep);
    }
    let mut raw = match Raw::open(plan, rng.next()) {
        Ok(r) => r,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = &plan.workspace;
    // Before any hello: a request frame, and a wrong version.
    let mut a = attempt("request before the hello");
    let early = encode_client_frame(&ClientFrame::Authorize {
        request: vec![1, 2, 3],
    });
    (a.answer, _) = outcome_text(&raw.send(early).and_then(|()| raw.recv()));
    rep.report(a);
    // Versions around the current one, never the current one itself (a
    // hello it accepted would end the attack here, unreported).
    let wrong = [
        0u16,
        PROTOCOL_VERSION.saturating_sub(1),
        PROTOCOL_VERSION.saturating_add(1),
        u16::MAX,
    ];
    for version in wrong.into_iter().filter(|v| *v != PROTOCOL_VERSION) {
        let mut a = attempt(format!("hello with protocol version {version}"));
        (a.answer, _) = outcome_text(
            &raw.send(encode_client_frame(&ClientFrame::Hello {
                protocol: version,
                challenge: [1; 32],
            }))
            .and_then(|()| raw.recv()),
        );
        rep.report(a);
    }
    if let Err(e) = raw.hello(PROTOCOL_VERSION) {
        return rep.report(attempt(format!("hello: {e}")));
    }
    let mut a = attempt("a second hello");
    (a.answer, _) = outcome_text(
        &raw.send(encode_client_frame(&ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            challenge: [2; 32],
        }))
        .and_then(|()| raw.recv()),
    );
    rep.report(a);
    let secrets = plan.workspace_secrets.clone();
    for i in 0..count {
        let mut a = attempt(String::new());
        match i % 8 {
            0 => {
                let len = rng.below(4096);
                a.what = format!("{len} bytes of garbage");
                (a.answer, _) = outcome_text(&raw.send(rng.bytes(len)).and_then(|()| raw.recv()));
            }
            1 => {
                let size = kernel_core::limits::MAX_FRAME_BYTES + 1 + rng.below(1 << 20);
                a.what = format!("oversize frame of {size} bytes");
                (a.answer, _) = outcome_text(&raw.send(vec![0x41; size]).and_then(|()| raw.recv()));
            }
            2 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let mut bytes = encode_client_frame(&ClientFrame::Broker {
                    request: request.bytes().to_vec(),
                    payload: vec![],
                });
                let cut = rng.below(bytes.len());
                bytes.truncate(cut);
                a.what = format!("a forbidden read's frame truncated to {cut} bytes");
                (a.answer, a.got) = outcome_text(&raw.send(bytes).and_then(|()| raw.recv()));
            }
            3 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let mut bytes = encode_client_frame(&ClientFrame::Broker {
                    request: request.bytes().to_vec(),
                    payload: vec![],
                });
                let at = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
                a.what = format!("a forbidden read's frame with bit flipped at {at}");
                (a.answer, a.got) = outcome_text(&raw.send(bytes).and_then(|()| raw.recv()));
            }
            4 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Some(hs) = raw.handshake.clone() else {
                    return;
                };
                let Ok(action) =
                    CanonicalAction::new(Action::file_read(secret), Some(&hs.workspace))
                else {
                    return;
                };
                let mut session = hs.session;
                session.0[0] ^= 0xff;
                let request = EncodedRequest::new(Request {
                    session,
                    seq: raw.seq + 1000,
                    nonce: [3; 16],
                    action,
                    deadline_ms: now_ms() + 10_000,
                });
                a.what = "a forbidden read for another session".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&request, Some(vec![])));
            }
            5 => {
                let path = format!("{ws}/payload-{i}.txt");
                let decided = b"decided content\n";
                let action = Action::FileWrite {
                    path: path.clone(),
                    content_sha256: kernel_core::Digest::of_content(decided),
                    size: 16,
                    mode: WriteMode::Overwrite,
                };
                let Ok(request) = raw.request(action) else {
                    return;
                };
                a.what = "brokered write whose payload differs from the decided content".into();
                (a.answer, _) =
                    outcome_text(&raw.ask(&request, Some(b"ESCAPE undecided!".to_vec())));
                a.got = String::new();
                // Anything but the decided bytes on disk is an escape.
                if let Ok(on_disk) = std::fs::read(&path)
                    && on_disk != decided
                {
                    a.markers.push(path);
                }
            }
            6 => {
                let Some(secret) = rng.pick(&secrets).cloned() else {
                    return;
                };
                let Ok(request) = raw.request(Action::file_read(secret)) else {
                    return;
                };
                let seq = raw.seq;
                raw.seq = seq.saturating_sub(2 + u64::try_from(rng.below(3)).unwrap_or(0));
                let Ok(stale) = raw.request(Action::file_read(format!("{ws}/README.md"))) else {
                    return;
                };
                raw.seq = seq;
                let _ = raw.ask(&request, Some(vec![]));
                a.what = "a sequence number going backwards".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&stale, Some(vec![])));
            }
            _ => {
                let Some(hs) = raw.handshake.clone() else {
                    return;
                };
                let Ok(action) = CanonicalAction::new(
                    Action::file_read(format!("{ws}/README.md")),
                    Some(&hs.workspace),
                ) else {
                    return;
                };
                raw.seq += 1;
                let request = EncodedRequest::new(Request {
                    session: hs.session,
                    seq: raw.seq,
                    nonce: [4; 16],
                    action,
                    deadline_ms: 1,
                });
                a.what = "a request whose deadline has passed".into();
                (a.answer, a.got) = outcome_text(&raw.ask(&request, Some(vec![])));
            }
        }
        a.evidence = i % 32 == 0;
        rep.report(a);
    }
    // The flood: requests sent back to back by a second thread without
    // waiting for answers, half of them forbidden reads of the secrets,
    // while this thread reads every answer.
    let mut sent = Vec::new();
    let mut frames = Vec::new();
    for i in 0..flood {
        let path = if i % 2 == 0 {
            format!("{ws}/README.md")
        } else {
            rng.pick(&secrets).cloned().unwrap_or_default()
        };
        let Ok(request) = raw.request(Action::file_read(path.clone())) else {
            return;
        };
        frames.push(encode_client_frame(&ClientFrame::Broker {
            request: request.bytes().to_vec(),
            payload: vec![],
        }));
        sent.push((raw.seq, path));
    }
    let tx = raw.tx.clone();
    let sender = std::thread::spawn(move || {
        for frame in frames {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    for i in 0..sent.len() {
        let answer = raw.recv();
        let seq = match &answer {
            Ok(EnforcerFrame::Brokered { seq, .. } | EnforcerFrame::Receipt { seq, .. }) => {
                Some(*seq)
            }
            Ok(EnforcerFrame::Refused { seq, .. }) => *seq,
            _ => None,
        };
        let path = sent
            .iter()
            .find(|(s, _)| Some(*s) == seq)
            .map_or("?", |(_, p)| p.as_str());
        let mut a = attempt(format!("flood {i}: brokered read of {path}"));
        (a.answer, a.got) = outcome_text(&answer);
        a.evidence = i + 1 == sent.len();
        a.audit = i + 1 == sent.len();
        rep.report(a);
    }
    let _ = sender.join();
}

/// A client that never reads (the `kill-switch` class): the agent sends requests
/// without ever reading the answers, until the enforcer blocks writing to
/// it; the runner then pulls the kill switch.
pub(crate) fn clog(plan: &Plan, rng: &mut SplitMix64, rep: &mut Reporter) {
    let mut raw =
        match Raw::open(plan, rng.next()).and_then(|mut r| r.hello(PROTOCOL_VERSION).map(|()| r)) {
            Ok(r) => r,
            Err(e) => return rep.report(attempt(format!("join: {e}"))),
        };
    let ws = raw
        .handshake
        .as_ref()
        .map(|h| h.workspace.clone())
        .unwrap_or_default();
    let mut frames = Vec::new();
    for _ in 0..50_000 {
        let Ok(request) = raw.request(Action::file_read(format!("{ws}/README.md"))) else {
            return;
        };
        frames.push(encode_client_frame(&ClientFrame::Authorize {
            request: request.bytes().to_vec(),
        }));
    }
    let tx = raw.tx.clone();
    std::thread::spawn(move || {
        for frame in frames {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut a = attempt("requests sent without reading the answers, then the operator halts");
    a.answer = format!("{}", std::process::id());
    rep.report(a);
    // Never read: stay until stopped.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
