//! Why a workload gets the decision it gets: every rule for the requested target, whether
//! it applied and why not, the decision, and the grant it would make. Shared by
//! `tessera mappings explain` and the admin API's `POST /v1/explain`.
//!
//! The identity is given as written in a test case, or comes from a real subject token,
//! verified by the configured source exactly as an exchange would verify it. Nothing is
//! issued and nothing is audited.

use std::fmt;

use serde::Serialize;
use std::sync::Arc;
use tessera_adapters::clock::format_rfc3339;
use tessera_adapters::config::format_duration;

use tessera_adapters::{Identity, IdentitySource, SourceError, SubjectToken};

use crate::exchange::SourceRouter;
use crate::mapping::{
    Decision, EvalError, GrantPreview, GrantableScope, MappingSet, Request, RuleTrace, TraceOutcome,
};

/// An identity written as in a test case, with what `source` would derive from its
/// `subject` ([`IdentitySource::sketch`]) in place of the fields it does not give
/// (`given`: the keys written, [`crate::mapping::identity_keys`]): `provider` is always
/// the source's kind unless given, and with a `subject`, `id` and the fields the subject
/// names are the source's. The source must be configured. `Err` in words.
pub fn complete_identity(
    sources: &[Arc<dyn IdentitySource>],
    written: Identity,
    given: &[String],
) -> Result<Identity, String> {
    let source = sources.iter().find(|s| s.name() == written.source).ok_or_else(|| {
        let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
        format!("`{}` is not a source of broker.yaml (sources: {})", written.source, names.join(", "))
    })?;
    let has = |key: &str| given.iter().any(|g| g == key);
    let mut identity = written;
    if !has("provider") {
        identity.provider = source.kind().to_owned();
    }
    if !has("subject") {
        return Ok(identity);
    }
    let sketch = match source.sketch(&identity.subject) {
        Ok(sketch) => sketch,
        Err(_) if has("id") => return Ok(identity),
        Err(why) => return Err(format!("source `{}` ({}): {why}", source.name(), source.kind())),
    };
    let keep = |given_value: Option<String>, key: &str, derived: Option<String>| {
        if has(key) { given_value } else { derived }
    };
    identity.tenant = keep(identity.tenant, "tenant", sketch.tenant);
    identity.namespace = keep(identity.namespace, "namespace", sketch.namespace);
    identity.name = keep(identity.name, "name", sketch.name);
    identity.instance = keep(identity.instance, "instance", sketch.instance);
    identity.region = keep(identity.region, "region", sketch.region);
    if !has("id") {
        identity.id = sketch.id;
    }
    if !has("issuer") {
        identity.issuer = sketch.issuer;
    }
    for (key, value) in sketch.attributes {
        identity.attributes.entry(key).or_insert(value);
    }
    Ok(identity)
}

/// Who to explain for.
#[derive(Debug)]
pub enum Subject {
    /// An identity as given; nobody verified it.
    Identity(Box<Identity>),
    /// A subject token, verified by the configured source that trusts its issuer.
    Token(SubjectToken),
}

/// What to explain.
#[derive(Debug)]
pub struct ExplainRequest {
    pub subject: Subject,
    /// The actor of a delegated request (RFC 8693 `actor_token`), as written in a test
    /// case; nobody verified it.
    pub actor: Option<Identity>,
    pub audience: String,
    pub scope: Option<String>,
    pub client_addr: Option<String>,
    /// Seconds since the epoch the conditions see as `now`.
    pub now: i64,
}

/// Why no explanation could be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The token was refused before any rule was looked at.
    #[error("the subject token was refused: {0} [{code}]", code = .0.code())]
    Source(#[from] SourceError),
}

/// The request as explained.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedRequest {
    pub audience: String,
    pub scope: Option<String>,
    pub client_addr: Option<String>,
    /// RFC 3339.
    pub now: String,
}

/// A refusal, as the exchange would record it.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// The explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub identity: Identity,
    /// The actor the request was explained with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Identity>,
    /// The source that verified the token; `None` for an identity given as is.
    pub verified_by: Option<String>,
    pub request: ExplainedRequest,
    /// The rule set's version (`sha256:...`).
    pub mappings_version: String,
    pub decision: Decision,
    /// Every rule for the requested target, in load order.
    pub trace: Vec<RuleTrace>,
    /// What an exchange would be granted.
    pub grant: Option<GrantPreview>,
    /// Why an exchange would be refused.
    pub refusal: Option<Refusal>,
}

/// Verify the token if there is one, then decide and explain against `mappings`.
pub async fn explain(
    router: &SourceRouter,
    mappings: &MappingSet,
    req: ExplainRequest,
) -> Result<Explanation, ExplainError> {
    let (identity, verified_by) = match req.subject {
        Subject::Identity(identity) => (*identity, None),
        Subject::Token(token) => {
            let source = router.route(&token)?;
            let verified = source.verify(&token).await?;
            (verified.identity().clone(), Some(source.name().to_string()))
        }
    };
    let request = Request {
        audience: &req.audience,
        scope: req.scope.as_deref(),
        client_addr: req.client_addr.as_deref(),
        now: req.now,
    };
    let actor = req.actor.as_ref();
    let evaluation = mappings.evaluate_delegated(&identity, actor, &request);
    let (grant, refusal) = match mappings.preview_delegated(&identity, actor, &request) {
        Ok(grant) => (Some(grant), None),
        Err(d) => (None, Some(Refusal { code: d.code(), message: d.to_string() })),
    };
    Ok(Explanation {
        verified_by,
        request: ExplainedRequest {
            audience: req.audience.clone(),
            scope: req.scope.clone(),
            client_addr: req.client_addr.clone(),
            now: format_rfc3339(req.now),
        },
        mappings_version: mappings.version().to_string(),
        decision: evaluation.decision,
        trace: evaluation.trace,
        grant,
        refusal,
        identity,
        actor: req.actor,
    })
}

impl fmt::Display for Explanation {
    /// A report for people: the identity, the request, one block per rule, the decision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_identity(f)?;
        self.write_rules(f)?;
        self.write_decision(f)
    }
}

impl Explanation {
    fn write_identity(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.identity;
        writeln!(f, "identity  {}", id.id)?;
        writeln!(
            f,
            "          provider {}, source {}, issuer {}, subject {}",
            id.provider, id.source, id.issuer, id.subject
        )?;
        let optional = [
            ("tenant", &id.tenant),
            ("namespace", &id.namespace),
            ("name", &id.name),
            ("instance", &id.instance),
            ("region", &id.region),
        ];
        let present: Vec<String> =
            optional.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}"))).collect();
        if !present.is_empty() {
            writeln!(f, "          {}", present.join(", "))?;
        }
        for (k, v) in &id.attributes {
            writeln!(f, "          attributes.{k} = {v}")?;
        }
        for k in &id.withheld {
            writeln!(f, "          attributes.{k} withheld (over the attribute limits)")?;
        }
        match &self.verified_by {
            Some(source) => writeln!(f, "          verified by source `{source}`")?,
            None => writeln!(f, "          as given (not verified)")?,
        }
        if let Some(actor) = &self.actor {
            writeln!(f, "actor     {} (acting for the identity, as given)", actor.id)?;
            writeln!(
                f,
                "          provider {}, source {}, issuer {}, subject {}",
                actor.provider, actor.source, actor.issuer, actor.subject
            )?;
            for (k, v) in &actor.attributes {
                writeln!(f, "          attributes.{k} = {v}")?;
            }
        }
        Ok(())
    }

    fn write_rules(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        write!(f, "request   audience {}", r.audience)?;
        match &r.scope {
            Some(s) => write!(f, ", scope {s}")?,
            None => write!(f, ", no scope")?,
        }
        if let Some(addr) = &r.client_addr {
            write!(f, ", from {addr}")?;
        }
        writeln!(f, ", at {}", r.now)?;
        writeln!(f, "mappings  {}", self.mappings_version)?;
        if self.trace.is_empty() {
            writeln!(f, "rules     none grants target `{}`", r.audience)?;
        } else {
            writeln!(f, "rules for target `{}`, in load order:", r.audience)?;
        }
        for t in &self.trace {
            let (verdict, detail) = describe(t);
            writeln!(
                f,
                "  {verdict:<16} {} ({}) at {}:{}:{}",
                t.rule,
                t.effect.as_str(),
                t.file.display(),
                t.line,
                t.column
            )?;
            for line in detail {
                writeln!(f, "  {:<16} {line}", "")?;
            }
        }
        Ok(())
    }

    fn write_decision(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = match &self.decision {
            Decision::Allow { rule } => format!("allow by rule `{rule}`"),
            Decision::Deny { rule } => format!("deny by rule `{rule}` (deny rules win)"),
            Decision::DenyOnError { rule, .. } => {
                format!("deny by rule `{rule}`, which could not be evaluated (deny rules fail closed)")
            }
            Decision::NoRule => "no rule applies: refused (invalid_target)".to_string(),
            Decision::Ambiguous { rules } => format!(
                "ambiguous: {} all apply; request a scope to pick one (invalid_request)",
                rules.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
            Decision::ScopeNotGrantable { scope, .. } => {
                format!("no applying rule grants scope `{scope}`: refused (invalid_scope)")
            }
            Decision::DelegationNotAllowed { rules } => format!(
                "{} apply but none allows delegation (no `match.actor`): refused (invalid_target)",
                rules.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        };
        writeln!(f, "decision  {decision}")?;
        if let Some(g) = &self.grant {
            write!(f, "grant     target {}, ttl {}", g.target, format_duration(g.ttl))?;
            if let Some(s) = &g.scope {
                write!(f, ", scope {s}")?;
            }
            writeln!(f)?;
            if !g.claims.is_empty() {
                writeln!(f, "          claims {}", serde_json::Value::Object(g.claims.clone()))?;
            }
            for (k, v) in &g.params {
                writeln!(f, "          {k} {v}")?;
            }
        }
        if let Some(refusal) = &self.refusal {
            write!(f, "refused   {} [{}]", refusal.message, refusal.code)?;
        }
        Ok(())
    }
}

/// A rule's verdict and the lines that say why.
fn describe(t: &RuleTrace) -> (&'static str, Vec<String>) {
    match &t.outcome {
        TraceOutcome::Applied { scope } => {
            let detail = match scope {
                GrantableScope::None => Vec::new(),
                GrantableScope::Scope { scope } => vec![format!("grants scope {scope}")],
                GrantableScope::Unrenderable { field } => {
                    vec![format!("its scope names `{field}`, which this identity has no value for")]
                }
            };
            ("applies", detail)
        }
        TraceOutcome::NotMatched { field, actual, patterns } => {
            let wanted = patterns.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" or ");
            let detail = match actual {
                Some(v) => format!("`{field}` is `{v}`; the rule wants {wanted}"),
                None => format!("the identity has no `{field}`; the rule wants {wanted}"),
            };
            ("does not match", vec![detail])
        }
        TraceOutcome::ConditionFalse { condition } => ("condition false", vec![format!("when: {condition}")]),
        TraceOutcome::AppliedOnError { error } => {
            let mut detail = match error {
                EvalError::WithheldMatch { field } => vec![withheld(field)],
                EvalError::Condition { condition, error } => {
                    vec![format!("when: {condition}"), format!("error: {error}")]
                }
            };
            detail.push("a deny rule that cannot be evaluated applies (fail closed)".to_string());
            ("applies on error", detail)
        }
        TraceOutcome::ConditionError { condition, error } => {
            ("condition failed", vec![format!("when: {condition}"), format!("error: {error}")])
        }
        TraceOutcome::Withheld { field } => ("withheld", vec![withheld(field)]),
        TraceOutcome::DelegationNotAllowed => {
            ("no delegation", vec!["the request has an actor and the rule has no `match.actor`".to_string()])
        }
    }
}

fn withheld(field: &str) -> String {
    format!("`match` tests `{field}`, whose value was withheld (over the attribute limits)")
}
