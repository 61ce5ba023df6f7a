//! The composition root: a loaded `broker.yaml` becomes a ready [`Broker`] (issuer, sources,
//! targets, rules, audit sink, shared cache, rate limits), or the [`Adapters`] alone for
//! tools. Serving it is [`crate::http::server`]'s job.

use std::sync::Arc;
use std::time::Duration;

use tessera_adapters::build::BuildContext;
use tessera_adapters::target::{SignError, SigningAlgorithm};
use tessera_adapters::{Clock, CredentialTarget, IdentitySource, Secret, Signer};

use crate::config::{ConfigError, ConfigErrors, LimitsConfig, LoadedConfig};
use crate::exchange::{Pipeline, SourceRouter};
use crate::http::admin_auth::AdminAuth;
use crate::introspect::Introspection;
use crate::issuer::{self, Issuer};
use crate::mapping::{self, Catalog, MappingSet, Reloader, RuleSlot, SourceInfo, TargetInfo};
use crate::metrics::Metrics;
use crate::revocation::ssf_receive::Signals;
use crate::revocation::{self, Propagation, Revocation, RevocationSet, RevokedTokens, Watches};
use crate::{audit, cache, ratelimit, redis};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("signing keys: {0}")]
    Issuer(#[from] issuer::IssuerError),
    #[error("mapping files:\n{0}")]
    Mapping(#[from] mapping::LoadErrors),
    #[error("audit sink: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("revocations could not be loaded, so none can be enforced: {0}")]
    Revocations(audit::store::StoreError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("credential cache key in the key directory: {0}")]
    CacheKey(std::io::Error),
    #[error("signals: {0}")]
    Signals(String),
}

/// A built broker: issuer, sources, targets, rules and audit sink, ready to serve.
#[derive(Debug)]
pub struct Broker {
    config: LoadedConfig,
    issuer: Arc<Issuer>,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    clock: Arc<dyn Clock>,
    admin_auth: Option<Arc<AdminAuth>>,
    audit_store: Option<audit::store::AuditStore>,
    spiffe: Option<SpiffeBundle>,
    propagation: Arc<Propagation>,
    signals: Option<Arc<Signals>>,
    revoked_tokens: RevokedTokens,
    introspection: Option<Introspection>,
    watches: Watches,
}

/// The trust domain the `spiffe` targets issue JWT-SVIDs in (config checks hold them to
/// one), and what its bundle publishes: the keys of every algorithm they sign with, and the
/// shortest refresh hint any of them asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    pub trust_domain: String,
    pub algorithms: Vec<SigningAlgorithm>,
    pub refresh_hint: Duration,
}

impl SpiffeBundle {
    fn of(targets: &[Arc<dyn CredentialTarget>]) -> Option<Self> {
        let domains: Vec<_> = targets.iter().filter_map(|t| t.trust_domain()).collect();
        let first = domains.first()?;
        let mut algorithms: Vec<SigningAlgorithm> = domains.iter().map(|d| d.algorithm).collect();
        algorithms.sort();
        algorithms.dedup();
        Some(Self {
            trust_domain: first.trust_domain.clone(),
            algorithms,
            refresh_hint: domains.iter().map(|d| d.refresh_hint).min().unwrap_or(first.refresh_hint),
        })
    }
}

/// The configured sources and targets, built, with the router that picks a source for a
/// token and the catalog mapping files are checked against.
#[derive(Debug)]
pub struct Adapters {
    pub sources: Vec<Arc<dyn IdentitySource>>,
    pub targets: Vec<Arc<dyn CredentialTarget>>,
    pub router: SourceRouter,
    pub catalog: Catalog,
}

impl Adapters {
    /// Build the sources and targets `config` names without Tessera's signing keys, for
    /// tools that check or explain mapping files: targets are built against a signer that
    /// refuses to sign. No key or audit file is touched and no network call is made here.
    pub fn build(config: &LoadedConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let signer = Arc::new(NoSigner {
            issuer: config.config.issuer.url.to_string(),
            algorithms: config.config.issuer.algorithms.clone(),
        });
        Self::build_with(config, clock, signer, Arc::new(tessera_adapters::observe::NoObserver))
    }

    fn build_with(
        config: &LoadedConfig,
        clock: Arc<dyn Clock>,
        signer: Arc<dyn Signer>,
        observer: Arc<dyn tessera_adapters::observe::Observer>,
    ) -> Result<Self, StartError> {
        let http = http_client().map_err(StartError::Http)?;
        let cx = BuildContext {
            clock,
            http,
            signer,
            base_dir: config.base_dir.clone(),
            observer,
            token_cache: config.config.token_cache(),
        };

        let mut errors: Vec<ConfigError> = Vec::new();
        let mut sources: Vec<Arc<dyn IdentitySource>> = Vec::new();
        for entry in &config.config.sources.value {
            match entry.value.build(&cx) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push(entry_error(config, entry, "source", entry.value.name(), &e)),
            }
        }
        let mut targets: Vec<Arc<dyn CredentialTarget>> = Vec::new();
        for entry in &config.config.targets.value {
            match entry.value.build(&cx) {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(entry_error(config, entry, "target", entry.value.name(), &e)),
            }
        }
        let router = SourceRouter::new(&sources).map_err(|m| {
            let loc = &config.config.sources.referenced;
            ConfigError { file: config.path.clone(), line: loc.line(), column: loc.column(), message: m }
        });
        let router = match router {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                SourceRouter::default()
            }
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors).into());
        }
        let catalog = catalog(&sources, &targets);
        Ok(Self { sources, targets, router, catalog })
    }
}

/// The client every outbound call of the broker uses (key sets, upstream STS, shared
/// signals): no redirects followed, 5 s to connect, 10 s in all.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// The signer of [`Adapters::build`]: targets can be built and checked, never sign.
#[derive(Debug)]
struct NoSigner {
    issuer: String,
    algorithms: Vec<SigningAlgorithm>,
}

impl Signer for NoSigner {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.algorithms.clone()
    }

    fn sign(
        &self,
        alg: SigningAlgorithm,
        _claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Secret<String>, SignError> {
        Err(SignError::NoActiveKey(alg.as_str()))
    }
}

impl Broker {
    /// Build everything the config names. Signing keys are created on first start; no
    /// network call is made here (key sets are fetched in the background).
    pub async fn build(config: LoadedConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        config.check_mappings_dir()?;
        let issuer = Issuer::open(&config.config.issuer, &config.base_dir, Arc::clone(&clock))?;
        let metrics = Arc::new(Metrics::new());
        let adapters = Adapters::build_with(
            &config,
            Arc::clone(&clock),
            Arc::clone(&issuer) as Arc<dyn Signer>,
            Arc::clone(&metrics) as Arc<dyn tessera_adapters::observe::Observer>,
        )?;
        let Adapters { targets, router, catalog, .. } = adapters;
        let spiffe = SpiffeBundle::of(&targets);
        // Background work (the `postgres` sweep) runs only in a serving broker, never in
        // the tools that build targets to check files.
        for target in &targets {
            target.start();
        }
        let admin_auth = AdminAuth::build(&config, &issuer, &targets, &clock)?;
        let mappings = MappingSet::load_dir(&config.mappings_dir(), &catalog)?;
        metrics.set_mapping_rules(mappings.rule_count());
        let reloader =
            Arc::new(Reloader::new(config.mappings_dir(), catalog, Arc::clone(&clock), Arc::clone(&metrics)));
        let (sink, audit_store) = audit::open(&config, Arc::clone(&metrics)).await?;
        // Fail closed: a broker that cannot read the revocations does not serve.
        let revocations = match &audit_store {
            Some(store) => {
                store.revocations_in_force(clock.now_millis()).await.map_err(StartError::Revocations)?
            }
            None => Vec::new(),
        };
        let mut pipeline = Pipeline::new(
            Arc::clone(&clock),
            router,
            targets,
            Arc::new(mappings),
            sink,
            config.config.audit().fail_open,
            Arc::clone(&metrics),
        )
        .with_revocations(Arc::new(RevocationSet::new(revocations)))
        .with_delegation(config.config.delegation())
        .with_txn_tokens(crate::txn::TxnTokenVerifier::new(Arc::clone(&issuer), Arc::clone(&clock)));
        let issuer_url = config.config.issuer.url.as_str();
        let shared = config.config.redis().map(|r| redis::SharedRedis::connect(r, issuer_url)).transpose()?;
        if let Some(redis) = &shared {
            let key = cache::shared::load_or_create_key(issuer.key_dir()).map_err(StartError::CacheKey)?;
            let cache = cache::shared::SharedCache::new(redis.clone(), &key).map_err(StartError::CacheKey)?;
            pipeline = pipeline.with_shared_cache(cache);
            tracing::info!(
                redis = redis.url(),
                key_prefix = redis.prefix(),
                "credential cache and rate limits shared through redis"
            );
        }
        let propagation = Arc::new(Propagation::new(shared.clone()));
        let mut assertions = crate::jwt_bearer::AssertionChecks::new(
            issuer_url,
            config.config.issuer.url.token_endpoint(),
            Arc::clone(&clock),
        );
        if let Some(redis) = &shared {
            assertions = assertions.with_shared(redis.clone());
        }
        pipeline = pipeline.with_assertion_checks(assertions);
        if let Some(rate) = config.config.rate_limit() {
            pipeline =
                pipeline.with_rate_limit(ratelimit::RateLimiter::new(rate, Arc::clone(&clock), shared));
        }
        let signals = match config.config.signals() {
            None => None,
            Some(s) if !s.receive.is_empty() && audit_store.is_none() => {
                return Err(StartError::Signals(
                    "signals.receive needs the audit store (audit.store.enabled) to keep the revocations it makes"
                        .into(),
                ));
            }
            Some(s) => Some(Arc::new(
                Signals::build(&config, s, Arc::clone(&issuer), Arc::clone(&metrics), Arc::clone(&clock))
                    .map_err(StartError::Signals)?,
            )),
        };
        let introspection = Introspection::build(&config, &issuer, &pipeline, &clock)?;
        let max_watches = config.config.limits().max_revocation_watches;
        let broker = Arc::new(Self {
            signals,
            config,
            issuer,
            pipeline,
            metrics,
            reloader,
            clock,
            admin_auth,
            audit_store,
            spiffe,
            propagation,
            revoked_tokens: RevokedTokens::default(),
            introspection,
            watches: Watches::new(max_watches),
        });
        // What the revocations in force name by the store alone (for introspection), and
        // the logins of revoked identities, in case the replica that made one stopped
        // before dropping them.
        for revocation in broker.pipeline.revocations().all().iter() {
            broker.enforce(revocation).await;
        }
        Ok(broker)
    }

    /// Act on a revocation just made or first seen ([`revocation::enforce`]).
    pub async fn enforce(&self, revocation: &Revocation) {
        let Some(store) = &self.audit_store else { return };
        let targets: Vec<_> = self.pipeline.targets().cloned().collect();
        revocation::enforce(store, &targets, &self.revoked_tokens, revocation, self.clock.now_millis()).await;
    }

    /// The Tessera tokens revocations name by what only the store knows.
    pub fn revoked_tokens(&self) -> &RevokedTokens {
        &self.revoked_tokens
    }

    /// RFC 7662 introspection; `None` when `introspection` is not configured.
    pub fn introspection(&self) -> Option<&Introspection> {
        self.introspection.as_ref()
    }

    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn config(&self) -> &LoadedConfig {
        &self.config
    }

    pub fn limits(&self) -> LimitsConfig {
        self.config.config.limits()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The admin listener's authentication; `None` when `admin.auth` is not set.
    pub fn admin_auth(&self) -> Option<&Arc<AdminAuth>> {
        self.admin_auth.as_ref()
    }

    /// The SQL audit store, unless `audit.store.enabled: false`.
    pub fn audit_store(&self) -> Option<&audit::store::AuditStore> {
        self.audit_store.as_ref()
    }

    /// The revocation watches held open ([`revocation::watch`]).
    pub fn watches(&self) -> &Watches {
        &self.watches
    }

    /// How revocation changes reach this replica and leave it for the others.
    pub fn propagation(&self) -> &Arc<Propagation> {
        &self.propagation
    }

    /// Shared signals (SSF): the SET receiver and transmitter; `None` without `signals`.
    pub fn signals(&self) -> Option<&Arc<Signals>> {
        self.signals.as_ref()
    }

    /// The trust domain the `spiffe` targets issue JWT-SVIDs in; `None` without one.
    pub fn spiffe(&self) -> Option<&SpiffeBundle> {
        self.spiffe.as_ref()
    }

    /// The SPIFFE bundle (SPIFFE Trust Domain and Bundle §4) of [`spiffe`](Self::spiffe)'s
    /// trust domain as of now, and its refresh hint.
    pub fn spiffe_bundle(&self) -> Option<(Vec<u8>, Duration)> {
        let spiffe = self.spiffe.as_ref()?;
        Some((self.issuer.spiffe_bundle_json(&spiffe.algorithms, spiffe.refresh_hint), spiffe.refresh_hint))
    }

    /// Reloads the mapping directory; see [`mapping::Reloader`].
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Reload the mapping directory now, off the async runtime; `force` reports an
    /// invalid directory again even when unchanged.
    pub async fn reload_mappings(self: &Arc<Self>, force: bool) -> mapping::ReloadOutcome {
        let me = Arc::clone(self);
        match tokio::task::spawn_blocking(move || me.reloader.reload(me.as_ref(), force)).await {
            Ok(outcome) => outcome,
            Err(e) => mapping::ReloadOutcome::Refused(mapping::LoadErrors(vec![mapping::LoadError {
                file: self.reloader.dir().to_path_buf(),
                line: 1,
                column: 1,
                message: format!("the reload failed: {e}"),
                hint: "see the broker's log".to_string(),
            }])),
        }
    }

    /// Config, keys and rules are loaded. (Source key sets warming up is reported by
    /// `/v1/status`, not here: one issuer being down must not take every replica out.)
    pub fn ready(&self) -> bool {
        Signer::algorithms(self.issuer.as_ref()).into_iter().all(|alg| self.issuer.active_kid(alg).is_some())
    }
}

fn entry_error<T>(
    config: &LoadedConfig,
    entry: &serde_saphyr::Spanned<T>,
    what: &str,
    name: &str,
    e: &tessera_adapters::build::BuildError,
) -> ConfigError {
    let field = e.field.map(|f| format!(".{f}")).unwrap_or_default();
    ConfigErrors::at_entry(&config.path, entry, format!("{what} `{name}`{field}: {}", e.message))
}

fn catalog(sources: &[Arc<dyn IdentitySource>], targets: &[Arc<dyn CredentialTarget>]) -> Catalog {
    Catalog {
        targets: targets
            .iter()
            .map(|t| TargetInfo {
                name: t.name().to_string(),
                kind: t.kind(),
                max_ttl: t.max_ttl(),
                default_ttl: t.default_ttl(),
                grant_keys: t.grant_keys(),
                scope_param: t.scope_param(),
                target: Some(Arc::clone(t)),
            })
            .collect(),
        sources: sources
            .iter()
            .map(|s| SourceInfo { name: s.name().to_string(), kind: s.kind().to_string() })
            .collect(),
    }
}

impl RuleSlot for Broker {
    fn current(&self) -> Arc<MappingSet> {
        self.pipeline.mappings()
    }

    fn replace(&self, set: Arc<MappingSet>) {
        self.metrics.set_mapping_rules(set.rule_count());
        self.pipeline.replace_mappings(set);
    }
}
