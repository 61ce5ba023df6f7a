//! The normalized identity: one schema for every platform (DESIGN.md "The normalized
//! identity"). Mapping rules, templates, audit records and issued tokens read only this.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A workload identity, normalized. Optional fields are `None` where the platform has no
/// such notion. `attributes` holds further verified claims, flattened to strings and
/// namespaced by provider (`github.ref`, `k8s.pod_uid`, `oidc.email`); `withheld` names
/// the claims kept out of `attributes` for being over the attribute limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Canonical URI, stable and unique per workload (`oidc://corp-idp/svc-42`).
    pub id: String,
    /// The adapter kind that verified it (`oidc`, `kubernetes`, ...).
    pub provider: String,
    /// The configured source's name.
    pub source: String,
    /// Who vouched for it: the token's verified `iss`.
    pub issuer: String,
    /// The platform's stable subject.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Attribute keys whose values were withheld for being over the attribute limits
    /// (`jwt::attributes`: a value or key over `MAX_ATTRIBUTE_BYTES`, or an attribute past
    /// `MAX_ATTRIBUTES`). The token has the claim; its value reaches no rule, audit record
    /// or log. A rule that looks at a withheld key cannot be decided for this identity:
    /// a deny rule applies, an allow rule does not.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub withheld: BTreeSet<String>,
    /// When the presented credential expires, seconds since the Unix epoch.
    #[serde(default)]
    pub expires_at: i64,
}

/// The identity fields a mapping rule can match on or a template can name, other than
/// `attributes.<key>`.
pub const FIELDS: &[&str] =
    &["id", "provider", "source", "issuer", "subject", "tenant", "namespace", "name", "instance", "region"];

/// How a source kind builds the `id` of the identities it verifies, from literal text and
/// identity fields (`k8s://eks-prod/ns/{namespace}/sa/{name}`). `tessera trust` reads it
/// to write the `sub` conditions a cloud checks on Tessera's tokens, whose `sub` is the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdShape(Vec<IdPart>);

/// One piece of an [`IdShape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPart {
    Literal(String),
    /// A field by its [`Identity::field`] name.
    Field(&'static str),
}

impl IdShape {
    /// A shape starting with literal text.
    pub fn literal(text: impl Into<String>) -> Self {
        Self(vec![IdPart::Literal(text.into())])
    }

    /// Followed by the value of field `name`.
    #[must_use]
    pub fn field(mut self, name: &'static str) -> Self {
        self.0.push(IdPart::Field(name));
        self
    }

    /// Followed by literal text.
    #[must_use]
    pub fn then(mut self, text: impl Into<String>) -> Self {
        self.0.push(IdPart::Literal(text.into()));
        self
    }

    pub fn parts(&self) -> &[IdPart] {
        &self.0
    }

    /// The id of `identity` by this shape; `None` when a field has no value. Tests hold
    /// each source's shape to the ids it really makes.
    pub fn render(&self, identity: &Identity) -> Option<String> {
        self.0.iter().try_fold(String::new(), |mut out, part| {
            match part {
                IdPart::Literal(text) => out.push_str(text),
                IdPart::Field(name) => out.push_str(identity.field(name)?),
            }
            Some(out)
        })
    }
}

impl Identity {
    /// The value of a field by name: one of [`FIELDS`], or `attributes.<key>`.
    /// `None` when the field is unknown or has no value for this identity.
    pub fn field(&self, name: &str) -> Option<&str> {
        if let Some(key) = name.strip_prefix("attributes.") {
            return self.attributes.get(key).map(String::as_str);
        }
        match name {
            "id" => Some(&self.id),
            "provider" => Some(&self.provider),
            "source" => Some(&self.source),
            "issuer" => Some(&self.issuer),
            "subject" => Some(&self.subject),
            "tenant" => self.tenant.as_deref(),
            "namespace" => self.namespace.as_deref(),
            "name" => self.name.as_deref(),
            "instance" => self.instance.as_deref(),
            "region" => self.region.as_deref(),
            _ => None,
        }
    }

    /// Whether `name` is `attributes.<key>` for a key whose value was withheld, so that
    /// [`Identity::field`] has no value for it although the token had one.
    pub fn is_withheld(&self, name: &str) -> bool {
        name.strip_prefix("attributes.").is_some_and(|key| self.withheld.contains(key))
    }

    /// Whether `name` is a field [`Identity::field`] knows.
    pub fn is_field(name: &str) -> bool {
        name.strip_prefix("attributes.").is_some_and(|k| !k.is_empty()) || FIELDS.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lookup_covers_every_named_field_and_attributes() {
        let mut attributes = BTreeMap::new();
        attributes.insert("oidc.email".to_string(), "a@example.com".to_string());
        let id = Identity {
            id: "oidc://s/x".into(),
            provider: "oidc".into(),
            source: "s".into(),
            issuer: "https://issuer".into(),
            subject: "x".into(),
            tenant: Some("t".into()),
            namespace: None,
            name: Some("n".into()),
            instance: None,
            region: None,
            attributes,
            withheld: BTreeSet::from(["oidc.groups".to_string()]),
            expires_at: 0,
        };
        assert_eq!(id.field("tenant"), Some("t"));
        assert_eq!(id.field("namespace"), None);
        assert_eq!(id.field("attributes.oidc.email"), Some("a@example.com"));
        assert_eq!(id.field("attributes.missing"), None);
        // A withheld attribute has no value, and is known to be withheld.
        assert_eq!(id.field("attributes.oidc.groups"), None);
        assert!(id.is_withheld("attributes.oidc.groups"));
        assert!(!id.is_withheld("attributes.oidc.email"));
        assert!(!id.is_withheld("attributes.missing"));
        assert!(!id.is_withheld("oidc.groups"));
        assert_eq!(id.field("bogus"), None);
        for f in FIELDS {
            assert!(Identity::is_field(f));
        }
        assert!(Identity::is_field("attributes.x"));
        assert!(!Identity::is_field("attributes."));
        assert!(!Identity::is_field("bogus"));

        // Withheld keys are written only when there are some, and read back.
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(json["withheld"], serde_json::json!(["oidc.groups"]));
        assert_eq!(serde_json::from_value::<Identity>(json).unwrap(), id);
        let none = Identity { withheld: BTreeSet::new(), ..id };
        assert!(serde_json::to_value(&none).unwrap().get("withheld").is_none());
    }
}
