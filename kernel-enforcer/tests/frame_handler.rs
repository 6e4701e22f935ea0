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

use kernel_core::{Action, EnforcerFrame, Handshake, decode_enforcer_frame};
use kernel_enforcer::session::Session;
use kernel_enforcer::session::evidence::EvidenceLog;
use kernel_testkit::session::{InProcess, READ_WORKSPACE};
use kernel_testkit::{authorize_frame, request};
use proptest::prelude::*;

fn session(dir: &std::path::Path) -> (Session, Handshake) {
    InProcess::new(READ_WORKSPACE)
        .evidence(EvidenceLog::open(&dir.join("evidence.log")).unwrap())
        .start()
}

fn valid_frame(handshake: &Handshake, seq: u64) -> Vec<u8> {
    authorize_frame(&request(handshake.session, seq, Action::file_read("/ws/a")))
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
