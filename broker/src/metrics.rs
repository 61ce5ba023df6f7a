//! Prometheus metrics, served on `GET /metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] per broker holds its own registry (no process-wide globals, so several
//! brokers in one test process do not mix their counts). A new metric is a field here,
//! registered in [`Metrics::new`], and a method that records it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tessera_adapters::observe::Observer;

/// The broker's build, for `tessera_build_info`.
pub const BUILD: tessera_adapters::process::Build =
    tessera_adapters::process::Build { version: env!("CARGO_PKG_VERSION"), commit: env!("TESSERA_COMMIT") };

/// How a revocation watch ended: the request is `revoked`; the wait ended `unchanged`; it
/// was `refused` (bad input, token or rule, as the token endpoint refuses); too many were
/// held (`busy`); the broker was `stopping`.
pub const WATCH_OUTCOMES: [&str; 5] = ["revoked", "unchanged", "refused", "busy", "stopping"];

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    source: String,
    target: String,
    decision: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    target: String,
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    target: String,
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResultLabels {
    source: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    peer: String,
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Exchange latency buckets, in seconds: a cached or local exchange takes a millisecond
/// or so, an upstream call up to the target's timeout.
fn latency_buckets() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// A histogram family with the latency buckets.
fn histograms<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + fmt::Debug + Send + Sync + 'static>()
-> Histograms<L> {
    Family::new_with_constructor(latency_buckets)
}

/// The broker's metrics.
pub struct Metrics {
    registry: Registry,
    mapping_reloads: Family<ResultLabel, Counter>,
    mapping_rules: Gauge,
    mapping_last_reload_success: Gauge,
    credential_cache: Family<ResultLabel, Counter>,
    exchanges: Family<ExchangeLabels, Counter>,
    exchange_seconds: Histograms<LatencyLabels>,
    upstream_seconds: Histograms<UpstreamLabels>,
    jwks_fetches: Family<SourceResultLabels, Counter>,
    jwks_last_success: Family<SourceLabels, Gauge>,
    jwks_age: Family<SourceLabels, Gauge>,
    /// Last successful key set fetch per source, to compute the age at scrape time.
    jwks_fetched_at: Mutex<HashMap<String, i64>>,
    /// Last failed key set fetch per source, for the console's source health.
    jwks_failed_at: Mutex<HashMap<String, i64>>,
    audit_queue: Gauge,
    audit_commits: Family<ResultLabel, Counter>,
    audit_committed_events: Counter,
    audit_commit_seconds: Histograms<ResultLabel>,
    security_events_received: Family<SignalLabels, Counter>,
    security_events_sent: Family<SignalLabels, Counter>,
    revocation_watches: Family<OutcomeLabel, Counter>,
    revocation_watches_open: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("tessera"),
            mapping_reloads: Family::default(),
            mapping_rules: Gauge::default(),
            mapping_last_reload_success: Gauge::default(),
            credential_cache: Family::default(),
            exchanges: Family::default(),
            exchange_seconds: histograms(),
            upstream_seconds: histograms(),
            jwks_fetches: Family::default(),
            jwks_last_success: Family::default(),
            jwks_age: Family::default(),
            jwks_fetched_at: Mutex::new(HashMap::new()),
            jwks_failed_at: Mutex::new(HashMap::new()),
            audit_queue: Gauge::default(),
            audit_commits: Family::default(),
            audit_committed_events: Counter::default(),
            audit_commit_seconds: histograms(),
            security_events_received: Family::default(),
            security_events_sent: Family::default(),
            revocation_watches: Family::default(),
            revocation_watches_open: Gauge::default(),
        };
        metrics.register_exchange_metrics();
        metrics.register_upstream_and_audit_metrics();
        metrics.registry.register(
            "security_events_received",
            "Security event tokens received, by transmitter and outcome (revoked, ignored, refused, deferred)",
            metrics.security_events_received.clone(),
        );
        metrics.registry.register(
            "security_events_sent",
            "Security event tokens pushed, by receiver and outcome (delivered, refused, failed)",
            metrics.security_events_sent.clone(),
        );
        metrics.registry.register(
            "revocation_watches",
            "Revocation watches answered, by outcome (revoked, unchanged, refused, busy, stopping)",
            metrics.revocation_watches.clone(),
        );
        metrics.registry.register(
            "revocation_watches_open",
            "Revocation watches held open now",
            metrics.revocation_watches_open.clone(),
        );
        for outcome in WATCH_OUTCOMES {
            let _ = metrics.revocation_watches.get_or_create(&OutcomeLabel { outcome });
        }
        // Every outcome exists from the start, so a rate() over them never sees a gap.
        for (family, results) in [
            (&metrics.mapping_reloads, ["ok", "error"]),
            (&metrics.credential_cache, ["hit", "miss"]),
            (&metrics.audit_commits, ["ok", "error"]),
        ] {
            for result in results {
                let _ = family.get_or_create(&ResultLabel { result });
            }
        }
        metrics.mapping_last_reload_success.set(1);
        metrics
    }

    /// Mapping reloads, exchanges and the credential cache.
    fn register_exchange_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "mapping_reloads",
            "Reloads of the mapping directory that changed something, by result (ok: swapped in; error: refused, previous rules kept)",
            self.mapping_reloads.clone(),
        );
        r.register("mapping_rules", "Mapping rules currently serving", self.mapping_rules.clone());
        r.register(
            "mapping_last_reload_success",
            "1 when the mapping files on disk are the ones serving, 0 after a refused reload",
            self.mapping_last_reload_success.clone(),
        );
        r.register(
            "credential_cache",
            "Exchanges for cacheable targets, by result (hit: served without an upstream call; miss: one upstream call)",
            self.credential_cache.clone(),
        );
        r.register(
            "exchanges",
            "Token exchanges by source, target, decision (allow, deny, error) and reason code",
            self.exchanges.clone(),
        );
        r.register(
            "exchange_duration_seconds",
            "Time from a parsed request to its audited answer, by target and decision",
            self.exchange_seconds.clone(),
        );
    }

    /// Target upstream calls, source key sets and the audit store.
    fn register_upstream_and_audit_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "target_issue_duration_seconds",
            "Credential issuing by target, kind and result (ok, rejected, unavailable, error): for aws_sts, gcp and azure the upstream calls, retries included; for jwt local signing",
            self.upstream_seconds.clone(),
        );
        r.register(
            "jwks_fetches",
            "Key set fetches (discovery and JWKS) by source and result",
            self.jwks_fetches.clone(),
        );
        r.register(
            "jwks_last_success_timestamp_seconds",
            "When each source's key set was last fetched successfully (Unix time)",
            self.jwks_last_success.clone(),
        );
        r.register(
            "jwks_age_seconds",
            "Age of the key set each source verifies with, at scrape time",
            self.jwks_age.clone(),
        );
        r.register(
            "audit_queue_depth",
            "Audit events waiting for the store's writer or in its current commit",
            self.audit_queue.clone(),
        );
        r.register(
            "audit_store_commits",
            "Group commits to the audit store, by result (ok, error: those events' exchanges failed closed)",
            self.audit_commits.clone(),
        );
        r.register(
            "audit_store_events",
            "Audit events committed to the store",
            self.audit_committed_events.clone(),
        );
        r.register(
            "audit_store_commit_duration_seconds",
            "Time to commit one group of audit events, by result",
            self.audit_commit_seconds.clone(),
        );
    }

    /// Events queued for the audit store, the batch being committed included.
    pub fn audit_queue_depth(&self, events: usize) {
        self.audit_queue.set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// One group commit of `events` to the audit store.
    pub fn audit_commit(&self, ok: bool, events: usize, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.audit_commits.get_or_create(&ResultLabel { result }).inc();
        if ok {
            self.audit_committed_events.inc_by(u64::try_from(events).unwrap_or(u64::MAX));
        }
        self.audit_commit_seconds.get_or_create(&ResultLabel { result }).observe(took.as_secs_f64());
    }

    /// One exchange, answered. `source` and `target` are configured names (or `none`),
    /// never caller input, so the label sets stay bounded.
    pub fn exchange(
        &self,
        source: &str,
        target: &str,
        decision: &'static str,
        reason: &'static str,
        took: Duration,
    ) {
        let labels =
            ExchangeLabels { source: source.to_string(), target: target.to_string(), decision, reason };
        self.exchanges.get_or_create(&labels).inc();
        self.exchange_seconds
            .get_or_create(&LatencyLabels { target: target.to_string(), decision })
            .observe(took.as_secs_f64());
    }

    /// One call of a target to its upstream, retries included.
    pub fn upstream_call(&self, target: &str, kind: &'static str, result: &'static str, took: Duration) {
        self.upstream_seconds
            .get_or_create(&UpstreamLabels { target: target.to_string(), kind, result })
            .observe(took.as_secs_f64());
    }

    /// Set each source's key set age from `now`; called just before a scrape.
    pub fn refresh_ages(&self, now: i64) {
        let fetched = self.jwks_fetched_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (source, at) in fetched.iter() {
            self.jwks_age
                .get_or_create(&SourceLabels { source: source.clone() })
                .set(now.saturating_sub(*at));
        }
    }

    /// A security event token from `transmitter` was handled with `outcome`.
    pub fn security_event_received(&self, transmitter: &str, outcome: &'static str) {
        self.security_events_received
            .get_or_create(&SignalLabels { peer: transmitter.to_string(), outcome })
            .inc();
    }

    /// A security event token pushed to `receiver` ended with `outcome`.
    pub fn security_event_sent(&self, receiver: &str, outcome: &'static str) {
        self.security_events_sent.get_or_create(&SignalLabels { peer: receiver.to_string(), outcome }).inc();
    }

    /// A revocation watch was answered with `outcome` (one of [`WATCH_OUTCOMES`]).
    pub fn revocation_watch(&self, outcome: &'static str) {
        self.revocation_watches.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The number of revocation watches held open.
    pub fn set_revocation_watches_open(&self, open: usize) {
        self.revocation_watches_open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// An exchange for a cacheable target was served from the cache or made a call.
    pub fn credential_cache(&self, result: &'static str) {
        self.credential_cache.get_or_create(&ResultLabel { result }).inc();
    }

    /// A reload was swapped in (`ok`) or refused.
    pub fn mapping_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.mapping_reloads.get_or_create(&ResultLabel { result }).inc();
        self.mapping_last_reload_success.set(i64::from(ok));
    }

    /// The files on disk are the rules serving (again), without a swap.
    pub fn mapping_in_sync(&self) {
        self.mapping_last_reload_success.set(1);
    }

    pub fn set_mapping_rules(&self, rules: usize) {
        self.mapping_rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// When `source`'s key set was last fetched, and when a fetch last failed (seconds
    /// since the epoch), as far as this process saw.
    pub fn key_set_fetches(&self, source: &str) -> (Option<i64>, Option<i64>) {
        let read = |map: &Mutex<HashMap<String, i64>>| {
            map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(source).copied()
        };
        (read(&self.jwks_fetched_at), read(&self.jwks_failed_at))
    }

    /// Every metric in the OpenMetrics text format, with `tessera_build_info` and the
    /// process metrics ([`tessera_adapters::process`]).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)?;
        tessera_adapters::process::encode(BUILD, &mut out)?;
        prometheus_client::encoding::text::encode_eof(&mut out)?;
        Ok(out)
    }
}

impl Observer for Metrics {
    fn jwks_fetch(&self, source: &str, ok: bool, at: i64) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches.get_or_create(&SourceResultLabels { source: source.to_string(), result }).inc();
        if ok {
            self.jwks_last_success.get_or_create(&SourceLabels { source: source.to_string() }).set(at);
        }
        let times = if ok { &self.jwks_fetched_at } else { &self.jwks_failed_at };
        times.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(source.to_string(), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_metrics_are_exposed_with_their_labels() {
        let m = Metrics::new();
        m.set_mapping_rules(7);
        m.mapping_reload(true);
        m.mapping_reload(false);
        m.mapping_reload(false);
        let text = m.encode().unwrap();
        assert!(text.contains("tessera_mapping_reloads_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("tessera_mapping_reloads_total{result=\"error\"} 2"), "{text}");
        assert!(text.contains("tessera_mapping_rules 7"), "{text}");
        assert!(text.contains("tessera_mapping_last_reload_success 0"), "{text}");
        assert!(text.contains("tessera_credential_cache_total{result=\"hit\"} 0"), "{text}");
        m.credential_cache("miss");
        assert!(m.encode().unwrap().contains("tessera_credential_cache_total{result=\"miss\"} 1"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        m.mapping_in_sync();
        assert!(m.encode().unwrap().contains("tessera_mapping_last_reload_success 1"));
    }
}
