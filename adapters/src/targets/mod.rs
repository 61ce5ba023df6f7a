//! Credential targets, one folder per kind.
pub mod aws_sts;
pub mod azure;
/// What every target kind has ([`TargetBase`](base::TargetBase)) and the config defaults they share.
pub mod base;
/// The target conformance kit's contract half, run for every registered kind.
#[cfg(test)]
mod conformance;
pub mod gcp;
pub mod jwt;
pub mod jwt_grant;
pub mod kubernetes;
pub mod oauth;
pub mod postgres;
/// What the targets that hand the workload a JWT Tessera signs share (`spiffe`, `kubernetes`).
pub(crate) mod signed;
pub mod spiffe;
#[cfg(test)]
pub(crate) mod testkit;
pub mod txn_token;
/// What the targets that call a platform share (`aws_sts`, `gcp`, `azure`, `postgres`).
pub(crate) mod upstream;
