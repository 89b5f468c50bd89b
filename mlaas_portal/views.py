from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tenants import access


@login_required
def home(request):
    from mlaas_portal.dashboard import staff_dashboard_context, tenant_home_context

    if request.user.is_staff:
        return render(request, "dashboard/staff_home.html", staff_dashboard_context())
    tenant = access.user_tenant(request.user)
    if tenant is None:
        return render(request, "dashboard/no_tenant.html", status=404)
    return render(request, "dashboard/tenant_home.html", tenant_home_context(request.user, tenant))


@access.staff_required
def tenant_list(request):
    """Staff: every tenant with build counts and spend (tenants, builds and billing on one page)."""
    from django.core.paginator import Paginator

    from mlaas_portal.dashboard import tenant_list as tenant_rows
    from tenants.models import Tenant

    search, status = request.GET.get("q", "").strip(), request.GET.get("status", "")
    page = Paginator(tenant_rows(search=search, status=status), 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "tenants/list.html", {
        "page_obj": page, "search": search, "status": status, "statuses": Tenant.Status.choices,
        "query_without_page": query.urlencode() + "&" if query else "",
    })


def catalog(request):
    from axes.helpers import get_client_ip_address

    from builds.selectors import algorithms
    from tenants.forms import AccessRequestForm
    from tenants.models import Plan
    from tenants.services import AccessRequestThrottled, access_request_create

    form = AccessRequestForm(request.POST or None, initial={"plan": request.GET.get("plan")})
    form.fields["plan"].empty_label = "Not sure yet"
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            # The address as django-axes resolves it, so login throttling and this limit agree.
            access_request_create(**form.cleaned_data, client_address=get_client_ip_address(request))
        except AccessRequestThrottled:
            form.add_error(None, "We already received several requests from your network this hour; "
                                 "please try again later or write to us by email.")
            status = 429
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, "Thanks! We received your request and will be in touch.")
            return redirect("catalog")
    from tenants.sizing import plan_bands

    plans = list(Plan.objects.order_by("tier_rank", "slug"))
    for plan in plans:
        plan.bands = plan_bands(plan)
    return render(request, "catalog.html", {
        "algorithms": algorithms(active_only=True),
        "plans": plans,
        "form": form,
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    from mlaas_portal.forms import TokenForm
    from tenants.models import ApiToken
    from tenants.services import api_token_create, api_token_revoke

    new_token = None
    form = TokenForm(request.POST if request.method == "POST" and "revoke" not in request.POST else None)
    if request.method == "POST":
        if "revoke" in request.POST:
            try:
                api_token_revoke(user=request.user, token_id=int(request.POST["revoke"]))
                messages.success(request, "Token revoked.")
            except (ValueError, ValidationError):
                messages.error(request, "No such token.")
            return redirect("tokens")
        if form.is_valid():
            new_token = api_token_create(user=request.user, name=form.cleaned_data["name"].strip() or "default")
            form = TokenForm()
    return render(request, "tokens.html", {
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created_at"),
        "new_token": new_token, "form": form,
    })


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
