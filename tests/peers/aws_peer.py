"""The AWS side of the `aws_iam` tests: boto3 and botocore, unmodified, against moto's server.

    aws_peer.py setup ENDPOINT OTHER_ACCOUNT
        Creates, in moto's default account, an IAM user `deployer` (path /ci/) with an access
        key and a role `payments-api` (path /workloads/); in OTHER_ACCOUNT a role of the same
        name; then assumes both roles. These are exactly SETUP_CALLS calls, which moto serves
        without authentication because the server runs with INITIAL_NO_AUTH_ACTION_COUNT set
        to that number; every later call is SigV4-verified. The setup then proves that: a
        GetCallerIdentity signed with the user's key succeeds, one with a wrong secret fails.
        Prints the credentials as JSON.

    aws_peer.py sign URL SERVER_ID --access-key K --secret-key S [--session-token T] [options]
    aws_peer.py sign-batch JSON
        Signs an sts:GetCallerIdentity POST to URL with botocore's SigV4Auth, carrying the
        X-Tessera-Server-Id header among the signed headers, and prints the subject token:
        base64url (no padding) of {"method", "url", "headers", "body"} (docs/sources.md).
        Options make the refusals the broker must detect: --wrong-secret, --no-server-id,
        --unsigned-server-id, --action, --date, --method, --region.
        `sign-batch` takes a JSON list of `sign` argument lists and prints one token a line,
        to save an interpreter start per token.
"""

import argparse
import base64
import datetime
import json
import sys
from unittest import mock

import boto3
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

SETUP_CALLS = 6
DEFAULT_ACCOUNT = "123456789012"
BODY = "Action={action}&Version=2011-06-15"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def client(service, endpoint, key="AKIASETUPNOAUTH00000", secret="setup", account=None):
    c = boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )
    if account:
        # moto's way to address another account (moto/core/responses.py, get_current_account).
        def add(request, **_):
            request.headers["x-moto-account-id"] = account

        c.meta.events.register("before-sign.*.*", add)
    return c


def setup(endpoint, other_account):
    iam = client("iam", endpoint)
    sts = client("sts", endpoint)
    iam.create_user(UserName="deployer", Path="/ci/")
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    iam.create_role(RoleName="payments-api", Path="/workloads/", AssumeRolePolicyDocument=TRUST)
    client("iam", endpoint, account=other_account).create_role(
        RoleName="payments-api", AssumeRolePolicyDocument=TRUST
    )
    role = sts.assume_role(
        RoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/workloads/payments-api",
        RoleSessionName="run-1",
    )
    other = sts.assume_role(
        RoleArn=f"arn:aws:iam::{other_account}:role/payments-api", RoleSessionName="run-1"
    )

    # From here on moto verifies every signature.
    user = {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
    me = client("sts", endpoint, user["access_key"], user["secret_key"]).get_caller_identity()
    if me["Arn"] != f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/ci/deployer":
        sys.exit(f"unexpected caller identity: {me['Arn']}")
    try:
        client("sts", endpoint, user["access_key"], "not-the-secret").get_caller_identity()
        sys.exit("moto accepted a wrong secret: signature checking is off")
    except ClientError as e:
        if e.response["Error"]["Code"] != "SignatureDoesNotMatch":
            raise

    def creds(answer):
        c = answer["Credentials"]
        return {
            "access_key": c["AccessKeyId"],
            "secret_key": c["SecretAccessKey"],
            "session_token": c["SessionToken"],
            "user_id": answer["AssumedRoleUser"]["AssumedRoleId"],
            "arn": answer["AssumedRoleUser"]["Arn"],
        }

    user["user_id"] = me["UserId"]
    user["arn"] = me["Arn"]
    print(json.dumps({"user": user, "role": creds(role), "other_account_role": creds(other)}))


def sign(args):
    body = BODY.format(action=args.action)
    headers = {"Content-Type": FORM}
    if not args.no_server_id and not args.unsigned_server_id:
        headers["X-Tessera-Server-Id"] = args.server_id
    request = AWSRequest(method=args.method, url=args.url, data=body, headers=headers)
    secret = "wrong" + args.secret_key if args.wrong_secret else args.secret_key
    credentials = Credentials(args.access_key, secret, args.session_token)
    signer = SigV4Auth(credentials, "sts", args.region)
    if args.date:
        when = datetime.datetime.strptime(args.date, "%Y%m%dT%H%M%SZ")
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *_a, **_k: when):
            signer.add_auth(request)
    else:
        signer.add_auth(request)
    signed = dict(request.headers.items())
    if args.unsigned_server_id:
        signed["X-Tessera-Server-Id"] = args.server_id
    token = {"method": args.method, "url": args.url, "headers": signed, "body": body}
    raw = json.dumps(token, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def whoami(args):
    """GetCallerIdentity with the given credentials, as any boto3 program would call it."""
    sts = boto3.client(
        "sts",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        aws_session_token=args.session_token,
    )
    answer = sts.get_caller_identity()
    return {k: answer[k] for k in ("UserId", "Account", "Arn")}


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup")
    s.add_argument("endpoint")
    s.add_argument("other_account")
    g = sub.add_parser("sign")
    g.add_argument("url")
    g.add_argument("server_id")
    g.add_argument("--access-key", required=True)
    g.add_argument("--secret-key", required=True)
    g.add_argument("--session-token")
    g.add_argument("--region", default="us-east-1")
    g.add_argument("--method", default="POST")
    g.add_argument("--action", default="GetCallerIdentity")
    g.add_argument("--date", help="sign as of this X-Amz-Date (YYYYMMDDTHHMMSSZ)")
    g.add_argument("--wrong-secret", action="store_true")
    g.add_argument("--no-server-id", action="store_true")
    g.add_argument("--unsigned-server-id", action="store_true")
    w = sub.add_parser("whoami")
    w.add_argument("endpoint")
    w.add_argument("--access-key", required=True)
    w.add_argument("--secret-key", required=True)
    w.add_argument("--session-token", required=True)
    b = sub.add_parser("sign-batch")
    b.add_argument("requests", help="a JSON list of `sign` argument lists")
    args = parser.parse_args()
    if args.command == "setup":
        setup(args.endpoint, args.other_account)
    elif args.command == "sign":
        print(sign(args))
    elif args.command == "whoami":
        print(json.dumps(whoami(args)))
    else:
        for argv in json.loads(args.requests):
            print(sign(parser.parse_args(["sign", *argv])))


if __name__ == "__main__":
    main()
