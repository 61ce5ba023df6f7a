//! Test helpers for JWT sources: real keys made with aws-lc-rs, tokens signed by hand, a
//! loopback HTTP server that counts requests, and [`SourceFixture`], what every source
//! kind's `tests.rs` starts from.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::build::{BuildContext, BuildError, BuildSource};
use crate::clock::ManualClock;
use crate::config::kind_config;
use crate::identity::Identity;
use crate::observe::NoObserver;
use crate::secret::Secret;
use crate::source::{IdentitySource, SourceError, SubjectToken, SubjectTokenType};
use crate::target::{SignError, Signer, SigningAlgorithm};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `{"keys": [...]}`
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// RSA generation is slow; tests share two keys.
fn rsa_pair(which: usize) -> Arc<RsaKeyPair> {
    static KEYS: [OnceLock<Arc<RsaKeyPair>>; 2] = [OnceLock::new(), OnceLock::new()];
    Arc::clone(KEYS[which].get_or_init(|| Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())))
}

enum Pair {
    Rsa(Arc<RsaKeyPair>),
    Ec(EcdsaKeyPair, usize),
    Ed(Ed25519KeyPair),
}

pub struct TestKey {
    pub kid: String,
    pair: Pair,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        Self { kid: kid.into(), pair: Pair::Rsa(rsa_pair(0)) }
    }

    /// A second RSA key, different from [`TestKey::rsa`]'s.
    pub fn rsa_other(kid: &str) -> Self {
        Self { kid: kid.into(), pair: Pair::Rsa(rsa_pair(1)) }
    }

    pub fn p256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self { kid: kid.into(), pair: Pair::Ec(pair, 32) }
    }

    pub fn p384(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        Self { kid: kid.into(), pair: Pair::Ec(pair, 48) }
    }

    pub fn ed25519(kid: &str) -> Self {
        Self { kid: kid.into(), pair: Pair::Ed(Ed25519KeyPair::generate().unwrap()) }
    }

    pub fn rsa_modulus(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(pair) => pair.public_key().modulus().big_endian_without_leading_zero().to_vec(),
            _ => panic!("not an RSA key"),
        }
    }

    /// The public JWK, with `kid` and `use: sig`.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "kid": self.kid, "use": "sig",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair, width) => {
                let point = pair.public_key().as_ref();
                let crv = if *width == 32 { "P-256" } else { "P-384" };
                json!({
                    "kty": "EC", "kid": self.kid, "use": "sig", "crv": crv,
                    "x": b64(&point[1..1 + width]),
                    "y": b64(&point[1 + width..]),
                })
            }
            Pair::Ed(pair) => json!({
                "kty": "OKP", "kid": self.kid, "use": "sig", "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        }
    }

    /// Sign `input` as `alg` says (the key must fit).
    pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => panic!("RSA key cannot sign {alg}"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, input, &mut sig).unwrap();
                sig
            }
            Pair::Ec(pair, _) => pair.sign(&rng, input).unwrap().as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(input).as_ref().to_vec(),
        }
    }

    /// A token with header `{"alg": alg, "kid": kid}` plus `extra_header`, signed.
    pub fn token(&self, alg: &str, claims: &Value) -> String {
        self.token_with(alg, &json!({}), claims)
    }

    pub fn token_with(&self, alg: &str, extra_header: &Value, claims: &Value) -> String {
        let mut header = json!({ "alg": alg, "kid": self.kid });
        for (k, v) in extra_header.as_object().unwrap() {
            header[k] = v.clone();
        }
        sign_raw(&header.to_string(), &claims.to_string(), |input| self.sign(alg, input))
    }
}

/// A token from header and payload JSON text as given (so tests can write duplicate
/// members), signed by `sign`.
pub fn sign_raw(header: &str, payload: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

#[derive(Clone)]
struct Route {
    status: u16,
    body: Vec<u8>,
    /// Send the body without Content-Length, ended by closing the connection.
    unframed: bool,
    delay: Duration,
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
}

/// A loopback HTTP/1.1 server answering fixed responses per path and counting requests.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let route = {
                        let mut state = state.lock().unwrap();
                        *state.hits.entry(path.clone()).or_default() += 1;
                        state.routes.get(&path).cloned()
                    };
                    let route = route.unwrap_or(Route {
                        status: 404,
                        body: b"{}".to_vec(),
                        unframed: false,
                        delay: Duration::ZERO,
                    });
                    tokio::time::sleep(route.delay).await;
                    let mut response =
                        format!("HTTP/1.1 {} Test\r\nContent-Type: application/json\r\n", route.status);
                    if route.status == 302 {
                        response.push_str("Location: https://elsewhere.example/jwks\r\n");
                    }
                    if !route.unframed {
                        response.push_str(&format!("Content-Length: {}\r\n", route.body.len()));
                    }
                    response.push_str("Connection: close\r\n\r\n");
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.write_all(&route.body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:port` (no trailing slash).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn set(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.set_route(path, Route { status, body: body.into(), unframed: false, delay: Duration::ZERO });
    }

    pub fn set_unframed(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.set_route(path, Route { status: 200, body: body.into(), unframed: true, delay: Duration::ZERO });
    }

    pub fn set_delayed(&self, path: &str, body: impl Into<Vec<u8>>, delay: Duration) {
        self.set_route(path, Route { status: 200, body: body.into(), unframed: false, delay });
    }

    fn set_route(&self, path: &str, route: Route) {
        self.state.lock().unwrap().routes.insert(path.to_string(), route);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
}

/// An HTTP client like the broker's: no redirects, and no proxy from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

/// A signer for build contexts of sources, which never sign.
#[derive(Debug)]
pub struct NoSigner;

impl Signer for NoSigner {
    fn issuer(&self) -> &str {
        "https://tessera.test"
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        Vec::new()
    }

    fn sign(
        &self,
        _: SigningAlgorithm,
        _: &serde_json::Map<String, Value>,
    ) -> Result<Secret<String>, SignError> {
        Err(SignError::Crypto)
    }
}

/// A source's build context: `clock`, the test HTTP client, a signer that never signs, and
/// relative paths resolved against `base_dir`.
pub fn context(clock: Arc<ManualClock>, base_dir: PathBuf) -> BuildContext {
    BuildContext {
        clock,
        http: http_client(),
        signer: Arc::new(NoSigner),
        base_dir,
        observer: Arc::new(NoObserver),
        token_cache: Default::default(),
    }
}

/// A temporary directory for source configs, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-src-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A directory holding `jwks.json` with `keys`.
    pub fn with_jwks(keys: &[Value]) -> Self {
        let dir = Self::new();
        dir.write("jwks.json", &jwks(keys));
        dir
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.0.join(name), content).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `base` with the members of `changes` set, and those set to null removed.
pub fn merged(mut base: Value, changes: &Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// A presented JWT.
pub fn subject_jwt(token: String) -> SubjectToken {
    SubjectToken { token_type: SubjectTokenType::Jwt, value: Secret::new(token) }
}

/// The time every [`SourceFixture`]'s clock starts at: 2023-11-14T22:13:20Z.
pub const NOW: i64 = 1_700_000_000;

/// One JWT source kind under unit test: its `sources:` entry, one signing key published
/// alone in `jwks.json` of a directory of its own (entries name it with `jwks_file`), and a
/// manual clock at [`NOW`]. `C` is the kind's config.
pub struct SourceFixture<C> {
    pub key: TestKey,
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    kind: &'static str,
    alg: &'static str,
    header: Value,
    entry: fn(Value) -> Value,
    config: PhantomData<fn() -> C>,
}

impl<C: BuildSource + DeserializeOwned> SourceFixture<C> {
    /// Kind `kind`, whose entry with `extra` merged in is `entry(extra)`; tokens are signed
    /// by `key` with `alg`.
    pub fn new(kind: &'static str, key: TestKey, alg: &'static str, entry: fn(Value) -> Value) -> Self {
        let dir = TempDir::with_jwks(&[key.jwk()]);
        Self {
            key,
            dir,
            clock: Arc::new(ManualClock::new(NOW)),
            kind,
            alg,
            header: json!({}),
            entry,
            config: PhantomData,
        }
    }

    /// Tokens carry `header`'s members beside `alg` and `kid`.
    pub fn with_header(mut self, header: Value) -> Self {
        self.header = header;
        self
    }

    /// The entry with `extra` merged in, read as the kind's config.
    pub fn config(&self, extra: Value) -> Result<C, serde_json::Error> {
        kind_config(self.kind, (self.entry)(extra))
    }

    pub fn build(&self, extra: Value) -> Result<Arc<dyn IdentitySource>, BuildError> {
        let config = self.config(extra).map_err(|e| BuildError::new(e.to_string()))?;
        config.build(&context(Arc::clone(&self.clock), self.dir.0.clone()))
    }

    pub fn source(&self, extra: Value) -> Arc<dyn IdentitySource> {
        self.build(extra).unwrap()
    }

    /// Holds the kind's [`IdShape`](crate::identity::IdShape) of the config with `extra` to
    /// the id it really gave `identity`.
    pub fn assert_id_shape(&self, extra: Value, identity: &Identity) {
        let shape = self.config(extra).unwrap().id_shape().expect("the config has an id shape");
        assert_eq!(shape.render(identity).as_deref(), Some(identity.id.as_str()), "{shape:?}");
    }

    /// The key a build with `extra` fails on.
    pub fn field(&self, extra: Value) -> Option<&'static str> {
        self.build(extra).unwrap_err().field
    }

    /// A token of `claims`, signed by the fixture's key.
    pub fn token(&self, claims: &Value) -> String {
        self.key.token_with(self.alg, &self.header, claims)
    }

    /// Present `claims`, signed by the fixture's key, to `source`.
    pub async fn verify(
        &self,
        source: &Arc<dyn IdentitySource>,
        claims: &Value,
    ) -> Result<Identity, SourceError> {
        let token = self.token(claims);
        source.verify(&subject_jwt(token)).await.map(|v| v.identity().clone())
    }

    /// As [`verify`](Self::verify), with `header`'s members instead of the fixture's.
    pub async fn verify_with(
        &self,
        source: &Arc<dyn IdentitySource>,
        header: &Value,
        claims: &Value,
    ) -> Result<Identity, SourceError> {
        let token = self.key.token_with(self.alg, header, claims);
        source.verify(&subject_jwt(token)).await.map(|v| v.identity().clone())
    }
}
