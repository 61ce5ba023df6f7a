//! Evaluation: which rules apply to an identity and request, what that decides, and the
//! rendering of the allowing rule's grant. `evaluate` (explain), `preview` (tests, tools)
//! and `authorize` (the exchange) share one decision path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tessera_adapters::{Grant, Identity, VerifiedIdentity};

use crate::mapping::compile::{ClaimTemplate, CompiledRule, ParamTemplate};
use crate::mapping::condition::{Outcome, Vars};
use crate::mapping::error::{Denial, EvalError};
use crate::mapping::file::Effect;
use crate::mapping::template::MissingField;
use crate::mapping::{MappingSet, Request};

/// What the rules decide for one identity and request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Allow {
        rule: String,
    },
    Deny {
        rule: String,
    },
    /// A deny rule that could not be evaluated for this identity applies.
    DenyOnError {
        rule: String,
        error: EvalError,
    },
    NoRule,
    Ambiguous {
        rules: Vec<String>,
    },
    ScopeNotGrantable {
        audience: String,
        scope: String,
    },
    /// The request has an actor; the allow rules that apply have no `match.actor`.
    DelegationNotAllowed {
        rules: Vec<String>,
    },
}

/// The scope an applying allow rule grants this identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantableScope {
    /// The rule names no scope.
    None,
    Scope {
        scope: String,
    },
    /// The scope's template names a field this identity has no value for.
    Unrenderable {
        field: String,
    },
}

/// How one rule for the requested target fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceOutcome {
    /// `match` held. For allow rules, `scope` is what the rule grants this identity.
    Applied { scope: GrantableScope },
    /// A deny rule that could not be evaluated for this identity: it applies, as deny
    /// rules fail closed.
    AppliedOnError { error: EvalError },
    /// The first `match` condition that failed: the field, the identity's value (`None`
    /// when it has none) and the patterns the rule accepts.
    NotMatched { field: String, actual: Option<String>, patterns: Vec<String> },
    /// `match` held but the `when:` condition was false.
    ConditionFalse { condition: String },
    /// An allow rule whose `match` held but whose `when:` condition failed (a missing
    /// attribute, a type error, a withheld attribute) or did not yield a bool: it does not
    /// apply.
    ConditionError { condition: String, error: String },
    /// An allow rule with a `match` condition on `field`, an attribute whose value was
    /// withheld for being over the attribute limits: it does not apply.
    Withheld { field: String },
    /// An allow rule whose `match` and `when:` hold, for a request with an actor, but
    /// which has no `match.actor`: it does not allow delegation, so it does not apply.
    DelegationNotAllowed,
}

/// One rule considered for a request, where it is defined, and how it fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub description: Option<String>,
    pub effect: Effect,
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub outcome: TraceOutcome,
}

/// A decision and its explanation: every rule for the requested target, in load order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub trace: Vec<RuleTrace>,
}

/// What [`MappingSet::authorize`] would grant, as plain data: no [`Grant`] is made, so this
/// serves explain, inline tests and tools with identities nobody verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantPreview {
    pub rule: String,
    pub target: String,
    pub scope: Option<String>,
    #[serde(with = "seconds")]
    pub ttl: Duration,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub params: BTreeMap<String, serde_json::Value>,
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// The decision, pointing into the rule list.
enum Decided<'s> {
    Allow {
        rule: &'s CompiledRule,
        scope: GrantableScope,
    },
    /// The deny rule that applies, and why it could not be evaluated if it could not.
    Deny(&'s CompiledRule, Option<EvalError>),
    NoRule,
    Ambiguous(Vec<&'s CompiledRule>),
    ScopeNotGrantable,
    /// Allow rules held, but none allows delegation, and the request has an actor.
    DelegationNotAllowed(Vec<&'s CompiledRule>),
}

/// Why a rule holds for no identity like this one.
enum Miss {
    /// Index of the first `match` condition that failed.
    Match(usize),
    ConditionFalse,
}

/// How a rule's conditions fare for one identity and request.
enum Verdict {
    Holds,
    Misses(Miss),
    /// They could not be evaluated: the rule fails closed.
    Error(EvalError),
}

impl CompiledRule {
    /// Whether the rule's `match` and `when:` hold for `identity`. A condition that
    /// cannot be evaluated (a `match` on a withheld attribute, a `when:` that fails)
    /// decides only when no other condition is false: a rule that cannot apply whatever
    /// the unknown value is does not apply. `vars` are built on the first condition met
    /// and reused for the rest.
    fn check(
        &self,
        identity: &Identity,
        actor: Option<&Identity>,
        request: &Request<'_>,
        vars: &mut Option<Vars>,
    ) -> Verdict {
        let mut withheld = None;
        for (i, m) in self.matchers.iter().enumerate() {
            // A `match.actor` condition never holds for a request without an actor.
            let Some((who, field)) = m.tested(identity, actor) else {
                return Verdict::Misses(Miss::Match(i));
            };
            if who.is_withheld(field) {
                withheld = withheld.or(Some(m));
            } else if !m.matches_value(who.field(field)) {
                return Verdict::Misses(Miss::Match(i));
            }
        }
        let outcome = self.condition.as_ref().map(|c| {
            let vars = vars.get_or_insert_with(|| Vars::new(identity, request).with_actor(actor));
            (c, c.evaluate(vars))
        });
        let error = match (outcome, withheld) {
            (Some((_, Outcome::False)), _) => return Verdict::Misses(Miss::ConditionFalse),
            (_, Some(m)) => EvalError::WithheldMatch { field: m.field.clone() },
            (Some((c, Outcome::Error(error))), None) => {
                EvalError::Condition { condition: c.source().to_string(), error }
            }
            (Some((_, Outcome::True)) | None, None) => return Verdict::Holds,
        };
        match self.effect {
            Effect::Deny => tracing::debug!(
                rule = %self.name,
                error = %error,
                "condition failed: the deny rule applies (fail closed)"
            ),
            Effect::Allow => tracing::debug!(
                rule = %self.name,
                error = %error,
                "condition failed: the rule does not apply"
            ),
        }
        Verdict::Error(error)
    }

    fn miss_outcome(
        &self,
        miss: Miss,
        identity: &Identity,
        actor: Option<&Identity>,
    ) -> Option<TraceOutcome> {
        Some(match miss {
            Miss::Match(failed) => {
                let m = self.matchers.get(failed)?;
                TraceOutcome::NotMatched {
                    field: m.field.clone(),
                    actual: m
                        .tested(identity, actor)
                        .and_then(|(who, field)| who.field(field))
                        .map(str::to_string),
                    patterns: m.patterns.iter().map(|p| p.as_str().to_string()).collect(),
                }
            }
            Miss::ConditionFalse => TraceOutcome::ConditionFalse {
                condition: self.condition.as_ref().map(|c| c.source().to_string()).unwrap_or_default(),
            },
        })
    }

    fn grantable_scope(&self, identity: &Identity, actor: Option<&Identity>) -> GrantableScope {
        match &self.scope {
            None => GrantableScope::None,
            Some(t) => match t.render_with(identity, actor) {
                Ok(scope) => GrantableScope::Scope { scope },
                Err(MissingField(field)) => GrantableScope::Unrenderable { field },
            },
        }
    }

    fn trace(&self, outcome: TraceOutcome) -> RuleTrace {
        RuleTrace {
            rule: self.name.clone(),
            description: self.description.clone(),
            effect: self.effect,
            file: self.file.to_path_buf(),
            line: self.pos.line,
            column: self.pos.column,
            outcome,
        }
    }
}

fn render_claim(
    t: &ClaimTemplate,
    identity: &Identity,
    actor: Option<&Identity>,
) -> Result<serde_json::Value, MissingField> {
    Ok(match t {
        ClaimTemplate::Str(t) => serde_json::Value::String(t.render_with(identity, actor)?),
        ClaimTemplate::Literal(v) => v.clone(),
        ClaimTemplate::List(items) => serde_json::Value::Array(
            items.iter().map(|i| render_claim(i, identity, actor)).collect::<Result<_, _>>()?,
        ),
        ClaimTemplate::Object(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| render_claim(v, identity, actor).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn render_param(
    t: &ParamTemplate,
    identity: &Identity,
    actor: Option<&Identity>,
) -> Result<serde_json::Value, MissingField> {
    Ok(match t {
        ParamTemplate::Str(t) => serde_json::Value::String(t.render_with(identity, actor)?),
        ParamTemplate::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    v.render_with(identity, actor).map(|v| (k.clone(), serde_json::Value::String(v)))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

impl MappingSet {
    /// The one decision path. Semantics (DESIGN.md, "Mapping files"): a rule applies when
    /// its `match` and `when` hold and it grants the requested target; a deny rule that
    /// cannot be evaluated for the identity applies too, an allow rule does not; any
    /// applying deny rule wins (one that could be evaluated is reported before one that
    /// could not); otherwise a requested scope picks the applying allow rule granting
    /// exactly it, and without one exactly one allow rule must apply.
    ///
    /// Without a trace only the index's candidates are looked at; with one, every rule
    /// for the target, so an explanation also says why the others did not apply. Both
    /// decide alike: a rule the index leaves out fails one of its exact conditions.
    ///
    /// With an actor (a delegated request), an allow rule applies only if it has
    /// `match.actor` conditions, which then hold; when allow rules hold but none of them
    /// has, delegation is not allowed. Deny rules apply with or without an actor, and one
    /// with `match.actor` only to requests whose actor matches.
    fn decide<'s>(
        &'s self,
        identity: &Identity,
        actor: Option<&Identity>,
        request: &Request<'_>,
        mut trace: Option<&mut Vec<RuleTrace>>,
    ) -> Decided<'s> {
        let mut deny: Option<(&CompiledRule, Option<EvalError>)> = None;
        let mut allows: Vec<(&CompiledRule, GrantableScope)> = Vec::new();
        let mut undelegable: Vec<&CompiledRule> = Vec::new();
        let mut candidates = Vec::new();
        let considered: &[usize] = if trace.is_some() {
            self.index.for_target(request.audience)
        } else {
            self.index.candidates(request.audience, identity, &mut candidates);
            &candidates
        };
        let mut vars: Option<Vars> = None;
        for &i in considered {
            let Some(rule) = self.rules.get(i) else { continue };
            let outcome = match (rule.check(identity, actor, request, &mut vars), rule.effect) {
                (Verdict::Holds, Effect::Deny) => {
                    if deny.as_ref().is_none_or(|(_, error)| error.is_some()) {
                        deny = Some((rule, None));
                    }
                    trace.is_some().then_some(TraceOutcome::Applied { scope: GrantableScope::None })
                }
                (Verdict::Error(error), Effect::Deny) => {
                    let outcome =
                        trace.is_some().then(|| TraceOutcome::AppliedOnError { error: error.clone() });
                    if deny.is_none() {
                        deny = Some((rule, Some(error)));
                    }
                    outcome
                }
                (Verdict::Holds, Effect::Allow) if actor.is_some() && !rule.delegates() => {
                    undelegable.push(rule);
                    Some(TraceOutcome::DelegationNotAllowed)
                }
                (Verdict::Holds, Effect::Allow) => {
                    let scope = rule.grantable_scope(identity, actor);
                    allows.push((rule, scope.clone()));
                    Some(TraceOutcome::Applied { scope })
                }
                (Verdict::Error(error), Effect::Allow) => trace.is_some().then_some(match error {
                    EvalError::WithheldMatch { field } => TraceOutcome::Withheld { field },
                    EvalError::Condition { condition, error } => {
                        TraceOutcome::ConditionError { condition, error }
                    }
                }),
                (Verdict::Misses(miss), _) => {
                    if trace.is_some() {
                        rule.miss_outcome(miss, identity, actor)
                    } else {
                        None
                    }
                }
            };
            if let (Some(trace), Some(outcome)) = (trace.as_deref_mut(), outcome) {
                trace.push(rule.trace(outcome));
            }
        }

        if let Some((rule, error)) = deny {
            return Decided::Deny(rule, error);
        }
        if allows.is_empty() && !undelegable.is_empty() {
            return Decided::DelegationNotAllowed(undelegable);
        }
        pick(allows, request.scope)
    }

    /// Decide for `identity` and explain: every rule for the requested target, whether it
    /// applied (or, for a deny rule, applied because it could not be evaluated) and, if
    /// not, which `match` condition failed or how `when` fared. Makes no grant.
    pub fn evaluate(&self, identity: &Identity, request: &Request<'_>) -> Evaluation {
        self.evaluate_delegated(identity, None, request)
    }

    /// [`evaluate`](Self::evaluate) for a request with `actor` acting for `identity`
    /// (RFC 8693 `actor_token`), or without one.
    pub fn evaluate_delegated(
        &self,
        identity: &Identity,
        actor: Option<&Identity>,
        request: &Request<'_>,
    ) -> Evaluation {
        let mut trace = Vec::new();
        let decision = match self.decide(identity, actor, request, Some(&mut trace)) {
            Decided::Allow { rule, .. } => Decision::Allow { rule: rule.name.clone() },
            Decided::Deny(rule, None) => Decision::Deny { rule: rule.name.clone() },
            Decided::Deny(rule, Some(error)) => Decision::DenyOnError { rule: rule.name.clone(), error },
            Decided::NoRule => Decision::NoRule,
            Decided::Ambiguous(rules) => Decision::Ambiguous { rules: names(&rules) },
            Decided::ScopeNotGrantable => Decision::ScopeNotGrantable {
                audience: request.audience.to_string(),
                scope: request.scope.unwrap_or_default().to_string(),
            },
            Decided::DelegationNotAllowed(rules) => Decision::DelegationNotAllowed { rules: names(&rules) },
        };
        Evaluation { decision, trace }
    }

    /// What [`authorize`](Self::authorize) would grant `identity`, rendered, or why not.
    pub fn preview(&self, identity: &Identity, request: &Request<'_>) -> Result<GrantPreview, Denial> {
        self.preview_delegated(identity, None, request)
    }

    /// [`preview`](Self::preview) for a request with `actor` acting for `identity`, or
    /// without one. Templates may name the actor's fields (`{actor.name}`).
    pub fn preview_delegated(
        &self,
        identity: &Identity,
        actor: Option<&Identity>,
        request: &Request<'_>,
    ) -> Result<GrantPreview, Denial> {
        let (rule, scope) = match self.decide(identity, actor, request, None) {
            Decided::Allow { rule, scope } => (rule, scope),
            Decided::Deny(rule, None) => return Err(Denial::Denied { rule: rule.name.clone() }),
            Decided::Deny(rule, Some(error)) => {
                return Err(Denial::DeniedOnError { rule: rule.name.clone(), error });
            }
            Decided::NoRule => return Err(Denial::NoRule),
            Decided::Ambiguous(rules) => return Err(Denial::Ambiguous { rules: names(&rules) }),
            Decided::ScopeNotGrantable => return Err(Denial::ScopeNotGrantable),
            Decided::DelegationNotAllowed(rules) => {
                return Err(Denial::DelegationNotAllowed { rules: names(&rules) });
            }
        };
        let unrenderable = |MissingField(field)| Denial::Unrenderable { rule: rule.name.clone(), field };
        let scope = match scope {
            GrantableScope::None => None,
            GrantableScope::Scope { scope } => Some(scope),
            GrantableScope::Unrenderable { field } => return Err(unrenderable(MissingField(field))),
        };
        let claims = rule
            .claims
            .iter()
            .map(|(k, t)| render_claim(t, identity, actor).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()
            .map_err(unrenderable)?;
        let params = rule
            .params
            .iter()
            .map(|(k, t)| render_param(t, identity, actor).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()
            .map_err(unrenderable)?;
        Ok(GrantPreview {
            rule: rule.name.clone(),
            target: rule.target.clone(),
            scope,
            ttl: rule.ttl,
            claims,
            params,
        })
    }

    /// Decide for a verified identity and, when a rule allows, make the [`Grant`]. The only
    /// place Grants are made.
    pub fn authorize(&self, verified: &VerifiedIdentity, request: &Request<'_>) -> Result<Grant, Denial> {
        self.authorize_delegated(verified, None, None, request)
    }

    /// [`authorize`](Self::authorize) a request with a verified `actor` acting for
    /// `verified`, or without one; the grant carries the actor and the subject token's
    /// `prior_act` chain, checked by the caller, for the issued token's `act` claim.
    pub fn authorize_delegated(
        &self,
        verified: &VerifiedIdentity,
        actor: Option<&VerifiedIdentity>,
        prior_act: Option<serde_json::Value>,
        request: &Request<'_>,
    ) -> Result<Grant, Denial> {
        let p =
            self.preview_delegated(verified.identity(), actor.map(VerifiedIdentity::identity), request)?;
        let grant = Grant::new(verified.clone(), p.rule, p.target, p.scope, p.ttl, p.claims, p.params);
        Ok(grant.with_delegation(actor.cloned(), prior_act))
    }
}

fn names(rules: &[&CompiledRule]) -> Vec<String> {
    rules.iter().map(|r| r.name.clone()).collect()
}

/// Among the allow rules that applied (no deny did): a requested scope picks the one
/// granting exactly it; without a scope exactly one must have applied.
fn pick<'s>(mut allows: Vec<(&'s CompiledRule, GrantableScope)>, wanted: Option<&str>) -> Decided<'s> {
    let Some(wanted) = wanted else {
        return match allows.len() {
            0 => Decided::NoRule,
            1 => match allows.pop() {
                Some((rule, scope)) => Decided::Allow { rule, scope },
                None => Decided::NoRule,
            },
            _ => Decided::Ambiguous(allows.into_iter().map(|(r, _)| r).collect()),
        };
    };
    let mut picked: Vec<(&CompiledRule, GrantableScope)> = allows
        .iter()
        .filter(|(_, s)| matches!(s, GrantableScope::Scope { scope } if scope == wanted))
        .cloned()
        .collect();
    match picked.len() {
        0 if allows.is_empty() => Decided::NoRule,
        0 => Decided::ScopeNotGrantable,
        1 => match picked.pop() {
            Some((rule, scope)) => Decided::Allow { rule, scope },
            None => Decided::NoRule,
        },
        _ => Decided::Ambiguous(picked.into_iter().map(|(r, _)| r).collect()),
    }
}
