from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from builds.intake import intake_poll_once
from core.loops import Loop


class Command(BaseCommand):
    help = "Long-poll the SQS intake queue and turn upload events into builds."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=int, default=5, help="SQS long-poll seconds (1-20).")
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, **options):
        loop = Loop("intake")
        loop.install_signal_handlers(interrupt_ticks=True)  # intake is at-least-once and idempotent

        def tick():
            close_old_connections()
            handled = intake_poll_once(wait_seconds=options["wait"], should_stop=loop.stopping.is_set)
            if handled:
                self.stdout.write(f"intake: {handled} event(s)")
            if options["once"]:
                loop.stop()

        self.stdout.write("intake: polling")
        loop.run(tick, idle_seconds=0.05)
