//! The conformance kit every JWT source kind runs against itself (DESIGN.md "Testing",
//! STYLE.md "an adapter conformance kit run for every registered source"): the shared JWT
//! rules, case by case, through the real broker over HTTP, each refusal answered with the
//! fixed RFC 8693 body and audited with its own reason code.
//!
//! A kind describes itself as a [`KindUnderTest`]: its source entry given a
//! [`TestIssuer`], the `iss` its tokens carry, and valid claims in its platform's shape.
//! [`run_jwt_conformance`] does the rest with one broker per kind (plus one that never
//! reached the issuer, for the cold-cache case).
//!
//! [`run_every_registered_kind`] takes the kinds from the registry itself: every registered
//! source kind runs each of its configurations in [`KINDS_UNDER_TEST`], and a JWT kind with
//! none there fails loudly, so a new kind cannot skip the kit.

use std::sync::Arc;

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_adapters::registry::SOURCE_KINDS;
use tokio::sync::Semaphore;

use crate::broker::{BrokerOptions, TestBroker, spawn_broker};
use crate::issuer::TestIssuer;
use crate::keys::{TestKey, hs256, jws};

/// The audience every kit source accepts and every kit token carries.
pub const AUDIENCE: &str = "tessera-kit";
/// The name of the source under test.
pub const SOURCE_NAME: &str = "kit";

const TARGET: &str = "- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n  max_ttl: 1h\n  default_ttl: 15m\n";

/// One JWT source kind (or one configuration of it) as the kit runs it.
#[derive(Debug, Clone, Copy)]
pub struct KindUnderTest {
    /// The registered kind, as written in `type:`.
    pub kind: &'static str,
    /// Which configuration of the kind this is, for messages.
    pub label: &'static str,
    /// The kind's own keys of the source entry, one `key: value` per line, unindented:
    /// where its keys are (pointing at the issuer) and what its platform requires.
    /// The kit adds `name`, `type`, `audiences`, `algorithms: [RS256, ES256]`,
    /// `max_token_lifetime: 1h`, `leeway: 30s`, `insecure_http: true` and `attributes`.
    pub source: fn(&TestIssuer) -> String,
    /// The `iss` valid tokens carry; `None` for tokens without one.
    pub token_issuer: fn(&TestIssuer) -> Option<String>,
    /// Valid claims in the platform's documented shape, without `iss`, `aud`, `iat`,
    /// `nbf`, `exp` and `jti` (the kit sets those).
    pub claims: fn() -> Value,
    /// The identity `id` the valid claims yield.
    pub expected_id: &'static str,
}

impl KindUnderTest {
    fn source_entry(&self, issuer: &TestIssuer) -> String {
        let mut entry = format!(
            "- name: {SOURCE_NAME}\n  type: {}\n  audiences: [{AUDIENCE}]\n  algorithms: [RS256, ES256]\n  \
             max_token_lifetime: 1h\n  leeway: 30s\n  insecure_http: true\n  attributes: {{ kit_subject: claims.sub }}\n",
            self.kind
        );
        for line in (self.source)(issuer).lines() {
            entry.push_str("  ");
            entry.push_str(line);
            entry.push('\n');
        }
        entry
    }

    fn options(&self, issuer: &TestIssuer) -> BrokerOptions {
        let rules = format!(
            "version: 1\nrules:\n  - name: kit\n    match: {{ source: {SOURCE_NAME}, provider: {} }}\n    grant: {{ target: internal-api }}\n",
            self.kind
        );
        BrokerOptions::new(&self.source_entry(issuer), TARGET).mapping("kit.yaml", &rules)
    }

    /// Valid claims for a token issued at `now`, living 5 minutes.
    pub fn valid_claims(&self, issuer: &TestIssuer, now: i64) -> Value {
        let mut claims = (self.claims)();
        if let Some(iss) = (self.token_issuer)(issuer) {
            claims["iss"] = json!(iss);
        }
        claims["aud"] = json!(AUDIENCE);
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 300);
        claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
        claims
    }
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("claims are an object").remove(key);
    claims
}

fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The broker under test and what to say when a case fails.
struct Run<'a> {
    kind: &'a KindUnderTest,
    broker: TestBroker,
}

impl Run<'_> {
    fn last_event(&self) -> Value {
        self.broker.audit_events().pop().expect("an audit event was written")
    }

    /// Exchange `token`; it must be accepted as the kind's expected identity.
    async fn accepted(&self, case: &str, token: &str) {
        let (status, body) = self.broker.exchange(token, "internal-api").await;
        assert_eq!(status, 200, "{} [{}] {case}: {body}", self.kind.kind, self.kind.label);
        let event = self.last_event();
        let identity = &event["identity"];
        assert_eq!(identity["provider"], self.kind.kind, "{} {case}", self.kind.label);
        assert_eq!(identity["source"], SOURCE_NAME);
        assert_eq!(identity["id"], self.kind.expected_id, "{} {case}", self.kind.label);
        // Every kind applies the config's own `attributes:`.
        assert!(identity["attributes"]["kit_subject"].is_string(), "{} {case}: {identity}", self.kind.label);
    }

    /// Exchange `token`; it must be refused with the fixed body and audited with `code`.
    async fn refused(&self, case: &str, token: &str, code: &str) {
        let (status, body) = self.broker.exchange(token, "internal-api").await;
        let what = format!("{} [{}] {case}", self.kind.kind, self.kind.label);
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(
            body,
            json!({
                "error": "invalid_request",
                "error_description": "The subject token is invalid, expired, or not trusted.",
            }),
            "{what}"
        );
        let event = self.last_event();
        assert_eq!(event["reason"], code, "{what}: {event}");
        assert_eq!(event["decision"], "deny", "{what}");
    }
}

/// Run every case of the kit against `kind`. Panics, naming the kind and the case, on
/// the first one that does not behave.
pub async fn run_jwt_conformance(kind: &KindUnderTest) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1"), TestKey::ec("ec-1")]);
    let run = Run { kind, broker: spawn_broker(kind.options(&issuer)).await };
    let now = run.broker.clock.now();
    let rsa = issuer.key(0);
    let ec = issuer.key(1);
    let base = kind.valid_claims(&issuer, now);

    run.accepted("valid RS256 token", &rsa.sign(&base)).await;
    run.accepted("valid ES256 token", &ec.sign(&kind.valid_claims(&issuer, now))).await;

    // Time: exp, nbf, lifetime (1h configured), with 30 s of leeway.
    let earlier = with(with(base.clone(), "iat", json!(now - 600)), "nbf", json!(now - 600));
    run.refused("expired", &rsa.sign(&with(earlier, "exp", json!(now - 120))), "TS-SRC-EXPIRED").await;
    run.refused(
        "not yet valid",
        &rsa.sign(&with(base.clone(), "nbf", json!(now + 120))),
        "TS-SRC-NOT-YET-VALID",
    )
    .await;
    run.refused(
        "lifetime too long",
        &rsa.sign(&with(base.clone(), "exp", json!(now + 7200))),
        "TS-SRC-LIFETIME",
    )
    .await;
    run.refused("missing exp", &rsa.sign(&without(base.clone(), "exp")), "TS-SRC-MISSING-CLAIM").await;
    run.refused(
        "exp as a string",
        &rsa.sign(&with(base.clone(), "exp", json!((now + 60).to_string()))),
        "TS-SRC-INVALID-CLAIM",
    )
    .await;

    // Issuer and audience.
    let evil = with(base.clone(), "iss", json!("https://evil.example"));
    match (kind.token_issuer)(&issuer) {
        Some(iss) => {
            // Routed by `iss` before any network call: an issuer nobody names is untrusted.
            run.refused("wrong issuer", &rsa.sign(&evil), "TS-SRC-UNTRUSTED-ISSUER").await;
            let slash = match iss.strip_suffix('/') {
                Some(bare) => bare.to_owned(),
                None => format!("{iss}/"),
            };
            run.refused(
                "trailing-slash issuer",
                &rsa.sign(&with(base.clone(), "iss", json!(slash))),
                "TS-SRC-UNTRUSTED-ISSUER",
            )
            .await;
        }
        None => {
            // Routed by token type to the source that requires no `iss`: naming one fails.
            run.refused("unexpected issuer", &rsa.sign(&evil), "TS-SRC-ISSUER").await;
        }
    }
    run.refused(
        "wrong audience",
        &rsa.sign(&with(base.clone(), "aud", json!("someone-else"))),
        "TS-SRC-AUDIENCE",
    )
    .await;

    // Forged and confused signatures.
    let none = jws(&json!({ "alg": "none", "typ": "JWT" }), &base, b"");
    run.refused("alg none", &none, "TS-SRC-ALG").await;
    let hs = hs256(&json!({ "alg": "HS256", "kid": "rsa-1" }), &base, rsa.public_pem().as_bytes());
    run.refused("HS256 keyed with the public key", &hs, "TS-SRC-ALG").await;
    let relabelled = rsa.sign_with_header(&json!({ "alg": "ES256", "kid": "rsa-1" }), &base);
    run.refused("RS256 signature relabelled ES256", &relabelled, "TS-SRC-ALG").await;
    let zero = jws(&json!({ "alg": "ES256", "kid": "ec-1" }), &base, &[0u8; 64]);
    run.refused("ES256 with r = s = 0", &zero, "TS-SRC-SIGNATURE").await;
    let good = ec.sign(&base);
    let (input, sig) = good.rsplit_once('.').expect("three parts");
    let mut sig = b64_decode(sig);
    sig[5] ^= 0x01;
    run.refused("flipped signature bit", &format!("{input}.{}", b64_encode(&sig)), "TS-SRC-SIGNATURE").await;

    // Headers that bring their own key are refused, never followed.
    let attacker = TestKey::rsa("attacker");
    let fetches = issuer.jwks_fetches();
    let jku = json!({ "alg": "RS256", "kid": "rsa-1", "jku": format!("{}/attacker-jwks", issuer.url()) });
    run.refused("jku header", &attacker.sign_with_header(&jku, &base), "TS-SRC-FORBIDDEN-HEADER").await;
    let jwk = json!({ "alg": "RS256", "kid": "attacker", "jwk": attacker.jwk() });
    run.refused("jwk header", &attacker.sign_with_header(&jwk, &base), "TS-SRC-FORBIDDEN-HEADER").await;
    assert_eq!(issuer.other_requests(), 0, "{}: a jku was fetched", kind.label);
    assert_eq!(issuer.jwks_fetches(), fetches, "{}: a key-bearing header caused a fetch", kind.label);

    // Duplicate claims: the second `sub` must not win or be ignored.
    let text = base.to_string();
    let duplicated = format!("{},\"sub\":\"attacker\"}}", text.strip_suffix('}').expect("an object"));
    let header = json!({ "alg": "RS256", "kid": "rsa-1", "typ": "JWT" }).to_string();
    run.refused(
        "duplicate claim",
        &rsa.sign_raw(header.as_bytes(), duplicated.as_bytes()),
        "TS-SRC-MALFORMED",
    )
    .await;

    // An unknown kid refetches the key set once, then is refused; again within 30 s, no
    // further fetch.
    let stranger = TestKey::rsa("stranger");
    let fetches = issuer.jwks_fetches();
    run.refused("unknown kid", &stranger.sign(&base), "TS-SRC-UNKNOWN-KID").await;
    assert_eq!(issuer.jwks_fetches(), fetches + 1, "{}: unknown kid refetch", kind.label);
    run.refused("unknown kid again", &stranger.sign(&base), "TS-SRC-UNKNOWN-KID").await;
    assert_eq!(issuer.jwks_fetches(), fetches + 1, "{}: unknown kid refetch is throttled", kind.label);

    // The key endpoint goes down: cached keys keep working.
    issuer.set_down(true);
    run.accepted("valid token while the issuer is down", &ec.sign(&kind.valid_claims(&issuer, now))).await;
    issuer.set_down(false);
    run.broker.stop().await;

    cold_cache_is_unavailable(kind).await;
}

/// Source kinds whose credentials are not JWTs, so the JWT kit does not apply (each has
/// end-to-end tests of its own against a real peer).
pub const NON_JWT_KINDS: &[&str] = &["aws_iam"];

/// Every configuration the kit runs, the table a new JWT kind adds its description to. A
/// kind may appear more than once, configured differently.
pub const KINDS_UNDER_TEST: &[KindUnderTest] =
    &[OIDC, KUBERNETES, GITHUB_ACTIONS, GITLAB_CI, CIRCLECI, GCP, AZURE, SPIFFE, SPIFFE_WITH_ISSUER];

/// How many configurations run at once: each starts brokers and issuers of its own.
const AT_ONCE: usize = 3;

/// The configurations of registered kind `kind`. Panics for a JWT kind with none in
/// [`KINDS_UNDER_TEST`], saying what to add.
pub fn configurations_of(kind: &str) -> Vec<&'static KindUnderTest> {
    let found: Vec<&'static KindUnderTest> = KINDS_UNDER_TEST.iter().filter(|k| k.kind == kind).collect();
    assert!(
        !found.is_empty() || NON_JWT_KINDS.contains(&kind),
        "source kind `{kind}` is registered but the conformance kit has no KindUnderTest for it: add one \
         to KINDS_UNDER_TEST in tests/src/conformance.rs (or `{kind}` to NON_JWT_KINDS if its \
         credentials are not JWTs)"
    );
    found
}

/// The configurations of every registered source kind. Panics for a registered JWT kind
/// the kit has none of, and for a kind the kit names that is not registered.
pub fn registered_configurations() -> Vec<&'static KindUnderTest> {
    for named in KINDS_UNDER_TEST.iter().map(|k| k.kind).chain(NON_JWT_KINDS.iter().copied()) {
        assert!(
            SOURCE_KINDS.contains(&named),
            "the kit names `{named}`, which is not a registered source kind"
        );
    }
    SOURCE_KINDS.iter().flat_map(|kind| configurations_of(kind)).collect()
}

/// Run the kit for every registered source kind, each configuration in [`KINDS_UNDER_TEST`]
/// on its own task, a few at once. Panics after all have run, naming every configuration
/// that failed and why.
pub async fn run_every_registered_kind() {
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    let mut runs = Vec::new();
    for kind in registered_configurations() {
        let permits = Arc::clone(&permits);
        let run = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            run_jwt_conformance(kind).await;
        });
        runs.push((kind, run));
    }
    let mut failures = Vec::new();
    for (kind, run) in runs {
        match run.await {
            Ok(()) => println!("conformance kit passed: {} [{}]", kind.kind, kind.label),
            Err(e) => failures.push(format!("{} [{}]: {}", kind.kind, kind.label, panic_message(e))),
        }
    }
    assert!(failures.is_empty(), "the conformance kit failed for:\n{}", failures.join("\n"));
}

/// What a kit task that failed said: its panic message.
pub fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string()),
        Err(e) => e.to_string(),
    }
}

/// A broker that never reached the key endpoint cannot verify: a retryable 503.
async fn cold_cache_is_unavailable(kind: &KindUnderTest) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    issuer.set_down(true);
    let broker = spawn_broker(kind.options(&issuer)).await;
    let token = issuer.key(0).sign(&kind.valid_claims(&issuer, broker.clock.now()));
    let (status, headers, body) = broker
        .post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", &token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "internal-api"),
        ])
        .await;
    assert_eq!(status, 503, "{} cold cache: {body}", kind.label);
    assert_eq!(body["error"], "temporarily_unavailable", "{}", kind.label);
    assert!(headers.contains_key("retry-after"), "{}", kind.label);
    let event = broker.audit_events().pop().expect("an audit event");
    assert_eq!(event["reason"], "TS-SRC-UPSTREAM", "{}", kind.label);
    assert_eq!(event["decision"], "error", "{}", kind.label);
    broker.stop().await;
}

/// The Entra tenant the `azure` kit configuration trusts.
pub const AZURE_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

pub const OIDC: KindUnderTest = KindUnderTest {
    kind: "oidc",
    label: "oidc, discovery",
    source: |issuer| format!("issuer: {}\n", issuer.url()),
    token_issuer: |issuer| Some(issuer.url().to_owned()),
    claims: || json!({ "sub": "svc-kit" }),
    expected_id: "oidc://kit/svc-kit",
};

pub const KUBERNETES: KindUnderTest = KindUnderTest {
    kind: "kubernetes",
    label: "kubernetes, discovery under the cluster issuer",
    source: |issuer| format!("issuer: {}\n", issuer.url()),
    token_issuer: |issuer| Some(issuer.url().to_owned()),
    claims: || {
        json!({
            "sub": "system:serviceaccount:payments:api",
            "kubernetes.io": {
                "namespace": "payments",
                "serviceaccount": { "name": "api", "uid": "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e" },
                "pod": { "name": "api-7d9f8-x2x4z", "uid": "5e6f7a8b-2222-4c3a-9a0e-2d2f4b5c6d7e" },
            },
        })
    },
    expected_id: "k8s://kit/ns/payments/sa/api",
};

pub const GITHUB_ACTIONS: KindUnderTest = KindUnderTest {
    kind: "github_actions",
    label: "github_actions, github.com issuer, pinned jwks_uri",
    source: |issuer| format!("jwks_uri: {}\nallowed_owner_ids: [65]\n", issuer.jwks_uri()),
    token_issuer: |_| Some("https://token.actions.githubusercontent.com".to_owned()),
    claims: || {
        json!({
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "repository": "octo-org/octo-repo",
            "repository_id": "74",
            "repository_owner": "octo-org",
            "repository_owner_id": "65",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "workflow": "deploy",
            "run_id": "4242",
            "event_name": "push",
            "runner_environment": "github-hosted",
        })
    },
    expected_id: "github://octo-org/octo-repo",
};

pub const GITLAB_CI: KindUnderTest = KindUnderTest {
    kind: "gitlab_ci",
    label: "gitlab_ci, gitlab.com issuer, pinned jwks_uri",
    source: |issuer| format!("jwks_uri: {}\nallowed_namespaces: [my-group]\n", issuer.jwks_uri()),
    token_issuer: |_| Some("https://gitlab.com".to_owned()),
    claims: || {
        json!({
            "sub": "project_path:my-group/my-project:ref_type:branch:ref:main",
            "namespace_id": "72",
            "namespace_path": "my-group",
            "project_id": "20",
            "project_path": "my-group/my-project",
            "pipeline_id": "574",
            "pipeline_source": "push",
            "job_id": "302",
            "ref": "main",
            "ref_type": "branch",
            "ref_protected": "true",
        })
    },
    expected_id: "gitlab://gitlab.com/my-group/my-project",
};

pub const CIRCLECI_ORG: &str = "9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e";
pub const CIRCLECI_PROJECT: &str = "4f5a2c1e-0b8d-4e7f-9a6b-3c2d1e0f9a8b";

pub const CIRCLECI: KindUnderTest = KindUnderTest {
    kind: "circleci",
    label: "circleci, organization issuer, pinned jwks_uri",
    source: |issuer| format!("organization_id: {CIRCLECI_ORG}\njwks_uri: {}\n", issuer.jwks_uri()),
    token_issuer: |_| Some(format!("https://oidc.circleci.com/org/{CIRCLECI_ORG}")),
    claims: || {
        json!({
            "sub": format!("org/{CIRCLECI_ORG}/project/{CIRCLECI_PROJECT}/user/2a5b7c1d-0000-4000-8000-000000000001"),
            "oidc.circleci.com/project-id": CIRCLECI_PROJECT,
            "oidc.circleci.com/context-ids": [],
            "oidc.circleci.com/vcs-origin": "github.com/octo-org/payments-api",
            "oidc.circleci.com/vcs-ref": "refs/heads/main",
            "oidc.circleci.com/ssh-rerun": false,
        })
    },
    expected_id: "circleci://9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e/project/4f5a2c1e-0b8d-4e7f-9a6b-3c2d1e0f9a8b",
};

pub const GCP: KindUnderTest = KindUnderTest {
    kind: "gcp",
    label: "gcp, accounts.google.com issuer, pinned jwks_uri",
    source: |issuer| format!("jwks_uri: {}\nallowed_projects: [payments-prod]\n", issuer.jwks_uri()),
    token_issuer: |_| Some("https://accounts.google.com".to_owned()),
    claims: || {
        json!({
            "sub": "107517467455664443765",
            "azp": "107517467455664443765",
            "email": "api@payments-prod.iam.gserviceaccount.com",
            "email_verified": true,
            "google": { "compute_engine": {
                "project_id": "payments-prod", "project_number": 739_419_398_126u64,
                "zone": "europe-west1-b", "instance_id": "6835582326887656987", "instance_name": "api-1",
            } },
        })
    },
    expected_id: "gcp://sa/api@payments-prod.iam.gserviceaccount.com",
};

pub const AZURE: KindUnderTest = KindUnderTest {
    kind: "azure",
    label: "azure, v2 issuer, pinned jwks_uri",
    source: |issuer| format!("tenants: [{AZURE_TENANT}]\njwks_uri: {}\n", issuer.jwks_uri()),
    token_issuer: |_| Some(format!("https://login.microsoftonline.com/{AZURE_TENANT}/v2.0")),
    claims: || {
        json!({
            "sub": "a1b2c3d4-0000-4000-8000-1234567890ab",
            "oid": "a1b2c3d4-0000-4000-8000-1234567890ab",
            "tid": AZURE_TENANT,
            "azp": "d9f1e0c2-aaaa-4bbb-8ccc-0123456789ab",
            "idtyp": "app",
            "ver": "2.0",
            "xms_mirid": "/subscriptions/0b1c2d3e-1111-2222-3333-444455556666/resourcegroups/payments-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments-api",
        })
    },
    expected_id: "azure://72f988bf-86f1-41af-91ab-2d7cd011db47/a1b2c3d4-0000-4000-8000-1234567890ab",
};

pub const SPIFFE: KindUnderTest = KindUnderTest {
    kind: "spiffe",
    label: "spiffe, no issuer (routed by token type), JWKS beside one listed trust domain",
    source: |issuer| format!("trust_domains: [example.org]\njwks_uri: {}\n", issuer.jwks_uri()),
    token_issuer: |_| None,
    claims: || json!({ "sub": "spiffe://example.org/ns/payments/sa/api" }),
    expected_id: "spiffe://example.org/ns/payments/sa/api",
};

pub const SPIFFE_WITH_ISSUER: KindUnderTest = KindUnderTest {
    kind: "spiffe",
    label: "spiffe, issuer configured (routed by iss), JWKS bound to its trust domain",
    source: |issuer| {
        format!(
            "issuer: {}\ntrust_domains:\n  example.org: {{ jwks_uri: {} }}\n",
            issuer.url(),
            issuer.jwks_uri()
        )
    },
    token_issuer: |issuer| Some(issuer.url().to_owned()),
    claims: || json!({ "sub": "spiffe://example.org/ns/payments/sa/api" }),
    expected_id: "spiffe://example.org/ns/payments/sa/api",
};
