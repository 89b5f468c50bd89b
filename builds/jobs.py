"""RQ entry points of the builds app: JSON-safe ids in, one service call each."""

from __future__ import annotations

import logging

import django_rq
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

logger = logging.getLogger(__name__)

LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def _execute_job_id(build_id: int) -> str:
    from builds.models import Build

    code = Build.objects.filter(pk=build_id).values_list("code", flat=True).first()
    return f"build-execute-{code or build_id}"


def enqueue_dispatch() -> None:
    try:
        django_rq.get_queue("default").enqueue(dispatch, job_timeout=120, result_ttl=60)
    except Exception:  # noqa: BLE001 - Redis down: the periodic reconciler dispatches instead
        logger.warning("could not enqueue dispatch; the reconciler will pick it up", exc_info=True)


def dispatch() -> list[int]:
    from builds.dispatch import dispatch_pending

    return dispatch_pending()


def enqueue_execute(build_id: int, queue_name: str) -> None:
    from builds.queues import build_queue

    try:
        build_queue(queue_name).enqueue(execute, build_id, job_id=_execute_job_id(build_id),
                                                job_timeout=6 * 3600, result_ttl=3600, failure_ttl=86400)
    except Exception:  # noqa: BLE001
        logger.warning("could not enqueue build %s; the reconciler will retry", build_id, exc_info=True)


def execute_job_exists(build_id: int) -> bool:
    from builds.queues import connection as redis_connection

    connection = redis_connection()
    try:
        job = Job.fetch(_execute_job_id(build_id), connection=connection)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE_STATUSES


def execute(build_id: int) -> str:
    from builds.execution import build_execute

    return build_execute(build_id)


def enqueue_ledger(build_id: int) -> None:
    try:
        django_rq.get_queue("default").enqueue(
            write_ledger, build_id, retry=Retry(max=5, interval=[5, 30, 60, 300, 900]), job_timeout=60)
    except Exception:  # noqa: BLE001 - the reconciler writes ledgers that are still missing
        logger.warning("could not enqueue ledger write for build %s", build_id, exc_info=True)


def write_ledger(build_id: int) -> None:
    from builds.ledger import ledger_write
    from builds.models import Build

    ledger_write(build=Build.objects.select_related("tenant", "plan", "algorithm").get(pk=build_id))


def reconcile() -> dict:
    from builds.execution import poll_running, reconcile

    counts = reconcile()
    counts["polled"] = poll_running()
    from builds.ledger import ledger_backfill

    counts["ledger_backfilled"] = ledger_backfill()
    return counts
