"""Create the platform identity in a fresh emulator, then switch IAM enforcement on.

moto's enforcement is a budget: `POST /moto-api/reset-auth` with a number N
lets the next N requests through unauthenticated and enforces every request
after them (`inf` = never enforce, moto's default). The launcher opens the
budget (`inf`), bootstraps, then sets it to 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests
from botocore.exceptions import ClientError

from core.aws.clients import AwsConfig, make_client

PLATFORM_USER_NAME = "mlaas-platform"
PLATFORM_POLICY_NAME = "mlaas-platform-admin"
PLATFORM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# Any value is accepted while the budget is open; these only make the
# bootstrap requests well-formed.
_BOOTSTRAP_ACCESS_KEY = "AKIABOOTSTRAPEMULATOR"
_BOOTSTRAP_SECRET_KEY = "bootstrap-only-not-a-secret"


@dataclass(frozen=True)
class PlatformIdentity:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_arn: str


def set_unauthenticated_budget(endpoint: str, requests_allowed: float, *, timeout: float = 5.0) -> float:
    """Let the next `requests_allowed` requests skip IAM; return the previous budget."""
    with requests.Session() as http:
        http.trust_env = False  # the emulator is on loopback: never via a proxy
        response = http.post(
            f"{endpoint}/moto-api/reset-auth", data=str(requests_allowed).encode(), timeout=timeout
        )
    response.raise_for_status()
    return float(response.json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


def enable_iam_enforcement(endpoint: str) -> float:
    """Enforce IAM on every request from now on; return the previous budget."""
    return set_unauthenticated_budget(endpoint, 0)


def bootstrap_platform_identity(
    *, endpoint: str, region: str, reuse: PlatformIdentity | None = None
) -> PlatformIdentity:
    """IAM user `mlaas-platform` with an inline `*` on `*` policy and an access key.

    Must run while the unauthenticated budget is open. Re-running it keeps
    the user and adds another access key, unless `reuse` (the identity of a
    restored state) names an active key of that user: then that key is kept,
    so clients that still hold it go on working.
    """
    config = AwsConfig(
        region=region,
        endpoint_url=endpoint,
        access_key_id=_BOOTSTRAP_ACCESS_KEY,
        secret_access_key=_BOOTSTRAP_SECRET_KEY,
        max_attempts=1,
    )
    iam = make_client("iam", config)
    try:
        user = iam.create_user(UserName=PLATFORM_USER_NAME)["User"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        user = iam.get_user(UserName=PLATFORM_USER_NAME)["User"]
    iam.put_user_policy(
        UserName=PLATFORM_USER_NAME,
        PolicyName=PLATFORM_POLICY_NAME,
        PolicyDocument=json.dumps(PLATFORM_POLICY),
    )
    user_arn = user["Arn"]
    if reuse is not None and reuse.user_arn == user_arn:
        active = {key["AccessKeyId"] for key in iam.list_access_keys(UserName=PLATFORM_USER_NAME)["AccessKeyMetadata"]
                  if key["Status"] == "Active"}
        if reuse.access_key_id in active:
            return reuse
    key = iam.create_access_key(UserName=PLATFORM_USER_NAME)["AccessKey"]
    return PlatformIdentity(
        access_key_id=key["AccessKeyId"],
        secret_access_key=key["SecretAccessKey"],
        account_id=user_arn.split(":")[4],
        user_arn=user_arn,
    )
