//! JSON Web Key Sets (RFC 7517 §5) parsed into verification keys once, when a set is
//! loaded: each usable key is parsed by aws-lc-rs for every pinned algorithm its type fits,
//! so verifying a token never parses key material.

use std::collections::HashSet;
use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::alg::{Algorithm, KeyKind};
use super::decode;
use super::json;

/// More keys than any issuer publishes; bounds the work one key-set document can cause.
pub const MAX_KEYS: usize = 256;

/// Why a key-set document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("key set is not valid JSON: {0}")]
    Json(&'static str),
    #[error("key set has no `keys` array")]
    NoKeysArray,
    #[error("key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("key set has no key usable with the pinned algorithms")]
    NoUsableKeys,
    #[error("key set has two keys with kid `{0}` for the same algorithm")]
    DuplicateKid(String),
}

/// Which JWK `use` values (RFC 7517 §4.2) a key set's keys may carry to verify tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyUse {
    /// `sig`, or no `use` at all: a JWKS document.
    #[default]
    Sig,
    /// `jwt-svid` only, with a `kid`: the JWT-SVID keys of a SPIFFE bundle (SPIFFE
    /// JWT-SVID §6.2). Bundle entries for other SVID types (`x509-svid`) are skipped.
    JwtSvid,
}

/// SHA-256 of a key's public material (RSA modulus and exponent, EC point, Ed25519 key):
/// tells whether a key set still holds the very key that verified a token, however the
/// set was refetched and whatever `kid` the key is published under now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyDigest([u8; 32]);

impl KeyDigest {
    fn of(parts: &[&[u8]]) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in parts {
            // Length-prefixed, so that no two keys' parts run together alike.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

/// One verification key: its `kid`, the parsed key for each algorithm it may verify, and
/// the digest of its material (`None` for a kid kept only to answer "incompatible").
struct VerifyingKey {
    kid: Option<String>,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
    digest: Option<KeyDigest>,
}

impl VerifyingKey {
    fn for_alg(&self, alg: Algorithm) -> Option<(&ParsedPublicKey, KeyDigest)> {
        let digest = self.digest?;
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, k)| (k, digest))
    }
}

/// What looking up a key for a token found.
#[derive(Debug)]
pub(crate) enum Selection<'a> {
    /// The key, and the digest of its material.
    Found(&'a ParsedPublicKey, KeyDigest),
    /// No key has this kid (or, without a kid, no key fits the algorithm): the set may be
    /// out of date.
    Missing,
    /// A key has this kid but its type or its own `alg` does not fit the token's `alg`.
    Incompatible,
    /// No kid, and more than one key fits the algorithm.
    Ambiguous,
}

/// A parsed key set. Its `Debug` shows key ids only, never key material.
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.kids()).finish()
    }
}

impl KeySet {
    /// Parse a JWKS document, keeping the keys usable with `algorithms`. Keys that are
    /// unusable (another key type, `use` other than `sig`, a private key, a weak RSA
    /// modulus, bad encoding) are skipped with a debug log: one odd key must not take the
    /// whole set down. A set with no usable key at all is an error.
    pub fn from_json(bytes: &[u8], algorithms: &[Algorithm]) -> Result<Self, KeySetError> {
        Self::from_json_for(bytes, algorithms, KeyUse::Sig)
    }

    /// [`KeySet::from_json`], keeping only keys whose `use` fits `key_use`.
    pub fn from_json_for(
        bytes: &[u8],
        algorithms: &[Algorithm],
        key_use: KeyUse,
    ) -> Result<Self, KeySetError> {
        let doc = json::parse_object(bytes).map_err(|e| {
            KeySetError::Json(match e {
                json::JsonError::DuplicateMember => "duplicate member",
                json::JsonError::Invalid => "syntax",
                json::JsonError::NotAnObject => "not an object",
            })
        })?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(KeySetError::NoKeysArray);
        };
        if entries.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(jwk) = entry else {
                tracing::debug!(index, "skipping JWKS entry that is not an object");
                continue;
            };
            match parse_jwk(jwk, algorithms, key_use) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                    tracing::debug!(index, kid, reason, "skipping unusable JWK");
                    // A kid we know but cannot use answers "incompatible", not "missing",
                    // so tokens naming it never trigger a refetch.
                    if !kid.is_empty() {
                        keys.push(VerifyingKey {
                            kid: Some(kid.to_owned()),
                            parsed: Vec::new(),
                            digest: None,
                        });
                    }
                }
            }
        }
        let set = Self { keys };
        set.check_unambiguous()?;
        if set.keys.iter().all(|k| k.parsed.is_empty()) {
            return Err(KeySetError::NoUsableKeys);
        }
        Ok(set)
    }

    /// RFC 7517 §4.5: kids are meant to tell keys apart. Two keys that share a kid and an
    /// algorithm leave the choice to chance, so the set is refused.
    fn check_unambiguous(&self) -> Result<(), KeySetError> {
        let mut seen = HashSet::new();
        for key in &self.keys {
            let Some(kid) = &key.kid else { continue };
            for (alg, _) in &key.parsed {
                if !seen.insert((kid.as_str(), *alg)) {
                    return Err(KeySetError::DuplicateKid(kid.clone()));
                }
            }
        }
        Ok(())
    }

    /// The key ids in this set, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// How many keys are usable with at least one pinned algorithm.
    pub fn usable_len(&self) -> usize {
        self.keys.iter().filter(|k| !k.parsed.is_empty()).count()
    }

    /// Pick the key for a token's `kid` and `alg` (RFC 7515 §4.1.4). Without a kid, the
    /// one key fitting `alg` is used only if it is the only one.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Selection::Missing;
                }
                named
                    .find_map(|k| k.for_alg(alg))
                    .map_or(Selection::Incompatible, |(key, digest)| Selection::Found(key, digest))
            }
            None => {
                let mut fitting = self.keys.iter().filter_map(|k| k.for_alg(alg));
                match (fitting.next(), fitting.next()) {
                    (Some((key, digest)), None) => Selection::Found(key, digest),
                    (None, _) => Selection::Missing,
                    (Some(_), Some(_)) => Selection::Ambiguous,
                }
            }
        }
    }
}

impl KeySet {
    /// Whether the key a token names (`kid`, `alg`) is still the key whose material is
    /// `digest`: false once that key has left the set or its kid names another key.
    pub(crate) fn still_holds(&self, kid: Option<&str>, alg: Algorithm, digest: KeyDigest) -> bool {
        matches!(self.select(kid, alg), Selection::Found(_, found) if found == digest)
    }
}

/// Parse one JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2) for the pinned algorithms it fits.
fn parse_jwk(
    jwk: &Map<String, Value>,
    algorithms: &[Algorithm],
    key_use: KeyUse,
) -> Result<VerifyingKey, &'static str> {
    let kid = check_metadata(jwk, key_use)?;
    let own_alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => return Err("alg is not a supported signature algorithm"),
        },
        Some(_) => return Err("alg is not a string"),
    };
    let kind = match (text(jwk, "kty")?, jwk.get("crv").and_then(Value::as_str)) {
        ("RSA", _) => KeyKind::Rsa,
        ("EC", Some("P-256")) => KeyKind::P256,
        ("EC", Some("P-384")) => KeyKind::P384,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        _ => return Err("unsupported key type or curve"),
    };
    // §4.4: a key that names its algorithm is used with that algorithm only.
    let algs: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| a.key_kind() == kind && own_alg.is_none_or(|own| own == *a))
        .collect();
    let (parsed, digest) = match kind {
        KeyKind::Rsa => rsa_keys(jwk, &algs)?,
        KeyKind::P256 | KeyKind::P384 => ec_keys(jwk, if kind == KeyKind::P256 { 32 } else { 48 }, &algs)?,
        KeyKind::Ed25519 => ed25519_keys(jwk, &algs)?,
    };
    Ok(VerifyingKey { kid, parsed, digest: Some(digest) })
}

/// The members that say whether and how a key may verify: `kid` (returned), `use`,
/// `key_ops`, and no private material.
fn check_metadata(jwk: &Map<String, Value>, key_use: KeyUse) -> Result<Option<String>, &'static str> {
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string"),
    };
    // §4.2: a key published for encryption (or for X.509-SVIDs) must not verify tokens.
    match (key_use, jwk.get("use")) {
        (KeyUse::Sig, None) => {}
        (KeyUse::Sig, Some(Value::String(u))) if u == "sig" => {}
        (KeyUse::Sig, Some(_)) => return Err("use is not sig"),
        // JWT-SVID §6.1: JWT-SVID keys carry `use: jwt-svid` and a `kid`.
        (KeyUse::JwtSvid, Some(Value::String(u))) if u == "jwt-svid" => {
            if kid.is_none() {
                return Err("jwt-svid key has no kid");
            }
        }
        (KeyUse::JwtSvid, _) => return Err("use is not jwt-svid"),
    }
    // §4.3: when key_ops is given, it must allow verification.
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else { return Err("key_ops is not an array") };
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("key_ops does not include verify");
        }
    }
    // A published private key is compromised by definition; never trust its public half.
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| jwk.contains_key(*m)) {
        return Err("key set publishes private key material");
    }
    Ok(kid)
}

/// A key parsed for each of its algorithms, and the digest of its material.
type ParsedKeys = (Vec<(Algorithm, ParsedPublicKey)>, KeyDigest);

fn rsa_keys(jwk: &Map<String, Value>, algs: &[Algorithm]) -> Result<ParsedKeys, &'static str> {
    let n = strip_leading_zeros(b64(jwk, "n")?);
    let e = strip_leading_zeros(b64(jwk, "e")?);
    let bits = modulus_bits(&n);
    if !(2048..=8192).contains(&bits) {
        return Err("RSA modulus is not 2048 to 8192 bits");
    }
    let components = RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
    let mut parsed = Vec::new();
    for &alg in algs {
        let Some(params) = alg.rsa_parameters() else { continue };
        let key = components.to_parsed_public_key(params).map_err(|_| "invalid RSA key")?;
        parsed.push((alg, key));
    }
    Ok((parsed, KeyDigest::of(&[b"RSA", &n, &e])))
}

/// An EC key whose coordinates are `width` bytes each.
fn ec_keys(jwk: &Map<String, Value>, width: usize, algs: &[Algorithm]) -> Result<ParsedKeys, &'static str> {
    let x = b64(jwk, "x")?;
    let y = b64(jwk, "y")?;
    // RFC 7518 §6.2.1.2-3: coordinates are full width, never shortened.
    if x.len() != width || y.len() != width {
        return Err("EC coordinate has the wrong length");
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let parsed =
        algs.iter().map(|&alg| Ok((alg, point_key(alg, &point)?))).collect::<Result<Vec<_>, &str>>()?;
    Ok((parsed, KeyDigest::of(&[b"EC", &point])))
}

fn ed25519_keys(jwk: &Map<String, Value>, algs: &[Algorithm]) -> Result<ParsedKeys, &'static str> {
    let x = b64(jwk, "x")?;
    if x.len() != 32 {
        return Err("Ed25519 key has the wrong length");
    }
    let parsed = algs.iter().map(|&alg| Ok((alg, point_key(alg, &x)?))).collect::<Result<Vec<_>, &str>>()?;
    Ok((parsed, KeyDigest::of(&[b"OKP", &x])))
}

fn point_key(alg: Algorithm, bytes: &[u8]) -> Result<ParsedPublicKey, &'static str> {
    let verification = alg.point_algorithm().ok_or("algorithm does not fit key")?;
    ParsedPublicKey::new(verification, bytes).map_err(|_| "point is not on the curve")
}

fn text<'a>(jwk: &'a Map<String, Value>, member: &'static str) -> Result<&'a str, &'static str> {
    jwk.get(member).and_then(Value::as_str).ok_or("a required member is missing or not a string")
}

fn b64(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, &'static str> {
    decode::b64(text(jwk, member)?, "").map_err(|_| "a key member is not base64url")
}

/// RFC 7518 §6.3.1.1 forbids leading zero octets, but some issuers emit them; they do
/// not change the value, and aws-lc-rs refuses them, so they are dropped.
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn modulus_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::testkit::{TestKey, jwks};

    #[test]
    fn parses_each_key_type_for_its_algorithms() {
        let rsa = TestKey::rsa("r");
        let ec = TestKey::p256("e");
        let ec384 = TestKey::p384("e384");
        let ed = TestKey::ed25519("o");
        let set = KeySet::from_json(
            jwks(&[rsa.jwk(), ec.jwk(), ec384.jwk(), ed.jwk()]).as_bytes(),
            &Algorithm::ALL,
        )
        .unwrap();
        assert_eq!(set.usable_len(), 4);
        for alg in [Algorithm::Rs256, Algorithm::Rs512, Algorithm::Ps384] {
            assert!(matches!(set.select(Some("r"), alg), Selection::Found(..)), "{alg}");
        }
        assert!(matches!(set.select(Some("e"), Algorithm::Es256), Selection::Found(..)));
        assert!(matches!(set.select(Some("e384"), Algorithm::Es384), Selection::Found(..)));
        assert!(matches!(set.select(Some("o"), Algorithm::EdDsa), Selection::Found(..)));
        // Key type must fit the algorithm.
        assert!(matches!(set.select(Some("r"), Algorithm::Es256), Selection::Incompatible));
        assert!(matches!(set.select(Some("e"), Algorithm::Rs256), Selection::Incompatible));
        assert!(matches!(set.select(Some("e"), Algorithm::Es384), Selection::Incompatible));
        assert!(matches!(set.select(Some("e384"), Algorithm::Es256), Selection::Incompatible));
        assert!(matches!(set.select(Some("o"), Algorithm::Es256), Selection::Incompatible));
        assert!(matches!(set.select(Some("zzz"), Algorithm::Rs256), Selection::Missing));
    }

    #[test]
    fn keys_are_parsed_only_for_pinned_algorithms() {
        let rsa = TestKey::rsa("r");
        let ec = TestKey::p256("e");
        let set = KeySet::from_json(jwks(&[rsa.jwk(), ec.jwk()]).as_bytes(), &[Algorithm::Es256]).unwrap();
        assert_eq!(set.usable_len(), 1);
        assert!(matches!(set.select(Some("r"), Algorithm::Rs256), Selection::Incompatible));
    }

    #[test]
    fn a_jwk_alg_restricts_the_key_to_it() {
        let rsa = TestKey::rsa("r");
        let mut jwk = rsa.jwk();
        jwk["alg"] = "PS256".into();
        let set = KeySet::from_json(jwks(&[jwk]).as_bytes(), &Algorithm::ALL).unwrap();
        assert!(matches!(set.select(Some("r"), Algorithm::Ps256), Selection::Found(..)));
        assert!(matches!(set.select(Some("r"), Algorithm::Rs256), Selection::Incompatible));
    }

    #[test]
    fn without_kid_only_a_single_fitting_key_is_chosen() {
        let a = TestKey::p256("a");
        let b = TestKey::p256("b");
        let r = TestKey::rsa("r");
        let one = KeySet::from_json(jwks(&[a.jwk(), r.jwk()]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        assert!(matches!(one.select(None, Algorithm::Es256), Selection::Found(..)));
        let two = KeySet::from_json(jwks(&[a.jwk(), b.jwk()]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        assert!(matches!(two.select(None, Algorithm::Es256), Selection::Ambiguous));
        assert!(matches!(two.select(None, Algorithm::Rs256), Selection::Missing));
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let good = TestKey::p256("good");
        let mut enc = TestKey::p256("enc").jwk();
        enc["use"] = "enc".into();
        let mut private = TestKey::p256("priv").jwk();
        private["d"] = "AAAA".into();
        let mut ops = TestKey::p256("ops").jwk();
        ops["key_ops"] = serde_json::json!(["encrypt"]);
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let mut bad_b64 = TestKey::p256("b64").jwk();
        bad_b64["x"] = "!!".into();
        let mut short = TestKey::p256("short").jwk();
        short["x"] = "AAAA".into();
        let set = KeySet::from_json(
            jwks(&[good.jwk(), enc, private, ops, oct, bad_b64, short]).as_bytes(),
            &Algorithm::ALL,
        )
        .unwrap();
        assert_eq!(set.usable_len(), 1);
        assert!(matches!(set.select(Some("good"), Algorithm::Es256), Selection::Found(..)));
        for kid in ["enc", "priv", "ops", "hmac", "b64", "short"] {
            assert!(matches!(set.select(Some(kid), Algorithm::Es256), Selection::Incompatible), "{kid}");
        }
    }

    #[test]
    fn a_point_off_the_curve_is_refused() {
        let mut jwk = TestKey::p256("e").jwk();
        // Replace y with another full-width value: almost surely not on the curve.
        jwk["y"] = crate::jwt::testkit::b64(&[7u8; 32]).into();
        assert_eq!(
            KeySet::from_json(jwks(&[jwk]).as_bytes(), &Algorithm::ALL).unwrap_err(),
            KeySetError::NoUsableKeys
        );
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        let mut jwk = TestKey::rsa("r").jwk();
        // A 1024-bit modulus (value irrelevant: the size check comes first).
        jwk["n"] = crate::jwt::testkit::b64(&[0xc5; 128]).into();
        assert_eq!(
            KeySet::from_json(jwks(&[jwk]).as_bytes(), &Algorithm::ALL).unwrap_err(),
            KeySetError::NoUsableKeys
        );
    }

    #[test]
    fn leading_zeros_in_rsa_components_are_tolerated() {
        let rsa = TestKey::rsa("r");
        let mut jwk = rsa.jwk();
        let mut n = vec![0u8];
        n.extend(rsa.rsa_modulus());
        jwk["n"] = crate::jwt::testkit::b64(&n).into();
        let set = KeySet::from_json(jwks(&[jwk]).as_bytes(), &Algorithm::ALL).unwrap();
        assert!(matches!(set.select(Some("r"), Algorithm::Rs256), Selection::Found(..)));
    }

    #[test]
    fn document_level_errors() {
        let a = TestKey::p256("same").jwk();
        let b = TestKey::p256("same").jwk();
        assert_eq!(
            KeySet::from_json(jwks(&[a.clone(), b]).as_bytes(), &Algorithm::ALL).unwrap_err(),
            KeySetError::DuplicateKid("same".into())
        );
        // The same kid on keys of different types is fine (RFC 7517 §4.5).
        let r = TestKey::rsa("same").jwk();
        assert!(KeySet::from_json(jwks(&[a, r]).as_bytes(), &Algorithm::ALL).is_ok());
        assert_eq!(KeySet::from_json(b"{}", &Algorithm::ALL).unwrap_err(), KeySetError::NoKeysArray);
        assert_eq!(
            KeySet::from_json(br#"{"keys":[]}"#, &Algorithm::ALL).unwrap_err(),
            KeySetError::NoUsableKeys
        );
        assert_eq!(
            KeySet::from_json(br#"{"keys":[],"keys":[]}"#, &Algorithm::ALL).unwrap_err(),
            KeySetError::Json("duplicate member")
        );
        let many = format!("{{\"keys\":[{}]}}", vec!["{}"; MAX_KEYS + 1].join(","));
        assert_eq!(
            KeySet::from_json(many.as_bytes(), &Algorithm::ALL).unwrap_err(),
            KeySetError::TooManyKeys
        );
    }

    #[test]
    fn key_use_selects_jwks_or_jwt_svid_keys() {
        let mut svid = TestKey::p256("svid").jwk();
        svid["use"] = "jwt-svid".into();
        let mut x509 = TestKey::p256("x509").jwk();
        x509["use"] = "x509-svid".into();
        let sig = TestKey::p256("sig").jwk();
        let mut bare = TestKey::p256("bare").jwk();
        bare.as_object_mut().unwrap().remove("use");
        let mut anonymous = TestKey::p256("").jwk();
        anonymous["use"] = "jwt-svid".into();
        anonymous.as_object_mut().unwrap().remove("kid");
        let doc = jwks(&[svid, x509, sig, bare, anonymous]);

        let plain = KeySet::from_json(doc.as_bytes(), &Algorithm::ALL).unwrap();
        assert_eq!(plain.usable_len(), 2);
        assert!(matches!(plain.select(Some("sig"), Algorithm::Es256), Selection::Found(..)));
        assert!(matches!(plain.select(Some("bare"), Algorithm::Es256), Selection::Found(..)));
        assert!(matches!(plain.select(Some("svid"), Algorithm::Es256), Selection::Incompatible));

        // JWT-SVID §6.2: only `use: jwt-svid` keys, and §6.1: each with a kid.
        let bundle = KeySet::from_json_for(doc.as_bytes(), &Algorithm::ALL, KeyUse::JwtSvid).unwrap();
        assert_eq!(bundle.usable_len(), 1);
        assert!(matches!(bundle.select(Some("svid"), Algorithm::Es256), Selection::Found(..)));
        for kid in ["x509", "sig", "bare"] {
            assert!(matches!(bundle.select(Some(kid), Algorithm::Es256), Selection::Incompatible), "{kid}");
        }
        assert!(matches!(bundle.select(None, Algorithm::Es256), Selection::Found(..)));
    }

    #[test]
    fn debug_shows_kids_only() {
        let set = KeySet::from_json(jwks(&[TestKey::p256("k1").jwk()]).as_bytes(), &Algorithm::ALL).unwrap();
        assert_eq!(format!("{set:?}"), r#"KeySet { kids: ["k1"] }"#);
    }
}
