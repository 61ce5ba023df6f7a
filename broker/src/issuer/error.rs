//! Why the issuer could not open, load, create or rotate its keys.

use std::io;
use std::path::PathBuf;

use super::keys::KeyState;

/// An issuer failure. [`IssuerError::code`] is the greppable reason in logs. No variant
/// ever carries private key material.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("invalid issuer config: {0}")]
    Config(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A private key file others could read, or the group write. Refused rather than
    /// fixed: whoever made it so should know the key may have leaked.
    #[error(
        "refusing to load {}: the private key file is readable by others or writable by its group (mode {mode:04o}); make it 0600 (0440 for a Secret volume) and consider the key exposed",
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("invalid key file {}: {reason}", path.display())]
    InvalidKeyFile { path: PathBuf, reason: String },
    #[error("no {state} {alg} key in {}", dir.display())]
    MissingKey { alg: &'static str, state: KeyState, dir: PathBuf },
    #[error("generating a {0} key failed")]
    KeyGeneration(&'static str),
    #[error("the key reloader needs a tokio runtime")]
    NoRuntime,
}

impl IssuerError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }

    /// A stable, greppable reason code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "TS-ISS-CONFIG",
            Self::Io { .. } => "TS-ISS-IO",
            Self::InsecurePermissions { .. } => "TS-ISS-KEY-PERMISSIONS",
            Self::InvalidKeyFile { .. } => "TS-ISS-KEY-FILE",
            Self::MissingKey { .. } => "TS-ISS-MISSING-KEY",
            Self::KeyGeneration(_) => "TS-ISS-KEYGEN",
            Self::NoRuntime => "TS-ISS-RUNTIME",
        }
    }
}
