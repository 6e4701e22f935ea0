//! The enforcer's frame handler on arbitrary input: it never panics, always
//! replies with a well-formed frame, never halts because of input, and
//! keeps deciding valid requests afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{
    Action, CanonicalAction, ClientFrame, EncodedRequest, EnforcerFrame, Handshake,
    PROTOCOL_VERSION, Request, decode_enforcer_frame, encode_client_frame,
};
use kernel_enforcer::session::evidence::EvidenceLog;
use kernel_enforcer::session::{Session, SessionConfig};
use kernel_policy::{Environment, PolicyEngine};
use proptest::prelude::*;

fn session(dir: &std::path::Path) -> (Session, Handshake) {
    let env = Environment::new("/ws", &[]).unwrap();
    let policy = PolicyEngine::from_sources(
        &[(
            "p.cedar".into(),
            r#"permit (principal, action == Action::"file_read", resource in Workspace::"root");"#
                .into(),
        )],
        env,
    )
    .unwrap();
    let evidence = EvidenceLog::open(&dir.join("evidence.log")).unwrap();
    let key = kernel_core::SigningKey::from_bytes(&[3; 32]);
    let mut session = Session::start(key, policy, evidence, SessionConfig::default()).unwrap();
    let hello = encode_client_frame(&ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        challenge: [1; 32],
    });
    let handshake = match decode_enforcer_frame(&session.handle(&hello)).unwrap() {
        EnforcerFrame::Hello { handshake, .. } => handshake,
        other => panic!("{other:?}"),
    };
    (session, handshake)
}

fn valid_frame(handshake: &Handshake, seq: u64) -> Vec<u8> {
    let request = EncodedRequest::new(Request {
        session: handshake.session,
        seq,
        nonce: [0; 16],
        action: CanonicalAction::new(Action::file_read("/ws/a"), None).unwrap(),
        deadline_ms: u64::MAX,
    });
    encode_client_frame(&ClientFrame::Authorize {
        request: request.bytes().to_vec(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_bytes_get_a_reply_and_serving_continues(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..12),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, handshake) = session(dir.path());
        let mut seq = 0;
        for mut frame in frames {
            // Half the time, start from a valid frame and damage it.
            if frame.len() % 2 == 0 {
                seq += 1;
                frame = valid_frame(&handshake, seq);
                for (index, bit) in &flips {
                    let at = index.index(frame.len());
                    frame[at] ^= 1 << bit;
                }
            }
            let reply = session.handle(&frame);
            prop_assert!(decode_enforcer_frame(&reply).is_ok());
            prop_assert!(session.halted().is_none());
        }
        // A damaged frame may have carried any sequence number up to what
        // a few flipped bits reach; u64::MAX is beyond all of them.
        let reply = decode_enforcer_frame(&session.handle(&valid_frame(&handshake, u64::MAX))).unwrap();
        prop_assert!(matches!(reply, EnforcerFrame::Receipt { .. }), "{:?}", reply);
    }
}
