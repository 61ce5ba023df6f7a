//! `when:` conditions: CEL expressions (the language of GCP IAM conditions, Kubernetes
//! admission policies and Envoy RBAC) over the request's `identity`, `request` and `now`.
//!
//! A condition is parsed once, when the file loads, and checked there as far as can be
//! done without running it: its size and cost are bounded, it may name only `identity`,
//! `request`, `now` and the variables of its own comprehensions, only fields those have,
//! and only functions CEL has; where its type is evident it must be a bool. At request
//! time a condition is true, false, or an error: it failed (a missing attribute, a type
//! error), yielded something other than a bool, or reads an attribute whose value was
//! withheld (`access`). An error makes a deny rule apply and an allow rule not (`eval`).
//!
//! Variables:
//! - `identity`: a map of the identity's fields (`id`, `provider`, `source`, `issuer`,
//!   `subject`, and `tenant`, `namespace`, `name`, `instance`, `region` when the identity
//!   has them), `attributes` (a map of strings) and `expires_at` (a timestamp);
//! - `actor`: for a delegated request (RFC 8693 `actor_token`), the verified actor, a map
//!   of the same fields as `identity`; `null` for a request without one, so
//!   `actor != null && actor.name == "deploy-bot"`;
//! - `request`: `audience`, and `scope` and `client_addr` when the request has them;
//! - `now`: the broker's clock as a timestamp, so `now.getHours("Europe/Paris") < 18`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Context, Env, ExecutionError, Value, extensions};
use tessera_adapters::Identity;
use tessera_adapters::identity::FIELDS;

use crate::mapping::Request;
use crate::mapping::access::{self, ContextReads, Optional, Reads};

/// Longest condition accepted, in bytes.
pub(crate) const MAX_BYTES: usize = 4096;
/// Most expression nodes a condition may have: its cost is at most proportional to this
/// times the size of the identity.
pub(crate) const MAX_NODES: usize = 500;
/// Most comprehensions (`exists`, `all`, `map`, `filter`) nested inside one another: each
/// level multiplies the work by the size of what it iterates.
pub(crate) const MAX_NESTED_COMPREHENSIONS: usize = 2;
/// Deepest grammar nesting the parser accepts.
const MAX_PARSE_DEPTH: u16 = 32;
/// Deepest expression tree accepted (`a + b + c` is two deep): evaluation recurses once
/// per level on the serving threads' stacks, so this keeps it far from their end.
pub(crate) const MAX_TREE_DEPTH: usize = 24;
/// The parser recurses with large frames (over 100 KiB per level in unoptimized builds),
/// so it runs on a thread of its own with room for its deepest accepted nesting.
const PARSE_STACK_BYTES: usize = 64 << 20;

/// Fields of `request`.
pub(crate) const REQUEST_FIELDS: &[&str] = &["audience", "scope", "client_addr"];

/// Names CEL resolves as types (`type(x) == string`), not variables.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "duration",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "type",
    "uint",
    "dyn",
];

/// The CEL standard library plus the strings extension (`lowerAscii`, `split`, `replace`,
/// ...), which Kubernetes also offers.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    if let Err(e) = env.add_extension(extensions::strings) {
        tracing::error!(error = %e, "CEL strings extension not available");
    }
    Arc::new(env)
});

/// A compiled `when:` condition.
pub(crate) struct Condition {
    source: String,
    expr: IdedExpr,
    /// What it reads of the identity's attributes.
    reads: Reads,
    /// Whether it reads the time or the client address.
    context: ContextReads,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// One problem with a condition, found at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: String,
}

impl Problem {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: hint.into() }
    }
}

const VARIABLES_HINT: &str = "a condition sees `identity`, `actor` (the same fields, or null), `request` (audience, scope, client_addr) and `now` (a timestamp)";

/// How a condition fared for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    True,
    False,
    /// Evaluation failed, did not yield a bool, or would read a withheld attribute.
    Error(String),
}

impl Condition {
    /// Parse and check `source`, reporting every problem found.
    pub fn compile(source: &str) -> Result<Self, Vec<Problem>> {
        if source.trim().is_empty() {
            return Err(vec![Problem::new(
                "the condition is empty",
                "write a CEL expression that yields a bool, or remove `when`",
            )]);
        }
        if source.len() > MAX_BYTES {
            return Err(vec![Problem::new(
                format!("the condition is {} bytes long; the limit is {MAX_BYTES}", source.len()),
                "move what `match` can say into `match`, or split the rule",
            )]);
        }
        let parsed = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cel-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || parse_and_check(source))
                .map(|thread| thread.join())
        });
        let expr = match parsed {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(vec![Problem::new(
                    "the CEL parser failed on this condition",
                    "simplify the expression",
                )]);
            }
            Err(e) => {
                return Err(vec![Problem::new(
                    format!("the CEL parser could not be started: {e}"),
                    "retry; the machine may be short of memory or threads",
                )]);
            }
        };
        let (reads, context) = (access::reads(&expr), access::context_reads(&expr));
        Ok(Self { source: source.to_string(), expr, reads, context })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it reads the time or the client address.
    pub fn context_reads(&self) -> ContextReads {
        self.context
    }

    /// The attributes and optional fields it reads without a `has()` / `in` test.
    pub fn unguarded(&self) -> Vec<Optional> {
        access::unguarded(&self.expr)
    }

    pub fn evaluate(&self, vars: &Vars) -> Outcome {
        if let Some(error) = self.reads.withheld(&vars.withheld) {
            return Outcome::Error(error);
        }
        let result = catch_unwind(AssertUnwindSafe(|| Value::resolve(&self.expr, &vars.context)));
        match result {
            Ok(Ok(Value::Bool(true))) => Outcome::True,
            Ok(Ok(Value::Bool(false))) => Outcome::False,
            Ok(Ok(other)) => Outcome::Error(format!("the condition yielded {}, not a bool", other.type_of())),
            Ok(Err(e)) => Outcome::Error(describe(&e)),
            Err(_) => Outcome::Error("the CEL evaluator failed".to_string()),
        }
    }
}

/// Parse and check, on the parser's own thread: an expression refused for its depth is
/// also dropped there, as dropping recurses too.
fn parse_and_check(source: &str) -> Result<IdedExpr, Vec<Problem>> {
    let expr = match ENV.parser().max_recursion_depth(MAX_PARSE_DEPTH).parse(source) {
        Ok(expr) => expr,
        Err(errors) => {
            if errors.errors.iter().any(|e| e.msg.contains("Recursion limit")) {
                return Err(vec![Problem::new(
                    format!("the condition is nested more than {MAX_PARSE_DEPTH} levels deep"),
                    "flatten it",
                )]);
            }
            // The first error is the one to fix; the parser's later ones mostly follow from it.
            return Err(errors
                .errors
                .first()
                .map(|e| {
                    Problem::new(
                        format!(
                            "CEL syntax error at line {}, column {} of the condition: {}",
                            e.pos.0,
                            e.pos.1,
                            one_line(&e.msg)
                        ),
                        "check brackets and quotes; strings are quoted, e.g. `identity.name == \"api\"`",
                    )
                })
                .into_iter()
                .collect());
        }
    };
    let mut checker = Checker::default();
    let ty = checker.walk(&expr, 0, 0);
    if checker.nodes > MAX_NODES {
        checker.problems.push(Problem::new(
            format!("the condition has {} expression nodes; the limit is {MAX_NODES}", checker.nodes),
            "move what `match` can say into `match`, or split the rule",
        ));
    }
    match ty {
        Ty::Bool | Ty::Unknown => {}
        other => checker.problems.push(Problem::new(
            format!("the condition yields {}, not a bool", other.describe()),
            "compare it, e.g. `identity.name == \"api\"` or `identity.name.startsWith(\"api-\")`",
        )),
    }
    if checker.problems.is_empty() { Ok(expr) } else { Err(checker.problems) }
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: `{key}` (guard it with `has()` or `in`)"),
        other => one_line(&other.to_string()),
    }
}

/// The variables of one request, built once and shared by every condition it meets, and
/// the attribute keys whose values the identity withheld.
pub(crate) struct Vars {
    context: Context<'static, 'static>,
    withheld: BTreeSet<String>,
}

impl Vars {
    pub fn new(identity: &Identity, request: &Request<'_>) -> Self {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.add_variable_from_value("identity", identity_value(identity));
        context.add_variable_from_value("actor", Value::Null);
        let mut req: HashMap<String, Value> = HashMap::new();
        req.insert("audience".into(), request.audience.into());
        if let Some(scope) = request.scope {
            req.insert("scope".into(), scope.into());
        }
        if let Some(addr) = request.client_addr {
            req.insert("client_addr".into(), addr.into());
        }
        context.add_variable_from_value("request", req);
        if let Some(now) = timestamp(request.now) {
            context.add_variable_from_value("now", now);
        }
        Self { context, withheld: identity.withheld.clone() }
    }

    /// The request's actor, when it has one (`actor` stays `null` otherwise).
    #[must_use]
    pub fn with_actor(mut self, actor: Option<&Identity>) -> Self {
        if let Some(actor) = actor {
            self.context.add_variable_from_value("actor", identity_value(actor));
        }
        self
    }
}

fn timestamp(unix: i64) -> Option<Value> {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| Value::Timestamp(t.fixed_offset()))
}

fn identity_value(identity: &Identity) -> Value {
    let mut map: HashMap<String, Value> = HashMap::new();
    for field in FIELDS {
        if let Some(v) = identity.field(field) {
            map.insert((*field).to_string(), v.into());
        }
    }
    let attributes: HashMap<String, Value> =
        identity.attributes.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    map.insert("attributes".into(), attributes.into());
    if let Some(t) = timestamp(identity.expires_at) {
        map.insert("expires_at".into(), t);
    }
    map.into()
}

/// What the checker knows of a value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Timestamp,
    Duration,
    List,
    Map,
    Identity,
    Request,
    Attributes,
    Unknown,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Self::Bool => "a bool",
            Self::Int => "an int",
            Self::Uint => "a uint",
            Self::Double => "a double",
            Self::String => "a string",
            Self::Bytes => "bytes",
            Self::Null => "null",
            Self::Timestamp => "a timestamp",
            Self::Duration => "a duration",
            Self::List => "a list",
            Self::Map | Self::Attributes => "a map",
            Self::Identity => "the identity (a map)",
            Self::Request => "the request (a map)",
            Self::Unknown => "a value",
        }
    }

    /// Whether selecting a field of a value of this type can never work.
    fn has_no_fields(self) -> bool {
        matches!(
            self,
            Self::Bool
                | Self::Int
                | Self::Uint
                | Self::Double
                | Self::String
                | Self::Bytes
                | Self::Null
                | Self::Timestamp
                | Self::Duration
                | Self::List
        )
    }
}

/// A static pass over the parsed expression: names, fields, functions, size, nesting.
#[derive(Default)]
struct Checker<'e> {
    problems: Vec<Problem>,
    nodes: usize,
    /// Comprehension variables in scope.
    scope: Vec<&'e str>,
    reported: HashSet<String>,
}

impl<'e> Checker<'e> {
    fn problem(&mut self, message: String, hint: impl Into<String>) {
        // The same mistake written twice is reported once.
        if self.reported.insert(message.clone()) {
            self.problems.push(Problem::new(message, hint));
        }
    }

    fn walk(&mut self, e: &'e IdedExpr, comprehensions: usize, depth: usize) -> Ty {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Ty::Unknown;
        }
        if depth > MAX_TREE_DEPTH {
            self.problem(
                format!("the condition is nested more than {MAX_TREE_DEPTH} levels deep"),
                "flatten it; long chains of `+` nest too, one level per operand",
            );
            return Ty::Unknown;
        }
        let depth = depth + 1;
        match &e.expr {
            Expr::Unspecified | Expr::Struct(_) => Ty::Unknown,
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            },
            Expr::Ident(name) => self.ident(name),
            Expr::Select(s) => {
                let operand = self.walk(&s.operand, comprehensions, depth);
                let ty = self.field(operand, &s.field);
                if s.test { Ty::Bool } else { ty }
            }
            Expr::List(l) => {
                for item in &l.elements {
                    self.walk(item, comprehensions, depth);
                }
                Ty::List
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.walk(&me.key, comprehensions, depth);
                            self.walk(&me.value, comprehensions, depth);
                        }
                        EntryExpr::StructField(f) => {
                            self.walk(&f.value, comprehensions, depth);
                        }
                    }
                }
                Ty::Map
            }
            Expr::Comprehension(c) => self.comprehension(c, comprehensions, depth),
            Expr::Call(call) => self.call(call, comprehensions, depth),
        }
    }

    /// `exists`, `all`, `map`, `filter`: their variables are in scope inside the loop.
    fn comprehension(&mut self, c: &'e ComprehensionExpr, comprehensions: usize, depth: usize) -> Ty {
        if comprehensions >= MAX_NESTED_COMPREHENSIONS {
            self.problem(
                format!(
                    "comprehensions (`exists`, `all`, `map`, `filter`) are nested more than {MAX_NESTED_COMPREHENSIONS} deep"
                ),
                "flatten the condition: each nesting level multiplies its cost",
            );
        }
        self.walk(&c.iter_range, comprehensions, depth);
        self.walk(&c.accu_init, comprehensions, depth);
        let outer_scope = self.scope.len();
        self.scope.push(&c.iter_var);
        if let Some(v) = &c.iter_var2 {
            self.scope.push(v);
        }
        self.scope.push(&c.accu_var);
        self.walk(&c.loop_cond, comprehensions + 1, depth);
        self.walk(&c.loop_step, comprehensions + 1, depth);
        let result = self.walk(&c.result, comprehensions + 1, depth);
        self.scope.truncate(outer_scope);
        result
    }

    /// A function, method or operator call: every name must exist.
    fn call(&mut self, call: &'e CallExpr, comprehensions: usize, depth: usize) -> Ty {
        let target = call.target.as_deref().map(|t| self.walk(t, comprehensions, depth));
        let args: Vec<Ty> = call.args.iter().map(|a| self.walk(a, comprehensions, depth)).collect();
        let name = call.func_name.as_str();
        if name == "_[_]" {
            // `identity["name"]`, `identity.attributes["k8s.pod_name"]`.
            if let (Some(container), Some(key)) = (args.first(), call.args.get(1)) {
                return match &key.expr {
                    Expr::Literal(LiteralValue::String(k)) => self.field(*container, k.inner()),
                    _ if *container == Ty::Attributes => Ty::String,
                    _ => Ty::Unknown,
                };
            }
            return Ty::Unknown;
        }
        // Operators are the parser's own; only named functions can be unknown.
        if !name.starts_with('_') && !name.starts_with('@') && !function_exists(name, target.is_some()) {
            let message = if target.is_some() {
                format!("unknown CEL method `{name}`")
            } else {
                format!("unknown CEL function `{name}`")
            };
            self.problem(
                message,
                "use a standard CEL function (size, startsWith, endsWith, contains, matches, timestamp, duration, int, string, ...) or one of the strings extension (lowerAscii, split, replace, ...)",
            );
        }
        result_type(name)
    }

    fn ident(&mut self, name: &str) -> Ty {
        if self.scope.iter().rev().any(|v| *v == name) {
            return Ty::Unknown;
        }
        match name {
            // The actor has the identity's fields; it may be null, which a field read fails
            // on at request time, as for an identity without the field.
            "identity" | "actor" => Ty::Identity,
            "request" => Ty::Request,
            "now" => Ty::Timestamp,
            n if TYPE_NAMES.contains(&n) => Ty::Unknown,
            n => {
                self.problem(format!("unknown variable `{n}` in the condition"), VARIABLES_HINT);
                Ty::Unknown
            }
        }
    }

    fn field(&mut self, operand: Ty, field: &str) -> Ty {
        match operand {
            Ty::Identity => {
                if FIELDS.contains(&field) {
                    Ty::String
                } else if field == "attributes" {
                    Ty::Attributes
                } else if field == "expires_at" {
                    Ty::Timestamp
                } else {
                    self.problem(
                        format!("`identity` has no field `{field}`"),
                        format!(
                            "identity fields: {}, attributes, expires_at",
                            FIELDS.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                    Ty::Unknown
                }
            }
            Ty::Request => {
                if !REQUEST_FIELDS.contains(&field) {
                    self.problem(
                        format!("`request` has no field `{field}`"),
                        "request fields: `audience`, `scope`, `client_addr`",
                    );
                }
                Ty::String
            }
            Ty::Attributes => Ty::String,
            t if t.has_no_fields() => {
                let hint = if t == Ty::String {
                    "attribute names contain dots: write `identity.attributes[\"k8s.pod_name\"]`, not `identity.attributes.k8s.pod_name`"
                } else {
                    "check the expression's structure"
                };
                self.problem(format!("`.{field}` selects a field of {}, which has none", t.describe()), hint);
                Ty::Unknown
            }
            _ => Ty::Unknown,
        }
    }
}

/// The result type of calls whose type is evident.
fn result_type(function: &str) -> Ty {
    match function {
        "_==_"
        | "_!=_"
        | "_<_"
        | "_<=_"
        | "_>_"
        | "_>=_"
        | "_&&_"
        | "_||_"
        | "!_"
        | "@in"
        | "@not_strictly_false"
        | "startsWith"
        | "endsWith"
        | "contains"
        | "matches" => Ty::Bool,
        "size" | "int" | "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
        | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => Ty::Int,
        "string" | "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring" | "charAt" => Ty::String,
        "timestamp" => Ty::Timestamp,
        "duration" => Ty::Duration,
        "split" => Ty::List,
        _ => Ty::Unknown,
    }
}

/// Whether CEL knows `name`, as a method (`x.name()`) or a function (`name()`). The
/// standard environment offers no list of its functions, so each name is tried once: a
/// call with no arguments to an unknown name fails as an undeclared reference, a call to
/// a known one with a type or arity error.
fn function_exists(name: &str, method: bool) -> bool {
    static KNOWN: LazyLock<Mutex<HashMap<(String, bool), bool>>> = LazyLock::new(Mutex::default);
    let key = (name.to_string(), method);
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.get(&key).copied()) {
        return known;
    }
    let is_ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_ident {
        return true;
    }
    let probe = if method { format!("null.{name}()") } else { format!("{name}()") };
    let exists = catch_unwind(|| {
        let Ok(program) = ENV.compile(&probe) else { return true };
        let context = Context::with_env(Arc::clone(&ENV));
        !matches!(program.execute(&context), Err(ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
    })
    .unwrap_or(true);
    if let Ok(mut known) = KNOWN.lock() {
        known.insert(key, exists);
    }
    exists
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mapping::testkit::eks_api as identity;

    /// 2027-01-15T08:00:00Z, a Friday.
    const NOW: i64 = 1_800_000_000;

    fn run(source: &str) -> Outcome {
        let c = Condition::compile(source).unwrap_or_else(|p| panic!("{source}: {p:?}"));
        let request = Request { audience: "aws-prod", scope: None, client_addr: Some("10.1.2.3"), now: NOW };
        c.evaluate(&Vars::new(&identity(), &request))
    }

    fn problems(source: &str) -> Vec<String> {
        Condition::compile(source)
            .map(|_| Vec::new())
            .unwrap_or_else(|p| p.into_iter().map(|p| p.message).collect())
    }

    #[test]
    fn conditions_see_identity_request_and_now() {
        assert_eq!(run(r#"identity.attributes["k8s.pod_name"].startsWith("api-")"#), Outcome::True);
        assert_eq!(run(r#"identity.name == "api" && identity.namespace == "payments""#), Outcome::True);
        assert_eq!(run(r#"identity["name"] == "worker""#), Outcome::False);
        assert_eq!(run(r#"request.audience == "aws-prod" && !has(request.scope)"#), Outcome::True);
        assert_eq!(run(r#"request.client_addr.startsWith("10.")"#), Outcome::True);
        assert_eq!(run(r#"now == timestamp("2027-01-15T08:00:00Z")"#), Outcome::True);
        assert_eq!(run(r#"now.getHours() == 8 && now.getDayOfWeek() == 5"#), Outcome::True);
        assert_eq!(run(r#"now.getHours("Europe/Paris") == 9"#), Outcome::True);
        assert_eq!(run(r#"identity.expires_at - now <= duration("10m")"#), Outcome::True);
        assert_eq!(run(r#"has(identity.tenant)"#), Outcome::False);
        assert_eq!(run(r#"identity.attributes.exists(k, k.startsWith("k8s."))"#), Outcome::True);
        assert_eq!(run(r#"identity.subject.split(":").size() == 4"#), Outcome::True);
        assert_eq!(run(r#"identity.name.matches("^a[a-z]+$")"#), Outcome::True);
    }

    #[test]
    fn conditions_see_the_actor_or_null() {
        let request = Request { audience: "aws-prod", scope: None, client_addr: None, now: NOW };
        let mut bot = identity();
        bot.name = Some("deploy-bot".into());
        let run = |source: &str, actor: Option<&Identity>| {
            Condition::compile(source).unwrap().evaluate(&Vars::new(&identity(), &request).with_actor(actor))
        };
        assert_eq!(run(r#"actor != null && actor.name == "deploy-bot""#, Some(&bot)), Outcome::True);
        assert_eq!(run(r#"actor != null && actor.name == "deploy-bot""#, None), Outcome::False);
        assert_eq!(run("actor == null", None), Outcome::True);
        assert_eq!(run("actor == null", Some(&bot)), Outcome::False);
        assert_eq!(run(r#"actor.namespace == identity.namespace"#, Some(&bot)), Outcome::True);
        assert!(
            matches!(run(r#"actor.name == "deploy-bot""#, None), Outcome::Error(_)),
            "no actor: fails closed"
        );
        assert_eq!(problems("actor.nmae == 'x'"), vec!["`identity` has no field `nmae`"]);
    }

    #[test]
    fn runtime_errors_and_non_bools_do_not_hold() {
        let Outcome::Error(e) = run(r#"identity.attributes["github.ref"] == "refs/heads/main""#) else {
            panic!("a missing attribute is an error")
        };
        assert!(e.contains("no such key: `github.ref`"), "{e}");
        let Outcome::Error(e) = run("identity.tenant == \"x\"") else { panic!("absent field") };
        assert!(e.contains("tenant"), "{e}");
        let Outcome::Error(e) = run(r#"identity.name.matches("(")"#) else { panic!("bad regex") };
        assert!(e.contains("regex"), "{e}");
        let Outcome::Error(e) = run(r#"[true, "x"][request.audience == "aws-prod" ? 1 : 0]"#) else {
            panic!("a string is not a bool")
        };
        assert!(e.contains("not a bool"), "{e}");
        // Guarded access never errors.
        assert_eq!(
            run(r#""github.ref" in identity.attributes && identity.attributes["github.ref"] == "x""#),
            Outcome::False
        );
    }

    #[test]
    fn a_condition_reading_a_withheld_attribute_is_an_error_before_it_runs() {
        let request = Request { audience: "aws-prod", scope: None, client_addr: None, now: NOW };
        let mut id = identity();
        id.withheld.insert("k8s.ref".to_string());
        let run = |source: &str| Condition::compile(source).unwrap().evaluate(&Vars::new(&id, &request));
        let withheld = "it reads attribute `k8s.ref`, whose value was withheld (over the attribute limits)";
        // Read, or only tested for: the token had a value, which the condition cannot see.
        assert_eq!(run(r#"identity.attributes["k8s.ref"] != "x""#), Outcome::Error(withheld.into()));
        assert_eq!(run(r#""k8s.ref" in identity.attributes"#), Outcome::Error(withheld.into()));
        assert_eq!(
            run(
                r#"!("k8s.ref" in identity.attributes) || identity.attributes["k8s.ref"].startsWith("refs/pull/")"#
            ),
            Outcome::Error(withheld.into())
        );
        assert_eq!(
            run(r#"identity.attributes.exists(k, k == "k8s.ref")"#),
            Outcome::Error(
                "it reads the attributes as a whole, and the value of `k8s.ref` was withheld (over the attribute limits)"
                    .into()
            )
        );
        // Conditions that do not look at it run as usual.
        assert_eq!(run(r#"identity.attributes["k8s.pod_name"] == "api-7d""#), Outcome::True);
        assert_eq!(run(r#"identity.name == "worker""#), Outcome::False);
    }

    #[test]
    fn syntax_errors_have_positions_within_the_condition() {
        let p = problems("identity.name ==");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("CEL syntax error at line 1, column 17"), "{p:?}");
        let p = problems("identity.name == 'x' &&\n  (identity.namespace == 'y'");
        assert!(p[0].starts_with("CEL syntax error at line 2"), "{p:?}");
    }

    #[test]
    fn names_fields_and_functions_are_checked_at_load() {
        assert_eq!(problems("identty.name == 'api'"), vec!["unknown variable `identty` in the condition"]);
        assert_eq!(problems("identity.nmae == 'api'"), vec!["`identity` has no field `nmae`"]);
        assert_eq!(problems("request.audiance == 'x'"), vec!["`request` has no field `audiance`"]);
        assert_eq!(problems("identity.name.beginsWith('a')"), vec!["unknown CEL method `beginsWith`"]);
        assert_eq!(problems("lenght(identity.name) > 2"), vec!["unknown CEL function `lenght`"]);
        assert_eq!(
            problems("identity.attributes.k8s.pod_name == 'x'"),
            vec!["`.pod_name` selects a field of a string, which has none"]
        );
        assert_eq!(
            problems("now.year == 2027"),
            vec!["`.year` selects a field of a timestamp, which has none"]
        );
        // Comprehension variables are in scope inside their comprehension only.
        assert!(problems("identity.attributes.all(k, k.startsWith('k8s.'))").is_empty());
        assert_eq!(
            problems("identity.attributes.all(k, k != '') && k == 'x'"),
            vec!["unknown variable `k` in the condition"]
        );
        // Type names are not variables.
        assert!(problems("type(identity.name) == string").is_empty());
    }

    #[test]
    fn evident_non_bool_results_are_refused() {
        assert_eq!(problems("identity.name"), vec!["the condition yields a string, not a bool"]);
        assert_eq!(problems("size(identity.attributes)"), vec!["the condition yields an int, not a bool"]);
        assert_eq!(problems("'yes'"), vec!["the condition yields a string, not a bool"]);
        assert!(problems("true").is_empty());
    }

    #[test]
    fn size_and_cost_are_bounded() {
        let long = format!("identity.name == '{}'", "x".repeat(MAX_BYTES));
        assert!(problems(&long)[0].contains("bytes long; the limit is 4096"));
        let many = vec!["identity.name == 'a'"; 120].join(" || ");
        assert!(many.len() < MAX_BYTES);
        assert!(
            problems(&many).iter().any(|p| p.contains("expression nodes; the limit is 500")),
            "{:?}",
            problems(&many)
        );
        let nested = "identity.attributes.exists(a, identity.attributes.exists(b, identity.attributes.exists(c, a == b)))";
        assert!(problems(nested)[0].contains("nested more than 2 deep"));
        assert!(problems("identity.attributes.exists(a, identity.attributes.exists(b, a == b))").is_empty());
        let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(problems(&deep), vec!["the condition is nested more than 32 levels deep"]);
        let chain = format!("{} > 0", vec!["1"; 30].join(" + "));
        assert!(problems(&chain)[0].contains("nested more than 24 levels deep"), "{:?}", problems(&chain));
        let nested_calls = format!("{}1{} > 0", "size([".repeat(13), "])".repeat(13));
        assert!(
            problems(&nested_calls).iter().any(|p| p.contains("nested more than 24 levels deep")),
            "{:?}",
            problems(&nested_calls)
        );
        // Inside a comprehension the depth goes on counting from the comprehension's own.
        let chain_in_loop = format!(
            "(identity.attributes.exists(a, {} > 0) ? 1 : 0){} > 0",
            vec!["1"; 14].join(" + "),
            " + 1".repeat(12)
        );
        assert!(
            problems(&chain_in_loop).iter().any(|p| p.contains("nested more than 24 levels deep")),
            "{:?}",
            problems(&chain_in_loop)
        );
        // The deepest accepted condition evaluates on a thread stack of the common 2 MiB.
        let accepted = format!("{} > 0", vec!["1"; 23].join(" + "));
        let c = Condition::compile(&accepted).unwrap();
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let request = Request { audience: "a", scope: None, client_addr: None, now: NOW };
                c.evaluate(&Vars::new(&identity(), &request))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(outcome, Outcome::True);
        assert_eq!(problems("  "), vec!["the condition is empty"]);
    }
}
