"""The tenant role trusts the platform's stable principal, not the session that onboarded it.

Against the emulator with IAM enforcement on: another host of the platform (another access
key of the platform user) assumes the tenant role, a different principal is refused, and a
role left trusting an old STS session is re-trusted by provisioning.

moto matches a trust policy's principal against the caller's ARN as a string: a session of a
role (`arn:aws:sts::A:assumed-role/R/S`) never matches the role's ARN there, although AWS
accepts it. The emulator's platform identity is an IAM user, so these tests use users; the
session-to-role mapping is tested with Stubber (tests/test_partition.py).
"""

from __future__ import annotations

import json

import pytest

from core.aws import gateways
from core.aws.clients import AwsConfig, make_client, platform_config
from core.aws.errors import AwsAccessDenied
from core.aws.iam import StsGateway
from tenants import naming
from tenants.provisioning import trust_policies_refresh


def _user_config(access_key: dict) -> AwsConfig:
    base = platform_config()
    return AwsConfig(region=base.region, endpoint_url=base.endpoint_url,
                     access_key_id=access_key["AccessKeyId"], secret_access_key=access_key["SecretAccessKey"])


def _sts_as(access_key: dict) -> StsGateway:
    return StsGateway(make_client("sts", _user_config(access_key)))


@pytest.fixture
def another_host(emulator):
    """A second access key of the platform user: what another host or a replaced instance holds."""
    iam = gateways.platform_iam().client
    user = emulator.user_arn.rsplit("/", 1)[-1]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    yield _sts_as(key)
    iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])


@pytest.fixture
def stranger(emulator):
    """Another IAM user of the account, allowed sts:AssumeRole on everything by its own policy."""
    iam = gateways.platform_iam().client
    name = "mlaas-test-stranger"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="assume-anything", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    yield _sts_as(key)
    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    iam.delete_user_policy(UserName=name, PolicyName="assume-anything")
    iam.delete_user(UserName=name)


def _trusted_aws_principals(role: str) -> list[str]:
    trust = gateways.platform_iam().trust_policy(role)
    return [s["Principal"]["AWS"] for s in trust["Statement"]]


def test_tenant_role_trusts_the_platform_user_by_exact_arn(make_tenant, emulator):
    tenant = make_tenant(isolation="pool")

    assert _trusted_aws_principals(naming.role_name(tenant.slug)) == [emulator.user_arn]


def test_another_host_of_the_platform_assumes_the_tenant_role(make_tenant, another_host):
    tenant = make_tenant(isolation="pool")

    creds = another_host.assume_role(tenant.role_arn, session_name="mlaas-test-other-host")

    assert creds.access_key_id and creds.session_token


def test_a_different_principal_cannot_assume_the_tenant_role(make_tenant, stranger):
    tenant = make_tenant(isolation="pool")

    with pytest.raises(AwsAccessDenied, match="not authorized to perform: sts:AssumeRole"):
        stranger.assume_role(tenant.role_arn, session_name="mlaas-test-stranger")


def test_role_trusting_an_old_session_is_retrusted_by_provisioning(make_tenant, emulator, another_host):
    tenant = make_tenant(isolation="pool")
    role = naming.role_name(tenant.slug)
    old_session = f"arn:aws:sts::{emulator.account_id}:assumed-role/mlaas-portal/i-0123456789abcdef0"
    gateways.platform_iam().update_trust_policy(role, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com", "AWS": old_session},
         "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    with pytest.raises(AwsAccessDenied):
        another_host.assume_role(tenant.role_arn, session_name="mlaas-test-before")

    first, second = trust_policies_refresh(), trust_policies_refresh()

    assert tenant.slug in first and tenant.slug not in second
    assert _trusted_aws_principals(role) == [emulator.user_arn]
    assert another_host.assume_role(tenant.role_arn, session_name="mlaas-test-after").session_token
