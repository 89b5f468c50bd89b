"""Idempotent demo: admin, plans, algorithms, prices, demo tenants with sample data uploaded."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand

from mlaas_portal import demo

DEMO_TENANTS = [
    # slug, name, plan, isolation, algorithm, target, sample dataset
    ("acme", "Acme Health", "standard", "silo", "gbm-classifier", "diagnosis", "breast_cancer"),
    ("globex", "Globex Clinics", "basic", "pool", "gbm-regressor", "progression", "diabetes"),
    ("initech", "Initech Vineyards", "premium", "pool", "random-forest-classifier", "cultivar", "wine"),
]


class Command(BaseCommand):
    help = "Create the demo admin, plans, algorithms, prices and demo tenants with sample data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--no-tenants", action="store_true", help="Only reference data and the admin.")
        parser.add_argument("--admin-password", default="admin")

    def handle(self, *args, **options):
        demo.seed_reference_data()
        demo.seed_admin(password=options["admin_password"])
        self.stdout.write("reference data and admin ready")
        if options["no_tenants"]:
            return
        self._seed_tenants()

    def _seed_tenants(self):
        from builds.pipeline.sample_data import write_sample_csvs

        from builds.models import Algorithm, Build
        from mlaas_portal.aws import gateways
        from tenants.credentials import tenant_assume
        from tenants.models import Tenant
        from tenants.provisioning import run_provisioning
        from tenants.services import member_invite, tenant_onboard

        with tempfile.TemporaryDirectory() as tmp:
            samples = write_sample_csvs(Path(tmp))
            for slug, name, plan, isolation, algorithm, target, sample in DEMO_TENANTS:
                tenant = Tenant.objects.filter(slug=slug).first()
                if tenant is None:
                    tenant = tenant_onboard(slug=slug, name=name, plan=plan, isolation=isolation,
                                            default_algorithm=Algorithm.objects.get(slug=algorithm),
                                            default_target=target)
                    invitation = member_invite(tenant=tenant, email=f"owner@{slug}.example", role="owner", actor=None)
                    invitation.user.set_password(f"{slug}-demo")
                    invitation.user.save()
                if tenant.status != Tenant.Status.ACTIVE:
                    tenant.status = Tenant.Status.PROVISIONING
                    tenant.save(update_fields=["status"])
                    if not run_provisioning(tenant):
                        failed = tenant.provisioning_steps.filter(status="failed").first()
                        self.stderr.write(f"{slug}: provisioning failed at {failed.name}: {failed.error}")
                        continue
                tenant.refresh_from_db()
                s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="seed"))
                if Build.objects.filter(tenant=tenant).exists() or s3.list_keys(tenant.bucket, tenant.upload_prefix):
                    self.stdout.write(f"{slug}: ready (sample data already uploaded)")
                    continue
                key = f"{tenant.upload_prefix}sample-{sample}.csv"
                s3.put_object(tenant.bucket, key, Path(samples[sample]).read_bytes(), content_type="text/csv")
                self.stdout.write(f"{slug}: uploaded s3://{tenant.bucket}/{key}; login owner@{slug}.example "
                                  f"/ {slug}-demo")
