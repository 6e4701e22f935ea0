//! Environment injection into brokered programs.

use super::*;

/// A program, the variables injected into it, and its arguments.
type Injection = (&'static str, Vec<(String, String)>, Vec<String>);

/// Environment injection into brokered programs: variables that make an
/// allowed program run code the permit did not name.
pub(crate) fn env(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let ws = plan.workspace.clone();
    let _ = route.exec(
        Exec::new("/usr/bin/git")
            .args(["init", "-q", "repo"])
            .cwd(&ws),
    );
    for i in 0..count {
        let marker = format!("{ws}/envmark-{i}");
        let inject = format!("{ws}/inject-{i}");
        let hook = format!("import os; open({marker:?}, 'w').write('x')\n");
        let _ = route.write(&format!("{inject}/sitecustomize.py"), hook.as_bytes());
        let _ = route.write(&format!("{inject}/startup.py"), hook.as_bytes());
        let sh_mark = format!("touch {marker}");
        let options: Vec<Injection> = vec![
            (
                "/usr/bin/python3",
                vec![("PYTHONPATH".into(), inject.clone())],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/python3",
                vec![
                    ("PYTHONSTARTUP".into(), format!("{inject}/startup.py")),
                    ("PYTHONINSPECT".into(), "1".into()),
                ],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/python3",
                vec![("PYTHONHOME".into(), inject.clone())],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("GIT_CONFIG_COUNT".into(), "1".into()),
                    ("GIT_CONFIG_KEY_0".into(), "core.fsmonitor".into()),
                    ("GIT_CONFIG_VALUE_0".into(), sh_mark.clone()),
                ],
                vec!["status".into()],
            ),
            (
                "/usr/bin/git",
                vec![(
                    "GIT_CONFIG_PARAMETERS".into(),
                    format!("'core.fsmonitor'='{sh_mark}'"),
                )],
                vec!["status".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("GIT_PAGER".into(), sh_mark.clone()),
                    ("PAGER".into(), sh_mark.clone()),
                ],
                vec!["-p".into(), "log".into()],
            ),
            (
                "/usr/bin/git",
                vec![("GIT_EXTERNAL_DIFF".into(), sh_mark.clone())],
                vec!["diff".into()],
            ),
            (
                "/usr/bin/git",
                vec![("GIT_SSH_COMMAND".into(), sh_mark.clone())],
                vec!["ls-remote".into(), "ssh://x/y".into()],
            ),
            (
                "/usr/bin/ls",
                vec![
                    ("LD_PRELOAD".into(), format!("{inject}/sitecustomize.py")),
                    ("LD_LIBRARY_PATH".into(), inject.clone()),
                ],
                vec![],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("BASH_ENV".into(), format!("{inject}/startup.py")),
                    ("ENV".into(), format!("{inject}/startup.py")),
                ],
                vec!["status".into()],
            ),
            (
                "/usr/bin/python3",
                vec![
                    ("LANG".into(), "C\nPYTHONPATH=x".into()),
                    ("GIT_AUTHOR_NAME\0PYTHONPATH".into(), inject.clone()),
                ],
                vec!["-c".into(), "pass".into()],
            ),
            (
                "/usr/bin/git",
                vec![
                    ("HOME".into(), inject.clone()),
                    ("XDG_CONFIG_HOME".into(), inject.clone()),
                    ("GIT_DIR".into(), plan.outside_dir.clone()),
                ],
                vec!["status".into()],
            ),
        ];
        let Some((program, vars, args)) = rng.pick(&options).cloned() else {
            return;
        };
        let mut exec = Exec::new(program)
            .args(args.clone())
            .cwd(format!("{ws}/repo"));
        for (name, value) in &vars {
            exec = exec.env(name.clone(), value.clone());
        }
        let r = route.exec(exec);
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let mut a = attempt(format!(
            "exec {program} {} with {}",
            args.join(" "),
            names.join(", ")
        ));
        (a.answer, a.got) = effect(&r, |o| format!("exit {}", o.status));
        a.markers.push(marker);
        rep.report(a);
    }
}
