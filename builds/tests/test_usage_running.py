"""Fair-share usage includes the time of running builds (builds.usage), charged once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from builds import dispatch
from builds.models import Build
from builds.usage import build_usage_settle, running_usage_charge
from tenants import fairshare
from tenants.models import Tenant
from tenants.services import scheduling_policy, tenant_usage_charge
from tests.factories import BuildFactory, TenantFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def standard(reference_data):
    return plan("standard")  # plan limit 8, tenant limit 2


def decayed(tenant, at):
    tenant.refresh_from_db()
    half_life = scheduling_policy().usage_half_life_hours
    return fairshare.decayed_seconds(tenant.usage_log2, at=at, half_life_hours=half_life)


def decay(minutes):
    return 2 ** (-minutes / 60 / scheduling_policy().usage_half_life_hours)


def running_since(tenant, started_at):
    return BuildFactory(tenant=tenant, status=Build.Status.RUNNING, started_at=started_at, heartbeat_at=started_at)


def test_tenant_with_a_build_running_an_hour_ranks_behind_an_idle_tenant(standard):
    now = timezone.now()
    busy, idle = TenantFactory(plan=standard), TenantFactory(plan=standard)  # busy first by id: wins a tie
    for tenant in (busy, idle):  # the same past usage: neither is a newcomer
        tenant_usage_charge(tenant_id=tenant.pk, seconds=600, at=now - timedelta(hours=3))
    running_since(busy, now - timedelta(hours=1))
    for _ in range(3):  # 1 + 6 of the plan's 8 slots run: one is free
        other = TenantFactory(plan=standard)
        running_since(other, now), running_since(other, now)
    busy_build = BuildFactory(tenant=busy, status=Build.Status.QUEUED, created_at=now - timedelta(minutes=5))
    idle_build = BuildFactory(tenant=idle, status=Build.Status.QUEUED, created_at=now)
    limits = dispatch.load_running().plans[standard.pk]

    def order():
        return [t["id"] for t in dispatch.waiting_tenants(limits, dispatch.load_running(), now, limit=10)]

    assert order() == [busy.pk, idle.pk]  # charged only at the end, the running hour would not count

    assert running_usage_charge(now=now) == 1  # busy only: the others started just now, not due a charge yet
    assert order() == [idle.pk, busy.pk]
    assert dispatch.dispatch_pending() == [idle_build.pk]
    assert Build.objects.get(pk=busy_build.pk).status == Build.Status.QUEUED
    assert decayed(busy, now) == pytest.approx(decayed(idle, now) + 3600, rel=1e-6)


def test_running_usage_charged_once_then_settled_without_double_counting(standard):
    now = timezone.now()
    tenant = TenantFactory(plan=standard)
    build = running_since(tenant, now - timedelta(hours=1))

    running_usage_charge(now=now)
    running_usage_charge(now=now + timedelta(seconds=30))  # not due yet: no second charge within the minute
    assert decayed(tenant, now) == pytest.approx(3600, rel=1e-6)
    running_usage_charge(now=now + timedelta(minutes=5))
    assert decayed(tenant, now + timedelta(minutes=5)) == pytest.approx(3600 * decay(5) + 300, rel=1e-6)

    build.refresh_from_db()
    build.status, build.ended_at = Build.Status.SUCCEEDED, now + timedelta(minutes=10)
    Build.objects.filter(pk=build.pk).update(status=build.status, ended_at=build.ended_at)
    assert build_usage_settle(build) == pytest.approx(300)  # only the last five minutes
    assert build_usage_settle(build) == 0.0  # settling twice charges nothing
    running_usage_charge(now=now + timedelta(minutes=20))  # not running any more
    # 70 minutes in all, charged in pieces, each decaying from the time it was charged (a double count: 7,800 s)
    assert decayed(tenant, now + timedelta(minutes=10)) == pytest.approx(3600 * decay(10) + 300 * decay(5) + 300,
                                                                         rel=1e-6)


def test_build_never_charged_while_running_is_charged_in_full_at_its_end(standard):
    now = timezone.now()
    tenant = TenantFactory(plan=standard)
    build = BuildFactory(tenant=tenant, status=Build.Status.SUCCEEDED, started_at=now - timedelta(minutes=30),
                         ended_at=now)
    assert build_usage_settle(build) == pytest.approx(1800)
    assert decayed(tenant, now) == pytest.approx(1800, rel=1e-6)
    assert Tenant.objects.get(pk=tenant.pk).fair_share_key is not None


def test_scheduler_tick_charges_running_builds_before_its_round(standard):
    from builds import execution

    now = timezone.now()
    tenant = TenantFactory(plan=standard)
    BuildFactory(tenant=tenant, status=Build.Status.RUNNING, started_at=now - timedelta(hours=1), heartbeat_at=now)

    counts = execution.reconcile()

    assert counts["usage_charged_tenants"] == 1
    assert decayed(tenant, timezone.now()) == pytest.approx(3600, rel=1e-3)
