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
    /// A raw channel to the kernel of `plan.mode`: the supervising
    /// enforcer's (supervised), or one this process starts with `serve`
    /// as `Kernel::spawn` does and then confines itself (embedded).
    pub(crate) fn open(plan: &Plan, seed: u64) -> Result<Self, String> {
        if plan.mode == "embedded" {
            Self::spawn(plan, seed)
        } else {
            Self::connect(seed)
        }
    }

    /// Embedded: starts `kernel-enforcer serve --connect NAME` with the
    /// plan's policies, key and evidence, takes the channel it hands over,
    /// and locks this process down.
    fn spawn(plan: &Plan, seed: u64) -> Result<Self, String> {
        use ipc_channel::ipc::IpcOneShotServer;
        type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);
        let (server, name) = IpcOneShotServer::<ClientEnds>::new().map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new(&plan.enforcer_binary);
        command
            .args(["serve", "--connect", &name, "--workspace", &plan.workspace])
            .args(["--evidence", &plan.evidence, "--key", &plan.key])
            .args([
                "--control",
                &plan.control,
                "--protect",
                &plan.outside_secret,
            ])
            .args(["--protect", &plan.config])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        for policy in &plan.policies {
            command.arg("--policy").arg(policy);
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let (sent, accepted) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sent.send(server.accept());
        });
        let (tx, rx) = match accepted.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok((_, ends))) => ends,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the enforcer did not hand over a channel: {other:?}"
                ));
            }
        };
        let program = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut profile = kernel_confine::Profile::new(
            std::path::Path::new(&plan.workspace),
            std::path::Path::new(&plan.scratch),
            &program,
        );
        profile.protected = plan
            .assets()
            .iter()
            .chain([&plan.control, &plan.outside_secret])
            .map(std::path::PathBuf::from)
            .collect();
        kernel_confine::Prepared::new(&profile)
            .and_then(|mut p| p.apply_to_process())
            .map_err(|e| format!("lockdown: {e}"))?;
        Ok(Self {
            tx,
            rx,
            handshake: None,
            key: None,
            seq: 0,
            rng: SplitMix64::new(seed),
        })
    }

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
            // The campaign's enforcers never run in shadow mode.
            shadow: false,
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
