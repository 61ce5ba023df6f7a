//! AWS: Tessera as an IAM OIDC identity provider, and a trust policy for each role the
//! rules grant, allowing `sts:AssumeRoleWithWebIdentity` to the `aud` and `sub` values of
//! Tessera's web identity tokens (`sts:TagSession` too where a rule sets session tags,
//! `sts:SetSourceIdentity` where a rule sets a source identity).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tessera_adapters::targets::aws_sts::AwsStsTargetConfig;

use super::{Format, Plan, Subject, TrustError, hcl, param_values};

/// Said with every AWS setup.
const THUMBPRINT_NOTE: &str = "No thumbprint is given: IAM checks the TLS certificate of the issuer's JWKS endpoint against its trusted root CAs, and uses a thumbprint only for a certificate none of them signed (then add ThumbprintList with the SHA-1 of the top intermediate CA).";
const PERMISSIONS_NOTE: &str = "Only trust is written here: each role's permission policies stay yours. Session policies (policy, policy_arns) need no trust statement: they only narrow the role.";

/// A role ARN's parts (`arn:aws:iam::123456789012:role/path/name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Role {
    arn: String,
    partition: String,
    account: String,
    path: String,
    name: String,
}

impl Role {
    fn parse(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return None;
        };
        let resource = resource.strip_prefix("role/")?;
        let ok = *prefix == "arn"
            && *service == "iam"
            && region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return None;
        }
        let (path, name) = match resource.rsplit_once('/') {
            Some((path, name)) => (format!("/{path}/"), name),
            None => ("/".to_owned(), resource),
        };
        (!name.is_empty()).then(|| Self {
            arn: arn.to_owned(),
            partition: (*partition).to_owned(),
            account: (*account).to_owned(),
            path,
            name: name.to_owned(),
        })
    }

    /// The account's IAM OIDC provider for the issuer.
    fn provider_arn(&self, host: &str) -> String {
        format!("arn:{}:iam::{}:oidc-provider/{host}", self.partition, self.account)
    }
}

/// What one role's trust policy allows.
#[derive(Debug, Default)]
struct RoleTrust {
    subjects: BTreeSet<Subject>,
    rules: Vec<String>,
    tags: bool,
    source_identity: bool,
}

/// Every granted role with its trust, and the notes.
fn roles(plan: &Plan<'_>) -> (BTreeMap<Role, RoleTrust>, Vec<String>) {
    let mut notes = plan.notes.clone();
    let mut roles: BTreeMap<Role, RoleTrust> = BTreeMap::new();
    for grant in &plan.grants {
        let rule = &grant.rule;
        for arn in param_values(rule, "role_arn", &mut notes).unwrap_or_default() {
            let Some(role) = Role::parse(&arn) else {
                notes.push(format!("rule `{}`: `{arn}` is not an IAM role ARN", rule.name));
                continue;
            };
            let trust = roles.entry(role).or_default();
            trust.subjects.extend(grant.subjects.iter().cloned());
            trust.rules.push(rule.name.clone());
            trust.tags |= rule.param("tags").is_some();
            trust.source_identity |= rule.param("source_identity").is_some();
        }
    }
    (roles, notes)
}

/// The trust policy document of one role.
fn policy(host: &str, audience: &str, principal: Value, trust: &RoleTrust) -> Value {
    let mut actions = vec!["sts:AssumeRoleWithWebIdentity"];
    // IAM User Guide: a web identity token with session tags needs `sts:TagSession`, one
    // with a source identity `sts:SetSourceIdentity`, in the same statement.
    if trust.tags {
        actions.push("sts:TagSession");
    }
    if trust.source_identity {
        actions.push("sts:SetSourceIdentity");
    }
    let aud_key = format!("{host}:aud");
    let sub_key = format!("{host}:sub");
    let exact: Option<Vec<String>> = trust.subjects.iter().map(Subject::exact).collect();
    let condition = match exact {
        Some(subs) => json!({ "StringEquals": { aud_key: audience, sub_key: subs } }),
        None => {
            let like: Vec<String> = trust.subjects.iter().map(Subject::aws_like).collect();
            json!({ "StringEquals": { aud_key: audience }, "StringLike": { sub_key: like } })
        }
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TesseraWebIdentity",
            "Effect": "Allow",
            "Principal": { "Federated": principal },
            "Action": actions,
            "Condition": condition,
        }],
    })
}

pub(super) fn render(
    plan: &Plan<'_>,
    config: &AwsStsTargetConfig,
    format: Format,
) -> Result<String, TrustError> {
    let (roles, mut notes) = roles(plan);
    if roles.values().any(|t| t.subjects.iter().any(Subject::is_any)) {
        notes.push("A role trusts every `sub` Tessera signs for this audience: Tessera's rules are then its only guard.".into());
    }
    notes.push(THUMBPRINT_NOTE.into());
    notes.push(PERMISSIONS_NOTE.into());
    let host = plan.issuer_host();
    let audience = config.audience.as_str();
    let accounts: BTreeSet<(&str, &str)> =
        roles.keys().map(|r| (r.partition.as_str(), r.account.as_str())).collect();
    match format {
        Format::Json => {
            let arns: BTreeSet<String> = roles.keys().map(|r| r.provider_arn(host)).collect();
            let providers: Vec<Value> = arns
                .into_iter()
                .map(|arn| json!({ "Arn": arn, "Url": plan.issuer, "ClientIDList": [audience] }))
                .collect();
            let roles: Vec<Value> = roles
                .iter()
                .map(|(role, trust)| {
                    json!({
                        "Arn": role.arn,
                        "RoleName": role.name,
                        "Path": role.path,
                        "Rules": trust.rules,
                        "AssumeRolePolicyDocument": policy(host, audience, json!(role.provider_arn(host)), trust),
                    })
                })
                .collect();
            let out = json!({
                "target": config.name,
                "issuer": plan.issuer,
                "audience": audience,
                "oidc_providers": providers,
                "roles": roles,
                "notes": notes,
            });
            Ok(pretty(&out))
        }
        Format::Cloudformation => {
            if accounts.len() > 1 {
                let list: Vec<String> = accounts.iter().map(|(_, a)| (*a).to_owned()).collect();
                return Err(TrustError::Incomplete(format!(
                    "the rules grant roles in {} accounts ({}); a CloudFormation stack deploys to one: use --format json or terraform",
                    list.len(),
                    list.join(", ")
                )));
            }
            Ok(pretty(&cloudformation(plan, config, &roles, notes)))
        }
        Format::Terraform => Ok(terraform(plan, config, &roles, &notes, accounts.len() > 1)),
        Format::Gcloud | Format::Az | Format::Yaml => Err(TrustError::Incomplete("not an AWS format".into())),
    }
}

fn cloudformation(
    plan: &Plan<'_>,
    config: &AwsStsTargetConfig,
    roles: &BTreeMap<Role, RoleTrust>,
    notes: Vec<String>,
) -> Value {
    let host = plan.issuer_host();
    let mut resources = serde_json::Map::new();
    resources.insert(
        "TesseraOidcProvider".into(),
        json!({
            "Type": "AWS::IAM::OIDCProvider",
            "Properties": { "Url": plan.issuer, "ClientIdList": [config.audience] },
        }),
    );
    for (role, trust) in roles {
        let mut id: String =
            format!("Role{}", role.name).chars().filter(char::is_ascii_alphanumeric).collect();
        while resources.contains_key(&id) {
            id.push('X');
        }
        let document = policy(host, &config.audience, json!({ "Ref": "TesseraOidcProvider" }), trust);
        resources.insert(
            id,
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": { "RoleName": role.name, "Path": role.path, "AssumeRolePolicyDocument": document },
            }),
        );
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("Trust in Tessera ({}) for target {}", plan.issuer, config.name),
        "Metadata": { "Tessera": { "Notes": notes } },
        "Resources": resources,
    })
}

fn terraform(
    plan: &Plan<'_>,
    config: &AwsStsTargetConfig,
    roles: &BTreeMap<Role, RoleTrust>,
    notes: &[String],
    several_accounts: bool,
) -> String {
    let host = plan.issuer_host();
    let mut out = hcl::header(&plan.issuer, &config.name, notes);
    if several_accounts {
        out.push_str(&hcl::comment(
            "The roles are in several accounts: configure an aws provider alias `account_<id>` for each.",
        ));
    }
    let provider_line = |role: &Role| {
        if several_accounts { format!("  provider = aws.account_{}\n", role.account) } else { String::new() }
    };
    let provider_label = |role: &Role| hcl::label(&format!("tessera_{}", role.account));
    let mut providers = BTreeSet::new();
    for role in roles.keys() {
        if providers.insert(provider_label(role)) {
            out.push_str(&format!(
                "\nresource \"aws_iam_openid_connect_provider\" \"{}\" {{\n{}  url            = {}\n  client_id_list = {}\n}}\n",
                provider_label(role),
                provider_line(role),
                hcl::string(&plan.issuer),
                hcl::value(&json!([config.audience]), 2),
            ));
        }
    }
    let mut labels = BTreeSet::new();
    for (role, trust) in roles {
        let mut label = hcl::label(&role.name);
        if !labels.insert(label.clone()) {
            label = hcl::label(&format!("{}_{}", role.name, role.account));
            labels.insert(label.clone());
        }
        let document = policy(host, &config.audience, json!(role.provider_arn(host)), trust);
        out.push_str(&format!(
            "\nresource \"aws_iam_role\" \"{label}\" {{\n{}  name = {}\n  path = {}\n  assume_role_policy = jsonencode({})\n  depends_on = [aws_iam_openid_connect_provider.{}]\n}}\n",
            provider_line(role),
            hcl::string(&role.name),
            hcl::string(&role.path),
            hcl::value(&document, 2),
            provider_label(role),
        ));
    }
    out
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn role_arns_split_into_account_path_and_name() {
        let r = Role::parse("arn:aws:iam::123456789012:role/workloads/payments/api").unwrap();
        assert_eq!((r.partition.as_str(), r.account.as_str()), ("aws", "123456789012"));
        assert_eq!((r.path.as_str(), r.name.as_str()), ("/workloads/payments/", "api"));
        assert_eq!(r.provider_arn("t.example"), "arn:aws:iam::123456789012:oidc-provider/t.example");
        let r = Role::parse("arn:aws-cn:iam::123456789012:role/api").unwrap();
        assert_eq!((r.partition.as_str(), r.path.as_str()), ("aws-cn", "/"));
        for bad in [
            "arn:aws:iam::12345:role/api",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:123456789012:role/api",
            "arn:aws:iam::123456789012:user/api",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(Role::parse(bad).is_none(), "{bad}");
        }
    }
}
