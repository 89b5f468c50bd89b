from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import tenant_onboard


class Command(BaseCommand):
    help = "Onboard a tenant: records it and provisions its AWS resources in the background."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--plan", required=True)
        parser.add_argument("--isolation", required=True, choices=["silo", "pool"])
        parser.add_argument("--name", default="")
        parser.add_argument("--owner-email", default="")
        parser.add_argument("--wait", action="store_true", help="Return when provisioning ends; non-zero if it failed.")
        parser.add_argument("--timeout", type=int, default=600, help="Seconds to wait with --wait.")

    def handle(self, *args, **options):
        try:
            tenant = tenant_onboard(slug=options["slug"], name=options["name"], plan=options["plan"],
                                    isolation=options["isolation"], owner_email=options["owner_email"])
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"tenant {tenant.slug} created; provisioning queued")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        seen: set[str] = set()
        while time.monotonic() < deadline:
            tenant.refresh_from_db()
            for step in tenant.provisioning_steps.exclude(status="pending").exclude(status="running"):
                if step.name not in seen:
                    seen.add(step.name)
                    self.stdout.write(f"  {step.name}: {step.status} {step.resource_arn or step.error}")
            if tenant.status == Tenant.Status.ACTIVE:
                self.stdout.write(self.style.SUCCESS(f"tenant {tenant.slug} is active: {tenant.upload_uri}"))
                return
            if tenant.status == Tenant.Status.FAILED:
                raise CommandError(f"provisioning of {tenant.slug} failed; see the tenant page and retry")
            time.sleep(0.5)
        raise CommandError(f"provisioning of {tenant.slug} did not finish within {options['timeout']} s "
                           "(is a provisioning worker running?)")
