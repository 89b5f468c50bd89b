"""Limits hold with several dispatchers in separate processes against one PostgreSQL database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

DISPATCHER = r"""
import json, random, sys, django
django.setup()
from django.db.models import Count
from builds import queues
queues.enqueue_execute_many = lambda runs: None   # checks limits, not Redis
from builds.dispatch import dispatch_pending
from builds.models import Build
from tenants.models import Plan
rng = random.Random(int(sys.argv[1]))
limits = {p.id: p for p in Plan.objects.all()}
samples, started = [], 0
for _ in range(int(sys.argv[2])):
    mine = dispatch_pending()
    started += len(mine)
    active = Build.objects.filter(status__in=Build.ACTIVE)
    per_plan = {r["plan_id"]: r["n"] for r in active.values("plan_id").annotate(n=Count("id"))}
    per_tenant = [(r["plan_id"], r["n"]) for r in active.values("tenant_id", "plan_id").annotate(n=Count("id"))]
    samples.append({
        "account": sum(per_plan.values()),
        "plan_over": sum(n > limits[p].plan_concurrent_limit for p, n in per_plan.items()),
        "tenant_over": sum(n > limits[p].tenant_concurrent_limit for p, n in per_tenant),
    })
    done = [b for b in mine if rng.random() < 0.7]
    Build.objects.filter(id__in=done).update(status=Build.Status.SUCCEEDED)
print(json.dumps({"started": started, "samples": samples}))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_never_exceed_limits(reference_data, subprocess_env, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): SQLite serialises writers anyway")
    from builds.models import Algorithm, Build
    from tenants.models import Plan, Tenant

    algorithm = Algorithm.objects.get(slug="gbm-classifier")
    plans = list(Plan.objects.all())
    tenants = Tenant.objects.bulk_create([
        Tenant(slug=f"c{i}", name=f"C{i}", plan=plans[i % 3], isolation="pool", status=Tenant.Status.ACTIVE,
               bucket="b", prefix=f"tenants/c{i}/") for i in range(30)])
    Build.objects.bulk_create([
        Build(tenant=t, plan_id=t.plan_id, algorithm=algorithm, target="y", dataset_bucket="b",
              dataset_key=f"{t.prefix}uploads/{n}.csv", status=Build.Status.QUEUED)
        for t in tenants for n in range(12)])
    env = dict(subprocess_env, MLAAS_ACCOUNT_CONCURRENT_LIMIT="10")
    processes = [subprocess.Popen([sys.executable, "-c", DISPATCHER, str(seed), "40"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed in range(4)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    samples = [s for r in results for s in r["samples"]]
    assert len(samples) == 160
    assert max(s["account"] for s in samples) <= 10
    assert sum(s["plan_over"] + s["tenant_over"] for s in samples) == 0
    assert sum(r["started"] for r in results) > 20  # they really competed for work
    assert Build.objects.filter(status__in=Build.ACTIVE).count() <= 10
