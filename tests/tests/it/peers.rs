//! A library nobody here wrote on both ends: PyJWT mints the subject token and verifies
//! the token Tessera issued, fetching Tessera's JWKS over HTTP.

use serde_json::Value;
use tessera_tests::{BrokerOptions, python, spawn_broker};

use crate::{JWT_TARGET, RULES};

#[tokio::test(flavor = "multi_thread")]
async fn pyjwt_minted_token_is_exchanged_and_pyjwt_verifies_the_result() {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path().to_str().unwrap().to_string();
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || python::run("pyjwt_peer.py", &["keygen", &dir])
    })
    .await
    .unwrap();
    let iss = "https://idp.pyjwt.example";
    let source = format!(
        "- name: corp\n  type: oidc\n  issuer: {iss}\n  audiences: [tessera]\n  jwks_file: {dir}/jwks.json\n  algorithms: [RS256]\n"
    );
    let broker = spawn_broker(BrokerOptions::new(&source, JWT_TARGET).mapping("r.yaml", RULES)).await;
    let token = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            python::run("pyjwt_peer.py", &["mint", &dir, iss, "svc-from-python", "tessera", "team=payments"])
        }
    })
    .await
    .unwrap();

    let (status, body) = broker.exchange(&token, "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let issued = body["access_token"].as_str().unwrap().to_string();
    let jwks_url = format!("{}/.well-known/jwks.json", broker.url);
    let url = broker.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        python::run("pyjwt_peer.py", &["verify", &jwks_url, &issued, "https://internal-api.example", &url])
    })
    .await
    .unwrap();
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["claims"]["sub"], "oidc://corp/svc-from-python");
    assert_eq!(verified["header"]["alg"], "ES256");
    let events = broker.audit_events();
    assert_eq!(events[0]["identity"]["attributes"]["oidc.team"], "payments");
    broker.stop().await;
}
