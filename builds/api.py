"""The builds app's API router: uploads, builds, rejections and model versions.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.db.models import F
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import ValidationError as NinjaValidationError
from ninja.pagination import paginate

from builds import access as build_access
from builds import services as build_services
from builds.models import Build, ModelVersion, RejectedUpload
from builds.waiting import WithWaiting, waiting_fields, waiting_for_builds
from core.api import ERRORS, SCOPED_ERRORS, ErrorOut, Pagination, error_body
from core.aws.errors import AwsNotFound
from tenants import access as tenant_access

router = Router()


class UploadIn(Schema):
    filename: str = Field(..., max_length=255)
    size: int = Field(..., ge=1, le=10**15)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


class SizingOut(Schema):
    processing_instance_type: str
    processing_instance_count: int
    training_instance_type: str
    training_instance_count: int
    band: int = Field(..., description="1-based band of the plan's size bands; 0: the plan has none.")
    max_bytes: int | None = Field(None, description="The band's upper bound in bytes (inclusive); null: none.")
    reason: str = Field(..., description="Why these instances, for a human.")


class UploadSizingOut(SizingOut):
    estimated_cost: str | None = Field(None, description="USD per build, from recent step durations on these "
                                                         "instances or typical ones; null when unpriced.")
    estimated_seconds: int
    estimate_basis: str


class UploadOut(Schema):
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_in: int
    sizing: UploadSizingOut = Field(..., description="What a file of `size` bytes will run on, and roughly cost.")


class BuildSizingOut(SizingOut):
    dataset_size: int


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
    sizing: BuildSizingOut = Field(..., description="The instances chosen when the build was created, and why.")

    @staticmethod
    def resolve_sizing(obj):
        from builds.sizing import build_sizing_out

        return obj["sizing"] if isinstance(obj, dict) else build_sizing_out(obj)

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
    definition_step: str = Field(..., description=(
        "The pipeline definition's step that ran as this step (Preprocess, Train or Tune, Evaluate or "
        "EvaluateTuned, CheckMetric or MetricBelowMinimum, Register); empty for a step not reached."))


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
    from builds.sizing import build_sizing_out

    version = ModelVersion.objects.filter(build=b).first()
    cost = builds_cost([b]).get(b.pk)
    return {
        "id": b.code, "tenant": b.tenant.slug, "plan": b.plan.slug, "status": b.status,
        "algorithm": b.algorithm.slug, "target": b.target, "dataset_key": b.dataset_key, "source": b.source,
        "created_at": b.created_at, "started_at": b.started_at, "ended_at": b.ended_at,
        "steps": list(b.steps.order_by("order").values(
            "name", "status", "started_at", "ended_at", "billable_seconds", "instance_type", "instance_count",
            "failure_reason", "definition_step")),
        "transitions": list(b.transitions.values("from_status", "to_status", "reason", "at")),
        "metrics": b.metrics, "data_report": b.data_report,
        "model_package_arn": version.arn if version else None, "model_version": version.version if version else None,
        "cost": str(cost.amount) if cost else "0", "failure_reason": b.failure_reason,
        "sizing": build_sizing_out(b),
        "waiting": waiting_fields(b, waiting_for_builds([b])),
    }


class BuildFilters(Schema):
    tenant: str | None = Field(None, max_length=40, description="Tenant slug.")
    status: Build.Status | None = None


class BuildPagination(Pagination):
    """`page` (deferred join: the OFFSET walks the ids of an index only, then the page's rows are read by id), or
    `cursor`, the `next_cursor` of the page before: a keyset page whose cost does not grow with its depth."""

    class Input(Pagination.Input):
        cursor: str | None = Field(None, max_length=200,
                                   description="The `next_cursor` of the previous page (instead of `page`): deep "
                                               "pages cost the same as the first.")

    class Output(Schema):
        items: list[Any]
        count: int
        next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last.")

    def paginate_queryset(self, queryset: WithWaiting, pagination: Input, request, **params: Any) -> dict:
        from core.keyset import BadCursor, encode_cursor, keyset_page

        size = self._get_page_size(pagination.page_size)
        builds = queryset.queryset
        if pagination.cursor:
            try:
                page = keyset_page(builds, key="created_at", descending=True, size=size, after=pagination.cursor)
            except BadCursor:  # 422 invalid_request, naming the field, as any value the schema refuses
                raise NinjaValidationError([{"loc": ("query", "cursor"), "msg": "Not a next_cursor of this list."}]) \
                    from None
            items, next_cursor = page.items, page.next_cursor
        else:
            offset = (pagination.page - 1) * size
            ids = list(builds.values_list("pk", flat=True)[offset:offset + size + 1])
            items = list(builds.filter(pk__in=ids[:size])) if ids else []
            last = items[-1] if items else None
            next_cursor = encode_cursor(last.created_at, last.pk) if len(ids) > size else None
        return {"items": queryset.with_waiting(items), "count": queryset.count(), "next_cursor": next_cursor}


@router.get("/builds", response={200: list[BuildOut], **ERRORS}, tags=["builds"], summary="List builds")
@paginate(BuildPagination, page_size=50)
def list_builds(request, filters: Query[BuildFilters]):
    """Newest first. Staff see every tenant's builds; a member sees its tenant's. Page with `page`, or for deep
    pages with `cursor` (each page's `next_cursor`)."""
    qs = build_access.builds_for_user(request.auth).select_related("tenant", "plan", "algorithm")
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.status:
        qs = qs.filter(status=filters.status)
    # NULLS LAST (created_at is never null): the order index build_created_id is declared in.
    return WithWaiting(qs.order_by(F("created_at").desc(nulls_last=True), F("id").desc()))


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


class AlgorithmOut(Schema):
    slug: str
    name: str
    description: str
    problem_type: str
    objective_metric: str
    min_metric: float = Field(..., description="Builds whose objective metric is worse than this fail.")
    typical_metrics: dict[str, Any] = Field(..., description="Measured on the bundled samples.")


@router.get("/algorithms", auth=None, response={200: list[AlgorithmOut], 422: ErrorOut}, tags=["catalog"],
            summary="The algorithms the catalog offers (no token needed)")
@paginate(Pagination, page_size=50)
def list_algorithms(request):
    from builds.selectors import algorithms

    return algorithms(active_only=True)
class ModelVersionDetailOut(ModelVersionOut):
    insight: dict[str, Any] = Field(..., description=(
        "Computed on the test split by the evaluate step: `confusion_matrix` and `roc` (classifiers) or "
        "`predicted_vs_actual` and `residuals` (regression), and `feature_importance`; {} for versions "
        "registered before insight existed."))
    lineage: dict[str, Any] = Field(..., description=(
        "dataset (bucket, key, version_id), image (uri, digest), algorithm, hyperparameters, tuning, build."))
    replaces: int | None = Field(..., description="The version this one replaced (approved then, else previous).")
    decided_by: str | None
    decided_at: datetime | None

    @staticmethod
    def resolve_replaces(obj: ModelVersion) -> int | None:
        return obj.replaces.version if obj.replaces_id else None

    @staticmethod
    def resolve_decided_by(obj: ModelVersion) -> str | None:
        return obj.decided_by.username if obj.decided_by_id else None


def _version_for(request, slug: str, version: int) -> ModelVersion:
    return build_access.get_model_version_for_user(request.auth, slug, version)


@router.get("/tenants/{slug}/models/{version}", response={200: ModelVersionDetailOut, **SCOPED_ERRORS},
            tags=["models"], summary="Get one model version with its insight and lineage")
def get_model(request, slug: str, version: int):
    return _version_for(request, slug, version)


def _decide(request, slug: str, version: int, *, approve: bool):
    found = _version_for(request, slug, version)
    if not tenant_access.is_tenant_owner(request.auth, found.tenant):
        raise PermissionDenied("Only the tenant's owners (or staff) approve or reject model versions.")
    build_services.model_version_decide(version=found, approve=approve, actor=request.auth)
    return _version_for(request, slug, version)


@router.post("/tenants/{slug}/models/{version}/approve",
             response={200: ModelVersionDetailOut, 403: ErrorOut, **SCOPED_ERRORS}, tags=["models"],
             summary="Approve a model version (tenant owners and staff)")
def approve_model(request, slug: str, version: int):
    """Sets the model package's approval status to Approved in the tenant's model registry."""
    return _decide(request, slug, version, approve=True)


@router.post("/tenants/{slug}/models/{version}/reject",
             response={200: ModelVersionDetailOut, 403: ErrorOut, **SCOPED_ERRORS}, tags=["models"],
             summary="Reject a model version (tenant owners and staff)")
def reject_model(request, slug: str, version: int):
    """Sets the model package's approval status to Rejected; a test endpoint serving it is deleted."""
    return _decide(request, slug, version, approve=False)


class DownloadOut(Schema):
    url: str = Field(..., description="GET it within `expires_in` seconds; signed by the tenant's own role.")
    expires_in: int


DOWNLOAD_EXPIRES = 300


@router.get("/tenants/{slug}/models/{version}/download", response={200: DownloadOut, 410: ErrorOut,
                                                                    **SCOPED_ERRORS},
            tags=["models"], summary="A short-lived link to the version's model.tar.gz")
def download_model(request, slug: str, version: int):
    found = _version_for(request, slug, version)
    try:
        url = build_services.model_download_link(version=found, expires=DOWNLOAD_EXPIRES)
    except AwsNotFound:
        return Status(410, error_body(
            "artifact_gone", f"The model artifact of version {found.version} is no longer in storage; build the "
                             "model again to get a new version."))
    return {"url": url, "expires_in": DOWNLOAD_EXPIRES}


class EndpointOut(Schema):
    name: str
    model_version: int
    status: str = Field(..., description="Creating, Updating, InService, Failed, Deleting or Deleted.")
    failure_reason: str
    engine: str
    created_at: datetime
    in_service_at: datetime | None
    last_invoked_at: datetime | None
    invocations: str = Field(..., description="POST rows here to score them.")

    @staticmethod
    def resolve_model_version(obj) -> int:
        return obj.model_version.version

    @staticmethod
    def resolve_invocations(obj) -> str:
        return f"/api/v1/tenants/{obj.tenant.slug}/endpoints/{obj.name}/invocations"


class EndpointIn(Schema):
    model_version: int = Field(..., ge=1, description="An approved version of the tenant's model.")


def _require_owner(request, tenant) -> None:
    if not tenant_access.is_tenant_owner(request.auth, tenant):
        raise PermissionDenied("Only the tenant's owners (or staff) deploy and delete test endpoints.")


@router.get("/tenants/{slug}/endpoints", response={200: list[EndpointOut], **SCOPED_ERRORS}, tags=["endpoints"],
            summary="List the tenant's test endpoints")
@paginate(Pagination, page_size=50)
def list_endpoints(request, slug: str):
    from builds.endpoints import live_endpoints

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return live_endpoints(tenant).select_related("tenant", "model_version").order_by("name")


@router.post("/tenants/{slug}/endpoints", response={202: EndpointOut, 400: ErrorOut, 403: ErrorOut, **SCOPED_ERRORS},
             tags=["endpoints"], summary="Deploy an approved model version to the tenant's test endpoint")
def deploy_endpoint(request, slug: str, payload: EndpointIn):
    """Answers at once with status Creating (or Updating: at the plan's limit the oldest endpoint is replaced in
    place); poll `GET .../endpoints/{name}` until InService or Failed with `failure_reason`."""
    from builds.endpoints import endpoint_deploy

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    _require_owner(request, tenant)
    version = ModelVersion.objects.filter(tenant=tenant, version=payload.model_version).first()
    if version is None:
        return Status(400, error_body("invalid", f"No model version {payload.model_version}.",
                                      {"model_version": [f"No model version {payload.model_version}."]}))
    endpoint = endpoint_deploy(tenant=tenant, version=version, actor=request.auth)
    return Status(202, build_access.get_endpoint_for_user(request.auth, slug, endpoint.name))


@router.get("/tenants/{slug}/endpoints/{name}", response={200: EndpointOut, **SCOPED_ERRORS}, tags=["endpoints"],
            summary="Get a test endpoint")
def get_endpoint(request, slug: str, name: str):
    return build_access.get_endpoint_for_user(request.auth, slug, name)


@router.delete("/tenants/{slug}/endpoints/{name}", response={202: EndpointOut, 400: ErrorOut, 403: ErrorOut,
                                                             **SCOPED_ERRORS},
               tags=["endpoints"], summary="Delete a test endpoint")
def delete_endpoint(request, slug: str, name: str):
    from builds.endpoints import endpoint_delete

    endpoint = build_access.get_endpoint_for_user(request.auth, slug, name)
    _require_owner(request, endpoint.tenant)
    return Status(202, endpoint_delete(endpoint=endpoint, reason=f"deleted by {request.auth.username}"))


class PredictionsOut(Schema):
    predictions: list[dict[str, Any]] = Field(..., description=(
        "One per row, in order: {class, probabilities} for classifiers, {value} for regression."))


INVOCATION_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "age,income\n41,52000\n"},
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}


@router.post("/tenants/{slug}/endpoints/{name}/invocations",
             response={200: PredictionsOut, 400: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut, 502: ErrorOut,
                       **SCOPED_ERRORS},
             tags=["endpoints"], summary="Score rows (CSV or JSON) on a test endpoint", openapi_extra=INVOCATION_BODY)
def invoke_endpoint(request, slug: str, name: str):
    """Send the training columns without the target: text/csv with a header line, or application/json rows.
    A missing or unknown column is a 400 naming it (`fields.missing`, `fields.unknown`)."""
    from builds.endpoints import EndpointUnavailable, endpoint_invoke

    endpoint = build_access.get_endpoint_for_user(request.auth, slug, name)
    try:
        status, document = endpoint_invoke(endpoint=endpoint, body=request.body,
                                           content_type=request.content_type or "text/csv")
    except EndpointUnavailable as exc:
        return Status(409, error_body("endpoint_unavailable", str(exc)))
    if status == 200:
        return {"predictions": document.get("predictions", [])}
    code = {400: "invalid_rows", 413: "too_large", 415: "unsupported_media_type"}.get(status, "model_error")
    fields = document.get("fields")
    fields = {k: [str(x) for x in v] for k, v in fields.items()} if isinstance(fields, dict) else None
    return Status(status if status in (400, 413, 415) else 502,
                  error_body(code, str(document.get("message") or "The model could not score the rows."), fields))


# ----- batch scoring -----

class BatchJobIn(Schema):
    model_version: int = Field(..., ge=1, description="A version of the tenant's model (approved or pending).")


class BatchUploadOut(Schema):
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_in: int


class BatchJobOut(Schema):
    code: UUID
    model_version: int
    status: str = Field(..., description="awaiting_input, queued, running, succeeded or failed.")
    engine: str
    input_key: str
    input_size: int
    output_key: str
    instance_type: str = Field(..., description="The plan's size band for the input (the transform's instances).")
    instance_count: int
    rows_in: int | None = Field(None, description="Data rows in the input, once the run has read it.")
    rows_done: int = Field(..., description="Rows scored so far.")
    rows_out: int | None
    progress_percent: int | None
    error_message: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @staticmethod
    def resolve_model_version(obj) -> int:
        return obj.model_version.version


class BatchJobCreatedOut(BatchJobOut):
    upload: BatchUploadOut = Field(..., description=(
        "POST `fields` plus `file` as multipart/form-data to `url`, then POST .../batch-jobs/{code}/start."))


@router.post("/tenants/{slug}/batch-jobs", response={201: BatchJobCreatedOut, 400: ErrorOut, **SCOPED_ERRORS},
             tags=["batch"], summary="Create a batch scoring job and a presigned upload for its input CSV")
def create_batch_job(request, slug: str, payload: BatchJobIn):
    from builds.batch import batch_job_create, batch_upload_presign

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    version = ModelVersion.objects.select_related("build").filter(tenant=tenant,
                                                                  version=payload.model_version).first()
    if version is None:
        return Status(404, error_body("not_found", "Not found."))
    job = batch_job_create(tenant=tenant, version=version, actor=request.auth)
    out = build_access.get_batch_job_for_user(request.auth, slug, job.code)
    out.upload = batch_upload_presign(job=out)
    return Status(201, out)


@router.get("/tenants/{slug}/batch-jobs", response={200: list[BatchJobOut], **SCOPED_ERRORS}, tags=["batch"],
            summary="List the tenant's batch scoring jobs, newest first")
@paginate(Pagination, page_size=50)
def list_batch_jobs(request, slug: str):
    from builds.selectors import batch_jobs

    return batch_jobs(tenant=tenant_access.get_tenant_for_user(request.auth, slug))


@router.get("/tenants/{slug}/batch-jobs/{code}", response={200: BatchJobOut, **SCOPED_ERRORS}, tags=["batch"],
            summary="Get a batch scoring job: status, progress, error")
def get_batch_job(request, slug: str, code: str):
    return build_access.get_batch_job_for_user(request.auth, slug, code)


@router.post("/tenants/{slug}/batch-jobs/{code}/start", response={202: BatchJobOut, 400: ErrorOut, **SCOPED_ERRORS},
             tags=["batch"], summary="Start scoring the uploaded input")
def start_batch_job(request, slug: str, code: str):
    """The input's header must name the model's training columns without the target: a missing or unknown
    column is a 400 `invalid_header` naming them (`fields.missing`, `fields.unknown`); the input stays, so a
    corrected file can be uploaded to the same job and started again."""
    from builds.batch import InputHeaderError, batch_job_start

    job = build_access.get_batch_job_for_user(request.auth, slug, code)
    try:
        return Status(202, batch_job_start(job=job))
    except InputHeaderError as exc:
        return Status(400, error_body("invalid_header", exc.messages[0], exc.problems))


@router.get("/tenants/{slug}/batch-jobs/{code}/download",
            response={200: DownloadOut, 409: ErrorOut, 410: ErrorOut, **SCOPED_ERRORS},
            tags=["batch"], summary="A short-lived link to the output CSV (input rows and their predictions)")
def download_batch_job(request, slug: str, code: str):
    from builds.batch import DOWNLOAD_EXPIRES as BATCH_DOWNLOAD_EXPIRES
    from builds.batch import batch_download_link

    job = build_access.get_batch_job_for_user(request.auth, slug, code)
    if job.status != job.Status.SUCCEEDED:
        return Status(409, error_body("not_finished", f"Batch job {job.code} is {job.get_status_display().lower()};"
                                                      " its output is ready once it has succeeded."))
    try:
        url = batch_download_link(job=job, expires=BATCH_DOWNLOAD_EXPIRES)
    except AwsNotFound:
        return Status(410, error_body("output_gone", "The output of this batch job is no longer in storage; "
                                                     "score the input again."))
    return {"url": url, "expires_in": BATCH_DOWNLOAD_EXPIRES}
