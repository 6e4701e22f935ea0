//! The enforcer's frame handler: any bytes get a well-formed reply and
//! never halt the session.
#![no_main]
use kernel_core::decode_enforcer_frame;
use kernel_enforcer::session::Session;
use kernel_testkit::session::{InProcess, Memory, READ_WORKSPACE};
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

/// One session for the whole run, its evidence in memory and bounded
/// (old bytes are dropped: the fuzzer checks the handler, not the log).
fn session() -> &'static Mutex<Session> {
    static SESSION: OnceLock<Mutex<Session>> = OnceLock::new();
    SESSION.get_or_init(|| {
        let (session, _) = InProcess::new(READ_WORKSPACE)
            .evidence(Memory::keeping_at_most(1 << 20).log())
            .start();
        Mutex::new(session)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut session = session().lock().unwrap_or_else(|e| e.into_inner());
    let reply = session.handle(data);
    assert!(
        decode_enforcer_frame(&reply).is_ok(),
        "reply does not decode"
    );
    assert!(session.halted().is_none(), "input halted the session");
});
