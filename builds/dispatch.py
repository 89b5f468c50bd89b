"""Fair dispatch under limits, at a cost set by the free slots, not by the queue.

A queued build starts only while its plan's limit (plus what the plan may borrow), its
tenant's limit (from the plan) and the account-wide limit all hold. The order:

1. newly active tenants (nothing running, under a build-minute of decayed usage) first, one
   build each, as many as the share of the account reserved for them (`SchedulingPolicy.
   new_tenant_reserved_share`), whatever their tier; that share is held: established
   tenants never fill the last reserved slots of the account;
2. then each plan, higher tiers first, fills its own concurrent limit; inside a plan tenants
   go by decayed usage divided by weight (`tenants.fairshare`), least first, each pick
   charging the tenant the plan's typical build time, so a tenant that ran all day waits
   behind one that was idle and weights share a round;
3. then plans that still have work borrow capacity other plans leave idle, each up to its
   `borrowing_limit`. A lender that gets work back is served in step 2 before anyone borrows
   again: borrowed capacity is taken back by starting no further borrowed builds.

A round reads the running counts (bounded by the account limit), skips at once when nothing
is free, fetches per plan only the first tenants in fair-share order that can start (as many
as the plan has room for) and per such tenant only as many of its oldest startable builds as
it has free slots, claims them with one UPDATE and enqueues them with one Redis pipeline.

`choose` is a pure function (benchmarked in bench/dispatch.py, simulated in
bench/fairness.py); `dispatch_pending` runs it under a database lock so concurrent
dispatchers never exceed a limit. Dispatch requests are coalesced (`builds.queues.
enqueue_dispatch`): many uploads or finished builds in a burst cost one round.
"""

from __future__ import annotations

import heapq
import logging
import math
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from builds.models import Build, BuildTransition
from tenants import budgets, fairshare
from tenants.models import Plan, Tenant

logger = logging.getLogger(__name__)

DISPATCH_LOCK_ID = 7310423
DEFAULT_BUILD_SECONDS = 600.0  # a pick's provisional charge when a plan has no finished builds yet
EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PlanLimits:
    plan_id: int
    tier_rank: int
    plan_limit: int
    tenant_limit: int
    borrowing_limit: int = 0


@dataclass(frozen=True)
class Candidate:
    build_id: int
    tenant_id: int
    plan_id: int
    created_at: datetime


@dataclass
class FairShare:
    """Per-tenant fair-share facts for one round (None everywhere: plain round robin)."""

    keys: dict[int, float | None] = field(default_factory=dict)  # Tenant.fair_share_key
    weights: dict[int, float] = field(default_factory=dict)
    pick_charge_log2: dict[int, float] = field(default_factory=dict)  # per plan: log2(typical s) + half-lives now
    new_tenants: frozenset[int] = frozenset()
    reserved: int = 0  # account slots only newly active tenants may take


@dataclass
class _Round:
    plans: dict[int, PlanLimits]
    running_plan: dict[int, int]
    running_tenant: dict[int, int]
    account_free: int
    reserved: int
    queues: dict[int, dict[int, deque[Candidate]]]
    chosen: list[Candidate] = field(default_factory=list)

    def take(self, plan_id: int, tenant_id: int) -> None:
        self.chosen.append(self.queues[plan_id][tenant_id].popleft())
        self.running_plan[plan_id] = self.running_plan.get(plan_id, 0) + 1
        self.running_tenant[tenant_id] = self.running_tenant.get(tenant_id, 0) + 1
        self.account_free -= 1

    def tenant_can_start(self, plan: PlanLimits, tenant_id: int) -> bool:
        return bool(self.queues[plan.plan_id][tenant_id]) and \
            self.running_tenant.get(tenant_id, 0) < plan.tenant_limit

    def established_free(self) -> int:
        return self.account_free - self.reserved


def choose(
    candidates: list[Candidate],
    plans: dict[int, PlanLimits],
    running_by_plan: dict[int, int],
    running_by_tenant: dict[int, int],
    account_running: int,
    account_limit: int,
    tenant_last_served: dict[int, datetime | None] | None = None,
    fair: FairShare | None = None,
) -> list[Candidate]:
    """Pick the builds to start now, in start order (see the module docstring for the passes)."""
    queues: dict[int, dict[int, deque[Candidate]]] = defaultdict(lambda: defaultdict(deque))
    for cand in sorted(candidates, key=lambda c: (c.created_at, c.build_id)):
        queues[cand.plan_id][cand.tenant_id].append(cand)
    state = _Round(plans, dict(running_by_plan), dict(running_by_tenant), account_limit - account_running,
                   fair.reserved if fair else 0, queues)
    order = _TenantOrder(queues, tenant_last_served or {}, fair)
    tiers = sorted((plans[p] for p in queues if p in plans), key=lambda p: (-p.tier_rank, p.plan_id))
    if fair and fair.new_tenants and fair.reserved:
        _newcomers_pass(state, tiers, order, fair.new_tenants, fair.reserved)
    for plan in tiers:
        _fill(state, plan, order, ceiling=plan.plan_limit, pool=None)
    pool = _lendable(state)
    for plan in tiers:
        if pool <= 0:
            break
        before = len(state.chosen)
        _fill(state, plan, order, ceiling=plan.plan_limit + plan.borrowing_limit, pool=pool)
        pool -= len(state.chosen) - before
    return state.chosen


class _TenantOrder:
    """Tenants of a plan, least decayed usage per weight first; a pick re-ranks the tenant."""

    def __init__(self, queues, last_served, fair: FairShare | None) -> None:
        self.queues, self.last_served, self.fair = queues, last_served, fair
        self.keys = dict(fair.keys) if fair else {}
        self.picks: dict[int, int] = defaultdict(int)

    def rank(self, plan_id: int, tenant_id: int) -> tuple:
        key = self.keys.get(tenant_id)
        # Round robin alone (no fair-share facts): picks this round, then least recently served.
        return (0 if self.fair else self.picks[tenant_id], key is not None, key or 0.0,
                self.last_served.get(tenant_id) or EPOCH, self.queues[plan_id][tenant_id][0].created_at, tenant_id)

    def picked(self, plan_id: int, tenant_id: int) -> None:
        self.picks[tenant_id] += 1
        if self.fair and plan_id in self.fair.pick_charge_log2:
            weight = math.log2(max(self.fair.weights.get(tenant_id, 1.0), 1e-6))
            usage = self.keys.get(tenant_id)
            usage = None if usage is None else usage + weight
            self.keys[tenant_id] = fairshare.logaddexp2(usage, self.fair.pick_charge_log2[plan_id]) - weight

    def heap(self, plan_id: int, tenants) -> list[tuple]:
        heap = [(self.rank(plan_id, t), t) for t in tenants]
        heapq.heapify(heap)
        return heap


def _newcomers_pass(state: _Round, tiers: list[PlanLimits], order: _TenantOrder, new: frozenset[int],
                    reserved: int) -> None:
    """Newly active tenants first, one build each, at most `reserved` a round: the held share is theirs."""
    for plan in tiers:
        for tenant_id in sorted((t for t in state.queues[plan.plan_id] if t in new),
                                key=lambda t: order.rank(plan.plan_id, t)):
            if state.account_free <= 0 or reserved <= 0:
                return
            if state.running_plan.get(plan.plan_id, 0) >= plan.plan_limit:
                break
            if state.tenant_can_start(plan, tenant_id):
                state.take(plan.plan_id, tenant_id)
                order.picked(plan.plan_id, tenant_id)
                reserved -= 1


def _fill(state: _Round, plan: PlanLimits, order: _TenantOrder, *, ceiling: int, pool: int | None) -> None:
    """Start builds of one plan up to `ceiling` running (and, when borrowing, `pool` more at most)."""
    taken = 0
    heap = order.heap(plan.plan_id, [t for t in state.queues[plan.plan_id] if state.tenant_can_start(plan, t)])
    while heap and state.established_free() > 0 and state.running_plan.get(plan.plan_id, 0) < ceiling:
        if pool is not None and taken >= pool:
            return
        _, tenant_id = heapq.heappop(heap)
        state.take(plan.plan_id, tenant_id)
        order.picked(plan.plan_id, tenant_id)
        taken += 1
        if state.tenant_can_start(plan, tenant_id):
            heapq.heappush(heap, (order.rank(plan.plan_id, tenant_id), tenant_id))


def _lendable(state: _Round) -> int:
    """Idle capacity of plans with nothing left that could start, less what is already borrowed."""
    idle = borrowed = 0
    for plan in state.plans.values():
        running = state.running_plan.get(plan.plan_id, 0)
        borrowed += max(0, running - plan.plan_limit)
        waiting = any(state.tenant_can_start(plan, t) for t in state.queues.get(plan.plan_id, {}))
        if not waiting:
            idle += max(0, plan.plan_limit - running)
    return idle - borrowed


# ----- the database side: state, candidates, claim -----

def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK_ID])
    # SQLite: transactions start IMMEDIATE (settings), which already serialises writers.


@dataclass
class DispatchState:
    plans: dict[int, PlanLimits]
    running_by_plan: dict[int, int]
    running_by_tenant: dict[int, int]
    account_running: int
    account_limit: int
    half_life_hours: float
    reserved_share: float

    @property
    def account_free(self) -> int:
        return self.account_limit - self.account_running

    def plan_room(self, plan: PlanLimits) -> int:
        """Builds this plan could still start at most (its limit plus what it may borrow, within the account)."""
        ceiling = plan.plan_limit + plan.borrowing_limit
        return max(0, min(ceiling - self.running_by_plan.get(plan.plan_id, 0), self.account_free))


def load_running() -> DispatchState:
    """Limits and running counts: rows bounded by the number of active builds (the account limit)."""
    from tenants.services import scheduling_policy

    policy = scheduling_policy()
    plans = {p.id: PlanLimits(p.id, p.tier_rank, p.plan_concurrent_limit, p.tenant_concurrent_limit,
                              p.borrowing_limit) for p in Plan.objects.all()}
    running_by_plan: dict[int, int] = defaultdict(int)
    running_by_tenant: dict[int, int] = defaultdict(int)
    for row in Build.objects.filter(status__in=Build.ACTIVE).values("plan_id", "tenant_id").annotate(n=Count("id")):
        running_by_plan[row["plan_id"]] += row["n"]
        running_by_tenant[row["tenant_id"]] += row["n"]
    return DispatchState(plans, running_by_plan, running_by_tenant, sum(running_by_plan.values()),
                         settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT, policy.usage_half_life_hours,
                         policy.new_tenant_reserved_share)


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def waiting_tenants(plan: PlanLimits, state: DispatchState, now: datetime, limit: int) -> list[dict]:
    """The first `limit` tenants of a plan in fair-share order that have a build that could start now.

    Raw SQL: this and `oldest_startable` run on every round, and building them with the ORM
    cost more than running them. Tenants at their limit are skipped here rather than in SQL;
    tenants held by their budget cap (`tenants.budgets`) are left out in SQL.
    """
    full = {t for t, n in state.running_by_tenant.items() if n >= plan.tenant_limit}
    rows = _rows(
        f"SELECT t.id, t.usage_log2, t.fair_share_key, t.fair_share_weight, t.last_dispatched_at "
        f"FROM {Tenant._meta.db_table} t WHERE t.plan_id = %s AND t.status = %s AND {budgets.NOT_CAPPED_SQL} "
        f"AND EXISTS (SELECT 1 FROM {Build._meta.db_table} b{_queued_probe_hint()} WHERE b.tenant_id = t.id "
        f"AND b.status = '{Build.Status.QUEUED}' AND (b.not_before IS NULL OR b.not_before <= %s)) "
        "ORDER BY t.fair_share_key ASC NULLS FIRST, t.last_dispatched_at ASC NULLS FIRST, t.id LIMIT %s",
        [plan.plan_id, Tenant.Status.ACTIVE, budgets.billing_month(now), now, limit + len(full)])
    names = ("id", "usage_log2", "fair_share_key", "fair_share_weight", "last_dispatched_at")
    found = [dict(zip(names, row, strict=True)) for row in rows if row[0] not in full]
    for row in found:
        row["last_dispatched_at"] = _aware(row["last_dispatched_at"])
    return found[:limit]


def _queued_probe_hint() -> str:
    """SQLite, without statistics, probes `build_status_id` (every queued build, per tenant) instead of the
    partial index of each tenant's queued builds: 5 s a plan at 100,000 queued. Name the index there
    (the status is then a literal in the SQL: SQLite matches a partial index's condition only against one)."""
    return " INDEXED BY build_queued_by_tenant" if connection.vendor == "sqlite" else ""


def _aware(value) -> datetime | None:
    """SQLite through a raw cursor gives naive UTC datetimes (or strings): make them aware."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def oldest_startable(slots: dict[int, int], now: datetime) -> list[tuple[int, int, datetime]]:
    """(build id, tenant id, created_at): each tenant's `slots[tenant]` oldest builds that could start now.

    One index probe per tenant on build_queued_by_tenant (cost set by the slots, not by how
    many the tenant has queued): PostgreSQL with a LATERAL join, SQLite with a UNION ALL of
    per-tenant LIMIT subqueries (in chunks, SQLite allows 500 terms in a compound SELECT).
    """
    if not slots:
        return []
    table = Build._meta.db_table
    if connection.vendor == "postgresql":
        return _rows(
            f"SELECT b.id, t.tenant_id, b.created_at FROM unnest(%s::bigint[], %s::int[]) AS t(tenant_id, k) "
            f"CROSS JOIN LATERAL (SELECT id, created_at FROM {table} "
            "WHERE tenant_id = t.tenant_id AND status = %s AND (not_before IS NULL OR not_before <= %s) "
            "ORDER BY created_at, id LIMIT t.k) b",
            [list(slots), list(slots.values()), Build.Status.QUEUED, now])
    found: list[tuple[int, int, datetime]] = []
    items = list(slots.items())
    term = (f"SELECT * FROM (SELECT id, tenant_id, created_at FROM {table} WHERE tenant_id = %s AND status = %s "
            "AND (not_before IS NULL OR not_before <= %s) ORDER BY created_at, id LIMIT %s)")
    for chunk in range(0, len(items), 400):
        part = items[chunk:chunk + 400]
        params: list = []
        for tenant_id, k in part:
            params += [tenant_id, Build.Status.QUEUED, now, k]
        found += [(b, t, _aware(c))
                  for b, t, c in _rows(" UNION ALL ".join([term] * len(part)), params)]
    return found


_recent_cache: dict[str, tuple[float, dict[int, list[float]]]] = {}
RECENT_BUILDS = 50
RECENT_CACHE_SECONDS = 60.0


def recent_build_seconds() -> dict[int, list[float]]:
    """Run times (started -> ended, seconds, ascending) of each plan's last 50 succeeded builds.

    One indexed query per plan (build_plan_recent_end), cached for a minute per process:
    a dispatch round and a page of queued builds both read it.
    """
    import time

    cached = _recent_cache.get("v")
    if cached and time.monotonic() - cached[0] < RECENT_CACHE_SECONDS:
        return cached[1]
    result: dict[int, list[float]] = {}
    for plan_id in Plan.objects.values_list("id", flat=True):
        rows = (Build.objects.filter(plan_id=plan_id, status=Build.Status.SUCCEEDED, ended_at__isnull=False,
                                     started_at__isnull=False)
                .order_by("-ended_at").values_list("started_at", "ended_at")[:RECENT_BUILDS])
        result[plan_id] = sorted(max(0.0, (e - s).total_seconds()) for s, e in rows)
    _recent_cache["v"] = (time.monotonic(), result)
    return result


def typical_build_seconds() -> dict[int, float]:
    """Median run time of each plan's recent builds (estimates and a pick's provisional charge)."""
    return {plan_id: (s[len(s) // 2] if s else DEFAULT_BUILD_SECONDS)
            for plan_id, s in recent_build_seconds().items()}


def load_candidates(state: DispatchState, now: datetime) -> tuple[list[Candidate], dict, FairShare]:
    """Only builds that could start this round: per plan its room in tenants, per tenant its free slots."""
    tenants: dict[int, dict] = {}
    for plan in state.plans.values():
        room = state.plan_room(plan)
        if room <= 0:
            continue
        for row in waiting_tenants(plan, state, now, room):
            row["plan_id"] = plan.plan_id
            free = plan.tenant_limit - state.running_by_tenant.get(row["id"], 0)
            row["slots"] = min(free, room)
            tenants[row["id"]] = row
    found = oldest_startable({t: row["slots"] for t, row in tenants.items()}, now)
    candidates = [Candidate(b, t, tenants[t]["plan_id"], c) for b, t, c in found]
    typical = typical_build_seconds()
    half_lives = (now - fairshare.EPOCH).total_seconds() / (state.half_life_hours * 3600)
    fair = FairShare(
        keys={t: row["fair_share_key"] for t, row in tenants.items()},
        weights={t: row["fair_share_weight"] for t, row in tenants.items()},
        pick_charge_log2={p: math.log2(typical.get(p, DEFAULT_BUILD_SECONDS)) + half_lives for p in state.plans},
        new_tenants=frozenset(t for t, row in tenants.items() if fairshare.is_newly_active(
            row["usage_log2"], running=state.running_by_tenant.get(t, 0), at=now,
            half_life_hours=state.half_life_hours)),
        reserved=math.ceil(state.reserved_share * state.account_limit))
    last_served = {t: row["last_dispatched_at"] for t, row in tenants.items()}
    return candidates, last_served, fair


def load_state():
    """Everything `choose` needs for a round (also what bench/dispatch.py times `choose` on)."""
    state = load_running()
    candidates, last_served, fair = load_candidates(state, timezone.now())
    return state, candidates, last_served, fair


def _claim(chosen: list[Candidate], now: datetime) -> list[tuple[int, str, int]]:
    """Queued -> starting for the chosen builds in one UPDATE ... RETURNING; (id, code, plan id) claimed.

    A build cancelled since it was read stays cancelled and is not returned. The plan set is
    the one the tenant has now: a plan change applies to builds that have not started.
    """
    by_plan: dict[int, list[int]] = defaultdict(list)
    for cand in chosen:
        by_plan[cand.plan_id].append(cand.build_id)
    params: list = [Build.Status.STARTING]
    cases = []
    for plan_id, ids in by_plan.items():
        cases.append(f"WHEN id IN ({', '.join(['%s'] * len(ids))}) THEN %s")
        params += [*ids, plan_id]
    ids = [c.build_id for c in chosen]
    params += [*ids, Build.Status.QUEUED]
    rows = _rows(f"UPDATE {Build._meta.db_table} SET status = %s, plan_id = CASE {' '.join(cases)} ELSE plan_id END "
                 f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND status = %s RETURNING id, code, plan_id", params)
    claimed = {b: (str(uuid.UUID(str(code))), p) for b, code, p in rows}
    Tenant.objects.filter(pk__in={c.tenant_id for c in chosen if c.build_id in claimed}).update(
        last_dispatched_at=now)
    BuildTransition.objects.bulk_create([
        BuildTransition(build_id=b, from_status=Build.Status.QUEUED, to_status=Build.Status.STARTING,
                        reason="capacity available", at=now) for b in claimed])
    return [(c.build_id, *claimed[c.build_id]) for c in chosen if c.build_id in claimed]


def dispatch_pending() -> list[int]:
    """Move as many queued builds to `starting` as the limits allow; enqueue their runs after commit."""
    with transaction.atomic():
        _lock()
        state = load_running()
        if state.account_free <= 0 or not any(state.plan_room(p) for p in state.plans.values()):
            return []  # nothing is free: the round costs one count query
        now = timezone.now()
        candidates, last_served, fair = load_candidates(state, now)
        if not candidates:
            return []
        chosen = choose(candidates, state.plans, state.running_by_plan, state.running_by_tenant,
                        state.account_running, state.account_limit, last_served, fair)
        claimed = _claim(chosen, now) if chosen else []
        if claimed:
            from builds import queues

            plan_slugs = dict(Plan.objects.values_list("id", "slug"))
            runs = [(b, code, queues.plan_queue_name(plan_slugs[p])) for b, code, p in claimed]
            transaction.on_commit(lambda: queues.enqueue_execute_many(runs))
    return [b for b, _, _ in claimed]
