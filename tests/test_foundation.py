"""Foundation: strict settings, production checks, no AWS client at import, auth redirects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "x" * 20 + "-production-secret-key-that-is-long-enough-1234",
              "ALLOWED_HOSTS": "portal.example.com"}


def run_django(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLAAS_", "DEBUG", "SECRET_KEY"))}
    base.update(DJANGO_SETTINGS_MODULE="mlaas_portal.settings", **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True,
                          timeout=120)


SETUP = "import django; django.setup()"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("DEBUG", "maybe", "DEBUG must be a boolean"),
    ("MLAAS_ENGINE", "spark", "MLAAS_ENGINE must be one of local, sagemaker"),
    ("DATABASE_URL", "mysql://db/x", "DATABASE_URL must be a URL with scheme"),
    ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must be a URL with scheme"),
    ("AWS_ENDPOINT_URL", "ftp://emulator", "AWS_ENDPOINT_URL must be a URL with scheme"),
    ("MLAAS_ACCOUNT_CONCURRENT_LIMIT", "lots", "MLAAS_ACCOUNT_CONCURRENT_LIMIT must be an integer"),
    ("MLAAS_ACCOUNT_CONCURRENT_LIMIT", "0", "MLAAS_ACCOUNT_CONCURRENT_LIMIT must be >= 1"),
    ("AWS_REGION", "", "AWS_REGION is required"),
])
def test_settings_reject_bad_values_naming_the_variable(variable, value, message):
    result = run_django(SETUP, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_settings_production_requires_secret_key_and_hosts():
    result = run_django(SETUP, DEBUG="false")
    assert "SECRET_KEY is required" in result.stderr
    result = run_django(SETUP, DEBUG="false", SECRET_KEY=PRODUCTION["SECRET_KEY"])
    assert "ALLOWED_HOSTS is required when DEBUG is off" in result.stderr


def test_check_deploy_passes_with_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env={**os.environ, **PRODUCTION}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_gateway_never_creates_a_client_at_import():
    code = """
import botocore.session
def refuse(*args, **kwargs):
    raise SystemExit("a boto3 client was created at import time")
botocore.session.Session.create_client = refuse
import django; django.setup()
import importlib, pkgutil
import mlaas_portal, core.aws, tenants, builds, billing
for package in (mlaas_portal, tenants, builds, billing):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".tests" in info.name or info.name.endswith(("__main__", ".migrations")) or ".management." in info.name:
            continue
        importlib.import_module(info.name)
import mlaas_portal.urls, mlaas_portal.api
from core.aws.clients import client_cache_size
import sys
assert client_cache_size() == 0
assert "sagemaker.mlops" not in sys.modules, "the sagemaker SDK must stay out of the web process"
print("ok")
"""
    result = run_django(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_anonymous_user_is_sent_to_login(client, db):
    for url in ("/", "/builds/", "/tenants/", "/billing/", "/tokens/"):
        response = client.get(url)
        assert (response.status_code, response.url.split("?")[0]) == (302, "/login/"), url


def test_tenant_member_cannot_open_staff_pages(client, db, reference_data):
    from django.contrib.auth.models import User

    from tenants.models import Membership, Plan, Tenant

    tenant = Tenant.objects.create(slug="solo", name="Solo", plan=Plan.objects.get(slug="basic"), isolation="pool",
                                   status="active")
    user = User.objects.create_user("m@solo.example", password="pw-Secret-123")
    Membership.objects.create(user=user, tenant=tenant, role="owner")
    client.force_login(user)
    for url in ("/tenants/", "/tenants/new/", "/tenants/plans/", "/billing/", "/billing/prices/",
                "/builds/algorithms/", "/tenants/requests/"):
        assert client.get(url).status_code == 404, url
    assert client.get("/admin/").status_code == 302  # Django admin: staff login page
    assert client.get("/admin/rq/").status_code in (302, 404)


def test_demo_admin_can_log_in(client, db):
    from mlaas_portal.demo import seed_admin

    seed_admin(password="admin")
    response = client.post("/login/", {"username": "admin", "password": "admin"})
    assert (response.status_code, response.url) == (302, "/")
    assert client.get("/").status_code == 200
