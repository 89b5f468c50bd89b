"""Fair dispatch under plan, tenant and account limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from builds.dispatch import Candidate, PlanLimits, choose

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cands(plan_id: int, tenant_id: int, n: int, start: int = 0) -> list[Candidate]:
    return [Candidate(build_id=tenant_id * 1000 + start + i, tenant_id=tenant_id, plan_id=plan_id,
                      created_at=T0 + timedelta(seconds=start + i)) for i in range(n)]


def test_choose_round_robin_between_tenants_of_a_plan():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=3, tenant_limit=3)}
    burst = cands(1, tenant_id=1, n=100)  # tenant 1 uploads 100 files first
    single = cands(1, tenant_id=2, n=1, start=500)
    chosen = choose(burst + single, plans, {}, {}, account_running=0, account_limit=20)
    assert [c.tenant_id for c in chosen] == [1, 2, 1]


def test_choose_respects_tenant_plan_and_account_limits():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=4, tenant_limit=1)}
    queued = cands(1, 1, 5) + cands(1, 2, 5) + cands(1, 3, 5)
    chosen = choose(queued, plans, running_by_plan={1: 2}, running_by_tenant={1: 1, 2: 1},
                    account_running=2, account_limit=20)
    assert [c.tenant_id for c in chosen] == [3]
    chosen = choose(queued, plans, {}, {}, account_running=19, account_limit=20)
    assert len(chosen) == 1


def test_choose_serves_higher_tier_first_when_account_capacity_is_short():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=10, tenant_limit=5),
             2: PlanLimits(2, tier_rank=3, plan_limit=10, tenant_limit=5)}
    basic = cands(1, 1, 5)  # queued earlier
    premium = cands(2, 2, 5, start=100)
    chosen = choose(basic + premium, plans, {}, {}, account_running=17, account_limit=20)
    assert [c.plan_id for c in chosen] == [2, 2, 2]


def test_choose_least_recently_served_tenant_goes_first():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=1, tenant_limit=1)}
    queued = cands(1, 1, 1) + cands(1, 2, 1, start=10)
    chosen = choose(queued, plans, {}, {}, 0, 20, tenant_last_served={1: T0 + timedelta(hours=1), 2: None})
    assert [c.tenant_id for c in chosen] == [2]


@pytest.fixture
def queued_builds(db, reference_data):
    """Tenants and queued builds as rows only (no AWS needed for dispatch)."""
    from builds.models import Algorithm, Build
    from tenants.models import Plan, Tenant

    algorithm = Algorithm.objects.get(slug="gbm-classifier")

    def make(plan_slug: str, tenant_count: int, per_tenant: int) -> list[Tenant]:
        plan = Plan.objects.get(slug=plan_slug)
        tenants = []
        for t in range(tenant_count):
            tenant = Tenant.objects.create(slug=f"{plan_slug}-{t}", name=f"T{t}", plan=plan, isolation="pool",
                                           status=Tenant.Status.ACTIVE, bucket="b", prefix=f"tenants/{plan_slug}-{t}/")
            tenants.append(tenant)
            Build.objects.bulk_create([
                Build(tenant=tenant, plan=plan, algorithm=algorithm, target="y", dataset_bucket="b",
                      dataset_key=f"tenants/{tenant.slug}/uploads/{i}.csv", status=Build.Status.QUEUED)
                for i in range(per_tenant)])
        return tenants

    return make


def test_dispatch_pending_starts_within_limits_and_records_transitions(
        queued_builds, clean_redis, django_capture_on_commit_callbacks):
    import django_rq

    from builds.dispatch import dispatch_pending
    from builds.models import Build, BuildTransition
    from tenants.models import Plan

    queued_builds("basic", tenant_count=3, per_tenant=4)  # basic: plan limit 4, tenant limit 1
    with django_capture_on_commit_callbacks(execute=True):
        started = dispatch_pending()
    basic = Plan.objects.get(slug="basic")
    assert len(started) == 3  # one per tenant (tenant limit 1)
    assert Build.objects.filter(status=Build.Status.STARTING).count() == 3
    assert BuildTransition.objects.filter(to_status="starting", reason="capacity available").count() == 3
    assert dispatch_pending() == []  # every tenant is at its limit
    assert Build.objects.filter(status=Build.Status.QUEUED, plan=basic).count() == 9
    # enqueued after commit on the plan's queue, one job per started build
    codes = Build.objects.filter(id__in=started).values_list("code", flat=True)
    assert sorted(django_rq.get_queue("plan-basic").job_ids) == sorted(f"build-execute-{c}" for c in codes)


def test_plan_change_applies_to_queued_builds_when_they_start(reference_data, clean_redis, monkeypatch):
    """tenants never touch builds: the dispatcher starts a queued build under the tenant's plan of the moment."""
    from builds import queues
    from builds.dispatch import dispatch_pending
    from builds.models import Build
    from tenants.models import Plan
    from tenants.services import tenant_change_plan
    from tests.factories import BuildFactory, TenantFactory, plan

    enqueued = []
    monkeypatch.setattr(queues, "enqueue_execute_many", enqueued.extend)
    tenant = TenantFactory(plan=plan("basic"), role_arn="")  # no role: no AWS re-tagging
    queued = BuildFactory(tenant=tenant, status=Build.Status.QUEUED)
    tenant_change_plan(tenant=tenant, plan=Plan.objects.get(slug="premium"))
    queued.refresh_from_db()
    assert queued.plan.slug == "basic"  # the plan change itself wrote nothing of builds

    with monkeypatch.context() as m:
        m.setattr("django.db.transaction.on_commit", lambda fn, *a, **k: fn())
        assert dispatch_pending() == [queued.pk]
    queued.refresh_from_db()
    assert (queued.status, queued.plan.slug) == (Build.Status.STARTING, "premium")
    assert enqueued == [(queued.pk, str(queued.code), "plan-premium")]
