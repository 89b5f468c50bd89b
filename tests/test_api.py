"""REST API /api/v1/: every endpoint's happy path with its exact fields, a stranger (another tenant's member)
gets 404 on each tenant-scoped one, error bodies are JSON with a stable code, lists paginate, and the OpenAPI
schema describes every endpoint."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import requests

from builds.models import Build
from tenants.models import Tenant
from tests.web_support import T0, create_build, create_member, create_tenant  # noqa: F401

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}


def iso(dt) -> str | None:
    """How the API renders a datetime (Django's JSON encoder: UTC, milliseconds, `Z`)."""
    from django.core.serializers.json import DjangoJSONEncoder

    return None if dt is None else DjangoJSONEncoder().default(dt)


@pytest.fixture
def two(reference_data):
    """Tenant rows acme and globex (no AWS), an owner each, and staff."""
    acme = create_tenant(slug="acme", name="Acme Corp", plan="basic")
    globex = create_tenant(slug="globex", name="Globex", plan="premium", isolation="pool")
    return acme, create_member(acme, role="owner"), globex, create_member(globex, role="owner")


WAITING = ("queue_position", "estimated_start_after", "estimated_start_before", "waiting_reason", "waiting_message")


def build_json(b: Build, waiting: dict | None = None) -> dict:
    """`waiting`: the queued build's waiting fields (builds/tests/test_waiting.py checks them); None otherwise."""
    return {"id": str(b.code), "tenant": b.tenant.slug, "plan": b.plan.slug, "status": b.status,
            "algorithm": b.algorithm.slug, "target": b.target, "dataset_key": b.dataset_key, "source": b.source,
            "created_at": iso(b.created_at), "started_at": iso(b.started_at), "ended_at": iso(b.ended_at),
            **(waiting or dict.fromkeys(WAITING)), "sizing": sizing_json(b)}


def sizing_json(b: Build) -> dict:
    """The sizing a build row records; a row without it (made before size bands) shows its plan's instances."""
    band = b.size_band or {}
    return {"processing_instance_type": b.processing_instance_type or b.plan.processing_instance_type,
            "processing_instance_count": b.processing_instance_count,
            "training_instance_type": b.training_instance_type or b.plan.training_instance_type,
            "training_instance_count": b.training_instance_count, "band": band.get("number", 0),
            "max_bytes": band.get("max_bytes"), "dataset_size": b.dataset_size,
            "reason": b.sizing_reason or "recorded before plans had size bands: the plan's instances"}


# ----- tenants -----

def test_list_tenants_staff_sees_all_member_sees_own(two, staff_user, api_client_for):
    acme, acme_owner, globex, _ = two

    staff = api_client_for(staff_user).get("/api/v1/tenants")
    member = api_client_for(acme_owner).get("/api/v1/tenants")

    assert staff.json()["count"] == 2 and [t["slug"] for t in staff.json()["items"]] == ["acme", "globex"]
    assert member.json() == {"count": 1, "items": [{
        "slug": "acme", "name": "Acme Corp", "plan": "basic", "isolation": "silo", "status": "active",
        "default_algorithm": "gbm-classifier", "default_target": "label", "created_at": iso(acme.created_at),
        "resources": {"bucket": acme.bucket, "prefix": "", "upload_uri": f"s3://{acme.bucket}/uploads/",
                      "role_arn": acme.role_arn, "model_package_group": "mlaas-acme-models"}}]}


def test_get_tenant_exact_and_stranger_404(two, api_client_for):
    acme, acme_owner, globex, globex_owner = two

    own = api_client_for(globex_owner).get("/api/v1/tenants/globex")
    stranger = api_client_for(acme_owner).get("/api/v1/tenants/globex")

    assert own.status_code == 200
    assert own.json()["resources"] == {
        "bucket": "mlaas-pool-123456789012", "prefix": "tenants/globex/",
        "upload_uri": "s3://mlaas-pool-123456789012/tenants/globex/uploads/", "role_arn": globex.role_arn,
        "model_package_group": "mlaas-globex-models"}
    assert (own.json()["plan"], own.json()["isolation"]) == ("premium", "pool")
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)


def test_onboard_tenant_staff_only(reference_data, staff_user, api_client_for, django_capture_on_commit_callbacks):
    member = create_member(create_tenant())
    body = {"slug": "umbrella", "name": "Umbrella", "plan": "standard", "isolation": "pool",
            "owner_email": "ceo@umbrella.example"}

    with django_capture_on_commit_callbacks() as queued:
        created = api_client_for(staff_user).post("/api/v1/tenants", body, content_type="application/json")
    refused = api_client_for(member).post("/api/v1/tenants", dict(body, slug="other"),
                                          content_type="application/json")

    tenant = Tenant.objects.get(slug="umbrella")
    assert created.status_code == 201
    assert created.json() == {"slug": "umbrella", "name": "Umbrella", "plan": "standard", "isolation": "pool",
                              "status": "provisioning", "default_algorithm": "gbm-classifier", "default_target": "",
                              "created_at": iso(tenant.created_at),
                              "resources": {"bucket": "", "prefix": "", "upload_uri": "", "role_arn": "",
                                            "model_package_group": ""}}
    assert len(queued) == 1  # provisioning is queued once the transaction commits
    assert (refused.status_code, refused.json()) == (403, {"code": "forbidden", "fields": None,
                                                           "message": "Only vendor staff can onboard tenants."})


def test_onboard_tenant_invalid_is_400_with_fields(reference_data, staff_user, api_client_for):
    response = api_client_for(staff_user).post("/api/v1/tenants", {"slug": "X", "plan": "gold", "isolation": "vpc"},
                                               content_type="application/json")

    body = response.json()
    assert response.status_code == 400
    assert (body["code"], sorted(body["fields"])) == ("invalid", ["isolation", "plan", "slug"])
    assert body["fields"]["plan"] == ["Unknown plan `gold`; plans are: premium, standard, basic."]


# ----- tenants on AWS: credentials, uploads, builds on datasets -----

@pytest.fixture
def provisioned(make_tenant, make_member):
    acme = make_tenant(isolation="silo", plan="basic")
    globex = make_tenant(isolation="pool", plan="standard")
    return acme, make_member(acme), globex, make_member(globex)


def test_credentials_exact_fields_and_stranger_404(provisioned, api_client_for, emulator):
    acme, acme_user, globex, globex_user = provisioned

    own = api_client_for(acme_user).post(f"/api/v1/tenants/{acme.slug}/credentials")
    stranger = api_client_for(globex_user).post(f"/api/v1/tenants/{acme.slug}/credentials")

    body = own.json()
    assert own.status_code == 200
    assert sorted(body) == ["AccessKeyId", "Endpoint", "Expiration", "Region", "SecretAccessKey", "SessionToken"]
    assert (body["Region"], body["Endpoint"]) == (emulator.region, emulator.endpoint)
    assert body["AccessKeyId"] and body["SecretAccessKey"] and body["SessionToken"]
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)


def test_upload_presign_exact_fields_works_and_stranger_404(provisioned, api_client_for, tmp_path):
    acme, acme_user, globex, globex_user = provisioned
    body = {"filename": "churn.csv", "size": 20, "algorithm": "linear-classifier", "target": "churned"}

    own = api_client_for(acme_user).post(f"/api/v1/tenants/{acme.slug}/uploads", body,
                                         content_type="application/json")
    stranger = api_client_for(globex_user).post(f"/api/v1/tenants/{acme.slug}/uploads", body,
                                                 content_type="application/json")

    post = own.json()
    assert own.status_code == 200
    assert sorted(post) == ["expires_in", "fields", "key", "max_bytes", "sizing", "url"]
    # Basic's first band (up to 1 MiB); no build ran on these instances yet, so typical durations are priced:
    # 60 s + 60 s on ml.t3.medium ($0.05/h) and 180 s on ml.m5.large ($0.115/h).
    assert post["sizing"] == {
        "processing_instance_type": "ml.t3.medium", "processing_instance_count": 1,
        "training_instance_type": "ml.m5.large", "training_instance_count": 1, "band": 1, "max_bytes": 1024**2,
        "reason": "20 bytes of data: band 1 of the Basic plan (at most 1 MiB)", "estimated_cost": "0.0074",
        "estimated_seconds": 300, "estimate_basis": "typical durations"}
    assert post["key"].startswith("uploads/") and post["key"].endswith("-churn.csv")
    assert (post["max_bytes"], post["expires_in"], post["fields"]["key"]) == (20, 900, post["key"])
    assert post["fields"]["x-amz-meta-target"] == "churned"
    sent = requests.post(post["url"], data=post["fields"], files={"file": ("churn.csv", b"a,churned\n1,0\n")},
                         timeout=10)
    assert sent.status_code == 204
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)


def test_upload_presign_too_big_is_400(provisioned, api_client_for):
    acme, acme_user, *_ = provisioned

    response = api_client_for(acme_user).post(f"/api/v1/tenants/{acme.slug}/uploads",
                                              {"filename": "big.csv", "size": 10**12},
                                              content_type="application/json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"size": [
        "File is 1,000,000,000,000 bytes; the Basic plan allows at most 52,428,800 bytes."]}


def test_start_build_on_an_uploaded_dataset_and_stranger_404(provisioned, api_client_for,
                                                             django_capture_on_commit_callbacks):
    from core.aws import gateways

    acme, acme_user, globex, globex_user = provisioned
    key = f"{acme.upload_prefix}existing.csv"
    gateways.platform_s3().client.put_object(Bucket=acme.bucket, Key=key, Body=b"a,diagnosis\n1,x\n")
    body = {"tenant": acme.slug, "dataset_key": key, "algorithm": "random-forest-classifier", "target": "diagnosis"}

    with django_capture_on_commit_callbacks():
        created = api_client_for(acme_user).post("/api/v1/builds", body, content_type="application/json")
    stranger = api_client_for(globex_user).post("/api/v1/builds", body, content_type="application/json")
    missing = api_client_for(acme_user).post("/api/v1/builds", dict(body, dataset_key="uploads/nope.csv"),
                                             content_type="application/json")

    build = Build.objects.get()
    assert created.status_code == 201
    waiting = {k: created.json()[k] for k in WAITING}
    assert (waiting["waiting_reason"], waiting["queue_position"]) == ("starting_soon", 1)  # capacity is free
    assert created.json() == {
        **build_json(build, waiting), "steps": [], "metrics": {}, "data_report": {}, "model_package_arn": None,
        "model_version": None, "cost": "0", "failure_reason": "",
        "sizing": {"processing_instance_type": "ml.t3.medium", "processing_instance_count": 1,
                   "training_instance_type": "ml.m5.large", "training_instance_count": 1, "band": 1,
                   "max_bytes": 1024**2, "dataset_size": 16,
                   "reason": "16 bytes of data: band 1 of the Basic plan (at most 1 MiB)"},
        "transitions": [{"from_status": t.from_status, "to_status": t.to_status, "reason": t.reason,
                         "at": iso(t.at)} for t in build.transitions.all()]}
    assert (build.status, build.source, build.created_by, build.dataset_size) == ("queued", "api", acme_user, 16)
    assert [t["to_status"] for t in created.json()["transitions"]] == ["received", "queued"]
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert (missing.status_code, missing.json()["fields"]) == (400, {
        "dataset_key": ["No dataset `uploads/nope.csv` in the tenant's uploads."]})
    assert Build.objects.count() == 1


def test_start_build_outside_the_upload_location_is_400(two, api_client_for):
    acme, acme_owner, *_ = two

    response = api_client_for(acme_owner).post("/api/v1/builds", {"tenant": "acme", "dataset_key": "models/x.csv"},
                                               content_type="application/json")

    assert (response.status_code, response.json()["fields"]) == (400, {
        "dataset_key": ["Datasets must be under the tenant's upload location `uploads/`."]})


# ----- builds -----

def test_list_builds_exact_filters_and_scope(two, staff_user, api_client_for):
    acme, acme_owner, globex, _ = two
    old = create_build(acme, status="failed", failure_reason="bad", created_at=T0)
    new = create_build(acme, status="running", created_at=T0 + timedelta(hours=1))
    other = create_build(globex, status="succeeded", created_at=T0 + timedelta(hours=2))
    member = api_client_for(acme_owner)

    own = member.get("/api/v1/builds")
    running = member.get("/api/v1/builds", {"status": "running"})
    stranger = member.get("/api/v1/builds", {"tenant": "globex"})
    staff = api_client_for(staff_user).get("/api/v1/builds", {"tenant": "globex"})

    assert own.json() == {"count": 2, "items": [build_json(new), build_json(old)], "next_cursor": None}
    assert [b["id"] for b in running.json()["items"]] == [str(new.code)]
    assert stranger.json() == {"count": 0, "items": [], "next_cursor": None}
    assert staff.json() == {"count": 1, "items": [build_json(other)], "next_cursor": None}


def test_list_builds_items_carry_the_recorded_sizing(two, api_client_for):
    acme, acme_owner, _, _ = two
    sized = create_build(acme, created_at=T0)
    Build.objects.filter(pk=sized.pk).update(
        processing_instance_type="ml.m5.large", processing_instance_count=2, training_instance_type="ml.m5.xlarge",
        training_instance_count=3, size_band={"number": 2, "max_bytes": 2 * 1024**3}, dataset_size=5 * 1024**2,
        sizing_reason="5.0 MB: band 2 of the plan")

    item = api_client_for(acme_owner).get("/api/v1/builds").json()["items"][0]

    assert item["sizing"] == {
        "processing_instance_type": "ml.m5.large", "processing_instance_count": 2,
        "training_instance_type": "ml.m5.xlarge", "training_instance_count": 3, "band": 2,
        "max_bytes": 2 * 1024**3, "dataset_size": 5 * 1024**2, "reason": "5.0 MB: band 2 of the plan"}


@pytest.mark.parametrize("rows", [1, 50])
def test_list_builds_query_count_does_not_grow_with_rows(two, api_client_for, rows, django_assert_max_num_queries):
    acme, acme_owner, _, _ = two
    for n in range(rows):
        create_build(acme, status="queued" if n % 2 else "succeeded", created_at=T0 + timedelta(minutes=n))
    client = api_client_for(acme_owner)

    with django_assert_max_num_queries(12):
        response = client.get("/api/v1/builds")

    items = response.json()["items"]
    assert (response.status_code, len(items)) == (200, rows)
    assert all(item["sizing"]["training_instance_type"] for item in items)


def test_list_builds_bad_status_is_422(two, api_client_for):
    response = api_client_for(two[1]).get("/api/v1/builds", {"status": "exploded"})

    assert response.status_code == 422
    assert (response.json()["code"], list(response.json()["fields"])) == ("invalid_request", ["status"])


def test_get_build_exact_and_stranger_404(two, api_client_for):
    acme, acme_owner, globex, globex_owner = two
    build = create_build(acme, status="succeeded", metrics={"accuracy": 0.96, "f1": 0.97}, version=True,
                         data_report={"rows_in": 569, "rows_out": 569})

    own = api_client_for(acme_owner).get(f"/api/v1/builds/{build.code}")
    stranger = api_client_for(globex_owner).get(f"/api/v1/builds/{build.code}")
    malformed = api_client_for(acme_owner).get("/api/v1/builds/not-a-uuid")

    steps = list(build.steps.order_by("order"))
    assert own.status_code == 200
    assert own.json() == {
        **build_json(build),
        "steps": [{"name": s.name, "status": "succeeded", "started_at": iso(s.started_at), "ended_at": iso(s.ended_at),
                   "billable_seconds": s.billable_seconds, "instance_type": s.instance_type,
                   "instance_count": s.instance_count, "failure_reason": "", "definition_step": ""} for s in steps],
        "transitions": [{"from_status": "", "to_status": "received", "reason": "upload", "at": iso(T0)}],
        "metrics": {"accuracy": 0.96, "f1": 0.97}, "data_report": {"rows_in": 569, "rows_out": 569},
        "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlaas-acme-models/1",
        "model_version": 1, "cost": "0", "failure_reason": "",
        # A row made without sizing (as before plans had size bands) shows its plan's instances, and says so.
        "sizing": {"processing_instance_type": build.plan.processing_instance_type, "processing_instance_count": 1,
                   "training_instance_type": build.plan.training_instance_type, "training_instance_count": 1, "band": 0,
                   "max_bytes": None, "dataset_size": build.dataset_size,
                   "reason": "recorded before plans had size bands: the plan's instances"}}
    assert [s["name"] for s in own.json()["steps"]] == ["preprocess", "train", "evaluate", "condition", "register"]
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert (malformed.status_code, malformed.json()) == (404, NOT_FOUND)


def test_cancel_build_and_stranger_404(two, api_client_for, django_capture_on_commit_callbacks):
    acme, acme_owner, globex, globex_owner = two
    build = create_build(acme, status="queued")

    stranger = api_client_for(globex_owner).post(f"/api/v1/builds/{build.code}/cancel")
    with django_capture_on_commit_callbacks():
        own = api_client_for(acme_owner).post(f"/api/v1/builds/{build.code}/cancel")
    again = api_client_for(acme_owner).post(f"/api/v1/builds/{build.code}/cancel")

    build.refresh_from_db()
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert own.status_code == 200
    assert (own.json()["status"], own.json()["ended_at"], own.json()["transitions"][-1]["to_status"]) == (
        "cancelled", iso(build.ended_at), "cancelled")
    assert own.json()["transitions"][-1]["reason"] == f"cancelled by {acme_owner.username}"
    assert (again.status_code, again.json()) == (400, {"code": "invalid", "fields": None,
                                                       "message": "Build is already cancelled."})


# ----- rejections -----

def test_list_rejections_exact_paginated_and_stranger_404(two, staff_user, api_client_for):
    from builds.models import RejectedUpload

    acme, acme_owner, globex, globex_owner = two
    old = RejectedUpload.objects.create(tenant=acme, bucket=acme.bucket, key="uploads/a.txt", dedup_key="d1",
                                        reason="`a.txt` is not a CSV file (expected a .csv name)", created_at=T0)
    new = RejectedUpload.objects.create(tenant=acme, bucket=acme.bucket, key="uploads/big.csv", dedup_key="d2",
                                        reason="file is too big", created_at=T0 + timedelta(hours=1))
    RejectedUpload.objects.create(tenant=globex, bucket=globex.bucket, key="tenants/globex/uploads/x.txt",
                                  dedup_key="d3", reason="not a CSV", created_at=T0)

    own = api_client_for(acme_owner).get("/api/v1/tenants/acme/rejections")
    second_page = api_client_for(staff_user).get("/api/v1/tenants/acme/rejections", {"page_size": 1, "page": 2})
    stranger = api_client_for(globex_owner).get("/api/v1/tenants/acme/rejections")

    assert own.json() == {"count": 2, "items": [
        {"key": r.key, "bucket": acme.bucket, "reason": r.reason, "created_at": iso(r.created_at)}
        for r in (new, old)]}
    assert second_page.json() == {"count": 2, "items": [
        {"key": "uploads/a.txt", "bucket": acme.bucket, "reason": old.reason, "created_at": iso(T0)}]}
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)


# ----- models and costs -----

def test_list_models_exact_paginated_and_stranger_404(two, api_client_for):
    acme, acme_owner, globex, globex_owner = two
    first = create_build(acme, version=True, metrics={"accuracy": 0.9})
    second = create_build(acme, version=True, metrics={"accuracy": 0.95}, approval="Approved")
    client = api_client_for(acme_owner)

    page = client.get("/api/v1/tenants/acme/models", {"page_size": 1})
    page2 = client.get("/api/v1/tenants/acme/models", {"page_size": 1, "page": 2})
    stranger = api_client_for(globex_owner).get("/api/v1/tenants/acme/models")

    v2 = second.model_version
    assert page.json() == {"count": 2, "items": [{
        "version": 2, "arn": v2.arn, "build": str(second.code), "metrics": {"accuracy": 0.95},
        "approval_status": "Approved", "artifact": f"s3://{acme.bucket}/models/builds/{second.code}/model/model.tar.gz",
        "created_at": iso(v2.created_at)}]}
    assert [v["build"] for v in page2.json()["items"]] == [str(first.code)]
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)


def test_costs_exact_and_stranger_404(two, api_client_for):
    from billing.models import CostLine
    from billing.services import utc_today

    acme, acme_owner, globex, globex_owner = two
    build = create_build(acme)
    today = utc_today()
    CostLine.objects.create(tenant=acme, plan=acme.plan, build=build, step=build.steps.first(),
                            instance_type="ml.m5.large", instance_count=1, billable_seconds=3600,
                            price_per_hour=Decimal("0.115"), amount=Decimal("0.115"), day=today)
    query = {"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}

    own = api_client_for(acme_owner).get("/api/v1/tenants/acme/costs", query)
    stranger = api_client_for(globex_owner).get("/api/v1/tenants/acme/costs", query)
    backwards = api_client_for(acme_owner).get("/api/v1/tenants/acme/costs", {"start": query["end"],
                                                                             "end": query["start"]})
    missing = api_client_for(acme_owner).get("/api/v1/tenants/acme/costs", {"start": "yesterday"})

    assert own.json() == {"tenant": "acme", "start": query["start"], "end": query["end"], "days": [
        {"day": query["start"], "metered": "0", "cost_explorer": None, "difference": None},
        {"day": query["end"], "metered": "0.115000", "cost_explorer": None, "difference": None}],
        "total_metered": "0.115000", "total_cost_explorer": "0"}
    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert (backwards.status_code, backwards.json()["fields"]) == (400, {"end": ["end must not be before start."]})
    assert (missing.status_code, missing.json()["code"], sorted(missing.json()["fields"])) == (
        422, "invalid_request", ["end", "start"])


# ----- errors, pagination, schema -----

def test_missing_or_bad_token_is_401_json(reference_data, client):
    anonymous = client.get("/api/v1/builds")
    bad = client.get("/api/v1/builds", HTTP_AUTHORIZATION="Bearer mlp_nope")

    expected = {"code": "unauthorized", "message": "Send a valid token: Authorization: Bearer <token>.",
                "fields": None}
    assert [(r.status_code, r.json()) for r in (anonymous, bad)] == [(401, expected)] * 2


def test_unknown_path_and_wrong_method_are_json(reference_data, staff_user, api_client_for):
    client = api_client_for(staff_user)

    unknown = client.get("/api/v1/nothing/here")
    unknown_post = client.post("/api/v1/nothing")
    wrong_method = client.delete("/api/v1/builds")

    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    assert (unknown_post.status_code, unknown_post.json()["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")
    assert sorted(wrong_method["Allow"].split(", ")) == ["GET", "POST"]


def test_malformed_json_is_400_and_schema_mismatch_422(reference_data, staff_user, api_client_for):
    client = api_client_for(staff_user)

    malformed = client.post("/api/v1/tenants", "{oops", content_type="application/json")
    mismatch = client.post("/api/v1/tenants", {"slug": 5}, content_type="application/json")

    assert (malformed.status_code, malformed.json()) == (400, {"code": "bad_request", "fields": None,
                                                               "message": "Cannot parse request body"})
    assert mismatch.status_code == 422
    assert mismatch.json() == {"code": "invalid_request", "message": "The request does not match the schema.",
                               "fields": {"payload.slug": ["Input should be a valid string"],
                                          "payload.plan": ["Field required"],
                                          "payload.isolation": ["Field required"]}}


def test_body_over_the_upload_limit_is_413_json(reference_data, staff_user, api_client_for, settings):
    client = api_client_for(staff_user)
    body = '{"slug": "big", "name": "' + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'

    response = client.post("/api/v1/tenants", body, content_type="application/json")

    assert (response.status_code, response.json()) == (413, {
        "code": "too_large", "fields": None,
        "message": f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes."})
    assert not Tenant.objects.filter(slug="big").exists()


def test_list_pages_are_bounded(two, staff_user, api_client_for):
    acme = two[0]
    for n in range(3):
        create_build(acme, created_at=T0 + timedelta(minutes=n))
    client = api_client_for(staff_user)

    page = client.get("/api/v1/builds", {"page_size": 2, "page": 2})
    too_big = client.get("/api/v1/builds", {"page": 10**20})
    too_many = client.get("/api/v1/builds", {"page_size": 1000})
    past_the_end = client.get("/api/v1/builds", {"page": 50})

    assert (page.json()["count"], len(page.json()["items"])) == (3, 1)
    assert (too_big.status_code, too_many.status_code) == (422, 422)
    assert past_the_end.json() == {"count": 3, "items": [], "next_cursor": None}


def test_builds_cursor_pages_walk_the_same_rows_as_page_numbers(two, staff_user, api_client_for):
    acme, acme_owner, globex, _ = two
    for n in range(7):  # ties in created_at: the id breaks them, in both ways of paging
        create_build(acme if n % 2 else globex, created_at=T0 + timedelta(minutes=n // 2))
    client = api_client_for(staff_user)

    by_number = [client.get("/api/v1/builds", {"page_size": 3, "page": n}).json() for n in (1, 2, 3)]
    by_cursor, cursor = [], None
    while True:
        body = client.get("/api/v1/builds", {"page_size": 3, **({"cursor": cursor} if cursor else {})}).json()
        by_cursor.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert [b["id"] for page in by_cursor for b in page["items"]] == [
        str(b.code) for b in Build.objects.order_by("-created_at", "-id")]
    assert [page["items"] for page in by_cursor] == [page["items"] for page in by_number]
    assert [page["next_cursor"] is None for page in by_number] == [False, False, True]
    assert by_number[0]["next_cursor"] == by_cursor[0]["next_cursor"]


def test_builds_cursor_stays_in_the_callers_tenant(two, api_client_for):
    acme, acme_owner, globex, _ = two
    mine = [create_build(acme, created_at=T0 + timedelta(minutes=n)) for n in range(3)]
    create_build(globex, created_at=T0 + timedelta(minutes=1, seconds=30))
    client = api_client_for(acme_owner)

    first = client.get("/api/v1/builds", {"page_size": 1}).json()
    rest = client.get("/api/v1/builds", {"page_size": 5, "cursor": first["next_cursor"]}).json()

    assert [b["id"] for b in first["items"] + rest["items"]] == [str(b.code) for b in reversed(mine)]
    assert (first["count"], rest["next_cursor"]) == (3, None)


def test_builds_bad_cursor_is_422(two, staff_user, api_client_for):
    response = api_client_for(staff_user).get("/api/v1/builds", {"cursor": "not-a-cursor"})

    assert response.status_code == 422
    assert (response.json()["code"], list(response.json()["fields"])) == ("invalid_request", ["cursor"])


PUBLIC = {("get", "/api/v1/plans"), ("get", "/api/v1/algorithms")}  # the catalog: no token needed
ENDPOINTS = {
    ("get", "/api/v1/tenants"), ("post", "/api/v1/tenants"), ("get", "/api/v1/tenants/{slug}"),
    ("post", "/api/v1/tenants/{slug}/credentials"), ("post", "/api/v1/tenants/{slug}/uploads"),
    ("get", "/api/v1/builds"), ("post", "/api/v1/builds"), ("get", "/api/v1/builds/{build_id}"),
    ("post", "/api/v1/builds/{build_id}/cancel"), ("get", "/api/v1/tenants/{slug}/models"),
    ("get", "/api/v1/tenants/{slug}/costs"), ("get", "/api/v1/tenants/{slug}/rejections"),
    ("get", "/api/v1/tenants/{slug}/statements"), *PUBLIC,
    ("get", "/api/v1/tenants/{slug}/models/{version}"), ("post", "/api/v1/tenants/{slug}/models/{version}/approve"),
    ("post", "/api/v1/tenants/{slug}/models/{version}/reject"),
    ("get", "/api/v1/tenants/{slug}/models/{version}/download"),
    ("get", "/api/v1/tenants/{slug}/endpoints"), ("post", "/api/v1/tenants/{slug}/endpoints"),
    ("get", "/api/v1/tenants/{slug}/endpoints/{name}"), ("delete", "/api/v1/tenants/{slug}/endpoints/{name}"),
    ("post", "/api/v1/tenants/{slug}/endpoints/{name}/invocations"),
    ("get", "/api/v1/tenants/{slug}/batch-jobs"), ("post", "/api/v1/tenants/{slug}/batch-jobs"),
    ("get", "/api/v1/tenants/{slug}/batch-jobs/{code}"), ("post", "/api/v1/tenants/{slug}/batch-jobs/{code}/start"),
    ("get", "/api/v1/tenants/{slug}/batch-jobs/{code}/download"),
    ("get", "/api/v1/tenants/{slug}/webhooks"), ("post", "/api/v1/tenants/{slug}/webhooks"),
    ("get", "/api/v1/tenants/{slug}/webhooks/{webhook_id}"), ("patch", "/api/v1/tenants/{slug}/webhooks/{webhook_id}"),
    ("delete", "/api/v1/tenants/{slug}/webhooks/{webhook_id}"),
    ("get", "/api/v1/tenants/{slug}/webhooks/{webhook_id}/deliveries"),
    ("post", "/api/v1/tenants/{slug}/webhooks/{webhook_id}/deliveries/{delivery_id}/resend"),
}


def test_openapi_describes_every_endpoint_with_auth_and_error_responses(client):
    schema = client.get("/api/v1/openapi.json").json()

    operations = {(method, path): op for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert set(operations) == ENDPOINTS
    assert schema["components"]["securitySchemes"] == {"BearerToken": {"type": "http", "scheme": "bearer"}}
    for (method, path), op in operations.items():
        assert {"200", "201", "202", "204"} & set(op["responses"]), path
        assert op.get("summary") and op.get("tags"), path
        if (method, path) in PUBLIC:
            assert "security" not in op and "401" not in op["responses"], path
            continue
        assert op["security"] == [{"BearerToken": []}], path
        assert {"401", "422"} <= set(op["responses"]), path
        assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorOut"}
        if "{" in path or method == "post" and path == "/api/v1/builds":
            assert "404" in op["responses"], path
        assert op.get("summary") and op.get("tags"), path
    lists = {path for (method, path), op in operations.items()
             if method == "get" and {"page", "page_size"} <= {p["name"] for p in op.get("parameters", [])}}
    assert lists == {"/api/v1/tenants", "/api/v1/builds", "/api/v1/tenants/{slug}/models",
                     "/api/v1/tenants/{slug}/rejections", "/api/v1/plans", "/api/v1/algorithms",
                     "/api/v1/tenants/{slug}/endpoints", "/api/v1/tenants/{slug}/batch-jobs",
                     "/api/v1/tenants/{slug}/webhooks", "/api/v1/tenants/{slug}/webhooks/{webhook_id}/deliveries"}
    assert set(schema["components"]["schemas"]["ErrorOut"]["required"]) == {"code", "message"}
