//! `policy explain`: one request, its decision, and why.

use super::{Decided, FLOOR_ID_PREFIX, PolicyEngine, RequestView};
use kernel_core::{CanonicalAction, Decision, Evaluation};
use std::fmt::Write as _;

/// Everything `policy explain` shows about one request.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The canonical action, described on one line.
    pub request: String,
    /// What the policies saw, or why the request could not be built.
    pub view: Result<RequestView, crate::RequestBuildError>,
    /// The decision and the evaluation it came from.
    pub decided: Decided,
}

impl PolicyEngine {
    /// Decides `action` as [`decide_fresh`](Self::decide_fresh) does and
    /// keeps what is needed to explain the decision.
    pub fn explain(&self, action: &CanonicalAction) -> Explanation {
        Explanation {
            request: crate::describe::action(action.action()),
            view: self.view(action),
            decided: self.decide_fresh(action),
        }
    }
}

/// How a policy took part: `failed to evaluate`, `forbid`,
/// `permit, @ask` or `permit`; `None` when it is not among the matched
/// policies (a kernel condition decided).
fn role_name(evaluation: &Evaluation, id: &str) -> Option<&'static str> {
    let Evaluation::Completed {
        permits,
        forbids,
        errors,
    } = evaluation
    else {
        return None;
    };
    if errors.iter().any(|(e, _)| e == id) {
        Some("failed to evaluate")
    } else if forbids.iter().any(|f| f.id == id) {
        Some("forbid")
    } else if permits.iter().any(|p| p.id == id && p.ask) {
        Some("permit, @ask")
    } else if permits.iter().any(|p| p.id == id) {
        Some("permit")
    } else {
        None
    }
}

/// How a policy took part, for the `because` lines.
fn role(evaluation: &Evaluation, id: &str) -> String {
    role_name(evaluation, id).map_or_else(String::new, |role| format!(" ({role})"))
}

impl Explanation {
    /// Whether a floor policy is among the determining policies.
    pub fn floor_decided(&self) -> bool {
        self.decided
            .verdict
            .policies
            .iter()
            .any(|id| id.starts_with(FLOOR_ID_PREFIX))
    }

    /// The facts of [`render`](Self::render) as one JSON object (its
    /// fields are documented in the README, under `policy explain`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let verdict = &self.decided.verdict;
        let pairs = |items: &[(String, String)]| -> Map<String, Value> {
            items
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect()
        };
        let (cedar, cedar_error) = match &self.view {
            Ok(view) => (
                json!({
                    "action": view.action,
                    "resource": view.resource,
                    "in_workspace": view.in_workspace,
                    "resource_attributes": pairs(&view.attributes),
                    "context": pairs(&view.context),
                }),
                Value::Null,
            ),
            Err(reason) => (Value::Null, Value::String(reason.to_string())),
        };
        let because: Vec<Value> =
            if verdict.policies.len() == verdict.reasons.len() && !verdict.policies.is_empty() {
                verdict
                    .policies
                    .iter()
                    .zip(&verdict.reasons)
                    .map(|(id, reason)| {
                        json!({
                            "policy": id,
                            "role": role_name(&self.decided.evaluation, id),
                            "reason": reason,
                        })
                    })
                    .collect()
            } else {
                verdict
                    .reasons
                    .iter()
                    .map(|reason| json!({"policy": null, "role": null, "reason": reason}))
                    .collect()
            };
        let (errors, evaluation_failed) = match &self.decided.evaluation {
            Evaluation::Completed { errors, .. } => (
                errors
                    .iter()
                    .map(|(id, error)| json!({"policy": id, "error": error}))
                    .collect::<Vec<_>>(),
                Value::Null,
            ),
            Evaluation::Failed { reason } => (Vec::new(), Value::String(reason.clone())),
        };
        json!({
            "ok": true,
            "request": self.request,
            "cedar": cedar,
            "cedar_error": cedar_error,
            "decision": verdict.decision.as_str(),
            "policies": verdict.policies,
            "reasons": verdict.reasons,
            "because": because,
            "floor": {
                "decided": self.floor_decided(),
                "applies": self.view.as_ref().ok().map(RequestView::kernel_asset),
            },
            "errors": errors,
            "evaluation_failed": evaluation_failed,
            "needs_approval": verdict.decision == Decision::Ask,
        })
    }

    /// The explanation as lines of text for an operator.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = &self.decided.verdict;
        let _ = writeln!(out, "request:   {}", self.request);
        match &self.view {
            Ok(view) => {
                let _ = writeln!(
                    out,
                    "cedar:     Action::\"{}\" on {}{}",
                    view.action,
                    view.resource,
                    if view.in_workspace {
                        " (in Workspace::\"root\")"
                    } else {
                        " (not in Workspace::\"root\")"
                    }
                );
                for (name, value) in &view.attributes {
                    let _ = writeln!(out, "           resource.{name} = {value}");
                }
                for (name, value) in &view.context {
                    let _ = writeln!(out, "           context.{name} = {value}");
                }
            }
            Err(reason) => {
                let _ = writeln!(out, "cedar:     the request could not be built: {reason}");
            }
        }
        let _ = writeln!(out, "decision:  {}", verdict.decision.as_str());
        let mut lines = Vec::new();
        if verdict.policies.len() == verdict.reasons.len() && !verdict.policies.is_empty() {
            for (id, reason) in verdict.policies.iter().zip(&verdict.reasons) {
                let role = role(&self.decided.evaluation, id);
                lines.push(format!("{id}{role}: {reason}"));
            }
        } else {
            for reason in &verdict.reasons {
                lines.push(reason.clone());
            }
        }
        for (index, line) in lines.iter().enumerate() {
            let label = if index == 0 { "because:" } else { "" };
            let _ = writeln!(out, "{label:<10} {line}");
        }
        let floor = if self.floor_decided() {
            "decided: the request reaches one of the kernel's own assets, which no policy can allow"
        } else {
            match &self.view {
                Ok(view) if view.kernel_asset() => {
                    "applies (context.kernel_asset is true) but did not decide"
                }
                Ok(_) => {
                    "not involved: the request reaches none of the kernel's protected paths (context.kernel_asset is false)"
                }
                Err(_) => "not evaluated: the request could not be built",
            }
        };
        let _ = writeln!(out, "floor:     {floor}");
        match &self.decided.evaluation {
            Evaluation::Completed { errors, .. } if !errors.is_empty() => {
                for (index, (id, error)) in errors.iter().enumerate() {
                    let label = if index == 0 { "errors:" } else { "" };
                    let _ = writeln!(out, "{label:<10} policy `{id}` failed to evaluate: {error}");
                }
                let _ = writeln!(
                    out,
                    "           any evaluation error makes the kernel deny (Cedar alone would skip the failing policy)"
                );
            }
            Evaluation::Completed { .. } => {
                let _ = writeln!(out, "errors:    none");
            }
            Evaluation::Failed { reason } => {
                let _ = writeln!(
                    out,
                    "errors:    the request could not be evaluated ({reason}), so the kernel denies it"
                );
            }
        }
        if verdict.decision == Decision::Ask {
            let _ = writeln!(
                out,
                "note:      the agent waits for an operator's `kernel-enforcer approve`; without one it is denied"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::super::tests::engine;
    use kernel_core::{Action, CanonicalAction};

    fn explain(policy: &str, action: Action) -> String {
        let engine = engine(policy);
        let action = CanonicalAction::new(action, Some("/ws")).unwrap();
        engine.explain(&action).render()
    }

    #[test]
    fn names_the_deciding_forbid_and_its_reason() {
        let text = explain(
            r#"@id("read") permit (principal, action == Action::"file_read", resource);
               @id("no-env") @reason("no .env files") forbid (principal, action, resource is File) when { resource.name == ".env" };"#,
            Action::file_read(".env"),
        );
        assert!(text.contains("decision:  deny"), "{text}");
        assert!(text.contains("no-env (forbid): no .env files"), "{text}");
        assert!(text.contains("floor:     not involved"), "{text}");
        assert!(text.contains("errors:    none"), "{text}");
    }

    #[test]
    fn shows_the_floor_deciding() {
        let text = explain(
            r#"@id("all") permit (principal, action, resource);"#,
            Action::file_read("/state/kernel.key"),
        );
        assert!(text.contains("kernel-floor-assets (forbid)"), "{text}");
        assert!(text.contains("floor:     decided"), "{text}");
        assert!(text.contains("context.kernel_asset = true"), "{text}");
    }

    #[test]
    fn shows_an_evaluation_error_and_that_it_denied() {
        let text = explain(
            r#"@id("all") permit (principal, action, resource);
               @id("overflow") forbid (principal, action == Action::"exec", resource)
                 when { context.argc * 9223372036854775807 > 1 };"#,
            Action::exec(kernel_core::Exec::new("/bin/ls").args(["a", "b"])),
        );
        assert!(text.contains("decision:  deny"), "{text}");
        assert!(text.contains("overflow (failed to evaluate)"), "{text}");
        assert!(text.contains("errors:    policy `overflow`"), "{text}");
        assert!(text.contains("makes the kernel deny"), "{text}");
    }
}
