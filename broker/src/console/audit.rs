//! `GET /ui/audit`: audit events with the filters of `GET /v1/audit`, a page at a time
//! (keyset pagination), and "trace a token": the browser hashes a pasted token with
//! WebCrypto (`assets/console.js`) and asks for the event that issued it by fingerprint,
//! so the token itself never reaches the server.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{decision, head_row, query, select, workload_href};
use super::workloads::{WINDOWS, window_ms};
use super::{Ctx, filled};
use crate::audit::AuditEvent;
use crate::audit::store::{EventPage, EventQuery};

const TITLE: &str = "Audit";
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditParams {
    identity: Option<String>,
    target: Option<String>,
    source: Option<String>,
    decision: Option<String>,
    /// `1h`, `24h`, `7d`, `30d`.
    since: Option<String>,
    /// `sha256:<hex>`, as the script sends it.
    pub(super) issued_token: Option<String>,
    pub(super) cursor: Option<String>,
}

/// A fingerprint as the audit store records it: `sha256:` and 64 lowercase hex digits.
pub(super) fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

pub(super) async fn page(ctx: Ctx, params: web::Query<AuditParams>) -> HttpResponse {
    let store = match ctx.store(TITLE) {
        Ok(store) => store,
        Err(page) => return page,
    };
    let p = params.into_inner();
    let fingerprint = filled(&p.issued_token);
    if let Some(f) = fingerprint.as_deref().filter(|f| !is_fingerprint(f)) {
        let message = format!("`{f}` is not a token fingerprint (sha256: and 64 hex digits).");
        return ctx.render_status(
            actix_web::http::StatusCode::BAD_REQUEST,
            TITLE,
            html! { (filters(&ctx, &p)) p.error role="alert" { (message) } },
        );
    }
    let filter = EventQuery {
        since_ms: window_ms(p.since.as_deref()).map(|w| ctx.now_ms() - w),
        identity: filled(&p.identity),
        target: filled(&p.target),
        source: filled(&p.source),
        decision: filled(&p.decision).filter(|d| matches!(d.as_str(), "allow" | "deny" | "error")),
        issued_token_fingerprint: fingerprint.clone(),
        limit: PAGE,
        cursor: filled(&p.cursor).and_then(|c| c.parse().ok()),
        ..EventQuery::default()
    };
    let page = match store.events(&filter).await {
        Ok(page) => page,
        Err(e) => return ctx.store_failed(TITLE, &e),
    };
    let body = html! {
        (trace_form(fingerprint.as_deref(), &page))
        (filters(&ctx, &p))
        (events_table(&page.events))
        @if let Some(next) = &page.next_cursor {
            p { a rel="next" href={ "/ui/audit?" (query(&[
                ("identity", p.identity.as_deref()), ("target", p.target.as_deref()), ("source", p.source.as_deref()),
                ("decision", p.decision.as_deref()), ("since", p.since.as_deref()),
                ("issued_token", p.issued_token.as_deref()), ("cursor", Some(next)),
            ])) } { "Older events" } }
        }
    };
    ctx.render(TITLE, body)
}

fn trace_form(fingerprint: Option<&str>, page: &EventPage) -> Markup {
    html! {
        section aria-labelledby="trace" {
            h2 id="trace" { "Trace a token" }
            // The textarea has no name: the form never sends it. The script puts the
            // token's fingerprint in `issued_token` and clears the textarea first.
            form id="trace-form" method="get" action="/ui/audit" {
                label for="trace-token" { "A token Tessera issued (it stays in this browser: only its SHA-256 fingerprint is sent)" }
                textarea id="trace-token" rows="3" autocomplete="off" spellcheck="false" {}
                input type="hidden" id="trace-fingerprint" name="issued_token";
                button type="submit" { "Find the exchange that issued it" }
                p.help id="trace-status" role="status" aria-live="polite" {}
            }
            @if let Some(f) = fingerprint {
                @match page.events.first() {
                    Some(e) => p.found role="status" { "Issued by the exchange below: " (identity_link(e)) " at " (e.time)
                        ", request " code { (e.request_id) } "." },
                    None => p.error role="status" { "No exchange recorded here issued the token with fingerprint " code { (f) } "." },
                }
            }
        }
    }
}

fn filters(ctx: &Ctx, p: &AuditParams) -> Markup {
    let mut sources: Vec<String> =
        ctx.broker.pipeline().router().sources().map(|s| s.name().to_string()).collect();
    sources.sort();
    let mut targets: Vec<String> = ctx.broker.pipeline().targets().map(|t| t.name().to_string()).collect();
    targets.sort();
    let windows: Vec<String> = WINDOWS.iter().map(|(n, _)| (*n).to_string()).collect();
    let decisions = ["allow", "deny", "error"].map(String::from);
    html! {
        form.filters method="get" action="/ui/audit" role="search" aria-label="Filter events" {
            div { label for="identity" { "Identity id" }
                input type="text" id="identity" name="identity" value=(p.identity.as_deref().unwrap_or("")); }
            div { (select("source", "Source", &sources, p.source.as_deref())) }
            div { (select("target", "Target", &targets, p.target.as_deref())) }
            div { (select("decision", "Decision", &decisions, p.decision.as_deref())) }
            div { (select("since", "Within", &windows, p.since.as_deref())) }
            div { button type="submit" { "Filter" } }
        }
    }
}

/// The workload, and for a delegated exchange the actor that acted for it.
fn identity_link(e: &AuditEvent) -> Markup {
    html! {
        @match &e.identity_id {
            Some(id) => a href=(workload_href(id)) { (id) },
            None => "(no verified identity)",
        }
        @if let Some(actor) = &e.actor_id {
            br; small { "actor: " a href=(workload_href(actor)) { (actor) } }
        }
    }
}

/// Events as a table, newest first; fingerprints shortened, never a token.
pub(super) fn events_table(events: &[AuditEvent]) -> Markup {
    html! {
        table.events {
            (head_row(&["Time", "Workload", "Target", "Decision", "Rule", "Reason", "Issued token", "Latency"]))
            tbody {
                @for e in events {
                    tr {
                        td { time datetime=(e.time) { (e.time) } }
                        td { (identity_link(e)) }
                        td { (e.target) }
                        td { (decision(e.decision.as_str())) }
                        td { (e.rule.as_deref().unwrap_or("–")) }
                        td { code { (e.reason) } @if let Some(d) = &e.detail { br; small { (d) } } }
                        td { @match &e.issued_token_fingerprint {
                            Some(f) => code title=(f) { (f.get(..19).unwrap_or(f)) "…" },
                            None => "–",
                        } }
                        td { (format!("{:.1} ms", e.latency_ms)) }
                    }
                }
                @if events.is_empty() { tr { td colspan="8" { "No event matches." } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_fingerprints_are_looked_up() {
        let f = tessera_adapters::secret::fingerprint(b"a token");
        assert!(is_fingerprint(&f));
        assert!(!is_fingerprint("sha256:abc"));
        assert!(!is_fingerprint(&f.to_uppercase()));
        assert!(!is_fingerprint("eyJhbGciOiJFUzI1NiJ9.e30.sig"));
    }
}
