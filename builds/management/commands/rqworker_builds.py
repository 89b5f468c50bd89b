"""`manage.py rqworker_builds [QUEUE ...]`: the build worker, serving every plan's queue in tier order.

Same options as django-rq's `rqworker`; the plan queues are not listed on the command line (plans are
rows staff add at any time), and QUEUEs named here are served after them.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from django.core.management.base import CommandError
from django_rq.management.commands.rqworker import Command as RQWorkerCommand
from django_rq.queues import get_queues
from django_rq.utils import reset_db_connections
from django_rq.workers import get_exception_handlers, get_worker_class
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.logutils import setup_loghandlers

from builds.queues import connection
from builds.worker import BuildWorker


class Command(RQWorkerCommand):
    help = "Run a build worker: every plan's queue, highest tier first, plans created later included."
    max_reconnect_delay = 30.0

    def handle(self, *args, **options):
        if options.get("pid"):
            with open(os.path.expanduser(options["pid"]), "w") as fp:
                fp.write(str(os.getpid()))
        level = {0: "WARNING", 1: "INFO"}.get(options["verbosity"], "DEBUG")
        setup_loghandlers(level)
        worker_class = get_worker_class(options["worker_class"] or BuildWorker)
        if not issubclass(worker_class, BuildWorker):
            raise CommandError(f"--worker-class must be a subclass of {BuildWorker.__module__}.BuildWorker")
        # Redis going away (a restart, a failover) must not end the worker: under honcho (`make run`) one
        # process exiting stops them all, and elsewhere builds would wait for someone to restart it. The
        # database is the truth about builds; the reconciler puts back the jobs a restarted Redis lost.
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                worker = worker_class(get_queues(*args) if args else [], connection=connection(),
                                      exception_handlers=get_exception_handlers() or None, name=options["name"],
                                      worker_ttl=options["worker_ttl"], serializer=options["serializer"])
                reset_db_connections()  # before any fork
                worker.work(burst=options["burst"], with_scheduler=options["with_scheduler"],
                            logging_level=level, max_jobs=options["max_jobs"],
                            max_idle_time=options["max_idle_time"])
                return
            except RedisConnectionError as exc:
                if options["burst"]:
                    self.stderr.write(str(exc))
                    sys.exit(1)
                if time.monotonic() - started > 60:  # it had been working: a new outage starts the backoff over
                    delay = 1.0
                # RQ's handlers would raise StopRequested into the sleep: a stop now simply ends the process.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.stderr.write(f"Redis unreachable ({exc}); starting the worker again in {delay:.0f} s")
                time.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
