"""A third-party OAuth 2.0 authorization server built on Authlib: its RFC 7523
`JWTBearerGrant` (authlib.oauth2.rfc7523) behind Flask, trusting one issuer's JWKS. The
tests point Tessera's `oauth` target at it; it redeems Tessera's assertion as any
RFC 7523 server would.

    authlib_as.py PORT ISSUER JWKS_URL CLIENT_ID CLIENT_SECRET

`GET /issued` lists what it issued (access token, subject, scope), for the test to check.
"""

import json
import sys
import urllib.request

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerGrant
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet

PORT, ISSUER, JWKS_URL, CLIENT_ID, CLIENT_SECRET = sys.argv[1:6]
TOKEN_ENDPOINT = f"http://127.0.0.1:{PORT}/token"
ISSUED = []


class TrustedIssuer(ClientMixin):
    """The issuer whose assertions this server takes, as Authlib's client model."""

    def get_client_id(self):
        return CLIENT_ID

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return client_secret == CLIENT_SECRET

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_basic"

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == JWTBearerGrant.GRANT_TYPE


class Workload:
    def __init__(self, sub):
        self.sub = sub

    def get_user_id(self):
        return self.sub


class TesseraAssertion(JWTBearerGrant):
    def resolve_issuer_client(self, issuer):
        return TrustedIssuer() if issuer == ISSUER else None

    def resolve_client_public_key(self, client):
        with urllib.request.urlopen(JWKS_URL, timeout=5) as answer:
            return KeySet.import_key_set(json.load(answer))

    def authenticate_user(self, subject):
        return Workload(subject)

    def has_granted_permission(self, client, user):
        return True

    def get_audiences(self):
        return [TOKEN_ENDPOINT]


app = Flask(__name__)


def save_token(token, req):
    ISSUED.append({"access_token": token["access_token"], "sub": req.user.sub, "scope": token.get("scope")})


server = AuthorizationServer(app, query_client=lambda client_id: None, save_token=save_token)
server.register_grant(TesseraAssertion)


@app.route("/token", methods=["POST"])
def token():
    # RFC 7523 leaves client authentication to the server; this one asks for it (RFC 6749
    # §2.3.1, HTTP Basic, each part form-urlencoded, read by Authlib) before the grant is
    # looked at.
    if extract_basic_authorization(request.headers) != (CLIENT_ID, CLIENT_SECRET):
        return jsonify(error="invalid_client"), 401
    return server.create_token_response()


@app.route("/issued")
def issued():
    return jsonify(ISSUED)


@app.route("/health")
def health():
    return "ok"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(PORT))
