"""Workload tokens in the shape each platform documents, minted by PyJWT or jwcrypto.

  keygen DIR                      RSA and P-256 keys in DIR; DIR/jwks.json (both keys,
                                  use sig) and DIR/bundle.json (a SPIFFE bundle: the P-256
                                  key as a jwt-svid key, a CA certificate as x509-svid)
  mint KIND DIR ISS AUD NOW       print a token of KIND issued at NOW (Unix seconds)
  kinds                           print the source kinds tokens are minted for, one a line

KIND is a key of MINTERS: kubernetes, github_actions, gitlab_ci, circleci, gcp, azure_v1,
azure_v2, spiffe. The claim values are the documentation's examples; tests assert the
identity they yield. A new source kind adds its builder to MINTERS.
"""

import base64
import datetime
import json
import sys
import uuid
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwcrypto import jwk
from jwcrypto import jwt as jwcrypto_jwt

RSA_KID = "platform-rsa"
EC_KID = "spire-jwt-1"


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_jwk(key_pem: bytes, **members) -> dict:
    public = jwk.JWK.from_pem(key_pem).export_public(as_dict=True)
    public.update(members)
    return public


def ca_certificate(key) -> str:
    """A self-signed CA certificate, base64 DER, as a bundle's x509-svid entry holds."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def keygen(directory: str) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rsa_pem = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_pem = pem(ec.generate_private_key(ec.SECP256R1()))
    (d / "rsa.pem").write_bytes(rsa_pem)
    (d / "ec.pem").write_bytes(ec_pem)
    keys = [
        public_jwk(rsa_pem, kid=RSA_KID, use="sig", alg="RS256"),
        public_jwk(ec_pem, kid=EC_KID, use="sig", alg="ES256"),
    ]
    (d / "jwks.json").write_text(json.dumps({"keys": keys}))
    # SPIFFE Trust Domain and Bundle §4: one JWK per key, `use` telling the SVID type.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    x509_entry = public_jwk(pem(ca_key), use="x509-svid", x5c=[ca_certificate(ca_key)])
    jwt_entry = public_jwk(ec_pem, kid=EC_KID, use="jwt-svid")
    bundle = {"keys": [x509_entry, jwt_entry], "spiffe_sequence": 1, "spiffe_refresh_hint": 300}
    (d / "bundle.json").write_text(json.dumps(bundle))


def kubernetes(iss: str, aud: str, now: int) -> dict:
    # Kubernetes docs, "Service account token volume projection" (kubelet-requested,
    # bound to a pod, 1.30+ with node info).
    return {
        "aud": [aud], "exp": now + 3600, "iat": now, "nbf": now, "iss": iss,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": "payments",
            "node": {"name": "ip-10-0-1-23.eu-west-1.compute.internal",
                     "uid": "9a8b7c6d-3333-4c3a-9a0e-2d2f4b5c6d7e"},
            "pod": {"name": "api-7d9f8-x2x4z", "uid": "5e6f7a8b-2222-4c3a-9a0e-2d2f4b5c6d7e"},
            "serviceaccount": {"name": "api", "uid": "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e"},
        },
        "sub": "system:serviceaccount:payments:api",
    }


def github_actions(iss: str, aud: str, now: int) -> dict:
    # GitHub docs, "About security hardening with OpenID Connect", example token.
    return {
        "jti": "example-id", "sub": "repo:octo-org/octo-repo:environment:prod",
        "environment": "prod", "aud": aud, "ref": "refs/heads/main", "sha": "example-sha",
        "repository": "octo-org/octo-repo", "repository_owner": "octo-org",
        "actor_id": "12", "repository_visibility": "private", "repository_id": "74",
        "repository_owner_id": "65", "run_id": "example-run-id", "run_number": "10",
        "run_attempt": "2", "runner_environment": "github-hosted", "actor": "octocat",
        "workflow": "example-workflow", "head_ref": "", "base_ref": "",
        "event_name": "workflow_dispatch", "ref_type": "branch", "ref_protected": "true",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/example-workflow.yml@refs/heads/main",
        "workflow_sha": "example-sha",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "job_workflow_sha": "example-sha",
        "iss": iss, "nbf": now - 5, "exp": now + 300, "iat": now,
    }


def gitlab_ci(iss: str, aud: str, now: int) -> dict:
    # GitLab docs, "OpenID Connect (OIDC) Authentication Using ID Tokens", token payload.
    return {
        "namespace_id": "72", "namespace_path": "my-group", "project_id": "20",
        "project_path": "my-group/my-project", "user_id": "1", "user_login": "sample-user",
        "user_email": "sample-user@example.com", "user_access_level": "developer",
        "pipeline_id": "574", "pipeline_source": "push", "job_id": "302",
        "ref": "feature-branch-1", "ref_type": "branch", "ref_path": "refs/heads/feature-branch-1",
        "ref_protected": "false", "environment": "test-environment2",
        "environment_protected": "false", "deployment_tier": "testing",
        "environment_action": "start", "runner_id": 1, "runner_environment": "self-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc", "project_visibility": "public",
        "ci_config_ref_uri": "gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main",
        "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "groups_direct": ["mygroup/mysubgroup", "myothergroup/myothersubgroup"],
        "jti": "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b", "iss": iss, "iat": now, "nbf": now - 5,
        "exp": now + 3600, "sub": "project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1",
        "aud": aud,
    }


def circleci(iss: str, aud: str, now: int) -> dict:
    # CircleCI docs, "Using OpenID Connect tokens in jobs", format of the ID token.
    org = iss.rsplit("/", 1)[-1]
    project = "4f5a2c1e-0b8d-4e7f-9a6b-3c2d1e0f9a8b"
    return {
        "iss": iss, "aud": aud, "iat": now, "exp": now + 3600,
        "sub": f"org/{org}/project/{project}/user/2a5b7c1d-0000-4000-8000-000000000001",
        "oidc.circleci.com/project-id": project,
        "oidc.circleci.com/context-ids": ["c1a2b3c4-0000-4000-8000-00000000000a"],
        "oidc.circleci.com/vcs-origin": "github.com/octo-org/payments-api",
        "oidc.circleci.com/vcs-ref": "refs/heads/main",
        "oidc.circleci.com/ssh-rerun": False,
    }


def gcp(iss: str, aud: str, now: int) -> dict:
    # Google Cloud docs, "Verifying the identity of instances", format=full.
    return {
        "aud": aud, "azp": "107517467455664443765",
        "email": "api@payments-prod.iam.gserviceaccount.com", "email_verified": True,
        "exp": now + 3600, "iat": now,
        "google": {"compute_engine": {
            "instance_creation_timestamp": now - 86400, "instance_id": "6835582326887656987",
            "instance_name": "api-1", "project_id": "payments-prod",
            "project_number": 739419398126, "zone": "europe-west1-b",
        }},
        "iss": iss, "sub": "107517467455664443765",
    }


MIRID = ("/subscriptions/0b1c2d3e-1111-2222-3333-444455556666/resourcegroups/payments-rg"
         "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments-api")


def azure(iss: str, aud: str, now: int, version: str) -> dict:
    # Microsoft identity platform, "Access token claims reference": an app-only token of
    # a user-assigned managed identity (24 h, as the IMDS endpoint issues them).
    tid = iss.rstrip("/").removesuffix("/v2.0").rsplit("/", 1)[1]
    claims = {
        "aud": aud, "iss": iss, "iat": now, "nbf": now, "exp": now + 86400 + 300,
        "aio": "k2BgYPj2ma3bO7I0c3tUc/AA", "idtyp": "app",
        "oid": "a1b2c3d4-0000-4000-8000-1234567890ab", "rh": "0.AQEAv4j5cvGGr0GRqy180BHbRw.",
        "sub": "a1b2c3d4-0000-4000-8000-1234567890ab", "tid": tid,
        "uti": "Yq1cnN0FnEqXpWx3ZxUBAA", "xms_mirid": MIRID, "xms_tcdt": 1289241547,
    }
    client = "d9f1e0c2-aaaa-4bbb-8ccc-0123456789ab"
    if version == "1.0":
        claims.update({"appid": client, "appidacr": "2", "idp": iss, "ver": "1.0"})
    else:
        claims.update({"azp": client, "azpacr": "2", "ver": "2.0"})
    return claims


def spiffe(iss: str, aud: str, now: int) -> dict:
    # SPIFFE JWT-SVID §3: sub, aud, exp; SPIRE adds iat and no iss unless configured.
    claims = {"sub": "spiffe://example.org/ns/payments/sa/api", "aud": [aud], "exp": now + 300, "iat": now}
    if iss != "-":
        claims["iss"] = iss
    return claims


def sign_pyjwt(directory: Path, claims: dict, headers: dict) -> str:
    return jwt.encode(claims, (directory / "rsa.pem").read_bytes(), algorithm="RS256",
                      headers={"kid": RSA_KID, **headers})


def sign_jwcrypto(key_pem: bytes, claims: dict, header: dict) -> str:
    token = jwcrypto_jwt.JWT(header=header, claims=claims)
    token.make_signed_token(jwk.JWK.from_pem(key_pem))
    return token.serialize()


def sign_azure(directory: Path, claims: dict) -> str:
    header = {"typ": "JWT", "alg": "RS256", "x5t": "L1KfKFI_jnXbwWc22xZxw1sUHH0", "kid": RSA_KID}
    return sign_jwcrypto((directory / "rsa.pem").read_bytes(), claims, header)


def sign_spiffe(directory: Path, claims: dict) -> str:
    return sign_jwcrypto((directory / "ec.pem").read_bytes(), claims, {"alg": "ES256", "kid": EC_KID, "typ": "JWT"})


# Each KIND: the registered source kind its tokens are for, and how one is minted
# (key directory, iss, aud, now).
MINTERS = {
    "kubernetes": ("kubernetes", lambda d, iss, aud, t: sign_pyjwt(d, kubernetes(iss, aud, t), {})),
    # GitHub's tokens carry an x5t thumbprint beside the kid.
    "github_actions": ("github_actions", lambda d, iss, aud, t: sign_pyjwt(
        d, github_actions(iss, aud, t), {"x5t": "ykO3qKsfDaf0qqNQsXrl7Lpq1bc"})),
    "gitlab_ci": ("gitlab_ci", lambda d, iss, aud, t: sign_pyjwt(d, gitlab_ci(iss, aud, t), {})),
    "circleci": ("circleci", lambda d, iss, aud, t: sign_pyjwt(d, circleci(iss, aud, t), {})),
    "gcp": ("gcp", lambda d, iss, aud, t: sign_pyjwt(d, gcp(iss, aud, t), {})),
    "azure_v1": ("azure", lambda d, iss, aud, t: sign_azure(d, azure(iss, aud, t, "1.0"))),
    "azure_v2": ("azure", lambda d, iss, aud, t: sign_azure(d, azure(iss, aud, t, "2.0"))),
    "spiffe": ("spiffe", lambda d, iss, aud, t: sign_spiffe(d, spiffe(iss, aud, t))),
}


def mint(kind: str, directory: str, iss: str, aud: str, now: str) -> None:
    if kind not in MINTERS:
        raise SystemExit(f"unknown kind {kind}: one of {', '.join(MINTERS)}")
    _, minter = MINTERS[kind]
    print(minter(Path(directory), iss, aud, int(now)))


def kinds() -> None:
    print("\n".join(sorted({source for source, _ in MINTERS.values()})))


if __name__ == "__main__":
    commands = {"keygen": keygen, "mint": mint, "kinds": kinds}
    commands[sys.argv[1]](*sys.argv[2:])
