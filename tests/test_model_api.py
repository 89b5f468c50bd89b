"""REST API of one model version: detail with insight and lineage, approve / reject (owners and staff), a
short-lived download link; a stranger (another tenant's user) gets 404 on each."""

from __future__ import annotations

import pytest
import requests

from builds.models import ModelVersion
from tests.web_support import create_build, create_member, create_tenant

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}

INSIGHT = {"confusion_matrix": {"labels": ["no", "yes"], "matrix": [[5, 1], [0, 4]]},
           "roc": {"curves": [{"label": "yes", "fpr": [0, 0.2, 1], "tpr": [0, 0.9, 1], "auc": 0.93}],
                   "one_vs_rest": False},
           "feature_importance": {"features": [{"name": "age", "importance": 0.12, "std": 0.01}],
                                  "baseline": 0.9, "repeats": 3, "rows": 10, "complete": True}}


@pytest.fixture
def two(reference_data):
    acme = create_tenant(slug="acme", plan="basic")
    globex = create_tenant(slug="globex", plan="premium", isolation="pool")
    return acme, create_member(acme, role="owner"), globex, create_member(globex, role="owner")


def test_get_model_version_with_insight_lineage_and_stranger_404(two, api_client_for):
    acme, acme_owner, globex, globex_owner = two
    first = create_build(acme, version=True)
    build = create_build(acme, version=True, metrics={"accuracy": 0.9})
    ModelVersion.objects.filter(build=build).update(insight=INSIGHT, lineage={"dataset": {"key": "uploads/x.csv"}},
                                                    replaces=first.model_version)

    own = api_client_for(acme_owner).get("/api/v1/tenants/acme/models/2")
    stranger = api_client_for(globex_owner).get("/api/v1/tenants/acme/models/2")
    missing = api_client_for(acme_owner).get("/api/v1/tenants/acme/models/9")

    body = own.json()
    assert own.status_code == 200
    assert (body["version"], body["build"], body["metrics"]) == (2, str(build.code), {"accuracy": 0.9})
    assert (body["insight"], body["lineage"], body["replaces"]) == (INSIGHT, {"dataset": {"key": "uploads/x.csv"}}, 1)
    assert (body["decided_by"], body["decided_at"], body["approval_status"]) == (None, None, "PendingManualApproval")
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)


@pytest.fixture
def registered(make_tenant, make_member):
    """A provisioned tenant whose version 1 is a real model package in the emulator's registry."""
    from core.aws import gateways

    tenant = make_tenant(isolation="silo", plan="basic")
    build = create_build(tenant, version=True)
    version = ModelVersion.objects.get(build=build)
    arn = gateways.platform_sagemaker().create_model_package(
        group=tenant.model_package_group, model_data_url=f"s3://{tenant.bucket}/{version.artifact_key}",
        metrics={"accuracy": 0.95}, image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-steps:1",
        description="test", customer_metadata={"build": str(build.code)})
    ModelVersion.objects.filter(pk=version.pk).update(arn=arn)
    other = make_tenant(isolation="pool", plan="basic")
    return tenant, make_member(tenant, role="owner"), make_member(tenant), make_member(other, role="owner")


def _registry_status(arn: str) -> str:
    from core.aws import gateways

    return gateways.platform_sagemaker().describe_model_package(arn)["ModelApprovalStatus"]


def test_owner_approves_then_rejects_through_the_api_and_the_registry_follows(registered, api_client_for):
    tenant, owner, _, _ = registered
    client = api_client_for(owner)

    approved = client.post(f"/api/v1/tenants/{tenant.slug}/models/1/approve")
    in_registry_after_approve = _registry_status(ModelVersion.objects.get().arn)
    rejected = client.post(f"/api/v1/tenants/{tenant.slug}/models/1/reject")

    version = ModelVersion.objects.get()
    assert (approved.status_code, approved.json()["approval_status"], approved.json()["decided_by"]) == (
        200, "Approved", owner.username)
    assert in_registry_after_approve == "Approved"
    assert (rejected.status_code, rejected.json()["approval_status"]) == (200, "Rejected")
    assert (version.approval_status, version.decided_by, _registry_status(version.arn)) == (
        "Rejected", owner, "Rejected")


def test_plain_member_may_not_decide_and_stranger_gets_404(registered, api_client_for):
    tenant, _, member, stranger = registered

    refused = api_client_for(member).post(f"/api/v1/tenants/{tenant.slug}/models/1/approve")
    foreign_approve = api_client_for(stranger).post(f"/api/v1/tenants/{tenant.slug}/models/1/approve")
    foreign_reject = api_client_for(stranger).post(f"/api/v1/tenants/{tenant.slug}/models/1/reject")

    assert (refused.status_code, refused.json()) == (403, {
        "code": "forbidden", "fields": None,
        "message": "Only the tenant's owners (or staff) approve or reject model versions."})
    assert (foreign_approve.status_code, foreign_approve.json()) == (404, NOT_FOUND)
    assert (foreign_reject.status_code, foreign_reject.json()) == (404, NOT_FOUND)
    version = ModelVersion.objects.get()
    assert (version.approval_status, _registry_status(version.arn)) == ("PendingManualApproval",
                                                                        "PendingManualApproval")


def test_staff_may_decide(registered, staff_user, api_client_for):
    tenant, *_ = registered

    response = api_client_for(staff_user).post(f"/api/v1/tenants/{tenant.slug}/models/1/approve")

    assert (response.status_code, response.json()["decided_by"]) == (200, staff_user.username)


def test_download_gives_a_short_lived_link_that_works_and_stranger_404(registered, api_client_for):
    from core.aws import gateways

    tenant, _, member, stranger = registered
    key = ModelVersion.objects.get().artifact_key
    gateways.platform_s3().client.put_object(Bucket=tenant.bucket, Key=key, Body=b"model bytes")

    own = api_client_for(member).get(f"/api/v1/tenants/{tenant.slug}/models/1/download")
    foreign = api_client_for(stranger).get(f"/api/v1/tenants/{tenant.slug}/models/1/download")

    assert (own.status_code, sorted(own.json()), own.json()["expires_in"]) == (200, ["expires_in", "url"], 300)
    assert "X-Amz-Expires=300" in own.json()["url"]
    fetched = requests.get(own.json()["url"], timeout=10)
    assert (fetched.status_code, fetched.content) == (200, b"model bytes")
    assert (foreign.status_code, foreign.json()) == (404, NOT_FOUND)


def test_download_of_a_missing_artifact_is_410_saying_so(registered, api_client_for):
    tenant, _, member, _ = registered

    response = api_client_for(member).get(f"/api/v1/tenants/{tenant.slug}/models/1/download")

    assert (response.status_code, response.json()) == (410, {
        "code": "artifact_gone", "fields": None,
        "message": "The model artifact of version 1 is no longer in storage; build the model again to get a "
                   "new version."})
