from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from billing.models import InstancePrice
from billing.selectors import tenant_spend_this_month
from mlaas_portal import access


@access.staff_required
def overview(request):
    return render(request, "billing/overview.html", {})


@login_required
def tenant(request, slug):
    found = access.get_tenant_for_user(request.user, slug)
    return render(request, "billing/tenant.html", {
        "tenant": found, "spend": tenant_spend_this_month(found, timezone.localdate())})


@access.staff_required
def prices(request):
    return render(request, "billing/prices.html", {"prices": InstancePrice.objects.all()})
