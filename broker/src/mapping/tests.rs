//! Mapping sets end to end: loading, validation errors with positions, the decision truth
//! table, rendering and inline test cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tessera_adapters::Identity;

use super::*;

fn catalog() -> Catalog {
    Catalog {
        targets: vec![
            TargetInfo::plain_jwt("internal-api"),
            TargetInfo {
                name: "aws-prod".into(),
                kind: "aws_sts",
                max_ttl: Duration::from_secs(3600),
                default_ttl: Duration::from_secs(900),
                grant_keys: &["role_arn", "session_name", "tags"],
                scope_param: Some("role_arn"),
                target: None,
            },
        ],
        sources: vec![
            SourceInfo { name: "eks-prod".into(), kind: "kubernetes".into() },
            SourceInfo { name: "github".into(), kind: "github_actions".into() },
            SourceInfo { name: "gke-dev".into(), kind: "kubernetes".into() },
        ],
    }
}

/// Strip the leading newline and the common indentation, so YAML can be written indented
/// in the test and line 1 is its first line.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n") + "\n"
}

fn load(text: &str) -> MappingSet {
    MappingSet::load_files(&[(PathBuf::from("m.yaml"), dedent(text))], &catalog())
        .unwrap_or_else(|e| panic!("load failed:\n{e}"))
}

fn errors(files: &[(&str, &str)]) -> Vec<LoadError> {
    let files: Vec<(PathBuf, String)> = files.iter().map(|(p, t)| (PathBuf::from(p), dedent(t))).collect();
    match MappingSet::load_files(&files, &catalog()) {
        Ok(_) => panic!("expected load errors"),
        Err(LoadErrors(errors)) => errors,
    }
}

/// The single error for a one-file set, checked for position and message.
#[track_caller]
fn one_error(text: &str, line: u64, column: u64, message: &str) -> LoadError {
    let errors = errors(&[("m.yaml", text)]);
    assert_eq!(errors.len(), 1, "{}", LoadErrors(errors.clone()));
    let e = errors.into_iter().next().unwrap();
    assert_eq!(e.file, PathBuf::from("m.yaml"));
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.message.contains(message), "{e}");
    assert!(!e.hint.is_empty(), "{e}");
    e
}

fn identity(source: &str, namespace: Option<&str>, name: Option<&str>) -> Identity {
    Identity {
        id: format!("test://{source}/x"),
        provider: "kubernetes".into(),
        source: source.into(),
        issuer: "https://issuer.example".into(),
        subject: "x".into(),
        tenant: None,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        instance: None,
        region: None,
        attributes: BTreeMap::new(),
        withheld: Default::default(),
        expires_at: 0,
    }
}

fn api() -> Identity {
    identity("eks-prod", Some("payments"), Some("api"))
}

/// 2027-01-15T08:00:00Z, a Friday.
const NOW: i64 = 1_800_000_000;

fn req<'a>(audience: &'a str, scope: Option<&'a str>) -> Request<'a> {
    Request { audience, scope, client_addr: Some("10.0.0.7"), now: NOW }
}

const READER: &str = "arn:aws:iam::123456789012:role/reader";
const WRITER: &str = "arn:aws:iam::123456789012:role/writer";

/// Two allow rules for the same workload on aws-prod, one per role, and a JWT target rule.
const TWO_ROLES: &str = r#"
    version: 1
    rules:
      - name: reader
        match: { source: eks-prod, namespace: payments }
        grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
      - name: writer
        match: { source: eks-prod, namespace: payments, name: api }
        grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/writer" }
      - name: jwt
        match: { source: eks-prod, namespace: payments }
        grant: { target: internal-api }
"#;

// ---------------------------------------------------------------------------------------
// The decision truth table
// ---------------------------------------------------------------------------------------

#[test]
fn deny_wins_over_allow_whatever_the_scope() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: allow-api
            match: { namespace: payments }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
          - name: deny-api
            effect: deny
            match: { name: api }
            grant: { target: aws-prod }
        "#,
    );
    for scope in [None, Some(READER), Some("something-else")] {
        assert_eq!(
            set.preview(&api(), &req("aws-prod", scope)),
            Err(Denial::Denied { rule: "deny-api".into() })
        );
        assert_eq!(
            set.evaluate(&api(), &req("aws-prod", scope)).decision,
            Decision::Deny { rule: "deny-api".into() }
        );
    }
    // The deny rule does not match a different workload, which the allow rule still lets through.
    let worker = identity("eks-prod", Some("payments"), Some("worker"));
    assert_eq!(set.preview(&worker, &req("aws-prod", None)).unwrap().rule, "allow-api");
}

#[test]
fn a_deny_rule_for_another_target_does_not_apply() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: allow-jwt
            match: { namespace: payments }
            grant: { target: internal-api }
          - name: deny-aws
            effect: deny
            match: { namespace: payments }
            grant: { target: aws-prod }
        "#,
    );
    assert_eq!(set.preview(&api(), &req("internal-api", None)).unwrap().rule, "allow-jwt");
    assert_eq!(set.preview(&api(), &req("aws-prod", None)), Err(Denial::Denied { rule: "deny-aws".into() }));
}

#[test]
fn the_requested_scope_picks_the_rule() {
    let set = load(TWO_ROLES);
    let p = set.preview(&api(), &req("aws-prod", Some(WRITER))).unwrap();
    assert_eq!((p.rule.as_str(), p.scope.as_deref()), ("writer", Some(WRITER)));
    assert_eq!(p.params.get("role_arn"), Some(&json!(WRITER)));
    let p = set.preview(&api(), &req("aws-prod", Some(READER))).unwrap();
    assert_eq!((p.rule.as_str(), p.scope.as_deref()), ("reader", Some(READER)));
}

#[test]
fn two_applying_allows_without_a_scope_are_ambiguous() {
    let set = load(TWO_ROLES);
    let expected = vec!["reader".to_string(), "writer".to_string()];
    assert_eq!(
        set.preview(&api(), &req("aws-prod", None)),
        Err(Denial::Ambiguous { rules: expected.clone() })
    );
    assert_eq!(
        set.evaluate(&api(), &req("aws-prod", None)).decision,
        Decision::Ambiguous { rules: expected }
    );
}

#[test]
fn one_applying_allow_without_a_scope_grants_its_own_scope() {
    let set = load(TWO_ROLES);
    // Only `reader` matches a workload that is not `api`.
    let worker = identity("eks-prod", Some("payments"), Some("worker"));
    let p = set.preview(&worker, &req("aws-prod", None)).unwrap();
    assert_eq!((p.rule.as_str(), p.scope.as_deref()), ("reader", Some(READER)));
    // A target without a scope parameter and a rule without `scope:` grant no scope.
    let p = set.preview(&worker, &req("internal-api", None)).unwrap();
    assert_eq!((p.rule.as_str(), p.scope), ("jwt", None));
}

#[test]
fn a_scope_no_applying_rule_grants_is_not_grantable() {
    let set = load(TWO_ROLES);
    let admin = "arn:aws:iam::123456789012:role/admin";
    assert_eq!(set.preview(&api(), &req("aws-prod", Some(admin))), Err(Denial::ScopeNotGrantable));
    assert_eq!(
        set.evaluate(&api(), &req("aws-prod", Some(admin))).decision,
        Decision::ScopeNotGrantable { audience: "aws-prod".into(), scope: admin.into() }
    );
    // A scope asked of a rule that grants none is not grantable either.
    assert_eq!(set.preview(&api(), &req("internal-api", Some("x"))), Err(Denial::ScopeNotGrantable));
    // With a scope but no applying allow at all, there is simply no rule.
    let other = identity("eks-prod", Some("billing"), Some("api"));
    assert_eq!(set.preview(&other, &req("aws-prod", Some(READER))), Err(Denial::NoRule));
}

#[test]
fn two_rules_granting_the_requested_scope_are_ambiguous() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: a
            match: { namespace: payments }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
          - name: b
            match: { name: api }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
        "#,
    );
    assert_eq!(
        set.preview(&api(), &req("aws-prod", Some(READER))),
        Err(Denial::Ambiguous { rules: vec!["a".into(), "b".into()] })
    );
}

#[test]
fn no_applying_rule_and_unknown_audiences_are_no_rule() {
    let set = load(TWO_ROLES);
    let stranger = identity("gke-dev", Some("payments"), Some("api"));
    assert_eq!(set.preview(&stranger, &req("aws-prod", None)), Err(Denial::NoRule));
    assert_eq!(set.preview(&api(), &req("no-such-target", None)), Err(Denial::NoRule));
    let e = set.evaluate(&api(), &req("no-such-target", None));
    assert_eq!(e.decision, Decision::NoRule);
    assert!(e.trace.is_empty());
}

#[test]
fn explicit_scope_takes_precedence_over_the_scope_parameter() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: aliased
            match: { namespace: payments }
            grant: { target: aws-prod, scope: invoices-reader, role_arn: "arn:aws:iam::123456789012:role/reader" }
        "#,
    );
    assert_eq!(set.preview(&api(), &req("aws-prod", Some(READER))), Err(Denial::ScopeNotGrantable));
    let p = set.preview(&api(), &req("aws-prod", Some("invoices-reader"))).unwrap();
    assert_eq!(p.scope.as_deref(), Some("invoices-reader"));
    assert_eq!(p.params.get("role_arn"), Some(&json!(READER)));
}

#[test]
fn the_trace_explains_every_rule_for_the_audience_and_only_those() {
    let set = load(TWO_ROLES);
    let worker = identity("eks-prod", Some("payments"), Some("worker"));
    let e = set.evaluate(&worker, &req("aws-prod", None));
    assert_eq!(e.decision, Decision::Allow { rule: "reader".into() });
    assert_eq!(e.trace.len(), 2, "{:?}", e.trace);
    assert_eq!(e.trace[0].rule, "reader");
    assert_eq!(
        e.trace[0].outcome,
        TraceOutcome::Applied { scope: GrantableScope::Scope { scope: READER.into() } }
    );
    assert_eq!((e.trace[0].file.as_path(), e.trace[0].line, e.trace[0].column), (Path::new("m.yaml"), 3, 5));
    assert_eq!(e.trace[1].rule, "writer");
    assert_eq!(
        e.trace[1].outcome,
        TraceOutcome::NotMatched {
            field: "name".into(),
            actual: Some("worker".into()),
            patterns: vec!["api".into()]
        }
    );
    // A field the identity lacks is reported as such.
    let anonymous = identity("eks-prod", Some("payments"), None);
    let e = set.evaluate(&anonymous, &req("aws-prod", None));
    assert_eq!(
        e.trace[1].outcome,
        TraceOutcome::NotMatched { field: "name".into(), actual: None, patterns: vec!["api".into()] }
    );
    // The trace serializes for the explain endpoint.
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["decision"]["decision"], "allow");
    assert_eq!(v["trace"][1]["outcome"]["outcome"], "not_matched");
}

// ---------------------------------------------------------------------------------------
// Matching: lists, globs, attributes, missing fields
// ---------------------------------------------------------------------------------------

#[test]
fn lists_globs_and_attributes_match() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match:
              namespace: [billing, "pay*"]
              name: "api-??"
              attributes: { github.ref: ["refs/heads/main", 'refs/tags/v*'] }
            grant: { target: internal-api }
        "#,
    );
    let with = |ns: &str, name: &str, git_ref: Option<&str>| {
        let mut id = identity("eks-prod", Some(ns), Some(name));
        if let Some(r) = git_ref {
            id.attributes.insert("github.ref".into(), r.into());
        }
        set.preview(&id, &req("internal-api", None)).is_ok()
    };
    assert!(with("payments", "api-7d", Some("refs/heads/main")));
    assert!(with("billing", "api-xx", Some("refs/tags/v1.2")));
    assert!(with("pay", "api-é1", Some("refs/tags/v")));
    assert!(!with("billing2", "api-7d", Some("refs/heads/main")));
    assert!(!with("payments", "api-7", Some("refs/heads/main")));
    assert!(!with("payments", "api-7d", Some("refs/heads/dev")));
    assert!(!with("payments", "api-7d", None));
}

#[test]
fn a_missing_field_never_matches_not_even_a_star() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { source: "*", tenant: "*" }
            grant: { target: internal-api }
        "#,
    );
    let mut id = api();
    assert_eq!(set.preview(&id, &req("internal-api", None)), Err(Denial::NoRule));
    id.tenant = Some(String::new());
    assert!(set.preview(&id, &req("internal-api", None)).is_ok());
}

#[test]
fn numbers_in_match_patterns_are_read_as_written() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { source: eks-prod, tenant: 012345678901 }
            grant: { target: internal-api }
        "#,
    );
    let mut id = api();
    id.tenant = Some("012345678901".into());
    assert!(set.preview(&id, &req("internal-api", None)).is_ok());
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

const RENDERED: &str = r#"
    version: 1
    rules:
      - name: r
        match: { namespace: payments }
        grant:
          target: aws-prod
          role_arn: "arn:aws:iam::123456789012:role/{namespace}"
          session_name: "{namespace}-{name}"
          tags: { team: payments, pod: "{attributes.k8s.pod_name}", cost: 1234 }
          claims:
            ns: "{namespace}"
            braces: "{{literal}}"
            level: 3
            internal: true
            nested: { who: ["{name}", 1] }
"#;

#[test]
fn grants_render_claims_params_scope_and_ttl() {
    let set = load(RENDERED);
    let mut id = api();
    id.attributes.insert("k8s.pod_name".into(), "api-7d".into());
    let p = set.preview(&id, &req("aws-prod", None)).unwrap();
    assert_eq!(p.target, "aws-prod");
    assert_eq!(p.scope.as_deref(), Some("arn:aws:iam::123456789012:role/payments"));
    assert_eq!(p.ttl, Duration::from_secs(900), "the target's default ttl");
    assert_eq!(
        serde_json::Value::Object(p.claims),
        json!({ "ns": "payments", "braces": "{literal}", "level": 3, "internal": true, "nested": { "who": ["api", 1] } })
    );
    assert_eq!(p.params["session_name"], json!("payments-api"));
    assert_eq!(p.params["tags"], json!({ "team": "payments", "pod": "api-7d", "cost": "1234" }));
}

#[test]
fn a_missing_template_value_is_unrenderable_not_a_panic() {
    let set = load(RENDERED);
    // No `k8s.pod_name` attribute.
    assert_eq!(
        set.preview(&api(), &req("aws-prod", None)),
        Err(Denial::Unrenderable { rule: "r".into(), field: "attributes.k8s.pod_name".into() })
    );
    // A scope template that cannot render grants no scope to this identity.
    let mut no_ns = identity("eks-prod", None, Some("api"));
    no_ns.namespace = None;
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { name: api }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/{namespace}" }
        "#,
    );
    assert_eq!(
        set.preview(&no_ns, &req("aws-prod", None)),
        Err(Denial::Unrenderable { rule: "r".into(), field: "namespace".into() })
    );
    assert_eq!(set.preview(&no_ns, &req("aws-prod", Some(READER))), Err(Denial::ScopeNotGrantable));
    let e = set.evaluate(&no_ns, &req("aws-prod", None));
    assert_eq!(
        e.trace[0].outcome,
        TraceOutcome::Applied { scope: GrantableScope::Unrenderable { field: "namespace".into() } }
    );
}

#[test]
fn explicit_ttl_is_kept() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, ttl: 1h }
          - name: s
            match: { namespace: payments }
            grant: { target: aws-prod, ttl: 90, role_arn: x }
        "#,
    );
    assert_eq!(set.preview(&api(), &req("internal-api", None)).unwrap().ttl, Duration::from_secs(3600));
    assert_eq!(set.preview(&api(), &req("aws-prod", None)).unwrap().ttl, Duration::from_secs(90));
}

#[test]
fn a_mapping_set_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<MappingSet>();
}

#[test]
fn test_identities_get_defaults_for_what_they_leave_out() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { provider: test, issuer: "https://tessera.test", subject: test-subject, id: "test://gke-dev/test-subject" }
            grant: { target: internal-api }
        tests:
          - identity: { source: gke-dev }
            audience: internal-api
            expect: { allow: r }
        "#,
    );
    let outcomes = set.run_tests();
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert!(outcomes.iter().all(|o| o.passed), "{outcomes:#?}");
}

#[test]
fn denial_codes_are_stable() {
    let cases = [
        (Denial::Denied { rule: "r".into() }, "TS-MAP-DENIED", Some("r")),
        (
            Denial::DeniedOnError {
                rule: "r".into(),
                error: EvalError::WithheldMatch { field: "attributes.x".into() },
            },
            "TS-MAP-DENY-CONDITION-ERROR",
            Some("r"),
        ),
        (Denial::NoRule, "TS-MAP-NO-RULE", None),
        (Denial::Ambiguous { rules: vec!["a".into(), "b".into()] }, "TS-MAP-AMBIGUOUS", None),
        (Denial::ScopeNotGrantable, "TS-MAP-SCOPE", None),
        (Denial::Unrenderable { rule: "r".into(), field: "name".into() }, "TS-MAP-UNRENDERABLE", Some("r")),
    ];
    for (d, code, rule) in cases {
        assert_eq!(d.code(), code);
        assert_eq!(d.rule(), rule);
        assert!(!d.to_string().is_empty());
    }
    assert!(Denial::Ambiguous { rules: vec!["a".into(), "b".into()] }.to_string().contains("`a`, `b`"));
}

// ---------------------------------------------------------------------------------------
// Load errors, each with file, line and column
// ---------------------------------------------------------------------------------------

#[test]
fn yaml_syntax_errors_have_positions() {
    one_error("version: 1\nrules:\n  - name: \"unclosed\n", 3, 11, "invalid YAML");
    one_error("version: 1\nrules:\n\t- name: x\n", 3, 2, "tabs");
}

#[test]
fn version_must_be_one() {
    one_error("version: 2\nrules: []\n", 1, 10, "unsupported version `2`");
    one_error("version: \"1\"\nrules: []\n", 1, 10, "unsupported version");
    one_error("rules: []\n", 1, 1, "no `version`");
    one_error("", 1, 1, "empty");
}

#[test]
fn unknown_keys_are_errors_wherever_they_are() {
    one_error("version: 1\nrule: []\n", 2, 1, "unknown key `rule`");
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api }
            priority: 3
        "#,
        6,
        5,
        "unknown key `priority` in a rule",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments, colour: blue }
            grant: { target: internal-api }
        "#,
        4,
        35,
        "unknown key `colour` in `match`",
    );
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments, namespace: billing }
            grant: { target: internal-api }
        "#,
        4,
        35,
        "duplicate key `namespace`",
    );
    assert!(e.message.contains("line 4, column 14"), "{e}");
}

#[test]
fn cel_errors_are_load_errors_at_the_condition() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            when: 'identity.attributes["k8s.pod_name"].startsWith("api-") &&'
            grant: { target: internal-api }
        "#,
        5,
        11,
        "CEL syntax error at line 1, column 58 of the condition",
    );
    assert!(e.hint.contains("quotes"), "{e}");
    let errors = errors(&[(
        "m.yaml",
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            when: identty.name == "api" || identity.nmae == "x" || size(identity.name)
            grant: { target: internal-api }
          - name: s
            match: { namespace: payments }
            when: [not, a, string]
            grant: { target: internal-api }
        "#,
    )]);
    let got: Vec<String> = errors.iter().map(|e| format!("{}:{}: {}", e.line, e.column, e.message)).collect();
    assert_eq!(
        got,
        vec![
            "5:11: unknown variable `identty` in the condition",
            "5:11: `identity` has no field `nmae`",
            "9:11: `when` must be a CEL expression in a string, found a list",
        ]
    );
}

#[test]
fn bad_rule_names_are_errors() {
    one_error(
        r#"
        version: 1
        rules:
          - name: Payments API
            match: { namespace: payments }
            grant: { target: internal-api }
        "#,
        3,
        11,
        "invalid name `Payments API`",
    );
}

#[test]
fn duplicate_rule_names_across_files_point_at_the_second() {
    let rule = r#"
        version: 1
        rules:
          - name: shared
            match: { namespace: payments }
            grant: { target: internal-api }
    "#;
    let errors = errors(&[("a.yaml", rule), ("b.yaml", rule)]);
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!((e.file.as_path(), e.line, e.column), (Path::new("b.yaml"), 3, 11));
    assert!(e.message.contains("duplicate rule name `shared`; first defined at a.yaml:3:11"), "{e}");
}

#[test]
fn unknown_targets_are_errors() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: aws-staging }
        "#,
        5,
        22,
        "unknown target `aws-staging`",
    );
    assert!(e.hint.contains("`internal-api` or `aws-prod`"), "{e}");
}

#[test]
fn grant_keys_must_belong_to_the_target_kind() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant:
              target: internal-api
              role_arn: arn:aws:iam::123456789012:role/x
        "#,
        7,
        7,
        "`role_arn` is not a grant key of target `internal-api` (type jwt)",
    );
    assert!(e.hint.contains("`claims`"), "{e}");
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: aws-prod, role_arn: { a: b } }
        "#,
        5,
        32,
        "must be a string",
    );
}

#[test]
fn ttl_above_the_target_maximum_is_an_error() {
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, ttl: 2h }
        "#,
        5,
        41,
        "ttl 2h exceeds the maximum of target `internal-api` (1h)",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, ttl: soon }
        "#,
        5,
        41,
        "`soon` is not a duration: expected a duration such as 1h or 15m",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, ttl: 0 }
        "#,
        5,
        41,
        "`ttl` is zero",
    );
}

#[test]
fn bad_globs_are_errors() {
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: [payments, 'pay\ments'] }
            grant: { target: internal-api }
        "#,
        4,
        36,
        r"bad pattern `pay\ments`",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: "" }
            grant: { target: internal-api }
        "#,
        4,
        25,
        "empty pattern",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: [] }
            grant: { target: internal-api }
        "#,
        4,
        25,
        "empty list",
    );
}

#[test]
fn source_patterns_must_match_a_configured_source() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { source: [eks-prod, eks-prd] }
            grant: { target: internal-api }
        "#,
        4,
        33,
        "no configured source matches `eks-prd`",
    );
    assert!(e.hint.contains("`eks-prod`"), "{e}");
}

#[test]
fn an_unknown_source_after_a_bad_pattern_is_reported_at_its_own_position() {
    let errors = errors(&[(
        "m.yaml",
        r#"
        version: 1
        rules:
          - name: r
            match: { source: ["", eks-prd] }
            grant: { target: internal-api }
        "#,
    )]);
    let at: Vec<(u64, u64, bool)> =
        errors.iter().map(|e| (e.line, e.column, e.message.contains("no configured source"))).collect();
    assert_eq!(at, vec![(4, 23, false), (4, 27, true)], "{}", LoadErrors(errors.clone()));
}

#[test]
fn bad_templates_are_errors() {
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant:
              target: aws-prod
              role_arn: x
              session_name: "{namespace}-{workload}"
        "#,
        8,
        21,
        "unknown identity field `workload`",
    );
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, claims: { ns: "{namespace" } }
        "#,
        5,
        50,
        "never closed",
    );
}

#[test]
fn reserved_claims_are_errors() {
    let e = one_error(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant:
              target: internal-api
              claims: { team: payments, sub: "{name}" }
        "#,
        7,
        33,
        "claim `sub` is set by Tessera",
    );
    assert!(e.hint.contains("`jti`"), "{e}");
}

#[test]
fn grant_keys_on_deny_rules_are_errors() {
    one_error(
        r#"
        version: 1
        rules:
          - name: r
            effect: deny
            match: { namespace: payments }
            grant: { target: aws-prod, role_arn: x }
        "#,
        6,
        32,
        "`role_arn` has no effect in a deny rule",
    );
}

#[test]
fn rules_need_a_name_a_match_and_a_grant() {
    let errors = errors(&[(
        "m.yaml",
        r#"
        version: 1
        rules:
          - description: nothing else
          - name: r
            match: {}
            grant: { ttl: 5m }
          - name: s
            effect: maybe
            match: { namespace: payments }
            grant: { target: internal-api }
        "#,
    )]);
    let got: Vec<(u64, u64, &str)> = errors.iter().map(|e| (e.line, e.column, e.message.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (3, 5, "the rule has no `name`"),
            (3, 5, "the rule has no `match`"),
            (3, 5, "the rule has no `grant`"),
            (5, 5, "`match` has no conditions"),
            (6, 12, "`grant` has no `target`"),
            (8, 13, "unknown effect `maybe`"),
        ]
    );
}

#[test]
fn malformed_test_cases_are_errors() {
    let errors = errors(&[(
        "m.yaml",
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api }
          - name: d
            effect: deny
            match: { name: bad }
            grant: { target: internal-api }
        tests:
          - identity: { namespace: payments }
            expect: { allow: r }
          - identity: { source: eks-prod, nmae: api }
            audience: internal-api
            expect: { allow: r, none: true }
          - identity: { source: eks-prod }
            audience: aws-prod
            expect: { allow: missing }
          - identity: { source: eks-prod }
            audience: internal-api
            expect: { allow: d }
          - identity: { source: eks-prod }
            audience: internal-api
            expect: { ambiguous: false }
          - identity: { source: eks-prod }
            audience: aws-prod
            expect: { allow: r }
        "#,
    )]);
    let messages: Vec<String> =
        errors.iter().map(|e| format!("{}:{}: {}", e.line, e.column, e.message)).collect();
    let expect = [
        "11:5: the test case has no `audience`",
        "11:15: the test identity has no `source`",
        "13:35: unknown key `nmae` in `identity`",
        "15:25: `expect` names more than one outcome",
        "18:15: the test expects rule `missing`, which no mapping file defines",
        "21:15: the test expects `allow: d`, but rule `d` has `effect: deny`",
        "24:26: `ambiguous` takes only `true`",
        "27:15: rule `r` grants target `internal-api`, so it cannot decide a request for `aws-prod`",
    ];
    assert_eq!(messages, expect);
}

#[test]
fn every_error_in_every_file_is_reported_at_once() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mapping/testdata/broken");
    let errors = match MappingSet::load_dir(&dir, &catalog()) {
        Ok(_) => panic!("expected errors"),
        Err(LoadErrors(e)) => e,
    };
    let got: Vec<String> = errors
        .iter()
        .map(|e| {
            let file = e.file.file_name().unwrap().to_string_lossy();
            format!("{file}:{}:{}: {}", e.line, e.column, e.message)
        })
        .collect();
    let a = dir.join("a.yaml");
    let expect = vec![
        "a.yaml:3:11: invalid name `Bad Name`: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit".to_string(),
        "a.yaml:5:37: ttl 5h exceeds the maximum of target `aws-prod` (1h)".to_string(),
        r"a.yaml:7:25: bad pattern `pay\ments`: `\m` is not an escape: only `\*`, `\?` and `\\` are (at character 4)".to_string(),
        "a.yaml:8:22: unknown target `nowhere`".to_string(),
        "b.yaml:1:10: unsupported version `2`".to_string(),
        format!("b.yaml:3:11: duplicate rule name `shared`; first defined at {}:6:11", a.display()),
        "b.yaml:4:35: unknown key `colour` in `match`".to_string(),
        "b.yaml:5:46: claim `sub` is set by Tessera and cannot be set by a rule".to_string(),
    ];
    assert_eq!(got, expect);
    // Display: one line per error, `file:line:column: message (hint: ...)`.
    let shown = LoadErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 8);
    let first = shown.lines().next().unwrap();
    assert!(first.starts_with(&format!("{}:3:11: invalid name", a.display())), "{first}");
    assert!(first.ends_with(')') && first.contains(" (hint: "), "{first}");
}

// ---------------------------------------------------------------------------------------
// Directories, versions, inline tests
// ---------------------------------------------------------------------------------------

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mapping/testdata").join(name)
}

#[test]
fn the_valid_fixture_loads_and_its_inline_tests_pass() {
    let set = MappingSet::load_dir(&testdata("valid"), &catalog()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.rule_count(), 5);
    assert_eq!(set.test_count(), 8);
    let outcomes = set.run_tests();
    assert_eq!(outcomes.len(), 8);
    for o in &outcomes {
        assert!(o.passed, "{o}");
    }
    assert!(outcomes[0].file.ends_with("10-payments.yaml"));
    assert_eq!((outcomes[0].line, outcomes[0].column), (29, 5));
    assert!(outcomes[7].file.ends_with("20-ci.yaml"));
    assert!(set.version().starts_with("sha256:") && set.version().len() == 7 + 64);
}

#[test]
fn a_failing_inline_test_is_reported_with_expected_and_actual() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: r
            match: { namespace: payments }
            grant: { target: internal-api, claims: { pod: "{instance}" } }
        tests:
          - description: api gets a token
            identity: { source: eks-prod, namespace: payments, instance: api-1 }
            audience: internal-api
            expect: { allow: r }
          - identity: { source: eks-prod, namespace: billing }
            audience: internal-api
            expect: { allow: r }
          - identity: { source: eks-prod, namespace: payments }
            audience: internal-api
            expect: { allow: r }
        "#,
    );
    let outcomes = set.run_tests();
    assert_eq!(outcomes.iter().map(|o| o.passed).collect::<Vec<_>>(), vec![true, false, false]);
    let failed = &outcomes[1];
    assert_eq!((failed.file.as_path(), failed.line, failed.column), (Path::new("m.yaml"), 11, 5));
    assert_eq!(failed.expected, Expectation::Allow("r".into()));
    assert_eq!(failed.actual, Err(Denial::NoRule));
    assert_eq!(
        failed.to_string(),
        "m.yaml:11:5: FAILED: audience `internal-api`: expected allow by rule `r`, got no rule allows this identity the requested target [TS-MAP-NO-RULE]"
    );
    // A grant that cannot render fails an `allow` expectation, as the exchange would.
    assert_eq!(outcomes[2].actual, Err(Denial::Unrenderable { rule: "r".into(), field: "instance".into() }));
    assert!(outcomes[0].to_string().starts_with("m.yaml:7:5: ok (api gets a token)"));
}

#[test]
fn load_dir_ignores_other_files_and_refuses_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not yaml: [").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let err = MappingSet::load_dir(dir.path(), &catalog()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.0[0].message.contains("no mapping files"), "{err}");
    assert_eq!((err.0[0].line, err.0[0].column), (1, 1));

    std::fs::write(dir.path().join("b.yml"), "version: 1\nrules: []\n").unwrap();
    std::fs::write(dir.path().join("a.yaml"), "version: 1\nrules: []\n").unwrap();
    let set = MappingSet::load_dir(dir.path(), &catalog()).unwrap();
    assert_eq!(set.rule_count(), 0);

    let missing = MappingSet::load_dir(&dir.path().join("nope"), &catalog()).unwrap_err();
    assert!(missing.0[0].message.contains("cannot read the mapping directory"), "{missing}");
}

#[test]
fn the_version_covers_names_and_contents() {
    let a = || (PathBuf::from("x/a.yaml"), "version: 1\nrules: []\n".to_string());
    let b = || (PathBuf::from("x/b.yaml"), "version: 1\nrules: []\n".to_string());
    let v = |files: Vec<(PathBuf, String)>| {
        MappingSet::load_files(&files, &catalog()).unwrap().version().to_string()
    };
    assert_eq!(v(vec![a(), b()]), v(vec![a(), b()]));
    assert_eq!(v(vec![a(), b()]), v(vec![(PathBuf::from("elsewhere/a.yaml"), a().1), b()]));
    assert_ne!(v(vec![a(), b()]), v(vec![a()]));
    assert_ne!(v(vec![a()]), v(vec![(PathBuf::from("x/c.yaml"), a().1)]));
    assert_ne!(v(vec![a()]), v(vec![(a().0, "version: 1\nrules: []\n# changed\n".to_string())]));
}

// ---------------------------------------------------------------------------------------
// `when:` conditions in decisions
// ---------------------------------------------------------------------------------------

const CONDITIONS: &str = r#"
    version: 1
    rules:
      - name: api-pods
        match: { source: eks-prod, namespace: payments }
        when: 'identity.attributes["k8s.pod_name"].startsWith("api-")'
        grant: { target: internal-api }
      - name: office-hours-only
        effect: deny
        match: { source: eks-prod }
        when: 'now.getHours() < 7 || now.getHours() >= 19'
        grant: { target: internal-api }
"#;

#[test]
fn a_condition_true_false_or_failing_decides_whether_the_rule_applies() {
    let set = load(CONDITIONS);
    let with_pod = |pod: Option<&str>| {
        let mut id = api();
        if let Some(p) = pod {
            id.attributes.insert("k8s.pod_name".into(), p.into());
        }
        id
    };
    // NOW is 08:00 UTC: the deny rule's condition is false, so only the allow can apply.
    let cases: [(Option<&str>, Result<&str, Denial>, TraceOutcome); 3] = [
        (Some("api-7d"), Ok("api-pods"), TraceOutcome::Applied { scope: GrantableScope::None }),
        (
            Some("worker-1"),
            Err(Denial::NoRule),
            TraceOutcome::ConditionFalse {
                condition: r#"identity.attributes["k8s.pod_name"].startsWith("api-")"#.into(),
            },
        ),
        (
            None,
            Err(Denial::NoRule),
            TraceOutcome::ConditionError {
                condition: r#"identity.attributes["k8s.pod_name"].startsWith("api-")"#.into(),
                error: "no such key: `k8s.pod_name` (guard it with `has()` or `in`)".into(),
            },
        ),
    ];
    for (pod, want, outcome) in cases {
        let id = with_pod(pod);
        let got = set.preview(&id, &req("internal-api", None)).map(|p| p.rule);
        assert_eq!(got.as_deref().map_err(Clone::clone), want, "{pod:?}");
        let e = set.evaluate(&id, &req("internal-api", None));
        assert_eq!(e.trace[0].outcome, outcome, "{pod:?}");
        assert_eq!(
            e.trace[1].outcome,
            TraceOutcome::ConditionFalse { condition: "now.getHours() < 7 || now.getHours() >= 19".into() }
        );
    }
    // At 20:00 the deny rule's condition holds, and deny wins.
    let evening = Request { now: NOW + 12 * 3600, ..req("internal-api", None) };
    assert_eq!(
        set.preview(&with_pod(Some("api-7d")), &evening),
        Err(Denial::Denied { rule: "office-hours-only".into() })
    );
}

#[test]
fn conditions_see_the_request_scope_and_client_address() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: internal-network
            match: { namespace: payments }
            when: 'request.client_addr.startsWith("10.") && request.audience == "aws-prod"'
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
        "#,
    );
    assert!(set.preview(&api(), &req("aws-prod", None)).is_ok());
    let outside = Request { client_addr: Some("203.0.113.9"), ..req("aws-prod", None) };
    assert_eq!(set.preview(&api(), &outside), Err(Denial::NoRule));
    let unknown = Request { client_addr: None, ..req("aws-prod", None) };
    assert_eq!(set.preview(&api(), &unknown), Err(Denial::NoRule), "an unknown address fails the condition");
}

#[test]
fn inline_tests_can_set_the_time_and_client_address() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: business-hours
            match: { namespace: payments }
            when: 'now.getHours("Europe/Paris") >= 8 && now.getHours("Europe/Paris") < 18 && request.client_addr == "10.0.0.1"'
            grant: { target: internal-api }
        tests:
          - identity: { source: eks-prod, namespace: payments }
            audience: internal-api
            now: 2026-01-05T09:00:00Z
            client_addr: 10.0.0.1
            expect: { allow: business-hours }
          - identity: { source: eks-prod, namespace: payments }
            audience: internal-api
            now: 2026-01-05T17:30:00Z
            client_addr: 10.0.0.1
            expect: { none: true }
          - identity: { source: eks-prod, namespace: payments, expires_at: 2026-01-05T10:00:00Z }
            audience: internal-api
            now: 1767603600
            expect: { none: true }
        "#,
    );
    let outcomes = set.run_tests_at(0);
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    assert!(outcomes.iter().all(|o| o.passed), "{outcomes:#?}");
    let e = errors(&[(
        "m.yaml",
        r#"
        version: 1
        rules: []
        tests:
          - identity: { source: eks-prod }
            audience: internal-api
            now: tomorrow
            expect: { none: true }
        "#,
    )]);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("`now` must be an RFC 3339 time"), "{}", e[0]);
}

// ---------------------------------------------------------------------------------------
// Rules that cannot be evaluated: deny fails closed
// ---------------------------------------------------------------------------------------

/// An allow rule for every `eks-prod` workload, and a deny rule whose condition fails for
/// a workload without an `oidc.env` attribute.
const FAIL_CLOSED: &str = r#"
    version: 1
    rules:
      - name: eks-workloads
        match: { source: eks-prod }
        grant: { target: internal-api }
      - name: prod-only
        effect: deny
        match: { source: eks-prod }
        when: 'identity.attributes["oidc.env"] != "prod"'
        grant: { target: internal-api }
"#;

fn with_attributes(pairs: &[(&str, &str)]) -> Identity {
    let mut id = api();
    for (k, v) in pairs {
        id.attributes.insert((*k).to_string(), (*v).to_string());
    }
    id
}

fn with_withheld(pairs: &[(&str, &str)], withheld: &[&str]) -> Identity {
    let mut id = with_attributes(pairs);
    id.withheld = withheld.iter().map(|k| (*k).to_string()).collect();
    id
}

/// The decision through the index (`preview`), which must agree with the full scan
/// (`evaluate`).
#[track_caller]
fn decided(set: &MappingSet, id: &Identity, r: &Request<'_>) -> Decision {
    let indexed = match set.preview(id, r) {
        Ok(p) => Decision::Allow { rule: p.rule },
        Err(Denial::Denied { rule }) => Decision::Deny { rule },
        Err(Denial::DeniedOnError { rule, error }) => Decision::DenyOnError { rule, error },
        Err(Denial::NoRule) => Decision::NoRule,
        Err(Denial::Ambiguous { rules }) => Decision::Ambiguous { rules },
        Err(other) => panic!("{other}"),
    };
    assert_eq!(indexed, set.evaluate(id, r).decision, "{id:?}");
    indexed
}

#[test]
fn a_deny_rule_whose_condition_fails_applies() {
    let set = load(FAIL_CLOSED);
    let r = req("internal-api", None);
    let allow = Decision::Allow { rule: "eks-workloads".into() };
    assert_eq!(decided(&set, &with_attributes(&[("oidc.env", "prod")]), &r), allow);
    assert_eq!(
        decided(&set, &with_attributes(&[("oidc.env", "dev")]), &r),
        Decision::Deny { rule: "prod-only".into() }
    );
    // No `oidc.env`: the condition fails, and the deny rule applies; it used to be skipped
    // and the allow rule granted.
    let error = EvalError::Condition {
        condition: r#"identity.attributes["oidc.env"] != "prod""#.into(),
        error: "no such key: `oidc.env` (guard it with `has()` or `in`)".into(),
    };
    let denial = set.preview(&api(), &r).unwrap_err();
    assert_eq!(denial, Denial::DeniedOnError { rule: "prod-only".into(), error: error.clone() });
    assert_eq!(denial.code(), "TS-MAP-DENY-CONDITION-ERROR");
    assert_eq!(denial.rule(), Some("prod-only"));
    assert_eq!(
        denial.to_string(),
        r#"denied by rule `prod-only`, which could not be evaluated (deny rules fail closed): its condition `identity.attributes["oidc.env"] != "prod"` failed: no such key: `oidc.env` (guard it with `has()` or `in`)"#
    );
    let e = set.evaluate(&api(), &r);
    assert_eq!(e.decision, Decision::DenyOnError { rule: "prod-only".into(), error: error.clone() });
    assert_eq!(e.trace[0].outcome, TraceOutcome::Applied { scope: GrantableScope::None });
    assert_eq!(e.trace[1].outcome, TraceOutcome::AppliedOnError { error });
    assert_eq!(
        serde_json::to_value(&e.decision).unwrap(),
        json!({
            "decision": "deny_on_error",
            "rule": "prod-only",
            "error": {
                "kind": "condition",
                "condition": r#"identity.attributes["oidc.env"] != "prod""#,
                "error": "no such key: `oidc.env` (guard it with `has()` or `in`)",
            },
        })
    );
    assert_eq!(serde_json::to_value(&e.trace[1].outcome).unwrap()["outcome"], "applied_on_error");
}

#[test]
fn every_kind_of_condition_error_makes_a_deny_apply_and_an_allow_not() {
    let r = req("internal-api", None);
    for (condition, fragment) in [
        (r#"identity.tenant == "t""#, "tenant"),
        (r#"identity.attributes["oidc.env"] == "prod""#, "no such key: `oidc.env`"),
        (r#"identity.name.matches("(")"#, "regex"),
        (r#"[true, "x"][request.audience == "internal-api" ? 1 : 0]"#, "not a bool"),
        (r#"int(identity.name) > 3"#, ""),
    ] {
        let deny = load(&format!(
            "version: 1\nrules:\n  - name: all\n    match: {{ source: eks-prod }}\n    grant: {{ target: internal-api }}\n  - name: d\n    effect: deny\n    match: {{ source: eks-prod }}\n    when: '{condition}'\n    grant: {{ target: internal-api }}\n"
        ));
        let Decision::DenyOnError { rule, error: EvalError::Condition { condition: c, error } } =
            decided(&deny, &api(), &r)
        else {
            panic!("{condition}: the deny rule applies")
        };
        assert_eq!((rule.as_str(), c.as_str()), ("d", condition));
        assert!(error.contains(fragment), "{condition}: {error}");
        let allow = load(&format!(
            "version: 1\nrules:\n  - name: a\n    match: {{ source: eks-prod }}\n    when: '{condition}'\n    grant: {{ target: internal-api }}\n"
        ));
        assert_eq!(decided(&allow, &api(), &r), Decision::NoRule, "{condition}");
        let TraceOutcome::ConditionError { error, .. } = &allow.evaluate(&api(), &r).trace[0].outcome else {
            panic!("{condition}: the allow rule does not apply")
        };
        assert!(error.contains(fragment), "{condition}: {error}");
    }
}

#[test]
fn a_deny_rule_that_applies_outright_is_reported_before_one_on_error() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: needs-env
            effect: deny
            match: { source: eks-prod }
            when: 'identity.attributes["oidc.env"] != "prod"'
            grant: { target: internal-api }
          - name: no-api
            effect: deny
            match: { name: api }
            grant: { target: internal-api }
        "#,
    );
    let r = req("internal-api", None);
    assert_eq!(decided(&set, &api(), &r), Decision::Deny { rule: "no-api".into() });
    let trace = set.evaluate(&api(), &r).trace;
    assert!(matches!(trace[0].outcome, TraceOutcome::AppliedOnError { .. }), "{trace:?}");
    assert_eq!(trace[1].outcome, TraceOutcome::Applied { scope: GrantableScope::None });
}

/// Rules that look at `github.ref` and `github.fork` through `match` and `when`.
const WITHHELD: &str = r#"
    version: 1
    rules:
      - name: eks-workloads
        match: { source: eks-prod }
        grant: { target: internal-api }
      - name: no-pull-requests
        effect: deny
        match: { source: eks-prod, attributes: { github.ref: "refs/pull/*" } }
        grant: { target: internal-api }
      - name: no-forks
        effect: deny
        match: { source: eks-prod }
        when: '"github.fork" in identity.attributes && identity.attributes["github.fork"] == "true"'
        grant: { target: internal-api }
      - name: no-frozen
        effect: deny
        match: { attributes: { github.ref: refs/heads/frozen } }
        grant: { target: internal-api }
      - name: main-deploys
        match: { source: eks-prod, attributes: { github.ref: refs/heads/main } }
        grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
      - name: release-deploys
        match: { source: eks-prod }
        when: '"github.ref" in identity.attributes && identity.attributes["github.ref"].startsWith("refs/tags/")'
        grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/writer" }
      - name: no-pull-requests-at-night
        effect: deny
        match: { attributes: { github.ref: "refs/pull/*" } }
        when: 'now.getHours() >= 22'
        grant: { target: aws-prod }
"#;

#[test]
fn a_withheld_attribute_makes_a_deny_rule_looking_at_it_apply_through_match_or_when() {
    let set = load(WITHHELD);
    let internal = req("internal-api", None);
    let outcomes = |id: &Identity, r: &Request<'_>| -> Vec<(String, TraceOutcome)> {
        set.evaluate(id, r).trace.into_iter().map(|t| (t.rule, t.outcome)).collect()
    };
    let ok = with_attributes(&[("github.ref", "refs/heads/main")]);
    assert_eq!(decided(&set, &ok, &internal), Decision::Allow { rule: "eks-workloads".into() });

    // `match:` on a withheld `github.ref`: the deny rule applies, whatever the value was.
    let long_ref = with_withheld(&[], &["github.ref"]);
    let withheld_ref = EvalError::WithheldMatch { field: "attributes.github.ref".into() };
    assert_eq!(
        decided(&set, &long_ref, &internal),
        Decision::DenyOnError { rule: "no-pull-requests".into(), error: withheld_ref.clone() }
    );
    assert_eq!(
        outcomes(&long_ref, &internal),
        vec![
            ("eks-workloads".into(), TraceOutcome::Applied { scope: GrantableScope::None }),
            ("no-pull-requests".into(), TraceOutcome::AppliedOnError { error: withheld_ref.clone() }),
            (
                "no-forks".into(),
                TraceOutcome::ConditionFalse {
                    condition: r#""github.fork" in identity.attributes && identity.attributes["github.fork"] == "true""#
                        .into()
                }
            ),
            // Filed in the index under `github.ref`, and still looked at.
            ("no-frozen".into(), TraceOutcome::AppliedOnError { error: withheld_ref.clone() }),
        ]
    );
    let mut candidates = Vec::new();
    set.index.candidates("internal-api", &long_ref, &mut candidates);
    assert_eq!(candidates, vec![0, 1, 2, 3]);
    assert_eq!(
        set.preview(&long_ref, &internal).unwrap_err().to_string(),
        "denied by rule `no-pull-requests`, which could not be evaluated (deny rules fail closed): `match` tests `attributes.github.ref`, whose value was withheld (over the attribute limits)"
    );

    // `when:` that reads a withheld `github.fork`, guard and all: the deny rule applies.
    let long_fork = with_withheld(&[("github.ref", "refs/heads/main")], &["github.fork"]);
    assert_eq!(
        decided(&set, &long_fork, &internal),
        Decision::DenyOnError {
            rule: "no-forks".into(),
            error: EvalError::Condition {
                condition:
                    r#""github.fork" in identity.attributes && identity.attributes["github.fork"] == "true""#
                        .into(),
                error:
                    "it reads attribute `github.fork`, whose value was withheld (over the attribute limits)"
                        .into(),
            },
        }
    );

    // Allow rules that look at a withheld attribute do not apply, by `match` or `when`; a
    // deny rule whose `when:` is false does not apply whatever the withheld value was.
    let aws = req("aws-prod", None);
    assert_eq!(decided(&set, &long_ref, &aws), Decision::NoRule);
    assert_eq!(
        outcomes(&long_ref, &aws),
        vec![
            ("main-deploys".into(), TraceOutcome::Withheld { field: "attributes.github.ref".into() }),
            (
                "release-deploys".into(),
                TraceOutcome::ConditionError {
                    condition: r#""github.ref" in identity.attributes && identity.attributes["github.ref"].startsWith("refs/tags/")"#
                        .into(),
                    error: "it reads attribute `github.ref`, whose value was withheld (over the attribute limits)"
                        .into(),
                }
            ),
            (
                "no-pull-requests-at-night".into(),
                TraceOutcome::ConditionFalse { condition: "now.getHours() >= 22".into() }
            ),
        ]
    );
    let night = Request { now: NOW + 14 * 3600, ..aws };
    assert_eq!(
        decided(&set, &long_ref, &night),
        Decision::DenyOnError { rule: "no-pull-requests-at-night".into(), error: withheld_ref }
    );

    // A rule another condition rules out does not apply, withheld attribute or not.
    let mut other_source = with_withheld(&[], &["github.ref"]);
    other_source.source = "gke-dev".into();
    assert_eq!(
        decided(&set, &other_source, &internal),
        Decision::DenyOnError {
            rule: "no-frozen".into(),
            error: EvalError::WithheldMatch { field: "attributes.github.ref".into() },
        }
    );
    assert!(matches!(
        &outcomes(&other_source, &internal)[1].1,
        TraceOutcome::NotMatched { field, .. } if field == "source"
    ));
}

#[test]
fn inline_tests_follow_the_same_semantics_and_can_name_withheld_attributes() {
    let text = format!(
        "{}{}",
        dedent(WITHHELD),
        dedent(
            r#"
            tests:
              - identity: { source: eks-prod, withheld: [github.ref] }
                audience: internal-api
                expect: { deny: no-pull-requests }
              - identity: { source: eks-prod, attributes: { github.ref: refs/heads/main }, withheld: [github.fork] }
                audience: internal-api
                expect: { deny: no-forks }
              - identity: { source: eks-prod, withheld: [github.ref] }
                audience: aws-prod
                expect: { none: true }
              - identity: { source: eks-prod, attributes: { github.ref: refs/heads/main } }
                audience: internal-api
                expect: { allow: eks-workloads }
              - identity: { source: eks-prod, withheld: [github.ref] }
                audience: internal-api
                expect: { allow: eks-workloads }
            "#
        )
    );
    let set = MappingSet::load_files(&[(PathBuf::from("m.yaml"), text)], &catalog()).unwrap();
    let outcomes = set.run_tests_at(NOW);
    assert_eq!(outcomes.iter().map(|o| o.passed).collect::<Vec<_>>(), [true, true, true, true, false]);
    assert_eq!(
        outcomes[4].to_string(),
        "m.yaml:44:5: FAILED: audience `internal-api`: expected allow by rule `eks-workloads`, got denied by rule `no-pull-requests`, which could not be evaluated (deny rules fail closed): `match` tests `attributes.github.ref`, whose value was withheld (over the attribute limits) [TS-MAP-DENY-CONDITION-ERROR]"
    );
    // A test for the condition error of FAIL_CLOSED.
    let text = format!(
        "{}tests:\n  - identity: {{ source: eks-prod }}\n    audience: internal-api\n    expect: {{ deny: prod-only }}\n",
        dedent(FAIL_CLOSED)
    );
    let set = MappingSet::load_files(&[(PathBuf::from("m.yaml"), text)], &catalog()).unwrap();
    let outcomes = set.run_tests_at(NOW);
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].passed, "{}", outcomes[0]);

    let e = one_error(
        r#"
        version: 1
        tests:
          - identity: { source: eks-prod, attributes: { github.ref: x }, withheld: [github.ref] }
            audience: internal-api
            expect: { none: true }
        "#,
        3,
        77,
        "attribute `github.ref` is both withheld and given a value",
    );
    assert!(e.hint.contains("remove it from `attributes` or from `withheld`"), "{e}");
    one_error(
        r#"
        version: 1
        tests:
          - identity: { source: eks-prod, withheld: github.ref }
            audience: internal-api
            expect: { none: true }
        "#,
        3,
        45,
        "`identity.withheld` must be a list",
    );
}

#[test]
fn conditions_reading_what_an_identity_may_lack_are_warned_about_with_what_happens() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: prod-only
            effect: deny
            match: { source: eks-prod }
            when: 'identity.attributes["oidc.env"] != "prod"'
            grant: { target: internal-api }
          - name: tenant-a
            match: { source: eks-prod }
            when: 'identity.tenant == "a" && identity.name == "api"'
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
          - name: guarded
            effect: deny
            match: { source: gke-dev }
            when: '!("oidc.env" in identity.attributes) || identity.attributes["oidc.env"] != "prod"'
            grant: { target: internal-api }
          - name: also-guarded
            match: { source: gke-dev }
            when: 'has(identity.region) && identity.region.startsWith("eu-") && identity.subject != "x"'
            grant: { target: internal-api }
        "#,
    );
    let warnings: Vec<String> = set.lint(&catalog()).iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            r#"m.yaml:6:11: warning: the condition of rule `prod-only` reads `identity.attributes["oidc.env"]` without testing that it is there: for an identity with no attribute `oidc.env` the condition fails and the deny rule applies (hint: say what identities without it get: `!("oidc.env" in identity.attributes) || ...` refuses them, `"oidc.env" in identity.attributes && ...` lets them through)"#,
            r#"m.yaml:10:11: warning: the condition of rule `tenant-a` reads `identity.tenant` without testing that it is there: for an identity with no `tenant` the condition fails and the rule does not apply (hint: say what identities without it get: `has(identity.tenant) && ...` refuses them, `!has(identity.tenant) || ...` lets them through)"#,
            r#"m.yaml:10:11: warning: the condition of rule `tenant-a` reads `identity.name` without testing that it is there: for an identity with no `name` the condition fails and the rule does not apply (hint: say what identities without it get: `has(identity.name) && ...` refuses them, `!has(identity.name) || ...` lets them through)"#,
        ]
    );
}

// ---------------------------------------------------------------------------------------
// The index decides as a full scan would
// ---------------------------------------------------------------------------------------

#[test]
fn the_index_never_changes_a_decision() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let values = ["a", "b", "c"];
    let pattern =
        prop::sample::select(vec!["a", "b", "c", "\"*\"", "\"a*\"", "\"?\"", "[a, b]", "[b, \"c*\"]"]);
    let rule = (
        prop::collection::vec(
            (prop::sample::select(vec!["namespace", "name", "tenant", "env"]), pattern),
            0..3,
        ),
        any::<bool>(),
        prop::sample::select(vec!["eks-prod", "gke-dev", "\"*\""]),
        prop::sample::select(vec![
            None,
            Some("identity.name != \"c\""),
            Some("\"env\" in identity.attributes && identity.attributes[\"env\"] != \"c\""),
            Some("identity.attributes[\"env\"] == \"a\""),
        ]),
    );
    let mut runner = TestRunner::new(Config { cases: 200, ..Config::default() });
    runner
        .run(&prop::collection::vec(rule, 1..8), |rules| {
            let mut text = String::from("version: 1\nrules:\n");
            for (i, (conditions, deny, source, when)) in rules.iter().enumerate() {
                let mut m = format!("source: {source}");
                for (field, p) in conditions {
                    if !m.contains(&format!("{field}:")) {
                        match *field {
                            "env" => m.push_str(&format!(", attributes: {{ env: {p} }}")),
                            field => m.push_str(&format!(", {field}: {p}")),
                        }
                    }
                }
                text.push_str(&format!("  - name: r{i}\n    match: {{ {m} }}\n"));
                if let Some(when) = when {
                    text.push_str(&format!("    when: '{when}'\n"));
                }
                if *deny {
                    text.push_str("    effect: deny\n");
                }
                text.push_str("    grant: { target: internal-api }\n");
            }
            let set = MappingSet::load_files(&[(PathBuf::from("p.yaml"), text.clone())], &catalog())
                .unwrap_or_else(|e| panic!("{text}\n{e}"));
            for source in ["eks-prod", "gke-dev"] {
                for ns in values {
                    for name in values {
                        for tenant in [None, Some("a"), Some("b")] {
                            // An `env` attribute that is absent, has a value, or was withheld.
                            for env in [None, Some("a"), Some("c"), Some("withheld")] {
                                let mut id = identity(source, Some(ns), Some(name));
                                id.tenant = tenant.map(str::to_string);
                                match env {
                                    Some("withheld") => {
                                        id.withheld.insert("env".into());
                                    }
                                    Some(v) => {
                                        id.attributes.insert("env".into(), v.into());
                                    }
                                    None => {}
                                }
                                let r = req("internal-api", None);
                                // `preview` goes through the index, `evaluate` scans every rule.
                                let indexed = match set.preview(&id, &r) {
                                    Ok(p) => Decision::Allow { rule: p.rule },
                                    Err(Denial::Denied { rule }) => Decision::Deny { rule },
                                    Err(Denial::DeniedOnError { rule, error }) => {
                                        Decision::DenyOnError { rule, error }
                                    }
                                    Err(Denial::NoRule) => Decision::NoRule,
                                    Err(Denial::Ambiguous { rules }) => Decision::Ambiguous { rules },
                                    Err(other) => panic!("{other}"),
                                };
                                prop_assert_eq!(
                                    indexed,
                                    set.evaluate(&id, &r).decision,
                                    "{}\n{:?}",
                                    text,
                                    id
                                );
                            }
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn rules_are_filed_under_their_most_selective_exact_field() {
    let mut text = String::from("version: 1\nrules:\n");
    for i in 0..50 {
        text.push_str(&format!(
            "  - name: r{i}\n    match: {{ source: eks-prod, namespace: payments, name: svc-{i} }}\n    grant: {{ target: internal-api }}\n"
        ));
    }
    text.push_str("  - name: any-api\n    match: { name: \"api-*\" }\n    grant: { target: internal-api }\n");
    let set = MappingSet::load_files(&[(PathBuf::from("m.yaml"), text)], &catalog()).unwrap();
    let mut out = Vec::new();
    set.index.candidates("internal-api", &identity("eks-prod", Some("payments"), Some("svc-7")), &mut out);
    // `svc-7` by name, plus the glob rule every request of the target looks at.
    assert_eq!(out, vec![7, 50]);
    set.index.candidates("aws-prod", &api(), &mut out);
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------
// Warnings, the check report, identities for explain
// ---------------------------------------------------------------------------------------

fn warnings(text: &str) -> Vec<String> {
    load(text)
        .lint(&catalog())
        .into_iter()
        .map(|w| format!("{}:{}: {}", w.line, w.column, w.message))
        .collect()
}

#[test]
fn allow_rules_shadowed_by_a_deny_are_warned_about() {
    let w = warnings(
        r#"
        version: 1
        rules:
          - name: batch
            match: { source: eks-prod, namespace: payments, name: "batch-*" }
            grant: { target: internal-api }
          - name: nightly
            match: { source: eks-prod, namespace: payments, name: "batch-nightly" }
            grant: { target: aws-prod, role_arn: x }
          - name: no-batch
            effect: deny
            match: { name: "batch-*" }
            grant: { target: internal-api }
          - name: no-batch-when
            effect: deny
            match: { name: "batch-*" }
            when: 'has(identity.namespace) && identity.namespace == "payments"'
            grant: { target: aws-prod }
        "#,
    );
    assert_eq!(
        w,
        vec![
            "3:5: rule `batch` can never apply: deny rule `no-batch` (m.yaml:9:5) matches every identity it matches"
        ]
    );
    // A deny naming only the source covers rules of that source.
    let w = warnings(
        r#"
        version: 1
        rules:
          - name: a
            match: { source: gke-dev, name: x }
            grant: { target: internal-api }
          - name: b
            match: { provider: kubernetes, name: y }
            grant: { target: internal-api }
          - name: dev-off
            effect: deny
            match: { source: [gke-dev, eks-prod] }
            grant: { target: internal-api }
        "#,
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("3:5: rule `a` can never apply"), "{w:?}");
    assert!(w[1].starts_with("6:5: rule `b` can never apply"), "{w:?}");
}

#[test]
fn rules_for_no_configured_source_kind_are_warned_about() {
    let w = warnings(
        r#"
        version: 1
        rules:
          - name: r
            match: { source: eks-prod, provider: github_actions }
            grant: { target: internal-api }
        "#,
    );
    assert_eq!(
        w,
        vec![
            "3:5: rule `r` can never apply: no configured source satisfies both its `source` and `provider`"
        ]
    );
}

#[test]
fn overlapping_allow_rules_are_warned_about_unless_a_scope_picks() {
    let w = warnings(TWO_ROLES);
    assert!(w.is_empty(), "different scopes are picked by the request: {w:?}");
    let w = warnings(
        r#"
        version: 1
        rules:
          - name: a
            match: { source: eks-prod, namespace: payments }
            grant: { target: internal-api }
          - name: b
            match: { name: "api-*" }
            grant: { target: internal-api }
          - name: c
            match: { source: gke-dev, namespace: payments }
            grant: { target: internal-api }
          - name: d
            match: { source: eks-prod, namespace: billing }
            grant: { target: internal-api }
          - name: e
            match: { source: eks-prod, namespace: payments, name: worker }
            grant: { target: aws-prod, role_arn: x }
          - name: f
            match: { source: eks-prod, namespace: payments }
            grant: { target: aws-prod, role_arn: y, scope: "{name}" }
        "#,
    );
    assert_eq!(
        w,
        vec![
            "6:5: rules `a` (m.yaml:3:5) and `b` can apply to the same identity and both grant no scope: such requests are refused as ambiguous",
            "9:5: rules `b` (m.yaml:6:5) and `c` can apply to the same identity and both grant no scope: such requests are refused as ambiguous",
            "12:5: rules `b` (m.yaml:6:5) and `d` can apply to the same identity and both grant no scope: such requests are refused as ambiguous",
        ],
        "a/c differ by source, a/d by namespace, e/f by scope"
    );
}

#[test]
fn the_check_report_reads_like_a_compiler_and_fails_on_errors_and_failed_tests() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"version: 1
rules:
  - name: a
    match: { source: eks-prod, namespace: payments }
    grant: { target: internal-api }
  - name: b
    match: { name: "api-*" }
    grant: { target: internal-api }
tests:
  - identity: { source: eks-prod, namespace: payments, name: worker }
    audience: internal-api
    expect: { allow: a }
  - identity: { source: eks-prod, namespace: payments, name: api-1 }
    audience: internal-api
    expect: { allow: a }
"#;
    std::fs::write(dir.path().join("a.yaml"), good).unwrap();
    let report = CheckReport::run(dir.path(), &catalog(), NOW);
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let file = dir.path().join("a.yaml");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with(&format!("{}:6:5: warning: rules `a`", file.display())), "{text}");
    assert!(lines[1].starts_with(&format!("{}:10:5: ok:", file.display())), "{text}");
    assert!(lines[2].starts_with(&format!("{}:13:5: FAILED:", file.display())), "{text}");
    assert!(lines[2].contains("got ambiguous"), "{text}");
    assert!(lines[3].ends_with(": 1 file, 2 rules, 2 tests (1 failed), 0 errors, 1 warning"), "{text}");
    assert!(!report.passed(false));

    std::fs::write(dir.path().join("a.yaml"), good.replace("name: api-1", "name: other")).unwrap();
    let report = CheckReport::run(dir.path(), &catalog(), NOW);
    assert!(report.passed(false) && !report.passed(true), "{report}");

    std::fs::write(dir.path().join("b.yaml"), "version: 1\nrules:\n  - name: a\n    match: {}\n").unwrap();
    let report = CheckReport::run(dir.path(), &catalog(), NOW);
    assert!(!report.passed(false));
    assert_eq!(report.rules, 0);
    assert!(report.tests.is_empty(), "no test runs on a set that would not load");
    let text = report.to_string();
    assert!(text.contains("b.yaml:3:11: error: duplicate rule name `a`"), "{text}");
    assert!(text.contains("b.yaml:3:5: error: the rule has no `grant`"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["errors"][0]["severity"], "error");
    assert_eq!(json["files"], 2);
}

#[test]
fn explain_identities_parse_like_test_case_identities() {
    let id = parse_identity(
        Path::new("id.json"),
        r#"{"source": "eks-prod", "namespace": "payments", "attributes": {"k8s.pod_name": "api-1"}}"#,
    )
    .unwrap();
    assert_eq!(
        (id.source.as_str(), id.namespace.as_deref(), id.provider.as_str()),
        ("eks-prod", Some("payments"), "test")
    );
    assert_eq!(id.attributes["k8s.pod_name"], "api-1");
    let e = parse_identity(Path::new("id.yaml"), "source: eks-prod\nnmae: x\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "id.yaml:2:1: unknown key `nmae` in `identity` (hint: `identity` takes `id`, `provider`, `source`, `issuer`, `subject`, `tenant`, `namespace`, `name`, `instance`, `region`, `attributes`, `withheld` or `expires_at`)"
    );
}

/// The catalog the examples of docs/mappings.md are written against.
fn docs_catalog() -> Catalog {
    let jwt = TargetInfo::plain_jwt;
    let mut targets = vec![jwt("internal-api"), jwt("gcp-prod"), jwt("warehouse-api"), jwt("ledger-api")];
    targets.push(TargetInfo {
        name: "aws-prod".into(),
        kind: "aws_sts",
        max_ttl: Duration::from_secs(3600),
        default_ttl: Duration::from_secs(900),
        grant_keys: &["role_arn", "session_name", "tags"],
        scope_param: Some("role_arn"),
        target: None,
    });
    let sources = [
        ("corp-idp", "oidc"),
        ("demo", "oidc"),
        ("eks-prod", "kubernetes"),
        ("github", "github_actions"),
        ("gitlab", "gitlab_ci"),
        ("circleci", "circleci"),
        ("gcp-data", "gcp"),
        ("azure-prod", "azure"),
        ("spire", "spiffe"),
        ("aws-workloads", "aws_iam"),
    ];
    Catalog {
        targets,
        sources: sources.iter().map(|(n, k)| SourceInfo { name: (*n).into(), kind: (*k).into() }).collect(),
    }
}

#[test]
fn every_example_in_the_reference_documentation_loads_and_its_tests_pass() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/mappings.md")).unwrap();
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("version: 1"))
        .collect();
    assert!(blocks.len() >= 9, "{} examples", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let file = PathBuf::from(format!("docs-example-{i}.yaml"));
        let set = MappingSet::load_files(&[(file, block.to_string())], &docs_catalog())
            .unwrap_or_else(|e| panic!("example {i}:\n{block}\n{e}"));
        let outcomes = set.run_tests_at(NOW);
        assert!(!outcomes.is_empty(), "example {i} has tests");
        for o in &outcomes {
            assert!(o.passed, "example {i}: {o}");
        }
        let warnings = set.lint(&docs_catalog());
        assert!(warnings.is_empty(), "example {i}: {warnings:?}");
    }
}

/// One rule set, every outcome: each row is an identity and a request, and the decision.
#[test]
fn decision_truth_table() {
    let set = load(
        r#"
        version: 1
        rules:
          - name: reader
            match: { source: eks-prod, namespace: payments }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/reader" }
          - name: writer
            match: { source: eks-prod, namespace: payments, name: api }
            grant: { target: aws-prod, role_arn: "arn:aws:iam::123456789012:role/writer" }
          - name: canary-only
            match: { source: eks-prod, namespace: payments }
            when: 'identity.attributes["k8s.pod_name"].startsWith("canary-")'
            grant: { target: internal-api }
          - name: no-batch
            effect: deny
            match: { name: "batch-*" }
            grant: { target: aws-prod }
          - name: globbed
            match: { source: gke-dev, name: 'job-??', namespace: 'team-\*' }
            grant: { target: internal-api }
        "#,
    );
    let id = |source: &str, ns: &str, name: &str, pod: Option<&str>| {
        let mut id = identity(source, Some(ns), Some(name));
        if let Some(p) = pod {
            id.attributes.insert("k8s.pod_name".into(), p.into());
        }
        id
    };
    let allow = |r: &str| Decision::Allow { rule: r.into() };
    let rows: Vec<(&str, Identity, &str, Option<&str>, Decision)> = vec![
        ("one allow applies", id("eks-prod", "payments", "worker", None), "aws-prod", None, allow("reader")),
        (
            "two allows, no scope",
            id("eks-prod", "payments", "api", None),
            "aws-prod",
            None,
            Decision::Ambiguous { rules: vec!["reader".into(), "writer".into()] },
        ),
        ("scope picks", id("eks-prod", "payments", "api", None), "aws-prod", Some(WRITER), allow("writer")),
        (
            "scope nobody grants",
            id("eks-prod", "payments", "api", None),
            "aws-prod",
            Some("arn:aws:iam::123456789012:role/admin"),
            Decision::ScopeNotGrantable {
                audience: "aws-prod".into(),
                scope: "arn:aws:iam::123456789012:role/admin".into(),
            },
        ),
        (
            "deny wins",
            id("eks-prod", "payments", "batch-1", None),
            "aws-prod",
            Some(READER),
            Decision::Deny { rule: "no-batch".into() },
        ),
        ("no rule matches", id("eks-prod", "billing", "api", None), "aws-prod", None, Decision::NoRule),
        ("unknown audience", id("eks-prod", "payments", "api", None), "nowhere", None, Decision::NoRule),
        (
            "condition true",
            id("eks-prod", "payments", "x", Some("canary-1")),
            "internal-api",
            None,
            allow("canary-only"),
        ),
        (
            "condition false",
            id("eks-prod", "payments", "x", Some("main-1")),
            "internal-api",
            None,
            Decision::NoRule,
        ),
        ("condition error", id("eks-prod", "payments", "x", None), "internal-api", None, Decision::NoRule),
        ("glob and escape", id("gke-dev", "team-*", "job-42", None), "internal-api", None, allow("globbed")),
        (
            "escaped star is literal",
            id("gke-dev", "team-a", "job-42", None),
            "internal-api",
            None,
            Decision::NoRule,
        ),
        (
            "? is one character",
            id("gke-dev", "team-*", "job-4", None),
            "internal-api",
            None,
            Decision::NoRule,
        ),
    ];
    for (what, identity, audience, scope, want) in rows {
        let r = req(audience, scope);
        assert_eq!(set.evaluate(&identity, &r).decision, want, "{what}");
        // The indexed path agrees.
        let indexed = match set.preview(&identity, &r) {
            Ok(p) => allow(&p.rule),
            Err(Denial::Denied { rule }) => Decision::Deny { rule },
            Err(Denial::NoRule) => Decision::NoRule,
            Err(Denial::Ambiguous { rules }) => Decision::Ambiguous { rules },
            Err(Denial::ScopeNotGrantable) => Decision::ScopeNotGrantable {
                audience: audience.into(),
                scope: scope.unwrap_or_default().into(),
            },
            Err(other) => panic!("{what}: {other}"),
        };
        assert_eq!(indexed, want, "{what} (indexed)");
    }
}

/// A condition that fails is logged with the rule and the reason.
#[test]
fn a_failing_condition_is_logged_with_its_reason() {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let set = load(CONDITIONS);
    let fail_closed = load(FAIL_CLOSED);
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(set.preview(&api(), &req("internal-api", None)), Err(Denial::NoRule));
        assert!(fail_closed.preview(&api(), &req("internal-api", None)).is_err());
    });
    let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("condition failed: the rule does not apply"), "{logged}");
    assert!(logged.contains("rule=api-pods"), "{logged}");
    assert!(logged.contains("no such key: `k8s.pod_name`"), "{logged}");
    // A deny rule's says that it applies.
    assert!(logged.contains("condition failed: the deny rule applies (fail closed)"), "{logged}");
    assert!(logged.contains("rule=prod-only"), "{logged}");
    assert!(logged.contains("no such key: `oidc.env`"), "{logged}");
}
