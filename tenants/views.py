from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from core.aws.errors import AwsError
from tenants import access, services
from tenants.forms import (
    ChangePlanForm,
    FairShareWeightForm,
    InviteForm,
    OffboardForm,
    OnboardForm,
    PlanForm,
    SchedulingPolicyForm,
    TenantSettingsForm,
)
from tenants.models import AccessRequest, Plan, Tenant
from tenants.provisioning import STEP_DESCRIPTIONS

logger = logging.getLogger(__name__)


def _apply_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@access.staff_required
def tenant_onboard(request):
    initial = {}
    if "request" in request.GET:
        req = AccessRequest.objects.filter(code=request.GET["request"]).first()
        if req:
            initial = {"name": req.company, "owner_email": req.contact_email, "plan": req.plan,
                       "access_request": req.code}
    form = OnboardForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        request_code = data.pop("access_request", None)
        completing = AccessRequest.objects.filter(code=request_code).first() if request_code else None
        try:
            tenant = services.tenant_onboard(actor=request.user, **data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            if completing is not None:
                from tenants.marketplace import access_request_complete

                access_request_complete(request=completing, tenant=tenant, actor=request.user)
            link = _owner_set_password_link(request, tenant)
            messages.success(request, f"Tenant {tenant.slug} is being provisioned."
                             + (f" Send the owner this link to set a password: {link}" if link else ""))
            return redirect("tenants:detail", slug=tenant.slug)
    return render(request, "tenants/onboard.html", {"form": form})


def _owner_set_password_link(request, tenant) -> str:
    """The set-password link of a freshly invited owner (shown once to the staff who onboarded them)."""
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    owner = tenant.memberships.filter(role="owner").select_related("user").first()
    if owner is None or owner.user.has_usable_password():
        return ""
    uid = urlsafe_base64_encode(force_bytes(owner.user.pk))
    return request.build_absolute_uri(
        reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(owner.user)]))


@login_required
def tenant_detail(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    return render(request, "tenants/detail.html", _detail_context(request, tenant))


def _detail_context(request, tenant):
    steps = list(tenant.provisioning_steps.all())
    for step in steps:
        step.description = STEP_DESCRIPTIONS.get(step.name, "")
    return {
        "tenant": tenant,
        "steps": steps,
        "members": tenant.memberships.select_related("user").order_by("user__username"),
        "events": tenant.events.select_related("actor")[:20],
        "is_owner": access.is_tenant_owner(request.user, tenant),
        "invite_form": InviteForm(),
        "settings_form": TenantSettingsForm(initial={
            "default_algorithm": tenant.default_algorithm, "default_target": tenant.default_target,
            "monthly_budget": tenant.monthly_budget, "budget_alert_percent": tenant.budget_alert_percent,
            "budget_hard_cap": tenant.budget_hard_cap}),
        "plan_form": ChangePlanForm(initial={"plan": tenant.plan}),
        "weight_form": FairShareWeightForm(initial={"fair_share_weight": tenant.fair_share_weight})
        if request.user.is_staff else None,
        "live": tenant.status == Tenant.Status.PROVISIONING,
    }


@login_required
def tenant_steps(request, slug):
    """htmx fragment: provisioning steps, polled while provisioning runs."""
    tenant = access.get_tenant_for_user(request.user, slug)
    return render(request, "tenants/_steps.html", _detail_context(request, tenant))


@access.staff_required
@require_POST
def tenant_action(request, slug, action):
    tenant = access.get_tenant_for_user(request.user, slug)
    try:
        if action == "retry":
            services.tenant_provision_retry(tenant=tenant, actor=request.user)
            messages.success(request, "Provisioning resumed from the failed step.")
        elif action == "suspend":
            services.tenant_suspend(tenant=tenant, actor=request.user, reason=request.POST.get("reason", ""))
            messages.success(request, "Tenant suspended: uploads no longer start builds.")
        elif action == "resume":
            services.tenant_resume(tenant=tenant, actor=request.user)
            messages.success(request, "Tenant resumed.")
        elif action == "plan":
            form = ChangePlanForm(request.POST)
            if not form.is_valid():
                raise ValidationError("Choose a plan.")
            services.tenant_change_plan(tenant=tenant, plan=form.cleaned_data["plan"], actor=request.user)
            messages.success(request, f"Plan changed to {form.cleaned_data['plan'].name} for builds not yet started.")
        else:
            raise Http404
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except AwsError as exc:
        messages.error(request, f"AWS refused the change, nothing was changed: {exc}")
    return redirect("tenants:detail", slug=tenant.slug)


@access.staff_required
@require_POST
def tenant_fair_share(request, slug):
    """Staff set a tenant's fair-share weight (its stored ordering key follows)."""
    tenant = access.get_tenant_for_user(request.user, slug)
    form = FairShareWeightForm(request.POST)
    if form.is_valid():
        try:
            services.tenant_set_fair_share_weight(tenant=tenant, weight=form.cleaned_data["fair_share_weight"],
                                                  actor=request.user)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Fair-share weight set to {tenant.fair_share_weight:g}.")
            return redirect("tenants:detail", slug=tenant.slug)
    return render(request, "tenants/detail.html", {**_detail_context(request, tenant), "weight_form": form},
                  status=400)


@access.staff_required
def scheduling_policy_edit(request):
    """Staff: the fair-share half-life and the share reserved for newly active tenants."""
    policy = services.scheduling_policy()
    form = SchedulingPolicyForm(request.POST or None, initial={
        "usage_half_life_hours": policy.usage_half_life_hours,
        "new_tenant_reserved_share": policy.new_tenant_reserved_share})
    if request.method == "POST" and form.is_valid():
        try:
            services.scheduling_policy_update(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, "Scheduling policy saved; stored usage was rescaled to the new half-life.")
            return redirect("tenants:scheduling")
    return render(request, "tenants/scheduling.html", {"policy": policy, "form": form})


@access.staff_required
def tenant_offboard(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    form = OffboardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.tenant_offboard(tenant=tenant, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        except AwsError as exc:
            form.add_error(None, f"AWS refused part of the offboarding: {exc}. Nothing was marked offboarded.")
        else:
            messages.success(request, f"Tenant {tenant.slug} offboarded.")
            return redirect("tenants:detail", slug=tenant.slug)
    return render(request, "tenants/offboard.html", {"tenant": tenant, "form": form})


@login_required
@require_POST
def tenant_invite(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    if not access.is_tenant_owner(request.user, tenant):
        raise Http404
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = services.member_invite(tenant=tenant, actor=request.user, **form.cleaned_data)
            messages.success(request, f"Invited {invitation.user.username}. Send them this link to set a password: "
                                      f"{request.build_absolute_uri(invitation.set_password_url)}")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, "Enter a valid email address.")
    return redirect("tenants:detail", slug=tenant.slug)


@login_required
@require_POST
def tenant_settings(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    if not access.is_tenant_owner(request.user, tenant):
        raise Http404
    form = TenantSettingsForm(request.POST)
    if form.is_valid():
        services.tenant_update_defaults(tenant=tenant, **form.cleaned_data)
        messages.success(request, "Settings saved.")
        return redirect("tenants:detail", slug=tenant.slug)
    return render(request, "tenants/detail.html", {**_detail_context(request, tenant), "settings_form": form})


@login_required
@require_POST
def tenant_credentials(request, slug):
    from tenants.credentials import credentials_payload, tenant_assume

    tenant = access.get_tenant_for_user(request.user, slug)
    if tenant.status != Tenant.Status.ACTIVE:
        messages.error(request, "Credentials are issued for active tenants only.")
        return redirect("tenants:detail", slug=tenant.slug)
    creds = credentials_payload(tenant_assume(tenant, purpose=f"user-{request.user.pk}"))
    return render(request, "tenants/credentials.html", {"tenant": tenant, "creds": creds})


@access.staff_required
def plan_list(request):
    from django.db.models import Count, Q

    return render(request, "tenants/plans.html", {
        "plans": Plan.objects.annotate(
            tenant_count=Count("tenants", filter=~Q(tenants__status=Tenant.Status.OFFBOARDED))
        ).order_by("-tier_rank", "slug")})


@access.staff_required
def plan_edit(request, slug):
    plan = get_object_or_404(Plan, slug=slug)
    form = PlanForm(request.POST or None, instance=plan)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Plan {plan.name} saved; it applies to builds not yet started.")
        return redirect("tenants:plans")
    return render(request, "tenants/plan_edit.html", {"plan": plan, "form": form})


@access.staff_required
def access_requests(request):
    pending = (AccessRequest.objects.select_related("plan", "marketplace_customer")
               .filter(handled_at__isnull=True).order_by("-created_at"))
    page = Paginator(pending, 25).get_page(request.GET.get("page"))
    return render(request, "tenants/access_requests.html", {
        "requests": page.object_list, "page_obj": page, "query_without_page": ""})


@access.staff_required
@require_POST
def access_request_done(request, code):
    req = get_object_or_404(AccessRequest, code=code)
    services.access_request_mark_handled(request=req)
    return redirect("tenants:access_requests")


# ----- AWS Marketplace registration (public: the buyer's browser, sent by Marketplace) -----

@csrf_exempt  # Marketplace's own form posts here: no CSRF token of ours; the token is resolved with AWS instead
@require_http_methods(["GET", "POST"])
def marketplace_register(request):
    from core.aws.marketplace import MarketplaceTokenInvalid
    from tenants.marketplace import TOKEN_FIELD
    from tenants.marketplace import marketplace_register as register

    token = request.POST.get(TOKEN_FIELD, "") if request.method == "POST" else ""
    if not token:
        return _marketplace_page(request, "missing", status=400)
    try:
        customer = register(token=token)
    except MarketplaceTokenInvalid:
        return _marketplace_page(request, "invalid", status=400)
    except ValidationError as exc:
        return _marketplace_page(request, "invalid", status=400, detail=" ".join(exc.messages))
    except AwsError as exc:
        logger.warning("Marketplace registration could not be resolved: %s", exc)
        return _marketplace_page(request, "unavailable", status=503)
    if customer.tenant_id:
        return _marketplace_page(request, "linked", customer=customer)
    return redirect("marketplace_details", code=customer.code)


def marketplace_details(request, code):
    from tenants.forms import MarketplaceRegistrationForm
    from tenants.marketplace import marketplace_access_request
    from tenants.models import MarketplaceCustomer

    customer = get_object_or_404(MarketplaceCustomer.objects.select_related("access_request", "tenant"), code=code)
    if customer.tenant_id:
        return _marketplace_page(request, "linked", customer=customer)
    previous = customer.access_request
    form = MarketplaceRegistrationForm(request.POST or None, initial={
        "company": previous.company, "contact_email": previous.contact_email, "plan": previous.plan}
        if previous else None)
    if request.method == "POST" and form.is_valid():
        try:
            marketplace_access_request(customer=customer, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            return _marketplace_page(request, "received", customer=customer)
    return _marketplace_page(request, "details", customer=customer, form=form)


def _marketplace_page(request, state: str, *, status: int = 200, **context):
    return render(request, "marketplace/register.html", {"state": state, **context}, status=status)
AUTOCOMPLETE_LIMIT = 20


@access.staff_required
def tenant_autocomplete(request):
    """Staff: JSON suggestions for a tenant picker, up to 20 tenants whose slug or name matches `q`."""
    from django.http import JsonResponse

    from tenants.selectors import tenant_suggestions

    query = request.GET.get("q", "").strip()[:40]
    return JsonResponse({"results": tenant_suggestions(query=query, limit=AUTOCOMPLETE_LIMIT)})


# ----- webhooks: the tenant's owners manage them, its members read, staff see all -----

WEBHOOK_DELIVERIES_PAGE = 50
WEBHOOK_ACTIONS = ("pause", "resume", "delete", "test", "rotate", "reveal")


def _webhooks_page(request, tenant, *, form=None, revealed=None):
    from tenants.forms import WebhookForm
    from tenants.webhooks import webhooks_for_tenant

    return render(request, "tenants/webhooks.html", {
        "tenant": tenant, "webhooks": list(webhooks_for_tenant(tenant)), "is_owner": access.is_tenant_owner(
            request.user, tenant), "form": form or WebhookForm(), "revealed": revealed})


@login_required
def tenant_webhooks(request, slug):
    """List the tenant's webhooks; owners add one (POST)."""
    from tenants.forms import WebhookForm
    from tenants.webhooks import webhook_create

    tenant = access.get_tenant_for_user(request.user, slug)
    if request.method != "POST":
        return _webhooks_page(request, tenant)
    if not access.is_tenant_owner(request.user, tenant):
        raise Http404
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            hook = webhook_create(tenant=tenant, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            # Rendered, not redirected with a message: a message may be stored in a cookie, the secret must not.
            return _webhooks_page(request, tenant, revealed=hook)
    return _webhooks_page(request, tenant, form=form)


@login_required
@require_POST
def tenant_webhook_action(request, slug, code, action):
    from tenants import webhooks

    tenant = access.get_tenant_for_user(request.user, slug)
    hook = webhooks.get_webhook_for_tenant(tenant, code)
    if action not in WEBHOOK_ACTIONS or not access.is_tenant_owner(request.user, tenant):
        raise Http404
    try:
        if action == "pause":
            webhooks.webhook_pause(webhook=hook)
            messages.success(request, "Webhook paused: events are kept and sent when it is resumed.")
        elif action == "resume":
            webhooks.webhook_resume(webhook=hook)
            messages.success(request, "Webhook resumed: waiting deliveries are sent now.")
        elif action == "delete":
            webhooks.webhook_delete(webhook=hook)
            messages.success(request, "Webhook deleted.")
        elif action == "test":
            webhooks.webhook_test_send(webhook=hook, actor=request.user)
            messages.success(request, "Test event queued; its delivery shows on the deliveries page.")
            return redirect("tenants:webhook_deliveries", slug=tenant.slug, code=hook.code)
        elif action == "rotate":
            webhooks.webhook_secret_rotate(webhook=hook)
            return _webhooks_page(request, tenant, revealed=hook)
        elif action == "reveal":
            return _webhooks_page(request, tenant, revealed=hook)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("tenants:webhooks", slug=tenant.slug)


@login_required
def tenant_webhook_deliveries(request, slug, code):
    """One webhook's deliveries, most recent first, a page at a time (keyset: core.keyset)."""
    from core.keyset import BadCursor, keyset_page
    from tenants import webhooks

    tenant = access.get_tenant_for_user(request.user, slug)
    hook = webhooks.get_webhook_for_tenant(tenant, code)
    try:
        page = keyset_page(webhooks.deliveries_for_webhook(hook).defer("payload"), key="created_at",
                           descending=True, size=WEBHOOK_DELIVERIES_PAGE, after=request.GET.get("after"),
                           before=request.GET.get("before"), last=request.GET.get("page") == "last")
    except BadCursor:
        raise Http404 from None
    return render(request, "tenants/webhook_deliveries.html", {
        "tenant": tenant, "webhook": hook, "deliveries": page.items, "keyset": page, "query_without_page": "",
        "is_owner": access.is_tenant_owner(request.user, tenant)})


@login_required
@require_POST
def tenant_webhook_resend(request, slug, code, delivery):
    from tenants import webhooks

    tenant = access.get_tenant_for_user(request.user, slug)
    hook = webhooks.get_webhook_for_tenant(tenant, code)
    found = webhooks.get_delivery_for_webhook(hook, delivery)
    if not access.is_tenant_owner(request.user, tenant):
        raise Http404
    try:
        webhooks.webhook_delivery_resend(delivery=found)
        messages.success(request, "Resent as a new delivery (same webhook-id, so the receiver can tell).")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("tenants:webhook_deliveries", slug=tenant.slug, code=hook.code)
