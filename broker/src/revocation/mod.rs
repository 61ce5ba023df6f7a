//! Revocations: an operator's order that some workloads get nothing more, with a reason,
//! an author (the admin caller) and an optional expiry. They are kept in the audit store
//! (`tessera_revocations`), which is also their record: a removed revocation stays there
//! with who removed it and when.
//!
//! A revocation names what it cuts off with one [`Matcher`]: an identity id, a glob on
//! identity ids, a source with attribute values, a rule, a whole source, a subject token's
//! `jti`, or an issued token's fingerprint (`sha256:<hex>`, as audit events carry it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tessera_adapters::Identity;

use crate::mapping::glob::Pattern;

mod add;
mod issued;
mod poll;
mod propagate;
mod set;
pub mod ssf;
pub mod ssf_receive;
pub mod ssf_transmit;
pub mod watch;
pub use add::add;
pub use issued::{AwsDenyPolicy, Held, MAX_LISTED, Outstanding, Remedy, RevokedTokens, enforce, outstanding};
pub use poll::{POLL_INTERVAL, spawn_poller};
pub use propagate::{Change, Propagation, spawn_subscriber};
pub use set::{RevocationSet, Revoked};
pub use watch::{Watched, Watches};

/// Longest text accepted in any field of a revocation.
pub const MAX_FIELD: usize = 1024;
/// Most attributes one `attributes` matcher may name.
pub const MAX_ATTRIBUTES: usize = 32;

/// What a revocation cuts off (the `match` object of `POST /v1/revocations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Matcher {
    /// One workload identity, by its exact `id`.
    Identity { id: String },
    /// Every identity whose `id` matches a glob (`*`, `?`, `\` escapes; as in mapping files).
    IdentityGlob { pattern: String },
    /// Identities of `source` whose attributes have all these exact values.
    Attributes { source: String, attributes: BTreeMap<String, String> },
    /// Every grant of one mapping rule.
    Rule { rule: String },
    /// Every identity a source vouches for (its issuer is compromised).
    Source { source: String },
    /// The subject token with this `jti`.
    SubjectJti { jti: String },
    /// The issued token with this fingerprint (`sha256:` and 64 lowercase hex digits).
    IssuedToken { fingerprint: String },
    /// Identities of `source` named as a shared signal's subject names them (RFC 9493):
    /// by `id` (a `uri` subject), by platform `subject` (`opaque`), or by `issuer` and
    /// `subject` together (`iss_sub`). Every field given must equal the identity's.
    Subject {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// Why a revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRevocation {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidRevocation {
    InvalidRevocation { field, message: message.into() }
}

/// `value` is not empty, not over [`MAX_FIELD`] bytes, and has no control characters.
fn check_text(field: &'static str, value: &str) -> Result<(), InvalidRevocation> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_FIELD {
        return Err(invalid(field, format!("longer than {MAX_FIELD} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

impl Matcher {
    /// The kind's name, as in the `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Identity { .. } => "identity",
            Self::IdentityGlob { .. } => "identity_glob",
            Self::Attributes { .. } => "attributes",
            Self::Rule { .. } => "rule",
            Self::Source { .. } => "source",
            Self::SubjectJti { .. } => "subject_jti",
            Self::IssuedToken { .. } => "issued_token",
            Self::Subject { .. } => "subject",
        }
    }

    /// Refuse what could never match or could not be stored: empty or oversized values, a
    /// glob that does not parse, a fingerprint not in the audit store's form.
    pub fn validate(&self) -> Result<(), InvalidRevocation> {
        match self {
            Self::Identity { id } => check_text("match.id", id),
            Self::IdentityGlob { pattern } => {
                check_text("match.pattern", pattern)?;
                Pattern::parse(pattern).map(|_| ()).map_err(|e| invalid("match.pattern", e.to_string()))
            }
            Self::Attributes { source, attributes } => {
                check_text("match.source", source)?;
                if attributes.is_empty() {
                    return Err(invalid("match.attributes", "name at least one attribute"));
                }
                if attributes.len() > MAX_ATTRIBUTES {
                    return Err(invalid("match.attributes", format!("more than {MAX_ATTRIBUTES}")));
                }
                attributes.iter().try_for_each(|(name, value)| {
                    check_text("match.attributes", name)?;
                    check_text("match.attributes", value)
                })
            }
            Self::Rule { rule } => check_text("match.rule", rule),
            Self::Source { source } => check_text("match.source", source),
            Self::SubjectJti { jti } => check_text("match.jti", jti),
            Self::Subject { source, issuer, subject, id } => {
                check_text("match.source", source)?;
                if subject.is_none() && id.is_none() {
                    return Err(invalid("match", "name a `subject` or an `id`"));
                }
                [("match.issuer", issuer), ("match.subject", subject), ("match.id", id)]
                    .into_iter()
                    .try_for_each(|(field, value)| value.as_deref().map_or(Ok(()), |v| check_text(field, v)))
            }
            Self::IssuedToken { fingerprint } => {
                let hex = fingerprint.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    Ok(())
                } else {
                    Err(invalid("match.fingerprint", "must be `sha256:` and 64 lowercase hex digits"))
                }
            }
        }
    }

    /// Whether this matcher names `identity` by what the identity alone says (id, glob,
    /// source, attributes). Rule, `jti` and issued-token matchers need more than the
    /// identity and never match here.
    pub fn matches_identity(&self, identity: &Identity) -> bool {
        match self {
            Self::Identity { id } => identity.id == *id,
            Self::IdentityGlob { pattern } => Pattern::parse(pattern).is_ok_and(|p| p.matches(&identity.id)),
            Self::Attributes { source, attributes } => {
                identity.source == *source
                    && attributes.iter().all(|(name, value)| identity.attributes.get(name) == Some(value))
            }
            Self::Source { source } => identity.source == *source,
            Self::Subject { source, issuer, subject, id } => {
                identity.source == *source
                    && issuer.as_ref().is_none_or(|i| identity.issuer == *i)
                    && subject.as_ref().is_none_or(|s| identity.subject == *s)
                    && id.as_ref().is_none_or(|i| identity.id == *i)
            }
            Self::Rule { .. } | Self::SubjectJti { .. } | Self::IssuedToken { .. } => false,
        }
    }
}

/// A revocation as stored and listed. Instants are milliseconds since the epoch, rendered
/// in RFC 3339 for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    pub reason: String,
    pub author: String,
    pub created: String,
    #[serde(skip)]
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip)]
    pub expires_ms: Option<i64>,
    /// Set once removed: who removed it and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_by: Option<String>,
}

impl Revocation {
    /// In force at `now_ms`: not removed and not expired.
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.removed.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

/// A new revocation, as `POST /v1/revocations` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    #[serde(rename = "match")]
    pub matcher: Matcher,
    pub reason: String,
    /// RFC 3339 or seconds since the epoch; none: until removed.
    #[serde(default)]
    pub expires_at: Option<serde_json::Value>,
}

impl NewRevocation {
    /// Check every field; the expiry in milliseconds since the epoch, which must be after
    /// `now_ms`.
    pub fn validate(&self, now_ms: i64) -> Result<Option<i64>, InvalidRevocation> {
        self.matcher.validate()?;
        check_text("reason", &self.reason)?;
        let expires_ms = match &self.expires_at {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => {
                let seconds = n.as_i64().ok_or_else(|| invalid("expires_at", "not whole seconds"))?;
                Some(seconds.checked_mul(1000).ok_or_else(|| invalid("expires_at", "out of range"))?)
            }
            Some(serde_json::Value::String(s)) => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|_| invalid("expires_at", "must be RFC 3339 or seconds since the epoch"))?
                    .timestamp_millis(),
            ),
            Some(_) => return Err(invalid("expires_at", "must be RFC 3339 or seconds since the epoch")),
        };
        if expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(invalid("expires_at", "is not in the future"));
        }
        Ok(expires_ms)
    }
}

#[cfg(test)]
mod tests;
