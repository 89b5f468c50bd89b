"""Builds on the local engine: regression with tuning, wine multiclass, and bad datasets failing with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from builds.models import Build, ModelVersion
from builds.queues import plan_queue_name
from builds.services import build_create
from core.aws import gateways
from tests.test_build_flow import drain_queues

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def samples(tmp_path):
    from mlaas_steps.sample_data import write_sample_csvs

    return {name: Path(p) for name, p in write_sample_csvs(tmp_path).items()}


def run_build(tenant, name: str, body: bytes, **kwargs) -> Build:
    key = f"{tenant.upload_prefix}{name}"
    gateways.platform_s3().put_object(tenant.bucket, key, body, content_type="text/csv")
    build, _ = build_create(tenant=tenant, dataset_key=key, **kwargs)
    drain_queues("default", plan_queue_name(tenant.plan.slug))
    build.refresh_from_db()
    return build


def test_regression_with_tuning_registers_a_model(make_tenant, samples, clean_redis):
    tenant = make_tenant(isolation="silo", plan="standard", algorithm="gbm-regressor", target="progression")
    build = run_build(tenant, "diabetes.csv", samples["diabetes"].read_bytes())
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    assert set(build.metrics) >= {"rmse", "mae", "r2"} and build.metrics["r2"] > 0.2
    train = build.steps.get(name="train")
    assert "trial" in train.log  # the plan includes tuning: several trials were scored
    assert ModelVersion.objects.filter(tenant=tenant).count() == 1


def test_multiclass_with_algorithm_override(make_tenant, samples, clean_redis):
    tenant = make_tenant(isolation="pool", plan="premium", target="cultivar")
    build = run_build(tenant, "wine.csv", samples["wine"].read_bytes(), algorithm_slug="linear-classifier")
    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    assert build.algorithm.slug == "linear-classifier" and build.metrics["accuracy"] > 0.85


def test_default_classifier_on_a_numeric_target_fails_naming_the_regressors(make_tenant, samples, clean_redis):
    """The deployed definition fixes the algorithm when the build starts (one Train step, one image call),
    so a default of the wrong kind is not switched mid-build: Preprocess names the algorithms that fit."""
    tenant = make_tenant(isolation="pool", plan="basic", algorithm="gbm-classifier", target="progression")

    build = run_build(tenant, "diabetes.csv", samples["diabetes"].read_bytes())

    assert build.status == Build.Status.FAILED
    assert build.steps.get(name="preprocess").failure_reason == (
        "target `progression` holds 214 distinct whole numbers, which makes it a regression target, but the "
        "default algorithm `gbm-classifier` is a classification algorithm; start the build again with a regression "
        "algorithm (`gbm-regressor`, `random-forest-regressor`, `linear-regressor`), or make one the tenant's "
        "default.")
    assert (build.algorithm.slug, build.algorithm_explicit) == ("gbm-classifier", False)
    assert not ModelVersion.objects.filter(build=build).exists()


def test_explicit_classifier_on_a_numeric_target_fails_at_preprocessing(make_tenant, samples, clean_redis):
    tenant = make_tenant(isolation="pool", plan="basic", algorithm="gbm-classifier", target="progression")

    build = run_build(tenant, "diabetes.csv", samples["diabetes"].read_bytes(), algorithm_slug="linear-classifier")

    assert build.status == Build.Status.FAILED
    assert build.steps.get(name="preprocess").failure_reason == (
        "`linear-classifier` is a classification algorithm, but target `progression` holds 214 distinct whole "
        "numbers, which makes it a regression target; choose a regression algorithm (`gbm-regressor`, "
        "`random-forest-regressor`, `linear-regressor`); if the numbers are category codes, write them as text "
        "(e.g. `c12`).")  # a sentence: the step conversion both engines share ends it with a full stop
    assert (build.algorithm.slug, build.algorithm_explicit) == ("linear-classifier", True)


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty"),
    (b"age,income,churn\n", "no data rows"),
    (b"a,b,churn\n" + b"".join(f"{i},{i * 2},yes\n".encode() for i in range(50)), "only one class"),
    (b"a,b,label\n" + b"".join(f"{i},{i},{i % 2}\n".encode() for i in range(50)), "column `churn` not found"),
    (bytes(range(256)) * 40, "the file is not text"),
])
def test_bad_dataset_fails_with_a_reason_and_the_worker_keeps_working(make_tenant, clean_redis, body, reason):
    tenant = make_tenant(isolation="pool", plan="basic", target="churn")
    build = run_build(tenant, "bad.csv", body)
    assert build.status == Build.Status.FAILED
    assert reason in build.failure_reason.lower() or reason in build.failure_reason
    assert "Traceback" not in build.failure_reason
    assert build.steps.get(name="preprocess").status == "failed"
    assert [s.status for s in build.steps.exclude(name="preprocess")] == ["skipped"] * 4
    good = b"a,b,churn\n" + b"".join(f"{i},{(i * 7) % 11},{'yes' if i > 40 else 'no'}\n".encode() for i in range(80))
    after = run_build(tenant, "good.csv", good)
    assert after.status == Build.Status.SUCCEEDED, after.failure_reason
