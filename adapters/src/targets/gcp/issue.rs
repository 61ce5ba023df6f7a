//! Issuing a Google access token: the subject JWT, the STS token exchange, and the
//! optional service-account impersonation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::subject::{ID_CLAIM, RULE_CLAIM, google_subject};
use crate::clock::Clock;
use crate::oauth::{grant_type, token_type};
use crate::secret::Secret;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, RequestDescription, RuleParam, RuleText, Signer,
    SigningAlgorithm, TargetBase, TargetError,
};
use crate::targets::upstream::{
    self, Body, UpstreamSettings, plain_code, retryable_status, upstream as failure,
};

/// The scope of a token good for every Google Cloud API the principal is allowed.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The longest lifetime `generateAccessToken` grants without an organization policy
/// exception.
const IMPERSONATION_MAX: Duration = Duration::from_secs(3600);

/// Checked settings, made by the config.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub base: TargetBase,
    pub provider: Option<String>,
    pub audience: Option<String>,
    pub algorithm: SigningAlgorithm,
    pub scopes: Vec<String>,
    pub sts_endpoint: String,
    pub iamcredentials_endpoint: String,
    pub upstream: UpstreamSettings,
}

/// A configured `gcp` target.
#[derive(Debug)]
pub struct GcpTarget {
    settings: Settings,
    http: reqwest::Client,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
}

/// A provider resource name must be a workload identity pool provider's:
/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`.
/// Pool and provider ids are 4 to 32 characters of `a-z`, `0-9` and `-` (IAM
/// `workloadIdentityPools.create` and `providers.create` references).
pub(super) fn check_provider(provider: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{provider}` is not a workload identity pool provider resource name \
             (//iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID)"
        )
    };
    let rest = provider.strip_prefix("//iam.googleapis.com/projects/").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [project, "locations", "global", "workloadIdentityPools", pool, "providers", id] = parts.as_slice()
    else {
        return Err(bad());
    };
    let id_ok = |s: &str| {
        (4..=32).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if project.is_empty() || !project.bytes().all(|b| b.is_ascii_digit()) || !id_ok(pool) || !id_ok(id) {
        return Err(bad());
    }
    Ok(())
}

/// The audience a workload identity pool provider allows when it lists none: its resource
/// name as a URL (`//iam.googleapis.com/...` becomes `https://iam.googleapis.com/...`).
pub(super) fn provider_audience(provider: &str) -> String {
    format!("https:{provider}")
}

/// An OAuth scope as Google writes them: a non-empty token with no spaces or controls.
pub(super) fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty() && scope.len() <= 256 && scope.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(format!("`{scope}` is not an OAuth scope")) }
}

/// A service account as `generateAccessToken` names it in its path: an email
/// (`name@project.iam.gserviceaccount.com`) or a numeric unique id. Only characters that
/// need no escaping in a URL path are accepted, so the value cannot change the path.
fn check_service_account(sa: &str) -> Result<(), String> {
    let chars_ok = sa
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'@' | b'.' | b'-' | b'_'));
    let shape_ok = match sa.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => !sa.is_empty() && sa.bytes().all(|b| b.is_ascii_digit()),
    };
    if chars_ok && shape_ok && sa.len() <= 254 {
        Ok(())
    } else {
        Err(format!("`{sa}` is not a service account email or unique id"))
    }
}

/// Space-separated OAuth scopes (RFC 6749 §3.3), at least one.
fn check_scopes(text: &str) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if scopes.is_empty() {
        return Err("`scopes` names no scope".into());
    }
    for s in &scopes {
        check_scope(s)?;
    }
    Ok(scopes)
}

/// What a grant asks Google for, checked, before a token is signed.
#[derive(Debug, Clone)]
struct Plan<'a> {
    provider: &'a str,
    scopes: Vec<String>,
    service_account: Option<&'a str>,
    lifetime: Duration,
}

/// STS `v1/token` success body (RFC 8693 §2.2.1 fields).
#[derive(Debug, Deserialize)]
struct StsAnswer {
    access_token: String,
    issued_token_type: String,
    token_type: String,
    expires_in: i64,
}

/// STS error body (RFC 6749 §5.2).
#[derive(Debug, Deserialize)]
struct OAuthError {
    error: Option<String>,
}

/// `generateAccessToken` success body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAnswer {
    access_token: String,
    expire_time: String,
}

/// Google API error body (`{"error": {"code", "message", "status"}}`, AIP-193).
#[derive(Debug, Deserialize)]
struct GoogleError {
    error: Option<GoogleErrorStatus>,
}

#[derive(Debug, Deserialize)]
struct GoogleErrorStatus {
    status: Option<String>,
}

impl GcpTarget {
    pub(super) fn new(
        settings: Settings,
        http: reqwest::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { settings, http, signer, clock }
    }

    /// The provider resource name for `grant`: the rule's `provider`, else the configured one.
    fn provider<'a>(&'a self, grant: &'a Grant) -> Result<&'a str, TargetError> {
        let provider =
            grant.param_str("provider").or(self.settings.provider.as_deref()).ok_or_else(|| {
                TargetError::InvalidGrant(format!(
                    "target `{}` has no provider and the rule names none",
                    self.settings.base.name
                ))
            })?;
        check_provider(provider).map_err(TargetError::InvalidGrant)?;
        Ok(provider)
    }

    /// The rule's `scopes` (space-separated, as in an OAuth `scope` parameter, RFC 6749
    /// §3.3), else the configured ones.
    fn scopes(&self, grant: &Grant) -> Result<Vec<String>, TargetError> {
        match grant.param_str("scopes") {
            Some(text) => check_scopes(text).map_err(TargetError::InvalidGrant),
            None => Ok(self.settings.scopes.clone()),
        }
    }

    /// What `grant` asks Google for: the provider, the scopes, the service account to
    /// impersonate if any, and the token's lifetime. Every check a grant can fail happens
    /// here, before anything is signed or sent.
    fn plan<'a>(&'a self, grant: &'a Grant) -> Result<Plan<'a>, TargetError> {
        upstream::check_grant_target(grant, &self.settings.base.name)?;
        let provider = self.provider(grant)?;
        let scopes = self.scopes(grant)?;
        let service_account = grant.param_str("service_account");
        if let Some(sa) = service_account {
            check_service_account(sa).map_err(TargetError::InvalidGrant)?;
        }
        let lifetime = grant.ttl().min(self.settings.base.max_ttl).min(IMPERSONATION_MAX);
        if lifetime.is_zero() {
            return Err(TargetError::InvalidGrant("granted lifetime is zero".into()));
        }
        Ok(Plan { provider, scopes, service_account, lifetime })
    }

    /// The claims of the JWT presented to STS. `sub` is the identity id made to fit
    /// `google.subject` ([`google_subject`]), which the provider's attribute mapping reads
    /// as `google.subject = assertion.sub`; the full id and the granting rule's name ride
    /// along for `attribute.tessera_id` and `attribute.tessera_rule`.
    pub(super) fn subject_claims(&self, grant: &Grant, provider: &str, now: i64) -> Map<String, Value> {
        let audience = match &self.settings.audience {
            Some(a) => a.clone(),
            None => provider_audience(provider),
        };
        let id = grant.identity().id.as_str();
        let mut claims =
            upstream::presented_claims(self.signer.as_ref(), &google_subject(id), &audience, now);
        claims.insert(ID_CLAIM.into(), Value::from(id));
        claims.insert(RULE_CLAIM.into(), Value::from(grant.rule()));
        // A provider's attribute mapping can read the actor: `assertion.act.sub`.
        if let Some(act) = grant.act_claim(self.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        claims
    }

    async fn sts_exchange(
        &self,
        provider: &str,
        scopes: &[String],
        subject_token: &Secret<String>,
    ) -> Result<(Secret<String>, i64), TargetError> {
        let url = format!("{}/v1/token", self.settings.sts_endpoint);
        let scope = scopes.join(" ");
        let form = [
            ("grant_type", grant_type::TOKEN_EXCHANGE),
            ("audience", provider),
            ("scope", scope.as_str()),
            ("requested_token_type", token_type::ACCESS_TOKEN),
            ("subject_token", subject_token.expose().as_str()),
            ("subject_token_type", token_type::JWT),
        ];
        let answer = upstream::post_with_retries(
            &self.http,
            &url,
            None,
            Body::Form(&form),
            &self.settings.upstream,
            "Google STS",
        )
        .await?;
        read_sts_answer(answer.status, &answer.body)
    }

    async fn generate_access_token(
        &self,
        service_account: &str,
        scopes: &[String],
        lifetime: Duration,
        federated: &Secret<String>,
    ) -> Result<(Secret<String>, i64), TargetError> {
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken",
            self.settings.iamcredentials_endpoint
        );
        let body = json!({ "scope": scopes, "lifetime": format!("{}s", lifetime.as_secs()) });
        let answer = upstream::post_with_retries(
            &self.http,
            &url,
            Some(federated),
            Body::Json(&body),
            &self.settings.upstream,
            "IAM Credentials",
        )
        .await?;
        read_generate_answer(answer.status, &answer.body)
    }
}

/// Read an STS answer: the federated token and its lifetime in seconds.
pub(super) fn read_sts_answer(status: u16, body: &[u8]) -> Result<(Secret<String>, i64), TargetError> {
    match status {
        200 => {
            let a: StsAnswer = serde_json::from_slice(body)
                .map_err(|_| failure(false, "Google STS: answer is not a token response".into()))?;
            if a.access_token.is_empty()
                || a.issued_token_type != token_type::ACCESS_TOKEN
                || !a.token_type.eq_ignore_ascii_case("Bearer")
                || a.expires_in <= 0
            {
                return Err(failure(false, "Google STS: token response has unexpected values".into()));
            }
            Ok((Secret::new(a.access_token), a.expires_in))
        }
        s if retryable_status(s) => Err(failure(true, format!("Google STS answered {s}"))),
        400 | 401 | 403 => {
            // Only the RFC 6749 `error` code is kept: `error_description` is free text.
            let code =
                serde_json::from_slice::<OAuthError>(body).ok().and_then(|e| plain_code(e.error.as_deref()));
            let code = code.unwrap_or_else(|| "unknown".into());
            tracing::info!(upstream_error = %code, status, "Google STS refused the token exchange");
            Err(TargetError::UpstreamRejected(format!("Google STS: {code}")))
        }
        s => Err(failure(false, format!("Google STS answered {s}"))),
    }
}

/// Read a `generateAccessToken` answer: the service account's token and its expiry.
pub(super) fn read_generate_answer(status: u16, body: &[u8]) -> Result<(Secret<String>, i64), TargetError> {
    match status {
        200 => {
            let a: GenerateAnswer = serde_json::from_slice(body)
                .map_err(|_| failure(false, "IAM Credentials: answer is not an access token".into()))?;
            let expires_at = upstream::parse_rfc3339_utc(&a.expire_time)
                .ok_or_else(|| failure(false, "IAM Credentials: expireTime is not RFC 3339 UTC".into()))?;
            if a.access_token.is_empty() {
                return Err(failure(false, "IAM Credentials: empty accessToken".into()));
            }
            Ok((Secret::new(a.access_token), expires_at))
        }
        s if retryable_status(s) => Err(failure(true, format!("IAM Credentials answered {s}"))),
        400 | 401 | 403 | 404 => {
            let code = serde_json::from_slice::<GoogleError>(body)
                .ok()
                .and_then(|e| plain_code(e.error.and_then(|s| s.status).as_deref()));
            let code = code.unwrap_or_else(|| "unknown".into());
            tracing::info!(upstream_error = %code, status, "IAM Credentials refused impersonation");
            Err(TargetError::UpstreamRejected(format!("IAM Credentials: {code}")))
        }
        s => Err(failure(false, format!("IAM Credentials answered {s}"))),
    }
}

#[async_trait]
impl CredentialTarget for GcpTarget {
    fn base(&self) -> &TargetBase {
        &self.settings.base
    }

    /// `service_account`: impersonate it (an email); `scopes`: space-separated OAuth scopes;
    /// `provider`: the workload identity pool provider resource name.
    fn grant_keys(&self) -> &'static [&'static str] {
        &["service_account", "scopes", "provider"]
    }

    fn required_grant_keys(&self) -> Vec<&'static str> {
        if self.settings.provider.is_none() { vec!["provider"] } else { Vec::new() }
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match (key, value) {
            (_, RuleParam::Map(_)) => Err("must be a string".into()),
            ("service_account", RuleParam::Text(RuleText::Literal(sa))) => check_service_account(sa),
            ("scopes", RuleParam::Text(RuleText::Literal(text))) => check_scopes(text).map(|_| ()),
            ("provider", RuleParam::Text(RuleText::Literal(p))) => check_provider(p),
            _ => Ok(()),
        }
    }

    /// A request's `scope` picks the rule granting that service account.
    fn scope_param(&self) -> Option<&'static str> {
        Some("service_account")
    }

    fn cacheable(&self) -> bool {
        self.settings.upstream.cache
    }

    fn upstream_endpoints(&self) -> Vec<String> {
        vec![self.settings.sts_endpoint.clone(), self.settings.iamcredentials_endpoint.clone()]
    }

    /// The plan's provider, scopes, service account and lifetime, and what the subject
    /// token says of the workload: its `sub` and the full identity id (the provider's
    /// attribute mapping reads them; the rule is in every description already).
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let Plan { provider, scopes, service_account, lifetime } = self.plan(grant)?;
        let id = grant.identity().id.as_str();
        Ok(RequestDescription::new(grant)
            .with("provider", provider)
            .with("scopes", scopes)
            .with("service_account", service_account)
            .with("lifetime", lifetime.as_secs())
            .with("sub", google_subject(id).into_owned())
            .with(ID_CLAIM, id))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let Plan { provider, scopes, service_account, lifetime } = self.plan(grant)?;
        let now = self.clock.now();
        let claims = self.subject_claims(grant, provider, now);
        let subject_token = self.signer.sign(self.settings.algorithm, &claims)?;
        // A federated token that will call `generateAccessToken` needs the cloud-platform
        // scope (Workload Identity Federation, "Use service account impersonation");
        // otherwise it is the credential and carries the granted scopes.
        let sts_scopes = match service_account {
            Some(_) => vec![CLOUD_PLATFORM_SCOPE.to_string()],
            None => scopes.clone(),
        };
        let (federated, expires_in) = self.sts_exchange(provider, &sts_scopes, &subject_token).await?;

        let (access_token, expires_at) = match service_account {
            Some(sa) => self.generate_access_token(sa, &scopes, lifetime, &federated).await?,
            // Without impersonation the federated token is the credential; Google sets
            // its lifetime (1 hour) and it cannot be shortened.
            None => (federated, now.saturating_add(expires_in)),
        };
        Ok(IssuedCredential {
            access_token,
            issued_token_type: token_type::ACCESS_TOKEN,
            token_type: "Bearer",
            expires_at,
            platform_credentials: None,
        })
    }
}
