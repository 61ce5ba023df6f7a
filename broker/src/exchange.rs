//! The exchange pipeline: request -> source -> identity -> rule -> target -> response,
//! with one audit event for every request, allowed or not. No wire format here: `http/`
//! turns requests into [`ExchangeRequest`]s and [`ExchangeError`]s into RFC 6749 bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tessera_adapters::clock::format_rfc3339;
use tessera_adapters::jwt;
use tessera_adapters::{
    Clock, CredentialTarget, Identity, IdentitySource, IssuedCredential, SourceError, SubjectToken,
    SubjectTokenType, TargetError, VerifiedIdentity,
};

use crate::audit::{AuditError, AuditEvent, AuditSink, Decision, IdentityJson};
use crate::cache::shared::SharedCache;
use crate::cache::{CacheOutcome, CredentialCache, DEFAULT_MAX_ENTRIES};
use crate::delegation::{self, DelegationError};
use crate::jwt_bearer::{AssertionChecks, AssertionError, GrantType};
use crate::mapping::{Denial, MappingSet, Request};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimited, RateLimiter};
use crate::revocation::{RevocationSet, Revoked};

/// A token-exchange request, already parsed and size-checked by the HTTP edge.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub request_id: String,
    pub subject_token: SubjectToken,
    /// The target name.
    pub audience: String,
    pub scope: Option<String>,
    pub requested_token_type: Option<String>,
    pub client_addr: Option<String>,
    /// RFC 8693 token exchange, or an RFC 7523 JWT bearer grant whose `assertion` is
    /// carried as `subject_token`.
    pub grant_type: GrantType,
    /// RFC 8693 §2.1 `actor_token` and its type: who acts for the subject.
    pub actor_token: Option<SubjectToken>,
    /// A Txn-Token request's own parameters: `audience` is then the trust domain, and
    /// `subject_token.token_type` only says JWT or ID token (the subject's kind is here).
    pub txn: Option<crate::txn::TxnRequest>,
}

/// Why an exchange did not produce a credential.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The actor token failed verification as a subject token would.
    #[error("actor token: {0} ({code})", code = .0.code())]
    Actor(SourceError),
    #[error(transparent)]
    Delegation(#[from] DelegationError),
    #[error("audience `{0}` is not a configured target")]
    UnknownAudience(String),
    #[error("requested_token_type `{requested}` is not what target `{target}` issues")]
    UnsupportedTokenType { requested: String, target: String },
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error(transparent)]
    Revoked(#[from] Revoked),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("audit event could not be written: {0}")]
    Audit(AuditError),
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    #[error(transparent)]
    Txn(#[from] crate::txn::TxnError),
}

impl ExchangeError {
    /// The greppable reason code for logs and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Source(e) => e.code(),
            Self::Actor(_) => "TS-ACTOR-TOKEN",
            Self::Delegation(e) => e.code(),
            Self::UnknownAudience(_) => "TS-EXC-UNKNOWN-AUDIENCE",
            Self::UnsupportedTokenType { .. } => "TS-EXC-TOKEN-TYPE",
            Self::RateLimited(_) => "TS-EXC-RATE-LIMITED",
            Self::Denied(d) => d.code(),
            Self::Revoked(_) => "TS-REVOKED",
            Self::Target(e) => e.code(),
            Self::Audit(_) => "TS-AUD-WRITE",
            Self::Assertion(e) => e.code(),
            Self::Txn(e) => e.code(),
        }
    }

    /// Whether Tessera or an upstream failed (upstream or audit trouble, signing), rather
    /// than the request being refused. A grant whose rendered values the target refuses for
    /// this identity is a refusal: the rule gives this identity nothing usable.
    fn is_failure(&self) -> bool {
        match self {
            Self::Source(SourceError::Upstream { .. })
            | Self::Actor(SourceError::Upstream { .. })
            | Self::Target(TargetError::Upstream { .. } | TargetError::Signing(_))
            | Self::Audit(_) => true,
            Self::Assertion(e) => e.is_failure(),
            Self::Txn(e) => e.is_failure(),
            Self::Source(_)
            | Self::Actor(_)
            | Self::Delegation(_)
            | Self::UnknownAudience(_)
            | Self::UnsupportedTokenType { .. }
            | Self::RateLimited(_)
            | Self::Denied(_)
            | Self::Revoked(_)
            | Self::Target(_) => false,
        }
    }
}

/// A source's refusal of the presented token: for a JWT bearer grant, a refusal of the
/// assertion (RFC 7523 §3.1 `invalid_grant`); an upstream failure stays one.
fn refused_token(grant_type: GrantType, e: SourceError) -> ExchangeError {
    match (grant_type, e) {
        (GrantType::JwtBearer, e) if !matches!(e, SourceError::Upstream { .. }) => {
            AssertionError::Invalid(e).into()
        }
        (_, e) => e.into(),
    }
}

/// A successful exchange.
#[derive(Debug)]
pub struct Exchanged {
    pub credential: IssuedCredential,
    /// Seconds from now until the credential expires.
    pub expires_in: i64,
}

/// Routes a presented token to the one source that may verify it, using only what can be
/// read without a network call: the token type and, for JWTs, the unverified `iss`.
#[derive(Debug, Default)]
pub struct SourceRouter {
    /// Every source once, in config order (a source may trust several issuers).
    all: Vec<Arc<dyn IdentitySource>>,
    by_issuer: HashMap<String, Arc<dyn IdentitySource>>,
    by_type: HashMap<SubjectTokenType, Arc<dyn IdentitySource>>,
}

impl SourceRouter {
    /// Fails with the offending issuer or token type when two sources would both claim
    /// the same tokens.
    pub fn new(sources: &[Arc<dyn IdentitySource>]) -> Result<Self, String> {
        let mut router = Self::default();
        for source in sources {
            router.all.push(Arc::clone(source));
            let issuers = source.issuers();
            if issuers.is_empty() {
                for t in
                    [SubjectTokenType::AwsSignedRequest, SubjectTokenType::Jwt, SubjectTokenType::IdToken]
                {
                    if source.accepts(t)
                        && let Some(other) = router.by_type.insert(t, Arc::clone(source))
                    {
                        return Err(format!(
                            "sources `{}` and `{}` both accept {} tokens",
                            other.name(),
                            source.name(),
                            t.uri()
                        ));
                    }
                }
            }
            for issuer in issuers {
                if let Some(other) = router.by_issuer.insert(issuer.clone(), Arc::clone(source)) {
                    return Err(format!(
                        "sources `{}` and `{}` both trust issuer `{issuer}`",
                        other.name(),
                        source.name()
                    ));
                }
            }
        }
        Ok(router)
    }

    pub fn route(&self, token: &SubjectToken) -> Result<&Arc<dyn IdentitySource>, SourceError> {
        let source = if token.token_type.is_jwt() {
            match jwt::peek_issuer(token.value.expose()) {
                Ok(issuer) => self.by_issuer.get(&issuer).or_else(|| self.by_type.get(&token.token_type)),
                // A JWT without `iss` (a JWT-SVID) can only go to a source taking JWTs by
                // type; with none, the missing claim is the reason.
                Err(SourceError::MissingClaim("iss")) => {
                    Some(self.by_type.get(&token.token_type).ok_or(SourceError::MissingClaim("iss"))?)
                }
                Err(e) => return Err(e),
            }
        } else {
            self.by_type.get(&token.token_type)
        };
        match source {
            Some(s) if s.accepts(token.token_type) => Ok(s),
            Some(_) => Err(SourceError::UnsupportedTokenType),
            None => Err(SourceError::UntrustedIssuer),
        }
    }

    /// Every source, once each.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<dyn IdentitySource>> {
        self.all.iter()
    }
}

/// Everything an exchange needs, built once from the config.
#[derive(Debug)]
pub struct Pipeline {
    clock: Arc<dyn Clock>,
    router: SourceRouter,
    targets: HashMap<String, Arc<dyn CredentialTarget>>,
    mappings: ArcSwap<MappingSet>,
    audit: Arc<dyn AuditSink>,
    audit_fail_open: bool,
    cache: CredentialCache,
    rate_limit: Option<RateLimiter>,
    revocations: Arc<RevocationSet>,
    metrics: Arc<Metrics>,
    assertions: Option<AssertionChecks>,
    /// The longest `act` chain an issued token may carry.
    max_delegation_depth: usize,
    txn_tokens: Option<crate::txn::TxnTokenVerifier>,
}

/// What is known about an exchange so far, for its audit event.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub(crate) source: Option<String>,
    pub(crate) identity: Option<Arc<Identity>>,
    pub(crate) actor: Option<Arc<Identity>>,
    pub(crate) rule: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) cache: Option<CacheOutcome>,
    /// The target's name, where the request's `audience` is not it (a trust domain).
    pub(crate) target: Option<String>,
}

impl Pipeline {
    pub fn new(
        clock: Arc<dyn Clock>,
        router: SourceRouter,
        targets: Vec<Arc<dyn CredentialTarget>>,
        mappings: Arc<MappingSet>,
        audit: Arc<dyn AuditSink>,
        audit_fail_open: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cache: CredentialCache::new(Arc::clone(&clock), DEFAULT_MAX_ENTRIES, Arc::clone(&metrics)),
            clock,
            router,
            targets: targets.into_iter().map(|t| (t.name().to_string(), t)).collect(),
            mappings: ArcSwap::new(mappings),
            audit,
            audit_fail_open,
            rate_limit: None,
            revocations: Arc::default(),
            metrics,
            assertions: None,
            max_delegation_depth: delegation::DEFAULT_MAX_DEPTH,
            txn_tokens: None,
        }
    }

    /// Delegation settings (`delegation:` in broker.yaml).
    pub fn with_delegation(mut self, config: delegation::DelegationConfig) -> Self {
        self.max_delegation_depth = config.max_depth;
        self
    }

    /// Verify Txn-Tokens presented for replacement with this.
    pub fn with_txn_tokens(mut self, verifier: crate::txn::TxnTokenVerifier) -> Self {
        self.txn_tokens = Some(verifier);
        self
    }

    pub(crate) fn txn_tokens(&self) -> Option<&crate::txn::TxnTokenVerifier> {
        self.txn_tokens.as_ref()
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Also use the cache replicas share, behind this process's own.
    pub fn with_shared_cache(mut self, shared: SharedCache) -> Self {
        self.cache = self.cache.with_shared(shared);
        self
    }

    /// Limit how often each identity may exchange.
    pub fn with_rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.rate_limit = Some(limiter);
        self
    }

    /// Take RFC 7523 JWT bearer grants, checked by these.
    pub fn with_assertion_checks(mut self, checks: AssertionChecks) -> Self {
        self.assertions = Some(checks);
        self
    }

    /// Refuse what these revocations name.
    pub fn with_revocations(mut self, revocations: Arc<RevocationSet>) -> Self {
        self.revocations = revocations;
        self
    }

    /// The revocations exchanges are checked against.
    pub fn revocations(&self) -> &Arc<RevocationSet> {
        &self.revocations
    }

    /// The credential cache (cacheable targets only).
    pub fn cache(&self) -> &CredentialCache {
        &self.cache
    }

    /// The rules currently serving.
    pub fn mappings(&self) -> Arc<MappingSet> {
        self.mappings.load_full()
    }

    /// Swap in a new, fully validated rule set; exchanges in flight keep the one they
    /// started with.
    pub fn replace_mappings(&self, set: Arc<MappingSet>) {
        self.mappings.store(set);
    }

    pub fn router(&self) -> &SourceRouter {
        &self.router
    }

    pub fn targets(&self) -> impl Iterator<Item = &Arc<dyn CredentialTarget>> {
        self.targets.values()
    }

    /// Run one exchange and audit it. A credential is returned only once its audit event
    /// is written (unless `audit.fail_open`).
    pub async fn exchange(&self, req: ExchangeRequest) -> Result<Exchanged, ExchangeError> {
        let started = Instant::now();
        let expected = self.audit.expect();
        let mut trail = Trail { scope: req.scope.clone(), ..Trail::default() };
        let result = match &req.txn {
            Some(txn) => crate::txn::run(self, &req, txn, &mut trail).await,
            None => self.run(&req, &mut trail).await,
        };
        let source = trail.source.clone();
        // Labels are configured names only: an unknown audience is counted as `none`.
        let target = match &trail.target {
            Some(name) => name.clone(),
            None if self.targets.contains_key(&req.audience) => req.audience.clone(),
            None => "none".to_string(),
        };
        let event = self.audit_event(&req, trail, &result, started);
        // The audit event is the record of every exchange: the log has a line per exchange
        // only at debug, and failures (Tessera's or an upstream's) at info.
        match &result {
            Ok(_) => {
                tracing::debug!(request_id = %req.request_id, target = %req.audience, reason = "TS-OK", "exchange allowed")
            }
            Err(e) if e.is_failure() => {
                tracing::info!(request_id = %req.request_id, target = %req.audience, reason = e.code(), detail = %e, "exchange failed")
            }
            Err(e) => {
                tracing::debug!(request_id = %req.request_id, target = %req.audience, reason = e.code(), detail = %e, "exchange refused")
            }
        }
        let recorded = match event {
            Ok(event) => self.audit.record(event, expected).await,
            Err(e) => Err(AuditError::Encode(e)),
        };
        let result = match recorded {
            Err(e) => {
                tracing::error!(request_id = %req.request_id, error = %e, reason = "TS-AUD-WRITE", "audit write failed");
                if self.audit_fail_open { result } else { Err(ExchangeError::Audit(e)) }
            }
            Ok(()) => result,
        };
        let (decision, reason) = match &result {
            Ok(_) => (Decision::Allow, "TS-OK"),
            Err(e) => (if e.is_failure() { Decision::Error } else { Decision::Deny }, e.code()),
        };
        self.metrics.exchange(
            source.as_deref().unwrap_or("none"),
            &target,
            decision.as_str(),
            reason,
            started.elapsed(),
        );
        result
    }

    /// What the rules are asked about `req`, as of now.
    fn mapping_request<'a>(&self, req: &'a ExchangeRequest) -> Request<'a> {
        Request {
            audience: &req.audience,
            scope: req.scope.as_deref(),
            client_addr: req.client_addr.as_deref(),
            now: self.clock.now(),
        }
    }

    /// The target `req` names, if it issues what `req` asks for.
    fn target_for(&self, req: &ExchangeRequest) -> Result<&Arc<dyn CredentialTarget>, ExchangeError> {
        let target = self
            .targets
            .get(&req.audience)
            .ok_or_else(|| ExchangeError::UnknownAudience(req.audience.clone()))?;
        // A Txn-Token is issued only to a Txn-Token request (`crate::txn`).
        let requested = req.requested_token_type.as_deref();
        if requested.is_some_and(|r| r != target.issued_token_type())
            || (requested.is_none()
                && target.issued_token_type() == tessera_adapters::oauth::token_type::TXN_TOKEN)
        {
            let requested = requested.unwrap_or("(none)").to_string();
            return Err(ExchangeError::UnsupportedTokenType { requested, target: req.audience.clone() });
        }
        Ok(target)
    }

    /// A revocation watch's request (a token exchange): verified as [`exchange`](Self::exchange)
    /// verifies it, subject and actor, up to the rule that would grant it, and kept to be
    /// checked against later revocations. Nothing is issued or audited, and nothing counts
    /// against the rate limit. A revocation in force now is the error, as in an exchange.
    pub async fn watched(
        &self,
        req: &ExchangeRequest,
        fingerprint: Option<String>,
    ) -> Result<crate::revocation::Watched, ExchangeError> {
        self.target_for(req)?;
        let source = self.router.route(&req.subject_token)?;
        let verified = source.verify(&req.subject_token).await?;
        let claims = delegation::SubjectClaims::of(&req.subject_token);
        let now_ms = self.clock.now_millis();
        if let Some(revoked) = self.revocations.identity(verified.identity(), claims.jti(), now_ms) {
            return Err(revoked.into());
        }
        let (actor, prior_act) =
            self.delegation(req, &verified, &claims, &mut Trail::default(), now_ms).await?;
        let grant = self.mappings.load().authorize_delegated(
            &verified,
            actor.as_ref(),
            prior_act,
            &self.mapping_request(req),
        )?;
        let actor_jti = req
            .actor_token
            .as_ref()
            .filter(|t| t.token_type.is_jwt())
            .and_then(|t| jwt::verified_jti(t.value.expose()));
        let watched = crate::revocation::Watched {
            identity: verified.shared(),
            jti: claims.jti().map(str::to_string),
            actor: actor.map(|a| (a.shared(), actor_jti)),
            rule: grant.rule().to_string(),
            fingerprint,
        };
        match watched.revoked(&self.revocations, now_ms) {
            Some(revoked) => Err(revoked.into()),
            None => Ok(watched),
        }
    }

    async fn run(&self, req: &ExchangeRequest, trail: &mut Trail) -> Result<Exchanged, ExchangeError> {
        let target = self.target_for(req)?;
        let refused = |e| refused_token(req.grant_type, e);
        let source = self.router.route(&req.subject_token).map_err(refused)?;
        trail.source = Some(source.name().to_string());
        let verified = source.verify(&req.subject_token).await.map_err(refused)?;
        trail.identity = Some(verified.shared());
        if req.grant_type == GrantType::JwtBearer {
            let checks = self
                .assertions
                .as_ref()
                .ok_or_else(|| AssertionError::ReplayCache("no replay cache configured".into()))?;
            checks.check(req.subject_token.value.expose()).await?;
        }
        let claims = delegation::SubjectClaims::of(&req.subject_token);
        self.admit(&verified, claims.jti(), req.grant_type).await?;
        let now_ms = self.clock.now_millis();
        let (actor, prior_act) = self.delegation(req, &verified, &claims, trail, now_ms).await?;
        let mappings = self.mappings.load();
        let request = self.mapping_request(req);
        let grant =
            mappings.authorize_delegated(&verified, actor.as_ref(), prior_act, &request).map_err(|d| {
                trail.rule = d.rule().map(str::to_string);
                ExchangeError::Denied(d)
            })?;
        trail.rule = Some(grant.rule().to_string());
        trail.scope = grant.scope().map(str::to_string);
        if let Some(revoked) = self.revocations.rule(grant.rule(), now_ms) {
            return Err(revoked.into());
        }
        let credential = if target.cacheable() {
            let (credential, outcome) = self.cache.get_or_issue(target, &grant).await;
            trail.cache = Some(outcome);
            self.metrics.credential_cache(outcome.as_str());
            credential?
        } else {
            crate::cache::issue_measured(target.as_ref(), &grant, &self.metrics).await?
        };
        // A revoked issued token may still sit in a cache (another replica's, say): drop
        // it there so the next exchange gets a new one.
        if let Some(revocation) = self.revocations.issued(&credential.access_token.fingerprint(), now_ms) {
            self.cache.purge(&revocation).await;
            return Err(Revoked::by(&revocation).into());
        }
        let expires_in = (credential.expires_at - self.clock.now()).max(0);
        Ok(Exchanged { credential, expires_in })
    }

    /// The actor of a delegated request, verified by the source its token routes to exactly
    /// as a subject token is, and the subject token's prior `act` chain; the subject token's
    /// `may_act` and the chain's length checked. A revoked actor is refused like a revoked
    /// subject.
    async fn delegation(
        &self,
        req: &ExchangeRequest,
        verified: &VerifiedIdentity,
        claims: &delegation::SubjectClaims,
        trail: &mut Trail,
        now_ms: i64,
    ) -> Result<(Option<VerifiedIdentity>, Option<serde_json::Value>), ExchangeError> {
        let max = self.max_delegation_depth;
        let prior = delegation::prior_chain(claims, verified.identity(), max)?;
        let Some(token) = &req.actor_token else {
            return Ok((None, prior.map(|(chain, _)| chain)));
        };
        let source = self.router.route(token).map_err(ExchangeError::Actor)?;
        let actor = source.verify(token).await.map_err(ExchangeError::Actor)?;
        trail.actor = Some(actor.shared());
        let jti = if token.token_type.is_jwt() { jwt::verified_jti(token.value.expose()) } else { None };
        if let Some(revoked) = self.revocations.identity(actor.identity(), jti.as_deref(), now_ms) {
            return Err(revoked.into());
        }
        delegation::check_may_act(claims, verified.identity(), actor.identity())?;
        delegation::check_depth(prior.as_ref().map_or(0, |(_, depth)| *depth), true, max)?;
        Ok((Some(actor), prior.map(|(chain, _)| chain)))
    }

    /// Refuse a verified identity a revocation names, and count it against its rate limit.
    /// Only a verified identity can match a revocation, so a forged token naming a revoked
    /// workload is refused as forged; and before any cache, so a cached credential never
    /// goes to a revoked identity. Counted once the identity is proven, so a forged token
    /// cannot spend another workload's budget; before the rules, so a refused identity
    /// still counts.
    pub(crate) async fn admit(
        &self,
        verified: &VerifiedIdentity,
        jti: Option<&str>,
        grant_type: GrantType,
    ) -> Result<(), ExchangeError> {
        if let Some(revoked) = self.revocations.identity(verified.identity(), jti, self.clock.now_millis()) {
            // A revoked assertion is no longer a valid grant (RFC 7523 §3.1).
            if grant_type == GrantType::JwtBearer && revoked.subject_token {
                return Err(AssertionError::Revoked(revoked.id).into());
            }
            return Err(revoked.into());
        }
        if let Some(limiter) = &self.rate_limit {
            limiter.check(&verified.identity().id).await?;
        }
        Ok(())
    }

    /// The exchange's audit event. Fails only when the identity cannot be serialized,
    /// which the exchange takes as a failed audit write.
    fn audit_event(
        &self,
        req: &ExchangeRequest,
        trail: Trail,
        result: &Result<Exchanged, ExchangeError>,
        started: Instant,
    ) -> Result<AuditEvent, serde_json::Error> {
        let (decision, reason, detail) = match result {
            Ok(_) => (Decision::Allow, "TS-OK", None),
            Err(e) if e.is_failure() => (Decision::Error, e.code(), Some(e.to_string())),
            Err(e) => (Decision::Deny, e.code(), Some(e.to_string())),
        };
        let issued = result.as_ref().ok();
        Ok(AuditEvent {
            event_id: None,
            time: format_rfc3339(self.clock.now()),
            time_ms: self.clock.now_millis(),
            request_id: req.request_id.clone(),
            decision,
            reason: reason.to_string(),
            detail,
            source: trail.source,
            identity_id: trail.identity.as_ref().map(|i| i.id.clone()),
            identity: trail.identity.as_deref().map(IdentityJson::new).transpose()?,
            actor_id: trail.actor.as_ref().map(|a| a.id.clone()),
            actor: trail.actor.as_deref().map(IdentityJson::new).transpose()?,
            actor_token_fingerprint: req.actor_token.as_ref().map(|t| t.value.fingerprint()),
            target: trail.target.unwrap_or_else(|| req.audience.clone()),
            scope: trail.scope,
            rule: trail.rule,
            cache: trail.cache.map(|c| c.as_str().to_string()),
            issued_ttl: issued.map(|x| x.expires_in),
            subject_token_fingerprint: req.subject_token.value.fingerprint(),
            issued_token_fingerprint: issued.map(|x| x.credential.access_token.fingerprint()),
            client_addr: req.client_addr.clone(),
            latency_ms: crate::audit::milliseconds(started.elapsed()),
        })
    }
}
