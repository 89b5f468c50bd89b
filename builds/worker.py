"""Build workers: the training stack imported once (each forked build starts warm), every plan's queue served."""

from __future__ import annotations

import math
import time

from rq import Worker


class PreloadedWorker(Worker):
    def __init__(self, *args, **kwargs):
        import pandas  # noqa: F401 - preloaded for the forked work horses
        import sklearn.ensemble  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        import mlaas_steps.preprocess  # noqa: F401
        import mlaas_steps.train  # noqa: F401
        from mlaas_steps.runner import warm_up

        warm_up()  # lazily loaded parts of pyarrow/scikit-learn, once, before any fork
        super().__init__(*args, **kwargs)


class PlanQueuesMixin:
    """Serves every plan's queue, highest tier first, including plans created while it runs.

    The plans are read again before each dequeue, and at least every
    `queue_refresh_seconds` while it waits, so a plan added by staff is served
    within seconds and no build waits on a queue nobody listens to. Queues
    passed in (for example `default`) are served after the plan queues.
    """

    queue_refresh_seconds = 5

    def __init__(self, queues=(), *args, **kwargs):
        super().__init__(list(queues), *args, **kwargs)
        self._fixed_queue_names = [q.name for q in self.queues]
        self.refresh_queues()

    def refresh_queues(self) -> None:
        from django.db import DatabaseError, connections

        from builds.queues import plan_queue_names

        try:
            names = plan_queue_names()
        except DatabaseError:
            self.log.warning("Worker %s: could not read the plans; serving %s for now", self.name,
                             ",".join(self.queue_names()), exc_info=True)
            return
        finally:
            connections.close_all()  # a forked work horse must never share the parent's connection
        names += [n for n in self._fixed_queue_names if n not in names]
        old = self.queue_names()
        if names == old:
            return
        self.queues = [self.queue_class(name, connection=self.connection, job_class=self.job_class,
                                        serializer=self.serializer, death_penalty_class=self.death_penalty_class)
                       for name in names]
        self._ordered_queues = self.queues[:]
        if self.birth_date is not None:  # registered already: tell Redis (Worker.all(queue=...), dashboards)
            self._register_queues(old, names)
        self.log.info("Worker %s: listening on %s", self.name, ",".join(names))

    def _register_queues(self, old: list[str], new: list[str]) -> None:
        from rq.worker_registration import WORKERS_BY_QUEUE_KEY

        with self.connection.pipeline() as pipeline:
            for name in set(old) - set(new):
                pipeline.srem(WORKERS_BY_QUEUE_KEY % name, self.key)
            for name in new:
                pipeline.sadd(WORKERS_BY_QUEUE_KEY % name, self.key)
            pipeline.hset(self.key, "queues", ",".join(new))
            pipeline.execute()

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst: one non-blocking look at every current queue
            self.refresh_queues()
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time) if self.queues else None
        idle_since = time.monotonic()
        while True:
            self.refresh_queues()
            wait = min(timeout, self.queue_refresh_seconds)
            if max_idle_time is not None:
                left = max_idle_time - (time.monotonic() - idle_since)
                if left <= 0:
                    return None
                wait = max(1, min(wait, math.ceil(left)))
            if not self.queues:  # no plan yet
                self.heartbeat()
                time.sleep(wait)
                continue
            # A bounded wait: the base loop returns None once `wait` passes without a job.
            result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            if result is not None:
                return result


class BuildWorker(PlanQueuesMixin, PreloadedWorker):
    """The build worker of `manage.py rqworker_builds`: every plan's queue, warm training stack."""
