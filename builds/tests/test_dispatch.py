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


# ----- fair share with memory, reservation, borrowing (issue 14) -----

def fair(keys=None, weights=None, charge=None, new=(), reserved=0):
    from builds.dispatch import FairShare

    return FairShare(keys=keys or {}, weights=weights or {}, pick_charge_log2=charge or {},
                     new_tenants=frozenset(new), reserved=reserved)


def test_choose_idle_tenant_goes_before_one_that_ran_all_day():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=1, tenant_limit=1)}
    queued = cands(1, 1, 3) + cands(1, 2, 1, start=100)  # tenant 1 queued first, but used far more
    chosen = choose(queued, plans, {}, {}, 0, 20, fair=fair(keys={1: 30.0, 2: 12.0}))
    assert [c.tenant_id for c in chosen] == [2]
    never_charged = choose(queued + cands(1, 3, 1, start=200), plans, {}, {}, 0, 20,
                           fair=fair(keys={1: 30.0, 2: 12.0, 3: None}))
    assert [c.tenant_id for c in never_charged] == [3]


def test_choose_weights_share_a_round():
    """Equal usage, weight 2 against weight 1: each pick charges a build, so the round splits 2:1."""
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=6, tenant_limit=6)}
    queued = cands(1, 1, 6) + cands(1, 2, 6, start=100)
    usage = 20.0  # log2 of both tenants' forward-decayed usage
    chosen = choose(queued, plans, {}, {}, 0, 20, fair=fair(
        keys={1: usage - 1.0, 2: usage}, weights={1: 2.0, 2: 1.0}, charge={1: usage}))
    assert [c.tenant_id for c in chosen].count(1) == 4
    assert [c.tenant_id for c in chosen].count(2) == 2


def test_decayed_usage_ordering_forgets_old_usage(reference_data):
    """A day's heavy use a week ago weighs less than an hour's use now (half-life one day)."""
    from datetime import timedelta

    from tenants import fairshare

    now = datetime(2026, 6, 1, tzinfo=UTC)
    long_ago = fairshare.charge_log2(None, seconds=24 * 3600, at=now - timedelta(days=7), half_life_hours=24)
    recent = fairshare.charge_log2(None, seconds=3600, at=now, half_life_hours=24)
    assert fairshare.fair_share_key(long_ago, 1) < fairshare.fair_share_key(recent, 1)
    assert fairshare.decayed_seconds(long_ago, at=now, half_life_hours=24) == pytest.approx(24 * 3600 / 128)
    rescaled = fairshare.rescale_log2(long_ago, at=now, old_hours=24, new_hours=12)
    assert fairshare.decayed_seconds(rescaled, at=now, half_life_hours=12) == pytest.approx(24 * 3600 / 128)


def test_tenant_usage_charge_and_half_life_change_keep_the_order(reference_data):
    from tenants.models import Tenant
    from tenants.services import scheduling_policy_update, tenant_set_fair_share_weight, tenant_usage_charge
    from tests.factories import TenantFactory

    heavy, light = TenantFactory(), TenantFactory()
    tenant_usage_charge(tenant_id=heavy.pk, seconds=7200)
    tenant_usage_charge(tenant_id=light.pk, seconds=600)
    order = lambda: list(Tenant.objects.filter(pk__in=[heavy.pk, light.pk])  # noqa: E731
                         .order_by("fair_share_key").values_list("pk", flat=True))
    assert order() == [light.pk, heavy.pk]
    tenant_set_fair_share_weight(tenant=heavy, weight=20)  # 7200 / 20 < 600 / 1
    assert order() == [heavy.pk, light.pk]
    scheduling_policy_update(usage_half_life_hours=2, new_tenant_reserved_share=0.1)
    assert order() == [heavy.pk, light.pk]  # rescaled together: a half-life change moves nobody


def test_choose_reserves_account_share_for_newly_active_tenants():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=20, tenant_limit=5),
             2: PlanLimits(2, tier_rank=3, plan_limit=20, tenant_limit=5)}
    backlog = cands(2, 1, 5)  # an established premium tenant with work
    newcomer = cands(1, 2, 1, start=100)  # a basic tenant that just uploaded
    chosen = choose(backlog + newcomer, plans, {2: 8}, {1: 0, 3: 8}, account_running=8, account_limit=10,
                    fair=fair(keys={1: 15.0, 2: None}, new=[2], reserved=2))
    assert [c.tenant_id for c in chosen] == [2]  # the held slots: the newcomer only, despite the lower tier
    without_newcomer = choose(backlog, plans, {2: 8}, {3: 8}, 8, 10, fair=fair(keys={1: 15.0}, reserved=2))
    assert without_newcomer == []  # established tenants never take the last reserved slots
    no_reserve = choose(backlog + newcomer, plans, {2: 8}, {3: 8}, 8, 10, fair=fair(keys={1: 15.0}, new=[2]))
    assert [c.plan_id for c in no_reserve] == [2, 2]  # without a reservation higher tiers go first


def test_choose_borrows_idle_capacity_up_to_the_borrowing_limit():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=2, tenant_limit=1, borrowing_limit=3),
             2: PlanLimits(2, tier_rank=2, plan_limit=10, tenant_limit=1)}
    busy = [c for t in range(1, 11) for c in cands(1, t, 2, start=t * 10)]
    chosen = choose(busy, plans, {}, {}, 0, 20)
    assert len(chosen) == 5  # its own 2, then 3 borrowed of plan 2's idle 10: the borrowing limit
    small_lender = {1: plans[1], 2: PlanLimits(2, tier_rank=2, plan_limit=1, tenant_limit=1)}
    assert len(choose(busy, small_lender, {}, {}, 0, 20)) == 3  # only 1 idle slot to borrow


def test_choose_takes_borrowed_capacity_back_by_not_starting_more():
    plans = {1: PlanLimits(1, tier_rank=1, plan_limit=2, tenant_limit=1, borrowing_limit=3),
             2: PlanLimits(2, tier_rank=1, plan_limit=4, tenant_limit=1)}
    borrower_more = [c for t in range(20, 30) for c in cands(1, t, 1, start=t)]
    lender_back = cands(2, 1, 1, start=500) + cands(2, 2, 1, start=501)
    running_plan, running_tenant = {1: 5}, {t: 1 for t in range(10, 15)}  # plan 1 runs 3 borrowed
    chosen = choose(borrower_more + lender_back, plans, running_plan, running_tenant, 5, 7)
    assert [c.plan_id for c in chosen] == [2, 2]  # the lender's own first; nothing more borrowed
    later = choose(borrower_more, plans, {1: 5, 2: 2}, running_tenant, 7, 20)
    assert later == []  # 2 idle in plan 2 < 3 already borrowed: no further borrowed build
