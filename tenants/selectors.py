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


def tenant_suggestions(*, query: str, limit: int) -> list[dict]:
    """Tenants for a picker: slugs starting with the query first, then names containing it; one query."""
    from django.db.models import Case, IntegerField, Value, When

    qs = Tenant.objects.all()
    if query:
        qs = qs.filter(Q(slug__istartswith=query) | Q(name__icontains=query)).annotate(
            rank=Case(When(slug__istartswith=query, then=Value(0)), default=Value(1), output_field=IntegerField()))
    else:
        qs = qs.annotate(rank=Value(0, output_field=IntegerField()))
    return list(qs.order_by("rank", "slug").values("slug", "name")[:limit])
