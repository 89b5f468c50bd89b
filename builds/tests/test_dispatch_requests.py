"""Dispatch requests are coalesced: a burst of builds costs one dispatch job, a batch of uploads one round."""

from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker

from builds import queues


def dispatch_jobs() -> list:
    queue = django_rq.get_queue("default")
    return [j for j in queue.get_jobs() if j.func_name == "builds.jobs.dispatch"]


@pytest.mark.django_db
def test_a_burst_of_dispatch_requests_is_one_job(clean_redis, reference_data):
    for _ in range(50):
        queues.enqueue_dispatch()
    assert len(dispatch_jobs()) == 1
    django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)
    assert dispatch_jobs() == [] and not clean_redis.exists(queues.DISPATCH_PENDING_KEY)  # the job took the request
    queues.enqueue_dispatch()  # a request after the round started needs (and gets) a new one
    assert len(dispatch_jobs()) == 1


@pytest.mark.django_db
def test_builds_created_together_request_one_dispatch(clean_redis, reference_data,
                                                      django_capture_on_commit_callbacks):
    from builds.services import build_cancel
    from tests.factories import BuildFactory

    builds = [BuildFactory(status="queued") for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        for build in builds:
            build_cancel(build=build)  # each asks for a dispatch after its commit
    assert len(dispatch_jobs()) == 1


@pytest.mark.django_db(transaction=True)
def test_intake_runs_one_dispatch_round_per_batch_not_per_upload(make_tenant, clean_redis, monkeypatch):
    from builds import dispatch
    from builds.intake import intake_poll_once
    from builds.models import Build
    from core.aws import gateways

    tenant = make_tenant(isolation="pool", plan="premium")
    rounds = []
    real = dispatch.dispatch_pending
    monkeypatch.setattr(dispatch, "dispatch_pending", lambda: rounds.append(1) or real())
    s3 = gateways.platform_s3()
    for i in range(4):
        s3.put_object(tenant.bucket, f"{tenant.upload_prefix}batch-{i}.csv", b"a,diagnosis\n1,yes\n2,no\n")
    polls_with_work = 0
    for _ in range(20):
        if intake_poll_once(wait_seconds=1):
            polls_with_work += 1
        if Build.objects.filter(tenant=tenant).count() == 4:
            break
    assert Build.objects.filter(tenant=tenant).count() == 4
    assert len(rounds) == polls_with_work < 4  # one round per received batch
    assert Build.objects.filter(tenant=tenant, status="starting").count() == 4  # premium: 4 per tenant
