//! The `spiffe` source's config: one entry under `sources:` in `broker.yaml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::JWT_SVID_ALGORITHMS;
use super::verify::{SpiffeClaims, SpiffeSource};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{HeaderRule, IssuerRule, JwksLocation, JwtSource, JwtSourceSettings, KeyUse, KindRules};
use crate::source::IdentitySource;
use crate::spiffe_id::valid_trust_domain;

/// JWT-SVIDs of allow-listed trust domains, each verified with its own trust bundle.
///
/// ```yaml
/// - name: spire
///   type: spiffe
///   audiences: [tessera]
///   trust_domains:
///     example.org: { bundle_endpoint: https://spire.example.org/bundle }
///     partner.example: { bundle_file: /etc/tessera/partner.example.bundle.json }
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`] but `jwks_uri` and
/// `jwks_file`, which go under a trust domain; `algorithms` defaults to and is limited to
/// JWT-SVID §2.1's (RS256/384/512, ES256/384, PS256/384/512; ES512 is not supported),
/// `max_token_lifetime` defaults to `1h`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The `iss` the trust domains' JWT-SVIDs carry, if their server sets one (SPIRE:
    /// `jwt_issuer`). Default: none; then tokens must carry no `iss`, and the broker
    /// routes to this source the JWTs whose `iss` no other source names.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// The trust domains whose workloads are trusted (`example.org`, or
    /// `spiffe://example.org`), each with the keys that verify its JWT-SVIDs: a key of one
    /// domain never verifies a token whose `sub` is in another. Required, non-empty.
    pub trust_domains: TrustDomains,
    /// Only beside a one-domain list (`trust_domains: [example.org]`, the earlier form):
    /// that domain's bundle endpoint. Default: none.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// Only beside a one-domain list: that domain's bundle file. Default: none.
    #[serde(default)]
    pub bundle_file: Option<PathBuf>,
}

/// `trust_domains:` as written.
#[derive(Debug, Clone, PartialEq)]
pub enum TrustDomains {
    /// `{example.org: {bundle_endpoint: ...}, ...}`: each domain with its own keys.
    Bound(BTreeMap<String, TrustBundle>),
    /// `[example.org]`, the earlier form, whose keys are named beside it. Read for one
    /// domain only: a list of several would verify them all with one key set.
    Listed(Vec<String>),
}

/// Where one trust domain's keys are: exactly one of the four.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundle {
    /// A SPIFFE bundle endpoint (Trust Domain and Bundle §5, `https_web` profile): its
    /// `use: jwt-svid` keys verify tokens.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// A SPIFFE bundle file, read when the source is built, never refreshed.
    #[serde(default)]
    pub bundle_file: Option<PathBuf>,
    /// A plain JWKS URL: its `use: sig` keys (or keys without `use`) verify tokens.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A plain JWKS file, read when the source is built, never refreshed.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for TrustDomains {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = TrustDomains;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a map of trust domains to their bundles (`example.org: { bundle_endpoint: ... }`)",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TrustDomains, A::Error> {
                let mut domains = BTreeMap::new();
                while let Some((domain, bundle)) = map.next_entry::<String, TrustBundle>()? {
                    if domains.insert(domain.clone(), bundle).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "trust domain `{domain}` is named twice"
                        )));
                    }
                }
                Ok(TrustDomains::Bound(domains))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TrustDomains, A::Error> {
                let mut domains = Vec::new();
                while let Some(domain) = seq.next_element::<String>()? {
                    domains.push(domain);
                }
                Ok(TrustDomains::Listed(domains))
            }
        }
        de.deserialize_any(Either)
    }
}

/// SPIRE's JWT-SVIDs live five minutes by default; an hour leaves room.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// A trust domain's name, checked, and where its keys are.
struct Binding {
    domain: String,
    location: JwksLocation,
    key_use: KeyUse,
    /// How an error about the location is reported: the config key it names (the key
    /// cache says `jwks_uri` or `jwks_file`), and what its message starts with.
    field: Option<&'static str>,
    context: String,
}

impl TrustBundle {
    /// The one key location named, and which keys of it verify JWT-SVIDs; or the key at
    /// fault and why.
    fn location(&self, cx: &BuildContext) -> Result<(JwksLocation, KeyUse), (&'static str, &'static str)> {
        let bundle = self.bundle_endpoint.is_some() || self.bundle_file.is_some();
        let jwks = self.jwks_uri.is_some() || self.jwks_file.is_some();
        match (&self.bundle_endpoint, &self.bundle_file, &self.jwks_uri, &self.jwks_file) {
            (Some(_), Some(_), ..) => Err(("bundle_file", "bundle_endpoint and bundle_file are exclusive")),
            _ if bundle && jwks => Err((
                "bundle_endpoint",
                "name one key location: a bundle (bundle_endpoint, bundle_file) or a JWKS (jwks_uri, jwks_file)",
            )),
            (.., Some(_), Some(_)) => {
                Err(("jwks_file", "jwks_uri and jwks_file are exclusive: name at most one"))
            }
            (Some(url), ..) => Ok((JwksLocation::Uri(url.clone()), KeyUse::JwtSvid)),
            (_, Some(path), ..) => Ok((JwksLocation::File(cx.resolve(path)), KeyUse::JwtSvid)),
            (.., Some(url), _) => Ok((JwksLocation::Uri(url.clone()), KeyUse::Sig)),
            (.., Some(path)) => Ok((JwksLocation::File(cx.resolve(path)), KeyUse::Sig)),
            (None, None, None, None) => Err((
                "bundle_endpoint",
                "name where the trust bundle is: bundle_endpoint, bundle_file, jwks_uri or jwks_file",
            )),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl SpiffeSourceConfig {
    /// The key location written at the top level, beside a listed trust domain.
    fn top_level_bundle(&self) -> TrustBundle {
        TrustBundle {
            bundle_endpoint: self.bundle_endpoint.clone(),
            bundle_file: self.bundle_file.clone(),
            jwks_uri: self.jwt.jwks_uri.clone(),
            jwks_file: self.jwt.jwks_file.clone(),
        }
    }

    /// Each trust domain with its keys.
    fn bindings(&self, cx: &BuildContext) -> Result<Vec<Binding>, BuildError> {
        let top = self.top_level_bundle();
        match &self.trust_domains {
            TrustDomains::Listed(domains) => {
                let [domain] = domains.as_slice() else {
                    return Err(BuildError::field("trust_domains", listed_domains_error(domains, &top)));
                };
                let domain = trust_domain(domain)?;
                let (location, key_use) = top.location(cx).map_err(|(f, m)| BuildError::field(f, m))?;
                // Written as a bundle, the location is reported as one.
                let field = match (&top.bundle_endpoint, &top.bundle_file) {
                    (Some(_), _) => Some("bundle_endpoint"),
                    (None, Some(_)) => Some("bundle_file"),
                    (None, None) => None,
                };
                Ok(vec![Binding { domain, location, key_use, field, context: String::new() }])
            }
            TrustDomains::Bound(domains) => {
                if domains.is_empty() {
                    return Err(BuildError::field(
                        "trust_domains",
                        "name at least one trust domain to trust",
                    ));
                }
                if !top.is_empty() {
                    return Err(BuildError::field(
                        "trust_domains",
                        "with trust_domains as a map, name each domain's keys under it \
                         (`example.org: { bundle_endpoint: ... }`), not beside it",
                    ));
                }
                let mut seen = BTreeMap::new();
                domains
                    .iter()
                    .map(|(text, bundle)| {
                        let domain = trust_domain(text)?;
                        if let Some(earlier) = seen.insert(domain.clone(), text) {
                            return Err(BuildError::field(
                                "trust_domains",
                                format!("`{earlier}` and `{text}` name the same trust domain"),
                            ));
                        }
                        let context = format!("trust domain `{domain}`: ");
                        let (location, key_use) = bundle
                            .location(cx)
                            .map_err(|(_, m)| BuildError::field("trust_domains", format!("{context}{m}")))?;
                        Ok(Binding { domain, location, key_use, field: Some("trust_domains"), context })
                    })
                    .collect()
            }
        }
    }
}

/// Why a list of trust domains other than exactly one is refused, with the map that says
/// the same safely.
fn listed_domains_error(domains: &[String], top: &TrustBundle) -> String {
    if domains.is_empty() {
        return "name at least one trust domain to trust".into();
    }
    let written = match (&top.bundle_endpoint, &top.bundle_file, &top.jwks_uri, &top.jwks_file) {
        (Some(url), ..) => format!("bundle_endpoint: {url}"),
        (None, Some(path), ..) => format!("bundle_file: {}", path.display()),
        (None, None, Some(url), _) => format!("jwks_uri: {url}"),
        (None, None, None, Some(path)) => format!("jwks_file: {}", path.display()),
        (None, None, None, None) => "bundle_endpoint: ...".into(),
    };
    let mut example = String::new();
    for (i, domain) in domains.iter().enumerate() {
        let domain = domain.strip_prefix("spiffe://").unwrap_or(domain);
        let keys =
            if i == 0 { written.clone() } else { format!("bundle_endpoint: <{domain}'s bundle endpoint>") };
        example.push_str(&format!("\n    {domain}: {{ {keys} }}"));
    }
    format!(
        "{} trust domains listed with one key set, so a key of any of them would verify the others' \
         workloads; give each domain its own bundle:\n  trust_domains:{example}",
        domains.len()
    )
}

/// A trust domain as written (`example.org` or `spiffe://example.org`), checked.
fn trust_domain(text: &str) -> Result<String, BuildError> {
    let name = text.strip_prefix("spiffe://").unwrap_or(text);
    if !valid_trust_domain(name) {
        return Err(BuildError::field(
            "trust_domains",
            format!("`{text}` is not a trust domain name (lower-case letters, digits, '.', '-', '_')"),
        ));
    }
    Ok(name.to_owned())
}

impl BuildSource for SpiffeSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// the SPIFFE ID.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal("spiffe://").field("tenant").field("name"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        let bindings = self.bindings(cx)?;
        let issuer = match &self.issuer {
            Some(issuer) => IssuerRule::OneOf(vec![issuer.clone()]),
            None => IssuerRule::Absent,
        };
        // The locations are the bindings'; the shared settings keep the rest.
        let settings = JwtSourceSettings { jwks_uri: None, jwks_file: None, ..self.jwt.clone() };
        let several = bindings.len() > 1;
        let mut domains = BTreeMap::new();
        for Binding { domain, location, key_use, field, context } in bindings {
            // One domain's key set is named after the source, as any source's; several
            // are told apart in logs and metrics as `source/domain`.
            let name = if several { format!("{}/{domain}", self.name) } else { self.name.clone() };
            let rules = KindRules {
                name: &name,
                issuer: issuer.clone(),
                headers: HeaderRule::JwtSvid,
                default_keys: Some(location),
                key_use,
                default_algorithms: &JWT_SVID_ALGORITHMS,
                allowed_algorithms: Some(&JWT_SVID_ALGORITHMS),
                default_max_lifetime: DEFAULT_MAX_LIFETIME,
            };
            let verifier = settings.verifier(rules, cx).map_err(|mut e| {
                if matches!(e.field, Some("jwks_uri" | "jwks_file")) {
                    e.field = field.or(e.field);
                    e.message = format!("{context}{}", e.message);
                }
                e
            })?;
            let mapper = SpiffeClaims { trust_domain: domain.clone() };
            let source = JwtSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper);
            // A JWT-SVID is a JWT, not an OIDC ID token.
            domains.insert(domain, source.jwt_only());
        }
        Ok(Arc::new(SpiffeSource::new(self.name.clone(), domains)))
    }
}
