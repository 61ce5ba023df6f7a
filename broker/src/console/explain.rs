//! `GET /ui/explain` and `POST /ui/explain`: paste a subject token or write an identity,
//! pick an audience, and see every rule considered and the decision, from the same engine
//! as `tessera mappings explain` and `POST /v1/explain`. Nothing is issued or audited; a
//! pasted token is verified as an exchange would verify it and never shown back.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{decision, head_row};
use super::{Ctx, filled};
use crate::explain::{self, ExplainRequest, Explanation};
use crate::mapping::{Decision, TraceOutcome};

const TITLE: &str = "Explain";

#[derive(Debug, Default, Deserialize)]
pub(super) struct Prefill {
    /// A workload of the directory whose identity fills the form.
    identity: Option<String>,
}

pub(super) async fn form(ctx: Ctx, params: web::Query<Prefill>) -> HttpResponse {
    let mut identity = String::new();
    if let (Some(id), Some(store)) = (filled(&params.identity), ctx.broker.audit_store()) {
        match store.identities(vec![id]).await {
            Ok(found) => {
                if let Some(value) = found.into_values().next() {
                    identity = serde_json::to_string_pretty(&value).unwrap_or_default();
                }
            }
            Err(e) => return ctx.store_failed(TITLE, &e),
        }
    }
    let body = explain_form(&ctx, &identity, None, None);
    ctx.render(TITLE, body)
}

/// The body of `POST /ui/explain`.
#[derive(Debug, Deserialize)]
pub(super) struct ExplainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject_token: String,
    #[serde(default)]
    identity: String,
    audience: String,
    #[serde(default)]
    scope: String,
}

pub(super) async fn run(req: HttpRequest, ctx: Ctx, form: web::Form<ExplainForm>) -> HttpResponse {
    if !super::session::csrf_ok(&req, &form.csrf) {
        return super::csrf_refused();
    }
    let form = form.into_inner();
    let token = Some(form.subject_token.trim().to_string()).filter(|t| !t.is_empty());
    let identity = Some(form.identity.trim()).filter(|i| !i.is_empty());
    let subject = match crate::http::admin::explain_subject(&ctx.broker, identity, token, None) {
        Ok(subject) => subject,
        Err((_, message)) => return refused(&ctx, &form, &message),
    };
    let request = ExplainRequest {
        subject,
        actor: None,
        audience: form.audience.clone(),
        scope: Some(form.scope.trim().to_string()).filter(|s| !s.is_empty()),
        client_addr: None,
        now: ctx.broker.clock().now(),
    };
    let mappings = ctx.broker.pipeline().mappings();
    match explain::explain(ctx.broker.pipeline().router(), &mappings, request).await {
        Ok(explanation) => {
            let body = explain_form(&ctx, &form.identity, Some(&form.audience), Some(&form.scope));
            ctx.render(TITLE, html! { (body) (result(&explanation)) })
        }
        Err(e) => refused(&ctx, &form, &e.to_string()),
    }
}

fn refused(ctx: &Ctx, form: &ExplainForm, message: &str) -> HttpResponse {
    let body = explain_form(ctx, &form.identity, Some(&form.audience), Some(&form.scope));
    ctx.render_status(StatusCode::BAD_REQUEST, TITLE, html! { (body) p.error role="alert" { (message) } })
}

/// The form; a pasted token is never written back into it.
fn explain_form(ctx: &Ctx, identity: &str, audience: Option<&str>, scope: Option<&str>) -> Markup {
    let mut targets: Vec<&str> = ctx.broker.pipeline().targets().map(|t| t.name()).collect();
    targets.sort_unstable();
    html! {
        form.explain method="post" action="/ui/explain" {
            input type="hidden" name="csrf" value=(ctx.csrf());
            fieldset {
                legend { "Who: a subject token, or an identity" }
                label for="subject_token" { "Subject token (verified by the source that trusts its issuer; not stored, not shown again)" }
                textarea id="subject_token" name="subject_token" rows="3" autocomplete="off" spellcheck="false" {}
                label for="identity" { "or an identity, as in a mapping test case (YAML or JSON; only source is required)" }
                textarea id="identity" name="identity" rows="6" spellcheck="false"
                    placeholder="{ source: demo, subject: payments-api }" { (identity) }
            }
            fieldset {
                legend { "For what" }
                label for="audience" { "Audience (target)" }
                select id="audience" name="audience" required {
                    @for t in &targets { option value=(t) selected[audience == Some(*t)] { (t) } }
                }
                label for="scope" { "Scope (optional)" }
                input type="text" id="scope" name="scope" value=(scope.unwrap_or(""));
            }
            button type="submit" { "Explain" }
        }
    }
}

fn verdict(outcome: &TraceOutcome) -> (&'static str, &'static str) {
    match outcome {
        TraceOutcome::Applied { .. } => ("applies", "allow"),
        TraceOutcome::AppliedOnError { .. } => ("applies (could not be evaluated)", "deny"),
        TraceOutcome::NotMatched { .. } => ("does not match", "none"),
        TraceOutcome::ConditionFalse { .. } => ("condition false", "none"),
        TraceOutcome::ConditionError { .. } => ("condition failed", "error"),
        TraceOutcome::Withheld { .. } => ("attribute withheld", "error"),
        TraceOutcome::DelegationNotAllowed => ("does not allow delegation", "none"),
    }
}

fn result(e: &Explanation) -> Markup {
    let class = match &e.decision {
        Decision::Allow { .. } => "allow",
        _ => "deny",
    };
    html! {
        section aria-labelledby="decision" {
            h2 id="decision" { "Decision: " (decision(class)) }
            table {
                (head_row(&["Rule", "Effect", "Verdict", "Where"]))
                tbody {
                    @for t in &e.trace {
                        @let (text, class) = verdict(&t.outcome);
                        tr {
                            th scope="row" { a href={ "/ui/rules#rule-" (t.rule) } { (t.rule) } }
                            td { (t.effect.as_str()) }
                            td { span class={ "badge " (class) } { (text) } }
                            td { (t.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()) ":" (t.line) }
                        }
                    }
                }
            }
            h3 { "As " code { "tessera mappings explain" } " reports it" }
            pre.explain-text { (e.to_string()) }
        }
    }
}
