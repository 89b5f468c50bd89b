"""ARNs in the partition of the caller's identity (aws-cn, aws-us-gov), built in one home.

The emulator answers in `aws` only, so the identity is Stubber-scripted here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from core.aws import arns, gateways
from core.aws.iam import IamGateway, StsGateway
from core.aws.iam_pipeline_role import ensure_pipeline_role, pipeline_permissions

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
SOURCE_DIRS = ("billing", "builds", "core", "mlaas_portal", "mlaas_steps", "tenants")


def _client(service: str, region: str):
    return botocore.session.Session().create_client(
        service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))


def _resources(document: dict) -> list[str]:
    found = []
    for statement in document["Statement"]:
        value = statement.get("Resource", [])
        found.extend([value] if isinstance(value, str) else value)
    return found


def test_no_arn_is_built_with_a_hard_coded_partition_outside_the_helper():
    offenders = []
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" in path.parts or path == ROOT / "core" / "aws" / "arns.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"arn:aws:", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(("partition", "region"), [("aws-cn", "cn-north-1"), ("aws-us-gov", "us-gov-west-1")])
def test_identity_partition_and_stable_principal_of_a_role_session(partition, region):
    sts, iam = _client("sts", region), _client("iam", region)
    session = f"arn:{partition}:sts::{ACCOUNT}:assumed-role/mlaas-portal/i-0abc"
    with Stubber(sts) as sts_stub, Stubber(iam) as iam_stub:
        sts_stub.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": session, "UserId": "AROA:i-0abc"})
        iam_stub.add_response("get_role", {"Role": {
            "Path": "/platform/", "RoleName": "mlaas-portal", "RoleId": "AROAEXAMPLEEXAMPLE1",
            "Arn": f"arn:{partition}:iam::{ACCOUNT}:role/platform/mlaas-portal", "CreateDate": "2026-01-01T00:00:00Z"}},
            {"RoleName": "mlaas-portal"})

        identity = StsGateway(sts).caller_identity()
        principal = IamGateway(iam).stable_principal(identity.arn)

    assert (identity.account, identity.partition) == (ACCOUNT, partition)
    assert principal == f"arn:{partition}:iam::{ACCOUNT}:role/platform/mlaas-portal"


def test_stable_principal_of_a_user_needs_no_lookup():
    iam = _client("iam", "us-east-1")
    user = f"arn:aws-cn:iam::{ACCOUNT}:user/ops/mlaas-platform"
    with Stubber(iam):  # no response queued: any call would fail
        assert IamGateway(iam).stable_principal(user) == user


def test_stable_principal_without_get_role_falls_back_to_the_root_path():
    iam = _client("iam", "us-east-1")
    with Stubber(iam) as stub:
        stub.add_client_error("get_role", service_error_code="AccessDenied", http_status_code=403)
        principal = IamGateway(iam).stable_principal(f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/portal/s1")
    assert principal == f"arn:aws-us-gov:iam::{ACCOUNT}:role/portal"


def test_pipeline_role_is_written_in_the_callers_partition():
    iam = _client("iam", "cn-north-1")
    session = f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/deployer/ci-42"
    role_arn = f"arn:aws-cn:iam::{ACCOUNT}:role/mlaas-pipeline-execution"
    sent: dict[str, dict] = {}

    def capture(params, model, **_):
        if "PolicyDocument" in params:
            sent[model.name] = json.loads(params["PolicyDocument"])

    iam.meta.events.register("provide-client-params.iam.*", capture)
    with Stubber(iam) as stub:
        stub.add_response("get_role", {"Role": {"Path": "/", "RoleName": "deployer", "RoleId": "AROAEXAMPLEEXAMPLE2",
                                                "Arn": f"arn:aws-cn:iam::{ACCOUNT}:role/deployer",
                                                "CreateDate": "2026-01-01T00:00:00Z"}}, {"RoleName": "deployer"})
        stub.add_response("get_role", {"Role": {"Path": "/", "RoleName": "mlaas-pipeline-execution",
                                                "RoleId": "AROAEXAMPLEEXAMPLE3", "Arn": role_arn,
                                                "CreateDate": "2026-01-01T00:00:00Z"}},
                          {"RoleName": "mlaas-pipeline-execution"})
        stub.add_response("update_assume_role_policy", {}, {"RoleName": "mlaas-pipeline-execution",
                                                            "PolicyDocument": ANY})
        stub.add_response("put_role_policy", {}, {"RoleName": "mlaas-pipeline-execution",
                                                  "PolicyName": "pipeline-orchestration", "PolicyDocument": ANY})

        arn = ensure_pipeline_role(iam, caller_arn=session, account_id=ACCOUNT, region="cn-north-1")

    assert arn == role_arn
    assert sent["UpdateAssumeRolePolicy"]["Statement"][1]["Principal"] == {
        "AWS": f"arn:aws-cn:iam::{ACCOUNT}:role/deployer"}
    resources = _resources(sent["PutRolePolicy"])
    assert resources and all(r.startswith("arn:aws-cn:") for r in resources), resources


def test_pipeline_permissions_default_to_the_aws_partition():
    resources = _resources(pipeline_permissions(account_id=ACCOUNT, region="us-east-1", resource_prefix="mlaas"))
    assert all(r.startswith("arn:aws:") for r in resources)


@pytest.mark.django_db
def test_tenant_role_policy_is_written_in_the_partition_of_the_platform_identity(monkeypatch, settings):
    from tenants import provisioning
    from tenants.models import Tenant

    settings.AWS_REGION = "us-gov-west-1"
    sts, iam = _client("sts", "us-gov-west-1"), _client("iam", "us-gov-west-1")
    sent = {}
    iam.meta.events.register("provide-client-params.iam.PutRolePolicy",
                             lambda params, **_: sent.update(json.loads(params["PolicyDocument"])))
    monkeypatch.setattr(gateways, "platform_sts", lambda: StsGateway(sts))
    monkeypatch.setattr(gateways, "platform_iam", lambda: IamGateway(iam))
    monkeypatch.setattr(gateways, "_identities", {})
    tenant = Tenant(slug="acme", bucket="mlaas-pool-123456789012", prefix="tenants/acme/",
                    model_package_group="mlaas-acme-models",
                    role_arn=f"arn:aws-us-gov:iam::{ACCOUNT}:role/mlaas-tenant-acme")
    with Stubber(sts) as sts_stub, Stubber(iam) as iam_stub:
        sts_stub.add_response("get_caller_identity", {
            "Account": ACCOUNT, "Arn": f"arn:aws-us-gov:iam::{ACCOUNT}:user/mlaas-platform", "UserId": "AIDA1"})
        iam_stub.add_response("put_role_policy", {}, {"RoleName": "mlaas-tenant-acme", "PolicyName": "tenant-data",
                                                      "PolicyDocument": ANY})

        provisioning.step_role_policy(tenant)
        probe = provisioning.arns.s3(provisioning._partition(), tenant.bucket, "k")  # identity asked once

    resources = _resources(sent)
    assert probe == "arn:aws-us-gov:s3:::mlaas-pool-123456789012/k"
    assert f"arn:aws-us-gov:sagemaker:us-gov-west-1:{ACCOUNT}:model-package-group/mlaas-acme-models" in resources
    assert resources and all(r.startswith("arn:aws-us-gov:") for r in resources), resources


def test_partition_of_refuses_what_is_not_an_arn():
    with pytest.raises(ValueError, match="not an ARN"):
        arns.partition_of("mlaas-portal")
