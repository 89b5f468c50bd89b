from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from mlaas_portal import access


@login_required
def home(request):
    if request.user.is_staff:
        from mlaas_portal.dashboard import staff_dashboard_context

        return render(request, "dashboard/staff_home.html", staff_dashboard_context())
    tenant = access.user_tenant(request.user)
    if tenant is None:
        return render(request, "dashboard/no_tenant.html", status=404)
    from mlaas_portal.dashboard import tenant_home_context

    return render(request, "dashboard/tenant_home.html", tenant_home_context(request.user, tenant))


def catalog(request):
    from builds.models import Algorithm
    from tenants.forms import AccessRequestForm
    from tenants.models import Plan
    from tenants.services import access_request_create

    form = AccessRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        access_request_create(**form.cleaned_data)
        messages.success(request, "Thanks! We received your request and will be in touch.")
        return redirect("catalog")
    return render(request, "catalog.html", {
        "algorithms": Algorithm.objects.filter(active=True),
        "plans": Plan.objects.order_by("tier_rank"),
        "form": form,
    })


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    from tenants.models import ApiToken
    from tenants.services import api_token_create, api_token_revoke

    new_token = None
    if request.method == "POST":
        if "revoke" in request.POST:
            try:
                api_token_revoke(user=request.user, token_id=int(request.POST["revoke"]))
                messages.success(request, "Token revoked.")
            except (ValueError, ValidationError):
                messages.error(request, "No such token.")
            return redirect("tokens")
        new_token = api_token_create(user=request.user, name=request.POST.get("name", "default").strip())
    return render(request, "tokens.html", {
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created_at"),
        "new_token": new_token,
    })


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
