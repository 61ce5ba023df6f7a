//! The console's page shell, its login page, and the small formatting helpers pages share.

use maud::{DOCTYPE, Markup, html};

use crate::http::admin_auth::AdminCaller;

/// What the shell of a page needs.
pub(super) struct Page<'a> {
    pub title: &'a str,
    /// The request path, to mark the current section in the navigation.
    pub path: &'a str,
    pub csrf: &'a str,
    pub caller: &'a AdminCaller,
    /// Whether the admin listener authenticates (else there is nothing to log out of).
    pub authenticated: bool,
}

/// The sections, in navigation order: path and label.
const SECTIONS: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/graph", "Access graph"),
    ("/ui/workloads", "Workloads"),
    ("/ui/audit", "Audit"),
    ("/ui/explain", "Explain"),
    ("/ui/rules", "Rules"),
    ("/ui/impact", "Impact"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · Tessera" }
            link rel="stylesheet" href="/ui/assets/console.css";
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A console page: skip link, navigation, who is logged in, the page's content.
pub(super) fn page(page: &Page<'_>, body: Markup) -> Markup {
    let current = |path: &str| page.path == path || (path == "/ui/workloads" && page.path == "/ui/workload");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(page.title))
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/ui/" { "Tessera" }
                    nav aria-label="Console sections" {
                        ul {
                            @for (path, label) in SECTIONS {
                                li {
                                    @if current(path) {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in as " (page.caller.to_string()) }
                        @if page.authenticated {
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(page.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (page.title) }
                    (body)
                }
            }
        }
    }
}

/// The login page: an admin token, or nothing when the client certificate suffices.
pub(super) fn login(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body.login {
                main id="main" {
                    h1 { "Tessera console" }
                    @if let Some(error) = error {
                        p.error role="alert" { "Login refused: " (error) }
                    }
                    form method="post" action="/ui/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="token" { "Admin token" }
                        textarea id="token" name="token" rows="4" autocomplete="off" spellcheck="false"
                            aria-describedby="token-help" {}
                        p id="token-help" class="help" {
                            "A token Tessera issued for the admin target (see docs/api.md, \"Admin API\"). "
                            "With a client certificate the admin listener trusts, leave it empty. "
                            "The token is checked once; the browser then holds a session cookie only."
                        }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// A page without the navigation, for refusals.
pub(super) fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.login {
                main id="main" {
                    h1 { (title) }
                    p role="alert" { (message) }
                    p { a href="/ui/" { "Back to the console" } }
                }
            }
        }
    }
}

/// `2026-11-23 08:00:01Z` from milliseconds since the epoch.
pub(super) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The same from seconds since the epoch.
pub(super) fn time_s(seconds: i64) -> String {
    time(seconds.saturating_mul(1000))
}

/// How long ago `ms` was, from `now_ms`, in words: `12 s ago`, `3 min ago`, `5 h ago`.
pub(super) fn ago(ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - ms).max(0) / 1000;
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time the store wrote.
pub(super) fn parse_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.timestamp_millis()).unwrap_or_default()
}

/// A link's query string from its non-empty parameters.
pub(super) fn query(params: &[(&str, Option<&str>)]) -> String {
    let pairs: Vec<(&str, &str)> =
        params.iter().filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v))).collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The link to a workload's page.
pub(super) fn workload_href(id: &str) -> String {
    format!("/ui/workload?{}", query(&[("id", Some(id))]))
}

/// A table's header row: one column header per label.
pub(super) fn head_row(labels: &[&str]) -> Markup {
    html! { thead { tr { @for label in labels { th scope="col" { (label) } } } } }
}

/// A decision as a labelled badge (text, not colour alone).
pub(super) fn decision(decision: &str) -> Markup {
    html! { span class={ "badge " (decision) } { (decision) } }
}

/// A `<select>` of `options` with `selected` chosen; the first option is "any".
pub(super) fn select(name: &str, label: &str, options: &[String], selected: Option<&str>) -> Markup {
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            option value="" { "any" }
            @for o in options {
                option value=(o) selected[selected == Some(o.as_str())] { (o) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_read_them() {
        assert_eq!(time(1_795_424_401_000), "2026-11-23 09:00:01Z");
        assert_eq!(ago(1_000, 61_000), "1 min ago");
        assert_eq!(ago(1_000, 5_000), "4 s ago");
        assert_eq!(ago(0, 7_200_000), "2 h ago");
        assert_eq!(query(&[("a", Some("x y")), ("b", None), ("c", Some(""))]), "a=x+y");
    }

    #[test]
    fn text_is_escaped() {
        let caller = AdminCaller { subject: Some("<script>".into()), certificate: None };
        let page = Page { title: "T", path: "/ui/", csrf: "c", caller: &caller, authenticated: true };
        let html = super::page(&page, html! { p { "<b>" } }).into_string();
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
