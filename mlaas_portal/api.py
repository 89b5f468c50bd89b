"""REST API /api/v1/ (django-ninja): bearer tokens, JSON errors with a stable code.

Views stay thin: parse, call one service or selector, shape the response.
Every tenant-scoped path resolves through mlaas_portal.access, so a user of
another tenant gets 404.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Field, NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.pagination import PageNumberPagination, paginate
from ninja.security import HttpBearer

from builds import services as build_services
from builds.models import Build, ModelVersion
from mlaas_portal import access
from mlaas_portal.aws.errors import AwsError
from tenants import services as tenant_services
from tenants.models import ApiToken, Tenant


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


api = NinjaAPI(
    title="MLaaS Portal API",
    version="1",
    description="Tenants, uploads, builds, models and costs. Authenticate with `Authorization: Bearer <token>`.",
    auth=BearerToken(),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


class ErrorOut(Schema):
    code: str
    message: str
    fields: dict[str, list[str]] | None = None


def _error(request, status: int, code: str, message: str, fields=None):
    return api.create_response(request, {"code": code, "message": message, "fields": fields}, status=status)


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
    return _error(request, exc.status_code, "error", str(exc))


@api.exception_handler(AwsError)
def _aws(request, exc: AwsError):
    if exc.retryable:
        return _error(request, 503, "aws_unavailable", "The storage service is busy; try again shortly.")
    return _error(request, 502, "aws_error", "The storage service refused the request.")


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


def tenant_out(t: Tenant) -> dict:
    return {"slug": t.slug, "name": t.name, "plan": t.plan.slug, "isolation": t.isolation, "status": t.status,
            "default_algorithm": t.default_algorithm.slug if t.default_algorithm else None,
            "default_target": t.default_target, "created_at": t.created_at,
            "resources": {"bucket": t.bucket, "prefix": t.prefix, "upload_uri": t.upload_uri,
                          "role_arn": t.role_arn, "model_package_group": t.model_package_group}}


class TenantIn(Schema):
    slug: str = Field(..., max_length=40)
    name: str = Field("", max_length=120)
    plan: str = Field(..., max_length=40)
    isolation: str = Field(..., max_length=8)
    owner_email: str = Field("", max_length=254)


@api.get("/tenants", response=list[TenantOut], tags=["tenants"])
@paginate(PageNumberPagination, page_size=50)
def list_tenants(request):
    qs = access.tenants_for_user(request.auth).select_related("plan", "default_algorithm").order_by("slug")
    return [tenant_out(t) for t in qs]


@api.post("/tenants", response={201: TenantOut, 400: ErrorOut, 403: ErrorOut}, tags=["tenants"])
def create_tenant(request, payload: TenantIn):
    if not request.auth.is_staff:
        raise PermissionDenied("Only vendor staff can onboard tenants.")
    tenant = tenant_services.tenant_onboard(slug=payload.slug, name=payload.name, plan=payload.plan,
                                            isolation=payload.isolation, owner_email=payload.owner_email,
                                            actor=request.auth)
    return 201, tenant_out(access.get_tenant_for_user(request.auth, tenant.slug))


@api.get("/tenants/{slug}", response={200: TenantOut, 404: ErrorOut}, tags=["tenants"])
def get_tenant(request, slug: str):
    return tenant_out(access.get_tenant_for_user(request.auth, slug))


class CredentialsOut(Schema):
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str
    Region: str
    Endpoint: str


@api.post("/tenants/{slug}/credentials", response={200: CredentialsOut, 400: ErrorOut, 404: ErrorOut},
          tags=["tenants"])
def tenant_credentials(request, slug: str):
    from tenants.credentials import credentials_payload, tenant_assume

    tenant = access.get_tenant_for_user(request.auth, slug)
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant is {tenant.status}; credentials are issued for active tenants only.")
    return credentials_payload(tenant_assume(tenant, purpose=f"user-{request.auth.pk}"))


class UploadIn(Schema):
    filename: str = Field(..., max_length=255)
    size: int = Field(..., ge=1)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


class UploadOut(Schema):
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_in: int


@api.post("/tenants/{slug}/uploads", response={200: UploadOut, 400: ErrorOut, 404: ErrorOut}, tags=["uploads"])
def create_upload(request, slug: str, payload: UploadIn):
    from builds.uploads import upload_presign

    tenant = access.get_tenant_for_user(request.auth, slug)
    return upload_presign(tenant=tenant, filename=payload.filename, size=payload.size,
                          algorithm=payload.algorithm, target=payload.target)


# ----- builds -----
class BuildOut(Schema):
    id: UUID
    tenant: str
    status: str
    algorithm: str
    target: str
    dataset_key: str
    source: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


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
    metrics: dict
    data_report: dict
    model_package_arn: str | None
    model_version: int | None
    cost: str
    failure_reason: str


def build_out(b: Build) -> dict:
    return {"id": b.code, "tenant": b.tenant.slug, "status": b.status, "algorithm": b.algorithm.slug,
            "target": b.target, "dataset_key": b.dataset_key, "source": b.source, "created_at": b.created_at,
            "started_at": b.started_at, "ended_at": b.ended_at}


def build_detail_out(b: Build) -> dict:
    from billing.selectors import build_cost

    version = ModelVersion.objects.filter(build=b).first()
    out = build_out(b)
    out.update(
        steps=list(b.steps.values("name", "status", "started_at", "ended_at", "billable_seconds", "instance_type",
                                  "instance_count", "failure_reason")),
        transitions=list(b.transitions.values("from_status", "to_status", "reason", "at")),
        metrics=b.metrics, data_report=b.data_report,
        model_package_arn=version.arn if version else None, model_version=version.version if version else None,
        cost=str(build_cost(b)), failure_reason=b.failure_reason)
    return out


class BuildFilters(Schema):
    tenant: str | None = None
    status: str | None = None


@api.get("/builds", response=list[BuildOut], tags=["builds"])
@paginate(PageNumberPagination, page_size=50)
def list_builds(request, filters: Query[BuildFilters]):
    qs = access.builds_for_user(request.auth).select_related("tenant", "algorithm")
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.status:
        qs = qs.filter(status=filters.status)
    return [build_out(b) for b in qs.order_by("-created_at", "-id")]


@api.get("/builds/{build_id}", response={200: BuildDetailOut, 404: ErrorOut}, tags=["builds"])
def get_build(request, build_id: str):
    return build_detail_out(access.get_build_for_user(request.auth, build_id))


class BuildIn(Schema):
    tenant: str = Field(..., max_length=40)
    dataset_key: str = Field(..., max_length=1024)
    algorithm: str = Field("", max_length=60)
    target: str = Field("", max_length=120)


@api.post("/builds", response={201: BuildDetailOut, 400: ErrorOut, 404: ErrorOut}, tags=["builds"])
def create_build(request, payload: BuildIn):
    from mlaas_portal.aws import gateways
    from mlaas_portal.aws.errors import AwsNotFound

    tenant = access.get_tenant_for_user(request.auth, payload.tenant)
    if not payload.dataset_key.startswith(tenant.upload_prefix):
        raise ValidationError({"dataset_key": f"Datasets must be under `{tenant.upload_prefix}`."})
    try:
        head = gateways.platform_s3().head_object(tenant.bucket, payload.dataset_key)
    except AwsNotFound:
        raise ValidationError({"dataset_key": f"No dataset `{payload.dataset_key}` in the tenant's uploads."}) from None
    build, _ = build_services.build_create(
        tenant=tenant, dataset_key=payload.dataset_key, algorithm_slug=payload.algorithm or None,
        target=payload.target, source=Build.Source.API, dataset_version=head.get("VersionId") or "",
        dataset_size=head.get("ContentLength", 0), created_by=request.auth)
    return 201, build_detail_out(access.get_build_for_user(request.auth, build.code))


@api.post("/builds/{build_id}/cancel", response={200: BuildDetailOut, 400: ErrorOut, 404: ErrorOut},
          tags=["builds"])
def cancel_build(request, build_id: str):
    build = access.get_build_for_user(request.auth, build_id)
    build_services.build_cancel(build=build, actor=request.auth)
    return build_detail_out(access.get_build_for_user(request.auth, build_id))


# ----- models -----
class ModelVersionOut(Schema):
    version: int
    arn: str
    build: UUID
    metrics: dict
    approval_status: str
    artifact: str
    created_at: datetime


@api.get("/tenants/{slug}/models", response={200: list[ModelVersionOut], 404: ErrorOut}, tags=["models"])
@paginate(PageNumberPagination, page_size=50)
def list_models(request, slug: str):
    tenant = access.get_tenant_for_user(request.auth, slug)
    return [{"version": v.version, "arn": v.arn, "build": v.build.code, "metrics": v.metrics,
             "approval_status": v.approval_status, "artifact": f"s3://{tenant.bucket}/{v.artifact_key}",
             "created_at": v.created_at}
            for v in ModelVersion.objects.filter(tenant=tenant).select_related("build").order_by("-version")]


# ----- costs -----
class CostDayOut(Schema):
    day: date
    metered: str
    cost_explorer: str | None


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


@api.get("/tenants/{slug}/costs", response={200: CostsOut, 400: ErrorOut, 404: ErrorOut}, tags=["costs"])
def tenant_costs(request, slug: str, q: Query[CostQuery]):
    from billing.selectors import tenant_daily_costs

    tenant = access.get_tenant_for_user(request.auth, slug)
    if q.end < q.start:
        raise ValidationError({"end": "end must not be before start."})
    if (q.end - q.start).days > 366:
        raise ValidationError({"end": "At most 366 days per request."})
    return tenant_daily_costs(tenant=tenant, start=q.start, end=q.end)
