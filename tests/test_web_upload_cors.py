"""The upload page posts the file from the portal's origin straight to S3: the answer to that POST must
carry the bucket's CORS headers for the portal origin (and only for it), or the browser reports a network
error for an upload that succeeded. Checked against the emulator, whose moto needs `post_cors`."""

from __future__ import annotations

import pytest
import requests


@pytest.fixture
def tenant(make_tenant, settings):
    settings.PORTAL_ORIGIN = "http://portal.example:8000"  # before provisioning: the bucket's CORS rule
    return make_tenant(isolation="silo", plan="basic")


def _post(tenant, origin: str) -> requests.Response:
    from builds.uploads import upload_presign

    post = upload_presign(tenant=tenant, filename="data.csv", size=12)
    return requests.post(post["url"], data=post["fields"], files={"file": ("data.csv", b"a,label\n1,x\n")},
                         headers={"Origin": origin}, timeout=10)


def test_upload_answer_allows_the_portal_origin(tenant):
    response = _post(tenant, "http://portal.example:8000")

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://portal.example:8000"


def test_upload_answer_gives_another_origin_no_allow_header(tenant):
    response = _post(tenant, "http://evil.example")

    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_of_the_upload_allows_the_portal_origin_only(tenant, emulator):
    url = f"{emulator.endpoint}/{tenant.bucket}"
    headers = {"Access-Control-Request-Method": "POST"}

    ours = requests.options(url, headers={**headers, "Origin": "http://portal.example:8000"}, timeout=10)
    theirs = requests.options(url, headers={**headers, "Origin": "http://evil.example"}, timeout=10)

    assert (ours.status_code, ours.headers.get("Access-Control-Allow-Origin")) == (200, "http://portal.example:8000")
    assert theirs.status_code == 403
