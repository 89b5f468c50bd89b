"""Context for the two home pages (staff dashboard, tenant home): a fixed number of queries."""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from builds.models import Build, ModelVersion, RejectedUpload
from tenants import budgets
from tenants.models import AccessRequest, Plan, Tenant

WINDOW_DAYS = 7


def plan_capacity() -> list[dict]:
    """Per plan, highest tier first: builds running and queued against the plan's concurrent limit."""
    plans = list(Plan.objects.order_by("-tier_rank", "slug"))
    rows = (Build.objects.filter(status__in=(*Build.ACTIVE, Build.Status.QUEUED))
            .values("plan_id").annotate(
                running=Count("id", filter=Q(status__in=Build.ACTIVE)),
                queued=Count("id", filter=Q(status=Build.Status.QUEUED)),
                oldest=Min("queued_at", filter=Q(status=Build.Status.QUEUED))))
    by_plan = {r["plan_id"]: r for r in rows}
    from builds.queues import plan_queue_name

    workers = _plan_workers(plans)
    out = []
    for plan in plans:
        row = by_plan.get(plan.id, {})
        running, limit = row.get("running", 0), plan.plan_concurrent_limit
        out.append({"plan": plan, "running": running, "queued": row.get("queued", 0), "oldest": row.get("oldest"),
                    "limit": limit, "full": bool(limit) and running >= limit, "workers": workers.get(plan.id),
                    "queue": plan_queue_name(plan.slug)})
    return out


def _plan_workers(plans: list[Plan]) -> dict[int, int]:
    """Live workers on each plan's queue (one Redis read per plan; none when Redis is unreachable)."""
    from builds.queues import plan_queue_name, queue_worker_counts

    try:
        counts = queue_worker_counts([plan_queue_name(plan.slug) for plan in plans])
    except Exception:  # noqa: BLE001 - the dashboard still renders without Redis
        return {}
    return {plan.id: counts[plan_queue_name(plan.slug)] for plan in plans}


def tenant_queue_rows(limit: int = 20) -> list[dict]:
    """Tenants with builds running or waiting, busiest queue first."""
    return list(Build.objects.filter(status__in=(*Build.ACTIVE, Build.Status.QUEUED))
                .values("tenant__slug", "tenant__name", "plan__slug", "plan__tenant_concurrent_limit").annotate(
                    running=Count("id", filter=Q(status__in=Build.ACTIVE)),
                    queued=Count("id", filter=Q(status=Build.Status.QUEUED)))
                .order_by("-queued", "-running", "tenant__slug")[:limit])


def build_outcomes(*, days: int = WINDOW_DAYS) -> dict:
    """Success rate (cancelled builds left out) and median duration of the builds that ended in the window."""
    since = timezone.now() - timedelta(days=days)
    finished = list(Build.objects.filter(ended_at__gte=since, status__in=Build.FINISHED)
                    .values_list("status", "started_at", "ended_at"))
    decided = [status for status, _, _ in finished if status != Build.Status.CANCELLED]
    succeeded = sum(1 for status in decided if status == Build.Status.SUCCEEDED)
    durations = [(ended - started).total_seconds() for status, started, ended in finished
                 if status == Build.Status.SUCCEEDED and started and ended]
    return {"finished": len(finished), "succeeded": succeeded, "failed": len(decided) - succeeded,
            "success_rate": (100 * succeeded / len(decided)) if decided else None,
            "median_build_seconds": statistics.median(durations) if durations else None}


def staff_dashboard_context() -> dict:
    from billing.selectors import marketplace_expired_count, spend_this_month_total
    from billing.services import utc_today

    capacity = plan_capacity()
    tenant_counts = dict(Tenant.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    account_running = sum(c["running"] for c in capacity)
    return {
        "active_tenants": tenant_counts.get(Tenant.Status.ACTIVE, 0),
        "tenant_counts": tenant_counts,
        "tenants_needing_attention": tenant_counts.get(Tenant.Status.PROVISIONING, 0)
        + tenant_counts.get(Tenant.Status.FAILED, 0),
        "capacity": capacity,
        "account_running": account_running,
        "account_queued": sum(c["queued"] for c in capacity),
        "account_limit": settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT,
        "tenant_queues": tenant_queue_rows(),
        "window_days": WINDOW_DAYS,
        **build_outcomes(),
        "spend_this_month": spend_this_month_total(utc_today()),
        "recent_failures": list(Build.objects.filter(status=Build.Status.FAILED)
                                .select_related("tenant", "algorithm").order_by("-ended_at", "-id")[:8]),
        "rejected_uploads": list(RejectedUpload.objects.select_related("tenant").order_by("-created_at")[:8]),
        "pending_tenants": list(Tenant.objects.filter(status__in=[Tenant.Status.PROVISIONING, Tenant.Status.FAILED])
                                .order_by("-created_at")[:8]),
        "pending_requests": AccessRequest.objects.filter(handled_at__isnull=True).count(),
        "marketplace_expired": marketplace_expired_count(),
    }


def tenant_home_context(user, tenant: Tenant) -> dict:
    from billing.selectors import tenant_spend_this_month
    from billing.services import utc_today

    spend = tenant_spend_this_month(tenant, utc_today())
    budget = tenant.monthly_budget
    counts = dict(Build.objects.filter(tenant=tenant).values_list("status").annotate(n=Count("id"))
                  .values_list("status", "n"))
    return {
        "tenant": tenant,
        "recent_builds": list(Build.objects.filter(tenant=tenant).select_related("tenant", "plan", "algorithm")
                              .order_by("-created_at", "-id")[:10]),
        "latest_models": list(ModelVersion.objects.filter(tenant=tenant).select_related("build__algorithm")
                              .order_by("-version")[:5]),
        "rejected_uploads": list(RejectedUpload.objects.filter(tenant=tenant).order_by("-created_at")[:5]),
        "spend": spend,
        "budget": budget,
        "budget_percent": (float(spend) / float(budget) * 100) if budget else None,
        "over_alert": bool(budget and float(spend) >= float(budget) * tenant.budget_alert_percent / 100),
        # what the dispatcher holds builds by: the spend billing recorded on the tenant (tenants.budgets)
        "budget_capped": budgets.is_capped(hard_cap=tenant.budget_hard_cap, budget=budget,
                                           spend_month=tenant.metered_spend_month, spend=tenant.metered_spend),
        "counts": counts,
        "active": sum(counts.get(s, 0) for s in Build.ACTIVE),
        "waiting": counts.get(Build.Status.QUEUED, 0) + counts.get(Build.Status.RECEIVED, 0),
    }


def tenant_list(*, search: str = "", status: str = ""):
    """The staff tenants page: each tenant with its active/queued build counts and spend this month.

    One query; the counts and the spend are correlated subqueries (an index probe per tenant shown,
    on the status index and the monthly rollup), so a page of 25 costs the same whatever the history.
    """
    from django.db.models import Count, DecimalField, IntegerField, OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce

    from billing.models import MonthlyUsage
    from billing.periods import billing_month_start
    from tenants.selectors import tenant_search

    def count_of(*statuses: str):
        counted = (Build.objects.filter(tenant=OuterRef("pk"), status__in=statuses).order_by().values("tenant")
                   .annotate(n=Count("id")).values("n"))
        return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))

    month_start = billing_month_start()  # UTC, as the dashboards and statements; not the viewer's month
    spend = MonthlyUsage.objects.filter(tenant_slug=OuterRef("slug"), month=month_start).values("metered")[:1]
    return tenant_search(base=Tenant.objects.all(), search=search, status=status).annotate(
        active_builds=count_of(*Build.ACTIVE),
        queued_builds=count_of(Build.Status.QUEUED),
        spend_this_month=Subquery(spend, output_field=DecimalField(max_digits=14, decimal_places=6)),
    )
