//! Verified projected service-account token claims to the normalized identity.
//!
//! A projected token (Kubernetes docs, "Service account token volume projection";
//! KEP-1205 "Bound service account tokens") carries:
//!
//! ```json
//! { "iss": "https://oidc.example", "sub": "system:serviceaccount:payments:api",
//!   "aud": ["tessera"], "exp": 1700003600, "iat": 1700000000, "nbf": 1700000000,
//!   "kubernetes.io": {
//!     "namespace": "payments",
//!     "serviceaccount": { "name": "api", "uid": "..." },
//!     "pod": { "name": "api-7d9f8-x2x4z", "uid": "..." },
//!     "node": { "name": "ip-10-0-1-23", "uid": "..." } } }
//! ```
//!
//! `pod` is present when the token is bound to a pod (every kubelet-projected token),
//! `node` from Kubernetes 1.30 on. Legacy Secret-based tokens instead carry flat
//! `kubernetes.io/serviceaccount/*` claims, `iss: kubernetes/serviceaccount`, and no
//! `exp` or `aud`.

use serde_json::{Map, Value};

use super::KIND;
use crate::identity::Identity;
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The `iss` of legacy Secret-based service-account tokens.
pub(super) const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// What a `kubernetes` source knows beside the claims.
#[derive(Debug, Clone)]
pub struct KubernetesClaims {
    pub(super) cluster: String,
    pub(super) region: Option<String>,
    pub(super) issuer: String,
    pub(super) api_server_audiences: Vec<String>,
    pub(super) allow_api_server_audience: bool,
}

/// Whether the API server of this cluster accepts `aud`: the issuer (the default of
/// `--api-audiences`), the in-cluster service name in any of its spellings, or a
/// configured extra audience.
pub(super) fn is_api_server_audience(k: &KubernetesClaims, aud: &str) -> bool {
    if aud.trim_end_matches('/') == k.issuer.trim_end_matches('/')
        || k.api_server_audiences.iter().any(|a| a == aud)
    {
        return true;
    }
    let host = aud.strip_prefix("https://").unwrap_or(aud).trim_end_matches('/');
    matches!(host, "kubernetes" | "kubernetes.default" | "kubernetes.default.svc")
        || host.starts_with("kubernetes.default.svc.")
}

impl ClaimsMapper for KubernetesClaims {
    const KIND: &'static str = KIND;

    /// The subject is `system:serviceaccount:{namespace}:{service account}`.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let (namespace, account) = identity
            .subject
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
            .map(|(ns, sa)| (ns.to_owned(), sa.to_owned()))
            .ok_or("a Kubernetes subject is `system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT`")?;
        identity.id = format!("k8s://{}/ns/{namespace}/sa/{account}", identity.source);
        identity.tenant = Some(self.cluster.clone());
        identity.namespace = Some(namespace);
        identity.name = Some(account);
        identity.region = self.region.clone();
        Ok(identity)
    }

    /// `id = k8s://{source}/ns/{namespace}/sa/{service account}`.
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        if claims.claims().keys().any(|k| k.starts_with("kubernetes.io/serviceaccount/")) {
            return Err(SourceError::Policy("legacy Secret-based service-account tokens are refused".into()));
        }
        if !self.allow_api_server_audience
            && claims.audiences().iter().any(|a| is_api_server_audience(self, a))
        {
            return Err(SourceError::Policy(
                "token is also valid for the Kubernetes API server; request one for Tessera's audience only"
                    .into(),
            ));
        }
        let k8s = match claims.claims().get("kubernetes.io") {
            Some(Value::Object(k8s)) => k8s,
            Some(_) => return Err(SourceError::InvalidClaim("kubernetes.io")),
            None => return Err(SourceError::MissingClaim("kubernetes.io")),
        };
        let namespace = required(k8s.get("namespace"), "kubernetes.io.namespace")?;
        let sa = object(k8s, "serviceaccount")?
            .ok_or(SourceError::MissingClaim("kubernetes.io.serviceaccount"))?;
        let sa_name = required(sa.get("name"), "kubernetes.io.serviceaccount.name")?;
        let sa_uid = required(sa.get("uid"), "kubernetes.io.serviceaccount.uid")?;
        // The subject the API server derives from the same service account; a mismatch
        // means the claims do not describe one workload.
        let subject = claims.required_str("sub")?;
        if subject != format!("system:serviceaccount:{namespace}:{sa_name}") {
            return Err(SourceError::InvalidClaim("sub"));
        }
        let id = format!("k8s://{source}/ns/{namespace}/sa/{sa_name}");
        let mut identity = identity_base(KIND, source, claims, id, subject.to_owned());
        identity.tenant = Some(self.cluster.clone());
        identity.namespace = Some(namespace.to_owned());
        identity.name = Some(sa_name.to_owned());
        identity.region = self.region.clone();
        let attrs = &mut identity.attributes;
        attrs.insert("k8s.namespace".into(), namespace.to_owned());
        attrs.insert("k8s.service_account".into(), sa_name.to_owned());
        attrs.insert("k8s.service_account_uid".into(), sa_uid.to_owned());
        for (member, prefix) in [("pod", "k8s.pod"), ("node", "k8s.node")] {
            let Some(bound) = object(k8s, member)? else { continue };
            if let Some(Value::String(name)) = bound.get("name") {
                attrs.insert(prefix.to_owned(), name.clone());
            }
            if let Some(Value::String(uid)) = bound.get("uid") {
                attrs.insert(format!("{prefix}_uid"), uid.clone());
            }
        }
        identity.instance = identity.attributes.get("k8s.pod").cloned();
        Ok(identity)
    }
}

fn required<'a>(value: Option<&'a Value>, name: &'static str) -> Result<&'a str, SourceError> {
    match value {
        None | Some(Value::Null) => Err(SourceError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(SourceError::InvalidClaim(name)),
    }
}

fn object<'a>(
    k8s: &'a Map<String, Value>,
    member: &'static str,
) -> Result<Option<&'a Map<String, Value>>, SourceError> {
    match k8s.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(SourceError::InvalidClaim("kubernetes.io")),
    }
}
