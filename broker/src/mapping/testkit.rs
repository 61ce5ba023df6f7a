//! Identities shared by the mapping module's unit tests.

use std::collections::BTreeMap;

use tessera_adapters::Identity;

/// A Kubernetes service account `payments/api` of the `eks-prod` source, with one
/// attribute, expiring at 2027-01-15T08:10:00Z.
pub(crate) fn eks_api() -> Identity {
    Identity {
        id: "k8s://eks-prod/ns/payments/sa/api".into(),
        provider: "kubernetes".into(),
        source: "eks-prod".into(),
        issuer: "https://oidc.eks".into(),
        subject: "system:serviceaccount:payments:api".into(),
        tenant: None,
        namespace: Some("payments".into()),
        name: Some("api".into()),
        instance: None,
        region: None,
        attributes: BTreeMap::from([("k8s.pod_name".to_string(), "api-7d".to_string())]),
        withheld: Default::default(),
        expires_at: 1_800_000_600,
    }
}
