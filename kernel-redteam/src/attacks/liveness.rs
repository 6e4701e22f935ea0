//! Liveness: the agent puts itself (or the kernel) in a state that could
//! keep the kill switch from ending the run, then the runner halts and
//! times how long the agent (or `listen`) takes to be gone.

use super::*;

/// The states, by variant; the endpoint has its own.
const STATES: [&str; 5] = [
    "blocked in a program that never returns",
    "eight threads flooding requests",
    "a signal storm from three children on its own process group while it floods",
    "every catchable signal ignored, and a daemon forked into a session of its own",
    "waiting for an operator's approval that never comes",
];

const ENDPOINT_STATES: [&str; 4] = [
    "the broker running a program that never returns",
    "eight threads flooding requests",
    "sixty connections greeted and silent, holding and queueing for the turn",
    "a frame announced at 4 GiB, sent a byte at a time",
];

/// Enters state `variant` after reporting it; never returns on its own.
pub(crate) fn liveness(plan: &Plan, variant: usize, rep: &mut Reporter) {
    let states: &[&str] = if plan.endpoint() {
        &ENDPOINT_STATES
    } else if plan.governed() {
        // No client, so no approval to wait for.
        STATES.get(..4).unwrap_or_default()
    } else {
        &STATES
    };
    let index = variant % states.len();
    let approval = (!plan.endpoint() && index == 4).then_some(Duration::from_secs(600));
    let route = match Route::join_with(plan, approval) {
        Ok(route) => route,
        Err(e) => return rep.report(attempt(format!("join: {e}"))),
    };
    let ws = plan.workspace.clone();
    let secret = plan.workspace_secrets.first().cloned().unwrap_or_default();
    let mut a = attempt(states.get(index).copied().unwrap_or_default());
    a.answer = format!("{}", std::process::id());
    rep.report(a);
    let route = std::sync::Arc::new(route);
    let flood = |route: std::sync::Arc<Route>| {
        for _ in 0..8 {
            let route = std::sync::Arc::clone(&route);
            let (ws, secret) = (ws.clone(), secret.clone());
            std::thread::spawn(move || {
                loop {
                    let _ = route.read(&format!("{ws}/README.md"));
                    let _ = route.read(&secret);
                }
            });
        }
    };
    match (plan.endpoint(), index) {
        (_, 0) => {
            let _ = route.exec(
                Exec::new("/usr/bin/python3")
                    .args(["-c", "import time; time.sleep(1000)"])
                    .cwd(&ws),
            );
        }
        (_, 1) => flood(std::sync::Arc::clone(&route)),
        (true, 2) => {
            let mut held: Vec<endpoint_raw::Conn> = (0..60)
                .filter_map(|_| endpoint_raw::Conn::open(plan).ok())
                .collect();
            for c in &mut held {
                let hello = encode_client_frame(&ClientFrame::Hello {
                    protocol: PROTOCOL_VERSION,
                    challenge: [7; 32],
                });
                let mut framed = u32::try_from(hello.len())
                    .unwrap_or(0)
                    .to_be_bytes()
                    .to_vec();
                framed.extend_from_slice(&hello);
                let _ = c.raw(&framed);
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let _ = held.len();
            }
        }
        (true, _) => {
            if let Ok(mut c) = endpoint_raw::Conn::open(plan) {
                let _ = c.raw(&u32::MAX.to_be_bytes());
                loop {
                    if c.raw(b"x").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        (false, 2) => {
            for _ in 0..3 {
                // SAFETY: fork; the child only sends signals and sleeps.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    let signals = [
                        libc::SIGSTOP,
                        libc::SIGCONT,
                        libc::SIGTSTP,
                        libc::SIGCONT,
                        libc::SIGCHLD,
                        libc::SIGURG,
                        libc::SIGWINCH,
                        libc::SIGTTIN,
                        libc::SIGCONT,
                    ];
                    loop {
                        for signal in signals {
                            // SAFETY: a signal to its own process group.
                            unsafe {
                                libc::kill(0, signal);
                            }
                        }
                    }
                }
            }
            flood(std::sync::Arc::clone(&route));
        }
        (false, 3) => {
            for signal in 1..32 {
                // SAFETY: ignoring a signal; SIGKILL and SIGSTOP refuse.
                unsafe {
                    libc::signal(signal, libc::SIG_IGN);
                }
            }
            // SAFETY: fork, then setsid and fork again in the child: the
            // grandchild only sleeps.
            unsafe {
                if libc::fork() == 0 {
                    libc::setsid();
                    if libc::fork() == 0 {
                        loop {
                            libc::sleep(1000);
                        }
                    }
                    libc::_exit(0);
                }
            }
        }
        (false, _) => {
            let _ = approvals::authorize(
                &route,
                Action::tool_call("deploy", &serde_json::json!({"environment": "liveness"})),
            );
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
