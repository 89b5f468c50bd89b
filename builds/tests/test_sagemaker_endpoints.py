"""Test endpoints on SageMaker, with botocore's Stubber on the injected client (moto runs no endpoint): the
model, endpoint configuration and endpoint a deploy creates (tenant and plan tags; serverless where the plan
says), polling until InService or Failed, teardown, and scoring's answers."""

from __future__ import annotations

import io
import json

import botocore.session
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber

from core.aws.sagemaker import SageMakerGateway, SageMakerRuntimeGateway

TAGS = [{"Key": "mlaas:plan", "Value": "basic"}, {"Key": "mlaas:tenant", "Value": "acme"}]
ROLE = "arn:aws:iam::123456789012:role/mlaas-tenant-acme"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-steps@sha256:abc"
ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/acme-test"
CONFIG_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/acme-test-v1-9"
DATA = "s3://mlaas-acme/models/builds/b/model/model.tar.gz"


def _deploy_calls(stub: Stubber, *, variant: dict, update: bool) -> None:
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/acme-test-v1"},
                      {"ModelName": "acme-test-v1-9", "ExecutionRoleArn": ROLE, "Tags": TAGS,
                       "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": DATA,
                                            "Environment": {"SAGEMAKER_PROGRAM": "serve"}}})
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": CONFIG_ARN},
                      {"EndpointConfigName": "acme-test-v1-9", "ProductionVariants": [variant], "Tags": TAGS})
    if update:
        stub.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN},
                          {"EndpointName": "acme-test", "EndpointConfigName": "acme-test-v1-9"})
    else:
        stub.add_response("create_endpoint", {"EndpointArn": ENDPOINT_ARN},
                          {"EndpointName": "acme-test", "EndpointConfigName": "acme-test-v1-9", "Tags": TAGS})


def _deploy(gateway: SageMakerGateway, *, serverless: int | None, update: bool) -> str:
    return gateway.deploy_endpoint(endpoint_name="acme-test", version_tag="v1-9", image_uri=IMAGE,
                                   model_data_url=DATA, role_arn=ROLE, instance_type="ml.t2.medium",
                                   serverless_memory_mb=serverless,
                                   tags={"mlaas:tenant": "acme", "mlaas:plan": "basic"}, update=update)


def test_deploy_on_an_instance_creates_model_config_and_endpoint_tagged(sagemaker_client, stub):
    _deploy_calls(stub, update=False, variant={"VariantName": "AllTraffic", "ModelName": "acme-test-v1-9",
                                               "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1,
                                               "InitialVariantWeight": 1.0})

    assert _deploy(SageMakerGateway(sagemaker_client), serverless=None, update=False) == "acme-test"


def test_serverless_replacement_updates_the_endpoint_in_place(sagemaker_client, stub):
    _deploy_calls(stub, update=True, variant={"VariantName": "AllTraffic", "ModelName": "acme-test-v1-9",
                                              "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}})

    assert _deploy(SageMakerGateway(sagemaker_client), serverless=2048, update=True) == "acme-test"


def test_status_until_in_service_or_failed_with_the_reason(sagemaker_client, stub):
    base = {"EndpointName": "acme-test", "EndpointArn": ENDPOINT_ARN, "EndpointConfigName": "c",
            "CreationTime": "2026-01-01T00:00:00Z", "LastModifiedTime": "2026-01-01T00:00:00Z"}
    stub.add_response("describe_endpoint", {**base, "EndpointStatus": "Creating"}, {"EndpointName": "acme-test"})
    stub.add_response("describe_endpoint", {**base, "EndpointStatus": "InService"}, {"EndpointName": "acme-test"})
    failed = {**base, "EndpointStatus": "Failed",
              "FailureReason": "The primary container did not pass the ping health check."}
    stub.add_response("describe_endpoint", failed, {"EndpointName": "acme-test"})
    gateway = SageMakerGateway(sagemaker_client)

    seen = [gateway.endpoint_status("acme-test") for _ in range(3)]

    assert seen == [("Creating", ""), ("InService", ""),
                    ("Failed", "The primary container did not pass the ping health check.")]


def test_teardown_deletes_endpoint_config_and_models_and_a_missing_endpoint_is_fine(sagemaker_client, stub):
    base = {"EndpointName": "acme-test", "EndpointArn": ENDPOINT_ARN, "EndpointConfigName": "acme-test-v1-9",
            "EndpointStatus": "InService", "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z"}
    stub.add_response("describe_endpoint", base, {"EndpointName": "acme-test"})
    stub.add_response("describe_endpoint_config", {
        "EndpointConfigName": "acme-test-v1-9", "EndpointConfigArn": CONFIG_ARN, "CreationTime": "2026-01-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "acme-test-v1-9"}]},
        {"EndpointConfigName": "acme-test-v1-9"})
    stub.add_response("delete_endpoint", {}, {"EndpointName": "acme-test"})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "acme-test-v1-9"})
    stub.add_response("delete_model", {}, {"ModelName": "acme-test-v1-9"})
    stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint \"acme-test\".")
    gateway = SageMakerGateway(sagemaker_client)

    gateway.delete_endpoint_resources("acme-test")
    gateway.delete_endpoint_resources("acme-test")  # already gone: nothing to do


@pytest.fixture
def runtime():
    client = botocore.session.Session().create_client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_invoke_returns_predictions_and_the_containers_own_400(runtime):
    client, stubber = runtime
    answer = json.dumps({"predictions": [{"value": 3.5}]}).encode()
    stubber.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)),
                                             "ContentType": "application/json"},
                         {"EndpointName": "acme-test", "Body": b"a\n1\n", "ContentType": "text/csv",
                          "Accept": "application/json"})
    stubber.add_client_error("invoke_endpoint", "ModelError", "Received client error (400)", http_status_code=424,
                             response_meta={}, modeled_fields={
                                 "OriginalStatusCode": 400,
                                 "OriginalMessage": json.dumps({"message": "missing columns: a", "fields": {}})})
    gateway = SageMakerRuntimeGateway(client)

    ok = gateway.invoke_endpoint("acme-test", body=b"a\n1\n", content_type="text/csv")
    refused = gateway.invoke_endpoint("acme-test", body=b"b\n1\n", content_type="text/csv")

    assert ok == (200, {"predictions": [{"value": 3.5}]})
    assert refused == (400, {"message": "missing columns: a", "fields": {}})
