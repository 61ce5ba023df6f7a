//! RFC 7662 token introspection of Tessera-issued JWTs, for relying services: is this
//! token one Tessera issued, still valid, and not revoked? Only the HTTP edge
//! (`POST /v1/introspect`) speaks the wire format; this module decides.
//!
//! - The caller is a client authenticated by a token Tessera issued it for one of the
//!   `jwt` targets `introspection.clients` names (verified like admin tokens: issuer,
//!   audience, algorithm, lifetime, `typ: JWT`), itself not revoked.
//! - The token asked about is verified with the issuer's keys, parsed once per key set
//!   (a rotation parses them again): `iss` this issuer, `aud` one of the JWT targets',
//!   `typ: JWT`, signed with one of the issuer's algorithms, lifetime at most the longest
//!   JWT target's `max_ttl`, not expired (no leeway on `exp`). Then it must not be revoked:
//!   by its `sub` (identity and glob revocations), its fingerprint (issued-token
//!   revocations), or as one of the tokens a rule, source or attributes revocation was
//!   found to name in the audit store ([`RevokedTokens`]). No store is queried here.
//! - Any failure is `active: false`, whatever the reason (RFC 7662 §2.2): the reason goes to
//!   the debug log only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use tessera_adapters::jwt::{
    Algorithm, HeaderRule, IssuerRule, JwtPolicy, KeySet, VerifiedClaims, verify_with_keys,
};
use tessera_adapters::{Clock, CredentialTarget, Signer, secret};

use crate::config::{ConfigError, ConfigErrors, LoadedConfig};
use crate::exchange::Pipeline;
use crate::issuer::Issuer;
use crate::mapping::glob::Pattern;
use crate::revocation::{Matcher, RevocationSet, RevokedTokens};

/// The `typ` Tessera's signer writes.
const TOKEN_TYP: &str = "JWT";
/// Skew allowed on `iat`/`nbf` between replicas; `exp` gets none (checked apart).
const LEEWAY: Duration = Duration::from_secs(30);

/// A JWKS document and the keys parsed from it.
type ParsedKeys = Arc<(Arc<[u8]>, KeySet)>;

/// See the module documentation.
pub struct Introspection {
    issuer: Arc<Issuer>,
    clock: Arc<dyn Clock>,
    /// One policy per client target.
    clients: Vec<JwtPolicy>,
    /// Tessera JWTs of every target that issues them; `None` with no such target.
    tokens: Option<JwtPolicy>,
    algorithms: Vec<Algorithm>,
    /// The JWKS document last parsed and its keys.
    keys: ArcSwapOption<(Arc<[u8]>, KeySet)>,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection").field("clients", &self.clients.len()).finish_non_exhaustive()
    }
}

/// Why a client or a token was not accepted: for the log, never for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is revoked")]
    Revoked,
    #[error("Tessera's key set could not be read: {0}")]
    Keys(String),
    #[error("no target issues Tessera JWTs")]
    NoJwtTargets,
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "TS-INTROSPECT-INVALID",
            Self::Expired => "TS-INTROSPECT-EXPIRED",
            Self::Revoked => "TS-INTROSPECT-REVOKED",
            Self::Keys(_) => "TS-INTROSPECT-KEYS",
            Self::NoJwtTargets => "TS-INTROSPECT-NO-JWT-TARGETS",
        }
    }
}

/// What revocations say, at one instant.
#[derive(Debug)]
pub struct RevocationView<'a> {
    pub set: &'a RevocationSet,
    pub tokens: &'a RevokedTokens,
    pub now_ms: i64,
}

impl RevocationView<'_> {
    /// Whether a revocation in force names the token with subject `sub` and `fingerprint`.
    pub fn names(&self, sub: &str, fingerprint: &str) -> bool {
        self.set.all().iter().filter(|r| r.in_force(self.now_ms)).any(|r| match &r.matcher {
            Matcher::Identity { id } => id == sub,
            Matcher::IdentityGlob { pattern } => Pattern::parse(pattern).is_ok_and(|p| p.matches(sub)),
            Matcher::IssuedToken { fingerprint: f } => f == fingerprint,
            Matcher::Rule { .. }
            | Matcher::Source { .. }
            | Matcher::Attributes { .. }
            | Matcher::Subject { .. }
            | Matcher::SubjectJti { .. } => self.tokens.contains(&r.id, fingerprint),
        })
    }
}

fn algorithm(alg: tessera_adapters::target::SigningAlgorithm) -> Option<Algorithm> {
    Algorithm::from_name(alg.as_str())
}

impl Introspection {
    /// Build what `introspection` asks for; `None` when it is not set. The config check
    /// made sure each client names a `jwt` target.
    pub fn build(
        config: &LoadedConfig,
        issuer: &Arc<Issuer>,
        pipeline: &Pipeline,
        clock: &Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigErrors> {
        let Some(section) = &config.config.introspection else { return Ok(None) };
        let targets: Vec<&Arc<dyn CredentialTarget>> = pipeline.targets().collect();
        let issuer_rule = || IssuerRule::OneOf(vec![issuer.url().to_string()]);
        let mut errors = Vec::new();
        let mut clients = Vec::new();
        for client in &section.value.clients.value {
            let error = |message: String| ConfigError::at(&config.path, &client.referenced, message);
            let built = targets.iter().find(|t| t.name() == client.value);
            let Some((jwt, max_ttl)) = built.and_then(|t| t.issued_jwt().map(|j| (j, t.max_ttl()))) else {
                errors
                    .push(error(format!("introspection.clients: `{}` is not a `jwt` target", client.value)));
                continue;
            };
            let policy = algorithm(jwt.algorithm)
                .ok_or_else(|| format!("algorithm {} cannot be verified", jwt.algorithm.as_str()))
                .and_then(|alg| {
                    JwtPolicy::with_rules(
                        issuer_rule(),
                        HeaderRule::Typ(TOKEN_TYP),
                        vec![jwt.audience],
                        vec![alg],
                        LEEWAY,
                        max_ttl,
                    )
                    .map_err(|e| e.message)
                });
            match policy {
                Ok(p) => clients.push(p),
                Err(message) => {
                    errors.push(error(format!("introspection.clients: `{}`: {message}", client.value)))
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let jwt_targets: Vec<_> =
            targets.iter().filter_map(|t| t.issued_jwt().map(|j| (j, t.max_ttl()))).collect();
        let algorithms: Vec<Algorithm> =
            Signer::algorithms(issuer.as_ref()).into_iter().filter_map(algorithm).collect();
        let token_algorithms: Vec<Algorithm> =
            jwt_targets.iter().filter_map(|(j, _)| algorithm(j.algorithm)).collect();
        let tokens = match jwt_targets.iter().map(|(_, ttl)| *ttl).max() {
            None => None,
            Some(max_ttl) => JwtPolicy::with_rules(
                issuer_rule(),
                HeaderRule::Typ(TOKEN_TYP),
                jwt_targets.iter().map(|(j, _)| j.audience.clone()).collect(),
                token_algorithms,
                LEEWAY,
                max_ttl,
            )
            .ok(),
        };
        Ok(Some(Self {
            issuer: Arc::clone(issuer),
            clock: Arc::clone(clock),
            clients,
            tokens,
            algorithms,
            keys: ArcSwapOption::empty(),
        }))
    }

    /// The issuer's keys, parsed again only when it serves another key set.
    fn keys(&self) -> Result<ParsedKeys, Refused> {
        let jwks = self.issuer.jwks_json();
        if let Some(cached) = self.keys.load_full().filter(|cached| Arc::ptr_eq(&cached.0, &jwks)) {
            return Ok(cached);
        }
        let keys = KeySet::from_json(&jwks, &self.algorithms).map_err(|e| Refused::Keys(e.to_string()))?;
        let fresh = Arc::new((jwks, keys));
        self.keys.store(Some(Arc::clone(&fresh)));
        Ok(fresh)
    }

    /// `token` verified by `policy`, unexpired (no leeway) and not revoked.
    fn check(
        &self,
        token: &str,
        policy: &JwtPolicy,
        revocations: &RevocationView<'_>,
    ) -> Result<VerifiedClaims, Refused> {
        let keys = self.keys()?;
        let now = self.clock.now();
        let claims =
            verify_with_keys(token, policy, &keys.1, now).map_err(|e| Refused::Invalid(e.to_string()))?;
        if claims.expires_at() <= now {
            return Err(Refused::Expired);
        }
        let sub = claims.required_str("sub").map_err(|e| Refused::Invalid(e.to_string()))?;
        if revocations.names(sub, &secret::fingerprint(token.as_bytes())) {
            return Err(Refused::Revoked);
        }
        Ok(claims)
    }

    /// The client a token authenticates: its `sub`.
    pub fn client(&self, token: &str, revocations: &RevocationView<'_>) -> Result<String, Refused> {
        let mut last = Refused::Invalid("no client target".into());
        for policy in &self.clients {
            match self.check(token, policy, revocations) {
                Ok(claims) => {
                    return claims
                        .required_str("sub")
                        .map(str::to_owned)
                        .map_err(|e| Refused::Invalid(e.to_string()));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// RFC 7662 §2.2: the response members of an active token, or why it is not.
    pub fn introspect(
        &self,
        token: &str,
        revocations: &RevocationView<'_>,
    ) -> Result<Map<String, Value>, Refused> {
        let policy = self.tokens.as_ref().ok_or(Refused::NoJwtTargets)?;
        let claims = self.check(token, policy, revocations)?;
        Ok(active(&claims))
    }
}

/// The members of an active answer, from the verified claims.
fn active(claims: &VerifiedClaims) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    for name in ["sub", "iss", "jti", "scope", "nbf"] {
        if let Some(value) = claims.claims().get(name).filter(|v| !v.is_null()) {
            out.insert(name.into(), value.clone());
        }
    }
    let audiences = claims.audiences();
    out.insert(
        "aud".into(),
        match audiences {
            [one] => Value::from(one.as_str()),
            many => Value::from(many.to_vec()),
        },
    );
    out.insert("exp".into(), Value::from(claims.expires_at()));
    if let Some(iat) = claims.issued_at() {
        out.insert("iat".into(), Value::from(iat));
    }
    // The client the token was issued to: its own `client_id` claim where a rule set one,
    // else the workload it was issued for.
    let client_id =
        claims.claims().get("client_id").filter(|v| v.is_string()).or_else(|| claims.claims().get("sub"));
    if let Some(client_id) = client_id {
        out.insert("client_id".into(), client_id.clone());
    }
    out.insert("token_type".into(), Value::from("Bearer"));
    out
}
