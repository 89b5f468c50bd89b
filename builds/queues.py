"""The RQ queues builds run on: one per plan, named here and nowhere else.

Plans are rows staff can add at any time, so their queues cannot be listed in
settings or in the Procfile: the build worker (`builds.worker.BuildWorker`,
`manage.py rqworker_builds`) reads the plans before each dequeue, and the
enqueue helper builds the queue from the shared connection by name.
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from rq import Queue, Retry, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

logger = logging.getLogger(__name__)

# settings.py imports this module (RQ_QUEUES answers for any plan queue), and services, dispatch and
# execution all enqueue through it: it imports no domain module, and names its jobs by dotted path.

LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

PLAN_QUEUE_PREFIX = "plan-"


def plan_queue_name(plan_slug: str) -> str:
    return f"{PLAN_QUEUE_PREFIX}{plan_slug}"


def plan_queue_names() -> list[str]:
    """Every plan's queue, highest tier first: the order a build worker serves them in."""
    from tenants.models import Plan

    slugs = Plan.objects.order_by("-tier_rank", "slug").values_list("slug", flat=True)
    return [plan_queue_name(slug) for slug in slugs]


def connection():
    """The one Redis every queue lives on (settings.REDIS_URL, as configured for the default queue).

    One client per process and URL: django-rq makes a new client, pool and TCP connection on every call,
    which was most of an enqueue's cost (bench/dispatch.py). redis-py's pool reconnects after a fork.
    """
    return _connection_for(settings.RQ_QUEUES["default"]["URL"])


@functools.lru_cache(maxsize=4)
def _connection_for(url: str):
    import django_rq

    return django_rq.get_connection("default")


def build_queue(name: str, *, queue_class: type[Queue] = Queue, **kwargs) -> Queue:
    """A plan queue by name, whether or not settings.RQ_QUEUES lists it."""
    timeout = settings.RQ_QUEUES["default"].get("DEFAULT_TIMEOUT")
    return queue_class(name, connection=connection(), default_timeout=timeout, **kwargs)


def plan_queue(plan_slug: str) -> Queue:
    return build_queue(plan_queue_name(plan_slug))


def queue_worker_counts(names: list[str]) -> dict[str, int]:
    """Live workers listening on each queue (a killed worker counts until its key expires, worker_ttl + 60 s)."""
    redis = connection()
    return {name: len(Worker.all(queue=Queue(name, connection=redis))) for name in names}


class QueueSettings(dict):
    """settings.RQ_QUEUES: the fixed queues by name, and any plan queue with the default queue's settings.

    So django-rq (`manage.py rqworker plan-<slug>`, `django_rq.get_queue`) knows plans added after start-up.
    """

    def __missing__(self, name):
        if isinstance(name, str) and name.startswith(PLAN_QUEUE_PREFIX) and "default" in self:
            return self["default"]
        raise KeyError(name)


# ----- enqueue helpers: the job runs `builds.jobs.<name>`, which loads the row and calls a service -----

EXECUTE_JOB_FUNC = "builds.jobs.execute"
EXECUTE_JOB_OPTIONS = dict(job_timeout=6 * 3600, result_ttl=3600, failure_ttl=86400)


def execute_job_id(build_code: str) -> str:
    return f"build-execute-{build_code}"


DISPATCH_PENDING_KEY = "mlaas:dispatch:pending"
DISPATCH_PENDING_TTL = 30  # a lost job (Redis flushed, worker killed) blocks new requests this long at most


def enqueue_dispatch() -> None:
    """Request a dispatch round, coalesced: at most one dispatch job waits at any time.

    The flag is set with NX; whoever sets it enqueues the job, everyone else's request is
    already covered, because the job clears the flag (`dispatch_request_taken`) before it
    reads the queue, so it sees every build committed before the flag was found set.
    """
    try:
        if connection().set(DISPATCH_PENDING_KEY, "1", nx=True, ex=DISPATCH_PENDING_TTL):
            build_queue("default").enqueue("builds.jobs.dispatch", job_timeout=120, result_ttl=60)
    except Exception:  # noqa: BLE001 - Redis down: the periodic reconciler dispatches instead
        logger.warning("could not enqueue dispatch; the reconciler will pick it up", exc_info=True)


def dispatch_request_taken() -> None:
    """The dispatch job starts: requests from now on need a new round."""
    try:
        connection().delete(DISPATCH_PENDING_KEY)
    except Exception:  # noqa: BLE001 - the flag expires by itself
        logger.warning("could not clear the dispatch request flag", exc_info=True)


def enqueue_execute(build_id: int, build_code: str, queue_name: str) -> None:
    try:
        build_queue(queue_name).enqueue(EXECUTE_JOB_FUNC, build_id, job_id=execute_job_id(build_code),
                                        **EXECUTE_JOB_OPTIONS)
    except Exception:  # noqa: BLE001
        logger.warning("could not enqueue build %s; the reconciler will retry", build_id, exc_info=True)


def enqueue_execute_many(builds: list[tuple[int, str, str]]) -> None:
    """(build id, build code, queue name) each, in one Redis round trip (`execute_jobs_enqueue`)."""
    if not builds:
        return
    try:
        execute_jobs_enqueue(builds)
    except Exception:  # noqa: BLE001
        logger.warning("could not enqueue %d builds; the reconciler will retry", len(builds), exc_info=True)


def execute_job_exists(build_code: str) -> bool:
    try:
        job = Job.fetch(execute_job_id(build_code), connection=connection())
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE_STATUSES


def enqueue_ledger(build_id: int) -> None:
    try:
        build_queue("default").enqueue("builds.jobs.write_ledger", build_id,
                                       retry=Retry(max=5, interval=[5, 30, 60, 300, 900]), job_timeout=60)
    except Exception:  # noqa: BLE001 - the reconciler writes ledgers that are still missing
        logger.warning("could not enqueue ledger write for build %s", build_id, exc_info=True)


def enqueue_endpoint(kind: str, endpoint_id: int) -> None:
    """`provision` or `teardown` of a test endpoint (builds.jobs.endpoint_<kind>); the scheduler redoes lost ones."""
    try:
        build_queue("default").enqueue(f"builds.jobs.endpoint_{kind}", endpoint_id, job_timeout=900,
                                       result_ttl=600, failure_ttl=86400)
    except Exception:  # noqa: BLE001 - Redis down: builds.endpoints.endpoints_tick enqueues it again
        logger.warning("could not enqueue endpoint %s %s; the scheduler will retry", kind, endpoint_id, exc_info=True)


def enqueue_batch_job(job_id: int) -> None:
    """Run a batch scoring job (builds.jobs.batch_job_run); the scheduler requeues lost ones."""
    try:
        build_queue("batch").enqueue("builds.jobs.batch_job_run", job_id, job_timeout=3600, result_ttl=600,
                                       failure_ttl=86400)
    except Exception:  # noqa: BLE001 - Redis down: builds.batch.batch_jobs_tick enqueues it again
        logger.warning("could not enqueue batch job %s; the scheduler will retry", job_id, exc_info=True)
# ----- the dispatcher's enqueue: many execute jobs, one Redis round trip, RQ's own job hash -----

# One call saves every job hash and pushes every id: the fields all jobs share travel once,
# each job adds its key, queue, id, data and description. Same writes as Queue.enqueue
# (HSET of Job.to_dict(), RPUSH of the id, SADD of the queue to rq:queues), done by Redis.
_ENQUEUE_MANY_LUA = """
local queues = tonumber(ARGV[1])
local nshared = tonumber(ARGV[2])
local shared = {}
for i = 1, nshared * 2 do shared[i] = ARGV[2 + i] end
for q = 1, queues do redis.call('SADD', KEYS[1], KEYS[1 + q]) end
local base = 3 + nshared * 2
local jobs = (#KEYS - 1 - queues)
for j = 1, jobs do
  local a = base + (j - 1) * 5
  local key = KEYS[1 + queues + j]
  redis.call('HSET', key, 'origin', ARGV[a + 1], 'data', ARGV[a + 3], 'description', ARGV[a + 4], unpack(shared))
  redis.call('RPUSH', KEYS[1 + tonumber(ARGV[a])], ARGV[a + 2])
end
return jobs
"""

_PER_JOB_FIELDS = ("origin", "data", "description")


def _shared_execute_fields(queue: Queue) -> dict:
    """The hash fields every execute job of this round shares: RQ's own `Job.to_dict()` of one job, once."""
    job = queue.create_job(EXECUTE_JOB_FUNC, args=(0,), job_id="template", timeout=EXECUTE_JOB_OPTIONS["job_timeout"],
                           result_ttl=EXECUTE_JOB_OPTIONS["result_ttl"],
                           failure_ttl=EXECUTE_JOB_OPTIONS["failure_ttl"])
    queue._prepare_for_queue(job)  # origin, enqueued_at, timeout, status=queued: what Queue.enqueue sets
    return {k: v for k, v in job.to_dict().items() if k not in _PER_JOB_FIELDS}


def execute_jobs_enqueue(builds: list[tuple[int, str, str]]) -> int:
    """Enqueue `builds.jobs.execute(build_id)` for each (build id, build code, queue name) in one Redis call.

    The jobs are plain RQ jobs (any RQ worker runs them; Job.fetch reads them), with the same
    id (`execute_job_id`), timeout and TTLs as `enqueue_execute`; RQ's own enqueue spends about
    half a millisecond of Python per job, this path a few microseconds (bench/dispatch.py).
    Raises on a Redis error; returns the number of jobs enqueued.
    """
    if not builds:
        return 0
    import zlib

    from rq.utils import get_call_string

    names = list(dict.fromkeys(q for _, _, q in builds))
    queues = [build_queue(name) for name in names]
    index = {name: i + 1 for i, name in enumerate(names)}
    shared = _shared_execute_fields(queues[0])
    serializer = queues[0].serializer
    keys = [Queue.redis_queues_keys, *(q.key for q in queues)]
    args: list = [len(queues), len(shared)]
    for field_name, value in shared.items():
        args += [field_name, value]
    for build_id, build_code, queue_name in builds:
        job_id = execute_job_id(build_code)
        keys.append(Job.redis_job_namespace_prefix + job_id)
        call = (EXECUTE_JOB_FUNC, None, (build_id,), {})
        args += [index[queue_name], queue_name, job_id, zlib.compress(serializer.dumps(call)),
                 get_call_string(EXECUTE_JOB_FUNC, (build_id,), {}, max_length=75)]
    return int(_enqueue_many_script()(keys=keys, args=args))


@functools.lru_cache(maxsize=4)
def _script_for(url: str):
    return connection().register_script(_ENQUEUE_MANY_LUA)


def _enqueue_many_script():
    return _script_for(settings.RQ_QUEUES["default"]["URL"])
