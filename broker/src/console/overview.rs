//! `GET /ui/`: exchanges per minute and latency over the last hour, each target's and
//! source's health, the signing keys, and the mapping set with its last reload.

use actix_web::HttpResponse;
use maud::{Markup, html};
use tessera_adapters::{FetchFailure, Signer as _};

use super::Ctx;
use super::layout::{ago, head_row, time, time_s};
use crate::audit::store::Activity;
use crate::audit::store::LATENCY_SAMPLE;
use crate::issuer::KeyState;

const TITLE: &str = "Overview";
/// The window the overview looks at.
const WINDOW_MS: i64 = 60 * 60 * 1000;

pub(super) async fn page(ctx: Ctx) -> HttpResponse {
    let activity = match ctx.broker.audit_store() {
        Some(store) => match store.activity(ctx.now_ms() - WINDOW_MS).await {
            Ok(activity) => Some(activity),
            Err(e) => return ctx.store_failed(TITLE, &e),
        },
        None => None,
    };
    let body = html! {
        @match &activity {
            Some(activity) => { (exchanges(activity, ctx.now_ms())) (targets(activity)) },
            None => p.notice { "No audit store: exchange figures need one (audit.store)." },
        }
        (sources(&ctx, activity.as_ref()))
        (keys(&ctx))
        (mappings(&ctx))
    };
    ctx.render(TITLE, body)
}

/// The `p`-th percentile (0..=100) of sorted values.
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

fn exchanges(activity: &Activity, now_ms: i64) -> Markup {
    let total =
        |f: fn(&crate::audit::store::MinuteCounts) -> i64| activity.minutes.iter().map(f).sum::<i64>();
    let (allow, deny, error) = (total(|m| m.allow), total(|m| m.deny), total(|m| m.error));
    let latency =
        |p| percentile(&activity.latencies_ms, p).map_or("–".to_string(), |v| format!("{v:.1} ms"));
    let peak = activity.minutes.iter().map(|m| m.allow + m.deny + m.error).max().unwrap_or(0).max(1);
    let now_minute = now_ms / 60_000;
    html! {
        section aria-labelledby="exchanges" {
            h2 id="exchanges" { "Exchanges, last hour" }
            dl.figures {
                div { dt { "Allowed" } dd { (allow) } }
                div { dt { "Denied" } dd { (deny) } }
                div { dt { "Errors" } dd { (error) } }
                div { dt { "Per minute" } dd { (format!("{:.1}", (allow + deny + error) as f64 / 60.0)) } }
                div { dt { "p50 latency" } dd { (latency(50)) } }
                div { dt { "p99 latency" } dd { (latency(99)) } }
            }
            p.help { "Latency over the latest " (activity.latencies_ms.len()) " exchanges of the hour (at most "
                (LATENCY_SAMPLE) "), from the audit store shared by every replica." }
            svg.minutes viewBox="0 0 600 80" preserveAspectRatio="xMinYMid meet" role="img" aria-label="Exchanges per minute over the last hour: allowed, denied, errors" {
                @for m in &activity.minutes {
                    @let x = 600 - (now_minute - m.minute).clamp(0, 59) * 10 - 10;
                    @let scale = |n: i64| n * 76 / peak;
                    @let (a, d, e) = (scale(m.allow), scale(m.deny), scale(m.error));
                    rect.allow x=(x) y=(80 - a) width="8" height=(a) { title { (time(m.minute * 60_000)) ": " (m.allow) " allowed" } }
                    rect.deny x=(x) y=(80 - a - d) width="8" height=(d) { title { (m.deny) " denied" } }
                    rect.error x=(x) y=(80 - a - d - e) width="8" height=(e) { title { (m.error) " errors" } }
                }
            }
        }
    }
}

fn targets(activity: &Activity) -> Markup {
    html! {
        section aria-labelledby="targets" {
            h2 id="targets" { "Targets, last hour" }
            table {
                (head_row(&["Target", "Allowed", "Denied", "Errors", "Cache hit rate"]))
                tbody {
                    @for t in &activity.targets {
                        @let lookups = t.cache_hits + t.cache_misses;
                        tr {
                            th scope="row" { a href={ "/ui/audit?target=" (t.target) } { (t.target) } }
                            td { (t.allow) } td { (t.deny) }
                            td class=@if t.error > 0 { "bad" } { (t.error) }
                            td { @if lookups > 0 { (format!("{:.0} %", t.cache_hits as f64 * 100.0 / lookups as f64)) } @else { "–" } }
                        }
                    }
                    @if activity.targets.is_empty() { tr { td colspan="5" { "No exchange in the last hour." } } }
                }
            }
        }
    }
}

fn sources(ctx: &Ctx, activity: Option<&Activity>) -> Markup {
    let now = ctx.broker.clock().now();
    let mut sources: Vec<_> = ctx.broker.pipeline().router().sources().collect();
    sources.sort_by(|a, b| a.name().cmp(b.name()));
    html! {
        section aria-labelledby="sources" {
            h2 id="sources" { "Sources" }
            table {
                (head_row(&["Source", "Type", "Key set", "Key set age", "Last fetch error", "Unverified tokens, last hour"]))
                tbody {
                    @for s in &sources {
                        @let (fetched, _) = ctx.broker.metrics().key_set_fetches(s.name());
                        @let unverified = activity.and_then(|a| a.sources.iter().find(|(n, _, _)| n == s.name()));
                        tr {
                            th scope="row" { (s.name()) }
                            td { (s.kind()) }
                            td { @if s.ready() { "ready" } @else { span.bad { "not fetched yet" } } }
                            td { @match fetched { Some(at) => (ago(at * 1000, now * 1000)), None => "–" } }
                            td { (fetch_error(s.last_fetch_failure(), fetched)) }
                            td { @match unverified { Some((_, bad, all)) => { (bad) " of " (all) }, None => "0" } }
                        }
                    }
                }
            }
        }
    }
}

/// A source's last failed key-set fetch: when and why; marked as past when a fetch
/// succeeded after it (`fetched`, seconds since the epoch).
fn fetch_error(failure: Option<FetchFailure>, fetched: Option<i64>) -> Markup {
    let Some(failure) = failure else { return html! { "none" } };
    let recovered = fetched.is_some_and(|at| at > failure.at);
    html! {
        @if recovered {
            span { (time_s(failure.at)) ", since recovered: " }
            span.help { (failure.error) }
        } @else {
            span.bad { (time_s(failure.at)) ": " }
            span.bad { (failure.error) }
        }
    }
}

fn keys(ctx: &Ctx) -> Markup {
    let issuer = ctx.broker.issuer();
    let mut keys = issuer.keys();
    keys.sort_by_key(|k| (k.state, std::cmp::Reverse(k.created_at)));
    let algorithms = issuer.algorithms();
    html! {
        section aria-labelledby="keys" {
            h2 id="keys" { "Signing keys" }
            p { "Issuer " code { (issuer.url()) } "; algorithms "
                (algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")) "." }
            table {
                (head_row(&["Key id (RFC 7638 thumbprint)", "Algorithm", "State", "Created", "Leaves the JWKS"]))
                tbody {
                    @for k in &keys {
                        tr {
                            td { code { (k.kid) } }
                            td { (k.alg.as_str()) }
                            td { (k.state.as_str()) }
                            td { (time_s(k.created_at)) }
                            td { @match (k.state, k.publish_until) {
                                (KeyState::Retired, Some(until)) => (time_s(until)),
                                _ => "–",
                            } }
                        }
                    }
                }
            }
            p.help { "Rotation is run by operators (" code { "tessera keys rotate" } "): the next key becomes active, "
                "the active one is retired and stays published until the time shown." }
        }
    }
}

fn mappings(ctx: &Ctx) -> Markup {
    let set = ctx.broker.pipeline().mappings();
    let status = ctx.broker.reloader().status();
    html! {
        section aria-labelledby="mappings" {
            h2 id="mappings" { "Mapping set" }
            dl.facts {
                dt { "Version" } dd { code { (set.version()) } }
                dt { "Files" } dd { (set.file_count()) " in " code { (ctx.broker.reloader().dir().display().to_string()) } }
                dt { "Rules" } dd { a href="/ui/rules" { (set.rule_count()) } }
                dt { "Last reload" } dd { (status.last_reload_at.as_deref().unwrap_or("none since start"))
                    " (" (status.reloads_ok) " swapped in, " (status.reloads_failed) " refused)" }
            }
            @if let Some(error) = &status.last_reload_error {
                div.error role="alert" {
                    p { "The files on disk were refused at " (error.at) "; the rules above keep serving." }
                    pre { (error.message) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50), Some(50.0));
        assert_eq!(percentile(&values, 99), Some(99.0));
        assert_eq!(percentile(&[3.0], 99), Some(3.0));
        assert_eq!(percentile(&[], 50), None);
    }
}
