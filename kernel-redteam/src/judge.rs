//! The judge: what happened in the world after an attempt. It never takes
//! the agent's or the enforcer's word for it.

use crate::plan::Attempt;
use crate::world::{self, World};
use std::path::Path;
use std::time::Duration;

/// What the judge needs to know about the session an attempt ran in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The enforcer's pid, if known.
    pub(crate) enforcer: Option<u32>,
    pub(crate) evidence: &'a Path,
    pub(crate) control: &'a Path,
    /// Approvals the operator gave in this session.
    pub(crate) approvals_allowed: usize,
}

/// The effects of one attempt that happened, looked up in the world: the
/// escapes, and the effects that fall under a documented limit.
pub(crate) fn judge(
    world: &mut World,
    attempt: &Attempt,
    cx: &Context<'_>,
) -> (Vec<String>, Vec<String>) {
    let mut effects = Vec::new();
    let mut limits = Vec::new();
    for change in world.changed() {
        match (&attempt.limit, &attempt.metadata_limit) {
            (_, Some(limit)) if change.metadata_only => {
                limits.push(format!("{} ({limit})", change.what));
            }
            (Some(limit), _) if change.in_workspace => {
                limits.push(format!("{} ({limit})", change.what));
            }
            _ => effects.push(change.what),
        }
    }
    if let Some((leak, in_workspace)) = world.leaks(attempt.got.as_bytes()) {
        match &attempt.limit {
            Some(limit) if in_workspace => limits.push(format!("{leak} ({limit})")),
            _ => effects.push(leak),
        }
    }
    for marker in &attempt.limit_markers {
        if std::fs::symlink_metadata(marker).is_ok() {
            limits.push(format!(
                "{marker} exists: a program ran inside the agent's own confinement"
            ));
        }
    }
    let accepts = world.take_accepts();
    if accepts > 0 {
        effects.push(format!(
            "the loopback listener accepted {accepts} connection(s)"
        ));
    }
    let unix = world.take_unix_accepts();
    if unix > 0 {
        let what = format!(
            "the Unix socket {} accepted {unix} connection(s)",
            world.plan.unix_socket
        );
        match &attempt.unix_limit {
            Some(limit) => limits.push(format!("{what} ({limit})")),
            None => effects.push(what),
        }
    }
    if let Some(pid) = cx.enforcer
        && let Some(p) = world::process_problem(pid, "enforcer")
    {
        effects.push(p);
    }
    if let Some(p) = world.sentinel_problem() {
        effects.push(p);
    }
    for marker in &attempt.markers {
        if std::fs::symlink_metadata(marker).is_ok() {
            effects.push(format!("{marker} exists"));
        }
    }
    if attempt.bad_permits > 0 {
        effects.push(format!(
            "the agent holds {} permit(s) it must not",
            attempt.bad_permits
        ));
    }
    if let Some((path, expected)) = &attempt.length {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len != *expected {
            effects.push(format!(
                "{path} is {len} bytes, not {expected}: an effect was replayed"
            ));
        }
    }
    if attempt.audit
        && let Err(e) = audit_with_retry(world, cx.evidence)
    {
        effects.push(e);
    }
    // What an agent may do as the operator (an unconfined agent of the
    // operator's uid, where the docs say so) is a limit, not an escape.
    let operator =
        |problem: String, effects: &mut Vec<String>, limits: &mut Vec<String>| match &attempt
            .operator_limit
        {
            Some(limit) => limits.push(format!("{problem} ({limit})")),
            None => effects.push(problem),
        };
    if attempt.evidence {
        let (forbidden, by_operator) = evidence_problems(world, cx.evidence, cx.approvals_allowed);
        effects.extend(forbidden);
        for problem in by_operator {
            operator(problem, &mut effects, &mut limits);
        }
    }
    if attempt.not_halted {
        match kernel_enforcer::session::control::request(
            cx.control,
            &kernel_enforcer::session::control::ControlRequest::Status,
        ) {
            Ok(r) if r.data.get("halted").is_some_and(serde_json::Value::is_null) => {}
            Ok(r) => operator(
                format!("the kernel is halted or unwell: {}", r.data),
                &mut effects,
                &mut limits,
            ),
            Err(e) => effects.push(format!("the operator cannot reach the kernel: {e}")),
        }
    }
    if let Some(path) = &attempt.impersonated {
        effects.extend(crate::impersonation::operator_deceived(
            world,
            Path::new(path),
            cx.enforcer,
        ));
    }
    (effects, limits)
}

/// `audit verify`, retried briefly: a checkpoint being appended at that
/// moment is a torn tail, not tampering.
pub(crate) fn audit_with_retry(world: &World, evidence: &Path) -> Result<(), String> {
    let mut last = Ok(());
    for _ in 0..5 {
        last = world::audit_verify(world, evidence);
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    last
}

/// What the evidence holds that it must not, among the records that
/// appeared since the last look: allows the policy never gives (first),
/// and approvals, reloads and deployments beyond what the operator did
/// (second: the operator's acts).
pub(crate) fn evidence_problems(
    world: &mut World,
    evidence: &Path,
    approvals_allowed: usize,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut by_operator = Vec::new();
    let seen = world.evidence_seen.get(evidence).copied().unwrap_or(0);
    match world::evidence_facts(evidence) {
        Ok(facts) => {
            for (i, action) in facts.allows.iter().filter(|(i, _)| *i >= seen) {
                if let Some(p) = world::forbidden_allow(world, action) {
                    problems.push(format!("record {i}: {p}"));
                }
            }
            let deployments: Vec<usize> = facts
                .allows
                .iter()
                .filter(|(_, a)| {
                    matches!(a, kernel_core::Action::ToolCall { name, .. } if name == "deploy")
                })
                .map(|(i, _)| *i)
                .collect();
            let approvals = facts.approvals.len();
            // The operator approves once, without a standing grant: one
            // deployment at most. (Approvals the agent gave itself are
            // reported below; what they allow follows from them.)
            if approvals <= approvals_allowed
                && deployments.len() > approvals
                && deployments.iter().any(|i| *i >= seen)
            {
                problems.push(format!(
                    "{} deployment(s) allowed, {approvals} approval(s) given",
                    deployments.len()
                ));
            }
            if approvals > approvals_allowed && facts.approvals.iter().any(|i| *i >= seen) {
                by_operator.push(format!(
                    "{approvals} approval(s) recorded, the operator gave {approvals_allowed}"
                ));
            }
            let reloads = facts.reloads.iter().filter(|i| **i >= seen).count();
            if reloads > 0 {
                by_operator.push(format!(
                    "{reloads} policy reload(s) recorded; the operator asked for none"
                ));
            }
            world
                .evidence_seen
                .insert(evidence.to_owned(), facts.records);
        }
        Err(e) => problems.push(format!("evidence unreadable: {e}")),
    }
    (problems, by_operator)
}
