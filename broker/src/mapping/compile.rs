//! Rules checked against the broker's catalog and each other, compiled (patterns,
//! templates, conditions, TTLs resolved) and indexed by target and identity field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessera_adapters::config::{format_duration, validate_name};
use tessera_adapters::{Identity, RuleParam, RuleText};

use crate::mapping::condition::Condition;
use crate::mapping::error::LoadError;
use crate::mapping::file::{
    COMMON_GRANT_KEYS, Effect, Expectation, RawCase, RawClaim, RawClaims, RawFile, RawGrant, RawMatcher,
    RawParam, RawRule, Sp, list,
};
use crate::mapping::glob::Pattern;
use crate::mapping::template::Template;
use crate::mapping::yaml::Pos;
use crate::mapping::{Catalog, TargetInfo};

/// Claims Tessera sets on every token it signs; a rule may not override them.
pub(crate) const RESERVED_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

const PATTERN_HINT: &str = "`*` matches any run of characters and `?` one; write `\\*`, `\\?` or `\\\\` for the character itself (inside single quotes in YAML)";
const TEMPLATE_HINT: &str = "`{field}` names an identity field (id, provider, source, issuer, subject, tenant, namespace, name, instance, region or attributes.<key>); write `{{` and `}}` for literal braces";

/// One `match` condition, compiled: the field's value must match one of the patterns.
/// A field the identity has no value for never matches.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub field: String,
    pub patterns: Vec<Pattern>,
}

impl Matcher {
    /// For a `match.actor` condition, the actor's field it tests (`name` of `actor.name`).
    pub fn actor_field(&self) -> Option<&str> {
        self.field.strip_prefix("actor.")
    }

    /// Who this condition tests and which of their fields: the identity, or for a
    /// `match.actor` condition the actor, `None` when the request has none.
    pub fn tested<'i>(
        &self,
        identity: &'i Identity,
        actor: Option<&'i Identity>,
    ) -> Option<(&'i Identity, &str)> {
        match self.actor_field() {
            Some(field) => actor.map(|a| (a, field)),
            None => Some((identity, self.field.as_str())),
        }
    }

    /// Whether the field's value matches one of the patterns.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        value.is_some_and(|v| self.patterns.iter().any(|p| p.matches(v)))
    }

    /// The values this condition accepts when all its patterns are exact.
    pub fn exact_values(&self) -> Option<Vec<&str>> {
        self.patterns.iter().map(Pattern::exact).collect()
    }
}

#[derive(Debug)]
pub(crate) enum ClaimTemplate {
    Str(Template),
    Literal(serde_json::Value),
    List(Vec<ClaimTemplate>),
    Object(Vec<(String, ClaimTemplate)>),
}

#[derive(Debug)]
pub(crate) enum ParamTemplate {
    Str(Template),
    Map(Vec<(String, Template)>),
}

impl ParamTemplate {
    /// What a target's load-time check sees: literals whole, templates as such.
    fn view(&self) -> RuleParam<'_> {
        fn text(t: &Template) -> RuleText<'_> {
            match t.literal() {
                Some(s) => RuleText::Literal(s),
                None => RuleText::Template,
            }
        }
        match self {
            Self::Str(t) => RuleParam::Text(text(t)),
            Self::Map(entries) => {
                RuleParam::Map(entries.iter().map(|(k, v)| (k.as_str(), text(v))).collect())
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: String,
    pub description: Option<String>,
    pub effect: Effect,
    pub file: Arc<Path>,
    pub pos: Pos,
    pub matchers: Vec<Matcher>,
    pub condition: Option<Condition>,
    /// Where the `when:` condition is; the rule's own position when it has none.
    pub when_pos: Pos,
    pub target: String,
    /// The scope this rule grants: `grant.scope`, else the target's scope parameter.
    pub scope: Option<Template>,
    /// The rule's TTL, or the target's default.
    pub ttl: Duration,
    pub claims: Vec<(String, ClaimTemplate)>,
    pub params: Vec<(String, ParamTemplate)>,
}

impl CompiledRule {
    /// Whether the rule has `match.actor` conditions: an allow rule allows delegated
    /// requests only then (delegation is opt-in per rule).
    pub fn delegates(&self) -> bool {
        self.matchers.iter().any(|m| m.actor_field().is_some())
    }
}

/// Rules by the target they grant and, within a target, by one identity field each rule
/// requires an exact value of, so a request looks only at rules that could match it and
/// the cost of a decision stays flat however many rules there are.
///
/// Each rule is filed under one of its exact `match` conditions (field and values): the
/// one whose values the fewest other rules of the target share, so buckets stay small
/// (a rule for `source: eks-prod, namespace: payments, name: api` is found by `name` if
/// many rules name the source). Rules with no exact condition (globs only) are looked at
/// for every request of their target.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    by_target: HashMap<String, TargetRules>,
}

#[derive(Debug, Default)]
struct TargetRules {
    /// Every rule for the target, in load order: what an explanation walks.
    all: Vec<usize>,
    /// Field -> value -> rules filed under it, each list in load order.
    keyed: Vec<(String, HashMap<String, Vec<usize>>)>,
    /// Rules without an exact condition, in load order.
    rest: Vec<usize>,
}

impl RuleIndex {
    fn build(rules: &[CompiledRule]) -> Self {
        // How many rules of each target require each (field, value).
        let mut shared: HashMap<(&str, &str, &str), usize> = HashMap::new();
        for rule in rules {
            // The index files rules by the identity's fields; the actor's are tested later.
            for m in rule.matchers.iter().filter(|m| m.actor_field().is_none()) {
                if let Some(values) = m.exact_values() {
                    for v in values {
                        *shared.entry((&rule.target, &m.field, v)).or_default() += 1;
                    }
                }
            }
        }
        let mut by_target: HashMap<String, TargetRules> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let entry = by_target.entry(rule.target.clone()).or_default();
            entry.all.push(i);
            let best = rule
                .matchers
                .iter()
                .filter(|m| m.actor_field().is_none())
                .filter_map(|m| {
                    let values = m.exact_values()?;
                    let cost: usize = values
                        .iter()
                        .map(|v| {
                            shared.get(&(rule.target.as_str(), m.field.as_str(), *v)).copied().unwrap_or(0)
                        })
                        .sum();
                    Some((cost, m, values))
                })
                .min_by_key(|(cost, _, _)| *cost);
            let Some((_, matcher, values)) = best else {
                entry.rest.push(i);
                continue;
            };
            let pos = match entry.keyed.iter().position(|(f, _)| *f == matcher.field) {
                Some(pos) => pos,
                None => {
                    entry.keyed.push((matcher.field.clone(), HashMap::new()));
                    entry.keyed.len() - 1
                }
            };
            if let Some((_, buckets)) = entry.keyed.get_mut(pos) {
                for v in values {
                    let bucket = buckets.entry(v.to_string()).or_default();
                    // `name: [api, api]` files the rule once.
                    if bucket.last() != Some(&i) {
                        bucket.push(i);
                    }
                }
            }
        }
        Self { by_target }
    }

    /// Every rule that grants `target`, in load order.
    pub fn for_target(&self, target: &str) -> &[usize] {
        self.by_target.get(target).map_or(&[], |t| t.all.as_slice())
    }

    /// The rules for `target` that could match `identity`, in load order, into `out`.
    /// Every rule left out has an exact condition `identity` fails. Rules filed under an
    /// attribute the identity withheld are all in: none can be ruled out, and each must
    /// fail closed.
    pub fn candidates(&self, target: &str, identity: &Identity, out: &mut Vec<usize>) {
        out.clear();
        let Some(t) = self.by_target.get(target) else { return };
        out.extend_from_slice(&t.rest);
        let mut several_buckets = false;
        for (field, buckets) in &t.keyed {
            if identity.is_withheld(field) {
                buckets.values().for_each(|bucket| out.extend_from_slice(bucket));
                several_buckets = true;
            } else if let Some(bucket) = identity.field(field).and_then(|v| buckets.get(v)) {
                out.extend_from_slice(bucket);
            }
        }
        // Sorting restores load order, which decisions and explanations report in. A rule
        // is filed under one field only, so only the buckets of a withheld field, which a
        // rule of several values is in each of, can repeat one.
        out.sort_unstable();
        if several_buckets {
            out.dedup();
        }
    }
}

/// A compiled test case.
#[derive(Debug)]
pub(crate) struct TestCase {
    pub file: Arc<Path>,
    pub pos: Pos,
    pub description: Option<String>,
    pub identity: Identity,
    pub actor: Option<Identity>,
    pub audience: String,
    pub scope: Option<String>,
    pub client_addr: Option<String>,
    pub now: Option<i64>,
    pub expect: Expectation,
}

#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub rules: Vec<CompiledRule>,
    pub index: RuleIndex,
    pub cases: Vec<TestCase>,
}

/// Checks and compiles one file's rules and test cases. Each step records the errors it
/// finds and returns `None` when it found any.
struct Compiler<'a> {
    catalog: &'a Catalog,
    errors: &'a mut Vec<LoadError>,
    file: Arc<Path>,
}

/// What a rule's `grant` compiles to, besides its target.
struct GrantParts {
    scope: Option<Template>,
    ttl: Duration,
    claims: Vec<(String, ClaimTemplate)>,
    params: Vec<(String, ParamTemplate)>,
}

impl<'a> Compiler<'a> {
    fn new(catalog: &'a Catalog, errors: &'a mut Vec<LoadError>, path: &Path) -> Self {
        Self { catalog, errors, file: Arc::from(path) }
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(LoadError::at(&self.file, pos, message, hint));
    }

    fn target(&mut self, name: &Sp<String>) -> Option<&'a TargetInfo> {
        let catalog = self.catalog;
        let found = catalog.targets.iter().find(|t| t.name == name.value);
        if found.is_none() {
            let hint = known_targets(catalog);
            self.error(name.pos, format!("unknown target `{}`", name.value), hint);
        }
        found
    }

    fn pattern(&mut self, field: &str, p: &Sp<String>) -> Option<Pattern> {
        if p.value.is_empty() {
            self.error(
                p.pos,
                format!("empty pattern for `{field}` matches only an empty value"),
                "write a value, or `*` for any value",
            );
            return None;
        }
        match Pattern::parse(&p.value) {
            Ok(pattern) => Some(pattern),
            Err(e) => {
                self.error(p.pos, format!("bad pattern `{}`: {e}", p.value), PATTERN_HINT);
                None
            }
        }
    }

    fn template(&mut self, t: &Sp<String>) -> Option<Template> {
        match Template::parse(&t.value) {
            Ok(template) => Some(template),
            Err(e) => {
                self.error(t.pos, format!("bad template `{}`: {e}", t.value), TEMPLATE_HINT);
                None
            }
        }
    }

    fn claim(&mut self, raw: &RawClaim) -> Option<ClaimTemplate> {
        Some(match raw {
            RawClaim::Str(s) => ClaimTemplate::Str(self.template(s)?),
            RawClaim::Literal(v) => ClaimTemplate::Literal(v.clone()),
            RawClaim::List(items) => {
                let out: Vec<_> = items.iter().map(|i| self.claim(i)).collect();
                ClaimTemplate::List(out.into_iter().collect::<Option<_>>()?)
            }
            RawClaim::Object(entries) => {
                let out: Vec<_> =
                    entries.iter().map(|(k, v)| self.claim(v).map(|v| (k.value.clone(), v))).collect();
                ClaimTemplate::Object(out.into_iter().collect::<Option<_>>()?)
            }
        })
    }

    fn condition(&mut self, when: &Sp<String>) -> Option<Condition> {
        match Condition::compile(&when.value) {
            Ok(c) => Some(c),
            Err(problems) => {
                for p in problems {
                    self.error(when.pos, p.message, p.hint);
                }
                None
            }
        }
    }

    fn rule(&mut self, raw: &RawRule) -> Option<CompiledRule> {
        // A set with any error is refused as a whole; still, a rule with a part left out
        // could be broader than written, so it is never compiled. Every part is checked
        // before any is given up on, so all its errors are reported at once.
        let condition = match &raw.when {
            Some(when) => self.condition(when).map(Some),
            None => Some(None),
        };
        let matchers = self.matchers(&raw.matchers);
        let grant = raw.grant.as_ref()?;
        let target = grant.target.as_ref().and_then(|t| self.target(t));
        let grant = match raw.effect {
            Effect::Deny => self.deny_grant(grant, target),
            Effect::Allow => self.allow_grant(grant, target),
        };
        let (name, target, grant) = (raw.name.as_ref()?, target?, grant?);
        let (condition, matchers) = (condition?, matchers?);
        if raw.match_pos.is_none() || matchers.is_empty() {
            return None;
        }
        Some(CompiledRule {
            name: name.value.clone(),
            description: raw.description.clone(),
            effect: raw.effect,
            file: Arc::clone(&self.file),
            pos: raw.pos,
            matchers,
            condition,
            when_pos: raw.when.as_ref().map_or(raw.pos, |w| w.pos),
            target: target.name.clone(),
            scope: grant.scope,
            ttl: grant.ttl,
            claims: grant.claims,
            params: grant.params,
        })
    }

    /// The `match` conditions; `None` when any has an error or no pattern.
    fn matchers(&mut self, raw: &[RawMatcher]) -> Option<Vec<Matcher>> {
        let matchers: Vec<Option<Matcher>> = raw.iter().map(|m| self.matcher(m)).collect();
        matchers.into_iter().collect()
    }

    fn matcher(&mut self, raw: &RawMatcher) -> Option<Matcher> {
        let patterns: Vec<Option<Pattern>> =
            raw.patterns.iter().map(|p| self.pattern(&raw.field, p)).collect();
        if raw.field == "source" || raw.field == "actor.source" {
            // Paired before dropping the invalid ones, so each keeps its own position.
            for (pattern, raw) in patterns.iter().zip(&raw.patterns) {
                let Some(pattern) = pattern else { continue };
                self.check_source(pattern, raw.pos);
            }
        }
        match patterns.into_iter().collect::<Option<Vec<_>>>() {
            Some(patterns) if !patterns.is_empty() => Some(Matcher { field: raw.field.clone(), patterns }),
            _ => None,
        }
    }

    /// A deny rule's grant: its target alone. Keys that do nothing on a deny rule would
    /// suggest a narrower deny than the one enforced (a deny applies to every scope of its
    /// target), so they are errors.
    fn deny_grant(&mut self, grant: &RawGrant, target: Option<&TargetInfo>) -> Option<GrantParts> {
        let mut inert: Vec<(Pos, &str)> = Vec::new();
        if let Some(s) = &grant.scope {
            inert.push((s.pos, "scope"));
        }
        if let Some(t) = &grant.ttl {
            inert.push((t.pos, "ttl"));
        }
        if let Some(c) = &grant.claims {
            inert.push((c.pos, "claims"));
        }
        for (k, _) in &grant.params {
            inert.push((k.pos, &k.value));
        }
        for (pos, key) in &inert {
            self.error(
                *pos,
                format!(
                    "`{key}` has no effect in a deny rule: a deny rule applies to every scope of its target"
                ),
                "remove it; to refuse one scope only, narrow the allow rules that grant it",
            );
        }
        let target = target?;
        if !inert.is_empty() {
            return None;
        }
        Some(GrantParts { scope: None, ttl: target.default_ttl, claims: Vec::new(), params: Vec::new() })
    }

    /// An allow rule's grant: TTL, scope, claims and target-specific keys, each checked
    /// against the target when it is known.
    fn allow_grant(&mut self, grant: &RawGrant, target: Option<&TargetInfo>) -> Option<GrantParts> {
        let ttl = self.ttl(grant.ttl.as_ref(), target);
        let scope = grant.scope.as_ref().map(|s| self.template(s));
        let claims = self.claims(grant.claims.as_ref());
        let params = self.params(&grant.params, target);
        let required = self.required_keys(grant, target);
        let (target, ttl, claims, params, ()) = (target?, ttl?, claims?, params?, required?);
        let scope = match scope {
            Some(scope) => Some(scope?),
            None => scope_param(target, &params),
        };
        Some(GrantParts { scope, ttl, claims, params })
    }

    /// `ttl` within the target's bounds, or else the target's default.
    fn ttl(&mut self, ttl: Option<&Sp<Duration>>, target: Option<&TargetInfo>) -> Option<Duration> {
        match (ttl, target) {
            (Some(ttl), Some(t)) if ttl.value > t.max_ttl => {
                self.error(
                    ttl.pos,
                    format!(
                        "ttl {} exceeds the maximum of target `{}` ({})",
                        format_duration(ttl.value),
                        t.name,
                        format_duration(t.max_ttl)
                    ),
                    format!("lower `ttl`, or raise `max_ttl` of target `{}` in broker.yaml", t.name),
                );
                None
            }
            (Some(ttl), Some(t))
                if t.target.as_ref().is_some_and(|checker| ttl.value < checker.min_ttl()) =>
            {
                let min = t.target.as_ref().map(|checker| checker.min_ttl()).unwrap_or_default();
                self.error(
                    ttl.pos,
                    format!(
                        "ttl {} is below the minimum of target `{}` ({})",
                        format_duration(ttl.value),
                        t.name,
                        format_duration(min)
                    ),
                    format!("the platform behind `{}` issues nothing shorter; raise `ttl`", t.name),
                );
                None
            }
            (Some(ttl), _) => Some(ttl.value),
            (None, Some(t)) => Some(t.default_ttl),
            (None, None) => None,
        }
    }

    fn claims(&mut self, claims: Option<&Sp<RawClaims>>) -> Option<Vec<(String, ClaimTemplate)>> {
        let Some(claims) = claims else { return Some(Vec::new()) };
        let compiled: Vec<_> = claims.value.iter().map(|(key, value)| self.claim_entry(key, value)).collect();
        compiled.into_iter().collect()
    }

    fn claim_entry(&mut self, key: &Sp<String>, value: &RawClaim) -> Option<(String, ClaimTemplate)> {
        if RESERVED_CLAIMS.contains(&key.value.as_str()) {
            self.error(
                key.pos,
                format!("claim `{}` is set by Tessera and cannot be set by a rule", key.value),
                format!("rename the claim; Tessera sets {}", list(RESERVED_CLAIMS)),
            );
            return None;
        }
        Some((key.value.clone(), self.claim(value)?))
    }

    /// The target-specific grant keys, each one the target takes and accepts the value of.
    fn params(
        &mut self,
        params: &[(Sp<String>, RawParam)],
        target: Option<&TargetInfo>,
    ) -> Option<Vec<(String, ParamTemplate)>> {
        let compiled: Vec<_> = params.iter().map(|(key, value)| self.param(key, value, target)).collect();
        compiled.into_iter().collect()
    }

    fn param(
        &mut self,
        key: &Sp<String>,
        value: &RawParam,
        target: Option<&TargetInfo>,
    ) -> Option<(String, ParamTemplate)> {
        if let Some(t) = target {
            if !t.grant_keys.contains(&key.value.as_str()) {
                let mut takes: Vec<&str> = COMMON_GRANT_KEYS.to_vec();
                takes.extend_from_slice(t.grant_keys);
                self.error(
                    key.pos,
                    format!("`{}` is not a grant key of target `{}` (type {})", key.value, t.name, t.kind),
                    format!("target `{}` takes {}", t.name, list(&takes)),
                );
                return None;
            }
            if t.scope_param == Some(key.value.as_str())
                && let RawParam::Map(_) = value
            {
                self.error(
                    key.pos,
                    format!("`{}` names the scope of target `{}` and must be a string", key.value, t.name),
                    "write a single value",
                );
                return None;
            }
        }
        let compiled = match value {
            RawParam::Str(s) => self.template(s).map(ParamTemplate::Str),
            RawParam::Map(entries) => {
                let out: Vec<_> =
                    entries.iter().map(|(k, v)| self.template(v).map(|v| (k.value.clone(), v))).collect();
                out.into_iter().collect::<Option<Vec<_>>>().map(ParamTemplate::Map)
            }
        }?;
        if let Some(checker) = target.and_then(|t| t.target.as_ref()) {
            let pos = match value {
                RawParam::Str(s) => s.pos,
                RawParam::Map(_) => key.pos,
            };
            if let Err(e) = checker.check_grant_param(&key.value, &compiled.view()) {
                self.error(
                    pos,
                    format!("`{}` is not valid for target `{}`: {e}", key.value, checker.name()),
                    format!("see the `{}` target's grant keys in docs/targets.md", checker.kind()),
                );
                return None;
            }
        }
        Some((key.value.clone(), compiled))
    }

    /// The grant keys the target needs in every rule granting it.
    fn required_keys(&mut self, grant: &RawGrant, target: Option<&TargetInfo>) -> Option<()> {
        let (Some(checker), Some(target_key)) =
            (target.and_then(|t| t.target.as_ref()), grant.target.as_ref())
        else {
            return Some(());
        };
        let missing: Vec<&str> = checker
            .required_grant_keys()
            .into_iter()
            .filter(|key| match *key {
                "scope" => grant.scope.is_none(),
                key => !grant.params.iter().any(|(k, _)| k.value == key),
            })
            .collect();
        for key in &missing {
            self.error(
                target_key.pos,
                format!("target `{}` needs `{key}` in every rule granting it", checker.name()),
                format!("add `{key}:` to the grant, or set it on the target in broker.yaml"),
            );
        }
        missing.is_empty().then_some(())
    }

    /// Rule names are valid and unique across all files.
    fn rule_name(&mut self, name: &Sp<String>, rule: &RawRule, names: &mut RuleNames) {
        if let Err(message) = validate_name(&name.value) {
            self.error(name.pos, message, "use lowercase letters, digits, `-` and `_`");
        } else if let Some((first_file, first)) = names.first.get(&name.value) {
            let message = format!(
                "duplicate rule name `{}`; first defined at {}:{}:{}",
                name.value,
                first_file.display(),
                first.line,
                first.column
            );
            self.error(
                name.pos,
                message,
                "rule names are unique across all mapping files; rename one of them",
            );
        } else {
            names.first.insert(name.value.clone(), (Arc::clone(&self.file), name.pos));
            let target = rule.grant.as_ref().and_then(|g| g.target.as_ref()).map(|t| t.value.clone());
            names.facts.insert(name.value.clone(), (rule.effect, target));
        }
    }

    /// A test case for a configured target, expecting what a rule could decide.
    fn case(&mut self, case: &RawCase, facts: &RuleFacts) -> Option<TestCase> {
        let target = self.target(&case.audience);
        let expectation = self.expectation(case, facts);
        target.and(expectation)?;
        Some(TestCase {
            file: Arc::clone(&self.file),
            pos: case.pos,
            description: case.description.clone(),
            identity: case.identity.clone(),
            actor: case.actor.clone(),
            audience: case.audience.value.clone(),
            scope: case.scope.clone(),
            client_addr: case.client_addr.clone(),
            now: case.now,
            expect: case.expect.value.clone(),
        })
    }

    /// A rule a case expects is defined, has the expected effect and grants the case's
    /// audience.
    fn expectation(&mut self, case: &RawCase, facts: &RuleFacts) -> Option<()> {
        let (rule, want) = match &case.expect.value {
            Expectation::Allow(rule) => (rule, Effect::Allow),
            Expectation::Deny(rule) => (rule, Effect::Deny),
            Expectation::NoRule
            | Expectation::Ambiguous
            | Expectation::InvalidScope
            | Expectation::DelegationNotAllowed => return Some(()),
        };
        let (message, hint) = match facts.get(rule) {
            None => (
                format!("the test expects rule `{rule}`, which no mapping file defines"),
                "name a rule from any file in the directory".to_string(),
            ),
            Some((effect, _)) if *effect != want => (
                format!(
                    "the test expects `{}: {rule}`, but rule `{rule}` has `effect: {}`",
                    want.as_str(),
                    effect.as_str()
                ),
                format!("write `{}: {rule}`", effect.as_str()),
            ),
            Some((_, Some(target))) if *target != case.audience.value => (
                format!(
                    "rule `{rule}` grants target `{target}`, so it cannot decide a request for `{}`",
                    case.audience.value
                ),
                format!("set `audience: {target}`, or expect another rule"),
            ),
            Some(_) => return Some(()),
        };
        self.error(case.expect.pos, message, hint);
        None
    }

    /// A `source` pattern that no configured source can match makes a rule that never
    /// applies: most likely a typo.
    fn check_source(&mut self, pattern: &Pattern, pos: Pos) {
        let catalog = self.catalog;
        if !catalog.sources.iter().any(|s| pattern.matches(&s.name)) {
            let hint = if catalog.sources.is_empty() {
                "broker.yaml configures no sources".to_string()
            } else {
                let names: Vec<&str> = catalog.sources.iter().map(|s| s.name.as_str()).collect();
                format!("sources in broker.yaml: {}", list(&names))
            };
            self.error(pos, format!("no configured source matches `{}`", pattern.as_str()), hint);
        }
    }
}

/// Without `scope:`, the target's scope parameter names what a rule grants.
fn scope_param(target: &TargetInfo, params: &[(String, ParamTemplate)]) -> Option<Template> {
    let name = target.scope_param?;
    params.iter().find(|(k, _)| k == name).and_then(|(_, v)| match v {
        ParamTemplate::Str(t) => Some(t.clone()),
        ParamTemplate::Map(_) => None,
    })
}

fn known_targets(catalog: &Catalog) -> String {
    if catalog.targets.is_empty() {
        "broker.yaml configures no targets".to_string()
    } else {
        let names: Vec<&str> = catalog.targets.iter().map(|t| t.name.as_str()).collect();
        format!("targets in broker.yaml: {}", list(&names))
    }
}

/// Where each rule name is first defined, and what each named rule is, for checking
/// test expectations.
#[derive(Default)]
struct RuleNames {
    /// Rule name -> where it was first defined, across all files.
    first: HashMap<String, (Arc<Path>, Pos)>,
    facts: RuleFacts,
}

/// Rule name -> (effect, target).
type RuleFacts = HashMap<String, (Effect, Option<String>)>;

/// Check and compile every file's rules and test cases, recording every error.
pub(crate) fn compile(
    files: &[(PathBuf, RawFile)],
    catalog: &Catalog,
    errors: &mut Vec<LoadError>,
) -> Compiled {
    let mut rules = Vec::new();
    let mut names = RuleNames::default();
    for (path, raw) in files {
        let mut cx = Compiler::new(catalog, errors, path);
        for rule in &raw.rules {
            if let Some(name) = &rule.name {
                cx.rule_name(name, rule, &mut names);
            }
            rules.extend(cx.rule(rule));
        }
    }
    let mut cases = Vec::new();
    for (path, raw) in files {
        let mut cx = Compiler::new(catalog, errors, path);
        for case in &raw.tests {
            cases.extend(cx.case(case, &names.facts));
        }
    }
    let index = RuleIndex::build(&rules);
    Compiled { rules, index, cases }
}
