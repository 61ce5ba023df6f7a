#!/usr/bin/env python3
"""Build fuzz/seeds/<target>/ from the repository's fixtures and documented examples.

Seeds are small and committed; libFuzzer reads them and writes what it finds to
fuzz/corpus/<target>/ (not committed). Run from anywhere: `python3 fuzz/seeds.py`.
The output is deterministic, so re-running it changes nothing unless a fixture changed.
"""

import base64
import hashlib
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"

# The fixed time the aws_iam target checks freshness against (fuzzing::NOW).
AMZ_DATE = "20231114T221320Z"


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def write(target, content, name=None):
    data = content.encode() if isinstance(content, str) else content
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (name or hashlib.sha256(data).hexdigest()[:16])).write_bytes(data)


def copy_files(target, paths):
    for path in sorted(paths):
        write(target, path.read_bytes(), str(path.relative_to(ROOT)).replace("/", "_"))


def jwt_seeds():
    claims = {
        "iss": "https://issuer.example",
        "aud": "tessera",
        "sub": "repo:octo-org/payments:ref:refs/heads/main",
        "exp": 1_700_000_300,
        "iat": 1_700_000_000,
        "nbf": 1_699_999_990,
        "repository": "octo-org/payments",
        "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api"}},
    }
    headers = [
        {"alg": "EdDSA", "kid": "fuzz"},
        {"alg": "EdDSA", "kid": "fuzz", "typ": "JWT"},
        {"alg": "EdDSA"},
        {"alg": "EdDSA", "kid": "fuzz", "cty": "JWT"},
        {"alg": "EdDSA", "kid": "fuzz", "crit": ["exp"]},
        {"alg": "none"},
    ]
    payloads = [
        claims,
        dict(claims, aud=["other", "tessera"]),
        dict(claims, exp="1700000300"),
        {k: v for k, v in claims.items() if k != "exp"},
    ]
    # Signed mode: header JSON, NUL, payload JSON; the target signs it.
    for header in headers:
        for payload in payloads:
            write("jwt", compact(header) + "\0" + compact(payload))
    # Raw mode: tokens as sent, with a signature that does not verify.
    for header in headers:
        write("jwt", f"{b64(compact(header))}.{b64(compact(claims))}.{b64(bytes(64))}")
    write("jwt", "a.b.c.d.e")
    write("jwt", '{"alg":"EdDSA","alg":"RS256"}\0{"iss":"https://issuer.example","iss":"x"}')


def jwks_seeds():
    copy_files("jwks", ROOT.glob("examples/*/jwks.json"))
    for path in sorted(ROOT.glob("examples/*/jwks.json")):
        doc = json.loads(path.read_text())
        for key in doc.get("keys", []):
            key["use"] = "jwt-svid"
        write("jwks", compact(doc), str(path.relative_to(ROOT)).replace("/", "_") + "-jwt-svid")
    ed = {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": b64(bytes(range(32)))}
    write("jwks", compact({"keys": [ed, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-384"}]}))


def token_request_seeds():
    exchange = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": "aws-prod",
        "scope": "arn:aws:iam::123456789012:role/invoices-reader",
    }
    from urllib.parse import urlencode

    write("token_request", urlencode(exchange))
    write("token_request", compact(exchange))
    write("token_request", urlencode(dict(exchange, subject_token_type="urn:tessera:params:oauth:token-type:aws-signed-request")))
    write("token_request", urlencode(exchange) + "&audience=gcp-prod")
    write("token_request", "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x")
    write("token_request", '{"grant_type":1}')
    bearer = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": exchange["subject_token"],
        "audience": "ledger-api",
        "scope": "ledger:read",
    }
    write("token_request", urlencode(bearer))
    write("token_request", compact(bearer))
    write("token_request", urlencode(dict(bearer, subject_token="x")))


def oauth_answer_seeds():
    # The first two bytes are the status (big-endian), the rest the body.
    for status, body in [
        (200, {"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "scope": "read"}),
        (200, {"access_token": "at", "token_type": "N_A", "issued_token_type": "urn:ietf:params:oauth:token-type:jwt"}),
        (400, {"error": "invalid_grant", "error_description": "jti seen"}),
        (401, {"error": "invalid_client"}),
        (503, {}),
    ]:
        write("oauth_token_answer", status.to_bytes(2, "big") + compact(body).encode())


def introspection_request_seeds():
    from urllib.parse import urlencode

    token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"
    write("introspection_request", urlencode({"token": token, "token_type_hint": "access_token"}))
    write("introspection_request", urlencode({
        "token": token,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token,
    }))
    write("introspection_request", urlencode({"token": token}) + "&token=x")
    write("introspection_request", "token=%ZZ&=&&token_type_hint")
    write("token_request", urlencode(dict(exchange, actor_token="eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ5In0.c2ln",
                                          actor_token_type="urn:ietf:params:oauth:token-type:jwt")))
    write("token_request", urlencode(dict(exchange, actor_token="x")))


def delegation_seeds():
    """Token payloads with RFC 8693 `act` chains and `may_act` claims."""
    for claims in [
        {"sub": "app", "act": {"sub": "ci", "iss": "https://tessera.example.com"}},
        {"sub": "app", "act": {"sub": "ci", "act": {"sub": "bot", "act": {"sub": "admin"}}}},
        {"sub": "app", "act": {"iss": "x"}},
        {"sub": "app", "may_act": {"sub": "bot"}},
        {"sub": "app", "may_act": {"sub": "bot", "iss": "https://idp.example"}},
        {"sub": "app", "may_act": {"sub": "bot", "client_id": "x"}},
        {"sub": "app", "may_act": "bot", "act": []},
    ]:
        write("delegation_claims", compact(claims))


def txn_request_seeds():
    from urllib.parse import urlencode

    request = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:txn_token",
        "audience": "trust-domain.example",
        "scope": "trade.stocks trade.read",
        "subject_token": "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ5In0.c2ln",
        "request_context": compact({"req_ip": "69.151.72.123", "authn": "face"}),
        "request_details": compact({"action": "BUY", "ticker": "MSFT", "quantity": "100", "customer_type": {"geo": "US"}}),
    }
    write("txn_request", urlencode(request))
    write("txn_request", urlencode(dict(request, subject_token_type="urn:ietf:params:oauth:token-type:txn_token")))
    unsigned = dict(request, subject_token=compact({"sub": "batch:nightly"}), subject_token_type="urn:ietf:params:oauth:token-type:unsigned_json")
    write("txn_request", urlencode(unsigned))
    write("txn_request", urlencode(dict(request, request_details='{"a":1,"a":2}')))
    write("txn_request", compact({"customer_type": {"geo": "US", "level": [1, 2.5, None, True]}}))


def signed_request(**changes):
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEY/20231114/us-east-1/sts/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-tessera-server-id, "
        "Signature=" + "0123456789abcdef" * 4,
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Host": "sts.us-east-1.amazonaws.com",
        "X-Amz-Date": AMZ_DATE,
        "X-Amz-Security-Token": "example-session-token",
        "X-Tessera-Server-Id": "tessera.example.com",
    }
    headers.update(changes.pop("headers", {}))
    request = {
        "method": "POST",
        "url": "https://sts.us-east-1.amazonaws.com/",
        "headers": headers,
        "body": "Action=GetCallerIdentity&Version=2011-06-15",
    }
    request.update(changes)
    return b64(compact(request))


def aws_seeds():
    write("aws_signed_request", signed_request())
    write("aws_signed_request", signed_request(url="http://127.0.0.1:4566/", headers={"Host": "127.0.0.1:4566"}))
    write("aws_signed_request", signed_request(headers={"Transfer-Encoding": "chunked"}))
    write("aws_signed_request", signed_request(method="GET"))


def sts_seeds():
    ns = "https://sts.amazonaws.com/doc/2011-06-15/"
    meta = "<ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>"
    for arn, user in [
        ("arn:aws:iam::123456789012:user/Alice", "AIDACKCEVSQ6C2EXAMPLE"),
        ("arn:aws:sts::123456789012:assumed-role/payments-api/run-1", "AROAEXAMPLEID:run-1"),
        ("arn:aws-cn:sts::123456789012:assumed-role/path/to/role/session", "AROAEXAMPLEID:session"),
    ]:
        result = f"<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>{user}</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
        write("sts_response", f'<?xml version="1.0" encoding="UTF-8"?>\n<GetCallerIdentityResponse xmlns="{ns}">{result}{meta}</GetCallerIdentityResponse>')
    write("sts_response", f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>')
    write("sts_response", '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def spiffe_id_seeds():
    for text in [
        "spiffe://example.org/ns/payments/sa/api",
        "spiffe://example.org",
        "spiffe://tessera.example.com/corp/svc-payments",
        "spiffe://example.org/ns/../sa/api",
        "spiffe://Example.org:8443/x?y#z",
        "spiffe://example.org//x/",
        "/ns/payments/sa/api",
    ]:
        write("spiffe_id", text)


def session_policy_seeds():
    """Inline session policies for the aws_sts target's `policy` grant key."""
    statement = '{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::invoices/${aws:PrincipalTag/team}/*"}'
    write("aws_session_policy", '{"Version":"2012-10-17","Statement":[' + statement + "]}")
    write("aws_session_policy", '{\n  "Statement": ' + statement + "\n}")
    write("aws_session_policy", '{"Statement":[],"Statement":{}}')
    write("aws_session_policy", '{"Statement":{"Resource":"\u00ff\u2603"}}')


def console_seeds():
    write("console_query", "q=svc&source=corp&attribute=oidc.team%3Dpayments&seen=24h&decision=deny&cursor=1790000000123.oidc%3A%2F%2Fcorp%2Fsvc")
    write("console_query", "identity=oidc%3A%2F%2Fcorp%2Fsvc&issued_token=sha256%3Aba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad&cursor=1790000000123.5b0e4a3e-0000-4000-8000-000000000000")
    write("console_query", "window=7d&group=namespace&top=25&target=api")


def revocation_seeds():
    fingerprint = "sha256:" + hashlib.sha256(b"token").hexdigest()
    for match in [
        {"kind": "identity", "id": "github://octo-org/payments"},
        {"kind": "identity_glob", "pattern": "github://octo-org/pay*"},
        {"kind": "attributes", "source": "github", "attributes": {"github.repository_id": "42"}},
        {"kind": "rule", "rule": "payments-api-reads-invoices"},
        {"kind": "source", "source": "github"},
        {"kind": "subject_jti", "jti": "abc"},
        {"kind": "issued_token", "fingerprint": fingerprint},
    ]:
        write("revocation", compact({"match": match, "reason": "repository compromised", "expires_at": "2027-02-01T00:00:00Z"}))
    write("revocation", compact({"match": {"kind": "identity_glob", "pattern": "a\\"}, "reason": "r", "expires_at": 1}))


def security_event_seeds():
    caep = "https://schemas.openid.net/secevent/caep/event-type/"
    risc = "https://schemas.openid.net/secevent/risc/event-type/"
    base = {"iss": "https://idp.example", "jti": "756E69717565206964656E746966696572", "iat": 1700000000,
            "aud": "https://tessera.example/ssf"}
    subjects = [
        {"format": "iss_sub", "iss": "https://idp.example", "sub": "svc-1"},
        {"format": "uri", "uri": "k8s://prod/ns/payments/sa/api"},
        {"format": "opaque", "id": "11112222333344445555"},
        {"format": "email", "email": "svc@example.com"},
        {"format": "complex", "user": {"format": "iss_sub", "iss": "https://idp.example", "sub": "u"},
         "session": {"format": "opaque", "id": "s"}},
        {"format": "phone_number", "phone_number": "+12065550100"},
    ]
    events = [
        {caep + "session-revoked": {"event_timestamp": 1700000000}},
        {caep + "credential-change": {"credential_type": "x509", "change_type": "revoke",
                                      "reason_admin": {"en": "compromised"}}},
        {risc + "account-disabled": {"reason": "hijacking"}},
        {risc + "credential-compromise": {"credential_type": "password"}},
        {"https://example.com/event-type/other": {}},
    ]
    for subject in subjects:
        for event in events:
            write("security_event", compact(dict(base, sub_id=subject, events=event)))
    write("security_event", compact(dict(base, events={caep + "session-revoked": {"subject": subjects[0]}})))
    write("security_event", compact(dict(base, exp=1700000600, events=events[0], sub_id=subjects[0])))


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    jwt_seeds()
    jwks_seeds()
    token_request_seeds()
    introspection_request_seeds()
    delegation_seeds()
    txn_request_seeds()
    copy_files("mapping", [*ROOT.glob("mappings/*.yaml"), *ROOT.glob("examples/*/mappings/*.yaml"), *ROOT.glob("broker/src/mapping/testdata/*/*.yaml")])
    copy_files("broker_config", ROOT.glob("examples/*/broker.yaml"))
    aws_seeds()
    sts_seeds()
    spiffe_id_seeds()
    session_policy_seeds()
    console_seeds()
    revocation_seeds()
    security_event_seeds()
    oauth_answer_seeds()
    for folder in sorted(SEEDS.iterdir()):
        print(f"{folder.name}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    main()
