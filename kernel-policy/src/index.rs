//! The policy set sliced at load, so that deciding a request does not
//! evaluate every policy.
//!
//! Cedar evaluates every policy of the set it is given, one after the
//! other: with a thousand policies a decision costs a thousand scope
//! checks. Most policies cannot apply to most requests, and that is known
//! from their scope alone: a policy whose scope names another action, or
//! another resource, evaluates to false without an error whatever its
//! conditions say (Cedar checks the scope first and short-circuits).
//!
//! So at load the set is cut into pieces by the scope's action and
//! resource constraint:
//!
//! - per action of the schema, the policies whose action constraint can
//!   match it (`action`, `action == A`, `action in [.., A, ..]`; when the
//!   schema declares action groups, every `action in` policy goes into
//!   every slice, which is always sound);
//! - within a slice, the policies with no resource constraint (or only a
//!   type, `resource is T`) form the base piece, and the policies that name
//!   an entity (`resource == E`, `resource in E`, `resource is T in E`) are
//!   filed under that entity.
//!
//! A request for action `A` on resource `r` is evaluated against the base
//! piece of `A` and the pieces filed under `r` and under each ancestor of
//! `r` in the request's entities: every policy whose scope can match is in
//! one of them. The pieces' answers are combined exactly as Cedar combines
//! policies (any satisfied forbid denies and is the reason; otherwise any
//! satisfied permit allows and is the reason; errors are the union). So the
//! decision, the determining policies and the evaluation errors are the
//! ones the whole set gives; `tests::the_index_never_changes_an_evaluation`
//! checks this against the unsliced set.

use cedar_policy::{
    ActionConstraint, Authorizer, Entities, EntityUid, Policy, PolicySet, Request,
    ResourceConstraint, Response, Schema,
};
use std::collections::HashMap;

/// The pieces of one action's slice.
#[derive(Debug, Default)]
struct Slice {
    /// Policies that apply whatever the resource is.
    base: PolicySet,
    /// Policies that apply only to, or beneath, the entity they name.
    by_entity: HashMap<EntityUid, PolicySet>,
}

/// A policy set cut by action and by resource entity (see the module
/// documentation).
#[derive(Debug)]
pub(super) struct PolicyIndex {
    slices: HashMap<EntityUid, Slice>,
}

/// The answer of the pieces that can apply to one request, in Cedar's
/// terms.
#[derive(Debug, Default)]
pub(super) struct Combined {
    /// Whether Cedar's answer is Allow.
    pub(super) allowed: bool,
    /// The determining policies: the satisfied forbids if any, otherwise
    /// the satisfied permits.
    pub(super) reason: Vec<cedar_policy::PolicyId>,
    /// Policies whose evaluation failed (Cedar skipped them).
    pub(super) errors: Vec<(String, String)>,
}

fn entity_of(constraint: ResourceConstraint) -> Option<EntityUid> {
    match constraint {
        ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
        ResourceConstraint::Eq(uid)
        | ResourceConstraint::In(uid)
        | ResourceConstraint::IsIn(_, uid) => Some(uid),
    }
}

impl PolicyIndex {
    /// Slices `set` by the actions of `schema`. Fails only if Cedar refuses
    /// to add a policy to a piece, which cannot happen for policies that
    /// were already in one valid set.
    pub(super) fn new(set: &PolicySet, schema: &Schema) -> Result<Self, String> {
        let groups = schema.action_groups().next().is_some();
        let mut slices: HashMap<EntityUid, Slice> = schema
            .actions()
            .map(|action| (action.clone(), Slice::default()))
            .collect();
        for policy in set.policies() {
            let resource = entity_of(policy.resource_constraint());
            let constraint = policy.action_constraint();
            for (action, slice) in &mut slices {
                let applies = match &constraint {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(uid) => uid == action,
                    ActionConstraint::In(uids) => groups || uids.contains(action),
                };
                if applies {
                    add(slice, resource.as_ref(), policy)?;
                }
            }
        }
        Ok(Self { slices })
    }

    /// Evaluates `request` against the pieces that can apply to it.
    /// Returns `None` when the request names an action outside the
    /// schema (the caller then evaluates the whole set).
    pub(super) fn evaluate(
        &self,
        authorizer: &Authorizer,
        request: &Request,
        entities: &Entities,
    ) -> Option<Combined> {
        let slice = self.slices.get(request.action()?)?;
        let resource = request.resource()?;
        let ancestors = entities.ancestors(resource).into_iter().flatten();
        let pieces = std::iter::once(&slice.base).chain(
            std::iter::once(resource)
                .chain(ancestors)
                .filter_map(|entity| slice.by_entity.get(entity)),
        );
        Some(combine(pieces.map(|piece| {
            authorizer.is_authorized(request, piece, entities)
        })))
    }
}

/// Cedar's answer for a whole set, as [`Combined`].
pub(super) fn evaluate_whole(
    authorizer: &Authorizer,
    request: &Request,
    set: &PolicySet,
    entities: &Entities,
) -> Combined {
    combine(std::iter::once(
        authorizer.is_authorized(request, set, entities),
    ))
}

/// Combines the answers of disjoint pieces of one set as Cedar combines
/// the set's policies.
fn combine(responses: impl Iterator<Item = Response>) -> Combined {
    let mut combined = Combined::default();
    let mut permits = Vec::new();
    let mut forbids = Vec::new();
    let mut take = |response: Response| {
        let diagnostics = response.diagnostics();
        combined
            .errors
            .extend(diagnostics.errors().map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    (e.policy_id().to_string(), e.inner().to_string())
                }
            }));
        // Cedar names the satisfied forbids when it denies and the
        // satisfied permits when it allows.
        let reasons = diagnostics.reason().cloned();
        match response.decision() {
            cedar_policy::Decision::Allow => permits.extend(reasons),
            cedar_policy::Decision::Deny => forbids.extend(reasons),
        }
    };
    responses.for_each(&mut take);
    if forbids.is_empty() {
        combined.allowed = !permits.is_empty();
        combined.reason = permits;
    } else {
        combined.reason = forbids;
    }
    combined
}

fn add(slice: &mut Slice, resource: Option<&EntityUid>, policy: &Policy) -> Result<(), String> {
    let piece = match resource {
        None => &mut slice.base,
        Some(uid) => slice.by_entity.entry(uid.clone()).or_default(),
    };
    piece.add(policy.clone()).map_err(|e| e.to_string())
}
