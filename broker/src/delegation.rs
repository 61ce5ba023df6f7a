//! RFC 8693 delegation: what an exchange with an `actor_token` must satisfy besides the
//! mapping rules, and the `act` chain (§4.1) the subject token already carries.
//!
//! - `may_act` (§4.4): when the verified subject token has one, the verified actor must be
//!   the party it names, or the exchange is refused.
//! - `act`: a verified JWT subject token that carries an `act` chain (one Tessera issued
//!   for an earlier delegation, say) passes it on: the issued token's `act` has the current
//!   actor outermost and the chain inside it. The chain is at most
//!   [`DelegationConfig::max_depth`] actors long, the new one counted.
//!
//! Neither claim can be read from a token no source verified: both are read from the
//! subject token only after its source verified it, as strictly as verification reads it.

use serde::Deserialize;
use serde_json::{Map, Value};
use tessera_adapters::jwt;
use tessera_adapters::{Identity, SubjectToken};

/// The default longest `act` chain, the new actor counted.
pub const DEFAULT_MAX_DEPTH: usize = 4;
/// The longest chain `delegation.max_depth` may allow.
pub const MAX_MAX_DEPTH: usize = 16;

/// `delegation:` in broker.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationConfig {
    /// The most actors an issued token's `act` chain may name, the current one counted;
    /// an exchange that would make it longer is refused. Default `4`, 1 to 16.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
}

fn default_max_depth() -> usize {
    DEFAULT_MAX_DEPTH
}

impl Default for DelegationConfig {
    fn default() -> Self {
        Self { max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// Why a delegated exchange is refused before any rule is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    /// The subject token's `may_act` names another party than the actor.
    #[error("the subject token's may_act does not name actor `{actor}`")]
    NotPermitted { actor: String },
    /// The subject token's `may_act` is not a claim Tessera can check.
    #[error("the subject token's may_act cannot be checked: {0}")]
    MayActMalformed(&'static str),
    /// The subject token's `act` is not an RFC 8693 §4.1 chain.
    #[error("the subject token's act chain is malformed: {0}")]
    ChainMalformed(&'static str),
    /// The issued token's chain would name more actors than allowed.
    #[error("the act chain would name {depth} actors; the maximum is {max}")]
    TooDeep { depth: usize, max: usize },
}

impl DelegationError {
    /// The greppable reason code for logs and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotPermitted { .. } => "TS-MAY-ACT",
            Self::MayActMalformed(_) => "TS-MAY-ACT-MALFORMED",
            Self::ChainMalformed(_) => "TS-ACT-MALFORMED",
            Self::TooDeep { .. } => "TS-ACT-DEPTH",
        }
    }
}

/// The claims of a VERIFIED subject token that the exchange reads after verification
/// (`jti` for revocations, `act` and `may_act` for delegation): its payload decoded once
/// per exchange, as strictly as verification parsed it. Empty for a token that is no JWT.
#[derive(Debug, Default)]
pub struct SubjectClaims(Option<Map<String, Value>>);

impl SubjectClaims {
    /// Never call it on a token not yet verified.
    pub fn of(token: &SubjectToken) -> Self {
        Self(if token.token_type.is_jwt() { jwt::verified_claims(token.value.expose()) } else { None })
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.as_ref()?.get(name)
    }

    /// The `jti`, when it is a string.
    pub fn jti(&self) -> Option<&str> {
        self.get("jti").and_then(Value::as_str)
    }
}

/// The `act` chain a verified subject token carries, as the issued token will carry it
/// inside the new actor, and how many actors it names. Each level keeps `sub` (required,
/// a string) and `iss`; a level without `iss` named its actor in the namespace of the
/// subject token's issuer (`subject.issuer`), which Tessera writes down, since in a token
/// Tessera signs a level without `iss` would be read as Tessera's. Other members are not
/// carried. A chain longer than `max_depth` is refused without reading further.
pub fn prior_chain(
    claims: &SubjectClaims,
    subject: &Identity,
    max_depth: usize,
) -> Result<Option<(Value, usize)>, DelegationError> {
    let Some(mut level) = claims.get("act").cloned() else {
        return Ok(None);
    };
    // Walk down iteratively: a hostile chain's nesting costs no stack.
    let mut levels: Vec<(String, String)> = Vec::new();
    loop {
        let Value::Object(mut members) = level else {
            return Err(DelegationError::ChainMalformed("an act level is not a JSON object"));
        };
        let sub = match members.remove("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub,
            Some(_) => return Err(DelegationError::ChainMalformed("an act level's sub is not a string")),
            None => return Err(DelegationError::ChainMalformed("an act level has no sub")),
        };
        let iss = match members.remove("iss") {
            Some(Value::String(iss)) if !iss.is_empty() => iss,
            Some(_) => return Err(DelegationError::ChainMalformed("an act level's iss is not a string")),
            None => subject.issuer.clone(),
        };
        levels.push((sub, iss));
        if levels.len() > max_depth {
            return Err(DelegationError::TooDeep { depth: levels.len(), max: max_depth });
        }
        match members.remove("act") {
            Some(inner) => level = inner,
            None => break,
        }
    }
    let depth = levels.len();
    let chain = levels.into_iter().rev().fold(None, |inner: Option<Value>, (sub, iss)| {
        let mut act = Map::new();
        act.insert("sub".into(), Value::String(sub));
        act.insert("iss".into(), Value::String(iss));
        if let Some(inner) = inner {
            act.insert("act".into(), inner);
        }
        Some(Value::Object(act))
    });
    Ok(chain.map(|c| (c, depth)))
}

/// Check the subject token's `may_act` (RFC 8693 §4.4), when it has one, against the
/// verified actor. Tessera's reading: `may_act` must be an object of `sub` (required) and
/// `iss` (optional); a member Tessera cannot check makes the whole claim refused. The
/// actor matches when its verified `issuer` is `iss` (absent: the subject token's own
/// issuer, in whose namespace an unqualified `sub` is) and its verified platform `subject`
/// is `sub`; or, with no `iss`, when `sub` is the actor's Tessera identity id.
pub fn check_may_act(
    claims: &SubjectClaims,
    subject: &Identity,
    actor: &Identity,
) -> Result<(), DelegationError> {
    let Some(may_act) = claims.get("may_act").cloned() else {
        return Ok(());
    };
    let Value::Object(members) = may_act else {
        return Err(DelegationError::MayActMalformed("may_act is not a JSON object"));
    };
    if members.keys().any(|k| k != "sub" && k != "iss") {
        return Err(DelegationError::MayActMalformed("may_act names a member other than sub and iss"));
    }
    let sub = match members.get("sub") {
        Some(Value::String(sub)) => sub,
        Some(_) => return Err(DelegationError::MayActMalformed("may_act's sub is not a string")),
        None => return Err(DelegationError::MayActMalformed("may_act has no sub")),
    };
    let iss = match members.get("iss") {
        Some(Value::String(iss)) => Some(iss),
        Some(_) => return Err(DelegationError::MayActMalformed("may_act's iss is not a string")),
        None => None,
    };
    let expected_issuer = iss.unwrap_or(&subject.issuer);
    let by_subject = actor.issuer == *expected_issuer && actor.subject == *sub;
    let by_id = iss.is_none() && actor.id == *sub;
    if by_subject || by_id { Ok(()) } else { Err(DelegationError::NotPermitted { actor: actor.id.clone() }) }
}

/// The number of actors the issued token's chain names: the prior chain's and the new
/// actor, if any; refused beyond `max_depth`.
pub fn check_depth(prior: usize, has_actor: bool, max_depth: usize) -> Result<(), DelegationError> {
    let depth = prior + usize::from(has_actor);
    if depth > max_depth {
        return Err(DelegationError::TooDeep { depth, max: max_depth });
    }
    Ok(())
}

/// An identity with only what delegation reads: id, issuer and subject.
#[cfg(any(test, feature = "fuzzing"))]
fn bare_identity(id: &str, issuer: &str, subject: &str) -> Identity {
    Identity {
        id: id.into(),
        provider: "oidc".into(),
        source: "idp".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        tenant: None,
        namespace: None,
        name: None,
        instance: None,
        region: None,
        attributes: Default::default(),
        withheld: Default::default(),
        expires_at: 0,
    }
}

/// The `act` and `may_act` readers over a token payload of any bytes (standing for a
/// verified token's), for the cargo-fuzz target in `fuzz/` (the `fuzzing` feature only).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_delegation_claims(payload: &[u8]) {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let value = format!("{}.{}.c2ln", b64(br#"{"alg":"ES256"}"#), b64(payload));
    let token = SubjectToken {
        token_type: tessera_adapters::SubjectTokenType::Jwt,
        value: tessera_adapters::Secret::new(value),
    };
    let issuer = "https://idp.example";
    let (subject, actor) =
        (bare_identity("oidc://idp/app", issuer, "app"), bare_identity("oidc://idp/bot", issuer, "bot"));
    if let Ok(Some((_, depth))) = prior_chain(&SubjectClaims::of(&token), &subject, MAX_MAX_DEPTH) {
        assert!(depth <= MAX_MAX_DEPTH);
    }
    let _ = check_may_act(&SubjectClaims::of(&token), &subject, &actor);
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use tessera_adapters::{Secret, SubjectTokenType};

    use super::*;

    /// A token with these claims; only its payload is read (it stands for a verified one).
    fn token(claims: Value) -> SubjectToken {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let value = format!("{}.{}.c2ln", enc(&json!({"alg": "ES256"})), enc(&claims));
        SubjectToken { token_type: SubjectTokenType::Jwt, value: Secret::new(value) }
    }

    fn identity(id: &str, issuer: &str, subject: &str) -> Identity {
        bare_identity(id, issuer, subject)
    }

    const IDP: &str = "https://idp.example";

    fn app() -> Identity {
        identity("oidc://idp/app", IDP, "app")
    }

    #[test]
    fn may_act_names_the_actor_by_issuer_and_subject_or_by_id() {
        let bot = identity("oidc://idp/deploy-bot", IDP, "deploy-bot");
        let ok = |may_act: Value| {
            check_may_act(&SubjectClaims::of(&token(json!({ "may_act": may_act }))), &app(), &bot)
        };
        assert_eq!(ok(json!({"sub": "deploy-bot"})), Ok(()), "sub in the subject token's issuer's namespace");
        assert_eq!(ok(json!({"sub": "deploy-bot", "iss": IDP})), Ok(()));
        assert_eq!(ok(json!({"sub": "oidc://idp/deploy-bot"})), Ok(()), "the Tessera id");
        let refused = Err(DelegationError::NotPermitted { actor: "oidc://idp/deploy-bot".into() });
        assert_eq!(ok(json!({"sub": "release-bot"})), refused);
        assert_eq!(ok(json!({"sub": "deploy-bot", "iss": "https://other.example"})), refused);
        assert_eq!(
            ok(json!({"sub": "oidc://idp/deploy-bot", "iss": IDP})),
            refused,
            "an id is not a subject"
        );
        // The same subject from another issuer is another party.
        let elsewhere = identity("oidc://other/deploy-bot", "https://other.example", "deploy-bot");
        let t = token(json!({ "may_act": {"sub": "deploy-bot"} }));
        assert!(check_may_act(&SubjectClaims::of(&t), &app(), &elsewhere).is_err());
        // No may_act: any actor, as far as the subject token says.
        assert_eq!(
            check_may_act(&SubjectClaims::of(&token(json!({"sub": "app"}))), &app(), &elsewhere),
            Ok(())
        );
    }

    #[test]
    fn a_may_act_tessera_cannot_check_is_refused() {
        let bot = identity("oidc://idp/deploy-bot", IDP, "deploy-bot");
        for may_act in [
            json!("deploy-bot"),
            json!({}),
            json!({"sub": 5}),
            json!({"sub": "deploy-bot", "iss": true}),
            json!({"sub": "deploy-bot", "client_id": "x"}),
        ] {
            let e = check_may_act(&SubjectClaims::of(&token(json!({ "may_act": may_act }))), &app(), &bot)
                .unwrap_err();
            assert_eq!(e.code(), "TS-MAY-ACT-MALFORMED", "{may_act}");
        }
    }

    #[test]
    fn the_prior_chain_is_carried_with_every_issuer_written_down() {
        let t = token(
            json!({"act": {"sub": "ci", "act": {"sub": "bot", "iss": "https://tessera.test", "x": 1}}}),
        );
        let (chain, depth) = prior_chain(&SubjectClaims::of(&t), &app(), 4).unwrap().unwrap();
        assert_eq!(depth, 2);
        assert_eq!(
            chain,
            json!({"sub": "ci", "iss": IDP, "act": {"sub": "bot", "iss": "https://tessera.test"}})
        );
        assert_eq!(prior_chain(&SubjectClaims::of(&token(json!({"sub": "app"}))), &app(), 4), Ok(None));
        let aws =
            SubjectToken { token_type: SubjectTokenType::AwsSignedRequest, value: Secret::new("x".into()) };
        assert_eq!(prior_chain(&SubjectClaims::of(&aws), &app(), 4), Ok(None));
    }

    #[test]
    fn malformed_and_overlong_chains_are_refused() {
        for act in [json!("ci"), json!({"iss": IDP}), json!({"sub": ""}), json!({"sub": "ci", "act": []})] {
            let e = prior_chain(&SubjectClaims::of(&token(json!({ "act": act }))), &app(), 4).unwrap_err();
            assert_eq!(e.code(), "TS-ACT-MALFORMED", "{act}");
        }
        let mut deep = json!({"sub": "a0"});
        for i in 1..100 {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(
            prior_chain(&SubjectClaims::of(&token(json!({ "act": deep }))), &app(), 4),
            Err(DelegationError::TooDeep { depth: 5, max: 4 })
        );
        assert_eq!(check_depth(3, true, 4), Ok(()));
        assert_eq!(check_depth(4, true, 4), Err(DelegationError::TooDeep { depth: 5, max: 4 }));
        assert_eq!(check_depth(4, false, 4), Ok(()));
    }
}
