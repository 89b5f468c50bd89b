from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from core.loops import Loop


class Command(BaseCommand):
    help = ("Periodic work of every app: builds (reconcile with the queues, poll engines, dispatch), tenants (AWS "
            "Marketplace subscription notifications, webhook retries) and billing (meter what builds recorded, the "
            "daily Cost Explorer sync on billing's own schedule, hourly AWS Marketplace metering).")

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=5.0)
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, **options):
        from billing.jobs import billing_tick
        from builds.jobs import reconcile
        from mlaas_portal.demo import demo_endpoint_ensure
        from tenants.marketplace import marketplace_poll_once
        from tenants.webhooks import webhooks_tick

        loop = Loop("scheduler")
        loop.install_signal_handlers()

        def tick():
            close_old_connections()
            counts = reconcile()
            counts["marketplace_notifications"] = marketplace_poll_once(wait_seconds=0)  # off without a product
            counts.update(billing_tick())
            counts.update(webhooks_tick())  # webhook retries and lost deliveries, by their due time
            if settings.MLAAS_DEMO_ENDPOINT:
                demo_state = demo_endpoint_ensure()
                if demo_state.startswith("deploying"):
                    self.stdout.write(f"scheduler: demo endpoint {demo_state}")
            if any(counts.values()):
                self.stdout.write(f"scheduler: {counts}")
            if options["once"]:
                loop.stop()

        self.stdout.write("scheduler: running")
        loop.run(tick, idle_seconds=options["interval"])
