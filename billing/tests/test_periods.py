"""One billing month (UTC, as AWS bills) behind every "spend this month", whatever the viewer's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.periods import billing_month_start, utc_today
from tests.web_support import client_for, create_build, create_member, create_tenant, text_of

# 20:00 on 31 January in Los Angeles is already 1 February in UTC: a new billing month.
NOW = datetime(2026, 2, 1, 4, 0, tzinfo=UTC)
VIEWER_ZONE = "America/Los_Angeles"


@pytest.fixture
def month_boundary(monkeypatch, settings):
    settings.TIME_ZONE = VIEWER_ZONE
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    timezone.activate(VIEWER_ZONE)
    yield
    timezone.deactivate()


def cost_line(tenant, build, step, amount: str, day: date) -> None:
    from billing.models import CostLine

    CostLine.objects.create(tenant=tenant, plan=tenant.plan, build=build, step=step, instance_type="ml.m5.large",
                            instance_count=1, billable_seconds=60, price_per_hour=Decimal("0.115"),
                            amount=Decimal(amount), day=day)


def test_billing_month_is_the_utc_month_whatever_the_active_zone(month_boundary):
    assert timezone.localdate() == date(2026, 1, 31)  # the viewer's day
    assert (utc_today(), billing_month_start()) == (date(2026, 2, 1), date(2026, 2, 1))
    assert billing_month_start(date(2026, 1, 31)) == date(2026, 1, 1)


def test_spend_this_month_is_the_same_utc_month_on_every_page(reference_data, staff_user, month_boundary):
    from billing.rollups import rollups_refresh
    from billing.selectors import spend_this_month_total, tenant_spend_this_month
    from mlaas_portal.dashboard import tenant_list

    tenant = create_tenant(slug="acme", plan="basic")
    build = create_build(tenant, status="succeeded")
    first, second = build.steps.order_by("order")[:2]
    cost_line(tenant, build, first, "1.00", date(2026, 1, 31))  # January's last UTC day: last month's bill
    cost_line(tenant, build, second, "0.25", date(2026, 2, 1))
    rollups_refresh(start=date(2026, 1, 1), end=date(2026, 2, 1))  # as metering does when it writes cost lines

    assert tenant_spend_this_month(tenant, utc_today()) == spend_this_month_total(utc_today()) == Decimal("0.25")
    assert [(t.slug, t.spend_this_month) for t in tenant_list()] == [
        ("acme", Decimal("0.25"))]

    staff = client_for(staff_user, tz=VIEWER_ZONE)
    assert staff.get(reverse("home")).context["spend_this_month"] == Decimal("0.25")
    assert "$0.25 metered spend this month (UTC)" in text_of(staff.get(reverse("home")))
    assert [t.spend_this_month for t in staff.get(reverse("tenant_list")).context["page_obj"]] == [Decimal("0.25")]
    member = client_for(create_member(tenant), tz=VIEWER_ZONE)
    assert member.get(reverse("home")).context["spend"] == Decimal("0.25")
    assert member.get(reverse("billing:tenant", args=["acme"])).context["spend"] == Decimal("0.25")
