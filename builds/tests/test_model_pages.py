"""A model version's page (insight charts, lineage) and the comparison page; registration records insight and
lineage from the evaluate step's report; another tenant's user gets 404 on both pages."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from builds.models import ModelVersion
from tests.web_support import client_for, create_build, create_member, create_tenant, page_title, text_of

INSIGHT = {"confusion_matrix": {"labels": ["benign", "malignant"], "matrix": [[50, 3], [2, 31]]},
           "roc": {"curves": [{"label": "malignant", "fpr": [0, 0.1, 1], "tpr": [0, 0.95, 1], "auc": 0.97}],
                   "one_vs_rest": False},
           "feature_importance": {"features": [{"name": "worst radius", "importance": 0.08, "std": 0.01},
                                               {"name": "mean area", "importance": 0.02, "std": 0.005}],
                                  "baseline": 0.9, "repeats": 3, "rows": 86, "complete": True}}


@pytest.fixture
def acme(reference_data):
    return create_tenant(slug="acme")


@pytest.fixture
def globex(reference_data):
    return create_tenant(slug="globex")


def _figures(response) -> dict[str, dict]:
    """The JSON figure blocks of a page, by element id (what static/js/figures.js draws)."""
    import re

    html = response.content.decode()
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r'<script id="([\w-]+)-data" type="application/json">(.*?)</script>', html, re.S)}


def test_register_records_insight_lineage_and_the_version_it_replaced(make_tenant):
    from builds.engines.base import ENGINE_SUCCEEDED, EngineStatus
    from builds.execution import build_finish
    from builds.launch import launch_for
    from core.aws import gateways

    tenant = make_tenant(isolation="silo", plan="basic")
    approved = create_build(tenant, version=True, approval="Approved")
    create_build(tenant, version=True)  # v2, pending: v3 replaces the approved v1, not it
    build = create_build(tenant, status="running")
    prefix = launch_for(build).output_prefix
    report = {"metrics": {"accuracy": 0.94}, "rows": 86, "insight": INSIGHT,
              "objective": {"metric": "f1", "value": 0.9, "score": 0.9, "higher_is_better": True},
              "training": {"hyperparameters": {"max_iter": 200, "learning_rate": 0.1},
                           "tuning": {"enabled": True, "best_trial": 2, "trials": 3,
                                      "ranges": {"learning_rate": [0.01, 0.3]}},
                           "features": {"numeric": ["worst radius"], "categorical": []}, "classes": ["b", "m"]}}
    gateways.platform_s3().put_object(tenant.bucket, f"{prefix}evaluation/evaluation.json",
                                      json.dumps(report).encode())

    build_finish(build, EngineStatus(state=ENGINE_SUCCEEDED, metrics={"accuracy": 0.94},
                                     model_package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/g/3",
                                     artifact_uri=f"s3://{tenant.bucket}/{prefix}model/model.tar.gz"))

    version = ModelVersion.objects.get(build=build)
    assert (version.version, version.insight, version.replaces) == (3, INSIGHT, approved.model_version)
    assert version.lineage == {
        "dataset": {"bucket": build.dataset_bucket, "key": build.dataset_key, "version_id": build.dataset_version,
                    "size": build.dataset_size},
        "image": {"uri": build.algorithm.training_image_uri,
                  "digest": build.algorithm.training_image_uri.split("@", 1)[1]
                  if "@" in build.algorithm.training_image_uri else ""},
        "algorithm": {"slug": "gbm-classifier", "name": build.algorithm.name, "problem_type": "classification",
                      "entry_point": build.algorithm.entry_point},
        "target": build.target,
        "hyperparameters": {"max_iter": 200, "learning_rate": 0.1},
        "default_hyperparameters": build.algorithm.default_hyperparameters,
        "tuning": {"enabled": True, "best_trial": 2, "trials": 3, "ranges": {"learning_rate": [0.01, 0.3]}},
        "features": {"numeric": ["worst radius"], "categorical": []}, "classes": ["b", "m"],
        "test_rows": 86, "objective": report["objective"], "build": str(build.code), "plan": "basic",
        "artifact": f"s3://{tenant.bucket}/{prefix}model/model.tar.gz"}


def test_register_without_an_evaluation_report_still_registers_with_no_insight(make_tenant):
    from builds.engines.base import ENGINE_SUCCEEDED, EngineStatus
    from builds.execution import build_finish

    tenant = make_tenant(isolation="pool", plan="basic")
    build = create_build(tenant, status="running")

    build_finish(build, EngineStatus(state=ENGINE_SUCCEEDED, metrics={"accuracy": 0.9}, model_package_arn="arn:x",
                                     artifact_uri=f"s3://{tenant.bucket}/k/model.tar.gz"))

    version = ModelVersion.objects.get(build=build)
    assert (version.version, version.insight, version.replaces, version.lineage["dataset"]["key"]) == (
        1, {}, None, build.dataset_key)
    build.refresh_from_db()
    assert build.status == "succeeded"


def test_version_page_draws_classifier_insight_from_json_blocks_and_shows_lineage(acme):
    build = create_build(acme, version=True, metrics={"accuracy": 0.94, "f1": 0.92})
    ModelVersion.objects.filter(build=build).update(insight=INSIGHT, lineage={
        "dataset": {"bucket": acme.bucket, "key": "uploads/cancer.csv", "version_id": "v-123"},
        "image": {"uri": "1.dkr.ecr/steps@sha256:abc", "digest": "sha256:abc"},
        "hyperparameters": {"max_iter": 200}, "tuning": {"enabled": False}, "test_rows": 86})
    create_build(acme, version=True)

    response = client_for(create_member(acme)).get(reverse("builds:model_detail", args=["acme", 1]))

    figures = _figures(response)
    text = text_of(response)
    html = response.content.decode()
    assert response.status_code == 200 and page_title(response) == "Model v1 · Tenant acme · MLaaS Portal"
    assert sorted(figures) == ["chart-confusion-matrix", "chart-feature-importance", "chart-roc"]
    matrix = figures["chart-confusion-matrix"]
    assert [(x, y, n) for x, y, n in zip(matrix["data"][0]["x"], matrix["data"][0]["y"],
                                         matrix["data"][0]["customdata"], strict=True)] == [
        ("benign", "benign", 50), ("malignant", "benign", 3), ("benign", "malignant", 2),
        ("malignant", "malignant", 31)]  # (predicted, actual, count)
    assert [(s["x0"], s["y0"]) for s in matrix["layout"]["shapes"]] == [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5),
                                                                        (0.5, 0.5)]
    assert figures["chart-roc"]["data"][0]["name"] == "malignant (AUC 0.970)"
    assert figures["chart-feature-importance"]["data"][0]["y"] == ["mean area", "worst radius"]
    assert "/static/vendor/plotly.min.js" in html and "/static/js/figures.js" in html
    assert "<script>" not in html.split("</head>")[1]  # no inline script: the figures are JSON blocks
    for row in ("Dataset s3://" + acme.bucket + "/uploads/cancer.csv", "Dataset version id v-123",
                "Image digest sha256:abc", "Hyperparameters max_iter=200", "Tuning not tuned", "Test rows 86",
                f"Build {build.code}"):
        assert row in text
    assert 'name="b"' in html and '<option value="2">v2</option>' in html


def test_version_page_of_a_regressor_and_of_a_version_without_insight(acme):
    build = create_build(acme, version=True, algorithm="gbm-regressor", metrics={"rmse": 50.0})
    ModelVersion.objects.filter(build=build).update(insight={
        "predicted_vs_actual": {"actual": [1.0, 2.0], "predicted": [1.5, 1.8], "sampled": 2, "rows": 2},
        "residuals": {"predicted": [1.5, 1.8], "residual": [-0.5, 0.2],
                      "histogram": {"edges": [-0.5, 0, 0.5], "counts": [1, 1]}},
        "feature_importance": {"features": [], "complete": False}})
    create_build(acme, version=True)
    client = client_for(create_member(acme))

    regressor = client.get(reverse("builds:model_detail", args=["acme", 1]))
    bare = client.get(reverse("builds:model_detail", args=["acme", 2]))

    figures = _figures(regressor)
    assert sorted(figures) == ["chart-predicted-actual", "chart-residuals"]
    assert figures["chart-predicted-actual"]["data"][0]["x"] == [1.0, 2.0]
    assert figures["chart-residuals"]["data"][0]["y"] == [-0.5, 0.2]
    assert "No feature importance was computed." in text_of(regressor)
    assert _figures(bare) == {}
    assert "This version was registered before insight was computed" in text_of(bare)


def test_compare_two_versions_side_by_side(acme):
    first = create_build(acme, version=True, metrics={"accuracy": 0.90, "f1": 0.91})
    second = create_build(acme, version=True, metrics={"accuracy": 0.95, "f1": 0.89})
    ModelVersion.objects.filter(build=second).update(replaces=first.model_version)

    response = client_for(create_member(acme)).get(reverse("builds:model_compare", args=["acme"]), {"a": 1, "b": 2})

    assert response.status_code == 200
    metrics = {row["name"]: (row["first"], row["second"], row["better"]) for row in response.context["metrics"]}
    assert metrics == {"accuracy": (0.90, 0.95, "second"), "f1": (0.91, 0.89, "first")}
    lineage = {row["label"]: (row["first"], row["second"], row["differs"]) for row in response.context["lineage"]}
    assert lineage["Replaced"] == ("–", "v1", True)
    assert lineage["Build"] == (str(first.code), str(second.code), True)
    assert lineage["Algorithm"][2] is False
    assert "Compare v1 and v2" in text_of(response)


def test_compare_with_a_missing_or_the_same_version_says_so(acme):
    create_build(acme, version=True)
    client = client_for(create_member(acme))
    url = reverse("builds:model_compare", args=["acme"])

    missing = client.get(url, {"a": 1, "b": 7}, follow=True)
    same = client.get(url, {"a": 1, "b": 1}, follow=True)
    garbage = client.get(url, {"a": "x"}, follow=True)

    assert "No model version v7 to compare." in text_of(missing)
    assert "Choose two different model versions to compare." in text_of(same)
    assert "Choose two model versions to compare." in text_of(garbage)


@pytest.mark.parametrize(("name", "args", "query"), [
    ("builds:model_detail", ["globex", 1], {}),
    ("builds:model_compare", ["globex"], {"a": 1, "b": 2}),
])
def test_another_tenants_user_gets_404(acme, globex, name, args, query):
    create_build(globex, version=True)
    create_build(globex, version=True)

    response = client_for(create_member(acme, role="owner")).get(reverse(name, args=args), query)

    assert response.status_code == 404 and page_title(response) == "Not found · MLaaS Portal"
