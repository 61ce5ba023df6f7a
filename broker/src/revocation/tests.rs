use std::path::Path;

use serde_json::json;

use super::*;
use crate::mapping::parse_identity;

fn identity() -> Identity {
    parse_identity(
        Path::new("id.json"),
        r#"{"id": "github://octo-org/payments", "source": "github", "namespace": "payments",
            "attributes": {"github.ref": "refs/heads/main", "github.repository_id": "42"}}"#,
    )
    .unwrap()
}

fn matcher(value: serde_json::Value) -> Matcher {
    serde_json::from_value(value).unwrap()
}

#[test]
fn each_identity_kind_matches_what_it_names_and_nothing_else() {
    let id = identity();
    let cases = [
        (json!({"kind": "identity", "id": "github://octo-org/payments"}), true),
        (json!({"kind": "identity", "id": "github://octo-org/payments2"}), false),
        (json!({"kind": "identity_glob", "pattern": "github://octo-org/*"}), true),
        (json!({"kind": "identity_glob", "pattern": "github://other/*"}), false),
        (
            json!({"kind": "attributes", "source": "github", "attributes": {"github.repository_id": "42"}}),
            true,
        ),
        (
            json!({"kind": "attributes", "source": "github",
                   "attributes": {"github.repository_id": "42", "github.ref": "refs/heads/dev"}}),
            false,
        ),
        (
            json!({"kind": "attributes", "source": "gitlab", "attributes": {"github.repository_id": "42"}}),
            false,
        ),
        (json!({"kind": "source", "source": "github"}), true),
        (json!({"kind": "source", "source": "eks-prod"}), false),
        (json!({"kind": "rule", "rule": "payments"}), false),
        (json!({"kind": "subject_jti", "jti": "abc"}), false),
        (json!({"kind": "subject", "source": "github", "id": "github://octo-org/payments"}), true),
        (json!({"kind": "subject", "source": "eks-prod", "id": "github://octo-org/payments"}), false),
        (
            json!({"kind": "subject", "source": "github", "id": "github://octo-org/payments", "subject": "other"}),
            false,
        ),
        (json!({"kind": "subject", "source": "github", "issuer": "https://x", "subject": "s"}), false),
    ];
    for (value, expected) in cases {
        let m = matcher(value.clone());
        assert!(m.validate().is_ok(), "{value}");
        assert_eq!(m.matches_identity(&id), expected, "{value}");
    }
}

#[test]
fn matchers_round_trip_through_their_stored_json() {
    let m = matcher(json!({"kind": "issued_token", "fingerprint": format!("sha256:{}", "ab".repeat(32))}));
    assert_eq!(m.kind(), "issued_token");
    let back: Matcher = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn unknown_kinds_and_fields_do_not_parse() {
    for value in [
        json!({"kind": "everything"}),
        json!({"kind": "identity", "id": "x", "extra": 1}),
        json!({"kind": "identity"}),
        json!({"id": "x"}),
    ] {
        assert!(serde_json::from_value::<Matcher>(value.clone()).is_err(), "{value}");
    }
}

#[test]
fn values_that_could_never_match_are_refused_with_their_field() {
    let long = "x".repeat(MAX_FIELD + 1);
    let cases = [
        (json!({"kind": "identity", "id": ""}), "match.id"),
        (json!({"kind": "identity", "id": long}), "match.id"),
        (json!({"kind": "identity", "id": "a\nb"}), "match.id"),
        (json!({"kind": "identity_glob", "pattern": "abc\\"}), "match.pattern"),
        (json!({"kind": "attributes", "source": "github", "attributes": {}}), "match.attributes"),
        (json!({"kind": "source", "source": ""}), "match.source"),
        (json!({"kind": "subject", "source": "github"}), "match"),
        (json!({"kind": "subject", "source": "github", "issuer": "", "subject": "s"}), "match.issuer"),
        (json!({"kind": "issued_token", "fingerprint": "sha256:ABC"}), "match.fingerprint"),
        (
            json!({"kind": "issued_token", "fingerprint": format!("md5:{}", "ab".repeat(32))}),
            "match.fingerprint",
        ),
    ];
    for (value, field) in cases {
        let e = matcher(value.clone()).validate().unwrap_err();
        assert_eq!(e.field, field, "{value}");
    }
}

#[test]
fn a_new_revocation_needs_a_reason_and_a_future_expiry() {
    let now_ms = 1_800_000_000_000;
    let new = |value: serde_json::Value| serde_json::from_value::<NewRevocation>(value).unwrap();
    let base = json!({"match": {"kind": "source", "source": "github"}, "reason": "issuer keys leaked"});
    assert_eq!(new(base.clone()).validate(now_ms), Ok(None));
    let mut with = base.clone();
    with["expires_at"] = json!(1_800_000_060);
    assert_eq!(new(with.clone()).validate(now_ms), Ok(Some(1_800_000_060_000)));
    with["expires_at"] = json!("2027-01-15T08:01:00Z");
    assert_eq!(new(with.clone()).validate(now_ms), Ok(Some(1_800_000_060_000)));
    for bad in
        [json!(1_800_000_000), json!("2027-01-15T07:59:59Z"), json!("yesterday"), json!(1.5), json!([1])]
    {
        with["expires_at"] = bad.clone();
        assert_eq!(new(with.clone()).validate(now_ms).unwrap_err().field, "expires_at", "{bad}");
    }
    let mut no_reason = base;
    no_reason["reason"] = json!("");
    assert_eq!(new(no_reason).validate(now_ms).unwrap_err().field, "reason");
}

#[test]
fn a_revocation_is_in_force_until_it_expires_or_is_removed() {
    let r = Revocation {
        id: "r1".into(),
        matcher: Matcher::Source { source: "github".into() },
        reason: "test".into(),
        author: "ops".into(),
        created: String::new(),
        created_ms: 1000,
        expires: Some(String::new()),
        expires_ms: Some(5000),
        removed: None,
        removed_by: None,
    };
    assert!(r.in_force(4999));
    assert!(!r.in_force(5000));
    let removed = Revocation { removed: Some("then".into()), removed_by: Some("ops".into()), ..r };
    assert!(!removed.in_force(1000));
}

#[test]
fn the_set_finds_revocations_in_force_by_identity_jti_rule_and_issued_token() {
    let now_ms = 10_000;
    let revocation = |id: &str, matcher: Matcher, expires_ms: Option<i64>| Revocation {
        id: id.into(),
        matcher,
        reason: "test".into(),
        author: "ops".into(),
        created: String::new(),
        created_ms: 0,
        expires: None,
        expires_ms,
        removed: None,
        removed_by: None,
    };
    let fingerprint = format!("sha256:{}", "ab".repeat(32));
    let set = RevocationSet::new(vec![
        revocation("expired", Matcher::Source { source: "github".into() }, Some(now_ms)),
        revocation("jti", Matcher::SubjectJti { jti: "j-1".into() }, None),
        revocation("rule", Matcher::Rule { rule: "r".into() }, Some(now_ms + 1)),
    ]);
    let id = identity();
    assert_eq!(set.identity(&id, None, now_ms), None, "an expired revocation matches nothing");
    assert_eq!(set.identity(&id, Some("j-2"), now_ms), None);
    assert_eq!(
        set.identity(&id, Some("j-1"), now_ms),
        Some(Revoked { id: "jti".into(), subject_token: true })
    );
    assert_eq!(set.rule("r", now_ms), Some(Revoked { id: "rule".into(), subject_token: false }));
    assert_eq!(set.rule("other", now_ms), None);
    assert_eq!(set.issued(&fingerprint, now_ms), None);

    set.add(revocation("token", Matcher::IssuedToken { fingerprint: fingerprint.clone() }, None));
    assert_eq!(set.issued(&fingerprint, now_ms).map(|r| r.id), Some("token".into()));
    set.add(revocation("me", Matcher::Identity { id: id.id.clone() }, None));
    assert_eq!(set.identity(&id, None, now_ms).map(|r| r.id), Some("me".into()));
    set.remove("me");
    assert_eq!(set.identity(&id, None, now_ms), None);
    assert_eq!(set.all().len(), 4);
}
