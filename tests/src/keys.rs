//! Test signing keys and a JWS builder that does exactly what it is told, forgeries
//! included.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// A key a test issuer signs with.
#[derive(Debug)]
pub enum TestKey {
    Rsa { kid: String, key: aws_lc_rs::rsa::KeyPair },
    Ec { kid: String, key: EcdsaKeyPair },
    Ed { kid: String, key: Ed25519KeyPair },
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        let key =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key generation");
        Self::Rsa { kid: kid.into(), key }
    }

    pub fn ec(kid: &str) -> Self {
        let key =
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key generation");
        Self::Ec { kid: kid.into(), key }
    }

    pub fn ed(kid: &str) -> Self {
        let key = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        Self::Ed { kid: kid.into(), key }
    }

    pub fn kid(&self) -> &str {
        match self {
            Self::Rsa { kid, .. } | Self::Ec { kid, .. } | Self::Ed { kid, .. } => kid,
        }
    }

    /// The JOSE `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RS256",
            Self::Ec { .. } => "ES256",
            Self::Ed { .. } => "EdDSA",
        }
    }

    /// The public JWK (RFC 7517), with `kid`, `use` and `alg`.
    pub fn jwk(&self) -> Value {
        match self {
            Self::Rsa { kid, key } => {
                let public = key.public_key();
                json!({
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Self::Ec { kid, key } => {
                let point = key.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
                })
            }
            Self::Ed { kid, key } => json!({
                "kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
                "x": B64.encode(key.public_key().as_ref()),
            }),
        }
    }

    /// The public key as PEM SubjectPublicKeyInfo, for forging HS256 with it as the
    /// HMAC secret (the classic algorithm-confusion attack).
    pub fn public_pem(&self) -> String {
        let der = match self {
            Self::Rsa { key, .. } => key.public_key().as_der().expect("der").as_ref().to_vec(),
            Self::Ec { key, .. } => key.public_key().as_der().expect("der").as_ref().to_vec(),
            Self::Ed { key, .. } => key.public_key().as_der().expect("der").as_ref().to_vec(),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Sign `claims` with the default header `{alg, kid, typ: JWT}`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({ "alg": self.alg(), "kid": self.kid(), "typ": "JWT" }), claims)
    }

    /// Sign with exactly this header (it may lie about `alg`).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Sign raw header and payload bytes (for duplicate-key JSON and other odd shapes).
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let rng = SystemRandom::new();
        let sig = match self {
            Self::Rsa { key, .. } => {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).expect("RSA sign");
                sig
            }
            Self::Ec { key, .. } => key.sign(&rng, input.as_bytes()).expect("EC sign").as_ref().to_vec(),
            Self::Ed { key, .. } => key.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

/// Build a compact JWS from parts, with a given signature (forgeries: `alg: none` with
/// an empty signature, zeroed ES256 signatures, HS256).
pub fn jws(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()), B64.encode(signature))
}

/// HS256 over `header.claims` keyed with `secret`.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

/// Decode a JWT's payload without verifying it (for inspecting what Tessera issued).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&B64.decode(payload).expect("base64url")).expect("JSON payload")
}

/// Decode a JWT's header without verifying it.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("a JWT has a header");
    serde_json::from_slice(&B64.decode(header).expect("base64url")).expect("JSON header")
}

/// Verify a token against a JWKS document the way a relying party would (by `kid`, with
/// the key's own algorithm) and return its claims; panics if it does not verify.
pub fn verify_with_jwks(jwks: &Value, token: &str) -> Value {
    let header = header_of(token);
    let kid = header["kid"].as_str().expect("issued tokens carry a kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not published in the JWKS"));
    assert_eq!(jwk["alg"], header["alg"], "JWK alg and header alg agree");
    let (input, sig) = token.rsplit_once('.').expect("three parts");
    let sig = B64.decode(sig).expect("base64url signature");
    let field = |name: &str| B64.decode(jwk[name].as_str().expect("JWK field")).expect("base64url");
    let verified = match header["alg"].as_str().expect("alg") {
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(field("x"));
            point.extend(field("y"));
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &sig)
        }
        "RS256" => signature::RsaPublicKeyComponents { n: field("n"), e: field("e") }.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        ),
        "EdDSA" => {
            signature::UnparsedPublicKey::new(&signature::ED25519, field("x")).verify(input.as_bytes(), &sig)
        }
        other => panic!("unexpected alg {other}"),
    };
    verified.unwrap_or_else(|_| panic!("signature of the issued token does not verify"));
    claims_of(token)
}
