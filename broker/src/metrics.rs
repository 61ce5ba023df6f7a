//! Prometheus metrics, served on `GET /metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] per broker holds its own registry (no process-wide globals, so several
//! brokers in one test process do not mix their counts). A new metric is a field here,
//! registered in [`Metrics::new`], and a method that records it.

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The broker's metrics.
pub struct Metrics {
    registry: Registry,
    mapping_reloads: Family<ResultLabel, Counter>,
    mapping_rules: Gauge,
    mapping_last_reload_success: Gauge,
    credential_cache: Family<ResultLabel, Counter>,
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
        let mut registry = Registry::with_prefix("tessera");
        let mapping_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "mapping_reloads",
            "Reloads of the mapping directory that changed something, by result (ok: swapped in; error: refused, previous rules kept)",
            mapping_reloads.clone(),
        );
        let mapping_rules = Gauge::default();
        registry.register("mapping_rules", "Mapping rules currently serving", mapping_rules.clone());
        let mapping_last_reload_success = Gauge::default();
        registry.register(
            "mapping_last_reload_success",
            "1 when the mapping files on disk are the ones serving, 0 after a refused reload",
            mapping_last_reload_success.clone(),
        );
        let credential_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "credential_cache",
            "Exchanges for cacheable targets, by result (hit: served without an upstream call; miss: one upstream call)",
            credential_cache.clone(),
        );
        // Every outcome exists from the start, so a rate() over them never sees a gap.
        for result in ["ok", "error"] {
            let _ = mapping_reloads.get_or_create(&ResultLabel { result });
        }
        for result in ["hit", "miss"] {
            let _ = credential_cache.get_or_create(&ResultLabel { result });
        }
        mapping_last_reload_success.set(1);
        Self { registry, mapping_reloads, mapping_rules, mapping_last_reload_success, credential_cache }
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

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
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
