//! The `spiffe` source's config: one entry under `sources:` in `broker.yaml`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::id::valid_trust_domain;
use super::verify::SpiffeClaims;
use super::{JWT_SVID_ALGORITHMS, SpiffeSource};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::jwt::{HeaderRule, IssuerRule, JwksLocation, JwtSourceSettings, KeyUse, KindRules};
use crate::source::IdentitySource;

/// JWT-SVIDs of allow-listed trust domains.
///
/// ```yaml
/// - name: spire
///   type: spiffe
///   trust_domains: [example.org]
///   audiences: [tessera]
///   bundle_endpoint: https://spire.example.org/bundle
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// and is limited to JWT-SVID §2.1's (RS256/384/512, ES256/384, PS256/384/512; ES512 is
/// not supported), `max_token_lifetime` defaults to `1h`. Exactly one of
/// `bundle_endpoint`, `bundle_file`, `jwks_uri`, `jwks_file` says where the keys are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The `iss` the trust domain's JWT-SVIDs carry, if its server sets one (SPIRE:
    /// `jwt_issuer`). Default: none; then tokens must carry no `iss`, and the broker
    /// routes to this source the JWTs whose `iss` no other source names.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Trust domains whose workloads are trusted (`example.org`, or
    /// `spiffe://example.org`). Required, non-empty. Every listed domain is verified
    /// with this source's one key set.
    pub trust_domains: Vec<String>,
    /// A SPIFFE bundle endpoint (Trust Domain and Bundle §5, `https_web` profile): its
    /// `use: jwt-svid` keys verify tokens. Default: none.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// A SPIFFE bundle file, read when the source is built, never refreshed. Default:
    /// none.
    #[serde(default)]
    pub bundle_file: Option<PathBuf>,
}

/// SPIRE's JWT-SVIDs live five minutes by default; an hour leaves room.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

impl SpiffeSourceConfig {
    fn bundle_location(&self, cx: &BuildContext) -> Result<Option<JwksLocation>, BuildError> {
        let jwks = self.jwt.jwks_uri.is_some() || self.jwt.jwks_file.is_some();
        match (&self.bundle_endpoint, &self.bundle_file) {
            (Some(_), Some(_)) => {
                Err(BuildError::field("bundle_file", "bundle_endpoint and bundle_file are exclusive"))
            }
            (Some(_), None) | (None, Some(_)) if jwks => Err(BuildError::field(
                "bundle_endpoint",
                "name one key location: a bundle (bundle_endpoint, bundle_file) or a JWKS (jwks_uri, jwks_file)",
            )),
            (Some(url), None) => Ok(Some(JwksLocation::Uri(url.clone()))),
            (None, Some(path)) => Ok(Some(JwksLocation::File(cx.resolve(path)))),
            (None, None) if jwks => Ok(None),
            (None, None) => Err(BuildError::field(
                "bundle_endpoint",
                "name where the trust bundle is: bundle_endpoint, bundle_file, jwks_uri or jwks_file",
            )),
        }
    }
}

impl BuildSource for SpiffeSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        if self.trust_domains.is_empty() {
            return Err(BuildError::field("trust_domains", "name at least one trust domain to trust"));
        }
        let mut trust_domains = Vec::new();
        for text in &self.trust_domains {
            let name = text.strip_prefix("spiffe://").unwrap_or(text);
            if !valid_trust_domain(name) {
                return Err(BuildError::field(
                    "trust_domains",
                    format!(
                        "`{text}` is not a trust domain name (lower-case letters, digits, '.', '-', '_')"
                    ),
                ));
            }
            trust_domains.push(name.to_owned());
        }
        let bundle = self.bundle_location(cx)?;
        let key_use = if bundle.is_some() { KeyUse::JwtSvid } else { KeyUse::Sig };
        let issuer = match &self.issuer {
            Some(issuer) => IssuerRule::OneOf(vec![issuer.clone()]),
            None => IssuerRule::Absent,
        };
        let rules = KindRules {
            name: &self.name,
            issuer,
            headers: HeaderRule::JwtSvid,
            default_keys: bundle,
            key_use,
            default_algorithms: &JWT_SVID_ALGORITHMS,
            allowed_algorithms: Some(&JWT_SVID_ALGORITHMS),
            default_max_lifetime: DEFAULT_MAX_LIFETIME,
        };
        let from_bundle = self.bundle_endpoint.is_some() || self.bundle_file.is_some();
        let verifier = self.jwt.verifier(rules, cx).map_err(|mut e| {
            // The key cache names the JWKS keys; here the location was a bundle key.
            match e.field {
                Some("jwks_uri") if from_bundle => e.field = Some("bundle_endpoint"),
                Some("jwks_file") if from_bundle => e.field = Some("bundle_file"),
                _ => {}
            }
            e
        })?;
        let mapper = SpiffeClaims { trust_domains };
        let source = SpiffeSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper);
        // A JWT-SVID is a JWT, not an OIDC ID token.
        Ok(Arc::new(source.jwt_only()))
    }
}
