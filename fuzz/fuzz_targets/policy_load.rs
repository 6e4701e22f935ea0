//! Policy loading on arbitrary text: never panics; a set that loads has
//! the floor, so it never allows reading the kernel's assets.
#![no_main]
use kernel_core::{Action, CanonicalAction, Evaluation};
use kernel_policy::{Environment, PolicyEngine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Environment::new("/ws", &["/state/kernel.key".to_owned()])
        .unwrap_or_else(|_| unreachable!());
    if let Ok(engine) = PolicyEngine::from_sources(&[("fuzz.cedar".into(), text.into())], env) {
        let action = CanonicalAction::new(Action::file_read("/state/kernel.key"), None)
            .unwrap_or_else(|_| unreachable!());
        if let Evaluation::Completed { forbids, .. } = engine.evaluate(&action) {
            assert!(
                !forbids.is_empty(),
                "the floor did not match a kernel asset"
            );
        }
    }
});
