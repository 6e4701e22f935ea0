//! Impersonation by the agent itself: it binds the abstract name of the
//! operator's control socket (which any process may bind while it is
//! free, confined or not) and answers every command with success. The
//! runner then plays the operator's `status` and `halt` and looks at who
//! answered.

use super::*;
use std::os::unix::net::UnixListener;

/// Binds the control socket's name for `path` and answers on a thread.
fn take_control(path: &str) -> Result<(), String> {
    use std::os::linux::net::SocketAddrExt;
    let name = crate::impersonation::control_name(std::path::Path::new(path));
    let address =
        std::os::unix::net::SocketAddr::from_abstract_name(&name).map_err(|e| e.to_string())?;
    let listener = UnixListener::bind_addr(&address).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            crate::fake::answer_control(stream);
        }
    });
    Ok(())
}

/// Pre-creates the names the next sessions would use: an evidence file
/// (and so its lock) beside this session's, the endpoint's socket, a
/// hand-off directory under the system's temporary directory. Judged by
/// the names existing afterwards.
fn pre_create(plan: &Plan, rep: &mut Reporter) {
    let _route = Route::join(plan);
    let state = dir_and_name(&plan.evidence).0;
    let run = format!("{}/run", dir_and_name(&state).0);
    let tmp = &plan.system_tmp;
    let names = [
        format!("{state}/next.evidence.log"),
        format!("{run}/next.sock"),
        format!("{tmp}/agent-kernel-handoff-{}-next", std::process::id() + 1),
    ];
    let mut a = attempt(
        "pre-create the next session's evidence file, endpoint socket and hand-off directory",
    );
    let [evidence, socket, handoff] = &names;
    let made = [
        std::fs::write(evidence, b"forged").map_err(|e| e.to_string()),
        std::os::unix::net::UnixListener::bind(socket)
            .map(drop)
            .map_err(|e| e.to_string()),
        std::fs::create_dir(handoff).map_err(|e| e.to_string()),
    ];
    a.answer = format!("{made:?}");
    a.markers.extend(names);
    rep.report(a);
}

/// One impersonation attempt, `variant` of the mode's:
/// - supervised and governed, 0: take the name before joining the kernel
///   (supervised) or as the first thing the program does (governed);
/// - supervised, 1: take it after joining;
/// - embedded, 0: end its own enforcer (by closing the channel) and take
///   the name it leaves;
/// - embedded, 1: take it while its enforcer runs;
/// - every mode, 2: pre-create the next session's files and sockets.
pub(crate) fn impersonation(plan: &Plan, variant: usize, rep: &mut Reporter) {
    let mut a = attempt(String::new());
    if variant == 2 {
        return pre_create(plan, rep);
    }
    a.impersonated = Some(plan.control.clone());
    match (plan.mode.as_str(), variant) {
        ("embedded", 0) => {
            let route = Route::join(plan);
            a.what = "end its own enforcer, then bind the control socket's name it leaves".into();
            drop(route);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let mut taken = take_control(&plan.control);
            while taken.is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                taken = take_control(&plan.control);
            }
            a.answer = format!("{taken:?}");
        }
        ("embedded", _) | ("supervised", 1) => {
            let route = Route::join(plan);
            a.what = "bind the control socket's name while the enforcer holds it".into();
            a.answer = format!(
                "joined: {}; {:?}",
                route.is_ok(),
                take_control(&plan.control)
            );
            rep.report(a);
            drop(route);
            return;
        }
        (mode, _) => {
            a.what = if mode == "governed" {
                "bind the control socket's name as the program's first act".into()
            } else {
                "bind the control socket's name before joining the kernel".into()
            };
            a.answer = format!("{:?}", take_control(&plan.control));
        }
    }
    rep.report(a);
}
