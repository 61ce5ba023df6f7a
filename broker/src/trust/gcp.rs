//! Google Cloud: a workload identity pool with an OIDC provider for Tessera's issuer (its
//! attribute mapping `google.subject = assertion.sub` plus the full identity id and the
//! granting rule as custom attributes, an attribute condition admitting the identities the
//! rules grant), `roles/iam.workloadIdentityUser` on each granted service account, and for
//! rules without one the principals to grant roles on resources directly: an exact
//! identity's `principal://.../subject/SUBJECT`, a rule's
//! `principalSet://.../attribute.tessera_rule/RULE`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tessera_adapters::targets::gcp::{ATTRIBUTE_MAPPING, GcpTargetConfig, MAX_SUBJECT_BYTES, google_subject};

use super::{Format, Plan, Subject, TrustError, hcl, param_values, sh};

const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// A provider resource name's parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Provider {
    resource: String,
    project: String,
    pool: String,
    id: String,
}

impl Provider {
    fn parse(resource: &str) -> Option<Self> {
        let rest = resource.strip_prefix("//iam.googleapis.com/projects/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [project, "locations", "global", "workloadIdentityPools", pool, "providers", id] =
            parts.as_slice()
        else {
            return None;
        };
        Some(Self {
            resource: resource.to_owned(),
            project: (*project).to_owned(),
            pool: (*pool).to_owned(),
            id: (*id).to_owned(),
        })
    }

    fn pool_path(&self) -> String {
        format!("projects/{}/locations/global/workloadIdentityPools/{}", self.project, self.pool)
    }

    /// The IAM principal of one identity id: its `google.subject`, compacted as the
    /// target compacts it.
    fn principal(&self, id: &str) -> String {
        format!("principal://iam.googleapis.com/{}/subject/{}", self.pool_path(), google_subject(id))
    }

    /// Every identity a rule granted: the rule's name is the `tessera_rule` attribute of
    /// the tokens Tessera presents for it.
    fn rule_principal_set(&self, rule: &str) -> String {
        format!("principalSet://iam.googleapis.com/{}/attribute.tessera_rule/{rule}", self.pool_path())
    }

    /// Whom a binding for `rule` names: each exact identity, or the rule's set when the rule
    /// grants patterns.
    fn principals(&self, rule: &str, subjects: &[Subject]) -> Vec<String> {
        match subjects.iter().map(Subject::exact).collect::<Option<Vec<String>>>() {
            Some(ids) => ids.iter().map(|id| self.principal(id)).collect(),
            None => vec![self.rule_principal_set(rule)],
        }
    }
}

/// What one provider admits and binds.
#[derive(Debug, Default)]
struct ProviderTrust {
    subjects: BTreeSet<Subject>,
    /// Service account email -> the principals allowed to impersonate it.
    bindings: BTreeMap<String, BTreeSet<String>>,
    /// Rules that use the federated token as it is (no service account): rule name ->
    /// its principals.
    direct: BTreeMap<String, Vec<String>>,
}

fn providers(plan: &Plan<'_>, config: &GcpTargetConfig) -> (BTreeMap<Provider, ProviderTrust>, Vec<String>) {
    let mut notes = plan.notes.clone();
    let mut out: BTreeMap<Provider, ProviderTrust> = BTreeMap::new();
    for grant in &plan.grants {
        let rule = &grant.rule;
        let at = format!("rule `{}` ({})", rule.name, rule.location());
        let resources = param_values(rule, "provider", &mut notes)
            .unwrap_or_else(|| config.provider.iter().cloned().collect());
        // No `service_account`: the federated token is used as it is.
        let service_accounts: Vec<Option<String>> = match param_values(rule, "service_account", &mut notes) {
            Some(list) => list.into_iter().map(Some).collect(),
            None => vec![None],
        };
        if grant.subjects.iter().any(|s| s.exact().is_none()) {
            notes.push(format!(
                "{at} grants subject patterns: IAM binds exact subjects only, so the binding names the rule's set (attribute.tessera_rule/{})",
                rule.name
            ));
        }
        for long in grant.subjects.iter().filter_map(Subject::exact).filter(|s| s.len() > MAX_SUBJECT_BYTES) {
            notes.push(format!(
                "{at}: `{long}` is longer than the {MAX_SUBJECT_BYTES} bytes of google.subject; Tessera presents it as `{}`, the full id as attribute.tessera_id",
                google_subject(&long)
            ));
        }
        for provider in resources.iter().filter_map(|r| Provider::parse(r)) {
            let trust = out.entry(provider.clone()).or_default();
            trust.subjects.extend(grant.subjects.iter().cloned());
            let principals = provider.principals(&rule.name, &grant.subjects);
            for sa in &service_accounts {
                match sa {
                    Some(sa) => {
                        trust.bindings.entry(sa.clone()).or_default().extend(principals.iter().cloned())
                    }
                    None => {
                        // The rule's set names every identity it grants, whatever they are.
                        let mut direct = principals.clone();
                        let set = provider.rule_principal_set(&rule.name);
                        if !direct.contains(&set) {
                            direct.push(set);
                        }
                        trust.direct.insert(rule.name.clone(), direct);
                    }
                }
            }
        }
    }
    (out, notes)
}

/// The attribute condition: CEL over the token's full identity id (its `sub` may be
/// compacted).
fn condition(subjects: &BTreeSet<Subject>) -> String {
    let exact: Vec<String> = subjects.iter().filter_map(Subject::exact).map(|s| cel_string(&s)).collect();
    let mut terms = Vec::new();
    if !exact.is_empty() {
        terms.push(format!("assertion.tessera_id in [{}]", exact.join(", ")));
    }
    for s in subjects.iter().filter(|s| s.exact().is_none()) {
        terms.push(format!("assertion.tessera_id.matches({})", cel_string(&s.regex())));
    }
    terms.join(" || ")
}

/// `google.subject=assertion.sub,attribute.tessera_id=...` for gcloud.
fn attribute_mapping_flag() -> String {
    ATTRIBUTE_MAPPING.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn cel_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(super) fn render(
    plan: &Plan<'_>,
    config: &GcpTargetConfig,
    format: Format,
) -> Result<String, TrustError> {
    let (providers, mut notes) = providers(plan, config);
    if providers.is_empty() {
        return Err(TrustError::Incomplete(format!(
            "no rule for `{}` names a workload identity pool provider Tessera can write trust for",
            config.name
        )));
    }
    if providers.values().any(|t| !t.direct.is_empty()) {
        notes.push("Rules without a service_account use the federated token itself: grant the principals listed for each rule roles on the resources it needs.".into());
    }
    let setup = Setup { plan, config, providers, notes };
    match format {
        Format::Gcloud => Ok(setup.gcloud()),
        Format::Terraform => Ok(setup.terraform()),
        Format::Json | Format::Cloudformation | Format::Az | Format::Yaml => {
            Err(TrustError::Incomplete("not a Google Cloud format".into()))
        }
    }
}

/// What both formats write.
struct Setup<'a> {
    plan: &'a Plan<'a>,
    config: &'a GcpTargetConfig,
    providers: BTreeMap<Provider, ProviderTrust>,
    notes: Vec<String>,
}

impl Setup<'_> {
    /// The `aud` of Tessera's token, which the provider must allow.
    fn audience(&self, p: &Provider) -> String {
        self.config.audience.clone().unwrap_or_else(|| format!("https:{}", p.resource))
    }

    fn gcloud(&self) -> String {
        let (plan, audience) = (self.plan, |p: &Provider| self.audience(p));
        let mut out = hcl::header(&plan.issuer, &self.config.name, &self.notes);
        for (p, trust) in &self.providers {
            let project = sh(&p.project);
            out.push_str(&format!(
            "\ngcloud iam workload-identity-pools create {} --project={project} --location=global --display-name=Tessera\n",
            sh(&p.pool)
        ));
            out.push_str(&format!(
            "\ngcloud iam workload-identity-pools providers create-oidc {} \\\n  --project={project} --location=global --workload-identity-pool={} \\\n  --issuer-uri={} \\\n  --allowed-audiences={} \\\n  --attribute-mapping={} \\\n  --attribute-condition={}\n",
            sh(&p.id),
            sh(&p.pool),
            sh(&plan.issuer),
            sh(&audience(p)),
            sh(&attribute_mapping_flag()),
            sh(&condition(&trust.subjects)),
        ));
            for (sa, principals) in &trust.bindings {
                for principal in principals {
                    out.push_str(&format!(
                    "\ngcloud iam service-accounts add-iam-policy-binding {} \\\n  --role={WORKLOAD_IDENTITY_USER} \\\n  --member={}\n",
                    sh(sa),
                    sh(principal)
                ));
                }
            }
            out.push_str(&direct_principals(trust));
        }
        out
    }

    fn terraform(&self) -> String {
        let (plan, audience) = (self.plan, |p: &Provider| self.audience(p));
        let mut out = hcl::header(&plan.issuer, &self.config.name, &self.notes);
        let mut pools = BTreeSet::new();
        for (p, trust) in &self.providers {
            let pool_label = hcl::label(&format!("{}_{}", p.project, p.pool));
            if pools.insert(pool_label.clone()) {
                out.push_str(&format!(
                "\nresource \"google_iam_workload_identity_pool\" \"{pool_label}\" {{\n  project                   = {}\n  workload_identity_pool_id = {}\n  display_name              = \"Tessera\"\n}}\n",
                hcl::string(&p.project),
                hcl::string(&p.pool),
            ));
            }
            let label = hcl::label(&format!("{}_{}_{}", p.project, p.pool, p.id));
            out.push_str(&format!(
            "\nresource \"google_iam_workload_identity_pool_provider\" \"{label}\" {{\n  project                            = {}\n  workload_identity_pool_id          = {}\n  workload_identity_pool_provider_id = {}\n  attribute_mapping                  = {}\n  attribute_condition                = {}\n  oidc {{\n    issuer_uri        = {}\n    allowed_audiences = {}\n  }}\n  depends_on = [google_iam_workload_identity_pool.{pool_label}]\n}}\n",
            hcl::string(&p.project),
            hcl::string(&p.pool),
            hcl::string(&p.id),
            hcl::value(&serde_json::Value::Object(ATTRIBUTE_MAPPING.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()), 2),
            hcl::string(&condition(&trust.subjects)),
            hcl::string(&plan.issuer),
            hcl::value(&json!([audience(p)]), 4),
        ));
            for (sa, principals) in &trust.bindings {
                for (n, principal) in principals.iter().enumerate() {
                    out.push_str(&format!(
                    "\nresource \"google_service_account_iam_member\" \"{}\" {{\n  service_account_id = {}\n  role               = \"{WORKLOAD_IDENTITY_USER}\"\n  member             = {}\n  depends_on         = [google_iam_workload_identity_pool_provider.{label}]\n}}\n",
                    hcl::label(&format!("{}_{n}", sa.split('@').next().unwrap_or(sa))),
                    hcl::string(&format!("projects/-/serviceAccounts/{sa}")),
                    hcl::string(principal),
                ));
                }
            }
            out.push_str(&direct_principals(trust));
        }
        out
    }
}

/// The principals of the rules that use the federated token itself, as comments: for each
/// rule, the rule's set, and each exact identity where the rule grants exact ones.
fn direct_principals(trust: &ProviderTrust) -> String {
    let mut out = String::new();
    for (rule, principals) in &trust.direct {
        out.push_str(&hcl::comment(&format!("rule {rule}: grant roles on resources to these principals:")));
        for principal in principals {
            out.push_str(&hcl::comment(&format!("  {principal}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_split_and_patterns_become_regexes() {
        let p = Provider::parse(
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera-oidc",
        )
        .unwrap();
        assert_eq!(
            (p.project.as_str(), p.pool.as_str(), p.id.as_str()),
            ("123456789012", "tessera", "tessera-oidc")
        );
        assert!(
            Provider::parse("//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p")
                .is_none()
        );
        let exact = Subject(vec![crate::mapping::GlobPiece::Text("github://o/r".into())]);
        let glob = Subject(vec![
            crate::mapping::GlobPiece::Text("k8s://c/ns/a.b/sa/".into()),
            crate::mapping::GlobPiece::AnyRun,
        ]);
        let set = BTreeSet::from([exact.clone(), glob.clone()]);
        assert_eq!(
            condition(&set),
            r#"assertion.tessera_id in ["github://o/r"] || assertion.tessera_id.matches("^k8s://c/ns/a\\.b/sa/.*$")"#
        );
        let pool = "projects/123456789012/locations/global/workloadIdentityPools/tessera";
        assert_eq!(
            p.principals("r", std::slice::from_ref(&exact)),
            [format!("principal://iam.googleapis.com/{pool}/subject/github://o/r")]
        );
        assert_eq!(
            p.principals("r", &[exact, glob]),
            [format!("principalSet://iam.googleapis.com/{pool}/attribute.tessera_rule/r")],
            "a pattern: the rule's set, never the whole pool"
        );
        let long = format!("github://octo-org/payments/{}", "x".repeat(200));
        assert_eq!(
            p.principal(&long),
            format!("principal://iam.googleapis.com/{pool}/subject/{}", google_subject(&long))
        );
    }
}
