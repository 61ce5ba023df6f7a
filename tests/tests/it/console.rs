//! The operator console (`/ui/` on the admin listener): in a real browser (headless
//! Chromium through selenium, `tests/peers/console_peer.py`) after real exchanges, and at
//! the HTTP level for what a browser hides: cookie flags, headers, CSRF and `Host`
//! refusals, the auth modes, and two replicas over one PostgreSQL store.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{JWT_TARGET, oidc_source};

const ADMIN_TARGET: &str = "- name: admin\n  type: jwt\n  audience: https://tessera-admin.example\n  max_ttl: 1h\n  default_ttl: 15m\n";
const JWT_AUTH: &str = "admin:\n  auth:\n    jwt:\n      target: admin\n";

/// The quickstart's rules (payments workloads may call the internal API, its batch jobs may
/// not), and the ops account's admin access.
const RULES: &str = r#"version: 1
rules:
  - name: payments-calls-internal-api
    description: workloads of the payments team may call the internal API
    match: { source: corp, subject: "payments-*" }
    grant: { target: internal-api, ttl: 10m }
  - name: no-payments-batch
    description: the batch jobs of payments must not call the internal API
    effect: deny
    match: { source: corp, subject: "payments-batch-*" }
    grant: { target: internal-api }
  - name: ops-administer-tessera
    match: { source: corp, subject: svc-ops }
    grant: { target: admin, ttl: 15m }
tests:
  - identity: { source: corp, subject: payments-batch-nightly }
    audience: internal-api
    expect: { deny: no-payments-batch }
"#;

/// The rules above without the batch jobs' deny rule: the change the impact page replays.
const PROPOSED: &str = r#"version: 1
rules:
  - name: payments-calls-internal-api
    match: { source: corp, subject: "payments-*" }
    grant: { target: internal-api, ttl: 10m }
  - name: ops-administer-tessera
    match: { source: corp, subject: svc-ops }
    grant: { target: admin, ttl: 15m }
"#;

const ALLOWED: &str = "oidc://corp/payments-api";
const DENIED: &str = "oidc://corp/payments-batch-nightly";

/// The query of the failing source's key-set URL, which the console must not show.
const KEY_SET_SECRET: &str = "api_key=s3cr3t-in-the-url";

/// A second source whose key set cannot be fetched: nothing listens on its port.
fn failing_source() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!(
        "- name: legacy-idp\n  type: oidc\n  issuer: http://127.0.0.1:{port}\n  audiences: [tessera]\n  \
         insecure_http: true\n  jwks_uri: http://127.0.0.1:{port}/keys?{KEY_SET_SECRET}\n"
    )
}

fn options(issuer: &TestIssuer, auth: bool) -> BrokerOptions {
    let sources = format!("{}{}", oidc_source(issuer), failing_source());
    let mut options = BrokerOptions::new(&sources, &format!("{JWT_TARGET}{ADMIN_TARGET}"))
        .mapping("10-rules.yaml", RULES)
        .with_admin();
    if auth {
        options.extra = JWT_AUTH.to_string();
    }
    options
}

fn subject_token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

/// The quickstart's two exchanges: one allowed (its access token returned), one denied.
async fn quickstart_exchanges(issuer: &TestIssuer, broker: &TestBroker) -> String {
    let (status, body) =
        broker.exchange(&subject_token(issuer, broker, "payments-api"), "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        broker.exchange(&subject_token(issuer, broker, "payments-batch-nightly"), "internal-api").await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_target")), "{body}");
    body_token(&broker.exchange(&subject_token(issuer, broker, "payments-api"), "internal-api").await.1)
}

fn body_token(body: &Value) -> String {
    body["access_token"].as_str().expect("an access token").to_string()
}

/// Drive the browser through every page; returns what it saw.
async fn browse(issuer: &TestIssuer, broker: &TestBroker, admin_token: Option<String>, name: &str) -> Value {
    let issued = quickstart_exchanges(issuer, broker).await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console").join(name);
    let args = json!({
        "admin_url": broker.admin_url.as_deref().unwrap(),
        "public_url": broker.url,
        "out_dir": out.display().to_string(),
        "admin_token": admin_token,
        "allowed_id": ALLOWED,
        "denied_id": DENIED,
        "deny_rule": "no-payments-batch",
        "issued_token": issued,
        "fresh_token": subject_token(issuer, broker, "payments-api"),
        "explain_identity": "{ source: corp, subject: payments-batch-nightly }",
        "audience": "internal-api",
        "mapping_dir": broker.path().join("mappings").display().to_string(),
        "proposed_rules": PROPOSED,
    })
    .to_string();
    let report = tokio::task::spawn_blocking(move || python::run("console_peer.py", &[&args])).await.unwrap();
    for page in [
        "overview",
        "workloads",
        "graph",
        "workload",
        "audit",
        "trace",
        "explain",
        "rules",
        "rules-reload-error",
        "impact",
    ] {
        assert!(out.join(format!("{page}.png")).exists(), "a screenshot of {page} in {}", out.display());
    }
    serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_logs_in_with_an_admin_token_and_reads_every_page_in_a_browser() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(options(&issuer, true)).await;
    let (status, body) = broker.exchange(&subject_token(&issuer, &broker, "svc-ops"), "admin").await;
    assert_eq!(status, 200, "{body}");
    let seen = browse(&issuer, &broker, Some(body_token(&body)), "token").await;
    assert_eq!(seen["logged_in_as"], "Signed in as oidc://corp/svc-ops", "{seen}");
    assert_eq!(seen["denied_by"], "no-payments-batch");
    assert!(seen["traced"].as_str().unwrap().contains(ALLOWED), "{seen}");
    assert!(seen["reload_error"].as_str().unwrap().contains("refused"), "{seen}");
    // The broken file was refused and is gone again: the rules serve as before.
    let (status, _) = broker.exchange(&subject_token(&issuer, &broker, "payments-api"), "internal-api").await;
    assert_eq!(status, 200);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_loopback_listener_opens_the_console_without_a_login_in_a_browser() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(options(&issuer, false)).await;
    let seen = browse(&issuer, &broker, None, "loopback").await;
    assert_eq!(seen["logged_in_as"], Value::Null, "no login page on loopback: {seen}");
    assert!(seen["explain"].as_str().unwrap().contains("no-payments-batch"), "{seen}");
    broker.stop().await;
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `name=value` of the response's cookie `name`, and its whole `Set-Cookie` line.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        let pair = line.split(';').next()?.trim();
        pair.starts_with(&format!("{name}=")).then(|| (pair.to_string(), line.to_string()))
    })
}

/// The value of the first `name="csrf"` hidden input of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_admin_tokens_the_console_needs_a_login_and_holds_its_session_tightly() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(options(&issuer, true)).await;
    let admin = broker.admin_url.clone().unwrap();
    let http = no_redirects();

    // No session: pages send the browser to the login page; posts are refused.
    for path in ["/ui/", "/ui/workloads", "/ui/rules", "/ui/nowhere"] {
        let r = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
            (303, "/ui/login"),
            "{path}"
        );
    }
    let r = http.post(format!("{admin}/ui/rules/reload")).form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // The API keeps its own answers.
    assert_eq!(http.get(format!("{admin}/v1/status")).send().await.unwrap().status(), 401);

    // The login form's own CSRF cookie must come back with the form.
    let page = http.get(format!("{admin}/ui/login")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let (login_cookie, line) = set_cookie(&page, "tessera_console_login").unwrap();
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict") && line.contains("Path=/ui/login"),
        "{line}"
    );
    let csrf = csrf_of(&page.text().await.unwrap());
    let (status, body) = broker.exchange(&subject_token(&issuer, &broker, "svc-ops"), "admin").await;
    assert_eq!(status, 200, "{body}");
    let token = body_token(&body);
    let login = |cookie: Option<String>, csrf: String, token: String| {
        let mut request = http.post(format!("{admin}/ui/login")).form(&[("csrf", csrf), ("token", token)]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let r = login(None, csrf.clone(), token.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "no login without the form's CSRF cookie");
    let r = login(Some(login_cookie.clone()), csrf.clone(), "eyJ.not.valid".into()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Login refused"));
    let r = login(Some(login_cookie), csrf, token.clone()).await.unwrap();
    assert_eq!(r.status(), 303);
    let (session, line) = set_cookie(&r, "tessera_console").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=1800"] {
        assert!(line.contains(flag), "{line}");
    }
    assert!(!line.contains("Secure"), "plain HTTP on loopback: {line}");

    // With the session: pages, and posts with the session's CSRF token only.
    let page = http.get(format!("{admin}/ui/rules")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("no-payments-batch") && !html.contains(&token), "the token is never shown");
    let post = |csrf: &str| {
        http.post(format!("{admin}/ui/rules/reload"))
            .header("cookie", &session)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(post("").await.unwrap().status(), 403);
    assert_eq!(post("forged").await.unwrap().status(), 403);
    assert_eq!(post(&csrf_of(&html)).await.unwrap().status(), 303);
    let foreign = http
        .get(format!("{admin}/ui/rules"))
        .header("cookie", &session)
        .header("host", "console.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421, "DNS rebinding: a foreign Host is refused before the session is read");

    // A bearer token admits a page as it admits the API, and gets a session for its forms.
    let r = http.get(format!("{admin}/ui/")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r, "tessera_console").is_some());

    // Logout ends the session server-side.
    let r = http
        .post(format!("{admin}/ui/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = http.get(format!("{admin}/ui/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 303, "the old cookie no longer logs in");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_says_why_a_source_key_set_cannot_be_fetched_without_its_url_query() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(options(&issuer, false)).await;
    let (status, _) = broker.exchange(&subject_token(&issuer, &broker, "payments-api"), "internal-api").await;
    assert_eq!(status, 200);
    let overview = format!("{}/ui/", broker.admin_url.as_deref().unwrap());
    // The failing source's first fetch runs in the background from start: look until the
    // page has its outcome.
    let mut row = String::new();
    for _ in 0..100 {
        let html = reqwest::get(&overview).await.unwrap().text().await.unwrap();
        let at = html.find(r#"<th scope="row">legacy-idp</th>"#).expect("the failing source's row");
        row = html[at..at + html[at..].find("</tr>").unwrap()].to_string();
        if row.contains("cannot connect") {
            assert!(
                !html.contains(KEY_SET_SECRET) && !html.contains("s3cr3t"),
                "the URL query is not shown: {row}"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(row.contains("not fetched yet") && row.contains("/keys?… failed: cannot connect"), "{row}");
    assert!(row.contains(r#"class="bad""#), "a failure not recovered from is marked: {row}");
    let html = reqwest::get(&overview).await.unwrap().text().await.unwrap();
    let at = html.find(r#"<th scope="row">corp</th>"#).expect("the working source's row");
    let corp = &html[at..at + html[at..].find("</tr>").unwrap()];
    assert!(corp.contains("ready") && corp.contains("<td>none</td>"), "{corp}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_postgresql_store_show_the_same_directory() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let keys = tempfile::tempdir().unwrap();
    let replica = || {
        let mut options = options(&issuer, false).replica_of("https://tessera.console.example", keys.path());
        options.audit = db.store_config();
        options
    };
    let a = spawn_broker(replica()).await;
    let b = spawn_broker(replica()).await;
    let (status, _) = a.exchange(&subject_token(&issuer, &a, "payments-api"), "internal-api").await;
    assert_eq!(status, 200);
    let (status, _) = b.exchange(&subject_token(&issuer, &b, "payments-batch-nightly"), "internal-api").await;
    assert_eq!(status, 400);
    let directory = |broker: &TestBroker| {
        let url = format!("{}/ui/workloads", broker.admin_url.as_deref().unwrap());
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    for html in [directory(&a).await, directory(&b).await] {
        assert!(html.contains("2 workloads match"), "{html}");
        for id in [ALLOWED, DENIED] {
            assert!(html.contains(&format!(">{id}</a>")), "{id} in {html}");
        }
    }
    // Each replica's rules page counts the other's decisions too.
    let rules = reqwest::get(format!("{}/ui/rules", a.admin_url.as_deref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rules.contains("1 deny"), "{rules}");
    a.stop().await;
    b.stop().await;
}

mod store {
    //! The console's store queries, alike on SQLite and PostgreSQL.

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tessera_adapters::Identity;
    use tessera_broker::audit::store::{AuditStore, EdgeQuery, WorkloadQuery};
    use tessera_broker::audit::{AuditEvent, Decision, IdentityJson};
    use tessera_broker::config::{AuditStoreConfig, SecretUrl};
    use tessera_broker::metrics::Metrics;
    use tessera_tests::postgres::TestPostgres;

    const T0: i64 = 1_790_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn identity(team: &str, name: &str) -> Identity {
        Identity {
            id: format!("k8s://prod/ns/{team}/sa/{name}"),
            provider: "kubernetes".into(),
            source: "prod".into(),
            issuer: "https://k8s.example".into(),
            subject: name.into(),
            tenant: Some("prod".into()),
            namespace: Some(team.into()),
            name: Some(name.into()),
            instance: None,
            region: None,
            attributes: BTreeMap::from([("k8s.team".to_string(), team.to_string())]),
            withheld: Default::default(),
            expires_at: 1_900_000_000,
        }
    }

    fn event(at: i64, who: &Identity, decision: Decision, rule: &str) -> AuditEvent {
        AuditEvent {
            event_id: None,
            time_ms: T0 + at,
            time: String::new(),
            request_id: format!("r{at}"),
            decision,
            reason: if decision == Decision::Allow { "TS-OK".into() } else { "TS-MAP-DENIED".into() },
            detail: None,
            source: Some(who.source.clone()),
            identity_id: Some(who.id.clone()),
            identity: Some(IdentityJson::new(who).unwrap()),
            actor_id: None,
            actor: None,
            target: "api".into(),
            scope: None,
            rule: Some(rule.into()),
            cache: Some(if at % 2000 == 0 { "hit" } else { "miss" }.into()),
            issued_ttl: None,
            subject_token_fingerprint: "sha256:00".into(),
            actor_token_fingerprint: None,
            issued_token_fingerprint: None,
            client_addr: None,
            latency_ms: at as f64,
        }
    }

    async fn exercise(url: SecretUrl) {
        let store = AuditStore::open(&AuditStoreConfig::default(), &url, Arc::new(Metrics::new()), true)
            .await
            .unwrap();
        let pay: Vec<Identity> = (0..5).map(|i| identity("payments", &format!("api-{i}"))).collect();
        let batch = identity("pay_ments", "batch");
        for (i, who) in pay.iter().enumerate() {
            store.write(&event(i as i64 * 1000, who, Decision::Allow, "pay")).await.unwrap();
        }
        store.write(&event(60_000, &batch, Decision::Deny, "no-batch")).await.unwrap();
        store.write(&event(61_000, &batch, Decision::Deny, "no-batch")).await.unwrap();

        // Search, attribute (the `_` is no wildcard), decision; pages by keyset.
        let page = |q: WorkloadQuery| {
            let store = store.clone();
            async move { store.directory(&WorkloadQuery { limit: 2, ..q }).await.unwrap() }
        };
        let all = page(WorkloadQuery::default()).await;
        assert_eq!((all.total, all.workloads.len()), (6, 2));
        assert_eq!(
            (&all.workloads[0].id, &all.workloads[1].id),
            (&batch.id, &pay[4].id),
            "most recently seen first"
        );
        let next =
            page(WorkloadQuery { cursor: all.next_cursor.unwrap().parse().ok(), ..Default::default() }).await;
        assert_eq!((&next.workloads[0].id, &next.workloads[1].id), (&pay[3].id, &pay[2].id));
        let found = page(WorkloadQuery { search: Some("api-3".into()), ..Default::default() }).await;
        assert_eq!((found.total, found.workloads[0].id.as_str()), (1, pay[3].id.as_str()));
        let team = page(WorkloadQuery {
            attribute: Some(("k8s.team".into(), "pay_ments".into())),
            ..Default::default()
        })
        .await;
        assert_eq!((team.total, team.next_cursor), (1, None));
        let denied = page(WorkloadQuery { decision: Some("deny".into()), ..Default::default() }).await;
        assert_eq!(denied.total, 1);

        let rules = store.rule_matches().await.unwrap();
        let counts: Vec<(&str, &str, i64)> =
            rules.iter().map(|r| (r.rule.as_str(), r.decision.as_str(), r.exchanges)).collect();
        assert_eq!(counts, [("no-batch", "deny", 2), ("pay", "allow", 5)]);
        assert_eq!(rules[0].last_ms, T0 + 61_000);

        let activity = store.activity(T0).await.unwrap();
        let minutes: Vec<(i64, i64, i64)> =
            activity.minutes.iter().map(|m| (m.minute, m.allow, m.deny)).collect();
        assert_eq!(minutes, [(T0 / 60_000, 5, 0), (T0 / 60_000 + 1, 0, 2)]);
        assert_eq!(activity.latencies_ms.len(), 7);
        let api = &activity.targets[0];
        assert_eq!((api.allow, api.deny, api.cache_hits, api.cache_misses), (5, 2, 4, 3));

        let decided = store.workload_rules(&batch.id).await.unwrap();
        assert_eq!((decided[0].rule.as_deref(), decided[0].exchanges), (Some("no-batch"), 2));

        // The graph counts whole hours: a window starting within T0's hour holds all of
        // it; one starting in the next hour only that hour's exchange.
        store.write(&event(HOUR, &pay[0], Decision::Allow, "pay")).await.unwrap();
        let edges = |query: EdgeQuery| {
            let store = store.clone();
            async move {
                let edges = store.edges(&query).await.unwrap();
                edges.iter().map(|e| (e.identity_id.clone(), e.allow, e.deny)).collect::<Vec<_>>()
            }
        };
        let from = |at: i64| EdgeQuery { since_ms: T0 + at, ..Default::default() };
        let mut expected = vec![(batch.id.clone(), 0, 2), (pay[0].id.clone(), 2, 0)];
        expected.extend(pay[1..].iter().map(|w| (w.id.clone(), 1, 0)));
        assert_eq!(edges(from(3_000)).await, expected);
        assert_eq!(edges(from(HOUR + 500)).await, [(pay[0].id.clone(), 1, 0)]);
        let team = EdgeQuery { attribute: Some(("k8s.team".into(), "pay_ments".into())), ..from(0) };
        assert_eq!(edges(team).await, [(batch.id.clone(), 0, 2)]);
        assert!(edges(EdgeQuery { target: Some("other".into()), ..from(0) }).await.is_empty());
        assert_eq!(edges(EdgeQuery { source: Some("prod".into()), ..from(0) }).await.len(), 6);
    }

    /// The attribute filter is exact on key and value: not a field of the identity of
    /// that name, not a value differing in case or longer, not a value that contains the
    /// pair as text, not a longer key.
    async fn exercise_attribute_filter(url: SecretUrl) {
        let store = AuditStore::open(&AuditStoreConfig::default(), &url, Arc::new(Metrics::new()), true)
            .await
            .unwrap();
        let with = |name: &str, attributes: &[(&str, &str)]| {
            let mut who = identity("payments", name);
            who.attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            who
        };
        let workloads = [
            with("exact", &[("k8s.team", "payments")]),
            with("upper", &[("k8s.team", "Payments")]),
            with("longer", &[("k8s.team", "payments-eu")]),
            with("inside", &[("k8s.note", r#""k8s.team":"payments""#), ("k8s.team", "ops")]),
            with("longer-key", &[("k8s.team.lead", "payments")]),
            with("quoted", &[("k8s.team", r#"pay"ments"#)]),
        ];
        for (i, who) in workloads.iter().enumerate() {
            store.write(&event(i as i64, who, Decision::Allow, "pay")).await.unwrap();
        }
        let matching = |key: &str, value: &str| {
            let (store, attribute) = (store.clone(), Some((key.to_string(), value.to_string())));
            async move {
                let query = WorkloadQuery { attribute: attribute.clone(), limit: 100, ..Default::default() };
                let page = store.directory(&query).await.unwrap();
                let mut names: Vec<String> =
                    page.workloads.iter().map(|w| w.identity["name"].as_str().unwrap().to_string()).collect();
                names.sort();
                assert_eq!(page.total as usize, names.len());
                let edges =
                    store.edges(&EdgeQuery { since_ms: T0, attribute, ..Default::default() }).await.unwrap();
                assert_eq!(edges.len(), names.len(), "the graph filters as the directory does");
                names
            }
        };
        assert_eq!(matching("k8s.team", "payments").await, ["exact"]);
        assert_eq!(matching("k8s.team", "Payments").await, ["upper"]);
        assert_eq!(matching("k8s.team", r#"pay"ments"#).await, ["quoted"]);
        assert_eq!(matching("k8s.team.lead", "payments").await, ["longer-key"]);
        // `namespace` is a field of every identity here, not an attribute.
        assert!(matching("namespace", "payments").await.is_empty());
        assert!(matching("k8s.team", "pay").await.is_empty());
        assert!(matching("k8s.team", "%").await.is_empty());
        assert!(matching("team", "payments").await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_console_queries_answer_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        exercise(SecretUrl::new(format!("sqlite://{}", dir.path().join("audit.db").display()))).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_console_queries_answer_alike_on_postgresql() {
        let db = TestPostgres::new();
        exercise(SecretUrl::new(db.url())).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_attribute_filter_is_exact_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        exercise_attribute_filter(SecretUrl::new(format!(
            "sqlite://{}",
            dir.path().join("audit.db").display()
        )))
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_attribute_filter_is_exact_on_postgresql() {
        let db = TestPostgres::new();
        exercise_attribute_filter(SecretUrl::new(db.url())).await;
    }

    /// A store written before the rule, minute and hour counters existed gets them filled
    /// from its events.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_rule_counters_are_filled_from_the_events_already_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("audit.db").display()));
        let config = AuditStoreConfig::default();
        let open = || AuditStore::open(&config, &url, Arc::new(Metrics::new()), true);
        let store = open().await.unwrap();
        let who = identity("payments", "api");
        for at in 0..3 {
            store.write(&event(at, &who, Decision::Allow, "pay")).await.unwrap();
        }
        drop(store);
        // Back to schema version 1, as a store of an older broker.
        let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rw", url.expose())).await.unwrap();
        for statement in [
            "DROP INDEX tessera_audit_events_issued_segment",
            "ALTER TABLE tessera_audit_events DROP COLUMN issued_segment",
            "DROP TABLE tessera_rule_matches",
            "DROP TABLE tessera_minutes",
            "DROP INDEX tessera_audit_events_refused",
            "DROP TABLE tessera_revocations",
            "DROP INDEX tessera_audit_events_actor",
            "ALTER TABLE tessera_audit_events DROP COLUMN actor_id",
            "ALTER TABLE tessera_audit_events DROP COLUMN actor",
            "ALTER TABLE tessera_audit_events DROP COLUMN actor_token_fingerprint",
            "DROP TABLE tessera_hours",
            "DELETE FROM tessera_schema WHERE version >= 2",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = open().await.unwrap();
        let rules = store.rule_matches().await.unwrap();
        assert_eq!((rules.len(), rules[0].exchanges, rules[0].last_ms), (1, 3, T0 + 2));
        let activity = store.activity(T0).await.unwrap();
        assert_eq!(activity.minutes.iter().map(|m| m.allow).sum::<i64>(), 3, "the overview's minutes too");
        assert_eq!(activity.sources, [("prod".to_string(), 0, 3)]);
        let edges = store.edges(&EdgeQuery { since_ms: T0, ..EdgeQuery::default() }).await.unwrap();
        assert_eq!(
            edges.iter().map(|e| (e.allow, e.deny)).collect::<Vec<_>>(),
            [(3, 0)],
            "the graph's hours too"
        );
    }
}
