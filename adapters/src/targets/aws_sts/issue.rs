//! The web identity token, the `AssumeRoleWithWebIdentity` call and its errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_web_identity::{
    AssumeRoleWithWebIdentityError, AssumeRoleWithWebIdentityOutput,
};
use aws_sdk_sts::types::PolicyDescriptorType;
use serde_json::{Map, Value, json};

use super::session::{self, Extras, SOURCE_IDENTITY_CLAIM};

use crate::clock::{Clock, format_rfc3339};
use crate::oauth::token_type;
use crate::secret::Secret;
use crate::target::{
    AwsCredentials, CredentialTarget, Grant, IssuedCredential, PlatformCredentials, RequestDescription,
    RuleParam, RuleText, Signer, SigningAlgorithm, TargetBase, TargetError,
};
use crate::targets::upstream::{self, UpstreamSettings};

/// The claim AWS reads session tags from (IAM User Guide, "Passing session tags using
/// AssumeRoleWithWebIdentity").
pub const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// STS limits on session tags: count, key and value length (in characters).
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// The grant keys a rule for this target may set.
const GRANT_KEYS: &[&str] =
    &["role_arn", "session_name", "tags", "source_identity", "transitive_tag_keys", "policy", "policy_arns"];

/// Everything [`AwsStsTargetConfig`](super::AwsStsTargetConfig) checked.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub base: TargetBase,
    pub region: String,
    pub endpoint: Option<String>,
    pub audience: String,
    pub algorithm: SigningAlgorithm,
    pub transitive_tag_keys: Vec<String>,
    pub upstream: UpstreamSettings,
}

/// A configured `aws_sts` target.
#[derive(Debug)]
pub struct AwsStsTarget {
    settings: Settings,
    client: aws_sdk_sts::Client,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
}

/// What a grant asks STS for, checked, before a token is signed.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub role_arn: String,
    pub session_name: String,
    pub tags: BTreeMap<String, String>,
    pub duration_seconds: i32,
    pub extras: Extras,
}

/// What one `AssumeRoleWithWebIdentity` call asks for.
#[derive(Debug, Clone)]
pub(super) struct StsRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: i32,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub token: Secret<String>,
}

impl AwsStsTarget {
    pub(super) fn new(settings: Settings, signer: Arc<dyn Signer>, clock: Arc<dyn Clock>) -> Self {
        let timeout = settings.upstream.timeout;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(timeout)
            .operation_attempt_timeout(timeout)
            .operation_timeout(timeout)
            .build();
        let mut config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new(settings.region.clone()))
            // Retries are Tessera's own (`upstream::with_retries`), so that only failures
            // a retry can fix are retried and the attempt count is the configured one.
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        let client = aws_sdk_sts::Client::from_conf(config.build());
        Self { settings, client, signer, clock }
    }

    /// The `aud` of web identity tokens.
    pub fn audience(&self) -> &str {
        &self.settings.audience
    }

    /// What `grant` asks STS for: the role, session name, tags and duration. Every check
    /// a grant can fail happens here, before anything is signed or sent.
    pub(super) fn plan(&self, grant: &Grant) -> Result<Plan, TargetError> {
        upstream::check_grant_target(grant, &self.settings.base.name)?;
        upstream::check_granted_lifetime(grant)?;
        let role_arn = grant
            .param_str("role_arn")
            .ok_or_else(|| TargetError::InvalidGrant("the rule grants no `role_arn`".into()))?;
        check_role_arn(role_arn).map_err(TargetError::InvalidGrant)?;
        // A rendered name is the rule's choice: one STS cannot take is refused, as a literal
        // is at load, rather than changed into another name. Without one, the identity names
        // the session, made acceptable to STS.
        let session_name = match grant.param_str("session_name") {
            Some(rendered) if valid_session_name(rendered) => rendered.to_string(),
            Some(rendered) => return Err(TargetError::InvalidGrant(bad_session_name(rendered))),
            None => grant
                .identity()
                .name
                .as_deref()
                .and_then(session_name)
                .or_else(|| session_name(&grant.identity().id))
                .ok_or_else(|| {
                    TargetError::InvalidGrant("no valid session name (2-64 of [A-Za-z0-9_+=,.@-])".into())
                })?,
        };
        let tags = tags(grant.params().get("tags"))?;
        let extras = Extras::of(grant, &tags, &self.settings.transitive_tag_keys)?;

        let duration =
            grant.ttl().min(self.settings.base.max_ttl).clamp(super::MIN_DURATION, super::MAX_DURATION);
        let duration_seconds = i32::try_from(duration.as_secs())
            .map_err(|_| TargetError::InvalidGrant("session duration out of range".into()))?;
        Ok(Plan { role_arn: role_arn.to_string(), session_name, tags, duration_seconds, extras })
    }

    /// The request for `grant`: its [`plan`](Self::plan) and the signed web identity token.
    pub(super) fn request(&self, grant: &Grant) -> Result<StsRequest, TargetError> {
        let Plan { role_arn, session_name, tags, duration_seconds, extras } = self.plan(grant)?;
        let now = self.clock.now();
        let mut claims = upstream::presented_claims(
            self.signer.as_ref(),
            &grant.identity().id,
            &self.settings.audience,
            now,
        );
        if !tags.is_empty() {
            let principal_tags: Map<String, Value> =
                tags.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            let mut claim = Map::new();
            claim.insert("principal_tags".into(), Value::Object(principal_tags));
            if !extras.transitive_tag_keys.is_empty() {
                claim.insert("transitive_tag_keys".into(), json!(extras.transitive_tag_keys));
            }
            claims.insert(TAGS_CLAIM.into(), Value::Object(claim));
        }
        if let Some(act) = grant.act_claim(self.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        if let Some(source_identity) = &extras.source_identity {
            claims.insert(SOURCE_IDENTITY_CLAIM.into(), Value::from(source_identity.as_str()));
        }
        let token = self.signer.sign(self.settings.algorithm, &claims)?;
        Ok(StsRequest {
            role_arn,
            session_name,
            duration_seconds,
            policy: extras.policy,
            policy_arns: extras.policy_arns,
            token,
        })
    }

    async fn call(&self, req: &StsRequest) -> Result<AssumeRoleWithWebIdentityOutput, TargetError> {
        let policy_arns: Option<Vec<PolicyDescriptorType>> = (!req.policy_arns.is_empty()).then(|| {
            req.policy_arns.iter().map(|arn| PolicyDescriptorType::builder().arn(arn).build()).collect()
        });
        let send = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&req.role_arn)
            .role_session_name(&req.session_name)
            .duration_seconds(req.duration_seconds)
            .set_policy(req.policy.clone())
            .set_policy_arns(policy_arns)
            .web_identity_token(req.token.expose())
            .send();
        // The SDK's own timeouts cover connect and each attempt; this one also bounds
        // anything they do not (DNS, a stalled body).
        let timeout = self.settings.upstream.timeout;
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(sdk_error(&e, &self.upstream_endpoints().concat())),
            Err(_) => Err(TargetError::Upstream {
                retryable: true,
                cause: format!("STS did not answer within {}s", timeout.as_secs()),
            }),
        }
    }
}

/// STS's limits on `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

fn bad_session_name(name: &str) -> String {
    format!("session_name `{name}` is not 2 to 64 characters of A-Z a-z 0-9 _ + = , . @ -, as STS requires")
}

/// A session name STS accepts, made from `raw`: characters STS refuses become `-`, and
/// the result is cut to 64 characters. `None` when fewer than 2 remain.
pub fn session_name(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    valid_session_name(&cleaned).then_some(cleaned)
}

/// An IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path><name>`, the path
/// and name as IAM takes them (IAM API reference, `Role`): the name 1 to 64 of
/// `[A-Za-z0-9_+=,.@-]`, the path up to 512 printable ASCII characters other than space,
/// `/` first and last.
fn check_role_arn(arn: &str) -> Result<(), String> {
    if iam_arn_ok(arn, "role", 64, false) { Ok(()) } else { Err(format!("`{arn}` is not an IAM role ARN")) }
}

/// `arn:<partition>:iam::<account>:<kind>/<path><name>`: the account 12 digits (or `aws`,
/// for AWS managed policies, when `aws_owned`), the path and a name of at most `max_name`
/// as IAM takes them ([`path_and_name_ok`]).
pub(super) fn iam_arn_ok(arn: &str, kind: &str, max_name: usize, aws_owned: bool) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        [prefix, partition, service, region, account, resource] => {
            *prefix == "arn"
                && partition.starts_with("aws")
                && *service == "iam"
                && region.is_empty()
                && ((aws_owned && *account == "aws")
                    || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
                && resource.strip_prefix(kind).is_some_and(|rest| path_and_name_ok(rest, max_name))
        }
        _ => false,
    }
}

/// `/<path/>name` of an IAM ARN's resource: the path up to 512 printable ASCII characters
/// other than space, `/` first and last; the name 1 to `max_name` of `[A-Za-z0-9_+=,.@-]`.
pub(super) fn path_and_name_ok(path_and_name: &str, max_name: usize) -> bool {
    let Some((path, name)) = path_and_name.rsplit_once('/') else { return false };
    // `path` lacks the IAM path's last `/`; empty is the root path `/`.
    let path_ok = (path.is_empty() || (path.starts_with('/') && (2..512).contains(&path.len())))
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let name_ok = (1..=max_name).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    path_ok && name_ok
}

/// Characters STS takes in session tag keys and values: Unicode letters, digits and
/// spaces, and `_ . : / = + - @` (STS `Tag` reference).
fn tag_chars_ok(text: &str) -> bool {
    text.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// A session tag key: 1 to 128 allowed characters, not in the reserved `aws:` namespace.
pub(super) fn check_tag_key(key: &str) -> Result<(), String> {
    let len_ok = (1..=MAX_TAG_KEY_LEN).contains(&key.chars().count());
    if !len_ok || !tag_chars_ok(key) || key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key `{key}` must be 1 to {MAX_TAG_KEY_LEN} of letters, digits, spaces and _.:/=+-@, not starting with aws:"
        ));
    }
    Ok(())
}

/// A session tag value: up to 256 allowed characters.
fn check_tag_value(key: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_TAG_VALUE_LEN || !tag_chars_ok(value) {
        return Err(format!(
            "the value of tag `{key}` must be at most {MAX_TAG_VALUE_LEN} of letters, digits, spaces and _.:/=+-@"
        ));
    }
    Ok(())
}

/// The load-time check of a rule's grant key (see
/// [`CredentialTarget::check_grant_param`]).
pub(super) fn check_rule_param(key: &str, value: &RuleParam<'_>) -> Result<(), String> {
    if let Some(checked) = session::check_rule_param(key, value) {
        return checked;
    }
    match (key, value) {
        ("role_arn", RuleParam::Text(RuleText::Literal(arn))) => check_role_arn(arn),
        ("session_name", RuleParam::Text(RuleText::Literal(name))) => {
            if valid_session_name(name) {
                Ok(())
            } else {
                Err(bad_session_name(name))
            }
        }
        ("tags", RuleParam::Text(_)) => Err("`tags` must be a map of tag keys to values".into()),
        ("tags", RuleParam::Map(entries)) => {
            if entries.len() > MAX_TAGS {
                return Err(format!("{} session tags; STS takes at most {MAX_TAGS}", entries.len()));
            }
            for (k, v) in entries {
                check_tag_key(k)?;
                if let RuleText::Literal(v) = v {
                    check_tag_value(k, v)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The rule's rendered `tags`, checked against STS's limits.
fn tags(value: Option<&Value>) -> Result<BTreeMap<String, String>, TargetError> {
    let Some(value) = value else { return Ok(BTreeMap::new()) };
    let Value::Object(map) = value else {
        return Err(TargetError::InvalidGrant("`tags` must be a map of tag keys to values".into()));
    };
    if map.len() > MAX_TAGS {
        return Err(TargetError::InvalidGrant(format!(
            "{} session tags; STS takes at most {MAX_TAGS}",
            map.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(v) = v.as_str() else {
            return Err(TargetError::InvalidGrant(format!("tag `{k}` must be a string")));
        };
        check_tag_key(k).and_then(|()| check_tag_value(k, v)).map_err(TargetError::InvalidGrant)?;
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

/// What an STS failure means for the caller: a refusal (the trust policy, the token, the
/// request) or a failure a retry may fix.
/// Only STS's error code is kept: its message is free text that may quote request values,
/// and nothing from a request may reach logs or audit.
pub(super) fn classify(code: Option<&str>, status: Option<u16>) -> TargetError {
    let cause = format!(
        "STS {}{}",
        upstream::plain_code(code).as_deref().unwrap_or("error"),
        status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
    );
    let retryable = matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "IDPCommunicationError"
                | "ServiceUnavailable"
                | "InternalFailure"
                | "InternalError"
        )
    ) || status.is_some_and(|s| s == 429 || s >= 500);
    if retryable {
        TargetError::Upstream { retryable: true, cause }
    } else {
        TargetError::UpstreamRejected(cause)
    }
}

/// `endpoint` is where the call went, named when it could not be reached.
fn sdk_error(e: &SdkError<AssumeRoleWithWebIdentityError>, endpoint: &str) -> TargetError {
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            classify(err.code(), Some(ctx.raw().status().as_u16()))
        }
        SdkError::TimeoutError(_) => {
            TargetError::Upstream { retryable: true, cause: "STS call timed out".into() }
        }
        SdkError::DispatchFailure(d) => {
            let what = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "cannot connect"
            } else {
                "the request failed"
            };
            let root = d.as_connector_error().and_then(|c| crate::net::root_cause(c));
            let cause = match root {
                Some(root) if !d.is_timeout() => format!("STS {endpoint}: {what}: {root}"),
                _ => format!("STS {endpoint}: {what}"),
            };
            TargetError::Upstream { retryable: true, cause }
        }
        SdkError::ResponseError(r) => TargetError::Upstream {
            retryable: true,
            cause: format!("STS answered with an unreadable response (HTTP {})", r.raw().status().as_u16()),
        },
        SdkError::ConstructionFailure(_) => {
            TargetError::Upstream { retryable: false, cause: "the STS request could not be built".into() }
        }
        other => TargetError::Upstream { retryable: false, cause: format!("STS call failed: {other}") },
    }
}

/// The credential from a complete STS answer; an answer lacking any part is an error,
/// never a partial credential.
pub(super) fn credential(out: &AssumeRoleWithWebIdentityOutput) -> Result<IssuedCredential, TargetError> {
    let incomplete = || TargetError::Upstream {
        retryable: false,
        cause: "STS answered without complete credentials".into(),
    };
    let c = out.credentials().ok_or_else(incomplete)?;
    if c.access_key_id().is_empty() || c.secret_access_key().is_empty() || c.session_token().is_empty() {
        return Err(incomplete());
    }
    let expires_at = c.expiration().secs();
    Ok(IssuedCredential {
        access_token: Secret::new(c.session_token().to_string()),
        issued_token_type: token_type::AWS_CREDENTIALS,
        token_type: "N_A",
        expires_at,
        platform_credentials: Some(PlatformCredentials::Aws(AwsCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: Secret::new(c.secret_access_key().to_string()),
            session_token: Secret::new(c.session_token().to_string()),
            expiration: format_rfc3339(expires_at),
        })),
    })
}

#[async_trait]
impl CredentialTarget for AwsStsTarget {
    fn base(&self) -> &TargetBase {
        &self.settings.base
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        GRANT_KEYS
    }

    fn min_ttl(&self) -> Duration {
        super::MIN_DURATION
    }

    fn required_grant_keys(&self) -> Vec<&'static str> {
        vec!["role_arn"]
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        check_rule_param(key, value)
    }

    fn scope_param(&self) -> Option<&'static str> {
        Some("role_arn")
    }

    fn cacheable(&self) -> bool {
        self.settings.upstream.cache
    }

    /// The configured endpoint, else the region's STS endpoint as the SDK resolves it.
    fn upstream_endpoints(&self) -> Vec<String> {
        let s = &self.settings;
        let default = || {
            let suffix = if s.region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
            format!("https://sts.{}.{suffix}", s.region)
        };
        vec![s.endpoint.clone().unwrap_or_else(default)]
    }

    /// The plan's role, session name, tags, duration, source identity, transitive tag
    /// keys and session policies, and the identity id the web identity token carries as
    /// `sub` (the role's trust policy reads it).
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let Plan { role_arn, session_name, tags, duration_seconds, extras } = self.plan(grant)?;
        let tags: Map<String, Value> = tags.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
        Ok(RequestDescription::new(grant)
            .with("role_arn", role_arn)
            .with("role_session_name", session_name)
            .with("tags", tags)
            .with("transitive_tag_keys", extras.transitive_tag_keys)
            .with("source_identity", extras.source_identity)
            .with("policy", extras.policy)
            .with("policy_arns", extras.policy_arns)
            .with("duration_seconds", duration_seconds)
            .with("sub", grant.identity().id.as_str()))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let req = self.request(grant)?;
        let out = upstream::with_retries(self.settings.upstream.max_attempts, || self.call(&req)).await?;
        credential(&out)
    }
}
