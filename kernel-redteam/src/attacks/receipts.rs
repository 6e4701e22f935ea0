//! Forged and replayed receipts, across requests, sessions and restarts.

use super::*;

/// Forged and self-signed receipts, a receipt for A used for B, replay
/// across requests, sessions and enforcer restarts. Genuine receipts and
/// request bytes are kept in the scratch directory for the next session.
pub(crate) fn receipts(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    if plan.endpoint() {
        return endpoint_raw::receipts(plan, rng, count, rep);
    }
    let mut raw =
        match Raw::open(plan, rng.next()).and_then(|mut r| r.hello(PROTOCOL_VERSION).map(|()| r)) {
            Ok(r) => r,
            Err(e) => return rep.report(attempt(format!("join: {e}"))),
        };
    let ws = &plan.workspace;
    let append = format!("{ws}/append.log");
    let store = format!("{}/saved-receipts.json", plan.scratch);
    // Earlier sessions' receipts and requests (same key: the enforcer was
    // restarted with it).
    let saved: Vec<(Vec<u8>, SignedReceipt)> = std::fs::read(&store)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut keep: Vec<(Vec<u8>, SignedReceipt)> = Vec::new();
    let forger = SigningKey::from_bytes(&{
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&rng.bytes(32));
        seed
    });
    for i in 0..count {
        let line = format!("line {i}\n");
        let len_before = std::fs::metadata(&append).map_or(0, |m| m.len());
        // A: an allowed append; B: a forbidden read.
        let a_action = Action::FileWrite {
            path: append.clone(),
            content_sha256: kernel_core::Digest::of_content(line.as_bytes()),
            size: u64::try_from(line.len()).unwrap_or(0),
            mode: WriteMode::Append,
        };
        let secret = rng
            .pick(&plan.workspace_secrets)
            .cloned()
            .unwrap_or_default();
        let (Ok(req_a), Ok(req_b)) = (
            raw.request(a_action),
            raw.request(Action::file_read(secret.clone())),
        ) else {
            return rep.report(attempt("requests could not be built"));
        };
        let frame_a = raw.ask(&req_a, Some(line.as_bytes().to_vec()));
        let frame_b = raw.ask(&req_b, None);
        let (Some(ra), Some(rb)) = (
            frame_a.as_ref().ok().and_then(receipt_of),
            frame_b.as_ref().ok().and_then(receipt_of),
        ) else {
            return rep.report(attempt(format!("no receipts: {frame_a:?} {frame_b:?}")));
        };
        let len_after = len_before + u64::try_from(line.len()).unwrap_or(0);
        keep.push((req_a.bytes().to_vec(), ra.clone()));
        let Ok(body_b) = decode_receipt_body_unverified(&rb.body) else {
            return;
        };
        let mut attacks: Vec<(String, SignedReceipt, EncodedRequest)> = Vec::new();
        // Self-signed: a whole allow receipt for B under the forger's key.
        let forged_body = ReceiptBody {
            decision: Decision::Allow,
            ..body_b.clone()
        };
        attacks.push((
            "self-signed allow for B".into(),
            sign_receipt(&forger, &forged_body),
            req_b.clone(),
        ));
        // The genuine deny for B, its decision flipped, signature kept.
        let flipped = sign_receipt(&forger, &forged_body);
        attacks.push((
            "B's deny flipped to allow, enforcer signature kept".into(),
            SignedReceipt {
                body: flipped.body,
                signature: rb.signature,
            },
            req_b.clone(),
        ));
        // A's genuine allow presented as the answer to B.
        attacks.push(("A's allow receipt for B".into(), ra.clone(), req_b.clone()));
        // Signature malleability: s + l (not canonical; verify_strict refuses).
        let mut malleable = ra.clone();
        add_group_order(&mut malleable.signature);
        if let Ok(req_a2) = raw.request(Action::file_read(format!("{ws}/README.md"))) {
            attacks.push((
                "A's allow replayed for a later request".into(),
                ra.clone(),
                req_a2,
            ));
        }
        attacks.push((
            "non-canonical signature (s + l) on A's receipt for B".into(),
            malleable,
            req_b.clone(),
        ));
        // The forger signs with the enforcer's public key bytes as "its" key:
        // substituting the trust anchor changes nothing for the verifier.
        let substituted = SignedReceipt {
            body: rb.body.clone(),
            signature: forger.sign(&rb.body).to_bytes(),
        };
        attacks.push((
            "B's deny re-signed by a substituted key".into(),
            substituted,
            req_b.clone(),
        ));
        // Earlier sessions' allow receipts, for this session's B.
        if let Some((_, old)) = rng.pick(&saved) {
            attacks.push((
                "an earlier session's allow for B".into(),
                old.clone(),
                req_b.clone(),
            ));
        }
        let Some((what, receipt, request)) = rng.pick(&attacks).cloned() else {
            return;
        };
        let (bad, answer) = permits(&raw, &receipt, &request);
        let mut att = attempt(what);
        att.bad_permits = bad;
        att.answer = answer;
        att.length = Some((append.clone(), len_after));
        rep.report(att);
        // Replays at the enforcer: A's exact frame again (same session and
        // sequence number), and an earlier session's request bytes. The
        // append must not happen twice.
        let replay = if i % 2 == 0 || saved.is_empty() {
            (
                "A's request frame replayed in the same session".to_owned(),
                req_a.bytes().to_vec(),
            )
        } else {
            let old = rng.pick(&saved).map(|(r, _)| r.clone()).unwrap_or_default();
            (
                "an earlier session's request replayed after a restart".to_owned(),
                old,
            )
        };
        let sent = raw.send(encode_client_frame(&ClientFrame::Broker {
            request: replay.1,
            payload: line.into_bytes(),
        }));
        let answer = sent.and_then(|()| raw.recv());
        let mut att = attempt(replay.0);
        (att.answer, att.got) = outcome_text(&answer);
        att.length = Some((append.clone(), len_after));
        rep.report(att);
    }
    let _ = std::fs::write(&store, serde_json::to_vec(&keep).unwrap_or_default());
}

/// Adds the group order l to the little-endian scalar half of `sig`.
fn add_group_order(sig: &mut [u8; 64]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig.iter_mut().skip(32).zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
}
