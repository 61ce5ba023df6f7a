//! The `aws_sts` target: AWS temporary credentials from STS `AssumeRoleWithWebIdentity`,
//! with a JWT Tessera signs as the web identity token. AWS trusts Tessera once, as an IAM
//! OIDC identity provider; each role's trust policy says which Tessera subjects may assume
//! it.
//!
//! # Layout
//! - `config.rs`: [`AwsStsTargetConfig`], the `type: aws_sts` entry of `broker.yaml`, and
//!   its validation.
//! - `issue.rs`: [`AwsStsTarget`]: the web identity token, the STS call with timeouts and
//!   bounded retries, and the mapping of STS errors to [`TargetError`](crate::TargetError).
//! - `session.rs`: what a rule adds to the session: source identity, transitive tag keys,
//!   session policies (`Policy`, `PolicyArns`).

mod config;
mod issue;
mod session;
#[cfg(test)]
mod tests;

pub use config::{AwsStsTargetConfig, MAX_DURATION, MIN_DURATION};
pub use issue::{AwsStsTarget, MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN, MAX_TAGS, TAGS_CLAIM, session_name};
pub use session::{MAX_POLICY_ARNS, MAX_POLICY_CHARS, SOURCE_IDENTITY_CLAIM, session_policy};

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "aws_sts";
