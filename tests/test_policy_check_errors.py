"""The local runtime's own IAM check reads the role's policies as the platform: IAM throttling there must reach
the build as a retryable domain error (requeued with backoff), not a raw ClientError (an "internal error")."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.stub import Stubber

from core.aws import policy_check
from core.aws.errors import AwsAccessDenied, AwsRetryableError


@pytest.fixture
def iam():
    client = botocore.session.get_session().create_client(
        "iam", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber


def test_role_policies_throttled_raises_a_retryable_error(iam):
    client, stubber = iam
    stubber.add_response("list_role_policies", {"PolicyNames": []}, {"RoleName": "tenant-jobs"})
    stubber.add_client_error("list_attached_role_policies", service_error_code="Throttling",
                             service_message="Rate exceeded", http_status_code=400)

    with pytest.raises(AwsRetryableError) as raised:
        policy_check.role_policies(client, "tenant-jobs")

    assert (raised.value.code, raised.value.retryable) == ("Throttling", True)


def test_role_policies_access_denied_is_not_retryable(iam):
    client, stubber = iam
    stubber.add_client_error("list_role_policies", service_error_code="AccessDenied", http_status_code=403)

    with pytest.raises(AwsAccessDenied) as raised:
        policy_check.role_policies(client, "tenant-jobs")

    assert raised.value.retryable is False


def test_role_policies_reads_inline_and_attached_documents(iam):
    client, stubber = iam
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
    stubber.add_response("list_role_policies", {"PolicyNames": ["inline"]})
    stubber.add_response("get_role_policy", {"RoleName": "r", "PolicyName": "inline",
                                             "PolicyDocument": json.dumps(document)})
    stubber.add_response("list_attached_role_policies", {"AttachedPolicies": []})

    assert policy_check.role_policies(client, "r") == {"inline": document}
