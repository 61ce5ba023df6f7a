//! One signing key: its lifecycle state, its public JWK and thumbprint, its private key
//! parsed once, the key-file format, and compact JWS signing.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_adapters::Secret;
use tessera_adapters::target::{SignError, SigningAlgorithm};

use super::IssuerError;

/// Where a key is in its life. Every state is published in the JWKS; only `active` signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published but not signing yet, so verifiers have it before its first token.
    Next,
    /// Signs every token of its algorithm.
    Active,
    /// No longer signs; published until `publish_until`, then deleted by rotation.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a key apart from its private half: what `tessera keys list` shows.
/// Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub state: KeyState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// For retired keys: when they leave the JWKS and may be deleted.
    pub publish_until: Option<i64>,
}

impl KeyInfo {
    /// Whether the key belongs in the JWKS at `now`.
    pub fn is_published(&self, now: i64) -> bool {
        match self.state {
            KeyState::Next | KeyState::Active => true,
            KeyState::Retired => self.publish_until.is_some_and(|until| now < until),
        }
    }
}

/// The public half of a key as JWK members (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2), each
/// value already base64url-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicJwk {
    Ec { x: String, y: String },
    Rsa { n: String, e: String },
    Okp { x: String },
}

impl PublicJwk {
    /// The RFC 7638 §3 thumbprint: SHA-256 over the required members in lexicographic
    /// order with no whitespace, base64url without padding. Base64url values need no JSON
    /// escaping, so formatting by hand is exact.
    pub(crate) fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Self::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    /// The JWK a JWKS publishes (RFC 7517 §4: `kty`, `use`, `alg`, `kid` and the key).
    pub(crate) fn to_jwk(&self, alg: SigningAlgorithm, kid: &str) -> Value {
        let mut jwk = match self {
            Self::Ec { x, y } => json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            Self::Rsa { n, e } => json!({ "kty": "RSA", "n": n, "e": e }),
            Self::Okp { x } => json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
        };
        if let Some(members) = jwk.as_object_mut() {
            members.insert("use".into(), Value::from("sig"));
            members.insert("alg".into(), Value::from(alg.as_str()));
            members.insert("kid".into(), Value::from(kid));
        }
        jwk
    }
}

enum KeyPair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A parsed private key with everything derived from it: parsed once when its file is
/// read, reused by every signature and by later reloads while the file is unchanged.
pub(crate) struct KeyMaterial {
    alg: SigningAlgorithm,
    pair: KeyPair,
    pkcs8: Secret<Vec<u8>>,
    jwk: PublicJwk,
    kid: String,
    /// The base64url JWS protected header, which never changes for a key.
    header: String,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl KeyMaterial {
    /// A fresh key for `alg`, as PKCS#8 (RFC 5958).
    pub(crate) fn generate(alg: SigningAlgorithm) -> Result<Self, IssuerError> {
        let failed = || IssuerError::KeyGeneration(alg.as_str());
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed())?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().map_err(|_| failed())?;
                der.as_ref().to_vec()
            }
            SigningAlgorithm::EdDsa => {
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?.as_ref().to_vec()
            }
        };
        Self::parse(alg, Secret::new(pkcs8)).map_err(|_| failed())
    }

    /// Parse a PKCS#8 private key for `alg`. The reason on failure never quotes the key.
    pub(crate) fn parse(alg: SigningAlgorithm, pkcs8: Secret<Vec<u8>>) -> Result<Self, String> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            format!("not a valid {} PKCS#8 private key ({e})", alg.as_str())
        };
        let (pair, jwk) = match alg {
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.expose())
                    .map_err(rejected)?;
                let jwk = ec_jwk(pair.public_key().as_ref())?;
                (KeyPair::Es256(pair), jwk)
            }
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8.expose()).map_err(rejected)?;
                // RFC 7518 §3.3: RS256 keys are at least 2048 bits.
                if pair.public_modulus_len() < 256 {
                    return Err("RSA key is shorter than 2048 bits".into());
                }
                let public = pair.public_key();
                let jwk = PublicJwk::Rsa {
                    n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                };
                (KeyPair::Rs256(pair), jwk)
            }
            SigningAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.expose()).map_err(rejected)?;
                let jwk = PublicJwk::Okp { x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()) };
                (KeyPair::EdDsa(pair), jwk)
            }
        };
        let kid = jwk.thumbprint();
        // RFC 7515 §4.1: `alg` and `kid`; RFC 7519 §5.1: `typ: JWT`.
        let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "JWT" });
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self { alg, pair, pkcs8, jwk, kid, header })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn alg(&self) -> SigningAlgorithm {
        self.alg
    }

    pub(crate) fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    pub(crate) fn pkcs8(&self) -> &Secret<Vec<u8>> {
        &self.pkcs8
    }

    /// A compact JWS (RFC 7515 §7.1) over `claims`.
    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> Result<Secret<String>, SignError> {
        self.sign_with(&self.header, claims)
    }

    /// A compact JWS over `claims` whose header's `typ` is `typ` (RFC 8725 §3.11).
    pub(crate) fn sign_typed(
        &self,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<Secret<String>, SignError> {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": typ });
        self.sign_with(&URL_SAFE_NO_PAD.encode(header.to_string()), claims)
    }

    /// A compact JWS over `claims` under `header`, already base64url-encoded.
    fn sign_with(&self, header: &str, claims: &Map<String, Value>) -> Result<Secret<String>, SignError> {
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::Encoding)?;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 400);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(Secret::new(token))
    }

    fn sign_bytes(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            // RFC 7518 §3.4: the JOSE form is R || S, 32 bytes each, which the FIXED
            // algorithm produces (not ASN.1 DER).
            KeyPair::Es256(pair) => pair
                .sign(&SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            // RFC 7518 §3.3: RSASSA-PKCS1-v1_5 with SHA-256.
            KeyPair::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut signature)
                    .map_err(|_| SignError::Crypto)?;
                Ok(signature)
            }
            // RFC 8037 §3.1: Ed25519 over the signing input as is.
            KeyPair::EdDsa(pair) => {
                pair.try_sign(input).map(|s| s.as_ref().to_vec()).map_err(|_| SignError::Crypto)
            }
        }
    }
}

/// The RFC 7518 §6.2.1 members of a P-256 key from its SEC 1 uncompressed point
/// (`0x04 || x || y`).
fn ec_jwk(point: &[u8]) -> Result<PublicJwk, String> {
    let coordinates = match point.split_first() {
        Some((0x04, rest)) if rest.len() == 64 => rest,
        _ => return Err("unexpected P-256 public key encoding".into()),
    };
    let (x, y) = coordinates.split_at(32);
    Ok(PublicJwk::Ec { x: URL_SAFE_NO_PAD.encode(x), y: URL_SAFE_NO_PAD.encode(y) })
}

/// A key with its lifecycle: what one `<kid>.json` file holds.
#[derive(Debug, Clone)]
pub(crate) struct StoredKey {
    pub(crate) info: KeyInfo,
    pub(crate) material: Arc<KeyMaterial>,
}

impl StoredKey {
    pub(crate) fn new(material: KeyMaterial, state: KeyState, now: i64) -> Self {
        let info = KeyInfo {
            kid: material.kid().to_string(),
            alg: material.alg(),
            state,
            created_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: None,
            publish_until: None,
        };
        Self { info, material: Arc::new(material) }
    }
}

/// The current key-file format version.
const KEY_FILE_VERSION: u32 = 1;

/// The JSON of one `<kid>.json` file. `private_key` is the PKCS#8 DER, standard base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFile {
    version: u32,
    kid: String,
    alg: SigningAlgorithm,
    state: KeyState,
    created_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
    publish_until: Option<i64>,
    private_key: String,
}

impl KeyFile {
    pub(crate) fn from_key(key: &StoredKey) -> Self {
        let info = &key.info;
        Self {
            version: KEY_FILE_VERSION,
            kid: info.kid.clone(),
            alg: info.alg,
            state: info.state,
            created_at: info.created_at,
            activated_at: info.activated_at,
            retired_at: info.retired_at,
            publish_until: info.publish_until,
            private_key: STANDARD.encode(key.material.pkcs8().expose()),
        }
    }

    /// The file's key, reusing `cached` material when the private key is unchanged.
    /// Checks that the file's `kid` is the thumbprint of its key.
    pub(crate) fn into_key(self, cached: Option<&Arc<KeyMaterial>>) -> Result<StoredKey, String> {
        if self.version != KEY_FILE_VERSION {
            return Err(format!("unsupported version {} (expected {KEY_FILE_VERSION})", self.version));
        }
        if self.state == KeyState::Retired && self.publish_until.is_none() {
            return Err("a retired key needs publish_until".into());
        }
        let pkcs8 = Secret::new(
            STANDARD
                .decode(self.private_key.as_bytes())
                .map_err(|_| "private_key is not valid base64".to_string())?,
        );
        let material = match cached {
            Some(m) if m.alg() == self.alg && m.pkcs8() == &pkcs8 => Arc::clone(m),
            _ => Arc::new(KeyMaterial::parse(self.alg, pkcs8)?),
        };
        if material.kid() != self.kid {
            return Err(format!(
                "kid `{}` is not the thumbprint of its key (`{}`)",
                self.kid,
                material.kid()
            ));
        }
        let info = KeyInfo {
            kid: self.kid,
            alg: self.alg,
            state: self.state,
            created_at: self.created_at,
            activated_at: self.activated_at,
            retired_at: self.retired_at,
            publish_until: self.publish_until,
        };
        Ok(StoredKey { info, material })
    }
}
