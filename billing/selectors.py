"""Reads of the billing app: pre-aggregated tables only (never Cost Explorer).

Every selector here runs a fixed number of queries, whatever the number of tenants or days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billing.models import (
    BudgetAlert,
    CostLine,
    CostSyncRun,
    DailyCost,
    DailyUsage,
    InstancePrice,
    MonthlyUsage,
    reconciliation_gap,
)
from billing.periods import billing_month_start
from builds.models import Build, BuildStep
from tenants.models import Tenant

ZERO = Decimal("0")
CENT = Decimal("0.01")
AMOUNT_QUANTUM = Decimal("0.000001")  # CostLine/DailyCost precision; SQLite sums come back as floats
HOURS_QUANTUM = Decimal("0.0001")
SYNC_INTERVAL = timedelta(days=1)


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _amount(value: Decimal | None) -> Decimal:
    """A summed amount at the tables' precision (SQLite returns sums with float noise)."""
    return ZERO if value is None else value.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)


def month_first(day: date) -> date:
    return day.replace(day=1)


def month_last(day: date) -> date:
    first = day.replace(day=1)
    return (first.replace(year=first.year + 1, month=1) if first.month == 12
            else first.replace(month=first.month + 1)) - timedelta(days=1)


def _utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


# ----- cost of builds (metered, and so far for builds in progress) -----

@dataclass(frozen=True)
class CostSoFar:
    metered: Decimal
    running: Decimal
    unknown_instance_types: tuple[str, ...] = ()

    @property
    def amount(self) -> Decimal:
        return self.metered + self.running


def builds_cost_so_far(builds: Iterable[Build], *, now: datetime | None = None) -> dict[int, CostSoFar]:
    """Per build: metered cost of its finished steps plus, while it runs, its running steps' cost so far.

    A running step costs its elapsed time x instance count x price; an instance type without a price
    adds nothing and is named in unknown_instance_types (metering will fail loudly on it at the end).
    """
    from billing.rules import step_cost

    builds = list(builds)
    if not builds:
        return {}
    now = now or timezone.now()
    metered = {build_id: _amount(total) for build_id, total in
               CostLine.objects.filter(build__in=[b.pk for b in builds]).values("build_id")
               .annotate(total=Sum("amount")).values_list("build_id", "total")}
    active = [b.pk for b in builds if b.status in Build.ACTIVE]
    running: dict[int, Decimal] = defaultdict(lambda: ZERO)
    unknown: dict[int, set[str]] = defaultdict(set)
    if active:
        steps = list(BuildStep.objects.filter(build__in=active, started_at__isnull=False, ended_at__isnull=True)
                     .exclude(instance_type="")
                     .values_list("build_id", "instance_type", "instance_count", "started_at"))
        prices = dict(InstancePrice.objects.filter(region=settings.AWS_REGION,
                                                   instance_type__in={s[1] for s in steps})
                      .values_list("instance_type", "price_per_hour")) if steps else {}
        for build_id, instance_type, count, started_at in steps:
            if instance_type not in prices:
                unknown[build_id].add(instance_type)
                continue
            elapsed = max(0, int((now - started_at).total_seconds()))
            running[build_id] += step_cost(billable_seconds=elapsed, instance_count=count,
                                           price_per_hour=prices[instance_type])
    return {b.pk: CostSoFar(metered=metered.get(b.pk) or ZERO, running=running[b.pk],
                            unknown_instance_types=tuple(sorted(unknown[b.pk])))
            for b in builds}


def build_cost(build, *, now: datetime | None = None) -> Decimal:
    """The build's cost: metered when finished; for a build in progress, its cost so far."""
    return builds_cost_so_far([build], now=now)[build.pk].amount


def builds_in_progress_cost(*, tenant: Tenant | None = None, limit: int = 20,
                            now: datetime | None = None) -> list[dict]:
    """Builds starting or running (of one tenant, or all) with their cost so far."""
    qs = Build.objects.filter(status__in=Build.ACTIVE).select_related("tenant", "algorithm").order_by("started_at")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    builds = list(qs[:limit])
    costs = builds_cost_so_far(builds, now=now)
    return [{"build": b, "cost": costs[b.pk]} for b in builds]


def instance_types_without_price(instance_types: set[str]) -> set[str]:
    """Those of `instance_types` the price table has no price for in this region (plans' size bands check it)."""
    priced = set(InstancePrice.objects.filter(region=settings.AWS_REGION, instance_type__in=instance_types)
                 .values_list("instance_type", flat=True))
    return set(instance_types) - priced


def builds_cost_estimate(usages: list[tuple[str, int, int]]) -> tuple[Decimal, tuple[str, ...]]:
    """(cost, unpriced instance types) of steps given as (instance type, count, seconds), priced as metering does."""
    from billing.rules import step_cost

    prices = dict(InstancePrice.objects.filter(region=settings.AWS_REGION,
                                               instance_type__in={u[0] for u in usages})
                  .values_list("instance_type", "price_per_hour"))
    total, unknown = ZERO, set()
    for instance_type, count, seconds in usages:
        if instance_type not in prices:
            unknown.add(instance_type)
            continue
        total += step_cost(billable_seconds=seconds, instance_count=count, price_per_hour=prices[instance_type])
    return total, tuple(sorted(unknown))


# ----- spend -----

def tenant_daily_costs(*, tenant, start: date, end: date) -> dict:
    metered = {day: _amount(total) for day, total in
               CostLine.objects.filter(tenant=tenant, day__gte=start, day__lte=end)
               .values_list("day").annotate(total=Sum("amount")).values_list("day", "total")}
    explorer = {day: _amount(total) for day, total in
                DailyCost.objects.filter(tenant_slug=tenant.slug, day__gte=start, day__lte=end)
                .values_list("day").annotate(total=Sum("amount")).values_list("day", "total")}
    days = []
    for day in days_between(start, end):
        metered_amount = metered.get(day, ZERO)
        days.append({"day": day, "metered": str(metered_amount),
                     "cost_explorer": str(explorer[day]) if day in explorer else None,
                     "difference": str(explorer[day] - metered_amount) if day in explorer else None})
    return {"tenant": tenant.slug, "start": start, "end": end, "days": days,
            "total_metered": str(sum(metered.values(), ZERO)),
            "total_cost_explorer": str(sum(explorer.values(), ZERO))}


def tenant_spend_this_month(tenant, today: date) -> Decimal:
    """Metered spend of the billing month (UTC, billing.periods) that holds `today`, up to now."""
    return _amount(CostLine.objects.filter(tenant=tenant, day__gte=billing_month_start(today)).aggregate(
        total=Sum("amount"))["total"])


def spend_this_month_total(today: date) -> Decimal:
    """Metered spend of every tenant this billing month (the monthly rollup: one row per tenant)."""
    return _amount(MonthlyUsage.objects.filter(month=billing_month_start(today)).aggregate(
        total=Sum("metered"))["total"])


def metered_daily_by_tenant(*, start: date, end: date, tenant: Tenant | None = None) -> dict[tuple[date, str], Decimal]:
    """(day, tenant slug) -> metered cost (the daily rollup)."""
    qs = DailyUsage.objects.filter(day__gte=start, day__lte=end, metered__isnull=False)
    if tenant is not None:
        qs = qs.filter(tenant_slug=tenant.slug)
    return {(day, slug): _amount(total) for day, slug, total in qs.values_list("day", "tenant_slug", "metered")}


def explorer_daily_by_tenant(*, start: date, end: date, tenant_slug: str | None = None,
                             ) -> dict[tuple[date, str], Decimal]:
    """(day, tenant slug; "" = untagged) -> Cost Explorer cost, all services (the daily rollup)."""
    qs = DailyUsage.objects.filter(day__gte=start, day__lte=end, cost_explorer__isnull=False)
    if tenant_slug is not None:
        qs = qs.filter(tenant_slug=tenant_slug)
    return {(day, slug): _amount(total) for day, slug, total in
            qs.values_list("day", "tenant_slug", "cost_explorer")}


@dataclass(frozen=True)
class DailySpend:
    """The overview charts' series: per-day totals and the biggest spenders' days, a few hundred rows whatever
    the number of tenants (per-day sums run in the database, not over a row per tenant and day here)."""
    metered: dict[date, Decimal]  # every tenant's metered cost, per day
    explorer_tagged: dict[date, Decimal]  # Cost Explorer, tenant-tagged
    explorer_untagged: dict[date, Decimal]  # Cost Explorer without a tenant tag
    top_tenants: list[str]  # the biggest metered spenders of the range, biggest first
    top_metered: dict[tuple[date, str], Decimal]  # their metered cost per day
    has_others: bool  # some other tenant has metered cost in the range


def daily_spend(*, start: date, end: date, top: int = 10) -> DailySpend:
    """Three queries over the daily rollup of [start, end]: per-day sums, the top spenders, their days."""
    rows = DailyUsage.objects.filter(day__gte=start, day__lte=end)
    metered: dict[date, Decimal] = {}
    tagged: dict[date, Decimal] = {}
    untagged: dict[date, Decimal] = {}
    for day, day_metered, day_tagged, day_untagged in (
            rows.order_by().values("day").annotate(
                m=Sum("metered"), t=Sum("cost_explorer", filter=~Q(tenant_slug=DailyCost.UNTAGGED)),
                u=Sum("cost_explorer", filter=Q(tenant_slug=DailyCost.UNTAGGED)))
            .values_list("day", "m", "t", "u")):
        for series, value in ((metered, day_metered), (tagged, day_tagged), (untagged, day_untagged)):
            if value is not None:
                series[day] = _amount(value)
    biggest = list(rows.filter(metered__isnull=False).order_by().values("tenant_slug")
                   .annotate(total=Sum("metered")).order_by("-total", "tenant_slug")
                   .values_list("tenant_slug", flat=True)[:top + 1])
    chosen = biggest[:top]
    top_metered = {(day, slug): _amount(amount) for day, slug, amount in
                   rows.filter(tenant_slug__in=chosen, metered__isnull=False)
                   .values_list("day", "tenant_slug", "metered")} if chosen else {}
    return DailySpend(metered=metered, explorer_tagged=tagged, explorer_untagged=untagged, top_tenants=chosen,
                      top_metered=top_metered, has_others=len(biggest) > top)


def build_costs_for_tenant(*, tenant: Tenant, start: date, end: date, limit: int = 30) -> list[dict]:
    """Metered cost per build of the tenant whose steps ended in [start, end], newest first."""
    rows = list(CostLine.objects.filter(tenant=tenant, day__gte=start, day__lte=end, build__isnull=False)
                .values("build__code", "build__created_at", "build__status", "build__algorithm__name")
                .annotate(total=Sum("amount"), seconds=Sum("billable_seconds"))
                .order_by("-build__created_at")[:limit])
    for row in rows:
        row["total"] = _amount(row["total"])
    return rows


# ----- the costs export (one row per tenant and day with cost) -----

EXPORT_CHUNK_ROWS = 2000
UNTAGGED_NAME = "(untagged)"


def cost_export_rows(*, start: date, end: date, tenant_slug: str | None = None,
                     include_untagged: bool = False) -> Iterator[list[object]]:
    """The costs CSV's rows, day by day, tenants by slug, the untagged rest last in its day; read from the daily
    rollup a chunk at a time (a year of 1,000 tenants is 365,000 rows: never all in memory).

    Cells: day, tenant slug, tenant name, metered, Cost Explorer (empty until a sync has the day), difference.
    On PostgreSQL the database formats the amounts as text (what str(Decimal) gives for numeric(14,6)): the
    page then does no Decimal arithmetic per row. Elsewhere the same cells are computed here
    (_cost_export_rows_portable); a test checks that both give the same rows.
    """
    from django.db import connection

    covered = explorer_covered_days(start=start, end=end)
    names = dict(Tenant.objects.filter(**({"slug": tenant_slug} if tenant_slug is not None else {}))
                 .values_list("slug", "name"))
    rows = (_cost_export_rows_postgres if connection.vendor == "postgresql" else _cost_export_rows_portable)
    yield from rows(start=start, end=end, tenant_slug=tenant_slug, include_untagged=include_untagged,
                    covered=covered, names=names)


def _cost_export_rows_portable(*, start: date, end: date, tenant_slug: str | None, include_untagged: bool,
                               covered: set[date], names: dict[str, str]) -> Iterator[list[object]]:
    qs = DailyUsage.objects.filter(day__gte=start, day__lte=end).filter(
        Q(metered__isnull=False) | Q(cost_explorer__isnull=False))
    if tenant_slug is not None:
        qs = qs.filter(tenant_slug=tenant_slug)
    day_rows: list[tuple] = []
    current = None
    for row in qs.order_by("day").values_list("day", "tenant_slug", "metered", "cost_explorer").iterator(
            chunk_size=EXPORT_CHUNK_ROWS):
        if row[0] != current:
            yield from _portable_day(day_rows, include_untagged=include_untagged, covered=covered, names=names)
            day_rows, current = [], row[0]
        day_rows.append(row)
    yield from _portable_day(day_rows, include_untagged=include_untagged, covered=covered, names=names)


def _portable_day(rows: list[tuple], *, include_untagged: bool, covered: set[date],
                  names: dict[str, str]) -> Iterator[list[object]]:
    untagged = None
    for day, slug, metered, explorer in sorted(rows, key=lambda row: row[1]):  # code point order, as "C"
        if slug == DailyCost.UNTAGGED:
            untagged = (day, explorer)
            continue
        metered_amount = ZERO if metered is None else _amount(metered)
        explorer_amount = (ZERO if explorer is None else _amount(explorer)) if day in covered else None
        yield [day.isoformat(), slug, names.get(slug, ""), metered_amount, explorer_amount,
               None if explorer_amount is None else explorer_amount - metered_amount]
    if include_untagged and untagged is not None and untagged[1] is not None:
        yield [untagged[0].isoformat(), DailyCost.UNTAGGED, UNTAGGED_NAME, None, _amount(untagged[1]), None]


def _cost_export_rows_postgres(*, start: date, end: date, tenant_slug: str | None, include_untagged: bool,
                               covered: set[date], names: dict[str, str]) -> Iterator[list[object]]:
    from django.db import connection

    table = DailyUsage._meta.db_table
    params: dict[str, object] = {"start": start, "end": end, "covered": sorted(covered),
                                 "untagged": DailyCost.UNTAGGED, "with_untagged": include_untagged}
    tenant_filter = ""
    if tenant_slug is not None:
        tenant_filter, params["slug"] = "AND tenant_slug = %(slug)s", tenant_slug
    # numeric::text prints a numeric(14,6) with its six places, and 0 (COALESCE's) as "0": str(Decimal) does too.
    sql = f"""
        SELECT to_char(day, 'YYYY-MM-DD'), tenant_slug,
               CASE WHEN tenant_slug <> %(untagged)s THEN COALESCE(metered, 0)::text END,
               CASE WHEN tenant_slug = %(untagged)s THEN cost_explorer::text
                    WHEN day = ANY(%(covered)s::date[]) THEN COALESCE(cost_explorer, 0)::text END,
               CASE WHEN tenant_slug <> %(untagged)s AND day = ANY(%(covered)s::date[])
                    THEN (COALESCE(cost_explorer, 0) - COALESCE(metered, 0))::text END
        FROM {table}
        WHERE day >= %(start)s AND day <= %(end)s {tenant_filter}
          AND ((tenant_slug <> %(untagged)s AND (metered IS NOT NULL OR cost_explorer IS NOT NULL))
               OR (%(with_untagged)s AND tenant_slug = %(untagged)s AND cost_explorer IS NOT NULL))
        ORDER BY day, tenant_slug = %(untagged)s, tenant_slug COLLATE "C"
    """
    with connection.chunked_cursor() as cursor:  # server-side: a year's export is never all in memory
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(EXPORT_CHUNK_ROWS):
            for day, slug, metered, explorer, difference in chunk:
                name = names.get(slug, "") if slug != DailyCost.UNTAGGED else UNTAGGED_NAME
                yield [day, slug, name, metered, explorer, difference]


# ----- Cost Explorer sync state -----

def cost_sync_last_final_day() -> date | None:
    """Up to this day Cost Explorer's figures are final and need no fetching again."""
    return (CostSyncRun.objects.filter(status=CostSyncRun.Status.SUCCEEDED, last_final_day__isnull=False)
            .order_by("-last_final_day").values_list("last_final_day", flat=True).first())


def cost_sync_is_due(*, now: datetime | None = None) -> bool:
    """Due when no sync succeeded within a day and none is running (a failed one is retried next round)."""
    from billing.rules import SYNC_STALE_AFTER

    now = now or timezone.now()
    if CostSyncRun.objects.filter(status=CostSyncRun.Status.RUNNING, started_at__gte=now - SYNC_STALE_AFTER).exists():
        return False
    last = (CostSyncRun.objects.filter(status=CostSyncRun.Status.SUCCEEDED).order_by("-ended_at")
            .values_list("ended_at", flat=True).first())
    return last is None or last <= now - SYNC_INTERVAL


def cost_sync_recent_runs(*, limit: int = 10) -> list[CostSyncRun]:
    return list(CostSyncRun.objects.order_by("-started_at")[:limit])


def explorer_covered_days(*, start: date, end: date) -> set[date]:
    """The days in [start, end] that a successful sync fetched: Cost Explorer "has" them."""
    covered: set[date] = set()
    for run_start, run_end in (CostSyncRun.objects.filter(status=CostSyncRun.Status.SUCCEEDED,
                                                          start_day__lte=end, end_day__gte=start)
                               .values_list("start_day", "end_day")):
        covered.update(days_between(max(run_start, start), min(run_end, end)))
    return covered


def untagged_cost(*, start: date, end: date) -> dict:
    """Cost Explorer cost without a tenant tag, by service: shown to staff, charged to no tenant."""
    by_service = [{"service": row["service"], "total": _amount(row["total"])} for row in
                  DailyCost.objects.filter(tenant_slug=DailyCost.UNTAGGED, day__gte=start, day__lte=end)
                  .values("service").annotate(total=Sum("amount")).order_by("-total", "service")]
    return {"total": sum((row["total"] for row in by_service), ZERO), "by_service": by_service}


# ----- reconciliation -----

@dataclass(frozen=True)
class ReconciliationRow:
    day: date
    tenant_slug: str
    metered: Decimal
    cost_explorer: Decimal
    final: bool

    @property
    def difference(self) -> Decimal:
        """Cost Explorer minus metered: what metering missed (storage, requests...) or overestimated."""
        return self.cost_explorer - self.metered


def cost_reconciliation(*, start: date, end: date, tenant: Tenant | None = None) -> list[ReconciliationRow]:
    """Per tenant and day: metered vs Cost Explorer, for the days Cost Explorer has (a sync fetched them)."""
    covered = explorer_covered_days(start=start, end=end)
    if not covered:
        return []
    return _reconcile(metered=metered_daily_by_tenant(start=start, end=end, tenant=tenant),
                      explorer=explorer_daily_by_tenant(start=start, end=end,
                                                        tenant_slug=tenant.slug if tenant else None),
                      covered=covered, final_day=cost_sync_last_final_day())


def reconciliation_largest(*, start: date, end: date, covered: set[date], final_day: date | None,
                           limit: int = 20) -> list[ReconciliationRow]:
    """The tenant-days of [start, end] where metered and Cost Explorer differ most (one query, `limit` rows)."""
    if not covered:
        return []
    rows = (DailyUsage.objects.filter(day__in=sorted(covered), day__gte=start, day__lte=end)
            .exclude(tenant_slug=DailyCost.UNTAGGED)
            .filter(Q(metered__isnull=False) | Q(cost_explorer__isnull=False))
            .annotate(size=reconciliation_gap()).order_by("-size", "day", "tenant_slug")  # index daily_usage_gap
            .values_list("day", "tenant_slug", "metered", "cost_explorer")[:limit])
    return [ReconciliationRow(day=day, tenant_slug=slug, metered=_amount(metered), cost_explorer=_amount(explorer),
                              final=final_day is not None and day <= final_day)
            for day, slug, metered, explorer in rows]


def _reconcile(*, metered: dict[tuple[date, str], Decimal], explorer: dict[tuple[date, str], Decimal],
               covered: set[date], final_day: date | None) -> list[ReconciliationRow]:
    keys = {key for key in (*metered, *explorer) if key[0] in covered and key[1] != DailyCost.UNTAGGED}
    return [ReconciliationRow(day=day, tenant_slug=slug, metered=metered.get((day, slug), ZERO),
                              cost_explorer=explorer.get((day, slug), ZERO),
                              final=final_day is not None and day <= final_day)
            for day, slug in sorted(keys)]


# ----- statements -----

@dataclass(frozen=True)
class Statement:
    month: date
    tenant_slug: str
    tenant_name: str
    plan_slug: str
    plan_name: str
    monthly_fee: Decimal
    included_hours: Decimal
    used_hours: Decimal
    overage_hours: Decimal
    overage_rate: Decimal
    overage_amount: Decimal
    metered_cost: Decimal
    cost_explorer_cost: Decimal | None
    aws_cost: Decimal
    endpoint_hours: Decimal = ZERO
    endpoint_amount: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """What the vendor charges: the plan fee, build hours overage and test endpoint hours (at their price)."""
        return self.monthly_fee + self.overage_amount + self.endpoint_amount

    @property
    def margin(self) -> Decimal:
        """Revenue minus AWS cost (staff only)."""
        return self.total - self.aws_cost

def statement_amounts(*, billable_seconds: int, included_hours: Decimal,
                      overage_rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(used hours, overage hours, overage amount) of a month's billable seconds."""
    used = (Decimal(billable_seconds) / Decimal(3600)).quantize(HOURS_QUANTUM, rounding=ROUND_HALF_UP)
    overage = max(ZERO, used - included_hours)
    return used, overage, _money(overage * overage_rate)


def _hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(HOURS_QUANTUM, rounding=ROUND_HALF_UP)


def billable_tenants(*, month: date) -> QuerySet[Tenant]:
    """Tenants that get a statement for the month: active or suspended ones, and any with usage in it."""
    used = (MonthlyUsage.objects.filter(month=month_first(month))
            .filter(Q(metered__gt=0) | Q(billable_seconds__gt=0)).values("tenant_slug"))
    return Tenant.objects.filter(Q(status__in=[Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED]) | Q(slug__in=used))


def statements_for_month(*, month: date, tenants: QuerySet[Tenant] | None = None) -> list[Statement]:
    """Monthly statements: plan fee, build hours used vs included, overage, and the AWS cost underneath.

    Build hours are the billable seconds of the tenant's steps that ended in the month / 3600. Endpoint hours are the
    time its test endpoints were in service (billing.services.endpoint_meter), charged at their metered cost. AWS cost
    is Cost Explorer's figure for the days a sync has fetched, metered cost for the other days. Both
    come from the monthly rollup (billing.rollups), one row per tenant: two queries whatever the history.
    """
    first = month_first(month)
    # Plain tuples, not model instances: a month of 1,000 tenants is 2,000 rows, and building a Tenant, a Plan and
    # a MonthlyUsage object per tenant cost more than the rest of the statements.
    tenants = list((tenants if tenants is not None else billable_tenants(month=month)).order_by("slug").values_list(
        "slug", "name", "plan__slug", "plan__name", "plan__monthly_fee", "plan__included_build_hours",
        "plan__overage_price_per_hour"))
    if not tenants:
        return []
    usage_rows = MonthlyUsage.objects.filter(month=first)
    if len(tenants) <= 100:
        usage_rows = usage_rows.filter(tenant_slug__in=[t[0] for t in tenants])
    usage = {slug: rest for slug, *rest in usage_rows.values_list("tenant_slug", "billable_seconds", "metered",
                                                                  "cost_explorer", "aws_cost", "endpoint_seconds",
                                                                  "endpoint_metered")}
    statements = []
    for slug, name, plan_slug, plan_name, monthly_fee, included_hours, overage_rate in tenants:
        row = usage.get(slug)
        billable_seconds, metered, explorer, aws_cost, endpoint_seconds, endpoint_metered = (
            row if row else (0, None, None, None, 0, ZERO))
        used, overage, overage_amount = statement_amounts(
            billable_seconds=billable_seconds, included_hours=included_hours, overage_rate=overage_rate)
        statements.append(Statement(
            month=first, tenant_slug=slug, tenant_name=name, plan_slug=plan_slug,
            plan_name=plan_name, monthly_fee=monthly_fee, included_hours=included_hours,
            used_hours=used, overage_hours=overage, overage_rate=overage_rate,
            overage_amount=overage_amount, metered_cost=_amount(metered) if row else ZERO,
            cost_explorer_cost=_amount(explorer) if row and explorer is not None else None,
            aws_cost=_amount(aws_cost) if row else ZERO,
            endpoint_hours=_hours(endpoint_seconds), endpoint_amount=_money(endpoint_metered)))
    return statements


def statement_for_tenant(*, tenant: Tenant, month: date) -> Statement:
    return statements_for_month(month=month, tenants=Tenant.objects.filter(pk=tenant.pk))[0]


def statement_totals(statements: Iterable[Statement]) -> dict:
    statements = list(statements)
    return {"revenue": sum((s.total for s in statements), ZERO),
            "fees": sum((s.monthly_fee for s in statements), ZERO),
            "overage": sum((s.overage_amount for s in statements), ZERO),
            "endpoints": sum((s.endpoint_amount for s in statements), ZERO),
            "metered_cost": sum((s.metered_cost for s in statements), ZERO),
            "aws_cost": sum((s.aws_cost for s in statements), ZERO),
            "margin": sum((s.margin for s in statements), ZERO),
            "used_hours": sum((s.used_hours for s in statements), ZERO)}


def statements_by_plan(statements: Iterable[Statement]) -> list[dict]:
    """Revenue and AWS cost per plan (from already computed statements)."""
    plans: dict[str, dict] = {}
    for s in statements:
        row = plans.setdefault(s.plan_slug, {"plan": s.plan_name, "tenants": 0, "revenue": ZERO, "aws_cost": ZERO})
        row["tenants"] += 1
        row["revenue"] += s.total
        row["aws_cost"] += s.aws_cost
    return list(plans.values())


# ----- budgets -----

def budget_threshold(tenant: Tenant) -> Decimal | None:
    if not tenant.monthly_budget:
        return None
    return _money(tenant.monthly_budget * Decimal(tenant.budget_alert_percent) / Decimal(100))


def budget_status(*, tenant: Tenant, today: date, spend: Decimal | None = None) -> dict | None:
    """This month's spend against the tenant's budget, with the month's alert if one was recorded."""
    threshold = budget_threshold(tenant)
    if threshold is None:
        return None
    spend = tenant_spend_this_month(tenant, today) if spend is None else spend
    alert = BudgetAlert.objects.filter(tenant=tenant, month=month_first(today)).first()
    return {"budget": tenant.monthly_budget, "threshold": threshold, "alert_percent": tenant.budget_alert_percent,
            "spend": spend, "used_percent": float(spend) / float(tenant.monthly_budget) * 100,
            "alert": alert, "over_threshold": spend >= threshold, "over_budget": spend >= tenant.monthly_budget}


def budget_alerts_for_month(*, month: date) -> list[BudgetAlert]:
    return list(BudgetAlert.objects.filter(month=month_first(month)).select_related("tenant")
                .order_by("-crossed_at"))


# ----- pages -----

CHART_DAYS = 30


def overview_data(*, today: date, month: date) -> dict:
    """Everything the staff billing overview shows, in a fixed number of queries."""
    start, end = today - timedelta(days=CHART_DAYS - 1), today
    covered = explorer_covered_days(start=start, end=end)
    runs = cost_sync_recent_runs()
    final_day = cost_sync_last_final_day()
    statements = statements_for_month(month=month)
    return {
        "start": start, "end": end, "days": days_between(start, end), "month": month_first(month),
        "spend": daily_spend(start=start, end=end), "covered": covered,
        "statements": statements, "totals": statement_totals(statements), "by_plan": statements_by_plan(statements),
        "top_tenants": sorted((s for s in statements if s.metered_cost or s.aws_cost),
                              key=lambda s: (-s.aws_cost, s.tenant_slug))[:10],
        "reconciliation": reconciliation_largest(start=start, end=end, covered=covered, final_day=final_day),
        "untagged": untagged_cost(start=start, end=end),
        "sync_runs": runs,
        "last_success": next((r for r in runs if r.status == CostSyncRun.Status.SUCCEEDED), None),
        "last_run": runs[0] if runs else None,
        "last_final_day": final_day,
        "budget_alerts": budget_alerts_for_month(month=today),
        "in_progress": builds_in_progress_cost(),
    }


def tenant_billing_data(*, tenant: Tenant, today: date, month: date) -> dict:
    """Everything a tenant's spend page shows, in a fixed number of queries."""
    start, end = today - timedelta(days=CHART_DAYS - 1), today
    metered = metered_daily_by_tenant(start=start, end=end, tenant=tenant)
    explorer = explorer_daily_by_tenant(start=start, end=end, tenant_slug=tenant.slug)
    covered = explorer_covered_days(start=start, end=end)
    spend = tenant_spend_this_month(tenant, today)
    return {
        "start": start, "end": end, "days": days_between(start, end), "month": month_first(month),
        "metered": metered, "explorer": explorer, "covered": covered, "spend": spend,
        "reconciliation": _reconcile(metered=metered, explorer=explorer, covered=covered,
                                     final_day=cost_sync_last_final_day()),
        "build_costs": build_costs_for_tenant(tenant=tenant, start=month_first(month), end=month_last(month)),
        "statement": statement_for_tenant(tenant=tenant, month=month),
        "budget": budget_status(tenant=tenant, today=today, spend=spend),
        "in_progress": builds_in_progress_cost(tenant=tenant),
    }


# ----- AWS Marketplace metering and billing setup (tables only) -----

def marketplace_expired_count() -> int:
    """Usage records that can no longer be sent (the staff dashboard's alert)."""
    from billing.models import MarketplaceUsageRecord

    return MarketplaceUsageRecord.objects.filter(status=MarketplaceUsageRecord.Status.EXPIRED).count()


def marketplace_overview(*, limit: int = 100) -> dict:
    from django.db.models import Count

    from billing.models import MarketplaceUsageRecord
    from tenants.models import MarketplaceCustomer

    records = list(MarketplaceUsageRecord.objects.select_related("tenant", "customer").order_by("-hour", "-id")[:limit])
    by_result = {(status, result): n for status, result, n in MarketplaceUsageRecord.objects.values_list(
        "status", "result").annotate(n=Count("id")).values_list("status", "result", "n")}
    return {"customers": list(MarketplaceCustomer.objects.select_related("tenant", "access_request")
                              .order_by("-registered_at")[:limit]),
            "records": records, "by_result": sorted(by_result.items()),
            "expired": sum(n for (status, _), n in by_result.items()
                           if status == MarketplaceUsageRecord.Status.EXPIRED)}


def billing_setup_last_check():
    from billing.models import BillingSetupCheck

    return BillingSetupCheck.objects.order_by("-checked_at").first()
