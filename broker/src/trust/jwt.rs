//! `jwt` targets: what a relying party configures to accept Tessera's tokens.

use serde_json::json;
use tessera_adapters::targets::jwt::JwtTargetConfig;

use super::{Plan, Subject};

pub(super) fn render(plan: &Plan<'_>, config: &JwtTargetConfig) -> String {
    let rules: Vec<_> = plan
        .grants
        .iter()
        .map(|g| {
            let subjects: Vec<String> = g.subjects.iter().map(Subject::to_string).collect();
            json!({ "rule": g.rule.name, "subjects": subjects })
        })
        .collect();
    let out = json!({
        "target": config.name,
        "issuer": plan.issuer,
        "discovery": plan.discovery_uri,
        "jwks_uri": plan.jwks_uri,
        "audience": config.audience.as_deref().unwrap_or(&config.name),
        "algorithm": config.algorithm.as_str(),
        "rules": rules,
        "notes": plan.notes,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}
