"""The billing rollups equal the aggregates they replace, and stay equal as metering and syncs write."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDate

from billing.models import CostLine, DailyCost, DailyUsage, MonthlyUsage
from billing.rollups import rollups_rebuild, rollups_refresh
from billing.selectors import _amount, explorer_covered_days, month_first, month_last
from billing.services import build_meter, daily_costs_upsert, utc_today
from billing.tests.conftest import utc


def aggregated_daily() -> dict[tuple[date, str], tuple]:
    """Per (day, tenant slug): metered, billable seconds, Cost Explorer, summed from the source rows."""
    from builds.models import BuildStep

    out: dict[tuple[date, str], list] = defaultdict(lambda: [None, 0, None])
    for day, slug, total in (CostLine.objects.values("day", "tenant__slug").annotate(t=Sum("amount"))
                             .values_list("day", "tenant__slug", "t")):
        out[(day, slug)][0] = _amount(total)
    for day, slug, seconds in (BuildStep.objects.filter(ended_at__isnull=False, billable_seconds__gt=0)
                               .annotate(day=TruncDate("ended_at", tzinfo=UTC))
                               .values("day", "build__tenant__slug").annotate(s=Sum("billable_seconds"))
                               .values_list("day", "build__tenant__slug", "s")):
        out[(day, slug)][1] = seconds
    for day, slug, total in (DailyCost.objects.values("day", "tenant_slug").annotate(t=Sum("amount"))
                             .values_list("day", "tenant_slug", "t")):
        out[(day, slug)][2] = _amount(total)
    return {key: tuple(value) for key, value in out.items()}


def rolled_daily() -> dict[tuple[date, str], tuple]:
    return {(r.day, r.tenant_slug): (None if r.metered is None else _amount(r.metered), r.billable_seconds,
                                     None if r.cost_explorer is None else _amount(r.cost_explorer))
            for r in DailyUsage.objects.all()}


def aggregated_month(month: date) -> dict[str, tuple]:
    """Per tenant slug: seconds, metered, Cost Explorer and AWS cost of the month, as statements used to sum them."""
    covered = explorer_covered_days(start=month_first(month), end=month_last(month))
    out: dict[str, list] = defaultdict(lambda: [0, Decimal(0), None, Decimal(0)])
    for (day, slug), (metered, seconds, explorer) in aggregated_daily().items():
        if month_first(day) != month:
            continue
        row = out[slug]
        row[0] += seconds
        row[1] += metered or 0
        if explorer is not None:
            row[2] = (row[2] or 0) + explorer
        row[3] += (explorer or 0) if day in covered else (metered or 0)
    return {slug: tuple(v) for slug, v in out.items()}


def rolled_month(month: date) -> dict[str, tuple]:
    return {r.tenant_slug: (r.billable_seconds, _amount(r.metered),
                            None if r.cost_explorer is None else _amount(r.cost_explorer), _amount(r.aws_cost))
            for r in MonthlyUsage.objects.filter(month=month)}


def metered(build_factory, tenant, *, hours: float, ended: datetime):
    build = build_factory(tenant, steps=[("train", "ml.m5.large", 1, ended - timedelta(hours=hours), ended)])
    build_meter(build=build)
    return build


def test_rollups_equal_the_aggregates_they_replace(populate):
    today = utc_today()
    populate(n_tenants=4, n_days=40, today=today)

    assert rolled_daily() == aggregated_daily()
    assert len(rolled_daily()) == 4 * 40 + 40  # every tenant-day, and the untagged rest
    for month in {month_first(today), month_first(today - timedelta(days=39))}:
        assert rolled_month(month) == aggregated_month(month)
        assert rolled_month(month)  # not trivially equal


def test_rebuild_from_nothing_equals_the_aggregates(populate):
    today = utc_today()
    populate(n_tenants=3, n_days=10, today=today)
    DailyUsage.objects.all().delete()
    MonthlyUsage.objects.all().delete()

    rollups_rebuild()

    assert rolled_daily() == aggregated_daily()
    assert rolled_month(month_first(today)) == aggregated_month(month_first(today))


def test_metering_keeps_the_rollups_exact_without_a_refresh(tenant_factory, build_factory):
    acme, globex = tenant_factory(slug="acme"), tenant_factory(slug="globex")
    metered(build_factory, acme, hours=2, ended=utc(date(2026, 3, 10)))
    metered(build_factory, acme, hours=1, ended=utc(date(2026, 3, 10), 18))
    metered(build_factory, globex, hours=3, ended=utc(date(2026, 3, 31), 23, 30))
    metered(build_factory, globex, hours=1, ended=utc(date(2026, 4, 1), 0, 30))  # next month

    assert rolled_daily() == aggregated_daily()
    assert rolled_daily()[(date(2026, 3, 10), "acme")] == (Decimal("0.345000"), 3 * 3600, None)
    assert rolled_month(date(2026, 3, 1)) == aggregated_month(date(2026, 3, 1))
    assert rolled_month(date(2026, 4, 1)) == {"globex": (3600, Decimal("0.115000"), None, Decimal("0.115000"))}


def test_cost_explorer_upsert_then_the_ticks_refresh_keep_them_exact(tenant_factory, build_factory):
    from billing.jobs import rollups_refresh_current_month
    from billing.models import CostSyncRun

    acme = tenant_factory(slug="acme")
    today = utc_today()
    metered(build_factory, acme, hours=2, ended=utc(today))

    class Row:
        def __init__(self, slug, service, amount):
            self.day, self.tenant_slug, self.service, self.amount, self.estimated = today, slug, service, amount, True

    daily_costs_upsert(rows=[Row("acme", "Amazon SageMaker", Decimal("0.50")), Row("", "AWS KMS", Decimal("2"))],
                       start=today, end=today)
    CostSyncRun.objects.create(status="succeeded", start_day=today, end_day=today, last_final_day=None)
    DailyCost.objects.filter(tenant_slug="acme").update(amount=Decimal("0.75"))  # written past the writers
    rollups_refresh_current_month()

    assert rolled_daily() == aggregated_daily()
    assert rolled_daily()[(today, "acme")] == (Decimal("0.230000"), 7200, Decimal("0.750000"))
    assert rolled_month(month_first(today))["acme"] == (7200, Decimal("0.230000"), Decimal("0.750000"),
                                                        Decimal("0.750000"))  # a covered day: Cost Explorer's


def test_refresh_of_one_tenant_leaves_the_others_alone(tenant_factory, build_factory):
    acme, globex = tenant_factory(slug="acme"), tenant_factory(slug="globex")
    metered(build_factory, acme, hours=2, ended=utc(date(2026, 3, 10)))
    metered(build_factory, globex, hours=2, ended=utc(date(2026, 3, 10)))
    before = rolled_daily()

    rollups_refresh(start=date(2026, 3, 1), end=date(2026, 3, 31), tenant_slugs=["acme"])

    assert rolled_daily() == before
