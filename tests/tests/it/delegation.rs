//! RFC 8693 delegation end to end: a CI job (a GitHub Actions token from a test issuer)
//! acting for a deploy bot (an OIDC token from another), through `POST /v1/token` with
//! `actor_token`. PyJWT, as a relying party, verifies the issued JWTs and reads their `act`
//! chain; a Tessera token that already carries `act` extends the chain when exchanged
//! again (a source trusting the broker's own issuer). Bad input gets RFC 6749 errors and
//! an audit reason, never a 5xx.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

const TARGETS: &str = "- name: deploy-api\n  type: jwt\n  audience: https://deploy-api.example\n  max_ttl: 1h\n  default_ttl: 10m\n- name: downstream\n  type: jwt\n  audience: https://downstream.example\n  max_ttl: 1h\n  default_ttl: 10m\n- name: reports\n  type: jwt\n  audience: https://reports.example\n  max_ttl: 1h\n  default_ttl: 10m\n";

const RULES: &str = r#"version: 1
rules:
  - name: ci-acts-for-deploy-bot
    description: the main branch's CI of octo-org/payments may act for the deploy bot
    match:
      source: bots
      subject: deploy-bot
      actor:
        source: github
        namespace: octo-org/payments
        attributes: { github.ref: refs/heads/main }
    grant:
      target: deploy-api
      claims: { acting_workflow: "{actor.name}" }
  - name: deploy-bot-alone
    match: { source: bots, subject: deploy-bot }
    grant: { target: deploy-api }
  - name: deploy-bot-reports
    match: { source: bots, subject: deploy-bot }
    grant: { target: reports }
  - name: no-pull-requests-acting
    effect: deny
    match: { source: bots, actor: { attributes: { github.ref: "refs/pull/*" } } }
    grant: { target: deploy-api }
  - name: forwarded-downstream
    match: { source: tessera, actor: { source: github } }
    when: 'actor != null && actor.name == "release"'
    grant: { target: downstream }
"#;

struct Setup {
    github: TestIssuer,
    bots: TestIssuer,
    broker: TestBroker,
}

async fn setup(extra: &str) -> Setup {
    let github = TestIssuer::start(vec![TestKey::rsa("gh-1")]);
    let bots = TestIssuer::start(vec![TestKey::rsa("bots-1")]);
    // The broker's own issuer, known before it starts, so a source can trust it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let own = format!("http://127.0.0.1:{port}");
    let sources = format!(
        "- name: github\n  type: github_actions\n  issuer: {}\n  audiences: [tessera]\n  allowed_owner_ids: [65]\n  insecure_http: true\n\
         - name: bots\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n\
         - name: tessera\n  type: oidc\n  issuer: {own}\n  jwks_uri: {own}/.well-known/jwks.json\n  audiences: [https://deploy-api.example, https://downstream.example]\n  insecure_http: true\n  max_token_lifetime: 1h\n",
        github.url(),
        bots.url()
    );
    let mut options = BrokerOptions::new(&sources, TARGETS).mapping("10-delegation.yaml", RULES).with_admin();
    options.port = Some(port);
    options.extra = extra.to_string();
    let broker = spawn_broker(options).await;
    Setup { github, bots, broker }
}

impl Setup {
    /// A GitHub Actions token of `workflow` in `octo-org/payments` on `git_ref`.
    fn ci(&self, workflow: &str, git_ref: &str) -> String {
        let now = self.broker.clock.now();
        let mut claims = self.github.claims(&format!("repo:octo-org/payments:ref:{git_ref}"), "tessera", now);
        let extra = json!({
            "repository": "octo-org/payments",
            "repository_id": "1001",
            "repository_owner": "octo-org",
            "repository_owner_id": "65",
            "ref": git_ref,
            "workflow": workflow,
            "run_id": "7001",
        });
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.github.key(0).sign(&claims)
    }

    /// The deploy bot's token, with `extra` claims.
    fn bot(&self, extra: Value) -> String {
        let mut claims = self.bots.claims("deploy-bot", "tessera", self.broker.clock.now());
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.bots.key(0).sign(&claims)
    }

    async fn exchange(&self, subject: &str, actor: Option<&str>, audience: &str) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", audience),
        ];
        if let Some(actor) = actor {
            form.extend([("actor_token", actor), ("actor_token_type", JWT)]);
        }
        let (status, _, body) = self.broker.post_form(&form).await;
        (status, body)
    }

    /// PyJWT verifies an issued token against the broker's JWKS and reads its chain.
    fn relying_party(&self, token: &str, audience: &str) -> Value {
        let jwks = format!("{}/.well-known/jwks.json", self.broker.url);
        let url = self.broker.url.clone();
        let out = python::run("pyjwt_peer.py", &["actors", &jwks, token, audience, &url]);
        serde_json::from_str(&out).expect("the peer prints JSON")
    }

    fn last_event(&self) -> Value {
        self.broker.audit_events().pop().expect("an audit event")
    }

    /// A refusal is the RFC 6749 error named, never a 5xx, and audited with `reason`.
    fn assert_refused(&self, (status, body): (u16, Value), error: &str, reason: &str) {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
        let event = self.last_event();
        assert_eq!(event["reason"], reason, "{event}");
        assert_eq!(event["decision"], "deny", "{event}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ci_job_acts_for_the_deploy_bot_and_a_relying_party_reads_the_act_chain() {
    let s = setup("").await;
    let ci = s.ci("deploy", "refs/heads/main");

    // Without an actor the deploy bot gets a token of its own, with no `act`.
    let (status, alone) = s.exchange(&s.bot(json!({})), None, "deploy-api").await;
    assert_eq!(status, 200, "{alone}");
    let seen = s.relying_party(alone["access_token"].as_str().unwrap(), "https://deploy-api.example");
    assert_eq!(seen["actors"], json!([]));
    assert_eq!(s.last_event()["rule"], "deploy-bot-alone");

    // With the CI job's token as actor, the delegating rule applies.
    let (status, body) = s.exchange(&s.bot(json!({})), Some(&ci), "deploy-api").await;
    assert_eq!(status, 200, "{body}");
    let issued = body["access_token"].as_str().unwrap();
    let seen = s.relying_party(issued, "https://deploy-api.example");
    assert_eq!(seen["sub"], "oidc://bots/deploy-bot", "the subject stays the deploy bot");
    assert_eq!(seen["actors"], json!([{ "sub": "github://octo-org/payments", "iss": s.broker.url }]));
    assert_eq!(seen["claims"]["acting_workflow"], "deploy", "a template names the actor");
    let event = s.last_event();
    assert_eq!(event["rule"], "ci-acts-for-deploy-bot");
    assert_eq!(event["actor"]["id"], "github://octo-org/payments");
    assert_eq!(event["actor"]["name"], "deploy");
    assert!(event["actor_token_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(!s.broker.audit_text().contains(&ci), "the actor token is never in the audit");
    // The store keeps the actor too, and gives it back.
    let (status, stored) = s.broker.admin_get("/v1/audit?limit=1").await;
    assert_eq!(status, 200, "{stored}");
    let stored = &stored["events"][0];
    assert_eq!(stored["actor"]["id"], "github://octo-org/payments", "{stored}");
    assert_eq!(stored["actor_token_fingerprint"], event["actor_token_fingerprint"]);
    // The directory lists the CI job, which only ever acted, as a workload seen; its
    // exchange counts are only those it made as the subject (none).
    let (status, dir) = s.broker.admin_get("/v1/workloads").await;
    assert_eq!(status, 200, "{dir}");
    let workloads = dir["workloads"].as_array().unwrap();
    let ci_job =
        workloads.iter().find(|w| w["id"] == "github://octo-org/payments").expect("the actor is listed");
    assert_eq!(ci_job["source"], "github", "{ci_job}");
    assert_eq!(ci_job["identity"]["name"], "deploy", "{ci_job}");
    assert_eq!(ci_job["exchanges"], json!({ "allow": 0, "deny": 0, "error": 0 }), "{ci_job}");
    let bot = workloads.iter().find(|w| w["id"] == "oidc://bots/deploy-bot").expect("the subject is listed");
    assert_eq!(bot["exchanges"]["allow"], 2, "{bot}");

    // A may_act naming the CI job lets it act; one naming another party refuses it.
    let may_act =
        json!({ "may_act": { "sub": "repo:octo-org/payments:ref:refs/heads/main", "iss": s.github.url() } });
    let (status, body) = s.exchange(&s.bot(may_act), Some(&ci), "deploy-api").await;
    assert_eq!(status, 200, "{body}");
    let other =
        json!({ "may_act": { "sub": "repo:octo-org/other:ref:refs/heads/main", "iss": s.github.url() } });
    s.assert_refused(
        s.exchange(&s.bot(other), Some(&ci), "deploy-api").await,
        "invalid_request",
        "TS-MAY-ACT",
    );
    let malformed = json!({ "may_act": "repo:octo-org/payments:ref:refs/heads/main" });
    s.assert_refused(
        s.exchange(&s.bot(malformed), Some(&ci), "deploy-api").await,
        "invalid_request",
        "TS-MAY-ACT-MALFORMED",
    );

    // The chain extends: the issued token, exchanged again (the `tessera` source trusts
    // the broker's issuer) with another CI job acting, names both, current first.
    let release = s.ci("release", "refs/heads/main");
    let (status, body) = s.exchange(issued, Some(&release), "downstream").await;
    assert_eq!(status, 200, "{body}");
    let seen = s.relying_party(body["access_token"].as_str().unwrap(), "https://downstream.example");
    let actor = json!({ "sub": "github://octo-org/payments", "iss": s.broker.url });
    assert_eq!(seen["actors"], json!([actor, actor]));
    assert_eq!(
        seen["claims"]["act"]["act"],
        json!({ "sub": "github://octo-org/payments", "iss": s.broker.url })
    );
    s.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_delegations_are_refused_with_rfc_6749_errors_and_audit_reasons() {
    let s = setup("delegation:\n  max_depth: 1\n").await;
    let ci = s.ci("deploy", "refs/heads/main");

    // An actor token that fails verification: forged, and expired.
    let forged = {
        let claims =
            s.github.claims("repo:octo-org/payments:ref:refs/heads/main", "tessera", s.broker.clock.now());
        TestKey::rsa("gh-1").sign(&claims)
    };
    s.assert_refused(
        s.exchange(&s.bot(json!({})), Some(&forged), "deploy-api").await,
        "invalid_request",
        "TS-ACTOR-TOKEN",
    );
    let event = s.last_event();
    assert!(event["detail"].as_str().unwrap().contains("TS-SRC-"), "{event}");
    assert!(event.get("actor").is_none(), "no verified actor: {event}");
    let untrusted = s.bots.key(0).sign(&s.bots.claims("someone", "elsewhere", s.broker.clock.now()));
    s.assert_refused(
        s.exchange(&s.bot(json!({})), Some(&untrusted), "deploy-api").await,
        "invalid_request",
        "TS-ACTOR-TOKEN",
    );

    // An actor with no rule allowing delegation for the audience.
    s.assert_refused(
        s.exchange(&s.bot(json!({})), Some(&ci), "reports").await,
        "invalid_target",
        "TS-MAP-NO-DELEGATION",
    );
    // A deny rule matching on the actor.
    let pull = s.ci("deploy", "refs/pull/7/merge");
    s.assert_refused(
        s.exchange(&s.bot(json!({})), Some(&pull), "deploy-api").await,
        "invalid_target",
        "TS-MAP-DENIED",
    );

    // Over the maximum depth (1 here): a token already carrying one actor, with another.
    let (status, body) = s.exchange(&s.bot(json!({})), Some(&ci), "deploy-api").await;
    assert_eq!(status, 200, "{body}");
    let issued = body["access_token"].as_str().unwrap().to_string();
    let release = s.ci("release", "refs/heads/main");
    s.assert_refused(
        s.exchange(&issued, Some(&release), "downstream").await,
        "invalid_request",
        "TS-ACT-DEPTH",
    );
    // A subject token whose `act` is no chain.
    let bad_chain = s.bot(json!({ "act": { "iss": "https://nobody.example" } }));
    s.assert_refused(
        s.exchange(&bad_chain, Some(&ci), "deploy-api").await,
        "invalid_request",
        "TS-ACT-MALFORMED",
    );

    // actor_token and actor_token_type come together (refused at the edge).
    let (status, _, body) = s
        .broker
        .post_form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &s.bot(json!({}))),
            ("subject_token_type", JWT),
            ("audience", "deploy-api"),
            ("actor_token", &ci),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    s.broker.stop().await;
}
