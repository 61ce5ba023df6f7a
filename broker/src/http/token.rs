//! `POST /v1/token`: RFC 8693 token exchange, form-encoded (RFC 6749 §4.1.3 style) or JSON.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use tessera_adapters::oauth::grant_type;
use tessera_adapters::{Secret, SubjectToken, SubjectTokenType};

use super::error::{ErrorBody, WireError};
use crate::broker::Broker;
use crate::exchange::ExchangeRequest;
use crate::jwt_bearer::GrantType;

/// The RFC 8693 §2.2.1 success body.
#[derive(Debug, Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    issued_token_type: &'a str,
    token_type: &'a str,
    expires_in: i64,
    /// `aws_credentials` or `postgres_credentials`, when the credential has either.
    #[serde(flatten)]
    platform_credentials: Option<&'a tessera_adapters::target::PlatformCredentials>,
}

pub async fn exchange(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Arc<Broker>>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let limits = broker.limits();
    let parsed = match read_params(&req, payload, limits.max_body_bytes, &[]).await {
        Ok(params) => {
            let client_addr = req.peer_addr().map(|a| a.ip().to_string());
            to_request(params, limits.max_token_bytes, &request_id, client_addr)
        }
        Err(e) => Err(e),
    };
    let exchange_request = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(request_id = %request_id, error = e.code(), cause = e.description(), "token request refused at the edge");
            return refuse(e, &request_id);
        }
    };
    match broker.pipeline().exchange(exchange_request).await {
        Ok(done) => {
            let c = &done.credential;
            let body = TokenResponse {
                access_token: c.access_token.expose(),
                issued_token_type: c.issued_token_type,
                token_type: c.token_type,
                expires_in: done.expires_in,
                platform_credentials: c.platform_credentials.as_ref(),
            };
            no_store(HttpResponse::Ok(), &request_id).json(body)
        }
        Err(e) => refuse(WireError::from(&e), &request_id),
    }
}

/// RFC 6749 §5.1: token responses are never cached.
pub(super) fn no_store(
    mut builder: actix_web::HttpResponseBuilder,
    request_id: &str,
) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header(("x-request-id", request_id.to_string()));
    builder
}

pub(super) fn refuse(e: WireError, request_id: &str) -> HttpResponse {
    let mut builder = no_store(HttpResponse::build(e.status()), request_id);
    if let Some(secs) = e.retry_after() {
        builder.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    builder.json(ErrorBody::fixed(e))
}

/// At most this many parameters in one request. RFC 8693 defines fewer than 12, so a longer
/// list is no token request; the cap keeps reading a body cheap whatever it holds.
pub(super) const MAX_PARAMETERS: usize = 32;

/// The parameter names the edge knows: RFC 8693 §2.1, RFC 7523 §2.1 and §2.2, RFC 6749
/// §2.3.1, draft-ietf-oauth-transaction-tokens-10 §10.1. Each may be given once (RFC 6749 §3.2); other names are counted against
/// [`MAX_PARAMETERS`] and otherwise ignored.
const KNOWN: [&str; 16] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "audience",
    "scope",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
    "resource",
    "assertion",
    "client_assertion",
    "client_assertion_type",
    "client_id",
    "client_secret",
    "request_context",
    "request_details",
];

/// A request's parameters: one slot per known name ([`KNOWN`], then the endpoint's own
/// `extra` names), filled at most once. Each parameter is looked up in the fixed tables
/// once, so reading is linear in their number, which is capped. No `Debug`: the slots hold
/// the subject token.
pub(super) struct Params {
    extra: &'static [&'static str],
    values: Vec<Option<String>>,
    count: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Params {
    fn new(extra: &'static [&'static str]) -> Self {
        Self { extra, values: vec![None; KNOWN.len() + extra.len()], count: 0 }
    }

    fn index(&self, name: &str) -> Option<usize> {
        KNOWN.iter().chain(self.extra).position(|k| *k == name)
    }

    fn add(&mut self, name: &str, value: Cow<'_, str>) -> Result<(), WireError> {
        self.count += 1;
        if self.count > MAX_PARAMETERS {
            return Err(WireError::TooManyParameters);
        }
        let Some(slot) = self.index(name).and_then(|i| self.values.get_mut(i)) else {
            return Ok(());
        };
        if slot.is_some() {
            return Err(WireError::RepeatedParameter);
        }
        *slot = Some(value.into_owned());
        Ok(())
    }

    /// A known parameter's value; an empty value counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let i = self.index(name)?;
        self.values.get(i)?.as_deref().filter(|v| !v.is_empty())
    }
}

/// The body's parameters, [`KNOWN`] and `extra`, form-encoded or JSON, at most `limit` bytes.
pub(super) async fn read_params(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    extra: &'static [&'static str],
) -> Result<Params, WireError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_form = match essence.as_str() {
        "application/x-www-form-urlencoded" => true,
        "application/json" => false,
        _ => return Err(WireError::ContentType),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WireError::BodyTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| WireError::MalformedBody)?;
        if body.len() + chunk.len() > limit {
            return Err(WireError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let params = Params::new(extra);
    if is_form { fill_form(&body, params) } else { fill_json(&body, params) }
}

#[cfg(any(test, feature = "fuzzing"))]
fn parse_form(body: &[u8]) -> Result<Params, WireError> {
    fill_form(body, Params::default())
}

#[cfg(any(test, feature = "fuzzing"))]
fn parse_json(body: &[u8]) -> Result<Params, WireError> {
    fill_json(body, Params::default())
}

/// `application/x-www-form-urlencoded` (RFC 6749 §4.1.3 style), read pair by pair and no
/// further than the first refusal.
fn fill_form(body: &[u8], mut params: Params) -> Result<Params, WireError> {
    for (name, value) in url::form_urlencoded::parse(body) {
        params.add(&name, value)?;
    }
    Ok(params)
}

/// A JSON object of string values, read member by member and no further than the first
/// refusal.
fn fill_json(body: &[u8], mut params: Params) -> Result<Params, WireError> {
    let mut refused = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = (&mut de)
        .deserialize_map(JsonMembers { params: &mut params, refused: &mut refused })
        .and_then(|()| de.end());
    match (refused, read) {
        (Some(refusal), _) => Err(refusal),
        (None, Err(_)) => Err(WireError::MalformedBody),
        (None, Ok(())) => Ok(params),
    }
}

/// Fills [`Params`] from a JSON object. A refusal stops the read; it is kept in `refused`,
/// as serde's error type cannot carry it.
struct JsonMembers<'a> {
    params: &'a mut Params,
    refused: &'a mut Option<WireError>,
}

impl<'de> Visitor<'de> for JsonMembers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((name, value)) = map.next_entry::<String, String>()? {
            if let Err(refusal) = self.params.add(&name, Cow::Owned(value)) {
                *self.refused = Some(refusal);
                return Err(de::Error::custom("request refused"));
            }
        }
        Ok(())
    }
}

/// The body parsers and the checks of the parameters read, for the cargo-fuzz target in
/// `fuzz/` (the `fuzzing` feature only); `true` when the body is a well-formed exchange.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_token_request(body: &[u8], json: bool) -> bool {
    let params = if json { parse_json(body) } else { parse_form(body) };
    params.and_then(|p| to_request(p, tessera_adapters::jwt::MAX_TOKEN_BYTES, "fuzz", None)).is_ok()
}

pub(super) fn to_request(
    params: Params,
    max_token_bytes: usize,
    request_id: &str,
    client_addr: Option<String>,
) -> Result<ExchangeRequest, WireError> {
    match params.get("grant_type") {
        None => return Err(WireError::MissingGrantType),
        Some(grant_type::TOKEN_EXCHANGE) => {}
        Some(grant_type::JWT_BEARER) => {
            return jwt_bearer_request(&params, max_token_bytes, request_id, client_addr);
        }
        Some(_) => return Err(WireError::UnsupportedGrantType),
    }
    if params.get("resource").is_some() {
        return Err(WireError::UnsupportedParameter);
    }
    if params.get("requested_token_type") == Some(tessera_adapters::oauth::token_type::TXN_TOKEN) {
        if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
            return Err(WireError::ActorInTxnRequest);
        }
        return crate::txn::read_request(|name| params.get(name), max_token_bytes, request_id, client_addr);
    }
    let actor_token = actor_token(&params, max_token_bytes)?;
    // `curl --data-urlencode subject_token@file` keeps the file's last newline. Whitespace
    // inside a token is left for its source to refuse.
    let token = params
        .get("subject_token")
        .map(str::trim_ascii)
        .filter(|t| !t.is_empty())
        .ok_or(WireError::MissingSubjectToken)?;
    if token.len() > max_token_bytes {
        return Err(WireError::TokenTooLarge);
    }
    let token_type = params.get("subject_token_type").ok_or(WireError::MissingSubjectTokenType)?;
    let token_type = SubjectTokenType::from_uri(token_type).ok_or(WireError::UnsupportedSubjectTokenType)?;
    let audience = params.get("audience").ok_or(WireError::MissingAudience)?;
    let scope = single_scope(&params)?;
    Ok(ExchangeRequest {
        request_id: request_id.to_string(),
        subject_token: SubjectToken { token_type, value: Secret::new(token.to_string()) },
        audience: audience.to_string(),
        scope,
        requested_token_type: params.get("requested_token_type").map(str::to_string),
        client_addr,
        grant_type: GrantType::TokenExchange,
        actor_token,
        txn: None,
    })
}

/// The one scope value a request may name, trimmed.
fn single_scope(params: &Params) -> Result<Option<String>, WireError> {
    let scope = params.get("scope");
    if scope.is_some_and(|s| s.split(' ').filter(|p| !p.is_empty()).count() > 1) {
        return Err(WireError::MultipleScopes);
    }
    Ok(scope.map(|s| s.trim().to_string()))
}

/// An RFC 7523 §2.1 JWT bearer grant: `assertion` (one JWT), `audience` naming the target
/// (Tessera issues for a named target, as in a token exchange) and an optional `scope`.
/// The token exchange's own parameters have no meaning here and are refused rather than
/// ignored. Client authentication (§2.2) is optional in RFC 7523 and not asked for.
fn jwt_bearer_request(
    params: &Params,
    max_token_bytes: usize,
    request_id: &str,
    client_addr: Option<String>,
) -> Result<ExchangeRequest, WireError> {
    const NOT_FOR_THIS_GRANT: [&str; 6] = [
        "subject_token",
        "subject_token_type",
        "requested_token_type",
        "actor_token",
        "actor_token_type",
        "resource",
    ];
    if NOT_FOR_THIS_GRANT.iter().any(|name| params.get(name).is_some()) {
        return Err(WireError::ParameterNotForGrant);
    }
    let assertion = params
        .get("assertion")
        .map(str::trim_ascii)
        .filter(|t| !t.is_empty())
        .ok_or(WireError::MissingAssertion)?;
    if assertion.len() > max_token_bytes {
        return Err(WireError::TokenTooLarge);
    }
    let audience = params.get("audience").ok_or(WireError::MissingAudience)?;
    let scope = single_scope(params)?;
    Ok(ExchangeRequest {
        request_id: request_id.to_string(),
        subject_token: SubjectToken {
            token_type: SubjectTokenType::Jwt,
            value: Secret::new(assertion.to_string()),
        },
        audience: audience.to_string(),
        scope,
        requested_token_type: None,
        client_addr,
        grant_type: GrantType::JwtBearer,
        actor_token: None,
        txn: None,
    })
}

/// RFC 8693 §2.1: `actor_token` and `actor_token_type` come together or not at all; the
/// actor token takes the subject token's types and size limit, and is trimmed alike.
fn actor_token(params: &Params, max_token_bytes: usize) -> Result<Option<SubjectToken>, WireError> {
    let token = params.get("actor_token").map(str::trim_ascii).filter(|t| !t.is_empty());
    match (token, params.get("actor_token_type")) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(WireError::IncompleteActor),
        (Some(token), Some(token_type)) => {
            if token.len() > max_token_bytes {
                return Err(WireError::ActorTokenTooLarge);
            }
            let token_type =
                SubjectTokenType::from_uri(token_type).ok_or(WireError::UnsupportedActorTokenType)?;
            Ok(Some(SubjectToken { token_type, value: Secret::new(token.to_string()) }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_EXCHANGE: &str = grant_type::TOKEN_EXCHANGE;
    const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    fn json(pairs: &[(&str, &str)]) -> Vec<u8> {
        let members: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}:{}", serde_json::json!(k), serde_json::json!(v))).collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    }

    /// Both encodings of the same pairs must read alike.
    fn parse_both(pairs: &[(&str, &str)]) -> Result<Params, WireError> {
        let from_form = parse_form(&form(pairs));
        let from_json = parse_json(&json(pairs));
        match (from_form, from_json) {
            (Ok(f), Ok(j)) => {
                assert_eq!((f.values.clone(), f.count), (j.values.clone(), j.count), "{pairs:?}");
                Ok(f)
            }
            (Err(f), Err(j)) => {
                assert_eq!(f, j, "{pairs:?}");
                Err(f)
            }
            (f, j) => panic!("form {:?} and JSON {:?} disagree on {pairs:?}", f.err(), j.err()),
        }
    }

    fn request(pairs: &[(&str, &str)]) -> Result<ExchangeRequest, WireError> {
        to_request(parse_both(pairs)?, 16 * 1024, "req-1", None)
    }

    #[test]
    fn known_parameters_are_read_once_and_unknown_ones_only_counted() {
        let params = parse_both(&[("grant_type", TOKEN_EXCHANGE), ("x", "1"), ("x", "2"), ("audience", "a")])
            .expect("a repeated unknown name is only counted");
        assert_eq!(params.get("grant_type"), Some(TOKEN_EXCHANGE));
        assert_eq!(params.get("audience"), Some("a"));
        assert_eq!(params.get("x"), None);
        assert_eq!(params.count, 4);
        for name in KNOWN {
            let repeated = parse_both(&[(name, "a"), ("audience2", "b"), (name, "")]);
            assert_eq!(repeated.err(), Some(WireError::RepeatedParameter), "{name}");
        }
        assert_eq!(parse_both(&[("scope", "")]).expect("empty").get("scope"), None, "empty is absent");
    }

    #[test]
    fn more_than_the_cap_is_refused_wherever_the_names_repeat() {
        let names: Vec<String> = (0..=MAX_PARAMETERS).map(|i| format!("p{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
        assert!(parse_both(pairs.get(..MAX_PARAMETERS).unwrap()).is_ok(), "exactly the cap");
        assert_eq!(parse_both(&pairs).err(), Some(WireError::TooManyParameters));
        let same = vec![("p", ""); MAX_PARAMETERS + 1];
        assert_eq!(parse_both(&same).err(), Some(WireError::TooManyParameters));
        // The read stops at the cap: what follows is never looked at.
        let mut text = String::from_utf8(json(&pairs)).unwrap();
        text.truncate(text.len() - 1);
        text.push_str(", \"late\": 5, oops");
        assert_eq!(parse_json(text.as_bytes()).err(), Some(WireError::TooManyParameters));
        assert!(
            WireError::TooManyParameters.description().contains(&MAX_PARAMETERS.to_string()),
            "the fixed text names the cap"
        );
    }

    #[test]
    fn json_bodies_are_objects_of_strings() {
        for body in
            [&b"[1,2]"[..], b"null", b"{\"grant_type\": 5}", b"{\"x\": {}}", b"{} {}", b"{\"a\":\"b\""]
        {
            assert_eq!(
                parse_json(body).err(),
                Some(WireError::MalformedBody),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_json(b"{}").expect("empty object").count, 0);
    }

    #[test]
    fn whitespace_around_the_subject_token_is_trimmed_and_inside_kept() {
        let base = |token: &'static str| {
            [
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", JWT),
                ("audience", "a"),
            ]
        };
        for token in ["a.b.c\n", "\r\n a.b.c \t", "a.b.c"] {
            let r = request(&base(token)).expect("accepted");
            assert_eq!(r.subject_token.value.expose(), "a.b.c", "{token:?}");
        }
        let r = request(&base("a.b .c\n")).expect("left for the source");
        assert_eq!(r.subject_token.value.expose(), "a.b .c");
        assert_eq!(request(&base(" \n ")).err(), Some(WireError::MissingSubjectToken));
    }

    #[test]
    fn an_actor_token_comes_with_its_type_and_within_the_limit() {
        fn with(extra: &[(&str, &str)]) -> Result<ExchangeRequest, WireError> {
            let mut pairs = vec![
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", "s.s.s"),
                ("subject_token_type", JWT),
                ("audience", "a"),
            ];
            pairs.extend_from_slice(extra);
            request(&pairs)
        }
        let r = with(&[("actor_token", " a.b.c\n"), ("actor_token_type", JWT)]).expect("delegation");
        let actor = r.actor_token.expect("an actor");
        assert_eq!((actor.value.expose().as_str(), actor.token_type), ("a.b.c", SubjectTokenType::Jwt));
        assert!(with(&[]).expect("no actor").actor_token.is_none());
        assert_eq!(with(&[("actor_token", "a.b.c")]).err(), Some(WireError::IncompleteActor));
        assert_eq!(with(&[("actor_token_type", JWT)]).err(), Some(WireError::IncompleteActor));
        assert_eq!(
            with(&[("actor_token", " "), ("actor_token_type", JWT)]).err(),
            Some(WireError::IncompleteActor)
        );
        assert_eq!(
            with(&[("actor_token", "a.b.c"), ("actor_token_type", "urn:x")]).err(),
            Some(WireError::UnsupportedActorTokenType)
        );
        let long = "a".repeat(16 * 1024 + 1);
        assert_eq!(
            with(&[("actor_token", &long), ("actor_token_type", JWT)]).err(),
            Some(WireError::ActorTokenTooLarge)
        );
    }

    /// The requesting workload of a Txn-Token request authenticates with `client_assertion`;
    /// an actor has no place in it, and is refused rather than ignored.
    #[test]
    fn a_txn_token_request_takes_no_actor() {
        for extra in [("actor_token", "a.b.c"), ("actor_token_type", JWT)] {
            let pairs = [
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", tessera_adapters::oauth::token_type::TXN_TOKEN),
                ("subject_token", "s.s.s"),
                ("subject_token_type", JWT),
                ("audience", "trust-domain.example"),
                ("scope", "read"),
                extra,
            ];
            assert_eq!(request(&pairs).err(), Some(WireError::ActorInTxnRequest), "{}", extra.0);
        }
    }

    #[test]
    fn resource_indicators_are_refused() {
        let pairs = [("grant_type", TOKEN_EXCHANGE), ("subject_token", "t"), ("resource", "x")];
        assert_eq!(request(&pairs).err(), Some(WireError::UnsupportedParameter));
    }

    #[test]
    fn a_jwt_bearer_grant_carries_its_assertion_as_a_jwt_and_needs_an_audience() {
        const BEARER: &str = grant_type::JWT_BEARER;
        let r = request(&[
            ("grant_type", BEARER),
            ("assertion", "a.b.c\n"),
            ("audience", "api"),
            ("scope", "read"),
        ])
        .expect("accepted");
        assert_eq!(r.grant_type, GrantType::JwtBearer);
        assert_eq!(r.subject_token.token_type, SubjectTokenType::Jwt);
        assert_eq!(r.subject_token.value.expose(), "a.b.c");
        assert_eq!((r.audience.as_str(), r.scope.as_deref()), ("api", Some("read")));
        assert_eq!(
            request(&[("grant_type", BEARER), ("audience", "api")]).err(),
            Some(WireError::MissingAssertion)
        );
        assert_eq!(
            request(&[("grant_type", BEARER), ("assertion", "a.b.c")]).err(),
            Some(WireError::MissingAudience)
        );
        for name in ["subject_token", "subject_token_type", "requested_token_type", "actor_token", "resource"]
        {
            let pairs = [("grant_type", BEARER), ("assertion", "a.b.c"), ("audience", "api"), (name, "x")];
            assert_eq!(request(&pairs).err(), Some(WireError::ParameterNotForGrant), "{name}");
        }
        let long = "a".repeat(16 * 1024 + 1);
        assert_eq!(
            request(&[("grant_type", BEARER), ("assertion", &long), ("audience", "api")]).err(),
            Some(WireError::TokenTooLarge)
        );
    }

    /// The platform's part of a credential is one member named by its platform, beside the
    /// RFC 8693 members; a lone token has none.
    #[test]
    fn a_token_response_names_the_platform_credentials_by_their_platform() {
        use tessera_adapters::Secret;
        use tessera_adapters::target::{AwsCredentials, PlatformCredentials, PostgresCredentials};

        let response = |platform_credentials| {
            serde_json::to_value(TokenResponse {
                access_token: "t",
                issued_token_type: "urn:x",
                token_type: "N_A",
                expires_in: 60,
                platform_credentials,
            })
            .unwrap()
        };
        let aws = PlatformCredentials::Aws(AwsCredentials {
            access_key_id: "ASIA".into(),
            secret_access_key: Secret::new("secret".into()),
            session_token: Secret::new("session".into()),
            expiration: "2026-01-01T00:00:00Z".into(),
        });
        let postgres = PlatformCredentials::Postgres(PostgresCredentials {
            username: "tessera_a".into(),
            password: Secret::new("pw".into()),
            expires_at: "2026-01-01T00:00:00Z".into(),
            host: Some("db".into()),
            port: None,
            database: None,
        });
        let plain = serde_json::json!({
            "access_token": "t", "issued_token_type": "urn:x", "token_type": "N_A", "expires_in": 60
        });
        assert_eq!(response(None), plain);
        let mut with_aws = plain.clone();
        with_aws["aws_credentials"] = serde_json::json!({
            "AccessKeyId": "ASIA", "SecretAccessKey": "secret", "SessionToken": "session",
            "Expiration": "2026-01-01T00:00:00Z"
        });
        assert_eq!(response(Some(&aws)), with_aws);
        let mut with_login = plain;
        with_login["postgres_credentials"] = serde_json::json!({
            "username": "tessera_a", "password": "pw", "expires_at": "2026-01-01T00:00:00Z", "host": "db"
        });
        assert_eq!(response(Some(&postgres)), with_login);
    }
}
