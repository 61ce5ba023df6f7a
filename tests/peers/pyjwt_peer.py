"""PyJWT as an independent peer of Tessera's.

  keygen DIR                         RSA key in DIR/private.pem, public JWKS in DIR/jwks.json
  mint DIR ISS SUB AUD [K=V ...]     an RS256 token signed by PyJWT with that key
  verify JWKS_URL TOKEN AUD ISS      verify a token Tessera issued against its JWKS; print claims
  actors JWKS_URL TOKEN AUD ISS      verify it, then read its RFC 8693 act chain as a relying
                                     party would: print the actors, current first
"""

import json
import sys
import time
import uuid
from pathlib import Path

import jwt
from jwcrypto import jwk
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def keygen(directory: str) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (d / "private.pem").write_bytes(pem)
    public = jwk.JWK.from_pem(pem).export_public(as_dict=True)
    public.update({"kid": "pyjwt-1", "use": "sig", "alg": "RS256"})
    (d / "jwks.json").write_text(json.dumps({"keys": [public]}))


def mint(directory: str, iss: str, sub: str, aud: str, *extra: str) -> None:
    pem = (Path(directory) / "private.pem").read_bytes()
    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "nbf": now,
              "exp": now + 300, "jti": str(uuid.uuid4())}
    for kv in extra:
        k, v = kv.split("=", 1)
        claims[k] = v
    print(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "pyjwt-1"}))


def verify(jwks_url: str, token: str, aud: str, iss: str) -> None:
    client = jwt.PyJWKClient(jwks_url)
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256", "EdDSA"],
        audience=aud,
        issuer=iss,
        options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
    )
    print(json.dumps({"header": jwt.get_unverified_header(token), "claims": claims}))


def actors(jwks_url: str, token: str, aud: str, iss: str) -> None:
    """RFC 8693 §4.1: `act` names the current actor; a nested `act` the one before it.
    Only the outermost actor is the one acting now; the others are informational. Each
    level must identify its actor by a string `sub` (and `iss`, when present, a string)."""
    client = jwt.PyJWKClient(jwks_url)
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256", "RS256", "EdDSA"], audience=aud, issuer=iss,
                        options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]})
    chain = []
    level = claims.get("act")
    while level is not None:
        if not isinstance(level, dict) or not isinstance(level.get("sub"), str):
            raise SystemExit(f"act level is not an actor: {level!r}")
        if "iss" in level and not isinstance(level["iss"], str):
            raise SystemExit(f"act level has a non-string iss: {level!r}")
        chain.append({"sub": level["sub"], "iss": level.get("iss")})
        level = level.get("act")
    print(json.dumps({"sub": claims["sub"], "actors": chain, "claims": claims}))


if __name__ == "__main__":
    commands = {"keygen": keygen, "mint": mint, "verify": verify, "actors": actors}
    commands[sys.argv[1]](*sys.argv[2:])
