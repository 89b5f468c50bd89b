from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from builds.platform import platform_bootstrap
from core.aws.errors import AwsError


class Command(BaseCommand):
    help = ("Create the shared platform resources once (intake queue and dead-letter queue, one EventBridge "
            "rule per isolation model, build ledger table; on the emulator the step image, registered by a digest of "
            "its build context). Idempotent; `make run` runs it.")

    def handle(self, *args, **options):
        try:
            resources = platform_bootstrap()
        except AwsError as exc:
            hint = " (retry may help)" if exc.retryable else ""
            raise CommandError(f"platform bootstrap failed: {exc}{hint}") from exc
        for resource in resources:
            self.stdout.write(f"{resource.name}: {resource.arn}")
        self.stdout.write(self.style.SUCCESS(f"platform ready: {len(resources)} shared resources"))
