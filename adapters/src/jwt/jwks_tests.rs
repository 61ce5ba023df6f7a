use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::jwt::policy::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, JwtPolicy};
use crate::jwt::testkit::{TestKey, TestServer, http_client, jwks};
use crate::jwt::verify::JwtVerifier;

const T0: i64 = 1_700_000_000;

fn options() -> JwksOptions {
    JwksOptions { insecure_http: true, background_refresh: false, ..JwksOptions::default() }
}

fn cache(location: JwksLocation, options: JwksOptions, clock: &Arc<ManualClock>) -> Arc<JwksCache> {
    JwksCache::new("corp-idp", location, options, &Algorithm::DEFAULT, http_client(), clock.clone()).unwrap()
}

fn build_err(location: JwksLocation, options: JwksOptions) -> BuildError {
    JwksCache::new("s", location, options, &Algorithm::DEFAULT, http_client(), Arc::new(ManualClock::new(T0)))
        .unwrap_err()
}

fn verifier(issuer: &str, keys: Arc<JwksCache>, clock: &Arc<ManualClock>) -> JwtVerifier {
    let policy = JwtPolicy::new(
        issuer,
        vec!["tessera".into()],
        Algorithm::DEFAULT.to_vec(),
        DEFAULT_LEEWAY,
        DEFAULT_MAX_LIFETIME,
    )
    .unwrap();
    JwtVerifier::new(policy, keys, clock.clone())
}

fn claims(iss: &str, now: i64) -> Value {
    json!({ "iss": iss, "sub": "svc", "aud": "tessera", "iat": now, "exp": now + 300 })
}

fn is_upstream(e: &SourceError) -> bool {
    matches!(e, SourceError::Upstream { retryable: true, .. })
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_throttled() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let b = TestKey::p256("b");
    server.set("/jwks", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    let v = verifier("https://idp", keys, &clock);

    v.verify(&a.token("ES256", &claims("https://idp", T0))).await.unwrap();
    assert_eq!(server.hits("/jwks"), 1);

    // Unknown kid: one refetch, still unknown.
    let token_b = b.token("ES256", &claims("https://idp", T0));
    assert!(matches!(v.verify(&token_b).await, Err(SourceError::UnknownKey)));
    assert_eq!(server.hits("/jwks"), 2);

    // The issuer now publishes b, but refetches are throttled for 30 s.
    server.set("/jwks", 200, jwks(&[a.jwk(), b.jwk()]));
    for _ in 0..5 {
        assert!(matches!(v.verify(&token_b).await, Err(SourceError::UnknownKey)));
    }
    clock.advance(29);
    assert!(matches!(v.verify(&token_b).await, Err(SourceError::UnknownKey)));
    assert_eq!(server.hits("/jwks"), 2);

    // Known kids keep verifying without fetches meanwhile.
    v.verify(&a.token("ES256", &claims("https://idp", T0 + 29))).await.unwrap();
    assert_eq!(server.hits("/jwks"), 2);

    clock.advance(1);
    let token_b = b.token("ES256", &claims("https://idp", T0 + 30));
    v.verify(&token_b).await.unwrap();
    assert_eq!(server.hits("/jwks"), 3);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let b = TestKey::p256("b");
    server.set("/jwks", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    let v = Arc::new(verifier("https://idp", keys, &clock));
    v.verify(&a.token("ES256", &claims("https://idp", T0))).await.unwrap();
    assert_eq!(server.hits("/jwks"), 1);

    // b appears; the response is slow so the requests overlap.
    server.set_delayed("/jwks", jwks(&[a.jwk(), b.jwk()]), Duration::from_millis(200));
    let token_b = b.token("ES256", &claims("https://idp", T0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let v = Arc::clone(&v);
            let t = token_b.clone();
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_fetch() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    server.set_delayed("/jwks", jwks(&[a.jwk()]), Duration::from_millis(200));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    assert!(!keys.is_warm());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { keys.keys().await.map(|k| k.usable_len()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    assert_eq!(server.hits("/jwks"), 1);
    assert!(keys.is_warm());
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_failure() {
    let server = TestServer::start().await;
    server.set_delayed("/jwks", "oops", Duration::from_millis(200));
    let clock = Arc::new(ManualClock::new(T0));
    // No backoff: only the single-flight re-check keeps waiters from fetching again.
    let eager = JwksOptions { retry_after_failure: Duration::ZERO, ..options() };
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), eager, &clock);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { keys.keys().await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        assert!(is_upstream(&task.await.unwrap().unwrap_err()));
    }
    assert_eq!(server.hits("/jwks"), 1);
    // A later request tries again.
    assert!(is_upstream(&keys.keys().await.unwrap_err()));
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test]
async fn issuer_down_keeps_serving_until_max_stale() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    server.set("/jwks", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    let v = verifier("https://idp", Arc::clone(&keys), &clock);
    v.verify(&a.token("ES256", &claims("https://idp", T0))).await.unwrap();

    // The issuer fails: refreshes fail, the last good set keeps serving.
    server.set("/jwks", 503, "down");
    clock.advance(3600);
    assert!(matches!(keys.refresh().await, Err(JwksError::Status { status: 503, .. })));
    v.verify(&a.token("ES256", &claims("https://idp", T0 + 3600))).await.unwrap();
    assert!(keys.is_warm());

    // Exactly max_stale after the last success: still serving, no fetch needed.
    let hits = server.hits("/jwks");
    clock.set(T0 + 24 * 3600);
    v.verify(&a.token("ES256", &claims("https://idp", T0 + 24 * 3600))).await.unwrap();
    assert_eq!(server.hits("/jwks"), hits);

    // Past it: the set is no longer used; the fetch fails, so the answer is retryable.
    clock.advance(1);
    let now = T0 + 24 * 3600 + 1;
    let err = v.verify(&a.token("ES256", &claims("https://idp", now))).await.unwrap_err();
    assert!(is_upstream(&err), "{err:?}");
    assert!(!keys.is_warm());
    assert_eq!(server.hits("/jwks"), hits + 1);

    // Recovery: within retry_after_failure no new fetch is tried; after it, one is.
    server.set("/jwks", 200, jwks(&[a.jwk()]));
    let err = v.verify(&a.token("ES256", &claims("https://idp", now))).await.unwrap_err();
    assert!(is_upstream(&err), "{err:?}");
    assert_eq!(server.hits("/jwks"), hits + 1);
    clock.advance(5);
    v.verify(&a.token("ES256", &claims("https://idp", now + 5))).await.unwrap();
    assert_eq!(server.hits("/jwks"), hits + 2);
    assert!(keys.is_warm());
}

#[tokio::test]
async fn cold_cache_with_issuer_down_is_upstream() {
    let server = TestServer::start().await;
    server.set("/jwks", 500, "boom");
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    let v = verifier("https://idp", Arc::clone(&keys), &clock);
    let a = TestKey::p256("a");
    let err = v.verify(&a.token("ES256", &claims("https://idp", T0))).await.unwrap_err();
    match &err {
        SourceError::Upstream { retryable: true, cause } => {
            assert!(cause.contains("corp-idp") && cause.contains("HTTP 500"), "{cause}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!keys.is_warm());

    // Connection refused is the same answer.
    let port = unused_port().await;
    let keys = cache(JwksLocation::Uri(format!("http://127.0.0.1:{port}/jwks")), options(), &clock);
    assert!(is_upstream(&keys.keys().await.unwrap_err()));
}

#[tokio::test]
async fn the_last_failure_is_kept_for_operators_without_the_url_query() {
    let server = TestServer::start().await;
    server.set("/jwks?api_key=s3cr3t", 503, "secret-looking body");
    let clock = Arc::new(ManualClock::new(T0));
    let url = server.url("/jwks?api_key=s3cr3t");
    let keys = cache(JwksLocation::Uri(url), options(), &clock);
    assert_eq!(keys.last_failure(), None);
    keys.refresh().await.unwrap_err();
    let failure = keys.last_failure().unwrap();
    assert_eq!(failure.at, T0);
    assert_eq!(failure.error, format!("GET {}?… answered HTTP 503", server.url("/jwks")));

    // A later success keeps it, for the operator to see what happened.
    let a = TestKey::p256("a");
    server.set("/jwks?api_key=s3cr3t", 200, jwks(&[a.jwk()]));
    clock.advance(60);
    keys.refresh().await.unwrap();
    assert_eq!(keys.last_failure().map(|f| f.at), Some(T0));

    // Long causes are cut.
    let long = JwksError::Request { url: "https://idp.example/keys".into(), cause: "x".repeat(1000) };
    assert_eq!(long.redacted().chars().count(), MAX_REDACTED + 1);
    assert!(long.redacted().ends_with('…'));
    let plain = JwksError::Status { url: "https://idp.example/keys".into(), status: 404 };
    assert_eq!(plain.redacted(), plain.to_string());
}

/// A loopback port nothing listens on (bound, then released).
async fn unused_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn junk_and_redirects_keep_the_old_set() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    server.set("/jwks", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), options(), &clock);
    let first = keys.keys().await.unwrap();

    server.set("/jwks", 200, "{not json");
    assert!(matches!(keys.refresh().await, Err(JwksError::KeySet { .. })));
    server.set("/jwks", 200, r#"{"keys":[]}"#);
    assert!(matches!(keys.refresh().await, Err(JwksError::KeySet { source: KeySetError::NoUsableKeys, .. })));
    server.set("/jwks", 302, "");
    assert!(matches!(keys.refresh().await, Err(JwksError::Status { status: 302, .. })));
    assert!(Arc::ptr_eq(&first, &keys.keys().await.unwrap()));
}

#[tokio::test]
async fn responses_over_the_size_limit_are_refused() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let body = jwks(&[a.jwk()]);
    let clock = Arc::new(ManualClock::new(T0));
    let small = JwksOptions { max_bytes: body.len() - 1, ..options() };

    server.set("/framed", 200, body.clone());
    let keys = cache(JwksLocation::Uri(server.url("/framed")), small.clone(), &clock);
    assert!(matches!(keys.refresh().await, Err(JwksError::TooLarge { .. })));

    // Without Content-Length the limit is enforced while reading.
    server.set_unframed("/unframed", body.clone());
    let keys = cache(JwksLocation::Uri(server.url("/unframed")), small, &clock);
    assert!(matches!(keys.refresh().await, Err(JwksError::TooLarge { .. })));
    assert!(is_upstream(&keys.keys().await.unwrap_err()));

    // At the limit it is fine.
    let exact = JwksOptions { max_bytes: body.len(), ..options() };
    let keys = cache(JwksLocation::Uri(server.url("/unframed")), exact, &clock);
    keys.refresh().await.unwrap();
}

/// The answer comes after 5 s: a fetch that waited for it would succeed. It fails, so the
/// 200 ms timeout ended it (no assertion on how long that took).
#[tokio::test]
async fn slow_responses_time_out() {
    let server = TestServer::start().await;
    server.set_delayed("/jwks", jwks(&[TestKey::p256("a").jwk()]), Duration::from_secs(5));
    let clock = Arc::new(ManualClock::new(T0));
    let quick = JwksOptions { timeout: Duration::from_millis(200), ..options() };
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), quick, &clock);
    let err = keys.refresh().await.unwrap_err();
    assert!(matches!(err, JwksError::Timeout { .. } | JwksError::Request { .. }), "{err:?}");
}

#[test]
fn plain_http_needs_insecure_http_and_loopback() {
    let strict = JwksOptions { insecure_http: false, ..options() };
    let err = build_err(JwksLocation::Uri("http://127.0.0.1:8080/jwks".into()), strict.clone());
    assert_eq!(err.field, Some("jwks_uri"));
    let err = build_err(JwksLocation::Discovery { issuer: "http://127.0.0.1:8080".into() }, strict);
    assert_eq!(err.field, Some("issuer"));
    for url in ["http://idp.example.com/jwks", "http://10.0.0.1/jwks", "http://localhost.evil.example/jwks"] {
        let err = build_err(JwksLocation::Uri(url.into()), options());
        assert_eq!(err.field, Some("jwks_uri"), "{url}");
    }
    for url in [
        "ftp://idp.example.com/jwks",
        "file:///etc/jwks.json",
        "not a url",
        "https://u:p@idp.example.com/jwks",
    ] {
        let err = build_err(JwksLocation::Uri(url.into()), options());
        assert_eq!(err.field, Some("jwks_uri"), "{url}");
    }
    let clock = Arc::new(ManualClock::new(T0));
    for url in [
        "http://127.0.0.1:1/jwks",
        "http://[::1]:1/jwks",
        "http://localhost:1/jwks",
        "https://idp.example.com/jwks",
    ] {
        cache(JwksLocation::Uri(url.into()), options(), &clock);
    }
    let strict = JwksOptions { insecure_http: false, ..options() };
    cache(JwksLocation::Uri("https://idp.example.com/jwks".into()), strict, &clock);
}

#[test]
fn refresh_settings_are_checked() {
    let uri = || JwksLocation::Uri("https://idp.example.com/jwks".into());
    let err = build_err(uri(), JwksOptions { refresh_interval: Duration::from_secs(1), ..options() });
    assert_eq!(err.field, Some("jwks_refresh_interval"));
    let err = build_err(
        uri(),
        JwksOptions {
            refresh_interval: Duration::from_secs(600),
            max_stale: Duration::from_secs(60),
            ..options()
        },
    );
    assert_eq!(err.field, Some("jwks_max_stale"));
}

#[test]
fn discovery_url_follows_oidc_discovery() {
    assert_eq!(
        discovery_url("https://idp.example.com").unwrap().as_str(),
        "https://idp.example.com/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url("https://idp.example.com/tenant/").unwrap().as_str(),
        "https://idp.example.com/tenant/.well-known/openid-configuration"
    );
    assert!(discovery_url("https://idp.example.com?x=1").is_err());
    assert!(discovery_url("idp").is_err());
}

#[tokio::test]
async fn discovery_finds_the_jwks_uri() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let issuer = server.base();
    server.set(
        "/.well-known/openid-configuration",
        200,
        json!({ "issuer": issuer, "jwks_uri": server.url("/keys") }).to_string(),
    );
    server.set("/keys", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Discovery { issuer: issuer.clone() }, options(), &clock);
    let v = verifier(&issuer, keys, &clock);
    v.verify(&a.token("ES256", &claims(&issuer, T0))).await.unwrap();
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/keys"), 1);
}

#[tokio::test]
async fn discovery_refuses_another_issuer_and_unsafe_jwks_uris() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let issuer = server.base();
    server.set("/keys", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Discovery { issuer: issuer.clone() }, options(), &clock);
    let doc = |iss: &str, jwks_uri: &str| json!({ "issuer": iss, "jwks_uri": jwks_uri }).to_string();

    // A trailing slash is a different issuer (OIDC Discovery §4.3: identical).
    for other in [format!("{issuer}/"), "https://evil.example".to_string()] {
        server.set("/.well-known/openid-configuration", 200, doc(&other, &server.url("/keys")));
        assert!(matches!(keys.refresh().await, Err(JwksError::DiscoveryIssuer { .. })));
    }
    server.set(
        "/.well-known/openid-configuration",
        200,
        json!({ "jwks_uri": server.url("/keys") }).to_string(),
    );
    assert!(matches!(keys.refresh().await, Err(JwksError::DiscoveryIssuer { .. })));
    // jwks_uri must pass the same checks as a configured URL.
    server.set("/.well-known/openid-configuration", 200, doc(&issuer, "http://idp.example.com/keys"));
    assert!(matches!(keys.refresh().await, Err(JwksError::DiscoveryJwksUri { .. })));
    server.set("/.well-known/openid-configuration", 200, doc(&issuer, "file:///etc/passwd"));
    assert!(matches!(keys.refresh().await, Err(JwksError::DiscoveryJwksUri { .. })));
    server.set("/.well-known/openid-configuration", 200, r#"{"issuer":"x","issuer":"y"}"#);
    assert!(matches!(keys.refresh().await, Err(JwksError::DiscoveryJson { .. })));
    assert_eq!(server.hits("/keys"), 0);
    assert!(is_upstream(&keys.keys().await.unwrap_err()));
    assert!(!keys.is_warm());
}

#[tokio::test]
async fn a_trailing_slash_issuer_discovers_under_its_path() {
    let server = TestServer::start().await;
    let a = TestKey::p256("a");
    let issuer = format!("{}/tenant/", server.base());
    server.set(
        "/tenant/.well-known/openid-configuration",
        200,
        json!({ "issuer": issuer, "jwks_uri": server.url("/keys") }).to_string(),
    );
    server.set("/keys", 200, jwks(&[a.jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Discovery { issuer: issuer.clone() }, options(), &clock);
    keys.keys().await.unwrap();
    assert_eq!(server.hits("/tenant/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn background_refresh_warms_the_cache() {
    let server = TestServer::start().await;
    server.set("/jwks", 200, jwks(&[TestKey::p256("a").jwk()]));
    let clock = Arc::new(ManualClock::new(T0));
    let with_task = JwksOptions { background_refresh: true, ..options() };
    let keys = cache(JwksLocation::Uri(server.url("/jwks")), with_task, &clock);
    // Waits for the background fetch however late a loaded machine runs it; only one
    // that never comes fails, after a minute.
    for _ in 0..3000 {
        if keys.is_warm() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(keys.is_warm());
    assert_eq!(server.hits("/jwks"), 1);
}

#[test]
fn built_outside_a_runtime_the_task_starts_on_first_use() {
    let clock = Arc::new(ManualClock::new(T0));
    let with_task = JwksOptions { background_refresh: true, ..options() };
    let keys = cache(JwksLocation::Uri("http://127.0.0.1:1/jwks".into()), with_task, &clock);
    assert!(keys.refresher.get().is_none());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let _ = keys.keys().await;
        assert!(keys.refresher.get().is_some());
    });
}

#[tokio::test]
async fn static_files_need_no_network() {
    let a = TestKey::p256("a");
    let dir = std::env::temp_dir().join(format!("tessera-jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks(&[a.jwk()])).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::File(path.clone()), options(), &clock);
    assert!(keys.is_warm());
    let v = verifier("https://idp", Arc::clone(&keys), &clock);
    v.verify(&a.token("ES256", &claims("https://idp", T0))).await.unwrap();
    let b = TestKey::p256("b");
    assert!(matches!(
        v.verify(&b.token("ES256", &claims("https://idp", T0))).await,
        Err(SourceError::UnknownKey)
    ));
    // Still warm long after: a file never goes stale.
    clock.advance(10 * 24 * 3600);
    assert!(keys.is_warm());

    std::fs::write(&path, "{}").unwrap();
    assert_eq!(build_err(JwksLocation::File(path.clone()), options()).field, Some("jwks_file"));
    assert_eq!(build_err(JwksLocation::File(dir.join("missing.json")), options()).field, Some("jwks_file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server that keeps the first connection open after answering, then closes it when the
/// next request arrives on it (its idle timeout running out just then), and answers every
/// request on a new connection. Returns its URL and how many requests it answered.
async fn closes_idle_connections(body: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, count) = (body.clone(), Arc::clone(&count));
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // The first request on this connection is answered, keep-alive.
                if stream.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                // The next one finds the connection closing: read, then closed unanswered.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    (url, answered)
}

#[tokio::test]
async fn a_fetch_on_a_connection_the_server_just_closed_is_retried_on_a_new_one() {
    let a = TestKey::p256("a");
    let (url, answered) = closes_idle_connections(jwks(&[a.jwk()])).await;
    let clock = Arc::new(ManualClock::new(T0));
    let keys = cache(JwksLocation::Uri(url), options(), &clock);
    keys.refresh().await.unwrap();
    // The second fetch goes out on the pooled connection, which the server closes unanswered.
    keys.refresh().await.expect("retried on a new connection");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 2);
}
