"""Idempotent demo: admin, plans, algorithms, prices, demo tenants with sample data uploaded."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from core.aws.errors import AwsError
from mlaas_portal import demo

DEMO_TENANTS = [
    # slug, name, plan, isolation, algorithm, target, sample datasets
    # acme's second dataset is a synthetic copy of the first over 1 MiB: the standard plan's second size band, so
    # the two builds run on different instance types (demo.SIZE_BANDS).
    ("acme", "Acme Health", "standard", "silo", "gbm-classifier", "diagnosis",
     ("breast_cancer", "breast_cancer_large")),
    ("globex", "Globex Clinics", "basic", "pool", "gbm-regressor", "progression", ("diabetes",)),
    ("initech", "Initech Vineyards", "premium", "pool", "random-forest-classifier", "cultivar", ("wine",)),
    # Arrived through an AWS Marketplace registration (demo.seed_marketplace_registration).
    ("hooli", "Hooli Wines", "basic", "pool", "random-forest-classifier", "cultivar", ("wine",)),
]
MARKETPLACE_TENANT = "hooli"


class Command(BaseCommand):
    help = "Create the demo admin, plans, algorithms, prices and demo tenants with sample data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--no-tenants", action="store_true", help="Only reference data and the admin.")
        parser.add_argument("--admin-password", default="admin")
        parser.add_argument("--no-samples", action="store_true",
                            help="Tenants and their logins without uploading the sample data (no demo builds): "
                                 "bench/load.py and bench/faults.py measure only the builds they upload.")

    def handle(self, *args, **options):
        demo.seed_reference_data()
        demo.seed_admin(password=options["admin_password"])
        self.stdout.write("reference data and admin ready")
        if options["no_tenants"]:
            return
        from mlaas_steps.sample_data import write_sample_csvs
        from tenants.provisioning import provisioning_upgrade, reprovision_missing

        if settings.AWS_ENDPOINT_URL:
            restored = reprovision_missing()
            if restored:
                self.stdout.write(f"emulator restarted: re-provisioned {', '.join(restored)}")
        upgraded = provisioning_upgrade()  # tenants made by an earlier release get this release's policies
        if upgraded:
            self.stdout.write(f"tenant policies brought up to date: {', '.join(upgraded)}")
        from mlaas_steps.sample_data import write_large_sample

        with tempfile.TemporaryDirectory() as tmp:
            samples = write_sample_csvs(Path(tmp))
            samples["breast_cancer_large"] = write_large_sample(
                samples["breast_cancer"], Path(tmp) / "breast_cancer_large.csv", min_bytes=demo.MIB,
                target="diagnosis")
            for spec in DEMO_TENANTS:
                try:
                    access_request = (demo.seed_marketplace_registration(plan=spec[2])
                                      if spec[0] == MARKETPLACE_TENANT else None)
                    self._seed_tenant(*spec, sample_paths={s: Path(samples[s]) for s in spec[-1]},
                                      access_request=access_request, upload_samples=not options["no_samples"])
                except AwsError as exc:  # the rest of the demo still comes up
                    self.stderr.write(f"{spec[0]}: not ready: {exc}")

    def _seed_tenant(self, slug, name, plan, isolation, algorithm, target, sample_names, *,
                     sample_paths: dict[str, Path], access_request=None, upload_samples: bool = True):
        from builds.models import Algorithm, Build
        from core.aws import gateways
        from tenants.credentials import tenant_assume
        from tenants.models import Tenant
        from tenants.provisioning import run_provisioning
        from tenants.services import member_invite, tenant_onboard

        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_onboard(slug=slug, name=name, plan=plan, isolation=isolation,
                                    default_algorithm=Algorithm.objects.get(slug=algorithm),
                                    default_target=target, provision_in_background=False)
            invitation = member_invite(tenant=tenant, email=f"owner@{slug}.example", role="owner", actor=None)
            invitation.user.set_password(f"{slug}-demo")
            invitation.user.save()
        if access_request is not None:
            demo.seed_marketplace_link(access_request=access_request, tenant=tenant)
        if tenant.status != Tenant.Status.ACTIVE:
            Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.PROVISIONING)
            tenant.status = Tenant.Status.PROVISIONING
            if not run_provisioning(tenant):
                failed = tenant.provisioning_steps.filter(status="failed").first()
                self.stderr.write(f"{slug}: provisioning failed at {failed.name}: {failed.error}")
                return
        tenant.refresh_from_db()
        if not upload_samples:
            self.stdout.write(f"{slug}: ready (no sample data uploaded); login owner@{slug}.example / {slug}-demo")
            return
        s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="seed"))
        if Build.objects.filter(tenant=tenant).exists() or s3.list_keys(tenant.bucket, tenant.upload_prefix):
            self.stdout.write(f"{slug}: ready (sample data already uploaded)")
            return
        for sample, sample_path in sample_paths.items():
            key = f"{tenant.upload_prefix}sample-{sample}.csv"
            s3.put_object(tenant.bucket, key, sample_path.read_bytes(), content_type="text/csv")
            self.stdout.write(f"{slug}: uploaded s3://{tenant.bucket}/{key} ({sample_path.stat().st_size:,} bytes)")
        self.stdout.write(f"{slug}: login owner@{slug}.example / {slug}-demo")
