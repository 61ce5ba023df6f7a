"""PyJWT as a workload of the trust domain validating a Txn-Token
(draft-ietf-oauth-transaction-tokens-10 §11.2), as a relying party would: the keys from
the JWKS the issuer's discovery document names, the signature, `typ` `txntoken+jwt`, `aud`
the trust domain, not expired, and the claims the draft requires.

  verify ISSUER TOKEN TRUST_DOMAIN NOW    print {"header": ..., "claims": ...} or fail

NOW is the broker's clock (seconds since the epoch): tests run it ahead of the wall clock,
so `exp` and `iat` are checked against NOW here rather than by PyJWT's own clock.
"""

import json
import sys
import urllib.request

import jwt

REQUIRED = ["iat", "aud", "exp", "txn", "sub", "scope", "req_wl"]


def verify(issuer: str, token: str, trust_domain: str, now: str) -> None:
    with urllib.request.urlopen(issuer.rstrip("/") + "/.well-known/openid-configuration") as r:
        discovery = json.load(r)
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256", "EdDSA"],
        audience=trust_domain,
        options={"require": REQUIRED, "verify_exp": False, "verify_iat": False},
    )
    at = int(now)
    if not isinstance(claims["exp"], int) or claims["exp"] <= at:
        raise SystemExit("expired")
    if not isinstance(claims["iat"], int) or claims["iat"] > at:
        raise SystemExit("issued in the future")
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "txntoken+jwt":
        raise SystemExit(f"typ is {header.get('typ')!r}, not txntoken+jwt")
    for name in ["txn", "sub", "scope", "req_wl"]:
        if not isinstance(claims[name], str) or not claims[name]:
            raise SystemExit(f"{name} is not a non-empty string")
    for name in ["tctx", "rctx"]:
        if name in claims and not isinstance(claims[name], dict):
            raise SystemExit(f"{name} is not a JSON object")
    print(json.dumps({"header": header, "claims": claims}))


if __name__ == "__main__":
    commands = {"verify": verify}
    commands[sys.argv[1]](*sys.argv[2:])
