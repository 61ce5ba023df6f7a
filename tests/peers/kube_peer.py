"""A Kubernetes API server's JWT authenticator, as the peer of Tessera's `kubernetes` target.

  check-config CONFIG
      check an AuthenticationConfiguration (apiserver.config.k8s.io/v1beta1 or v1) against
      the fields of the upstream API (JWTAuthenticator, Issuer, ClaimValidationRule,
      ClaimMappings, PrefixedClaimOrExpression, ClaimOrExpression, ExtraMapping,
      UserValidationRule) as a strict JSON schema, and compile every CEL expression in it
      with cel-python. kubernetes-validate is asked too; its schema set describes API
      resources, which this file is not, and the answer says so. Prints JSON.
  serve CONFIG CERT KEY LOG
      an HTTPS server answering like kube-apiserver: `Authorization: Bearer` tokens are
      authenticated by the JWT authenticator CONFIG describes (discovery and JWKS fetched
      from issuer.url, signature, iss, aud, exp and nbf checked by PyJWT, then
      claimValidationRules, claimMappings and userValidationRules evaluated with
      cel-python), and each request's outcome is appended to LOG as a JSON line. GET
      /version answers a version object; a refused token gets a 401 Status. Prints its
      port, then serves until killed.
"""

import json
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import celpy
import jsonschema
import jwt
import yaml

STRING = {"type": "string"}
CLAIM_OR_EXPRESSION = {
    "type": "object", "additionalProperties": False,
    "properties": {"claim": STRING, "expression": STRING},
}
PREFIXED = {
    "type": "object", "additionalProperties": False,
    "properties": {"claim": STRING, "prefix": STRING, "expression": STRING},
}
SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "jwt"],
    "properties": {
        "apiVersion": {"enum": ["apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1"]},
        "kind": {"const": "AuthenticationConfiguration"},
        "anonymous": {"type": "object"},
        "jwt": {"type": "array", "minItems": 1, "maxItems": 64, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["issuer", "claimMappings"],
            "properties": {
                "issuer": {
                    "type": "object", "additionalProperties": False,
                    "required": ["url", "audiences"],
                    "properties": {
                        "url": STRING, "discoveryURL": STRING, "certificateAuthority": STRING,
                        "audiences": {"type": "array", "minItems": 1, "items": STRING},
                        "audienceMatchPolicy": {"enum": ["", "MatchAny"]},
                        "egressSelectorType": {"enum": ["controlplane", "cluster"]},
                    },
                },
                "claimValidationRules": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"claim": STRING, "requiredValue": STRING, "expression": STRING, "message": STRING},
                }},
                "claimMappings": {
                    "type": "object", "additionalProperties": False, "required": ["username"],
                    "properties": {
                        "username": PREFIXED, "groups": PREFIXED, "uid": CLAIM_OR_EXPRESSION,
                        "extra": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["key", "valueExpression"],
                            "properties": {"key": STRING, "valueExpression": STRING},
                        }},
                    },
                },
                "userValidationRules": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["expression"],
                    "properties": {"expression": STRING, "message": STRING},
                }},
            },
        }},
    },
}


def expressions(authenticator):
    for rule in authenticator.get("claimValidationRules", []):
        if "expression" in rule:
            yield rule["expression"]
    for name, mapping in authenticator["claimMappings"].items():
        if name == "extra":
            yield from (e["valueExpression"] for e in mapping)
        elif "expression" in mapping:
            yield mapping["expression"]
    yield from (rule["expression"] for rule in authenticator.get("userValidationRules", []))


def check_config(path):
    document = yaml.safe_load(open(path))
    jsonschema.validate(document, SCHEMA)
    env = celpy.Environment()
    compiled = [e for a in document["jwt"] for e in expressions(a) if env.compile(e) is not None]
    try:
        import kubernetes_validate
        kubernetes_validate.validate(document, "1.34", strict=True)
        known = "validated"
    except Exception as error:  # the schema set has API resources, not this config kind
        known = type(error).__name__
    print(json.dumps({"schema": "ok", "cel_expressions": len(compiled), "kubernetes_validate": known,
                      "document": document}))


def evaluate(expression, **variables):
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    return program.evaluate({k: celpy.json_to_cel(v) for k, v in variables.items()})


def plain(value):
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


class Authenticator:
    def __init__(self, path):
        self.config = yaml.safe_load(open(path))["jwt"][0]
        issuer = self.config["issuer"]["url"]
        with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=10) as answer:
            discovery = json.load(answer)
        if discovery["issuer"] != issuer:
            raise ValueError("the discovery document names another issuer")
        self.jwks = jwt.PyJWKClient(discovery["jwks_uri"])

    def user(self, token):
        issuer = self.config["issuer"]
        key = self.jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=issuer["audiences"],
                            issuer=issuer["url"], options={"require": ["exp", "iss", "aud"]})
        for rule in self.config.get("claimValidationRules", []):
            if not bool(evaluate(rule["expression"], claims=claims)):
                raise ValueError("claim validation: " + rule.get("message", rule["expression"]))
        mappings = self.config["claimMappings"]
        user = {"username": plain(evaluate(mappings["username"]["expression"], claims=claims))}
        user["groups"] = plain(evaluate(mappings["groups"]["expression"], claims=claims)) if "groups" in mappings else []
        if "uid" in mappings:
            user["uid"] = plain(evaluate(mappings["uid"]["expression"], claims=claims))
        for rule in self.config.get("userValidationRules", []):
            if not bool(evaluate(rule["expression"], user=user)):
                raise ValueError("user validation: " + rule.get("message", rule["expression"]))
        return user


def serve(config, cert, key, log):
    authenticator = Authenticator(config)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            header = self.headers.get("Authorization", "")
            try:
                if not header.startswith("Bearer "):
                    raise ValueError("no bearer token")
                user = authenticator.user(header[len("Bearer "):])
            except Exception as error:
                with open(log, "a") as out:
                    out.write(json.dumps({"path": self.path, "refused": f"{type(error).__name__}: {error}"}) + "\n")
                return self.answer(401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                         "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
            with open(log, "a") as out:
                out.write(json.dumps({"path": self.path, "user": user}) + "\n")
            if self.path == "/version":
                return self.answer(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-tessera-peer",
                                         "platform": "linux/amd64"})
            return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"check-config": check_config, "serve": serve}[command](*args)
