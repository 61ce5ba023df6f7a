//! What a rule adds to a session beyond its role, name, duration and tags: the source
//! identity AWS keeps through role chaining and shows in CloudTrail, the tag keys that pass
//! on to chained sessions, and session policies that scope the role down.
//!
//! With `AssumeRoleWithWebIdentity` the source identity and the tags travel as claims of
//! the web identity token (IAM User Guide, "Monitor and control actions taken with assumed
//! roles" and "Passing session tags using AssumeRoleWithWebIdentity"); the session
//! policies are request parameters (`Policy`, `PolicyArns`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::target::{Grant, RuleParam, RuleText, TargetError};

/// The claim AWS reads a session's source identity from.
pub const SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";
/// STS takes at most this many managed session policies (`PolicyArns`).
pub const MAX_POLICY_ARNS: usize = 10;
/// STS's limit on the plaintext of the inline and managed session policies together.
pub const MAX_POLICY_CHARS: usize = 2048;

/// The grant keys this module reads.
pub(super) const GRANT_KEYS: &[&str] = &["source_identity", "transitive_tag_keys", "policy", "policy_arns"];

/// A rule's session extras, rendered and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Extras {
    pub source_identity: Option<String>,
    /// Every transitive tag key of the session: the target's that the rule's tags set,
    /// and the rule's own. Sorted.
    pub transitive_tag_keys: Vec<String>,
    /// The inline session policy as sent: compact JSON.
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

impl Extras {
    /// The extras of `grant`, whose checked session tags are `tags`; `configured` are the
    /// target's own transitive tag keys.
    pub fn of(
        grant: &Grant,
        tags: &BTreeMap<String, String>,
        configured: &[String],
    ) -> Result<Self, TargetError> {
        let invalid = TargetError::InvalidGrant;
        let source_identity = match grant.param_str("source_identity") {
            Some(s) => Some(check_source_identity(s).map(|()| s.to_owned()).map_err(invalid)?),
            None => None,
        };
        let mut transitive: BTreeSet<String> =
            configured.iter().filter(|k| tags.contains_key(*k)).cloned().collect();
        if let Some(text) = grant.param_str("transitive_tag_keys") {
            for key in transitive_tag_keys(text).map_err(invalid)? {
                if !tags.contains_key(&key) {
                    return Err(invalid(format!(
                        "transitive tag key `{key}` is not a key of the rule's `tags`"
                    )));
                }
                transitive.insert(key);
            }
        }
        let policy = grant.param_str("policy").map(session_policy).transpose().map_err(invalid)?;
        let policy_arns = match grant.param_str("policy_arns") {
            Some(text) => policy_arns(text).map_err(invalid)?,
            None => Vec::new(),
        };
        let plaintext = policy.as_ref().map_or(0, |p| p.chars().count())
            + policy_arns.iter().map(|a| a.chars().count()).sum::<usize>();
        if plaintext > MAX_POLICY_CHARS {
            return Err(invalid(format!(
                "the session policies come to {plaintext} characters; STS takes at most {MAX_POLICY_CHARS}"
            )));
        }
        Ok(Self {
            source_identity,
            transitive_tag_keys: transitive.into_iter().collect(),
            policy,
            policy_arns,
        })
    }
}

/// A source identity as STS takes it: 2 to 64 of `[A-Za-z0-9_+=,.@-]`, not starting with
/// `aws:` (reserved by AWS).
pub(super) fn check_source_identity(value: &str) -> Result<(), String> {
    let ok = (2..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
        && !value.to_ascii_lowercase().starts_with("aws:");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "source_identity `{value}` is not 2 to 64 characters of A-Z a-z 0-9 _ + = , . @ - (not starting with aws:), as STS requires"
        ))
    }
}

/// A rule's `transitive_tag_keys`: tag keys separated by commas (which tag keys cannot
/// contain), each trimmed of surrounding spaces.
pub(super) fn transitive_tag_keys(text: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = text.split(',').map(|k| k.trim().to_owned()).collect();
    for key in &keys {
        super::issue::check_tag_key(key)?;
    }
    if keys.len() > super::MAX_TAGS {
        return Err(format!("{} transitive tag keys; STS takes at most {}", keys.len(), super::MAX_TAGS));
    }
    Ok(keys)
}

/// An inline session policy: a JSON object with a `Statement`, no member named twice,
/// sent compact. Its characters must be ones STS takes (tab, line feed, carriage return,
/// and U+0020 to U+00FF), and it must fit [`MAX_POLICY_CHARS`].
pub fn session_policy(text: &str) -> Result<String, String> {
    let document = crate::jwt::json::parse_object(text.as_bytes())
        .map_err(|e| format!("`policy` is not a JSON policy document: {e}"))?;
    match document.get("Statement") {
        Some(Value::Object(_)) => {}
        Some(Value::Array(statements)) if !statements.is_empty() => {}
        _ => return Err("`policy` has no `Statement` (an object or a non-empty array)".into()),
    }
    let compact = Value::Object(document).to_string();
    if let Some(c) = compact.chars().find(|c| !matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}')) {
        return Err(format!("`policy` has the character U+{:04X}, which STS does not take", u32::from(c)));
    }
    let chars = compact.chars().count();
    if chars > MAX_POLICY_CHARS {
        return Err(format!(
            "`policy` is {chars} characters compacted; STS takes at most {MAX_POLICY_CHARS}"
        ));
    }
    Ok(compact)
}

/// A rule's `policy_arns`: managed policy ARNs separated by spaces, at most
/// [`MAX_POLICY_ARNS`], each named once.
pub(super) fn policy_arns(text: &str) -> Result<Vec<String>, String> {
    let arns: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if arns.is_empty() {
        return Err("`policy_arns` names no policy".into());
    }
    if arns.len() > MAX_POLICY_ARNS {
        return Err(format!("{} policy ARNs; STS takes at most {MAX_POLICY_ARNS}", arns.len()));
    }
    let mut seen = BTreeSet::new();
    for arn in &arns {
        check_policy_arn(arn)?;
        if !seen.insert(arn) {
            return Err(format!("policy ARN `{arn}` is named twice"));
        }
    }
    Ok(arns)
}

/// A managed policy ARN: `arn:<partition>:iam::<12-digit account or aws>:policy/<path><name>`,
/// the name 1 to 128 of `[A-Za-z0-9_+=,.@-]` (IAM API reference, `Policy`).
fn check_policy_arn(arn: &str) -> Result<(), String> {
    if super::issue::iam_arn_ok(arn, "policy", 128, true) {
        Ok(())
    } else {
        Err(format!("`{arn}` is not an IAM managed policy ARN"))
    }
}

/// The load-time check of this module's grant keys; `None` for another key.
pub(super) fn check_rule_param(key: &str, value: &RuleParam<'_>) -> Option<Result<(), String>> {
    let text = match value {
        RuleParam::Text(text) => text,
        RuleParam::Map(_) if GRANT_KEYS.contains(&key) => {
            return Some(Err(format!("`{key}` must be a string")));
        }
        RuleParam::Map(_) => return None,
    };
    let result = match (key, text) {
        ("source_identity", RuleText::Literal(s)) => check_source_identity(s),
        ("source_identity", RuleText::Template) => Ok(()),
        ("transitive_tag_keys", RuleText::Literal(s)) => transitive_tag_keys(s).map(|_| ()),
        ("policy", RuleText::Literal(s)) => session_policy(s).map(|_| ()),
        ("policy_arns", RuleText::Literal(s)) => policy_arns(s).map(|_| ()),
        // A template would put identity data into JSON text or a list, where a crafted
        // value (a workflow name with a quote or a space) could add a statement or a
        // policy and so undo the scoping down. AWS's own policy variables
        // (`${aws:PrincipalTag/team}`, written `${{aws:PrincipalTag/team}}` in a mapping
        // file) scope one policy per workload safely.
        ("transitive_tag_keys" | "policy" | "policy_arns", RuleText::Template) => {
            Err(format!("`{key}` must be literal text, not a template"))
        }
        _ => return None,
    };
    Some(result)
}
