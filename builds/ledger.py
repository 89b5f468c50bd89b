"""The DynamoDB build ledger: one item per finished build, for other SaaS services."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from builds.models import Build
from core.aws import gateways


def ledger_key(build: Build) -> dict[str, str]:
    return {"tenant": build.tenant.slug, "build": str(build.code)}


def ledger_item(build: Build) -> dict:
    """What builds know of a finished build; billing adds `cost_usd` to the same item when it meters it."""
    version = getattr(build, "model_version", None) if build.status == Build.Status.SUCCEEDED else None
    return {
        "tenant": build.tenant.slug,
        "build": str(build.code),
        "plan": build.plan.slug,
        "status": build.status,
        "algorithm": build.algorithm.slug,
        "dataset": f"s3://{build.dataset_bucket}/{build.dataset_key}",
        "created_at": build.created_at.isoformat(),
        "started_at": build.started_at.isoformat() if build.started_at else None,
        "ended_at": build.ended_at.isoformat() if build.ended_at else None,
        "model_package_arn": version.arn if version else None,
        "failure_reason": build.failure_reason or None,
    }


def ledger_write(*, build: Build) -> None:
    """Write (idempotently: same key) the build's ledger item; raises on failure so RQ retries."""
    if not build.is_finished:
        return
    item = ledger_item(build)
    key = ledger_key(build)
    gateways.platform_dynamodb().update_item(settings.MLAAS_LEDGER_TABLE, key,
                                             {k: v for k, v in item.items() if k not in key})
    Build.objects.filter(pk=build.pk).update(ledger_written=True)


def ledger_backfill(limit: int = 100) -> int:
    """Write ledger items that are still missing (a retried job gave up, Redis lost it)."""
    stale = timezone.now() - timedelta(minutes=2)
    written = 0
    for build in (Build.objects.select_related("tenant", "plan", "algorithm")
                  .filter(status__in=Build.FINISHED, ledger_written=False, ended_at__lt=stale)[:limit]):
        try:
            ledger_write(build=build)
            written += 1
        except Exception:  # noqa: BLE001 - tried again on the next round
            break
    return written
