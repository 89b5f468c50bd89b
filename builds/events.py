"""What the builds app tells a tenant's webhooks (tenants.webhooks): one function per event, each called on one
line where the thing happens, inside the transaction that records it (the delivery is sent after the commit).
"""

from __future__ import annotations

from builds.models import Build, Endpoint, ModelVersion
from tenants.models import Webhook
from tenants.webhooks import webhook_event_emit

BUILD_EVENTS = {Build.Status.SUCCEEDED: Webhook.Event.BUILD_SUCCEEDED, Build.Status.FAILED: Webhook.Event.BUILD_FAILED}


def _when(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def build_finished(build: Build) -> None:
    """build.succeeded / build.failed (a cancelled build is the tenant's own doing: no event)."""
    if build.status not in BUILD_EVENTS:
        return
    webhook_event_emit(tenant=build.tenant_id, event=BUILD_EVENTS[build.status], data=lambda: {
        "tenant": build.tenant.slug,
        "build": {"id": str(build.code), "status": build.status, "algorithm": build.algorithm.slug,
                  "dataset_key": build.dataset_key, "target": build.target, "metrics": build.metrics or {},
                  "failure_reason": build.failure_reason, "created_at": _when(build.created_at),
                  "ended_at": _when(build.ended_at)}})


def _version_data(version: ModelVersion) -> dict:
    return {"tenant": version.tenant.slug,
            "model_version": {"version": version.version, "arn": version.arn, "build": str(version.build.code),
                              "metrics": version.metrics or {}, "approval_status": version.approval_status}}


def model_version_registered(version: ModelVersion) -> None:
    webhook_event_emit(tenant=version.tenant_id, event=Webhook.Event.MODEL_REGISTERED,
                       data=lambda: _version_data(version))


def model_version_decided(version: ModelVersion) -> None:
    approved = version.approval_status == ModelVersion.Approval.APPROVED
    webhook_event_emit(tenant=version.tenant_id, data=lambda: _version_data(version),
                       event=Webhook.Event.MODEL_APPROVED if approved else Webhook.Event.MODEL_REJECTED)


def endpoint_in_service(endpoint_id: int) -> None:
    endpoint = Endpoint.objects.select_related("tenant", "model_version").get(pk=endpoint_id)
    webhook_event_emit(tenant=endpoint.tenant, event=Webhook.Event.ENDPOINT_IN_SERVICE, data={
        "tenant": endpoint.tenant.slug,
        "endpoint": {"name": endpoint.name, "model_version": endpoint.model_version.version,
                     "status": endpoint.status, "in_service_at": _when(endpoint.in_service_at),
                     "invocations": f"/api/v1/tenants/{endpoint.tenant.slug}/endpoints/{endpoint.name}/invocations"}})
