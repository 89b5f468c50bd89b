from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from builds.platform import platform_bootstrap
from core.aws.errors import AwsError
from tenants.provisioning import trust_policies_refresh


class Command(BaseCommand):
    help = ("Create the shared platform resources once (intake queue and dead-letter queue, one EventBridge "
            "rule per isolation model, build ledger table; on the emulator the step image, registered by a digest of "
            "its build context). Idempotent; `make run` runs it.")

    def handle(self, *args, **options):
        try:
            resources = platform_bootstrap()
            retrusted = trust_policies_refresh()
        except AwsError as exc:
            hint = " (retry may help)" if exc.retryable else ""
            raise CommandError(f"platform bootstrap failed: {exc}{hint}") from exc
        for resource in resources:
            self.stdout.write(f"{resource.name}: {resource.arn}")
        if retrusted:
            self.stdout.write(f"tenant roles now trusting the platform's role or user: {', '.join(retrusted)}")
        self.stdout.write(self.style.SUCCESS(f"platform ready: {len(resources)} shared resources"))
