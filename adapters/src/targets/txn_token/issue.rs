//! The Txn-Token's claims (draft-ietf-oauth-transaction-tokens-10 §9.2) and the grant keys
//! a rule for a `txn_token` target gives.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::oauth::token_type;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, RuleParam, RuleText, Signer,
    SigningAlgorithm, TargetBase, TargetError,
};

/// The `typ` header of every Txn-Token (draft §9.1).
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

/// Grant key: the scope values (space-separated) the rule lets a workload put in a
/// Txn-Token. Required.
pub const GRANT_SCOPES: &str = "scopes";
/// Grant key: globs (space-separated) the transaction's subject (`sub`) must match.
/// Required.
pub const GRANT_SUBJECTS: &str = "subjects";
/// Grant key: the kinds of `subject_token` (space-separated [`SubjectKind`] names) the rule
/// accepts. Default: every kind but `unsigned_json`.
pub const GRANT_SUBJECT_TOKEN_TYPES: &str = "subject_token_types";

/// The kinds of `subject_token` a Txn-Token request may name (draft §10.2), by the short
/// name rules use for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Jwt,
    IdToken,
    /// An access token in JWT form (RFC 9068), verified by the sources as any JWT.
    AccessToken,
    /// A Txn-Token of this trust domain: the request is for a replacement.
    TxnToken,
    /// An unsigned JSON object naming the subject (draft §10.2.2): no proof of the subject
    /// at all, so accepted only where a rule names it.
    UnsignedJson,
}

impl SubjectKind {
    pub const ALL: [Self; 5] =
        [Self::Jwt, Self::IdToken, Self::AccessToken, Self::TxnToken, Self::UnsignedJson];

    /// What a rule accepts when it names no `subject_token_types`.
    pub const DEFAULT: [Self; 4] = [Self::Jwt, Self::IdToken, Self::AccessToken, Self::TxnToken];

    /// The name rules write.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::IdToken => "id_token",
            Self::AccessToken => "access_token",
            Self::TxnToken => "txn_token",
            Self::UnsignedJson => "unsigned_json",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The `subject_token_type` URI (RFC 8693 §3, draft §10.2).
    pub fn uri(self) -> &'static str {
        match self {
            Self::Jwt => token_type::JWT,
            Self::IdToken => token_type::ID_TOKEN,
            Self::AccessToken => token_type::ACCESS_TOKEN,
            Self::TxnToken => token_type::TXN_TOKEN,
            Self::UnsignedJson => token_type::UNSIGNED_JSON,
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.uri() == uri)
    }
}

/// The values of a space-separated grant key (or `scope` parameter), each once, in order.
pub fn split_list(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for item in text.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// A configured `txn_token` target, made by
/// [`TxnTokenTargetConfig`](super::TxnTokenTargetConfig) once its values are checked.
#[derive(Debug)]
pub struct TxnTokenTarget {
    pub(super) base: TargetBase,
    pub(super) audience: String,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) signer: Arc<dyn Signer>,
    pub(super) clock: Arc<dyn Clock>,
}

/// The grant claims the Txn-Token service sets; every other claim of a grant (a rule's
/// `claims:`) is a value the TTS asserts in `tctx`.
pub const SERVICE_CLAIMS: [&str; 5] = ["txn", "sub", "req_wl", "tctx", "rctx"];

/// A string claim of the grant: absent, or a non-empty string.
fn granted_str<'g>(grant: &'g Grant, name: &str) -> Result<Option<&'g str>, TargetError> {
    match grant.claims().get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(TargetError::InvalidGrant(format!("`{name}` must be a non-empty string"))),
    }
}

/// A context claim (`tctx`, `rctx`) of the grant: an object, or absent.
fn granted_object<'g>(grant: &'g Grant, name: &str) -> Result<Option<&'g Map<String, Value>>, TargetError> {
    match grant.claims().get(name) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(TargetError::InvalidGrant(format!("`{name}` must be a JSON object"))),
    }
}

impl TxnTokenTarget {
    /// The trust domain: the `aud` of every Txn-Token this target issues.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The claims `grant` decides (draft §9.2) but `txn`, and the lifetime. The grant's
    /// claims carry what the Txn-Token service decided:
    /// - `sub`: the transaction's subject; absent, the requesting workload itself (a
    ///   transaction a workload starts for itself, draft §8.2);
    /// - `req_wl`: the workloads that requested the Txn-Token this one replaces; the
    ///   requesting workload (the grant's verified identity) is appended, comma-separated;
    /// - `tctx`, `rctx`: JSON objects; any other claim is a `tctx` member the TTS asserts
    ///   (one `tctx` already holds wins).
    ///
    /// `scope` is the grant's. Every check a grant can fail happens here.
    fn granted(&self, grant: &Grant) -> Result<(Map<String, Value>, Duration), TargetError> {
        crate::targets::upstream::check_grant_target(grant, &self.base.name)?;
        let scope = grant
            .scope()
            .filter(|s| !split_list(s).is_empty())
            .ok_or_else(|| TargetError::InvalidGrant("a Txn-Token needs a scope".into()))?;
        let ttl = crate::targets::signed::granted_ttl(grant, self.base.max_ttl)?;
        let workload = grant.identity().id.as_str();
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::from(granted_str(grant, "sub")?.unwrap_or(workload)));
        let req_wl = match granted_str(grant, "req_wl")? {
            Some(before) => format!("{before},{workload}"),
            None => workload.to_string(),
        };
        claims.insert("req_wl".into(), Value::from(req_wl));
        claims.insert("scope".into(), Value::from(split_list(scope).join(" ")));
        let mut tctx = granted_object(grant, "tctx")?.cloned().unwrap_or_default();
        for (name, value) in grant.claims().iter().filter(|(n, _)| !SERVICE_CLAIMS.contains(&n.as_str())) {
            tctx.entry(name.clone()).or_insert_with(|| value.clone());
        }
        if !tctx.is_empty() {
            claims.insert("tctx".into(), Value::Object(tctx));
        }
        if let Some(rctx) = granted_object(grant, "rctx")? {
            claims.insert("rctx".into(), Value::Object(rctx.clone()));
        }
        Ok((claims, ttl))
    }

    /// The full claim set and `exp`: the granted claims, `txn` (the grant's, else a new
    /// UUID: a new transaction, RFC 8417 §2.2), `iat`, `exp`, `aud` (the trust domain) and
    /// `iss` (optional in the draft; Tessera sets it, so a relying party can find the keys
    /// through discovery).
    pub(super) fn claims(&self, grant: &Grant) -> Result<(Map<String, Value>, i64), TargetError> {
        let (mut claims, ttl) = self.granted(grant)?;
        let now = self.clock.now();
        // `ttl` is at most `max_ttl`, itself capped at an hour, so this never saturates.
        let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let txn = match granted_str(grant, "txn")? {
            Some(txn) => txn.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        claims.insert("txn".into(), Value::from(txn));
        claims.insert("iss".into(), Value::from(self.signer.issuer()));
        claims.insert("aud".into(), Value::from(self.audience.as_str()));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        Ok((claims, exp))
    }
}

/// A literal list of one grant key, each value checked by `valid`.
fn check_list(
    key: &str,
    value: &RuleParam<'_>,
    valid: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    match value {
        RuleParam::Text(RuleText::Literal(text)) => {
            let items = split_list(text);
            if items.is_empty() {
                return Err(format!("`{key}` must name at least one value: an empty list would allow none"));
            }
            items.into_iter().try_for_each(valid)
        }
        RuleParam::Text(RuleText::Template) => {
            Err(format!("`{key}` must be a literal list, not a template: it bounds what a rule allows"))
        }
        RuleParam::Map(_) => Err(format!("`{key}` must be a space-separated list, not a map")),
    }
}

#[async_trait]
impl CredentialTarget for TxnTokenTarget {
    fn base(&self) -> &TargetBase {
        &self.base
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        &[GRANT_SCOPES, GRANT_SUBJECTS, GRANT_SUBJECT_TOKEN_TYPES]
    }

    fn required_grant_keys(&self) -> Vec<&'static str> {
        vec![GRANT_SCOPES, GRANT_SUBJECTS]
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match key {
            GRANT_SCOPES => check_list(key, value, |s| {
                if is_scope_token(s) {
                    Ok(())
                } else {
                    Err(format!("`{s}` is not an RFC 6749 §3.3 scope value"))
                }
            }),
            GRANT_SUBJECTS => check_list(key, value, |_| Ok(())),
            GRANT_SUBJECT_TOKEN_TYPES => check_list(key, value, |s| match SubjectKind::from_name(s) {
                Some(_) => Ok(()),
                None => {
                    let names: Vec<&str> = SubjectKind::ALL.iter().map(|k| k.name()).collect();
                    Err(format!("unknown subject token type `{s}`; one of: {}", names.join(", ")))
                }
            }),
            _ => Ok(()),
        }
    }

    /// A rule's scope is the list of scope values it allows; the Txn-Token service narrows
    /// it to what the request asks (draft §10.3).
    fn scope_param(&self) -> Option<&'static str> {
        Some(GRANT_SCOPES)
    }

    fn issued_jwt(&self) -> Option<IssuedJwt> {
        Some(IssuedJwt { audience: self.audience.clone(), algorithm: self.algorithm })
    }

    /// Each Txn-Token carries its own transaction; one is never served twice.
    fn cacheable(&self) -> bool {
        false
    }

    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let (claims, ttl) = self.granted(grant)?;
        Ok(RequestDescription::new(grant)
            .with("claims", claims)
            .with("ttl", ttl.as_secs())
            .with("txn", granted_str(grant, "txn")?))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let (claims, expires_at) = self.claims(grant)?;
        let access_token = self.signer.sign_typed(self.algorithm, TXN_TOKEN_TYP, &claims)?;
        Ok(IssuedCredential {
            access_token,
            issued_token_type: token_type::TXN_TOKEN,
            // draft §10.4: a Txn-Token is not an access token.
            token_type: "N_A",
            expires_at,
            platform_credentials: None,
        })
    }
}
