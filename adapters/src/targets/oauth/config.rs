//! The `type: oauth` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::{OauthTarget, Settings};
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::ACCESS_TOKEN;
use crate::secret::Secret;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::upstream::{self, UpstreamSettings};

/// The longest `max_ttl` of an `oauth` target: the server decides a token's lifetime
/// (`expires_in`); `max_ttl` bounds what rules may ask and the audit log records.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// How the assertion is redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OauthGrant {
    /// RFC 7523 §2.1: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
    /// `assertion`.
    #[default]
    JwtBearer,
    /// RFC 8693 §2.1: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
    /// `subject_token` with `subject_token_type` `urn:ietf:params:oauth:token-type:jwt`.
    TokenExchange,
}

impl OauthGrant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JwtBearer => "jwt_bearer",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// An `oauth` target: one foreign authorization server's token endpoint.
///
/// ```yaml
/// - name: ledger-api
///   type: oauth
///   token_endpoint: https://tessera.b.example/v1/token
///   grant: jwt_bearer
///   audience: ledger-api
///   client_id: domain-a
///   client_secret: ${env:DOMAIN_B_CLIENT_SECRET}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The server's token endpoint: `https`, or `http` on loopback with `insecure_http`.
    /// Required.
    pub token_endpoint: String,
    /// `jwt_bearer` (RFC 7523) or `token_exchange` (RFC 8693). Default: `jwt_bearer`.
    #[serde(default)]
    pub grant: OauthGrant,
    /// The `aud` of the assertion: how the server names itself (RFC 7523 §3, item 3).
    /// Default: `token_endpoint`.
    #[serde(default)]
    pub assertion_audience: Option<String>,
    /// The `audience` parameter sent (RFC 8693 §2.1; another Tessera reads it as the
    /// target name); a rule's `audience` overrides it. Default: none sent.
    #[serde(default)]
    pub audience: Option<String>,
    /// The `resource` parameter sent (RFC 8707); a rule's `resource` overrides it.
    /// Default: none sent.
    #[serde(default)]
    pub resource: Option<String>,
    /// The `scope` sent when the rule grants none. Default: none sent.
    #[serde(default)]
    pub scope: Option<String>,
    /// The client id Tessera authenticates as, if the server asks for client
    /// authentication. With `client_secret`: HTTP Basic (RFC 6749 §2.3.1); without: sent
    /// as `client_id` in the body. Default: none.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client secret; write it as `${env:NAME}` or `${file:PATH}`, never inline.
    /// Requires `client_id`. Default: none.
    #[serde(default, deserialize_with = "secret")]
    pub client_secret: Option<Secret<String>>,
    /// The assertion's signing algorithm; the issuer must have keys for it. Default:
    /// `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// `timeout`, `max_attempts`, `insecure_http`, `cache`.
    #[serde(flatten)]
    pub upstream: UpstreamSettings,
    /// The longest lifetime a rule may grant. Default: `1h`; at most `24h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime recorded when a rule names none and used when the server's answer has
    /// no `expires_in`. Default: `1h`; at most `max_ttl`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub default_ttl: Duration,
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Secret<String>>, D::Error> {
    Option::<String>::deserialize(de).map(|v| v.map(Secret::new))
}

/// A value sent as a form parameter: printable, not empty.
pub(super) fn check_param(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 2048 || value.chars().any(char::is_control) {
        Err(format!("{what} must be 1 to 2048 printable characters"))
    } else {
        Ok(())
    }
}

impl BuildTarget for OauthTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// The assertion's.
    fn audiences(&self) -> Vec<String> {
        vec![self.assertion_audience.clone().unwrap_or_else(|| self.token_endpoint.clone())]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, ACCESS_TOKEN, &self.name, self.max_ttl, self.default_ttl)?;
        self.upstream.check(&self.name)?;
        let token_endpoint = self.upstream.endpoint("token_endpoint", &self.token_endpoint)?;
        let assertion_audience = self.assertion_audience.clone().unwrap_or_else(|| token_endpoint.clone());
        check_param("assertion_audience", &assertion_audience)
            .map_err(|e| BuildError::field("assertion_audience", e))?;
        for (field, value) in [
            ("audience", &self.audience),
            ("resource", &self.resource),
            ("scope", &self.scope),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret.as_ref().map(|s| s.expose().clone())),
        ] {
            if let Some(v) = value {
                check_param(field, v).map_err(|e| BuildError::field(field, e))?;
            }
        }
        if self.client_secret.is_some() && self.client_id.is_none() {
            return Err(BuildError::field("client_secret", "client_secret needs client_id"));
        }
        upstream::check_algorithm(cx, self.algorithm, &SigningAlgorithm::ALL, "an oauth target")?;
        upstream::check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        Ok(Arc::new(OauthTarget::new(
            Settings {
                base,
                token_endpoint,
                grant: self.grant,
                assertion_audience,
                audience: self.audience.clone(),
                resource: self.resource.clone(),
                scope: self.scope.clone(),
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                algorithm: self.algorithm,
                upstream: self.upstream.clone(),
            },
            cx.http.clone(),
            Arc::clone(&cx.signer),
            Arc::clone(&cx.clock),
        )))
    }
}
