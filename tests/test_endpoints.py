"""Test endpoints end to end on the local engine: deploy an approved version through the API, the job (real
Redis queue) fetches the artifact with the tenant role's credentials and starts `serve` as a child process,
score CSV and JSON rows through the portal, replace in place with a newer version, delete when rejected, on
request and when idle; another tenant's user gets 404 on every path."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import django_rq
import pandas as pd
import pytest
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from builds import serving
from builds.models import Endpoint, ModelVersion
from tests.web_support import client_for, create_build, page_title, text_of

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}


@pytest.fixture(scope="module")
def model_tarball(tmp_path_factory) -> tuple[Path, Path]:
    """A breast-cancer classifier as model.tar.gz (trained once for the module) and the sample CSV."""
    from mlaas_steps import StepPaths, make_model_tarball, place_dataset, preprocess, train
    from mlaas_steps.sample_data import write_sample_csvs

    root = tmp_path_factory.mktemp("model")
    csv_path = Path(write_sample_csvs(root / "samples")["breast_cancer"])
    paths = StepPaths(root / "build")
    place_dataset(paths, csv_path)
    preprocess.run(paths, {"target": "diagnosis", "problem_type": "classification"})
    train.run(paths, {"entry_point": "hist_gradient_boosting", "problem_type": "classification"})
    return make_model_tarball(paths.model_dir, root / "model.tar.gz"), csv_path


@pytest.fixture
def endpoint_dir(tmp_path, settings):
    settings.MLAAS_ENDPOINT_DIR = str(tmp_path / "endpoints")
    settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS = 90
    return tmp_path / "endpoints"


@pytest.fixture
def deployed_tenant(make_tenant, make_member, model_tarball, endpoint_dir):
    """A tenant with approved versions 1 and 2 (their artifacts in its bucket), an owner, a member, a stranger."""
    from core.aws import gateways

    tenant = make_tenant(isolation="pool", plan="basic")
    for _ in range(2):
        build = create_build(tenant, version=True, approval="Approved")
        version = build.model_version
        gateways.platform_s3().upload_file(model_tarball[0], tenant.bucket, version.artifact_key)
        arn = gateways.platform_sagemaker().create_model_package(  # a real package, so it can be rejected
            group=tenant.model_package_group, model_data_url=f"s3://{tenant.bucket}/{version.artifact_key}",
            metrics={}, image_uri=build.algorithm.training_image_uri, description="test", customer_metadata={})
        ModelVersion.objects.filter(pk=version.pk).update(arn=arn)
    other = make_tenant(isolation="silo", plan="basic")
    yield tenant, make_member(tenant, role="owner"), make_member(tenant), make_member(other, role="owner")
    for endpoint in Endpoint.objects.exclude(pid=None):
        serving.stop(endpoint.pid)


def drain() -> None:
    django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)


def csv_rows(csv_path: Path, count: int, drop: tuple[str, ...] = ("diagnosis",)) -> str:
    return pd.read_csv(csv_path).head(count).drop(columns=list(drop)).to_csv(index=False)


@pytest.mark.django_db(transaction=True)
def test_deploy_score_replace_and_delete_on_reject(deployed_tenant, model_tarball, api_client_for, clean_redis):
    tenant, owner, member, _ = deployed_tenant
    csv_path = model_tarball[1]
    base = f"/api/v1/tenants/{tenant.slug}/endpoints"
    api = api_client_for(owner)

    created = api.post(base, {"model_version": 1}, content_type="application/json")
    assert (created.status_code, created.json()["status"], created.json()["name"]) == (
        202, "Creating", f"{tenant.slug}-test")
    drain()
    listed = api_client_for(member).get(base).json()
    name = f"{tenant.slug}-test"
    assert [(e["name"], e["model_version"], e["status"]) for e in listed["items"]] == [(name, 1, "InService")], \
        listed
    endpoint = Endpoint.objects.get()
    assert serving.is_running(endpoint.pid)
    model_dir = Path(endpoint_dir_of(endpoint)) / "v1"
    assert (model_dir / "model.tar.gz").read_bytes() == model_tarball[0].read_bytes()

    scored = api_client_for(member).post(f"{base}/{name}/invocations", csv_rows(csv_path, 10),
                                         content_type="text/csv")
    truth = pd.read_csv(csv_path).head(10)["diagnosis"].tolist()
    predictions = scored.json()["predictions"]
    assert scored.status_code == 200 and len(predictions) == 10
    assert sum(p["class"] == t for p, t in zip(predictions, truth, strict=True)) >= 9
    as_json = api.post(f"{base}/{name}/invocations",
                       pd.read_csv(io.StringIO(csv_rows(csv_path, 10))).to_dict(orient="records"),
                       content_type="application/json")
    assert as_json.json() == scored.json()
    bad = api.post(f"{base}/{name}/invocations", csv_rows(csv_path, 2, drop=("diagnosis", "mean radius")),
                   content_type="text/csv")
    assert (bad.status_code, bad.json()["code"], bad.json()["fields"]) == (
        400, "invalid_rows", {"missing": ["mean radius"], "unknown": []})
    assert bad.json()["message"].startswith("missing columns: mean radius. The model takes the columns ")
    first_pid = endpoint.pid

    replaced = api.post(base, {"model_version": 2}, content_type="application/json")
    assert (replaced.status_code, replaced.json()["name"], replaced.json()["status"]) == (202, name, "Updating")
    drain()
    endpoint.refresh_from_db()
    assert (Endpoint.objects.count(), endpoint.model_version.version, endpoint.status) == (1, 2, "InService")
    assert endpoint.pid != first_pid and not serving.is_running(first_pid) and serving.is_running(endpoint.pid)
    again = api.post(f"{base}/{name}/invocations", csv_rows(csv_path, 3), content_type="text/csv")
    assert len(again.json()["predictions"]) == 3

    rejected = api.post(f"/api/v1/tenants/{tenant.slug}/models/2/reject")
    assert rejected.status_code == 200
    endpoint.refresh_from_db()
    assert (endpoint.status, endpoint.delete_reason) == ("Deleting", "version 2 rejected")
    pid = endpoint.pid
    drain()
    endpoint.refresh_from_db()
    assert (endpoint.status, endpoint.pid, serving.is_running(pid)) == ("Deleted", None, False)
    assert api.get(base).json() == {"count": 0, "items": []}
    gone = api.post(f"{base}/{name}/invocations", csv_rows(csv_path, 1), content_type="text/csv")
    assert (gone.status_code, gone.json()) == (404, NOT_FOUND)


def endpoint_dir_of(endpoint: Endpoint) -> str:
    from django.conf import settings

    return f"{settings.MLAAS_ENDPOINT_DIR}/{endpoint.tenant.slug}/{endpoint.name}"


@pytest.mark.django_db(transaction=True)
def test_delete_on_request_and_when_idle(deployed_tenant, model_tarball, api_client_for, clean_redis):
    from builds.endpoints import endpoints_tick

    tenant, owner, member, _ = deployed_tenant
    base = f"/api/v1/tenants/{tenant.slug}/endpoints"
    api = api_client_for(owner)
    api.post(base, {"model_version": 1}, content_type="application/json")
    drain()
    endpoint = Endpoint.objects.get()
    assert endpoint.status == "InService"
    page = client_for(member).post(reverse("builds:endpoint_score", args=[tenant.slug, endpoint.name]),
                                   {"rows": csv_rows(model_tarball[1], 4)})
    assert page.status_code == 200 and len(page.context["predictions"]["rows"]) == 4
    assert page.context["predictions"]["labels"] == ["benign", "malignant"]
    assert "P(malignant)" in text_of(page)
    bad_page = client_for(member).post(reverse("builds:endpoint_score", args=[tenant.slug, endpoint.name]),
                                       {"rows": "colour\nred\n"})
    assert bad_page.context["error"].startswith("missing columns: mean radius, ")

    refused = api_client_for(member).delete(f"{base}/{endpoint.name}")
    not_idle_yet = endpoints_tick(timezone.now() + timedelta(minutes=tenant.plan.endpoint_idle_minutes - 1))
    idle = endpoints_tick(timezone.now() + timedelta(minutes=tenant.plan.endpoint_idle_minutes + 1))
    drain()

    endpoint.refresh_from_db()
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert (not_idle_yet["endpoints_idle_deleted"], idle["endpoints_idle_deleted"]) == (0, 1)
    assert (endpoint.status, endpoint.delete_reason) == ("Deleted", f"idle for {tenant.plan.endpoint_idle_minutes} min")

    api.post(base, {"model_version": 2}, content_type="application/json")
    drain()
    fresh = Endpoint.objects.exclude(status="Deleted").get()
    deleted = api.delete(f"{base}/{fresh.name}")
    assert (deleted.status_code, deleted.json()["status"]) == (202, "Deleting")
    drain()
    fresh.refresh_from_db()
    assert (fresh.status, fresh.delete_reason) == ("Deleted", f"deleted by {owner.username}")


@pytest.mark.django_db(transaction=True)
def test_a_lost_server_is_marked_failed(deployed_tenant, api_client_for, clean_redis):
    from builds.endpoints import endpoints_tick

    tenant, owner, _, _ = deployed_tenant
    api_client_for(owner).post(f"/api/v1/tenants/{tenant.slug}/endpoints", {"model_version": 1},
                               content_type="application/json")
    drain()
    endpoint = Endpoint.objects.get()
    serving.stop(endpoint.pid)

    counts = endpoints_tick()

    endpoint.refresh_from_db()
    assert (counts["endpoints_lost"], endpoint.status) == (1, "Failed")
    assert endpoint.failure_reason == "the model server stopped; deploy the version again"


def test_only_owners_deploy_approved_versions_and_strangers_get_404(make_tenant, make_member, api_client_for,
                                                                    django_capture_on_commit_callbacks):
    tenant = make_tenant(isolation="pool", plan="basic")
    create_build(tenant, version=True)  # pending
    owner, member = make_member(tenant, role="owner"), make_member(tenant)
    stranger = make_member(make_tenant(isolation="pool", plan="basic"), role="owner")
    base = f"/api/v1/tenants/{tenant.slug}/endpoints"

    by_member = api_client_for(member).post(base, {"model_version": 1}, content_type="application/json")
    pending = api_client_for(owner).post(base, {"model_version": 1}, content_type="application/json")
    missing = api_client_for(owner).post(base, {"model_version": 9}, content_type="application/json")
    foreign = [api_client_for(stranger).get(base),
               api_client_for(stranger).post(base, {"model_version": 1}, content_type="application/json"),
               api_client_for(stranger).get(f"{base}/{tenant.slug}-test"),
               api_client_for(stranger).delete(f"{base}/{tenant.slug}-test"),
               api_client_for(stranger).post(f"{base}/{tenant.slug}-test/invocations", "a\n1\n",
                                             content_type="text/csv")]

    assert (by_member.status_code, by_member.json()["message"]) == (
        403, "Only the tenant's owners (or staff) deploy and delete test endpoints.")
    assert (pending.status_code, pending.json()["fields"]) == (400, {"model_version": [
        "Model version 1 is pending approval; only approved versions are deployed. Approve it first."]})
    assert (missing.status_code, missing.json()["message"]) == (400, "No model version 9.")
    assert [(r.status_code, r.json()) for r in foreign] == [(404, NOT_FOUND)] * 5
    assert Endpoint.objects.count() == 0


def test_stranger_gets_404_on_an_existing_endpoint(make_tenant, make_member, api_client_for):
    tenant = make_tenant(isolation="pool", plan="basic")
    build = create_build(tenant, version=True, approval="Approved")
    endpoint = Endpoint.objects.create(tenant=tenant, name=f"{tenant.slug}-test", model_version=build.model_version,
                                       status="InService", engine="local", port=1)
    stranger = make_member(make_tenant(isolation="pool", plan="basic"), role="owner")
    base = f"/api/v1/tenants/{tenant.slug}/endpoints/{endpoint.name}"

    responses = [api_client_for(stranger).get(base), api_client_for(stranger).delete(base),
                 api_client_for(stranger).post(f"{base}/invocations", "a\n1\n", content_type="text/csv")]

    assert [(r.status_code, r.json()) for r in responses] == [(404, NOT_FOUND)] * 3
    endpoint.refresh_from_db()
    assert endpoint.status == "InService"
    assert ModelVersion.objects.get().approval_status == "Approved"


@pytest.mark.parametrize(("method", "name", "kind"), [
    ("get", "builds:endpoints", "tenant"),
    ("post", "builds:endpoint_deploy", "tenant"),
    ("post", "builds:endpoint_delete", "endpoint"),
    ("get", "builds:endpoint_score", "endpoint"),
    ("post", "builds:endpoint_score", "endpoint"),
])
def test_endpoint_pages_another_tenants_user_gets_404(reference_data, method, name, kind):
    from tests.web_support import create_member, create_tenant

    acme, globex = create_tenant(slug="acme"), create_tenant(slug="globex")
    build = create_build(globex, version=True, approval="Approved")
    Endpoint.objects.create(tenant=globex, name="globex-test", model_version=build.model_version,
                            status="InService", engine="local", port=1)
    args = {"tenant": ["globex"], "endpoint": ["globex", "globex-test"]}[kind]

    response = getattr(client_for(create_member(acme, role="owner")), method)(
        reverse(name, args=args), {"model_version": 1, "rows": "a\n1\n"})

    assert response.status_code == 404 and page_title(response) == "Not found · MLaaS Portal"
    assert Endpoint.objects.get().status == "InService"


def test_endpoints_page_lists_and_only_owners_may_deploy(reference_data, django_capture_on_commit_callbacks):
    from tests.web_support import create_member, create_tenant

    acme = create_tenant(slug="acme")
    create_build(acme, version=True, approval="Approved")
    create_build(acme, version=True)
    owner, member = create_member(acme, role="owner"), create_member(acme)

    as_member = client_for(member).get(reverse("builds:endpoints", args=["acme"]))
    member_deploy = client_for(member).post(reverse("builds:endpoint_deploy", args=["acme"]), {"model_version": 1})
    as_owner = client_for(owner).get(reverse("builds:endpoints", args=["acme"]))
    with django_capture_on_commit_callbacks() as queued:
        deployed = client_for(owner).post(reverse("builds:endpoint_deploy", args=["acme"]), {"model_version": 1},
                                          follow=True)
    pending = client_for(owner).post(reverse("builds:endpoint_deploy", args=["acme"]), {"model_version": 2},
                                     follow=True)

    assert "No test endpoint: deploy an approved model version" in text_of(as_member)
    assert 'name="model_version"' not in as_member.content.decode()
    assert member_deploy.status_code == 404
    assert '<option value="1">v1' in as_owner.content.decode() and '<option value="2">' not in as_owner.content.decode()
    assert "Deploying version 1 to acme-test; it answers once in service." in text_of(deployed)
    assert [(e.name, e.model_version.version, e.status) for e in Endpoint.objects.all()] == [
        ("acme-test", 1, "Creating")]
    assert len(queued) == 1
    assert "Model version 2 is pending approval; only approved versions are deployed." in text_of(pending)


@pytest.mark.parametrize("count", [1, 30])
def test_endpoint_lists_query_count_does_not_grow(reference_data, api_client_for, django_assert_max_num_queries,
                                                  count):
    from tests.web_support import create_member, create_tenant

    acme = create_tenant(slug="acme")
    for n in range(count):
        build = create_build(acme, version=True, approval="Approved")
        Endpoint.objects.create(tenant=acme, name=f"acme-test-{n}", model_version=build.model_version,
                                status="InService", engine="local", port=1)
    owner = create_member(acme, role="owner")
    api, page = api_client_for(owner), client_for(owner)

    with django_assert_max_num_queries(8):
        listed = api.get("/api/v1/tenants/acme/endpoints", {"page_size": 100})
    with django_assert_max_num_queries(10):
        shown = page.get(reverse("builds:endpoints", args=["acme"]))

    assert listed.json()["count"] == count and shown.status_code == 200
    assert text_of(shown).count("Score rows") == count
