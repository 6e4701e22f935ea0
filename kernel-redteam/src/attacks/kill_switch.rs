//! The agent of a kill-switch scenario.

use super::*;

/// The agent of one kill-switch scenario: streams allowed writes (brokered,
/// or its own decided `open`s in governed mode), one file per request, as
/// fast as it can, and keeps going after the halt (also from a forked
/// child) until it is stopped.
pub(crate) fn stream(plan: &Plan, rng: &mut SplitMix64, scenario: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let dir = format!("{}/stream-{scenario}", plan.workspace);
    if plan.governed() {
        let _ = std::fs::create_dir_all(&dir);
    } else {
        let _ = route.exec(
            Exec::new("/usr/bin/python3")
                .args([
                    "-c",
                    "import os,sys; os.makedirs(sys.argv[1], exist_ok=True)",
                    dir.as_str(),
                ])
                .cwd(&plan.workspace),
        );
    }
    let fork = rng.below(2) == 0;
    let mut child = 0;
    if fork {
        // SAFETY: fork; the child only keeps sending on the channel it
        // shares with the parent (an attack: requests from a second
        // process on the same session) and exits.
        child = unsafe { libc::fork() };
        if child == 0 {
            for n in 0..1_000_000u64 {
                let _ = route.write(&format!("{dir}/child-{n}"), b"x");
            }
            // SAFETY: exit without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
    }
    let mut a = attempt("started");
    a.answer = format!("{} {child}", std::process::id());
    rep.report(a);
    for n in 0..1_000_000u64 {
        let _ = route.write(&format!("{dir}/{n}"), b"x");
    }
}
