//! `GET /ui/rules`: every mapping file and rule serving, each rule's matches recorded in
//! the audit store (count, last time), the inline tests with their results, and the
//! warnings of `tessera mappings check` beside the rule they concern; on top, the last
//! reload error while the files on disk are refused and these rules keep serving.
//! `POST /ui/rules/reload` reloads the directory now, as `POST /v1/reload` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};

use super::Ctx;
use super::layout::time;
use super::session::CsrfForm;
use crate::audit::store::RuleMatches;
use crate::mapping::{Expectation, RuleView, TestOutcome, Warning};

const TITLE: &str = "Rules";

/// What the page shows beside one rule.
struct RuleFacts<'a> {
    matches: Vec<&'a RuleMatches>,
    warnings: Vec<&'a Warning>,
    tests: Vec<&'a TestOutcome>,
}

pub(super) async fn page(ctx: Ctx) -> HttpResponse {
    let set = ctx.broker.pipeline().mappings();
    let matches = match ctx.broker.audit_store() {
        Some(store) => match store.rule_matches().await {
            Ok(matches) => matches,
            Err(e) => return ctx.store_failed(TITLE, &e),
        },
        None => Vec::new(),
    };
    let warnings = set.lint(ctx.broker.reloader().catalog());
    let tests = set.run_tests_at(ctx.broker.clock().now());
    let rules = set.rule_views();
    let mut files: BTreeMap<PathBuf, Vec<&RuleView>> = BTreeMap::new();
    for rule in &rules {
        files.entry(rule.file.clone()).or_default().push(rule);
    }
    let status = ctx.broker.reloader().status();
    let passed = tests.iter().filter(|t| t.passed).count();
    let body = html! {
        @if let Some(error) = &status.last_reload_error {
            div.error role="alert" {
                h2 { "The last reload was refused" }
                p { "At " (error.at) " the files on disk did not load. The rules below (version "
                    code { (set.version()) } ") keep serving until the files are fixed." }
                pre { (error.message) }
            }
        }
        p { (set.rule_count()) " rules in " (set.file_count()) " files, version " code { (set.version()) } ". "
            "Inline tests: " (passed) " of " (tests.len()) " pass. " (warnings.len()) " warnings." }
        form method="post" action="/ui/rules/reload" {
            input type="hidden" name="csrf" value=(ctx.csrf());
            button type="submit" { "Reload the mapping directory now" }
        }
        @for (file, rules) in &files {
            (file_section(file, rules, &matches, &warnings, &tests))
        }
    };
    ctx.render(TITLE, body)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn facts<'a>(
    rule: &RuleView,
    next_line: Option<u64>,
    matches: &'a [RuleMatches],
    warnings: &'a [Warning],
    tests: &'a [TestOutcome],
) -> RuleFacts<'a> {
    let names_rule = |t: &TestOutcome| match &t.expected {
        Expectation::Allow(r) | Expectation::Deny(r) => *r == rule.name,
        _ => false,
    };
    RuleFacts {
        matches: matches.iter().filter(|m| m.rule == rule.name).collect(),
        warnings: warnings
            .iter()
            .filter(|w| w.file == rule.file && w.line >= rule.line && next_line.is_none_or(|n| w.line < n))
            .collect(),
        tests: tests.iter().filter(|t| t.file == rule.file && names_rule(t)).collect(),
    }
}

fn file_section(
    file: &Path,
    rules: &[&RuleView],
    matches: &[RuleMatches],
    warnings: &[Warning],
    tests: &[TestOutcome],
) -> Markup {
    let other_tests: Vec<&TestOutcome> = tests
        .iter()
        .filter(|t| t.file == file)
        .filter(|t| !matches!(&t.expected, Expectation::Allow(r) | Expectation::Deny(r) if rules.iter().any(|x| &x.name == r)))
        .collect();
    html! {
        section.file aria-labelledby={ "file-" (file_name(file)) } {
            h2 id={ "file-" (file_name(file)) } { (file_name(file)) }
            @for (i, rule) in rules.iter().enumerate() {
                @let next = rules.get(i + 1).map(|r| r.line);
                (rule_card(rule, &facts(rule, next, matches, warnings, tests)))
            }
            @if !other_tests.is_empty() {
                h3 { "Other tests in this file" }
                ul.tests { @for t in &other_tests { (test_item(t)) } }
            }
        }
    }
}

fn rule_card(rule: &RuleView, facts: &RuleFacts<'_>) -> Markup {
    let last = facts.matches.iter().map(|m| m.last_ms).max();
    html! {
        article.rule id={ "rule-" (rule.name) } {
            h3 { (rule.name) " " span class={ "badge " (rule.effect.as_str()) } { (rule.effect.as_str()) } }
            @if let Some(d) = &rule.description { p { (d) } }
            dl.facts {
                dt { "Target" } dd { (rule.target) }
                dt { "Match" } dd {
                    @for (field, patterns) in rule.matchers_as_written() {
                        code { (field) ": " (patterns.join(" | ")) } " "
                    }
                    @if rule.conditional { "and a " code { "when:" } " condition" }
                }
                dt { "Defined at" } dd { (rule.location()) }
                dt { "Decided" } dd {
                    @if facts.matches.is_empty() { "no exchange recorded" }
                    @for m in &facts.matches { (m.exchanges) " " (m.decision) " " }
                    @if let Some(last) = last { "(last " (time(last)) ")" }
                }
            }
            @for w in &facts.warnings {
                p.warning role="note" { "Warning (line " (w.line) "): " (w.message) " — " (w.hint) }
            }
            @if !facts.tests.is_empty() {
                ul.tests { @for t in &facts.tests { (test_item(t)) } }
            }
        }
    }
}

fn test_item(t: &TestOutcome) -> Markup {
    html! {
        li class=@if t.passed { "pass" } @else { "fail" } {
            @if t.passed { "pass: " } @else { "FAILED: " }
            "line " (t.line) ", audience " code { (t.audience) } ", expected " (t.expected.to_string())
            @if let Some(d) = &t.description { " (" (d) ")" }
        }
    }
}

/// `POST /ui/rules/reload`: reload now, then show the rules page (with the error, if the
/// files were refused).
pub(super) async fn reload(req: HttpRequest, ctx: Ctx, form: web::Form<CsrfForm>) -> HttpResponse {
    if !super::session::csrf_ok(&req, &form.csrf) {
        return super::csrf_refused();
    }
    let outcome = ctx.broker.reload_mappings(true).await;
    tracing::info!(outcome = ?outcome, "console: mapping reload requested");
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/rules")).finish()
}
