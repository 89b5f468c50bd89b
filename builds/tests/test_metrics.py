"""One home for metric facts: every consumer reads direction and names from mlaas_steps.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from builds.engines.local import metric_passes
from mlaas_steps import metrics
from mlaas_steps.evaluate import compute_metrics
from mlaas_steps.trainers import objective_direction


@pytest.mark.parametrize(("metric", "value", "minimum", "expected"), [
    ("precision", 0.92, 0.5, True),
    ("recall", 0.91, 0.5, True),
    ("precision", 0.30, 0.5, False),
    ("rmse", 3.0, 5.0, True),
    ("rmse", 7.0, 5.0, False),
    ("mae", 1.0, 2.0, True),
    ("r2", 0.8, 0.0, True),
])
def test_local_metric_condition_direction_matches_the_metric(metric, value, minimum, expected):
    assert metric_passes(metric, value, minimum) is expected


def test_local_metric_condition_refuses_an_unknown_metric():
    with pytest.raises(KeyError):
        metric_passes("log_loss", 0.2, 0.5)


@pytest.mark.parametrize("problem_type", ["classification", "regression"])
def test_metric_facts_cover_exactly_what_evaluation_computes(problem_type):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 2))
    if problem_type == "classification":
        labels = np.where(features[:, 0] > 0, "yes", "no")
        model = LogisticRegression().fit(features, labels)
    else:
        labels = features[:, 0] * 3 + rng.normal(size=60)
        model = LinearRegression().fit(features, labels)

    computed = compute_metrics(problem_type, model, features, labels)

    assert list(computed) == metrics.metrics_for(problem_type)


@pytest.mark.parametrize(("given", "expected"), [
    ("validation:Precision", ("precision", True)),
    ("recall", ("recall", True)),
    ("f1", ("f1", True)),
])
def test_objective_direction_for_classification_metrics(given, expected):
    assert objective_direction("classification", given) == expected


def test_objective_direction_refuses_a_metric_of_the_other_problem_type():
    from mlaas_steps.failures import StepFailure

    with pytest.raises(StepFailure) as failure:
        objective_direction("regression", "f1")
    assert failure.value.reason == "objective metric `f1` does not apply to regression; use one of rmse, mae, r2"


def test_sagemaker_minimum_is_negated_only_for_lower_is_better_metrics():
    from builds.engines.sagemaker import pipeline_parameters
    from builds.tests.test_sagemaker_engine import make_launch

    assert pipeline_parameters(make_launch(objective_metric="precision", min_metric=0.6))["MinMetric"] == "0.6"
    assert pipeline_parameters(make_launch(objective_metric="recall", min_metric=0.6))["MinMetric"] == "0.6"
    assert pipeline_parameters(make_launch(objective_metric="mae", min_metric=4.0))["MinMetric"] == "-4.0"


def test_algorithm_objective_metric_choices_come_from_the_metric_facts():
    from builds.models import Algorithm

    field = Algorithm._meta.get_field("objective_metric")
    assert [name for name, _ in field.choices] == list(metrics.ORDER)


def test_algorithm_objective_metric_of_the_other_problem_type_is_invalid():
    from django.core.exceptions import ValidationError

    from builds.models import Algorithm

    algorithm = Algorithm(slug="x", name="X", problem_type="regression", objective_metric="f1", min_metric=0.5)
    with pytest.raises(ValidationError) as error:
        algorithm.clean()
    assert error.value.message_dict == {"objective_metric": [
        "F1 is a classification metric; a regression algorithm uses one of rmse, mae, r2."]}


def test_metric_name_filter_uses_the_display_names():
    from mlaas_portal.templatetags.portal import metric_items, metric_name

    assert [metric_name(name) for name, _ in metric_items({"r2": 0.5, "roc_auc": 0.9, "f1": 0.8})] == [
        "F1", "ROC AUC", "R²"]
