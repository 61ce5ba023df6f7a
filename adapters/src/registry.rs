//! Every adapter kind, one line each. The broker builds sources and targets only through
//! [`SourceConfig`] and [`TargetConfig`]; adding a kind is a folder under `sources/` or
//! `targets/` plus one line below.

use std::sync::Arc;

use crate::build::{BuildContext, BuildError, BuildSource, BuildTarget};
use crate::source::IdentitySource;
use crate::target::CredentialTarget;

macro_rules! registry {
    (
        $(#[$meta:meta])* $enum:ident, $trait:ident, $out:ident, $kinds:ident;
        $($kind:ident => $variant:ident($config:ty),)+
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        // `rename_all` spells each variant as its kind; a test holds the two together.
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum $enum {
            $($variant($config),)+
        }

        /// Every registered kind, as written in `type:`.
        pub const $kinds: &[&str] = &[$(stringify!($kind)),+];

        impl $enum {
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => stringify!($kind),)+ }
            }

            pub fn name(&self) -> &str {
                match self { $(Self::$variant(c) => $trait::name(c),)+ }
            }

            pub fn build(&self, cx: &BuildContext) -> Result<Arc<dyn $out>, BuildError> {
                match self { $(Self::$variant(c) => $trait::build(c, cx),)+ }
            }

            /// The kind's config, as the build contract sees it.
            pub fn config(&self) -> &dyn $trait {
                match self { $(Self::$variant(c) => c,)+ }
            }

            /// The shape problems of one entry of kind `kind`, read on its own (see
            /// [`crate::config::TaggedList`]); `None` for a kind not registered.
            pub fn entry_problems(kind: &str, entry: &crate::config::Entry<'_>) -> Option<crate::config::EntryRead> {
                match kind {
                    $(stringify!($kind) => Some(entry.read::<$config>()),)+
                    _ => None,
                }
            }
        }
    };
}

registry! {
    /// A source entry of `broker.yaml`, chosen by its `type:`.
    SourceConfig, BuildSource, IdentitySource, SOURCE_KINDS;
    aws_iam => AwsIam(crate::sources::aws_iam::AwsIamSourceConfig),
    azure => Azure(crate::sources::azure::AzureSourceConfig),
    circleci => Circleci(crate::sources::circleci::CircleciSourceConfig),
    gcp => Gcp(crate::sources::gcp::GcpSourceConfig),
    github_actions => GithubActions(crate::sources::github_actions::GithubActionsSourceConfig),
    gitlab_ci => GitlabCi(crate::sources::gitlab_ci::GitlabCiSourceConfig),
    kubernetes => Kubernetes(crate::sources::kubernetes::KubernetesSourceConfig),
    oidc => Oidc(crate::sources::oidc::OidcSourceConfig),
    spiffe => Spiffe(crate::sources::spiffe::SpiffeSourceConfig),
}

registry! {
    /// A target entry of `broker.yaml`, chosen by its `type:`.
    TargetConfig, BuildTarget, CredentialTarget, TARGET_KINDS;
    aws_sts => AwsSts(crate::targets::aws_sts::AwsStsTargetConfig),
    azure => Azure(crate::targets::azure::AzureTargetConfig),
    gcp => Gcp(crate::targets::gcp::GcpTargetConfig),
    jwt => Jwt(crate::targets::jwt::JwtTargetConfig),
    jwt_grant => JwtGrant(crate::targets::jwt_grant::JwtGrantTargetConfig),
    kubernetes => Kubernetes(crate::targets::kubernetes::KubernetesTargetConfig),
    oauth => Oauth(crate::targets::oauth::OauthTargetConfig),
    postgres => Postgres(crate::targets::postgres::PostgresTargetConfig),
    spiffe => Spiffe(crate::targets::spiffe::SpiffeTargetConfig),
    txn_token => TxnToken(crate::targets::txn_token::TxnTokenTargetConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The `type:` serde reads must be the kind string everything else uses.
    fn assert_kind_spelling<T: serde::de::DeserializeOwned + std::fmt::Debug>(kinds: &[&str]) {
        for kind in kinds {
            let err = serde_json::from_value::<T>(serde_json::json!({ "type": kind }))
                .expect_err("an entry with only a type lacks required fields");
            assert!(!err.to_string().contains("unknown variant"), "{kind}: {err}");
        }
    }

    #[test]
    fn kinds_are_spelled_as_registered() {
        assert_kind_spelling::<SourceConfig>(SOURCE_KINDS);
        assert_kind_spelling::<TargetConfig>(TARGET_KINDS);
    }

    #[test]
    fn every_source_folder_is_registered() {
        let mut kinds: Vec<String> = SOURCE_KINDS.iter().map(|k| k.to_string()).collect();
        kinds.sort();
        assert_eq!(folders("sources"), kinds, "a folder under sources/ lacks its registry line");
    }

    #[test]
    fn every_target_folder_is_registered() {
        let mut kinds: Vec<String> = TARGET_KINDS.iter().map(|k| k.to_string()).collect();
        kinds.sort();
        assert_eq!(folders("targets"), kinds, "a folder under targets/ lacks its registry line");
    }
}
