//! `kubernetes` targets: the cluster side, an `AuthenticationConfiguration` (structured
//! authentication configuration, `apiserver.config.k8s.io/v1beta1`, Kubernetes 1.30 and
//! later) with one JWT authenticator for Tessera's issuer: its URL and the target's
//! audience, the CA of the issuer's certificate when one is configured, claim mappings in
//! CEL that turn the token's `username` and `groups` into the user (with the target's
//! prefixes), and validation rules that refuse tokens living longer than the target's
//! `max_ttl` and users named like Kubernetes' own. Written as YAML, with what a rule
//! grants and what the cluster cannot check as comments.

use std::path::Path;

use serde_json::{Value, json};
use tessera_adapters::targets::kubernetes::{GROUPS_CLAIM, KubernetesTargetConfig, USERNAME_CLAIM};

use super::{Plan, TrustError, template};

/// The `AuthenticationConfiguration` (apiserver.config.k8s.io/v1beta1, "JWT authenticator").
pub(crate) fn authentication_configuration(
    issuer: &str,
    config: &KubernetesTargetConfig,
    certificate_authority: Option<String>,
) -> Value {
    let mut issuer = json!({ "url": issuer, "audiences": [config.audience()] });
    if let (Some(pem), Some(members)) = (certificate_authority, issuer.as_object_mut()) {
        members.insert("certificateAuthority".into(), Value::from(pem));
    }
    let (user, groups) = (USERNAME_CLAIM, GROUPS_CLAIM);
    let prefixed = |prefix: &str, value: &str| {
        if prefix.is_empty() { value.to_owned() } else { format!("'{prefix}' + {value}") }
    };
    let max_ttl = config.max_ttl.as_secs();
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1beta1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": issuer,
            "claimValidationRules": [
                {
                    "expression": format!("has(claims.{user}) && claims.{user} != ''"),
                    "message": "the token names no username",
                },
                {
                    "expression": format!("claims.exp - claims.nbf <= {max_ttl}"),
                    "message": format!("the token lives longer than the target's max_ttl ({max_ttl}s)"),
                },
            ],
            "claimMappings": {
                "username": { "expression": prefixed(&config.username_prefix, &format!("claims.{user}")) },
                "groups": {
                    "expression": format!(
                        "has(claims.{groups}) ? claims.{groups}.map(g, {}) : []",
                        prefixed(&config.groups_prefix, "g")
                    ),
                },
                "uid": { "expression": "claims.sub" },
            },
            "userValidationRules": [
                {
                    "expression": "!user.username.startsWith('system:')",
                    "message": "usernames starting with system: are Kubernetes' own",
                },
                {
                    "expression": "user.groups.all(group, !group.startsWith('system:'))",
                    "message": "groups starting with system: are Kubernetes' own",
                },
            ],
        }],
    })
}

pub(super) fn render(
    plan: &Plan<'_>,
    config: &KubernetesTargetConfig,
    base_dir: &Path,
) -> Result<String, TrustError> {
    let ca = config.read_certificate_authority(base_dir).map_err(|e| TrustError::Incomplete(e.message))?;
    let document = authentication_configuration(&plan.issuer, config, ca);
    // The shared notes speak of a cloud's `sub` condition; say what this side sees.
    let mut notes: Vec<String> = plan
        .notes
        .iter()
        .map(|n| n.replace("the platform sees only `sub`", "the cluster sees only the token's claims"))
        .collect();
    let mut out = format!(
        "# Kubernetes structured authentication for target `{}`: pass this file to kube-apiserver\n\
         # with --authentication-config (Kubernetes 1.30 or later; from 1.34 `apiVersion` may be\n\
         # apiserver.config.k8s.io/v1, with the same fields).\n",
        config.name
    );
    if !plan.issuer.starts_with("https://") {
        notes.push("issuer.url is not https: kube-apiserver only trusts https issuers".into());
    }
    for g in &plan.grants {
        let users: Vec<String> = match template(&g.rule, "username") {
            Some(username) => vec![format!("{}{username}", config.username_prefix)],
            None => g.subjects.iter().map(|s| format!("{}{s}", config.username_prefix)).collect(),
        };
        let groups: Vec<String> = template(&g.rule, "groups")
            .unwrap_or_default()
            .split_whitespace()
            .map(|group| format!("{}{group}", config.groups_prefix))
            .collect();
        out.push_str(&format!(
            "# rule `{}` ({}): user {}; groups {}\n",
            g.rule.name,
            g.rule.location(),
            users.join(", "),
            if groups.is_empty() { "none".to_owned() } else { groups.join(", ") }
        ));
    }
    for note in &notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    write_yaml(&document, 0, &mut out);
    Ok(out)
}

/// `value` as block-style YAML. Every string is written as a JSON string, which YAML reads
/// as a double-quoted scalar, so no value can change the document's structure.
fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(&format!("{pad}{}:", Value::from(key.as_str())));
                nested(item, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(_) | Value::Array(_) if !is_empty(item) => {
                        out.push('\n');
                        write_yaml(item, indent + 2, out);
                    }
                    scalar => out.push_str(&format!(" {scalar}\n")),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

fn nested(item: &Value, indent: usize, out: &mut String) {
    if is_empty(item) || !(item.is_object() || item.is_array()) {
        out.push_str(&format!(" {item}\n"));
    } else {
        out.push('\n');
        write_yaml(item, indent + 2, out);
    }
}

fn is_empty(value: &Value) -> bool {
    value.as_object().is_some_and(serde_json::Map::is_empty) || value.as_array().is_some_and(Vec::is_empty)
}
