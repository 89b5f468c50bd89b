"""`seed_demo` (what `make run` seeds): one tenant's small and large samples fall in different size bands, and a
tenant arrives through an AWS Marketplace registration."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.slow  # provisions the four demo tenants on the emulator (about 90 s)


def test_seed_demo_sizes_acmes_two_samples_apart_and_brings_a_marketplace_tenant(emulator, db, clean_redis):
    from builds.intake import intake_poll_once
    from builds.models import Build
    from tenants.models import MarketplaceCustomer, Tenant, TenantEvent

    out = StringIO()
    call_command("seed_demo", stdout=out)
    for _ in range(6):  # the uploads' S3 events reach the intake queue
        intake_poll_once(wait_seconds=1)
        if Build.objects.filter(tenant__slug="acme").count() == 2:
            break

    acme = {b.dataset_name: b for b in Build.objects.filter(tenant__slug="acme")}
    small, large = acme["sample-breast_cancer.csv"], acme["sample-breast_cancer_large.csv"]
    assert small.dataset_size < 1024**2 < large.dataset_size
    assert (small.processing_instance_type, small.training_instance_type, small.size_band["number"]) == (
        "ml.m5.large", "ml.m5.large", 1)
    assert (large.processing_instance_type, large.training_instance_type, large.size_band["number"]) == (
        "ml.m5.xlarge", "ml.m5.xlarge", 2)

    hooli = Tenant.objects.get(slug="hooli")
    customer = MarketplaceCustomer.objects.get()
    assert (customer.tenant, customer.status, customer.customer_aws_account_id) == (hooli, "subscribed",
                                                                                    "111122223333")
    assert customer.access_request.handled_at is not None
    assert list(TenantEvent.objects.filter(tenant=hooli, action__startswith="marketplace").order_by("at", "id")
                .values_list("action", flat=True)) == ["marketplace_linked", "marketplace_subscribe_success"]

    call_command("seed_demo", stdout=StringIO())  # idempotent: nothing new
    assert (MarketplaceCustomer.objects.count(), Tenant.objects.filter(slug="hooli").count()) == (1, 1)
