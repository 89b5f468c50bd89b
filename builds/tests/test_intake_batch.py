"""Intake's batch path gives every event the outcome the one-at-a-time path gives it, in bulk queries."""

from __future__ import annotations

import pytest

from builds import intake
from builds.intake import UploadEvent
from builds.models import Build, BuildTransition, RejectedUpload

METADATA = {"algo.csv": {"algorithm": "linear-classifier", "target": "y"}, "bad-algo.csv": {"algorithm": "nope"},
            "no-target.csv": {}}


@pytest.fixture
def tenants(reference_data):
    from tests.factories import TenantFactory

    return {"silo": TenantFactory(isolation="silo"),
            "pool": TenantFactory(isolation="pool", plan=_plan("basic")),
            "no_target": TenantFactory(isolation="pool", default_target=""),
            "suspended": TenantFactory(isolation="pool", status="suspended")}


def _plan(slug):
    from tenants.models import Plan

    return Plan.objects.get(slug=slug)


def batch(tenants, version: str) -> list[UploadEvent]:
    silo, pool = tenants["silo"], tenants["pool"]
    limit = pool.plan.upload_size_limit_bytes

    def ev(tenant, name, size=100, bucket=None):
        return UploadEvent(bucket=bucket or tenant.bucket, key=f"{tenant.upload_prefix}{name}", size=size,
                           version=version)

    return [
        ev(silo, "a.csv"), ev(pool, "b.csv"), ev(silo, "a.csv"),  # the same upload twice in one batch
        ev(pool, "algo.csv"), ev(pool, "bad-algo.csv"), ev(pool, "notes.txt"), ev(pool, "big.csv", size=limit + 1),
        UploadEvent(bucket=pool.bucket, key=f"{pool.prefix}elsewhere/x.csv", size=1, version=version),
        UploadEvent(bucket=pool.bucket, key=f"{pool.output_prefix}model.tar.gz", size=1, version=version),
        UploadEvent(bucket=pool.bucket, key=f"{pool.batch_prefix}job/input.csv", size=1, version=version),
        UploadEvent(bucket=pool.bucket, key="tenants/nobody/uploads/x.csv", size=1, version=version),
        ev(tenants["no_target"], "no-target.csv"), ev(tenants["suspended"], "s.csv"), ev(pool, "c.csv"),
    ]


def outcome(result) -> tuple:
    """What an event became, without the ids and version that differ between the two runs."""
    if result is None:
        return (None,)
    build = Build.objects.get(pk=result.pk)
    steps = [(t.from_status, t.to_status, t.reason.replace("-one", "").replace("-bulk", ""))
             for t in BuildTransition.objects.filter(build=build).order_by("id")]
    return (build.tenant_id, build.dataset_key, build.algorithm.slug, build.algorithm_explicit, build.target,
            build.status, build.source, build.dataset_size, build.training_instance_type, build.size_band, steps)


def rejections(version: str) -> list[tuple]:
    from builds.services import dedup_key_for

    rows = RejectedUpload.objects.order_by("key")
    return [(r.tenant_id, r.key, r.reason) for r in rows
            if r.dedup_key == dedup_key_for(r.bucket, r.key, version)]


@pytest.mark.django_db
def test_intake_batch_outcomes_equal_one_at_a_time(tenants, monkeypatch):
    monkeypatch.setattr(intake, "_object_metadata", lambda event: METADATA.get(event.key.rsplit("/", 1)[-1], {}))

    one_by_one = [intake.intake_event(e) for e in batch(tenants, "one")]
    bulk = intake.intake_events(batch(tenants, "bulk"))

    assert [outcome(r) for r in bulk] == [outcome(r) for r in one_by_one]
    assert rejections("bulk") == rejections("one") and len(rejections("one")) == 7
    assert bulk[0] == bulk[2] and isinstance(bulk[0], Build)  # one build for the repeated upload
    assert sum(isinstance(r, Build) for r in bulk) == 5
    # Already built: the batch returns the existing builds and makes none.
    before = Build.objects.count()
    assert intake.intake_events(batch(tenants, "bulk"))[:2] == bulk[:2]
    assert Build.objects.count() == before


@pytest.mark.django_db
def test_intake_batch_isolates_an_event_that_raises(tenants, monkeypatch):
    def metadata(event):
        if event.key.endswith("b.csv"):
            raise RuntimeError("S3 went away for this one")
        return {}

    monkeypatch.setattr(intake, "_object_metadata", metadata)
    events = batch(tenants, "x")[:3]
    results = intake.intake_events(events)
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], Build) and results[0] == results[2]
    assert not Build.objects.filter(dataset_key=events[1].key).exists()


@pytest.mark.django_db
def test_intake_batch_falls_back_to_one_at_a_time_when_a_build_exists_already(tenants, monkeypatch):
    """A concurrent intake committed one of the batch's uploads first: the others still become builds."""
    monkeypatch.setattr(intake, "_object_metadata", lambda event: {})
    events = batch(tenants, "race")[:2]
    real_dedup = Build.objects.filter

    def filter_hiding_the_race(*args, **kwargs):  # the dedup read happened before the other intake committed
        if "dedup_key__in" in kwargs:
            return Build.objects.none()
        return real_dedup(*args, **kwargs)

    first = intake.intake_event(events[0])
    monkeypatch.setattr(Build.objects, "filter", filter_hiding_the_race)
    results = intake.intake_events(events)
    monkeypatch.undo()
    assert results[0] == first
    assert isinstance(results[1], Build) and Build.objects.filter(dataset_key=events[1].key).count() == 1


@pytest.mark.django_db
def test_intake_batch_queries_do_not_grow_with_the_batch(tenants, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(intake, "_object_metadata", lambda event: {})
    pool = tenants["pool"]

    def good(n, tag):
        return [UploadEvent(bucket=pool.bucket, key=f"{pool.upload_prefix}{tag}-{i}.csv", size=10, version=tag)
                for i in range(n)]

    with django_assert_max_num_queries(8) as one:
        assert len(intake.intake_events(good(1, "one"))) == 1
    # SQS hands over at most 10 messages a receive; 25 builds still fit one INSERT under SQLite's 999 parameters.
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert all(isinstance(b, Build) for b in intake.intake_events(good(25, "many")))
    assert Build.objects.filter(dataset_key__contains="many-").count() == 25
