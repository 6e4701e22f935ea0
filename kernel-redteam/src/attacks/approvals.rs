//! Attacks on approvals and the control socket.

use super::*;

/// Asks for `action` without performing anything: `permit` only for an
/// authentic allow.
pub(super) fn authorize(route: &Route, action: Action) -> String {
    match route {
        Route::Kernel(kernel) => format!("{:?}", kernel.authorize(action).map(|_| "permit")),
        Route::Endpoint(options) => {
            let asked = kernel_enforcer::gateways::endpoint::canonicalize(action, None)
                .map_err(|e| e.to_string())
                .and_then(|action| {
                    kernel_enforcer::gateways::endpoint::ask(options, action, None)
                        .map_err(|e| e.to_string())
                });
            match asked {
                Ok(answer) => match answer.verified {
                    Verified::Permit(_) => "permit".into(),
                    Verified::Denied(_) => "denied".into(),
                    Verified::Ask(_) => "waiting for an approval".into(),
                },
                Err(e) => e,
            }
        }
        Route::Syscalls => "no client".into(),
    }
}

/// Attacks on approvals: asks for a deployment that needs an operator,
/// tries to approve it itself, and replays the one approval the operator
/// gives for further deployments. An agent outside any confinement with
/// the operator's uid (endpoint mode) reaches the control socket: that is
/// a documented limit there, not a refusal.
pub(crate) fn approvals(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    use kernel_enforcer::session::control::{ControlRequest, request};
    let route = match Route::join_with(plan, Some(Duration::from_secs(3))) {
        Ok(route) => route,
        Err(e) => return rep.report(attempt(format!("join failed: {e}"))),
    };
    let operator_limit = plan.endpoint().then(|| {
        "an unconfined agent with the operator's uid is the operator on the control socket \
         (SECURITY.md: run the enforcer as another user)"
            .to_owned()
    });
    // The first deployment: the operator approves exactly this one.
    let input = serde_json::json!({"environment": "production", "n": 0});
    let mut a = attempt("deployment 0, approved once by the operator");
    a.answer = authorize(&route, Action::tool_call("deploy", &input));
    a.evidence = true;
    rep.report(a);
    if plan.mode == "supervised" {
        // A second client on the supervised channel.
        let impatient = Kernel::connect_from_env(ClientConfig::default());
        drop(impatient);
    }
    for i in 1..=count {
        let mut a = attempt(String::new());
        match i % 3 {
            0 => {
                let id = rng.next() % 8;
                // With a standing grant, and without.
                let grant = rng.below(2) == 0;
                a.what = format!(
                    "self-approve request {id} on the control socket{}",
                    if grant { " with a standing grant" } else { "" }
                );
                a.answer = match request(
                    std::path::Path::new(&plan.control),
                    &ControlRequest::Approve {
                        id,
                        for_secs: grant.then_some(3600),
                        uses: grant.then_some(100),
                    },
                ) {
                    Ok(r) => format!("ok={} {}", r.ok, r.message),
                    Err(e) => e.to_string(),
                };
            }
            1 => {
                a.what = "the same deployment again, hoping the approval carries over".into();
                a.answer = authorize(&route, Action::tool_call("deploy", &input));
            }
            _ => {
                a.what = "a reload request on the control socket".into();
                a.answer =
                    match request(std::path::Path::new(&plan.control), &ControlRequest::Reload) {
                        Ok(r) => format!("ok={} {}", r.ok, r.message),
                        Err(e) => e.to_string(),
                    };
            }
        }
        a.evidence = true;
        a.not_halted = true;
        a.operator_limit.clone_from(&operator_limit);
        rep.report(a);
    }
}
