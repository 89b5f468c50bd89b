"""Fair dispatch under limits.

A queued build starts only while its plan's limit, its tenant's limit (from
the plan) and the account-wide limit all hold. Higher tiers go first; within
a plan, tenants take turns (round robin, least recently served first), so a
burst from one tenant cannot starve the others.

`choose` is a pure function (benchmarked in bench/dispatch.py); `dispatch_pending`
runs it under a database lock so concurrent dispatchers never exceed a limit.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from builds.models import Build, BuildTransition
from tenants.models import Plan, Tenant

logger = logging.getLogger(__name__)

DISPATCH_LOCK_ID = 7310423


@dataclass(frozen=True)
class PlanLimits:
    plan_id: int
    tier_rank: int
    plan_limit: int
    tenant_limit: int


@dataclass(frozen=True)
class Candidate:
    build_id: int
    tenant_id: int
    plan_id: int
    created_at: datetime


def choose(
    candidates: list[Candidate],
    plans: dict[int, PlanLimits],
    running_by_plan: dict[int, int],
    running_by_tenant: dict[int, int],
    account_running: int,
    account_limit: int,
    tenant_last_served: dict[int, datetime | None] | None = None,
) -> list[Candidate]:
    """Pick the builds to start now, in start order."""
    tenant_last_served = tenant_last_served or {}
    by_plan: dict[int, dict[int, deque[Candidate]]] = defaultdict(lambda: defaultdict(deque))
    for cand in sorted(candidates, key=lambda c: (c.created_at, c.build_id)):
        by_plan[cand.plan_id][cand.tenant_id].append(cand)
    chosen: list[Candidate] = []
    account_free = account_limit - account_running
    running_tenant = dict(running_by_tenant)
    epoch = datetime.min.replace(tzinfo=UTC)
    for plan in sorted((plans[p] for p in by_plan if p in plans), key=lambda p: (-p.tier_rank, p.plan_id)):
        if account_free <= 0:
            break
        plan_free = plan.plan_limit - running_by_plan.get(plan.plan_id, 0)
        tenants = by_plan[plan.plan_id]
        order = deque(sorted(tenants, key=lambda t: (tenant_last_served.get(t) or epoch, tenants[t][0].created_at)))
        while order and plan_free > 0 and account_free > 0:
            tenant_id = order.popleft()
            if running_tenant.get(tenant_id, 0) >= plan.tenant_limit or not tenants[tenant_id]:
                continue
            chosen.append(tenants[tenant_id].popleft())
            running_tenant[tenant_id] = running_tenant.get(tenant_id, 0) + 1
            plan_free -= 1
            account_free -= 1
            order.append(tenant_id)
    return chosen


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK_ID])
    # SQLite: transactions start IMMEDIATE (settings), which already serialises writers.


def load_state():
    plans = {p.id: PlanLimits(p.id, p.tier_rank, p.plan_concurrent_limit, p.tenant_concurrent_limit)
             for p in Plan.objects.all()}
    running = list(Build.objects.filter(status__in=Build.ACTIVE).values("plan_id", "tenant_id")
                   .annotate(n=Count("id")))
    running_by_plan: dict[int, int] = defaultdict(int)
    running_by_tenant: dict[int, int] = defaultdict(int)
    for row in running:
        running_by_plan[row["plan_id"]] += row["n"]
        running_by_tenant[row["tenant_id"]] += row["n"]
    max_tenant_limit = max((p.tenant_limit for p in plans.values()), default=1)
    # Only the first few queued builds of each tenant can start now: the window
    # keeps the candidate set small even with thousands queued.
    now = timezone.now()
    ranked = (Build.objects.filter(status=Build.Status.QUEUED, tenant__status=Tenant.Status.ACTIVE)
              .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
              .annotate(rank=Window(RowNumber(), partition_by=[F("tenant_id")], order_by=[F("created_at"), F("id")]))
              # the plan the tenant has now: a plan change applies to builds that have not started
              .values_list("id", "tenant_id", "tenant__plan_id", "created_at", "rank"))
    candidates = [Candidate(i, t, p, c) for i, t, p, c, rank in ranked.filter(rank__lte=max_tenant_limit)]
    tenant_ids = {c.tenant_id for c in candidates}
    last_served = dict(Tenant.objects.filter(id__in=tenant_ids).values_list("id", "last_dispatched_at"))
    return plans, running_by_plan, running_by_tenant, sum(running_by_plan.values()), candidates, last_served


def dispatch_pending() -> list[int]:
    """Move as many queued builds to `starting` as the limits allow; enqueue their runs."""
    with transaction.atomic():
        _lock()
        plans, by_plan, by_tenant, account_running, candidates, last_served = load_state()
        chosen = choose(candidates, plans, by_plan, by_tenant, account_running,
                        settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT, last_served)
        now = timezone.now()
        started: list[int] = []
        for cand in chosen:
            if Build.objects.filter(pk=cand.build_id, status=Build.Status.QUEUED).update(
                    status=Build.Status.STARTING, plan_id=cand.plan_id) == 1:
                started.append(cand.build_id)
                Tenant.objects.filter(pk=cand.tenant_id).update(last_dispatched_at=now)
        BuildTransition.objects.bulk_create([
            BuildTransition(build_id=b, from_status=Build.Status.QUEUED, to_status=Build.Status.STARTING,
                            reason="capacity available", at=now) for b in started])
        if started:
            from builds import queues

            plan_slugs = dict(Plan.objects.values_list("id", "slug"))
            queue_of = {c.build_id: queues.plan_queue_name(plan_slugs[c.plan_id]) for c in chosen}
            codes = dict(Build.objects.filter(pk__in=started).values_list("pk", "code"))
            runs = [(b, str(codes[b]), queue_of[b]) for b in started]
            transaction.on_commit(lambda: queues.enqueue_execute_many(runs))
    return started
