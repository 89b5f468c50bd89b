"""One tenant's bad upload never stops intake for the others; Unicode names and targets work end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from builds import intake
from builds.models import Build, RejectedUpload
from builds.queues import plan_queue_name
from builds.uploads import clean_upload_name, upload_presign
from core.aws import gateways

ROOT = Path(__file__).resolve().parents[2]
CSV = "x,売上\n" + "".join(f"{i},{i % 2}\n" for i in range(40))


@pytest.fixture
def intake_queue(settings):
    sqs = gateways.platform_sqs()
    url = sqs.queue_url(settings.MLAAS_INTAKE_QUEUE_NAME)
    while intake.intake_poll_once(wait_seconds=0):  # drain what earlier tests left
        pass
    return sqs, url


def poll_until(predicate, *, rounds: int = 20) -> None:
    for _ in range(rounds):
        intake.intake_poll_once(wait_seconds=1)
        if predicate():
            return
    raise AssertionError("intake did not get there")


@pytest.mark.parametrize(("name", "cleaned"), [
    ("売上.csv", "売上.csv"),
    ("émoji😀 data.CSV", "émoji-data.csv"),
    ("../../etc/x.csv", "x.csv"),
    ("C:\\Users\\me\\q1 sales.csv", "q1-sales.csv"),
    (".csv", "dataset.csv"),
    ("a" * 300 + ".csv", "a" * 96 + ".csv"),
])
def test_clean_upload_name_keeps_extension_and_readable_name(name, cleaned):
    assert clean_upload_name(name) == cleaned


@pytest.mark.django_db(transaction=True)
def test_upload_with_unicode_name_and_target_becomes_a_build(make_tenant, intake_queue):
    """Presigned POST (tenant credentials, IAM enforced) -> EventBridge -> SQS -> intake, all with 売上."""
    tenant = make_tenant(isolation="pool")
    post = upload_presign(tenant=tenant, filename="売上.csv", size=len(CSV.encode()), target="売上")
    assert post["key"].endswith("-売上.csv")
    response = requests.post(post["url"], data=post["fields"], files={"file": ("売上.csv", CSV.encode())}, timeout=10)
    assert response.status_code == 204, response.text
    poll_until(lambda: Build.objects.filter(tenant=tenant).exists())
    build = Build.objects.get(tenant=tenant)
    assert (build.dataset_key, build.target, build.status) == (post["key"], "売上", Build.Status.STARTING)
    assert RejectedUpload.objects.filter(tenant=tenant).count() == 0


def test_emulator_answers_raw_unicode_metadata_encoded_as_aws_does(make_tenant):
    """A client that sends raw UTF-8 metadata (not through the portal) gets RFC 2047 back at once, not a hang."""
    tenant = make_tenant(isolation="silo")
    s3 = gateways.platform_s3()
    key = "uploads/raw.csv"
    post = s3.client.generate_presigned_post(tenant.bucket, key, Fields={"x-amz-meta-target": "émoji😀"},
                                             Conditions=[{"x-amz-meta-target": "émoji😀"}])
    assert requests.post(post["url"], data=post["fields"], files={"file": ("raw.csv", b"a\n1\n")},
                         timeout=10).status_code == 204
    started = time.monotonic()
    head = s3.head_object(tenant.bucket, key)
    assert time.monotonic() - started < 5
    assert head["Metadata"]["target"] == "=?utf-8?b?w6ltb2pp8J+YgA==?="
    assert s3.object_metadata(tenant.bucket, key) == {"target": "émoji😀"}


@pytest.mark.django_db(transaction=True)
def test_failing_upload_is_retried_then_rejected_while_others_flow(make_tenant, intake_queue, settings, monkeypatch):
    settings.MLAAS_INTAKE_MAX_ATTEMPTS = 3
    settings.MLAAS_INTAKE_RETRY_BASE_SECONDS = 0
    bad_tenant, good_tenant = make_tenant(isolation="silo"), make_tenant(isolation="silo")
    real_metadata = intake._object_metadata
    calls: list[str] = []

    def object_metadata(event):  # every intake path reads each new upload's metadata once
        calls.append(event.key)
        if event.bucket == bad_tenant.bucket:
            raise UnicodeEncodeError("latin-1", "売上", 0, 1, "ordinal not in range(256)")
        return real_metadata(event)

    monkeypatch.setattr(intake, "_object_metadata", object_metadata)
    s3 = gateways.platform_s3()
    s3.put_object(bad_tenant.bucket, "uploads/poison.csv", b"a,diagnosis\n1,yes\n")
    s3.put_object(good_tenant.bucket, "uploads/fine.csv", b"a,diagnosis\n1,yes\n")
    poll_until(lambda: RejectedUpload.objects.filter(tenant=bad_tenant).exists())

    assert Build.objects.filter(tenant=good_tenant, dataset_key="uploads/fine.csv").count() == 1
    assert calls.count("uploads/poison.csv") == 3
    rejection = RejectedUpload.objects.get(tenant=bad_tenant)
    assert rejection.key == "uploads/poison.csv"
    assert rejection.reason.startswith("the portal could not read this upload after 3 attempts (UnicodeEncodeError")
    assert intake.intake_poll_once(wait_seconds=1) == 0  # nothing left: the poison message was deleted


def test_transient_failures_get_more_attempts_before_rejection(settings):
    from django.db import OperationalError

    from core.aws.errors import AwsRetryableError

    settings.MLAAS_INTAKE_MAX_ATTEMPTS = 5
    assert intake.max_attempts_for(ValueError("bad")) == 5
    assert intake.max_attempts_for(AwsRetryableError("slow down", code="SlowDown", operation="head_object")) == 20
    assert intake.max_attempts_for(OperationalError("database is restarting")) == 20
    assert [intake.retry_delay_seconds(n) for n in (1, 2, 3, 9, 20)] == [5, 10, 20, 300, 300]


def test_intake_queue_has_a_dead_letter_queue(make_tenant, settings):
    make_tenant(isolation="pool")
    sqs = gateways.platform_sqs()
    policy = sqs.redrive_policy(sqs.queue_url(settings.MLAAS_INTAKE_QUEUE_NAME))
    assert policy["deadLetterTargetArn"].endswith(f":{settings.MLAAS_INTAKE_QUEUE_NAME}-dead-letter")
    assert int(policy["maxReceiveCount"]) == settings.MLAAS_INTAKE_MAX_ATTEMPTS * 4 + 5


@pytest.fixture
def silent_endpoint():
    """A TCP server that accepts connections and never answers: an AWS call that is slow."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = threading.Event()
    connections = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for conn in connections:
        conn.close()


def test_intake_stops_on_sigterm_during_a_slow_aws_call(silent_endpoint, tmp_path):
    endpoint, accepted = silent_endpoint
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "secret", "AWS_READ_TIMEOUT": "120",
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    process = subprocess.Popen([sys.executable, "manage.py", "run_intake", "--wait", "1"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert accepted.wait(30), "intake never called AWS"
        time.sleep(0.5)  # inside the blocked read
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        assert time.monotonic() - sent < 5
        assert process.returncode == 0, output.decode()
        assert b"Traceback" not in output, output.decode()
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.django_db(transaction=True)
def test_unicode_target_and_columns_train_on_the_local_engine(make_tenant, clean_redis):
    """The name travels from the upload to the trained model: data report, metrics and model version."""
    from builds.models import ModelVersion
    from builds.services import build_create
    from tests.test_build_flow import drain_queues

    tenant = make_tenant(isolation="silo", plan="basic", target="売上")
    rows = "".join(f"{i % 7},{(i * 3) % 11},{'高' if i % 7 > 3 else '低'}\n" for i in range(120))
    key = f"{tenant.upload_prefix}売上.csv"
    gateways.platform_s3().put_object(tenant.bucket, key, ("店舗,émoji😀,売上\n" + rows).encode(),
                                      content_type="text/csv")
    build, _ = build_create(tenant=tenant, dataset_key=key, algorithm_slug="gbm-classifier")
    drain_queues("default", plan_queue_name(tenant.plan.slug))
    build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    assert build.target == "売上" and build.metrics["accuracy"] > 0.9
    assert ModelVersion.objects.filter(tenant=tenant, build=build).count() == 1
