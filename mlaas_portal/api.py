"""REST API /api/v1/ (django-ninja): bearer tokens, JSON errors with a stable code.

Views stay thin: parse, call one service or selector, shape the response.
Every tenant-scoped path resolves through the apps' access helpers (tenants.access, builds.access), so a user of
another tenant gets 404. Every error, including unknown paths and methods, is
JSON `{"code": ..., "message": ..., "fields": ...}`.

No `from __future__ import annotations` here: django-ninja reads the
annotations at import time to build the request models (`Query[...]` under
postponed annotations broke every paginated list with a 500).
"""

import functools
import logging
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from ninja import Field, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.pagination import PageNumberPagination, paginate
from ninja.security import HttpBearer

from builds import access as build_access
from builds import services as build_services
from builds.models import Build, ModelVersion, RejectedUpload
from core.aws.errors import AwsError, AwsValidationError
from tenants import access as tenant_access
from tenants import services as tenant_services
from tenants.models import ApiToken, Tenant

logger = logging.getLogger(__name__)

MAX_PAGE = 100_000
MAX_PAGE_SIZE = 100


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        found = ApiToken.objects.select_related("user", "user__membership").filter(
            key_hash=ApiToken.hash(token), user__is_active=True).first()
        if found is None:
            return None
        if found.last_used_at is None or (timezone.now() - found.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
        request.user = found.user
        return found.user


def _error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"code": code, "message": message, "fields": fields}


def _json_method_errors(view):
    """Wrap a ninja path view so a wrong method answers JSON 405 like every other error."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = JsonResponse(_error_body("method_not_allowed", f"Use {allowed} on this path."), status=405)
            response["Allow"] = allowed
        return response

    return wrapper


@csrf_exempt
def _unknown_path(request, *args, **kwargs):
    return JsonResponse(_error_body("not_found", "No such API path; see /api/v1/docs."), status=404)


class PortalAPI(NinjaAPI):
    def _get_urls(self):
        patterns = super()._get_urls()
        for pattern in patterns:
            if isinstance(pattern, URLPattern):
                pattern.callback = _json_method_errors(pattern.callback)
        return [*patterns, re_path(r"^.*$", _unknown_path)]


api = PortalAPI(
    title="MLaaS Portal API",
    version="1",
    description="Tenants, credentials, uploads, builds, models and costs. Authenticate with "
                "`Authorization: Bearer <token>` (create one on the portal's API tokens page or with "
                "`manage.py create_api_token`). Errors are JSON `{code, message, fields}`; another tenant's "
                "objects answer 404. Lists are paginated with `page` and `page_size` (at most 100).",
    auth=BearerToken(),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


class ErrorOut(Schema):
    code: str = Field(..., description="Stable, machine-readable error code.")
    message: str = Field(..., description="What went wrong, for a human.")
    fields: dict[str, list[str]] | None = Field(None, description="Per-field messages of a rejected request.")


def _error(request, status: int, code: str, message: str, fields=None):
    return api.create_response(request, _error_body(code, message, fields), status=status)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "not_found", "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return _error(request, 403, "forbidden", str(exc) or "Not allowed.")


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, "unauthorized", "Send a valid token: Authorization: Bearer <token>.")


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()} if hasattr(exc, "error_dict") else None
    return _error(request, 400, "invalid", "; ".join(exc.messages), fields)


@api.exception_handler(NinjaValidationError)
def _invalid_request(request, exc: NinjaValidationError):
    fields: dict[str, list[str]] = {}
    for err in exc.errors:
        loc = ".".join(str(p) for p in err.get("loc", [])[1:]) or "body"
        fields.setdefault(loc, []).append(err.get("msg", "invalid"))
    return _error(request, 422, "invalid_request", "The request does not match the schema.", fields)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    code = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            429: "throttled"}.get(exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE; that is the client's doing, not a 500.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 413, "too_large", f"The request body is over {limit:,} bytes.")


@api.exception_handler(AwsError)
def _aws(request, exc: AwsError):
    if isinstance(exc, AwsValidationError):
        return _error(request, 400, "invalid", f"The storage service refused the request: {exc}")
    if exc.retryable:
        return _error(request, 503, "aws_unavailable", "The storage service is busy; try again shortly.")
    return _error(request, 502, "aws_error", "The storage service refused the request.")


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    logger.exception("API %s %s failed", request.method, request.path)
    return _error(request, 500, "server_error", "Something went wrong on our side; it has been logged.")


class Pagination(PageNumberPagination):
    """Page numbers with bounds, so an absurd page is a 422, not a database error."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE)


ERRORS = {401: ErrorOut, 422: ErrorOut}
SCOPED_ERRORS = {**ERRORS, 404: ErrorOut}


# ----- tenants -----
class ResourcesOut(Schema):
    bucket: str
    prefix: str
    upload_uri: str
    role_arn: str
    model_package_group: str


class TenantOut(Schema):
    slug: str
    name: str
    plan: str
    isolation: str
    status: str
    default_algorithm: str | None
    default_target: str
    created_at: datetime
    resources: ResourcesOut

    @staticmethod
    def resolve_plan(obj: Tenant) -> str:
        return obj.plan.slug

    @staticmethod
    def resolve_default_algorithm(obj: Tenant) -> str | None:
        return obj.default_algorithm.slug if obj.default_algorithm_id else None

    @staticmethod
    def resolve_resources(obj: Tenant) -> dict:
        return {"bucket": obj.bucket, "prefix": obj.prefix, "upload_uri": obj.upload_uri,
                "role_arn": obj.role_arn, "model_package_group": obj.model_package_group}


class TenantIn(Schema):
    slug: str = Field(..., max_length=40)
    name: str = Field("", max_length=120)
    plan: str = Field(..., max_length=40)
    isolation: str = Field(..., max_length=8)
    owner_email: str = Field("", max_length=254)


def _tenants(user) -> QuerySet[Tenant]:
    return tenant_access.tenants_for_user(user).select_related("plan", "default_algorithm")


@api.get("/tenants", response={200: list[TenantOut], **ERRORS}, tags=["tenants"], summary="List tenants")
@paginate(Pagination, page_size=50)
def list_tenants(request):
    """Staff see every tenant; a member sees its own."""
    return _tenants(request.auth).order_by("slug")


@api.post("/tenants", response={201: TenantOut, 400: ErrorOut, 403: ErrorOut, **ERRORS}, tags=["tenants"],
          summary="Onboard a tenant")
def create_tenant(request, payload: TenantIn):
    """Staff only: records the tenant and queues its provisioning (status `provisioning`, then `active`)."""
    if not request.auth.is_staff:
        raise PermissionDenied("Only vendor staff can onboard tenants.")
    tenant = tenant_services.tenant_onboard(slug=payload.slug, name=payload.name, plan=payload.plan,
                                            isolation=payload.isolation, owner_email=payload.owner_email,
                                            actor=request.auth)
    return Status(201, tenant_access.get_tenant_for_user(request.auth, tenant.slug))


@api.get("/tenants/{slug}", response={200: TenantOut, **SCOPED_ERRORS}, tags=["tenants"], summary="Get a tenant")
def get_tenant(request, slug: str):
    return tenant_access.get_tenant_for_user(request.auth, slug)


class CredentialsOut(Schema):
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str
    Region: str
    Endpoint: str


@api.post("/tenants/{slug}/credentials", response={200: CredentialsOut, 400: ErrorOut, **SCOPED_ERRORS},
          tags=["credentials"], summary="Short-lived credentials scoped to the tenant's data")
def tenant_credentials(request, slug: str):
    from tenants.credentials import credentials_payload, tenant_assume

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant is {tenant.status}; credentials are issued for active tenants only.")
    return credentials_payload(tenant_assume(tenant, purpose=f"user-{request.auth.pk}"))


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


@api.post("/tenants/{slug}/uploads", response={200: UploadOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["uploads"],
          summary="Presigned POST into the tenant's upload location")
def create_upload(request, slug: str, payload: UploadIn):
    """POST the returned `fields` plus `file` as multipart/form-data to `url`; a build starts when it lands."""
    from builds.uploads import upload_presign

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return upload_presign(tenant=tenant, filename=payload.filename, size=payload.size,
                          algorithm=payload.algorithm, target=payload.target)


# ----- builds -----
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
    from billing.selectors import build_cost

    version = ModelVersion.objects.filter(build=b).first()
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
        "cost": str(build_cost(b)), "failure_reason": b.failure_reason,
    }


class BuildFilters(Schema):
    tenant: str | None = Field(None, max_length=40, description="Tenant slug.")
    status: Build.Status | None = None


@api.get("/builds", response={200: list[BuildOut], **ERRORS}, tags=["builds"], summary="List builds")
@paginate(Pagination, page_size=50)
def list_builds(request, filters: Query[BuildFilters]):
    """Newest first. Staff see every tenant's builds; a member sees its tenant's."""
    qs = build_access.builds_for_user(request.auth).select_related("tenant", "plan", "algorithm")
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.status:
        qs = qs.filter(status=filters.status)
    return qs.order_by("-created_at", "-id")


@api.get("/builds/{build_id}", response={200: BuildDetailOut, **SCOPED_ERRORS}, tags=["builds"],
         summary="Get a build with its steps, metrics, model version and cost")
def get_build(request, build_id: str):
    return build_detail_out(build_access.get_build_for_user(request.auth, build_id))


class BuildIn(Schema):
    tenant: str = Field(..., max_length=40)
    dataset_key: str = Field(..., min_length=1, max_length=1024)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


@api.post("/builds", response={201: BuildDetailOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["builds"],
          summary="Start a build on a dataset already uploaded")
def create_build(request, payload: BuildIn):
    tenant = tenant_access.get_tenant_for_user(request.auth, payload.tenant)
    build, _ = build_services.build_create(
        tenant=tenant, dataset_key=payload.dataset_key, algorithm_slug=payload.algorithm or None,
        target=payload.target, source=Build.Source.API, created_by=request.auth)
    return Status(201, build_detail_out(build_access.get_build_for_user(request.auth, build.code)))


@api.post("/builds/{build_id}/cancel", response={200: BuildDetailOut, 400: ErrorOut, **SCOPED_ERRORS},
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


@api.get("/tenants/{slug}/rejections", response={200: list[RejectionOut], **SCOPED_ERRORS}, tags=["uploads"],
         summary="List the tenant's uploads refused at intake, with the reason")
@paginate(Pagination, page_size=50)
def list_rejections(request, slug: str):
    """Newest first: objects that landed in the upload location but could not become a build."""
    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return RejectedUpload.objects.filter(tenant=tenant).order_by("-created_at", "-id")


# ----- models -----
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


@api.get("/tenants/{slug}/models", response={200: list[ModelVersionOut], **SCOPED_ERRORS}, tags=["models"],
         summary="List the tenant's model versions")
@paginate(Pagination, page_size=50)
def list_models(request, slug: str):
    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    return ModelVersion.objects.filter(tenant=tenant).select_related("build", "tenant").order_by("-version")


# ----- costs -----
class CostDayOut(Schema):
    day: date
    metered: str
    cost_explorer: str | None
    difference: str | None = Field(None, description="Cost Explorer minus metered, once Cost Explorer has the day")


class CostsOut(Schema):
    tenant: str
    start: date
    end: date
    days: list[CostDayOut]
    total_metered: str
    total_cost_explorer: str


class CostQuery(Schema):
    start: date
    end: date


@api.get("/tenants/{slug}/costs", response={200: CostsOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["costs"],
         summary="Daily cost lines and totals (metered, and Cost Explorer when synced)")
def tenant_costs(request, slug: str, q: Query[CostQuery]):
    from billing.selectors import tenant_daily_costs

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    if q.end < q.start:
        raise ValidationError({"end": "end must not be before start."})
    if (q.end - q.start).days > 366:
        raise ValidationError({"end": "At most 366 days per request."})
    return tenant_daily_costs(tenant=tenant, start=q.start, end=q.end)
