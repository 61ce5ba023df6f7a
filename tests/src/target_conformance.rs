//! The target conformance kit, HTTP half: every registered target kind, configured by its
//! [`TargetUnderTest`], through the real broker. A platform that cannot be reached is a
//! 503 `temporarily_unavailable` with `Retry-After` (a kind that issues locally answers
//! 200 instead); a template rendering what the target refuses is a 400 `invalid_target`,
//! both with the fixed RFC 6749 body and an audit event; and a rule's `ttl` over the
//! target's `max_ttl`, zero or negative is a load error.
//!
//! The contract half (cache keys, lifetimes capped or refused) runs inside the adapters
//! crate (`adapters/src/targets/conformance.rs`). A new kind adds an arm to
//! [`target_under_test`]; a registered kind without one fails
//! [`run_every_registered_target_kind`], saying so.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_adapters::registry::TARGET_KINDS;

use crate::broker::{BrokerOptions, TestBroker, spawn_broker, try_spawn_broker};
use crate::issuer::TestIssuer;
use crate::keys::TestKey;

/// The kit identity's attribute whose value no target takes as a grant value: spaces,
/// capitals, a slash.
pub const BAD_VALUE: &str = "Not Valid/At All";

/// One target kind as the kit configures it.
#[derive(Debug, Clone, Copy)]
pub struct TargetUnderTest {
    pub kind: &'static str,
    /// The kind's own keys of the target entry, one `key: value` per line, unindented,
    /// every upstream endpoint at `upstream` (a loopback URL nothing answers). The kit
    /// adds `name`, `type`, `max_ttl: 1h` and `default_ttl: 30m`.
    pub target: fn(upstream: &str) -> String,
    /// Grant keys the target accepts for the kit's identity, as YAML flow-map entries.
    pub grant: &'static str,
    /// Grant keys rendering, for the kit's identity, a value the target refuses: a
    /// template of `{attributes.kit_bad}` (which is [`BAD_VALUE`]), or naming an attribute
    /// the identity lacks where the kind refuses no rendered value.
    pub bad_template: &'static str,
    /// Whether the kind calls a platform; `false`: it issues locally, and the kit expects
    /// a credential where the others get a 503.
    pub upstream: bool,
}

/// The description of registered target kind `kind`; `None` fails the kit.
pub fn target_under_test(kind: &str) -> Option<TargetUnderTest> {
    let kind = match kind {
        "aws_sts" => TargetUnderTest {
            kind: "aws_sts",
            target: |url| format!("endpoint: {url}\ninsecure_http: true\ntimeout: 2s\nmax_attempts: 1\n"),
            grant: "role_arn: arn:aws:iam::123456789012:role/invoices-reader",
            bad_template: "role_arn: arn:aws:iam::123456789012:role/invoices-reader, session_name: \"{attributes.kit_bad}\"",
            upstream: true,
        },
        "gcp" => TargetUnderTest {
            kind: "gcp",
            target: |url| {
                format!(
                    "provider: //iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera-oidc\n\
                     sts_endpoint: {url}\niamcredentials_endpoint: {url}\ninsecure_http: true\ntimeout: 2s\nmax_attempts: 1\n"
                )
            },
            grant: "service_account: reader@payments-prod.iam.gserviceaccount.com",
            bad_template: "service_account: \"{attributes.kit_bad}\"",
            upstream: true,
        },
        "azure" => TargetUnderTest {
            kind: "azure",
            target: |url| {
                format!(
                    "client_id: 6731de76-14a6-49ae-97bc-6eba6914391e\nscope: https://graph.microsoft.com/.default\n\
                     tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47\nauthority: {url}\ninsecure_http: true\ntimeout: 2s\nmax_attempts: 1\n"
                )
            },
            grant: "subject: kit-workloads",
            bad_template: "tenant: \"{attributes.kit_bad}\"",
            upstream: true,
        },
        // A JWT takes any claim value: the bad template names an attribute the identity
        // lacks, which no rule can render.
        "jwt" => TargetUnderTest {
            kind: "jwt",
            target: |_| "audience: https://kit.example\n".into(),
            grant: "claims: { team: payments }",
            bad_template: "claims: { team: \"{attributes.kit_missing}\" }",
            upstream: false,
        },
        // A grant takes any claim value: the bad template names an attribute the identity
        // lacks, which no rule can render.
        "jwt_grant" => TargetUnderTest {
            kind: "jwt_grant",
            target: |_| "authorization_server: https://tessera.b.kit.example\n".into(),
            grant: "claims: { team: payments }",
            bad_template: "claims: { team: \"{attributes.kit_missing}\" }",
            upstream: false,
        },
        // Any printable value is a parameter: the bad template renders a control character
        // through an attribute the identity lacks, which no rule can render.
        "oauth" => TargetUnderTest {
            kind: "oauth",
            target: |url| {
                format!("token_endpoint: {url}\ninsecure_http: true\ntimeout: 2s\nmax_attempts: 1\n")
            },
            grant: "audience: ledger",
            bad_template: "audience: \"{attributes.kit_missing}\"",
            upstream: true,
        },
        // The bad value rendered into the path is no SPIFFE ID path (spaces).
        "spiffe" => TargetUnderTest {
            kind: "spiffe",
            target: |_| "trust_domain: kit.example\naudiences: [kit]\n".into(),
            grant: "path: /kit/deploy",
            bad_template: "path: \"/kit/{attributes.kit_bad}\"",
            upstream: false,
        },
        // Kubernetes takes spaces in a username, but no `system:` name; `groups` takes no
        // template at all.
        "kubernetes" => TargetUnderTest {
            kind: "kubernetes",
            target: |_| "audience: https://k8s.kit.example\n".into(),
            grant: "username: kit-deployer, groups: kit-readers",
            bad_template: "username: \"system:{attributes.kit_bad}\", groups: kit-readers",
            upstream: false,
        },
        // The admin URL at the dead port; `timeout` bounds the wait for a connection.
        "postgres" => TargetUnderTest {
            kind: "postgres",
            target: |url| {
                let address = url.trim_start_matches("http://");
                format!(
                    "admin_url: postgres://tessera@{address}/kit\ngroups: [kit_read, kit_write]\nowner: kit_owner\ntimeout: 2s\n"
                )
            },
            grant: "group: kit_read",
            bad_template: "group: \"{attributes.kit_bad}\"",
            upstream: true,
        },
        // A Txn-Token is issued only to a Txn-Token request ([`exchange`] makes one, the kit
        // token as both client assertion and subject); a rule's claims become `tctx`.
        "txn_token" => TargetUnderTest {
            kind: "txn_token",
            target: |_| "audience: kit.example\n".into(),
            grant: "scopes: kit.read, subjects: \"*\"",
            bad_template: "scopes: kit.read, subjects: \"*\", claims: { team: \"{attributes.kit_missing}\" }",
            upstream: false,
        },
        _ => return None,
    };
    Some(kind)
}

/// Every registered target kind's description. Panics for a kind without one.
pub fn registered_targets() -> Vec<TargetUnderTest> {
    TARGET_KINDS
        .iter()
        .map(|kind| {
            target_under_test(kind).unwrap_or_else(|| {
                panic!(
                    "add a conformance fixture for kind {kind}: target kind `{kind}` is registered but \
                     `target_under_test` in tests/src/target_conformance.rs has no arm for it"
                )
            })
        })
        .collect()
}

impl TargetUnderTest {
    fn target_entry(&self, upstream: &str) -> String {
        let mut entry =
            format!("- name: kit-target\n  type: {}\n  max_ttl: 1h\n  default_ttl: 30m\n", self.kind);
        for line in (self.target)(upstream).lines() {
            entry.push_str("  ");
            entry.push_str(line);
            entry.push('\n');
        }
        entry
    }

    /// A good rule for `svc-kit` (with `ttl`, if given) and a bad one for `svc-bad`.
    fn rules(&self, ttl: Option<&str>) -> String {
        let ttl = ttl.map(|t| format!(", ttl: {t}")).unwrap_or_default();
        format!(
            "version: 1\nrules:\n  - name: kit-good\n    match: {{ source: kit, subject: svc-kit }}\n    \
             grant: {{ target: kit-target{ttl}, {} }}\n  - name: kit-bad\n    match: {{ source: kit, subject: svc-bad }}\n    \
             grant: {{ target: kit-target, {} }}\n",
            self.grant, self.bad_template
        )
    }

    fn options(&self, issuer: &TestIssuer, upstream: &str, ttl: Option<&str>) -> BrokerOptions {
        let source = format!(
            "- name: kit\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n  \
             max_token_lifetime: 1h\n  attributes: {{ kit_bad: claims.kit_bad }}\n",
            issuer.url()
        );
        BrokerOptions::new(&source, &self.target_entry(upstream)).mapping("kit.yaml", &self.rules(ttl))
    }
}

fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    let mut claims = issuer.claims(sub, "tessera", broker.clock.now());
    claims["kit_bad"] = json!(BAD_VALUE);
    issuer.key(0).sign(&claims)
}

async fn exchange(broker: &TestBroker, kind: &str, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    if kind == "txn_token" {
        return broker
            .post_form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:txn_token"),
                ("audience", "kit.example"),
                ("scope", "kit.read"),
                ("subject_token", token),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", token),
            ])
            .await;
    }
    broker
        .post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "kit-target"),
        ])
        .await
}

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    format!("http://127.0.0.1:{port}")
}

/// Run every case of the kit against `kind`; panics naming the kind and the case.
pub async fn run_target_conformance(kind: &TargetUnderTest) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let upstream = dead_url();
    let name = kind.kind;

    for (ttl, says) in [("2h", "exceeds the maximum"), ("0s", "`ttl` is zero"), ("-5m", "ttl")] {
        let err = match try_spawn_broker(kind.options(&issuer, &upstream, Some(ttl))).await {
            Err(e) => e,
            Ok(broker) => {
                broker.stop().await;
                panic!("{name}: a rule with ttl {ttl} loaded")
            }
        };
        assert!(err.contains("kit.yaml:") && err.contains(says), "{name}: ttl {ttl}: {err}");
    }

    let broker = spawn_broker(kind.options(&issuer, &upstream, None)).await;
    let (status, headers, body) = exchange(&broker, name, &token(&issuer, &broker, "svc-kit")).await;
    let event = broker.audit_events().pop().expect("an audit event");
    if kind.upstream {
        assert_eq!(status, 503, "{name}: unreachable upstream: {body}");
        assert_eq!(
            body,
            json!({
                "error": "temporarily_unavailable",
                "error_description": "A service Tessera depends on is unavailable; retry later.",
            }),
            "{name}"
        );
        assert!(headers.contains_key("retry-after"), "{name}: Retry-After");
        assert_eq!(
            (&event["decision"], &event["reason"]),
            (&json!("error"), &json!("TS-TGT-UPSTREAM")),
            "{name}"
        );
    } else {
        assert_eq!(status, 200, "{name}: a local kind issues: {body}");
        assert_eq!(event["decision"], "allow", "{name}");
    }

    let (status, headers, body) = exchange(&broker, name, &token(&issuer, &broker, "svc-bad")).await;
    assert_eq!(status, 400, "{name}: bad template: {body}");
    assert_eq!(
        body,
        json!({
            "error": "invalid_target",
            "error_description": "No rule allows this identity to obtain a credential for this audience.",
        }),
        "{name}"
    );
    assert!(!headers.contains_key("retry-after"), "{name}");
    let event = broker.audit_events().pop().expect("an audit event");
    assert_eq!((&event["decision"], &event["rule"]), (&json!("deny"), &json!("kit-bad")), "{name}: {event}");
    let reason = event["reason"].as_str().unwrap_or_default();
    assert!(["TS-TGT-INVALID-GRANT", "TS-MAP-UNRENDERABLE"].contains(&reason), "{name}: {event}");
    broker.stop().await;
}

/// Run the kit for every registered target kind, one after the other. Panics after all
/// have run, naming each kind that failed and why.
pub async fn run_every_registered_target_kind() {
    let mut failures = Vec::new();
    for kind in registered_targets() {
        let run = tokio::spawn(async move { run_target_conformance(&kind).await });
        match run.await {
            Ok(()) => println!("target conformance kit passed: {}", kind.kind),
            Err(e) => failures.push(format!("{}: {}", kind.kind, crate::conformance::panic_message(e))),
        }
    }
    assert!(failures.is_empty(), "the target conformance kit failed for:\n{}", failures.join("\n"));
}
