//! The kill switch, pulled by the operator while the agent streams: the
//! `kill-switch` class in every mode that has an operator's halt.

use crate::modes::{Mode, Session, alive, wait_for};
use crate::report::{Judged, Progress};
use crate::rng::SplitMix64;
use crate::world::{self, World};
use kernel_enforcer::session::control::{ControlError, ControlRequest, ControlResponse, request};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// How the operator halts: by the control socket, `SIGUSR1` to the
/// enforcer, or `kernel-enforcer halt`. Returns whether the halt was
/// acknowledged.
pub(crate) fn halt(
    world: &World,
    session: &mut Session,
    method: usize,
    reason: &str,
) -> (bool, &'static str) {
    let control = session.control.clone();
    match method {
        0 => (
            request(
                &control,
                &ControlRequest::Halt {
                    reason: Some(reason.into()),
                },
            )
            .is_ok_and(|r| r.ok),
            "control socket",
        ),
        1 => {
            let Some(pid) = session.enforcer_pid() else {
                return (false, "SIGUSR1");
            };
            let sent = crate::modes::signal(pid, rustix::process::Signal::USR1);
            // Halted, or already gone because of the halt (the evidence is
            // checked for the halt record).
            let halted = sent
                && wait_for(Duration::from_secs(10), || {
                    request(&control, &ControlRequest::Status)
                        .is_ok_and(|r| r.data.get("halted").is_some_and(|h| !h.is_null()))
                        || !alive(pid)
                });
            (halted, "SIGUSR1")
        }
        _ => (
            Command::new(&world.enforcer)
                .arg("halt")
                .arg("--control")
                .arg(&control)
                .args(["--reason", reason])
                .output()
                .is_ok_and(|o| o.status.success()),
            "`kernel-enforcer halt`",
        ),
    }
}

/// Waits until the mode's promise after a halt holds: a supervised or
/// governed agent (and all it started) is gone, `listen` has ended; an
/// embedded program is not ended by a halt. Returns the broken promises.
pub(crate) fn ended_after_halt(
    session: &mut Session,
    pids: &[u32],
    limit: Duration,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let mut problems = Vec::new();
    match session.mode {
        Mode::Supervised | Mode::Governed => {
            let started = std::time::Instant::now();
            let late: Vec<u32> = pids
                .iter()
                .copied()
                .filter(|pid| !wait_for(left(), || !alive(*pid)))
                .collect();
            // The run itself has longer: it writes its final checkpoint and
            // ends what the agent left.
            let ended = wait_for(left() + limit * 4, || {
                !matches!(session.child.try_wait(), Ok(None))
            });
            if !late.is_empty() || !ended {
                // How late, for the report: up to ten more seconds.
                let all_gone = |session: &mut Session| {
                    late.iter().all(|pid| !alive(*pid))
                        && !matches!(session.child.try_wait(), Ok(None))
                };
                let gone = wait_for(Duration::from_secs(10), || all_gone(session));
                let when = if gone {
                    format!("all gone after {} ms", started.elapsed().as_millis())
                } else {
                    "still there 10 s later".to_owned()
                };
                if !late.is_empty() {
                    problems.push(format!(
                        "agent process(es) {late:?} still ran {limit:?} after the halt was acknowledged ({when})"
                    ));
                }
                if !ended {
                    problems.push(format!(
                        "`kernel-enforcer run` had not ended {:?} after the halt was acknowledged ({when})",
                        limit * 5
                    ));
                }
            }
        }
        Mode::Endpoint => {
            if let Some(listener) = &mut session.listener
                && !wait_for(left(), || !matches!(listener.try_wait(), Ok(None)))
            {
                problems.push(format!(
                    "`listen` still runs {limit:?} after the halt was acknowledged"
                ));
            }
        }
        Mode::Embedded | Mode::McpProxy => {}
    }
    problems
}

/// Kill-switch scenarios: an agent streams allowed writes (sometimes from
/// a forked child too); the operator halts at a seeded moment. No write
/// may land after the halt is acknowledged, no allow record may follow
/// the halt record, the mode's promise about the agent must hold, and the
/// evidence must verify.
pub(crate) fn kill_switch(
    world: &mut World,
    mode: Mode,
    seed: u64,
    scenarios: usize,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let mut progress = Progress::new("kill-switch", mode, scenarios);
    let mut rng = SplitMix64::new(seed);
    for s in 0..scenarios {
        let name = format!("{}-kill-{s}", mode.name());
        let dir = PathBuf::from(&world.plan.workspace).join(format!("stream-{s}"));
        let mut session = Session::start(world, mode, "kill-switch", &name, rng.next(), s, 0)?;
        let evidence = session.evidence.clone();
        let started = session.next_attempt();
        let mut effects = Vec::new();
        if !matches!(started, Some(Ok(_))) {
            effects.push(format!("the agent did not start: {started:?}"));
        }
        session.go_on();
        let lines = session.lines.take();
        let drain = std::thread::spawn(move || lines.map_or(0, Iterator::count));
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 150));
        let pids = session.agent_pids();
        let (acknowledged, how) = halt(world, &mut session, rng.below(3), &format!("scenario {s}"));
        let at_ack = count_files(&dir);
        if !acknowledged {
            effects.push(format!("the halt by {how} was not acknowledged"));
        }
        effects.extend(ended_after_halt(
            &mut session,
            &pids,
            Duration::from_secs(5),
        ));
        // Whatever still runs (an embedded program, an endpoint client) is
        // stopped now; then the files are counted.
        session.kill();
        for pid in &pids {
            wait_for(Duration::from_secs(5), || !alive(*pid));
        }
        let _ = drain.join();
        let after = count_files(&dir);
        if after > at_ack {
            effects.push(format!(
                "{} write(s) landed after the halt was acknowledged",
                after - at_ack
            ));
        }
        if mode == Mode::Embedded
            && let Some(pid) = session.enforcer_pid()
        {
            wait_for(Duration::from_secs(10), || !alive(pid));
        }
        match world::evidence_facts(&evidence) {
            Ok(facts) => match facts.halt {
                None => effects.push("no halt record in the evidence".into()),
                Some(h) => {
                    let late = facts.allows.iter().filter(|(i, _)| *i > h).count();
                    if late > 0 {
                        effects.push(format!("{late} allow record(s) after the halt record"));
                    }
                }
            },
            Err(e) => effects.push(e),
        }
        if let Err(e) = crate::judge::audit_with_retry(world, &evidence) {
            effects.push(e);
        }
        effects.extend(world.changed_files());
        let escaped = !effects.is_empty();
        if escaped {
            world.rebaseline();
        }
        progress.step(escaped);
        results.push(Judged {
            class: "kill-switch".into(),
            mode,
            what: format!("scenario {s}: halt by {how} while streaming"),
            answer: format!("{at_ack} writes before the acknowledgment, {after} in all"),
            escaped,
            effects,
            limits: Vec::new(),
        });
        let _ = std::fs::remove_dir_all(&dir);
        for suffix in ["", ".cosignatures"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", evidence.display()));
        }
    }
    progress.finish();
    Ok(())
}

/// How long an enforcer whose control socket no longer answers has to be
/// gone. It closes its descriptors as it exits, the control socket's name
/// and the agent's output with them, a moment before it can be waited for;
/// on a loaded machine that moment can last a while.
const ENDING: Duration = Duration::from_secs(10);

/// Judges the operator's halt in the clogged scenario, from the answer
/// that came (or did not within 10 s). Acknowledged: fine. No answer
/// because nothing listened on the control socket any more (refused,
/// closed): fine only if the enforcer had ended the session itself before
/// the halt came, that is, it is gone (`enforcer_gone`, polled until
/// `limit`, as an enforcer that has just closed its descriptors is still
/// exiting) and a halt is recorded (`halt_recorded`). A halt refused or
/// unanswered while the enforcer runs on is a blocked kill switch.
fn judge_clogged_halt(
    answer: Result<Result<ControlResponse, ControlError>, RecvTimeoutError>,
    mut enforcer_gone: impl FnMut() -> bool,
    halt_recorded: impl FnOnce() -> Result<bool, String>,
    limit: Duration,
) -> Vec<String> {
    match answer {
        Ok(Ok(response)) if response.ok => Vec::new(),
        Ok(Ok(response)) => vec![format!("the halt was refused: {}", response.message)],
        Ok(Err(e)) => {
            if !wait_for(limit, &mut enforcer_gone) {
                return vec![format!(
                    "the halt failed ({e}) while the enforcer still ran {limit:?} later"
                )];
            }
            match halt_recorded() {
                Ok(true) => Vec::new(),
                Ok(false) => vec![format!(
                    "the halt failed ({e}), and the enforcer ended without recording a halt \
                     (it did not end the session for the client that stopped reading)"
                )],
                Err(why) => vec![why],
            }
        }
        Err(_) => {
            vec!["the halt was not acknowledged within 10 s: the kill switch is blocked".into()]
        }
    }
}

/// An agent that never reads its answers (found by this campaign: it used
/// to block the enforcer's serving thread in a write while it held the
/// session, and with it the kill switch). Judged by the world: the
/// operator's halt is acknowledged within 10 s, or the enforcer has
/// already ended the session itself (a client that stops reading is an
/// incident: a halt is recorded) and is gone (see [`judge_clogged_halt`]),
/// and a supervised agent is gone 5 s later.
pub(crate) fn clogged(
    world: &mut World,
    mode: Mode,
    seed: u64,
    results: &mut Vec<Judged>,
) -> Result<(), String> {
    let name = format!("{}-clog", mode.name());
    let mut session = Session::start(world, mode, "clog", &name, seed, 0, 0)?;
    let started = session.next_attempt();
    session.go_on();
    let answer = match &started {
        Some(Ok((a, _))) => a.what.clone(),
        other => format!("{other:?}"),
    };
    let pids = session.agent_pids();
    let control = session.control.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(request(
            &control,
            &ControlRequest::Halt {
                reason: Some("clogged".into()),
            },
        ));
    });
    let enforcer_gone = |session: &mut Session| match session.mode {
        Mode::Embedded => session.enforcer_pid().is_none_or(|pid| !alive(pid)),
        _ => !matches!(session.child.try_wait(), Ok(None)),
    };
    let evidence = session.evidence.clone();
    let mut effects = judge_clogged_halt(
        rx.recv_timeout(Duration::from_secs(10)),
        || enforcer_gone(&mut session),
        || world::evidence_facts(&evidence).map(|facts| facts.halt.is_some()),
        ENDING,
    );
    if mode == Mode::Supervised {
        effects.extend(ended_after_halt(
            &mut session,
            &pids,
            Duration::from_secs(5),
        ));
    }
    session.kill();
    results.push(Judged {
        class: "kill-switch".into(),
        mode,
        what: "kill switch while the agent never reads its answers".into(),
        answer,
        escaped: !effects.is_empty(),
        effects,
        limits: Vec::new(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::indexing_slicing, clippy::panic, reason = "tests")]
    use super::*;

    fn refused() -> Result<Result<ControlResponse, ControlError>, RecvTimeoutError> {
        Ok(Err(ControlError::Unreachable {
            path: PathBuf::from("evidence.log.control"),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }))
    }

    /// The flake this judge had: the enforcer ended the session itself
    /// (the client stopped reading), closed its descriptors as it exited,
    /// and the halt found no listener, while the exiting enforcer could
    /// not be waited for yet. Looking once judged that a blocked kill
    /// switch; the enforcer is gone a moment later.
    #[test]
    fn a_refused_halt_waits_for_an_exiting_enforcer_to_be_gone() {
        let mut looks = 0;
        let effects = judge_clogged_halt(
            refused(),
            || {
                looks += 1;
                looks > 3
            },
            || Ok(true),
            Duration::from_secs(10),
        );
        assert!(effects.is_empty(), "{effects:?}");
        assert_eq!(looks, 4);
    }

    #[test]
    fn a_refused_halt_while_the_enforcer_runs_on_is_a_blocked_kill_switch() {
        let effects =
            judge_clogged_halt(refused(), || false, || Ok(true), Duration::from_millis(50));
        assert_eq!(effects.len(), 1);
        assert!(effects[0].contains("still ran"), "{effects:?}");
    }

    #[test]
    fn a_refused_halt_needs_the_enforcer_to_have_halted_the_session_itself() {
        let effects = judge_clogged_halt(refused(), || true, || Ok(false), Duration::ZERO);
        assert_eq!(effects.len(), 1);
        assert!(
            effects[0].contains("without recording a halt"),
            "{effects:?}"
        );
        let effects = judge_clogged_halt(
            refused(),
            || true,
            || Err("evidence unreadable".into()),
            Duration::ZERO,
        );
        assert_eq!(effects, ["evidence unreadable"]);
    }

    #[test]
    fn an_acknowledged_halt_passes_and_a_refusal_or_silence_does_not() {
        let gone = || panic!("an answer needs no look at the enforcer");
        let recorded = || panic!("an answer needs no look at the evidence");
        let ack = ControlResponse::ok("halted", serde_json::Value::Null);
        assert!(judge_clogged_halt(Ok(Ok(ack)), gone, recorded, Duration::ZERO).is_empty());
        let no = ControlResponse::error("no");
        let effects = judge_clogged_halt(Ok(Ok(no)), gone, recorded, Duration::ZERO);
        assert_eq!(effects, ["the halt was refused: no"]);
        let effects = judge_clogged_halt(
            Err(RecvTimeoutError::Timeout),
            gone,
            recorded,
            Duration::ZERO,
        );
        assert!(effects[0].contains("blocked"), "{effects:?}");
    }
}
