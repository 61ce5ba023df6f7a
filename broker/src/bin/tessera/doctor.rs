//! `tessera doctor`: what breaks a deployment, checked the way production meets it. The
//! issuer URL is fetched as AWS and Google fetch it, every source's key set and every
//! target's endpoint are reached, the store and Redis connected, the key files' modes and
//! the clock looked at. One line per check, a summary, and failure when any check fails.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tessera_adapters::net::{error_chain, is_loopback};
use tessera_adapters::{Clock, SystemClock};
use tessera_broker::audit::store::{AuditStore, store_url};
use tessera_broker::config::LoadedConfig;
use tessera_broker::metrics::Metrics;
use tessera_broker::redis::SharedRedis;
use tessera_broker::{Adapters, cache, config, issuer};

/// How long one network check may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A clock this far from the servers' makes tokens look expired or not yet valid.
const SKEW_FAIL_SECS: i64 = 60;
const SKEW_WARN_SECS: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so `{:<4}` aligns the columns.
        f.pad(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        })
    }
}

#[derive(Debug, Default)]
struct Report {
    checks: Vec<(Outcome, String, String)>,
    /// Seconds between this clock and each server's `Date`, as seen.
    skews: Vec<(String, i64)>,
}

impl Report {
    fn add(&mut self, outcome: Outcome, name: impl Into<String>, detail: impl Into<String>) {
        let (name, detail) = (name.into(), detail.into());
        println!("{outcome:<4}  {name:<32} {detail}");
        self.checks.push((outcome, name, detail));
    }

    fn result(&mut self, name: impl Into<String>, result: Result<String, String>) {
        match result {
            Ok(detail) => self.add(Outcome::Ok, name, detail),
            Err(detail) => self.add(Outcome::Fail, name, detail),
        }
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|(o, ..)| *o == outcome).count()
    }
}

/// Run every check of `path`'s deployment; `Ok(false)` when any failed.
pub async fn run(path: &Path) -> anyhow::Result<bool> {
    let mut report = Report::default();
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            report.add(Outcome::Fail, "config", format!("{} does not load:\n{errors}", path.display()));
            return Ok(summary(&report));
        }
    };
    report.add(Outcome::Ok, "config", format!("{} loads", path.display()));
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("tessera-doctor/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let published = key_files(&mut report, &loaded, path);
    issuer_documents(&mut report, &http, &loaded, published.as_ref()).await;
    match Adapters::build(&loaded, Arc::new(SystemClock)) {
        Ok(adapters) => upstreams(&mut report, &http, &adapters).await,
        Err(e) => report.add(Outcome::Fail, "sources and targets", e.to_string()),
    }
    audit_store(&mut report, &loaded).await;
    redis_check(&mut report, &loaded).await;
    clock(&mut report);
    Ok(summary(&report))
}

fn summary(report: &Report) -> bool {
    let failed = report.count(Outcome::Fail);
    println!(
        "\n{} checks: {} ok, {} warning(s), {failed} failed",
        report.checks.len(),
        report.count(Outcome::Ok),
        report.count(Outcome::Warn)
    );
    failed == 0
}

/// The signing keys as `serve` reads them (modes included), without creating any; the
/// credential cache key's mode when Redis is configured. Returns the kids published.
fn key_files(report: &mut Report, loaded: &LoadedConfig, path: &Path) -> Option<BTreeSet<String>> {
    let dir = loaded.config.issuer.key_dir(&loaded.base_dir);
    let keys = match issuer::list_keys(&loaded.config.issuer, &loaded.base_dir) {
        Ok(keys) if !keys.is_empty() => keys,
        Ok(_) => {
            let fix = format!("`tessera keys init --config {}` makes them", path.display());
            report.add(Outcome::Fail, "signing keys", format!("none in {}: {fix}", dir.display()));
            return None;
        }
        Err(e) => {
            report.add(Outcome::Fail, "signing keys", e.to_string());
            return None;
        }
    };
    let states: Vec<String> =
        keys.iter().map(|k| format!("{} {}", k.alg.as_str(), k.state.as_str())).collect();
    report.add(
        Outcome::Ok,
        "signing keys",
        format!("{} in {}: {}", keys.len(), dir.display(), states.join(", ")),
    );
    if loaded.config.redis().is_some() {
        let name = "credential cache key";
        match cache::shared::check_key(&dir) {
            Ok(()) => report.add(Outcome::Ok, name, format!("{} is private", cache::shared::KEY_FILE)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let detail =
                    format!("{} absent: serve makes it in a writable key directory", cache::shared::KEY_FILE);
                report.add(Outcome::Warn, name, detail);
            }
            Err(e) => report.add(Outcome::Fail, name, e.to_string()),
        }
    }
    Some(keys.into_iter().map(|k| k.kid).collect())
}

/// The discovery document and JWKS under `issuer.url`, fetched from that URL as relying
/// parties do, compared with the config and the local key directory.
async fn issuer_documents(
    report: &mut Report,
    http: &reqwest::Client,
    loaded: &LoadedConfig,
    published: Option<&BTreeSet<String>>,
) {
    let issuer = loaded.config.issuer.url.as_str().trim_end_matches('/');
    let url = url::Url::parse(issuer).ok();
    if url.as_ref().is_some_and(|u| u.scheme() == "http" && !is_loopback(u)) {
        let why = "AWS, Google and Azure fetch the discovery document and JWKS over https only";
        report.add(Outcome::Warn, "issuer url", format!("{issuer} is plain http: {why}"));
    }
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let discovery = match fetch_json(report, http, &discovery_url).await {
        Ok(document) => document,
        Err(e) => {
            let fix = "the URL must reach this deployment's public listener (ingress, DNS, TLS)";
            return report.add(Outcome::Fail, "issuer discovery", format!("{e}; {fix}"));
        }
    };
    let named = discovery.get("issuer").and_then(|v| v.as_str());
    if named != Some(issuer) {
        let served = named.unwrap_or("none");
        let detail =
            format!("{discovery_url} names issuer {served}, the config {issuer}: tokens would not verify");
        return report.add(Outcome::Fail, "issuer discovery", detail);
    }
    let Some(jwks_url) = discovery.get("jwks_uri").and_then(|v| v.as_str()).map(str::to_string) else {
        return report.add(Outcome::Fail, "issuer discovery", format!("{discovery_url} has no jwks_uri"));
    };
    report.add(Outcome::Ok, "issuer discovery", format!("{discovery_url} names {issuer}"));
    let jwks = match fetch_json(report, http, &jwks_url).await {
        Ok(jwks) => jwks,
        Err(e) => return report.add(Outcome::Fail, "issuer jwks", e),
    };
    let served: BTreeSet<String> = jwks
        .get("keys")
        .and_then(|keys| keys.as_array())
        .map(|keys| keys.iter().filter_map(|k| k.get("kid")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let Some(published) = published else {
        return report.add(
            Outcome::Warn,
            "issuer jwks",
            format!("{jwks_url}: {} keys, no local keys to compare", served.len()),
        );
    };
    let missing: Vec<&String> = published.difference(&served).collect();
    if !missing.is_empty() {
        let detail = format!(
            "{jwks_url} lacks local kid(s) {missing:?}: another deployment answers there, or this one has not reloaded its keys"
        );
        return report.add(Outcome::Fail, "issuer jwks", detail);
    }
    report.add(
        Outcome::Ok,
        "issuer jwks",
        format!("{jwks_url} publishes the {} local key(s)", published.len()),
    );
}

/// GET `url` as JSON, recording the server's clock.
async fn fetch_json(
    report: &mut Report,
    http: &reqwest::Client,
    url: &str,
) -> Result<serde_json::Value, String> {
    let response = http.get(url).send().await.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
    note_date(report, url, &response);
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {}", status.as_u16()));
    }
    response.json().await.map_err(|e| format!("{url}: not JSON: {}", error_chain(&e)))
}

fn note_date(report: &mut Report, url: &str, response: &reqwest::Response) {
    let date = response.headers().get(reqwest::header::DATE).and_then(|d| d.to_str().ok());
    if let Some(at) = date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
        report.skews.push((url.to_string(), SystemClock.now() - at.timestamp()));
    }
}

/// Each source's key sets fetched now, and each target's upstream endpoints reached
/// (any HTTP answer means the network path and TLS work).
async fn upstreams(report: &mut Report, http: &reqwest::Client, adapters: &Adapters) {
    for source in &adapters.sources {
        let probe = tokio::time::timeout(TIMEOUT, source.probe())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())));
        report.result(format!("source {} ({})", source.name(), source.kind()), probe);
    }
    for target in &adapters.targets {
        let name = format!("target {} ({})", target.name(), target.kind());
        let endpoints = target.upstream_endpoints();
        if endpoints.is_empty() {
            report.add(Outcome::Ok, name, "issued by Tessera, no upstream");
            continue;
        }
        for endpoint in endpoints {
            match http.get(&endpoint).send().await {
                Ok(response) => {
                    note_date(report, &endpoint, &response);
                    report.add(
                        Outcome::Ok,
                        &name,
                        format!("{endpoint} answers (HTTP {})", response.status().as_u16()),
                    );
                }
                Err(e) => report.add(Outcome::Fail, &name, format!("{endpoint}: {}", error_chain(&e))),
            }
        }
    }
}

/// Connect to the audit store as `serve` does, creating nothing.
async fn audit_store(report: &mut Report, loaded: &LoadedConfig) {
    let audit = loaded.config.audit();
    if !audit.store.enabled {
        return report.add(Outcome::Ok, "audit store", "disabled (store.enabled: false)");
    }
    let url = store_url(loaded);
    match AuditStore::open(&audit.store, &url, Arc::new(Metrics::new()), false).await {
        Ok(store) => report.add(Outcome::Ok, "audit store", format!("{} connects", store.backend().as_str())),
        Err(e) if url.scheme() == "sqlite" => {
            report.add(Outcome::Warn, "audit store", format!("{e} (serve creates it at start)"))
        }
        Err(e) => report.add(Outcome::Fail, "audit store", e.to_string()),
    }
}

async fn redis_check(report: &mut Report, loaded: &LoadedConfig) {
    let Some(config) = loaded.config.redis() else { return };
    let result = match SharedRedis::connect(config, loaded.config.issuer.url.as_str()) {
        Ok(redis) => {
            let mut conn = redis.conn();
            let ping = redis.timed("ping", redis::cmd("PING").query_async::<String>(&mut conn)).await;
            ping.map(|_| format!("{} answers PING, keys under {}", redis.url(), redis.prefix()))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    report.result("redis", result);
}

/// The largest difference between this clock and a server's seen above.
fn clock(report: &mut Report) {
    let Some((url, skew)) = report.skews.iter().max_by_key(|(_, s)| s.abs()).cloned() else {
        return report.add(Outcome::Warn, "clock", "no server answered with a Date to compare with");
    };
    let detail = format!("{skew:+}s from {url}");
    let outcome = match skew.abs() {
        s if s > SKEW_FAIL_SECS => Outcome::Fail,
        s if s > SKEW_WARN_SECS => Outcome::Warn,
        _ => Outcome::Ok,
    };
    report.add(outcome, "clock", detail);
}
