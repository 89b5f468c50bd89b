"""Shared fixtures: the local AWS emulator (IAM enforcement on), Redis, factories."""

from __future__ import annotations

import os

import pytest

# Tests use their own Redis database so they never touch a running demo's queues.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def emulator():
    """One moto server for the whole run, with the platform identity bootstrapped."""
    from django.conf import settings

    from mlaas_portal.aws.clients import reset_client_cache
    from mlaas_portal.emulator import start_emulator

    running = start_emulator(port=0)
    saved = (settings.AWS_ENDPOINT_URL, settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY,
             settings.AWS_REGION)
    settings.AWS_ENDPOINT_URL = running.endpoint
    settings.AWS_ACCESS_KEY_ID = running.access_key_id
    settings.AWS_SECRET_ACCESS_KEY = running.secret_access_key
    settings.AWS_REGION = running.region
    reset_client_cache()
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
