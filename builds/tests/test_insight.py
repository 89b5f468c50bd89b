"""Model insight computed by the evaluate step on the test split (mlaas_steps.insight), on the bundled samples.

Plain pytest, no Django:
    .venv/bin/python -m pytest builds/tests/test_insight.py -p no:django -q
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlaas_steps import StepPaths, evaluate, place_dataset, preprocess, train
from mlaas_steps.contract import read_json
from mlaas_steps.insight import MAX_CURVE_POINTS, permutation_importance
from mlaas_steps.preprocess import read_split
from mlaas_steps.sample_data import SAMPLES, write_sample_csvs


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_sample_csvs(tmp_path_factory.mktemp("samples"))


def trained(root, csv_path, name: str, entry_point: str = "hist_gradient_boosting") -> StepPaths:
    paths = StepPaths(root)
    place_dataset(paths, csv_path)
    config = {"target": SAMPLES[name]["target"], "problem_type": SAMPLES[name]["problem_type"]}
    preprocess.run(paths, config)
    train.run(paths, {"entry_point": entry_point, "problem_type": config["problem_type"]})
    return paths


def test_binary_classifier_insight_confusion_matrix_roc_and_importance(tmp_path, samples):
    paths = trained(tmp_path, samples["breast_cancer"], "breast_cancer")

    evaluation = evaluate.run(paths, {"insight_seconds": 600})  # no deadline: every feature is scored

    insight = evaluation["insight"]
    test = read_split(paths.processing_output("test"))
    matrix = insight["confusion_matrix"]
    assert matrix["labels"] == ["benign", "malignant"]
    assert np.sum(matrix["matrix"]) == len(test) == evaluation["rows"]
    assert [sum(row) for row in matrix["matrix"]] == [int((test["diagnosis"] == c).sum()) for c in matrix["labels"]]
    accuracy = (matrix["matrix"][0][0] + matrix["matrix"][1][1]) / len(test)
    assert accuracy == pytest.approx(evaluation["metrics"]["accuracy"])
    (curve,) = insight["roc"]["curves"]
    assert (curve["label"], insight["roc"]["one_vs_rest"]) == ("malignant", False)
    assert curve["auc"] == pytest.approx(evaluation["metrics"]["roc_auc"], abs=1e-6)
    assert (curve["fpr"][0], curve["tpr"][0], curve["fpr"][-1], curve["tpr"][-1]) == (0, 0, 1, 1)
    assert len(curve["fpr"]) == len(curve["tpr"]) <= MAX_CURVE_POINTS
    importance = insight["feature_importance"]
    assert importance["complete"] is True and importance["rows"] == len(test)
    assert sorted(f["name"] for f in importance["features"]) == sorted(test.columns.drop("diagnosis"))
    values = [f["importance"] for f in importance["features"]]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert evaluation["training"]["hyperparameters"] == read_json(paths.model_dir / "model_info.json")[
        "hyperparameters"]
    assert evaluation["training"]["tuning"] == {"enabled": False, "best_trial": None, "trials": 0, "ranges": {}}


def test_multiclass_roc_is_one_vs_rest_per_class(tmp_path, samples):
    paths = trained(tmp_path, samples["wine"], "wine")

    insight = evaluate.run(paths, {})["insight"]

    assert insight["confusion_matrix"]["labels"] == ["class_0", "class_1", "class_2"]
    assert np.array(insight["confusion_matrix"]["matrix"]).shape == (3, 3)
    assert insight["roc"]["one_vs_rest"] is True
    assert [c["label"] for c in insight["roc"]["curves"]] == ["class_0", "class_1", "class_2"]
    assert all(c["auc"] > 0.8 for c in insight["roc"]["curves"])


def test_regression_insight_predicted_vs_actual_residuals_and_importance(tmp_path, samples):
    paths = trained(tmp_path, samples["diabetes"], "diabetes")

    evaluation = evaluate.run(paths, {"insight_seconds": 600})  # no deadline: every feature is scored

    insight = evaluation["insight"]
    points = insight["predicted_vs_actual"]
    test = read_split(paths.processing_output("test"))
    assert points["rows"] == points["sampled"] == len(points["actual"]) == len(points["predicted"]) == len(test)
    assert sorted(points["actual"]) == sorted(round(float(v), 6) for v in test["progression"])
    rmse = np.sqrt(np.mean((np.array(points["actual"]) - np.array(points["predicted"])) ** 2))
    assert rmse == pytest.approx(evaluation["metrics"]["rmse"], rel=1e-4)
    residuals = insight["residuals"]
    assert residuals["residual"] == pytest.approx(
        [a - p for a, p in zip(points["actual"], points["predicted"], strict=True)], abs=1e-5)
    assert sum(residuals["histogram"]["counts"]) == len(test)
    assert len(residuals["histogram"]["edges"]) == len(residuals["histogram"]["counts"]) + 1
    assert insight["feature_importance"]["features"][0]["importance"] > 0
    assert "confusion_matrix" not in insight


def test_permutation_importance_stops_at_its_deadline():
    rows = pd.DataFrame({"a": np.arange(50.0), "b": np.ones(50)})
    calls, predicted_rows = [], []

    class Model:
        classes_ = np.array([0, 1])

        def predict(self, features):
            predicted_rows.append(len(features))
            return np.zeros(len(features))

        def predict_proba(self, features):
            return np.zeros((len(features), 2))

    def score(model, features, labels):
        calls.append(1)
        return 1.0

    bounded = permutation_importance(Model(), rows, np.zeros(50), score=score, seed=1, seconds=0)

    assert (bounded["features"], bounded["complete"], len(calls)) == ([], False, 1)  # the baseline only
    full = permutation_importance(Model(), rows, np.zeros(50), score=score, seed=1, seconds=60, repeats=2)
    assert [f["name"] for f in full["features"]] == ["a", "b"] and full["complete"] is True
    assert len(calls) == 1 + 1 + 2 * 2
    assert predicted_rows == [100, 100]  # each column's two repeats predicted in one call
