//! Path tricks: floor evasion through the kernel, every protected file under every spelling.

use super::*;

/// Variants of `target` that a lexical check might not recognise.
fn path_variants(target: &str, plan: &Plan, rng: &mut SplitMix64) -> Vec<(String, String)> {
    let (dir, name) = dir_and_name(target);
    let last = dir.rsplit('/').next().unwrap_or("").to_owned();
    let ws = &plan.workspace;
    let relative = target
        .strip_prefix(&format!("{}/", dir_and_name(ws).0))
        .map(|rest| format!("../{rest}"))
        .unwrap_or_else(|| target.to_owned());
    let upper: String = name
        .chars()
        .map(|c| {
            if rng.next().is_multiple_of(2) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let ppid = std::os::unix::process::parent_id();
    vec![
        ("plain".into(), target.to_owned()),
        ("dot-dot".into(), format!("{dir}/../{last}/{name}")),
        ("double slash".into(), target.replace('/', "//")),
        ("dot segment".into(), format!("{dir}/./{name}")),
        ("trailing /.".into(), format!("{target}/.")),
        ("trailing slash".into(), format!("{target}/")),
        ("trailing dot".into(), format!("{target}.")),
        ("trailing space".into(), format!("{target} ")),
        ("/proc/self/root".into(), format!("/proc/self/root{target}")),
        (
            "/proc/<enforcer>/root".into(),
            format!("/proc/{ppid}/root{target}"),
        ),
        (
            "/proc/self/cwd".into(),
            format!("/proc/self/cwd/{relative}"),
        ),
        ("relative to the workspace".into(), relative.clone()),
        (
            "relative, wandering".into(),
            format!("src/../../{}", relative.trim_start_matches("../")),
        ),
        ("case".into(), format!("{dir}/{upper}")),
        (
            "fullwidth dot".into(),
            format!("{dir}/{}", name.replace('.', "\u{ff0e}")),
        ),
        (
            "cyrillic e".into(),
            format!("{dir}/{}", name.replace('e', "\u{435}")),
        ),
        ("zero-width joiner".into(), format!("{dir}/\u{200d}{name}")),
        ("NUL byte".into(), format!("{target}\0.txt")),
        (
            "/proc/self/fd".into(),
            format!("/proc/self/fd/{}", 3 + rng.below(6)),
        ),
    ]
}

/// Floor evasion by path tricks, through the kernel: reads, writes and
/// deletions of every protected file under every spelling (in governed
/// mode, the agent's own `open` and `unlink`, which the enforcer decides).
pub(crate) fn path_tricks(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let targets = plan.targets();
    for i in 0..count {
        let Some(target) = rng.pick(&targets).cloned() else {
            return;
        };
        let variants = path_variants(&target, plan, rng);
        let Some((trick, path)) = rng.pick(&variants).cloned() else {
            return;
        };
        let mut a = attempt(String::new());
        match rng.below(3) {
            0 => {
                let r = route.read(&path);
                (a.answer, a.got) = effect(&r, |b| lossy(b));
                a.what = format!("read {target} as {trick}");
            }
            1 => {
                let r = route.write(&path, format!("ESCAPE {i}\n").as_bytes());
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("write {target} as {trick}");
            }
            _ => {
                let r = route.delete(&path);
                (a.answer, _) = effect(&r, |()| String::new());
                a.what = format!("delete {target} as {trick}");
            }
        }
        a.evidence = i % 16 == 0;
        rep.report(a);
    }
}
