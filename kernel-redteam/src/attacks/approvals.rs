//! Attacks on approvals and the control socket.

use super::*;

/// Attacks on approvals: asks for a deployment that needs an operator,
/// tries to approve it itself, and replays the one approval the operator
/// gives for further deployments.
pub(crate) fn approvals(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    use kernel_enforcer::control::{ControlRequest, request};
    let patient =
        Kernel::connect_from_env(ClientConfig::default().await_approval(Duration::from_secs(3)));
    let Ok(kernel) = patient else {
        return rep.report(attempt("join failed"));
    };
    // The first deployment: the operator approves exactly this one.
    let input = serde_json::json!({"environment": "production", "n": 0});
    let first = kernel.authorize(Action::tool_call("deploy", &input));
    let mut a = attempt("deployment 0, approved once by the operator");
    a.answer = format!("{:?}", first.as_ref().map(|_| "permit"));
    a.evidence = true;
    rep.report(a);
    drop(first);
    let impatient = Kernel::connect_from_env(ClientConfig::default());
    drop(impatient);
    for i in 1..=count {
        let mut a = attempt(String::new());
        match i % 3 {
            0 => {
                let id = rng.next() % 8;
                a.what = format!("self-approve request {id} on the control socket");
                a.answer = match request(
                    std::path::Path::new(&plan.control),
                    &ControlRequest::Approve {
                        id,
                        for_secs: Some(3600),
                        uses: None,
                    },
                ) {
                    Ok(r) => format!("ok={} {}", r.ok, r.message),
                    Err(e) => e,
                };
            }
            1 => {
                a.what = "the same deployment again, hoping the approval carries over".into();
                a.answer = format!(
                    "{:?}",
                    kernel
                        .authorize(Action::tool_call("deploy", &input))
                        .map(|_| "permit")
                );
            }
            _ => {
                a.what = "a reload request on the control socket".into();
                a.answer =
                    match request(std::path::Path::new(&plan.control), &ControlRequest::Reload) {
                        Ok(r) => format!("ok={} {}", r.ok, r.message),
                        Err(e) => e,
                    };
            }
        }
        a.evidence = true;
        a.not_halted = true;
        rep.report(a);
    }
}
