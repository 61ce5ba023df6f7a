"""The SDK side of the `tessera agent` tests: boto3, google-auth and azure-identity,
unmodified, finding their credentials through the environment alone (the test sets
AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONFIG_FILE, GCE_METADATA_HOST, IDENTITY_ENDPOINT,
... and clears everything else).

    agent_peer.py aws-whoami STS_ENDPOINT
        boto3's default credential chain, then sts:GetCallerIdentity at STS_ENDPOINT (moto).
        Prints {"Arn", "Account", "UserId", "method"}; `method` is how botocore found the
        credentials ("container-role" for the ECS endpoint, "custom-process" for
        credential_process).

    agent_peer.py aws-whoami-or-error STS_ENDPOINT
        aws-whoami, but a botocore error is printed instead of failing:
        {"error": the exception's class, "message": its text}.

    agent_peer.py gcp-token
        google.auth.default(), then a refresh. Prints {"token", "project", "email",
        "credentials"} (the credentials' class, to show the metadata server was used).

    agent_peer.py gcp-id-token AUDIENCE
        google.oauth2.id_token.fetch_id_token for AUDIENCE. Prints {"token"}.

    agent_peer.py azure-token SCOPE
        azure.identity.ManagedIdentityCredential().get_token(SCOPE). Prints {"token",
        "expires_on"}.
"""

import json
import sys


def aws_whoami(endpoint):
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    creds = session.get_credentials()
    if creds is None:
        raise SystemExit("boto3 found no credentials")
    sts = session.client("sts", endpoint_url=endpoint)
    who = sts.get_caller_identity()
    return {"Arn": who["Arn"], "Account": who["Account"], "UserId": who["UserId"], "method": creds.method}


def aws_whoami_or_error(endpoint):
    import botocore.exceptions

    try:
        return aws_whoami(endpoint)
    except botocore.exceptions.BotoCoreError as e:
        return {"error": type(e).__name__, "message": str(e)}


def gcp_token():
    import google.auth
    import google.auth.transport.requests

    credentials, project = google.auth.default()
    credentials.refresh(google.auth.transport.requests.Request())
    return {
        "token": credentials.token,
        "project": project,
        "email": credentials.service_account_email,
        "credentials": type(credentials).__module__ + "." + type(credentials).__name__,
    }


def gcp_id_token(audience):
    import google.auth.transport.requests
    import google.oauth2.id_token

    token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return {"token": token}


def azure_token(scope):
    from azure.identity import ManagedIdentityCredential

    with ManagedIdentityCredential() as credential:
        token = credential.get_token(scope)
    return {"token": token.token, "expires_on": token.expires_on}


def main(argv):
    command, args = argv[0], argv[1:]
    commands = {
        "aws-whoami": aws_whoami,
        "aws-whoami-or-error": aws_whoami_or_error,
        "gcp-token": gcp_token,
        "gcp-id-token": gcp_id_token,
        "azure-token": azure_token,
    }
    if command not in commands:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(commands[command](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
