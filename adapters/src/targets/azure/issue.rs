//! Issuing an Entra access token: the client assertion and the client credentials request.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::oauth::{client_assertion_type, token_type};
use crate::secret::Secret;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, RequestDescription, RuleParam, RuleText, Signer,
    SigningAlgorithm, TargetBase, TargetError,
};
use crate::targets::upstream::{
    self, Body, UpstreamSettings, plain_code, retryable_status, upstream as failure,
};

/// Checked settings, made by the config.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub base: TargetBase,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub audience: String,
    pub authority: String,
    pub upstream: UpstreamSettings,
}

/// A configured `azure` target.
#[derive(Debug)]
pub struct AzureTarget {
    settings: Settings,
    http: reqwest::Client,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
}

/// A tenant as the token endpoint path takes it: a directory id (GUID) or a domain name.
/// Only `a-z`, `A-Z`, `0-9`, `.` and `-`, so the value cannot change the path.
pub(super) fn check_tenant(tenant: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&tenant.len())
        && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !tenant.starts_with('.');
    if ok { Ok(()) } else { Err(format!("`{tenant}` is not a tenant id or domain")) }
}

/// An application (client) id: a GUID.
pub(super) fn check_client_id(id: &str) -> Result<(), String> {
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    let ok = groups == [8, 4, 4, 4, 12] && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok { Ok(()) } else { Err(format!("`{id}` is not an application (client) id (a GUID)")) }
}

/// An Entra scope for client credentials: `<resource>/.default`, the only form that
/// grant accepts ("Client credentials flow", the `scope` parameter).
pub(super) fn check_scope(scope: &str) -> Result<(), String> {
    let ok =
        scope.ends_with("/.default") && scope.len() <= 512 && scope.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(format!("`{scope}` is not a `<resource>/.default` scope")) }
}

/// The assertion's `sub` must equal the federated credential's subject: printable,
/// at most 600 characters (Entra's limit for a credential's subject).
fn check_subject(subject: &str) -> Result<(), String> {
    let ok = !subject.is_empty() && subject.chars().count() <= 600 && !subject.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err("`subject` is empty, longer than 600 characters or has control characters".into())
    }
}

/// What a grant asks Entra for, checked, before the assertion is signed.
#[derive(Debug, Clone, Copy)]
struct Plan<'a> {
    tenant: &'a str,
    client_id: &'a str,
    scope: &'a str,
    subject: &'a str,
}

/// Token endpoint success body.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token_type: String,
    expires_in: i64,
    access_token: String,
}

/// Token endpoint error body: RFC 6749 §5.2 plus Entra's `error_codes` (the numbers of
/// the `AADSTS` codes in `error_description`).
#[derive(Debug, Deserialize)]
struct EntraError {
    error: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl AzureTarget {
    pub(super) fn new(
        settings: Settings,
        http: reqwest::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { settings, http, signer, clock }
    }

    fn pick<'a>(
        &'a self,
        grant: &'a Grant,
        key: &str,
        configured: Option<&'a str>,
    ) -> Result<&'a str, TargetError> {
        grant.param_str(key).or(configured).ok_or_else(|| {
            TargetError::InvalidGrant(format!(
                "target `{}` has no {key} and the rule names none",
                self.settings.base.name
            ))
        })
    }

    /// What `grant` asks Entra for: the tenant, the client id, the scope and the
    /// assertion's subject. Every check a grant can fail happens here, before anything is
    /// signed or sent.
    fn plan<'a>(&'a self, grant: &'a Grant) -> Result<Plan<'a>, TargetError> {
        upstream::check_grant_target(grant, &self.settings.base.name)?;
        upstream::check_granted_lifetime(grant)?;
        let tenant = self.pick(grant, "tenant", self.settings.tenant.as_deref())?;
        check_tenant(tenant).map_err(TargetError::InvalidGrant)?;
        let client_id = self.pick(grant, "client_id", self.settings.client_id.as_deref())?;
        check_client_id(client_id).map_err(TargetError::InvalidGrant)?;
        let scope = grant.scope().or(self.settings.scope.as_deref()).ok_or_else(|| {
            TargetError::InvalidGrant(format!(
                "target `{}` has no scope and the rule grants none",
                self.settings.base.name
            ))
        })?;
        check_scope(scope).map_err(TargetError::InvalidGrant)?;
        let subject = grant.param_str("subject").unwrap_or(grant.identity().id.as_str());
        check_subject(subject).map_err(TargetError::InvalidGrant)?;
        Ok(Plan { tenant, client_id, scope, subject })
    }

    /// The assertion's claims ("Assertion format": `aud`, `exp`, `iss`, `jti`, `nbf`,
    /// `sub`, `iat`).
    pub(super) fn assertion_claims(&self, subject: &str, now: i64) -> Map<String, Value> {
        upstream::presented_claims(self.signer.as_ref(), subject, &self.settings.audience, now)
    }
}

/// Read a token endpoint answer: the access token and its lifetime in seconds.
pub(super) fn read_answer(status: u16, body: &[u8]) -> Result<(Secret<String>, i64), TargetError> {
    match status {
        200 => {
            let a: TokenAnswer = serde_json::from_slice(body)
                .map_err(|_| failure(false, "Entra: answer is not a token response".into()))?;
            if a.access_token.is_empty() || !a.token_type.eq_ignore_ascii_case("Bearer") || a.expires_in <= 0
            {
                return Err(failure(false, "Entra: token response has unexpected values".into()));
            }
            Ok((Secret::new(a.access_token), a.expires_in))
        }
        s if retryable_status(s) => Err(failure(true, format!("Entra answered {s}"))),
        400 | 401 | 403 => {
            // The `error` code and the AADSTS numbers only: `error_description` is free
            // text that can quote request values.
            let parsed = serde_json::from_slice::<EntraError>(body).ok();
            let code = parsed
                .as_ref()
                .and_then(|e| plain_code(e.error.as_deref()))
                .unwrap_or_else(|| "unknown".into());
            let aadsts: Vec<String> = parsed
                .map(|e| e.error_codes.iter().take(4).map(|c| format!("AADSTS{c}")).collect())
                .unwrap_or_default();
            let detail = if aadsts.is_empty() { code } else { format!("{code} {}", aadsts.join(" ")) };
            tracing::info!(upstream_error = %detail, status, "Entra refused the client assertion");
            Err(TargetError::UpstreamRejected(format!("Entra: {detail}")))
        }
        s => Err(failure(false, format!("Entra answered {s}"))),
    }
}

#[async_trait]
impl CredentialTarget for AzureTarget {
    fn base(&self) -> &TargetBase {
        &self.settings.base
    }

    /// `tenant`, `client_id`: override the configured ones; `subject`: the assertion's
    /// `sub` (default: the identity id). The Entra scope is the rule's `scope`.
    fn grant_keys(&self) -> &'static [&'static str] {
        &["tenant", "client_id", "subject"]
    }

    fn required_grant_keys(&self) -> Vec<&'static str> {
        let s = &self.settings;
        [("tenant", s.tenant.is_none()), ("client_id", s.client_id.is_none()), ("scope", s.scope.is_none())]
            .into_iter()
            .filter_map(|(key, missing)| missing.then_some(key))
            .collect()
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match (key, value) {
            (_, RuleParam::Map(_)) => Err("must be a string".into()),
            ("tenant", RuleParam::Text(RuleText::Literal(t))) => check_tenant(t),
            ("client_id", RuleParam::Text(RuleText::Literal(c))) => check_client_id(c),
            ("subject", RuleParam::Text(RuleText::Literal(s))) => check_subject(s),
            _ => Ok(()),
        }
    }

    fn cacheable(&self) -> bool {
        self.settings.upstream.cache
    }

    fn upstream_endpoints(&self) -> Vec<String> {
        vec![self.settings.authority.clone()]
    }

    /// The plan's tenant, client id, scope and assertion subject. The subject is the
    /// identity id unless the rule names one, so the identity counts only then: workloads
    /// sharing a rule's `subject` ask Entra for the same token and share it.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let Plan { tenant, client_id, scope, subject } = self.plan(grant)?;
        Ok(RequestDescription::new(grant)
            .with("tenant", tenant)
            .with("client_id", client_id)
            .with("scope", scope)
            .with("sub", subject))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let Plan { tenant, client_id, scope, subject } = self.plan(grant)?;
        let now = self.clock.now();
        let mut claims = self.assertion_claims(subject, now);
        if let Some(act) = grant.act_claim(self.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        let assertion = self.signer.sign(SigningAlgorithm::Rs256, &claims)?;
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.settings.authority);
        let form = [
            ("client_id", client_id),
            ("scope", scope),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", client_assertion_type::JWT_BEARER),
            ("client_assertion", assertion.expose().as_str()),
        ];
        let answer = upstream::post_with_retries(
            &self.http,
            &url,
            None,
            Body::Form(&form),
            &self.settings.upstream,
            "Entra",
        )
        .await?;
        let (access_token, expires_in) = read_answer(answer.status, &answer.body)?;
        Ok(IssuedCredential {
            access_token,
            issued_token_type: token_type::ACCESS_TOKEN,
            token_type: "Bearer",
            expires_at: now.saturating_add(expires_in),
            platform_credentials: None,
        })
    }
}
