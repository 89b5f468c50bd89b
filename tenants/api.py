"""The tenants app's API router: tenants and their scoped credentials; bearer-token authentication.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from datetime import datetime
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate
from ninja.security import HttpBearer

from core.api import ERRORS, SCOPED_ERRORS, ErrorOut, Pagination
from tenants import access as tenant_access
from tenants import services as tenant_services
from tenants.models import ApiToken, Tenant, Webhook

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


# ----- webhooks: owners (and staff) manage, members read; another tenant's user gets 404 -----

class WebhookOut(Schema):
    id: UUID = Field(..., description="The webhook's public id.")
    url: str
    events: list[str]
    status: str = Field(..., description="`active` or `paused`.")
    paused_reason: str
    consecutive_failures: int
    created_at: datetime
    secret: str | None = Field(None, description="The `whsec_` signing secret: only in the answer that created "
                                                 "or rotated it.")

    @staticmethod
    def resolve_id(obj) -> UUID:
        return obj.code

    @staticmethod
    def resolve_secret(obj) -> str | None:
        return getattr(obj, "shown_secret", None)


class WebhookIn(Schema):
    url: str = Field(..., max_length=2000, description="https URL reaching a public address.")
    events: list[str] = Field(..., min_length=1, max_length=10, description="Events to receive: " + ", ".join(
        Webhook.Event.values) + ".")


class WebhookPatch(Schema):
    url: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, min_length=1, max_length=10)
    status: str | None = Field(None, description="`active` (resume) or `paused`.")
    rotate_secret: bool = Field(False, description="Replace the signing secret; the answer carries the new one.")


class DeliveryOut(Schema):
    id: UUID
    event: str
    msg_id: str = Field(..., description="The `webhook-id` header: the same for every attempt and resend.")
    status: str = Field(..., description="`pending`, `succeeded` or `failed`.")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    response_excerpt: str = Field(..., description="The start of the receiver's last answer (about 2 kB).")
    error: str
    created_at: datetime
    last_attempt_at: datetime | None
    completed_at: datetime | None
    payload: dict

    @staticmethod
    def resolve_id(obj) -> UUID:
        return obj.code


def _webhook_for(request, slug: str, webhook_id: str) -> Webhook:
    from tenants.webhooks import get_webhook_for_tenant

    return get_webhook_for_tenant(tenant_access.get_tenant_for_user(request.auth, slug), webhook_id)


def _require_webhook_owner(request, tenant: Tenant) -> None:
    if not tenant_access.is_tenant_owner(request.auth, tenant):
        raise PermissionDenied("Only the tenant's owners (or staff) change webhooks.")


def _with_secret(hook: Webhook) -> Webhook:
    hook.shown_secret = hook.secret
    return hook


@router.get("/tenants/{slug}/webhooks", response={200: list[WebhookOut], **SCOPED_ERRORS}, tags=["webhooks"],
            summary="List the tenant's webhooks")
@paginate(Pagination, page_size=50)
def list_webhooks(request, slug: str):
    from tenants.webhooks import webhooks_for_tenant

    return webhooks_for_tenant(tenant_access.get_tenant_for_user(request.auth, slug))


@router.post("/tenants/{slug}/webhooks", response={201: WebhookOut, 400: ErrorOut, 403: ErrorOut, **SCOPED_ERRORS},
             tags=["webhooks"], summary="Register a webhook (tenant owners and staff)")
def create_webhook(request, slug: str, payload: WebhookIn):
    """The URL must be https and reach a public address (checked now and before every delivery); the answer
    carries the signing secret, once."""
    from tenants.webhooks import webhook_create

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    _require_webhook_owner(request, tenant)
    hook = webhook_create(tenant=tenant, url=payload.url, events=payload.events, actor=request.auth)
    return Status(201, _with_secret(hook))


@router.get("/tenants/{slug}/webhooks/{webhook_id}", response={200: WebhookOut, **SCOPED_ERRORS}, tags=["webhooks"],
            summary="Get a webhook")
def get_webhook(request, slug: str, webhook_id: str):
    return _webhook_for(request, slug, webhook_id)


@router.patch("/tenants/{slug}/webhooks/{webhook_id}",
              response={200: WebhookOut, 400: ErrorOut, 403: ErrorOut, **SCOPED_ERRORS}, tags=["webhooks"],
              summary="Change, pause, resume or rotate the secret of a webhook (tenant owners and staff)")
def update_webhook(request, slug: str, webhook_id: str, payload: WebhookPatch):
    from tenants.webhooks import webhook_secret_rotate, webhook_update

    hook = _webhook_for(request, slug, webhook_id)
    _require_webhook_owner(request, hook.tenant)
    with transaction.atomic():
        hook = webhook_update(webhook=hook, url=payload.url, events=payload.events, status=payload.status)
        if payload.rotate_secret:
            return _with_secret(webhook_secret_rotate(webhook=hook))
    return hook


@router.delete("/tenants/{slug}/webhooks/{webhook_id}", response={204: None, 403: ErrorOut, **SCOPED_ERRORS},
               tags=["webhooks"], summary="Delete a webhook and its deliveries (tenant owners and staff)")
def delete_webhook(request, slug: str, webhook_id: str):
    from tenants.webhooks import webhook_delete

    hook = _webhook_for(request, slug, webhook_id)
    _require_webhook_owner(request, hook.tenant)
    webhook_delete(webhook=hook)
    return Status(204, None)


@router.get("/tenants/{slug}/webhooks/{webhook_id}/deliveries", response={200: list[DeliveryOut], **SCOPED_ERRORS},
            tags=["webhooks"], summary="A webhook's deliveries, most recent first")
@paginate(Pagination, page_size=50)
def list_deliveries(request, slug: str, webhook_id: str):
    from tenants.webhooks import deliveries_for_webhook

    return deliveries_for_webhook(_webhook_for(request, slug, webhook_id))


@router.post("/tenants/{slug}/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
             response={202: DeliveryOut, 400: ErrorOut, 403: ErrorOut, **SCOPED_ERRORS}, tags=["webhooks"],
             summary="Send a delivery's message again (tenant owners and staff)")
def resend_delivery(request, slug: str, webhook_id: str, delivery_id: str):
    """A new delivery of the same message (same `webhook-id` and body), sent at once."""
    from tenants.webhooks import get_delivery_for_webhook, webhook_delivery_resend

    hook = _webhook_for(request, slug, webhook_id)
    delivery = get_delivery_for_webhook(hook, delivery_id)
    _require_webhook_owner(request, hook.tenant)
    return Status(202, webhook_delivery_resend(delivery=delivery))
