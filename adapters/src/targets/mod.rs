//! Credential targets, one folder per kind.
pub mod jwt;
