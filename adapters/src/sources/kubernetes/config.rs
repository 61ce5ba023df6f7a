//! The `kubernetes` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;

use serde::Deserialize;

use super::KubernetesSource;
use super::verify::{KubernetesClaims, LEGACY_ISSUER, is_api_server_audience};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// One cluster's projected service-account tokens.
///
/// ```yaml
/// - name: eks-prod
///   type: kubernetes
///   issuer: https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE
///   audiences: [tessera]
///   region: eu-west-1
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256, ES256]`, `max_token_lifetime` to `24h`, keys to OIDC discovery under `issuer`
/// (or `jwks_uri`, e.g. `https://<api server>/openid/v1/jwks`, or `jwks_file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The cluster's service-account issuer (`--service-account-issuer`), exactly as
    /// tokens carry it. Required. `kubernetes/serviceaccount`, the issuer of legacy
    /// Secret-based tokens, is refused.
    pub issuer: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// The identity's `tenant`. Default: the source's name.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The identity's `region` (tokens do not say where the cluster runs). Default: none.
    #[serde(default)]
    pub region: Option<String>,
    /// Further audiences the cluster's API server accepts (`--api-audiences`), beside the
    /// issuer and `https://kubernetes.default.svc[.<domain>]`, which are always treated
    /// as the API server's. Default: none.
    #[serde(default)]
    pub api_server_audiences: Vec<String>,
    /// Accept tokens that are also valid for the API server. Every pod may hold such a
    /// token (the default mounted one), and a token accepted here could be replayed to
    /// the API server; so by default `audiences` may not name an API server audience and
    /// tokens carrying one are refused. Default `false`.
    #[serde(default)]
    pub allow_api_server_audience: bool,
}

impl BuildSource for KubernetesSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `k8s://{source}/ns/{namespace}/sa/{name}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(
            IdShape::literal(format!("k8s://{}/ns/", self.name))
                .field("namespace")
                .then("/sa/")
                .field("name"),
        )
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        if self.issuer == LEGACY_ISSUER {
            return Err(BuildError::field(
                "issuer",
                "`kubernetes/serviceaccount` is the issuer of legacy Secret-based tokens, which never \
                 expire and are refused: use the cluster's --service-account-issuer",
            ));
        }
        for (field, value) in [("cluster", &self.cluster), ("region", &self.region)] {
            if value.as_deref() == Some("") {
                return Err(BuildError::field(
                    field,
                    format!("{field} must not be empty; leave it out instead"),
                ));
            }
        }
        let mapper = KubernetesClaims {
            cluster: self.cluster.clone().unwrap_or_else(|| self.name.clone()),
            region: self.region.clone(),
            issuer: self.issuer.clone(),
            api_server_audiences: self.api_server_audiences.clone(),
            allow_api_server_audience: self.allow_api_server_audience,
        };
        if !self.allow_api_server_audience
            && let Some(aud) = self.jwt.audiences.iter().find(|a| is_api_server_audience(&mapper, a))
        {
            return Err(BuildError::field(
                "audiences",
                format!(
                    "`{aud}` is an audience of the Kubernetes API server: tokens for it are held by every \
                     pod and could be replayed there; use an audience of Tessera's own (or set \
                     allow_api_server_audience: true)"
                ),
            ));
        }
        let rules = KindRules::discovery(
            &self.name,
            vec![self.issuer.clone()],
            self.issuer.clone(),
            &Algorithm::DEFAULT,
            crate::jwt::policy::DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(KubernetesSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper)))
    }
}
