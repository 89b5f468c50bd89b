"""Reads of the tenants app."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from tenants.models import Tenant


def tenant_search(*, base: QuerySet[Tenant], search: str = "", status: str = "") -> QuerySet[Tenant]:
    """Tenants matching a search of slug, name or owner e-mail and a status, with their plan, by slug."""
    qs = base.select_related("plan")
    if search:
        qs = qs.filter(Q(slug__icontains=search) | Q(name__icontains=search) | Q(owner_email__icontains=search))
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("slug")
