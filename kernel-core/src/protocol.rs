//! Frames exchanged between client and enforcer, and the handshake.
//!
//! Every frame is `tag || postcard(frame)` and is decoded strictly (see
//! [`encoding`](crate::encoding)). Transport failures and protocol
//! refusals are separate layers: a [`Refusal`] is the enforcer's answer to
//! a frame it would not decide on; the client turns both into a denial.

use crate::digest::Digest;
use crate::encoding::{CLIENT_FRAME_TAG, DecodeError, ENFORCER_FRAME_TAG, decode, encode};
use crate::limits::MAX_FRAME_BYTES;
use crate::receipt::SignedReceipt;
use crate::request::SessionId;
use ed25519_dalek::{Signature, VerifyingKey};
#[cfg(feature = "signing")]
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// Environment variable that carries the enforcer's channel name to an
/// agent started under supervision (`kernel-enforcer run`).
pub const CHANNEL_ENV: &str = "AGENT_KERNEL_CHANNEL";

/// The protocol version this crate speaks. Version 2 added
/// [`Handshake::shadow`]; a peer of version 1 is refused at the hello.
pub const PROTOCOL_VERSION: u16 = 2;

/// Tag of the message the enforcer signs in its handshake (its version
/// follows the handshake's layout, that of [`PROTOCOL_VERSION`]).
pub const HANDSHAKE_TAG: &[u8] = b"agent-kernel/handshake/v2\n";

/// A frame from the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Opens the session.
    Hello {
        /// The protocol version the client speaks.
        protocol: u16,
        /// Fresh randomness the enforcer must sign, proving it holds its key
        /// now.
        challenge: [u8; 32],
    },
    /// Asks for a decision on an encoded [`Request`](crate::Request).
    Authorize {
        /// `EncodedRequest::bytes`.
        request: Vec<u8>,
    },
    /// Asks for a decision and, if allowed, for the enforcer to perform
    /// the effect itself (the broker) and return its outcome.
    Broker {
        /// `EncodedRequest::bytes`.
        request: Vec<u8>,
        /// Data the effect needs (the content of a `FileWrite`, whose
        /// digest and size the request binds); empty otherwise.
        payload: Vec<u8>,
    },
}

/// What a brokered effect did. Not signed: it travels on the private
/// channel; the signed receipt beside it is the evidence of the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The program ran.
    Exec {
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Its standard output (capped).
        stdout: Vec<u8>,
        /// Its standard error (capped).
        stderr: Vec<u8>,
        /// Whether output beyond the cap was dropped.
        truncated: bool,
        /// Whether it was killed at the time limit.
        timed_out: bool,
    },
    /// The file was read.
    Read {
        /// Its content (capped).
        content: Vec<u8>,
        /// Whether content beyond the cap was dropped.
        truncated: bool,
    },
    /// The file was written.
    Written {
        /// Bytes written.
        bytes: u64,
    },
    /// The file was deleted.
    Deleted,
    /// The connection was made. The connected socket itself travels on the
    /// descriptor hand-off socket (see [`Handshake::handoff`]), tagged
    /// with the request's sequence number.
    Connected {
        /// The address actually connected to (`ip:port`).
        peer: String,
    },
    /// The HTTP request was made and a response came back (redirects are
    /// returned, never followed: their target was not decided on).
    Http {
        /// The response's status code.
        status: u16,
        /// Its headers, in order, values as text (non-UTF-8 bytes
        /// replaced).
        headers: Vec<(String, String)>,
        /// Its body (capped).
        body: Vec<u8>,
        /// Whether body bytes beyond the cap were dropped.
        truncated: bool,
    },
    /// The effect was attempted and failed (for example, a symbolic link
    /// in the path, which the broker never follows).
    Failed {
        /// What failed.
        error: String,
    },
    /// The effect was not performed: the decision was not an allow, the
    /// kind of action is not brokered, or the kernel halted.
    NotPerformed {
        /// Why.
        reason: String,
    },
}

/// How the agent is confined by the operating system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Confinement {
    /// Not confined: the kernel governs only what the agent asks about
    /// (embedded mode before the agent locks itself down).
    Unconfined,
    /// Confined by the enforcer before the agent started (supervised
    /// mode), with this version of the confinement profile.
    Confined {
        /// The profile version.
        profile: u32,
    },
    /// Supervised, but the operator chose to run the agent unconfined
    /// (`--danger-unconfined`).
    DangerUnconfined,
}

impl Confinement {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfined => "unconfined",
            Self::Confined { .. } => "confined",
            Self::DangerUnconfined => "danger-unconfined",
        }
    }
}

/// What the enforcer announces when a session opens. The signature covers
/// everything here and the client's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// Protocol version in use.
    pub protocol: u16,
    /// Fresh session id.
    pub session: SessionId,
    /// The enforcer's public key.
    pub enforcer_key: [u8; 32],
    /// Digest of the policy set in force (user policies and floor).
    pub policy_digest: Digest,
    /// The agent's workspace root.
    pub workspace: String,
    /// Confinement actually in force.
    pub confinement: Confinement,
    /// How long an allow receipt stays valid, in ms.
    pub permit_ttl_ms: u64,
    /// Path of the Unix socket on which the enforcer hands the agent the
    /// descriptors of brokered connections, if it does. Only the agent's
    /// process may connect to it, once; a client joins it right after the
    /// handshake.
    pub handoff: Option<String>,
    /// Shadow mode: the operator started the enforcer with `--shadow`, so
    /// an action the policy denies (or asks about) still proceeds, with a
    /// receipt that says so ([`Decision::ShadowDeny`](crate::Decision::ShadowDeny),
    /// [`Decision::ShadowAsk`](crate::Decision::ShadowAsk)). The kernel
    /// floor, a halt and a passed deadline still deny. Only the operator
    /// sets it, on the enforcer's command line; the agent cannot.
    pub shadow: bool,
}

#[derive(Serialize)]
struct HandshakeMessage<'a> {
    handshake: &'a Handshake,
    challenge: &'a [u8; 32],
}

fn handshake_message(handshake: &Handshake, challenge: &[u8; 32]) -> Vec<u8> {
    encode(
        HANDSHAKE_TAG,
        &HandshakeMessage {
            handshake,
            challenge,
        },
    )
}

impl Handshake {
    /// Signs the handshake together with the client's challenge. Only with
    /// the `signing` feature.
    #[cfg(feature = "signing")]
    pub fn sign(&self, key: &SigningKey, challenge: &[u8; 32]) -> [u8; 64] {
        key.sign(&handshake_message(self, challenge)).to_bytes()
    }

    /// Verifies that `signature` is the announced key's signature over this
    /// handshake and `challenge`.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        challenge: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), HandshakeSignatureError> {
        key.verify_strict(
            &handshake_message(self, challenge),
            &Signature::from_bytes(signature),
        )
        .map_err(|_| HandshakeSignatureError)
    }
}

/// Tag of the message the enforcer signs over each answer on its operator
/// control socket.
pub const CONTROL_REPLY_TAG: &[u8] = b"agent-kernel/control-reply/v1\n";

#[derive(Serialize)]
struct ControlReplyMessage<'a> {
    challenge: &'a [u8; 32],
    request: &'a str,
    reply: &'a str,
}

fn control_reply_message(challenge: &[u8; 32], request: &str, reply: &str) -> Vec<u8> {
    encode(
        CONTROL_REPLY_TAG,
        &ControlReplyMessage {
            challenge,
            request,
            reply,
        },
    )
}

/// Signs the exact text of an answer on the operator's control socket
/// together with the operator's fresh challenge and the exact request
/// line it answers, so that an answer from anything but the holder of the
/// enforcer's key, an answer recorded earlier and replayed, or the answer
/// to another request (a `status` passed off as a `halt`) does not
/// verify. Only with the `signing` feature.
#[cfg(feature = "signing")]
pub fn sign_control_reply(
    key: &SigningKey,
    challenge: &[u8; 32],
    request: &str,
    reply: &str,
) -> [u8; 64] {
    key.sign(&control_reply_message(challenge, request, reply))
        .to_bytes()
}

/// Verifies that `signature` is `key`'s signature over `reply`, the
/// `request` line it answers and the operator's `challenge` (see
/// `sign_control_reply`).
pub fn verify_control_reply(
    key: &VerifyingKey,
    challenge: &[u8; 32],
    request: &str,
    reply: &str,
    signature: &[u8; 64],
) -> Result<(), ControlReplySignatureError> {
    key.verify_strict(
        &control_reply_message(challenge, request, reply),
        &Signature::from_bytes(signature),
    )
    .map_err(|_| ControlReplySignatureError)
}

/// A control-socket answer's signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the control answer is not signed by the expected enforcer key over this challenge")]
pub struct ControlReplySignatureError;

/// The handshake signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("handshake signature does not verify under the announced key")]
pub struct HandshakeSignatureError;

/// A frame from the enforcer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnforcerFrame {
    /// The answer to [`ClientFrame::Hello`].
    Hello {
        /// What the enforcer announces.
        handshake: Handshake,
        /// Its signature over the handshake and the challenge.
        #[serde(with = "crate::encoding::signature_bytes")]
        signature: [u8; 64],
    },
    /// A signed decision and, for a brokered request, what the effect did.
    Brokered {
        /// The request's sequence number.
        seq: u64,
        /// The signed receipt.
        receipt: SignedReceipt,
        /// The effect's outcome.
        outcome: Outcome,
    },
    /// A signed decision.
    Receipt {
        /// The request's sequence number.
        seq: u64,
        /// The signed receipt.
        receipt: SignedReceipt,
    },
    /// The enforcer would not decide on a frame.
    Refused {
        /// The sequence number, when the frame got far enough to have one.
        seq: Option<u64>,
        /// Why.
        refusal: Refusal,
    },
}

/// Why the enforcer would not decide on a frame. The client treats every
/// refusal as a denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The frame did not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame is over the size limit.
    #[error("frame of {size} bytes is over the {limit}-byte limit")]
    Oversize {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The client speaks another protocol version.
    #[error("protocol version {got} is not supported (this enforcer speaks {supported})")]
    UnsupportedVersion {
        /// Offered by the client.
        got: u16,
        /// Spoken by the enforcer.
        supported: u16,
    },
    /// A frame arrived out of order (a request before the hello, a second
    /// hello).
    #[error("frame out of order: {0}")]
    OutOfOrder(String),
    /// The request names another session.
    #[error("request is for another session")]
    WrongSession,
    /// The request's sequence number did not increase.
    #[error("sequence number {0} was already used")]
    Replayed(u64),
    /// The enforcer is halted and denies everything.
    #[error("halted")]
    Halted,
}

/// Encodes a client frame.
pub fn encode_client_frame(frame: &ClientFrame) -> Vec<u8> {
    encode(CLIENT_FRAME_TAG, frame)
}

/// Decodes a client frame strictly.
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    decode(CLIENT_FRAME_TAG, bytes, MAX_FRAME_BYTES)
}

/// Encodes an enforcer frame.
pub fn encode_enforcer_frame(frame: &EnforcerFrame) -> Vec<u8> {
    encode(ENFORCER_FRAME_TAG, frame)
}

/// Decodes an enforcer frame strictly.
pub fn decode_enforcer_frame(bytes: &[u8]) -> Result<EnforcerFrame, DecodeError> {
    decode(ENFORCER_FRAME_TAG, bytes, MAX_FRAME_BYTES)
}
