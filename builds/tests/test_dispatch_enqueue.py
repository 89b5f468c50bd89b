"""The dispatcher's enqueue: one Redis call for a round's execute jobs, and each is an RQ job like any other."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus

from builds import queues

TIME_FIELDS = {"created_at", "enqueued_at"}


def stored_hash(redis, job_id: str) -> dict:
    return {k.decode(): v for k, v in redis.hgetall(Job.redis_job_namespace_prefix + job_id).items()}


@pytest.mark.django_db
def test_fast_enqueue_writes_the_hash_and_queue_entry_rqs_own_enqueue_writes(clean_redis, reference_data):
    queues.enqueue_execute(41, "code-rq", "plan-basic")  # RQ's Queue.enqueue
    by_rq = stored_hash(clean_redis, queues.execute_job_id("code-rq"))
    clean_redis.flushdb()

    assert queues.execute_jobs_enqueue([(41, "code-fast", "plan-basic")]) == 1
    fast = stored_hash(clean_redis, queues.execute_job_id("code-fast"))

    assert set(fast) == set(by_rq)
    assert {k: v for k, v in fast.items() if k not in TIME_FIELDS} == \
        {k: v for k, v in by_rq.items() if k not in TIME_FIELDS}
    assert clean_redis.lrange("rq:queue:plan-basic", 0, -1) == [b"build-execute-code-fast"]
    assert clean_redis.smembers("rq:queues") == {b"rq:queue:plan-basic"}
    assert clean_redis.ttl(Job.redis_job_namespace_prefix + "build-execute-code-fast") == -1  # as RQ: no expiry


@pytest.mark.django_db
def test_fast_enqueue_spreads_jobs_over_their_plan_queues_in_order(clean_redis, reference_data):
    runs = [(i, f"c{i}", "plan-premium" if i % 3 == 0 else "plan-basic") for i in range(7)]
    assert queues.execute_jobs_enqueue(runs) == 7

    premium = queues.build_queue("plan-premium")
    basic = queues.build_queue("plan-basic")
    assert premium.job_ids == ["build-execute-c0", "build-execute-c3", "build-execute-c6"]
    assert basic.job_ids == ["build-execute-c1", "build-execute-c2", "build-execute-c4", "build-execute-c5"]
    job = Job.fetch("build-execute-c4", connection=clean_redis)
    assert (job.func_name, job.args, job.kwargs, job.origin) == ("builds.jobs.execute", (4,), {}, "plan-basic")
    assert (job.timeout, job.result_ttl, job.failure_ttl) == (6 * 3600, 3600, 86400)
    assert job.get_status() == JobStatus.QUEUED
    assert queues.execute_job_exists("c4") and not queues.execute_job_exists("c99")


@pytest.mark.django_db(transaction=True)
def test_dispatched_builds_run_on_a_real_rq_worker(clean_redis, reference_data):
    """dispatch_pending enqueues through the fast path after commit; an RQ worker runs builds.jobs.execute."""
    from builds.dispatch import dispatch_pending
    from builds.models import Build, BuildTransition
    from tests.factories import BuildFactory, TenantFactory

    tenant = TenantFactory()
    kept, cancelled = (BuildFactory(tenant=tenant, status=Build.Status.QUEUED) for _ in range(2))
    assert sorted(dispatch_pending()) == sorted([kept.pk, cancelled.pk])
    queue = queues.build_queue(queues.plan_queue_name(tenant.plan.slug))
    assert sorted(queue.job_ids) == sorted(queues.execute_job_id(str(b.code)) for b in (kept, cancelled))
    Build.objects.filter(pk=cancelled.pk).update(status=Build.Status.CANCELLED)

    SimpleWorker([queue], connection=clean_redis).work(burst=True)

    assert Job.fetch(queues.execute_job_id(str(cancelled.code)), connection=clean_redis).return_value() == \
        "not-claimed"
    ran = Job.fetch(queues.execute_job_id(str(kept.code)), connection=clean_redis)
    assert ran.get_status() in (JobStatus.FINISHED, JobStatus.FAILED)
    assert BuildTransition.objects.filter(build=kept, from_status="starting", to_status="running").count() == 1
