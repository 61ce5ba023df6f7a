//! Identity sources, one folder per kind.
pub mod oidc;
