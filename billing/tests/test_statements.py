from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.urls import reverse

from billing.models import BudgetAlert, CostSyncRun, DailyCost
from billing.rollups import rollups_refresh
from billing.selectors import ReconciliationRow, cost_reconciliation, statement_amounts, statement_for_tenant
from billing.services import budget_check, build_meter
from billing.tests.conftest import utc

MARCH = date(2026, 3, 1)


def metered_build(build_factory, tenant, *, hours: float, ended: datetime, instance_type: str = "ml.m5.large",
                  count: int = 1):
    build = build_factory(tenant, steps=[("train", instance_type, count, ended - timedelta(hours=hours), ended)])
    build_meter(build=build)
    return build


def test_statement_amounts_fee_included_hours_and_overage():
    assert statement_amounts(billable_seconds=41400, included_hours=Decimal("10"),
                             overage_rate=Decimal("4.00")) == (Decimal("11.5000"), Decimal("1.5000"), Decimal("6.00"))
    assert statement_amounts(billable_seconds=32400, included_hours=Decimal("10"),
                             overage_rate=Decimal("4.00")) == (Decimal("9.0000"), Decimal("0"), Decimal("0.00"))
    assert statement_amounts(billable_seconds=1, included_hours=Decimal("0"),
                             overage_rate=Decimal("2.50")) == (Decimal("0.0003"), Decimal("0.0003"), Decimal("0.00"))


def test_statement_for_month_with_overage_and_margin(tenant_factory, build_factory):
    tenant = tenant_factory(plan="basic")  # $99, 10 h included, $4.00/h overage
    metered_build(build_factory, tenant, hours=10, ended=utc(date(2026, 3, 10)))
    metered_build(build_factory, tenant, hours=1.5, ended=utc(date(2026, 3, 20)))
    metered_build(build_factory, tenant, hours=5, ended=utc(date(2026, 2, 28), 23))  # February
    metered_build(build_factory, tenant, hours=5, ended=utc(date(2026, 4, 1), 0, 30))  # April

    statement = statement_for_tenant(tenant=tenant, month=date(2026, 3, 17))

    assert (statement.month, statement.plan_slug, statement.monthly_fee, statement.included_hours,
            statement.used_hours, statement.overage_hours, statement.overage_rate, statement.overage_amount,
            statement.total) == (MARCH, "basic", Decimal("99.00"), Decimal("10.00"), Decimal("11.5000"),
                                 Decimal("1.5000"), Decimal("4.00"), Decimal("6.00"), Decimal("105.00"))
    # compute cost underneath: 11.5 h x $0.115; no Cost Explorer data yet, so AWS cost is the metered one
    assert (statement.metered_cost, statement.cost_explorer_cost, statement.aws_cost, statement.margin) == (
        Decimal("1.322500"), None, Decimal("1.322500"), Decimal("103.677500"))


def test_statement_aws_cost_uses_cost_explorer_for_synced_days(tenant_factory, build_factory):
    tenant = tenant_factory(plan="basic")
    metered_build(build_factory, tenant, hours=10, ended=utc(date(2026, 3, 10)))  # $1.15, synced day
    metered_build(build_factory, tenant, hours=1.5, ended=utc(date(2026, 3, 20)))  # $0.1725, not synced yet
    CostSyncRun.objects.create(status="succeeded", start_day=date(2026, 3, 1), end_day=date(2026, 3, 15),
                               last_final_day=date(2026, 3, 12))
    DailyCost.objects.create(day=date(2026, 3, 10), tenant_slug=tenant.slug, service="Amazon SageMaker",
                             amount=Decimal("1.50"))
    DailyCost.objects.create(day=date(2026, 3, 10), tenant_slug=tenant.slug, service="Amazon S3",
                             amount=Decimal("0.10"))
    rollups_refresh(start=MARCH, end=date(2026, 3, 31))  # as the billing tick does for rows written past the sync

    statement = statement_for_tenant(tenant=tenant, month=MARCH)

    assert (statement.total, statement.metered_cost, statement.cost_explorer_cost, statement.aws_cost,
            statement.margin) == (Decimal("105.00"), Decimal("1.322500"), Decimal("1.60"), Decimal("1.772500"),
                                  Decimal("103.227500"))


def test_reconciliation_metered_vs_cost_explorer_difference(tenant_factory, build_factory):
    acme, globex = tenant_factory(slug="acme"), tenant_factory(slug="globex")
    metered_build(build_factory, acme, hours=10, ended=utc(date(2026, 3, 10)))  # $1.15
    metered_build(build_factory, acme, hours=2, ended=utc(date(2026, 3, 20)))  # Cost Explorer lacks the day
    CostSyncRun.objects.create(status="succeeded", start_day=date(2026, 3, 1), end_day=date(2026, 3, 15),
                               last_final_day=date(2026, 3, 10))
    DailyCost.objects.bulk_create([
        DailyCost(day=date(2026, 3, 10), tenant_slug="acme", service="Amazon SageMaker", amount=Decimal("1.40")),
        DailyCost(day=date(2026, 3, 10), tenant_slug="acme", service="Amazon S3", amount=Decimal("0.20")),
        DailyCost(day=date(2026, 3, 11), tenant_slug="globex", service="Amazon S3", amount=Decimal("0.30")),
        DailyCost(day=date(2026, 3, 11), tenant_slug="", service="AWS KMS", amount=Decimal("9.00")),
    ])
    rollups_refresh(start=MARCH, end=date(2026, 3, 31))  # as the billing tick does for rows written past the sync

    rows = cost_reconciliation(start=MARCH, end=date(2026, 3, 31))

    assert rows == [
        ReconciliationRow(day=date(2026, 3, 10), tenant_slug="acme", metered=Decimal("1.150000"),
                          cost_explorer=Decimal("1.60"), final=True),
        ReconciliationRow(day=date(2026, 3, 11), tenant_slug="globex", metered=Decimal("0"),
                          cost_explorer=Decimal("0.30"), final=False),
    ]
    assert [r.difference for r in rows] == [Decimal("0.450000"), Decimal("0.30")]
    assert cost_reconciliation(start=MARCH, end=date(2026, 3, 31), tenant=globex) == rows[1:]


def test_budget_alert_recorded_once_per_month(tenant_factory, build_factory):
    tenant = tenant_factory(budget=Decimal("10.00"), alert_percent=80)  # alert at $8.00
    now = datetime.now(UTC)
    # 10 h x 2 x $0.23 = $4.60 per build
    metered_build(build_factory, tenant, hours=10, ended=now, instance_type="ml.m5.xlarge", count=2)
    assert BudgetAlert.objects.count() == 0

    metered_build(build_factory, tenant, hours=10, ended=now, instance_type="ml.m5.xlarge", count=2)
    metered_build(build_factory, tenant, hours=10, ended=now, instance_type="ml.m5.xlarge", count=2)

    assert list(BudgetAlert.objects.values_list("tenant__slug", "month", "threshold_amount", "spend_at_crossing")) == [
        (tenant.slug, now.date().replace(day=1), Decimal("8.00"), Decimal("9.2000"))]
    assert budget_check(tenant=tenant).spend_at_crossing == Decimal("9.2000")
    assert BudgetAlert.objects.count() == 1


def test_budget_alert_next_month_is_a_new_one(tenant_factory):
    tenant = tenant_factory(budget=Decimal("1.00"))
    BudgetAlert.objects.create(tenant=tenant, month=date(2026, 2, 1), threshold_amount=Decimal("0.80"),
                               spend_at_crossing=Decimal("0.9"))

    assert budget_check(tenant=tenant, today=date(2026, 3, 5)) is None  # no March spend yet
    assert budget_check(tenant=tenant_factory(budget=None), today=date(2026, 3, 5)) is None  # no budget set


def test_budget_warning_shown_to_tenant_and_staff(client, staff_user, tenant_factory, build_factory, make_member):
    tenant = tenant_factory(budget=Decimal("1.00"), alert_percent=50, name="Acme Corp")
    metered_build(build_factory, tenant, hours=10, ended=datetime.now(UTC))  # $1.15: over budget

    client.force_login(make_member(tenant))
    page = client.get(reverse("billing:tenant", args=[tenant.slug])).content.decode()
    assert 'id="budget-warning"' in page
    assert "Over budget: $1.15 spent this month, 115% of the $1.00 budget (alert at 50%)" in page

    client.force_login(staff_user)
    overview = client.get(reverse("billing:overview")).content.decode()
    assert 'id="budget-alerts"' in overview
    assert "Acme Corp</a> reached $1.15 (alert at $0.50, 50% of $1.00)" in overview


def test_metering_records_the_months_spend_on_the_tenant_for_the_hard_cap(tenant_factory, build_factory):
    from builds.dispatch import dispatch_pending
    from builds.models import Build
    from builds.waiting import Reason, waiting_for_builds
    from tenants.models import Tenant

    tenant = tenant_factory(budget=Decimal("1.00"))
    Tenant.objects.filter(pk=tenant.pk).update(budget_hard_cap=True)
    tenant.refresh_from_db()
    now = datetime.now(UTC)
    metered_build(build_factory, tenant, hours=10, ended=now)  # $1.15: over the $1.00 budget

    tenant.refresh_from_db()
    assert (tenant.metered_spend_month, tenant.metered_spend) == (now.date().replace(day=1), Decimal("1.1500"))
    held = build_factory(tenant, status=Build.Status.QUEUED)
    assert dispatch_pending() == []
    assert waiting_for_builds([held])[held.pk].waiting_reason == Reason.BUDGET_CAP
