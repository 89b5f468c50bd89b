"""RQ entry points of the billing app."""

from __future__ import annotations

import logging

import django_rq
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

logger = logging.getLogger(__name__)

QUEUE = "billing"
COST_SYNC_JOB_ID = "billing-cost-sync"
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# Immediate retries only: the ops worker that serves the billing queue runs no RQ scheduler, and
# a sync still failing after them is retried by the scheduler loop's next hourly round.
COST_SYNC_RETRY = Retry(max=2)


COST_SYNC_CHECK_SECONDS = 3600
_last_cost_sync_check = 0.0


def billing_tick() -> dict[str, int]:
    """Billing's share of the scheduler loop: meter what builds and endpoints recorded; check the Cost Explorer
    sync hourly."""
    import time

    from billing.services import endpoints_metering_run, metering_run

    global _last_cost_sync_check, _last_marketplace_metering
    counts = {"metered": metering_run(), "endpoints_metered": endpoints_metering_run(), "cost_sync_enqueued": 0,
              "rollup_rows": 0}
    if time.monotonic() - _last_cost_sync_check > COST_SYNC_CHECK_SECONDS:
        counts["cost_sync_enqueued"] = int(cost_sync_if_due())
        counts["rollup_rows"] = rollups_refresh_current_month()
        _last_cost_sync_check = time.monotonic()
    if time.monotonic() - _last_marketplace_metering > MARKETPLACE_METERING_CHECK_SECONDS:
        _last_marketplace_metering = time.monotonic()
        counts.update({f"marketplace_{k}": v for k, v in marketplace_metering().items()})
    return counts


# Each completed hour is recorded in the first check after it; pending records are retried every check.
MARKETPLACE_METERING_CHECK_SECONDS = 60
_last_marketplace_metering = 0.0


def marketplace_metering() -> dict[str, int]:
    """AWS Marketplace hourly metering; an AWS failure leaves records pending for the next check."""
    from billing.marketplace import marketplace_metering_run
    from core.aws.errors import AwsError

    try:
        return marketplace_metering_run()
    except AwsError as exc:
        logger.warning("AWS Marketplace metering failed; pending records are sent on the next check: %s", exc)
        return {}


def rollups_refresh_current_month() -> int:
    """Hourly: recompute this month's (and, on its first days, last month's) rollups from their sources.

    Metering and the Cost Explorer sync keep the rollups exact as they write; this repairs anything
    written past them (a row edited in the admin, a restore), within a bounded cost: one month of rows.
    """
    from datetime import timedelta

    from billing.periods import utc_today
    from billing.rollups import rollups_refresh

    today = utc_today()
    start = (today - timedelta(days=3)).replace(day=1)
    counts = rollups_refresh(start=start, end=today)
    return counts["daily"] + counts["monthly"]


def cost_sync_if_due() -> bool:
    """Called hourly by the scheduler loop: enqueue the Cost Explorer sync when the last success is a day old."""
    from billing.selectors import cost_sync_is_due

    if not cost_sync_is_due():
        return False
    return cost_sync_enqueue(triggered_by="schedule")


def cost_sync_pending() -> bool:
    """A sync job is queued or running (so a second one would only spend money)."""
    try:
        job = Job.fetch(COST_SYNC_JOB_ID, connection=django_rq.get_connection(QUEUE))
        return job.get_status(refresh=False) in LIVE_STATUSES
    except NoSuchJobError:
        return False
    except Exception:  # noqa: BLE001 - Redis down: nothing can be pending
        logger.warning("could not look up the Cost Explorer sync job", exc_info=True)
        return False


def cost_sync_enqueue(*, triggered_by: str) -> bool:
    """Enqueue one sync (never two at once). False when Redis is down or one is pending already."""
    try:
        if cost_sync_pending():
            return False
        django_rq.get_queue(QUEUE).enqueue(cost_sync, triggered_by, job_id=COST_SYNC_JOB_ID, retry=COST_SYNC_RETRY,
                                           job_timeout=600, result_ttl=3600, failure_ttl=7 * 86400)
        return True
    except Exception:  # noqa: BLE001 - Redis down: the scheduler's next round enqueues it
        logger.warning("could not enqueue the Cost Explorer sync", exc_info=True)
        return False


def cost_sync(triggered_by: str = "schedule") -> int | None:
    """Run one sync; a retryable AWS error is raised again so RQ retries, others are recorded and logged."""
    from billing.services import CostSyncBusy, cost_sync_run
    from core.aws.errors import AwsError

    try:
        run = cost_sync_run(triggered_by=triggered_by)
    except CostSyncBusy:
        logger.info("Cost Explorer sync skipped: another one is running")
        return None
    except AwsError as exc:
        if exc.retryable:
            raise
        logger.error("Cost Explorer sync failed and a retry cannot help: %s", exc)
        return None
    return run.pk
