"""Fair-share usage charged while a build runs, not only when it ends (issue 14).

Decayed usage (`tenants.fairshare`) used to be charged at a build's end, so a tenant with a
long build running looked idle to the dispatcher. The scheduler tick (`builds.jobs.
reconcile`) now charges every running build's time since its last charge, at most once a
minute per build (`CHARGE_EVERY_SECONDS`), and a finished build charges only what is left
(`build_usage_settle`). `Build.usage_charged_until` marks how far a build is charged; each
piece is claimed with a conditional UPDATE on that value, so two schedulers, or a tick and
the build's end, never charge the same seconds twice.

The ordering stays an index on the stored key (no per-round recomputation). A build whose
engine ended just before a tick noticed may be charged up to that tick (seconds), never less.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from builds.models import Build

CHARGE_EVERY_SECONDS = 60.0


def running_usage_charge(*, now: datetime | None = None, every_seconds: float = CHARGE_EVERY_SECONDS) -> int:
    """Charge running builds' time since their last charge to their tenants; returns the tenants charged.

    Rows read: the running builds due a charge (bounded by the account's concurrent limit).
    """
    from tenants.services import tenant_usage_charge

    now = now or timezone.now()
    due = now - timedelta(seconds=every_seconds)
    rows = list(Build.objects.filter(status=Build.Status.RUNNING, started_at__isnull=False, started_at__lt=due)
                .filter(Q(usage_charged_until__isnull=True) | Q(usage_charged_until__lt=due))
                .values_list("id", "tenant_id", "started_at", "usage_charged_until"))
    if not rows:
        return 0
    by_tenant: dict[int, float] = defaultdict(float)
    with transaction.atomic():
        for build_id, tenant_id, started_at, charged_until in rows:
            since = max(started_at, charged_until) if charged_until else started_at
            claimed = Build.objects.filter(pk=build_id, status=Build.Status.RUNNING,
                                           usage_charged_until=charged_until).update(usage_charged_until=now)
            if claimed == 1 and now > since:
                by_tenant[tenant_id] += (now - since).total_seconds()
        for tenant_id, seconds in by_tenant.items():
            tenant_usage_charge(tenant_id=tenant_id, seconds=seconds, at=now)
    return len(by_tenant)


def build_usage_settle(build: Build) -> float:
    """A finished build: charge its run time not charged while it ran; returns the seconds charged."""
    from tenants.services import tenant_usage_charge

    if not (build.started_at and build.ended_at):
        return 0.0
    with transaction.atomic():
        charged_until = Build.objects.filter(pk=build.pk).values_list("usage_charged_until", flat=True).get()
        since = max(build.started_at, charged_until) if charged_until else build.started_at
        if Build.objects.filter(pk=build.pk, usage_charged_until=charged_until).update(
                usage_charged_until=max(build.ended_at, since)) != 1:
            return 0.0  # charged by someone else meanwhile (a concurrent settle)
        seconds = max(0.0, (build.ended_at - since).total_seconds())
        tenant_usage_charge(tenant_id=build.tenant_id, seconds=seconds, at=build.ended_at)
    build.usage_charged_until = max(build.ended_at, since)
    return seconds
