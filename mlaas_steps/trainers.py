"""The algorithms a build can use, keyed by entry point (`Algorithm.entry_point`).

Each trainer builds a scikit-learn estimator for either problem type from a
flat dict of hyperparameters and has defaults for them, default tuning
ranges, and its natural objective metric.

Tuning range format (JSON-safe; the same for every trainer and for tenants'
overrides):

    {"learning_rate": {"type": "continuous", "min": 0.01, "max": 0.3, "scale": "log"},
     "max_iter":      {"type": "integer",    "min": 50,   "max": 500},
     "max_depth":     {"type": "categorical", "values": [null, 8, 16]}}

`type` is integer | continuous | categorical; integer and continuous need
`min` < `max` and take `scale` linear (default) or log (min > 0);
categorical needs a non-empty `values` list.

A point of the unit cube maps onto the ranges (`point_to_hyperparameters`):
coordinate i goes to the i-th range in name order. The local random search
draws uniform points; the SageMaker tuner searches the same cube through the
hyperparameters u0..u3, so both explore the ranges identically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlaas_steps import metrics
from mlaas_steps.failures import StepFailure, quote_list

PROBLEM_TYPES = ("classification", "regression")
RANGE_TYPES = ("integer", "continuous", "categorical")



@dataclass(frozen=True)
class Trainer:
    name: str
    description: str
    default_hyperparameters: Mapping[str, object]
    default_tuning_ranges: Mapping[str, Mapping[str, object]]
    _build: Callable[[str, dict, int, int, list[int]], object] = field(repr=False)

    def objective_metric(self, problem_type: str) -> str:
        return metrics.DEFAULT_OBJECTIVE[problem_type]

    def hyperparameters(self, overrides: Mapping[str, object] | None) -> dict:
        """Defaults updated with `overrides`; text values ("0.1", "none") become numbers, None, booleans."""
        chosen = dict(self.default_hyperparameters)
        unknown = sorted(set(overrides or {}) - set(chosen))
        if unknown:
            raise StepFailure(
                f"unknown hyperparameter {quote_list([f'`{n}`' for n in unknown])} for {self.name}; "
                f"known: {quote_list(sorted(chosen))}"
            )
        for name, value in (overrides or {}).items():
            chosen[name] = _coerce(value, chosen[name])
        return chosen

    def build(self, problem_type: str, hyperparameters: Mapping[str, object], *, seed: int, n_jobs: int,
              categorical: list[int] | None = None):
        """An unfitted estimator for the preprocessor's output; `categorical`: indices of category codes."""
        if problem_type not in PROBLEM_TYPES:
            raise StepFailure(f"problem type `{problem_type}` is not supported; use classification or regression")
        return self._build(problem_type, dict(hyperparameters), seed, n_jobs, list(categorical or []))


def _hist_gradient_boosting(problem_type: str, hp: dict, seed: int, n_jobs: int, categorical: list[int]):
    cls = HistGradientBoostingClassifier if problem_type == "classification" else HistGradientBoostingRegressor
    # Native categorical splits on the codes; threads are OpenMP's, sized by the runner.
    return cls(random_state=seed, categorical_features=categorical or None, **hp)


def _random_forest(problem_type: str, hp: dict, seed: int, n_jobs: int, categorical: list[int]):
    cls = RandomForestClassifier if problem_type == "classification" else RandomForestRegressor
    return cls(random_state=seed, n_jobs=n_jobs, **hp)  # codes as numbers; NaN (rare value) is supported


def _linear(problem_type: str, hp: dict, seed: int, n_jobs: int, categorical: list[int]):
    alpha = float(hp.pop("alpha"))
    if problem_type == "classification":
        if alpha <= 0:
            raise StepFailure("hyperparameter `alpha` must be greater than 0")
        model = LogisticRegression(C=1.0 / alpha, random_state=seed, **hp)
    else:
        model = Ridge(alpha=alpha, random_state=seed, **hp)
    # The shared preprocessing neither scales nor one-hot encodes (trees need not); a linear model must.
    encode = ColumnTransformer([("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
                               remainder=StandardScaler(), sparse_threshold=0.0)
    return Pipeline([("encode", encode), ("model", model)])


TRAINERS: dict[str, Trainer] = {
    trainer.name: trainer
    for trainer in (
        Trainer(
            name="hist_gradient_boosting",
            description="Histogram gradient boosting (LightGBM-style trees); strong default for tabular data.",
            default_hyperparameters={"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31,
                                     "max_depth": None, "min_samples_leaf": 20, "l2_regularization": 0.0},
            default_tuning_ranges={
                "learning_rate": {"type": "continuous", "min": 0.01, "max": 0.3, "scale": "log"},
                "max_iter": {"type": "integer", "min": 50, "max": 400},
                "max_leaf_nodes": {"type": "integer", "min": 8, "max": 64, "scale": "log"},
                "min_samples_leaf": {"type": "integer", "min": 5, "max": 50, "scale": "log"},
            },
            _build=_hist_gradient_boosting,
        ),
        Trainer(
            name="random_forest",
            description="Random forest of decision trees.",
            default_hyperparameters={"n_estimators": 100, "max_depth": None, "min_samples_leaf": 1,
                                     "max_features": "sqrt"},
            default_tuning_ranges={
                "n_estimators": {"type": "integer", "min": 50, "max": 300},
                "max_depth": {"type": "categorical", "values": [None, 8, 16, 32]},
                "min_samples_leaf": {"type": "integer", "min": 1, "max": 10},
                "max_features": {"type": "categorical", "values": ["sqrt", "log2", 0.5]},
            },
            _build=_random_forest,
        ),
        Trainer(
            name="linear",
            description="Logistic regression (classification) or ridge regression; alpha is the regularization.",
            default_hyperparameters={"alpha": 1.0, "max_iter": 1000},
            default_tuning_ranges={"alpha": {"type": "continuous", "min": 1e-4, "max": 100.0, "scale": "log"}},
            _build=_linear,
        ),
    )
}


def get_trainer(entry_point: str) -> Trainer:
    try:
        return TRAINERS[entry_point]
    except KeyError:
        raise StepFailure(f"unknown algorithm `{entry_point}`; available: {quote_list(sorted(TRAINERS))}") from None


def objective_direction(problem_type: str, metric: str) -> tuple[str, bool]:
    """Normalised metric name ("validation:F1" -> "f1") and whether higher is better."""
    known = metrics.get_metric(metric)
    if known is None or known.problem_type != problem_type:
        raise StepFailure(f"objective metric `{metric}` does not apply to {problem_type}; "
                          f"use one of {quote_list(metrics.metrics_for(problem_type))}")
    return known.name, known.higher_is_better


def validate_ranges(trainer: Trainer, ranges: Mapping[str, Mapping[str, object]]) -> dict:
    """Check tuning ranges against the format above; returns them with `scale` filled in."""
    if not isinstance(ranges, Mapping):
        raise StepFailure("tuning ranges must be an object mapping hyperparameter names to ranges")
    checked: dict[str, dict] = {}
    for name, spec in ranges.items():
        if name not in trainer.default_hyperparameters:
            raise StepFailure(f"tuning range for unknown hyperparameter `{name}` of {trainer.name}; "
                              f"known: {quote_list(sorted(trainer.default_hyperparameters))}")
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind not in RANGE_TYPES:
            raise StepFailure(f"tuning range `{name}` needs a type: integer, continuous or categorical")
        if kind == "categorical":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise StepFailure(f"tuning range `{name}` is categorical and needs a non-empty `values` list")
            checked[name] = {"type": kind, "values": list(values)}
            continue
        try:
            low, high = float(spec["min"]), float(spec["max"])
        except (KeyError, TypeError, ValueError):
            raise StepFailure(f"tuning range `{name}` needs numeric `min` and `max`") from None
        scale = spec.get("scale", "linear")
        if not low < high:
            raise StepFailure(f"tuning range `{name}` needs min < max (got {spec['min']} and {spec['max']})")
        if scale not in ("linear", "log") or (scale == "log" and low <= 0):
            raise StepFailure(f"tuning range `{name}`: scale must be linear or log, and log needs min > 0")
        if kind == "integer":
            low, high = math.ceil(low), math.floor(high)
            if low > high:
                raise StepFailure(f"tuning range `{name}` contains no integer")
        checked[name] = {"type": kind, "min": low, "max": high, "scale": scale}
    return checked


def point_to_hyperparameters(ranges: Mapping[str, Mapping[str, object]], point: list[float]) -> dict:
    """Map a point of [0, 1]^n onto the ranges, coordinate i to the i-th range in name order."""
    chosen: dict[str, object] = {}
    for name, u in zip(sorted(ranges), point, strict=False):
        spec = ranges[name]
        u = min(max(float(u), 0.0), 1.0)
        if spec["type"] == "categorical":
            values = spec["values"]
            chosen[name] = values[min(int(u * len(values)), len(values) - 1)]
            continue
        low, high = float(spec["min"]), float(spec["max"])
        if spec["type"] == "integer":
            # Each integer gets an equal share of the cube (of log space, for log scale).
            if spec.get("scale") == "log":
                value = math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))
            else:
                value = low + u * (high + 1 - low)
            chosen[name] = int(min(math.floor(value), high))
        elif spec.get("scale") == "log":
            chosen[name] = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            chosen[name] = low + u * (high - low)
    return chosen


def _coerce(value: object, default: object) -> object:
    """Hyperparameters arrive as text from SageMaker and forms: "100" -> 100, "none" -> None."""
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        if lowered in ("none", "null", ""):
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        try:
            value = json.loads(text)
        except ValueError:
            return text
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
