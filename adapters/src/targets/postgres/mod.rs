//! The `postgres` target: short-lived PostgreSQL logins. For each grant it makes a login
//! role of its own with a random password and `VALID UNTIL` (the grant's lifetime), member
//! of the group role the rule grants, and a background sweep drops expired logins, handing
//! what they own to a configured owner. No static database password reaches a workload.
//!
//! # Layout
//! - `config.rs`: [`PostgresTargetConfig`], the `type: postgres` entry of `broker.yaml`,
//!   and its validation.
//! - `sql.rs`: quoting of identifiers and literals, role names made from an identity,
//!   random passwords and their SCRAM-SHA-256 verifiers.
//! - `issue.rs`: [`PostgresTarget`]: the plan of a grant, the login made in one
//!   transaction, and the mapping of PostgreSQL errors to
//!   [`TargetError`](crate::TargetError).
//! - `sweep.rs`: the bounded background sweep of expired logins.
//! - `revoke.rs`: the logins of revoked identities dropped at once.

mod config;
mod issue;
mod revoke;
mod sql;
mod sweep;
#[cfg(test)]
mod tests;

pub use config::{MAX_TTL_CAP, MIN_TTL, PostgresTargetConfig};
pub use issue::PostgresTarget;
pub use sql::{quote_ident, quote_literal, scram_verifier};
pub use sweep::SweepReport;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "postgres";
