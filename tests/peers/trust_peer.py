"""The platform side of `tessera trust`: what it writes, taken by real implementations.

    trust_peer.py aws ENDPOINT FILE
        FILE is `tessera trust --format json` output for an aws_sts target. In moto's IAM
        at ENDPOINT, creates each OIDC provider (in the account its ARN names) and each
        role with its trust policy, with boto3 as a user would, then reads them back and
        prints {"providers": [...], "roles": [...]} as IAM returns them.

    trust_peer.py hcl FILE
        Parses FILE (Terraform) with python-hcl2 and prints its resources as JSON,
        {"TYPE": {"NAME": {attribute: value}}}, strings unquoted, and a `jsonencode(...)`
        argument parsed as the HCL object it is; then {"comments": [...]}.

    trust_peer.py shell FILE
        Splits FILE (gcloud or az commands) into the argument lists a POSIX shell would
        run, with Python's shlex, and prints them as JSON.
"""

import json
import shlex
import sys

import boto3
import hcl2
from botocore.config import Config


def iam(endpoint, account):
    c = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATRUSTPEER0000000",
        aws_secret_access_key="trust",
        config=Config(retries={"max_attempts": 1}),
    )

    # moto's way to address an account (moto/core/responses.py, get_current_account).
    def add(request, **_):
        request.headers["x-moto-account-id"] = account

    c.meta.events.register("before-sign.*.*", add)
    return c


def account_of(arn):
    return arn.split(":")[4]


def aws(endpoint, path):
    with open(path) as f:
        setup = json.load(f)
    providers, roles = [], []
    for p in setup["oidc_providers"]:
        client = iam(endpoint, account_of(p["Arn"]))
        arn = client.create_open_id_connect_provider(Url=p["Url"], ClientIDList=p["ClientIDList"])[
            "OpenIDConnectProviderArn"
        ]
        got = client.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        providers.append({"Arn": arn, "Url": got["Url"], "ClientIDList": got["ClientIDList"]})
    for r in setup["roles"]:
        client = iam(endpoint, account_of(r["Arn"]))
        client.create_role(
            RoleName=r["RoleName"],
            Path=r["Path"],
            AssumeRolePolicyDocument=json.dumps(r["AssumeRolePolicyDocument"]),
        )
        got = client.get_role(RoleName=r["RoleName"])["Role"]
        document = got["AssumeRolePolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        roles.append({"Arn": got["Arn"], "Path": got["Path"], "AssumeRolePolicyDocument": document})
    print(json.dumps({"providers": providers, "roles": roles}))


def unquote(value):
    """HCL values as python-hcl2 gives them, made plain: strings without their quotes and
    HCL escapes, `jsonencode(...)` arguments parsed, block markers dropped."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str):
        if value.startswith("${jsonencode(") and value.endswith(")}"):
            inner = value[len("${jsonencode(") : -len(")}")]
            return unquote(hcl2.loads("v = " + inner + "\n")["v"])
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return json.loads(value).replace("$${", "${").replace("%%{", "%{")
    return value


def hcl(path):
    with open(path) as f:
        parsed = hcl2.load(f)
    resources = {}
    for block in parsed.get("resource", []):
        for kind, named in unquote(block).items():
            resources.setdefault(kind, {}).update(named)
    comments = [c["value"] for c in parsed.get("__comments__", [])]
    print(json.dumps({"resources": resources, "comments": comments}))


def shell(path):
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    commands = [shlex.split(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    print(json.dumps(commands))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "aws":
        aws(*args)
    elif command == "hcl":
        hcl(*args)
    elif command == "shell":
        shell(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
