"""Endpoint hours: a test endpoint's time in service is metered like build steps, into spend and statements."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.urls import reverse

from billing.models import CostLine, DailyUsage, MonthlyUsage
from billing.selectors import statement_for_tenant, tenant_spend_this_month
from billing.services import endpoint_meter, endpoint_periods, endpoints_metering_run, utc_today
from builds.models import Endpoint
from tests.web_support import client_for, create_build, create_member, create_tenant

PRICE = Decimal("0.056")  # ml.t2.medium in us-east-1, the plans' endpoint instance type


def at(hour: int, minute: int = 0, *, day=None) -> datetime:
    day = day or utc_today()
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


@pytest.fixture
def acme(reference_data):
    tenant = create_tenant(slug="acme", plan="basic")
    return tenant, create_member(tenant, role="owner")


def make_endpoint(tenant, *, in_service_at, service_ended_at=None, status="InService") -> Endpoint:
    build = create_build(tenant, version=True, approval="Approved")
    return Endpoint.objects.create(tenant=tenant, name=f"{tenant.slug}-test", model_version=build.model_version,
                                   status=status, engine="local", in_service_at=in_service_at,
                                   service_ended_at=service_ended_at,
                                   deleted_at=service_ended_at if status == "Deleted" else None)


def test_endpoint_periods_are_whole_utc_hours_and_a_closing_partial_one():
    start, end = at(10, 30), at(13, 15)

    assert endpoint_periods(start=start, end=end, closing=False) == [
        (at(10, 30), at(11)), (at(11), at(12)), (at(12), at(13))]
    assert endpoint_periods(start=start, end=end, closing=True)[-1] == (at(13), at(13, 15))
    assert endpoint_periods(start=at(10, 30), end=at(10, 59), closing=False) == []


def test_endpoint_in_service_three_hours_is_charged_three_times_the_price(acme):
    tenant, _ = acme
    endpoint = make_endpoint(tenant, in_service_at=at(1), service_ended_at=at(4), status="Deleted")

    assert endpoints_metering_run(now=at(5)) == 1

    lines = list(CostLine.objects.filter(endpoint=endpoint).order_by("period_start"))
    assert [(line.period_start, line.period_end, line.billable_seconds, line.instance_type, line.price_per_hour,
             line.amount, line.endpoint_name, line.build_id, line.step_id) for line in lines] == [
        (at(h), at(h + 1), 3600, "ml.t2.medium", PRICE, Decimal("0.056000"), "acme-test", None, None)
        for h in (1, 2, 3)]
    assert sum(line.amount for line in lines) == 3 * PRICE


def test_metering_twice_charges_once(acme):
    tenant, _ = acme
    endpoint = make_endpoint(tenant, in_service_at=at(10, 30))

    first = endpoints_metering_run(now=at(13, 15))
    again = endpoints_metering_run(now=at(13, 15))
    # Metering the endpoint directly (not through the run) finds nothing new either.
    raced = endpoint_meter(endpoint=Endpoint.objects.get(pk=endpoint.pk), now=at(13, 20))

    assert (first, again, raced) == (1, 0, [])
    assert list(CostLine.objects.filter(endpoint=endpoint).order_by("period_start")
                .values_list("period_start", "billable_seconds")) == [(at(10, 30), 1800), (at(11), 3600),
                                                                       (at(12), 3600)]


def test_one_line_per_endpoint_period_is_enforced_by_the_database(acme):
    tenant, _ = acme
    endpoint = make_endpoint(tenant, in_service_at=at(1), service_ended_at=at(2), status="Deleted")
    endpoints_metering_run(now=at(3))
    line = CostLine.objects.get(endpoint=endpoint)

    with pytest.raises(IntegrityError), transaction.atomic():
        CostLine.objects.create(tenant=tenant, plan=tenant.plan, endpoint=endpoint, period_start=line.period_start,
                                period_end=line.period_end, instance_type="ml.t2.medium", instance_count=1,
                                billable_seconds=3600, price_per_hour=PRICE, amount=PRICE, day=line.day)
    with pytest.raises(IntegrityError), transaction.atomic():  # no source at all
        CostLine.objects.create(tenant=tenant, plan=tenant.plan, instance_type="ml.t2.medium", instance_count=1,
                                billable_seconds=1, price_per_hour=PRICE, amount=PRICE, day=line.day)


def test_deleting_the_endpoint_closes_the_last_period(acme, django_capture_on_commit_callbacks):
    from builds.endpoints import endpoint_delete, endpoint_teardown

    tenant, _ = acme
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2, minutes=10)
    endpoint = make_endpoint(tenant, in_service_at=start)
    endpoints_metering_run()  # the hourly tick closed the whole hours so far
    whole_hours = CostLine.objects.filter(endpoint=endpoint).count()

    with django_capture_on_commit_callbacks(execute=False):
        endpoint_delete(endpoint=endpoint, reason="on request")
    endpoint_teardown(endpoint.pk)
    endpoint.refresh_from_db()
    endpoints_metering_run()
    endpoints_metering_run()

    lines = list(CostLine.objects.filter(endpoint=endpoint).order_by("period_start"))
    assert whole_hours in (2, 3) and len(lines) == whole_hours + 1
    assert (endpoint.status, lines[0].period_start, lines[-1].period_end) == (
        "Deleted", start, endpoint.service_ended_at)
    assert sum(line.billable_seconds for line in lines) == int((endpoint.service_ended_at - start).total_seconds())


def test_failed_endpoint_is_metered_until_it_failed(acme):
    from builds.endpoints import endpoints_tick

    tenant, _ = acme
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=90)
    endpoint = make_endpoint(tenant, in_service_at=start)
    Endpoint.objects.filter(pk=endpoint.pk).update(port=1, pid=None, last_invoked_at=datetime.now(UTC))

    endpoints_tick()  # its server is gone: Failed, its service period ends now
    endpoint.refresh_from_db()
    endpoints_metering_run()
    later = endpoints_metering_run(now=datetime.now(UTC) + timedelta(hours=5))

    assert (endpoint.status, later) == ("Failed", 0)
    assert CostLine.objects.filter(endpoint=endpoint).aggregate(s=Sum("billable_seconds"))["s"] == int(
        (endpoint.service_ended_at - start).total_seconds())


def test_replacing_the_version_keeps_the_service_period(acme):
    """A newer version replaces the served one in place: the endpoint kept serving, its hours keep counting."""
    from builds.endpoints import _service_start

    tenant, _ = acme
    endpoint = make_endpoint(tenant, in_service_at=at(1), status="Updating")
    Endpoint.objects.filter(pk=endpoint.pk).update(status="InService", in_service_at=_service_start(at(3)))

    assert Endpoint.objects.get(pk=endpoint.pk).in_service_at == at(1)


def test_serverless_endpoints_are_not_metered_by_the_hour(acme):
    tenant, _ = acme
    tenant.plan.endpoint_serverless = True
    tenant.plan.save(update_fields=["endpoint_serverless"])
    make_endpoint(tenant, in_service_at=at(1), service_ended_at=at(4), status="Deleted")

    assert (endpoints_metering_run(now=at(5)), CostLine.objects.count()) == (0, 0)


def test_endpoint_hours_in_statement_spend_rollups_page_csv_and_api(acme, api_client_for):
    tenant, owner = acme
    month = utc_today().replace(day=1)
    # 10 hours in service on the first of the month, and a build step of 1 h on ml.m5.large ($0.115).
    make_endpoint(tenant, in_service_at=at(1, day=month), service_ended_at=at(11, day=month), status="Deleted")
    build = create_build(tenant, created_at=at(0, day=month), steps=1)
    build.steps.update(billable_seconds=3600, ended_at=at(1, day=month), instance_type="ml.m5.large")
    from billing.services import build_meter

    build_meter(build=build)
    endpoints_metering_run(now=at(12, day=month))

    statement = statement_for_tenant(tenant=tenant, month=month)
    assert (statement.endpoint_hours, statement.endpoint_amount, statement.used_hours, statement.metered_cost,
            statement.total) == (Decimal("10.0000"), Decimal("0.56"), Decimal("1.0000"), Decimal("0.675000"),
                                 Decimal("99.56"))
    assert tenant_spend_this_month(tenant, utc_today()) == Decimal("0.675000")
    # The rollups equal the aggregates of the lines they sum.
    daily = DailyUsage.objects.get(tenant_slug="acme", day=month)
    monthly = MonthlyUsage.objects.get(tenant_slug="acme", month=month)
    endpoint_lines = CostLine.objects.filter(tenant=tenant, endpoint__isnull=False)
    assert (daily.metered, daily.endpoint_metered, daily.endpoint_seconds, daily.billable_seconds) == (
        CostLine.objects.filter(tenant=tenant).aggregate(s=Sum("amount"))["s"],
        endpoint_lines.aggregate(s=Sum("amount"))["s"], 36000, 3600)
    assert (monthly.metered, monthly.endpoint_metered, monthly.endpoint_seconds) == (
        Decimal("0.675000"), Decimal("0.560000"), 36000)

    client = client_for(owner)
    page = client.get(reverse("billing:statement", args=["acme"]), {"month": f"{month:%Y-%m}"}).content.decode()
    assert ('<tr id="statement-endpoint-hours"><th scope="row">Endpoint hours</th><td>10.00 h of test endpoints '
            'in service</td><td class="num">$0.56</td></tr>') in page
    rows = list(csv.reader(io.StringIO(client.get(reverse("billing:export_statement", args=["acme"]),
                                                  {"month": f"{month:%Y-%m}"}).content.decode())))
    assert dict(zip(rows[0], rows[1], strict=True))["endpoint_hours"] == "10.0000"
    assert rows[1][-3:] == ["10.0000", "0.56", "99.56"]
    api = api_client_for(owner).get("/api/v1/tenants/acme/statements", {"month": f"{month:%Y-%m}"}).json()
    assert {k: api[k] for k in ("endpoint_hours", "endpoint_amount", "total", "metered_cost", "used_hours")} == {
        "endpoint_hours": "10.0000", "endpoint_amount": "0.56", "total": "99.56", "metered_cost": "0.68",
        "used_hours": "1.0000"}


def test_tenant_spend_page_lists_builds_only_in_build_costs(acme):
    from billing.selectors import build_costs_for_tenant

    tenant, owner = acme
    month = utc_today().replace(day=1)
    make_endpoint(tenant, in_service_at=at(1, day=month), service_ended_at=at(2, day=month), status="Deleted")
    endpoints_metering_run(now=at(3, day=month))

    assert build_costs_for_tenant(tenant=tenant, start=month, end=utc_today()) == []
    response = client_for(owner).get(reverse("billing:tenant", args=["acme"]))
    assert response.status_code == 200 and 'id="statement-endpoint-hours"' in response.content.decode()


def test_staff_overview_shows_endpoint_hours_in_revenue(acme, staff_user):
    tenant, _ = acme
    month = utc_today().replace(day=1)
    make_endpoint(tenant, in_service_at=at(1, day=month), service_ended_at=at(3, day=month), status="Deleted")
    endpoints_metering_run(now=at(4, day=month))

    page = client_for(staff_user).get(reverse("billing:overview")).content.decode()

    row = page.split('href="/billing/tenants/acme/')[1].split("</tr>")[0]
    assert "<td>2.00 h · $0.11</td><td>$99.11</td>" in row
