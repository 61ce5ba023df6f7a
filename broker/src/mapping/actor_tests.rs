//! Delegation in mapping sets: `match.actor`, the per-rule opt-in, deny rules on the actor,
//! `actor` in conditions and templates, and test cases with an actor.

use std::path::PathBuf;

use tessera_adapters::Identity;

use super::testkit::eks_api;
use super::*;

fn catalog() -> Catalog {
    Catalog {
        targets: vec![TargetInfo::plain_jwt("deploy-api"), TargetInfo::plain_jwt("reports")],
        sources: vec![
            SourceInfo { name: "eks-prod".into(), kind: "kubernetes".into() },
            SourceInfo { name: "github".into(), kind: "github_actions".into() },
        ],
    }
}

fn load(text: &str) -> Result<MappingSet, LoadErrors> {
    MappingSet::load_files(&[(PathBuf::from("m.yaml"), text.to_string())], &catalog())
}

const RULES: &str = r#"version: 1
rules:
  - name: ci-acts-for-api
    match:
      source: eks-prod
      name: api
      actor: { source: github, attributes: { github.ref: refs/heads/main } }
    when: 'actor.namespace == "octo-org/payments"'
    grant:
      target: deploy-api
      claims: { acting: "{actor.name}", for: "{name}" }
  - name: api-alone
    match: { source: eks-prod, name: api }
    grant: { target: deploy-api }
  - name: api-reports
    match: { source: eks-prod, name: api }
    grant: { target: reports }
  - name: no-pull-requests
    effect: deny
    match: { source: eks-prod, actor: { attributes: { github.ref: "refs/pull/*" } } }
    grant: { target: deploy-api }
"#;

fn ci(git_ref: &str) -> Identity {
    Identity {
        id: "github://octo-org/payments".into(),
        provider: "github_actions".into(),
        source: "github".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: format!("repo:octo-org/payments:ref:{git_ref}"),
        tenant: Some("octo-org".into()),
        namespace: Some("octo-org/payments".into()),
        name: Some("deploy".into()),
        instance: None,
        region: None,
        attributes: [("github.ref".to_string(), git_ref.to_string())].into(),
        withheld: Default::default(),
        expires_at: 0,
    }
}

fn request(audience: &str) -> Request<'_> {
    Request { audience, scope: None, client_addr: None, now: 1_800_000_000 }
}

#[test]
fn delegation_is_opt_in_per_rule() {
    let set = load(RULES).unwrap();
    let main = ci("refs/heads/main");
    // Without an actor the delegating rule does not apply; the other one does.
    assert_eq!(set.preview(&eks_api(), &request("deploy-api")).unwrap().rule, "api-alone");
    // With one, only the delegating rule counts, and its templates see the actor.
    let grant = set.preview_delegated(&eks_api(), Some(&main), &request("deploy-api")).unwrap();
    assert_eq!(grant.rule, "ci-acts-for-api");
    assert_eq!(grant.claims["acting"], "deploy");
    assert_eq!(grant.claims["for"], "api");
    // Where no rule has `match.actor`, an actor is refused, naming the rules that held.
    assert_eq!(
        set.preview_delegated(&eks_api(), Some(&main), &request("reports")),
        Err(Denial::DelegationNotAllowed { rules: vec!["api-reports".into()] })
    );
    let e = set.evaluate_delegated(&eks_api(), Some(&main), &request("reports"));
    assert_eq!(e.decision, Decision::DelegationNotAllowed { rules: vec!["api-reports".into()] });
    assert_eq!(e.trace[0].outcome, TraceOutcome::DelegationNotAllowed);
}

#[test]
fn actor_conditions_and_deny_rules_on_the_actor() {
    let set = load(RULES).unwrap();
    // Another branch: the actor match fails, and the rule without match.actor does not
    // allow delegation.
    let feature = ci("refs/heads/feature");
    assert_eq!(
        set.preview_delegated(&eks_api(), Some(&feature), &request("deploy-api")),
        Err(Denial::DelegationNotAllowed { rules: vec!["api-alone".into()] })
    );
    let e = set.evaluate_delegated(&eks_api(), Some(&feature), &request("deploy-api"));
    let first = &e.trace[0];
    assert_eq!(
        first.outcome,
        TraceOutcome::NotMatched {
            field: "actor.attributes.github.ref".into(),
            actual: Some("refs/heads/feature".into()),
            patterns: vec!["refs/heads/main".into()],
        }
    );
    // A pull request's job is denied outright; without an actor the deny does not apply.
    let pull = ci("refs/pull/7/merge");
    assert_eq!(
        set.preview_delegated(&eks_api(), Some(&pull), &request("deploy-api")),
        Err(Denial::Denied { rule: "no-pull-requests".into() })
    );
    // The `when:` sees the actor: another repository's main branch does not hold.
    let mut other = ci("refs/heads/main");
    other.namespace = Some("octo-org/other".into());
    assert!(matches!(
        set.preview_delegated(&eks_api(), Some(&other), &request("deploy-api")),
        Err(Denial::DelegationNotAllowed { .. })
    ));
}

#[test]
fn an_actor_attribute_withheld_fails_closed() {
    let set = load(RULES).unwrap();
    let mut withheld = ci("refs/heads/main");
    withheld.attributes.clear();
    withheld.withheld.insert("github.ref".into());
    // The deny rule cannot be evaluated, so it applies; the allow rule would not either.
    assert_eq!(
        set.preview_delegated(&eks_api(), Some(&withheld), &request("deploy-api")).unwrap_err().code(),
        "TS-MAP-DENY-CONDITION-ERROR"
    );
}

#[test]
fn match_actor_is_checked_at_load() {
    let bad = |m: &str| {
        let text = format!(
            "version: 1\nrules:\n  - name: r\n    match: {{ source: eks-prod, {m} }}\n    grant: {{ target: deploy-api }}\n"
        );
        load(&text).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(bad("actor: {}").contains("`match.actor` has no conditions"), "{}", bad("actor: {}"));
    assert!(bad("actor: { nmae: x }").contains("unknown key `nmae` in `match.actor`"));
    assert!(bad("actor: { actor: { name: x } }").contains("unknown key `actor`"), "no nesting");
    assert!(bad("actor: { source: gitlab }").contains("gitlab"), "the actor's source is checked too");
    assert!(bad("actor: { name: x }").is_empty());
    let template = "version: 1\nrules:\n  - name: r\n    match: { source: eks-prod }\n    grant: { target: deploy-api, claims: { a: \"{actor.nmae}\" } }\n";
    assert!(load(template).unwrap_err().to_string().contains("unknown identity field `actor.nmae`"));
}

#[test]
fn test_cases_take_an_actor() {
    let text = format!(
        "{RULES}tests:\n  - identity: {{ source: eks-prod, name: api }}\n    actor: {{ source: github, namespace: octo-org/payments, name: deploy, attributes: {{ github.ref: refs/heads/main }} }}\n    audience: deploy-api\n    expect: {{ allow: ci-acts-for-api }}\n  - identity: {{ source: eks-prod, name: api }}\n    actor: {{ source: github }}\n    audience: reports\n    expect: {{ no_delegation: true }}\n  - identity: {{ source: eks-prod, name: api }}\n    audience: deploy-api\n    expect: {{ allow: ci-acts-for-api }}\n"
    );
    let set = load(&text).unwrap();
    let outcomes = set.run_tests_at(1_800_000_000);
    let passed: Vec<bool> = outcomes.iter().map(|o| o.passed).collect();
    assert_eq!(passed, [true, true, false], "{outcomes:?}");
    assert!(outcomes[2].to_string().contains("got allow by rule `api-alone`"), "{}", outcomes[2]);
}

#[test]
fn delegating_and_plain_allow_rules_are_not_reported_as_overlapping() {
    let set = load(RULES).unwrap();
    let warnings = set.lint(&catalog());
    assert!(warnings.iter().all(|w| !w.message.contains("ambiguous")), "{warnings:?}");
}
