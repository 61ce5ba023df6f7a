//! Warnings about rule sets that load but do not do what they seem to: rules that can never
//! apply, allow rules that overlap so that requests both match are refused as ambiguous,
//! and conditions that read a value an identity may lack without testing for it. Reported
//! by `tessera mappings check`; a warning never stops a set loading.
//!
//! Each check only warns when it is sure for the cases it understands (exact values and
//! the glob shapes `*`, `prefix*` and `*suffix`), so a warning is worth reading.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::mapping::access::Optional;
use crate::mapping::compile::{CompiledRule, Matcher};
use crate::mapping::file::Effect;
use crate::mapping::glob::Pattern;
use crate::mapping::{Catalog, MappingSet, SourceInfo};

/// A problem that does not stop the set loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: warning: {} (hint: {})",
            self.file.display(),
            self.line,
            self.column,
            self.message,
            self.hint
        )
    }
}

fn warn(rule: &CompiledRule, message: String, hint: impl Into<String>) -> Warning {
    Warning {
        file: rule.file.to_path_buf(),
        line: rule.pos.line,
        column: rule.pos.column,
        message,
        hint: hint.into(),
    }
}

fn at(rule: &CompiledRule) -> String {
    format!("{}:{}:{}", rule.file.display(), rule.pos.line, rule.pos.column)
}

fn matcher<'r>(rule: &'r CompiledRule, field: &str) -> Option<&'r Matcher> {
    rule.matchers.iter().find(|m| m.field == field)
}

/// The configured sources whose identities could satisfy the rule's `source` and
/// `provider` conditions.
fn possible_sources<'c>(rule: &CompiledRule, catalog: &'c Catalog) -> Vec<&'c SourceInfo> {
    let accepts = |field: &str, value: &str| {
        matcher(rule, field).is_none_or(|m| m.patterns.iter().any(|p| p.matches(value)))
    };
    catalog.sources.iter().filter(|s| accepts("source", &s.name) && accepts("provider", &s.kind)).collect()
}

/// Whether every value `narrow` accepts, `wide` accepts too.
fn covers(wide: &[Pattern], narrow: &[Pattern]) -> bool {
    narrow.iter().all(|n| wide.iter().any(|w| w.covers(n)))
}

/// Whether `deny` applies to every identity `allow` applies to (as far as `match` says;
/// a deny with a `when` is never sure to).
fn shadows(deny: &CompiledRule, allow: &CompiledRule, allow_sources: &[&SourceInfo]) -> bool {
    if deny.condition.is_some() || deny.target != allow.target {
        return false;
    }
    deny.matchers.iter().all(|d| {
        if let Some(a) = matcher(allow, &d.field) {
            return covers(&d.patterns, &a.patterns);
        }
        // The allow rule does not say, but the sources it can reach may all satisfy it.
        let value = |s: &SourceInfo| match d.field.as_str() {
            "source" => Some(s.name.clone()),
            "provider" => Some(s.kind.clone()),
            _ => None,
        };
        !allow_sources.is_empty()
            && allow_sources
                .iter()
                .all(|s| value(s).is_some_and(|v| d.patterns.iter().any(|p| p.matches(&v))))
    })
}

/// Whether no identity can satisfy both rules' `match`.
fn disjoint(
    a: &CompiledRule,
    b: &CompiledRule,
    a_sources: &[&SourceInfo],
    b_sources: &[&SourceInfo],
) -> bool {
    // An allow rule with `match.actor` applies only to requests with an actor, and one
    // without it never does: the two never both apply.
    if a.effect == Effect::Allow && b.effect == Effect::Allow && a.delegates() != b.delegates() {
        return true;
    }
    let by_field = a.matchers.iter().any(|ma| {
        matcher(b, &ma.field)
            .is_some_and(|mb| ma.patterns.iter().all(|p| mb.patterns.iter().all(|q| p.disjoint(q))))
    });
    by_field || !a_sources.iter().any(|s| b_sources.iter().any(|t| s.name == t.name))
}

impl MappingSet {
    /// Warnings about rules that can never apply and allow rules that overlap, in file
    /// order. `catalog` is the one the set was loaded with.
    pub fn lint(&self, catalog: &Catalog) -> Vec<Warning> {
        let sources: Vec<Vec<&SourceInfo>> =
            self.rules.iter().map(|r| possible_sources(r, catalog)).collect();
        let rules: Vec<Sourced<'_>> = self.rules.iter().zip(sources.iter().map(Vec::as_slice)).collect();
        let mut warnings = unsatisfiable(&rules, catalog);
        warnings.extend(shadowed(&rules));
        warnings.extend(self.rules.iter().flat_map(unguarded));
        for (i, j) in overlap_candidates(&rules) {
            if let (Some(a), Some(b)) = (rules.get(i), rules.get(j)) {
                warnings.extend(overlap(a, b));
            }
        }
        let order = |w: &Warning| {
            let file = self.rules.iter().position(|r| *r.file == *w.file).unwrap_or(usize::MAX);
            (file, w.line, w.column)
        };
        warnings.sort_by_key(order);
        warnings
    }
}

/// A rule and the configured sources whose identities could satisfy it.
type Sourced<'a> = (&'a CompiledRule, &'a [&'a SourceInfo]);

/// Rules that name a `source` or `provider` no configured source satisfies.
fn unsatisfiable(rules: &[Sourced<'_>], catalog: &Catalog) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (rule, possible) in rules {
        if possible.is_empty() && (matcher(rule, "provider").is_some() || matcher(rule, "source").is_some()) {
            let kinds: Vec<String> =
                catalog.sources.iter().map(|s| format!("`{}` ({})", s.name, s.kind)).collect();
            warnings.push(warn(
                rule,
                format!(
                    "rule `{}` can never apply: no configured source satisfies both its `source` and `provider`",
                    rule.name
                ),
                format!(
                    "`provider` is the kind of the source that verified the identity; configured sources: {}",
                    kinds.join(", ")
                ),
            ));
        }
    }
    warnings
}

/// Allow rules a deny rule takes every identity from.
fn shadowed(rules: &[Sourced<'_>]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (allow, allow_sources) in rules.iter().filter(|(r, _)| r.effect == Effect::Allow) {
        let shadow = rules.iter().find(|(d, _)| d.effect == Effect::Deny && shadows(d, allow, allow_sources));
        if let Some((deny, _)) = shadow {
            warnings.push(warn(
                allow,
                format!(
                    "rule `{}` can never apply: deny rule `{}` ({}) matches every identity it matches",
                    allow.name,
                    deny.name,
                    at(deny)
                ),
                "remove the allow rule, or narrow the deny rule",
            ));
        }
    }
    warnings
}

/// A warning, at the `when:` condition, for each attribute or optional field it reads
/// without a `has()` / `in` test: for an identity without it the condition fails, which
/// makes a deny rule apply and an allow rule not.
fn unguarded(rule: &CompiledRule) -> Vec<Warning> {
    let Some(condition) = &rule.condition else { return Vec::new() };
    condition.unguarded().into_iter().map(|value| unguarded_read(rule, &value)).collect()
}

fn unguarded_read(rule: &CompiledRule, value: &Optional) -> Warning {
    // The guard that lets the rest be read only when the value is there, and the one
    // that holds when it is missing.
    let (missing, present, absent) = match value {
        Optional::Field(name) => {
            (format!("no `{name}`"), format!("has(identity.{name}) &&"), format!("!has(identity.{name}) ||"))
        }
        Optional::Attribute(key) => (
            format!("no attribute `{key}`"),
            format!("\"{key}\" in identity.attributes &&"),
            format!("!(\"{key}\" in identity.attributes) ||"),
        ),
    };
    let (what, refuse, admit) = match rule.effect {
        Effect::Deny => ("the deny rule applies", absent, present),
        Effect::Allow => ("the rule does not apply", present, absent),
    };
    let message = format!(
        "the condition of rule `{}` reads `{value}` without testing that it is there: \
         for an identity with {missing} the condition fails and {what}",
        rule.name
    );
    Warning {
        file: rule.file.to_path_buf(),
        line: rule.when_pos.line,
        column: rule.when_pos.column,
        message,
        hint: format!(
            "say what identities without it get: `{refuse} ...` refuses them, `{admit} ...` lets them through"
        ),
    }
}

/// The pairs of allow rules of one target that may overlap, as sorted index pairs. Rules
/// naming one exact source are paired only with rules of the same source or of no single
/// source, so large sets stay fast.
fn overlap_candidates(rules: &[Sourced<'_>]) -> Vec<(usize, usize)> {
    let mut groups: HashMap<(&str, Option<&str>), Vec<usize>> = HashMap::new();
    for (i, (rule, _)) in rules.iter().enumerate() {
        if rule.effect != Effect::Allow {
            continue;
        }
        let source = matcher(rule, "source").and_then(|m| match m.patterns.as_slice() {
            [p] => p.exact(),
            _ => None,
        });
        groups.entry((rule.target.as_str(), source)).or_default().push(i);
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for ((target, source), members) in &groups {
        for (n, &i) in members.iter().enumerate() {
            for &j in members.iter().skip(n + 1) {
                pairs.push((i, j));
            }
        }
        if source.is_none() {
            // Rules of no single source may overlap any rule of the target.
            for ((other_target, other_source), others) in &groups {
                if other_target == target && other_source.is_some() {
                    for &i in members {
                        for &j in others {
                            pairs.push((i.min(j), i.max(j)));
                        }
                    }
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

/// A warning, at `b`, when allow rules `a` and `b` can apply to the same identity and a
/// request cannot always pick one by its scope.
fn overlap((a, a_sources): &Sourced<'_>, (b, b_sources): &Sourced<'_>) -> Option<Warning> {
    if disjoint(a, b, a_sources, b_sources) {
        return None;
    }
    let hint = "narrow one rule's `match` or `when` so they cannot both apply, or merge them";
    let message = if a.scope == b.scope {
        let what = if a.scope.is_some() { "grant the same scope" } else { "grant no scope" };
        format!(
            "rules `{}` ({}) and `{}` can apply to the same identity and both {what}: such requests are refused as ambiguous",
            a.name,
            at(a),
            b.name
        )
    } else if a.scope.is_none() || b.scope.is_none() {
        let (unscoped, other) = if a.scope.is_none() { (a, b) } else { (b, a) };
        format!(
            "rule `{}` grants no scope and `{}` ({}) can apply to the same identity: where both apply, a request without a scope is ambiguous and one with a scope never picks `{}`",
            unscoped.name,
            other.name,
            at(other),
            unscoped.name
        )
    } else {
        // Different scopes: the requested scope picks one, as designed.
        return None;
    };
    Some(warn(b, message, hint))
}
