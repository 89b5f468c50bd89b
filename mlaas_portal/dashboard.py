"""Context for the two home pages (staff dashboard, tenant home): a fixed number of queries."""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from builds.models import Build, ModelVersion, RejectedUpload
from tenants.models import Plan, Tenant


def plan_capacity() -> list[dict]:
    plans = list(Plan.objects.order_by("-tier_rank"))
    rows = (Build.objects.filter(status__in=(*Build.ACTIVE, Build.Status.QUEUED))
            .values("plan_id").annotate(
                running=Count("id", filter=Q(status__in=Build.ACTIVE)),
                queued=Count("id", filter=Q(status=Build.Status.QUEUED)),
                oldest=Min("queued_at", filter=Q(status=Build.Status.QUEUED))))
    by_plan = {r["plan_id"]: r for r in rows}
    out = []
    for plan in plans:
        row = by_plan.get(plan.id, {})
        out.append({"plan": plan, "running": row.get("running", 0), "queued": row.get("queued", 0),
                    "oldest": row.get("oldest"), "limit": plan.plan_concurrent_limit})
    return out


def tenant_queue_rows(limit: int = 20) -> list[dict]:
    return list(Build.objects.filter(status__in=(*Build.ACTIVE, Build.Status.QUEUED))
                .values("tenant__slug", "plan__slug").annotate(
                    running=Count("id", filter=Q(status__in=Build.ACTIVE)),
                    queued=Count("id", filter=Q(status=Build.Status.QUEUED)))
                .order_by("-queued", "tenant__slug")[:limit])


def staff_dashboard_context() -> dict:
    from billing.selectors import spend_this_month_total

    now = timezone.now()
    week = Build.objects.filter(ended_at__gte=now - timedelta(days=7), status__in=Build.FINISHED)
    finished = list(week.values_list("status", "started_at", "ended_at"))
    done = [s for s, _, _ in finished if s != Build.Status.CANCELLED]
    succeeded = [s for s in done if s == Build.Status.SUCCEEDED]
    durations = [(e - s).total_seconds() for st, s, e in finished if st == Build.Status.SUCCEEDED and s and e]
    capacity = plan_capacity()
    return {
        "active_tenants": Tenant.objects.filter(status=Tenant.Status.ACTIVE).count(),
        "capacity": capacity,
        "account_running": sum(c["running"] for c in capacity),
        "account_limit": settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT,
        "tenant_queues": tenant_queue_rows(),
        "success_rate": (100 * len(succeeded) / len(done)) if done else None,
        "median_build_seconds": statistics.median(durations) if durations else None,
        "spend_this_month": spend_this_month_total(timezone.localdate()),
        "recent_failures": Build.objects.filter(status=Build.Status.FAILED).select_related("tenant", "algorithm")
        .order_by("-ended_at")[:8],
        "rejected_uploads": RejectedUpload.objects.select_related("tenant")[:8],
        "pending_tenants": Tenant.objects.filter(status__in=[Tenant.Status.PROVISIONING, Tenant.Status.FAILED])[:8],
    }


def tenant_home_context(user, tenant: Tenant) -> dict:
    from billing.selectors import tenant_spend_this_month

    spend = tenant_spend_this_month(tenant, timezone.localdate())
    budget = tenant.monthly_budget
    return {
        "tenant": tenant,
        "recent_builds": Build.objects.filter(tenant=tenant).select_related("algorithm")[:10],
        "latest_models": ModelVersion.objects.filter(tenant=tenant).select_related("build")[:5],
        "rejected_uploads": RejectedUpload.objects.filter(tenant=tenant)[:5],
        "spend": spend,
        "budget": budget,
        "budget_percent": (float(spend) / float(budget) * 100) if budget else None,
        "over_alert": bool(budget and float(spend) >= float(budget) * tenant.budget_alert_percent / 100),
        "counts": dict(Build.objects.filter(tenant=tenant).values_list("status").annotate(n=Count("id"))
                       .values_list("status", "n")),
    }
