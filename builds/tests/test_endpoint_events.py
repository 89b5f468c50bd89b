"""A SageMaker test endpoint coming into service tells the tenant's webhooks once (Stubber on the injected
client: moto runs no endpoint)."""

from __future__ import annotations

import pytest

from builds.models import Endpoint
from core.aws.sagemaker import SageMakerGateway
from tenants.models import WebhookDelivery
from tests.web_support import create_build, create_tenant

BASE = {"EndpointName": "acme-test", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/acme-test",
        "EndpointConfigName": "c", "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z"}


@pytest.mark.django_db
def test_sagemaker_endpoint_in_service_emits_one_event(reference_data, sagemaker_client, stub, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    from builds.endpoints import endpoints_tick
    from core.aws import gateways
    from tenants.webhooks import webhook_create

    tenant = create_tenant()
    version = create_build(tenant, version=True, approval="Approved").model_version
    endpoint = Endpoint.objects.create(tenant=tenant, name=f"{tenant.slug}-test", model_version=version,
                                       engine="sagemaker", resource_name="acme-test")
    hook = webhook_create(tenant=tenant, url="https://93.184.215.14/in", events=["endpoint.in_service"], actor=None)
    monkeypatch.setattr(gateways, "platform_sagemaker", lambda: SageMakerGateway(sagemaker_client))
    stub.add_response("describe_endpoint", {**BASE, "EndpointStatus": "Creating"}, {"EndpointName": "acme-test"})
    stub.add_response("describe_endpoint", {**BASE, "EndpointStatus": "InService"}, {"EndpointName": "acme-test"})

    with django_capture_on_commit_callbacks() as callbacks:
        endpoints_tick()
        assert WebhookDelivery.objects.count() == 0  # still Creating
        endpoints_tick()
        endpoints_tick()  # InService now: not polled again, no second event

    [delivery] = WebhookDelivery.objects.all()
    endpoint.refresh_from_db()
    assert (endpoint.status, delivery.webhook_id, delivery.event) == ("InService", hook.pk, "endpoint.in_service")
    assert delivery.payload["data"]["endpoint"]["name"] == endpoint.name
    assert len(callbacks) == 1  # the send job, after the commit
