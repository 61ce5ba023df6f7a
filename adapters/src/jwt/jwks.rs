//! Where a source's keys come from, and the cache that keeps them: OIDC Discovery 1.0 §4,
//! a pinned `jwks_uri` (RFC 7517 §5), or a static JWKS file.
//!
//! The cache keeps the last good set, refreshes it in the background, refetches at most
//! once per [`JwksOptions::unknown_kid_interval`] when a token names a `kid` it does not
//! know (concurrent requests share one fetch), and keeps serving the last good set while
//! the issuer is down, until [`JwksOptions::max_stale`] after the last success.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::Value;
use tokio::task::AbortHandle;
use url::Url;

use super::alg::Algorithm;
use super::json;
use super::keys::{KeySet, KeySetError, KeyUse};
use crate::build::BuildError;
use crate::clock::Clock;
use crate::net::check_url;
use crate::observe::{NoObserver, Observer};
use crate::source::{FetchFailure, SourceError};

/// Where a source's key set comes from.
#[derive(Debug, Clone)]
pub enum JwksLocation {
    /// OIDC Discovery 1.0 §4: `{issuer}/.well-known/openid-configuration`, whose `issuer`
    /// must equal this one exactly (§4.3) and whose `jwks_uri` is then fetched.
    Discovery { issuer: String },
    /// A pinned key-set URL; discovery is skipped.
    Uri(String),
    /// A JWKS file read once when the source is built; never refreshed, no network.
    File(PathBuf),
    /// A key set already loaded by the caller.
    Static(Arc<KeySet>),
}

/// Fetch and cache settings. Defaults are the documented config defaults.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Allow plain `http://` URLs, and only on a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`). For tests. Default `false`.
    pub insecure_http: bool,
    /// Per fetch, connection to last byte. Default 5s.
    pub timeout: Duration,
    /// Largest response accepted, enforced while reading. Default 512 KiB.
    pub max_bytes: usize,
    /// Background refresh period. Default 5m.
    pub refresh_interval: Duration,
    /// How long after the last successful fetch the cached set keeps serving when the
    /// issuer cannot be reached. Default 24h.
    pub max_stale: Duration,
    /// Least time between two refetches caused by an unknown `kid`. Default 30s.
    pub unknown_kid_interval: Duration,
    /// With no usable set, least time between a failed fetch and the next on-demand try,
    /// so requests fail fast while the issuer is down. Default 5s.
    pub retry_after_failure: Duration,
    /// Refresh in a background task (spawned when the cache is built inside a Tokio
    /// runtime, else on first use). Default `true`.
    pub background_refresh: bool,
    /// Which keys of a fetched or loaded document verify tokens. Default
    /// [`KeyUse::Sig`]; [`KeyUse::JwtSvid`] for SPIFFE bundles.
    pub key_use: KeyUse,
    /// Told of every fetch, for metrics. Default: nobody.
    pub observer: Arc<dyn Observer>,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            insecure_http: false,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            max_stale: DEFAULT_MAX_STALE,
            unknown_kid_interval: Duration::from_secs(30),
            retry_after_failure: Duration::from_secs(5),
            background_refresh: true,
            key_use: KeyUse::Sig,
            observer: Arc::new(NoObserver),
        }
    }
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// The shortest background refresh period a source may configure.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// After a failed background refresh, the next try comes this soon (or at the regular
/// interval, if shorter).
const BACKGROUND_RETRY: Duration = Duration::from_secs(30);

/// Why fetching a key set failed. Carries URLs, never response bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("GET {url} failed: {cause}")]
    Request { url: String, cause: String },
    #[error("GET {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: response is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("GET {url} took longer than {seconds}s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url}: {source}")]
    KeySet { url: String, source: KeySetError },
    #[error("{url}: discovery document is not a JSON object without duplicate members")]
    DiscoveryJson { url: String },
    #[error("{url}: discovery document's `issuer` is not the configured issuer")]
    DiscoveryIssuer { url: String },
    #[error("{url}: discovery document's `jwks_uri` is not usable: {reason}")]
    DiscoveryJwksUri { url: String, reason: String },
}

/// Longest error text [`JwksError::redacted`] gives.
const MAX_REDACTED: usize = 300;

impl JwksError {
    /// The URL the failed request was for.
    fn url(&self) -> &str {
        match self {
            Self::Request { url, .. }
            | Self::Status { url, .. }
            | Self::TooLarge { url, .. }
            | Self::Timeout { url, .. }
            | Self::KeySet { url, .. }
            | Self::DiscoveryJson { url }
            | Self::DiscoveryIssuer { url }
            | Self::DiscoveryJwksUri { url, .. } => url,
        }
    }

    /// The error in words to show beyond the log (the operator console): its URL without
    /// query or fragment (a key-set URL may carry an access key there), at most
    /// [`MAX_REDACTED`] characters. URLs carry no credentials (see [`check_url`]) and no
    /// error carries a response body.
    pub fn redacted(&self) -> String {
        let url = self.url();
        let mut text = match Url::parse(url) {
            Ok(mut bare) if bare.query().is_some() || bare.fragment().is_some() => {
                bare.set_query(None);
                bare.set_fragment(None);
                self.to_string().replace(url, &format!("{bare}?…"))
            }
            _ => self.to_string(),
        };
        if let Some((cut, _)) = text.char_indices().nth(MAX_REDACTED) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// The discovery document URL for an issuer (OIDC Discovery 1.0 §4: a terminating `/`
/// of the issuer is removed before appending the well-known path).
pub fn discovery_url(issuer: &str) -> Result<Url, String> {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| format!("issuer `{issuer}` is not a URL: {e}"))?;
    // OIDC Core §2: an issuer URL has no query or fragment.
    let parsed = Url::parse(issuer).map_err(|e| format!("issuer `{issuer}` is not a URL: {e}"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("issuer `{issuer}` must not have a query or fragment"));
    }
    Ok(url)
}

enum Location {
    Static(Arc<KeySet>),
    Remote(Remote),
}

enum Remote {
    Discovery { issuer: String, url: Url },
    Uri(Url),
}

struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: i64,
}

#[derive(Default)]
struct FetchState {
    last_failure: Option<(i64, JwksError)>,
    last_kid_refetch: Option<i64>,
}

/// One source's key set, kept warm. Build with [`JwksCache::new`]; read with
/// [`JwksCache::keys`].
pub struct JwksCache {
    source: String,
    location: Location,
    options: JwksOptions,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    current: ArcSwapOption<Snapshot>,
    /// Held while fetching: one fetch at a time per source (single flight).
    state: tokio::sync::Mutex<FetchState>,
    /// The last failed fetch, kept after later successes, for operators; apart from
    /// `state`, which a fetch holds for its whole length.
    last_failure: ArcSwapOption<FetchFailure>,
    /// Completed fetch attempts, so a waiter can tell that one finished while it waited.
    attempts: AtomicU64,
    me: Weak<Self>,
    refresher: OnceLock<AbortHandle>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = match &self.location {
            Location::Static(_) => "static".to_owned(),
            Location::Remote(Remote::Discovery { url, .. }) => format!("discovery {url}"),
            Location::Remote(Remote::Uri(url)) => url.to_string(),
        };
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .field("location", &location)
            .field("warm", &self.is_warm())
            .finish_non_exhaustive()
    }
}

impl Drop for JwksCache {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get() {
            task.abort();
        }
    }
}

impl JwksCache {
    /// Build a cache for the source named `source`, keeping keys usable with
    /// `algorithms`. URLs are checked here; a file location is read and parsed here.
    /// Errors name the config key at fault (`issuer`, `jwks_uri`, `jwks_file`,
    /// `jwks_refresh_interval`, `jwks_max_stale`).
    pub fn new(
        source: impl Into<String>,
        location: JwksLocation,
        options: JwksOptions,
        algorithms: &[Algorithm],
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, BuildError> {
        if options.refresh_interval < MIN_REFRESH_INTERVAL {
            return Err(BuildError::field(
                "jwks_refresh_interval",
                format!("jwks_refresh_interval must be at least {}s", MIN_REFRESH_INTERVAL.as_secs()),
            ));
        }
        if options.max_stale < options.refresh_interval {
            return Err(BuildError::field(
                "jwks_max_stale",
                "jwks_max_stale must be at least jwks_refresh_interval",
            ));
        }
        let location = match location {
            JwksLocation::Static(keys) => Location::Static(keys),
            JwksLocation::File(path) => {
                Location::Static(Arc::new(load_file(&path, algorithms, options.key_use)?))
            }
            JwksLocation::Discovery { issuer } => {
                let url = discovery_url(&issuer).map_err(|m| BuildError::field("issuer", m))?;
                check_url(&url, options.insecure_http).map_err(|m| BuildError::field("issuer", m))?;
                Location::Remote(Remote::Discovery { issuer, url })
            }
            JwksLocation::Uri(uri) => {
                let url = Url::parse(&uri)
                    .map_err(|e| BuildError::field("jwks_uri", format!("`{uri}` is not a URL: {e}")))?;
                check_url(&url, options.insecure_http).map_err(|m| BuildError::field("jwks_uri", m))?;
                Location::Remote(Remote::Uri(url))
            }
        };
        let cache = Arc::new_cyclic(|me| Self {
            source: source.into(),
            location,
            options,
            algorithms: algorithms.to_vec(),
            http,
            clock,
            current: ArcSwapOption::empty(),
            state: tokio::sync::Mutex::new(FetchState::default()),
            last_failure: ArcSwapOption::empty(),
            attempts: AtomicU64::new(0),
            me: me.clone(),
            refresher: OnceLock::new(),
        });
        cache.ensure_refresher();
        Ok(cache)
    }

    /// Whether a key set is at hand: a static set, or a fetched one younger than
    /// `max_stale`. For readiness.
    pub fn is_warm(&self) -> bool {
        match self.location {
            Location::Static(_) => true,
            _ => self.usable_now().is_some(),
        }
    }

    /// The current key set, fetching it first when there is none or it is older than
    /// `max_stale`. Fails with a retryable [`SourceError::Upstream`] when no usable set
    /// can be had.
    pub async fn keys(&self) -> Result<Arc<KeySet>, SourceError> {
        let remote = match &self.location {
            Location::Static(keys) => return Ok(Arc::clone(keys)),
            Location::Remote(remote) => remote,
        };
        self.ensure_refresher();
        if let Some(keys) = self.usable_now() {
            return Ok(keys);
        }
        let seen = self.attempts.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        if let Some(keys) = self.usable_now() {
            return Ok(keys);
        }
        // Another request's fetch finished while this one waited, and failed: share its
        // answer instead of queueing a fetch per waiting request.
        if self.attempts.load(Ordering::SeqCst) != seen {
            return Err(self.unavailable(&state));
        }
        if let Some((at, _)) = &state.last_failure
            && self.clock.now().saturating_sub(*at) < secs(self.options.retry_after_failure)
        {
            return Err(self.unavailable(&state));
        }
        match self.fetch_locked(remote, &mut state).await {
            Ok(keys) => Ok(keys),
            Err(_) => Err(self.unavailable(&state)),
        }
    }

    /// A token named a `kid` missing from `seen`: refetch, at most once per
    /// `unknown_kid_interval`. Returns a newer set if one was fetched (by this call or by
    /// a concurrent one), `None` when throttled, static, or the fetch failed.
    pub async fn refresh_for_unknown_kid(&self, seen: &Arc<KeySet>) -> Option<Arc<KeySet>> {
        let Location::Remote(remote) = &self.location else { return None };
        let mut state = self.state.lock().await;
        if let Some(current) = self.current.load_full()
            && !Arc::ptr_eq(&current.keys, seen)
        {
            return Some(Arc::clone(&current.keys));
        }
        let now = self.clock.now();
        if let Some(last) = state.last_kid_refetch
            && now.saturating_sub(last) < secs(self.options.unknown_kid_interval)
        {
            return None;
        }
        state.last_kid_refetch = Some(now);
        tracing::debug!(source = %self.source, "unknown kid: refetching the key set");
        self.fetch_locked(remote, &mut state).await.ok()
    }

    /// Fetch now, whatever the cache holds; what the background task calls. A failure
    /// keeps the previous set.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let remote = match &self.location {
            Location::Static(keys) => return Ok(Arc::clone(keys)),
            Location::Remote(remote) => remote,
        };
        let mut state = self.state.lock().await;
        self.fetch_locked(remote, &mut state).await
    }

    /// The last failed fetch since the cache was built, even if one succeeded since:
    /// when, and why ([`JwksError::redacted`]). `None` for a static set.
    pub fn last_failure(&self) -> Option<FetchFailure> {
        self.last_failure.load_full().map(|failure| FetchFailure::clone(&failure))
    }

    fn usable_now(&self) -> Option<Arc<KeySet>> {
        let snapshot = self.current.load_full()?;
        let age = self.clock.now().saturating_sub(snapshot.fetched_at);
        (age <= secs(self.options.max_stale)).then(|| Arc::clone(&snapshot.keys))
    }

    fn unavailable(&self, state: &FetchState) -> SourceError {
        let stale = self.current.load().is_some();
        let why = match &state.last_failure {
            Some((_, e)) => e.to_string(),
            None => "no fetch has completed".to_owned(),
        };
        let cause = if stale {
            format!(
                "key set of source `{}` is older than jwks_max_stale and cannot be refreshed: {why}",
                self.source
            )
        } else {
            format!("key set of source `{}` is unavailable: {why}", self.source)
        };
        SourceError::Upstream { retryable: true, cause }
    }

    /// Start the background refresh once, if wanted and a Tokio runtime is at hand.
    fn ensure_refresher(&self) {
        if !self.options.background_refresh || matches!(self.location, Location::Static(_)) {
            return;
        }
        if self.refresher.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let me = self.me.clone();
        let every = self.options.refresh_interval;
        self.refresher.get_or_init(|| runtime.spawn(refresh_loop(me, every)).abort_handle());
    }

    async fn fetch_locked(&self, remote: &Remote, state: &mut FetchState) -> Result<Arc<KeySet>, JwksError> {
        let result = self.fetch(remote).await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now();
        match result {
            Ok(keys) => {
                self.options.observer.jwks_fetch(&self.source, true, now);
                let keys = Arc::new(keys);
                tracing::debug!(source = %self.source, kids = %keys.kids().join(","), "key set fetched");
                self.current.store(Some(Arc::new(Snapshot { keys: Arc::clone(&keys), fetched_at: now })));
                state.last_failure = None;
                Ok(keys)
            }
            Err(error) => {
                self.options.observer.jwks_fetch(&self.source, false, now);
                tracing::warn!(
                    source = %self.source,
                    error = %error,
                    "JWKS fetch failed; the last good key set, if any, keeps serving"
                );
                self.last_failure.store(Some(Arc::new(FetchFailure { at: now, error: error.redacted() })));
                state.last_failure = Some((now, error.clone()));
                Err(error)
            }
        }
    }

    async fn fetch(&self, remote: &Remote) -> Result<KeySet, JwksError> {
        let jwks_url = match remote {
            Remote::Discovery { issuer, url } => self.discover(issuer, url).await?,
            Remote::Uri(url) => url.clone(),
        };
        let body = self.get(&jwks_url).await?;
        KeySet::from_json_for(&body, &self.algorithms, self.options.key_use)
            .map_err(|source| JwksError::KeySet { url: jwks_url.to_string(), source })
    }

    /// OIDC Discovery 1.0 §4.3: the document's `issuer` must be identical to the issuer
    /// it was fetched for; its `jwks_uri` must pass the same URL checks as a pinned one.
    async fn discover(&self, issuer: &str, url: &Url) -> Result<Url, JwksError> {
        let body = self.get(url).await?;
        let doc = json::parse_object(&body).map_err(|_| JwksError::DiscoveryJson { url: url.to_string() })?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(JwksError::DiscoveryIssuer { url: url.to_string() });
        }
        let bad = |reason: String| JwksError::DiscoveryJwksUri { url: url.to_string(), reason };
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing or not a string".into()))?;
        let jwks_url = Url::parse(jwks_uri).map_err(|e| bad(e.to_string()))?;
        check_url(&jwks_url, self.options.insecure_http).map_err(bad)?;
        Ok(jwks_url)
    }

    /// GET with the timeout and size limit. Redirects are not followed (the shared client
    /// has them off) and count as failures, like every non-2xx answer.
    async fn get(&self, url: &Url) -> Result<Vec<u8>, JwksError> {
        let limit = self.options.max_bytes;
        let send = || {
            self.http
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json, application/jwk-set+json")
                .timeout(self.options.timeout)
                .send()
        };
        let request = async {
            let sent = match send().await {
                // Sent on a pooled connection the server closed at that moment (its idle
                // timeout ran out as the request went): the GET is tried once more, on a
                // new connection. Key sets are fetched minutes apart, so a pooled
                // connection is often near its server's idle limit.
                Err(e) if e.is_request() && !e.is_connect() && !e.is_timeout() => send().await,
                sent => sent,
            };
            let mut response = sent.map_err(|e| JwksError::Request {
                url: url.to_string(),
                cause: crate::net::request_failure(&e),
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(JwksError::Status { url: url.to_string(), status: status.as_u16() });
            }
            let too_large = || JwksError::TooLarge { url: url.to_string(), limit };
            if response.content_length().is_some_and(|len| len > limit as u64) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| JwksError::Request {
                url: url.to_string(),
                cause: crate::net::request_failure(&e),
            })? {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.options.timeout, request).await.map_err(|_| JwksError::Timeout {
            url: url.to_string(),
            seconds: self.options.timeout.as_secs(),
        })?
    }
}

async fn refresh_loop(cache: Weak<JwksCache>, every: Duration) {
    loop {
        let delay = {
            let Some(cache) = cache.upgrade() else { return };
            match cache.refresh().await {
                Ok(_) => every,
                Err(_) => every.min(BACKGROUND_RETRY),
            }
        };
        tokio::time::sleep(delay).await;
    }
}

fn load_file(path: &Path, algorithms: &[Algorithm], key_use: KeyUse) -> Result<KeySet, BuildError> {
    let bytes = std::fs::read(path)
        .map_err(|e| BuildError::field("jwks_file", format!("cannot read `{}`: {e}", path.display())))?;
    KeySet::from_json_for(&bytes, algorithms, key_use)
        .map_err(|e| BuildError::field("jwks_file", format!("`{}`: {e}", path.display())))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
