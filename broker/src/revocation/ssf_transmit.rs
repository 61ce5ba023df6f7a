//! Transmitting shared signals: for each revocation this broker makes, a CAEP
//! `credential-change` SET (`change_type: revoke`), signed by Tessera's issuer keys with
//! `typ: secevent+jwt`, pushed (RFC 8935) to every receiver `signals.transmit` names, so
//! services that accept Tessera's JWTs can drop the sessions they built on them.
//!
//! The subject (RFC 9493) is what the relying services see: an identity (`identity`, or
//! `subject` naming an `id`) is `iss_sub` with Tessera's issuer and the identity id, the
//! `sub` of the JWTs Tessera issues it; a platform subject is `iss_sub` with the
//! platform's issuer (or `opaque` without one); an issued token is `opaque` with its
//! fingerprint. Revocations naming many identities at once (a glob, attributes, a rule, a
//! whole source) or a subject token's `jti` have no such subject and are not sent.
//!
//! Delivery runs in its own task, with [`ATTEMPTS`] tries and a doubling pause between
//! them; it never delays the revocation, and a receiver that refuses a SET (HTTP 400) is
//! not asked again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tessera_adapters::target::{Signer as _, SigningAlgorithm};
use tessera_adapters::{Clock, Secret};

use super::ssf::{SET_TYP, event_type};
use super::{Matcher, Revocation};
use crate::config::ReceiverConfig;
use crate::issuer::Issuer;
use crate::metrics::Metrics;

/// Deliveries tried per receiver and SET.
pub const ATTEMPTS: u32 = 4;
/// The pause after the first failed try; doubled after each.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The `credential_type` of the SETs sent (CAEP 1.0 §3.2 allows types the transmitter and
/// receiver agree on): a credential Tessera issued to a workload.
pub const CREDENTIAL_TYPE: &str = "workload-credential";

#[derive(Debug, Clone)]
struct Receiver {
    name: String,
    endpoint: String,
    audience: String,
    algorithm: SigningAlgorithm,
    authorization: Option<reqwest::header::HeaderValue>,
}

/// A configured `Authorization` value as a header marked sensitive (kept out of debug
/// output); `None` when not configured (or not sendable, which config checks refuse).
pub(super) fn authorization(value: Option<&Secret<String>>) -> Option<reqwest::header::HeaderValue> {
    let mut header = reqwest::header::HeaderValue::from_str(value?.expose()).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// See the module documentation.
#[derive(Debug)]
pub struct SignalTransmitter {
    receivers: Vec<Receiver>,
    issuer: Arc<Issuer>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl SignalTransmitter {
    pub fn new(
        receivers: &[ReceiverConfig],
        issuer: Arc<Issuer>,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let default_alg = issuer.algorithms().first().copied().unwrap_or(SigningAlgorithm::Es256);
        let receivers = receivers
            .iter()
            .map(|r| Receiver {
                name: r.name.clone(),
                endpoint: r.endpoint.clone(),
                audience: r.audience.clone(),
                algorithm: r.algorithm.unwrap_or(default_alg),
                authorization: authorization(r.authorization_header.as_ref()),
            })
            .collect();
        Self { receivers, issuer, http, metrics, clock }
    }

    /// Tell every receiver of `revocation`, in the background.
    pub fn emit(&self, revocation: &Revocation) {
        if self.receivers.is_empty() {
            return;
        }
        let Some(subject) = subject_of(&revocation.matcher, self.issuer.url()) else {
            tracing::info!(
                revocation = %revocation.id,
                kind = revocation.matcher.kind(),
                reason = "TS-SSF-NOT-SENT",
                "revocation names no single subject: no security event sent"
            );
            return;
        };
        for receiver in &self.receivers {
            let claims =
                claims(self.issuer.url(), &receiver.audience, self.clock.now(), &subject, revocation);
            let token = match self.issuer.sign_typed(receiver.algorithm, SET_TYP, &claims) {
                Ok(token) => token,
                Err(e) => {
                    tracing::error!(receiver = %receiver.name, error = %e, reason = "TS-SSF-SIGN", "security event not signed");
                    self.metrics.security_event_sent(&receiver.name, "failed");
                    continue;
                }
            };
            let (http, metrics, receiver, revocation_id) =
                (self.http.clone(), Arc::clone(&self.metrics), receiver.clone(), revocation.id.clone());
            let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_string();
            tokio::spawn(async move {
                let outcome = deliver(&http, &receiver, token.expose()).await;
                metrics.security_event_sent(&receiver.name, outcome);
                tracing::info!(receiver = %receiver.name, revocation = %revocation_id, jti = %jti, outcome, "security event pushed");
            });
        }
    }
}

/// The RFC 9493 subject a receiver can act on, if the revocation names one.
fn subject_of(matcher: &Matcher, issuer: &str) -> Option<Value> {
    match matcher {
        Matcher::Identity { id } | Matcher::Subject { id: Some(id), .. } => {
            Some(json!({ "format": "iss_sub", "iss": issuer, "sub": id }))
        }
        Matcher::Subject { issuer: Some(iss), subject: Some(sub), id: None, .. } => {
            Some(json!({ "format": "iss_sub", "iss": iss, "sub": sub }))
        }
        Matcher::Subject { issuer: None, subject: Some(sub), id: None, .. } => {
            Some(json!({ "format": "opaque", "id": sub }))
        }
        Matcher::IssuedToken { fingerprint } => Some(json!({ "format": "opaque", "id": fingerprint })),
        Matcher::Subject { subject: None, id: None, .. }
        | Matcher::IdentityGlob { .. }
        | Matcher::Attributes { .. }
        | Matcher::Rule { .. }
        | Matcher::Source { .. }
        | Matcher::SubjectJti { .. } => None,
    }
}

/// The SET's claims (RFC 8417 §2.2, SSF 1.0 §4, CAEP 1.0 §3.2): no `exp`, no `sub`.
fn claims(
    issuer: &str,
    audience: &str,
    now: i64,
    subject: &Value,
    revocation: &Revocation,
) -> Map<String, Value> {
    let event = json!({
        "credential_type": CREDENTIAL_TYPE,
        "change_type": "revoke",
        "event_timestamp": revocation.created_ms / 1000,
        "initiating_entity": if revocation.author.starts_with("ssf:") { "policy" } else { "admin" },
        "reason_admin": { "en": revocation.reason },
    });
    let mut events = Map::new();
    events.insert(event_type::CREDENTIAL_CHANGE.to_string(), event);
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("jti".into(), json!(uuid::Uuid::now_v7().to_string()));
    claims.insert("iat".into(), json!(now));
    claims.insert("aud".into(), json!(audience));
    claims.insert("sub_id".into(), subject.clone());
    claims.insert("txn".into(), json!(revocation.id));
    claims.insert("events".into(), Value::Object(events));
    claims
}

/// RFC 8935 §2: POST the SET; `202` is delivered, `400` refused (not retried), anything
/// else tried again up to [`ATTEMPTS`] times.
async fn deliver(http: &reqwest::Client, receiver: &Receiver, token: &str) -> &'static str {
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        let mut request = http
            .post(&receiver.endpoint)
            .header("Content-Type", "application/secevent+jwt")
            .header("Accept", "application/json")
            .body(token.to_string());
        if let Some(value) = &receiver.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        let sent = request.send().await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => return "delivered",
            Ok(r) if r.status().as_u16() == 400 => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let err = body.get("err").and_then(Value::as_str).unwrap_or("?");
                let description = body.get("description").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(
                    receiver = %receiver.name,
                    err = %err,
                    description = %description,
                    reason = "TS-SSF-SEND-REFUSED",
                    "receiver refused the security event"
                );
                return "refused";
            }
            Ok(r) => {
                tracing::warn!(receiver = %receiver.name, status = r.status().as_u16(), attempt, reason = "TS-SSF-SEND", "security event not delivered")
            }
            Err(e) => {
                tracing::warn!(receiver = %receiver.name, error = %e, attempt, reason = "TS-SSF-SEND", "security event not delivered")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2);
        }
    }
    "failed"
}
