"""Fixtures of the tenants tests; the root conftest provides the emulator and factories."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def tenant_row(db, reference_data):
    """A Tenant row with plausible resource names and no AWS resources.

    For views and services that never call AWS: web isolation, members,
    plans, query counts. Anything that touches AWS uses `make_tenant`.
    """
    from tenants.models import Plan, Tenant

    def make(*, slug: str | None = None, isolation: str = "silo", plan: str = "standard",
             status: str = Tenant.Status.ACTIVE, name: str = "", role_arn: str | None = None) -> Tenant:
        slug = slug or f"r{uuid.uuid4().hex[:10]}"
        silo = isolation == Tenant.Isolation.SILO
        if role_arn is None:
            role_arn = f"arn:aws:iam::123456789012:role/mlaas-tenant-{slug}"
        return Tenant.objects.create(
            slug=slug, name=name or f"Tenant {slug}", plan=Plan.objects.get(slug=plan), isolation=isolation,
            status=status, bucket=f"mlaas-t-{slug}-123456789012" if silo else "mlaas-pool-123456789012",
            prefix="" if silo else f"tenants/{slug}/", role_arn=role_arn,
            model_package_group=f"mlaas-{slug}-models",
        )

    return make


@pytest.fixture
def logged_in():
    """A Django test client logged in as the given user."""
    from django.test import Client

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users made here log in with force_login or tokens: skip PBKDF2's deliberate slowness."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def receiver(settings):
    """A local HTTP receiver of webhooks, reachable because private addresses are allowed (as in development)."""
    from tenants.tests.webhook_receiver import start_receiver

    settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE = True
    found, server = start_receiver()
    yield found
    server.shutdown()
    server.server_close()
