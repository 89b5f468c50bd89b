"""Reads of the builds app."""

from __future__ import annotations

from django.db.models import QuerySet

from builds.models import Build

SORTS = {"created": "created_at", "-created": "-created_at", "status": "status", "tenant": "tenant__slug",
         "duration": "ended_at", "algorithm": "algorithm__slug"}


def build_list(*, base: QuerySet[Build], tenant: str = "", plan: str = "", status: str = "", algorithm: str = "",
               date_from=None, date_to=None, sort: str = "-created") -> QuerySet[Build]:
    qs = base.select_related("tenant", "plan", "algorithm")
    if tenant:
        qs = qs.filter(tenant__slug=tenant)
    if plan:
        qs = qs.filter(plan__slug=plan)
    if status:
        qs = qs.filter(status=status)
    if algorithm:
        qs = qs.filter(algorithm__slug=algorithm)
    if date_from:
        qs = qs.filter(created_at__date__gte=date_from)
    if date_to:
        qs = qs.filter(created_at__date__lte=date_to)
    return qs.order_by(SORTS.get(sort, "-created_at"), "-id")
