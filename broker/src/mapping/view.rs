//! A rule's matches and grant, read-only: what `tessera trust` writes a cloud's trust
//! setup from.

use std::path::PathBuf;

use crate::mapping::MappingSet;
use crate::mapping::compile::{CompiledRule, ParamTemplate};
use crate::mapping::file::Effect;
use crate::mapping::glob::{GlobPiece, Pattern};

/// One rule, as the platform side of a target needs to see it.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub name: String,
    pub description: Option<String>,
    pub effect: Effect,
    /// The target the rule grants (or, for a deny rule, refuses).
    pub target: String,
    pub file: PathBuf,
    pub line: u64,
    /// Each `match` condition: the identity field and its patterns (any may match).
    matchers: Vec<(String, Vec<Pattern>)>,
    /// Whether a `when:` condition narrows the rule further.
    pub conditional: bool,
    /// The target-specific grant keys, in the order written.
    pub params: Vec<(String, GrantValue)>,
}

/// A grant key's value, as the template it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantValue {
    Text(Vec<TemplatePiece>),
    Map(Vec<(String, Vec<TemplatePiece>)>),
}

/// A piece of a template: literal text, or an identity field (`{namespace}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePiece {
    Text(String),
    Field(String),
}

impl RuleView {
    fn of(rule: &CompiledRule) -> Self {
        let params = rule
            .params
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    ParamTemplate::Str(t) => GrantValue::Text(t.pieces()),
                    ParamTemplate::Map(entries) => {
                        GrantValue::Map(entries.iter().map(|(k, t)| (k.clone(), t.pieces())).collect())
                    }
                };
                (key.clone(), value)
            })
            .collect();
        Self {
            name: rule.name.clone(),
            description: rule.description.clone(),
            effect: rule.effect,
            target: rule.target.clone(),
            file: rule.file.to_path_buf(),
            line: rule.pos.line,
            matchers: rule.matchers.iter().map(|m| (m.field.clone(), m.patterns.clone())).collect(),
            conditional: rule.condition.is_some(),
            params,
        }
    }

    /// The patterns of the `match` condition on `field`, as pieces, if the rule has one.
    pub fn patterns(&self, field: &str) -> Option<Vec<Vec<GlobPiece>>> {
        self.matchers.iter().find(|(f, _)| f == field).map(|(_, p)| p.iter().map(Pattern::pieces).collect())
    }

    /// The rule's `match` conditions as written: each field and its patterns.
    pub fn matchers_as_written(&self) -> Vec<(&str, Vec<&str>)> {
        self.matchers.iter().map(|(f, p)| (f.as_str(), p.iter().map(Pattern::as_str).collect())).collect()
    }

    /// The fields the rule's `match` looks at, in the order written.
    pub fn matched_fields(&self) -> impl Iterator<Item = &str> {
        self.matchers.iter().map(|(f, _)| f.as_str())
    }

    /// Whether the rule's `match` condition on `field` (if any) accepts `value`.
    pub fn admits(&self, field: &str, value: &str) -> bool {
        self.matchers.iter().filter(|(f, _)| f == field).all(|(_, p)| p.iter().any(|p| p.matches(value)))
    }

    /// `file.yaml:line`: the file's name within the mapping directory, and the line.
    pub fn location(&self) -> String {
        let name = self
            .file
            .file_name()
            .map_or_else(|| self.file.display().to_string(), |n| n.to_string_lossy().into_owned());
        format!("{name}:{}", self.line)
    }

    /// The exact values the rule's `match` accepts for `field`, when it has a condition on
    /// it and every pattern of that condition is exact.
    pub fn exact_values(&self, field: &str) -> Option<Vec<String>> {
        let (_, patterns) = self.matchers.iter().find(|(f, _)| f == field)?;
        patterns.iter().map(|p| p.exact().map(str::to_owned)).collect()
    }

    /// This rule with its condition on `field` narrowed to `value` alone: the rule as it
    /// applies to the identities whose `field` is `value`.
    pub fn narrowed(&self, field: &str, value: &str) -> Self {
        let mut out = self.clone();
        for (f, patterns) in &mut out.matchers {
            if f == field {
                *patterns = vec![Pattern::exactly(value)];
            }
        }
        out
    }

    /// The identity fields the templates of its grant values name.
    pub fn template_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        let pieces = self.params.iter().flat_map(|(_, value)| match value {
            GrantValue::Text(pieces) => pieces.iter().collect::<Vec<_>>(),
            GrantValue::Map(entries) => entries.iter().flat_map(|(_, p)| p.iter()).collect(),
        });
        for piece in pieces {
            if let TemplatePiece::Field(f) = piece
                && !fields.contains(&f.as_str())
            {
                fields.push(f);
            }
        }
        fields
    }

    /// The value of grant key `key`, if the rule sets it.
    pub fn param(&self, key: &str) -> Option<&GrantValue> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl MappingSet {
    /// Every rule for `target`, allow and deny, in load order.
    pub fn rules_for(&self, target: &str) -> Vec<RuleView> {
        self.rules.iter().filter(|r| r.target == target).map(RuleView::of).collect()
    }

    /// Every rule, in load order (file by file, as written).
    pub fn rule_views(&self) -> Vec<RuleView> {
        self.rules.iter().map(RuleView::of).collect()
    }
}
