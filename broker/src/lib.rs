//! Tessera: a cross-cloud workload identity broker.
//!
//! # Layout
//! - [`broker`]: the composition root: [`Broker::build`] turns a loaded config into a ready
//!   broker; [`Adapters::build`] makes the sources and targets alone, for tools.
//! - [`config`]: `broker.yaml` loading and validation, every error with file:line:column.
//! - [`mapping`]: mapping files: parse, validate, index, evaluate; the only maker of Grants.
//! - [`exchange`]: the pipeline, request -> source -> identity -> rule -> target -> response,
//!   audited whatever the outcome.
//! - [`issuer`]: Tessera's own signing keys, rotation, JWKS and discovery document.
//! - [`explain`]: why an identity (given, or verified from a token) gets which decision.
//! - [`http`]: actix-web routes, request limits and the one error -> RFC 6749 mapping; the
//!   admin listener's routes and authentication; [`http::server`] serves a broker.
//! - [`audit`]: audit events, sinks and the SQL store behind the workload directory.
//! - [`console`]: the operator console, HTML pages under `/ui/` on the admin listener.
//! - [`cache`], [`ratelimit`], [`redis`]: the credential cache and rate limits, shared
//!   across replicas through Redis when one is configured.
//! - [`revocation`]: revocations: what they match, as the admin API takes and lists them.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics` (admin and metrics
//!   listeners).
//! - [`demo`]: the quickstart's local token issuer (loopback only, off by default).
//! - [`trust`]: `tessera trust`: the setup a target's platform needs to trust Tessera.
//! - [`txn`]: the Transaction Token Service: Txn-Token requests and replacements.
//!
//! The `tessera` binary (`src/bin/tessera/`) is a thin shell over this library and the
//! `tessera-agent` crate, which `tessera agent` runs.
//!
//! [`run`] serves a broker on a listener until a shutdown future resolves, which is how
//! tests start the real server on `127.0.0.1:0` ([`run_on`] takes the admin and metrics
//! listeners too). While serving, the mapping directory is watched and valid changes swap
//! in. A configured demo issuer is started with [`demo::start`] before the broker is
//! built, so the sources trusting it find it up.

pub mod audit;
pub mod broker;
pub mod cache;
pub mod config;
pub mod console;
pub mod delegation;
pub mod demo;
pub mod exchange;
pub mod explain;
pub mod http;
pub mod introspect;
pub mod issuer;
pub mod jwt_bearer;
pub mod mapping;
pub mod metrics;
pub mod ratelimit;
pub mod redis;
pub mod revocation;
pub mod trust;
pub mod txn;

pub use broker::{Adapters, Broker, SpiffeBundle, StartError};
pub use http::server::{Listeners, run, run_on};
