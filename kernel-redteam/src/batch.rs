//! One class in one session of one mode, judged attempt by attempt.

use crate::judge::{Context, audit_with_retry, evidence_problems, judge};
use crate::modes::{Mode, Session};
use crate::report::{Judged, Progress};
use crate::world::World;
use std::time::{Duration, Instant};

/// What a batch is: which class, in which mode, how big.
#[derive(Debug, Clone)]
pub(crate) struct Batch<'a> {
    pub(crate) mode: Mode,
    pub(crate) class: &'a str,
    /// The session's name (its evidence file and control socket).
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) count: usize,
    pub(crate) flood: usize,
    /// Attempts expected, for the progress line.
    pub(crate) expected: usize,
}

/// The operator of the approvals class: approves the first deployment it
/// sees waiting, and nothing after it.
fn operator(control: std::path::PathBuf) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use kernel_enforcer::session::control::{ControlRequest, request};
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = request(&control, &ControlRequest::Pending)
                && let Some(id) = r
                    .data
                    .get(0)
                    .and_then(|p| p.get("id"))
                    .and_then(serde_json::Value::as_u64)
            {
                let _ = request(
                    &control,
                    &ControlRequest::Approve {
                        id,
                        for_secs: None,
                        uses: None,
                    },
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Runs one batch and judges every attempt, then the session as a whole.
pub(crate) fn run(
    world: &mut World,
    batch: &Batch<'_>,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let class = batch.class;
    let mut session = Session::start(
        world,
        batch.mode,
        class,
        &batch.name,
        batch.seed,
        batch.count,
        batch.flood,
    )?;
    let evidence = session.evidence.clone();
    let control = session.control.clone();
    let mut progress = Progress::new(class, batch.mode, batch.expected);
    let approvals = class == "control-approvals";
    let approvals_allowed = usize::from(approvals);
    let operator = approvals.then(|| operator(control.clone()));
    // Where the agent may act as the operator (unconfined, same uid), the
    // operator's acts it makes are a documented limit.
    let operator_is_agent = approvals && matches!(batch.mode, Mode::Endpoint | Mode::McpProxy);
    let mut reported = 0;
    while let Some(next) = session.next_attempt() {
        let attempt = match next {
            Ok((attempt, _)) => attempt,
            Err(e) => {
                session.kill();
                return Err(e);
            }
        };
        reported += 1;
        let cx = Context {
            enforcer: session.enforcer_pid(),
            evidence: &evidence,
            control: &control,
            approvals_allowed,
        };
        let (effects, limits) = judge(world, &attempt, &cx);
        let escaped = !effects.is_empty();
        if escaped || !limits.is_empty() {
            world.rebaseline();
        }
        progress.step(escaped);
        results.push(Judged {
            class: class.to_owned(),
            mode: batch.mode,
            what: attempt.what,
            answer: attempt.answer.chars().take(240).collect(),
            escaped,
            effects,
            limits,
        });
        if !session.go_on() {
            break;
        }
    }
    let (status, mut effects) = session.finish();
    if let Some(op) = operator {
        let _ = op.join();
    }
    progress.finish();
    // The batch as a whole: the evidence verifies and holds no forbidden
    // allow; the guarded files are as they were.
    let mut limits = Vec::new();
    if let Err(e) = audit_with_retry(world, &evidence) {
        effects.push(e);
    }
    let (forbidden, by_operator) = evidence_problems(world, &evidence, approvals_allowed);
    effects.extend(forbidden);
    if operator_is_agent {
        limits.extend(by_operator);
    } else {
        effects.extend(by_operator);
    }
    effects.extend(world.changed_files());
    world.rebaseline();
    if reported == 0 {
        return Err(format!(
            "the {} session of {class} reported nothing ({status}; see enforcer.stderr)",
            batch.mode.name()
        ));
    }
    results.push(Judged {
        class: class.to_owned(),
        mode: batch.mode,
        what: format!(
            "{}: the session's evidence and files afterwards",
            batch.name
        ),
        answer: status,
        escaped: !effects.is_empty(),
        effects,
        limits,
    });
    Ok(())
}
