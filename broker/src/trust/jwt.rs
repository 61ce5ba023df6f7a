//! `jwt` targets: what a relying party configures to accept Tessera's tokens; and the same
//! for the foreign authorization server of a `jwt_grant` or `oauth` target.

use serde_json::json;
use tessera_adapters::target::SigningAlgorithm;
use tessera_adapters::targets::jwt::JwtTargetConfig;

use super::{Plan, Subject};

pub(super) fn render(plan: &Plan<'_>, config: &JwtTargetConfig) -> String {
    relying_party(plan, &config.name, config.audience.as_deref().unwrap_or(&config.name), config.algorithm)
}

/// What a relying party of Tessera's JWTs for target `name` configures: the issuer, its
/// keys, the `aud` it must require, the algorithm, and each rule's subjects. Also what a
/// foreign authorization server configures to take the assertions of a `jwt_grant` or
/// `oauth` target.
pub(super) fn relying_party(
    plan: &Plan<'_>,
    name: &str,
    audience: &str,
    algorithm: SigningAlgorithm,
) -> String {
    let rules: Vec<_> = plan
        .grants
        .iter()
        .map(|g| {
            let subjects: Vec<String> = g.subjects.iter().map(Subject::to_string).collect();
            json!({ "rule": g.rule.name, "subjects": subjects })
        })
        .collect();
    let out = json!({
        "target": name,
        "issuer": plan.issuer,
        "discovery": plan.discovery_uri,
        "jwks_uri": plan.jwks_uri,
        "audience": audience,
        "algorithm": algorithm.as_str(),
        "rules": rules,
        "notes": plan.notes,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}
