//! A grant to a cluster bearer token: a JWT Tessera signs whose `iss`, `aud` and `exp` the
//! API server's JWT authenticator checks, and whose `username` and `groups` claims its
//! claim mappings turn into the user.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, RuleParam, RuleText,
    SigningAlgorithm, TargetBase, TargetError,
};
use crate::targets::signed::{LocalSigner, granted_ttl, rule_claims};
use crate::targets::upstream::check_grant_target;

/// The claim holding the username the rule grants.
pub const USERNAME_CLAIM: &str = "username";
/// The claim holding the groups the rule grants, a JSON array of strings.
pub const GROUPS_CLAIM: &str = "groups";

/// The grant keys a rule for a `kubernetes` target may set.
const GRANT_KEYS: &[&str] = &["username", "groups"];

/// The longest username or group name taken.
const MAX_NAME_BYTES: usize = 1024;
/// The most groups one rule grants.
const MAX_GROUPS: usize = 64;

/// A configured `kubernetes` target, made by
/// [`KubernetesTargetConfig`](super::KubernetesTargetConfig) once its values are checked.
#[derive(Debug)]
pub struct KubernetesTarget {
    pub(super) base: TargetBase,
    pub(super) audience: String,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) local: LocalSigner,
}

/// What a grant's token says, checked.
#[derive(Debug)]
struct ClusterUser {
    username: String,
    groups: Vec<String>,
    ttl: Duration,
    claims: Map<String, Value>,
}

/// A username or group: printable, not empty, not one of Kubernetes' own `system:` names.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("a {what} has 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(format!("{what} `{}` has control characters or surrounding spaces", name.escape_debug()));
    }
    if name.starts_with("system:") {
        return Err(format!("{what} `{name}`: `system:` names belong to Kubernetes itself"));
    }
    Ok(())
}

/// The groups of a rule's `groups`, space-separated.
fn parse_groups(text: &str) -> Result<Vec<String>, String> {
    let groups: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if groups.is_empty() {
        return Err("`groups` names no group".into());
    }
    if groups.len() > MAX_GROUPS {
        return Err(format!("{} groups; at most {MAX_GROUPS}", groups.len()));
    }
    for (i, group) in groups.iter().enumerate() {
        check_name("group", group)?;
        if groups.iter().take(i).any(|g| g == group) {
            return Err(format!("group `{group}` is listed twice"));
        }
    }
    Ok(groups)
}

impl KubernetesTarget {
    /// The `aud` of issued tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Every check a grant can fail, before anything is signed.
    fn user(&self, grant: &Grant) -> Result<ClusterUser, TargetError> {
        check_grant_target(grant, &self.base.name)?;
        let username = grant.param_str("username").unwrap_or(grant.identity().id.as_str()).to_owned();
        check_name("username", &username).map_err(TargetError::InvalidGrant)?;
        let groups = match grant.param_str("groups") {
            Some(text) => parse_groups(text).map_err(TargetError::InvalidGrant)?,
            None => Vec::new(),
        };
        let ttl = granted_ttl(grant, self.base.max_ttl)?;
        let claims = rule_claims(grant, &[USERNAME_CLAIM, GROUPS_CLAIM])?;
        Ok(ClusterUser { username, groups, ttl, claims })
    }

    /// The claim set of a token and its `exp`.
    pub(super) fn claims(&self, grant: &Grant) -> Result<(Map<String, Value>, i64), TargetError> {
        let user = self.user(grant)?;
        let (mut claims, exp) =
            self.local.registered_claims(&grant.identity().id, Value::from(self.audience.as_str()), user.ttl);
        claims.extend(user.claims);
        if let Some(act) = grant.act_claim(self.local.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        claims.insert(USERNAME_CLAIM.into(), Value::from(user.username));
        if !user.groups.is_empty() {
            claims.insert(GROUPS_CLAIM.into(), Value::from(user.groups));
        }
        Ok((claims, exp))
    }
}

#[async_trait]
impl CredentialTarget for KubernetesTarget {
    fn base(&self) -> &TargetBase {
        &self.base
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        GRANT_KEYS
    }

    /// `groups` must be a literal: a value rendered from the identity could not be split
    /// into groups safely (an attribute holding `a b` would grant two).
    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match (key, value) {
            (_, RuleParam::Map(_)) => Err("must be a string".into()),
            ("username", RuleParam::Text(RuleText::Literal(name))) => check_name("username", name),
            ("groups", RuleParam::Text(RuleText::Literal(text))) => parse_groups(text).map(|_| ()),
            ("groups", RuleParam::Text(RuleText::Template)) => Err(
                "`groups` cannot use `{...}` templates: a rendered value could name groups the rule does not; \
                 list the groups, and write one rule per set of groups"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    fn issued_jwt(&self) -> Option<IssuedJwt> {
        Some(IssuedJwt { audience: self.audience.clone(), algorithm: self.algorithm })
    }

    /// Signing is local and cheap, and each token has its own `jti`.
    fn cacheable(&self) -> bool {
        false
    }

    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let user = self.user(grant)?;
        Ok(RequestDescription::new(grant)
            .with("sub", grant.identity().id.as_str())
            .with("username", user.username)
            .with("groups", user.groups)
            .with("ttl", user.ttl.as_secs())
            .with("claims", user.claims))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let (claims, expires_at) = self.claims(grant)?;
        self.local.issue(self.algorithm, &claims, expires_at)
    }
}
