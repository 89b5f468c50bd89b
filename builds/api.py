"""The builds app's API router: uploads, builds, rejections and model versions.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from builds import access as build_access
from builds import services as build_services
from builds.models import Build, ModelVersion, RejectedUpload
from builds.waiting import WithWaiting, waiting_fields, waiting_for_builds
from core.api import ERRORS, SCOPED_ERRORS, ErrorOut, Pagination
from tenants import access as tenant_access

router = Router()


class UploadIn(Schema):
    filename: str = Field(..., max_length=255)
    size: int = Field(..., ge=1, le=10**15)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


class UploadOut(Schema):
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_in: int


@router.post("/tenants/{slug}/uploads", response={200: UploadOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["uploads"],
          summary="Presigned POST into the tenant's upload location")
def create_upload(request, slug: str, payload: UploadIn):
    """POST the returned `fields` plus `file` as multipart/form-data to `url`; a build starts when it lands."""
    from builds.uploads import upload_presign

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return upload_presign(tenant=tenant, filename=payload.filename, size=payload.size,
                          algorithm=payload.algorithm, target=payload.target)


class BuildOut(Schema):
    id: UUID
    tenant: str
    plan: str
    status: str
    algorithm: str
    target: str
    dataset_key: str
    source: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    queue_position: int | None = Field(None, description="Queued builds only: 1 = next to start (an estimate).")
    estimated_start_after: datetime | None = Field(None, description="Queued builds only: earliest likely start.")
    estimated_start_before: datetime | None = Field(None, description="Queued builds only: latest likely start.")
    waiting_reason: str | None = Field(None, description="Queued builds only: stable code of why it waits "
                                                         "(builds.waiting.Reason).")
    waiting_message: str | None = Field(None, description="Queued builds only: the reason as a sentence.")

    @staticmethod
    def resolve_queue_position(obj):
        return _waiting_value(obj, "queue_position")

    @staticmethod
    def resolve_estimated_start_after(obj):
        return _waiting_value(obj, "estimated_start_after")

    @staticmethod
    def resolve_estimated_start_before(obj):
        return _waiting_value(obj, "estimated_start_before")

    @staticmethod
    def resolve_waiting_reason(obj):
        return _waiting_value(obj, "waiting_reason")

    @staticmethod
    def resolve_waiting_message(obj):
        return _waiting_value(obj, "waiting_message")

    @staticmethod
    def resolve_id(obj) -> UUID:
        return obj["id"] if isinstance(obj, dict) else obj.code

    @staticmethod
    def resolve_tenant(obj) -> str:
        return obj["tenant"] if isinstance(obj, dict) else obj.tenant.slug

    @staticmethod
    def resolve_plan(obj) -> str:
        return obj["plan"] if isinstance(obj, dict) else obj.plan.slug

    @staticmethod
    def resolve_algorithm(obj) -> str:
        return obj["algorithm"] if isinstance(obj, dict) else obj.algorithm.slug


def _waiting_value(obj, name: str):
    waiting = obj.get("waiting") if isinstance(obj, dict) else getattr(obj, "waiting", None)
    return (waiting or {}).get(name)


class StepOut(Schema):
    name: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    billable_seconds: int
    instance_type: str
    instance_count: int
    failure_reason: str


class TransitionOut(Schema):
    from_status: str
    to_status: str
    reason: str
    at: datetime


class BuildDetailOut(BuildOut):
    steps: list[StepOut]
    transitions: list[TransitionOut]
    metrics: dict[str, float]
    data_report: dict[str, Any]
    model_package_arn: str | None
    model_version: int | None
    cost: str = Field(..., description="USD: metered when finished, cost so far while it runs.")
    failure_reason: str


def build_detail_out(b: Build) -> dict:
    from builds.costs import builds_cost

    version = ModelVersion.objects.filter(build=b).first()
    cost = builds_cost([b]).get(b.pk)
    return {
        "id": b.code, "tenant": b.tenant.slug, "plan": b.plan.slug, "status": b.status,
        "algorithm": b.algorithm.slug, "target": b.target, "dataset_key": b.dataset_key, "source": b.source,
        "created_at": b.created_at, "started_at": b.started_at, "ended_at": b.ended_at,
        "steps": list(b.steps.order_by("order").values(
            "name", "status", "started_at", "ended_at", "billable_seconds", "instance_type", "instance_count",
            "failure_reason")),
        "transitions": list(b.transitions.values("from_status", "to_status", "reason", "at")),
        "metrics": b.metrics, "data_report": b.data_report,
        "model_package_arn": version.arn if version else None, "model_version": version.version if version else None,
        "cost": str(cost.amount) if cost else "0", "failure_reason": b.failure_reason,
        "waiting": waiting_fields(b, waiting_for_builds([b])),
    }


class BuildFilters(Schema):
    tenant: str | None = Field(None, max_length=40, description="Tenant slug.")
    status: Build.Status | None = None


@router.get("/builds", response={200: list[BuildOut], **ERRORS}, tags=["builds"], summary="List builds")
@paginate(Pagination, page_size=50)
def list_builds(request, filters: Query[BuildFilters]):
    """Newest first. Staff see every tenant's builds; a member sees its tenant's."""
    qs = build_access.builds_for_user(request.auth).select_related("tenant", "plan", "algorithm")
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.status:
        qs = qs.filter(status=filters.status)
    return WithWaiting(qs.order_by("-created_at", "-id"))


@router.get("/builds/{build_id}", response={200: BuildDetailOut, **SCOPED_ERRORS}, tags=["builds"],
         summary="Get a build with its steps, metrics, model version and cost")
def get_build(request, build_id: str):
    return build_detail_out(build_access.get_build_for_user(request.auth, build_id))


class BuildIn(Schema):
    tenant: str = Field(..., max_length=40)
    dataset_key: str = Field(..., min_length=1, max_length=1024)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


@router.post("/builds", response={201: BuildDetailOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["builds"],
          summary="Start a build on a dataset already uploaded")
def create_build(request, payload: BuildIn):
    tenant = tenant_access.get_tenant_for_user(request.auth, payload.tenant)
    build, _ = build_services.build_create(
        tenant=tenant, dataset_key=payload.dataset_key, algorithm_slug=payload.algorithm or None,
        target=payload.target, source=Build.Source.API, created_by=request.auth)
    return Status(201, build_detail_out(build_access.get_build_for_user(request.auth, build.code)))


@router.post("/builds/{build_id}/cancel", response={200: BuildDetailOut, 400: ErrorOut, **SCOPED_ERRORS},
          tags=["builds"], summary="Cancel a build")
def cancel_build(request, build_id: str):
    """A waiting build is cancelled at once; a running one stops within seconds (`cancel_requested`)."""
    build = build_access.get_build_for_user(request.auth, build_id)
    build_services.build_cancel(build=build, actor=request.auth)
    return build_detail_out(build_access.get_build_for_user(request.auth, build_id))


class RejectionOut(Schema):
    key: str
    bucket: str
    reason: str = Field(..., description="Why the upload did not start a build, for a human.")
    created_at: datetime


@router.get("/tenants/{slug}/rejections", response={200: list[RejectionOut], **SCOPED_ERRORS}, tags=["uploads"],
         summary="List the tenant's uploads refused at intake, with the reason")
@paginate(Pagination, page_size=50)
def list_rejections(request, slug: str):
    """Newest first: objects that landed in the upload location but could not become a build."""
    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return RejectedUpload.objects.filter(tenant=tenant).order_by("-created_at", "-id")


class ModelVersionOut(Schema):
    version: int
    arn: str
    build: UUID
    metrics: dict[str, float]
    approval_status: str
    artifact: str = Field(..., description="s3:// URI of model.tar.gz")
    created_at: datetime

    @staticmethod
    def resolve_build(obj: ModelVersion) -> UUID:
        return obj.build.code

    @staticmethod
    def resolve_artifact(obj: ModelVersion) -> str:
        return f"s3://{obj.tenant.bucket}/{obj.artifact_key}"


@router.get("/tenants/{slug}/models", response={200: list[ModelVersionOut], **SCOPED_ERRORS}, tags=["models"],
         summary="List the tenant's model versions")
@paginate(Pagination, page_size=50)
def list_models(request, slug: str):
    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return ModelVersion.objects.filter(tenant=tenant).select_related("build", "tenant").order_by("-version")
