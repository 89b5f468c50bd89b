"""Batch scoring end to end on the local engine: create a job through the API, upload its input with the
presigned POST (to the emulator, IAM enforced, signed by the tenant role), start it, run the job from a real
Redis queue (`serve` as a child process, the input streamed in chunks), download the output and check one
prediction per input row equal to what the model scores for those rows; a header that does not fit the model
is refused naming the columns and the input stays; another tenant's user gets 404 on every page and API
operation, and a tenant cannot score with another tenant's model version."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import django_rq
import pandas as pd
import pytest
import requests
from django.urls import reverse
from rq import SimpleWorker

from builds.models import BatchJob, Build, ModelVersion, RejectedUpload
from tests.web_support import client_for, create_build, page_title, text_of

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A breast-cancer classifier (trained once for the module): its model.tar.gz, its data report, the CSV."""
    from mlaas_steps import StepPaths, make_model_tarball, place_dataset, preprocess, train
    from mlaas_steps.sample_data import write_sample_csvs

    root = tmp_path_factory.mktemp("batch-model")
    csv_path = Path(write_sample_csvs(root / "samples")["breast_cancer"])
    paths = StepPaths(root / "build")
    place_dataset(paths, csv_path)
    preprocess.run(paths, {"target": "diagnosis", "problem_type": "classification"})
    train.run(paths, {"entry_point": "hist_gradient_boosting", "problem_type": "classification"})
    report = json.loads((paths.processing_output("report") / "data_report.json").read_text())
    tarball = make_model_tarball(paths.model_dir, root / "model.tar.gz")
    model_dir = root / "unpacked"
    with tarfile.open(tarball) as archive:
        archive.extractall(model_dir, filter="data")
    return {"tarball": tarball, "report": report, "csv": csv_path, "model_dir": model_dir}


def _version_with_artifact(tenant, trained, approval: str = "Approved") -> ModelVersion:
    from core.aws import gateways

    build = create_build(tenant, version=True, approval=approval, data_report=trained["report"])
    version = build.model_version
    gateways.platform_s3().upload_file(trained["tarball"], tenant.bucket, version.artifact_key)
    return version


def drain() -> None:
    django_rq.get_worker("batch", worker_class=SimpleWorker).work(burst=True)


def _input_csv(trained, *, drop: tuple[str, ...] = ("diagnosis",)) -> bytes:
    return pd.read_csv(trained["csv"]).drop(columns=list(drop)).to_csv(index=False).encode()


def _post_upload(upload: dict, body: bytes) -> requests.Response:
    return requests.post(upload["url"], data=upload["fields"], files={"file": ("rows.csv", body)}, timeout=30)


@pytest.mark.django_db(transaction=True)
def test_batch_score_end_to_end_on_the_local_engine(make_tenant, make_member, api_client_for, clean_redis, trained,
                                                    monkeypatch, settings):
    from builds import batch, intake
    from mlaas_steps import serve

    settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS = 90
    monkeypatch.setattr(batch, "BATCH_CHUNK_ROWS", 200)  # 569 rows: three requests to /invocations
    tenant = make_tenant(isolation="pool", plan="basic")
    _version_with_artifact(tenant, trained)
    api = api_client_for(make_member(tenant))
    base = f"/api/v1/tenants/{tenant.slug}/batch-jobs"

    created = api.post(base, {"model_version": 1}, content_type="application/json")
    assert created.status_code == 201, created.content
    job = created.json()
    code = job["code"]
    assert (job["status"], job["model_version"], job["engine"]) == ("awaiting_input", 1, "local")
    assert job["upload"]["key"] == job["input_key"] == f"{tenant.prefix}batch/{code}/input.csv"
    assert job["output_key"] == f"{tenant.prefix}batch/{code}/output.csv"
    body = _input_csv(trained)
    assert _post_upload(job["upload"], body).status_code == 204

    started = api.post(f"{base}/{code}/start")
    assert (started.status_code, started.json()["status"], started.json()["input_size"]) == (202, "queued", len(body))
    assert (started.json()["instance_type"], started.json()["instance_count"]) == ("ml.m5.large", 1)  # basic, band 1
    drain()

    done = api.get(f"{base}/{code}").json()
    assert (done["status"], done["rows_in"], done["rows_done"], done["rows_out"], done["progress_percent"],
            done["error_message"]) == ("succeeded", 569, 569, 569, 100, "")
    link = api.get(f"{base}/{code}/download")
    assert link.status_code == 200 and link.json()["expires_in"] == 300
    fetched = requests.get(link.json()["url"], timeout=30)
    assert fetched.status_code == 200
    output = pd.read_csv(io.BytesIO(fetched.content))
    given = pd.read_csv(io.BytesIO(body))
    model = serve.load(trained["model_dir"])
    expected = model.predict(given)
    labels = list(expected[0]["probabilities"])
    assert list(output.columns) == [*given.columns, "predicted_class", *(f"probability_{x}" for x in labels)]
    pd.testing.assert_frame_equal(output[list(given.columns)], given)
    assert output["predicted_class"].tolist() == [p["class"] for p in expected]
    for label in labels:
        assert output[f"probability_{label}"].tolist() == [p["probabilities"][label] for p in expected]

    # The input and output are not training uploads: no build, no rejection, even if an event reached intake.
    for key in (job["input_key"], job["output_key"]):
        event = intake.UploadEvent(bucket=tenant.bucket, key=key, size=10, version="v")
        assert intake.intake_event(event) is None
    assert (Build.objects.filter(tenant=tenant).count(), RejectedUpload.objects.count()) == (1, 0)

    again = api.post(f"{base}/{code}/start")
    assert (again.status_code, again.json()["message"]) == (400, f"Batch job {code} is already succeeded.")
    assert batch.batch_job_run(BatchJob.objects.get().pk) == "succeeded"  # a job run twice changes nothing


@pytest.mark.django_db(transaction=True)
def test_regression_output_has_the_value_column(make_tenant, make_member, clean_redis, tmp_path, settings):
    """A regression model's output is the input rows plus `predicted_value`, the model's value for each row."""
    from builds import batch
    from core.aws import gateways
    from mlaas_steps import StepPaths, make_model_tarball, place_dataset, preprocess, serve, train
    from mlaas_steps.sample_data import write_sample_csvs

    settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS = 90
    csv_path = Path(write_sample_csvs(tmp_path / "samples")["diabetes"])
    paths = StepPaths(tmp_path / "build")
    place_dataset(paths, csv_path)
    preprocess.run(paths, {"target": "progression", "problem_type": "regression"})
    train.run(paths, {"entry_point": "linear", "problem_type": "regression"})
    report = json.loads((paths.processing_output("report") / "data_report.json").read_text())
    tenant = make_tenant(isolation="silo", plan="basic")
    build = create_build(tenant, version=True, algorithm="linear-regressor", data_report=report)
    gateways.platform_s3().upload_file(make_model_tarball(paths.model_dir, tmp_path / "model.tar.gz"),
                                       tenant.bucket, build.model_version.artifact_key)
    rows = pd.read_csv(csv_path).head(30).drop(columns=["progression"])
    job = batch.batch_job_create(tenant=tenant, version=build.model_version, actor=None)
    batch.batch_input_put(job=job, body=rows.to_csv(index=False).encode())
    batch.batch_job_start(job=job)

    assert batch.batch_job_run(job.pk) == "succeeded"

    output = pd.read_csv(io.BytesIO(gateways.platform_s3().get_bytes(tenant.bucket, job.output_key)))
    assert list(output.columns) == [*rows.columns, "predicted_value"]
    assert output["predicted_value"].tolist() == [p["value"] for p in serve.load(paths.model_dir).predict(rows)]


@pytest.mark.django_db(transaction=True)
def test_bad_header_is_refused_naming_the_columns_and_the_input_stays(make_tenant, make_member, api_client_for,
                                                                      clean_redis, trained):
    from core.aws import gateways

    tenant = make_tenant(isolation="silo", plan="basic")
    _version_with_artifact(tenant, trained, approval="PendingManualApproval")  # any registered version scores
    api = api_client_for(make_member(tenant))
    base = f"/api/v1/tenants/{tenant.slug}/batch-jobs"
    job = api.post(base, {"model_version": 1}, content_type="application/json").json()
    not_uploaded = api.post(f"{base}/{job['code']}/start")
    bad = _input_csv(trained, drop=("mean radius",))  # the target left in, a feature missing
    assert _post_upload(job["upload"], bad).status_code == 204

    refused = api.post(f"{base}/{job['code']}/start")

    assert (not_uploaded.status_code, not_uploaded.json()["fields"]) == (400, {"input": [
        f"No input uploaded yet: POST the file to the job's upload first (key {job['input_key']})."]})
    assert (refused.status_code, refused.json()["code"], refused.json()["fields"]) == (
        400, "invalid_header", {"missing": ["mean radius"], "unknown": ["diagnosis"]})
    assert refused.json()["message"].startswith(
        "missing columns: mean radius; unknown columns: diagnosis (`diagnosis` is the target: leave it out). "
        "Model version 1 takes the columns mean radius, ")
    assert api.get(f"{base}/{job['code']}").json()["status"] == "awaiting_input"
    assert gateways.platform_s3().get_bytes(tenant.bucket, job["input_key"]) == bad  # nothing lost

    assert _post_upload(job["upload"], _input_csv(trained)).status_code == 204  # corrected, same job
    fixed = api.post(f"{base}/{job['code']}/start")
    assert (fixed.status_code, fixed.json()["status"]) == (202, "queued")


@pytest.mark.django_db(transaction=True)
def test_the_page_uploads_through_the_portal_and_reports_a_bad_header(make_tenant, make_member, clean_redis,
                                                                      trained):
    from django.core.files.uploadedfile import SimpleUploadedFile

    tenant = make_tenant(isolation="pool", plan="basic")
    _version_with_artifact(tenant, trained)
    page = client_for(make_member(tenant))

    good = page.post(reverse("builds:batch_job_new", args=[tenant.slug]), {
        "model_version": 1, "file": SimpleUploadedFile("rows.csv", _input_csv(trained), "text/csv")}, follow=True)
    bad = page.post(reverse("builds:batch_job_new", args=[tenant.slug]), {
        "model_version": 1, "file": SimpleUploadedFile("rows.csv", b"colour\nred\n", "text/csv")}, follow=True)
    listed = page.get(reverse("builds:batch_jobs", args=[tenant.slug]))

    first, second = BatchJob.objects.order_by("created_at", "id")
    queued = django_rq.get_queue("batch").get_jobs()
    assert (first.status, second.status) == ("queued", "awaiting_input")
    assert [(j.func_name, j.args) for j in queued] == [("builds.jobs.batch_job_run", (first.pk,))]  # after commit
    assert "Scoring rows.csv with model version 1." in text_of(good)
    assert "missing columns: mean radius, " in text_of(bad) and "unknown columns: colour." in text_of(bad)
    assert bad.request["PATH_INFO"] == reverse("builds:batch_job_detail", args=[tenant.slug, second.code])
    assert [row.code for row in listed.context["jobs"]] == [second.code, first.code]


def test_a_tenant_cannot_score_with_another_tenants_version_nor_see_its_jobs(make_tenant, make_member,
                                                                            api_client_for):
    tenant = make_tenant(isolation="pool", plan="basic")
    other = make_tenant(isolation="pool", plan="basic")
    version = create_build(other, version=True).model_version  # only the other tenant has a version 1
    job = BatchJob.objects.create(tenant=other, model_version=version, engine="local", status="succeeded",
                                  input_key=f"{other.batch_prefix}x/input.csv",
                                  output_key=f"{other.batch_prefix}x/output.csv")
    stranger = api_client_for(make_member(tenant, role="owner"))
    mine = f"/api/v1/tenants/{tenant.slug}/batch-jobs"
    theirs = f"/api/v1/tenants/{other.slug}/batch-jobs"

    own_tenant = stranger.post(mine, {"model_version": version.version}, content_type="application/json")
    foreign = [stranger.get(theirs),
               stranger.post(theirs, {"model_version": version.version}, content_type="application/json"),
               stranger.get(f"{theirs}/{job.code}"), stranger.post(f"{theirs}/{job.code}/start"),
               stranger.get(f"{theirs}/{job.code}/download"),
               stranger.get(f"{mine}/{job.code}"), stranger.post(f"{mine}/{job.code}/start"),
               stranger.get(f"{mine}/{job.code}/download")]

    assert (own_tenant.status_code, own_tenant.json()) == (404, NOT_FOUND)
    assert [(r.status_code, r.json()) for r in foreign] == [(404, NOT_FOUND)] * 8
    assert BatchJob.objects.count() == 1


@pytest.mark.parametrize(("method", "name", "kind"), [
    ("get", "builds:batch_jobs", "tenant"),
    ("post", "builds:batch_job_new", "tenant"),
    ("get", "builds:batch_job_detail", "job"),
    ("post", "builds:batch_job_start", "job"),
    ("get", "builds:batch_job_download", "job"),
])
def test_batch_pages_another_tenants_user_gets_404(reference_data, method, name, kind):
    from tests.web_support import create_member, create_tenant

    acme, globex = create_tenant(slug="acme"), create_tenant(slug="globex")
    version = create_build(globex, version=True).model_version
    job = BatchJob.objects.create(tenant=globex, model_version=version, engine="local", status="succeeded",
                                  input_key="batch/x/input.csv", output_key="batch/x/output.csv")
    args = {"tenant": ["globex"], "job": ["globex", job.code]}[kind]

    response = getattr(client_for(create_member(acme, role="owner")), method)(reverse(name, args=args),
                                                                             {"model_version": 1})
    own_slug = getattr(client_for(create_member(acme, role="owner")), method)(
        reverse(name, args=["acme", *args[1:]]), {"model_version": 1}) if kind == "job" else None

    assert response.status_code == 404 and page_title(response) == "Not found · MLaaS Portal"
    if own_slug is not None:
        assert own_slug.status_code == 404
    assert BatchJob.objects.get().status == "succeeded"


@pytest.mark.parametrize("count", [1, 50])
def test_batch_lists_query_count_does_not_grow(reference_data, api_client_for, django_assert_max_num_queries, count):
    from tests.web_support import create_member, create_tenant

    acme = create_tenant(slug="acme")
    versions = [create_build(acme, version=True).model_version for _ in range(2)]
    BatchJob.objects.bulk_create([
        BatchJob(tenant=acme, model_version=versions[n % 2], engine="local",
                 status=("succeeded", "running", "failed")[n % 3], rows_in=100, rows_done=40,
                 input_key=f"batch/{n}/input.csv", output_key=f"batch/{n}/output.csv") for n in range(count)])
    member = create_member(acme)
    api, page = api_client_for(member), client_for(member)

    with django_assert_max_num_queries(8):
        listed = api.get("/api/v1/tenants/acme/batch-jobs", {"page_size": 100})
    with django_assert_max_num_queries(10):
        shown = page.get(reverse("builds:batch_jobs", args=["acme"]))

    assert listed.json()["count"] == count and shown.status_code == 200
    assert len(shown.context["jobs"]) == min(count, 25)
    newest = range(count - 1, max(count - 25, 0) - 1, -1)  # newest first, one page of 25
    assert [j.input_key for j in shown.context["jobs"]] == [f"batch/{n}/input.csv" for n in newest]
    assert text_of(shown).count("Download") == sum(1 for n in newest if n % 3 == 0)  # the succeeded ones


def test_model_page_and_tenant_nav_link_to_batch_scoring(reference_data):
    from tests.web_support import create_member, create_tenant

    acme = create_tenant(slug="acme")
    create_build(acme, version=True)
    page = client_for(create_member(acme)).get(reverse("builds:model_detail", args=["acme", 1]))

    html = page.content.decode()
    assert f'href="{reverse("builds:batch_jobs", args=["acme"])}?version=1"' in html
    assert f'<a href="{reverse("builds:batch_jobs", args=["acme"])}" >Batch scoring</a>' in html


@pytest.mark.django_db(transaction=True)
def test_a_row_the_model_cannot_take_fails_the_job_with_a_reason_the_page_shows(make_tenant, make_member,
                                                                                 clean_redis, trained, settings):
    from builds import batch

    settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS = 90
    tenant = make_tenant(isolation="pool", plan="basic")
    version = _version_with_artifact(tenant, trained)
    body = _input_csv(trained).decode().splitlines()
    body.insert(3, body[3] + ",1")  # data row 3 has one value too many
    job = batch.batch_job_create(tenant=tenant, version=version, actor=None)
    batch.batch_input_put(job=job, body="\n".join(body).encode())
    batch.batch_job_start(job=job)

    assert batch.batch_job_run(job.pk) == "failed"

    job.refresh_from_db()
    assert (job.status, job.error_message, job.rows_in, job.rows_done) == (
        "failed", "data row 3 has 31 values; the header has 30", 570, 0)
    page = client_for(make_member(tenant)).get(reverse("builds:batch_job_detail", args=[tenant.slug, job.code]),
                                               HTTP_HX_REQUEST="true")
    assert "Failed: data row 3 has 31 values; the header has 30" in text_of(page)
    assert "hx-get" not in page.content.decode()  # finished: the page stops refreshing


def test_the_tick_requeues_lost_jobs_and_gives_up_after_three_attempts(reference_data, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from builds import batch, queues
    from tests.web_support import create_tenant

    acme = create_tenant(slug="acme")
    version = create_build(acme, version=True).model_version
    old = timezone.now() - timedelta(minutes=11)

    def job(status: str, attempts: int, updated_at) -> BatchJob:
        return BatchJob.objects.create(tenant=acme, model_version=version, engine="local", status=status,
                                       attempts=attempts, updated_at=updated_at, rows_done=7,
                                       input_key="batch/x/input.csv", output_key="batch/x/output.csv")

    lost_queued, lost_running, given_up, busy = (job("queued", 0, old), job("running", 1, old),
                                                 job("running", 3, old), job("running", 1, timezone.now()))
    enqueued: list[int] = []
    monkeypatch.setattr(queues, "enqueue_batch_job", enqueued.append)

    counts = batch.batch_jobs_tick()

    assert counts == {"batch_requeued": 2, "batch_abandoned": 1, "batch_polled": 0}
    assert sorted(enqueued) == sorted([lost_queued.pk, lost_running.pk])
    states = {j.pk: (j.status, j.rows_done) for j in BatchJob.objects.all()}
    assert states == {lost_queued.pk: ("queued", 7), lost_running.pk: ("queued", 0), given_up.pk: ("failed", 7),
                      busy.pk: ("running", 7)}
    assert BatchJob.objects.get(pk=given_up.pk).error_message == (
        "the batch job stopped without finishing 3 times; start a new one")
