"""What the builds app tells a tenant's webhooks (tenants.webhooks): one function per event, each called on one
line where the thing happens, inside the transaction that records it (the delivery is sent after the commit).
"""

from __future__ import annotations

from builds.models import Build, Endpoint, ModelVersion
from tenants.webhooks import webhook_event_emit, webhook_event_wanted

BUILD_EVENTS = {Build.Status.SUCCEEDED: "build.succeeded", Build.Status.FAILED: "build.failed"}


def _when(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def build_finished(build: Build) -> None:
    """build.succeeded / build.failed (a cancelled build is the tenant's own doing: no event)."""
    if build.status not in BUILD_EVENTS or not webhook_event_wanted(tenant_id=build.tenant_id,
                                                                    event=BUILD_EVENTS[build.status]):
        return
    webhook_event_emit(tenant=build.tenant, event=BUILD_EVENTS[build.status], data={
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
    if not webhook_event_wanted(tenant_id=version.tenant_id, event="model.registered"):
        return
    webhook_event_emit(tenant=version.tenant, event="model.registered", data=_version_data(version))


def model_version_decided(version: ModelVersion) -> None:
    event = "model.approved" if version.approval_status == ModelVersion.Approval.APPROVED else "model.rejected"
    if webhook_event_wanted(tenant_id=version.tenant_id, event=event):
        webhook_event_emit(tenant=version.tenant, event=event, data=_version_data(version))


def endpoint_in_service(endpoint_id: int) -> None:
    endpoint = Endpoint.objects.select_related("tenant", "model_version").get(pk=endpoint_id)
    webhook_event_emit(tenant=endpoint.tenant, event="endpoint.in_service", data={
        "tenant": endpoint.tenant.slug,
        "endpoint": {"name": endpoint.name, "model_version": endpoint.model_version.version,
                     "status": endpoint.status, "in_service_at": _when(endpoint.in_service_at),
                     "invocations": f"/api/v1/tenants/{endpoint.tenant.slug}/endpoints/{endpoint.name}/invocations"}})
