use serde_json::{Value, json};

use super::*;

fn payload(extra: Value) -> Vec<u8> {
    let mut set = json!({
        "iss": "https://idp.example",
        "jti": "set-1",
        "iat": 1_700_000_000,
        "aud": "https://tessera.example/ssf",
        "sub_id": { "format": "iss_sub", "iss": "https://idp.example", "sub": "svc-1" },
        "events": { event_type::SESSION_REVOKED: { "reason_admin": { "en": "stolen\nlaptop" } } },
    });
    if let (Some(set), Value::Object(extra)) = (set.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                set.remove(&k);
            } else {
                set.insert(k, v);
            }
        }
    }
    serde_json::to_vec(&set).unwrap()
}

#[test]
fn a_caep_session_revoked_set_reads_with_its_subject_and_reason() {
    let set = read_payload(&payload(json!({}))).unwrap();
    assert_eq!((set.jti.as_str(), set.iat), ("set-1", 1_700_000_000));
    assert_eq!(set.audiences, ["https://tessera.example/ssf"]);
    let [event] = set.events.as_slice() else { panic!("one event") };
    assert_eq!(event.kind, EventKind::SessionRevoked);
    assert!(event.kind.revokes());
    assert_eq!(
        event.subject,
        Some(SubjectId::IssSub { iss: "https://idp.example".into(), sub: "svc-1".into() })
    );
    assert_eq!(event.why.as_deref(), Some("stolenlaptop"));
}

#[test]
fn every_rfc9493_format_tessera_maps_reads_and_complex_takes_its_application() {
    let cases = [
        (
            json!({ "format": "uri", "uri": "k8s://prod/ns/a/sa/b" }),
            SubjectId::Uri { uri: "k8s://prod/ns/a/sa/b".into() },
        ),
        (json!({ "format": "opaque", "id": "x1" }), SubjectId::Opaque { id: "x1".into() }),
        (json!({ "format": "email", "email": "a@b.c" }), SubjectId::Email { email: "a@b.c".into() }),
        (
            json!({ "format": "complex", "session": { "format": "opaque", "id": "s" }, "application": { "format": "opaque", "id": "app" } }),
            SubjectId::Opaque { id: "app".into() },
        ),
        (
            json!({ "format": "complex", "user": { "format": "iss_sub", "iss": "i", "sub": "s" } }),
            SubjectId::IssSub { iss: "i".into(), sub: "s".into() },
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(SubjectId::parse(&value).unwrap(), expected, "{value}");
    }
    for bad in [
        json!({ "format": "phone_number", "phone_number": "+1" }),
        json!({ "format": "did", "url": "did:example:1" }),
        json!({ "format": "complex", "device": { "format": "opaque", "id": "d" } }),
        json!({ "format": "complex", "user": { "format": "complex", "user": { "format": "opaque", "id": "u" } } }),
        json!({ "format": "iss_sub", "iss": "i" }),
        json!({ "format": "opaque", "id": "" }),
        json!("opaque"),
    ] {
        assert!(matches!(SubjectId::parse(&bad), Err(SetError::Subject(_))), "{bad}");
    }
}

#[test]
fn sets_missing_claims_or_carrying_exp_or_sub_are_malformed() {
    for extra in [
        json!({ "exp": 1_700_000_600 }),
        json!({ "sub": "svc-1" }),
        json!({ "jti": null }),
        json!({ "iat": "1700000000" }),
        json!({ "iat": -1 }),
        json!({ "aud": 5 }),
        json!({ "aud": null }),
        json!({ "events": {} }),
        json!({ "events": [] }),
        json!({ "events": { event_type::SESSION_REVOKED: "x" } }),
    ] {
        assert!(matches!(read_payload(&payload(extra.clone())), Err(SetError::Malformed(_))), "{extra}");
    }
    assert!(read_payload(b"[1]").is_err());
}

#[test]
fn the_subject_may_be_in_the_event_and_must_be_somewhere_for_events_that_revoke() {
    let in_event = json!({
        "sub_id": null,
        "events": { event_type::ACCOUNT_DISABLED: { "subject": { "format": "opaque", "id": "svc" }, "reason": "hijacking" } },
    });
    let set = read_payload(&payload(in_event)).unwrap();
    assert_eq!(set.events[0].subject, Some(SubjectId::Opaque { id: "svc".into() }));
    assert_eq!(set.events[0].why.as_deref(), Some("hijacking"));
    let nowhere = json!({ "sub_id": null });
    assert!(matches!(read_payload(&payload(nowhere)), Err(SetError::Subject(_))));
    // An event Tessera ignores needs no subject it understands.
    let unknown = json!({
        "sub_id": { "format": "phone_number", "phone_number": "+1" },
        "events": { "https://example.com/event/other": {} },
    });
    let set = read_payload(&payload(unknown)).unwrap();
    assert_eq!((set.events[0].kind.clone(), set.events[0].subject.clone()), (EventKind::Unknown, None));
    let unknown_format = json!({ "sub_id": { "format": "phone_number", "phone_number": "+1" } });
    assert!(matches!(read_payload(&payload(unknown_format)), Err(SetError::Subject(_))));
}

#[test]
fn credential_change_follows_caep_and_only_creation_does_not_revoke() {
    let change = |payload_: Value| payload(json!({ "events": { event_type::CREDENTIAL_CHANGE: payload_ } }));
    for (change_type, revokes) in [("create", false), ("revoke", true), ("update", true), ("delete", true)] {
        let set =
            read_payload(&change(json!({ "credential_type": "x509", "change_type": change_type }))).unwrap();
        assert_eq!(set.events[0].kind.revokes(), revokes, "{change_type}");
    }
    for bad in
        [json!({ "change_type": "revoke" }), json!({ "credential_type": "x509", "change_type": "rotate" })]
    {
        assert!(matches!(read_payload(&change(bad.clone())), Err(SetError::Event { .. })), "{bad}");
    }
}
