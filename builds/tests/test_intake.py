"""Intake: events become exactly one build per object version; the rest are recorded with a reason."""

from __future__ import annotations

import pytest

from builds.intake import UploadEvent, intake_event, parse_event, resolve_tenant
from builds.models import Build, RejectedUpload
from core.aws import gateways


def put(tenant, key: str, body: bytes = b"a,b,diagnosis\n1,2,yes\n", metadata: dict | None = None) -> UploadEvent:
    response = gateways.platform_s3().put_object(tenant.bucket, key, body, metadata=metadata)
    return UploadEvent(bucket=tenant.bucket, key=key, size=len(body), version=response["VersionId"])


def test_parse_event_prefers_version_id_then_sequencer_and_etag():
    body = ('{"detail": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.csv", "size": 5, '
            '"version-id": "v1", "sequencer": "s", "eTag": "e"}}}')
    assert parse_event(body) == UploadEvent("b", "uploads/x.csv", 5, "v1")
    body = '{"detail": {"bucket": {"name": "b"}, "object": {"key": "k", "sequencer": "s", "etag": "e"}}}'
    assert parse_event(body).version == "s:e"


def test_resolve_tenant_for_silo_and_pool(make_tenant):
    silo, pool = make_tenant(isolation="silo"), make_tenant(isolation="pool")
    assert resolve_tenant(silo.bucket, "uploads/a.csv") == silo
    assert resolve_tenant(pool.bucket, f"{pool.prefix}uploads/a.csv") == pool
    assert resolve_tenant(pool.bucket, "tenants/nobody/uploads/a.csv") is None
    assert resolve_tenant("some-other-bucket", "uploads/a.csv") is None


def test_intake_event_creates_one_build_per_object_version(make_tenant):
    tenant = make_tenant(isolation="silo")
    first = put(tenant, "uploads/data.csv")
    second = put(tenant, "uploads/data.csv", b"a,b,diagnosis\n3,4,no\n")  # same key, new version
    builds = [intake_event(first), intake_event(first), intake_event(second), intake_event(second)]
    assert builds[0] == builds[1] and builds[2] == builds[3] and builds[0] != builds[2]
    assert Build.objects.filter(tenant=tenant).count() == 2
    assert builds[0].status == Build.Status.QUEUED


def test_intake_event_uses_object_metadata_for_algorithm_and_target(make_tenant):
    tenant = make_tenant(isolation="pool")
    event = put(tenant, f"{tenant.upload_prefix}m.csv", metadata={"algorithm": "linear-classifier", "target": "y"})
    build = intake_event(event)
    assert (build.algorithm.slug, build.target) == ("linear-classifier", "y")


@pytest.mark.parametrize("case", ["not_csv", "outside", "too_large", "unknown_algorithm", "suspended", "no_tenant"])
def test_intake_event_records_rejections_with_reason(make_tenant, case):
    from tenants.services import tenant_suspend

    tenant = make_tenant(isolation="pool", plan="basic")
    key, metadata, size = f"{tenant.upload_prefix}data.csv", None, None
    if case == "not_csv":
        key = f"{tenant.upload_prefix}notes.txt"
    elif case == "outside":
        key = f"{tenant.prefix}elsewhere/data.csv"
    elif case == "unknown_algorithm":
        metadata = {"algorithm": "quantum-forest"}
    elif case == "suspended":
        tenant_suspend(tenant=tenant)
    event = put(tenant, key, metadata=metadata)
    if case == "too_large":
        size = tenant.plan.upload_size_limit_bytes + 1
        event = UploadEvent(event.bucket, event.key, size, event.version)
    if case == "no_tenant":
        event = UploadEvent(event.bucket, "tenants/ghost/uploads/x.csv", 10, "v")
    assert intake_event(event) is None
    reasons = {
        "not_csv": "`notes.txt` is not a CSV file (expected a .csv name)",
        "outside": f"object is outside the upload location `{tenant.upload_prefix}`",
        "too_large": f"file is {size or 0:,} bytes; the Basic plan allows at most 52,428,800 bytes",
        "unknown_algorithm": "unknown algorithm `quantum-forest` in the object's metadata; algorithms are: ",
        "suspended": f"tenant `{tenant.slug}` is suspended: uploads do not start builds",
        "no_tenant": f"no tenant owns s3://{tenant.bucket}/tenants/ghost/uploads/x.csv",
    }
    rejected = RejectedUpload.objects.get(key=event.key)
    assert rejected.reason.startswith(reasons[case])
    assert Build.objects.filter(tenant=tenant).count() == 0
    assert intake_event(event) is None and RejectedUpload.objects.filter(key=event.key).count() == 1


def test_intake_ignores_the_platforms_own_outputs(make_tenant):
    tenant = make_tenant(isolation="pool")
    event = put(tenant, f"{tenant.output_prefix}builds/x/evaluation.json")
    assert intake_event(event) is None
    assert RejectedUpload.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_intake_poll_deletes_message_only_after_commit(make_tenant, monkeypatch):
    """A crash while creating the build leaves the message in SQS: it is redelivered and builds once."""
    import time

    from django.conf import settings

    from builds import intake

    tenant = make_tenant(isolation="silo")
    sqs = gateways.platform_sqs()
    url = sqs.queue_url(settings.MLAAS_INTAKE_QUEUE_NAME)
    sqs.client.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})
    try:
        while intake.intake_poll_once(wait_seconds=0):  # drain what earlier tests left
            pass
        put(tenant, "uploads/crash.csv")

        def crash(events):
            raise RuntimeError("database went away")

        monkeypatch.setattr(intake, "intake_events", crash)  # the batch, and then each message alone
        monkeypatch.setattr(intake, "intake_event", crash)
        monkeypatch.setattr(settings, "MLAAS_INTAKE_RETRY_BASE_SECONDS", 1)
        assert intake.intake_poll_once(wait_seconds=2) == 0  # isolated: retried later, not raised
        monkeypatch.undo()
        assert not Build.objects.filter(dataset_key="uploads/crash.csv").exists()
        time.sleep(1.5)  # the message becomes visible again
        for _ in range(5):
            intake.intake_poll_once(wait_seconds=1)
            if Build.objects.filter(dataset_key="uploads/crash.csv").exists():
                break
        assert Build.objects.filter(dataset_key="uploads/crash.csv").count() == 1
        assert intake.intake_poll_once(wait_seconds=1) == 0  # deleted after the commit
    finally:
        sqs.client.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "60"})
