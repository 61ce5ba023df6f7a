//! `postgres` targets: the database side is not an OIDC trust but one admin role. What a
//! superuser runs once so the broker can make and drop logins: the admin role's powers,
//! its membership in the owner, and (PostgreSQL 16 and later) `ADMIN OPTION` on each
//! group, plus which rules grant which group.

use serde_json::json;
use tessera_adapters::targets::postgres::{PostgresTargetConfig, quote_ident};

use super::Plan;
use crate::mapping::{GrantValue, TemplatePiece};

pub(super) fn render(plan: &Plan<'_>, config: &PostgresTargetConfig) -> String {
    let admin = config.admin_user().unwrap_or_else(|| "tessera_admin".to_string());
    let quote = |name: &str| quote_ident(name).unwrap_or_else(|_| format!("<{name}>"));
    let mut sql = vec![
        format!("-- as a superuser, in the database of admin_url; then give {} a password", quote(&admin)),
        format!("CREATE ROLE {} LOGIN CREATEROLE", quote(&admin)),
        format!("GRANT {} TO {}", quote(&config.owner), quote(&admin)),
        "-- PostgreSQL 16 and later: granting a group takes ADMIN OPTION on it".to_string(),
    ];
    sql.extend(
        config.groups.iter().map(|g| format!("GRANT {} TO {} WITH ADMIN OPTION", quote(g), quote(&admin))),
    );
    let rules: Vec<_> = plan
        .grants
        .iter()
        .map(|g| {
            let group = match g.rule.param("group") {
                Some(GrantValue::Text(pieces)) => pieces
                    .iter()
                    .map(|p| match p {
                        TemplatePiece::Text(t) => t.clone(),
                        TemplatePiece::Field(f) => format!("{{{f}}}"),
                    })
                    .collect(),
                _ => String::new(),
            };
            json!({ "rule": g.rule.name, "group": group })
        })
        .collect();
    let out = json!({
        "target": config.name,
        "admin_role": admin,
        "owner": config.owner,
        "groups": config.groups,
        "sql": sql,
        "rules": rules,
        "notes": plan.notes,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}
