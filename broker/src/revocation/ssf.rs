//! Security Event Tokens (RFC 8417) as OpenID Shared Signals 1.0 profiles them: the claims
//! of a verified SET read into a [`SecurityEventToken`], its subject identifiers (RFC 9493)
//! into [`SubjectId`], and the CAEP / RISC events Tessera acts on recognized. Signature,
//! issuer, audience, age and replay are [`super::ssf_receive`]'s; this module only reads
//! what a payload says, and refuses what does not have the shape the specifications give.

use serde_json::{Map, Value};

/// The SET media type (RFC 8417 §2.3), the `typ` header SSF requires and the push body's
/// content type (`application/` prefixed).
pub const SET_TYP: &str = "secevent+jwt";
/// Longest text accepted in any claim read here.
pub const MAX_TEXT: usize = 1024;
/// Most events one SET may carry.
pub const MAX_EVENTS: usize = 16;

/// Event types Tessera acts on.
pub mod event_type {
    pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
    pub const CREDENTIAL_CHANGE: &str =
        "https://schemas.openid.net/secevent/caep/event-type/credential-change";
    pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
    pub const CREDENTIAL_COMPROMISE: &str =
        "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
}

/// Why a SET's payload was refused. Each maps to an RFC 8935 §2.4 error code at the HTTP
/// edge; see `http::error::set_error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Not a SET: not a compact JWS, bad JSON, a claim of the wrong type or missing.
    #[error("not a security event token: {0}")]
    Malformed(String),
    /// A subject identifier format Tessera does not map to workloads, or none at all.
    #[error("subject: {0}")]
    Subject(String),
    /// An event Tessera acts on whose payload does not follow its definition.
    #[error("event `{event}`: {message}")]
    Event { event: String, message: String },
    /// The signing key is unknown, of the wrong kind, or the signature does not verify.
    #[error("key or signature: {0}")]
    Key(String),
    /// No configured transmitter has this `iss`.
    #[error("issuer is not a configured transmitter")]
    Issuer,
    /// `aud` does not name this receiver.
    #[error("audience does not name this receiver")]
    Audience,
    /// Issued in the future, or older than `signals.max_age`.
    #[error("issued at {iat}, outside the accepted window")]
    Stale { iat: i64 },
    /// This transmitter already delivered a SET with this `jti`.
    #[error("jti already received")]
    Replayed,
    /// The subject names an identity outside what this transmitter speaks for.
    #[error("subject outside the transmitter's scope: {0}")]
    Scope(String),
}

impl SetError {
    /// A stable, greppable reason code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "TS-SSF-MALFORMED",
            Self::Subject(_) => "TS-SSF-SUBJECT",
            Self::Event { .. } => "TS-SSF-EVENT",
            Self::Key(_) => "TS-SSF-KEY",
            Self::Issuer => "TS-SSF-ISSUER",
            Self::Audience => "TS-SSF-AUDIENCE",
            Self::Stale { .. } => "TS-SSF-STALE",
            Self::Replayed => "TS-SSF-REPLAY",
            Self::Scope(_) => "TS-SSF-SCOPE",
        }
    }
}

fn malformed(message: impl Into<String>) -> SetError {
    SetError::Malformed(message.into())
}

/// A subject identifier (RFC 9493 §3), of the formats that can name a workload. A
/// `complex` subject is read as the simple subject of its `application` member, else of
/// its `user` member (the workload's own identity); its other members only narrow the
/// subject further (a session, a device), so revoking the workload covers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectId {
    /// RFC 9493 §3.2.3: `iss` and `sub` as a token of that issuer carries them.
    IssSub { iss: String, sub: String },
    /// RFC 9493 §3.2.7: a URI.
    Uri { uri: String },
    /// RFC 9493 §3.2.4: an identifier only the transmitter and receiver understand.
    Opaque { id: String },
    /// RFC 9493 §3.2.2: an email address.
    Email { email: String },
}

impl SubjectId {
    /// Read a subject identifier object. Other RFC 9493 formats (`account`, `did`,
    /// `phone_number`, `aliases`) and unregistered ones are refused.
    pub fn parse(value: &Value) -> Result<Self, SetError> {
        Self::parse_at(value, true)
    }

    fn parse_at(value: &Value, complex_allowed: bool) -> Result<Self, SetError> {
        let Value::Object(object) = value else {
            return Err(SetError::Subject("a subject identifier must be a JSON object".into()));
        };
        let format = match object.get("format") {
            Some(Value::String(f)) => f.as_str(),
            _ => return Err(SetError::Subject("`format` is missing or not a string".into())),
        };
        let member = |name: &'static str| -> Result<String, SetError> {
            match object.get(name) {
                Some(Value::String(s)) => text(s, name).map_err(SetError::Subject),
                _ => Err(SetError::Subject(format!("`{format}` subject without a string `{name}`"))),
            }
        };
        match format {
            "iss_sub" => Ok(Self::IssSub { iss: member("iss")?, sub: member("sub")? }),
            "uri" => Ok(Self::Uri { uri: member("uri")? }),
            "opaque" => Ok(Self::Opaque { id: member("id")? }),
            "email" => Ok(Self::Email { email: member("email")? }),
            "complex" if complex_allowed => {
                let simple = object.get("application").or_else(|| object.get("user")).ok_or_else(|| {
                    SetError::Subject("`complex` subject names neither an `application` nor a `user`".into())
                })?;
                Self::parse_at(simple, false)
            }
            "complex" => Err(SetError::Subject("a `complex` subject inside a `complex` one".into())),
            other => {
                Err(SetError::Subject(format!("unsupported subject identifier format `{}`", clip(other))))
            }
        }
    }

    /// The format's name, as RFC 9493 registers it.
    pub fn format(&self) -> &'static str {
        match self {
            Self::IssSub { .. } => "iss_sub",
            Self::Uri { .. } => "uri",
            Self::Opaque { .. } => "opaque",
            Self::Email { .. } => "email",
        }
    }
}

/// What Tessera does with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// CAEP `session-revoked`.
    SessionRevoked,
    /// CAEP `credential-change` with this `change_type` (`create`, `revoke`, `update`,
    /// `delete`).
    CredentialChange { change_type: String },
    /// RISC `account-disabled`.
    AccountDisabled,
    /// RISC `credential-compromise`.
    CredentialCompromise,
    /// Any other type: acknowledged and recorded, nothing done.
    Unknown,
}

impl EventKind {
    /// Whether this event cuts its subject off. A `credential-change` that only creates a
    /// credential does not; every other change does (a revoked, deleted or replaced
    /// credential may have been what the workload's tokens came from).
    pub fn revokes(&self) -> bool {
        match self {
            Self::SessionRevoked | Self::AccountDisabled | Self::CredentialCompromise => true,
            Self::CredentialChange { change_type } => change_type != "create",
            Self::Unknown => false,
        }
    }
}

/// One event of a SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type URI.
    pub event_type: String,
    pub kind: EventKind,
    /// The event's subject: the SET's `sub_id`, else the event payload's `subject`. Always
    /// present for an event that revokes.
    pub subject: Option<SubjectId>,
    /// What the transmitter said of why (`reason_admin`, RISC `reason`), for the
    /// revocation's reason; clipped, control characters dropped.
    pub why: Option<String>,
}

/// The claims of a SET, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEventToken {
    pub jti: String,
    pub iss: String,
    /// Every `aud` value.
    pub audiences: Vec<String>,
    pub iat: i64,
    pub events: Vec<Event>,
}

/// Read a SET's claims (RFC 8417 §2.2, SSF 1.0 §4): `jti`, `iss`, `iat` required; `aud`
/// a string or strings; `events` a non-empty object of event objects; neither `exp` nor
/// `sub` (RFC 8417 §4.3 and SSF keep SETs from passing for ID or access tokens that way:
/// the subject goes in `sub_id` or the event). A malformed subject of an event Tessera
/// acts on refuses the SET; one of an event it ignores does not.
pub fn read_claims(claims: &Map<String, Value>) -> Result<SecurityEventToken, SetError> {
    for forbidden in ["exp", "sub"] {
        if claims.contains_key(forbidden) {
            return Err(malformed(format!("a SET must not carry `{forbidden}`")));
        }
    }
    let string = |name: &'static str| -> Result<String, SetError> {
        match claims.get(name) {
            Some(Value::String(s)) => text(s, name).map_err(SetError::Malformed),
            Some(_) => Err(malformed(format!("`{name}` is not a string"))),
            None => Err(malformed(format!("`{name}` is required"))),
        }
    };
    let jti = string("jti")?;
    let iss = string("iss")?;
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => {
            n.as_i64().filter(|t| *t >= 0).ok_or_else(|| malformed("`iat` is not a NumericDate"))?
        }
        Some(_) => return Err(malformed("`iat` is not a NumericDate")),
        None => return Err(malformed("`iat` is required")),
    };
    let audiences = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| malformed("`aud` holds a non-string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("`aud` is not a string or an array of strings")),
        None => return Err(malformed("`aud` is required")),
    };
    let sub_id = claims.get("sub_id");
    let Some(Value::Object(events)) = claims.get("events") else {
        return Err(malformed("`events` is missing or not an object"));
    };
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(malformed(format!("`events` must hold 1 to {MAX_EVENTS} events")));
    }
    let events = events
        .iter()
        .map(|(event_type, payload)| read_event(event_type, payload, sub_id))
        .collect::<Result<_, _>>()?;
    Ok(SecurityEventToken { jti, iss, audiences, iat, events })
}

fn read_event(event_type: &str, payload: &Value, sub_id: Option<&Value>) -> Result<Event, SetError> {
    let Value::Object(payload) = payload else {
        return Err(malformed("an event payload is not a JSON object"));
    };
    let event_error =
        |message: &str| SetError::Event { event: clip(event_type), message: message.to_string() };
    let kind = match event_type {
        event_type::SESSION_REVOKED => EventKind::SessionRevoked,
        event_type::ACCOUNT_DISABLED => EventKind::AccountDisabled,
        event_type::CREDENTIAL_COMPROMISE => EventKind::CredentialCompromise,
        event_type::CREDENTIAL_CHANGE => {
            // CAEP 1.0 §3.2: `credential_type` and `change_type` are required.
            if !matches!(payload.get("credential_type"), Some(Value::String(_))) {
                return Err(event_error("`credential_type` is missing or not a string"));
            }
            match payload.get("change_type") {
                Some(Value::String(c)) if ["create", "revoke", "update", "delete"].contains(&c.as_str()) => {
                    EventKind::CredentialChange { change_type: c.clone() }
                }
                _ => return Err(event_error("`change_type` is not create, revoke, update or delete")),
            }
        }
        _ => EventKind::Unknown,
    };
    let subject = match sub_id.or_else(|| payload.get("subject")) {
        Some(value) => match SubjectId::parse(value) {
            Ok(subject) => Some(subject),
            Err(e) if kind.revokes() => return Err(e),
            Err(_) => None,
        },
        None if kind.revokes() => {
            return Err(SetError::Subject("no `sub_id` claim and no `subject` in the event".into()));
        }
        None => None,
    };
    let why = reason_of(payload);
    Ok(Event { event_type: clip(event_type), kind, subject, why })
}

/// CAEP `reason_admin` (a string, or an object of language-tagged strings: `en` first,
/// else any), else RISC `reason`.
fn reason_of(payload: &Map<String, Value>) -> Option<String> {
    let said = match payload.get("reason_admin") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(by_language)) => {
            by_language.get("en").or_else(|| by_language.values().next()).and_then(Value::as_str)
        }
        _ => None,
    }
    .or_else(|| payload.get("reason").and_then(Value::as_str))?;
    let cleaned: String = said.chars().filter(|c| !c.is_control()).collect();
    (!cleaned.is_empty()).then(|| clip(&cleaned))
}

/// A non-empty string of at most [`MAX_TEXT`] bytes without control characters.
fn text(value: &str, name: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("`{name}` is empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(format!("`{name}` is longer than {MAX_TEXT} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{name}` holds control characters"));
    }
    Ok(value.to_string())
}

/// At most 200 bytes of `value`, cut on a character boundary: outside text quoted in logs
/// and errors stays short.
fn clip(value: &str) -> String {
    let mut end = value.len().min(200);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_string()
}

/// Read a SET payload given as JSON bytes, as [`read_claims`] does after verification. For
/// the fuzz target and tests.
pub fn read_payload(bytes: &[u8]) -> Result<SecurityEventToken, SetError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|_| malformed("the payload is not a JSON object"))?;
    read_claims(&claims)
}

#[cfg(test)]
#[path = "ssf_tests.rs"]
mod tests;
