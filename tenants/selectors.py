"""Reads of the tenants app."""

from __future__ import annotations

from django.db.models import Count, DecimalField, OuterRef, Q, QuerySet, Subquery, Sum

from builds.models import Build
from tenants.models import Tenant


def tenant_list(*, base: QuerySet[Tenant], search: str = "", status: str = "") -> QuerySet[Tenant]:
    """Tenants with plan, active/queued build counts and spend this month: one query."""
    from billing.models import CostLine
    from billing.periods import billing_month_start

    month_start = billing_month_start()  # UTC, as the dashboards and statements; not the viewer's month
    spend = (CostLine.objects.filter(tenant=OuterRef("pk"), day__gte=month_start).values("tenant")
             .annotate(total=Sum("amount")).values("total"))
    qs = base.select_related("plan").annotate(
        active_builds=Count("builds", filter=Q(builds__status__in=Build.ACTIVE), distinct=True),
        queued_builds=Count("builds", filter=Q(builds__status=Build.Status.QUEUED), distinct=True),
        spend_this_month=Subquery(spend, output_field=DecimalField(max_digits=12, decimal_places=6)),
    )
    if search:
        qs = qs.filter(Q(slug__icontains=search) | Q(name__icontains=search) | Q(owner_email__icontains=search))
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("slug")
