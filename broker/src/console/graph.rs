//! `GET /ui/graph`: the access graph, sources → workloads → targets, drawn as SVG on the
//! server. Edges carry the allow / deny / error counts over a window (1 h, 24 h, 7 d),
//! counted in whole hours; filters pick a source, a target or an attribute value.
//! Workloads can be grouped by namespace or tenant, and only the busiest `top` are drawn:
//! the rest of each source becomes one "and N more" node. Every node and edge is a link
//! to its detail; the same edges follow as a table, for keyboards and screen readers.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{head_row, query, select, time, workload_href};
use super::{Ctx, attribute_filter, filled};
use crate::audit::store::{Edge, EdgeQuery, HOUR_MS};

const TITLE: &str = "Access graph";
const WINDOWS: &[(&str, i64)] = &[("1h", 3_600_000), ("24h", 86_400_000), ("7d", 604_800_000)];
const DEFAULT_WINDOW: (&str, i64) = ("24h", 86_400_000);
const GROUPS: &[&str] = &["workload", "namespace", "tenant"];
const DEFAULT_TOP: usize = 25;
const ROW: i64 = 28;
/// The x of the sources', workloads' and targets' columns.
const SOURCES_X: i64 = 10;
const MIDDLE_X: i64 = 310;
const TARGETS_X: i64 = 640;
const NODE_WIDTH: i64 = 240;

#[derive(Debug, Default, Deserialize)]
pub(super) struct GraphParams {
    window: Option<String>,
    source: Option<String>,
    target: Option<String>,
    attribute: Option<String>,
    group: Option<String>,
    top: Option<usize>,
}

/// Exchanges by decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    allow: i64,
    deny: i64,
    error: i64,
}

impl Counts {
    fn add(&mut self, e: &Edge) {
        self.allow += e.allow;
        self.deny += e.deny;
        self.error += e.error;
    }

    fn total(self) -> i64 {
        self.allow + self.deny + self.error
    }

    /// The edge's class: all allowed, all refused, or both.
    fn class(self) -> &'static str {
        match (self.allow > 0, self.deny + self.error > 0) {
            (true, false) => "allow",
            (false, true) => "deny",
            _ => "mixed",
        }
    }

    fn describe(self) -> String {
        format!("{} allowed, {} denied, {} errors", self.allow, self.deny, self.error)
    }
}

/// A middle node: one workload, one group of them, or the rest of a source's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Middle {
    source: String,
    /// The workload id or the group's value; `None` for "and N more".
    key: Option<String>,
}

/// The graph, laid out: nodes in three columns and the counts of every edge.
#[derive(Debug, Default)]
struct Graph {
    sources: Vec<String>,
    middles: Vec<(Middle, Counts, usize)>,
    targets: Vec<String>,
    left: BTreeMap<(String, Middle), Counts>,
    right: BTreeMap<(Middle, String), Counts>,
}

pub(super) async fn page(ctx: Ctx, params: web::Query<GraphParams>) -> HttpResponse {
    let store = match ctx.store(TITLE) {
        Ok(store) => store,
        Err(page) => return page,
    };
    let p = params.into_inner();
    let window =
        WINDOWS.iter().find(|(n, _)| Some(*n) == p.window.as_deref()).copied().unwrap_or(DEFAULT_WINDOW);
    let group = p.group.as_deref().filter(|g| GROUPS.contains(g)).unwrap_or("workload");
    // Counted in whole hours (the store keeps hourly counts): from the start of the hour
    // the window's start falls in, so a window holds at least what it names.
    let since_ms = (ctx.now_ms() - window.1).div_euclid(HOUR_MS) * HOUR_MS;
    let query = EdgeQuery {
        since_ms,
        source: filled(&p.source),
        target: filled(&p.target),
        attribute: attribute_filter(&p.attribute),
    };
    let edges = match store.edges(&query).await {
        Ok(edges) => edges,
        Err(e) => return ctx.store_failed(TITLE, &e),
    };
    let groups = if group == "workload" {
        BTreeMap::new()
    } else {
        let ids: Vec<String> = edges.iter().map(|e| e.identity_id.clone()).collect();
        match store.identities(ids).await {
            Ok(identities) => identities
                .into_iter()
                .map(|(id, v)| (id, v.get(group).and_then(|g| g.as_str()).unwrap_or("(none)").to_string()))
                .collect(),
            Err(e) => return ctx.store_failed(TITLE, &e),
        }
    };
    let top = p.top.unwrap_or(DEFAULT_TOP).clamp(1, 500);
    let graph = Graph::build(&edges, &groups, top);
    let body = html! {
        (form(&ctx, &p, window.0, group, top))
        p.help { "Exchanges since " (time(since_ms)) ": the graph counts whole hours, from the start of the hour the "
            (window.0) " window begins in." }
        @if edges.is_empty() {
            p.notice { "No exchange by a verified workload in this window." }
        } @else {
            (svg(&graph, group))
            (table(&graph, group))
        }
    };
    ctx.render(TITLE, body)
}

impl Graph {
    /// Group `edges` (by `groups`, a workload id's group value, when grouping), keep the
    /// `top` busiest middle nodes and fold the rest of each source into one.
    fn build(edges: &[Edge], groups: &BTreeMap<String, String>, top: usize) -> Self {
        let key_of = |e: &Edge| groups.get(&e.identity_id).cloned().unwrap_or_else(|| e.identity_id.clone());
        let mut totals: BTreeMap<Middle, (Counts, Vec<String>)> = BTreeMap::new();
        for e in edges {
            let middle = Middle { source: e.source.clone(), key: Some(key_of(e)) };
            let entry = totals.entry(middle).or_default();
            entry.0.add(e);
            if !entry.1.contains(&e.identity_id) {
                entry.1.push(e.identity_id.clone());
            }
        }
        let mut ranked: Vec<(Middle, Counts, usize)> =
            totals.into_iter().map(|(m, (c, ids))| (m, c, ids.len())).collect();
        ranked.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
        let kept: Vec<Middle> = ranked.iter().take(top).map(|(m, _, _)| m.clone()).collect();
        let mut graph = Graph::default();
        let mut rest: BTreeMap<String, (Counts, usize)> = BTreeMap::new();
        for (m, c, n) in ranked.iter().skip(top) {
            let entry = rest.entry(m.source.clone()).or_default();
            entry.0.add(&Edge { allow: c.allow, deny: c.deny, error: c.error, ..Edge::default() });
            entry.1 += n;
        }
        graph.middles = ranked.into_iter().take(top).collect();
        graph.middles.extend(rest.into_iter().map(|(s, (c, n))| (Middle { source: s, key: None }, c, n)));
        for e in edges {
            let mut middle = Middle { source: e.source.clone(), key: Some(key_of(e)) };
            if !kept.contains(&middle) {
                middle.key = None;
            }
            graph.left.entry((e.source.clone(), middle.clone())).or_default().add(e);
            graph.right.entry((middle, e.target.clone())).or_default().add(e);
            for (list, name) in [(&mut graph.sources, &e.source), (&mut graph.targets, &e.target)] {
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
        }
        graph.sources.sort();
        graph.targets.sort();
        graph
    }
}

fn form(ctx: &Ctx, p: &GraphParams, window: &str, group: &str, top: usize) -> Markup {
    let mut sources: Vec<String> =
        ctx.broker.pipeline().router().sources().map(|s| s.name().to_string()).collect();
    sources.sort();
    let mut targets: Vec<String> = ctx.broker.pipeline().targets().map(|t| t.name().to_string()).collect();
    targets.sort();
    html! {
        form.filters method="get" action="/ui/graph" aria-label="Graph filters" {
            div { label for="window" { "Window" }
                select id="window" name="window" {
                    @for (w, _) in WINDOWS { option value=(w) selected[*w == window] { (w) } }
                } }
            div { (select("source", "Source", &sources, p.source.as_deref())) }
            div { (select("target", "Target", &targets, p.target.as_deref())) }
            div { label for="attribute" { "Attribute (key=value)" }
                input type="text" id="attribute" name="attribute" placeholder="oidc.team=payments"
                    value=(p.attribute.as_deref().unwrap_or("")); }
            div { label for="group" { "Group workloads by" }
                select id="group" name="group" {
                    @for g in GROUPS { option value=(g) selected[*g == group] { (g) } }
                } }
            div { label for="top" { "Show the busiest" }
                input type="number" id="top" name="top" min="1" max="500" value=(top); }
            div { button type="submit" { "Draw" } }
        }
    }
}

fn middle_label(m: &Middle, workloads: usize, group: &str) -> String {
    match &m.key {
        Some(key) if group == "workload" => key.clone(),
        Some(key) => format!("{key} ({workloads} workloads)"),
        None => format!("and {workloads} more of {}", m.source),
    }
}

fn middle_href(m: &Middle, group: &str) -> String {
    match &m.key {
        Some(id) if group == "workload" => workload_href(id),
        Some(key) => format!("/ui/workloads?{}", query(&[("source", Some(&m.source)), ("q", Some(key))])),
        None => format!("/ui/workloads?{}", query(&[("source", Some(&m.source))])),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 34 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(33).collect::<String>())
    }
}

/// A node: a link around a box and its label.
fn node(x: i64, y: i64, label: &str, href: &str, class: &str) -> Markup {
    html! {
        a href=(href) {
            title { (label) }
            rect class={ "node " (class) } x=(x) y=(y) width=(NODE_WIDTH) height=(ROW - 6) rx="4" {}
            text x=(x + 8) y=(y + 15) { (shorten(label)) }
        }
    }
}

/// An edge: a link around a curve from one column to the next, as wide as its traffic.
fn edge(from: (i64, i64), to: (i64, i64), counts: Counts, peak: i64, href: &str) -> Markup {
    let (x1, y1, x2, y2) = (from.0 + NODE_WIDTH, from.1 + (ROW - 6) / 2, to.0, to.1 + (ROW - 6) / 2);
    let mid = (x1 + x2) / 2;
    let width = 1.0 + 7.0 * (counts.total() as f64).ln_1p() / (peak as f64).ln_1p().max(1.0);
    html! {
        a href=(href) {
            title { (counts.describe()) }
            path class={ "edge " (counts.class()) } stroke-width=(format!("{width:.1}"))
                d=(format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")) {}
        }
    }
}

fn svg(g: &Graph, group: &str) -> Markup {
    let rows = g.sources.len().max(g.middles.len()).max(g.targets.len()) as i64;
    let height = rows * ROW + 10;
    let y = |i: usize| 5 + i as i64 * ROW;
    let source_y = |s: &str| g.sources.iter().position(|x| x == s).map_or(0, y);
    let middle_y = |m: &Middle| g.middles.iter().position(|(x, _, _)| x == m).map_or(0, y);
    let target_y = |t: &str| g.targets.iter().position(|x| x == t).map_or(0, y);
    let peak = g.left.values().chain(g.right.values()).map(|c| c.total()).max().unwrap_or(1);
    html! {
        svg.graph viewBox={ "0 0 " (TARGETS_X + NODE_WIDTH + 10) " " (height) } role="img"
            aria-label="Access graph: sources on the left, workloads in the middle, targets on the right" {
            @for ((s, m), c) in &g.left {
                (edge((SOURCES_X, source_y(s)), (MIDDLE_X, middle_y(m)), *c, peak, &middle_href(m, group)))
            }
            @for ((m, t), c) in &g.right {
                @let href = match (&m.key, group) {
                    (Some(id), "workload") => format!("/ui/audit?{}", query(&[("identity", Some(id)), ("target", Some(t))])),
                    _ => format!("/ui/audit?{}", query(&[("source", Some(&m.source)), ("target", Some(t))])),
                };
                (edge((MIDDLE_X, middle_y(m)), (TARGETS_X, target_y(t)), *c, peak, &href))
            }
            @for (i, s) in g.sources.iter().enumerate() {
                (node(SOURCES_X, y(i), s, &format!("/ui/graph?{}", query(&[("source", Some(s))])), "source"))
            }
            @for (i, (m, c, n)) in g.middles.iter().enumerate() {
                (node(MIDDLE_X, y(i), &middle_label(m, *n, group), &middle_href(m, group), c.class()))
            }
            @for (i, t) in g.targets.iter().enumerate() {
                (node(TARGETS_X, y(i), t, &format!("/ui/audit?{}", query(&[("target", Some(t))])), "target"))
            }
        }
    }
}

fn table(g: &Graph, group: &str) -> Markup {
    html! {
        table.edges {
            caption { "The edges drawn above: each workload (or group) and target, with its exchanges in the window" }
            (head_row(&["Source", "Workload", "Target", "Allowed", "Denied", "Errors"]))
            tbody {
                @for ((m, t), c) in &g.right {
                    @let workloads = g.middles.iter().find(|(x, _, _)| x == m).map_or(0, |(_, _, n)| *n);
                    tr {
                        td { (m.source) }
                        th scope="row" { a href=(middle_href(m, group)) { (middle_label(m, workloads, group)) } }
                        td { (t) }
                        td { (c.allow) }
                        td class=@if c.deny > 0 { "bad" } { (c.deny) }
                        td class=@if c.error > 0 { "bad" } { (c.error) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(source: &str, id: &str, target: &str, allow: i64, deny: i64) -> Edge {
        Edge { source: source.into(), identity_id: id.into(), target: target.into(), allow, deny, error: 0 }
    }

    #[test]
    fn past_the_top_workloads_the_rest_of_a_source_is_one_node() {
        let mut edges: Vec<Edge> = (0..10).map(|i| edge("k8s", &format!("w{i}"), "api", i + 1, 0)).collect();
        edges.push(edge("gh", "repo", "api", 0, 3));
        let graph = Graph::build(&edges, &BTreeMap::new(), 3);
        let labels: Vec<String> =
            graph.middles.iter().map(|(m, _, n)| middle_label(m, *n, "workload")).collect();
        assert_eq!(labels, ["w9", "w8", "w7", "and 1 more of gh", "and 7 more of k8s"]);
        let rest = graph.middles.iter().find(|(m, _, _)| m.key.is_none() && m.source == "k8s").unwrap();
        assert_eq!(rest.1.total(), 1 + 2 + 3 + 4 + 5 + 6 + 7);
        assert_eq!(graph.sources, ["gh", "k8s"]);
        assert_eq!(graph.right.len(), 5, "three workloads and two folded nodes reach the target");
    }

    #[test]
    fn groups_count_their_workloads() {
        let edges = vec![edge("k8s", "a", "api", 1, 0), edge("k8s", "b", "api", 0, 2)];
        let groups = BTreeMap::from([
            ("a".to_string(), "payments".to_string()),
            ("b".to_string(), "payments".to_string()),
        ]);
        let graph = Graph::build(&edges, &groups, 25);
        assert_eq!(graph.middles.len(), 1);
        let (m, c, n) = &graph.middles[0];
        assert_eq!(middle_label(m, *n, "namespace"), "payments (2 workloads)");
        assert_eq!((c.allow, c.deny, c.class()), (1, 2, "mixed"));
    }
}
