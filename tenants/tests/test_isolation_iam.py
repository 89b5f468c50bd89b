"""Tenant isolation proven by denial: IAM enforcement on, real assumed-role credentials.

Tenant A's credentials (from the service, the API and the command) may write and
read A's upload location and are refused everywhere else: tenant B's bucket or
prefix, and the shared pool bucket outside A's prefix. B's slug starts with A's
slug, so a prefix match that forgot its trailing slash would show here.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from builds.uploads import upload_presign
from core.aws import gateways
from tenants import naming
from tenants.credentials import tenant_assume
from tenants.tests.helpers import DENIED, config_from_credentials, config_from_payload, s3_access

ALL_DENIED = {"put": DENIED, "get": DENIED, "list": DENIED, "list_bucket": DENIED}
OUTSIDE_KEY = "shared/outside.csv"
NEIGHBOUR_BODY = b"tenant b data\n"


@pytest.fixture
def pool_bucket(emulator, db) -> str:
    """The shared pool bucket, holding an object outside every tenant's prefix."""
    bucket = naming.pool_bucket(gateways.platform_sts().account_id())
    s3 = gateways.platform_s3()
    s3.create_bucket(bucket, settings.AWS_REGION)
    s3.put_object(bucket, OUTSIDE_KEY, b"platform only\n")
    return bucket


@pytest.fixture
def neighbours(make_tenant, pool_bucket):
    """Tenant A and tenant B (whose slug extends A's), B holding one upload."""

    def make(a_isolation: str, b_isolation: str):
        a = make_tenant(isolation=a_isolation)
        b = make_tenant(isolation=b_isolation, slug=f"{a.slug}-b")
        b_key = f"{b.upload_prefix}b.csv"
        gateways.platform_s3().put_object(b.bucket, b_key, NEIGHBOUR_BODY)
        return a, b, b_key

    return make


def _reach(config, a, b, b_key, pool_bucket) -> dict[str, dict[str, str]]:
    return {
        "own uploads": s3_access(config, bucket=a.bucket, key=f"{a.upload_prefix}a.csv", prefix=a.upload_prefix),
        "tenant b": s3_access(config, bucket=b.bucket, key=b_key, prefix=b.upload_prefix),
        "pool outside prefix": s3_access(config, bucket=pool_bucket, key=OUTSIDE_KEY, prefix="shared/"),
    }


def _expected(a_isolation: str) -> dict[str, dict[str, str]]:
    # A pool tenant may list its prefix, never the whole shared bucket.
    own = {"put": "ok", "get": "ok", "list": "ok", "list_bucket": "ok" if a_isolation == "silo" else DENIED}
    return {"own uploads": own, "tenant b": ALL_DENIED, "pool outside prefix": ALL_DENIED}


def _untouched(b, b_key, pool_bucket) -> list[bytes]:
    s3 = gateways.platform_s3()
    return [s3.get_bytes(b.bucket, b_key), s3.get_bytes(pool_bucket, OUTSIDE_KEY)]


@pytest.mark.parametrize(("a_isolation", "b_isolation"),
                         [("silo", "silo"), ("pool", "pool"), ("silo", "pool"), ("pool", "silo")])
def test_tenant_credentials_reach_own_uploads_only(neighbours, pool_bucket, a_isolation, b_isolation):
    a, b, b_key = neighbours(a_isolation, b_isolation)
    config = config_from_credentials(tenant_assume(a, purpose="test"))

    reach = _reach(config, a, b, b_key, pool_bucket)

    assert reach == _expected(a_isolation)
    assert _untouched(b, b_key, pool_bucket) == [NEIGHBOUR_BODY, b"platform only\n"]
    listed = gateways.tenant_s3(tenant_assume(a, purpose="test")).list_keys(a.bucket, a.upload_prefix)
    assert [item["Key"] for item in listed] == [f"{a.upload_prefix}a.csv"]


def _api_credentials(tenant, make_member, api_client_for) -> dict:
    response = api_client_for(make_member(tenant)).post(f"/api/v1/tenants/{tenant.slug}/credentials")
    assert response.status_code == 200, response.content
    return response.json()


def _command_credentials(tenant, make_member, api_client_for) -> dict:
    out = io.StringIO()
    call_command("tenant_credentials", tenant.slug, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("source", [_api_credentials, _command_credentials], ids=["api", "command"])
@pytest.mark.parametrize(("a_isolation", "b_isolation"), [("pool", "pool"), ("silo", "pool")])
def test_issued_credentials_reach_own_uploads_only(neighbours, pool_bucket, make_member, api_client_for, emulator,
                                                   source, a_isolation, b_isolation):
    a, b, b_key = neighbours(a_isolation, b_isolation)

    payload = source(a, make_member, api_client_for)
    reach = _reach(config_from_payload(payload), a, b, b_key, pool_bucket)

    assert sorted(payload) == ["AccessKeyId", "Endpoint", "Expiration", "Region", "SecretAccessKey",
                               "SessionToken"]
    assert (payload["Region"], payload["Endpoint"]) == (settings.AWS_REGION, emulator.endpoint)
    lifetime = (datetime.fromisoformat(payload["Expiration"]) - datetime.now(UTC)).total_seconds()
    assert 0 < lifetime <= settings.MLAAS_CREDENTIALS_TTL_SECONDS
    assert reach == _expected(a_isolation)
    assert _untouched(b, b_key, pool_bucket) == [NEIGHBOUR_BODY, b"platform only\n"]


# --- presigned requests, signed with the tenant's credentials ------------------------------------------------


def _post(presigned: dict, body: bytes, *, url: str | None = None, key: str | None = None) -> requests.Response:
    fields = dict(presigned["fields"], **({"key": key} if key else {}))
    return requests.post(url or presigned["url"], data=fields, files={"file": ("data.csv", body)}, timeout=10)


def _bucket_url(bucket: str) -> str:
    return f"{settings.AWS_ENDPOINT_URL}/{bucket}"


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_presigned_post_uploads_into_own_uploads(make_tenant, isolation):
    a = make_tenant(isolation=isolation)
    body = b"age,diagnosis\n41,1\n"

    presigned = upload_presign(tenant=a, filename="train.csv", size=len(body))
    response = _post(presigned, body)

    assert presigned["key"].startswith(a.upload_prefix)
    assert (response.status_code, gateways.platform_s3().get_bytes(a.bucket, presigned["key"])) == (204, body)


@pytest.mark.parametrize(("a_isolation", "b_isolation"), [("silo", "silo"), ("pool", "pool"), ("pool", "silo")])
def test_presigned_post_altered_to_other_tenant_key_is_refused(neighbours, a_isolation, b_isolation):
    a, b, _ = neighbours(a_isolation, b_isolation)
    stolen_key = f"{b.upload_prefix}planted.csv"

    presigned = upload_presign(tenant=a, filename="train.csv", size=20)
    response = _post(presigned, b"age,diagnosis\n41,1\n", url=_bucket_url(b.bucket), key=stolen_key)

    assert (response.status_code, "<Code>AccessDenied</Code>" in response.text) == (403, True)
    assert gateways.platform_s3().list_keys(b.bucket, stolen_key) == []


@pytest.mark.parametrize(("a_isolation", "b_isolation"), [("silo", "silo"), ("pool", "pool")])
def test_presigned_get_signed_for_a_on_b_key_is_refused(neighbours, a_isolation, b_isolation):
    a, b, b_key = neighbours(a_isolation, b_isolation)
    own_key = f"{a.upload_prefix}mine.csv"
    gateways.platform_s3().put_object(a.bucket, own_key, b"mine\n")
    signer = gateways.tenant_s3(tenant_assume(a, purpose="download"))

    own = requests.get(signer.presigned_get(a.bucket, own_key), timeout=10)
    other = requests.get(signer.presigned_get(b.bucket, b_key), timeout=10)

    assert [(own.status_code, own.content), (other.status_code, "<Code>AccessDenied</Code>" in other.text)] == [
        (200, b"mine\n"), (403, True)]


def test_api_upload_presign_lets_a_member_upload_to_its_tenant(make_tenant, make_member, api_client_for):
    a = make_tenant(isolation="pool")
    body = b"age,diagnosis\n41,1\n"

    response = api_client_for(make_member(a)).post(
        f"/api/v1/tenants/{a.slug}/uploads", data={"filename": "train.csv", "size": len(body)},
        content_type="application/json")
    presigned = response.json()
    uploaded = _post(presigned, body)

    assert (response.status_code, presigned["key"].startswith(a.upload_prefix)) == (200, True)
    assert (uploaded.status_code, gateways.platform_s3().get_bytes(a.bucket, presigned["key"])) == (204, body)


def test_credentials_page_gives_a_member_credentials_for_its_uploads(make_tenant, make_member, logged_in):
    a = make_tenant(isolation="pool")

    response = logged_in(make_member(a)).post(reverse("tenants:credentials", args=[a.slug]))

    creds = response.context["creds"]
    assert (response.status_code, sorted(creds)) == (200, ["AccessKeyId", "Endpoint", "Expiration", "Region",
                                                          "SecretAccessKey", "SessionToken"])
    assert s3_access(config_from_payload(creds), bucket=a.bucket, key=f"{a.upload_prefix}web.csv",
                     prefix=a.upload_prefix) == {"put": "ok", "get": "ok", "list": "ok", "list_bucket": DENIED}
    assert f"aws s3 cp data.csv {a.upload_uri}" in response.content.decode()
