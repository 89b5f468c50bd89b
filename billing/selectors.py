"""Reads of the billing app: pre-aggregated tables only (never Cost Explorer)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Sum

from billing.models import CostLine, DailyCost


def build_cost(build) -> Decimal:
    return CostLine.objects.filter(build=build).aggregate(total=Sum("amount"))["total"] or Decimal("0")


def tenant_daily_costs(*, tenant, start: date, end: date) -> dict:
    metered = dict(CostLine.objects.filter(tenant=tenant, day__gte=start, day__lte=end)
                   .values_list("day").annotate(total=Sum("amount")).values_list("day", "total"))
    explorer = dict(DailyCost.objects.filter(tenant_slug=tenant.slug, day__gte=start, day__lte=end)
                    .values_list("day").annotate(total=Sum("amount")).values_list("day", "total"))
    days = []
    day = start
    while day <= end:
        days.append({"day": day, "metered": str(metered.get(day, Decimal("0"))),
                     "cost_explorer": str(explorer[day]) if day in explorer else None})
        day += timedelta(days=1)
    return {"tenant": tenant.slug, "start": start, "end": end, "days": days,
            "total_metered": str(sum(metered.values(), Decimal("0"))),
            "total_cost_explorer": str(sum(explorer.values(), Decimal("0")))}


def tenant_spend_this_month(tenant, today: date) -> Decimal:
    return CostLine.objects.filter(tenant=tenant, day__gte=today.replace(day=1)).aggregate(
        total=Sum("amount"))["total"] or Decimal("0")


def spend_this_month_total(today: date) -> Decimal:
    total = CostLine.objects.filter(day__gte=today.replace(day=1)).aggregate(total=Sum("amount"))["total"]
    return total or Decimal("0")
