//! Google Cloud: a workload identity pool with an OIDC provider for Tessera's issuer (its
//! attribute mapping `google.subject = assertion.sub`, an attribute condition admitting the
//! subjects the rules grant), and `roles/iam.workloadIdentityUser` on each granted service
//! account for those subjects.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tessera_adapters::targets::gcp::GcpTargetConfig;

use super::{Format, Plan, Subject, TrustError, hcl, param_values, sh};

/// Google's limit on `google.subject` (Workload Identity Federation, "Attribute mappings").
const MAX_SUBJECT_BYTES: usize = 127;
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

    /// The IAM principal of one subject; a pattern can only be the whole pool's set.
    fn principal(&self, subject: &Subject) -> String {
        match subject.exact() {
            Some(sub) => format!("principal://iam.googleapis.com/{}/subject/{sub}", self.pool_path()),
            None => format!("principalSet://iam.googleapis.com/{}/*", self.pool_path()),
        }
    }
}

/// What one provider admits and binds.
#[derive(Debug, Default)]
struct ProviderTrust {
    subjects: BTreeSet<Subject>,
    /// Service account email -> the principals allowed to impersonate it.
    bindings: BTreeMap<String, BTreeSet<String>>,
    /// Principals of rules that use the federated token as it is (no service account).
    direct: BTreeSet<String>,
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
                "{at} grants subject patterns: IAM binds exact subjects only, so the binding names the whole pool, which the attribute condition keeps to the subjects the rules grant"
            ));
        }
        if grant.subjects.iter().filter_map(Subject::exact).any(|s| s.len() > MAX_SUBJECT_BYTES) {
            notes.push(format!(
                "{at}: a subject is longer than the {MAX_SUBJECT_BYTES} bytes Google takes as google.subject"
            ));
        }
        for provider in resources.iter().filter_map(|r| Provider::parse(r)) {
            let trust = out.entry(provider.clone()).or_default();
            trust.subjects.extend(grant.subjects.iter().cloned());
            let principals: Vec<String> = grant.subjects.iter().map(|s| provider.principal(s)).collect();
            for sa in &service_accounts {
                match sa {
                    Some(sa) => {
                        trust.bindings.entry(sa.clone()).or_default().extend(principals.iter().cloned())
                    }
                    None => trust.direct.extend(principals.iter().cloned()),
                }
            }
        }
    }
    (out, notes)
}

/// The attribute condition: CEL over the token's `sub`.
fn condition(subjects: &BTreeSet<Subject>) -> String {
    let exact: Vec<String> = subjects.iter().filter_map(Subject::exact).map(|s| cel_string(&s)).collect();
    let mut terms = Vec::new();
    if !exact.is_empty() {
        terms.push(format!("assertion.sub in [{}]", exact.join(", ")));
    }
    for s in subjects.iter().filter(|s| s.exact().is_none()) {
        terms.push(format!("assertion.sub.matches({})", cel_string(&s.regex())));
    }
    terms.join(" || ")
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
        notes.push("Rules without a service_account use the federated token itself: grant their principals roles on the resources they need.".into());
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
            "\ngcloud iam workload-identity-pools providers create-oidc {} \\\n  --project={project} --location=global --workload-identity-pool={} \\\n  --issuer-uri={} \\\n  --allowed-audiences={} \\\n  --attribute-mapping=google.subject=assertion.sub \\\n  --attribute-condition={}\n",
            sh(&p.id),
            sh(&p.pool),
            sh(&plan.issuer),
            sh(&audience(p)),
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
            for principal in &trust.direct {
                out.push_str(&hcl::comment(&format!("federated principal: {principal}")));
            }
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
            hcl::value(&json!({ "google.subject": "assertion.sub" }), 2),
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
            for principal in &trust.direct {
                out.push_str(&hcl::comment(&format!("federated principal: {principal}")));
            }
        }
        out
    }
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
            r#"assertion.sub in ["github://o/r"] || assertion.sub.matches("^k8s://c/ns/a\\.b/sa/.*$")"#
        );
        assert_eq!(
            p.principal(&exact),
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/subject/github://o/r"
        );
        assert!(
            p.principal(&glob).starts_with("principalSet://") && p.principal(&glob).ends_with("/tessera/*")
        );
    }
}
