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
