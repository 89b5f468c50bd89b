"""The build worker (`manage.py rqworker_builds`) as a real process: a plan staff add while it runs gets served.

Marked slow: it runs a real worker process and a real (small) local build.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from rq import Worker

from builds.models import Build
from builds.queues import plan_queue
from tests.test_recovery import ROOT, big_csv, kill_tree, queue_build, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_build_worker(env: dict, *queues: str) -> subprocess.Popen:
    (ROOT / ".local").mkdir(exist_ok=True)
    log = open(ROOT / ".local" / "test-worker.log", "ab")  # noqa: SIM115 - kept open for the child
    return subprocess.Popen([sys.executable, "manage.py", "rqworker_builds", *queues], cwd=ROOT, env=env,
                            start_new_session=True, stdout=log, stderr=log)


def test_build_worker_runs_builds_of_a_plan_created_while_it_runs(make_tenant, subprocess_env, clean_redis):
    from tenants.models import Plan

    worker = start_build_worker(subprocess_env, "default")  # default: the dispatch jobs too
    try:
        assert wait_for(lambda: Worker.all(queue=plan_queue("basic")), 120), "the build worker did not start"
        gold = Plan.objects.get(slug="basic")
        gold.pk, gold.slug, gold.name, gold.tier_rank = None, "gold", "Gold", 99
        gold.save()  # staff add a plan; no setting, Procfile or restart names its queue
        tenant = make_tenant(isolation="pool", plan="gold", target="label")
        build = queue_build(tenant, f"{tenant.upload_prefix}small.csv", big_csv(300))

        done = wait_for(lambda: Build.objects.filter(pk=build.pk, status__in=Build.FINISHED).exists(), 240, 0.5)
        build.refresh_from_db()
        assert done and build.status == Build.Status.SUCCEEDED, (build.status, build.failure_reason)
        assert build.transitions.filter(to_status="running").count() == 1
        [seen] = Worker.all(queue=plan_queue("gold"))
        assert seen.queue_names() == ["plan-gold", "plan-premium", "plan-standard", "plan-basic", "default"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            kill_tree(worker.pid)
