//! `txn_token` targets: what a workload of the trust domain configures to validate
//! Txn-Tokens (draft-ietf-oauth-transaction-tokens-10 §11.2), and which workloads may
//! request them.

use serde_json::json;
use tessera_adapters::targets::txn_token::{TXN_TOKEN_TYP, TxnTokenTargetConfig};

use super::{Plan, Subject};

pub(super) fn render(plan: &Plan<'_>, config: &TxnTokenTargetConfig) -> String {
    let rules: Vec<_> = plan
        .grants
        .iter()
        .map(|g| {
            let workloads: Vec<String> = g.subjects.iter().map(Subject::to_string).collect();
            json!({ "rule": g.rule.name, "requesting_workloads": workloads })
        })
        .collect();
    let out = json!({
        "target": config.name,
        "issuer": plan.issuer,
        "discovery": plan.discovery_uri,
        "jwks_uri": plan.jwks_uri,
        "audience": config.audience,
        "typ": TXN_TOKEN_TYP,
        "algorithm": config.algorithm.as_str(),
        "rules": rules,
        "notes": plan.notes,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}
