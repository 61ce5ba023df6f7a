//! `spiffe` targets: what a SPIFFE deployment (SPIRE, Envoy, a SPIFFE library) configures to
//! federate with the trust domain Tessera issues JWT-SVIDs in: the trust domain, its bundle
//! endpoint (the `https_web` profile of SPIFFE Federation), and the SPIFFE IDs each rule
//! grants.

use serde_json::json;
use tessera_adapters::targets::spiffe::SpiffeTargetConfig;

use super::{Plan, param_values, template};
use crate::http::SPIFFE_BUNDLE_PATH;

pub(super) fn render(plan: &Plan<'_>, config: &SpiffeTargetConfig) -> String {
    let trust_domain = config.trust_domain_name();
    // The shared notes speak of a cloud's `sub` condition; say what this side sees.
    let mut notes: Vec<String> = plan
        .notes
        .iter()
        .map(|n| n.replace("the platform sees only `sub`", "relying parties see only the SVID's claims"))
        .collect();
    let rules: Vec<_> = plan
        .grants
        .iter()
        .map(|g| {
            // A path over fields the rule does not match exactly is shown as its template.
            let mut unexpanded = Vec::new();
            let mut paths = param_values(&g.rule, "path", &mut unexpanded).unwrap_or_default();
            if paths.is_empty() {
                paths.extend(template(&g.rule, "path"));
            }
            let ids: Vec<String> =
                paths.iter().map(|path| format!("spiffe://{trust_domain}{path}")).collect();
            let audiences =
                param_values(&g.rule, "audience", &mut notes).unwrap_or_else(|| config.audiences.clone());
            let workloads: Vec<String> = g.subjects.iter().map(ToString::to_string).collect();
            json!({ "rule": g.rule.name, "spiffe_ids": ids, "audiences": audiences, "workloads": workloads })
        })
        .collect();
    let bundle_url = format!("{}{SPIFFE_BUNDLE_PATH}", plan.issuer);
    let spire = format!(
        "federation {{\n  federates_with \"{trust_domain}\" {{\n    bundle_endpoint_url = \"{bundle_url}\"\n    bundle_endpoint_profile \"https_web\" {{}}\n  }}\n}}\n"
    );
    let out = json!({
        "target": config.name,
        "trust_domain": trust_domain,
        "bundle_endpoint_url": bundle_url,
        "bundle_endpoint_profile": "https_web",
        "algorithm": config.algorithm.as_str(),
        "audiences": config.audiences,
        "spire_server_federation": spire,
        "rules": rules,
        "notes": notes,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}
