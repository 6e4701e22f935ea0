//! The decision endpoint (`kernel-enforcer listen`) driven by hand: any
//! bytes, any frame, on its Unix socket. Protocol abuse and receipt
//! replays in endpoint mode.

use super::*;
use std::io::Read as _;
use std::os::unix::net::UnixStream;

/// One connection to the endpoint.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: UnixStream,
    pub(crate) handshake: Option<Handshake>,
    pub(crate) key: Option<VerifyingKey>,
    /// The sequence number the endpoint handed out.
    pub(crate) seq: u64,
}

fn frame_bytes(frame: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(frame.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(frame);
    bytes
}

impl Conn {
    pub(crate) fn open(plan: &Plan) -> Result<Self, String> {
        let stream = UnixStream::connect(&plan.endpoint).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            handshake: None,
            key: None,
            seq: 0,
        })
    }

    /// Writes raw bytes.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| e.to_string())
    }

    /// Writes one length-prefixed frame.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.raw(&frame_bytes(frame))
    }

    /// Reads one frame.
    pub(crate) fn recv(&mut self) -> Result<EnforcerFrame, String> {
        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .map_err(|e| format!("closed: {e}"))?;
        let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
        if length > 64 << 20 {
            return Err(format!("a frame of {length} bytes"));
        }
        let mut frame = vec![0u8; length];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| e.to_string())?;
        decode_enforcer_frame(&frame).map_err(|e| e.to_string())
    }

    /// The hello, verified; then the sequence number.
    pub(crate) fn hello(&mut self, protocol: u16) -> Result<(), String> {
        let challenge = [5u8; 32];
        self.send(&encode_client_frame(&ClientFrame::Hello {
            protocol,
            challenge,
        }))?;
        match self.recv()? {
            EnforcerFrame::Hello {
                handshake,
                signature,
            } => {
                let key = kernel_core::public_key_from_bytes(&handshake.enforcer_key)
                    .map_err(|e| e.to_string())?;
                handshake
                    .verify(&key, &challenge, &signature)
                    .map_err(|e| e.to_string())?;
                let mut seq = [0u8; 8];
                self.stream
                    .read_exact(&mut seq)
                    .map_err(|e| e.to_string())?;
                self.seq = u64::from_be_bytes(seq);
                self.key = Some(key);
                self.handshake = Some(handshake);
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// A request for `action` with the handed-out sequence number (or
    /// `seq` if given).
    pub(crate) fn request(
        &self,
        action: Action,
        seq: Option<u64>,
        deadline_ms: u64,
    ) -> Result<EncodedRequest, String> {
        let hs = self.handshake.as_ref().ok_or("no handshake")?;
        let action =
            CanonicalAction::new(action, Some(&hs.workspace)).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&now_ms().to_le_bytes().repeat(2));
        Ok(EncodedRequest::new(Request {
            session: hs.session,
            seq: seq.unwrap_or(self.seq),
            nonce,
            action,
            deadline_ms,
        }))
    }

    /// Sends a request frame and reads the answer.
    pub(crate) fn ask(
        &mut self,
        request: &EncodedRequest,
        payload: Option<Vec<u8>>,
    ) -> Result<EnforcerFrame, String> {
        let frame = match payload {
            Some(payload) => ClientFrame::Broker {
                request: request.bytes().to_vec(),
                payload,
            },
            None => ClientFrame::Authorize {
                request: request.bytes().to_vec(),
            },
        };
        self.send(&encode_client_frame(&frame))?;
        self.recv()
    }
}

/// A connection past its hello.
fn greeted(plan: &Plan) -> Result<Conn, String> {
    let mut conn = Conn::open(plan)?;
    conn.hello(PROTOCOL_VERSION)?;
    Ok(conn)
}

fn deadline() -> u64 {
    now_ms() + 10_000
}

/// Protocol abuse on the endpoint: garbage, lengths over the limit,
/// truncated and bit-flipped frames, wrong versions, requests before the
/// hello, for another session, with another sequence number or a past
/// deadline, a second request on one connection, a brokered write whose
/// payload is not the decided content, a client holding the turn; then a
/// flood of connections past the endpoint's limit, after which a plain
/// question must still be answered.
pub(crate) fn protocol(
    plan: &Plan,
    rng: &mut SplitMix64,
    count: usize,
    flood: usize,
    rep: &mut Reporter,
) {
    let secrets = plan.workspace_secrets.clone();
    let ws = plan.workspace.clone();
    for i in 0..count {
        let mut a = attempt(String::new());
        let secret = rng.pick(&secrets).cloned().unwrap_or_default();
        let result: Result<(String, String), String> = (|| match i % 11 {
            0 => {
                let len = rng.below(4096);
                a.what = format!("{len} bytes of garbage instead of a hello");
                let mut c = Conn::open(plan)?;
                c.raw(&rng.bytes(len))?;
                Ok(outcome_text(&c.recv()))
            }
            1 => {
                a.what = "a frame length over the limit".into();
                let mut c = Conn::open(plan)?;
                c.raw(&u32::MAX.to_be_bytes())?;
                c.raw(&rng.bytes(64))?;
                Ok(outcome_text(&c.recv()))
            }
            2 => {
                let version = [0u16, 2, 0xffff].get(rng.below(3)).copied().unwrap_or(0);
                a.what = format!("hello with protocol version {version}");
                let mut c = Conn::open(plan)?;
                c.hello(version).map(|()| ("greeted".into(), String::new()))
            }
            3 => {
                a.what = "a request before the hello".into();
                let mut c = Conn::open(plan)?;
                c.send(&encode_client_frame(&ClientFrame::Authorize {
                    request: vec![1, 2, 3],
                }))?;
                Ok(outcome_text(&c.recv()))
            }
            4 => {
                let mut c = greeted(plan)?;
                let request = c.request(Action::file_read(secret.clone()), None, deadline())?;
                let mut bytes = encode_client_frame(&ClientFrame::Broker {
                    request: request.bytes().to_vec(),
                    payload: vec![],
                });
                let cut = rng.below(bytes.len());
                if rng.below(2) == 0 {
                    bytes.truncate(cut);
                    a.what = format!("a forbidden read's frame truncated to {cut} bytes");
                } else {
                    if let Some(b) = bytes.get_mut(cut) {
                        *b ^= 1 << rng.below(8);
                    }
                    a.what = format!("a forbidden read's frame with a bit flipped at {cut}");
                }
                c.send(&bytes)?;
                Ok(outcome_text(&c.recv()))
            }
            5 => {
                a.what = "a forbidden read for another session".into();
                let mut c = greeted(plan)?;
                let hs = c.handshake.clone().ok_or("no handshake")?;
                let action =
                    CanonicalAction::new(Action::file_read(secret.clone()), Some(&hs.workspace))
                        .map_err(|e| e.to_string())?;
                let mut session = hs.session;
                session.0[0] ^= 0xff;
                let request = EncodedRequest::new(Request {
                    session,
                    seq: c.seq,
                    nonce: [3; 16],
                    action,
                    deadline_ms: deadline(),
                });
                Ok(outcome_text(&c.ask(&request, Some(vec![]))))
            }
            6 => {
                let mut c = greeted(plan)?;
                let other = if rng.below(2) == 0 {
                    c.seq.saturating_sub(1)
                } else {
                    c.seq + 1
                };
                a.what = format!(
                    "a brokered read with sequence number {other}, not the {} handed out",
                    c.seq
                );
                let request =
                    c.request(Action::file_read(secret.clone()), Some(other), deadline())?;
                Ok(outcome_text(&c.ask(&request, Some(vec![]))))
            }
            7 => {
                a.what = "a request whose deadline has passed".into();
                let mut c = greeted(plan)?;
                let request = c.request(Action::file_read(format!("{ws}/README.md")), None, 1)?;
                Ok(outcome_text(&c.ask(&request, Some(vec![]))))
            }
            8 => {
                a.what =
                    "a second request on one connection: an allowed read, then a forbidden one"
                        .into();
                let mut c = greeted(plan)?;
                let first = c.request(
                    Action::file_read(format!("{ws}/README.md")),
                    None,
                    deadline(),
                )?;
                let _ = c.ask(&first, Some(vec![]));
                let second = c.request(
                    Action::file_read(secret.clone()),
                    Some(c.seq + 1),
                    deadline(),
                )?;
                Ok(outcome_text(&c.ask(&second, Some(vec![]))))
            }
            9 => {
                let path = format!("{ws}/payload-endpoint-{i}.txt");
                let decided = b"decided content\n";
                let action = Action::FileWrite {
                    path: path.clone(),
                    content_sha256: kernel_core::Digest::of_content(decided),
                    size: 16,
                    mode: WriteMode::Overwrite,
                };
                a.what = "a brokered write whose payload differs from the decided content".into();
                let mut c = greeted(plan)?;
                let request = c.request(action, None, deadline())?;
                let answer = outcome_text(&c.ask(&request, Some(b"ESCAPE undecided!".to_vec())));
                if let Ok(on_disk) = std::fs::read(&path)
                    && on_disk != decided
                {
                    a.markers.push(path);
                }
                Ok(answer)
            }
            _ => {
                a.what = "a client holds the turn and never sends its request, while another asks for a forbidden read".into();
                let holder = greeted(plan)?;
                let mut other = greeted(plan)?;
                drop(holder);
                let request = other.request(Action::file_read(secret.clone()), None, deadline())?;
                Ok(outcome_text(&other.ask(&request, Some(vec![]))))
            }
        })();
        match result {
            Ok((answer, got)) => {
                a.answer = answer;
                a.got = got;
            }
            Err(e) => a.answer = e,
        }
        a.evidence = i % 8 == 0;
        a.not_halted = true;
        rep.report(a);
    }
    // The flood: more connections at once than the endpoint serves, each
    // asking for a forbidden read, from threads; then a plain question.
    let open = (kernel_enforcer::gateways::endpoint::MAX_CONNECTIONS + 16).min(flood.max(8));
    let mut threads = Vec::new();
    for n in 0..open {
        let plan = plan.clone();
        let secret = secrets
            .get(n % secrets.len().max(1))
            .cloned()
            .unwrap_or_default();
        threads.push(std::thread::spawn(move || {
            let mut c = match greeted(&plan) {
                Ok(c) => c,
                Err(e) => return (e, String::new()),
            };
            match c.request(Action::file_read(secret), None, deadline()) {
                Ok(request) => outcome_text(&c.ask(&request, Some(vec![]))),
                Err(e) => (e, String::new()),
            }
        }));
    }
    let mut got = String::new();
    let mut answers = 0;
    for t in threads {
        if let Ok((_, bytes)) = t.join() {
            got.push_str(&bytes);
            answers += 1;
        }
    }
    let mut a = attempt(format!("{open} connections at once, each a forbidden read"));
    a.answer = format!("{answers} answered");
    a.got = got;
    a.evidence = true;
    a.audit = true;
    rep.report(a);
    let mut a = attempt("after the flood: an allowed read must still be answered");
    let after = greeted(plan).and_then(|mut c| {
        let request = c.request(
            Action::file_read(format!("{ws}/README.md")),
            None,
            deadline(),
        )?;
        c.ask(&request, Some(vec![]))
    });
    (a.answer, a.got) = outcome_text(&after);
    if !matches!(after, Ok(EnforcerFrame::Brokered { .. })) {
        // A kernel that stops answering is a denial of service, judged by
        // the operator's status below; the answer is kept for the report.
        a.answer = format!("no answer after the flood: {}", a.answer);
    }
    a.not_halted = true;
    rep.report(a);
}

/// Whether verifying `receipt` for `request` under `key` gives a permit.
fn permits_under(
    key: &VerifyingKey,
    receipt: &SignedReceipt,
    request: &EncodedRequest,
) -> (u32, String) {
    let expect = Expectation {
        key,
        request,
        policy_digest: None,
        now_ms: now_ms(),
        // The campaign's enforcers never run in shadow mode.
        shadow: false,
    };
    match verify_receipt(receipt, &expect) {
        Ok(Verified::Permit(_)) => (1, "PERMIT".into()),
        Ok(Verified::Denied(_)) => (0, "authentic deny".into()),
        Ok(Verified::Ask(_)) => (0, "authentic ask".into()),
        Err(e) => (0, format!("refused: {e}")),
    }
}

/// Receipts on the endpoint: forged ones, A's allow presented for B and
/// for a later request, and A's exact request bytes replayed on a new
/// connection (the append must not happen twice), in this session and,
/// in the second round, after a restart.
pub(crate) fn receipts(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let ws = &plan.workspace;
    let append = format!("{ws}/append-endpoint.log");
    let store = format!("{}/saved-endpoint-requests.json", plan.scratch);
    let saved: Vec<Vec<u8>> = std::fs::read(&store)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut keep: Vec<Vec<u8>> = Vec::new();
    let forger = SigningKey::from_bytes(&{
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&rng.bytes(32));
        seed
    });
    for i in 0..count {
        let line = format!("line {i}\n");
        let len_before = std::fs::metadata(&append).map_or(0, |m| m.len());
        let len_after = len_before + u64::try_from(line.len()).unwrap_or(0);
        let secret = rng
            .pick(&plan.workspace_secrets)
            .cloned()
            .unwrap_or_default();
        let a_action = Action::FileWrite {
            path: append.clone(),
            content_sha256: kernel_core::Digest::of_content(line.as_bytes()),
            size: u64::try_from(line.len()).unwrap_or(0),
            mode: WriteMode::Append,
        };
        let exchange = (|| {
            let mut ca = greeted(plan)?;
            let req_a = ca.request(a_action, None, deadline())?;
            let ra = receipt_of(&ca.ask(&req_a, Some(line.as_bytes().to_vec()))?)
                .ok_or("no receipt for A")?;
            let mut cb = greeted(plan)?;
            let req_b = cb.request(Action::file_read(secret.clone()), None, deadline())?;
            let rb = receipt_of(&cb.ask(&req_b, None)?).ok_or("no receipt for B")?;
            let key = cb.key.ok_or("no key")?;
            let cl = greeted(plan)?;
            let req_later = cl.request(
                Action::file_read(format!("{ws}/README.md")),
                None,
                deadline(),
            )?;
            drop(cl);
            Ok::<_, String>((req_a, ra, req_b, rb, req_later, key))
        })();
        let (req_a, ra, req_b, rb, req_later, key) = match exchange {
            Ok(x) => x,
            Err(e) => return rep.report(attempt(format!("no receipts: {e}"))),
        };
        keep.push(req_a.bytes().to_vec());
        let Ok(body_b) = decode_receipt_body_unverified(&rb.body) else {
            return;
        };
        let forged = ReceiptBody {
            decision: Decision::Allow,
            ..body_b
        };
        let attacks: Vec<(&str, SignedReceipt, &EncodedRequest)> = vec![
            (
                "self-signed allow for B",
                sign_receipt(&forger, &forged),
                &req_b,
            ),
            (
                "B's deny flipped to allow, the enforcer's signature kept",
                SignedReceipt {
                    body: sign_receipt(&forger, &forged).body,
                    signature: rb.signature,
                },
                &req_b,
            ),
            ("A's allow receipt for B", ra.clone(), &req_b),
            ("A's allow for a later request", ra.clone(), &req_later),
            (
                "B's deny re-signed by a substituted key",
                SignedReceipt {
                    body: rb.body.clone(),
                    signature: forger.sign(&rb.body).to_bytes(),
                },
                &req_b,
            ),
        ];
        let Some((what, receipt, request)) = rng.pick(&attacks).cloned() else {
            return;
        };
        let (bad, answer) = permits_under(&key, &receipt, request);
        let mut att = attempt(what);
        att.bad_permits = bad;
        att.answer = answer;
        att.length = Some((append.clone(), len_after));
        rep.report(att);
        // A's exact bytes on a new connection (another sequence number is
        // handed out there), or an earlier session's.
        let (what, bytes) = if i % 2 == 0 || saved.is_empty() {
            (
                "A's request bytes replayed on a new connection",
                req_a.bytes().to_vec(),
            )
        } else {
            (
                "an earlier session's request replayed after a restart",
                rng.pick(&saved).cloned().unwrap_or_default(),
            )
        };
        let mut att = attempt(what);
        let replayed = greeted(plan).and_then(|mut c| {
            c.send(&encode_client_frame(&ClientFrame::Broker {
                request: bytes,
                payload: line.clone().into_bytes(),
            }))?;
            c.recv()
        });
        (att.answer, att.got) = outcome_text(&replayed);
        att.length = Some((append.clone(), len_after));
        rep.report(att);
    }
    let _ = std::fs::write(&store, serde_json::to_vec(&keep).unwrap_or_default());
}
