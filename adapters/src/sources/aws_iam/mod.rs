//! The `aws_iam` source: a workload proves its AWS identity with a signed
//! `sts:GetCallerIdentity` request, which Tessera checks, forwards to an allow-listed STS
//! endpoint unchanged and believes only as far as STS's answer goes (DESIGN.md "Sources").
//!
//! This is Vault's hardened `iam` login (Vault docs, "AWS auth method", IAM auth): the
//! workload never sends its AWS secret, only a signature STS can check; the signed
//! `X-Tessera-Server-Id` header stops a request signed for another service being replayed
//! here; the body, method, URL and freshness checks stop it being anything but a fresh
//! GetCallerIdentity; no redirect is followed and the XML answer is parsed strictly.
//!
//! # Layout
//! - [`config`]: [`AwsIamSourceConfig`], the `type: aws_iam` entry, and its build.
//! - `request`: decode the subject token and check it before any network call.
//! - `sts`: forward it to STS and parse the answer.
//! - `principal`: canonicalize the caller ARN (assumed role -> role).
//!
//! The workload's side, signing a request into a subject token, is
//! [`aws_sign`](crate::aws_sign): the agent and the CLI use it without reaching into this
//! folder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::identity::Identity;
use crate::source::{IdentitySource, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity};

pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod principal;
mod request;
mod sts;

pub use config::AwsIamSourceConfig;
use principal::Kind;
use request::RequestPolicy;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "aws_iam";

/// A built `aws_iam` source.
#[derive(Debug)]
pub struct AwsIamSource {
    name: String,
    policy: RequestPolicy,
    allowed_accounts: Option<Vec<String>>,
    timeout: Duration,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl IdentitySource for AwsIamSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, token_type: SubjectTokenType) -> bool {
        token_type == SubjectTokenType::AwsSignedRequest
    }

    fn issuers(&self) -> Vec<String> {
        Vec::new()
    }

    async fn verify(&self, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError> {
        if !self.accepts(token.token_type) {
            return Err(SourceError::UnsupportedTokenType);
        }
        let raw = request::decode(token.value.expose())?;
        let checked = request::check(raw, &self.policy, self.clock.now())?;
        let caller = sts::get_caller_identity(&self.http, &checked, self.timeout).await?;
        let principal = principal::canonicalize(&caller)?;
        if let Some(allowed) = &self.allowed_accounts
            && !allowed.contains(&principal.account)
        {
            return Err(SourceError::Policy(format!(
                "account {} is not in allowed_accounts",
                principal.account
            )));
        }
        let identity = identity(&self.name, &checked, &caller, &principal, self.policy.max_age);
        Ok(VerifiedIdentity::new(identity))
    }

    /// The subject is the canonical ARN: `arn:aws:iam::{account}:role/{name}` (or `user/`).
    fn sketch(&self, subject: &str) -> Result<Identity, String> {
        let parts: Vec<&str> = subject.splitn(6, ':').collect();
        let (partition, account, kind, name) = match parts.as_slice() {
            ["arn", partition, "iam", "", account, resource] if config::is_account_id(account) => {
                match resource.split_once('/') {
                    Some((kind @ ("role" | "user"), path)) if !path.is_empty() => {
                        (*partition, *account, kind, path.rsplit('/').next().unwrap_or(path))
                    }
                    _ => ("", "", "", ""),
                }
            }
            _ => ("", "", "", ""),
        };
        if account.is_empty() {
            return Err("an aws_iam subject is a role or user ARN: arn:aws:iam::ACCOUNT:role/NAME".into());
        }
        let mut attributes = BTreeMap::new();
        for (key, value) in
            [("account", account), ("arn", subject), ("partition", partition), ("principal_type", kind)]
        {
            attributes.insert(format!("aws.{key}"), value.to_owned());
        }
        Ok(Identity {
            id: format!("aws://{account}/{kind}/{name}"),
            provider: KIND.to_owned(),
            source: self.name.clone(),
            issuer: self.policy.endpoints.first().cloned().unwrap_or_default(),
            subject: subject.to_owned(),
            tenant: Some(account.to_owned()),
            namespace: None,
            name: Some(name.to_owned()),
            instance: None,
            region: None,
            attributes,
            withheld: Default::default(),
            expires_at: 0,
        })
    }
}

/// The normalized identity (DESIGN.md "The normalized identity"): `issuer` is the STS
/// endpoint that vouched, `subject` the canonical ARN, `tenant` the account. The signed
/// request is a proof for as long as it would be accepted, so that is its expiry.
fn identity(
    source: &str,
    request: &request::CheckedRequest,
    caller: &sts::CallerIdentity,
    principal: &principal::Principal,
    max_age: i64,
) -> Identity {
    let session = match &principal.kind {
        Kind::Role { session } => Some(session.clone()),
        Kind::User => None,
    };
    let mut attributes = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        attributes.insert(format!("aws.{key}"), value.to_owned());
    };
    put("account", &principal.account);
    put("arn", &principal.arn);
    put("caller_arn", &caller.arn);
    put("partition", &principal.partition);
    put("principal_id", &caller.user_id);
    put("principal_type", principal.type_name());
    if let Some(session) = &session {
        put("session_name", session);
    }
    Identity {
        id: principal.id(),
        provider: KIND.to_owned(),
        source: source.to_owned(),
        issuer: request.url.to_string(),
        subject: principal.arn.clone(),
        tenant: Some(principal.account.clone()),
        namespace: None,
        name: Some(principal.name.clone()),
        instance: session,
        region: Some(request.region.clone()),
        attributes,
        withheld: Default::default(),
        expires_at: request.signed_at.saturating_add(max_age),
    }
}

#[cfg(test)]
mod tests;
