"""Why a queued build waits, where it stands and when it may start (reads; issue 14).

The same rules as the dispatcher (`builds.dispatch`), read in a fixed number of queries for a
whole page of builds: the running counts, one annotated query for the page's queued builds
(builds of the same tenant ahead of each), one for the page's tenants (tenants of the plan
ahead in fair-share order, tenants waiting in the plan), queued counts per plan and recent
build times. Positions and times are estimates under the current order: a newly active
tenant, a weight change or a finished build moves them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from builds import dispatch
from builds.models import Build
from tenants import budgets, fairshare
from tenants.models import Tenant


class Reason:
    """Stable `waiting_reason` codes (the API's contract; the sentence may change)."""

    THROTTLED_RETRY = "throttled_retry"
    TENANT_INACTIVE = "tenant_inactive"
    TENANT_LIMIT = "tenant_limit"
    PLAN_LIMIT = "plan_limit"
    ACCOUNT_LIMIT = "account_limit"
    FAIR_SHARE_TURN = "fair_share_turn"
    STARTING_SOON = "starting_soon"
    BUDGET_CAP = "budget_cap"


@dataclass(frozen=True)
class Waiting:
    queue_position: int
    estimated_start_after: datetime
    estimated_start_before: datetime
    waiting_reason: str
    waiting_message: str

    def as_dict(self) -> dict:
        return asdict(self)


EMPTY = {"queue_position": None, "estimated_start_after": None, "estimated_start_before": None,
         "waiting_reason": None, "waiting_message": None}


def _startable(now: datetime) -> Q:
    return Q(status=Build.Status.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))


def waiting_for_builds(builds: list[Build], *, now: datetime | None = None) -> dict[int, Waiting]:
    """Waiting facts for the queued builds among `builds` (by build pk); others are left out."""
    queued = [b for b in builds if b.status == Build.Status.QUEUED]
    if not queued:
        return {}
    now = now or timezone.now()
    state = dispatch.load_running()
    own_ahead = _own_ahead([b.pk for b in queued], now)
    tenants = _tenant_facts({b.tenant_id for b in queued}, state, now)
    # Higher tiers' queues count only while the account is the limit (a count over every queued build).
    queued_by_plan = dict(Build.objects.filter(_startable(now)).values("tenant__plan_id")
                          .annotate(n=Count("id")).values_list("tenant__plan_id", "n")) \
        if state.account_running >= state.account_limit else {}
    seconds = dispatch.recent_build_seconds()
    reserved = math.ceil(state.reserved_share * state.account_limit)
    return {b.pk: _waiting(b, state, own_ahead.get(b.pk, 0), tenants[b.tenant_id], queued_by_plan, seconds,
                           reserved, now) for b in queued if b.tenant_id in tenants}


def _own_ahead(build_ids: list[int], now: datetime) -> dict[int, int]:
    """Per build: startable queued builds of the same tenant that are older (they start first)."""
    older = (Build.objects.filter(_startable(now), tenant_id=OuterRef("tenant_id"))
             .filter(Q(created_at__lt=OuterRef("created_at")) |
                     Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id")))
             .order_by().values("tenant_id").annotate(n=Count("id")).values("n"))
    return dict(Build.objects.filter(pk__in=build_ids)
                .annotate(ahead=Coalesce(Subquery(older, output_field=IntegerField()), 0))
                .values_list("pk", "ahead"))


def _tenant_facts(tenant_ids: set[int], state: dispatch.DispatchState, now: datetime) -> dict[int, dict]:
    """Per tenant: plan, status, usage, and where it stands among its plan's waiting tenants.

    The order is the dispatcher's own (`dispatch.waiting_tenants`), read once per plan on the
    page: as many rows as tenants waiting in the plan.
    """
    rows = {row["id"]: row for row in Tenant.objects.filter(pk__in=tenant_ids)
            .values("id", "plan_id", "status", "usage_log2", "budget_hard_cap", "monthly_budget",
                    "metered_spend_month", "metered_spend")}
    for plan_id in {row["plan_id"] for row in rows.values()}:
        plan = state.plans[plan_id]
        order = [t["id"] for t in dispatch.waiting_tenants(plan, state, now, limit=10**9)]
        index = {t: i for i, t in enumerate(order)}
        for row in rows.values():
            if row["plan_id"] == plan_id:
                row["tenants_ahead"] = index.get(row["id"], len(order))
                row["tenants_waiting"] = len(order) + (row["id"] not in index)
    return rows


def _waiting(build: Build, state: dispatch.DispatchState, own_ahead: int, tenant: dict,
             queued_by_plan: dict[int, int], seconds: dict[int, list[float]], reserved: int,
             now: datetime) -> Waiting:
    plan = state.plans[tenant["plan_id"]]
    plan_running = state.running_by_plan.get(plan.plan_id, 0)
    tenant_running = state.running_by_tenant.get(build.tenant_id, 0)
    ahead_tenants = tenant["tenants_ahead"]
    behind_tenants = max(0, tenant["tenants_waiting"] - ahead_tenants - 1)
    position = own_ahead + 1 + ahead_tenants * (own_ahead + 1) + behind_tenants * own_ahead
    account_short = state.account_running >= state.account_limit
    if account_short:  # higher tiers go first when the account is the limit
        position += sum(n for p, n in queued_by_plan.items()
                        if p in state.plans and state.plans[p].tier_rank > plan.tier_rank)
    newcomer = fairshare.is_newly_active(tenant["usage_log2"], running=tenant_running, at=now,
                                         half_life_hours=state.half_life_hours)
    after, before = _estimate(position, plan, state, tenant_running, own_ahead, seconds.get(plan.plan_id, []), now)
    if build.not_before and build.not_before > now:
        at = build.not_before.astimezone(UTC).strftime("%H:%M:%S UTC")
        return Waiting(position, max(after, build.not_before), max(before, build.not_before), Reason.THROTTLED_RETRY,
                       f"Its start was throttled by AWS; it is retried after {at}.")
    if tenant["status"] != Tenant.Status.ACTIVE:
        return Waiting(position, after, before, Reason.TENANT_INACTIVE,
                       f"The tenant is {tenant['status']}; its builds start when it is active again.")
    if budgets.is_capped(hard_cap=tenant["budget_hard_cap"], budget=tenant["monthly_budget"],
                         spend_month=tenant["metered_spend_month"], spend=tenant["metered_spend"], at=now):
        return Waiting(position, after, before, Reason.BUDGET_CAP,
                       f"This month's spend (${tenant['metered_spend']:,.2f}) has reached the tenant's monthly budget "
                       f"(${tenant['monthly_budget']:,.2f}) and the budget is a hard cap; its builds start when "
                       "the budget is raised or the next month begins (UTC).")
    if tenant_running >= plan.tenant_limit:
        return Waiting(position, after, before, Reason.TENANT_LIMIT,
                       f"The tenant already runs {tenant_running} build(s), its plan's limit per tenant "
                       f"({plan.tenant_limit}); it starts when one of them ends.")
    if plan_running >= plan.plan_limit:
        borrow = (f" It may borrow up to {plan.borrowing_limit} slot(s) other plans leave idle."
                  if plan.borrowing_limit else "")
        return Waiting(position, after, before, Reason.PLAN_LIMIT,
                       f"The plan runs {plan_running} build(s), its limit of {plan.plan_limit}; it "
                       f"starts when one of them ends.{borrow}")
    established_full = state.account_running >= state.account_limit - (0 if newcomer else reserved)
    if account_short or established_full:
        held = "" if account_short else f" ({reserved} slot(s) are held for newly active tenants)"
        return Waiting(position, after, before, Reason.ACCOUNT_LIMIT,
                       f"The account runs {state.account_running} of at most {state.account_limit} builds{held}; "
                       "it starts when one ends.")
    free = min(plan.plan_limit - plan_running, state.account_free - (0 if newcomer else reserved))
    if position > free:
        return Waiting(position, after, before, Reason.FAIR_SHARE_TURN,
                       f"Waiting for its turn behind {ahead_tenants} tenant(s) of its plan"
                       + (f" and {own_ahead} older build(s) of this tenant" if own_ahead else "") + ".")
    return Waiting(position, now, now + timedelta(seconds=10), Reason.STARTING_SOON,
                   "Capacity is free: it starts within seconds.")


def _estimate(position: int, plan: dispatch.PlanLimits, state: dispatch.DispatchState, tenant_running: int,
              own_ahead: int, seconds: list[float], now: datetime) -> tuple[datetime, datetime]:
    """A range from the plan's recent build times: how many "waves" of builds must end before this one starts."""
    low = seconds[len(seconds) // 4] if seconds else dispatch.DEFAULT_BUILD_SECONDS
    high = seconds[(3 * len(seconds)) // 4] if seconds else dispatch.DEFAULT_BUILD_SECONDS * 2
    capacity = max(1, min(plan.plan_limit + plan.borrowing_limit, state.account_limit))
    free = max(0, min(capacity - state.running_by_plan.get(plan.plan_id, 0), state.account_free))
    plan_waves = math.ceil(max(0, position - free) / capacity)
    tenant_free = max(0, plan.tenant_limit - tenant_running)
    tenant_waves = math.ceil(max(0, own_ahead + 1 - tenant_free) / max(1, plan.tenant_limit))
    waves = max(plan_waves, tenant_waves)
    if waves == 0:
        return now, now + timedelta(seconds=10)
    # The running builds are part-way through: the first wave may end at once, or take a whole build.
    return now + timedelta(seconds=(waves - 1) * low), now + timedelta(seconds=waves * high)


def waiting_fields(build: Build, facts: dict[int, Waiting]) -> dict:
    found = facts.get(build.pk)
    return found.as_dict() if found else dict(EMPTY)


class WithWaiting:
    """A build queryset for a paginated list: the page, once sliced, carries `waiting` on each build.

    django-ninja's pagination slices and counts what the view returns, so the waiting facts
    are read for the page only, in the fixed number of queries of `waiting_for_builds`.
    """

    def __init__(self, queryset) -> None:
        self.queryset = queryset

    def all(self) -> WithWaiting:
        return self

    def count(self) -> int:
        return self.queryset.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, key):
        return self.with_waiting(list(self.queryset[key]))

    @staticmethod
    def with_waiting(page: list) -> list:
        facts = waiting_for_builds(page)
        for build in page:
            build.waiting = waiting_fields(build, facts)
        return page


def queue_overview(*, longest: int = 10) -> dict:
    """Staff: per plan what runs and waits, and the builds waiting longest with their reasons (fixed queries)."""
    from tenants.models import Plan

    now = timezone.now()
    state = dispatch.load_running()
    queued = dict(Build.objects.filter(status=Build.Status.QUEUED).values("tenant__plan_id")
                  .annotate(n=Count("id")).values_list("tenant__plan_id", "n"))
    tenants_waiting = dict(Build.objects.filter(status=Build.Status.QUEUED).values("tenant__plan_id")
                           .annotate(n=Count("tenant_id", distinct=True)).values_list("tenant__plan_id", "n"))
    oldest = list(Build.objects.filter(status=Build.Status.QUEUED).select_related("tenant__plan", "plan", "algorithm")
                  .order_by("created_at", "id")[:longest])
    facts = waiting_for_builds(oldest, now=now)
    plans = [{"plan": plan, "running": state.running_by_plan.get(plan.id, 0), "queued": queued.get(plan.id, 0),
              "tenants_waiting": tenants_waiting.get(plan.id, 0),
              "borrowed": max(0, state.running_by_plan.get(plan.id, 0) - plan.plan_concurrent_limit)}
             for plan in Plan.objects.order_by("-tier_rank", "slug")]
    return {"plans": plans, "account_running": state.account_running, "account_limit": state.account_limit,
            "half_life_hours": state.half_life_hours, "reserved_share": state.reserved_share,
            "longest": [{"build": b, "waited": now - b.created_at, **waiting_fields(b, facts)} for b in oldest]}
