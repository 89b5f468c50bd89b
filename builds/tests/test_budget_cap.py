"""The budget hard cap as a waiting reason: a capped tenant's queued builds wait (never its running ones),
another tenant of the same plan starts, a raised budget or a new month releases them.

Billing records the month's spend on the tenant (`tenants.services.tenant_spend_record`, tested end to end from
metering in billing/tests/test_statements.py); here it is recorded directly, as billing does.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from builds.dispatch import dispatch_pending
from builds.models import Build
from builds.waiting import Reason, waiting_for_builds
from tenants import budgets
from tenants.services import tenant_spend_record, tenant_update_defaults
from tests.factories import BuildFactory, MembershipFactory, TenantFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def standard(reference_data):
    return plan("standard")


def capped_tenant(standard, *, spend="12.50", budget="10.00", cap=True, month=None):
    tenant = TenantFactory(plan=standard, monthly_budget=Decimal(budget), budget_hard_cap=cap)
    tenant_spend_record(tenant_id=tenant.pk, month=month or budgets.billing_month(), spend=Decimal(spend))
    tenant.refresh_from_db()
    return tenant


def queued(tenant, **kw):
    return BuildFactory(tenant=tenant, status=Build.Status.QUEUED, queued_at=timezone.now(), **kw)


def test_budget_cap_holds_queued_builds_and_another_tenant_starts(standard):
    capped = capped_tenant(standard)
    running = BuildFactory(tenant=capped, status=Build.Status.RUNNING, started_at=timezone.now())
    held = queued(capped, created_at=timezone.now() - timedelta(hours=1))  # older: would go first
    other = queued(TenantFactory(plan=standard))

    assert dispatch_pending() == [other.pk]

    held.refresh_from_db()
    running.refresh_from_db()
    assert (held.status, running.status) == (Build.Status.QUEUED, Build.Status.RUNNING)
    w = waiting_for_builds([held])[held.pk]
    assert w.waiting_reason == Reason.BUDGET_CAP
    assert w.waiting_message == ("This month's spend ($12.50) has reached the tenant's monthly budget ($10.00) and "
                                 "the budget is a hard cap; its builds start when the budget is raised or the next "
                                 "month begins (UTC).")


def test_budget_cap_released_by_a_raised_budget(standard):
    capped = capped_tenant(standard)
    held = queued(capped)
    assert dispatch_pending() == []

    tenant_update_defaults(tenant=capped, default_algorithm=None, default_target="", monthly_budget=Decimal("20"),
                           budget_alert_percent=80, budget_hard_cap=True)

    assert dispatch_pending() == [held.pk]


def test_budget_cap_released_by_the_next_month(standard):
    last_month = (budgets.billing_month() - timedelta(days=1)).replace(day=1)
    held = queued(capped_tenant(standard, month=last_month))  # over budget last month only
    assert waiting_for_builds([held])[held.pk].waiting_reason == Reason.STARTING_SOON
    assert dispatch_pending() == [held.pk]


def test_budget_cap_off_only_alerts(standard):
    held = queued(capped_tenant(standard, cap=False))
    assert dispatch_pending() == [held.pk]


@pytest.mark.parametrize(("spend", "budget"), [("9.99", "10.00"), ("5.00", "0")])  # under it; 0 is no budget
def test_budget_cap_under_budget_or_without_one_starts(standard, spend, budget):
    held = queued(capped_tenant(standard, spend=spend, budget=budget))
    assert waiting_for_builds([held])[held.pk].waiting_reason == Reason.STARTING_SOON
    assert dispatch_pending() == [held.pk]


def test_billing_month_is_the_utc_calendar_month():
    from datetime import date, datetime

    late_utc = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert budgets.billing_month(late_utc) == date(2026, 3, 1)
    assert budgets.is_capped(hard_cap=True, budget=Decimal("1"), spend_month=date(2026, 3, 1), spend=Decimal("1"),
                             at=late_utc)
    assert not budgets.is_capped(hard_cap=True, budget=Decimal("1"), spend_month=date(2026, 3, 1),
                                 spend=Decimal("1"), at=late_utc + timedelta(hours=1))


def test_budget_cap_in_api_and_on_build_page(standard, api_client_for, client):
    capped = capped_tenant(standard)
    held = queued(capped)
    member = MembershipFactory(tenant=capped).user
    body = api_client_for(member).get(f"/api/v1/builds/{held.code}").json()
    assert (body["waiting_reason"], body["queue_position"]) == (Reason.BUDGET_CAP, 1)
    assert "($12.50)" in body["waiting_message"] and "($10.00)" in body["waiting_message"]
    items = api_client_for(member).get("/api/v1/builds").json()["items"]
    assert [(i["id"], i["waiting_reason"]) for i in items] == [(str(held.code), Reason.BUDGET_CAP)]
    client.force_login(member)
    html = client.get(f"/builds/{held.code}/").content.decode()
    assert 'data-reason="budget_cap"' in html and "($12.50)" in html


def test_budget_hard_cap_set_on_tenant_settings_page(standard, client):
    tenant = TenantFactory(plan=standard)
    owner = MembershipFactory(tenant=tenant, role="owner").user
    client.force_login(owner)
    assert 'name="budget_hard_cap"' in client.get(f"/tenants/{tenant.slug}/").content.decode()
    response = client.post(f"/tenants/{tenant.slug}/settings/", {
        "default_target": "", "monthly_budget": "50.00", "budget_alert_percent": "80", "budget_hard_cap": "on"})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.monthly_budget, tenant.budget_hard_cap) == (Decimal("50.00"), True)
    stranger = MembershipFactory(tenant=TenantFactory(plan=standard), role="owner").user
    client.force_login(stranger)
    assert client.post(f"/tenants/{tenant.slug}/settings/", {"monthly_budget": "1"}).status_code == 404
    tenant.refresh_from_db()
    assert tenant.monthly_budget == Decimal("50.00")
