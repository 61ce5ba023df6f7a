//! Tessera as an OIDC issuer: keys survive restarts, and rotation publishes a key before
//! it signs and keeps the retired one published.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::keys::{header_of, verify_with_jwks};
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_same_keys() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("r.yaml", RULES);
    let first = spawn_broker(options.clone()).await;
    let (_, before) = first.get_json("/.well-known/jwks.json").await;
    let token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", first.clock.now()));
    let issued = first.exchange(&token, "internal-api").await.1["access_token"].as_str().unwrap().to_string();
    let dir = first.dir.clone();
    first.stop().await;

    let second = spawn_broker(BrokerOptions { dir: Some(dir.clone()), ..options }).await;
    let (_, after) = second.get_json("/.well-known/jwks.json").await;
    assert_eq!(kids(&before), kids(&after));
    // A token issued before the restart still verifies against the JWKS after it.
    verify_with_jwks(&after, &issued);
    // Private key files are readable by the owner only.
    for entry in std::fs::read_dir(dir.path().join("keys")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_publishes_the_next_key_before_it_signs() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("r.yaml", RULES)).await;
    let (_, before) = broker.get_json("/.well-known/jwks.json").await;
    let token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", broker.clock.now()));
    let old = broker.exchange(&token, "internal-api").await.1["access_token"].as_str().unwrap().to_string();
    let old_kid = header_of(&old)["kid"].as_str().unwrap().to_string();

    let loaded = broker.broker.config().clone();
    let clock: std::sync::Arc<dyn tessera_adapters::Clock> = broker.clock.clone();
    tessera_broker::issuer::rotate(
        &loaded.config.issuer,
        &loaded.base_dir,
        clock,
        Duration::from_secs(3600 + 300),
    )
    .expect("rotate");
    broker.broker.issuer().reload().expect("reload");

    let new = broker.exchange(&token, "internal-api").await.1["access_token"].as_str().unwrap().to_string();
    let new_kid = header_of(&new)["kid"].as_str().unwrap().to_string();
    assert_ne!(old_kid, new_kid, "the promoted key signs now");
    assert!(kids(&before).contains(&new_kid), "the new signing key was published before it signed");

    let (_, after) = broker.get_json("/.well-known/jwks.json").await;
    assert!(kids(&after).contains(&old_kid), "the retired key stays published");
    verify_with_jwks(&after, &old);
    verify_with_jwks(&after, &new);
    assert_eq!(kids(&after).len(), kids(&before).len() + 2, "a new next key per algorithm");

    // Past the grace period, the next rotation drops the retired key from the JWKS.
    broker.clock.advance(3600 + 301);
    let clock: std::sync::Arc<dyn tessera_adapters::Clock> = broker.clock.clone();
    tessera_broker::issuer::rotate(
        &loaded.config.issuer,
        &loaded.base_dir,
        clock,
        Duration::from_secs(3600 + 300),
    )
    .expect("rotate");
    broker.broker.issuer().reload().expect("reload");
    let (_, later) = broker.get_json("/.well-known/jwks.json").await;
    assert!(!kids(&later).contains(&old_kid), "expired retired key is gone");
    assert!(kids(&later).contains(&new_kid), "the key retired just now is still published");
    broker.stop().await;
}
