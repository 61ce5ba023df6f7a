//! The target conformance kit, contract half: every registered target kind, built from its
//! [`TargetFixture`], must describe its requests so that the credential cache can trust
//! the key (alike grants share one, grants differing in anything that shapes the request
//! never do), cap a lifetime over its maximum, and refuse a grant of no lifetime before
//! anything is signed or sent. The HTTP half (upstream failure, bad templates, lifetimes
//! in mapping files) runs through the broker in `tests/src/target_conformance.rs`.
//!
//! A new kind adds an arm to [`fixture`]; a registered kind without one fails
//! [`every_registered_target_kind_conforms`], saying so.

use std::time::Duration;

use serde_json::{Value, json};

use crate::registry::{TARGET_KINDS, TargetConfig};
use crate::target::{CredentialTarget, Grant, TargetError};
use crate::targets::testkit::{self, GrantParts};

/// An endpoint nothing answers: fixtures point upstream URLs at it, so no case of the
/// kit can reach a real platform (and one that tried would fail, not pass).
pub const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

/// Where the lifetime a target asks of its platform shows in its request description.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    /// The request value (in [`RequestDescription::request`](crate::RequestDescription::request))
    /// holding the lifetime in seconds.
    Requested(&'static str),
    /// The platform sets the lifetime and the request carries none; says why.
    SetByPlatform(&'static str),
}

/// One target kind as the kit builds and exercises it.
#[derive(Debug, Clone)]
pub struct TargetFixture {
    /// The target entry of `broker.yaml` without `type` and `name`, as JSON, its upstream
    /// endpoints (if any) at [`DEAD_ENDPOINT`] (with `insecure_http` where the kind speaks
    /// HTTP; a database URL at its host and port).
    pub config: Value,
    /// The grant keys of a grant the target accepts for the kit's identity
    /// ([`testkit::workflow`]); the scope is the value of the target's scope key, if any.
    pub params: Value,
    /// Changes of single grant keys, each changing the request the target makes:
    /// (what, key, new value).
    pub varied: Vec<(&'static str, &'static str, Value)>,
    /// A scope the target accepts in a rule's `scope:`, for a kind without a scope key
    /// (whose scope is that key's value, varied in `varied`).
    pub scope: Option<&'static str>,
    pub lifetime: Lifetime,
}

/// The fixture of registered target kind `kind`; `None` for a kind without one, which
/// fails the kit.
pub fn fixture(kind: &str) -> Option<TargetFixture> {
    let fixture = match kind {
        "aws_sts" => TargetFixture {
            config: json!({ "endpoint": DEAD_ENDPOINT, "insecure_http": true, "max_ttl": "2h" }),
            params: json!({ "role_arn": "arn:aws:iam::123456789012:role/invoices-reader", "tags": { "team": "payments" } }),
            varied: vec![
                ("role", "role_arn", json!("arn:aws:iam::123456789012:role/ledger-writer")),
                ("session name", "session_name", json!("deploy-7001")),
                ("tags", "tags", json!({ "team": "ledger" })),
                ("source identity", "source_identity", json!("deploy@octo-org")),
                ("transitive tag keys", "transitive_tag_keys", json!("team")),
                (
                    "policy",
                    "policy",
                    json!(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#),
                ),
                ("policy arns", "policy_arns", json!("arn:aws:iam::aws:policy/ReadOnlyAccess")),
            ],
            scope: None,
            lifetime: Lifetime::Requested("duration_seconds"),
        },
        "gcp" => TargetFixture {
            config: json!({
                "provider": "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera-oidc",
                "sts_endpoint": DEAD_ENDPOINT, "iamcredentials_endpoint": DEAD_ENDPOINT, "insecure_http": true,
            }),
            params: json!({ "service_account": "reader@payments-prod.iam.gserviceaccount.com" }),
            varied: vec![
                ("service account", "service_account", json!("writer@payments-prod.iam.gserviceaccount.com")),
                ("scopes", "scopes", json!("https://www.googleapis.com/auth/devstorage.read_only")),
                (
                    "provider",
                    "provider",
                    json!(
                        "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/other-oidc"
                    ),
                ),
            ],
            scope: None,
            lifetime: Lifetime::Requested("lifetime"),
        },
        "azure" => TargetFixture {
            config: json!({
                "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
                "scope": "https://graph.microsoft.com/.default",
                "authority": DEAD_ENDPOINT, "insecure_http": true,
            }),
            params: json!({}),
            varied: vec![
                ("tenant", "tenant", json!("contoso.onmicrosoft.com")),
                ("client id", "client_id", json!("0a1b2c3d-0000-4000-8000-1234567890ab")),
                ("subject", "subject", json!("github-ci")),
            ],
            scope: Some("https://storage.azure.com/.default"),
            lifetime: Lifetime::SetByPlatform("Entra gives access tokens a lifetime of its own choosing"),
        },
        "jwt" => TargetFixture {
            config: json!({ "audience": "https://internal-api.example", "max_ttl": "1h" }),
            params: json!({}),
            varied: vec![],
            scope: Some("invoices:read"),
            lifetime: Lifetime::Requested("ttl"),
        },
        "jwt_grant" => TargetFixture {
            config: json!({ "authorization_server": "https://tessera.b.example", "max_ttl": "10m" }),
            params: json!({}),
            varied: vec![],
            scope: Some("ledger:read"),
            lifetime: Lifetime::Requested("ttl"),
        },
        "oauth" => TargetFixture {
            config: json!({ "token_endpoint": DEAD_ENDPOINT, "insecure_http": true, "audience": "ledger" }),
            params: json!({ "resource": "https://ledger.example" }),
            varied: vec![
                ("audience", "audience", json!("reports")),
                ("resource", "resource", json!("https://reports.example")),
            ],
            scope: Some("ledger:read"),
            lifetime: Lifetime::SetByPlatform("the authorization server sets expires_in"),
        },
        "spiffe" => TargetFixture {
            config: json!({ "trust_domain": "kit.example", "audiences": ["ledger", "reports"] }),
            params: json!({ "path": "/payments/deploy", "audience": "ledger" }),
            varied: vec![
                ("path", "path", json!("/ledger/deploy")),
                ("audience", "audience", json!("reports")),
            ],
            scope: None,
            lifetime: Lifetime::Requested("ttl"),
        },
        "kubernetes" => TargetFixture {
            config: json!({ "audience": "https://k8s-prod.example.com", "max_ttl": "2h" }),
            params: json!({ "username": "deployer", "groups": "payments-readers" }),
            varied: vec![
                ("username", "username", json!("ledger-deployer")),
                ("groups", "groups", json!("payments-readers payments-writers")),
            ],
            scope: Some("cluster:deploy"),
            lifetime: Lifetime::Requested("ttl"),
        },
        // A database at the dead endpoint: the target connects lazily, and only in `issue`.
        "postgres" => TargetFixture {
            config: json!({
                "admin_url": format!("postgres://tessera@{}/orders", DEAD_ENDPOINT.trim_start_matches("http://")),
                "groups": ["orders_read", "orders_write"], "owner": "orders_owner", "timeout": "2s",
            }),
            params: json!({ "group": "orders_read" }),
            varied: vec![("group", "group", json!("orders_write"))],
            scope: None,
            lifetime: Lifetime::Requested("valid_for"),
        },
        // The Txn-Token service's values (`txn`, `sub`, contexts) are grant claims; the kit's
        // claims stand for values the TTS asserts in `tctx`.
        "txn_token" => TargetFixture {
            config: json!({ "audience": "kit.example", "max_ttl": "10m" }),
            params: json!({ "scopes": "trade.stocks", "subjects": "*" }),
            varied: vec![
                ("scopes", "scopes", json!("trade.stocks trade.bonds")),
                ("subjects", "subjects", json!("user:*")),
            ],
            scope: None,
            lifetime: Lifetime::Requested("ttl"),
        },
        _ => return None,
    };
    Some(fixture)
}

/// The target `kind` as its fixture configures it, named `kit-target`.
fn build(kind: &str, fixture: &TargetFixture) -> std::sync::Arc<dyn CredentialTarget> {
    let mut entry = fixture.config.clone();
    entry["type"] = json!(kind);
    entry["name"] = json!("kit-target");
    let config: TargetConfig =
        serde_json::from_value(entry).unwrap_or_else(|e| panic!("{kind}: the fixture's config: {e}"));
    let algorithms = crate::target::SigningAlgorithm::ALL;
    config.build(&testkit::context(&algorithms)).unwrap_or_else(|e| panic!("{kind}: the fixture builds: {e}"))
}

/// The base grant of the kit: the fixture's params, the scope the target's scope key
/// names, the target's default lifetime.
fn base(target: &dyn CredentialTarget, fixture: &TargetFixture) -> GrantParts {
    let scope = target
        .scope_param()
        .and_then(|key| fixture.params.get(key))
        .and_then(Value::as_str)
        .map(|s| &*String::leak(s.to_owned()));
    GrantParts {
        identity: testkit::workflow("deploy"),
        rule: "kit-rule",
        target: "kit-target",
        scope,
        ttl: target.default_ttl(),
        claims: json!({ "team": "payments" }),
        params: fixture.params.clone(),
    }
}

fn describe(target: &dyn CredentialTarget, grant: &Grant, what: &str) -> crate::RequestDescription {
    target
        .describe_request(grant)
        .unwrap_or_else(|e| panic!("{}: {what}: the target refused the grant: {e}", target.kind()))
}

/// Alike grants share a key; a grant differing in anything that shapes the request has
/// its own.
fn cache_keys(target: &dyn CredentialTarget, fixture: &TargetFixture) {
    let kind = target.kind();
    let base = base(target, fixture);
    let key = |p: &GrantParts| describe(target, &p.grant(), "cache keys").digest();
    let mut changed = vec![
        ("identity", base.with(|p| p.identity.id = "github://octo-org/ledger".into())),
        ("rule", base.with(|p| p.rule = "kit-other-rule")),
        ("claims", base.with(|p| p.claims = json!({ "team": "ledger" }))),
        ("ttl", base.with(|p| p.ttl = target.default_ttl() / 2)),
    ];
    match (target.scope_param(), fixture.scope) {
        (None, Some(scope)) => changed.push(("scope", base.with(|p| p.scope = Some(scope)))),
        (None, None) => panic!("{kind}: the fixture names no scope the target accepts"),
        (Some(_), _) => {}
    }
    for (what, key_name, value) in &fixture.varied {
        let key_name: &str = key_name;
        let varied = base.with(|p| {
            p.params[key_name] = value.clone();
            if target.scope_param() == Some(key_name) {
                p.scope = value.as_str().map(|s| &*String::leak(s.to_owned()));
            }
        });
        changed.push((what, varied));
    }
    // Printed with the kind, so a failure names it.
    println!("{kind}: {} changes to the grant", changed.len());
    testkit::assert_cache_keys(key, &base, &changed, &[]);
}

/// A lifetime over the maximum is capped, not refused; a grant of no lifetime is refused
/// before anything is sent.
async fn lifetimes(target: &dyn CredentialTarget, fixture: &TargetFixture) {
    let kind = target.kind();
    let base = base(target, fixture);
    let at_max = describe(target, &base.with(|p| p.ttl = target.max_ttl()).grant(), "ttl at max_ttl");
    let over = describe(target, &base.with(|p| p.ttl = target.max_ttl() * 4).grant(), "ttl over max_ttl");
    match fixture.lifetime {
        Lifetime::Requested(name) => {
            let asked = |d: &crate::RequestDescription| {
                d.request()
                    .get(name)
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("{kind}: the request has no lifetime `{name}`: {d:?}"))
            };
            assert_eq!(asked(&over), asked(&at_max), "{kind}: a ttl over max_ttl is capped");
            assert!(asked(&over) <= target.max_ttl().as_secs(), "{kind}: at most max_ttl");
        }
        Lifetime::SetByPlatform(why) => println!("{kind}: {why}"),
    }
    let zero = base.with(|p| p.ttl = Duration::ZERO).grant();
    assert!(
        matches!(target.describe_request(&zero), Err(TargetError::InvalidGrant(_))),
        "{kind}: a grant of no lifetime is refused"
    );
    // Refused before any call: reaching the dead endpoint would be an upstream failure.
    match target.issue(&zero).await {
        Err(TargetError::InvalidGrant(_)) => {}
        other => panic!("{kind}: issuing for a grant of no lifetime: {other:?}"),
    }
}

#[tokio::test]
async fn every_registered_target_kind_conforms() {
    for kind in TARGET_KINDS {
        let fixture = fixture(kind).unwrap_or_else(|| {
            panic!(
                "add a conformance fixture for kind {kind}: target kind `{kind}` is registered but \
                 `fixture` in adapters/src/targets/conformance.rs has no arm for it"
            )
        });
        let target = build(kind, &fixture);
        assert_eq!(target.kind(), *kind);
        cache_keys(target.as_ref(), &fixture);
        lifetimes(target.as_ref(), &fixture).await;
    }
}
