//! The HTTP edge: limits, content types, parameters, and the fixed RFC 6749 bodies.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;

use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, JWT_TYPE, RULES, TOKEN_EXCHANGE, oidc_source, standard};

async fn post_raw(url: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/token"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_fixed_rfc6749_bodies() {
    let (issuer, broker) = standard().await;
    let token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", broker.clock.now()));
    let base = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT_TYPE),
        ("audience", "internal-api"),
    ];
    let without = |name: &str| base.iter().filter(|(k, _)| *k != name).cloned().collect::<Vec<_>>();
    let replacing = |name: &str, value: &'static str| {
        base.iter().map(|(k, v)| if *k == name { (*k, value) } else { (*k, *v) }).collect::<Vec<_>>()
    };
    let plus = |name: &'static str, value: &'static str| {
        let mut f = base.clone();
        f.push((name, value));
        f
    };

    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, Value);
    let cases: Vec<Case> = vec![
        (
            without("grant_type"),
            400,
            json!({"error": "invalid_request", "error_description": "The grant_type parameter is required."}),
        ),
        (
            replacing("grant_type", "client_credentials"),
            400,
            json!({"error": "unsupported_grant_type", "error_description": "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange or urn:ietf:params:oauth:grant-type:jwt-bearer."}),
        ),
        (
            without("subject_token"),
            400,
            json!({"error": "invalid_request", "error_description": "The subject_token parameter is required."}),
        ),
        (
            without("subject_token_type"),
            400,
            json!({"error": "invalid_request", "error_description": "The subject_token_type parameter is required."}),
        ),
        (
            replacing("subject_token_type", "urn:ietf:params:oauth:token-type:saml2"),
            400,
            json!({"error": "invalid_request", "error_description": "The subject_token_type is not supported."}),
        ),
        (
            without("audience"),
            400,
            json!({"error": "invalid_request", "error_description": "The audience parameter is required."}),
        ),
        (
            plus("audience", "internal-api"),
            400,
            json!({"error": "invalid_request", "error_description": "A request parameter was included more than once."}),
        ),
        (
            plus("actor_token", "x"),
            400,
            json!({"error": "invalid_request", "error_description": "actor_token and actor_token_type must be given together."}),
        ),
        (
            plus("resource", "https://api.example"),
            400,
            json!({"error": "invalid_request", "error_description": "resource is not supported; name the target in audience."}),
        ),
        (
            plus("scope", "read write"),
            400,
            json!({"error": "invalid_scope", "error_description": "Request a single scope."}),
        ),
        (
            plus("requested_token_type", "urn:ietf:params:oauth:token-type:saml2"),
            400,
            json!({"error": "invalid_request", "error_description": "The requested_token_type is not issued for this audience."}),
        ),
    ];
    for (form, status, expected) in cases {
        let (got_status, headers, body) = broker.post_form(&form).await;
        assert_eq!((got_status, &body), (status, &expected), "{form:?}");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.contains_key("x-request-id"));
    }
    // The well-formed request still succeeds, and asking for a JWT explicitly is fine.
    assert_eq!(broker.post_form(&base).await.0, 200);
    assert_eq!(broker.post_form(&plus("requested_token_type", JWT_TYPE)).await.0, 200);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parameters_are_capped_in_both_encodings_and_only_known_names_must_be_unique() {
    let (issuer, broker) = standard().await;
    let token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", broker.clock.now()));
    let base = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT_TYPE),
        ("audience", "internal-api"),
    ];
    let too_many = json!({
        "error": "invalid_request",
        "error_description": "A token request has at most 32 parameters.",
    });
    // 28 more names make 32: accepted, though an unknown name repeats.
    let extra: Vec<String> = (0..27).map(|i| format!("x{i}")).chain(["x0".to_string()]).collect();
    let mut form: Vec<(&str, &str)> = base.to_vec();
    form.extend(extra.iter().map(|n| (n.as_str(), "")));
    assert_eq!(broker.post_form(&form).await.0, 200, "32 parameters, an unknown one repeated");
    form.push(("x27", ""));
    let (status, _, body) = broker.post_form(&form).await;
    assert_eq!((status, body), (400, too_many.clone()), "33 form parameters");

    let mut object = serde_json::Map::new();
    for (k, v) in base {
        object.insert(k.into(), json!(v));
    }
    for i in 0..29 {
        object.insert(format!("x{i}"), json!(""));
    }
    let (status, body) =
        post_raw(&broker.url, "application/json", Value::Object(object).to_string().into()).await;
    assert_eq!((status, body), (400, too_many.clone()), "33 JSON members");

    // The 64 KiB worst case: thousands of distinct short names, refused as soon as the cap
    // is passed.
    let names: String = (0..13_100).map(|i| format!("{i:x}&")).collect();
    assert!(names.len() <= 64 * 1024);
    let (status, body) = post_raw(&broker.url, "application/x-www-form-urlencoded", names.into_bytes()).await;
    assert_eq!((status, body), (400, too_many));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whitespace_around_the_subject_token_is_trimmed_and_inside_it_refused() {
    let (issuer, broker) = standard().await;
    let token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", broker.clock.now()));
    // What `curl --data-urlencode subject_token@file` sends for a file ending in a newline.
    for padded in [format!("{token}\n"), format!(" \t{token}\r\n")] {
        let (status, body) = broker.exchange(&padded, "internal-api").await;
        assert_eq!(status, 200, "{padded:?}: {body}");
    }
    let fingerprint = broker.audit_events().pop().unwrap()["subject_token_fingerprint"].clone();
    let (status, _) = broker.exchange(&token, "internal-api").await;
    assert_eq!(status, 200);
    assert_eq!(
        broker.audit_events().pop().unwrap()["subject_token_fingerprint"],
        fingerprint,
        "the trimmed token"
    );

    let (header, rest) = token.split_once('.').unwrap();
    for inside in [format!("{header}. {rest}"), format!("{header}.\n{rest}")] {
        let (status, body) = broker.exchange(&inside, "internal-api").await;
        assert_eq!((status, &body), (400, &crate::invalid_token_body()), "{inside:?}");
        assert_eq!(crate::last_reason(&broker), "TS-SRC-MALFORMED");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_and_size_limits() {
    let (_issuer, broker) = standard().await;
    let (status, body) = post_raw(&broker.url, "text/plain", b"grant_type=x".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "Content-Type must be application/x-www-form-urlencoded or application/json."
    );

    let big = vec![b'a'; 64 * 1024 + 1];
    let (status, body) = post_raw(&broker.url, "application/x-www-form-urlencoded", big).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("invalid_request")));

    let huge_token = "a".repeat(16 * 1024 + 1);
    let (status, body) = broker.exchange(&huge_token, "internal-api").await;
    assert_eq!(status, 413);
    assert_eq!(body["error_description"], "The subject token is too large.");

    let (status, body) = post_raw(&broker.url, "application/json", b"{\"grant_type\": 5}".to_vec()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    let (status, _) = post_raw(&broker.url, "application/json; charset=utf-8", b"[1,2]".to_vec()).await;
    assert_eq!(status, 400);

    let resp = reqwest::get(format!("{}/v1/token", broker.url)).await.unwrap();
    assert_eq!(resp.status(), 405);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_status_and_issuer_metadata() {
    let (_issuer, broker) = standard().await;
    assert_eq!(broker.get_json("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(broker.get_json("/readyz").await, (200, json!({"status": "ready"})));

    let (status, mut discovery) = broker.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], broker.url);
    assert_eq!(discovery["jwks_uri"], format!("{}/.well-known/jwks.json", broker.url));
    for key in ["issuer", "jwks_uri", "token_endpoint"] {
        discovery[key] = json!("[url]");
    }
    insta::assert_json_snapshot!("discovery", discovery);

    let (status, jwks) = broker.get_json("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().unwrap();
    // ES256 and RS256, each with an active and a published next key.
    assert_eq!(keys.len(), 4, "{jwks}");
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none() && k.get("p").is_none(), "no private material: {k}");
    }
    broker.stop().await;
}

/// The public listener is what clouds and workloads reach: its status names nothing of the
/// configuration, and operators' data (full status, metrics) is on the admin and metrics
/// listeners only.
#[tokio::test(flavor = "multi_thread")]
async fn the_public_listener_shows_no_configuration_and_operators_data_is_elsewhere() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
        .mapping("10-services.yaml", RULES)
        .with_admin()
        .with_metrics();
    // Reloads only when asked, below.
    options.extra = "reload:\n  watch: false\n  poll_interval: 0s\n".to_string();
    let broker = spawn_broker(options).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        broker.get_json("/v1/status").await,
        (200, json!({"version": version, "ready": true, "reload_failed": false}))
    );
    let public = |path: &str| broker.http.get(format!("{}{path}", broker.url)).send();
    assert_eq!(public("/metrics").await.unwrap().status(), 404);
    for path in ["/v1/explain", "/v1/reload", "/v1/workloads", "/v1/audit"] {
        assert_eq!(public(path).await.unwrap().status(), 404, "{path}");
    }

    // The full status is the admin listener's, paths and names included.
    let (status, s) = broker.admin_get("/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(s["version"], version);
    assert_eq!(s["build"], tessera_tests::install::build_info(), "the same build `tessera --version` names");
    assert_eq!(s["mappings"]["rules"], 2);
    assert!(s["mappings"]["version"].as_str().unwrap().starts_with("sha256:"));
    assert!(s["mappings"]["dir"].as_str().unwrap().ends_with("mappings"), "{s}");
    assert!(s["config"]["path"].as_str().unwrap().ends_with("broker.yaml"), "{s}");
    assert_eq!(s["sources"][0]["name"], "corp");
    assert_eq!(s["targets"][0]["type"], "jwt");
    let admin_metrics = broker.http.get(format!("{}/metrics", broker.admin_url.as_deref().unwrap()));
    let resp = admin_metrics.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("tessera_mapping_rules 2"));

    // The metrics listener serves metrics and nothing else.
    let metrics_url = broker.metrics_url.clone().unwrap();
    assert!(broker.metrics().await.contains("tessera_mapping_rules 2"));
    for path in ["/v1/status", "/healthz", "/v1/token", "/.well-known/jwks.json", "/v1/audit"] {
        let resp = broker.http.get(format!("{metrics_url}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }

    // A refused reload shows on the public status as a flag; its text stays on the admin one.
    broker.write_mappings(&[(
        "10-services.yaml",
        "version: 1\nrules:\n  - name: x\n    grant: { target: nowhere }\n",
    )]);
    let (status, body) = broker.admin_post("/v1/reload", &json!({})).await;
    assert_eq!(status, 422, "{body}");
    let (_, public_status) = broker.get_json("/v1/status").await;
    assert_eq!(public_status, json!({"version": version, "ready": true, "reload_failed": true}));
    let (_, s) = broker.admin_get("/v1/status").await;
    assert!(s["mappings"]["last_reload_error"]["message"].as_str().unwrap().contains("nowhere"), "{s}");
    broker.stop().await;
}

/// Read one HTTP/1.1 response with a `content-length` body from `stream`: its status line
/// and headers (lowercased names) and body.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap().to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, String::from_utf8(buf[head_end..head_end + length].to_vec()).unwrap())
}

/// An answer made without reading the request's body (a 404 for an unknown path, a 405)
/// still leaves the connection able to carry the next request: the body is read first, so
/// the server never closes a socket with the client's bytes unread (which resets it and
/// can lose the answer the client was reading).
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_reads_the_unread_body_and_keeps_the_connection() {
    use tokio::io::AsyncWriteExt as _;
    let (_, broker) = standard().await;
    let addr = broker.url.strip_prefix("http://").unwrap().to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for (method, path, status) in [("POST", "/v1/explain", "404"), ("PUT", "/v1/token", "405")] {
        let body = "{\"audience\": \"internal-api\"}";
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        // The head alone first, so the answer can be made before any of the body arrived.
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{method} {path}: {head}");
        assert!(!head.contains("connection: close"), "{method} {path}: {head}");
    }
    // The same connection carries the next request.
    let next = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(next.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("ok"), "{body}");
    broker.stop().await;
}
