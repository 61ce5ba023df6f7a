//! Every adapter kind, one line each. The broker builds sources and targets only through
//! [`SourceConfig`] and [`TargetConfig`]; adding a kind is a folder under `sources/` or
//! `targets/` plus one line below.

use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::Clock;
use crate::observe::Observer;
use crate::source::IdentitySource;
use crate::target::{CredentialTarget, Signer};

/// What adapters get when they are built: injected so trait signatures stay stable as
/// needs grow.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub clock: Arc<dyn Clock>,
    /// Shared HTTP client: rustls, timeouts set, redirects off.
    pub http: reqwest::Client,
    /// Tessera's own signer, for targets.
    pub signer: Arc<dyn Signer>,
    /// Relative file paths in adapter configs resolve against this (the config file's
    /// directory).
    pub base_dir: PathBuf,
    /// Told about upstream traffic (key set fetches), for metrics.
    pub observer: Arc<dyn Observer>,
}

impl BuildContext {
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.base_dir.join(path) }
    }
}

/// A config error found while building an adapter from its config.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// The config key at fault, dotted (`jwks_uri`), when one is.
    pub field: Option<&'static str>,
    pub message: String,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }

    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), message: message.into() }
    }
}

/// Implemented by every source kind's config.
pub trait BuildSource {
    fn name(&self) -> &str;
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError>;
}

/// Implemented by every target kind's config.
pub trait BuildTarget {
    fn name(&self) -> &str;
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError>;
}

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
