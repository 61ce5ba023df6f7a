use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tessera_adapters::clock::{Clock, ManualClock};
use tessera_adapters::target::{SignError, Signer, SigningAlgorithm};

use super::keys::PublicJwk;
use super::*;

const NOW: i64 = 1_700_000_000;
const ES256: SigningAlgorithm = SigningAlgorithm::Es256;
const RS256: SigningAlgorithm = SigningAlgorithm::Rs256;
const EDDSA: SigningAlgorithm = SigningAlgorithm::EdDsa;

fn config(key_dir: &Path, algorithms: &[SigningAlgorithm]) -> IssuerConfig {
    let mut config = IssuerConfig::new(IssuerUrl::parse("https://tessera.test").unwrap());
    config.key_dir = key_dir.to_path_buf();
    config.algorithms = algorithms.to_vec();
    config
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn states(keys: &[KeyInfo], alg: SigningAlgorithm) -> Vec<KeyState> {
    let mut states: Vec<KeyState> = keys.iter().filter(|k| k.alg == alg).map(|k| k.state).collect();
    states.sort();
    states
}

fn jwks(issuer: &Issuer) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&issuer.jwks_json()).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn jwks_kids(issuer: &Issuer) -> BTreeSet<String> {
    jwks(issuer).iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

fn kid_in(keys: &[KeyInfo], alg: SigningAlgorithm, state: KeyState) -> String {
    keys.iter().find(|k| k.alg == alg && k.state == state).unwrap().kid.clone()
}

#[test]
fn first_start_creates_a_private_directory_of_private_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let issuer =
        Issuer::open(&config(&dir, &[ES256, RS256, EDDSA]), tmp.path(), Arc::new(ManualClock::new(NOW)))
            .unwrap();

    assert_eq!(mode(&dir), 0o700);
    let files = key_files(&dir);
    assert_eq!(files.len(), 6, "one active and one next key per algorithm");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let content: Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
        let kid = content["kid"].as_str().unwrap();
        assert_eq!(file.file_stem().unwrap(), kid);
        for field in ["version", "alg", "state", "created_at", "activated_at", "retired_at"] {
            assert!(content.get(field).is_some(), "{field} missing");
        }
        assert!(content["private_key"].as_str().is_some_and(|k| k.len() > 40));
        // No temp file is left behind.
    }
    assert!(
        fs::read_dir(&dir).unwrap().all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
    );

    let keys = issuer.keys();
    for alg in [ES256, RS256, EDDSA] {
        assert_eq!(states(&keys, alg), vec![KeyState::Next, KeyState::Active]);
        assert_eq!(issuer.active_kid(alg), Some(kid_in(&keys, alg, KeyState::Active)));
    }
    let active = keys.iter().find(|k| k.state == KeyState::Active).unwrap();
    assert_eq!((active.created_at, active.activated_at), (NOW, Some(NOW)));
}

#[test]
fn relative_key_dir_resolves_against_the_config_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(Path::new("state/keys"), &[ES256]);
    c.key_dir = PathBuf::from("state/keys");
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert_eq!(issuer.key_dir(), tmp.path().join("state/keys"));
    assert_eq!(key_files(&tmp.path().join("state/keys")).len(), 2);
}

#[test]
fn restart_keeps_the_same_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[ES256, EDDSA]);
    let first = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    let before = first.keys();
    let jwks_before = first.jwks_json();
    drop(first);

    let second = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW + 3600))).unwrap();
    assert_eq!(second.keys(), before);
    assert_eq!(second.jwks_json(), jwks_before);
    assert_eq!(key_files(tmp.path()).len(), 4);
}

#[test]
fn adding_an_algorithm_adds_its_keys_and_keeps_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let first = Issuer::open(&config(tmp.path(), &[ES256]), tmp.path(), clock.clone()).unwrap();
    let es = first.active_kid(ES256);
    let second = Issuer::open(&config(tmp.path(), &[ES256, RS256]), tmp.path(), clock).unwrap();
    assert_eq!(second.active_kid(ES256), es);
    assert!(second.active_kid(RS256).is_some());
}

#[test]
fn a_key_file_others_can_read_or_the_group_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[ES256]);
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    let active = issuer.active_kid(ES256).unwrap();
    let file = tmp.path().join(format!("{active}.json"));
    let private_key = serde_json::from_slice::<Value>(&fs::read(&file).unwrap()).unwrap()["private_key"]
        .as_str()
        .unwrap()
        .to_string();
    // Read-only for the group, as a Kubernetes Secret mounted with `fsGroup`: accepted.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o440)).unwrap();
    assert!(Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).is_ok());
    fs::set_permissions(&file, fs::Permissions::from_mode(0o660)).unwrap();
    assert!(matches!(
        Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))),
        Err(IssuerError::InsecurePermissions { mode: 0o660, .. })
    ));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

    let err = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap_err();
    match &err {
        IssuerError::InsecurePermissions { path, mode } => {
            assert_eq!(path, &file);
            assert_eq!(*mode, 0o644);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&format!("{active}.json")), "{message}");
    assert!(!message.contains(&private_key));
    assert_eq!(err.code(), "TS-ISS-KEY-PERMISSIONS");

    // A running issuer refuses it on reload too, and keeps signing with what it has.
    assert!(matches!(issuer.reload(), Err(IssuerError::InsecurePermissions { .. })));
    assert_eq!(issuer.active_kid(ES256), Some(active));
    assert!(issuer.sign(ES256, &Map::new()).is_ok());
}

#[test]
fn a_failed_reload_keeps_the_current_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[ES256]);
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    let before = issuer.keys();
    let jwks_before = issuer.jwks_json();

    let next = kid_in(&before, ES256, KeyState::Next);
    let file = tmp.path().join(format!("{next}.json"));
    fs::write(&file, b"{ not json").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let err = issuer.reload().unwrap_err();
    assert!(matches!(err, IssuerError::InvalidKeyFile { .. }), "{err}");
    assert_eq!(issuer.keys(), before);
    assert_eq!(issuer.jwks_json(), jwks_before);
    assert!(issuer.sign(ES256, &Map::new()).is_ok());

    // A file whose kid is not its key's thumbprint is refused the same way.
    let active = kid_in(&before, ES256, KeyState::Active);
    let mut content: Value =
        serde_json::from_slice(&fs::read(tmp.path().join(format!("{active}.json"))).unwrap()).unwrap();
    content["kid"] = json!(next);
    fs::write(&file, serde_json::to_vec(&content).unwrap()).unwrap();
    let err = issuer.reload().unwrap_err();
    assert!(err.to_string().contains("thumbprint"), "{err}");

    // Losing the active key is refused too.
    fs::remove_file(&file).unwrap();
    fs::remove_file(tmp.path().join(format!("{active}.json"))).unwrap();
    assert!(matches!(issuer.reload(), Err(IssuerError::MissingKey { .. })));
    assert_eq!(issuer.keys(), before);
}

#[test]
fn rotation_publishes_before_signing_and_retires_after_the_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let c = config(tmp.path(), &[ES256]);
    let issuer = Issuer::open(&c, tmp.path(), clock.clone()).unwrap();
    let old_active = issuer.active_kid(ES256).unwrap();
    let old_next = kid_in(&issuer.keys(), ES256, KeyState::Next);
    assert_eq!(jwks_kids(&issuer), BTreeSet::from([old_active.clone(), old_next.clone()]));

    clock.advance(86_400);
    let rotated_at = clock.now();
    let grace = Duration::from_secs(3600 + 300);
    let report = rotate(&c, tmp.path(), clock.clone(), grace).unwrap();
    let [rotation] = report.rotated.as_slice() else { panic!("{report:?}") };
    assert_eq!(rotation.alg, ES256);
    assert_eq!(rotation.activated, old_next);
    assert_eq!(rotation.retired, vec![old_active.clone()]);
    let publish_until = rotated_at + 3900;
    assert_eq!(rotation.publish_until, publish_until);
    let new_next = rotation.next.clone();
    assert!(report.deleted.is_empty());

    // Until it reloads, the running issuer signs with the old key.
    assert_eq!(issuer.active_kid(ES256), Some(old_active.clone()));
    assert!(issuer.reload().unwrap());
    assert_eq!(issuer.active_kid(ES256), Some(old_next.clone()));
    let keys = issuer.keys();
    let retired = keys.iter().find(|k| k.kid == old_active).unwrap();
    assert_eq!(retired.state, KeyState::Retired);
    assert_eq!(retired.retired_at, Some(rotated_at));
    assert_eq!(retired.publish_until, Some(publish_until));
    let active = keys.iter().find(|k| k.kid == old_next).unwrap();
    assert_eq!(active.activated_at, Some(rotated_at));
    assert_eq!(jwks_kids(&issuer), BTreeSet::from([old_active.clone(), old_next.clone(), new_next.clone()]));

    clock.set(publish_until - 1);
    assert!(jwks_kids(&issuer).contains(&old_active));
    clock.set(publish_until);
    assert_eq!(
        jwks_kids(&issuer),
        BTreeSet::from([old_next.clone(), new_next.clone()]),
        "a retired key leaves the JWKS at publish_until, with no reload"
    );
    assert!(!issuer.reload().unwrap(), "no file changed");

    // The next rotation deletes the expired key's file.
    let report = rotate(&c, tmp.path(), clock.clone(), grace).unwrap();
    assert_eq!(report.deleted, vec![old_active.clone()]);
    assert!(!tmp.path().join(format!("{old_active}.json")).exists());
    assert!(issuer.reload().unwrap());
    assert_eq!(issuer.active_kid(ES256), Some(new_next));
    assert_eq!(states(&issuer.keys(), ES256), vec![KeyState::Next, KeyState::Active, KeyState::Retired]);
}

#[test]
fn list_keys_shows_no_private_material() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[ES256, RS256]);
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    let listed = list_keys(&c, tmp.path()).unwrap();
    assert_eq!(listed.len(), 4);
    let mut expected = issuer.keys();
    expected.sort_by(|a, b| (a.alg, a.state, &a.kid).cmp(&(b.alg, b.state, &b.kid)));
    assert_eq!(listed, expected);
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains("private"), "{json}");

    let missing = config(&tmp.path().join("nope"), &[ES256]);
    assert!(matches!(list_keys(&missing, tmp.path()), Err(IssuerError::Io { .. })));
}

#[test]
fn debug_output_never_holds_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[ES256]);
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    let debug = format!("{issuer:?}");
    for file in key_files(tmp.path()) {
        let content: Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
        let private_key = content["private_key"].as_str().unwrap();
        assert!(!debug.contains(private_key));
    }
    let material = super::keys::KeyMaterial::generate(ES256).unwrap();
    assert!(format!("{material:?}").contains("[redacted]"));
}

/// What a verifier does: find the key by `kid` in the published JWKS, rebuild the public
/// key from its members alone, and check the signature.
fn verify_with_jwks(jwks: &[Value], token: &str) -> (Map<String, Value>, Map<String, Value>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three parts");
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
    let header: Map<String, Value> = serde_json::from_slice(&decode(parts[0])).unwrap();
    let claims: Map<String, Value> = serde_json::from_slice(&decode(parts[1])).unwrap();
    let signature = decode(parts[2]);
    let signed = format!("{}.{}", parts[0], parts[1]);

    let jwk = jwks.iter().find(|k| k["kid"] == header["kid"]).expect("kid is published");
    assert_eq!(jwk["alg"], header["alg"]);
    assert_eq!(jwk["use"], "sig");
    let member = |name: &str| decode(jwk[name].as_str().unwrap());
    match header["alg"].as_str().unwrap() {
        "ES256" => {
            assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
            assert_eq!(signature.len(), 64, "JOSE R || S, not DER");
            let mut point = vec![0x04];
            point.extend(member("x"));
            point.extend(member("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &signature)
                .unwrap();
        }
        "RS256" => {
            assert_eq!(jwk["kty"], "RSA");
            RsaPublicKeyComponents { n: member("n"), e: member("e") }
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
                .unwrap();
        }
        "EdDSA" => {
            assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
            UnparsedPublicKey::new(&ED25519, member("x")).verify(signed.as_bytes(), &signature).unwrap();
        }
        other => panic!("unexpected alg {other}"),
    }
    (header, claims)
}

#[test]
fn tokens_of_every_algorithm_verify_against_the_published_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = Issuer::open(
        &config(tmp.path(), &[ES256, RS256, EDDSA]),
        tmp.path(),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    assert_eq!(Signer::issuer(issuer.as_ref()), "https://tessera.test");
    assert_eq!(issuer.algorithms(), vec![ES256, RS256, EDDSA]);
    let jwks = jwks(&issuer);
    assert_eq!(jwks.len(), 6);

    let mut claims = Map::new();
    claims.insert("iss".into(), json!("https://tessera.test"));
    claims.insert("sub".into(), json!("k8s://eks-prod/ns/payments/sa/api"));
    claims.insert("nested".into(), json!({ "a": [1, 2] }));
    for alg in [ES256, RS256, EDDSA] {
        let token = issuer.sign(alg, &claims).unwrap();
        let (header, decoded) = verify_with_jwks(&jwks, token.expose());
        assert_eq!(header.len(), 3, "{header:?}");
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"].as_str(), issuer.active_kid(alg).as_deref());
        assert_eq!(decoded, claims);

        // The published kid is the RFC 7638 thumbprint of the published members.
        let jwk = jwks.iter().find(|k| k["kid"] == header["kid"]).unwrap();
        let text = |name: &str| jwk[name].as_str().unwrap().to_string();
        let public = match alg {
            ES256 => PublicJwk::Ec { x: text("x"), y: text("y") },
            RS256 => PublicJwk::Rsa { n: text("n"), e: text("e") },
            EDDSA => PublicJwk::Okp { x: text("x") },
        };
        assert_eq!(public.thumbprint(), text("kid"));
    }
}

#[test]
fn thumbprint_matches_rfc_7638_example() {
    // RFC 7638 §3.1.
    let jwk = PublicJwk::Rsa {
        n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
        e: "AQAB".into(),
    };
    assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn signing_with_an_unconfigured_algorithm_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer =
        Issuer::open(&config(tmp.path(), &[ES256]), tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert!(matches!(issuer.sign(RS256, &Map::new()), Err(SignError::NoActiveKey("RS256"))));
}

#[test]
fn replicas_starting_together_create_one_set_of_keys() {
    for _ in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let c = config(&dir, &[ES256, EDDSA]);
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (c, barrier, base) = (c.clone(), Arc::clone(&barrier), tmp.path().to_path_buf());
                std::thread::spawn(move || {
                    barrier.wait();
                    Issuer::open(&c, &base, Arc::new(ManualClock::new(NOW))).unwrap()
                })
            })
            .collect();
        let issuers: Vec<Arc<Issuer>> = handles.into_iter().map(|h| h.join().unwrap()).collect();

        assert_eq!(key_files(&dir).len(), 4);
        let keys = list_keys(&c, tmp.path()).unwrap();
        for alg in [ES256, EDDSA] {
            assert_eq!(states(&keys, alg), vec![KeyState::Next, KeyState::Active]);
            let active = Some(kid_in(&keys, alg, KeyState::Active));
            assert!(issuers.iter().all(|i| i.active_kid(alg) == active));
        }
    }
}

#[test]
fn reload_picks_up_a_rotation_by_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let c = config(tmp.path(), &[ES256, RS256]);
    let issuer = Issuer::open(&c, tmp.path(), clock.clone()).unwrap();
    assert!(!issuer.reload().unwrap());
    let before: BTreeMap<_, _> =
        [ES256, RS256].map(|a| (a, kid_in(&issuer.keys(), a, KeyState::Next))).into();

    rotate(&c, tmp.path(), clock.clone(), Duration::from_secs(600)).unwrap();
    let jwks_before = issuer.jwks_json();
    assert!(issuer.reload().unwrap());
    for (alg, next) in before {
        assert_eq!(issuer.active_kid(alg), Some(next));
    }
    assert_ne!(issuer.jwks_json(), jwks_before);
    assert!(!issuer.reload().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reloader_applies_rotations_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut c = config(tmp.path(), &[ES256]);
    c.key_reload_interval = Duration::from_secs(1);
    let issuer = Issuer::open(&c, tmp.path(), clock.clone()).unwrap();
    let task = issuer.spawn_reloader().unwrap();
    let next = kid_in(&issuer.keys(), ES256, KeyState::Next);

    rotate(&c, tmp.path(), clock.clone(), Duration::from_secs(600)).unwrap();
    // Waits for the reloader's next tick, however late a loaded machine runs it; only a
    // reloader that never applies the rotation fails, after a minute.
    for _ in 0..600 {
        if issuer.active_kid(ES256).as_ref() == Some(&next) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issuer.active_kid(ES256), Some(next));

    drop(issuer);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[test]
fn the_reloader_needs_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer =
        Issuer::open(&config(tmp.path(), &[ES256]), tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert!(matches!(issuer.spawn_reloader(), Err(IssuerError::NoRuntime)));
}

#[test]
fn discovery_document_describes_the_issuer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), &[RS256, ES256]);
    c.url = IssuerUrl::parse("https://tessera.example.com/prod").unwrap();
    let issuer = Issuer::open(&c, tmp.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert_eq!(issuer.url(), "https://tessera.example.com/prod");
    let doc: Value = serde_json::from_slice(&issuer.discovery_json()).unwrap();
    assert_eq!(
        doc,
        json!({
            "issuer": "https://tessera.example.com/prod",
            "jwks_uri": "https://tessera.example.com/prod/.well-known/jwks.json",
            "token_endpoint": "https://tessera.example.com/prod/v1/token",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope"],
        })
    );
}

#[test]
fn config_defaults_and_checks() {
    let c: IssuerConfig = serde_json::from_value(json!({ "url": "https://tessera.example.com" })).unwrap();
    assert_eq!(c.url.as_str(), "https://tessera.example.com");
    assert_eq!(c.key_dir, PathBuf::from("keys"));
    assert_eq!(c.algorithms, vec![ES256]);
    assert_eq!(c.key_reload_interval, Duration::from_secs(10));
    assert_eq!(c.key_dir(Path::new("/etc/tessera")), PathBuf::from("/etc/tessera/keys"));

    let c: IssuerConfig = serde_json::from_value(json!({
        "url": "http://127.0.0.1:8080", "key_dir": "/var/lib/tessera/keys",
        "algorithms": ["RS256", "EdDSA"], "key_reload_interval": "30s",
    }))
    .unwrap();
    assert_eq!(c.algorithms, vec![RS256, EDDSA]);
    assert_eq!(c.key_dir(Path::new("/etc")), PathBuf::from("/var/lib/tessera/keys"));
    assert_eq!(c.key_reload_interval, Duration::from_secs(30));

    let refused = [
        (json!({ "url": "https://t.example", "extra": 1 }), "extra"),
        (json!({ "url": "https://t.example", "algorithms": [] }), "at least one"),
        (json!({ "url": "https://t.example", "algorithms": ["ES256", "ES256"] }), "twice"),
        (json!({ "url": "https://t.example", "algorithms": ["HS256"] }), "HS256"),
        (json!({ "url": "https://t.example", "key_reload_interval": 0 }), "between"),
        (json!({ "url": "https://t.example", "key_reload_interval": "2m" }), "between"),
        (json!({ "url": "http://t.example" }), "https"),
        (json!({}), "url"),
    ];
    for (value, needle) in refused {
        let err = serde_json::from_value::<IssuerConfig>(value.clone()).unwrap_err().to_string();
        assert!(err.contains(needle), "{value}: {err}");
    }
}

#[test]
fn issuer_urls_must_be_exact_https_identifiers() {
    for ok in [
        "https://tessera.example.com",
        "https://tessera.example.com:8443",
        "https://tessera.example.com/tenant-a",
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
    ] {
        assert_eq!(IssuerUrl::parse(ok).map(|u| u.to_string()), Ok(ok.to_string()));
    }
    for bad in [
        "tessera.example.com",
        "http://tessera.example.com",
        "http://10.0.0.1",
        "ftp://tessera.example.com",
        "https://tessera.example.com/",
        "https://tessera.example.com/a/",
        "https://tessera.example.com?x=1",
        "https://tessera.example.com#f",
        "https://user:pw@tessera.example.com",
        "https://Tessera.Example.com",
        "https://tessera.example.com:443",
        "https://tessera.example.com/a/../b",
    ] {
        assert!(IssuerUrl::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn rotation_report_and_files_agree_for_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let c = config(tmp.path(), &[ES256, RS256, EDDSA]);
    // Rotating an empty directory first creates the keys it rotates.
    let report = rotate(&c, tmp.path(), clock.clone(), Duration::from_secs(60)).unwrap();
    assert_eq!(report.rotated.len(), 3);
    let keys = list_keys(&c, tmp.path()).unwrap();
    for r in &report.rotated {
        assert_eq!(kid_in(&keys, r.alg, KeyState::Active), r.activated);
        assert_eq!(kid_in(&keys, r.alg, KeyState::Next), r.next);
        assert_eq!(r.retired, vec![kid_in(&keys, r.alg, KeyState::Retired)]);
        assert_eq!(states(&keys, r.alg), vec![KeyState::Next, KeyState::Active, KeyState::Retired]);
    }
    for file in key_files(tmp.path()) {
        assert_eq!(mode(&file), 0o600);
    }
}

fn bundle(issuer: &Issuer, algorithms: &[SigningAlgorithm]) -> Value {
    serde_json::from_slice(&issuer.spiffe_bundle_json(algorithms, Duration::from_secs(300))).unwrap()
}

/// SPIFFE Trust Domain and Bundle §4: `use: jwt-svid` and a `kid` on each key (JWT-SVID
/// §6.1), `spiffe_refresh_hint`, and a `spiffe_sequence` that changes with the keys, and
/// only goes up, through a whole rotation: a new key, an activation, a retired key leaving,
/// its file deleted.
#[test]
fn the_spiffe_bundle_follows_rotation_with_a_rising_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let c = config(tmp.path(), &[ES256, RS256, EDDSA]);
    let issuer = Issuer::open(&c, tmp.path(), clock.clone()).unwrap();
    let first = bundle(&issuer, &[ES256]);
    assert_eq!(first["spiffe_refresh_hint"], 300);
    assert_eq!(first["spiffe_sequence"], NOW);
    let keys = first["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the active and next ES256 keys, no RS256 or EdDSA key: {first}");
    for key in keys {
        assert_eq!(key["use"], "jwt-svid");
        assert_eq!(key["kty"], "EC");
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
        assert!(key.get("alg").is_none(), "no member SPIFFE does not define: {key}");
    }
    let both: Value = bundle(&issuer, &[ES256, RS256]);
    assert_eq!(both["keys"].as_array().unwrap().len(), 4);
    assert!(bundle(&issuer, &[]).get("keys").is_some_and(|k| k.as_array().unwrap().is_empty()));

    clock.advance(86_400);
    let grace = Duration::from_secs(600);
    rotate(&c, tmp.path(), clock.clone(), grace).unwrap();
    issuer.reload().unwrap();
    let rotated = bundle(&issuer, &[ES256]);
    assert_eq!(rotated["spiffe_sequence"], NOW + 86_400, "the new next key changed the bundle");
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 3);
    assert_eq!(
        rotated["keys"].as_array().unwrap()[..2],
        first["keys"].as_array().unwrap()[..],
        "keys keep their place when their state changes"
    );

    clock.advance(600);
    let dropped = bundle(&issuer, &[ES256]);
    assert_eq!(dropped["keys"].as_array().unwrap().len(), 2, "the retired key left at publish_until");
    assert_eq!(dropped["spiffe_sequence"], NOW + 86_400 + 600);

    clock.advance(5);
    rotate(&c, tmp.path(), clock.clone(), grace).unwrap();
    issuer.reload().unwrap();
    let again = bundle(&issuer, &[ES256]);
    assert_eq!(again["spiffe_sequence"], NOW + 86_400 + 605, "deleting the file did not take it back");
}
