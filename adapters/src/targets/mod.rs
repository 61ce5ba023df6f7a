//! Credential targets, one folder per kind.
pub mod aws_sts;
pub mod azure;
pub mod gcp;
pub mod jwt;
/// HTTP calls shared by the targets that reach a token endpoint (`gcp`, `azure`).
pub(crate) mod upstream;
