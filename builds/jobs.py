"""RQ entry points of the builds app: JSON-safe ids in, one service call each.

Jobs are enqueued by dotted path through `builds.queues`, which imports nothing of this app,
so the services that enqueue never import the jobs that call them.
"""

from __future__ import annotations


def dispatch() -> list[int]:
    from builds import queues
    from builds.dispatch import dispatch_pending

    queues.dispatch_request_taken()
    return dispatch_pending()


def execute(build_id: int) -> str:
    from builds.execution import build_execute

    return build_execute(build_id)


def write_ledger(build_id: int) -> None:
    from builds.ledger import ledger_write
    from builds.models import Build

    ledger_write(build=Build.objects.select_related("tenant", "plan", "algorithm").get(pk=build_id))


def endpoint_provision(endpoint_id: int) -> str:
    from builds.endpoints import endpoint_provision

    return endpoint_provision(endpoint_id)


def endpoint_teardown(endpoint_id: int) -> str:
    from builds.endpoints import endpoint_teardown

    return endpoint_teardown(endpoint_id)


def batch_job_run(job_id: int) -> str:
    from builds.batch import batch_job_run

    return batch_job_run(job_id)


def reconcile() -> dict:
    from builds.batch import batch_jobs_tick
    from builds.endpoints import endpoints_tick
    from builds.execution import poll_running, reconcile
    from builds.ledger import ledger_backfill

    counts = reconcile()
    counts["polled"] = poll_running()
    counts["ledger_backfilled"] = ledger_backfill()
    counts.update(endpoints_tick())
    counts.update(batch_jobs_tick())
    return counts
