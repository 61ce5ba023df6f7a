//! `GET /ui/impact` and `POST /ui/impact`: what a proposed mapping directory would change,
//! by the same replay as `tessera mappings diff`: the requests recorded in the audit store
//! over a window, decided by the rules serving and by the proposed ones. The directory is
//! a path on the broker's host (a checkout of the change under review), read as the
//! broker reads its own; the store is read read-only.

use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::Ctx;
use super::layout::head_row;
use crate::audit::store::history::History;
use crate::audit::store::store_url;
use crate::mapping::{Impact, ImpactReport, MappingSet};

const TITLE: &str = "Impact of a change";
const WINDOWS: &[(&str, i64)] = &[("24h", 86_400_000), ("7d", 604_800_000), ("30d", 2_592_000_000)];

pub(super) async fn form(ctx: Ctx) -> HttpResponse {
    let body = impact_form(&ctx, "", "7d");
    ctx.render(TITLE, body)
}

/// The body of `POST /ui/impact`.
#[derive(Debug, Deserialize)]
pub(super) struct ImpactForm {
    #[serde(default)]
    csrf: String,
    proposed: String,
    #[serde(default)]
    window: String,
}

pub(super) async fn run(req: HttpRequest, ctx: Ctx, form: web::Form<ImpactForm>) -> HttpResponse {
    if !super::session::csrf_ok(&req, &form.csrf) {
        return super::csrf_refused();
    }
    let window = WINDOWS.iter().find(|(n, _)| *n == form.window).copied().unwrap_or(("7d", 604_800_000));
    let proposed_dir = form.proposed.trim().to_string();
    let refuse = |message: String| {
        let body = impact_form(&ctx, &proposed_dir, window.0);
        ctx.render_status(
            StatusCode::BAD_REQUEST,
            TITLE,
            html! { (body) div.error role="alert" { pre { (message) } } },
        )
    };
    let catalog = ctx.broker.reloader().catalog().clone();
    let dir = proposed_dir.clone();
    let loaded = tokio::task::spawn_blocking(move || MappingSet::load_dir(Path::new(&dir), &catalog)).await;
    let proposed = match loaded {
        Ok(Ok(set)) => set,
        Ok(Err(errors)) => return refuse(format!("The proposed rules do not load:\n{errors}")),
        Err(e) => return refuse(format!("The proposed rules could not be read: {e}")),
    };
    let report = match replay(&ctx, &proposed, ctx.now_ms() - window.1).await {
        Ok(report) => report,
        Err(message) => return refuse(message),
    };
    let body = impact_form(&ctx, &proposed_dir, window.0);
    ctx.render(TITLE, html! { (body) (result(&report)) })
}

/// Replay the recorded requests since `since_ms` against the serving and the proposed rules.
async fn replay(ctx: &Ctx, proposed: &MappingSet, since_ms: i64) -> Result<ImpactReport, String> {
    let config = ctx.broker.config();
    let audit = config.config.audit();
    if !audit.store.enabled {
        return Err("This broker keeps no audit store: there is nothing to replay.".into());
    }
    let history = History::open(&audit.store, &store_url(config)).await.map_err(|e| e.to_string())?;
    let current = ctx.broker.pipeline().mappings();
    let mut impact = Impact::new(&current, proposed);
    let folding = impact.folding();
    let skipped = history.requests(since_ms, folding, |r| impact.add(r)).await.map_err(|e| e.to_string())?;
    Ok(impact.report(skipped))
}

fn impact_form(ctx: &Ctx, proposed: &str, window: &str) -> Markup {
    html! {
        p { "Replays the requests recorded in the audit store against the rules serving and against a proposed "
            "mapping directory, as " code { "tessera mappings diff" } " does, and lists who would be newly refused "
            "or newly allowed. Nothing is changed." }
        form.filters method="post" action="/ui/impact" {
            input type="hidden" name="csrf" value=(ctx.csrf());
            div { label for="proposed" { "Proposed mapping directory (a path on the broker's host)" }
                input type="text" id="proposed" name="proposed" size="60" required value=(proposed); }
            div { label for="window" { "Recorded over the last" }
                select id="window" name="window" {
                    @for (w, _) in WINDOWS { option value=(w) selected[*w == window] { (w) } }
                } }
            div { button type="submit" { "Replay" } }
        }
    }
}

fn result(report: &ImpactReport) -> Markup {
    html! {
        section aria-labelledby="impact" {
            h2 id="impact" { "What would change" }
            p { (report.replayed) " recorded requests of " (report.workloads) " workloads replayed ("
                (report.skipped) " without a verified identity skipped)." }
            table {
                (head_row(&["Change", "Workloads", "Exchanges"]))
                tbody {
                    @for s in &report.summary {
                        tr { th scope="row" { (s.kind.as_str()) } td { (s.workloads) } td { (s.exchanges) } }
                    }
                    @if report.summary.is_empty() { tr { td colspan="3" { "No recorded request would be decided differently." } } }
                }
            }
            h3 { "As " code { "tessera mappings diff" } " reports it" }
            pre.explain-text { (report.to_string()) }
        }
    }
}
