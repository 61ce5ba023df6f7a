//! What a revoked workload still holds: the credentials the audit store recorded as issued
//! to what a revocation names and not yet expired, and, per target kind, what can take
//! them back (`GET /v1/revocations/{id}/issued`, `tessera revoke issued`).
//!
//! Which recorded credentials a revocation names: for an identity, a glob, a source or a
//! source's attributes, every credential issued to the identities it names; for a rule,
//! every credential that rule granted; for an issued token, that one. A subject token's
//! `jti` is not recorded with events (its fingerprint is), so a `subject_jti` revocation
//! names none here: revoke the identity or the issued tokens as well.
//!
//! The same listing feeds [`enforce`]: the Tessera JWTs found are refused by introspection
//! from then on ([`RevokedTokens`]), and targets that can take back what they issued
//! ([`CredentialTarget::revoke`]: `postgres` drops the logins) are asked to at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{Value, json};
use tessera_adapters::{CredentialTarget, Identity, RevokeError};

use super::{Matcher, Revocation};
use crate::audit::AuditEvent;
use crate::audit::store::{AuditStore, IssuedFilter, IssuedQuery, StoreError, rfc3339_ms};
use crate::mapping::glob::Pattern;

/// Most credentials one listing returns.
pub const MAX_LISTED: u32 = 10_000;
/// How far back events are read: no target issues for longer (AWS's longest session is
/// 12 hours; every target caps its lifetime lower than this).
const MAX_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);

/// One credential still valid, as the audit store recorded its issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub target: String,
    /// The target's kind (`aws_sts`, `postgres`, ...); `unknown` for a target no longer
    /// configured.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub issued_at: String,
    pub expires_at: String,
    /// `sha256:<hex>` of the issued token, as audit events carry it.
    pub fingerprint: String,
    #[serde(skip)]
    pub issued_ms: i64,
    #[serde(skip)]
    pub expires_ms: i64,
}

/// What can take back one target's credentials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remedy {
    pub target: String,
    pub kind: String,
    /// How many of the listed credentials are this target's.
    pub credentials: usize,
    /// `aws_deny_policy` (attach [`policies`](Self::policies)), `dropped` (taken back by
    /// Tessera when the revocation was made), `introspection` (refused by
    /// `POST /v1/introspect`) or `guidance` (what the platform offers; see `text`).
    pub action: &'static str,
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AwsDenyPolicy>,
}

/// An inline IAM policy for one role that denies every session of it issued before the
/// revocation: AWS's documented way to revoke a role's active sessions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwsDenyPolicy {
    pub role_arn: String,
    pub role_name: String,
    pub policy_name: String,
    pub policy: Value,
    /// The AWS CLI command that attaches it.
    pub command: String,
}

/// The listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outstanding {
    pub as_of: String,
    pub credentials: Vec<Held>,
    /// More matched than [`MAX_LISTED`].
    pub truncated: bool,
    pub targets: Vec<Remedy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Outstanding {
    /// The identity ids of the credentials listed for `target`.
    pub fn identities_of(&self, target: &str) -> BTreeSet<String> {
        self.credentials.iter().filter(|h| h.target == target).filter_map(|h| h.identity.clone()).collect()
    }
}

/// The store filter that narrows events to what `matcher` can name, by an indexed column;
/// `None` when it can name none.
fn filter(matcher: &Matcher) -> Option<IssuedFilter> {
    match matcher {
        Matcher::Identity { id } => Some(IssuedFilter::Identity(id.clone())),
        Matcher::IdentityGlob { .. } => Some(IssuedFilter::All),
        Matcher::Attributes { source, .. } | Matcher::Subject { source, .. } | Matcher::Source { source } => {
            Some(IssuedFilter::Source(source.clone()))
        }
        Matcher::Rule { rule } => Some(IssuedFilter::Rule(rule.clone())),
        Matcher::IssuedToken { fingerprint } => Some(IssuedFilter::Fingerprint(fingerprint.clone())),
        Matcher::SubjectJti { .. } => None,
    }
}

/// Whether the recorded `event` is one `matcher` names.
fn names(matcher: &Matcher, glob: Option<&Pattern>, event: &AuditEvent) -> bool {
    match matcher {
        Matcher::Identity { id } => event.identity_id.as_deref() == Some(id.as_str()),
        Matcher::IdentityGlob { .. } => {
            glob.zip(event.identity_id.as_deref()).is_some_and(|(glob, id)| glob.matches(id))
        }
        Matcher::Attributes { .. } | Matcher::Subject { .. } => event
            .identity
            .as_ref()
            .and_then(|i| serde_json::from_str::<Identity>(i.as_str()).ok())
            .is_some_and(|identity| matcher.matches_identity(&identity)),
        Matcher::Source { source } => event.source.as_deref() == Some(source.as_str()),
        Matcher::Rule { rule } => event.rule.as_deref() == Some(rule.as_str()),
        Matcher::IssuedToken { fingerprint } => {
            event.issued_token_fingerprint.as_deref() == Some(fingerprint.as_str())
        }
        Matcher::SubjectJti { .. } => false,
    }
}

/// What `revocation` names that is still valid at `now_ms`, by the audit store, with what
/// each target's kind offers against it.
pub async fn outstanding(
    store: &AuditStore,
    targets: &[Arc<dyn CredentialTarget>],
    revocation: &Revocation,
    now_ms: i64,
) -> Result<Outstanding, StoreError> {
    let lookback = targets.iter().map(|t| t.max_ttl()).max().unwrap_or(MAX_LOOKBACK).min(MAX_LOOKBACK);
    let lookback_ms = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
    let glob = match &revocation.matcher {
        Matcher::IdentityGlob { pattern } => Pattern::parse(pattern).ok(),
        _ => None,
    };
    let (events, more) = match filter(&revocation.matcher) {
        None => (Vec::new(), false),
        Some(filter) => {
            let query = IssuedQuery {
                filter,
                since_ms: now_ms.saturating_sub(lookback_ms),
                now_ms,
                // Cache hits repeat a credential; the glob and attributes are filtered here.
                limit: MAX_LISTED.saturating_mul(4),
            };
            store.issued_unexpired(&query).await?
        }
    };
    let kinds: HashMap<&str, &'static str> = targets.iter().map(|t| (t.name(), t.kind())).collect();
    // Newest first: a credential served again from the cache appears once per exchange;
    // its first recording is when it was issued.
    let mut by_fingerprint: BTreeMap<String, Held> = BTreeMap::new();
    for event in events.iter().filter(|e| names(&revocation.matcher, glob.as_ref(), e)) {
        let (Some(fingerprint), Some(ttl)) = (&event.issued_token_fingerprint, event.issued_ttl) else {
            continue;
        };
        let expires_ms = event.time_ms.saturating_add(ttl.saturating_mul(1000));
        let held = by_fingerprint.entry(fingerprint.clone()).or_insert_with(|| Held {
            target: event.target.clone(),
            kind: kinds.get(event.target.as_str()).copied().unwrap_or("unknown").to_string(),
            rule: event.rule.clone(),
            identity: event.identity_id.clone(),
            scope: event.scope.clone(),
            issued_at: String::new(),
            expires_at: String::new(),
            fingerprint: fingerprint.clone(),
            issued_ms: event.time_ms,
            expires_ms,
        });
        held.issued_ms = held.issued_ms.min(event.time_ms);
        held.expires_ms = held.expires_ms.max(expires_ms);
    }
    let mut credentials: Vec<Held> = by_fingerprint.into_values().collect();
    credentials.sort_by(|a, b| (b.issued_ms, &a.fingerprint).cmp(&(a.issued_ms, &b.fingerprint)));
    let truncated = more || credentials.len() > MAX_LISTED as usize;
    credentials.truncate(MAX_LISTED as usize);
    for held in &mut credentials {
        held.issued_at = rfc3339_ms(held.issued_ms);
        held.expires_at = rfc3339_ms(held.expires_ms);
    }
    let targets = remedies(revocation, &credentials, targets);
    let note = matches!(revocation.matcher, Matcher::SubjectJti { .. }).then(|| {
        "a subject token's jti is not recorded with audit events: what it obtained cannot be listed; \
         revoke its identity or the issued tokens' fingerprints as well"
            .to_string()
    });
    Ok(Outstanding { as_of: rfc3339_ms(now_ms), credentials, truncated, targets, note })
}

/// Per target among `held`, what takes its credentials back.
fn remedies(revocation: &Revocation, held: &[Held], targets: &[Arc<dyn CredentialTarget>]) -> Vec<Remedy> {
    let mut per_target: BTreeMap<(&str, &str), Vec<&Held>> = BTreeMap::new();
    for h in held {
        per_target.entry((h.target.as_str(), h.kind.as_str())).or_default().push(h);
    }
    per_target
        .into_iter()
        .map(|((target, kind), held)| {
            let max_ttl = targets.iter().find(|t| t.name() == target).map(|t| t.max_ttl().as_secs());
            remedy(revocation, target, kind, &held, max_ttl)
        })
        .collect()
}

fn remedy(revocation: &Revocation, target: &str, kind: &str, held: &[&Held], max_ttl: Option<u64>) -> Remedy {
    let latest = held.iter().map(|h| h.expires_ms).max().map(rfc3339_ms).unwrap_or_default();
    let lives = format!("they stay valid until they expire (the last at {latest})");
    let (action, text, policies) = match kind {
        "aws_sts" => {
            let policies = aws_deny_policies(revocation, held);
            let text = format!(
                "AWS cannot revoke one session, but a role can refuse every session of it issued before an \
                 instant: attach each policy below to its role (the command is ready to run). It also refuses \
                 other workloads' sessions of the role issued before the revocation; they get new ones at their \
                 next exchange. Remove it once the last listed session has expired ({latest}).{}",
                if held.iter().any(|h| role_arn(h).is_none()) {
                    " Some credentials have no role recorded: find the role in their rule's role_arn."
                } else {
                    ""
                }
            );
            ("aws_deny_policy", text, policies)
        }
        "gcp" => (
            "guidance",
            format!(
                "Google access tokens cannot be revoked one by one: {lives}, at most {}s after issue. To cut them \
                 sooner, disable the impersonated service account (`gcloud iam service-accounts disable EMAIL`; \
                 re-enable it once they expire) or remove the workload identity pool provider's binding that \
                 trusts Tessera for it.",
                max_ttl.unwrap_or(3600)
            ),
            Vec::new(),
        ),
        "azure" => (
            "guidance",
            format!(
                "Entra access tokens cannot be revoked one by one: {lives} (resources that support continuous \
                 access evaluation may refuse them sooner). To cut them sooner, disable the app's service \
                 principal (`az ad sp update --id APP_ID --set accountEnabled=false`) or delete the federated \
                 identity credential that trusts Tessera (`az ad app federated-credential delete`)."
            ),
            Vec::new(),
        ),
        "postgres" => (
            "dropped",
            "Tessera dropped these identities' logins when the revocation was made (and each replica does \
             again when it first sees it), ending their sessions; the broker's log lists each role dropped. \
             They are listed until their recorded expiry."
                .to_string(),
            Vec::new(),
        ),
        "jwt" | "spiffe" => (
            "introspection",
            format!(
                "Tessera's introspection endpoint (POST /v1/introspect) answers `active: false` for these tokens \
                 from now on. Services that only check signatures accept them until they expire: {lives}. Have \
                 relying services introspect, or rotate the signing key to cut every token at once."
            ),
            Vec::new(),
        ),
        "kubernetes" => (
            "introspection",
            format!(
                "The cluster checks these tokens' signatures itself and does not introspect: {lives}. Remove the \
                 RBAC bindings of their username or groups to cut them sooner; POST /v1/introspect answers \
                 `active: false` for them."
            ),
            Vec::new(),
        ),
        _ => (
            "guidance",
            format!(
                "{} Use the issuing platform's own revocation (RFC 7009 where its authorization server \
                 offers it) to cut them sooner.",
                capitalized(&lives)
            ),
            Vec::new(),
        ),
    };
    Remedy {
        target: target.to_string(),
        kind: kind.to_string(),
        credentials: held.len(),
        action,
        text,
        policies,
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The role ARN an AWS credential was issued for, when its scope recorded one.
fn role_arn(held: &Held) -> Option<&str> {
    held.scope.as_deref().filter(|s| s.starts_with("arn:aws") && s.contains(":role/"))
}

/// One deny policy per role among `held`: every action refused for sessions whose
/// `aws:TokenIssueTime` is before the revocation (rounded up to the second, so a session
/// issued in the revocation's second is covered).
fn aws_deny_policies(revocation: &Revocation, held: &[&Held]) -> Vec<AwsDenyPolicy> {
    let seconds =
        revocation.created_ms.div_euclid(1000) + i64::from(revocation.created_ms.rem_euclid(1000) > 0);
    let instant = chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let short: String = revocation.id.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    let policy_name = format!("TesseraRevoke-{short}");
    let roles: BTreeSet<&str> = held.iter().filter_map(|h| role_arn(h)).collect();
    roles
        .into_iter()
        .map(|arn| {
            let role_name = arn.rsplit('/').next().unwrap_or(arn).to_string();
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "TesseraRevokeOlderSessions",
                    "Effect": "Deny",
                    "Action": ["*"],
                    "Resource": ["*"],
                    "Condition": { "DateLessThan": { "aws:TokenIssueTime": instant } },
                }],
            });
            let command = format!(
                "aws iam put-role-policy --role-name {role_name} --policy-name {policy_name} --policy-document '{policy}'"
            );
            AwsDenyPolicy { role_arn: arn.to_string(), role_name, policy_name: policy_name.clone(), policy, command }
        })
        .collect()
}

/// The Tessera-issued tokens that revocations name by what only the audit store knows
/// (a rule, a source, attributes, a glob): their fingerprints, per revocation, found when
/// each was made or first seen. Introspection reads it with no store query.
#[derive(Debug, Default)]
pub struct RevokedTokens {
    by_revocation: ArcSwap<HashMap<String, Arc<HashSet<String>>>>,
}

impl RevokedTokens {
    /// Record what revocation `id` names.
    pub fn set(&self, id: &str, fingerprints: HashSet<String>) {
        let fingerprints = Arc::new(fingerprints);
        self.by_revocation.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(id.to_string(), Arc::clone(&fingerprints));
            next
        });
    }

    /// Keep only the revocations `keep` names.
    pub fn retain(&self, keep: &HashSet<&str>) {
        self.by_revocation.rcu(|current| {
            current
                .iter()
                .filter(|(id, _)| keep.contains(id.as_str()))
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect::<HashMap<_, _>>()
        });
    }

    /// Whether revocation `id` names the token with this fingerprint.
    pub fn contains(&self, id: &str, fingerprint: &str) -> bool {
        self.by_revocation.load().get(id).is_some_and(|set| set.contains(fingerprint))
    }
}

/// The fingerprints of every credential a listing found, for [`RevokedTokens::set`].
pub fn fingerprints(outstanding: &Outstanding) -> HashSet<String> {
    outstanding.credentials.iter().map(|h| h.fingerprint.clone()).collect()
}

/// Act on a revocation just made or first seen: list what it names, record the tokens for
/// introspection, and ask each target that can take back what it issued to do so for the
/// identities named (an identity revocation names its identity on every target, even one
/// whose events are not recorded yet). Idempotent; failures are logged, never fatal: the
/// revocation is enforced on exchanges whatever happens here.
pub async fn enforce(
    store: &AuditStore,
    targets: &[Arc<dyn CredentialTarget>],
    tokens: &RevokedTokens,
    revocation: &Revocation,
    now_ms: i64,
) {
    let outstanding = match outstanding(store, targets, revocation, now_ms).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(revocation = %revocation.id, error = %e, reason = "TS-REVOKE-ISSUED", "what the revocation names could not be listed: introspection refuses only what it names directly, no login is dropped");
            return;
        }
    };
    tokens.set(&revocation.id, fingerprints(&outstanding));
    for target in targets {
        let mut identities = outstanding.identities_of(target.name());
        if let Matcher::Identity { id } = &revocation.matcher {
            identities.insert(id.clone());
        }
        if identities.is_empty() {
            continue;
        }
        let identities: Vec<String> = identities.into_iter().collect();
        match target.revoke(&identities).await {
            Ok(report) => tracing::warn!(
                revocation = %revocation.id,
                target_name = target.name(),
                revoked = report.revoked.len(),
                failed = report.failed,
                reason = "TS-REVOKE-DIRECT",
                "credentials taken back on the target"
            ),
            Err(RevokeError::Unsupported) => {}
            Err(RevokeError::Target(e)) => tracing::warn!(
                revocation = %revocation.id,
                target_name = target.name(),
                code = e.code(),
                error = %e,
                reason = "TS-REVOKE-DIRECT",
                "credentials not taken back on the target; they expire on their own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(created_ms: i64) -> Revocation {
        Revocation {
            id: "019aef5e-3c1d-7b52-9d0e-54a1f7e0c2aa".into(),
            matcher: Matcher::Identity { id: "github://octo/app".into() },
            reason: "r".into(),
            author: "ops".into(),
            created: rfc3339_ms(created_ms),
            created_ms,
            expires: None,
            expires_ms: None,
            removed: None,
            removed_by: None,
        }
    }

    fn held(scope: Option<&str>) -> Held {
        Held {
            target: "aws-prod".into(),
            kind: "aws_sts".into(),
            rule: None,
            identity: Some("github://octo/app".into()),
            scope: scope.map(str::to_string),
            issued_at: String::new(),
            expires_at: String::new(),
            fingerprint: "sha256:00".into(),
            issued_ms: 0,
            expires_ms: 0,
        }
    }

    #[test]
    fn the_deny_policy_covers_the_revocations_second_once_per_role() {
        let role = "arn:aws:iam::123456789012:role/team/deploy";
        let a = held(Some(role));
        let b = held(Some(role));
        let c = held(Some("not-a-role"));
        // 2026-12-07T14:02:11.347Z: sessions issued in that second are covered.
        let policies = aws_deny_policies(&revocation(1_796_652_131_347), &[&a, &b, &c]);
        assert_eq!(policies.len(), 1, "one per role, none for an unknown scope");
        let p = &policies[0];
        assert_eq!((p.role_name.as_str(), p.policy_name.as_str()), ("deploy", "TesseraRevoke-019aef5e3c1d"));
        let statement = &p.policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"], "2026-12-07T14:02:12Z");
        assert!(p.command.contains("--role-name deploy --policy-name TesseraRevoke-019aef5e3c1d"));
        let whole = aws_deny_policies(&revocation(1_796_652_131_000), &[&a]);
        assert_eq!(
            whole[0].policy["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-12-07T14:02:11Z"
        );
    }

    #[test]
    fn each_kind_is_read_by_an_indexed_column_but_a_jti() {
        let m = |matcher: Matcher| filter(&matcher);
        assert_eq!(m(Matcher::Identity { id: "i".into() }), Some(IssuedFilter::Identity("i".into())));
        assert_eq!(m(Matcher::Rule { rule: "r".into() }), Some(IssuedFilter::Rule("r".into())));
        assert_eq!(m(Matcher::Source { source: "s".into() }), Some(IssuedFilter::Source("s".into())));
        assert_eq!(m(Matcher::IdentityGlob { pattern: "*".into() }), Some(IssuedFilter::All));
        assert_eq!(m(Matcher::SubjectJti { jti: "j".into() }), None);
    }

    #[test]
    fn revoked_tokens_are_kept_per_revocation_and_dropped_with_it() {
        let tokens = RevokedTokens::default();
        tokens.set("r1", ["sha256:a".to_string()].into());
        tokens.set("r2", ["sha256:b".to_string()].into());
        assert!(tokens.contains("r1", "sha256:a") && !tokens.contains("r1", "sha256:b"));
        tokens.retain(&["r2"].into());
        assert!(!tokens.contains("r1", "sha256:a") && tokens.contains("r2", "sha256:b"));
    }
}
