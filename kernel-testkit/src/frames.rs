//! Frames a client sends, built by hand (the tests that send them judge
//! what the enforcer answers to each, valid or not).

use kernel_core::{
    Action, CanonicalAction, ClientFrame, EncodedRequest, PROTOCOL_VERSION, Request, SessionId,
    encode_client_frame,
};

/// The `Hello` frame that opens a session, with `challenge`.
pub fn hello_frame(challenge: [u8; 32]) -> Vec<u8> {
    encode_client_frame(&ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        challenge,
    })
}

/// Request number `seq` of `session` for `action` (canonical without a
/// base directory, so a path must be absolute), with a nonce of its own
/// and no deadline.
pub fn request(session: SessionId, seq: u64, action: Action) -> EncodedRequest {
    request_until(session, seq, action, u64::MAX)
}

/// [`request`], to be answered by `deadline_ms` (milliseconds since the
/// Unix epoch).
pub fn request_until(
    session: SessionId,
    seq: u64,
    action: Action,
    deadline_ms: u64,
) -> EncodedRequest {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&seq.to_le_bytes());
    EncodedRequest::new(Request {
        session,
        seq,
        nonce,
        action: CanonicalAction::new(action, None).expect("a canonical action"),
        deadline_ms,
    })
}

/// The `Authorize` frame carrying `request`.
pub fn authorize_frame(request: &EncodedRequest) -> Vec<u8> {
    encode_client_frame(&ClientFrame::Authorize {
        request: request.bytes().to_vec(),
    })
}

/// The `Broker` frame carrying `request`, the broker to perform it with
/// `payload` (a write's content).
pub fn broker_frame(request: &EncodedRequest, payload: Vec<u8>) -> Vec<u8> {
    encode_client_frame(&ClientFrame::Broker {
        request: request.bytes().to_vec(),
        payload,
    })
}

/// The frame asking to read `path` as request `seq` of `session`.
pub fn read_frame(session: SessionId, seq: u64, path: &str) -> Vec<u8> {
    authorize_frame(&request(session, seq, Action::file_read(path)))
}
