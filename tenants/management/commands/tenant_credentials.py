from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from tenants.credentials import credentials_payload, tenant_assume
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Print short-lived AWS credentials scoped to the tenant's data location, as JSON."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--duration", type=int, default=None, help="Seconds (900-43200).")

    def handle(self, *args, **options):
        tenant = Tenant.objects.select_related("plan").filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant `{options['slug']}`")
        if tenant.status != Tenant.Status.ACTIVE:
            raise CommandError(f"tenant `{tenant.slug}` is {tenant.status}; credentials are for active tenants")
        creds = tenant_assume(tenant, purpose="cli", duration=options["duration"])
        self.stdout.write(json.dumps(credentials_payload(creds), indent=2))
