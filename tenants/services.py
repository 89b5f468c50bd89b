"""Writes of the tenants app: onboarding, lifecycle, members and tokens."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tenants import naming
from tenants.models import AccessRequest, ApiToken, Membership, Plan, SchedulingPolicy, Tenant, TenantEvent

logger = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")


def _enqueue_provisioning(tenant_id: int) -> None:
    from tenants import jobs

    transaction.on_commit(lambda: jobs.enqueue_provisioning(tenant_id))


def tenant_onboard(*, slug: str, name: str = "", plan: Plan | str, isolation: str, owner_email: str = "",
                   actor: User | None = None, default_algorithm=None, default_target: str = "",
                   provision_in_background: bool = True) -> Tenant:
    """Record the tenant and queue its provisioning (or leave it to the caller to run synchronously)."""
    slug = (slug or "").strip().lower()
    errors: dict[str, str] = {}
    if not SLUG_RE.match(slug):
        errors["slug"] = ("Use 3-30 characters: lowercase letters, digits and hyphens, starting with a letter "
                          "and not ending with a hyphen.")
    elif slug in naming.RESERVED_SLUGS:
        errors["slug"] = f"`{slug}` is the name of a portal page; choose another slug."
    elif Tenant.objects.filter(slug=slug).exists():
        errors["slug"] = f"A tenant with slug `{slug}` already exists."
    if isinstance(plan, str):
        plan_obj = Plan.objects.filter(slug=plan).first()
        if plan_obj is None:
            known = ", ".join(Plan.objects.values_list("slug", flat=True)) or "none"
            errors["plan"] = f"Unknown plan `{plan}`; plans are: {known}."
    else:
        plan_obj = plan
    if isolation not in Tenant.Isolation.values:
        errors["isolation"] = "Isolation must be `silo` or `pool`."
    if owner_email and User.objects.filter(username=owner_email.lower()).exists():
        existing = User.objects.get(username=owner_email.lower())
        if existing.is_staff or hasattr(existing, "membership"):
            errors["owner_email"] = f"{owner_email} already belongs to another tenant or to staff."
    if errors:
        raise ValidationError(errors)
    if default_algorithm is None:  # the catalog's first classifier (builds' model, named by the foreign key)
        catalog = Tenant._meta.get_field("default_algorithm").related_model.objects
        default_algorithm = catalog.filter(active=True, problem_type="classification").first()
    with transaction.atomic():
        tenant = Tenant.objects.create(
            slug=slug, name=name or slug.replace("-", " ").title(), plan=plan_obj, isolation=isolation,
            owner_email=owner_email, status=Tenant.Status.PROVISIONING,
            default_algorithm=default_algorithm, default_target=default_target,
        )
        from tenants.provisioning import ensure_step_rows

        ensure_step_rows(tenant)
        if owner_email:
            member_invite(tenant=tenant, email=owner_email, role=Membership.Role.OWNER, actor=None)
        TenantEvent.objects.create(tenant=tenant, action="onboarded", actor=actor,
                                   detail=f"plan={plan_obj.slug} isolation={isolation}")
        if provision_in_background:
            _enqueue_provisioning(tenant.id)
    return tenant


def tenant_provision_retry(*, tenant: Tenant, actor: User | None = None) -> None:
    if tenant.status not in (Tenant.Status.FAILED, Tenant.Status.PROVISIONING):
        raise ValidationError(f"Tenant is {tenant.status}; only failed or provisioning tenants can be retried.")
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.PROVISIONING)
        TenantEvent.objects.create(tenant=tenant, action="provisioning_retried", actor=actor)
        _enqueue_provisioning(tenant.id)


def tenant_suspend(*, tenant: Tenant, actor: User | None = None, reason: str = "") -> None:
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Only active tenants can be suspended (tenant is {tenant.status}).")
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
        TenantEvent.objects.create(tenant=tenant, action="suspended", actor=actor, detail=reason)
    tenant.status = Tenant.Status.SUSPENDED


def tenant_resume(*, tenant: Tenant, actor: User | None = None) -> None:
    if tenant.status != Tenant.Status.SUSPENDED:
        raise ValidationError("Only suspended tenants can be resumed.")
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.ACTIVE)
        TenantEvent.objects.create(tenant=tenant, action="resumed", actor=actor)
    tenant.status = Tenant.Status.ACTIVE


def tenant_offboard(*, tenant: Tenant, delete_data: bool, confirm_slug: str, actor: User | None = None) -> None:
    """Remove the tenant role (no more access, no more builds); data kept or deleted as chosen."""
    if confirm_slug != tenant.slug:
        raise ValidationError({"confirm_slug": "Type the tenant's slug exactly to confirm offboarding."})
    if tenant.status == Tenant.Status.OFFBOARDED:
        raise ValidationError("Tenant is already offboarded.")
    from core.aws import gateways
    from tenants import naming

    gateways.platform_iam().delete_role(naming.role_name(tenant.slug))
    deleted = 0
    if delete_data and tenant.bucket:
        s3 = gateways.platform_s3()
        if tenant.isolation == Tenant.Isolation.SILO:
            deleted = s3.delete_prefix(tenant.bucket, "")
            s3.delete_bucket(tenant.bucket)
        else:
            deleted = s3.delete_prefix(tenant.bucket, tenant.prefix)
    choice = "deleted" if delete_data else "retained"
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.OFFBOARDED, offboard_data_choice=choice)
        TenantEvent.objects.create(tenant=tenant, action="offboarded", actor=actor,
                                   detail=f"data {choice}" + (f" ({deleted} object versions)" if delete_data else ""))
        User.objects.filter(membership__tenant=tenant).update(is_active=False)
    tenant.status = Tenant.Status.OFFBOARDED


def tenant_change_plan(*, tenant: Tenant, plan: Plan, actor: User | None = None) -> None:
    """Takes effect for builds not yet started: the dispatcher starts them under the tenant's plan of the moment.

    The tenant's tagged resources get the new `mlaas:plan` tag first, so cost
    reports by plan stay true; if AWS refuses, nothing changes.
    """
    if tenant.role_arn:
        _retag_resources(tenant, plan)
    with transaction.atomic():
        old = tenant.plan.slug
        Tenant.objects.filter(pk=tenant.pk).update(plan=plan)
        TenantEvent.objects.create(tenant=tenant, action="plan_changed", actor=actor, detail=f"{old} -> {plan.slug}")
    tenant.plan = plan


def tenant_update_defaults(*, tenant: Tenant, default_algorithm, default_target: str,
                           monthly_budget=None, budget_alert_percent: int | None = None,
                           budget_hard_cap: bool | None = None) -> None:
    """Defaults and budget. A raised budget (or the cap switched off) releases held builds at the next
    dispatch round: the dispatcher compares the recorded spend with the budget of the moment."""
    tenant.default_algorithm = default_algorithm
    tenant.default_target = default_target.strip()
    fields = ["default_algorithm", "default_target"]
    if monthly_budget is not None or budget_alert_percent is not None:
        tenant.monthly_budget = monthly_budget
        tenant.budget_alert_percent = budget_alert_percent or 80
        fields += ["monthly_budget", "budget_alert_percent"]
    if budget_hard_cap is not None:
        tenant.budget_hard_cap = budget_hard_cap
        fields.append("budget_hard_cap")
    tenant.save(update_fields=fields)


def tenant_spend_record(*, tenant_id: int, month, spend) -> None:
    """Billing records the month's metered spend on the tenant (after every metering), so the dispatcher
    can hold a capped tenant's builds without reading billing (`tenants.budgets`)."""
    Tenant.objects.filter(pk=tenant_id).update(metered_spend_month=month, metered_spend=spend)


@dataclass
class Invitation:
    user: User
    created: bool
    set_password_url: str


def member_invite(*, tenant: Tenant, email: str, role: str, actor: User | None) -> Invitation:
    """Staff invite owners or members; a tenant owner may invite members of its own tenant only."""
    email = email.strip().lower()
    if actor is not None and not actor.is_staff:
        membership = getattr(actor, "membership", None)
        if membership is None or membership.tenant_id != tenant.id or membership.role != Membership.Role.OWNER:
            raise ValidationError("Only staff or an owner of this tenant can invite users.")
        if role != Membership.Role.MEMBER:
            raise ValidationError({"role": "Owners can invite members only."})
    if role not in Membership.Role.values:
        raise ValidationError({"role": "Role must be owner or member."})
    user, created = User.objects.get_or_create(username=email, defaults={"email": email})
    if not created and (user.is_staff or hasattr(user, "membership")):
        raise ValidationError({"email": f"{email} already belongs to a tenant or to staff."})
    if created:
        user.set_unusable_password()
        user.save()
    Membership.objects.create(user=user, tenant=tenant, role=role)
    TenantEvent.objects.create(tenant=tenant, action="member_invited", actor=actor, detail=f"{email} as {role}")
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    url = reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(user)])
    return Invitation(user=user, created=created, set_password_url=url)


def api_token_create(*, user: User, name: str = "default") -> str:
    """Create a token and return the raw key (shown once; only its hash is kept)."""
    raw = ApiToken.new_raw_key()
    ApiToken.objects.create(user=user, name=name[:80] or "default", key_hash=ApiToken.hash(raw), prefix=raw[:12])
    return raw


def api_token_revoke(*, user: User, token_id: int) -> None:
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise ValidationError("No such token.")


class AccessRequestThrottled(Exception):
    """Too many access requests from one client address within the hour."""


def access_request_create(*, company: str, contact_email: str, plan: Plan | None, message: str,
                          client_address: str | None = None) -> AccessRequest:
    """Record a public access request; at most MLAAS_ACCESS_REQUESTS_PER_HOUR per client address and hour."""
    if client_address:
        recent = AccessRequest.objects.filter(client_address=client_address,
                                              created_at__gte=timezone.now() - timedelta(hours=1)).count()
        if recent >= settings.MLAAS_ACCESS_REQUESTS_PER_HOUR:
            raise AccessRequestThrottled(client_address)
    request = AccessRequest(company=company.strip(), contact_email=contact_email.strip().lower(), plan=plan,
                            message=message.strip(), client_address=client_address or None)
    request.full_clean()
    request.save()
    return request


def access_request_mark_handled(*, request: AccessRequest) -> None:
    request.handled_at = timezone.now()
    request.save(update_fields=["handled_at"])


def _retag_resources(tenant: Tenant, plan: Plan) -> None:
    from core.aws import gateways
    from tenants import naming

    tags = naming.tenant_tags(tenant.slug, plan.slug)
    gateways.platform_iam().tag_role(naming.role_name(tenant.slug), tags)
    if tenant.isolation == Tenant.Isolation.SILO and tenant.bucket:
        gateways.platform_s3().put_tags(tenant.bucket, tags)
    group_arn = tenant.provisioning_steps.filter(name="model_package_group").values_list(
        "resource_arn", flat=True).first()
    if group_arn:
        gateways.platform_sagemaker().tag_resource(group_arn, tags)


def scheduling_policy() -> SchedulingPolicy:
    """The one scheduling policy row (made with the defaults on first use)."""
    policy = SchedulingPolicy.objects.order_by("id").first()
    return policy or SchedulingPolicy.objects.create()


def tenant_usage_charge(*, tenant_id: int, seconds: float, at=None) -> None:
    """Add build time to a tenant's decayed usage (fair-share ordering); called when a build ends.

    Read-modify-write under a row lock, so two builds ending together both count.
    """
    from tenants import fairshare

    if seconds <= 0:
        return
    at = at or timezone.now()
    half_life = scheduling_policy().usage_half_life_hours
    with transaction.atomic():
        row = Tenant.objects.select_for_update().filter(pk=tenant_id).values("usage_log2", "fair_share_weight").first()
        if row is None:
            return
        usage = fairshare.charge_log2(row["usage_log2"], seconds=seconds, at=at, half_life_hours=half_life)
        Tenant.objects.filter(pk=tenant_id).update(
            usage_log2=usage, fair_share_key=fairshare.fair_share_key(usage, row["fair_share_weight"]))


def tenant_set_fair_share_weight(*, tenant: Tenant, weight: float, actor: User | None = None) -> None:
    if not 0.01 <= weight <= 1000:
        raise ValidationError({"fair_share_weight": "The weight must be between 0.01 and 1000."})
    from tenants import fairshare

    with transaction.atomic():
        row = Tenant.objects.select_for_update().filter(pk=tenant.pk).values("usage_log2").get()
        Tenant.objects.filter(pk=tenant.pk).update(
            fair_share_weight=weight, fair_share_key=fairshare.fair_share_key(row["usage_log2"], weight))
        TenantEvent.objects.create(tenant=tenant, action="fair_share_weight", actor=actor, detail=f"{weight:g}")
    tenant.fair_share_weight = weight


def scheduling_policy_update(*, usage_half_life_hours: float, new_tenant_reserved_share: float,
                             actor: User | None = None) -> SchedulingPolicy:
    """Staff change the half-life or the reservation; stored usage is rescaled so nobody's history jumps."""
    from tenants import fairshare

    if not 0.1 <= usage_half_life_hours <= 24 * 90:
        raise ValidationError({"usage_half_life_hours": "The half-life must be between 0.1 hours and 90 days."})
    if not 0 <= new_tenant_reserved_share <= 0.5:
        raise ValidationError({"new_tenant_reserved_share": "The reserved share must be between 0 and 0.5."})
    now = timezone.now()
    with transaction.atomic():
        policy = scheduling_policy()
        policy = SchedulingPolicy.objects.select_for_update().get(pk=policy.pk)
        old = policy.usage_half_life_hours
        if old != usage_half_life_hours:
            tenants = list(Tenant.objects.select_for_update().filter(usage_log2__isnull=False)
                           .only("id", "usage_log2", "fair_share_weight"))
            for t in tenants:
                t.usage_log2 = fairshare.rescale_log2(t.usage_log2, at=now, old_hours=old,
                                                      new_hours=usage_half_life_hours)
                t.fair_share_key = fairshare.fair_share_key(t.usage_log2, t.fair_share_weight)
            Tenant.objects.bulk_update(tenants, ["usage_log2", "fair_share_key"], batch_size=500)
        policy.usage_half_life_hours = usage_half_life_hours
        policy.new_tenant_reserved_share = new_tenant_reserved_share
        policy.save()
    return policy
