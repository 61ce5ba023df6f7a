//! `GET /ui/workloads`: the workload directory with search and filters, a page at a time;
//! `GET /ui/workload?id=`: one workload: its identity, what it reached and was refused,
//! the rules that decided, its recent events.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{ago, decision, head_row, parse_ms, query, select, time, workload_href};
use super::{Ctx, attribute_filter, filled};
use crate::audit::store::{DirectoryPage, EventQuery, Workload, WorkloadQuery};

const PAGE: u32 = 100;

/// The directory's filters, as its form sends them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct DirectoryParams {
    q: Option<String>,
    source: Option<String>,
    /// `key=value`.
    pub(super) attribute: Option<String>,
    /// `1h`, `24h`, `7d`, `30d`.
    seen: Option<String>,
    decision: Option<String>,
    pub(super) cursor: Option<String>,
}

/// The `seen` choices and their length in milliseconds.
pub(super) const WINDOWS: &[(&str, i64)] =
    &[("1h", 3_600_000), ("24h", 86_400_000), ("7d", 604_800_000), ("30d", 2_592_000_000)];

pub(super) fn window_ms(name: Option<&str>) -> Option<i64> {
    WINDOWS.iter().find(|(n, _)| Some(*n) == name).map(|(_, ms)| *ms)
}

pub(super) async fn directory(ctx: Ctx, params: web::Query<DirectoryParams>) -> HttpResponse {
    const TITLE: &str = "Workloads";
    let store = match ctx.store(TITLE) {
        Ok(store) => store,
        Err(page) => return page,
    };
    let p = params.into_inner();
    let filter = WorkloadQuery {
        source: filled(&p.source),
        search: filled(&p.q),
        attribute: attribute_filter(&p.attribute),
        seen_since_ms: window_ms(p.seen.as_deref()).map(|w| ctx.now_ms() - w),
        decision: filled(&p.decision).filter(|d| matches!(d.as_str(), "allow" | "deny" | "error")),
        cursor: filled(&p.cursor).and_then(|c| c.parse().ok()),
        limit: PAGE,
        ..WorkloadQuery::default()
    };
    let page = match store.directory(&filter).await {
        Ok(page) => page,
        Err(e) => return ctx.store_failed(TITLE, &e),
    };
    let body = html! {
        (directory_form(&ctx, &p))
        (directory_table(&page, ctx.now_ms()))
        @if let Some(next) = &page.next_cursor {
            p { a rel="next" href={ "/ui/workloads?" (query(&[
                ("q", p.q.as_deref()), ("source", p.source.as_deref()), ("attribute", p.attribute.as_deref()),
                ("seen", p.seen.as_deref()), ("decision", p.decision.as_deref()), ("cursor", Some(next)),
            ])) } { "Next " (PAGE) " workloads" } }
        }
    };
    ctx.render(TITLE, body)
}

fn source_names(ctx: &Ctx) -> Vec<String> {
    let mut names: Vec<String> =
        ctx.broker.pipeline().router().sources().map(|s| s.name().to_string()).collect();
    names.sort();
    names
}

fn directory_form(ctx: &Ctx, p: &DirectoryParams) -> Markup {
    let windows: Vec<String> = WINDOWS.iter().map(|(n, _)| (*n).to_string()).collect();
    let decisions = ["allow", "deny", "error"].map(String::from);
    html! {
        form.filters method="get" action="/ui/workloads" role="search" {
            div { label for="q" { "Identity contains" }
                input type="search" id="q" name="q" value=(p.q.as_deref().unwrap_or("")); }
            div { (select("source", "Source", &source_names(ctx), p.source.as_deref())) }
            div { label for="attribute" { "Attribute (key=value)" }
                input type="text" id="attribute" name="attribute" placeholder="oidc.team=payments"
                    value=(p.attribute.as_deref().unwrap_or("")); }
            div { (select("seen", "Seen within", &windows, p.seen.as_deref())) }
            div { (select("decision", "Had a decision", &decisions, p.decision.as_deref())) }
            div { button type="submit" { "Filter" } }
        }
    }
}

fn directory_table(page: &DirectoryPage, now_ms: i64) -> Markup {
    html! {
        p { (page.total) " workloads match; " (page.workloads.len()) " shown, most recently seen first." }
        table.directory {
            (head_row(&["Workload", "Source", "Last seen", "Allowed", "Denied", "Errors", "Reached", "Refused"]))
            tbody {
                @for w in &page.workloads {
                    tr {
                        th scope="row" { a href=(workload_href(&w.id)) { (w.id) } }
                        td { (w.source) }
                        td { time datetime=(w.last_seen) { (ago(parse_ms(&w.last_seen), now_ms)) } }
                        td { (w.exchanges.allow) }
                        td class=@if w.exchanges.deny > 0 { "bad" } { (w.exchanges.deny) }
                        td class=@if w.exchanges.error > 0 { "bad" } { (w.exchanges.error) }
                        td { (targets_of(w, true)) }
                        td { (targets_of(w, false)) }
                    }
                }
            }
        }
    }
}

fn targets_of(w: &Workload, allowed: bool) -> String {
    let outcomes = if allowed { &w.targets } else { &w.refusals };
    let mut names: Vec<&str> = outcomes.iter().map(|o| o.target.as_str()).collect();
    names.dedup();
    names.join(", ")
}

#[derive(Debug, Deserialize)]
pub(super) struct WorkloadParams {
    id: String,
}

pub(super) async fn workload(ctx: Ctx, params: web::Query<WorkloadParams>) -> HttpResponse {
    const TITLE: &str = "Workload";
    let store = match ctx.store(TITLE) {
        Ok(store) => store,
        Err(page) => return page,
    };
    let id = params.into_inner().id;
    let one = WorkloadQuery { identity: Some(id.clone()), limit: 1, ..WorkloadQuery::default() };
    let events = EventQuery { identity: Some(id.clone()), limit: 20, ..EventQuery::default() };
    let (found, rules, events) =
        match (store.workloads(&one).await, store.workload_rules(&id).await, store.events(&events).await) {
            (Ok(found), Ok(rules), Ok(events)) => (found, rules, events),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return ctx.store_failed(TITLE, &e),
        };
    let Some(w) = found.into_iter().next() else {
        return ctx.render_status(
            actix_web::http::StatusCode::NOT_FOUND,
            TITLE,
            html! { p.notice { "The directory knows no workload " code { (id) } "." } },
        );
    };
    let body = html! {
        p.lead { code { (w.id) } }
        (identity(&w))
        section aria-labelledby="decided" {
            h2 id="decided" { "What it asked for, and the rules that decided" }
            table {
                (head_row(&["Target", "Decision", "Rule", "Reason", "Exchanges", "Last"]))
                tbody {
                    @for r in &rules {
                        tr {
                            td { (r.target) }
                            td { (decision(&r.decision)) }
                            td { @match &r.rule {
                                Some(rule) => a href={ "/ui/rules#rule-" (rule) } { (rule) },
                                None => { "no rule (" (r.reason) ")" },
                            } }
                            td { code { (r.reason) } }
                            td { (r.exchanges) }
                            td { (time(r.last_ms)) }
                        }
                    }
                }
            }
            p { a href={ "/ui/explain?" (query(&[("identity", Some(&w.id))])) } { "Explain a request of this workload" } }
        }
        section aria-labelledby="recent" {
            h2 id="recent" { "Recent events" }
            (super::audit::events_table(&events.events))
            p { a href={ "/ui/audit?" (query(&[("identity", Some(&w.id))])) } { "All its events" } }
        }
    };
    ctx.render(TITLE, body)
}

fn identity(w: &Workload) -> Markup {
    let fields =
        ["provider", "source", "issuer", "subject", "tenant", "namespace", "name", "instance", "region"];
    let attributes = w.identity.get("attributes").and_then(|a| a.as_object());
    html! {
        section aria-labelledby="identity" {
            h2 id="identity" { "Identity, as last verified" }
            dl.facts {
                @for f in fields {
                    @if let Some(v) = w.identity.get(f).and_then(|v| v.as_str()) {
                        dt { (f) } dd { (v) }
                    }
                }
                @if let Some(attributes) = attributes {
                    @for (k, v) in attributes {
                        dt { "attributes." (k) } dd { (v.as_str().unwrap_or_default()) }
                    }
                }
                dt { "First seen" } dd { (w.first_seen) }
                dt { "Last seen" } dd { (w.last_seen) }
            }
        }
    }
}
