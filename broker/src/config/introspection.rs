//! `introspection:` in `broker.yaml`: who may call RFC 7662 token introspection
//! (`POST /v1/introspect`) on the public listener.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::BrokerConfig;

/// ```yaml
/// introspection:
///   clients: [introspect]   # `jwt` targets whose tokens authenticate relying services
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The `jwt` targets whose issued tokens authenticate introspection clients: a relying
    /// service obtains a token for one of them (by a mapping rule, like any workload) and
    /// presents it as `Authorization: Bearer` or as an RFC 7523 `client_assertion`. At least
    /// one; no default.
    pub clients: Spanned<Vec<Spanned<String>>>,
}

/// Problems with `introspection`: an empty client list, or a client that is not a
/// configured `jwt` target.
pub(super) fn check(
    introspection: &IntrospectionConfig,
    at: &serde_saphyr::Location,
    config: &BrokerConfig,
    error: &mut dyn FnMut(&serde_saphyr::Location, String),
) {
    if introspection.clients.value.is_empty() {
        error(
            at,
            "introspection.clients must name at least one `jwt` target: an empty list admits none".into(),
        );
    }
    for client in &introspection.clients.value {
        let found = config.targets.value.iter().find(|t| t.value.name() == client.value);
        match found.map(|t| t.value.kind()) {
            Some("jwt") => {}
            None => error(
                &client.referenced,
                format!("introspection.clients: `{}` is not a configured target", client.value),
            ),
            Some(kind) => error(
                &client.referenced,
                format!(
                    "introspection.clients: `{}` is a `{kind}` target: client tokens come from a `jwt` target",
                    client.value
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse;

    fn config(introspection: &str) -> String {
        format!(
            "version: 1
issuer:
  url: https://tessera.example.com
  key_dir: keys
sources:
  - name: corp
    type: oidc
    issuer: https://idp.example.com
    audiences: [tessera]
targets:
  - name: internal-api
    type: jwt
    audience: https://internal-api.example
  - name: introspect
    type: jwt
    audience: https://tessera.example.com/introspect
{introspection}"
        )
    }

    fn messages(text: &str) -> Vec<String> {
        match parse(Path::new("broker.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn clients_name_jwt_targets_and_at_least_one() {
        assert!(messages(&config("introspection:\n  clients: [introspect]\n")).is_empty());
        let loaded = parse(Path::new("broker.yaml"), &config("")).unwrap();
        assert!(loaded.config.introspection.is_none(), "off unless set");

        let empty = messages(&config("introspection:\n  clients: []\n"));
        assert!(empty.len() == 1 && empty[0].contains("at least one"), "{empty:?}");
        let unknown = messages(&config("introspection:\n  clients: [introspect, nope]\n"));
        assert!(
            unknown.len() == 1 && unknown[0].contains("`nope` is not a configured target"),
            "{unknown:?}"
        );
        let extra = messages(&config("introspection:\n  clients: [introspect]\n  open: true\n"));
        assert!(!extra.is_empty(), "unknown keys are refused");
    }
}
