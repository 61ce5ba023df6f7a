//! The `type: azure` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::{AzureTarget, Settings, check_client_id, check_scope, check_tenant};
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::ACCESS_TOKEN;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, minutes};
use crate::targets::upstream::{self, UpstreamSettings};

/// Entra ID's global authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The audience Entra recommends for federated identity credentials (the value the
/// Azure portal fills in).
pub const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Entra access tokens live 60 to 90 minutes and Tessera cannot ask for less; `max_ttl`
/// bounds what rules may ask, and so what the audit log says was granted.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(2 * 60 * 60);

/// An `azure` target: an Entra access token for an application that trusts Tessera
/// through a federated identity credential.
///
/// ```yaml
/// - name: graph
///   type: azure
///   tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
///   client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
///   scope: https://graph.microsoft.com/.default
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The directory (tenant) id or a verified domain; a rule's `tenant` overrides it.
    /// Default: none, so every rule must name one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The application (client) id holding the federated credential; a rule's
    /// `client_id` overrides it. Default: none, so every rule must name one.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The Entra scope requested when the rule grants none (`<resource>/.default`).
    /// Default: none, so every rule must grant a `scope`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The `aud` of the assertion; the federated credential's audience must equal it.
    /// Default: `api://AzureADTokenExchange`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Default: `https://login.microsoftonline.com`. Sovereign clouds use their own
    /// (`https://login.microsoftonline.us`); tests point it at a local server.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// `timeout`, `max_attempts`, `insecure_http`, `cache`.
    #[serde(flatten)]
    pub upstream: UpstreamSettings,
    /// The longest lifetime a rule may grant. Default: `1h`; at most `2h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime recorded when a rule names none. Default: `1h`; at most `max_ttl`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub default_ttl: Duration,
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.to_string()
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.to_string()
}

impl BuildTarget for AzureTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// The client assertion's.
    fn audiences(&self) -> Vec<String> {
        vec![self.audience.clone()]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, ACCESS_TOKEN, &self.name, self.max_ttl, self.default_ttl)?;
        if let Some(t) = &self.tenant {
            check_tenant(t).map_err(|e| BuildError::field("tenant", e))?;
        }
        if let Some(c) = &self.client_id {
            check_client_id(c).map_err(|e| BuildError::field("client_id", e))?;
        }
        if let Some(s) = &self.scope {
            check_scope(s).map_err(|e| BuildError::field("scope", e))?;
        }
        if self.audience.trim().is_empty() {
            return Err(BuildError::field("audience", "audience must not be empty"));
        }
        // Entra verifies client assertions signed with RS256 ("Assertion format").
        upstream::check_algorithm(cx, SigningAlgorithm::Rs256, &[SigningAlgorithm::Rs256], "Entra")?;
        self.upstream.check(&self.name)?;
        let authority = self.upstream.endpoint("authority", &self.authority)?;
        upstream::check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        Ok(Arc::new(AzureTarget::new(
            Settings {
                base,
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
                scope: self.scope.clone(),
                audience: self.audience.clone(),
                authority,
                upstream: self.upstream.clone(),
            },
            cx.http.clone(),
            Arc::clone(&cx.signer),
            Arc::clone(&cx.clock),
        )))
    }
}
