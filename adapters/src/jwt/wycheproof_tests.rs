//! Wycheproof's signature vectors for every JOSE algorithm Tessera verifies, through
//! Tessera's own path from a JWK and an `alg` to a verification: the key is published as a
//! JWK and parsed by [`KeySet::from_json`] for that one algorithm, chosen by
//! [`KeySet::select`], and the signature checked by [`check_signature`], as a token's is.
//!
//! Files: ECDSA P-256/SHA-256 and P-384/SHA-384 in P1363 form (JOSE's `R || S`, ES256 and
//! ES384), RSA PKCS#1 v1.5 with SHA-256/384/512 for 2048- to 8192-bit keys (RS256-RS512),
//! RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash (PS256-PS512,
//! RFC 7518 §3.5), and Ed25519 (EdDSA, RFC 8037). Files whose parameters no JOSE algorithm
//! names (other hashes, salt lengths, curves) are out of scope.
//!
//! Policy: `valid` vectors verify, `invalid` ones are refused, and `acceptable` ones are
//! refused too. The only acceptable vectors in these files are PKCS#1 v1.5 signatures whose
//! DigestInfo leaves out the NULL hash parameters (flag `MissingNull`): RFC 8017 §9.2
//! note 2 lets a verifier accept that second encoding; Tessera accepts one encoding per
//! signature, the one RFC 7518 §3.3 signs with.

use serde_json::{Value, json};
use wycheproof::TestResult;

use super::alg::Algorithm;
use super::keys::{KeySet, Selection};
use super::testkit::{b64, jwks};
use super::verify::check_signature;

const KID: &str = "wycheproof";

/// Counts of what ran, so a file that loads empty fails instead of passing.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused: usize,
}

fn verify(alg: Algorithm, jwk: &Value, msg: &[u8], sig: &[u8]) -> bool {
    let set = KeySet::from_json(jwks(std::slice::from_ref(jwk)).as_bytes(), &[alg])
        .unwrap_or_else(|e| panic!("{alg}: the vector's key is refused: {e}"));
    let Selection::Found(key, _) = set.select(Some(KID), alg) else {
        panic!("{alg}: no key selected for the vector's key");
    };
    check_signature(key, msg, sig).is_ok()
}

fn expect(
    tally: &mut Tally,
    file: &str,
    alg: Algorithm,
    jwk: &Value,
    test: (usize, &str, TestResult, &[u8], &[u8]),
) {
    let (id, comment, result, msg, sig) = test;
    let accepted = verify(alg, jwk, msg, sig);
    let want = result == TestResult::Valid;
    assert_eq!(accepted, want, "{file} tcId {id} ({comment}): expected {result:?}, accepted = {accepted}");
    if accepted {
        tally.accepted += 1;
    } else {
        tally.refused += 1;
    }
}

fn check_tally(file: &str, tally: &Tally) {
    assert!(tally.accepted > 0 && tally.refused > 0, "{file} ran too few vectors: {tally:?}");
}

#[test]
fn ecdsa_p1363_vectors() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg, width) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::Es256, 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::Es384, 48),
    ] {
        let file = format!("{name:?}");
        let mut tally = Tally::default();
        for group in TestSet::load(name).unwrap().test_groups {
            // The uncompressed point, 0x04 || X || Y, each coordinate full width.
            let point: &[u8] = &group.key.key;
            assert_eq!(point.len(), 1 + 2 * width, "{file}");
            let jwk = json!({
                "kty": "EC", "kid": KID, "crv": if width == 32 { "P-256" } else { "P-384" },
                "x": b64(&point[1..=width]), "y": b64(&point[1 + width..]),
            });
            for t in &group.tests {
                expect(&mut tally, &file, alg, &jwk, (t.tc_id, &t.comment, t.result, &t.msg, &t.sig));
            }
        }
        check_tally(&file, &tally);
    }
}

/// An RSA JWK from the vector's modulus and exponent as Wycheproof writes them (the
/// modulus with a leading zero octet, which the key set parser drops).
fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "kid": KID, "n": b64(n), "e": b64(e)})
}

#[test]
fn rsa_pkcs1_v1_5_vectors() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let files = [
        (TestName::Rsa2048Sha256, Algorithm::Rs256),
        (TestName::Rsa2048Sha384, Algorithm::Rs384),
        (TestName::Rsa2048Sha512, Algorithm::Rs512),
        (TestName::Rsa3072Sha256, Algorithm::Rs256),
        (TestName::Rsa3072Sha384, Algorithm::Rs384),
        (TestName::Rsa3072Sha512, Algorithm::Rs512),
        (TestName::Rsa4096Sha256, Algorithm::Rs256),
        (TestName::Rsa4096Sha384, Algorithm::Rs384),
        (TestName::Rsa4096Sha512, Algorithm::Rs512),
        (TestName::Rsa8192Sha256, Algorithm::Rs256),
        (TestName::Rsa8192Sha384, Algorithm::Rs384),
        (TestName::Rsa8192Sha512, Algorithm::Rs512),
    ];
    let mut acceptable = 0;
    for (name, alg) in files {
        let file = format!("{name:?}");
        let mut tally = Tally::default();
        for group in TestSet::load(name).unwrap().test_groups {
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            for t in &group.tests {
                acceptable += usize::from(t.result == TestResult::Acceptable);
                expect(&mut tally, &file, alg, &jwk, (t.tc_id, &t.comment, t.result, &t.msg, &t.sig));
            }
        }
        check_tally(&file, &tally);
    }
    // One MissingNull vector per file, each refused above.
    assert_eq!(acceptable, files.len());
}

#[test]
fn rsa_pss_vectors() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    for (name, alg) in [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::Ps256),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::Ps256),
        (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::Ps256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::Ps384),
        (TestName::RsaPss4096Sha384Mgf1SaltLen48, Algorithm::Ps384),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::Ps512),
    ] {
        let file = format!("{name:?}");
        let mut tally = Tally::default();
        for group in TestSet::load(name).unwrap().test_groups {
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            for t in &group.tests {
                expect(&mut tally, &file, alg, &jwk, (t.tc_id, &t.comment, t.result, &t.msg, &t.sig));
            }
        }
        check_tally(&file, &tally);
    }
}

#[test]
fn ed25519_vectors() {
    use wycheproof::eddsa::{TestName, TestSet};
    let file = "ed25519";
    let mut tally = Tally::default();
    for group in TestSet::load(TestName::Ed25519).unwrap().test_groups {
        let jwk = json!({"kty": "OKP", "kid": KID, "crv": "Ed25519", "x": b64(&group.key.pk)});
        for t in &group.tests {
            expect(&mut tally, file, Algorithm::EdDsa, &jwk, (t.tc_id, &t.comment, t.result, &t.msg, &t.sig));
        }
    }
    check_tally(file, &tally);
}
