//! The caller ARN STS returned, canonicalized: an assumed-role session becomes the role it
//! is a session of; an IAM user stays as it is.
//!
//! ARN forms ("IAM identifiers", AWS IAM User Guide):
//! - `arn:aws:sts::123456789012:assumed-role/ROLE/SESSION` -> `arn:aws:iam::123456789012:role/ROLE`.
//!   An assumed-role ARN carries no role path, so the canonical ARN has none either: a role
//!   `/workloads/payments-api` is `arn:aws:iam::123456789012:role/payments-api` here. Role
//!   names are unique per account whatever their path, so nothing is lost.
//! - `arn:aws:iam::123456789012:user/PATH/NAME` is kept; the user's name is its last
//!   segment.
//!
//! Root credentials and federated-user sessions (`GetFederationToken`) are refused: neither
//! is a workload identity. Partitions `aws`, `aws-cn` and `aws-us-gov` are understood.

use super::config::is_account_id;
use super::sts::CallerIdentity;
use crate::source::SourceError;

/// Partitions whose ARNs are understood.
pub const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];

/// What kind of principal signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Role { session: String },
    User,
}

/// A caller, canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub partition: String,
    pub account: String,
    pub kind: Kind,
    /// Role or user name.
    pub name: String,
    /// `arn:{partition}:iam::{account}:role/{name}` or the user ARN as returned.
    pub arn: String,
}

impl Principal {
    /// `aws://{account}/role/{name}` or `aws://{account}/user/{name}`: the same role name in
    /// another account is another identity.
    pub fn id(&self) -> String {
        format!("aws://{}/{}/{}", self.account, self.type_name(), self.name)
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Role { .. } => "role",
            Kind::User => "user",
        }
    }
}

/// Canonicalize STS's answer. An answer whose ARN disagrees with its `Account`, or is not an
/// ARN at all, is an STS failure, not a refusal of the caller.
pub(crate) fn canonicalize(caller: &CallerIdentity) -> Result<Principal, SourceError> {
    let bad_answer =
        |why: &str| SourceError::Upstream { retryable: false, cause: format!("STS answer refused: {why}") };
    if !is_account_id(&caller.account) {
        return Err(bad_answer("Account is not a 12-digit account id"));
    }
    let parts: Vec<&str> = caller.arn.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, resource] = parts.as_slice() else {
        return Err(bad_answer("Arn is not an ARN"));
    };
    if *account != caller.account || !region.is_empty() {
        return Err(bad_answer("Arn does not match Account"));
    }
    if !PARTITIONS.contains(partition) {
        return Err(SourceError::Policy(format!("partition `{partition}` is not supported")));
    }
    let (partition, account) = ((*partition).to_owned(), (*account).to_owned());
    match (*service, resource.split_once('/')) {
        ("sts", Some(("assumed-role", rest))) => {
            let (role, session) =
                rest.split_once('/').ok_or_else(|| bad_answer("assumed-role ARN lacks a session"))?;
            if !is_name(role, 1, 64) || !is_name(session, 2, 64) {
                return Err(bad_answer("assumed-role ARN has an invalid role or session name"));
            }
            Ok(Principal {
                arn: format!("arn:{partition}:iam::{account}:role/{role}"),
                partition,
                account,
                kind: Kind::Role { session: session.to_owned() },
                name: role.to_owned(),
            })
        }
        ("iam", Some(("user", path_and_name))) => {
            let name = path_and_name.rsplit('/').next().unwrap_or_default();
            if !is_name(name, 1, 64) || path_and_name.split('/').any(str::is_empty) {
                return Err(bad_answer("user ARN has an invalid name or path"));
            }
            Ok(Principal {
                arn: caller.arn.clone(),
                partition,
                account,
                kind: Kind::User,
                name: name.to_owned(),
            })
        }
        ("iam", None) if *resource == "root" => {
            Err(SourceError::Policy("root credentials are not accepted".to_owned()))
        }
        ("sts", Some(("federated-user", _))) => {
            Err(SourceError::Policy("federated-user sessions are not accepted".to_owned()))
        }
        _ => Err(SourceError::Policy(
            "only IAM roles (assumed-role sessions) and IAM users are accepted".to_owned(),
        )),
    }
}

/// IAM names: `[\w+=,.@-]` ("IAM object names", IAM User Guide, and the `RoleSessionName`
/// pattern of `sts:AssumeRole`).
fn is_name(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}
