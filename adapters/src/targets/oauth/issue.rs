//! Redeeming a Tessera assertion at a foreign token endpoint and reading the answer.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;

use super::config::{OauthGrant, check_param};
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

/// The grant keys a rule for an `oauth` target may set: the `audience` and `resource`
/// parameters sent, overriding the target's.
const GRANT_KEYS: &[&str] = &["audience", "resource"];

/// Checked settings, made by the config.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub base: TargetBase,
    pub token_endpoint: String,
    pub grant: OauthGrant,
    pub assertion_audience: String,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret<String>>,
    pub algorithm: SigningAlgorithm,
    pub upstream: UpstreamSettings,
}

/// A configured `oauth` target.
#[derive(Debug)]
pub struct OauthTarget {
    settings: Settings,
    http: reqwest::Client,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
}

/// What a grant asks the server for, checked, before the assertion is signed.
#[derive(Debug, Clone, Copy)]
struct Plan<'a> {
    audience: Option<&'a str>,
    resource: Option<&'a str>,
    scope: Option<&'a str>,
}

/// RFC 6749 §5.1 (and RFC 8693 §2.2.1) success body: what Tessera reads of it.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// RFC 6749 §5.2 error body: only `error` is read; `error_description` is free text.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
}

impl OauthTarget {
    pub(super) fn new(
        settings: Settings,
        http: reqwest::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { settings, http, signer, clock }
    }

    fn plan<'a>(&'a self, grant: &'a Grant) -> Result<Plan<'a>, TargetError> {
        upstream::check_grant_target(grant, &self.settings.base.name)?;
        upstream::check_granted_lifetime(grant)?;
        let audience = grant.param_str("audience").or(self.settings.audience.as_deref());
        let resource = grant.param_str("resource").or(self.settings.resource.as_deref());
        let scope = grant.scope().or(self.settings.scope.as_deref());
        for (what, value) in [("audience", audience), ("resource", resource), ("scope", scope)] {
            if let Some(v) = value {
                check_param(what, v).map_err(TargetError::InvalidGrant)?;
            }
        }
        Ok(Plan { audience, resource, scope })
    }

    /// RFC 6749 §2.3.1: `client_id` and `client_secret`, each form-urlencoded, joined by
    /// `:`, in base64, as HTTP Basic credentials.
    fn basic_authorization(&self) -> Option<Secret<String>> {
        let id = self.settings.client_id.as_deref()?;
        let secret = self.settings.client_secret.as_ref()?;
        let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(id), encode(secret.expose()));
        Some(Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        )))
    }
}

/// Read a token endpoint answer: the access token, its `token_type` and lifetime.
pub(super) fn read_answer(
    status: u16,
    body: &[u8],
) -> Result<(Secret<String>, &'static str, Option<i64>), TargetError> {
    match status {
        200 => {
            let a: TokenAnswer = serde_json::from_slice(body)
                .map_err(|_| failure(false, "token endpoint: answer is not a token response".into()))?;
            // RFC 6749 §7.1: a client uses a token only of a type it understands. A DPoP
            // token needs a proof Tessera's caller could not make.
            let kind = if a.token_type.eq_ignore_ascii_case("Bearer") {
                "Bearer"
            } else if a.token_type == "N_A" {
                "N_A"
            } else {
                return Err(failure(false, "token endpoint: token_type is neither Bearer nor N_A".into()));
            };
            if a.access_token.is_empty() || a.expires_in.is_some_and(|s| s <= 0) {
                return Err(failure(false, "token endpoint: token response has unexpected values".into()));
            }
            Ok((Secret::new(a.access_token), kind, a.expires_in))
        }
        s if retryable_status(s) => Err(failure(true, format!("token endpoint answered {s}"))),
        400 | 401 | 403 => {
            let code = serde_json::from_slice::<ErrorAnswer>(body)
                .ok()
                .and_then(|e| plain_code(e.error.as_deref()))
                .unwrap_or_else(|| "unknown".into());
            tracing::info!(upstream_error = %code, status, "the token endpoint refused the assertion");
            Err(TargetError::UpstreamRejected(format!("token endpoint: {code}")))
        }
        s => Err(failure(false, format!("token endpoint answered {s}"))),
    }
}

#[async_trait]
impl CredentialTarget for OauthTarget {
    fn base(&self) -> &TargetBase {
        &self.settings.base
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        GRANT_KEYS
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match value {
            RuleParam::Map(_) => Err("must be a string".into()),
            RuleParam::Text(RuleText::Literal(v)) => check_param(key, v),
            RuleParam::Text(RuleText::Template) => Ok(()),
        }
    }

    fn cacheable(&self) -> bool {
        self.settings.upstream.cache
    }

    fn upstream_endpoints(&self) -> Vec<String> {
        vec![self.settings.token_endpoint.clone()]
    }

    /// The parameters sent and the assertion's subject, the identity id.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let Plan { audience, resource, scope } = self.plan(grant)?;
        Ok(RequestDescription::new(grant)
            .with("grant", self.settings.grant.as_str())
            .with("audience", audience)
            .with("resource", resource)
            .with("scope", scope)
            .with("sub", grant.identity().id.as_str()))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let Plan { audience, resource, scope } = self.plan(grant)?;
        let now = self.clock.now();
        let claims = upstream::presented_claims(
            self.signer.as_ref(),
            &grant.identity().id,
            &self.settings.assertion_audience,
            now,
        );
        let assertion = self.signer.sign(self.settings.algorithm, &claims)?;
        let mut form: Vec<(&str, &str)> = match self.settings.grant {
            OauthGrant::JwtBearer => {
                vec![("grant_type", grant_type::JWT_BEARER), ("assertion", assertion.expose().as_str())]
            }
            OauthGrant::TokenExchange => vec![
                ("grant_type", grant_type::TOKEN_EXCHANGE),
                ("subject_token", assertion.expose().as_str()),
                ("subject_token_type", token_type::JWT),
            ],
        };
        for (name, value) in [("audience", audience), ("resource", resource), ("scope", scope)] {
            if let Some(v) = value {
                form.push((name, v));
            }
        }
        let authorization = self.basic_authorization();
        if authorization.is_none()
            && let Some(id) = self.settings.client_id.as_deref()
        {
            form.push(("client_id", id));
        }
        let answer = upstream::post_authorized_with_retries(
            &self.http,
            &self.settings.token_endpoint,
            authorization.as_ref(),
            Body::Form(&form),
            &self.settings.upstream,
            "token endpoint",
        )
        .await?;
        let (access_token, kind, expires_in) = read_answer(answer.status, &answer.body)?;
        let lifetime = expires_in.unwrap_or_else(|| i64::try_from(grant.ttl().as_secs()).unwrap_or(i64::MAX));
        Ok(IssuedCredential {
            access_token,
            issued_token_type: token_type::ACCESS_TOKEN,
            token_type: kind,
            expires_at: now.saturating_add(lifetime),
            platform_credentials: None,
        })
    }
}
