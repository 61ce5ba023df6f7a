//! The credential-target contract: a target turns a [`Grant`] into an
//! [`IssuedCredential`]. Targets sign through the [`Signer`] the broker's issuer provides;
//! they never verify subject tokens.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::secret::Secret;
use crate::source::VerifiedIdentity;
pub use crate::targets::base::TargetBase;

/// What the mapping engine decided a verified identity may receive. A `Grant` can only be
/// made from a [`VerifiedIdentity`], so no target ever acts for an unverified caller; the
/// broker's mapping engine is the one place that makes them.
#[derive(Debug, Clone)]
pub struct Grant {
    identity: VerifiedIdentity,
    rule: String,
    target: String,
    scope: Option<String>,
    ttl: Duration,
    claims: serde_json::Map<String, serde_json::Value>,
    params: BTreeMap<String, serde_json::Value>,
    /// RFC 8693 delegation: the verified actor of the request, if it had one.
    actor: Option<VerifiedIdentity>,
    /// The `act` chain (RFC 8693 §4.1) the verified subject token already carried.
    prior_act: Option<serde_json::Value>,
}

impl Grant {
    /// Made by the mapping engine once a rule allows `identity` this target.
    /// `claims` and `params` are already rendered from the rule's templates.
    pub fn new(
        identity: VerifiedIdentity,
        rule: impl Into<String>,
        target: impl Into<String>,
        scope: Option<String>,
        ttl: Duration,
        claims: serde_json::Map<String, serde_json::Value>,
        params: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        Self {
            identity,
            rule: rule.into(),
            target: target.into(),
            scope,
            ttl,
            claims,
            params,
            actor: None,
            prior_act: None,
        }
    }

    /// The same grant for a delegated request (RFC 8693 §1.1): `actor` acts for the
    /// identity, and `prior_act` is the `act` chain (§4.1) the subject token already
    /// carried, checked by the broker. Made by the mapping engine only, once a rule allows
    /// delegation.
    #[must_use]
    pub fn with_delegation(
        mut self,
        actor: Option<VerifiedIdentity>,
        prior_act: Option<serde_json::Value>,
    ) -> Self {
        self.actor = actor;
        self.prior_act = prior_act;
        self
    }

    /// The verified actor acting for the identity (RFC 8693 `actor_token`), if any.
    pub fn actor(&self) -> Option<&Identity> {
        self.actor.as_ref().map(VerifiedIdentity::identity)
    }

    /// The RFC 8693 §4.1 `act` claim of what this grant issues, signed by `issuer`: the
    /// current actor outermost, `{"sub": <actor id>, "iss": <issuer>, "act": <prior>}`
    /// (the actor's id is in Tessera's namespace, like the token's own `sub`), or the
    /// prior chain alone when the request had no actor. `None` when neither.
    pub fn act_claim(&self, issuer: &str) -> Option<serde_json::Value> {
        let Some(actor) = self.actor() else { return self.prior_act.clone() };
        let mut act = serde_json::Map::new();
        act.insert("sub".into(), actor.id.as_str().into());
        act.insert("iss".into(), issuer.into());
        if let Some(prior) = &self.prior_act {
            act.insert("act".into(), prior.clone());
        }
        Some(serde_json::Value::Object(act))
    }

    pub fn identity(&self) -> &Identity {
        self.identity.identity()
    }

    pub fn verified(&self) -> &VerifiedIdentity {
        &self.identity
    }

    /// The name of the mapping rule that allowed this.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The configured target name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The scope granted, if the request named one or the rule grants one.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The lifetime the rule grants; targets cap it at their own maximum.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Extra claims for issued JWTs, rendered from the rule's templates.
    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.claims
    }

    /// Target-specific grant keys (`role_arn`, `session_name`, ...), rendered.
    pub fn params(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.params
    }

    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(serde_json::Value::as_str)
    }
}

/// What shapes the upstream request a target makes for a [`Grant`], written so that two
/// grants described alike get the same credential from upstream and two described apart
/// never share one. The broker's credential cache keys on its [`digest`](Self::digest);
/// see [`CredentialTarget::describe_request`].
///
/// It holds two parts:
/// - what every grant decides, filled in by [`new`](Self::new): the target, the rule, the
///   scope, the granted ttl, every rendered grant key and every rendered claim;
/// - what the target kind adds with [`with`](Self::with): each value of its upstream
///   request as it will be sent, defaults and caps applied (the AWS session name that
///   defaults to the identity's name, the session duration capped at the target's
///   maximum), and, where the request carries the identity (the `sub` of a JWT Tessera
///   presents or issues), the identity id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDescription {
    grant: serde_json::Map<String, serde_json::Value>,
    request: serde_json::Map<String, serde_json::Value>,
}

impl RequestDescription {
    /// The part every grant decides, with no target-specific value yet.
    pub fn new(grant: &Grant) -> Self {
        let mut part = serde_json::Map::new();
        part.insert("target".into(), grant.target().into());
        part.insert("rule".into(), grant.rule().into());
        part.insert("scope".into(), grant.scope().into());
        part.insert("ttl".into(), grant.ttl().as_secs().into());
        part.insert("params".into(), serde_json::Value::Object(grant.params().clone().into_iter().collect()));
        part.insert("claims".into(), serde_json::Value::Object(grant.claims().clone()));
        // Only a delegated grant has these, so other grants keep the keys they had.
        if let Some(actor) = grant.actor() {
            part.insert("actor".into(), actor.id.as_str().into());
        }
        if let Some(prior) = &grant.prior_act {
            part.insert("prior_act".into(), prior.clone());
        }
        Self { grant: part, request: serde_json::Map::new() }
    }

    /// Add a value of the upstream request, by the name the target gives it.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.request.insert(name.to_owned(), value.into());
        self
    }

    /// The target's part: the values added with [`with`](Self::with).
    pub fn request(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.request
    }

    /// The description as canonical JSON: `{"grant": {...}, "request": {...}}`, object
    /// members sorted by name at every level, no whitespace. Equal descriptions give equal
    /// bytes, and the encoding is unambiguous (every string is quoted and escaped).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"grant\":");
        canonical_object(&self.grant, &mut out);
        out.extend_from_slice(b",\"request\":");
        canonical_object(&self.request, &mut out);
        out.push(b'}');
        out
    }

    /// SHA-256 of [`canonical`](Self::canonical).
    pub fn digest(&self) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.canonical()).as_ref(),
        );
        digest
    }
}

/// `value` as JSON with object members sorted by name, whatever order the map keeps.
fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => canonical_object(map, out),
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        // Scalars have one spelling in serde_json's compact form.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn canonical_object(map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<u8>) {
    let mut members: Vec<(&String, &serde_json::Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(serde_json::Value::from(name.as_str()).to_string().as_bytes());
        out.push(b':');
        canonical_json(value, out);
    }
    out.push(b'}');
}

/// AWS temporary credentials, in the field names AWS SDKs use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AwsCredentials {
    pub access_key_id: String,
    #[serde(serialize_with = "expose_secret", deserialize_with = "secret")]
    pub secret_access_key: Secret<String>,
    #[serde(serialize_with = "expose_secret", deserialize_with = "secret")]
    pub session_token: Secret<String>,
    /// RFC 3339 UTC.
    pub expiration: String,
}

fn expose_secret<S: serde::Serializer>(s: &Secret<String>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Secret<String>, D::Error> {
    String::deserialize(de).map(Secret::new)
}

/// A PostgreSQL login a `postgres` target made: a role of its own, with a random password
/// that expires at `expires_at`, and where to use it (what the target's config says
/// clients connect to; absent parts are left to the client's defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostgresCredentials {
    pub username: String,
    #[serde(serialize_with = "expose_secret", deserialize_with = "secret")]
    pub password: Secret<String>,
    /// RFC 3339 UTC: the role's `VALID UNTIL`.
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// What a platform issues beside the `access_token` when its credential is more than one
/// token. In a token response (and the broker's shared cache) it is one member, named by
/// its platform: `aws_credentials` or `postgres_credentials`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PlatformCredentials {
    #[serde(rename = "aws_credentials")]
    Aws(AwsCredentials),
    #[serde(rename = "postgres_credentials")]
    Postgres(PostgresCredentials),
}

/// A credential a target issued.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    /// The RFC 8693 `access_token` value.
    pub access_token: Secret<String>,
    /// The RFC 8693 `issued_token_type` URI (one of [`token_type`](crate::oauth::token_type)).
    pub issued_token_type: &'static str,
    /// The RFC 6749 `token_type` (`Bearer`, or `N_A` where the token is not an access token).
    pub token_type: &'static str,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    /// The rest of the credential, for a platform whose credential is more than the token.
    pub platform_credentials: Option<PlatformCredentials>,
}

/// Why a target could not issue. Only the HTTP edge maps these to wire codes. Clone, so
/// one upstream failure can answer every exchange that was waiting on the same call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    /// The grant's parameters are not acceptable to this target (e.g. a rendered session
    /// name with characters AWS refuses).
    #[error("grant is not valid for this target: {0}")]
    InvalidGrant(String),
    #[error("signing failed: {0}")]
    Signing(#[from] SignError),
    /// The upstream platform refused the exchange (e.g. a trust policy that does not
    /// trust Tessera for this role).
    #[error("upstream refused: {0}")]
    UpstreamRejected(String),
    /// The upstream platform could not be reached or failed.
    #[error("upstream failure: {cause}")]
    Upstream { retryable: bool, cause: String },
}

impl TargetError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidGrant(_) => "TS-TGT-INVALID-GRANT",
            Self::Signing(_) => "TS-TGT-SIGNING",
            Self::UpstreamRejected(_) => "TS-TGT-UPSTREAM-REJECTED",
            Self::Upstream { .. } => "TS-TGT-UPSTREAM",
        }
    }
}

/// What [`CredentialTarget::revoke`] took back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// What was taken back, as the platform names it (the PostgreSQL role names).
    pub revoked: Vec<String>,
    /// Credentials found but not taken back this time (logged by the target).
    pub failed: usize,
}

/// Why [`CredentialTarget::revoke`] took nothing back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RevokeError {
    /// The target kind cannot take back what it issued; it expires on its own.
    #[error("this target kind cannot take back what it issued")]
    Unsupported,
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Signature algorithms Tessera signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    pub const ALL: [Self; 3] = [Self::Es256, Self::Rs256, Self::EdDsa];

    /// The JOSE `alg` name (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SignError {
    #[error("no active signing key for {0}")]
    NoActiveKey(&'static str),
    #[error("signing operation failed")]
    Crypto,
    #[error("claims could not be encoded")]
    Encoding,
    /// The signer cannot set this explicit `typ`.
    #[error("signer cannot sign tokens of type {0}")]
    UnsupportedType(&'static str),
}

/// Signs JWTs as Tessera's issuer. Implemented by the broker's issuer; targets hold an
/// `Arc<dyn Signer>` from their build context.
pub trait Signer: Send + Sync + Debug {
    /// The issuer URL (`iss`) of tokens this signer makes.
    fn issuer(&self) -> &str;

    /// The algorithms the issuer has keys for; a target configured for another is a
    /// build error.
    fn algorithms(&self) -> Vec<SigningAlgorithm>;

    /// Sign `claims` with the active key for `alg`; the header carries `alg`, `kid` and
    /// `typ: JWT`. The caller sets every claim, `iss` included.
    fn sign(
        &self,
        alg: SigningAlgorithm,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Secret<String>, SignError>;

    /// Sign `claims` as [`sign`](Self::sign) does, with header `typ` set to `typ` instead of
    /// `JWT`: explicit typing (RFC 8725 §3.11) for tokens a verifier of Tessera's other JWTs
    /// must never accept, such as Txn-Tokens (`txntoken+jwt`). Default: refused, for a
    /// signer that only makes plain JWTs.
    fn sign_typed(
        &self,
        alg: SigningAlgorithm,
        typ: &'static str,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Secret<String>, SignError> {
        let _ = (alg, claims);
        Err(SignError::UnsupportedType(typ))
    }
}

/// What verifying the JWTs a target issues takes, for a target whose credential is a JWT
/// signed by Tessera's own issuer (the [`Signer`]): the `aud` they carry and the one
/// algorithm they are signed with. Their issuer is the signer's, their longest lifetime
/// the target's [`max_ttl`](CredentialTarget::max_ttl). The broker's admin listener verifies
/// its bearer tokens by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedJwt {
    pub audience: String,
    pub algorithm: SigningAlgorithm,
}

/// A SPIFFE trust domain a target issues JWT-SVIDs in, and what the trust domain's bundle
/// (SPIFFE Trust Domain and Bundle §4) that the broker serves for it publishes: the issuer
/// keys of `algorithm`, and `refresh_hint` as `spiffe_refresh_hint` (§4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainBundle {
    /// The trust domain name, without `spiffe://`.
    pub trust_domain: String,
    pub algorithm: SigningAlgorithm,
    pub refresh_hint: Duration,
}

/// A value of a rule's grant key as the mapping file writes it, checked when the file
/// loads: a literal, or a template with `{field}` references whose value is known only
/// once rendered for an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleText<'a> {
    Literal(&'a str),
    Template,
}

/// A rule's grant key value: a string, or a map of strings (`tags: {team: "{namespace}"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleParam<'a> {
    Text(RuleText<'a>),
    Map(Vec<(&'a str, RuleText<'a>)>),
}

/// A credential target: one configured instance of a target kind.
#[async_trait]
pub trait CredentialTarget: Send + Sync + Debug {
    /// What every target has: its kind, name, lifetimes and issued token type, which the
    /// accessors of those names read.
    fn base(&self) -> &TargetBase;

    /// The target kind (`jwt`, `aws_sts`, ...).
    fn kind(&self) -> &'static str {
        self.base().kind
    }

    /// The configured name, which is also the `audience` callers request.
    fn name(&self) -> &str {
        &self.base().name
    }

    /// The longest lifetime this target issues; rules asking for more are load errors.
    fn max_ttl(&self) -> Duration {
        self.base().max_ttl
    }

    /// The shortest lifetime this target issues; rules asking for less are load errors
    /// (AWS sessions last at least 15 minutes).
    fn min_ttl(&self) -> Duration {
        Duration::ZERO
    }

    /// The lifetime used when a rule names none.
    fn default_ttl(&self) -> Duration {
        self.base().default_ttl
    }

    /// Grant keys this target reads from a rule, beyond `target`, `scope`, `ttl` and
    /// `claims`. Any other key in a rule for this target is a load error.
    fn grant_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Grant keys every rule for this target must set, because neither the target's config
    /// nor a default supplies them (`role_arn` for AWS). `scope` names the rule's `scope:`.
    /// Checked when mapping files load.
    fn required_grant_keys(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Check the value a rule gives grant key `key` (one of [`grant_keys`](Self::grant_keys))
    /// when the mapping file loads, so a value the platform would refuse is a load error
    /// with its position rather than a failed exchange. Literals can be checked whole;
    /// templates are checked again once rendered, in [`issue`](Self::issue).
    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        let _ = (key, value);
        Ok(())
    }

    /// The RFC 8693 `issued_token_type` of what this target issues (one of
    /// [`token_type`](crate::oauth::token_type));
    /// a request's `requested_token_type`, when given, must equal it.
    fn issued_token_type(&self) -> &'static str {
        self.base().issued_token_type
    }

    /// The grant key whose value is the scope a rule grants (`role_arn` for AWS), when
    /// the rule has no explicit `scope:`. `None`: only `scope:` names a rule's scope.
    fn scope_param(&self) -> Option<&'static str> {
        None
    }

    /// For a target that issues JWTs signed by Tessera's own issuer, what verifying them
    /// takes; `None` for a target whose credentials are another platform's.
    fn issued_jwt(&self) -> Option<IssuedJwt> {
        None
    }

    /// For a target that issues JWT-SVIDs, the trust domain they are in and what its
    /// bundle publishes; `None` for every other target.
    fn trust_domain(&self) -> Option<TrustDomainBundle> {
        None
    }

    /// Whether the broker may serve a credential this target issued to repeated exchanges
    /// whose grants it describes alike ([`describe_request`](Self::describe_request)) until
    /// shortly before it expires. Targets that call an upstream service say yes, sparing
    /// its quotas; a target whose credentials must differ per request says no.
    fn cacheable(&self) -> bool {
        true
    }

    /// Everything that shapes what [`issue`](Self::issue) would ask upstream for `grant`:
    /// [`RequestDescription::new`] of the grant, plus each value of the target's request
    /// as it will be sent (rendered, defaulted, capped) and, when that request or the
    /// issued token carries the identity, the identity id. The broker's credential cache
    /// keys on it: a value that changes the request but is left out here would serve one
    /// workload's credential to another. Makes no network call and signs nothing; a grant
    /// `issue` would refuse before calling upstream is refused here the same way.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError>;

    /// The upstream URLs this target calls, for `tessera doctor` to check that each one
    /// answers. Empty for targets that issue locally.
    fn upstream_endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    /// Issue a credential for a grant.
    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError>;

    /// Take back at once, on the platform, every credential this target issued to these
    /// identities (by id) that is still valid: what a revocation naming them asks. Must be
    /// idempotent: every replica that sees a revocation calls it, maybe at the same time,
    /// and a credential already taken back counts as done. Default: the platform offers no
    /// such thing ([`RevokeError::Unsupported`]); the credentials live until they expire.
    async fn revoke(&self, identities: &[String]) -> Result<RevokeReport, RevokeError> {
        let _ = identities;
        Err(RevokeError::Unsupported)
    }

    /// Start the target's background work, once, when the broker starts serving (the
    /// `postgres` target's sweep of expired roles). Tools that only build targets to check
    /// configs and mapping files never call it. Needs a Tokio runtime; the work ends when
    /// the target is dropped. Default: none.
    fn start(&self) {}
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::targets::testkit;

    fn grant() -> Grant {
        testkit::grant(testkit::identity(Some("api")), "t", None, Duration::from_secs(60), json!({}))
    }

    #[test]
    fn the_canonical_form_sorts_members_at_every_level_and_quotes_every_name() {
        let a = RequestDescription::new(&grant())
            .with("tags", json!({ "b": "2", "a": ["x", { "z": 1, "y": null }] }))
            .with("sub", "a\"b");
        let text = String::from_utf8(a.canonical()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"grant":{"claims":{},"params":{},"rule":"rule-1","scope":null,"target":"t","ttl":60},"#,
                r#""request":{"sub":"a\"b","tags":{"a":["x",{"y":null,"z":1}],"b":"2"}}}"#
            )
        );
        let b = RequestDescription::new(&grant())
            .with("sub", "a\"b")
            .with("tags", json!({ "a": ["x", { "y": null, "z": 1 }], "b": "2" }));
        assert_eq!(a.canonical(), b.canonical(), "the order values are added in does not count");
        assert_eq!(a.digest(), b.digest());
    }

    /// The part every target's cache key shares: a grant differing from another in any one
    /// of these gets a key of its own, so a credential issued for one is never served for
    /// the other, whatever the target adds.
    #[test]
    fn every_part_of_a_grant_is_in_its_description() {
        let key = |p: &testkit::GrantParts| RequestDescription::new(&p.grant()).digest();
        let base = testkit::GrantParts {
            identity: testkit::workflow("deploy"),
            rule: "ci-deploys",
            target: "aws-prod",
            scope: Some("arn:aws:iam::123456789012:role/invoices-reader"),
            ttl: Duration::from_secs(900),
            claims: json!({ "team": "payments" }),
            params: json!({
                "role_arn": "arn:aws:iam::123456789012:role/invoices-reader",
                "session_name": "deploy",
                "tags": { "team": "payments" },
            }),
        };
        let changed = [
            ("scope", base.with(|p| p.scope = Some("arn:aws:iam::123456789012:role/ledger-writer"))),
            ("absent scope", base.with(|p| p.scope = None)),
            (
                "role",
                base.with(|p| p.params["role_arn"] = json!("arn:aws:iam::123456789012:role/ledger-writer")),
            ),
            ("ttl", base.with(|p| p.ttl = Duration::from_secs(1800))),
            ("claim value", base.with(|p| p.claims["team"] = json!("ledger"))),
            ("claim added", base.with(|p| p.claims["env"] = json!("prod"))),
            ("rule", base.with(|p| p.rule = "ci-releases")),
            ("target", base.with(|p| p.target = "aws-dev")),
            ("session name", base.with(|p| p.params["session_name"] = json!("release"))),
            ("tag value", base.with(|p| p.params["tags"]["team"] = json!("ledger"))),
            ("tag added", base.with(|p| p.params["tags"]["env"] = json!("prod"))),
            ("grant key added", base.with(|p| p.params["transitive"] = json!("team"))),
        ];
        // The identity is the target's to add, where its request carries it.
        let same = [("identity", base.with(|p| p.identity = testkit::workflow("release")))];
        testkit::assert_cache_keys(key, &base, &changed, &same);
    }

    /// A delegated grant never shares a cached credential with the same grant undelegated,
    /// nor with one delegated to another actor or along another chain.
    #[test]
    fn the_actor_and_the_prior_chain_are_in_the_description() {
        let base = grant();
        let actor = |name: &str| {
            let mut actor = testkit::workflow(name);
            actor.id = format!("github://octo-org/{name}");
            VerifiedIdentity::new(actor)
        };
        let by = |name: &str| grant().with_delegation(Some(actor(name)), None);
        let digests = [
            RequestDescription::new(&base).digest(),
            RequestDescription::new(&by("deploy-bot")).digest(),
            RequestDescription::new(&by("release-bot")).digest(),
            RequestDescription::new(
                &by("deploy-bot").with_delegation(Some(actor("deploy-bot")), Some(json!({"sub": "ci"}))),
            )
            .digest(),
        ];
        for (i, a) in digests.iter().enumerate() {
            for b in digests.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        let act = by("deploy-bot")
            .with_delegation(Some(actor("deploy-bot")), Some(json!({"sub": "ci"})))
            .act_claim("https://tessera.test")
            .unwrap();
        assert_eq!(act["iss"], "https://tessera.test");
        assert_eq!(act["act"], json!({"sub": "ci"}), "the current actor is outermost");
        assert_eq!(base.act_claim("https://tessera.test"), None);
    }

    #[test]
    fn values_that_print_alike_stay_apart() {
        let base = RequestDescription::new(&grant());
        let pairs = [
            (base.clone().with("a", "1"), base.clone().with("a", 1)),
            (base.clone().with("a", "x,\"b\":\"y"), base.clone().with("a", "x").with("b", "y")),
            (base.clone().with("a", Value::Null), base.clone()),
            (base.clone().with("a", json!([])), base.clone().with("a", json!({}))),
        ];
        for (one, other) in pairs {
            assert_ne!(one.digest(), other.digest(), "{one:?} and {other:?}");
        }
        let scoped =
            testkit::grant(testkit::identity(Some("api")), "t", Some(""), Duration::from_secs(60), json!({}));
        assert_ne!(RequestDescription::new(&scoped).digest(), base.digest(), "an empty scope is a scope");
    }
}
