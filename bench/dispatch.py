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


def seed(tenants: int, builds: int, account_limit: int):
    """Fresh tenants on 3 plans with `builds` queued, heavy-tailed (a few tenants upload most files)."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from builds.models import Build, BuildTransition
    from mlaas_portal.demo import seed_algorithms, seed_plans
    from tenants.models import Plan, Tenant

    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = account_limit
    plans = seed_plans()
    # Plan limits large enough that the account limit binds (seeded 4/8/12 would cap a round at 24).
    for plan in plans:
        Plan.objects.filter(pk=plan.pk).update(plan_concurrent_limit=max(plan.plan_concurrent_limit,
                                                                         account_limit // 2))
    # Dispatch never looks at the step image: pin a placeholder instead of publishing one.
    from core.aws.ecr import EcrImage

    offline_image = EcrImage(repository_name="mlaas-steps", repository_uri="bench.invalid/mlaas-steps",
                             digest="sha256:" + "0" * 64, tags=("latest",))
    algorithm = seed_algorithms(offline_image)[0]
    BuildTransition.objects.all().delete()
    Build.objects.all().delete()
    Tenant.objects.all().delete()
    rng = random.Random(7)
    Tenant.objects.bulk_create([
        Tenant(slug=f"bench-{i}", name=f"Bench {i}", plan=plans[i % 3], isolation="pool", status=Tenant.Status.ACTIVE,
               bucket="bench", prefix=f"tenants/bench-{i}/", default_algorithm=algorithm, default_target="y")
        for i in range(tenants)], batch_size=1000)
    tenant_rows = list(Tenant.objects.all())
    weights = [rng.paretovariate(1.2) for _ in tenant_rows]
    owners = rng.choices(tenant_rows, weights=weights, k=builds)
    for chunk in range(0, builds, 20000):
        Build.objects.bulk_create([
            Build(tenant=t, plan_id=t.plan_id, algorithm=algorithm, target="y", dataset_bucket="bench",
                  dataset_key=f"{t.prefix}uploads/{chunk + i}.csv", status=Build.Status.QUEUED)
            for i, t in enumerate(owners[chunk:chunk + 20000])], batch_size=2000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return rng


def count_violations(limits, account_limit) -> int:
    from django.db.models import Count

    from builds.models import Build

    violations = 0
    active = Build.objects.filter(status__in=Build.ACTIVE)
    for row in active.values("plan_id").annotate(n=Count("id")):
        plan = limits[row["plan_id"]]
        violations += row["n"] > plan.plan_concurrent_limit + plan.borrowing_limit
    for row in active.values("tenant_id", "plan_id").annotate(n=Count("id")):
        violations += row["n"] > limits[row["plan_id"]].tenant_concurrent_limit
    violations += active.count() > account_limit
    return violations


def bench_dispatch(tenants: int, builds: int, rounds: int, account_limit: int) -> None:
    from django.conf import settings
    from django.db import connection

    from builds import dispatch as dispatch_module
    from builds import queues as build_queues
    from builds.models import Build
    from builds.queues import build_queue, plan_queue_names
    from tenants.models import Plan

    real_enqueue = build_queues.enqueue_execute_many
    enqueue_times: list[float] = []

    def timed_enqueue(runs: list) -> None:
        # Enqueueing is real (after commit, as in production); only timed, to say how much of a round it takes.
        began = time.perf_counter()
        real_enqueue(runs)
        elapsed = time.perf_counter() - began
        enqueue_times.extend([elapsed / len(runs)] * len(runs))

    build_queues.enqueue_execute_many = timed_enqueue
    rng = seed(tenants, builds, account_limit)
    for name in plan_queue_names():
        build_queue(name).empty()
    limits = {p.id: p for p in Plan.objects.all()}
    decisions = violations = 0
    round_times, round_starts = [], []
    sql = SqlTimer()
    for _ in range(rounds):
        started = time.perf_counter()
        with connection.execute_wrapper(sql):
            chosen = dispatch_module.dispatch_pending()
        round_times.append(time.perf_counter() - started)
        round_starts.append(len(chosen))
        decisions += len(chosen)
        violations += count_violations(limits, account_limit)
        # Finish a random half of the active builds, freeing slots for the next round.
        ids = list(Build.objects.filter(status__in=Build.ACTIVE).values_list("id", flat=True))
        done = rng.sample(ids, k=max(1, len(ids) // 2)) if ids else []
        Build.objects.filter(id__in=done).update(status=Build.Status.SUCCEEDED)
    total = sum(round_times)
    enqueued = sum(build_queue(name).count for name in plan_queue_names())
    # A round with nothing free (account full): what intake and finished builds pay when the queue is long.
    full_rounds = []
    while Build.objects.filter(status__in=Build.ACTIVE).count() < account_limit and dispatch_module.dispatch_pending():
        pass
    for _ in range(20):
        began = time.perf_counter()
        assert dispatch_module.dispatch_pending() == []
        full_rounds.append(time.perf_counter() - began)
    queued = Build.objects.filter(status=Build.Status.QUEUED).count()
    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}   redis: {settings.REDIS_URL}")
    print(f"tenants: {tenants}  queued builds at start: {builds} (still queued at the end: {queued})  plans: 3  "
          f"account limit: {account_limit}  plan limits: "
          + ", ".join(f"{p.slug} {p.plan_concurrent_limit}/tenant {p.tenant_concurrent_limit}"
                      for p in limits.values()))
    print(f"dispatch rounds: {rounds}  builds started: {decisions} (median {statistics.median(round_starts):.0f} per "
          f"round)  execute jobs found in the plan queues: {enqueued}")
    print(f"round time: median {statistics.median(round_times) * 1000:.1f} ms, max {max(round_times) * 1000:.1f} ms"
          "   [one dispatch_pending() call: transaction with the dispatch lock; scheduling policy, plans and running "
          "counts; per plan the first tenants in fair-share order with a startable build (as many as the plan has "
          "room for); their oldest startable builds (PostgreSQL: one LATERAL probe per tenant); recent build times "
          "(cached a minute); choose(); one UPDATE claiming all, one SELECT of their codes, one UPDATE of the "
          "tenants' last_dispatched_at, one transitions bulk INSERT; COMMIT; after commit one Redis pipeline "
          "enqueueing every started build]")
    print(f"starts per second: {decisions / total:.0f}"
          "   [builds started / total time in dispatch_pending(), everything above included; each round starts at "
          "most the free account slots (about half the limit here); limit checks and finishing builds between "
          "rounds are not timed]")
    print(f"of which SQL: {sql.seconds / total * 100:.0f}% ({sql.count / rounds:.1f} statements a round, "
          f"{sql.seconds / rounds * 1000:.1f} ms a round)   [time inside cursor.execute, COMMIT included, as seen by "
          "Django's execute_wrapper; fetching rows into Python is in the Python share]")
    if enqueue_times:
        print(f"of which enqueue after commit: {sum(enqueue_times) / len(enqueue_times) * 1000:.3f} ms per build, "
              f"{sum(enqueue_times) / total * 100:.0f}% of round time"
              "   [builds.queues.enqueue_execute_many: one Redis call (Lua) saving every started build's RQ job "
              "hash and pushing its id on its plan queue]")
        python_share = 100 - sql.seconds / total * 100 - sum(enqueue_times) / total * 100
        print(f"of which Python (ORM, choose(), row handling): {python_share:.0f}%")
    print(f"round with nothing free (account full, {queued} queued): median "
          f"{statistics.median(full_rounds) * 1000:.2f} ms   [lock, policy, plans, running counts; no candidate query]")
    print(f"limit violations: {violations}   [plan (+ borrowing), tenant and account limits checked after every round]")
    if enqueued != decisions:
        sys.exit(f"{decisions - enqueued} started builds have no job in Redis: the enqueue failed (see the log)")

    # The pure selection function alone, on a candidate set with half the account free.
    ids = list(Build.objects.filter(status__in=Build.ACTIVE).values_list("id", flat=True))
    Build.objects.filter(id__in=ids[: len(ids) // 2]).update(status=Build.Status.SUCCEEDED)
    state, candidates, last, fair = dispatch_module.load_state()
    began = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        dispatch_module.choose(candidates, state.plans, state.running_by_plan, state.running_by_tenant,
                               state.account_running, state.account_limit, last, fair)
    pure = (time.perf_counter() - began) / repeats
    print(f"choose() over {len(candidates)} candidates: {pure * 1000:.2f} ms per call"
          "   [the pure selection only: no database, no Redis; state loaded once beforehand]")


class SqlTimer:
    """A Django execute_wrapper summing the time spent in the database driver."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - began
            self.count += 1


def profile_round(top: int = 25) -> None:
    """cProfile of one dispatch round with about half the account free (after bench_dispatch)."""
    import cProfile
    import pstats

    from builds import dispatch as dispatch_module
    from builds.models import Build

    ids = list(Build.objects.filter(status__in=Build.ACTIVE).values_list("id", flat=True))
    Build.objects.filter(id__in=ids[: len(ids) // 2]).update(status=Build.Status.SUCCEEDED)
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    started = dispatch_module.dispatch_pending()
    profiler.disable()
    print(f"profiled round: {len(started)} builds started in {(time.perf_counter() - began) * 1000:.0f} ms "
          "(under cProfile, which slows Python-heavy code most); top functions by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def enqueue_baseline(jobs: int) -> None:
    """The project's enqueue against RQ's own, for the same jobs, in this process and on the same Redis."""
    from rq import Queue

    from builds import queues

    names = queues.plan_queue_names()
    runs = [(10_000_000 + i, f"bench-{i}", names[i % len(names)]) for i in range(jobs)]

    def clear() -> None:
        for name in names:
            queues.build_queue(name).empty()

    def rq_enqueue_many() -> None:
        with queues.connection().pipeline() as pipe:
            for name in names:
                datas = [Queue.prepare_data(queues.EXECUTE_JOB_FUNC, (b,), job_id=queues.execute_job_id(code),
                                            timeout=6 * 3600, result_ttl=3600, failure_ttl=86400)
                         for b, code, q in runs if q == name]
                queues.build_queue(name).enqueue_many(datas, pipeline=pipe)
            pipe.execute()

    timings = {}
    for label, run in (("rq", rq_enqueue_many), ("project", lambda: queues.execute_jobs_enqueue(runs))):
        best = float("inf")
        for _ in range(3):
            clear()
            began = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - began)
        assert sum(queues.build_queue(n).count for n in names) == jobs
        timings[label] = best
    clear()
    print(f"enqueue of {jobs} execute jobs on {len(names)} plan queues, best of 3: RQ Queue.enqueue_many in one "
          f"pipeline {timings['rq'] * 1000:.1f} ms ({jobs / timings['rq']:.0f} jobs/s); project "
          f"execute_jobs_enqueue {timings['project'] * 1000:.1f} ms ({jobs / timings['project']:.0f} jobs/s): "
          f"{timings['rq'] / timings['project']:.1f}x RQ's   [both: job hashes saved and ids pushed, one round "
          "trip; RQ's includes building its Job objects]")


def bench_intake(uploads: int) -> None:
    """Uploads turned into queued builds per second, through builds.intake with the queue as bench_dispatch left it."""
    from django.db import connection

    from builds import intake
    from builds.models import Build
    from tenants.models import Tenant

    intake._object_metadata = lambda event: {}  # no S3 here: the metadata HEAD is the emulator's cost, not ours
    tenants = list(Tenant.objects.order_by("id")[:500])
    queued_before = Build.objects.filter(status=Build.Status.QUEUED).count()
    events = [intake.UploadEvent(bucket="bench", key=f"{tenants[i % len(tenants)].prefix}uploads/new-{i}.csv",
                                 size=1000, version=f"v{i}") for i in range(uploads)]
    sql = SqlTimer()
    began = time.perf_counter()
    with connection.execute_wrapper(sql):
        for batch in range(0, uploads, 10):  # SQS hands intake at most 10 messages a receive
            intake.intake_events(events[batch:batch + 10])
            intake.intake_dispatch()
    elapsed = time.perf_counter() - began
    made = Build.objects.filter(dataset_key__contains="/uploads/new-").count()
    print(f"intake: {uploads} uploads with {queued_before} queued: {made / elapsed:.0f} uploads/s turned into builds "
          f"({made} builds; SQL {sql.seconds / elapsed * 100:.0f}% of the time, {sql.count / (uploads / 10):.1f} "
          "statements a batch)   [builds.intake.intake_events per batch of 10 events (what one SQS receive hands "
          "over): one dedup query, one tenant query, one algorithm query, then one transaction inserting the "
          "builds and their received/queued transitions; then one dispatch round per batch (the account is full, "
          "so each round is the cheap one). Not included: the SQS receive/delete and the S3 metadata HEAD "
          "(stubbed to {} here: emulator round trips)]")


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


def bench_pipeline_latency(uploads: int, workers: int) -> None:
    """Upload landed -> build running, with free capacity, through the real path minus S3 and SQS.

    Per upload, one at a time: `intake_events` (the object's metadata HEAD stubbed), the batch's
    dispatch round (`intake_dispatch`: claim + Redis enqueue), then a real build worker process
    (`manage.py rqworker_builds`, forking per job as in production) dequeues the execute job and
    records `running`. Landed = just before intake_event; running = the `running` transition's
    time. The build is then marked finished so its slot is free again, and the next upload waits
    until every worker is idle (the engine, with no emulator here, fails the build it started).
    Not included: S3 -> EventBridge -> SQS delivery and the SQS receive (AWS's side; the
    intake loop long-polls, so a message is handed over at once).
    """
    import subprocess

    from django.conf import settings
    from django.db import connection

    from builds import intake
    from builds.models import Build, BuildTransition
    from tenants.models import Tenant

    seed(50, 0, 20)
    intake._object_metadata = lambda event: {}
    env = dict(os.environ, DATABASE_URL=os.environ["DATABASE_URL"], REDIS_URL=settings.REDIS_URL,
               AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_CONNECT_TIMEOUT="1", MLAAS_ACCOUNT_CONCURRENT_LIMIT="20")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "rqworker_builds", "--verbosity", "0"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        from rq import Worker

        from builds.queues import connection as redis_connection

        up = time.monotonic() + 120
        while len(Worker.all(connection=redis_connection())) < workers and time.monotonic() < up:
            time.sleep(0.2)
        _wait_workers_idle(up)
        tenants = list(Tenant.objects.order_by("id"))
        latencies, to_queued, to_enqueued = [], [], []
        for i in range(uploads):
            tenant = tenants[i % len(tenants)]
            event = intake.UploadEvent(bucket="bench", key=f"{tenant.prefix}uploads/lat-{i}.csv", size=10,
                                       version=f"lat{i}")
            landed = time.time()
            intake.intake_events([event])
            to_queued.append(time.time() - landed)
            intake.intake_dispatch()
            to_enqueued.append(time.time() - landed)
            build = Build.objects.get(dedup_key=event.dedup_key)
            deadline = time.monotonic() + 60
            running = None
            while time.monotonic() < deadline and running is None:
                running = BuildTransition.objects.filter(build=build, to_status="running").values_list(
                    "at", flat=True).first()
                if running is None:
                    time.sleep(0.005)
            if running is None:
                sys.exit(f"build {build.code} did not reach running in 60 s: are the workers up?")
            latencies.append(running.timestamp() - landed)
            Build.objects.filter(pk=build.pk).update(status=Build.Status.SUCCEEDED)
            connection.close()
            _wait_workers_idle(time.monotonic() + 120)  # free capacity means a free worker too
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, max(0, round(len(latencies) * 0.99) - 1))]
        print(f"upload landed -> build running, capacity free, {uploads} uploads one at a time, {workers} build "
              f"worker process(es): p50 {statistics.median(latencies) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  "
              f"max {latencies[-1] * 1000:.0f} ms   [intake_events + one dispatch round + Redis enqueue + "
              "rqworker_builds dequeue, fork, build_execute's running transition; not S3/EventBridge/SQS delivery]")
        print(f"  of which landed -> queued (intake_events) p50 {statistics.median(to_queued) * 1000:.0f} ms, "
              f"landed -> enqueued (dispatch round + enqueue done) p50 {statistics.median(to_enqueued) * 1000:.0f} ms;"
              " the rest is the worker: dequeue, fork, loading the build, the running transition")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _wait_workers_idle(deadline: float) -> None:
    from rq import Worker

    from builds.queues import connection as redis_connection

    while time.monotonic() < deadline:
        workers = Worker.all(connection=redis_connection())
        if workers and all(w.get_state() == "idle" for w in workers):
            return
        time.sleep(0.05)


SCALES = {"small": (1000, 10000, 20), "large": (10000, 100000, 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=[*SCALES, "both"], default="both",
                        help="small: 1,000 tenants / 10,000 queued / account limit 20; "
                             "large: 10,000 / 100,000 / 1,000 (then intake with 100,000 queued)")
    parser.add_argument("--tenants", type=int, help="override the scale's tenants")
    parser.add_argument("--builds", type=int, help="override the scale's queued builds")
    parser.add_argument("--account-limit", type=int, help="override the scale's account limit")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--intake-uploads", type=int, default=2000)
    parser.add_argument("--pipeline-latency", type=int, default=0, metavar="N",
                        help="measure upload landed -> running for N uploads with real build workers (no make run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one round after each scale")
    parser.add_argument("--no-intake", action="store_true", help="skip the intake measurement (large scale)")
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
        if args.pipeline_latency:
            bench_pipeline_latency(args.pipeline_latency, args.workers)
            return
        for scale in (SCALES if args.scale == "both" else [args.scale]):
            tenants, builds, limit = SCALES[scale]
            print(f"--- {scale} ---")
            limit = args.account_limit or limit
            bench_dispatch(args.tenants or tenants, args.builds or builds, args.rounds, limit)
            enqueue_baseline(limit)
            if args.profile:
                profile_round()
            if scale == "large" and not args.no_intake:
                bench_intake(args.intake_uploads)


if __name__ == "__main__":
    main()
