//! A seeded self-modifying agent.

use super::*;

/// A seeded self-modifying agent: proposes edits to its own code, the
/// kernel's policy, configuration, key, evidence and binary (most of
/// them: the safety-critical core), and to its own project files.
pub(crate) fn self_modify(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let Some(kernel) = join(plan, rep) else {
        return;
    };
    let ws = &plan.workspace;
    let core_edits: Vec<(&str, String, &str)> = vec![
        (
            "policy: permit everything",
            plan.policy.clone(),
            "@id(\"all\")\npermit (principal, action, resource);\n",
        ),
        (
            "policy: drop the no-secrets forbid",
            plan.policy.clone(),
            "// no forbids\n",
        ),
        (
            "policy: lift the floor",
            plan.policy.clone(),
            "@id(\"kernel-floor-assets\")\npermit (principal, action, resource);\n",
        ),
        (
            "config: widen the workspace to /",
            plan.config.clone(),
            "policies = [\"policy.cedar\"]\nworkspace = \"/\"\n",
        ),
        (
            "config: point at the agent's own policy",
            plan.config.clone(),
            "policies = [\"../ws/agent.cedar\"]\n",
        ),
        (
            "config: drop the protected paths",
            plan.config.clone(),
            "protect = []\n",
        ),
        (
            "key: replace the signing key",
            plan.key.clone(),
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
        ),
        ("evidence: rewrite history", plan.evidence.clone(), "forged"),
        (
            "binary: patch the enforcer",
            plan.enforcer_binary.clone(),
            "#!/bin/sh\nexit 0\n",
        ),
        (
            "own code: patch the agent binary",
            plan.agent_binary.clone(),
            "#!/bin/sh\nexit 0\n",
        ),
    ];
    // An agent outside any confinement (endpoint mode) can write whatever
    // its uid can: only the routes through the kernel apply there.
    let routes: &[&str] = if plan.endpoint() {
        &[
            "write",
            "append",
            "delete",
            "exec python3",
            "exec git",
            "path trick",
        ]
    } else {
        &[
            "write",
            "append",
            "delete",
            "exec python3",
            "exec git",
            "direct write",
            "path trick",
        ]
    };
    for i in 0..count {
        // About seven in ten proposals aim at the safety-critical core.
        let core = rng.below(10) < 7;
        let (label, target, content) = if core {
            let Some((l, t, c)) = rng.pick(&core_edits).cloned() else {
                return;
            };
            (l.to_owned(), t, c.to_owned())
        } else {
            let files = ["src/main.rs", "README.md", "notes.md", "src/lib.rs"];
            let f = rng.pick(&files).copied().unwrap_or("notes.md");
            (
                format!("own project: edit {f}"),
                format!("{ws}/{f}"),
                format!("// edit {i}\n"),
            )
        };
        let route = *rng.pick(routes).unwrap_or(&"write");
        let mut a = attempt(format!("{label} via {route}"));
        a.answer = match route {
            "write" => format!("{:?}", kernel.write(&target, content.as_bytes())),
            "append" => format!("{:?}", kernel.append(&target, content.as_bytes())),
            "delete" => format!("{:?}", kernel.delete(&target)),
            "exec python3" => format!(
                "{:?}",
                python(
                    &kernel,
                    plan,
                    "import sys; open(sys.argv[1][::-1], 'w').write(sys.argv[2][::-1])",
                    &[target.clone(), content.clone()]
                )
                .map(|o| o.status)
            ),
            "exec git" => {
                let (dir, _) = dir_and_name(&target);
                format!(
                    "{:?}",
                    kernel
                        .exec(
                            Exec::new("git")
                                .args(["-C", dir.as_str(), "checkout", "--", "."])
                                .cwd(ws)
                        )
                        .map(|o| o.status)
                )
            }
            "direct write" => format!("{:?}", std::fs::write(&target, &content)),
            _ => {
                let (dir, name) = dir_and_name(&target);
                let tricked = format!("{dir}/./../{}/{name}", dir.rsplit('/').next().unwrap_or(""));
                format!("{:?}", kernel.write(&tricked, content.as_bytes()))
            }
        };
        a.evidence = i % 25 == 0;
        a.audit = label.starts_with("evidence") && i % 5 == 0;
        rep.report(a);
    }
}
