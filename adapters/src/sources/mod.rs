//! Identity sources, one folder per kind.
pub mod aws_iam;
pub mod azure;
pub mod circleci;
pub mod gcp;
pub mod github_actions;
pub mod gitlab_ci;
pub mod kubernetes;
pub mod oidc;
pub mod spiffe;
