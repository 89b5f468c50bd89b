"""A test endpoint on the SageMaker engine end to end through the services and the API: deploy, poll, score,
replace in place, fail with SageMaker's reason, delete. botocore's Stubber sits on the injected SageMaker and
sagemaker-runtime clients (moto runs no endpoint); everything above them is the product's code."""

from __future__ import annotations

import io
import json

import botocore.session
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from builds.endpoints import endpoint_provision, endpoint_teardown, endpoints_tick
from builds.models import Endpoint
from core.aws.sagemaker import SageMakerGateway, SageMakerRuntimeGateway
from tests.web_support import create_build, create_member, create_tenant

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}
ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/acme-test"
CONFIG_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/acme-test-v1"


@pytest.fixture
def runtime_client():
    return botocore.session.Session().create_client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))


@pytest.fixture
def aws(settings, monkeypatch, sagemaker_client, stub, runtime_client):
    """The SageMaker engine selected, the gateways handed the stubbed clients (the AWS boundary only)."""
    from core.aws import gateways

    settings.MLAAS_ENGINE = "sagemaker"
    monkeypatch.setattr(gateways, "platform_sagemaker", lambda: SageMakerGateway(sagemaker_client))
    monkeypatch.setattr(gateways, "platform_sagemaker_runtime", lambda: SageMakerRuntimeGateway(runtime_client))
    with Stubber(runtime_client) as runtime:
        yield stub, runtime
        runtime.assert_no_pending_responses()


@pytest.fixture
def acme(reference_data):
    tenant = create_tenant(slug="acme", plan="basic", isolation="pool")
    versions = [create_build(tenant, version=True, approval="Approved").model_version for _ in range(2)]
    stranger = create_member(create_tenant(slug="globex", plan="basic"), role="owner")
    return tenant, versions, create_member(tenant, role="owner"), stranger


def expect_deploy(stub: Stubber, tenant, version, *, update: bool) -> None:
    tags = [{"Key": "mlaas:plan", "Value": tenant.plan.slug}, {"Key": "mlaas:tenant", "Value": tenant.slug}]
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}, {
        "ModelName": ANY, "ExecutionRoleArn": tenant.role_arn, "Tags": tags,
        "PrimaryContainer": {"Image": version.build.algorithm.training_image_uri,
                             "ModelDataUrl": f"s3://{tenant.bucket}/{version.artifact_key}",
                             "Environment": {"SAGEMAKER_PROGRAM": "serve"}}})
    variant = ({"VariantName": "AllTraffic", "ModelName": ANY,
                "ServerlessConfig": {"MemorySizeInMB": tenant.plan.endpoint_serverless_memory_mb,
                                     "MaxConcurrency": 5}}
               if tenant.plan.endpoint_serverless else
               {"VariantName": "AllTraffic", "ModelName": ANY, "InstanceType": tenant.plan.endpoint_instance_type,
                "InitialInstanceCount": 1, "InitialVariantWeight": 1.0})
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": CONFIG_ARN},
                      {"EndpointConfigName": ANY, "ProductionVariants": [variant], "Tags": tags})
    if update:
        stub.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN},
                          {"EndpointName": "acme-test", "EndpointConfigName": ANY})
    else:
        stub.add_response("create_endpoint", {"EndpointArn": ENDPOINT_ARN},
                          {"EndpointName": "acme-test", "EndpointConfigName": ANY, "Tags": tags})


def expect_status(stub: Stubber, status: str, reason: str = "") -> None:
    answer = {"EndpointName": "acme-test", "EndpointArn": ENDPOINT_ARN, "EndpointConfigName": "c",
              "EndpointStatus": status, "CreationTime": "2026-01-01T00:00:00Z",
              "LastModifiedTime": "2026-01-01T00:00:00Z"}
    if reason:
        answer["FailureReason"] = reason
    stub.add_response("describe_endpoint", answer, {"EndpointName": "acme-test"})


def deploy(client, version: int, callbacks) -> dict:
    with callbacks(execute=False) as jobs:
        response = client.post("/api/v1/tenants/acme/endpoints", {"model_version": version},
                               content_type="application/json")
    assert response.status_code == 202, response.content
    assert len(jobs) == 1  # the provision job, enqueued after the commit: run here as the worker would
    return response.json()


def test_sagemaker_endpoint_deploy_poll_score_replace_delete(aws, acme, api_client_for,
                                                            django_capture_on_commit_callbacks):
    stub, runtime = aws
    tenant, (v1, v2), owner, stranger = acme
    client = api_client_for(owner)

    created = deploy(client, 1, django_capture_on_commit_callbacks)
    endpoint = Endpoint.objects.get()
    expect_deploy(stub, tenant, v1, update=False)
    assert endpoint_provision(endpoint.pk) == "Creating"
    expect_status(stub, "Creating")
    endpoints_tick()
    creating = client.get("/api/v1/tenants/acme/endpoints/acme-test").json()
    expect_status(stub, "InService")
    endpoints_tick()
    in_service = client.get("/api/v1/tenants/acme/endpoints/acme-test").json()

    assert (created["status"], created["engine"], creating["status"], in_service["status"],
            in_service["model_version"]) == ("Creating", "sagemaker", "Creating", "InService", 1)
    endpoint.refresh_from_db()
    assert (endpoint.resource_name, endpoint.service_ended_at) == ("acme-test", None)
    first_in_service = endpoint.in_service_at

    # Score through the portal: the rows go to InvokeEndpoint as the tenant sent them.
    answer = json.dumps({"predictions": [{"class": "M", "probabilities": {"B": 0.1, "M": 0.9}}]}).encode()
    runtime.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer)),
                                             "ContentType": "application/json"},
                         {"EndpointName": "acme-test", "Body": b"radius,texture\n17.9,10.3\n",
                          "ContentType": "text/csv", "Accept": "application/json"})
    runtime.add_client_error("invoke_endpoint", "ModelError", "Received client error (400)", http_status_code=424,
                             modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": json.dumps(
                                 {"message": "missing columns: texture", "fields": {"missing": ["texture"]}})})
    scored = client.post("/api/v1/tenants/acme/endpoints/acme-test/invocations", b"radius,texture\n17.9,10.3\n",
                         content_type="text/csv")
    refused = client.post("/api/v1/tenants/acme/endpoints/acme-test/invocations", b"radius\n17.9\n",
                          content_type="text/csv")
    foreign = api_client_for(stranger).post("/api/v1/tenants/acme/endpoints/acme-test/invocations",
                                            b"radius\n1\n", content_type="text/csv")

    assert (scored.status_code, scored.json()) == (
        200, {"predictions": [{"class": "M", "probabilities": {"B": 0.1, "M": 0.9}}]})
    assert (refused.status_code, refused.json()) == (400, {"code": "invalid_rows", "message": "missing columns: "
                                                           "texture", "fields": {"missing": ["texture"]}})
    assert (foreign.status_code, foreign.json()) == (404, NOT_FOUND)

    # A newer version replaces the served one in place (UpdateEndpoint); it keeps serving meanwhile.
    replacing = deploy(client, 2, django_capture_on_commit_callbacks)
    expect_deploy(stub, tenant, v2, update=True)
    assert endpoint_provision(endpoint.pk) == "Updating"
    expect_status(stub, "InService")
    endpoints_tick()
    endpoint.refresh_from_db()
    assert (replacing["status"], replacing["model_version"], endpoint.status, endpoint.model_version_id,
            Endpoint.objects.count(), endpoint.in_service_at) == (
        "Updating", 2, "InService", v2.pk, 1, first_in_service)

    # Deleting: the endpoint, its configuration and model go; the row says Deleted and its service period ended.
    with django_capture_on_commit_callbacks(execute=False):
        deleting = client.delete("/api/v1/tenants/acme/endpoints/acme-test")
    stub.add_response("describe_endpoint", {
        "EndpointName": "acme-test", "EndpointArn": ENDPOINT_ARN, "EndpointConfigName": "acme-test-v2",
        "EndpointStatus": "InService", "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z"}, {"EndpointName": "acme-test"})
    stub.add_response("describe_endpoint_config", {
        "EndpointConfigName": "acme-test-v2", "EndpointConfigArn": CONFIG_ARN, "CreationTime": "2026-01-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "acme-test-v2"}]},
        {"EndpointConfigName": "acme-test-v2"})
    stub.add_response("delete_endpoint", {}, {"EndpointName": "acme-test"})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "acme-test-v2"})
    stub.add_response("delete_model", {}, {"ModelName": "acme-test-v2"})
    assert endpoint_teardown(endpoint.pk) == "Deleted"
    endpoint.refresh_from_db()
    listed = client.get("/api/v1/tenants/acme/endpoints").json()

    assert (deleting.status_code, deleting.json()["status"], endpoint.status) == (202, "Deleting", "Deleted")
    assert endpoint.service_ended_at == endpoint.deleted_at and endpoint.service_ended_at > first_in_service
    assert listed == {"count": 0, "items": []}


def test_sagemaker_endpoint_failure_shows_sagemakers_reason(aws, acme, api_client_for,
                                                           django_capture_on_commit_callbacks):
    from django.urls import reverse

    from tests.web_support import client_for

    stub, _ = aws
    tenant, (v1, _), owner, _ = acme
    client = api_client_for(owner)
    deploy(client, 1, django_capture_on_commit_callbacks)
    endpoint = Endpoint.objects.get()
    expect_deploy(stub, tenant, v1, update=False)
    endpoint_provision(endpoint.pk)
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    expect_status(stub, "Failed", reason)

    endpoints_tick()

    shown = client.get("/api/v1/tenants/acme/endpoints/acme-test").json()
    scored = client.post("/api/v1/tenants/acme/endpoints/acme-test/invocations", b"a\n1\n", content_type="text/csv")
    page = client_for(owner).get(reverse("builds:endpoints", args=["acme"])).content.decode()
    assert (shown["status"], shown["failure_reason"]) == ("Failed", reason)
    assert (scored.status_code, scored.json()) == (409, {
        "code": "endpoint_unavailable", "message": f"Endpoint acme-test is Failed, not in service: {reason}",
        "fields": None})
    assert reason in page
    endpoint.refresh_from_db()
    assert (endpoint.in_service_at, endpoint.service_ended_at) == (None, None)  # never served: no endpoint hours


def test_sagemaker_refusal_fails_the_endpoint_with_the_reason(aws, acme, api_client_for,
                                                            django_capture_on_commit_callbacks):
    stub, _ = aws
    _, _, owner, _ = acme
    deploy(api_client_for(owner), 1, django_capture_on_commit_callbacks)
    endpoint = Endpoint.objects.get()
    stub.add_client_error("create_model", "ValidationException", "Could not access model data at s3://x.")

    assert endpoint_provision(endpoint.pk) == "Failed"
    endpoint.refresh_from_db()
    assert endpoint.failure_reason.startswith("SageMaker refused the endpoint: ")
    assert "Could not access model data" in endpoint.failure_reason


def test_serverless_plan_deploys_a_serverless_config(aws, acme, api_client_for, django_capture_on_commit_callbacks):
    stub, _ = aws
    tenant, (v1, _), owner, _ = acme
    tenant.plan.endpoint_serverless = True
    tenant.plan.save(update_fields=["endpoint_serverless"])
    deploy(api_client_for(owner), 1, django_capture_on_commit_callbacks)
    expect_deploy(stub, tenant, v1, update=False)

    assert endpoint_provision(Endpoint.objects.get().pk) == "Creating"
