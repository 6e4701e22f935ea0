//! A hand-driven channel to the enforcer: any bytes, any frame.

use super::*;

/// A hand-driven connection: any bytes, any frame.
pub(crate) struct Raw {
    pub(crate) tx: IpcSender<Vec<u8>>,
    pub(super) rx: IpcReceiver<Vec<u8>>,
    pub(crate) handshake: Option<Handshake>,
    pub(crate) key: Option<VerifyingKey>,
    pub(crate) seq: u64,
    rng: SplitMix64,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw").field("seq", &self.seq).finish()
    }
}

impl Raw {
    pub(crate) fn connect(seed: u64) -> Result<Self, String> {
        let name = std::env::var(kernel_client::CHANNEL_ENV).map_err(|e| e.to_string())?;
        let (tx, requests_rx) = ipc::channel::<Vec<u8>>().map_err(|e| e.to_string())?;
        let (replies_tx, rx) = ipc::channel::<Vec<u8>>().map_err(|e| e.to_string())?;
        let bootstrap = IpcSender::<EnforcerEnds>::connect(name).map_err(|e| e.to_string())?;
        bootstrap
            .send((requests_rx, replies_tx))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            rx,
            handshake: None,
            key: None,
            seq: 0,
            rng: SplitMix64::new(seed),
        })
    }

    pub(crate) fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.tx.send(bytes).map_err(|e| e.to_string())
    }

    pub(crate) fn recv(&self) -> Result<EnforcerFrame, String> {
        let bytes = self
            .rx
            .try_recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("{e:?}"))?;
        decode_enforcer_frame(&bytes).map_err(|e| e.to_string())
    }

    pub(crate) fn hello(&mut self, protocol: u16) -> Result<(), String> {
        let challenge = [9u8; 32];
        self.send(encode_client_frame(&ClientFrame::Hello {
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
                self.key = Some(key);
                self.handshake = Some(handshake);
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// A request for `action` with the next sequence number.
    pub(crate) fn request(&mut self, action: Action) -> Result<EncodedRequest, String> {
        let hs = self.handshake.as_ref().ok_or("no handshake")?;
        let action =
            CanonicalAction::new(action, Some(&hs.workspace)).map_err(|e| e.to_string())?;
        self.seq += 1;
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&self.rng.bytes(16));
        Ok(EncodedRequest::new(Request {
            session: hs.session,
            seq: self.seq,
            nonce,
            action,
            deadline_ms: now_ms() + 20_000,
        }))
    }

    /// Sends `request` (brokered with `payload` if given) and returns the
    /// answer.
    pub(crate) fn ask(
        &self,
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
        self.send(encode_client_frame(&frame))?;
        self.recv()
    }

    pub(super) fn expectation<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> Option<Expectation<'a>> {
        Some(Expectation {
            key: self.key.as_ref()?,
            request,
            policy_digest: None,
            now_ms: now_ms(),
        })
    }
}

pub(super) fn receipt_of(frame: &EnforcerFrame) -> Option<SignedReceipt> {
    match frame {
        EnforcerFrame::Receipt { receipt, .. } | EnforcerFrame::Brokered { receipt, .. } => {
            Some(receipt.clone())
        }
        _ => None,
    }
}

pub(super) fn outcome_text(frame: &Result<EnforcerFrame, String>) -> (String, String) {
    match frame {
        Ok(EnforcerFrame::Brokered {
            outcome, receipt, ..
        }) => {
            let decision = decode_receipt_body_unverified(&receipt.body).map(|b| b.decision);
            let got = match outcome {
                kernel_core::Outcome::Read { content, .. } => lossy(content),
                kernel_core::Outcome::Exec { stdout, stderr, .. } => {
                    format!("{}{}", lossy(stdout), lossy(stderr))
                }
                _ => String::new(),
            };
            (
                format!("{decision:?}: {outcome:?}")
                    .chars()
                    .take(300)
                    .collect(),
                got,
            )
        }
        Ok(EnforcerFrame::Receipt { receipt, .. }) => (
            format!(
                "{:?}",
                decode_receipt_body_unverified(&receipt.body).map(|b| b.decision)
            ),
            String::new(),
        ),
        Ok(other) => (
            format!("{other:?}").chars().take(300).collect(),
            String::new(),
        ),
        Err(e) => (e.clone(), String::new()),
    }
}

/// Whether verifying `receipt` for `request` gives a permit.
pub(super) fn permits(
    raw: &Raw,
    receipt: &SignedReceipt,
    request: &EncodedRequest,
) -> (u32, String) {
    let Some(expect) = raw.expectation(request) else {
        return (0, "no key".into());
    };
    match verify_receipt(receipt, &expect) {
        Ok(Verified::Permit(_)) => (1, "PERMIT".into()),
        Ok(Verified::Denied(_)) => (0, "authentic deny".into()),
        Ok(Verified::Ask(_)) => (0, "authentic ask".into()),
        Err(e) => (0, format!("refused: {e}")),
    }
}
