"""Writes of the billing rollups (DailyUsage, MonthlyUsage): the history pages would otherwise aggregate.

A refresh recomputes the rollup rows of a range of days (for some tenants, or all) from the rows
they sum, so it is exact and idempotent whatever ran before: the writers of those rows refresh what
they touched (metering a build or an endpoint: its tenant's days; a Cost Explorer sync: its window, for everyone),
and the billing tick refreshes the current month hourly, which also repairs rows edited by hand.
The cost of a refresh depends on the days and tenants it covers, not on the length of history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Case, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from billing.models import CostLine, DailyCost, DailyUsage, MonthlyUsage

ZERO = Decimal("0")
MONEY = DecimalField(max_digits=14, decimal_places=6)


def _month_first(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    first = day.replace(day=1)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def _utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def rollups_refresh(*, start: date, end: date, tenant_slugs: Iterable[str] | None = None) -> dict[str, int]:
    """Recompute the daily rows of [start, end] and the monthly rows of the months they fall in.

    tenant_slugs limits both to those tenants ("" is the untagged Cost Explorer rest); None: everyone.
    """
    slugs = None if tenant_slugs is None else sorted(set(tenant_slugs))
    with transaction.atomic():
        days = _daily_refresh(start=start, end=end, slugs=slugs)
        months = 0
        month = _month_first(start)
        while month <= end:
            months += _monthly_refresh(month=month, slugs=slugs)
            month = _next_month(month)
    return {"daily": days, "monthly": months}


def rollups_rebuild() -> dict[str, int]:
    """Recompute every rollup row from the first day with data (the seed, a repair after a restore)."""
    from builds.models import BuildStep

    firsts = [d for d in (CostLine.objects.order_by("day").values_list("day", flat=True).first(),
                          DailyCost.objects.order_by("day").values_list("day", flat=True).first(),
                          (BuildStep.objects.filter(ended_at__isnull=False).order_by("ended_at")
                           .values_list("ended_at", flat=True).first() or None))
              if d is not None]
    if not firsts:
        DailyUsage.objects.all().delete()
        MonthlyUsage.objects.all().delete()
        return {"daily": 0, "monthly": 0}
    start = min(d.astimezone(UTC).date() if isinstance(d, datetime) else d for d in firsts)
    end = datetime.now(UTC).date() + timedelta(days=1)
    totals = {"daily": 0, "monthly": 0}
    month = _month_first(start)
    while month <= end:  # a month at a time: bounded memory whatever the history
        counts = rollups_refresh(start=month, end=min(_next_month(month) - timedelta(days=1), end))
        totals = {key: totals[key] + counts[key] for key in totals}
        month = _next_month(month)
    return totals


def _daily_refresh(*, start: date, end: date, slugs: list[str] | None) -> int:
    from builds.models import BuildStep

    lines = CostLine.objects.filter(day__gte=start, day__lte=end)
    steps = BuildStep.objects.filter(ended_at__gte=_utc_midnight(start),
                                     ended_at__lt=_utc_midnight(end + timedelta(days=1)), billable_seconds__gt=0)
    explorer = DailyCost.objects.filter(day__gte=start, day__lte=end)
    existing = DailyUsage.objects.filter(day__gte=start, day__lte=end)
    if slugs is not None:
        lines = lines.filter(tenant__slug__in=slugs)
        steps = steps.filter(build__tenant__slug__in=slugs)
        explorer = explorer.filter(tenant_slug__in=slugs)
        existing = existing.filter(tenant_slug__in=slugs)
    rows: dict[tuple[date, str], dict] = defaultdict(dict)
    for day, slug, total in (lines.order_by().values("day", "tenant__slug").annotate(total=Sum("amount"))
                             .values_list("day", "tenant__slug", "total")):
        rows[(day, slug)]["metered"] = _exact(total)
    for day, slug, total, seconds in (lines.filter(endpoint__isnull=False).order_by().values("day", "tenant__slug")
                                      .annotate(total=Sum("amount"), seconds=Sum("billable_seconds"))
                                      .values_list("day", "tenant__slug", "total", "seconds")):
        rows[(day, slug)]["endpoint_metered"] = _exact(total)
        rows[(day, slug)]["endpoint_seconds"] = seconds or 0
    for day, slug, seconds in (steps.order_by().annotate(day=TruncDate("ended_at", tzinfo=UTC))
                               .values("day", "build__tenant__slug").annotate(seconds=Sum("billable_seconds"))
                               .values_list("day", "build__tenant__slug", "seconds")):
        rows[(day, slug)]["billable_seconds"] = seconds or 0
    for day, slug, total in (explorer.order_by().values("day", "tenant_slug").annotate(total=Sum("amount"))
                             .values_list("day", "tenant_slug", "total")):
        rows[(day, slug)]["cost_explorer"] = _exact(total)
    existing.delete()
    DailyUsage.objects.bulk_create([DailyUsage(day=day, tenant_slug=slug, **values)
                                    for (day, slug), values in rows.items()], batch_size=2000)
    return len(rows)


def _monthly_refresh(*, month: date, slugs: list[str] | None) -> int:
    from billing.selectors import explorer_covered_days

    last = _next_month(month) - timedelta(days=1)
    covered = sorted(explorer_covered_days(start=month, end=last))
    daily = DailyUsage.objects.filter(day__gte=month, day__lte=last)
    existing = MonthlyUsage.objects.filter(month=month)
    if slugs is not None:
        daily = daily.filter(tenant_slug__in=slugs)
        existing = existing.filter(tenant_slug__in=slugs)
    zero = Value(ZERO, output_field=MONEY)
    aws_day = Case(When(Q(day__in=covered), then=Coalesce(F("cost_explorer"), zero)),
                   default=Coalesce(F("metered"), zero), output_field=MONEY) if covered else \
        Coalesce(F("metered"), zero)
    rows = list(daily.order_by().values("tenant_slug").annotate(
        seconds=Sum("billable_seconds"), metered_total=Sum("metered"), explorer_total=Sum("cost_explorer"),
        aws_total=Sum(aws_day), endpoint_seconds_total=Sum("endpoint_seconds"),
        endpoint_total=Sum("endpoint_metered")).values_list(
        "tenant_slug", "seconds", "metered_total", "explorer_total", "aws_total", "endpoint_seconds_total",
        "endpoint_total"))
    existing.delete()
    MonthlyUsage.objects.bulk_create([
        MonthlyUsage(month=month, tenant_slug=slug, billable_seconds=seconds or 0, metered=_exact(metered),
                     cost_explorer=None if explorer is None else _exact(explorer), aws_cost=_exact(aws),
                     endpoint_seconds=endpoint_seconds or 0, endpoint_metered=_exact(endpoint_metered))
        for slug, seconds, metered, explorer, aws, endpoint_seconds, endpoint_metered in rows], batch_size=2000)
    return len(rows)


def _exact(value) -> Decimal:
    """A sum at the tables' precision (SQLite returns sums as floats)."""
    from billing.selectors import _amount

    return _amount(value if value is None or isinstance(value, Decimal) else Decimal(str(value)))
