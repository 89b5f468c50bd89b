"""Dispatch benchmark.

(1) Dispatch decisions per second with 1,000 tenants and 10,000 queued builds
    on 3 plans, checking every limit after every round (violations must be 0).
    Runs against a throwaway database (a SQLite file, or BENCH_DATABASE_URL:
    its tenants and builds are deleted) and enqueues for real on a Redis
    database of its own (BENCH_REDIS_URL, default redis://127.0.0.1:6379/13:
    flushed, so it must be empty or one this benchmark used before).
(2) Upload-to-start latency: with `--latency`, against a running `make run`
    stack, uploads N objects into a demo tenant's upload location and reports
    p50/p99 from the object landing to the build starting on the local engine.

    .venv/bin/python bench/dispatch.py [--tenants 1000 --builds 10000] [--latency --uploads 50]
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlaas_bench .venv/bin/python bench/dispatch.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_REDIS_MARKER = "mlaas-bench:dispatch"


def claim_redis(url: str) -> None:
    """Flush the benchmark's own Redis database; refuse one that holds someone else's keys."""
    import redis

    conn = redis.Redis.from_url(url)
    conn.ping()
    if conn.dbsize() and not conn.exists(BENCH_REDIS_MARKER):
        sys.exit(f"{url} holds {conn.dbsize()} keys this benchmark did not write: set BENCH_REDIS_URL to an "
                 "empty Redis database")
    conn.flushdb()
    conn.set(BENCH_REDIS_MARKER, "1")


def setup_django(database_url: str | None, redis_url: str | None = None) -> None:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlaas_portal.settings")
    import django

    django.setup()


def bench_dispatch(tenants: int, builds: int, rounds: int) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db.models import Count

    call_command("migrate", verbosity=0)
    from builds import dispatch as dispatch_module

    # Enqueueing is real (after commit, as in production); only timed, to say how much of a round it takes.
    from builds import queues as build_queues
    from builds.models import Build
    from builds.queues import build_queue, plan_queue_names
    from mlaas_portal.demo import seed_algorithms, seed_plans
    from tenants.models import Plan, Tenant

    real_enqueue = build_queues.enqueue_execute_many
    enqueue_times: list[float] = []

    def timed_enqueue(runs: list) -> None:
        began = time.perf_counter()
        real_enqueue(runs)
        elapsed = time.perf_counter() - began
        enqueue_times.extend([elapsed / len(runs)] * len(runs))

    build_queues.enqueue_execute_many = timed_enqueue
    plans = seed_plans()
    # Dispatch never looks at the step image: pin a placeholder instead of publishing one.
    from core.aws.ecr import EcrImage

    offline_image = EcrImage(repository_name="mlaas-steps", repository_uri="bench.invalid/mlaas-steps",
                             digest="sha256:" + "0" * 64, tags=("latest",))
    algorithm = seed_algorithms(offline_image)[0]
    Build.objects.all().delete()
    Tenant.objects.all().delete()
    rng = random.Random(7)
    tenant_rows = [Tenant(slug=f"bench-{i}", name=f"Bench {i}", plan=plans[i % 3], isolation="pool",
                          status=Tenant.Status.ACTIVE, bucket="bench", prefix=f"tenants/bench-{i}/")
                   for i in range(tenants)]
    Tenant.objects.bulk_create(tenant_rows, batch_size=500)
    tenant_rows = list(Tenant.objects.all())
    weights = [rng.paretovariate(1.2) for _ in tenant_rows]  # a few tenants upload a lot
    owners = rng.choices(tenant_rows, weights=weights, k=builds)
    Build.objects.bulk_create([
        Build(tenant=t, plan_id=t.plan_id, algorithm=algorithm, target="y", dataset_bucket="bench",
              dataset_key=f"{t.prefix}uploads/{i}.csv", status=Build.Status.QUEUED)
        for i, t in enumerate(owners)], batch_size=1000)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE builds_build")
    limits = {p.id: p for p in Plan.objects.all()}
    account_limit = settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT
    decisions = violations = 0
    round_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        chosen = dispatch_module.dispatch_pending()
        round_times.append(time.perf_counter() - started)
        decisions += len(chosen)
        active = Build.objects.filter(status__in=Build.ACTIVE)
        for row in active.values("plan_id").annotate(n=Count("id")):
            violations += row["n"] > limits[row["plan_id"]].plan_concurrent_limit
        for row in active.values("tenant_id", "plan_id").annotate(n=Count("id")):
            violations += row["n"] > limits[row["plan_id"]].tenant_concurrent_limit
        violations += active.count() > account_limit
        # Finish a random half of the active builds, freeing slots for the next round.
        ids = list(active.values_list("id", flat=True))
        done = rng.sample(ids, k=max(1, len(ids) // 2)) if ids else []
        Build.objects.filter(id__in=done).update(status=Build.Status.SUCCEEDED)
    total = sum(round_times)
    enqueued = sum(build_queue(name).count for name in plan_queue_names())
    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}   redis: {settings.REDIS_URL}")
    print(f"tenants: {tenants}  queued builds: {builds}  plans: 3  account limit: {account_limit}")
    print(f"dispatch rounds: {rounds}  builds started: {decisions}  execute jobs found in the plan queues: {enqueued}")
    print(f"round time: median {statistics.median(round_times) * 1000:.1f} ms, max {max(round_times) * 1000:.1f} ms"
          "   [one dispatch_pending() call: transaction with the dispatch lock, load_state() queries (limits, "
          "running counts, windowed candidates, last-served times), choose(), one conditional UPDATE per started "
          "build + its tenant's last_dispatched_at UPDATE, transitions bulk insert, COMMIT, then after commit per "
          "round one SELECT of the started builds' codes and one Redis pipeline enqueueing them]")
    print(f"dispatch decisions per second: {decisions / total:.0f}"
          "   [builds started / total time in dispatch_pending(), everything above included; rounds start at most "
          "the free account slots, so this is bounded by the limits, not the candidates; limit checks and "
          "finishing builds between rounds are not timed]")
    if enqueue_times:
        print(f"of which enqueue after commit: {sum(enqueue_times) / len(enqueue_times) * 1000:.2f} ms per build, "
              f"{sum(enqueue_times) / total * 100:.0f}% of round time"
              "   [builds.queues.enqueue_execute_many: every started build's rq Queue.enqueue (job hash saved, id "
              "pushed on its plan queue) in one Redis pipeline, one round trip per dispatch round]")
    print(f"limit violations: {violations}   [plan, tenant and account limits checked after every round]")
    if enqueued != decisions:
        sys.exit(f"{decisions - enqueued} started builds have no job in Redis: the enqueue failed (see the log)")

    # The pure selection function alone, on the same candidate set (no database writes).
    plans_l, by_plan, by_tenant, running, candidates, last = dispatch_module.load_state()
    started = time.perf_counter()
    repeats = 50
    for _ in range(repeats):
        dispatch_module.choose(candidates, plans_l, by_plan, by_tenant, running, account_limit, last)
    pure = (time.perf_counter() - started) / repeats
    print(f"choose() over {len(candidates)} candidates: {pure * 1000:.2f} ms per call"
          "   [the pure selection only: no database, no Redis; state loaded once beforehand]")


def bench_latency(uploads: int, slug: str) -> None:
    """Upload, wait for the build to start and finish (so capacity is free), repeat."""
    import requests
    from django.utils import timezone

    from builds.models import Build
    from builds.uploads import upload_presign
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug=slug)
    body = b"a,b,diagnosis\n" + b"".join(f"{i},{i % 7},{'yes' if i % 2 else 'no'}\n".encode() for i in range(60))
    latencies: list[float] = []
    for i in range(uploads):
        post = upload_presign(tenant=tenant, filename=f"latency-{i}.csv", size=len(body))
        response = requests.post(post["url"], data=post["fields"], files={"file": ("x.csv", body)}, timeout=10)
        response.raise_for_status()
        landed = timezone.now()
        deadline = time.monotonic() + 60
        build = None
        while time.monotonic() < deadline:
            build = Build.objects.filter(dataset_key=post["key"]).first()
            if build and build.transitions.filter(to_status="running").exists():
                break
            time.sleep(0.02)
        running_at = build.transitions.get(to_status="running").at
        latencies.append((running_at - landed).total_seconds())
        while not Build.objects.filter(pk=build.pk, status__in=Build.FINISHED).exists():
            time.sleep(0.05)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(len(latencies) * 0.99) - 1)]
    print(f"tenant: {slug}  uploads: {uploads}  (one at a time, capacity free)")
    print(f"object landed -> build running on the local engine: p50 {p50 * 1000:.0f} ms  "
          f"p99 {p99 * 1000:.0f} ms  max {latencies[-1] * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--latency", action="store_true", help="measure upload->start on a running make run")
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--tenant", default="globex")
    args = parser.parse_args()
    if args.latency:
        setup_django(None)
        bench_latency(args.uploads, args.tenant)
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite3"
        redis_url = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/13"
        claim_redis(redis_url)
        setup_django(url, redis_url)
        bench_dispatch(args.tenants, args.builds, args.rounds)


if __name__ == "__main__":
    main()
