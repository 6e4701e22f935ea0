//! The enforcer's frame handler: any bytes get a well-formed reply and
//! never halt the session.
#![no_main]
use kernel_core::{ClientFrame, PROTOCOL_VERSION, decode_enforcer_frame, encode_client_frame};
use kernel_enforcer::session::evidence::{EvidenceLog, Storage};
use kernel_policy::{Environment, PolicyEngine};
use kernel_enforcer::session::{Session, SessionConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

/// Evidence kept in memory, bounded (old bytes are dropped: the fuzzer
/// checks the handler, not the log).
#[derive(Debug, Default)]
struct Memory(Vec<u8>);

impl Storage for Memory {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.0.len() > 1 << 20 {
            self.0.clear();
        }
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn session() -> &'static Mutex<Session> {
    static SESSION: OnceLock<Mutex<Session>> = OnceLock::new();
    SESSION.get_or_init(|| {
        let env = Environment::new("/ws", &[]).unwrap_or_else(|_| unreachable!());
        let policy = PolicyEngine::from_sources(
            &[(
                "p.cedar".into(),
                r#"permit (principal, action == Action::"file_read", resource in Workspace::"root");"#.into(),
            )],
            env,
        )
        .unwrap_or_else(|_| unreachable!());
        let log = EvidenceLog::with_storage(std::path::Path::new("memory"), &[], Box::new(Memory::default()))
            .unwrap_or_else(|_| unreachable!());
        let key = kernel_core::SigningKey::from_bytes(&[9; 32]);
        let mut session = Session::start(key, policy, log, SessionConfig::default()).unwrap_or_else(|_| unreachable!());
        let hello = encode_client_frame(&ClientFrame::Hello { protocol: PROTOCOL_VERSION, challenge: [0; 32] });
        let _ = session.handle(&hello);
        Mutex::new(session)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut session = session().lock().unwrap_or_else(|e| e.into_inner());
    let reply = session.handle(data);
    assert!(decode_enforcer_frame(&reply).is_ok(), "reply does not decode");
    assert!(session.halted().is_none(), "input halted the session");
});
