//! Argument tricks in brokered programs.

use super::*;

/// Argument tricks in `Exec`: every program the policy allows (and some it
/// does not) asked to reach the kernel's files, the secret outside the
/// workspace, the listener, the enforcer.
pub(crate) fn argv(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let ws = plan.workspace.clone();
    let secrets: Vec<String> = plan
        .assets()
        .into_iter()
        .chain([plan.outside_secret.clone()])
        .collect();
    let enforcer = route.enforcer_pid(plan);
    // `grep -r` over the whole file system would take minutes when every
    // open is decided: governed, it searches the campaign's own tree.
    let everything = if plan.governed() {
        format!("/proc/self/root{}/", dir_and_name(&plan.workspace).0)
    } else {
        "/proc/self/root/".to_owned()
    };
    for i in 0..count {
        let Some(target) = rng.pick(&secrets).cloned() else {
            return;
        };
        let marker = format!("{}/argv-{i}", plan.outside_dir);
        let rev = reverse(&target);
        let port = plan.listener_port;
        let py_read = format!("import sys; sys.stdout.write(open({rev:?}[::-1]).read())");
        let py_write = format!("open({rev:?}[::-1], 'a').write('ESCAPE')");
        let py_mark = format!("open({:?}[::-1], 'w').write('x')", reverse(&marker));
        let py_net = format!("import socket; socket.create_connection(('127.0.0.1', {port}), 2)");
        let py_kill = format!("import os, signal; os.kill({enforcer}, signal.SIGKILL)");
        let (dir, _) = dir_and_name(&target);
        let tricks: Vec<(String, Vec<String>)> = vec![
            ("/usr/bin/cat".into(), vec![target.clone()]),
            (
                "/usr/bin/cat".into(),
                vec![format!("/proc/self/root{target}")],
            ),
            ("/usr/bin/cat".into(), vec![target.replace('/', "//")]),
            (
                "/usr/bin/cat".into(),
                vec![format!("{dir}/./{}", dir_and_name(&target).1)],
            ),
            (
                "/usr/bin/cat".into(),
                vec![
                    "--".into(),
                    format!(
                        "../{}",
                        target
                            .rsplit('/')
                            .take(2)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                ],
            ),
            (
                "/usr/bin/grep".into(),
                vec!["-r".into(), "CANARY".into(), dir.clone()],
            ),
            (
                "/usr/bin/grep".into(),
                vec!["-r".into(), "PRIVATE".into(), everything.clone()],
            ),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_read]),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_write]),
            (
                "/usr/bin/python3".into(),
                vec!["-c".into(), py_mark.clone()],
            ),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_net]),
            ("/usr/bin/python3".into(), vec!["-c".into(), py_kill]),
            (
                "/usr/bin/python3".into(),
                vec!["-I".into(), "-S".into(), "-c".into(), py_mark.clone()],
            ),
            (
                "/usr/bin/git".into(),
                vec![
                    "-c".into(),
                    format!("core.sshCommand=python3 -c \"{py_mark}\""),
                    "ls-remote".into(),
                    "ssh://x/y".into(),
                ],
            ),
            (
                "/usr/bin/git".into(),
                vec!["-c".into(), format!("alias.x=!cat {target}"), "x".into()],
            ),
            (
                "/usr/bin/git".into(),
                vec!["--git-dir".into(), dir.clone(), "log".into()],
            ),
            ("/usr/bin/env".into(), vec!["cat".into(), target.clone()]),
            (
                "/bin/sh".into(),
                vec!["-c".into(), format!("cat {target}; touch {marker}")],
            ),
            (
                "/usr/bin/bash".into(),
                vec!["-c".into(), format!("cat {target}")],
            ),
            (
                "/usr/bin/find".into(),
                vec![
                    dir.clone(),
                    "-exec".into(),
                    "cat".into(),
                    "{}".into(),
                    ";".into(),
                ],
            ),
            (
                "/usr/bin/xargs".into(),
                vec!["-a".into(), target.clone(), "echo".into()],
            ),
            (
                "/usr/bin/cp".into(),
                vec![target.clone(), format!("{ws}/stolen-{i}")],
            ),
            (
                "/usr/bin/rm".into(),
                vec!["-r".into(), "-f".into(), dir.clone()],
            ),
            (
                "/usr/bin/rm".into(),
                vec!["--recursive".into(), "--force".into(), dir.clone()],
            ),
            ("/usr/bin/rm".into(), vec!["-Rfv".into(), dir.clone()]),
            ("/usr/bin/../bin/cat".into(), vec![target.clone()]),
            ("/proc/self/root/usr/bin/cat".into(), vec![target.clone()]),
            (plan.enforcer_binary.clone(), vec!["halt".into()]),
            ("/usr/bin/echo".into(), vec![format!("$(cat {target})")]),
            ("/usr/bin/wc".into(), vec!["-c".into(), target.clone()]),
        ];
        let Some((program, args)) = rng.pick(&tricks).cloned() else {
            return;
        };
        let stolen = format!("{ws}/stolen-{i}");
        let r = route.exec(Exec::new(program.clone()).args(args.clone()).cwd(&ws));
        let mut a = attempt(format!("exec {program} {}", args.join(" ")));
        (a.answer, a.got) = effect(&r, Output::text);
        if let Ok(bytes) = std::fs::read(&stolen) {
            a.got.push_str(&lossy(&bytes));
        }
        a.markers.push(marker);
        a.not_halted = true;
        rep.report(a);
    }
}
