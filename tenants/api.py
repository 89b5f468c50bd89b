"""The tenants app's API router: tenants and their scoped credentials; bearer-token authentication.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate
from ninja.security import HttpBearer

from core.api import ERRORS, SCOPED_ERRORS, ErrorOut, Pagination
from tenants import access as tenant_access
from tenants import services as tenant_services
from tenants.models import ApiToken, Tenant

router = Router()


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        found = ApiToken.objects.select_related("user", "user__membership__tenant__plan").filter(
            key_hash=ApiToken.hash(token), user__is_active=True).first()
        if found is None:
            return None
        if found.last_used_at is None or (timezone.now() - found.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
        request.user = found.user
        from tenants.api_limits import api_request_check

        api_request_check(found)  # RateLimited: 429 with Retry-After
        return found.user


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


@router.get("/tenants", response={200: list[TenantOut], **ERRORS}, tags=["tenants"], summary="List tenants")
@paginate(Pagination, page_size=50)
def list_tenants(request):
    """Staff see every tenant; a member sees its own."""
    return _tenants(request.auth).order_by("slug")


@router.post("/tenants", response={201: TenantOut, 400: ErrorOut, 403: ErrorOut, **ERRORS}, tags=["tenants"],
          summary="Onboard a tenant")
def create_tenant(request, payload: TenantIn):
    """Staff only: records the tenant and queues its provisioning (status `provisioning`, then `active`)."""
    if not request.auth.is_staff:
        raise PermissionDenied("Only vendor staff can onboard tenants.")
    tenant = tenant_services.tenant_onboard(slug=payload.slug, name=payload.name, plan=payload.plan,
                                            isolation=payload.isolation, owner_email=payload.owner_email,
                                            actor=request.auth)
    return Status(201, tenant_access.get_tenant_for_user(request.auth, tenant.slug))


@router.get("/tenants/{slug}", response={200: TenantOut, **SCOPED_ERRORS}, tags=["tenants"], summary="Get a tenant")
def get_tenant(request, slug: str):
    return tenant_access.get_tenant_for_user(request.auth, slug)


class CredentialsOut(Schema):
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str
    Region: str
    Endpoint: str


@router.post("/tenants/{slug}/credentials", response={200: CredentialsOut, 400: ErrorOut, **SCOPED_ERRORS},
          tags=["credentials"], summary="Short-lived credentials scoped to the tenant's data")
def tenant_credentials(request, slug: str):
    from tenants.credentials import credentials_payload, tenant_assume

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant is {tenant.status}; credentials are issued for active tenants only.")
    return credentials_payload(tenant_assume(tenant, purpose=f"user-{request.auth.pk}"))
