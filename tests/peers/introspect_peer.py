"""A resource server asking Tessera whether a token is active, as RFC 7662 says, with
`requests`.

    introspect_peer.py URL bearer|assertion|none CLIENT_TOKEN TOKEN

POSTs `token` and `token_type_hint=access_token` form-encoded to URL (RFC 7662 §2.1). The
client authenticates with CLIENT_TOKEN (a JWT Tessera issued it) as
`Authorization: Bearer` (RFC 6750 §2.1), as an RFC 7523 §2.2 `client_assertion`, or not
at all. Prints one JSON object: {"status": ..., "body": ..., "cache_control": ...,
"www_authenticate": ...}, and checks the members RFC 7662 §2.2 defines have their types.
"""

import json
import sys

import requests

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def introspect(url, method, client_token, token):
    data = {"token": token, "token_type_hint": "access_token"}
    headers = {"Accept": "application/json"}
    if method == "bearer":
        headers["Authorization"] = f"Bearer {client_token}"
    elif method == "assertion":
        data["client_assertion_type"] = JWT_BEARER
        data["client_assertion"] = client_token
    response = requests.post(url, data=data, headers=headers, timeout=10)
    body = response.json()
    if response.status_code == 200:
        # RFC 7662 §2.2: `active` is required and boolean; the others have fixed types.
        assert isinstance(body["active"], bool), body
        for name in ("scope", "client_id", "token_type", "sub", "iss", "jti"):
            assert name not in body or isinstance(body[name], str), (name, body)
        for name in ("exp", "iat", "nbf"):
            assert name not in body or isinstance(body[name], int), (name, body)
        assert "aud" not in body or isinstance(body["aud"], (str, list)), body
        if not body["active"]:
            assert body == {"active": False}, "an inactive token reveals nothing else"
    return {
        "status": response.status_code,
        "body": body,
        "cache_control": response.headers.get("Cache-Control"),
        "www_authenticate": response.headers.get("WWW-Authenticate"),
    }


def main():
    url, method, client_token, token = sys.argv[1:5]
    print(json.dumps(introspect(url, method, client_token, token)))


if __name__ == "__main__":
    main()
