//! What every JWT source kind shares: the config keys common to all of them
//! ([`JwtSourceSettings`], flattened into each kind's config), and the built source
//! ([`JwtSource`]) that verifies with the shared rules, hands the verified claims to the
//! kind's [`ClaimsMapper`] and adds the config's own `attributes:`.
//!
//! A kind folder then holds only what is particular to its platform: its config keys and
//! their checks, where its keys live by default, and how its claims become an identity.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::attributes::AttributeMapping;
use super::jwks::{DEFAULT_MAX_STALE, DEFAULT_REFRESH_INTERVAL};
use super::keys::KeyUse;
use super::policy::{DEFAULT_LEEWAY, HeaderRule, IssuerRule};
use super::token_cache::TokenDigest;
use super::{Algorithm, JwksCache, JwksLocation, JwksOptions, JwtPolicy, JwtVerifier, VerifiedClaims};
use crate::build::{BuildContext, BuildError};
use crate::config::duration;
use crate::identity::Identity;
use crate::source::{
    FetchFailure, IdentitySource, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity,
};

/// The keys every JWT source kind accepts, beside its own (flattened: they are written at
/// the same level as `name` and `type`). Defaults that differ by kind (`algorithms`,
/// `max_token_lifetime`, where keys come from) are the kind's, given at build.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtSourceSettings {
    /// Accepted `aud` values; a token must name at least one. Required, non-empty.
    pub audiences: Vec<String>,
    /// Pin the key-set URL (skipping discovery, or replacing the kind's default).
    /// Exclusive with `jwks_file`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A static JWKS file, read when the source is built, never refreshed; relative paths
    /// resolve against the config file's directory. Exclusive with `jwks_uri`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms. Default: the kind's. `none` and `HS*` are refused.
    #[serde(default)]
    pub algorithms: Option<Vec<Algorithm>>,
    /// Longest accepted token lifetime (`exp` minus `iat`, else `nbf`, else now).
    /// Default: the kind's.
    #[serde(default, with = "duration::option")]
    pub max_token_lifetime: Option<Duration>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Default `30s`, at most `60s`.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// Allow `http://` key URLs on loopback hosts only; for tests. Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// How often keys are refetched in the background. Default `5m`, at least `10s`.
    #[serde(default = "default_refresh_interval", with = "duration")]
    pub jwks_refresh_interval: Duration,
    /// How long the last fetched keys keep serving while the issuer is unreachable.
    /// Default `24h`, at least `jwks_refresh_interval`.
    #[serde(default = "default_max_stale", with = "duration")]
    pub jwks_max_stale: Duration,
    /// Further attributes mapped from verified claims (`team: claims.labels.team`).
    /// Default: none. See [`AttributeMapping`].
    #[serde(default)]
    pub attributes: AttributeMapping,
}

fn default_leeway() -> Duration {
    DEFAULT_LEEWAY
}

fn default_refresh_interval() -> Duration {
    DEFAULT_REFRESH_INTERVAL
}

fn default_max_stale() -> Duration {
    DEFAULT_MAX_STALE
}

/// What a kind fixes when it builds its verifier from [`JwtSourceSettings`].
#[derive(Debug, Clone)]
pub struct KindRules<'a> {
    /// The source's name, for logs and the key cache.
    pub name: &'a str,
    pub issuer: IssuerRule,
    pub headers: HeaderRule,
    /// Where keys come from when neither `jwks_uri` nor `jwks_file` is set. `None`: one
    /// of them is required.
    pub default_keys: Option<JwksLocation>,
    /// Which keys of the key document verify tokens.
    pub key_use: KeyUse,
    /// What `algorithms` defaults to.
    pub default_algorithms: &'a [Algorithm],
    /// The algorithms the platform may sign with at all; a config naming another is
    /// refused. `None`: any Tessera verifies.
    pub allowed_algorithms: Option<&'a [Algorithm]>,
    /// What `max_token_lifetime` defaults to.
    pub default_max_lifetime: Duration,
}

impl<'a> KindRules<'a> {
    /// The rules of most OIDC-style platforms: one issuer (or several), keys found by
    /// discovery at `discovery_issuer`, any header, signing keys.
    pub fn discovery(
        name: &'a str,
        issuers: Vec<String>,
        discovery_issuer: String,
        default_algorithms: &'a [Algorithm],
        default_max_lifetime: Duration,
    ) -> Self {
        Self {
            name,
            issuer: IssuerRule::OneOf(issuers),
            headers: HeaderRule::Open,
            default_keys: Some(JwksLocation::Discovery { issuer: discovery_issuer }),
            key_use: KeyUse::Sig,
            default_algorithms,
            allowed_algorithms: None,
            default_max_lifetime,
        }
    }
}

impl JwtSourceSettings {
    /// The algorithms this config accepts, after the kind's default and restriction.
    pub fn algorithms(&self, rules: &KindRules<'_>) -> Result<Vec<Algorithm>, BuildError> {
        let algorithms = self.algorithms.clone().unwrap_or_else(|| rules.default_algorithms.to_vec());
        if let Some(allowed) = rules.allowed_algorithms
            && let Some(bad) = algorithms.iter().find(|a| !allowed.contains(a))
        {
            let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
            return Err(BuildError::field(
                "algorithms",
                format!(
                    "algorithm `{bad}` is not allowed for this source type; allowed: {}",
                    names.join(", ")
                ),
            ));
        }
        Ok(algorithms)
    }

    /// Check the common keys and build the verifier: policy, key location, key cache.
    /// Errors name the config key at fault.
    pub fn verifier(&self, rules: KindRules<'_>, cx: &BuildContext) -> Result<JwtVerifier, BuildError> {
        let policy = JwtPolicy::with_rules(
            rules.issuer.clone(),
            rules.headers,
            self.audiences.clone(),
            self.algorithms(&rules)?,
            self.leeway,
            self.max_token_lifetime.unwrap_or(rules.default_max_lifetime),
        )?;
        self.attributes.check()?;
        let location = match (&self.jwks_uri, &self.jwks_file, rules.default_keys) {
            (Some(_), Some(_), _) => {
                return Err(BuildError::field(
                    "jwks_file",
                    "jwks_uri and jwks_file are exclusive: name at most one",
                ));
            }
            (Some(uri), None, _) => JwksLocation::Uri(uri.clone()),
            (None, Some(path), _) => JwksLocation::File(cx.resolve(path)),
            (None, None, Some(default)) => default,
            (None, None, None) => {
                return Err(BuildError::field("jwks_uri", "name where the keys are: jwks_uri or jwks_file"));
            }
        };
        if self.insecure_http {
            tracing::warn!(source = %rules.name, "insecure_http is on: key sets may be fetched over plain http from loopback");
        }
        let options = JwksOptions {
            insecure_http: self.insecure_http,
            refresh_interval: self.jwks_refresh_interval,
            max_stale: self.jwks_max_stale,
            key_use: rules.key_use,
            observer: Arc::clone(&cx.observer),
            ..JwksOptions::default()
        };
        let keys = JwksCache::new(
            rules.name.to_owned(),
            location,
            options,
            policy.algorithms(),
            cx.http.clone(),
            Arc::clone(&cx.clock),
        )?;
        Ok(JwtVerifier::new(policy, keys, Arc::clone(&cx.clock)).with_token_cache(cx.token_cache))
    }
}

/// How one kind turns verified claims into its identity. Runs only on claims that passed
/// every shared rule; refusals particular to the platform (a legacy token, an owner not
/// on the allow-list) are its errors.
pub trait ClaimsMapper: std::fmt::Debug + Send + Sync + 'static {
    /// The adapter kind, as written in `type:`.
    const KIND: &'static str;

    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError>;

    /// [`IdentitySource::sketch`]: `base` has `provider`, `source`, `issuer` and `subject`
    /// set; the kind derives `id` and what else its subject names, as `identity` does.
    fn sketch(&self, base: Identity) -> Result<Identity, String>;
}

/// An identity with only `provider`, `source`, `issuer` and `subject` (and `id` the
/// subject), for [`ClaimsMapper::sketch`].
pub fn sketch_base(kind: &str, source: &str, issuer: &str, subject: &str) -> Identity {
    Identity {
        id: subject.to_owned(),
        provider: kind.to_owned(),
        source: source.to_owned(),
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        tenant: None,
        namespace: None,
        name: None,
        instance: None,
        region: None,
        attributes: Default::default(),
        withheld: Default::default(),
        expires_at: 0,
    }
}

/// An identity with the fields every JWT kind fills alike: `provider`, `source`, `issuer`
/// (the verified `iss`, empty when the policy requires none), `expires_at`; the kind
/// fills the rest.
pub fn identity_base(
    kind: &str,
    source: &str,
    claims: &VerifiedClaims,
    id: String,
    subject: String,
) -> Identity {
    let mut identity = sketch_base(kind, source, claims.issuer().unwrap_or_default(), &subject);
    identity.id = id;
    identity.expires_at = claims.expires_at();
    identity
}

/// A built JWT source of kind `M::KIND`.
#[derive(Debug)]
pub struct JwtSource<M> {
    name: String,
    verifier: JwtVerifier,
    attributes: AttributeMapping,
    /// Only `urn:ietf:params:oauth:token-type:jwt`, not `id_token` as well.
    jwt_only: bool,
    mapper: M,
}

impl<M: ClaimsMapper> JwtSource<M> {
    pub(crate) fn new(name: String, verifier: JwtVerifier, attributes: AttributeMapping, mapper: M) -> Self {
        Self { name, verifier, attributes, jwt_only: false, mapper }
    }

    /// Accept only the JWT token type: for credentials that are not OIDC ID tokens.
    pub(crate) fn jwt_only(mut self) -> Self {
        self.jwt_only = true;
        self
    }

    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }
}

impl<M: ClaimsMapper> JwtSource<M> {
    /// Every check, from the token's shape to the kind's own policy.
    async fn verify_afresh(&self, token: &str) -> Result<(VerifiedClaims, VerifiedIdentity), SourceError> {
        let claims = self.verifier.verify(token).await?;
        let mut identity = self.mapper.identity(&self.name, &claims)?;
        self.attributes.apply(&claims, &mut identity);
        Ok((claims, VerifiedIdentity::new(identity)))
    }
}

#[async_trait]
impl<M: ClaimsMapper> IdentitySource for JwtSource<M> {
    fn kind(&self) -> &'static str {
        M::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, token_type: SubjectTokenType) -> bool {
        if self.jwt_only { token_type == SubjectTokenType::Jwt } else { token_type.is_jwt() }
    }

    /// The policy's issuers; empty when tokens carry none, so the broker routes JWTs to
    /// this source by token type.
    fn issuers(&self) -> Vec<String> {
        self.verifier.policy().issuers().to_vec()
    }

    async fn verify(&self, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError> {
        if !self.accepts(token.token_type) {
            return Err(SourceError::UnsupportedTokenType);
        }
        let value = token.value.expose();
        let Some(cache) = self.verifier.token_cache() else {
            return self.verify_afresh(value).await.map(|(_, verified)| verified);
        };
        let digest = TokenDigest::of(value);
        if let Some(hit) = cache.get(&digest, self.verifier.now()) {
            // Only a token that verified before gets here: its keys have been fetched.
            let keys = self.verifier.keys().keys().await?;
            match hit.still_holds(&keys) {
                Some(verified) => return Ok(verified),
                None => cache.remove(&digest),
            }
        }
        let (claims, verified) = self.verify_afresh(value).await?;
        cache.insert(digest, &claims, &verified, self.verifier.now());
        Ok(verified)
    }

    fn sketch(&self, subject: &str) -> Result<Identity, String> {
        let issuers = self.issuers();
        let issuer = issuers.first().map_or("", String::as_str);
        self.mapper.sketch(sketch_base(M::KIND, &self.name, issuer, subject))
    }

    fn ready(&self) -> bool {
        self.verifier.is_ready()
    }

    fn last_fetch_failure(&self) -> Option<FetchFailure> {
        self.verifier.keys().last_failure()
    }

    async fn probe(&self) -> Result<String, String> {
        self.verifier.probe().await
    }
}
