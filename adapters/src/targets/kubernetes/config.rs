//! The `type: kubernetes` entry of `broker.yaml`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::KubernetesTarget;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::JWT;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::signed::LocalSigner;
use crate::targets::upstream::{check_algorithm, check_ttls};

/// The longest `max_ttl` of a `kubernetes` target: kubectl asks for a new token whenever
/// the last one expires, so a long one buys nothing but exposure.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(12 * 60 * 60);

/// The algorithms the Kubernetes API server verifies (its JWT authenticator takes the RS,
/// ES and PS families) that Tessera's issuer has keys for.
const KUBERNETES_ALGORITHMS: [SigningAlgorithm; 2] = [SigningAlgorithm::Es256, SigningAlgorithm::Rs256];

/// The largest `certificate_authority` file read.
const MAX_CA_BYTES: u64 = 256 * 1024;

/// A `kubernetes` target: one cluster (or several sharing an audience) that trusts
/// Tessera's issuer.
///
/// ```yaml
/// - name: k8s-prod
///   type: kubernetes
///   audience: https://k8s-prod.example.com
///   algorithm: ES256
///   max_ttl: 1h
///   default_ttl: 15m
///   username_prefix: "tessera:"
///   groups_prefix: "tessera:"
///   certificate_authority: tessera-ca.pem
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The `aud` of issued tokens, which the cluster's `issuer.audiences` lists. Default:
    /// the target name.
    #[serde(default)]
    pub audience: Option<String>,
    /// The signing algorithm: `ES256` or `RS256`; the issuer must have keys for it.
    /// Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// The longest lifetime of a token. Default: `1h`; at most `12h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none. Default: `15m`; at most `max_ttl`.
    #[serde(default = "minutes::<15>", with = "duration")]
    pub default_ttl: Duration,
    /// What the cluster puts before every username it takes from Tessera's tokens, so they
    /// cannot collide with its other users. Written into the claim mappings of the
    /// generated `AuthenticationConfiguration`. Default: `tessera:`.
    #[serde(default = "default_prefix")]
    pub username_prefix: String,
    /// What the cluster puts before every group it takes from Tessera's tokens. Default:
    /// `tessera:`.
    #[serde(default = "default_prefix")]
    pub groups_prefix: String,
    /// A PEM file of the CA certificates the cluster needs to verify the TLS certificate of
    /// `issuer.url` (a private CA), written as the `certificateAuthority` of the generated
    /// `AuthenticationConfiguration`. Relative to broker.yaml. Default: none (the API
    /// server uses the system's roots).
    #[serde(default)]
    pub certificate_authority: Option<PathBuf>,
}

fn default_prefix() -> String {
    "tessera:".to_owned()
}

/// A prefix goes into a CEL string literal: printable, no quote or backslash.
fn check_prefix(field: &'static str, prefix: &str) -> Result<(), BuildError> {
    if prefix.chars().any(|c| c.is_control() || matches!(c, '\'' | '"' | '\\')) {
        return Err(BuildError::field(field, "a prefix has no control characters, quotes or backslashes"));
    }
    if prefix.starts_with("system:") {
        return Err(BuildError::field(field, "`system:` names are Kubernetes' own; pick another prefix"));
    }
    Ok(())
}

impl KubernetesTargetConfig {
    /// The `aud` of issued tokens.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.name)
    }

    /// The PEM text of `certificate_authority`, checked to hold certificates, when set.
    pub fn read_certificate_authority(
        &self,
        base_dir: &std::path::Path,
    ) -> Result<Option<String>, BuildError> {
        let Some(path) = &self.certificate_authority else { return Ok(None) };
        let path = crate::config::resolve(base_dir, path);
        let field = "certificate_authority";
        let size = std::fs::metadata(&path)
            .map_err(|e| BuildError::field(field, format!("cannot read {}: {e}", path.display())))?
            .len();
        if size > MAX_CA_BYTES {
            return Err(BuildError::field(field, format!("{} is larger than 256 KiB", path.display())));
        }
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| BuildError::field(field, format!("cannot read {}: {e}", path.display())))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") || pem.contains("PRIVATE KEY-----") {
            return Err(BuildError::field(
                field,
                format!("{} must hold PEM certificates (and no private key)", path.display()),
            ));
        }
        Ok(Some(pem))
    }
}

impl BuildTarget for KubernetesTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn audiences(&self) -> Vec<String> {
        vec![self.audience().to_owned()]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, JWT, &self.name, self.max_ttl, self.default_ttl)?;
        let audience = self.audience();
        if audience.trim().is_empty() || audience.chars().any(char::is_control) {
            return Err(BuildError::field("audience", "the audience must be printable text, not empty"));
        }
        check_algorithm(cx, self.algorithm, &KUBERNETES_ALGORITHMS, "Tessera's Kubernetes target")?;
        check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        check_prefix("username_prefix", &self.username_prefix)?;
        check_prefix("groups_prefix", &self.groups_prefix)?;
        self.read_certificate_authority(&cx.base_dir)?;
        Ok(Arc::new(KubernetesTarget {
            base,
            audience: audience.to_owned(),
            algorithm: self.algorithm,
            local: LocalSigner { signer: Arc::clone(&cx.signer), clock: Arc::clone(&cx.clock) },
        }))
    }
}
