//! Receiving shared signals: Security Event Tokens from the transmitters `signals.receive`
//! names, pushed to the admin listener (RFC 8935, see `http::signals`) or polled from
//! them (RFC 8936, [`spawn_pollers`]). Each SET is verified (signature against the
//! transmitter's key set, `typ`, `iss`, `aud`, `iat` within `signals.max_age`, `jti` not
//! seen before), read ([`super::ssf`]), and its CAEP / RISC events that cut a subject off
//! become revocations of the transmitter's source, authored `ssf:<transmitter>`. Every
//! event's subject is mapped before anything is revoked, so a SET is taken whole or not
//! at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tessera_adapters::jwt::{
    Algorithm, HeaderRule, IssuerRule, JwksCache, JwksLocation, JwksOptions, JwtPolicy, JwtVerifier,
    peek_issuer,
};
use tessera_adapters::source::SourceError;
use tessera_adapters::{Clock, jwt::policy::DEFAULT_MAX_LIFETIME};
use tokio::task::JoinHandle;

use super::ssf::{Event, EventKind, SET_TYP, SetError, SubjectId, read_claims};
use super::ssf_transmit::SignalTransmitter;
use super::{Matcher, Revocation};
use crate::broker::Broker;
use crate::config::{LoadedConfig, PollConfig, SignalsConfig, TransmitterConfig};
use crate::metrics::Metrics;

/// Most `jti`s remembered at once; past it the oldest (by `iat`) are forgotten first.
pub const MAX_REMEMBERED: usize = 100_000;
/// How far in the future a SET's `iat` may be (clock skew between transmitter and Tessera).
const IAT_LEEWAY: i64 = 60;

/// The broker's shared-signals side: the receiver and the transmitter.
#[derive(Debug)]
pub struct Signals {
    receiver: SignalReceiver,
    transmitter: SignalTransmitter,
}

impl Signals {
    /// Build `signals` as configured: a key cache per transmitter (fetched in the
    /// background), the HTTP client that polls and pushes.
    pub fn build(
        config: &LoadedConfig,
        signals: &SignalsConfig,
        issuer: Arc<crate::issuer::Issuer>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let http = crate::broker::http_client().map_err(|e| format!("HTTP client: {e}"))?;
        let transmitters = signals
            .receive
            .iter()
            .map(|t| TransmitterPeer::build(config, t, &http, &clock, &metrics))
            .collect::<Result<Vec<_>, _>>()?;
        let receiver = SignalReceiver {
            transmitters,
            seen: Mutex::new(Seen::default()),
            max_age: i64::try_from(signals.max_age.as_secs()).unwrap_or(i64::MAX),
            max_set_bytes: signals.max_set_bytes,
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&clock),
            http: http.clone(),
        };
        let transmitter = SignalTransmitter::new(&signals.transmit, issuer, http, metrics, clock);
        Ok(Self { receiver, transmitter })
    }

    pub fn receiver(&self) -> &SignalReceiver {
        &self.receiver
    }

    pub fn transmitter(&self) -> &SignalTransmitter {
        &self.transmitter
    }
}

/// One configured transmitter, ready to verify its SETs.
#[derive(Debug)]
struct TransmitterPeer {
    name: String,
    issuer: String,
    audience: String,
    source: String,
    email_attribute: Option<String>,
    poll: Option<PollConfig>,
    verifier: JwtVerifier,
}

impl TransmitterPeer {
    fn build(
        config: &LoadedConfig,
        t: &TransmitterConfig,
        http: &reqwest::Client,
        clock: &Arc<dyn Clock>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let at = |m: String| format!("signals.receive `{}`: {m}", t.name);
        let algorithms = t.algorithms.clone().unwrap_or_else(|| Algorithm::DEFAULT.to_vec());
        // The audience and lifetime of the policy are never checked: SETs have no `exp`,
        // and their claims are checked by `check` below, with RFC 8935's error for each.
        let policy = JwtPolicy::with_rules(
            IssuerRule::OneOf(vec![t.issuer.clone()]),
            HeaderRule::Open,
            vec![t.audience.clone()],
            algorithms.clone(),
            Duration::ZERO,
            DEFAULT_MAX_LIFETIME,
        )
        .map_err(|e| at(e.message))?;
        let location = match (&t.jwks_uri, &t.jwks_file) {
            (Some(uri), None) => JwksLocation::Uri(uri.clone()),
            (None, Some(file)) => JwksLocation::File(config.resolve(file)),
            _ => return Err(at("set exactly one of jwks_uri and jwks_file".into())),
        };
        let options = JwksOptions {
            insecure_http: t.insecure_http,
            observer: Arc::clone(metrics) as Arc<dyn tessera_adapters::observe::Observer>,
            ..JwksOptions::default()
        };
        let keys = JwksCache::new(
            format!("ssf:{}", t.name),
            location,
            options,
            &algorithms,
            http.clone(),
            Arc::clone(clock),
        )
        .map_err(|e| at(e.message))?;
        Ok(Self {
            name: t.name.clone(),
            issuer: t.issuer.clone(),
            audience: t.audience.clone(),
            source: t.source.clone(),
            email_attribute: t.email_attribute.clone(),
            poll: t.poll.clone(),
            verifier: JwtVerifier::new(policy, keys, Arc::clone(clock)),
        })
    }

    /// The revocation matcher for `subject`, confined to this transmitter's source, whose
    /// token issuers are `issuers` (an `iss_sub` subject of another issuer is refused).
    fn matcher(&self, subject: &SubjectId, issuers: &[String]) -> Result<Matcher, SetError> {
        let source = self.source.clone();
        Ok(match subject {
            SubjectId::IssSub { iss, .. } if !issuers.is_empty() && !issuers.contains(iss) => {
                return Err(SetError::Scope(format!(
                    "`iss_sub` names issuer `{iss}`, which source `{}` does not trust",
                    self.source
                )));
            }
            SubjectId::IssSub { iss, sub } => {
                Matcher::Subject { source, issuer: Some(iss.clone()), subject: Some(sub.clone()), id: None }
            }
            SubjectId::Uri { uri } => {
                Matcher::Subject { source, issuer: None, subject: None, id: Some(uri.clone()) }
            }
            SubjectId::Opaque { id } => {
                Matcher::Subject { source, issuer: None, subject: Some(id.clone()), id: None }
            }
            SubjectId::Email { email } => {
                let Some(attribute) = &self.email_attribute else {
                    return Err(SetError::Subject(format!(
                        "`email` subjects are not accepted from transmitter `{}` (no email_attribute)",
                        self.name
                    )));
                };
                Matcher::Attributes {
                    source,
                    attributes: BTreeMap::from([(attribute.clone(), email.clone())]),
                }
            }
        })
    }
}

/// Why a SET was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The SET is refused; the transmitter must not send it again as it is.
    #[error(transparent)]
    Refused(#[from] SetError),
    /// Tessera could not take it now (the transmitter's keys or the store are
    /// unreachable); the transmitter may deliver it again.
    #[error("not taken now: {0}")]
    Unavailable(String),
}

/// A SET taken: what it revoked, and the event types it carried that Tessera ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub transmitter: String,
    pub jti: String,
    /// Ids of the revocations it made (or found already in force, for the same subject).
    pub revocations: Vec<String>,
    /// Event types acknowledged and ignored.
    pub ignored: Vec<String>,
}

/// `jti`s received within `signals.max_age`, per issuer.
#[derive(Debug, Default)]
struct Seen {
    by_id: HashMap<(String, String), i64>,
    by_age: BTreeSet<(i64, String, String)>,
}

impl Seen {
    /// Remember `(iss, jti)` unless already there; forget what is older than `oldest`
    /// and, past [`MAX_REMEMBERED`], the oldest entries.
    fn reserve(&mut self, iss: &str, jti: &str, iat: i64, oldest: i64) -> bool {
        while let Some(first) = self.by_age.first().cloned() {
            if first.0 >= oldest && self.by_age.len() < MAX_REMEMBERED {
                break;
            }
            self.by_age.remove(&first);
            self.by_id.remove(&(first.1, first.2));
        }
        let key = (iss.to_string(), jti.to_string());
        if self.by_id.contains_key(&key) {
            return false;
        }
        self.by_id.insert(key, iat);
        self.by_age.insert((iat, iss.to_string(), jti.to_string()));
        true
    }

    fn release(&mut self, iss: &str, jti: &str) {
        if let Some(iat) = self.by_id.remove(&(iss.to_string(), jti.to_string())) {
            self.by_age.remove(&(iat, iss.to_string(), jti.to_string()));
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SignalReceiver {
    transmitters: Vec<TransmitterPeer>,
    seen: Mutex<Seen>,
    max_age: i64,
    max_set_bytes: usize,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
}

impl SignalReceiver {
    /// Largest SET accepted, in bytes.
    pub fn max_set_bytes(&self) -> usize {
        self.max_set_bytes
    }

    /// Whether any transmitter is configured.
    pub fn is_configured(&self) -> bool {
        !self.transmitters.is_empty()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Verify `token`, revoke what its events say, and record it.
    pub async fn receive(&self, broker: &Broker, token: &str) -> Result<Received, ReceiveError> {
        // Routing by the unverified `iss`: no key fetch for issuers nobody configured.
        let peer = match peek_issuer(token) {
            Ok(iss) => self.transmitters.iter().find(|t| t.issuer == iss).ok_or(SetError::Issuer)?,
            Err(e) => return Err(SetError::Malformed(e.to_string()).into()),
        };
        let result = self.take(broker, peer, token).await;
        let outcome = match &result {
            Ok(received) if received.revocations.is_empty() => "ignored",
            Ok(_) => "revoked",
            Err(ReceiveError::Refused(_)) => "refused",
            Err(ReceiveError::Unavailable(_)) => "deferred",
        };
        self.metrics.security_event_received(&peer.name, outcome);
        match &result {
            Ok(received) => tracing::info!(
                transmitter = %peer.name,
                jti = %received.jti,
                revocations = ?received.revocations,
                ignored_events = ?received.ignored,
                reason = "TS-SSF-RECEIVED",
                "security event token received"
            ),
            Err(ReceiveError::Refused(e)) => tracing::warn!(
                transmitter = %peer.name,
                error = %e,
                reason = e.code(),
                "security event token refused"
            ),
            Err(ReceiveError::Unavailable(e)) => tracing::warn!(
                transmitter = %peer.name,
                error = %e,
                reason = "TS-SSF-DEFERRED",
                "security event token not taken now"
            ),
        }
        result
    }

    async fn take(
        &self,
        broker: &Broker,
        peer: &TransmitterPeer,
        token: &str,
    ) -> Result<Received, ReceiveError> {
        let signed = peer.verifier.verify_signature(token).await.map_err(|e| match e {
            SourceError::Upstream { cause, .. } => {
                ReceiveError::Unavailable(format!("transmitter keys: {cause}"))
            }
            SourceError::UnknownKey | SourceError::BadSignature | SourceError::DisallowedAlgorithm => {
                SetError::Key(e.to_string()).into()
            }
            other => SetError::Malformed(other.to_string()).into(),
        })?;
        check_typ(signed.header())?;
        let set = read_claims(signed.claims())?;
        if set.iss != peer.issuer {
            return Err(SetError::Issuer.into());
        }
        if !set.audiences.contains(&peer.audience) {
            return Err(SetError::Audience.into());
        }
        let now = self.clock.now();
        let oldest = now.saturating_sub(self.max_age);
        if set.iat > now.saturating_add(IAT_LEEWAY) || set.iat < oldest {
            return Err(SetError::Stale { iat: set.iat }.into());
        }
        // Every subject is mapped before anything is revoked or remembered.
        let issuers = broker
            .pipeline()
            .router()
            .sources()
            .find(|s| s.name() == peer.source)
            .map(|s| s.issuers())
            .unwrap_or_default();
        let mut orders: Vec<(&Event, Matcher)> = Vec::new();
        let mut ignored = Vec::new();
        for event in &set.events {
            match (&event.subject, event.kind.revokes()) {
                (Some(subject), true) => orders.push((event, peer.matcher(subject, &issuers)?)),
                _ => ignored.push(event.event_type.clone()),
            }
        }
        if !self.seen().reserve(&set.iss, &set.jti, set.iat, oldest) {
            return Err(SetError::Replayed.into());
        }
        match self.revoke(broker, peer, &set.jti, &orders).await {
            Ok(revocations) => {
                Ok(Received { transmitter: peer.name.clone(), jti: set.jti.clone(), revocations, ignored })
            }
            Err(e) => {
                // Not taken: the transmitter may deliver it again.
                self.seen().release(&set.iss, &set.jti);
                Err(e)
            }
        }
    }

    async fn revoke(
        &self,
        broker: &Broker,
        peer: &TransmitterPeer,
        jti: &str,
        orders: &[(&Event, Matcher)],
    ) -> Result<Vec<String>, ReceiveError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let store = broker
            .audit_store()
            .ok_or_else(|| ReceiveError::Unavailable("no audit store to keep revocations in".into()))?;
        let now_ms = broker.clock().now_millis();
        let mut made = Vec::new();
        for (event, matcher) in orders {
            let in_force = broker.pipeline().revocations().all();
            if let Some(existing) = in_force.iter().find(|r| r.in_force(now_ms) && r.matcher == *matcher) {
                made.push(existing.id.clone());
                continue;
            }
            let revocation = Revocation::new(
                matcher.clone(),
                reason(event, jti),
                format!("ssf:{}", peer.name),
                now_ms,
                None,
            );
            super::add(broker, store, &revocation)
                .await
                .map_err(|e| ReceiveError::Unavailable(format!("revocation not stored: {e}")))?;
            made.push(revocation.id);
        }
        Ok(made)
    }
}

/// RFC 8417 §2.3 and SSF 1.0: `typ` is `secevent+jwt` (`application/` may be prefixed,
/// RFC 7515 §4.1.9; compared ignoring ASCII case).
fn check_typ(header: &Map<String, Value>) -> Result<(), SetError> {
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    let media = match (typ.get(..12), typ.get(12..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    };
    if media.eq_ignore_ascii_case(SET_TYP) {
        Ok(())
    } else {
        Err(SetError::Malformed("header `typ` is not `secevent+jwt`".into()))
    }
}

/// The revocation's reason: the event, the SET, and what the transmitter said.
fn reason(event: &Event, jti: &str) -> String {
    let name = match &event.kind {
        EventKind::SessionRevoked => "CAEP session-revoked".to_string(),
        EventKind::CredentialChange { change_type } => format!("CAEP credential-change ({change_type})"),
        EventKind::AccountDisabled => "RISC account-disabled".to_string(),
        EventKind::CredentialCompromise => "RISC credential-compromise".to_string(),
        EventKind::Unknown => event.event_type.clone(),
    };
    let mut reason = format!("{name}, SET jti {jti}");
    if let Some(why) = &event.why {
        reason.push_str(": ");
        reason.push_str(why);
    }
    let mut end = reason.len().min(super::MAX_FIELD);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason
}

/// Start polling every transmitter with a `poll` block (RFC 8936).
pub fn spawn_pollers(broker: &Arc<Broker>) -> Vec<JoinHandle<()>> {
    let Some(signals) = broker.signals() else { return Vec::new() };
    (0..signals.receiver.transmitters.len())
        .filter(|i| signals.receiver.transmitters.get(*i).is_some_and(|t| t.poll.is_some()))
        .map(|i| {
            let broker = Arc::clone(broker);
            tokio::spawn(async move { poll_loop(broker, i).await })
        })
        .collect()
}

/// Acknowledgements and errors not yet delivered to the transmitter.
#[derive(Debug, Default)]
struct Pending {
    ack: Vec<String>,
    errors: Map<String, Value>,
}

async fn poll_loop(broker: Arc<Broker>, index: usize) {
    let mut pending = Pending::default();
    let mut failing = false;
    loop {
        let Some(signals) = broker.signals() else { return };
        let receiver = &signals.receiver;
        let Some(peer) = receiver.transmitters.get(index) else { return };
        let Some(poll) = &peer.poll else { return };
        let again = match receiver.poll_once(&broker, poll, &mut pending).await {
            Ok(more) => {
                if failing {
                    tracing::info!(transmitter = %peer.name, "transmitter polled again");
                    failing = false;
                }
                more
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(transmitter = %peer.name, error = %e, reason = "TS-SSF-POLL", "transmitter not polled; retrying");
                    failing = true;
                }
                false
            }
        };
        if !again {
            tokio::time::sleep(poll.interval).await;
        }
    }
}

impl SignalReceiver {
    /// One poll (RFC 8936 §2.4): deliver the pending acknowledgements and errors, take the
    /// SETs returned. Returns whether to poll again at once (more available, or new
    /// acknowledgements to deliver).
    async fn poll_once(
        &self,
        broker: &Broker,
        poll: &PollConfig,
        pending: &mut Pending,
    ) -> Result<bool, String> {
        let mut body = json!({
            "ack": pending.ack,
            "maxEvents": poll.max_events,
            "returnImmediately": true,
        });
        if !pending.errors.is_empty()
            && let Some(object) = body.as_object_mut()
        {
            object.insert("setErrs".into(), Value::Object(pending.errors.clone()));
        }
        let mut request = self.http.post(&poll.url).header("Accept", "application/json").json(&body);
        if let Some(value) = super::ssf_transmit::authorization(poll.authorization_header.as_ref()) {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| format!("poll request: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("poll answered HTTP {}", status.as_u16()));
        }
        let limit = self.max_set_bytes.saturating_mul(poll.max_events).saturating_add(4096);
        let bytes = read_limited(response, limit).await?;
        // Delivered: what was pending is now the transmitter's.
        pending.ack.clear();
        pending.errors.clear();
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|_| "poll answer is not JSON".to_string())?;
        let sets = match answer.get("sets") {
            Some(Value::Object(sets)) => sets.clone(),
            _ => return Err("poll answer has no `sets` object".into()),
        };
        let more = answer.get("moreAvailable").and_then(Value::as_bool).unwrap_or(false);
        for (jti, set) in sets.iter().take(poll.max_events) {
            let refused = |err: &str, description: String| json!({ "err": err, "description": description });
            let Some(token) = set.as_str() else {
                pending.errors.insert(jti.clone(), refused("invalid_request", "not a string".into()));
                continue;
            };
            if token.len() > self.max_set_bytes {
                let description = format!("larger than {} bytes", self.max_set_bytes);
                pending.errors.insert(jti.clone(), refused("invalid_request", description));
                continue;
            }
            match self.receive(broker, token).await {
                // A SET seen before was taken then; its acknowledgement was lost.
                Ok(_) | Err(ReceiveError::Refused(SetError::Replayed)) => pending.ack.push(jti.clone()),
                Err(ReceiveError::Refused(e)) => {
                    let code = crate::http::error::set_error_code(&e);
                    pending.errors.insert(jti.clone(), refused(code, e.to_string()));
                }
                // Neither acknowledged nor refused: the transmitter delivers it again.
                Err(ReceiveError::Unavailable(_)) => {}
            }
        }
        Ok(more || !pending.ack.is_empty() || !pending.errors.is_empty())
    }
}

/// A response body of at most `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("poll answer: {e}"))? {
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(format!("poll answer larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_refused_again_until_it_ages_out_or_is_released() {
        let mut seen = Seen::default();
        assert!(seen.reserve("iss", "a", 100, 0));
        assert!(!seen.reserve("iss", "a", 100, 0), "a replay");
        assert!(seen.reserve("other-iss", "a", 100, 0), "jti are per issuer");
        seen.release("iss", "a");
        assert!(seen.reserve("iss", "a", 100, 0), "released when not taken");
        // Older than the window: forgotten (such SETs are refused as stale before this).
        assert!(seen.reserve("iss", "b", 200, 150));
        assert_eq!(seen.by_id.len(), 1);
        assert_eq!(seen.by_age.len(), 1);
    }

    #[test]
    fn typ_is_secevent_jwt_with_or_without_the_application_prefix() {
        let header = |typ: Value| Map::from_iter([("typ".to_string(), typ)]);
        for ok in ["secevent+jwt", "application/secevent+jwt", "Application/SecEvent+JWT"] {
            assert!(check_typ(&header(json!(ok))).is_ok(), "{ok}");
        }
        for bad in [json!("JWT"), json!("application/jwt"), json!(1), json!("secevent+jwt ")] {
            assert!(check_typ(&header(bad.clone())).is_err(), "{bad}");
        }
        assert!(check_typ(&Map::new()).is_err());
    }
}
