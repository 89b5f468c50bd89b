"""The real path: a webhook registered through the API receives, on a local HTTP server, the events of a real
build on the local engine (upload -> intake -> build -> registered model), then of the owner approving it, each
signed as Standard Webhooks says (verified with the standardwebhooks package) and recorded as delivered; and
a test endpoint coming into service on the local runtime, then its version rejected."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook as StandardWebhook

from builds.models import Build, ModelVersion
from tenants.models import WebhookDelivery
from tests.test_build_flow import drain_queues, intake_until, samples, upload_csv  # noqa: F401 - samples: fixture
from tests.test_endpoints import deployed_tenant, endpoint_dir, model_tarball  # noqa: F401 - fixtures


@pytest.mark.django_db(transaction=True)
def test_build_events_reach_the_tenants_receiver_signed(make_tenant, make_member, api_client_for, samples,  # noqa: F811
                                                        receiver, clean_redis):
    tenant = make_tenant(isolation="pool", plan="basic", algorithm="gbm-classifier", target="diagnosis")
    owner = api_client_for(make_member(tenant, role="owner"))
    created = owner.post(f"/api/v1/tenants/{tenant.slug}/webhooks", data=json.dumps(
        {"url": receiver.url, "events": ["build.succeeded", "model.registered", "model.approved"]}),
        content_type="application/json")
    assert created.status_code == 201, created.content
    secret, webhook_id = created.json()["secret"], created.json()["id"]

    key = upload_csv(tenant, samples["breast_cancer"])
    build = intake_until(key)
    drain_queues("default", "plan-basic", "webhooks")  # the build, then the deliveries its commits enqueued

    build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    messages = [StandardWebhook(secret).verify(r.body, r.headers) for r in receiver.requests]
    assert [m["type"] for m in messages] == ["model.registered", "build.succeeded"]
    registered, succeeded = messages
    assert succeeded["data"]["build"]["id"] == str(build.code)
    assert succeeded["data"]["build"]["status"] == "succeeded" and succeeded["data"]["tenant"] == tenant.slug
    assert registered["data"]["model_version"]["version"] == 1
    assert registered["data"]["model_version"]["approval_status"] == "PendingManualApproval"

    approved = owner.post(f"/api/v1/tenants/{tenant.slug}/models/1/approve")
    assert approved.status_code == 200, approved.content
    drain_queues("default", "webhooks")
    last = StandardWebhook(secret).verify(receiver.requests[-1].body, receiver.requests[-1].headers)
    assert (last["type"], last["data"]["model_version"]["approval_status"]) == ("model.approved", "Approved")
    assert ModelVersion.objects.get(build=build).approval_status == "Approved"

    listed = owner.get(f"/api/v1/tenants/{tenant.slug}/webhooks/{webhook_id}/deliveries").json()["items"]
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in listed] == [
        ("model.approved", "succeeded", 1, 200), ("build.succeeded", "succeeded", 1, 200),
        ("model.registered", "succeeded", 1, 200)]
    assert WebhookDelivery.objects.filter(status="pending").count() == 0


@pytest.mark.django_db(transaction=True)
def test_endpoint_in_service_and_rejection_reach_the_receiver(deployed_tenant, api_client_for, receiver,  # noqa: F811
                                                              clean_redis):
    tenant, owner, _, _ = deployed_tenant
    api = api_client_for(owner)
    created = api.post(f"/api/v1/tenants/{tenant.slug}/webhooks", data=json.dumps(
        {"url": receiver.url, "events": ["endpoint.in_service", "model.rejected"]}), content_type="application/json")
    secret = created.json()["secret"]

    assert api.post(f"/api/v1/tenants/{tenant.slug}/endpoints", {"model_version": 1},
                    content_type="application/json").status_code == 202
    drain_queues("default", "webhooks")  # provision (serve starts, InService), then the delivery
    assert api.post(f"/api/v1/tenants/{tenant.slug}/models/1/reject").status_code == 200
    drain_queues("default", "webhooks")  # teardown, then the delivery

    messages = [StandardWebhook(secret).verify(r.body, r.headers) for r in receiver.requests]
    assert [m["type"] for m in messages] == ["endpoint.in_service", "model.rejected"]
    assert messages[0]["data"]["endpoint"] | {"in_service_at": None} == {
        "name": f"{tenant.slug}-test", "model_version": 1, "status": "InService", "in_service_at": None,
        "invocations": f"/api/v1/tenants/{tenant.slug}/endpoints/{tenant.slug}-test/invocations"}
    assert messages[1]["data"]["model_version"]["approval_status"] == "Rejected"
