"""The py-spiffe library (PyPI `spiffe`) as the relying party of Tessera's JWT-SVIDs.

  validate BUNDLE_URL TRUST_DOMAIN AUDIENCE TOKEN...
      fetch the trust domain's SPIFFE bundle from Tessera's bundle endpoint, parse it with
      JwtBundle.parse, and validate each token with JwtSvid.parse_and_validate (signature,
      alg, aud, exp, the sub's trust domain). Also checks each with PyJWT against the
      bundle's `use: jwt-svid` keys. Prints one JSON line: the bundle as seen, and per
      token either the SVID or the error the library raised.
"""

import json
import sys
import urllib.request

import jwt
from spiffe import JwtBundle, JwtSvid, TrustDomain


def pyjwt_check(bundle_doc: dict, token: str, audience: str) -> dict:
    header = jwt.get_unverified_header(token)
    keys = [k for k in bundle_doc["keys"] if k.get("use") == "jwt-svid" and k.get("kid") == header.get("kid")]
    if len(keys) != 1:
        return {"error": "no jwt-svid key with the token's kid"}
    key = jwt.PyJWK(keys[0], algorithm=header["alg"])
    claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=audience,
                        options={"require": ["sub", "aud", "exp"]})
    return {"header": header, "claims": claims}


def validate(bundle_url: str, trust_domain: str, audience: str, *tokens: str) -> None:
    with urllib.request.urlopen(bundle_url, timeout=10) as answer:
        raw = answer.read()
        cache_control = answer.headers.get("Cache-Control")
    doc = json.loads(raw)
    bundle = JwtBundle.parse(TrustDomain(trust_domain), raw)
    results = []
    for token in tokens:
        try:
            svid = JwtSvid.parse_and_validate(token, bundle, {audience})
            results.append({
                "spiffe_id": str(svid.spiffe_id),
                "audience": sorted(svid.audience),
                "expiry": svid.expiry,
                "pyjwt": pyjwt_check(doc, token, audience),
            })
        except Exception as error:  # the library's refusal is the result
            results.append({"error": type(error).__name__, "message": str(error)})
    print(json.dumps({
        "bundle": {
            "trust_domain": str(bundle.trust_domain),
            "kids": sorted(bundle.jwt_authorities.keys()),
            "spiffe_sequence": doc.get("spiffe_sequence"),
            "spiffe_refresh_hint": doc.get("spiffe_refresh_hint"),
            "uses": sorted({k.get("use") for k in doc["keys"]}),
            "cache_control": cache_control,
        },
        "results": results,
    }))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"validate": validate}[command](*args)
