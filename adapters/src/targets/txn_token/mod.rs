//! The `txn_token` target: Transaction Tokens (draft-ietf-oauth-transaction-tokens-10),
//! JWTs of type `txntoken+jwt` signed by Tessera's issuer, which carry a transaction's
//! subject and context through the workloads of one trust domain.
//!
//! The target only signs: the broker's Txn-Token service (`broker/src/txn/`) authenticates
//! the requesting workload, verifies the subject token and decides the transaction's
//! values, and hands them over in the [`Grant`](crate::target::Grant)'s claims.
//!
//! # Layout
//! - `config.rs`: [`TxnTokenTargetConfig`], the `type: txn_token` entry of `broker.yaml`.
//! - `issue.rs`: [`TxnTokenTarget`], the grant keys a rule gives and the token's claims.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{MAX_TTL_CAP, TxnTokenTargetConfig};
pub use issue::{
    GRANT_SCOPES, GRANT_SUBJECT_TOKEN_TYPES, GRANT_SUBJECTS, SERVICE_CLAIMS, SubjectKind, TXN_TOKEN_TYP,
    TxnTokenTarget, is_scope_token, split_list,
};

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "txn_token";
