//! Azure: a federated identity credential on each granted application, naming Tessera's
//! issuer, the exact `sub` of the client assertion and its audience. Entra compares the
//! subject exactly and takes at most 20 credentials per application, so a rule whose
//! subjects are patterns, or many rules, use a `subject:` grant key: every rule giving the
//! same subject shares one credential, and Tessera decides per workload which may use it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tessera_adapters::targets::azure::AzureTargetConfig;

use super::{Format, Plan, TrustError, hcl, param_values, sh};

/// Said with every Azure setup: the commands below are for application registrations.
const MANAGED_IDENTITY_NOTE: &str = "These are for application registrations. For a user-assigned managed identity's client id, create the same credential (issuer, subject, audience) with `az identity federated-credential create` or azurerm_federated_identity_credential.";

/// Entra's limit of federated identity credentials per application.
const MAX_CREDENTIALS_PER_APP: usize = 20;

/// Entra's limit on a federated identity credential's description.
const MAX_DESCRIPTION_CHARS: usize = 600;

/// One federated identity credential: its name and the rules whose assertions carry its
/// subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Credential {
    name: String,
    rules: BTreeSet<String>,
}

impl Credential {
    /// `Tessera rules a, b`, cut to Entra's limit.
    fn description(&self) -> String {
        let rules: Vec<&str> = self.rules.iter().map(String::as_str).collect();
        let word = if rules.len() == 1 { "rule" } else { "rules" };
        let text = format!("Tessera {word} {}", rules.join(", "));
        if text.chars().count() <= MAX_DESCRIPTION_CHARS {
            return text;
        }
        let cut: String = text.chars().take(MAX_DESCRIPTION_CHARS - 3).collect();
        format!("{cut}...")
    }
}

/// (tenant, client id) -> the application's credentials, by subject: Entra allows one
/// credential per issuer and subject on an application.
type Apps = BTreeMap<(String, String), BTreeMap<String, Credential>>;

fn credentials(plan: &Plan<'_>, config: &AzureTargetConfig) -> (Apps, Vec<String>) {
    let mut notes = plan.notes.clone();
    let mut apps = Apps::new();
    for grant in &plan.grants {
        let rule = &grant.rule;
        let at = format!("rule `{}` ({})", rule.name, rule.location());
        let values = |key: &str, default: &Option<String>, notes: &mut Vec<String>| {
            param_values(rule, key, notes).unwrap_or_else(|| default.iter().cloned().collect())
        };
        let tenants = values("tenant", &config.tenant, &mut notes);
        let client_ids = values("client_id", &config.client_id, &mut notes);
        // The assertion's `sub`: the rule's `subject`, else the identity id.
        let subjects: Vec<String> = match param_values(rule, "subject", &mut notes) {
            Some(subjects) => subjects,
            None => match grant.subjects.iter().map(|s| s.exact()).collect::<Option<Vec<String>>>() {
                Some(exact) => exact,
                None => {
                    notes.push(format!(
                        "{at} grants subject patterns, and Entra matches a federated credential's subject exactly: give the rule a `subject:` grant key, or match exact identities"
                    ));
                    continue;
                }
            },
        };
        if subjects.is_empty() {
            continue;
        }
        for (tenant, client_id) in tenants.iter().flat_map(|t| client_ids.iter().map(move |c| (t, c))) {
            let creds = apps.entry((tenant.clone(), client_id.clone())).or_default();
            for (n, subject) in subjects.iter().enumerate() {
                let credential = creds.entry(subject.clone()).or_insert_with(|| Credential {
                    name: credential_name(&rule.name, n),
                    rules: BTreeSet::new(),
                });
                credential.rules.insert(rule.name.clone());
            }
        }
    }
    for ((_, client_id), creds) in &apps {
        if creds.len() > MAX_CREDENTIALS_PER_APP {
            notes.push(format!(
                "application {client_id} would need {} federated credentials; Entra allows {MAX_CREDENTIALS_PER_APP}: give the rules one `subject:`",
                creds.len()
            ));
        }
    }
    (apps, notes)
}

/// `tessera-<rule>[-n]`: letters, digits, `-` and `_`, at most 120 characters.
fn credential_name(rule: &str, n: usize) -> String {
    let base: String = format!("tessera-{rule}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(110)
        .collect();
    if n == 0 { base } else { format!("{base}-{n}") }
}

pub(super) fn render(
    plan: &Plan<'_>,
    config: &AzureTargetConfig,
    format: Format,
) -> Result<String, TrustError> {
    let (apps, notes) = credentials(plan, config);
    if apps.is_empty() {
        return Err(TrustError::Incomplete(format!(
            "no rule for `{}` names a tenant, client id and exact subject Tessera can write a credential for",
            config.name
        )));
    }
    let mut notes = notes;
    notes.push(MANAGED_IDENTITY_NOTE.into());
    let mut out = hcl::header(&plan.issuer, &config.name, &notes);
    let audience = config.audience.as_str();
    match format {
        Format::Az => {
            for ((tenant, client_id), creds) in &apps {
                out.push_str(&format!("\n# tenant {tenant}\n"));
                for (subject, c) in creds {
                    let parameters = json!({
                        "name": c.name,
                        "issuer": plan.issuer,
                        "subject": subject,
                        "audiences": [audience],
                        "description": c.description(),
                    });
                    out.push_str(&format!(
                        "az ad app federated-credential create --id {} \\\n  --parameters {}\n",
                        sh(client_id),
                        sh(&parameters.to_string())
                    ));
                }
            }
            Ok(out)
        }
        Format::Terraform => {
            for ((tenant, client_id), creds) in &apps {
                let app = hcl::label(&format!("app_{client_id}"));
                out.push_str(&format!(
                    "\n# tenant {tenant}\ndata \"azuread_application\" \"{app}\" {{\n  client_id = {}\n}}\n",
                    hcl::string(client_id)
                ));
                for (subject, c) in creds {
                    out.push_str(&format!(
                        "\nresource \"azuread_application_federated_identity_credential\" \"{}\" {{\n  application_id = data.azuread_application.{app}.id\n  display_name   = {}\n  description    = {}\n  issuer         = {}\n  subject        = {}\n  audiences      = {}\n}}\n",
                        hcl::label(&format!("{app}_{}", c.name)),
                        hcl::string(&c.name),
                        hcl::string(&c.description()),
                        hcl::string(&plan.issuer),
                        hcl::string(subject),
                        hcl::value(&json!([audience]), 2),
                    ));
                }
            }
            Ok(out)
        }
        Format::Json | Format::Cloudformation | Format::Gcloud | Format::Yaml => {
            Err(TrustError::Incomplete("not an Azure format".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_keep_to_entras_characters() {
        assert_eq!(credential_name("ci.deploy", 0), "tessera-ci-deploy");
        assert_eq!(credential_name("ci", 2), "tessera-ci-2");
        assert!(credential_name(&"x".repeat(300), 9).len() <= 120);
    }

    #[test]
    fn descriptions_name_every_rule_within_entras_limit() {
        let one = Credential { name: "n".into(), rules: BTreeSet::from(["ci".to_owned()]) };
        assert_eq!(one.description(), "Tessera rule ci");
        let two = Credential { name: "n".into(), rules: BTreeSet::from(["b".to_owned(), "a".to_owned()]) };
        assert_eq!(two.description(), "Tessera rules a, b");
        let many = Credential { name: "n".into(), rules: (0..100).map(|i| format!("rule-{i:03}")).collect() };
        assert_eq!(many.description().chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(many.description().ends_with("..."));
    }
}
