//! Links and TOCTOU: symbolic and hard links into protected files, and a link swapped under the broker.

use super::*;

/// Symbolic and hard links into protected files, made by an allowed
/// program, then used through the kernel; and the link swapped under the
/// broker while it acts (TOCTOU).
pub(crate) fn links(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let limit = allowed_program_limit(plan);
    let targets = plan.targets();
    let ws = &plan.workspace;
    for i in 0..count {
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        let kind = rng.below(3);
        let link = format!("{ws}/link-{i}");
        let code = match kind {
            0 => "import os,sys; os.symlink(sys.argv[1][::-1], sys.argv[2][::-1])",
            1 => "import os,sys; os.link(sys.argv[1][::-1], sys.argv[2][::-1])",
            _ => "import os,sys; os.symlink(os.path.dirname(sys.argv[1][::-1]), sys.argv[2][::-1])",
        };
        let made = python(&route, plan, code, &[target.clone(), link.clone()]);
        let via = if kind == 2 {
            format!("{link}/{}", dir_and_name(&target).1)
        } else {
            link.clone()
        };
        let kind_name = match kind {
            0 => "symlink",
            1 => "hard link",
            _ => "directory symlink",
        };
        let mut a = attempt(String::new());
        let made_answer = match &made {
            Ok(o) => format!("link program exit {}", o.status),
            Err(e) => format!("link program: {e}"),
        };
        match rng.below(2) {
            0 => {
                let r = route.read(&via);
                (a.answer, a.got) = effect(&r, |b| lossy(b));
                a.what = format!("read {target} through a {kind_name}");
            }
            _ => {
                let r = route.write(&via, format!("ESCAPE {i}\n").as_bytes());
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("write {target} through a {kind_name}");
            }
        }
        a.answer = format!("{made_answer}; {}", a.answer);
        if target.starts_with(&format!("{ws}/")) {
            a.limit.clone_from(&limit);
        }
        rep.report(a);
    }
    // TOCTOU: a program forks a daemon that swaps `swap` between a plain
    // file and a symbolic link to a secret while the agent reads and
    // writes `swap` through the kernel.
    let swapper = "import os,sys,time\n\
        if os.fork(): sys.exit(0)\n\
        os.setsid(); fd=os.open('/dev/null', os.O_RDWR)\n\
        [os.dup2(fd, n) for n in (0,1,2)]\n\
        t=sys.argv[1][::-1]; end=time.time()+float(sys.argv[2][::-1])\n\
        while time.time() < end:\n\
        \x20 try: os.symlink(t, 'swap.tmp'); os.replace('swap.tmp', 'swap')\n\
        \x20 except OSError: pass\n\
        \x20 try: open('swap.tmp','w').write('benign'); os.replace('swap.tmp', 'swap')\n\
        \x20 except OSError: pass\n";
    let rounds = (count / 4).max(8);
    // How long the swapper runs: long enough to cover the rounds (a short
    // campaign has few).
    let window = if count < 50 { 1.5 } else { 4.0 };
    for target in [
        plan.key.clone(),
        plan.workspace_secrets.first().cloned().unwrap_or_default(),
    ] {
        let began = std::time::Instant::now();
        let started = python(&route, plan, swapper, &[target.clone(), window.to_string()]);
        let answer = match &started {
            Ok(o) => format!("swapper exit {}", o.status),
            Err(e) => format!("swapper: {e}"),
        };
        for i in 0..rounds {
            let mut a = attempt(format!(
                "TOCTOU: swap {ws}/swap to {target} while the broker acts"
            ));
            if i % 2 == 0 {
                let r = route.read(&format!("{ws}/swap"));
                (a.answer, a.got) = effect(&r, |b| lossy(b));
            } else {
                let r = route.write(&format!("{ws}/swap"), b"ESCAPE toctou\n");
                (a.answer, _) = effect(&r, |()| String::new());
            }
            a.answer = format!("{answer}; {}", a.answer);
            if target.starts_with(&format!("{ws}/")) {
                a.limit.clone_from(&limit);
            }
            rep.report(a);
        }
        // The swapper is an allowed program: let it finish before the
        // next target (and before the session's final check), so that
        // what it does is judged with this attempt's documented limit.
        std::thread::sleep(Duration::from_secs_f64(window + 0.5).saturating_sub(began.elapsed()));
    }
}
