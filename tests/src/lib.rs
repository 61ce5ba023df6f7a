//! Tessera's testkit: what end-to-end tests need to drive a real broker.
//!
//! # Layout
//! - [`keys`]: test signing keys (RSA, EC, Ed25519) and a JWS builder that can also forge
//!   (`alg: none`, HS256 keyed with a public key, arbitrary headers).
//! - [`issuer`]: [`TestIssuer`](issuer::TestIssuer), an OIDC issuer on loopback serving
//!   discovery and a JWKS, counting fetches, and able to go down on demand.
//! - [`broker`]: [`spawn_broker`](broker::spawn_broker), the real broker on `127.0.0.1:0`
//!   with a fixed clock, a temporary directory, a file audit sink and the SQLite audit store;
//!   [`BrokerProcess`](broker::BrokerProcess), the `tessera serve` binary, for killing.
//! - [`moto`]: moto's server as the AWS peer (STS and IAM with SigV4 checking on), set up
//!   by boto3 with users and roles in two accounts.
//! - [`sts`]: [`StsPeer`](sts::StsPeer), moto's STS (signature checking off, as real STS
//!   takes `AssumeRoleWithWebIdentity` unsigned) behind a proxy that records, delays and
//!   fails calls.
//! - [`conformance`]: the conformance kit every JWT source kind runs
//!   ([`run_jwt_conformance`](conformance::run_jwt_conformance)), each kind's description
//!   ([`KINDS_UNDER_TEST`](conformance::KINDS_UNDER_TEST)), and the run over every kind the
//!   registry lists.
//! - [`target_conformance`]: the target conformance kit's HTTP half, run for every
//!   registered target kind ([`run_every_registered_target_kind`](target_conformance::run_every_registered_target_kind)),
//!   each kind's description in [`target_under_test`](target_conformance::target_under_test).
//! - [`python`]: runs the Python peers (PyJWT and friends) from the project's virtualenv.
//! - [`google`]: [`FakeGoogle`](google::FakeGoogle), Google's STS and IAM Credentials APIs on
//!   loopback, verifying subject tokens against the issuer's JWKS as a workload identity pool
//!   provider does.
//! - [`relying_party`]: what both fakes do as relying parties of an OIDC issuer (JWS
//!   decoding, discovery and JWKS, signature checks).
//! - [`fake`]: what both fakes share as test servers: the loopback server, each endpoint's
//!   log of calls and requests, injected failures and [`Faults`](fake::Faults).
//! - [`postgres`]: [`TestPostgres`](postgres::TestPostgres), a database of the test's own on
//!   the machine's PostgreSQL, which the test can also take offline.
//! - [`redis`]: [`TestRedis`](redis::TestRedis), the machine's Redis under a key prefix of
//!   the test's own, read raw and cleaned up afterwards.
//! - [`agent`]: [`spawn_agent`](agent::spawn_agent), the real `tessera agent` on loopback,
//!   the Python SDK peers run against it with environment variables only, and the `tessera`
//!   binary.
//! - [`entra`]: [`FakeEntra`](entra::FakeEntra), Entra ID's v2.0 token endpoint on loopback,
//!   taking client assertions through federated identity credentials.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // test support

pub mod agent;
pub mod broker;
pub mod conformance;
pub mod entra;
pub mod fake;
pub mod google;
pub mod install;
pub mod issuer;
pub mod keys;
pub mod moto;
pub mod postgres;
pub mod python;
pub mod redis;
pub mod relying_party;
pub mod sts;
pub mod target_conformance;

pub use broker::{BrokerOptions, TestBroker, spawn_broker};
pub use issuer::TestIssuer;
pub use keys::{TestKey, jws};
pub use tessera_adapters::ManualClock;
