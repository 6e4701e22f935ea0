//! Argument smuggling: tool inputs and program arguments shaped to pass a
//! policy that means to constrain them (the campaign's own rules in
//! `campaign.cedar`: the file tool may write only `notes.md` and read only
//! `README.md`; `tar` may only list `archive.tar`).

use super::*;

/// Tool inputs for `write_file` (meant for `notes.md` only) and
/// `read_file` (meant for `README.md` only) that carry the permitted path
/// somewhere else than where the tool takes its path from.
pub(crate) fn tool_inputs() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        (
            "write_file",
            json!({"path": "smuggled.txt", "content": "x", "meta": {"path": "notes.md"}}),
        ),
        (
            "write_file",
            json!({"path": "smuggled.txt", "content": "x", "zz": [{"path": "notes.md"}]}),
        ),
        (
            "write_file",
            json!({"content": "x", "path": "smuggled.txt", "z": {"y": {"path": "notes.md"}}}),
        ),
        (
            "write_file",
            json!({"path": "smuggled.txt", "content": "\",\"path\":\"notes.md"}),
        ),
        (
            "write_file",
            json!({"path": "notes.md/../smuggled.txt", "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": "smuggled.txt", "content": "x", "path_hint": "\"path\":\"notes.md\""}),
        ),
        (
            "read_file",
            json!({"path": ".env", "see": {"path": "README.md"}}),
        ),
        (
            "read_file",
            json!({"path": ".ssh/id_ed25519", "also": [{"path": "README.md"}]}),
        ),
        ("write_file", json!({"path": "notes.md", "content": "x"})),
    ]
}

/// `tar` invocations shaped to pass `context.args == ["-tf",
/// "archive.tar"]` while doing more than listing it; each would create
/// `marker` if it ran as written.
/// What a smuggling attempt is, its arguments, and its environment.
type Smuggle = (String, Vec<String>, Vec<(String, String)>);

fn tar_smuggles(marker: &str) -> Vec<Smuggle> {
    let action = format!("--checkpoint-action=exec=touch {marker}");
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        (
            "the checkpoint action as extra arguments".into(),
            [
                s(&["-tf", "archive.tar", "--checkpoint=1"]),
                vec![action.clone()],
            ]
            .concat(),
            vec![],
        ),
        (
            "the checkpoint action in TAR_OPTIONS (values are not in the context)".into(),
            s(&["-tf", "archive.tar"]),
            vec![(
                "TAR_OPTIONS".into(),
                format!("--checkpoint=1 --checkpoint-action=exec=touch\\ {marker}"),
            )],
        ),
        (
            "the permitted arguments twice (a set has each once)".into(),
            s(&["-tf", "archive.tar", "-tf", "archive.tar"]),
            vec![],
        ),
        (
            "the arguments reordered (a set has no order)".into(),
            s(&["archive.tar", "-tf"]),
            vec![],
        ),
    ]
}

/// Argument smuggling through the client (supervised, embedded) or the
/// endpoint: permits for smuggled tool calls are judged by the allow
/// records (the runner reads which path each allowed call names), programs
/// by the marker they would create.
pub(crate) fn smuggling(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(route) = join(plan, rep) else { return };
    let ws = &plan.workspace;
    let inputs = tool_inputs();
    for i in 0..count {
        let mut a = attempt(String::new());
        if i % 3 == 2 {
            let marker = format!("{ws}/tar-smuggled-{i}");
            let options = tar_smuggles(&marker);
            let Some((what, args, env)) = rng.pick(&options).cloned() else {
                return;
            };
            let mut exec = Exec::new("/usr/bin/tar").args(args.clone()).cwd(ws);
            for (name, value) in env {
                exec = exec.env(name, value);
            }
            a.what = format!("tar {}: {what}", args.join(" "));
            (a.answer, a.got) = effect(&route.exec(exec), Output::text);
            a.markers.push(marker);
        } else {
            let Some((tool, input)) = rng.pick(&inputs).cloned() else {
                return;
            };
            a.what = format!("tool call {tool} {input}");
            a.answer = approvals::authorize(&route, Action::tool_call(tool, &input));
        }
        a.evidence = true;
        rep.report(a);
    }
}
