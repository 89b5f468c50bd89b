"""Why a queued build waits, its position and estimated start: in the API, on the page, for each cause."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from builds.models import Build
from builds.waiting import Reason, waiting_for_builds
from tenants.models import Tenant
from tests.factories import BuildFactory, MembershipFactory, TenantFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def basic(reference_data):
    return plan("basic")  # plan limit 4, tenant limit 1


def running(tenant, n=1, **kw):
    return [BuildFactory(tenant=tenant, status=Build.Status.RUNNING, started_at=timezone.now(), **kw)
            for _ in range(n)]


def queued(tenant, **kw):
    return BuildFactory(tenant=tenant, status=Build.Status.QUEUED, queued_at=timezone.now(), **kw)


def reason_of(build):
    return waiting_for_builds([build])[build.pk]


def test_waiting_reason_tenant_limit(basic):
    tenant = TenantFactory(plan=basic)
    running(tenant)
    build = queued(tenant)
    w = reason_of(build)
    assert w.waiting_reason == Reason.TENANT_LIMIT
    assert "limit per tenant (1)" in w.waiting_message
    assert w.estimated_start_after < w.estimated_start_before


def test_waiting_reason_plan_limit(basic):
    for _ in range(4):
        running(TenantFactory(plan=basic))
    build = queued(TenantFactory(plan=basic))
    w = reason_of(build)
    assert (w.waiting_reason, w.queue_position) == (Reason.PLAN_LIMIT, 1)
    assert "limit of 4" in w.waiting_message


def test_waiting_reason_account_limit(reference_data, settings):
    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = 2
    running(TenantFactory(plan=plan("premium")), n=2)
    build = queued(TenantFactory(plan=plan("standard")))
    w = reason_of(build)
    assert w.waiting_reason == Reason.ACCOUNT_LIMIT
    assert "2 of at most 2" in w.waiting_message


def test_waiting_reason_reserved_share_holds_back_established_tenants(reference_data, settings):
    from tenants.services import scheduling_policy_update, tenant_usage_charge

    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = 10
    scheduling_policy_update(usage_half_life_hours=24, new_tenant_reserved_share=0.2)  # 2 slots held
    for _ in range(4):
        running(TenantFactory(plan=plan("premium")), n=2)  # 8 running: only newcomers may start
    busy = TenantFactory(plan=plan("standard"))
    tenant_usage_charge(tenant_id=busy.pk, seconds=3600)
    established, newcomer = queued(busy), queued(TenantFactory(plan=plan("standard")))
    facts = waiting_for_builds([established, newcomer])
    assert facts[established.pk].waiting_reason == Reason.ACCOUNT_LIMIT
    assert "2 slot(s) are held for newly active tenants" in facts[established.pk].waiting_message
    assert facts[newcomer.pk].waiting_reason == Reason.STARTING_SOON


def test_waiting_reason_throttled_retry(basic):
    later = timezone.now() + timedelta(minutes=3)
    build = queued(TenantFactory(plan=basic), not_before=later)
    w = reason_of(build)
    assert w.waiting_reason == Reason.THROTTLED_RETRY
    assert later.strftime("%H:%M:%S") in w.waiting_message
    assert w.estimated_start_after >= later


def test_waiting_reason_tenant_inactive(basic):
    tenant = TenantFactory(plan=basic)
    build = queued(tenant)
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert reason_of(build).waiting_reason == Reason.TENANT_INACTIVE


def test_waiting_reason_turn_behind_tenants_with_less_usage(basic):
    from tenants.services import tenant_usage_charge

    for _ in range(3):
        running(TenantFactory(plan=basic))  # one slot of four is free
    idle, heavy = TenantFactory(plan=basic), TenantFactory(plan=basic)
    tenant_usage_charge(tenant_id=heavy.pk, seconds=8 * 3600)
    heavy_build = queued(heavy)
    idle_build = queued(idle)
    facts = waiting_for_builds([heavy_build, idle_build])
    assert (facts[idle_build.pk].waiting_reason, facts[idle_build.pk].queue_position) == (Reason.STARTING_SOON, 1)
    assert (facts[heavy_build.pk].waiting_reason, facts[heavy_build.pk].queue_position) == (Reason.FAIR_SHARE_TURN, 2)
    assert facts[heavy_build.pk].waiting_message == "Waiting for its turn behind 1 tenant(s) of its plan."


def test_queue_position_counts_own_older_builds(basic):
    for _ in range(4):
        running(TenantFactory(plan=basic))
    tenant = TenantFactory(plan=basic)
    builds = [queued(tenant, created_at=timezone.now() + timedelta(seconds=i)) for i in range(3)]
    facts = waiting_for_builds(builds)
    assert [facts[b.pk].queue_position for b in builds] == [1, 2, 3]


def test_estimated_start_uses_recent_build_durations(basic):
    from builds import dispatch

    dispatch._recent_cache.clear()
    tenant = TenantFactory(plan=basic)
    now = timezone.now()
    for minutes in (10, 10, 20, 20):
        BuildFactory(tenant=tenant, status=Build.Status.SUCCEEDED, started_at=now - timedelta(minutes=minutes + 1),
                     ended_at=now - timedelta(minutes=1))
    running(tenant)
    build = queued(tenant)
    w = waiting_for_builds([build], now=now)[build.pk]
    dispatch._recent_cache.clear()
    # one wave of the tenant's single slot: up to the 75th percentile (20 min) from now
    assert w.estimated_start_after == now
    assert w.estimated_start_before == now + timedelta(minutes=20)


def test_api_build_detail_and_list_carry_waiting_fields(basic, api_client_for, django_assert_max_num_queries):
    tenant = TenantFactory(plan=basic)
    member = MembershipFactory(tenant=tenant).user
    running(tenant)
    build = queued(tenant)
    client = api_client_for(member)
    body = client.get(f"/api/v1/builds/{build.code}").json()
    assert body["waiting_reason"] == Reason.TENANT_LIMIT
    assert body["queue_position"] == 1
    assert body["waiting_message"].startswith("The tenant already runs 1 build(s)")
    assert body["estimated_start_after"] and body["estimated_start_before"]
    items = {i["id"]: i for i in client.get("/api/v1/builds").json()["items"]}
    assert items[str(build.code)]["waiting_reason"] == Reason.TENANT_LIMIT
    assert [v["waiting_reason"] for k, v in items.items() if k != str(build.code)] == [None]  # the running one

    def list_queries(n_more: int) -> int:
        for _ in range(n_more):
            queued(TenantFactory(plan=basic))
        staff_client = api_client_for(_staff())
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get("/api/v1/builds").status_code == 200
        return len(ctx.captured_queries)

    assert list_queries(0) == list_queries(30)


def _staff():
    from django.contrib.auth.models import User

    return User.objects.get_or_create(username="staff-waiting", defaults={"is_staff": True})[0]


def test_api_waiting_fields_hidden_from_another_tenant(basic, api_client_for):
    build = queued(TenantFactory(plan=basic))
    stranger = MembershipFactory(tenant=TenantFactory(plan=basic)).user
    response = api_client_for(stranger).get(f"/api/v1/builds/{build.code}")
    assert response.status_code == 404
    assert str(build.code) not in response.content.decode()


def test_build_page_shows_reason_and_position(basic, client):
    tenant = TenantFactory(plan=basic)
    member = MembershipFactory(tenant=tenant).user
    running(tenant)
    build = queued(tenant)
    client.force_login(member)
    html = client.get(f"/builds/{build.code}/").content.decode()
    assert 'data-reason="tenant_limit"' in html
    assert "Position 1" in html and "The tenant already runs 1 build(s)" in html


def test_staff_queue_page_shows_plans_and_longest_waits(basic, client, staff_user, django_assert_max_num_queries):
    tenant = TenantFactory(plan=basic)
    running(tenant)
    build = queued(tenant)
    client.force_login(staff_user)
    html = client.get("/builds/queue/").content.decode()
    assert 'id="queue-plan-basic"' in html and 'data-reason="tenant_limit"' in html
    assert build.dataset_name in html
    for _ in range(20):
        queued(TenantFactory(plan=basic))
    with django_assert_max_num_queries(30):
        assert client.get("/builds/queue/").status_code == 200


def test_queue_page_is_staff_only(basic, client):
    member = MembershipFactory(tenant=TenantFactory(plan=basic)).user
    client.force_login(member)
    assert client.get("/builds/queue/").status_code == 404
