//! What the target kinds' unit tests share: a signer whose "token" is the claim set as
//! JSON (so tests read back what was signed), a build context at a fixed time, and grants
//! for a sample identity.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::build::BuildContext;
use crate::clock::ManualClock;
use crate::identity::Identity;
use crate::secret::Secret;
use crate::source::VerifiedIdentity;
use crate::target::{Grant, SignError, Signer, SigningAlgorithm};

/// The fixed time of every test context.
pub const NOW: i64 = 1_700_000_000;

#[derive(Debug)]
pub struct JsonSigner(pub Vec<SigningAlgorithm>);

impl Signer for JsonSigner {
    fn issuer(&self) -> &str {
        "https://tessera.test"
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.0.clone()
    }

    fn sign(&self, alg: SigningAlgorithm, claims: &Map<String, Value>) -> Result<Secret<String>, SignError> {
        if !self.0.contains(&alg) {
            return Err(SignError::NoActiveKey(alg.as_str()));
        }
        serde_json::to_string(claims).map(Secret::new).map_err(|_| SignError::Encoding)
    }

    /// The claim set as JSON with the header's `typ` beside it: `{"typ": ..., "claims": ...}`.
    fn sign_typed(
        &self,
        alg: SigningAlgorithm,
        typ: &'static str,
        claims: &Map<String, Value>,
    ) -> Result<Secret<String>, SignError> {
        if !self.0.contains(&alg) {
            return Err(SignError::NoActiveKey(alg.as_str()));
        }
        let token = serde_json::json!({ "typ": typ, "claims": claims });
        Ok(Secret::new(token.to_string()))
    }
}

/// A build context at [`NOW`] whose issuer has keys for `algs`.
pub fn context(algs: &[SigningAlgorithm]) -> BuildContext {
    BuildContext {
        clock: Arc::new(ManualClock::new(NOW)),
        http: reqwest::Client::new(),
        signer: Arc::new(JsonSigner(algs.to_vec())),
        base_dir: PathBuf::from("."),
        observer: std::sync::Arc::new(crate::observe::NoObserver),
        token_cache: Default::default(),
    }
}

/// `base` (a target entry) with each member of `extra` set over it.
pub fn entry(mut base: Value, extra: Value) -> Value {
    if let (Some(entry), Value::Object(extra)) = (base.as_object_mut(), extra) {
        entry.extend(extra);
    }
    base
}

/// `config` built in a context whose issuer has keys for every algorithm; a build error as
/// `field: message`.
pub fn build_all_algorithms(
    config: &dyn crate::build::BuildTarget,
) -> Result<Arc<dyn crate::target::CredentialTarget>, String> {
    config
        .build(&context(&SigningAlgorithm::ALL))
        .map_err(|e| format!("{}: {}", e.field.unwrap_or("-"), e.message))
}

/// A Kubernetes service account identity, `k8s://eks-prod/ns/payments/sa/api`.
pub fn identity(name: Option<&str>) -> Identity {
    Identity {
        id: "k8s://eks-prod/ns/payments/sa/api".into(),
        provider: "kubernetes".into(),
        source: "eks-prod".into(),
        issuer: "https://oidc.eks.example".into(),
        subject: "system:serviceaccount:payments:api".into(),
        tenant: Some("eks-prod".into()),
        namespace: Some("payments".into()),
        name: name.map(str::to_string),
        instance: None,
        region: None,
        attributes: BTreeMap::new(),
        withheld: Default::default(),
        expires_at: NOW + 600,
    }
}

/// A GitHub Actions workflow of `octo-org/payments`, `github://octo-org/payments`: every
/// workflow of the repository has this id, and its `name` is the workflow's.
pub fn workflow(name: &str) -> Identity {
    Identity {
        id: "github://octo-org/payments".into(),
        provider: "github_actions".into(),
        source: "github".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:octo-org/payments:ref:refs/heads/main".into(),
        tenant: Some("octo-org".into()),
        namespace: Some("octo-org/payments".into()),
        name: Some(name.into()),
        instance: Some("7001".into()),
        region: None,
        attributes: BTreeMap::from([("github.run_attempt".into(), "1".into())]),
        withheld: Default::default(),
        expires_at: NOW + 600,
    }
}

/// A grant of rule `rule-1` for `target`, with `params` (a JSON object) as its grant keys.
pub fn grant(identity: Identity, target: &str, scope: Option<&str>, ttl: Duration, params: Value) -> Grant {
    let Value::Object(params) = params else { panic!("params must be an object") };
    Grant::new(
        VerifiedIdentity::new(identity),
        "rule-1",
        target,
        scope.map(str::to_string),
        ttl,
        Map::new(),
        params.into_iter().collect(),
    )
}

/// The parts of a grant, for tests that change one at a time.
#[derive(Debug, Clone)]
pub struct GrantParts {
    pub identity: Identity,
    pub rule: &'static str,
    pub target: &'static str,
    pub scope: Option<&'static str>,
    pub ttl: Duration,
    pub claims: Value,
    pub params: Value,
}

impl GrantParts {
    /// These parts with `change` made.
    pub fn with(&self, change: impl FnOnce(&mut GrantParts)) -> GrantParts {
        let mut parts = self.clone();
        change(&mut parts);
        parts
    }

    pub fn grant(&self) -> Grant {
        let (Value::Object(claims), Value::Object(params)) = (self.claims.clone(), self.params.clone())
        else {
            panic!("claims and params must be objects")
        };
        Grant::new(
            VerifiedIdentity::new(self.identity.clone()),
            self.rule,
            self.target,
            self.scope.map(str::to_string),
            self.ttl,
            claims,
            params.into_iter().collect(),
        )
    }
}

/// The credential cache's key for a grant, as `key` computes it: each `changed` grant
/// (named by what was changed in `base`) has a key of its own, and each `same` grant has
/// `base`'s. An identical grant built again always has `base`'s.
pub fn assert_cache_keys(
    key: impl Fn(&GrantParts) -> [u8; 32],
    base: &GrantParts,
    changed: &[(&str, GrantParts)],
    same: &[(&str, GrantParts)],
) {
    let base_key = key(base);
    assert_eq!(key(&base.clone()), base_key, "an identical grant has the same key");
    let mut seen = std::collections::HashMap::from([(base_key, "the base grant")]);
    for (what, parts) in changed {
        if let Some(earlier) = seen.insert(key(parts), what) {
            panic!("changing the {what} left the key of {earlier}");
        }
    }
    for (what, parts) in same {
        assert_eq!(key(parts), base_key, "the {what} does not shape the request, so not the key");
    }
}

/// A loopback HTTP server answering the n-th request with `answers[n]` (status, body),
/// repeating the last, and keeping each request's head and body.
pub struct Scripted {
    pub url: String,
    pub count: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub async fn scripted_server(content_type: &'static str, answers: Vec<(u16, String)>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (seen, kept) = (Arc::clone(&count), Arc::clone(&requests));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answers.get(n).or(answers.last()).cloned().unwrap();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut read = 0;
                // Read the head and the body the Content-Length announces.
                loop {
                    let k = stream.read(&mut buf[read..]).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    read += k;
                    let text = String::from_utf8_lossy(&buf[..read]).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if read >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                kept.lock().unwrap().push(String::from_utf8_lossy(&buf[..read]).to_string());
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    Scripted { url, count, requests }
}
