from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from mlaas_portal.loops import Loop


class Command(BaseCommand):
    help = "Periodic work: reconcile builds with the queues, poll engines, dispatch, daily billing sync."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=5.0)
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, **options):
        from billing.jobs import cost_sync_if_due
        from builds.jobs import reconcile

        loop = Loop("scheduler")
        loop.install_signal_handlers()
        last_billing = 0.0

        def tick():
            nonlocal last_billing
            close_old_connections()
            counts = reconcile()
            if any(counts.values()):
                self.stdout.write(f"scheduler: {counts}")
            if time.monotonic() - last_billing > 3600:
                cost_sync_if_due()
                last_billing = time.monotonic()
            if options["once"]:
                loop.stop()

        self.stdout.write("scheduler: running")
        loop.run(tick, idle_seconds=options["interval"])
