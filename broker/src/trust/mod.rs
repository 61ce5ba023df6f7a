//! `tessera trust <target>`: the setup a target's platform needs to trust Tessera, written
//! from broker.yaml and the mapping rules that grant the target.
//!
//! # Layout
//! - this file: which `sub` values Tessera's tokens carry for each rule ([`Subject`]), from
//!   the rule's `match` and each source's [`IdShape`]; the plan every format shares.
//! - `aws`: the IAM OIDC provider and each granted role's trust policy (JSON,
//!   CloudFormation, Terraform).
//! - `gcp`: the workload identity pool, its provider and the service account bindings
//!   (gcloud, Terraform).
//! - `azure`: a federated identity credential per granted application (az, Terraform).
//! - `jwt`: the issuer and JWKS a relying party configures.
//! - `spiffe`: the trust domain, its bundle endpoint and the SPIFFE IDs the rules grant.
//! - `kubernetes`: the cluster's `AuthenticationConfiguration`.
//! - `postgres`: the admin role a database gives the broker (SQL).
//! - `hcl`: writing Terraform.
//!
//! The cloud sees only a token's `iss`, `aud` and `sub`: a rule's other conditions
//! (attributes, `when:`, deny rules) stay Tessera's to enforce, and the output says so.

mod aws;
mod azure;
mod gcp;
mod hcl;
mod jwt;
mod kubernetes;
mod postgres;
mod spiffe;
#[cfg(test)]
mod tests;
mod txn_token;

use std::fmt;

use tessera_adapters::identity::{IdPart, IdShape};
use tessera_adapters::registry::TargetConfig;

use crate::config::LoadedConfig;
use crate::mapping::{Effect, GlobPiece, MappingSet, RuleView};

/// The most `sub` values one rule may expand to (the product of its listed patterns);
/// past it, the fields with the longest lists become `*`.
const MAX_SUBJECTS_PER_RULE: usize = 64;

/// An output format of `tessera trust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Cloudformation,
    Terraform,
    Gcloud,
    Az,
    Yaml,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Cloudformation => "cloudformation",
            Self::Terraform => "terraform",
            Self::Gcloud => "gcloud",
            Self::Az => "az",
            Self::Yaml => "yaml",
        }
    }
}

/// Why no setup can be written.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("broker.yaml has no target named `{0}`")]
    UnknownTarget(String),
    #[error("a `{kind}` target has no `{format}` format; use one of: {supported}")]
    Unsupported { kind: &'static str, format: &'static str, supported: String },
    #[error("{0}")]
    Incomplete(String),
}

/// A `sub` Tessera's tokens carry: exact, or a pattern with `*` and `?`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject(Vec<GlobPiece>);

impl Subject {
    fn push(&mut self, piece: &GlobPiece) {
        match (piece, self.0.last_mut()) {
            (GlobPiece::Text(more), Some(GlobPiece::Text(text))) => text.push_str(more),
            (GlobPiece::AnyRun, Some(GlobPiece::AnyRun)) => {}
            (GlobPiece::Text(more), _) if more.is_empty() => {}
            _ => self.0.push(piece.clone()),
        }
    }

    fn pushed(&self, pieces: &[GlobPiece]) -> Self {
        let mut out = self.clone();
        for p in pieces {
            out.push(p);
        }
        out
    }

    /// Every `sub`: no condition on it at all.
    pub fn is_any(&self) -> bool {
        self.0 == [GlobPiece::AnyRun]
    }

    /// The one value, when there is no wildcard.
    pub fn exact(&self) -> Option<String> {
        match self.0.as_slice() {
            [] => Some(String::new()),
            [GlobPiece::Text(t)] => Some(t.clone()),
            _ => None,
        }
    }

    /// In IAM's `StringLike` syntax: `*` and `?` as they are, the characters themselves
    /// written `${*}`, `${?}` and `${$}` (IAM User Guide, "Special characters").
    pub fn aws_like(&self) -> String {
        self.write("*", "?", |c, out| {
            if matches!(c, '*' | '?' | '$') {
                out.push_str("${");
                out.push(c);
                out.push('}');
            } else {
                out.push(c);
            }
        })
    }

    /// As an anchored RE2 regular expression.
    pub fn regex(&self) -> String {
        let body = self.write(".*", ".", |c, out| {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
        });
        format!("^{body}$")
    }

    /// Wildcards as `any_run` and `any_one`, text characters through `text`.
    fn write(&self, any_run: &str, any_one: &str, text: impl Fn(char, &mut String)) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                GlobPiece::Text(t) => t.chars().for_each(|c| text(c, &mut out)),
                GlobPiece::AnyRun => out.push_str(any_run),
                GlobPiece::AnyOne => out.push_str(any_one),
            }
        }
        out
    }
}

impl fmt::Display for Subject {
    /// In Tessera's own pattern syntax (`\` escapes `*`, `?` and `\`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.0 {
            match piece {
                GlobPiece::Text(t) => {
                    for c in t.chars() {
                        if matches!(c, '*' | '?' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                GlobPiece::AnyRun => f.write_str("*")?,
                GlobPiece::AnyOne => f.write_str("?")?,
            }
        }
        Ok(())
    }
}

/// A configured source, as far as ids go.
#[derive(Debug, Clone)]
struct SourceShape {
    name: String,
    kind: &'static str,
    shape: Option<IdShape>,
}

/// One allow rule for the target, with the `sub` values of the identities it can grant.
#[derive(Debug, Clone)]
pub(crate) struct Granting {
    pub rule: RuleView,
    pub subjects: Vec<Subject>,
}

/// What every format of every target starts from.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub target: &'a TargetConfig,
    pub issuer: String,
    pub discovery_uri: String,
    pub jwks_uri: String,
    pub grants: Vec<Granting>,
    /// What the platform cannot check and Tessera does, and what was left out.
    pub notes: Vec<String>,
}

impl Plan<'_> {
    /// The issuer URL without its scheme: how IAM names the provider and its condition
    /// keys (`tessera.example.com:sub`).
    pub fn issuer_host(&self) -> &str {
        self.issuer.split_once("://").map_or(self.issuer.as_str(), |(_, rest)| rest).trim_end_matches('/')
    }
}

/// The setup `target`'s platform needs, in `format` (default: the target kind's first).
pub fn render(
    loaded: &LoadedConfig,
    set: &MappingSet,
    target: &str,
    format: Option<Format>,
) -> Result<String, TrustError> {
    let plan = plan(loaded, set, target)?;
    let supported: &[Format] = match plan.target {
        TargetConfig::AwsSts(_) => &[Format::Json, Format::Cloudformation, Format::Terraform],
        TargetConfig::Gcp(_) => &[Format::Gcloud, Format::Terraform],
        TargetConfig::Azure(_) => &[Format::Az, Format::Terraform],
        TargetConfig::Jwt(_)
        | TargetConfig::JwtGrant(_)
        | TargetConfig::Oauth(_)
        | TargetConfig::Spiffe(_)
        | TargetConfig::Postgres(_)
        | TargetConfig::TxnToken(_) => &[Format::Json],
        TargetConfig::Kubernetes(_) => &[Format::Yaml],
    };
    let Some(format) = format.or_else(|| supported.first().copied()) else {
        return Err(TrustError::Incomplete("no format".into()));
    };
    if !supported.contains(&format) {
        return Err(TrustError::Unsupported {
            kind: plan.target.kind(),
            format: format.as_str(),
            supported: supported.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
        });
    }
    match plan.target {
        TargetConfig::AwsSts(config) => aws::render(&plan, config, format),
        TargetConfig::Gcp(config) => gcp::render(&plan, config, format),
        TargetConfig::Azure(config) => azure::render(&plan, config, format),
        TargetConfig::Jwt(config) => Ok(jwt::render(&plan, config)),
        TargetConfig::JwtGrant(config) => {
            Ok(jwt::relying_party(&plan, &config.name, &config.authorization_server, config.algorithm))
        }
        TargetConfig::Oauth(config) => {
            let audience = config.assertion_audience.as_deref().unwrap_or(&config.token_endpoint);
            Ok(jwt::relying_party(&plan, &config.name, audience, config.algorithm))
        }
        TargetConfig::Spiffe(config) => Ok(spiffe::render(&plan, config)),
        TargetConfig::Kubernetes(config) => kubernetes::render(&plan, config, &loaded.base_dir),
        TargetConfig::Postgres(config) => Ok(postgres::render(&plan, config)),
        TargetConfig::TxnToken(config) => Ok(txn_token::render(&plan, config)),
    }
}

/// The target's config, its allow rules with their subjects, and the notes.
fn plan<'a>(loaded: &'a LoadedConfig, set: &MappingSet, target: &str) -> Result<Plan<'a>, TrustError> {
    let config = loaded
        .config
        .targets()
        .find(|t| t.name() == target)
        .ok_or_else(|| TrustError::UnknownTarget(target.to_owned()))?;
    let sources: Vec<SourceShape> = loaded
        .config
        .sources()
        .map(|s| SourceShape { name: s.name().to_owned(), kind: s.kind(), shape: s.config().id_shape() })
        .collect();
    let mut notes = Vec::new();
    let mut grants = Vec::new();
    for rule in set.rules_for(target) {
        let at = format!("rule `{}` ({})", rule.name, rule.location());
        if rule.effect == Effect::Deny {
            notes.push(format!("{at} denies: Tessera enforces it and never signs for it"));
            continue;
        }
        for rule in split(&rule) {
            let subjects = subjects(&rule, &sources, &at, &mut notes);
            if subjects.is_empty() {
                notes.push(format!("{at} matches no configured source: nothing to trust"));
                continue;
            }
            grants.push(Granting { rule, subjects });
        }
    }
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    let issuer = &loaded.config.issuer.url;
    Ok(Plan {
        target: config,
        issuer: issuer.as_str().to_owned(),
        discovery_uri: issuer.discovery_uri(),
        jwks_uri: issuer.jwks_uri(),
        grants,
        notes,
    })
}

/// `rule` once for each combination of the exact values it matches for the fields its
/// grant templates name, so that `role/{name}` with `name: [a, b]` becomes two rules,
/// each trusting its own subjects. Unsplit when there are more than
/// [`MAX_SUBJECTS_PER_RULE`] combinations.
fn split(rule: &RuleView) -> Vec<RuleView> {
    let fields: Vec<(&str, Vec<String>)> =
        rule.template_fields().into_iter().filter_map(|f| Some((f, rule.exact_values(f)?))).collect();
    if fields.iter().map(|(_, v)| v.len()).product::<usize>() > MAX_SUBJECTS_PER_RULE {
        return vec![rule.clone()];
    }
    fields.iter().fold(vec![rule.clone()], |rules, (field, values)| {
        rules.iter().flat_map(|r| values.iter().map(move |v| r.narrowed(field, v))).collect()
    })
}

/// The `sub` values of the identities `rule` matches: its `id` patterns if it has them,
/// else each admitted source's id shape with the rule's patterns for each field in it
/// (`*` for a field the rule does not match on). What the cloud cannot check is noted.
fn subjects(rule: &RuleView, sources: &[SourceShape], at: &str, notes: &mut Vec<String>) -> Vec<Subject> {
    let mut out: Vec<Subject> = Vec::new();
    let mut in_sub: Vec<&str> = vec!["id", "source", "provider"];
    if let Some(ids) = rule.patterns("id") {
        out = ids.iter().map(|p| Subject::default().pushed(p)).collect();
    } else {
        for source in sources {
            if !rule.admits("source", &source.name) || !rule.admits("provider", source.kind) {
                continue;
            }
            let Some(shape) = &source.shape else {
                notes.push(format!("{at}: source `{}` cannot say how its ids look: any `sub`", source.name));
                out.push(Subject::default().pushed(&[GlobPiece::AnyRun]));
                continue;
            };
            for part in shape.parts() {
                if let IdPart::Field(f) = part {
                    in_sub.push(f);
                }
            }
            out.extend(expand(shape, rule, at, notes));
        }
    }
    let rest: Vec<&str> = rule.matched_fields().filter(|f| !in_sub.contains(f)).collect();
    if !rest.is_empty() {
        notes.push(format!(
            "{at} also matches {}: Tessera checks that, the platform sees only `sub`",
            rest.join(", ")
        ));
    }
    if rule.conditional {
        notes.push(format!("{at} has a `when:` condition: Tessera checks it, the platform sees only `sub`"));
    }
    out.sort();
    out.dedup();
    out
}

/// Literal text and identity fields: an id shape or a grant value's template.
enum Part<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// `shape` with each field replaced by each of the rule's patterns for it.
fn expand(shape: &IdShape, rule: &RuleView, at: &str, notes: &mut Vec<String>) -> Vec<Subject> {
    let parts: Vec<Part<'_>> = shape
        .parts()
        .iter()
        .map(|p| match p {
            IdPart::Literal(t) => Part::Text(t),
            IdPart::Field(f) => Part::Field(f),
        })
        .collect();
    expand_parts(&parts, rule, at, notes)
}

/// Every value `parts` takes for identities `rule` matches: each field replaced by each of
/// the rule's patterns for it, `*` where the rule has none.
fn expand_parts(parts: &[Part<'_>], rule: &RuleView, at: &str, notes: &mut Vec<String>) -> Vec<Subject> {
    let any = vec![vec![GlobPiece::AnyRun]];
    let mut choices: Vec<Vec<Vec<GlobPiece>>> = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => vec![vec![GlobPiece::Text((*text).to_owned())]],
            Part::Field(f) => rule.patterns(f).unwrap_or_else(|| any.clone()),
        })
        .collect();
    while choices.iter().map(Vec::len).product::<usize>() > MAX_SUBJECTS_PER_RULE {
        if let Some(widest) = choices.iter_mut().max_by_key(|c| c.len()) {
            *widest = any.clone();
        }
        notes.push(format!(
            "{at} lists more than {MAX_SUBJECTS_PER_RULE} combinations: some fields became `*`"
        ));
    }
    choices.iter().fold(vec![Subject::default()], |acc, alternatives| {
        acc.iter().flat_map(|s| alternatives.iter().map(move |alt| s.pushed(alt))).collect()
    })
}

/// The values grant key `key` of `rule` takes: `None` when the rule does not set it. A
/// template is filled in from the rule's exact `match` values (`role/{name}` with
/// `name: [a, b]` is two roles); one that could take other values gives none, noted.
pub(crate) fn param_values(rule: &RuleView, key: &str, notes: &mut Vec<String>) -> Option<Vec<String>> {
    use crate::mapping::{GrantValue, TemplatePiece};
    let GrantValue::Text(pieces) = rule.param(key)? else { return None };
    let at = format!("rule `{}` ({})", rule.name, rule.location());
    let parts: Vec<Part<'_>> = pieces
        .iter()
        .map(|p| match p {
            TemplatePiece::Text(t) => Part::Text(t),
            TemplatePiece::Field(f) => Part::Field(f),
        })
        .collect();
    let values: Option<Vec<String>> =
        expand_parts(&parts, rule, &at, notes).iter().map(Subject::exact).collect();
    if values.is_none() {
        notes.push(format!(
            "{at}: `{key}` depends on fields the rule does not match exactly; write the trust for each value it takes by hand"
        ));
    }
    Some(values.unwrap_or_default())
}

/// A rule's grant value as written, `{field}` for what each identity fills in.
pub(crate) fn template(rule: &RuleView, key: &str) -> Option<String> {
    let crate::mapping::GrantValue::Text(pieces) = rule.param(key)? else { return None };
    Some(
        pieces
            .iter()
            .map(|p| match p {
                crate::mapping::TemplatePiece::Text(t) => t.clone(),
                crate::mapping::TemplatePiece::Field(f) => format!("{{{f}}}"),
            })
            .collect(),
    )
}

/// `text` as one POSIX shell word: as it is when only safe characters, else single-quoted.
pub(crate) fn sh(text: &str) -> String {
    let safe =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if safe { text.to_owned() } else { format!("'{}'", text.replace('\'', "'\\''")) }
}
