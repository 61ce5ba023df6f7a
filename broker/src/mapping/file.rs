//! The mapping file format, read from a YAML tree. This pass checks shape only (known keys,
//! value types, `version`, durations) and keeps every value's position; what needs the
//! broker's catalog or the other files (targets, grant keys, duplicate names) is checked
//! when the rules are compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use tessera_adapters::Identity;
use tessera_adapters::config::duration;
use tessera_adapters::identity::FIELDS;

use crate::mapping::error::LoadError;
use crate::mapping::yaml::{Node, Pos, Value};

/// Whether a rule allows or denies. Deny rules win over any allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub rules: Vec<RawRule>,
    pub tests: Vec<RawCase>,
}

#[derive(Debug)]
pub(crate) struct RawRule {
    pub pos: Pos,
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub effect: Effect,
    /// Where `match:` is, or `None` when the rule has none.
    pub match_pos: Option<Pos>,
    pub matchers: Vec<RawMatcher>,
    /// The `when:` CEL condition as written.
    pub when: Option<Sp<String>>,
    pub grant: Option<RawGrant>,
}

/// One `match` condition: an identity field (`namespace`, `attributes.github.ref`) and the
/// patterns, any of which may match.
#[derive(Debug)]
pub(crate) struct RawMatcher {
    pub field: String,
    pub patterns: Vec<Sp<String>>,
}

#[derive(Debug)]
pub(crate) struct RawGrant {
    pub target: Option<Sp<String>>,
    pub scope: Option<Sp<String>>,
    pub ttl: Option<Sp<Duration>>,
    pub claims: Option<Sp<RawClaims>>,
    /// Every other key: target-specific, checked against the target's grant keys later.
    pub params: Vec<(Sp<String>, RawParam)>,
}

pub(crate) type RawClaims = Vec<(Sp<String>, RawClaim)>;

#[derive(Debug)]
pub(crate) enum RawClaim {
    /// A templated string.
    Str(Sp<String>),
    /// A number or boolean, taken as it is.
    Literal(serde_json::Value),
    List(Vec<RawClaim>),
    Object(Vec<(Sp<String>, RawClaim)>),
}

#[derive(Debug)]
pub(crate) enum RawParam {
    Str(Sp<String>),
    Map(Vec<(Sp<String>, Sp<String>)>),
}

/// A `tests:` case. Only cases without shape errors are kept.
#[derive(Debug)]
pub(crate) struct RawCase {
    pub pos: Pos,
    pub description: Option<String>,
    pub identity: Identity,
    /// The verified actor of a delegated request (RFC 8693 `actor_token`), if any.
    pub actor: Option<Identity>,
    pub audience: Sp<String>,
    pub scope: Option<String>,
    pub client_addr: Option<String>,
    /// The time the case is evaluated at, seconds since the epoch; default: the checker's clock.
    pub now: Option<i64>,
    pub expect: Sp<Expectation>,
}

/// What a test case expects (`expect:` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// `allow: <rule>`: the named rule allows, and its grant renders.
    Allow(String),
    /// `deny: <rule>`: the named deny rule applies.
    Deny(String),
    /// `none: true`: no rule applies.
    NoRule,
    /// `ambiguous: true`: several allow rules apply and no scope picks one.
    Ambiguous,
    /// `invalid_scope: true`: allow rules apply, none grants the requested scope.
    InvalidScope,
    /// `no_delegation: true`: the request has an actor, and the allow rules that apply
    /// do not allow delegation.
    DelegationNotAllowed,
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow(rule) => write!(f, "allow by rule `{rule}`"),
            Self::Deny(rule) => write!(f, "deny by rule `{rule}`"),
            Self::NoRule => f.write_str("no applying rule"),
            Self::Ambiguous => f.write_str("ambiguous"),
            Self::InvalidScope => f.write_str("scope not grantable"),
            Self::DelegationNotAllowed => f.write_str("delegation not allowed"),
        }
    }
}

const FILE_KEYS: &[&str] = &["version", "rules", "tests"];
const RULE_KEYS: &[&str] = &["name", "description", "effect", "match", "when", "grant"];
const CASE_KEYS: &[&str] =
    &["description", "identity", "actor", "audience", "scope", "client_addr", "now", "expect"];
const EXPECT_KEYS: &[&str] = &["allow", "deny", "none", "ambiguous", "invalid_scope", "no_delegation"];
/// `grant` keys every target reads; any other key is target-specific.
pub(crate) const COMMON_GRANT_KEYS: &[&str] = &["target", "scope", "ttl", "claims"];

/// Defaults for identity fields a test case leaves out.
const TEST_PROVIDER: &str = "test";
const TEST_ISSUER: &str = "https://tessera.test";
const TEST_SUBJECT: &str = "test-subject";

/// A checked map entry.
struct Entry<'n> {
    key: String,
    key_pos: Pos,
    node: &'n Node,
}

fn get<'e, 'n>(entries: &'e [Entry<'n>], key: &str) -> Option<&'e Entry<'n>> {
    entries.iter().find(|e| e.key == key)
}

/// Reads one file's tree, recording every shape error it finds.
pub(crate) struct Reader<'a> {
    file: &'a Path,
    errors: &'a mut Vec<LoadError>,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a Path, errors: &'a mut Vec<LoadError>) -> Self {
        Self { file, errors }
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(LoadError::at(self.file, pos, message, hint));
    }

    /// The entries of a map node. Keys must be scalars and unique; with `allowed`, any
    /// other key is reported. Bad entries are reported and left out.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: Option<&[&str]>) -> Option<Vec<Entry<'n>>> {
        let Value::Map(pairs) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a map, found {}", node.kind()),
                "write `key: value` lines indented under it, or `{ key: value }`",
            );
            return None;
        };
        let mut entries: Vec<Entry<'n>> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let Some(key) = k.scalar_text() else {
                self.error(
                    k.pos,
                    format!("a key in {what} is {}, not a string", k.kind()),
                    "map keys are plain names",
                );
                continue;
            };
            if let Some(first) = get(&entries, &key) {
                let first = first.key_pos;
                self.error(
                    k.pos,
                    format!(
                        "duplicate key `{key}` in {what}; first at line {}, column {}",
                        first.line, first.column
                    ),
                    "keep one of them",
                );
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&key.as_str())
            {
                self.error(
                    k.pos,
                    format!("unknown key `{key}` in {what}"),
                    format!("{what} takes {}", list(allowed)),
                );
                continue;
            }
            entries.push(Entry { key, key_pos: k.pos, node: v });
        }
        Some(entries)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        match node.scalar_text() {
            Some(value) => Some(Sp { value, pos: node.pos }),
            None => {
                self.error(
                    node.pos,
                    format!("{what} must be a string, found {}", node.kind()),
                    "write a single value; quote it if it contains `:`, `#` or starts with `*`",
                );
                None
            }
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a list, found {}", node.kind()),
                    format!("write `- ` items under {what}, or `[]` for none"),
                );
                None
            }
        }
    }

    pub fn file(&mut self, root: &Node) -> RawFile {
        let mut out = RawFile::default();
        if matches!(root.value, Value::Null) {
            self.error(
                Pos::START,
                "the file is empty",
                "start it with `version: 1` and a `rules:` list, or delete it",
            );
            return out;
        }
        let Some(entries) = self.map(root, "a mapping file", Some(FILE_KEYS)) else {
            return out;
        };
        match get(&entries, "version") {
            None => self.error(root.pos, "the file has no `version`", "add `version: 1` as the first line"),
            Some(e) => {
                let ok = matches!(&e.node.value, Value::Number(n) if n.as_u64() == Some(1));
                if !ok {
                    let shown = e.node.scalar_text().unwrap_or_else(|| e.node.kind().to_string());
                    self.error(
                        e.node.pos,
                        format!("unsupported version `{shown}`"),
                        "this broker reads `version: 1`",
                    );
                }
            }
        }
        if let Some(items) = get(&entries, "rules").and_then(|e| self.seq(e.node, "`rules`")) {
            out.rules = items.iter().filter_map(|n| self.rule(n)).collect();
        }
        if let Some(items) = get(&entries, "tests").and_then(|e| self.seq(e.node, "`tests`")) {
            out.tests = items.iter().filter_map(|n| self.case(n)).collect();
        }
        out
    }

    fn rule(&mut self, node: &Node) -> Option<RawRule> {
        let entries = self.map(node, "a rule", Some(RULE_KEYS))?;
        let mut rule = RawRule {
            pos: node.pos,
            name: None,
            description: None,
            effect: Effect::Allow,
            match_pos: None,
            matchers: Vec::new(),
            when: None,
            grant: None,
        };
        match get(&entries, "name") {
            Some(e) => rule.name = self.string(e.node, "`name`"),
            None => self.error(
                node.pos,
                "the rule has no `name`",
                "give every rule a unique `name:`; audit records and tests refer to it",
            ),
        }
        if let Some(e) = get(&entries, "description") {
            rule.description = self.string(e.node, "`description`").map(|s| s.value);
        }
        if let Some(effect) = get(&entries, "effect").and_then(|e| self.string(e.node, "`effect`")) {
            match effect.value.as_str() {
                "allow" => rule.effect = Effect::Allow,
                "deny" => rule.effect = Effect::Deny,
                other => self.error(
                    effect.pos,
                    format!("unknown effect `{other}`"),
                    "write `allow` (the default) or `deny`",
                ),
            }
        }
        if let Some(e) = get(&entries, "when") {
            rule.when = match &e.node.value {
                Value::Str(s) => Some(Sp { value: s.clone(), pos: e.node.pos }),
                _ => {
                    self.error(
                        e.node.pos,
                        format!("`when` must be a CEL expression in a string, found {}", e.node.kind()),
                        "quote the expression: `when: 'identity.name == \"api\"'`",
                    );
                    None
                }
            };
        }
        match get(&entries, "match") {
            Some(e) => {
                rule.match_pos = Some(e.key_pos);
                let before = self.errors.len();
                rule.matchers = self.matchers(e.node);
                if rule.matchers.is_empty() && self.errors.len() == before {
                    self.error(
                        e.key_pos,
                        "`match` has no conditions",
                        "name at least one identity field; to match every identity write `match: { id: \"*\" }`",
                    );
                }
            }
            None => self.error(
                node.pos,
                "the rule has no `match`",
                "add `match:` with at least one identity field; to match every identity write `match: { id: \"*\" }`",
            ),
        }
        match get(&entries, "grant") {
            Some(e) => rule.grant = self.grant(e.node),
            None => self.error(node.pos, "the rule has no `grant`", "add `grant: { target: <target name> }`"),
        }
        Some(rule)
    }

    fn matchers(&mut self, node: &Node) -> Vec<RawMatcher> {
        self.matchers_of(node, "`match`", "")
    }

    /// The conditions of `match` (`prefix` empty), or of `match.actor` (`prefix`
    /// `actor.`): the same fields either way, the actor's prefixed.
    fn matchers_of(&mut self, node: &Node, what: &str, prefix: &str) -> Vec<RawMatcher> {
        let mut allowed: Vec<&str> = FIELDS.to_vec();
        allowed.push("attributes");
        if prefix.is_empty() {
            allowed.push("actor");
        }
        let Some(entries) = self.map(node, what, Some(&allowed)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in &entries {
            if e.key == "actor" {
                let before = self.errors.len();
                let actor = self.matchers_of(e.node, "`match.actor`", "actor.");
                if actor.is_empty() && self.errors.len() == before {
                    self.error(
                        e.key_pos,
                        "`match.actor` has no conditions",
                        "name at least one field of the actor; to allow any verified actor write `actor: { id: \"*\" }`",
                    );
                }
                out.extend(actor);
            } else if e.key == "attributes" {
                let Some(attrs) = self.map(e.node, "`match.attributes`", None) else {
                    continue;
                };
                for a in &attrs {
                    if a.key.is_empty() {
                        self.error(
                            a.key_pos,
                            "an empty attribute name",
                            "name the attribute, e.g. `github.ref`",
                        );
                        continue;
                    }
                    let what = format!("`{prefix}attributes.{}`", a.key);
                    let patterns = self.patterns(a.node, &what);
                    out.push(RawMatcher { field: format!("{prefix}attributes.{}", a.key), patterns });
                }
            } else {
                let what = format!("`{prefix}{}`", e.key);
                let patterns = self.patterns(e.node, &what);
                out.push(RawMatcher { field: format!("{prefix}{}", e.key), patterns });
            }
        }
        out
    }

    fn patterns(&mut self, node: &Node, what: &str) -> Vec<Sp<String>> {
        match &node.value {
            Value::Seq(items) => {
                if items.is_empty() {
                    self.error(
                        node.pos,
                        format!("{what} is an empty list, which matches nothing"),
                        "list at least one pattern, or remove the key",
                    );
                }
                items.iter().filter_map(|n| self.pattern(n, what)).collect()
            }
            _ => self.pattern(node, what).into_iter().collect(),
        }
    }

    fn pattern(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        match node.scalar_text() {
            Some(value) => Some(Sp { value, pos: node.pos }),
            None => {
                self.error(
                    node.pos,
                    format!("{what} must be a pattern or a list of patterns, found {}", node.kind()),
                    "write a value such as `payments` or `api-*`, or a list `[a, b]`",
                );
                None
            }
        }
    }

    fn grant(&mut self, node: &Node) -> Option<RawGrant> {
        let entries = self.map(node, "`grant`", None)?;
        let mut grant = RawGrant { target: None, scope: None, ttl: None, claims: None, params: Vec::new() };
        for e in &entries {
            match e.key.as_str() {
                "target" => grant.target = self.string(e.node, "`target`"),
                "scope" => grant.scope = self.string(e.node, "`scope`"),
                "ttl" => grant.ttl = self.ttl(e.node),
                "claims" => {
                    if let Some(claims) = self.map(e.node, "`claims`", None) {
                        let value = claims
                            .iter()
                            .filter_map(|c| {
                                let key = Sp { value: c.key.clone(), pos: c.key_pos };
                                self.claim(c.node).map(|v| (key, v))
                            })
                            .collect();
                        grant.claims = Some(Sp { value, pos: e.key_pos });
                    }
                }
                _ => {
                    let key = Sp { value: e.key.clone(), pos: e.key_pos };
                    if let Some(v) = self.param(e.node, &e.key) {
                        grant.params.push((key, v));
                    }
                }
            }
        }
        if grant.target.is_none() && get(&entries, "target").is_none() {
            self.error(
                node.pos,
                "`grant` has no `target`",
                "name a target from broker.yaml: `target: <name>`",
            );
        }
        Some(grant)
    }

    fn ttl(&mut self, node: &Node) -> Option<Sp<Duration>> {
        let parsed = match &node.value {
            Value::Number(n) => n
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| format!("invalid duration `{n}`: use whole, non-negative seconds")),
            Value::Str(s) => duration::parse(s),
            _ => Err(format!("`ttl` must be a duration, found {}", node.kind())),
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.error(
                    node.pos,
                    "`ttl` is zero",
                    "write a positive duration such as 15m, or remove `ttl`",
                );
                None
            }
            Ok(d) => Some(Sp { value: d, pos: node.pos }),
            Err(message) => {
                self.error(node.pos, message, "or remove `ttl` for the target's default_ttl");
                None
            }
        }
    }

    fn claim(&mut self, node: &Node) -> Option<RawClaim> {
        match &node.value {
            Value::Str(s) => Some(RawClaim::Str(Sp { value: s.clone(), pos: node.pos })),
            Value::Number(n) => Some(RawClaim::Literal(serde_json::Value::Number(n.clone()))),
            Value::Bool(b) => Some(RawClaim::Literal(serde_json::Value::Bool(*b))),
            Value::Seq(items) => Some(RawClaim::List(items.iter().filter_map(|n| self.claim(n)).collect())),
            Value::Map(_) => {
                let entries = self.map(node, "a claim object", None)?;
                Some(RawClaim::Object(
                    entries
                        .iter()
                        .filter_map(|e| {
                            let key = Sp { value: e.key.clone(), pos: e.key_pos };
                            self.claim(e.node).map(|v| (key, v))
                        })
                        .collect(),
                ))
            }
            Value::Null => {
                self.error(node.pos, "a claim has no value", "give it a value, or remove it");
                None
            }
        }
    }

    fn param(&mut self, node: &Node, key: &str) -> Option<RawParam> {
        match &node.value {
            Value::Map(_) => {
                let what = format!("`{key}`");
                let entries = self.map(node, &what, None)?;
                let mut out = Vec::with_capacity(entries.len());
                for e in &entries {
                    let inner = format!("`{key}.{}`", e.key);
                    if let Some(v) = self.string(e.node, &inner) {
                        out.push((Sp { value: e.key.clone(), pos: e.key_pos }, v));
                    }
                }
                Some(RawParam::Map(out))
            }
            _ => self.string(node, &format!("`{key}`")).map(RawParam::Str),
        }
    }

    fn case(&mut self, node: &Node) -> Option<RawCase> {
        let before = self.errors.len();
        let entries = self.map(node, "a test case", Some(CASE_KEYS))?;
        let description =
            get(&entries, "description").and_then(|e| self.string(e.node, "`description`")).map(|s| s.value);
        let identity = match get(&entries, "identity") {
            Some(e) => self.identity(e.node),
            None => {
                self.error(
                    node.pos,
                    "the test case has no `identity`",
                    "add `identity: { source: ..., name: ... }`",
                );
                None
            }
        };
        let actor = get(&entries, "actor").and_then(|e| self.identity(e.node));
        let audience = match get(&entries, "audience") {
            Some(e) => self.string(e.node, "`audience`"),
            None => {
                self.error(node.pos, "the test case has no `audience`", "add `audience: <target name>`");
                None
            }
        };
        let scope = get(&entries, "scope").and_then(|e| self.string(e.node, "`scope`")).map(|s| s.value);
        let client_addr =
            get(&entries, "client_addr").and_then(|e| self.string(e.node, "`client_addr`")).map(|s| s.value);
        let now = get(&entries, "now").and_then(|e| self.time(e.node, "`now`"));
        let expect = match get(&entries, "expect") {
            Some(e) => self.expect(e.node),
            None => {
                self.error(
                    node.pos,
                    "the test case has no `expect`",
                    "add `expect: { allow: <rule> }`, `{ deny: <rule> }`, `{ none: true }`, `{ ambiguous: true }` or `{ invalid_scope: true }`",
                );
                None
            }
        };
        if self.errors.len() != before {
            return None;
        }
        Some(RawCase {
            pos: node.pos,
            description,
            identity: identity?,
            actor,
            audience: audience?,
            scope,
            client_addr,
            now,
            expect: expect?,
        })
    }

    /// A point in time: whole seconds since the epoch, or RFC 3339 (`2026-01-05T09:00:00Z`).
    fn time(&mut self, node: &Node, what: &str) -> Option<i64> {
        let parsed = match &node.value {
            Value::Number(n) => n.as_i64(),
            Value::Str(s) => chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp()),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.pos,
                format!("{what} must be an RFC 3339 time or whole seconds since the epoch"),
                "write e.g. `2026-01-05T09:00:00Z`",
            );
        }
        parsed
    }

    /// A test case's identity. `source` is required; `provider`, `issuer` and `subject`
    /// default to `test`, `https://tessera.test` and `test-subject`, and `id` to
    /// `test://<source>/<subject>`, so cases name only what their rules match on.
    /// `expires_at` is whole seconds or RFC 3339. `withheld` lists attribute keys whose
    /// values were withheld for being over the attribute limits, as audit records show them.
    pub fn identity(&mut self, node: &Node) -> Option<Identity> {
        let mut allowed: Vec<&str> = FIELDS.to_vec();
        allowed.extend(["attributes", "withheld", "expires_at"]);
        let entries = self.map(node, "`identity`", Some(&allowed))?;
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut attributes = BTreeMap::new();
        let mut withheld: Vec<Sp<String>> = Vec::new();
        let mut expires_at = 0i64;
        for e in &entries {
            match e.key.as_str() {
                "attributes" => {
                    for a in self.map(e.node, "`identity.attributes`", None).unwrap_or_default() {
                        if let Some(v) = self.string(a.node, &format!("`attributes.{}`", a.key)) {
                            attributes.insert(a.key, v.value);
                        }
                    }
                }
                "withheld" => {
                    for item in self.seq(e.node, "`identity.withheld`").unwrap_or_default() {
                        withheld.extend(self.string(item, "an attribute key in `identity.withheld`"));
                    }
                }
                "expires_at" => {
                    if let Some(v) = self.time(e.node, "`expires_at`") {
                        expires_at = v;
                    }
                }
                key => {
                    let value = self.string(e.node, &format!("`identity.{key}`"));
                    if let (Some(v), Some(name)) = (value, FIELDS.iter().find(|f| **f == key)) {
                        fields.insert(name, v.value);
                    }
                }
            }
        }
        for key in withheld.iter().filter(|k| attributes.contains_key(&k.value)) {
            self.error(
                key.pos,
                format!("attribute `{}` is both withheld and given a value", key.value),
                "a withheld attribute has no value: remove it from `attributes` or from `withheld`",
            );
        }
        let withheld: BTreeSet<String> = withheld.into_iter().map(|k| k.value).collect();
        let Some(source) = fields.remove("source") else {
            self.error(node.pos, "the test identity has no `source`", "add `source: <source name>`");
            return None;
        };
        let subject = fields.remove("subject").unwrap_or_else(|| TEST_SUBJECT.to_string());
        Some(Identity {
            id: fields.remove("id").unwrap_or_else(|| format!("test://{source}/{subject}")),
            provider: fields.remove("provider").unwrap_or_else(|| TEST_PROVIDER.to_string()),
            issuer: fields.remove("issuer").unwrap_or_else(|| TEST_ISSUER.to_string()),
            source,
            subject,
            tenant: fields.remove("tenant"),
            namespace: fields.remove("namespace"),
            name: fields.remove("name"),
            instance: fields.remove("instance"),
            region: fields.remove("region"),
            attributes,
            withheld,
            expires_at,
        })
    }

    fn expect(&mut self, node: &Node) -> Option<Sp<Expectation>> {
        let entries = self.map(node, "`expect`", Some(EXPECT_KEYS))?;
        let mut found: Option<Sp<Expectation>> = None;
        for e in &entries {
            let expectation = match e.key.as_str() {
                "allow" => self.string(e.node, "`allow`").map(|s| Expectation::Allow(s.value)),
                "deny" => self.string(e.node, "`deny`").map(|s| Expectation::Deny(s.value)),
                flag => {
                    if matches!(e.node.value, Value::Bool(true)) {
                        match flag {
                            "none" => Some(Expectation::NoRule),
                            "ambiguous" => Some(Expectation::Ambiguous),
                            "no_delegation" => Some(Expectation::DelegationNotAllowed),
                            _ => Some(Expectation::InvalidScope),
                        }
                    } else {
                        self.error(
                            e.node.pos,
                            format!("`{flag}` takes only `true`"),
                            format!("write `{flag}: true`"),
                        );
                        None
                    }
                }
            };
            if found.is_some() {
                self.error(
                    e.key_pos,
                    "`expect` names more than one outcome",
                    "expect exactly one outcome per case",
                );
            } else if let Some(expectation) = expectation {
                found = Some(Sp { value: expectation, pos: e.key_pos });
            }
        }
        if found.is_none() && entries.is_empty() {
            self.error(
                node.pos,
                "`expect` names no outcome",
                "write one of `allow: <rule>`, `deny: <rule>`, `none: true`, `ambiguous: true`, `invalid_scope: true`",
            );
        }
        found
    }
}

/// `a`, `b` and `c`, for hints.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
