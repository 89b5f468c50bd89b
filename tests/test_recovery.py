"""No build lost: a killed worker, a flushed Redis, transient and permanent AWS errors.

These run real worker processes (`manage.py rqworker`) against the test database and real Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import numpy as np
import pandas as pd
import pytest
from rq import SimpleWorker

from builds.execution import reconcile
from builds.models import Build

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_worker(env: dict, *queues: str, burst: bool = True) -> subprocess.Popen:
    args = [sys.executable, "manage.py", "rqworker", *queues]
    if burst:
        args.append("--burst")
    (ROOT / ".local").mkdir(exist_ok=True)
    log = open(ROOT / ".local" / "test-worker.log", "ab")  # noqa: SIM115 - kept open for the child
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)


def kill_tree(pid: int) -> None:
    import psutil

    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        process.kill()


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def queue_build(tenant, key: str, body: bytes) -> Build:
    from builds.services import build_create
    from core.aws import gateways

    gateways.platform_s3().put_object(tenant.bucket, key, body, content_type="text/csv")
    build, _ = build_create(tenant=tenant, dataset_key=key, target="label")
    return build


def big_csv(rows: int) -> bytes:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(rows, 20)), columns=[f"f{i}" for i in range(20)])
    frame["label"] = np.where(frame["f0"] + frame["f1"] > 0, "yes", "no")
    return frame.to_csv(index=False).encode()


def test_killed_worker_build_is_recovered_and_finishes(make_tenant, subprocess_env, clean_redis, settings):
    settings.MLAAS_WORKER_LOST_AFTER_SECONDS = 3
    tenant = make_tenant(isolation="pool", plan="basic", target="label")
    build = queue_build(tenant, f"{tenant.upload_prefix}big.csv", big_csv(150_000))
    django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)  # dispatch
    build.refresh_from_db()
    assert build.status == Build.Status.STARTING

    worker = start_worker(subprocess_env, "plan-basic", burst=False)
    try:
        assert wait_for(lambda: Build.objects.filter(pk=build.pk, status="running").exists(), 60)
        assert wait_for(lambda: build.steps.filter(status="running").exists(), 30)
        kill_tree(worker.pid)  # the worker, its work horse (own session) and the step child
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    time.sleep(settings.MLAAS_WORKER_LOST_AFTER_SECONDS + 1)

    counts = reconcile()
    build.refresh_from_db()
    assert counts["worker_lost"] == 1, (build.status, build.heartbeat_at)
    assert build.status in (Build.Status.QUEUED, Build.Status.STARTING)
    assert "worker lost" in build.transitions.filter(to_status="queued").last().reason

    worker = start_worker(subprocess_env, "default", "plan-basic")
    assert worker.wait(240) == 0
    build.refresh_from_db()
    if build.status == Build.Status.QUEUED:  # dispatch job ran after the plan queue was empty
        worker = start_worker(subprocess_env, "default", "plan-basic")
        worker.wait(240)
        build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    assert build.attempts == 2


def test_flushed_redis_queued_builds_still_run_once(make_tenant, subprocess_env, clean_redis):
    tenant = make_tenant(isolation="silo", plan="standard", target="label")
    builds = [queue_build(tenant, f"{tenant.upload_prefix}small-{i}.csv", big_csv(300)) for i in range(3)]
    django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)  # dispatch: 2 start (limit 2)
    assert Build.objects.filter(status="starting").count() == 2
    clean_redis.flushdb()  # every job is gone: the database still knows
    assert django_rq.get_queue("plan-standard").count == 0

    counts = reconcile()
    assert counts["reenqueued_starting"] == 2
    for _ in range(4):
        worker = start_worker(subprocess_env, "default", "plan-standard")
        assert worker.wait(240) == 0
        reconcile()
        if not Build.objects.exclude(status__in=Build.FINISHED).exists():
            break
    for build in builds:
        build.refresh_from_db()
        assert (build.status, build.attempts) == (Build.Status.SUCCEEDED, 1), build.failure_reason
        assert build.transitions.filter(to_status="running").count() == 1


def test_cancel_kills_a_running_local_build(make_tenant, subprocess_env, clean_redis):
    from builds.services import build_cancel

    tenant = make_tenant(isolation="silo", plan="basic", target="label")
    build = queue_build(tenant, f"{tenant.upload_prefix}big.csv", big_csv(150_000))
    django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)  # dispatch
    worker = start_worker(subprocess_env, "plan-basic", "default")
    try:
        assert wait_for(lambda: build.steps.filter(status="running").exists(), 60)
        build.refresh_from_db()
        build_cancel(build=build)
        assert wait_for(lambda: Build.objects.filter(pk=build.pk, status="cancelled").exists(), 30)
        assert worker.wait(60) == 0  # the worker went on and finished its burst normally
    finally:
        if worker.poll() is None:
            kill_tree(worker.pid)
    build.refresh_from_db()
    assert build.ended_at is not None
    assert {s.status for s in build.steps.all()} <= {"succeeded", "cancelled", "skipped"}
    assert build.steps.filter(status="cancelled").count() == 1
