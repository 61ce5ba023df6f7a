//! What a `when:` condition reads of the identity, found once at load from its parsed
//! expression:
//! - [`reads`]: the attribute keys it names, and whether it reads the attributes as a
//!   whole (iterates them, takes their size, indexes them with a computed key), so a
//!   condition that looks at an attribute whose value was withheld fails closed;
//! - [`unguarded`]: the attributes and optional fields it reads without a `has()` / `in`
//!   test that makes the read safe when they are missing, for `tessera mappings check`.
//!
//! Reads are recognized in the forms conditions write them: `identity.attributes["k"]`,
//! `identity.attributes.k`, `identity["attributes"]["k"]`, `identity.tenant`,
//! `identity["tenant"]`; and tests as `has(identity.tenant)`, `has(identity.attributes.k)`,
//! `"k" in identity.attributes`, `"tenant" in identity`. Any other use of `identity` or of
//! its attributes counts as reading the attributes as a whole.

use std::collections::BTreeSet;
use std::fmt;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, LiteralValue, operators};
use tessera_adapters::identity::FIELDS;

/// Identity fields an identity may lack (every other field of [`FIELDS`] is always set).
pub(crate) const OPTIONAL_FIELDS: &[&str] = &["tenant", "namespace", "name", "instance", "region"];

/// A value of the identity that a condition may find missing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Optional {
    /// One of [`OPTIONAL_FIELDS`].
    Field(String),
    /// An attribute, by key.
    Attribute(String),
}

impl fmt::Display for Optional {
    /// As a condition reads it: `identity.tenant`, `identity.attributes["github.ref"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, "identity.{name}"),
            Self::Attribute(key) => write!(f, "identity.attributes[\"{key}\"]"),
        }
    }
}

/// What a condition reads of the identity's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reads {
    /// Keys it reads or tests by name.
    pub keys: BTreeSet<String>,
    /// Whether it also reads the attributes as a whole.
    pub whole: bool,
}

impl Reads {
    /// Why the condition cannot be evaluated for an identity whose `withheld` keys have no
    /// value, if it reads one of them.
    pub fn withheld(&self, withheld: &BTreeSet<String>) -> Option<String> {
        if let Some(key) = withheld.iter().find(|k| self.keys.contains(*k)) {
            return Some(format!(
                "it reads attribute `{key}`, whose value was withheld (over the attribute limits)"
            ));
        }
        let key = withheld.iter().next().filter(|_| self.whole)?;
        Some(format!(
            "it reads the attributes as a whole, and the value of `{key}` was withheld (over the attribute limits)"
        ))
    }
}

/// What the condition `e` reads of the identity's attributes.
pub(crate) fn reads(e: &IdedExpr) -> Reads {
    let mut out = Reads::default();
    collect_reads(e, &mut out);
    out
}

fn collect_reads(e: &IdedExpr, out: &mut Reads) {
    match use_of(e) {
        Some(Use::Read(named) | Use::Test(named)) => {
            if let Named::Optional(Optional::Attribute(key)) = named {
                out.keys.insert(key);
            }
            return;
        }
        None if is_identity(e) || is_attributes(e) => {
            out.whole = true;
            return;
        }
        None => {}
    }
    for child in children(e) {
        collect_reads(child, out);
    }
}

/// The attributes and optional fields `e` reads where nothing guarantees they are there,
/// each once, in the order the condition names them. A read is guarded by a `has()` /
/// `in` test of the same value that must be true for it to matter: on the other side of
/// an `&&` (CEL's `&&` is false when either side is, whatever the other does), negated on
/// the other side of an `||`, or in the condition of a `?:`.
pub(crate) fn unguarded(e: &IdedExpr) -> Vec<Optional> {
    let mut out = Vec::new();
    collect_unguarded(e, &BTreeSet::new(), &mut out);
    out
}

fn collect_unguarded(e: &IdedExpr, guarded: &BTreeSet<Optional>, out: &mut Vec<Optional>) {
    match use_of(e) {
        Some(Use::Read(Named::Optional(value))) => {
            if !guarded.contains(&value) && !out.contains(&value) {
                out.push(value);
            }
            return;
        }
        Some(_) => return,
        None => {}
    }
    match logical(e) {
        Some(Logical::And(a, b)) => {
            collect_unguarded(a, &union(guarded, &present_if(b, true)), out);
            collect_unguarded(b, &union(guarded, &present_if(a, true)), out);
        }
        Some(Logical::Or(a, b)) => {
            collect_unguarded(a, &union(guarded, &present_if(b, false)), out);
            collect_unguarded(b, &union(guarded, &present_if(a, false)), out);
        }
        Some(Logical::Conditional(c, t, f)) => {
            collect_unguarded(c, guarded, out);
            collect_unguarded(t, &union(guarded, &present_if(c, true)), out);
            collect_unguarded(f, &union(guarded, &present_if(c, false)), out);
        }
        Some(Logical::Not(_)) | None => {
            for child in children(e) {
                collect_unguarded(child, guarded, out);
            }
        }
    }
}

/// The values that must be present for `e` to be `outcome`.
fn present_if(e: &IdedExpr, outcome: bool) -> BTreeSet<Optional> {
    if let Some(Use::Test(Named::Optional(value))) = use_of(e) {
        return if outcome { BTreeSet::from([value]) } else { BTreeSet::new() };
    }
    match logical(e) {
        // `a && b` is true when both are, false when either is; `||` the other way round.
        Some(Logical::And(a, b)) if outcome => union(&present_if(a, true), &present_if(b, true)),
        Some(Logical::And(a, b)) => intersection(&present_if(a, false), &present_if(b, false)),
        Some(Logical::Or(a, b)) if outcome => intersection(&present_if(a, true), &present_if(b, true)),
        Some(Logical::Or(a, b)) => union(&present_if(a, false), &present_if(b, false)),
        Some(Logical::Not(a)) => present_if(a, !outcome),
        Some(Logical::Conditional(c, t, f)) => intersection(
            &union(&present_if(c, true), &present_if(t, outcome)),
            &union(&present_if(c, false), &present_if(f, outcome)),
        ),
        None => BTreeSet::new(),
    }
}

fn union(a: &BTreeSet<Optional>, b: &BTreeSet<Optional>) -> BTreeSet<Optional> {
    a.union(b).cloned().collect()
}

fn intersection(a: &BTreeSet<Optional>, b: &BTreeSet<Optional>) -> BTreeSet<Optional> {
    a.intersection(b).cloned().collect()
}

/// The logical operators, whose operands guard one another.
enum Logical<'e> {
    And(&'e IdedExpr, &'e IdedExpr),
    Or(&'e IdedExpr, &'e IdedExpr),
    Not(&'e IdedExpr),
    Conditional(&'e IdedExpr, &'e IdedExpr, &'e IdedExpr),
}

fn logical(e: &IdedExpr) -> Option<Logical<'_>> {
    let Expr::Call(call) = &e.expr else { return None };
    if call.target.is_some() {
        return None;
    }
    match (call.func_name.as_str(), call.args.as_slice()) {
        (operators::LOGICAL_AND, [a, b]) => Some(Logical::And(a, b)),
        (operators::LOGICAL_OR, [a, b]) => Some(Logical::Or(a, b)),
        (operators::LOGICAL_NOT, [a]) => Some(Logical::Not(a)),
        (operators::CONDITIONAL, [c, t, f]) => Some(Logical::Conditional(c, t, f)),
        _ => None,
    }
}

/// A value of the identity, as an expression names it.
enum Named {
    /// A value the identity may lack.
    Optional(Optional),
    /// A field every identity has, or a test of one.
    Always,
}

/// What a condition reads that changes from one request of a workload to the next: the
/// time (`now`), the client address and the presented credential's expiry
/// (`identity.expires_at`). Replay folds recorded requests that differ in nothing a
/// condition reads. Any use of `now`, and any use of `request` or `identity` other than
/// selecting another of its fields by name, counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ContextReads {
    pub now: bool,
    pub client_addr: bool,
    pub expires_at: bool,
}

impl ContextReads {
    pub fn union(self, other: Self) -> Self {
        Self {
            now: self.now || other.now,
            client_addr: self.client_addr || other.client_addr,
            expires_at: self.expires_at || other.expires_at,
        }
    }
}

/// What the condition `e` reads of the time and the client address.
pub(crate) fn context_reads(e: &IdedExpr) -> ContextReads {
    let mut out = ContextReads::default();
    collect_context(e, &mut out);
    out
}

fn collect_context(e: &IdedExpr, out: &mut ContextReads) {
    let selected = match &e.expr {
        Expr::Ident(name) => {
            out.now |= name == "now";
            out.client_addr |= name == "request";
            out.expires_at |= name == "identity";
            None
        }
        Expr::Select(s) => Some((&*s.operand, s.field.as_str())),
        Expr::Call(call) => literal_index(call),
        _ => None,
    };
    match selected {
        Some((container, field)) if is_request(container) => {
            out.client_addr |= field == "client_addr";
            return;
        }
        Some((container, field)) if is_identity(container) => {
            out.expires_at |= field == "expires_at";
            return;
        }
        _ => {}
    }
    for child in children(e) {
        collect_context(child, out);
    }
}

fn is_request(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Ident(name) if name == "request")
}

/// How an expression uses the identity, in the forms conditions read it by.
enum Use {
    /// Its value: an error when it is missing.
    Read(Named),
    /// Whether it is there: `has(...)`, `... in ...`.
    Test(Named),
}

fn use_of(e: &IdedExpr) -> Option<Use> {
    match &e.expr {
        Expr::Select(s) => {
            let named = named(&s.operand, &s.field, s.test)?;
            Some(if s.test { Use::Test(named) } else { Use::Read(named) })
        }
        Expr::Call(call) if call.target.is_none() => match (call.func_name.as_str(), call.args.as_slice()) {
            (operators::INDEX, [container, key]) => Some(Use::Read(named(container, string(key)?, false)?)),
            (operators::IN, [key, container]) => Some(Use::Test(named(container, string(key)?, true)?)),
            _ => None,
        },
        _ => None,
    }
}

/// What `container.key` names, if `container` is the identity or its attributes. The
/// attributes themselves are no value but a container, unless tested for.
fn named(container: &IdedExpr, key: &str, test: bool) -> Option<Named> {
    if is_attributes(container) {
        return Some(Named::Optional(Optional::Attribute(key.to_string())));
    }
    if !is_identity(container) {
        return None;
    }
    if OPTIONAL_FIELDS.contains(&key) {
        Some(Named::Optional(Optional::Field(key.to_string())))
    } else if FIELDS.contains(&key) || key == "expires_at" || (test && key == "attributes") {
        Some(Named::Always)
    } else {
        None
    }
}

fn is_identity(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Ident(name) if name == "identity")
}

/// `identity.attributes` or `identity["attributes"]`.
fn is_attributes(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Select(s) => !s.test && s.field == "attributes" && is_identity(&s.operand),
        Expr::Call(call) => literal_index(call).is_some_and(|(c, key)| key == "attributes" && is_identity(c)),
        _ => false,
    }
}

/// `container["key"]`.
fn literal_index(call: &CallExpr) -> Option<(&IdedExpr, &str)> {
    match (call.func_name.as_str(), call.target.as_deref(), call.args.as_slice()) {
        (operators::INDEX, None, [container, key]) => Some((container, string(key)?)),
        _ => None,
    }
}

fn string(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

fn entries(entries: &[IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) => call.target.as_deref().into_iter().chain(&call.args).collect(),
        Expr::Select(s) => vec![&*s.operand],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> IdedExpr {
        cel::Env::stdlib().parser().parse(source).unwrap()
    }

    fn keys(source: &str) -> (Vec<String>, bool) {
        let r = reads(&parse(source));
        (r.keys.into_iter().collect(), r.whole)
    }

    fn unguarded_in(source: &str) -> Vec<String> {
        unguarded(&parse(source)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn context_reads_find_the_time_and_the_client_address() {
        let reads = |source: &str| context_reads(&parse(source));
        let none = ContextReads::default();
        assert_eq!(reads(r#"identity.name == "api" && request.audience == "a""#), none);
        assert_eq!(reads(r#"request["scope"] == "s""#), none);
        assert_eq!(reads("now.getHours() < 18"), ContextReads { now: true, ..none });
        let addr = ContextReads { client_addr: true, ..none };
        assert_eq!(reads(r#"request.client_addr.startsWith("10.")"#), addr);
        assert_eq!(reads(r#"request["client_addr"] == "10.0.0.1""#), addr);
        assert_eq!(reads(r#"request.all(k, k != "x")"#), addr, "request as a whole");
        let both = reads("[1].exists(x, now > identity.expires_at)");
        assert!(both.now && both.expires_at && !both.client_addr);
        assert_eq!(reads(r#"identity.attributes["k"] == "v" && has(identity.tenant)"#), none);
        assert!(reads(r#"identity["expires_at"] > now"#).expires_at);
        assert!(reads("identity.all(k, k != \"x\")").expires_at, "identity as a whole");
    }

    #[test]
    fn reads_name_the_attribute_keys_a_condition_looks_at() {
        let named = |k: &[&str]| (k.iter().map(|k| k.to_string()).collect::<Vec<_>>(), false);
        assert_eq!(keys(r#"identity.attributes["github.ref"] == "x""#), named(&["github.ref"]));
        assert_eq!(keys(r#"identity["attributes"]["a.b"] == "x""#), named(&["a.b"]));
        assert_eq!(keys(r#"identity.attributes.team == "x""#), named(&["team"]));
        assert_eq!(keys(r#"has(identity.attributes.team)"#), named(&["team"]));
        assert_eq!(
            keys(r#""oidc.env" in identity.attributes && identity.attributes["oidc.ref"] != "x""#),
            named(&["oidc.env", "oidc.ref"])
        );
        // Fields and tests of the map itself are no attribute reads.
        assert_eq!(
            keys(
                r#"identity.name == "api" && has(identity.tenant) && has(identity.attributes) && "tenant" in identity"#
            ),
            named(&[])
        );
        assert_eq!(keys(r#"identity["namespace"] == "payments" && now > identity.expires_at"#), named(&[]));
    }

    #[test]
    fn any_other_use_reads_the_attributes_as_a_whole() {
        for source in [
            r#"identity.attributes.exists(k, k.startsWith("x"))"#,
            r#"size(identity.attributes) > 2"#,
            r#"identity.attributes[request.audience] == "x""#,
            r#"request.audience in identity.attributes"#,
            r#"identity.exists(k, k == "x")"#,
            r#"[identity.attributes].size() == 1"#,
            r#"identity.attributes == {"a": "b"}"#,
        ] {
            assert!(keys(source).1, "{source}");
        }
    }

    #[test]
    fn withheld_names_the_first_withheld_key_read() {
        let withheld = BTreeSet::from(["oidc.big".to_string(), "oidc.ref".to_string()]);
        let by_key = reads(&parse(r#"identity.attributes["oidc.ref"] == "x""#));
        assert_eq!(
            by_key.withheld(&withheld).as_deref(),
            Some("it reads attribute `oidc.ref`, whose value was withheld (over the attribute limits)")
        );
        assert_eq!(by_key.withheld(&BTreeSet::from(["oidc.other".to_string()])), None);
        assert_eq!(by_key.withheld(&BTreeSet::new()), None);
        let whole = reads(&parse(r#"identity.attributes.exists(k, k == "x")"#));
        assert_eq!(
            whole.withheld(&withheld).as_deref(),
            Some(
                "it reads the attributes as a whole, and the value of `oidc.big` was withheld (over the attribute limits)"
            )
        );
        assert_eq!(whole.withheld(&BTreeSet::new()), None);
    }

    #[test]
    fn reads_without_a_test_are_unguarded() {
        assert_eq!(
            unguarded_in(r#"identity.attributes["oidc.env"] != "prod""#),
            [r#"identity.attributes["oidc.env"]"#]
        );
        assert_eq!(
            unguarded_in(
                r#"identity.tenant == "t" && identity["region"].startsWith("eu-") || identity.attributes.team == "a""#
            ),
            ["identity.tenant", "identity.region", r#"identity.attributes["team"]"#]
        );
        // Fields every identity has need no test.
        assert_eq!(unguarded_in(r#"identity.name == "api" || identity.subject == "x""#), ["identity.name"]);
        assert!(unguarded_in(r#"identity.source == "s" && identity.expires_at > now"#).is_empty());
        // A test of another value guards nothing.
        assert_eq!(
            unguarded_in(r#""oidc.a" in identity.attributes && identity.attributes["oidc.b"] == "x""#),
            [r#"identity.attributes["oidc.b"]"#]
        );
    }

    #[test]
    fn a_test_on_either_side_of_and_or_and_in_a_conditional_guards() {
        for source in [
            r#""oidc.env" in identity.attributes && identity.attributes["oidc.env"] != "prod""#,
            // CEL's `&&` and `||` do not short-circuit errors: either side guards the other.
            r#"identity.attributes["oidc.env"] != "prod" && "oidc.env" in identity.attributes"#,
            r#"!("oidc.env" in identity.attributes) || identity.attributes["oidc.env"] != "prod""#,
            r#"identity.attributes["oidc.env"] == "prod" || !("oidc.env" in identity.attributes)"#,
            r#"has(identity.attributes.env) && identity.attributes["env"] == "x""#,
            r#""oidc.env" in identity.attributes ? identity.attributes["oidc.env"] == "x" : false"#,
            r#"!("oidc.env" in identity.attributes) ? false : identity.attributes["oidc.env"] == "x""#,
            r#"has(identity.tenant) && (identity.tenant == "a" || identity.tenant == "b")"#,
            r#"("tenant" in identity && has(identity.region)) && identity.tenant == identity.region"#,
            r#"!(!has(identity.tenant) || identity.tenant != "t")"#,
        ] {
            assert_eq!(unguarded_in(source), Vec::<String>::new(), "{source}");
        }
        for (source, read) in [
            // Guarded on one branch only.
            (r#"has(identity.tenant) || identity.tenant == "t""#, "identity.tenant"),
            (r#"has(identity.tenant) ? true : identity.tenant == "t""#, "identity.tenant"),
            (
                r#"(has(identity.tenant) || has(identity.region)) && identity.tenant == "t""#,
                "identity.tenant",
            ),
            (r#"!has(identity.tenant) && identity.tenant == "t""#, "identity.tenant"),
        ] {
            assert_eq!(unguarded_in(source), [read], "{source}");
        }
    }
}
