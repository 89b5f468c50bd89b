"""Shared fixtures: the local AWS emulator (IAM enforcement on), Redis, factories."""

from __future__ import annotations

import os

import pytest

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pytest_configure(config):
    """Tests use their own Redis database so they never touch a running demo's queues.

    Settings may already be loaded (pytest-django loads them early), so the
    queue configuration is rewritten in place: django-rq holds the same dicts.
    """
    from django.conf import settings

    url = os.environ.get("REDIS_URL", "")
    if not url.endswith("/15"):
        url = TEST_REDIS_URL
    os.environ["REDIS_URL"] = url
    settings.REDIS_URL = url
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url


@pytest.fixture(scope="session")
def emulator():
    """One moto server for the whole run, with the platform identity bootstrapped."""
    from django.conf import settings

    from core.aws.clients import reset_client_cache
    from emulator import start_emulator

    running = start_emulator(port=0)
    saved = (settings.AWS_ENDPOINT_URL, settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY,
             settings.AWS_REGION)
    settings.AWS_ENDPOINT_URL = running.endpoint
    settings.AWS_ACCESS_KEY_ID = running.access_key_id
    settings.AWS_SECRET_ACCESS_KEY = running.secret_access_key
    settings.AWS_REGION = running.region
    reset_client_cache()
    from builds.platform import platform_bootstrap

    platform_bootstrap()  # what `make run` does once: the shared intake queue, rules and ledger
    yield running
    (settings.AWS_ENDPOINT_URL, settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY,
     settings.AWS_REGION) = saved
    reset_client_cache()
    running.stop()


@pytest.fixture(scope="session")
def redis_conn():
    import django_rq

    conn = django_rq.get_connection("default")
    try:
        conn.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis is not reachable at {os.environ['REDIS_URL']}: {exc}. Run `make test`, which starts one.")
    conn.flushdb()
    return conn


@pytest.fixture
def clean_redis(redis_conn):
    redis_conn.flushdb()
    yield redis_conn
    redis_conn.flushdb()


@pytest.fixture
def reference_data(db, emulator):
    """Plans (basic/standard/premium), algorithms and instance prices, as seed_demo makes them.

    Needs the emulator: the algorithms pin the step image the seed publishes there (DescribeImages).
    """
    from mlaas_portal.demo import seed_reference_data

    seed_reference_data()


@pytest.fixture(scope="session")
def local_runtime(emulator):
    """What the local runtime executes: the deployed pipeline (the step image is in the emulator's ECR already:
    `platform_bootstrap` publishes it and the seed pins the algorithms to its digest)."""
    from django.conf import settings

    from builds.management.commands.deploy_pipeline import pipeline_deploy

    pipeline_deploy(name=settings.MLAAS_PIPELINE_NAME)


@pytest.fixture
def make_tenant(db, emulator, reference_data, local_runtime):
    """Onboard and provision (synchronously) a tenant with a unique slug against the emulator."""
    import uuid

    from builds.models import Algorithm
    from tenants.provisioning import run_provisioning
    from tenants.services import tenant_onboard

    def make(*, slug: str | None = None, isolation: str = "silo", plan: str = "standard",
             algorithm: str = "gbm-classifier", target: str = "diagnosis", name: str = ""):
        tenant = tenant_onboard(slug=slug or f"t{uuid.uuid4().hex[:10]}", name=name, plan=plan, isolation=isolation,
                                default_algorithm=Algorithm.objects.get(slug=algorithm), default_target=target,
                                provision_in_background=False)
        ok = run_provisioning(tenant)
        assert ok, [(s.name, s.error) for s in tenant.provisioning_steps.all()]
        tenant.refresh_from_db()
        return tenant

    return make


@pytest.fixture
def make_member(db):
    """A tenant user (owner or member) with a known password."""
    import uuid

    from django.contrib.auth.models import User

    from tenants.models import Membership

    def make(tenant, *, role: str = "member", password: str = "pw-Secret-123"):
        user = User.objects.create_user(username=f"u{uuid.uuid4().hex[:8]}@{tenant.slug}.example",
                                        password=password)
        Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    return make


@pytest.fixture
def staff_user(db):
    from django.contrib.auth.models import User

    return User.objects.create_user(username="staff@vendor.example", password="pw-Secret-123", is_staff=True)


@pytest.fixture
def api_client_for():
    """A Django test client that sends a bearer token for the given user."""
    from django.test import Client

    from tenants.services import api_token_create

    def make(user):
        return Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)}")

    return make


@pytest.fixture
def subprocess_env(emulator):
    """Environment for worker processes started by a test: same test database, Redis and emulator."""
    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        env["DATABASE_URL"] = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env.update({
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": emulator.access_key_id,
        "AWS_SECRET_ACCESS_KEY": emulator.secret_access_key,
        "AWS_REGION": emulator.region,
        "DJANGO_SETTINGS_MODULE": "mlaas_portal.settings",
    })
    return env
