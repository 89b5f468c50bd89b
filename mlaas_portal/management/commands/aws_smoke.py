"""manage.py aws_smoke [--keep] [--timeout SECONDS]

Checks a real account (or the emulator) end to end: identity and region, the deployed pipeline,
the step image, intake, the cost allocation tag; then one tiny build through intake, dispatch
and the configured engine, and removes what it created. Exits non-zero naming the stage that
failed. See mlaas_portal/smoke.py.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from mlaas_portal.smoke import SmokeRun


def positive_seconds(value: str) -> float:
    import argparse

    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most 86400 seconds, got {value!r}")
    return seconds


class Command(BaseCommand):
    help = ("Check the account (or the emulator) end to end: identity, pipeline, step image, intake, cost tag; "
            "then one tiny build through the configured engine; cleans up.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--keep", action="store_true", help="keep the throwaway tenant and its build")
        parser.add_argument("--timeout", type=positive_seconds, default=900.0,
                            help="seconds the end-to-end build may take, intake to finish (default 900)")

    def handle(self, *args, keep: bool, timeout: float, **options) -> None:
        started = time.monotonic()
        run = SmokeRun(write=self.stdout.write, timeout=timeout, keep=keep)
        run.run()
        total = time.monotonic() - started
        if run.failed:
            raise CommandError(f"aws_smoke failed at stage {run.failed[0]}"
                               + (f" (also: {', '.join(run.failed[1:])})" if len(run.failed) > 1 else "")
                               + f" after {total:.1f} s")
        warnings = [r.name for r in run.results if r.outcome == "warn"]
        self.stdout.write(self.style.SUCCESS(
            f"aws_smoke passed in {total:.1f} s" + (f" (warnings: {', '.join(warnings)})" if warnings else "")))
