"""The whole path: presigned upload -> S3 event -> intake -> queue -> local engine -> model -> cost."""

from __future__ import annotations

import time
from pathlib import Path

import django_rq
import pytest
import requests
from django.conf import settings
from rq import SimpleWorker

from builds.intake import intake_poll_once
from builds.models import Build, ModelVersion


def upload_csv(tenant, path: Path, *, algorithm: str = "", target: str = "") -> str:
    from builds.uploads import upload_presign

    data = path.read_bytes()
    post = upload_presign(tenant=tenant, filename=path.name, size=len(data), algorithm=algorithm, target=target)
    response = requests.post(post["url"], data=post["fields"], files={"file": (path.name, data)}, timeout=10)
    assert response.status_code == 204, response.text
    return post["key"]


def intake_until(key: str, timeout: float = 10) -> Build | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        intake_poll_once(wait_seconds=1)
        build = Build.objects.filter(dataset_key=key).first()
        if build:
            return build
    return None


def drain_queues(*names: str) -> None:
    for _ in range(5):  # jobs enqueue follow-up jobs (dispatch -> execute -> ledger)
        for name in names:
            django_rq.get_worker(name, worker_class=SimpleWorker).work(burst=True)


@pytest.fixture
def samples(tmp_path):
    from mlaas_steps.sample_data import write_sample_csvs

    return {name: Path(p) for name, p in write_sample_csvs(tmp_path).items()}


@pytest.mark.django_db(transaction=True)
def test_upload_becomes_registered_model_with_cost(make_tenant, samples, clean_redis):
    tenant = make_tenant(isolation="pool", plan="basic", algorithm="gbm-classifier", target="diagnosis")
    key = upload_csv(tenant, samples["breast_cancer"])

    build = intake_until(key)
    assert build is not None and build.status == Build.Status.STARTING  # capacity free: dispatched at intake
    drain_queues("default", "plan-basic")

    build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    assert [s.name for s in build.steps.all()] == ["preprocess", "train", "evaluate", "condition", "register"]
    assert {s.status for s in build.steps.all()} == {"succeeded"}
    # The local runtime executed the deployed definition: each step carries the definition step that ran as it.
    assert [s.definition_step for s in build.steps.all()] == [
        "Preprocess", "Train", "Evaluate", "CheckMetric", "Register"]
    assert build.metrics["accuracy"] > 0.9
    version = ModelVersion.objects.get(build=build)
    assert (version.version, version.approval_status) == (1, "PendingManualApproval")
    # The training job's output, where the definition's OutputDataConfig puts it: model/<job>/output/.
    train_job = build.steps.get(name="train").log.split()[1]
    assert train_job.startswith("pipelines-") and "-Train-" in train_job
    assert version.artifact_key == f"{tenant.output_prefix}builds/{build.code}/model/{train_job}/output/model.tar.gz"
    assert build.cost_lines.count() == 0  # builds report what ran; billing pulls it on its tick
    from billing.jobs import billing_tick
    from core.aws import gateways

    assert billing_tick()["metered"] == 1
    assert build.cost_lines.count() == 3  # preprocess, train, evaluate
    assert build.charge.amount == sum(line.amount for line in build.cost_lines.all()) > 0
    drain_queues("default")  # the ledger write, if it had not run yet
    item = gateways.platform_dynamodb().get_item(settings.MLAAS_LEDGER_TABLE,
                                                 {"tenant": tenant.slug, "build": str(build.code)})
    assert (item["status"], item["cost_usd"]) == ("succeeded", str(build.charge.amount))
    assert [t.to_status for t in build.transitions.all()] == [
        "received", "queued", "starting", "running", "succeeded"]
    build.refresh_from_db()
    assert build.ledger_written


@pytest.mark.django_db(transaction=True)
def test_duplicate_events_make_one_build(make_tenant, samples, clean_redis):
    from builds.intake import UploadEvent, intake_event

    tenant = make_tenant(isolation="silo", plan="basic")
    key = upload_csv(tenant, samples["breast_cancer"])
    build = intake_until(key)
    event = UploadEvent(bucket=tenant.bucket, key=key, size=1, version=build.dataset_version)
    assert intake_event(event) == build
    assert intake_event(event) == build
    assert Build.objects.filter(dataset_key=key).count() == 1


@pytest.mark.django_db(transaction=True)
def test_local_engine_status_reports_what_the_worker_recorded(make_tenant, samples, clean_redis):
    from builds.engines import get_engine
    from builds.launch import launch_for

    tenant = make_tenant(isolation="silo", plan="basic")
    build = intake_until(upload_csv(tenant, samples["breast_cancer"]))
    drain_queues("default", "plan-basic")
    build.refresh_from_db()
    status = get_engine("local").status(f"local:{build.code}", launch_for(build))
    version = ModelVersion.objects.get(build=build)
    assert (status.state, status.model_package_arn, [s.name for s in status.steps]) == (
        "succeeded", version.arn, ["preprocess", "train", "evaluate", "condition", "register"])
    assert status.metrics == build.metrics and status.data_report["rows_in"] == 569
