"""Every fact about a model metric, in one place: its name, display name, task and direction.

Evaluation computes these metrics (`mlaas_steps.evaluate.compute_metrics`),
trainers tune on one of them, the engines compare the objective metric with an
algorithm's minimum, `Algorithm.objective_metric` is chosen from `CHOICES`, and
the pages show them in `ORDER` under their display names. Nothing else says
which way a metric points.

No Django and no scikit-learn here: the web process and the step image both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class Metric:
    name: str
    display_name: str
    problem_type: str
    higher_is_better: bool

    def score(self, value: float) -> float:
        """The value on the scale where higher is always better (lower-is-better metrics negated)."""
        return value if self.higher_is_better else -value

    def passes(self, value: float, minimum: float) -> bool:
        """Whether `value` meets an algorithm's minimum (for lower-is-better metrics, a maximum)."""
        return value >= minimum if self.higher_is_better else value <= minimum


# In reading order: the build page and the catalog show metrics in this order.
METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("accuracy", "Accuracy", CLASSIFICATION, True),
    Metric("f1", "F1", CLASSIFICATION, True),
    Metric("precision", "Precision", CLASSIFICATION, True),
    Metric("recall", "Recall", CLASSIFICATION, True),
    Metric("roc_auc", "ROC AUC", CLASSIFICATION, True),
    Metric("rmse", "RMSE", REGRESSION, False),
    Metric("mae", "MAE", REGRESSION, False),
    Metric("r2", "R²", REGRESSION, True),
)}
ORDER: tuple[str, ...] = tuple(METRICS)
DEFAULT_OBJECTIVE = {CLASSIFICATION: "f1", REGRESSION: "rmse"}
# For a model field's `choices`: (name, "Display name (classification)").
CHOICES: list[tuple[str, str]] = [(m.name, f"{m.display_name} ({m.problem_type})") for m in METRICS.values()]


def normalise(name: str) -> str:
    """"validation:F1" -> "f1": SageMaker-style prefixes and case do not matter."""
    return str(name or "").strip().lower().rsplit(":", 1)[-1]


def get_metric(name: str) -> Metric | None:
    return METRICS.get(normalise(name))


def metrics_for(problem_type: str) -> list[str]:
    """The metric names that apply to a problem type, in reading order."""
    return [m.name for m in METRICS.values() if m.problem_type == problem_type]


def higher_is_better(name: str) -> bool:
    """Direction of a known metric; KeyError for an unknown one (never guess a direction)."""
    metric = get_metric(name)
    if metric is None:
        raise KeyError(f"unknown metric `{name}`; known: {', '.join(ORDER)}")
    return metric.higher_is_better


def display_name(name: str) -> str:
    metric = get_metric(name)
    return metric.display_name if metric else str(name)
