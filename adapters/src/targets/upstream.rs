//! What the targets that call a platform (`aws_sts`, `gcp`, `azure`) share: the upstream
//! keys of their config, checks of algorithms and lifetimes, the claims of the JWT
//! Tessera presents, endpoint checks, one bounded POST with a timeout and a size limit,
//! and retries with backoff and jitter on retryable failures only.

use crate::net::request_error;
use std::future::Future;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::build::{BuildContext, BuildError};
use crate::config::{duration, format_duration};
use crate::net::check_url;
use crate::secret::Secret;
use crate::target::{Grant, Signer, SigningAlgorithm, TargetError};

/// Token endpoint answers are small JSON documents; anything bigger is not one.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Backoff before the second attempt; doubled for each later one, plus up to as much
/// again of random jitter so replicas retrying together spread out.
const BASE_BACKOFF: Duration = Duration::from_millis(100);

/// How long the JWT Tessera presents upstream lives. The platform reads it once, at the
/// exchange; a short life keeps a leaked copy useless.
pub const PRESENTED_TOKEN_LIFETIME: i64 = 300;

/// The keys every target that calls a platform takes (flattened into its config: written
/// beside `name` and `type`).
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    /// How long one upstream call may take, connect to last byte. Default `5s`, 1s to 60s.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts per upstream call, the first included. Only failures a retry can fix
    /// (timeouts, connection errors, HTTP 429 and 5xx, throttling) are tried again; a
    /// refusal never is. Default `3`, 1 to 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Allow plain `http` endpoints on a loopback host, for tests. Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// Let the broker serve an issued credential to repeated identical exchanges until
    /// shortly before it expires, sparing the platform's quotas. Default `true`.
    #[serde(default = "default_cache")]
    pub cache: bool,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            insecure_http: false,
            cache: default_cache(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_attempts() -> u32 {
    3
}

fn default_cache() -> bool {
    true
}

impl UpstreamSettings {
    /// Check the values; `target` names the target in the warning `insecure_http` logs.
    pub(crate) fn check(&self, target: &str) -> Result<(), BuildError> {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(BuildError::field("timeout", "timeout must be between 1s and 60s"));
        }
        if !(1..=5).contains(&self.max_attempts) {
            return Err(BuildError::field("max_attempts", "max_attempts must be between 1 and 5"));
        }
        if self.insecure_http {
            tracing::warn!(target_name = %target, "insecure_http is on: upstream endpoints may be plain http on loopback");
        }
        Ok(())
    }

    /// Parse and check an endpoint of this target (see [`endpoint`]).
    pub(crate) fn endpoint(&self, field: &'static str, text: &str) -> Result<String, BuildError> {
        endpoint(text, self.insecure_http).map_err(|e| BuildError::field(field, e))
    }
}

/// The signing algorithm of the JWT a target presents: one the platform accepts
/// (`accepted`) and the issuer has keys for.
pub(crate) fn check_algorithm(
    cx: &BuildContext,
    algorithm: SigningAlgorithm,
    accepted: &[SigningAlgorithm],
    platform: &str,
) -> Result<(), BuildError> {
    if !accepted.contains(&algorithm) {
        let names: Vec<&str> = accepted.iter().map(|a| a.as_str()).collect();
        return Err(BuildError::field(
            "algorithm",
            format!("{platform} accepts {} tokens, not {}", names.join(" or "), algorithm.as_str()),
        ));
    }
    check_issuer_key(cx, algorithm, "another")
}

/// The issuer has a key for `algorithm`; else the error names the ones it has, and says to
/// add it there or pick `alternative`.
pub(crate) fn check_issuer_key(
    cx: &BuildContext,
    algorithm: SigningAlgorithm,
    alternative: &str,
) -> Result<(), BuildError> {
    let available = cx.signer.algorithms();
    if !available.contains(&algorithm) {
        let names: Vec<&str> = available.iter().map(|a| a.as_str()).collect();
        return Err(BuildError::field(
            "algorithm",
            format!(
                "the issuer has no {} key (issuer.algorithms: [{}]); add it there or pick {alternative}",
                algorithm.as_str(),
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `max_ttl` within `min..=cap`, and `default_ttl` within `min..=max_ttl`.
pub(crate) fn check_ttls(
    max_ttl: Duration,
    default_ttl: Duration,
    min: Duration,
    cap: Duration,
) -> Result<(), BuildError> {
    let min = min.max(Duration::from_secs(1));
    if max_ttl < min || max_ttl > cap {
        return Err(BuildError::field(
            "max_ttl",
            format!(
                "max_ttl {} must be between {} and {}",
                format_duration(max_ttl),
                format_duration(min),
                format_duration(cap)
            ),
        ));
    }
    if default_ttl < min || default_ttl > max_ttl {
        return Err(BuildError::field(
            "default_ttl",
            format!(
                "default_ttl {} must be between {} and max_ttl ({})",
                format_duration(default_ttl),
                format_duration(min),
                format_duration(max_ttl)
            ),
        ));
    }
    Ok(())
}

/// A grant made for another target is a bug in the caller; refuse it before anything is
/// signed.
pub(crate) fn check_grant_target(grant: &Grant, name: &str) -> Result<(), TargetError> {
    if grant.target() == name {
        Ok(())
    } else {
        Err(TargetError::InvalidGrant(format!("grant is for target `{}`, not `{name}`", grant.target())))
    }
}

/// A grant of no lifetime is a bug in the caller (the mapping engine refuses `ttl: 0`);
/// every target refuses it rather than issue something anyway.
pub(crate) fn check_granted_lifetime(grant: &Grant) -> Result<(), TargetError> {
    if grant.ttl().is_zero() {
        Err(TargetError::InvalidGrant("granted lifetime is zero".into()))
    } else {
        Ok(())
    }
}

/// The claims of the JWT Tessera presents to a platform (web identity token, subject
/// token, client assertion): who (`sub`), for whom (`aud`), by whom (`iss`), briefly
/// (`exp` = now + [`PRESENTED_TOKEN_LIFETIME`]), once (`jti`).
pub(crate) fn presented_claims(signer: &dyn Signer, sub: &str, aud: &str, now: i64) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(signer.issuer()));
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("aud".into(), Value::from(aud));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("nbf".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(PRESENTED_TOKEN_LIFETIME)));
    claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().to_string()));
    claims
}

/// Parse and check a configured endpoint: `https`, or `http` on loopback with
/// `insecure_http`, with no query or fragment. A trailing `/` is dropped so paths join
/// cleanly.
pub(crate) fn endpoint(text: &str, insecure_http: bool) -> Result<String, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    check_url(&url, insecure_http)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// `application/x-www-form-urlencoded`.
    Form(&'a [(&'a str, &'a str)]),
    /// `application/json`.
    Json(&'a serde_json::Value),
}

/// An upstream's answer: status and body, read whole within the size limit.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One POST within `timeout` (connect, send and read together), with a whole
/// `Authorization` header value (`Bearer ...`, or `Basic ...` for RFC 6749 §2.3.1 client
/// authentication). Transport failures and timeouts are retryable; an oversized answer is
/// not. `what` names the upstream in causes.
pub(crate) async fn post_authorized(
    http: &reqwest::Client,
    url: &str,
    authorization: Option<&Secret<String>>,
    body: Body<'_>,
    timeout: Duration,
    what: &str,
) -> Result<Answer, TargetError> {
    let exchange = async {
        let mut request = http.post(url).timeout(timeout);
        if let Some(credentials) = authorization {
            let mut value = HeaderValue::from_str(credentials.expose())
                .map_err(|_| upstream(false, format!("{what}: credentials are not a valid header value")))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        request = match body {
            Body::Form(fields) => request.form(fields),
            Body::Json(value) => request.json(value),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| upstream(true, format!("{what}: {}", request_error(&url, &e))))?;
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(upstream(false, format!("{what}: answer over {MAX_RESPONSE_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| upstream(true, format!("{what}: {}", request_error(&url, &e))))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(upstream(false, format!("{what}: answer over {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| upstream(true, format!("{what}: no answer within {}s", timeout.as_secs())))?
}

/// One POST as [`post_authorized`] makes it, with a bearer token, retried per `settings` while it fails in a way a retry
/// may fix: a transport failure, a timeout, or an answer of 429 or 5xx. Other answers are
/// returned for the caller to read.
pub(crate) async fn post_with_retries(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&Secret<String>>,
    body: Body<'_>,
    settings: &UpstreamSettings,
    what: &str,
) -> Result<Answer, TargetError> {
    let authorization = bearer.map(|token| Secret::new(format!("Bearer {}", token.expose())));
    post_authorized_with_retries(http, url, authorization.as_ref(), body, settings, what).await
}

/// [`post_with_retries`] with a whole `Authorization` header value.
pub(crate) async fn post_authorized_with_retries(
    http: &reqwest::Client,
    url: &str,
    authorization: Option<&Secret<String>>,
    body: Body<'_>,
    settings: &UpstreamSettings,
    what: &str,
) -> Result<Answer, TargetError> {
    with_retries(settings.max_attempts, || async {
        let answer = post_authorized(http, url, authorization, body, settings.timeout, what).await?;
        if retryable_status(answer.status) {
            return Err(upstream(true, format!("{what} answered {}", answer.status)));
        }
        Ok(answer)
    })
    .await
}

/// Run `call` up to `attempts` times, retrying only `Upstream { retryable: true }`. The
/// last failure's cause says how many attempts were made.
pub(crate) async fn with_retries<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, TargetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TargetError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(TargetError::Upstream { retryable: true, cause }) if attempt < attempts => {
                tracing::warn!(attempt, cause = %cause, "upstream call failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(TargetError::Upstream { retryable, cause }) if attempt > 1 => {
                return Err(TargetError::Upstream {
                    retryable,
                    cause: format!("{cause} (after {attempt} attempts)"),
                });
            }
            other => return other,
        }
    }
}

/// The pause after failed attempt `attempt` (1-based): exponential with full jitter added.
fn backoff(attempt: u32) -> Duration {
    let base = BASE_BACKOFF.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let mut bytes = [0u8; 2];
    let jitter = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => base.mul_f64(f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX)),
        Err(_) => Duration::ZERO,
    };
    base.saturating_add(jitter)
}

pub(crate) fn upstream(retryable: bool, cause: String) -> TargetError {
    TargetError::Upstream { retryable, cause }
}

/// How a status other than success is classified: 429 and 5xx are worth retrying.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// A value read from an upstream answer that Tessera puts in an error: kept only when it
/// is a short plain identifier (`invalid_grant`, `PERMISSION_DENIED`), so no free text
/// (which may echo request values) reaches logs or audit.
pub(crate) fn plain_code(value: Option<&str>) -> Option<String> {
    let v = value?;
    let plain = !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    plain.then(|| v.to_string())
}

/// Whole seconds from an RFC 3339 UTC timestamp (`2026-11-23T10:00:00Z`, fractional
/// seconds allowed and dropped), as Google's `expireTime` is written (`google.protobuf.Timestamp`
/// JSON form).
pub(crate) fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| {
        text.get(from..to).filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?.parse::<i64>().ok()
    };
    let shape = b.len() >= 20
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && b.get(10) == Some(&b'T')
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':')
        && b.last() == Some(&b'Z');
    if !shape {
        return None;
    }
    // Between the seconds and `Z`: nothing, or `.` and 1 to 9 digits.
    let fraction = text.get(19..text.len() - 1)?;
    if !fraction.is_empty() {
        let digits = fraction.strip_prefix('.')?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    // H. Hinnant's `days_from_civil`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform's target and a Tessera-signed one each say what to do when the issuer
    /// has no key for the algorithm.
    #[test]
    fn a_missing_issuer_key_is_named_with_the_ones_there_are() {
        use SigningAlgorithm::{Es256, Rs256};
        let cx = crate::targets::testkit::context(&[Es256]);
        let err = check_algorithm(&cx, Rs256, &[Rs256, Es256], "AWS").unwrap_err();
        assert_eq!(err.field, Some("algorithm"));
        assert_eq!(
            err.message,
            "the issuer has no RS256 key (issuer.algorithms: [ES256]); add it there or pick another"
        );
        let ttl = Duration::from_secs(60);
        let err = crate::targets::signed::check_signing(&cx, Rs256, ttl, ttl, ttl).unwrap_err();
        assert_eq!(
            err.message,
            "the issuer has no RS256 key (issuer.algorithms: [ES256]); add it there or pick one of those"
        );
        let err = check_algorithm(&cx, Es256, &[Rs256], "Entra").unwrap_err();
        assert_eq!(err.message, "Entra accepts RS256 tokens, not ES256");
        assert!(check_algorithm(&cx, Es256, &[Rs256, Es256], "AWS").is_ok());
    }

    #[test]
    fn rfc3339_parses_google_timestamps() {
        assert_eq!(parse_rfc3339_utc("2026-11-23T08:24:16Z"), Some(1_795_422_256));
        assert_eq!(parse_rfc3339_utc("2026-11-23T08:24:16.123456789Z"), Some(1_795_422_256));
        assert_eq!(parse_rfc3339_utc("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T08:24:16",
            "2026-11-23T08:24:16+01:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T08:24:16.Z",
            "2026-11-23T08:24:16.1234567890Z",
            "2026-11-23T0a:24:16Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn endpoints_are_https_or_loopback_http_when_allowed() {
        assert_eq!(
            endpoint("https://sts.googleapis.com/", false).as_deref(),
            Ok("https://sts.googleapis.com")
        );
        assert!(endpoint("http://sts.googleapis.com", false).is_err());
        assert!(endpoint("http://sts.googleapis.com", true).is_err());
        assert_eq!(endpoint("http://127.0.0.1:9/", true).as_deref(), Ok("http://127.0.0.1:9"));
        assert!(endpoint("https://sts.googleapis.com/?x=1", false).is_err());
        assert!(endpoint("not a url", false).is_err());
    }

    #[test]
    fn only_plain_codes_are_kept() {
        assert_eq!(plain_code(Some("invalid_grant")).as_deref(), Some("invalid_grant"));
        assert_eq!(plain_code(Some("PERMISSION_DENIED")).as_deref(), Some("PERMISSION_DENIED"));
        assert_eq!(plain_code(Some("token eyJ.x.y rejected")), None);
        assert_eq!(plain_code(Some("")), None);
        assert_eq!(plain_code(None), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..5 {
            let base = BASE_BACKOFF * 2u32.pow(attempt - 1);
            let d = backoff(attempt);
            assert!(d >= base && d <= base * 2, "{attempt}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_retryable_failures_are_retried_and_attempts_are_bounded() {
        let mut calls = 0;
        let r: Result<(), _> = with_retries(3, || {
            calls += 1;
            async { Err(upstream(true, "down".into())) }
        })
        .await;
        match r {
            Err(TargetError::Upstream { retryable: true, cause }) => {
                assert_eq!(cause, "down (after 3 attempts)")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r: Result<(), _> = with_retries(1, || {
            calls += 1;
            async { Err(upstream(true, "down".into())) }
        })
        .await;
        assert!(matches!(r, Err(TargetError::Upstream { retryable: true, cause }) if cause == "down"));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r: Result<(), _> = with_retries(3, || {
            calls += 1;
            async { Err(TargetError::UpstreamRejected("invalid_grant".into())) }
        })
        .await;
        assert!(matches!(r, Err(TargetError::UpstreamRejected(_))));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r = with_retries(3, || {
            calls += 1;
            let n = calls;
            async move { if n < 2 { Err(upstream(true, "blip".into())) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }
}
