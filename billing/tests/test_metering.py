from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import CostLine, InstancePrice
from billing.selectors import build_cost, builds_cost_so_far
from billing.services import UnknownInstanceType, build_meter, instance_price_set, price_for, step_cost
from billing.tests.conftest import utc
from builds.models import Build

DAY = date(2026, 3, 14)


def test_step_cost_is_seconds_times_count_times_hourly_price():
    assert step_cost(billable_seconds=1800, instance_count=2, price_per_hour=Decimal("0.23")) == Decimal("0.230000")
    assert step_cost(billable_seconds=1, instance_count=1, price_per_hour=Decimal("0.115")) == Decimal("0.000032")
    assert step_cost(billable_seconds=0, instance_count=4, price_per_hour=Decimal("5")) == Decimal("0.000000")


def test_build_meter_one_line_per_finished_billable_step(tenant_factory, build_factory):
    tenant = tenant_factory()
    build = build_factory(tenant, steps=[
        ("preprocess", "ml.t3.medium", 1, utc(DAY, 23, 50), utc(DAY, 23, 59, ) + timedelta(minutes=1)),
        ("train", "ml.m5.xlarge", 2, utc(DAY + timedelta(days=1), 0, 0), utc(DAY + timedelta(days=1), 1, 30)),
        ("evaluate", "", 1, utc(DAY + timedelta(days=1), 1, 30), utc(DAY + timedelta(days=1), 1, 31)),
        ("register", "ml.t3.medium", 1, utc(DAY + timedelta(days=1), 1, 31), utc(DAY + timedelta(days=1), 1, 31)),
    ])

    lines = build_meter(build=build)
    build_meter(build=build)  # idempotent per step

    assert [(line.step.name, line.instance_type, line.instance_count, line.billable_seconds, line.price_per_hour,
             line.amount, line.day) for line in lines] == [
        ("preprocess", "ml.t3.medium", 1, 600, Decimal("0.0500"), Decimal("0.008333"), DAY + timedelta(days=1)),
        ("train", "ml.m5.xlarge", 2, 5400, Decimal("0.2300"), Decimal("0.690000"), DAY + timedelta(days=1)),
    ]
    assert CostLine.objects.filter(build=build).count() == 2
    assert build_cost(build) == Decimal("0.698333")


def test_build_meter_unknown_instance_type_is_an_error_naming_it(tenant_factory, build_factory):
    tenant = tenant_factory()
    build = build_factory(tenant, steps=[
        ("preprocess", "ml.m5.large", 1, utc(DAY, 10), utc(DAY, 11)),
        ("train", "ml.zz9.huge", 1, utc(DAY, 11), utc(DAY, 12)),
    ])

    with pytest.raises(UnknownInstanceType) as error:
        build_meter(build=build)

    assert "`ml.zz9.huge`" in str(error.value)
    assert CostLine.objects.count() == 0  # nothing half-metered


def test_price_for_unknown_type_names_it(reference_data):
    with pytest.raises(UnknownInstanceType, match=r"`ml\.nope\.large` in us-east-1"):
        price_for("ml.nope.large", "us-east-1")


def test_running_build_cost_so_far_from_elapsed_time(tenant_factory, build_factory):
    now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    tenant = tenant_factory()
    build = build_factory(tenant, status=Build.Status.RUNNING, steps=[
        ("preprocess", "ml.t3.medium", 1, now - timedelta(hours=1), now - timedelta(minutes=30)),
        ("train", "ml.m5.large", 2, now - timedelta(minutes=30), None),
        ("evaluate", "", 1, now - timedelta(minutes=1), None),
    ])
    build_meter(build=build)

    cost = builds_cost_so_far([build], now=now)[build.pk]

    assert (cost.metered, cost.running, cost.unknown_instance_types) == (Decimal("0.025000"), Decimal("0.115000"), ())
    assert build_cost(build, now=now) == Decimal("0.140000")


def test_running_cost_skips_unpriced_types_and_finished_builds(tenant_factory, build_factory):
    now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    tenant = tenant_factory()
    running = build_factory(tenant, status=Build.Status.RUNNING,
                            steps=[("train", "ml.nope.large", 1, now - timedelta(hours=1), None)])
    cancelled = build_factory(tenant, status=Build.Status.CANCELLED,
                              steps=[("train", "ml.m5.large", 1, now - timedelta(hours=1), None)])

    costs = builds_cost_so_far([running, cancelled], now=now)

    assert costs[running.pk].running == Decimal("0")
    assert costs[running.pk].unknown_instance_types == ("ml.nope.large",)
    assert costs[cancelled.pk].amount == Decimal("0")


def test_instance_price_set_changes_known_and_refuses_unknown(reference_data):
    assert instance_price_set(instance_type="ml.m5.large", region="us-east-1",
                              price_per_hour=Decimal("0.2")).price_per_hour == Decimal("0.2")
    with pytest.raises(UnknownInstanceType, match="`ml.zz9.huge`"):
        instance_price_set(instance_type="ml.zz9.huge", region="us-east-1", price_per_hour=Decimal("1"))
    with pytest.raises(UnknownInstanceType, match="`m5.large`"):
        instance_price_set(instance_type="m5.large", region="us-east-1", price_per_hour=Decimal("1"), add_new=True)
    added = instance_price_set(instance_type="ml.zz9.huge", region="us-east-1", price_per_hour=Decimal("9.5"),
                               add_new=True)
    assert price_for("ml.zz9.huge", "us-east-1") == added.price_per_hour == Decimal("9.5")


def test_prices_page_edits_a_price(client, staff_user, reference_data):
    client.force_login(staff_user)

    response = client.post(reverse("billing:prices"), {"instance_type": "ml.m5.large", "region": "us-east-1",
                                                       "price_per_hour": "0.2000"})

    assert response.status_code == 302
    assert InstancePrice.objects.get(instance_type="ml.m5.large", region="us-east-1").price_per_hour == \
        Decimal("0.2000")
    page = client.get(reverse("billing:prices"), {"instance_type": "ml.m5.large", "region": "us-east-1"})
    assert page.context["form"].initial["price_per_hour"] == Decimal("0.2000")


def test_prices_page_unknown_instance_type_error_names_it(client, staff_user, reference_data):
    client.force_login(staff_user)

    response = client.post(reverse("billing:prices"), {"instance_type": "ml.zz9.huge", "region": "us-east-1",
                                                       "price_per_hour": "1"})

    assert response.status_code == 200
    assert response.context["form"].errors["instance_type"] == [
        "unknown instance type `ml.zz9.huge` in us-east-1: it has no price yet; tick \u201cnew instance type\u201d "
        "to add it"]
    assert not InstancePrice.objects.filter(instance_type="ml.zz9.huge").exists()


def test_prices_page_is_staff_only(client, tenant_factory, make_member):
    client.force_login(make_member(tenant_factory()))

    assert client.get(reverse("billing:prices")).status_code == 404
    assert client.post(reverse("billing:prices"), {"instance_type": "ml.m5.large", "region": "us-east-1",
                                                   "price_per_hour": "0.01"}).status_code == 404
    assert InstancePrice.objects.get(instance_type="ml.m5.large", region="us-east-1").price_per_hour == \
        Decimal("0.1150")


def test_metering_run_pulls_ended_steps_and_charges_finished_builds(tenant_factory, build_factory, monkeypatch):
    from billing import services
    from billing.models import BuildCharge

    tenant = tenant_factory()
    finished = build_factory(tenant, steps=[("train", "ml.m5.xlarge", 2, utc(DAY, 10), utc(DAY, 10, 30))])
    running = build_factory(tenant, status=Build.Status.RUNNING, steps=[
        ("preprocess", "ml.t3.medium", 1, utc(DAY, 10), utc(DAY, 10, 10)),
        ("train", "ml.m5.large", 1, utc(DAY, 10, 10), None)])
    unpriced = build_factory(tenant, steps=[("train", "ml.zz9.huge", 1, utc(DAY, 10), utc(DAY, 11))])
    ledger_writes = []
    monkeypatch.setattr(services, "ledger_costs_write", lambda: ledger_writes.append(1))

    assert services.metering_run() == 2  # the unpriced build is logged and skipped, the others go on
    assert services.metering_run() == 0  # nothing new: idempotent

    assert [(line.build_id, line.step.name, line.amount) for line in CostLine.objects.order_by("build_id")] == [
        (finished.pk, "train", Decimal("0.230000")), (running.pk, "preprocess", Decimal("0.008333"))]
    assert [(c.build_id, c.amount, c.ledger_written) for c in BuildCharge.objects.all()] == [
        (finished.pk, Decimal("0.230000"), False)]
    assert not BuildCharge.objects.filter(build=unpriced).exists()
    assert ledger_writes == [1, 1]
