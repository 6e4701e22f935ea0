//! Debug builds only: faults injected into the enforcer for the liveness
//! and halt tests (a governed call, an egress request or a client's
//! request whose handler panics, stalls or is slow), through the
//! enforcer's own environment variable `AGENT_KERNEL_TEST_FAULT`. Release
//! builds do not have them.

use kernel_core::CanonicalAction;

/// Debug builds only, for the liveness tests: the enforcer's own
/// environment variable `AGENT_KERNEL_TEST_FAULT` (`panic:KIND` or
/// `stall:KIND`, `KIND` an action name such as `file_delete`) makes the
/// handler of every such action panic, or block for an hour, before its
/// decision. The agent cannot set it (its environment is its own); release
/// builds do not have it.
pub(crate) fn injected_fault(action: &CanonicalAction) {
    let Ok(fault) = std::env::var("AGENT_KERNEL_TEST_FAULT") else {
        return;
    };
    let kind = action.action().kind().as_str();
    match fault.split_once(':') {
        Some(("panic", wanted)) if wanted == kind => {
            #[expect(clippy::panic, reason = "an injected fault, debug builds only")]
            {
                panic!("injected fault: a panic while handling `{kind}`")
            }
        }
        Some(("stall", wanted)) if wanted == kind => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        _ => {}
    }
}

/// Debug builds only, for the halt tests: `AGENT_KERNEL_TEST_FAULT` set
/// to `slow:KIND` makes every allowed action of that kind wait 1.5 s
/// between its decision and its effect.
pub(crate) fn injected_delay(kind: &str) {
    if std::env::var("AGENT_KERNEL_TEST_FAULT").is_ok_and(|fault| fault == format!("slow:{kind}")) {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}
