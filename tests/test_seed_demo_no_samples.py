"""`seed_demo --no-samples` (what bench/stack.py seeds): the demo tenants and their logins, no sample data and so
no demo builds competing with the builds a load or fault run uploads."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_seed_demo_no_samples_makes_the_tenant_and_login_without_uploads(emulator, db, clean_redis, monkeypatch):
    from django.contrib.auth import get_user_model

    from builds.models import Build
    from core.aws import gateways
    from mlaas_portal.management.commands import seed_demo
    from tenants.credentials import tenant_assume
    from tenants.models import Tenant

    acme = next(spec for spec in seed_demo.DEMO_TENANTS if spec[0] == "acme")
    # One tenant is enough (provisioning takes seconds), under a slug of its own: the session's emulator may hold
    # the real acme's bucket, with its samples, from another test.
    monkeypatch.setattr(seed_demo, "DEMO_TENANTS", [("acme-quiet", "Acme Quiet", *acme[2:])])

    out = StringIO()
    call_command("seed_demo", "--no-samples", stdout=out)

    tenant = Tenant.objects.get(slug="acme-quiet")
    assert tenant.status == Tenant.Status.ACTIVE
    assert get_user_model().objects.get(username="owner@acme-quiet.example").check_password("acme-quiet-demo")
    s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="test"))
    assert s3.list_keys(tenant.bucket, tenant.upload_prefix) == []
    assert Build.objects.count() == 0
    assert "acme-quiet: ready (no sample data uploaded)" in out.getvalue()
