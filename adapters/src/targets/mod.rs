//! Credential targets, one folder per kind.
pub mod aws_sts;
pub mod azure;
/// The target conformance kit's contract half, run for every registered kind.
#[cfg(test)]
mod conformance;
pub mod gcp;
pub mod jwt;
#[cfg(test)]
pub(crate) mod testkit;
/// What the targets that call a platform share (`aws_sts`, `gcp`, `azure`).
pub(crate) mod upstream;
