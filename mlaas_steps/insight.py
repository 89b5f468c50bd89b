"""Model insight on the held-out test split: what a data scientist looks at before approving a version.

Computed by the evaluate step (`evaluate.run` puts it in evaluation.json under `insight`), so it is made once,
on the same rows as the metrics, where the model and the data already are; the portal only stores and draws it.

    classification: confusion_matrix {labels, matrix}, roc {curves: [{label, fpr, tpr, auc}]}
                    (binary: the positive class; more classes: one-vs-rest per class)
    regression:     predicted_vs_actual {actual, predicted} (a sample of points),
                    residuals {predicted, residual} (the same sample) and histogram {edges, counts} (every row)
    both:           feature_importance {features: [{name, importance, std}], metric, repeats, rows, complete}

Every list is bounded (curve points, sample size, test rows used for importance) so evaluation.json stays
small enough for SageMaker's PropertyFile and a page. Permutation importance is bounded in time: features not
reached before the deadline are left out and `complete` is false.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn import metrics as skm

MAX_CURVE_POINTS = 101
MAX_SAMPLE_POINTS = 500
MAX_IMPORTANCE_ROWS = 2000
HISTOGRAM_BINS = 30
DEFAULT_IMPORTANCE_SECONDS = 10.0
DEFAULT_REPEATS = 3


def compute_insight(problem_type: str, model, features: pd.DataFrame, y_true: np.ndarray, *,
                    score, seed: int = 42, importance_seconds: float = DEFAULT_IMPORTANCE_SECONDS) -> dict:
    """Insight for a fitted pipeline on the test rows; `score(model, X, y)` is higher-is-better."""
    if problem_type == "regression":
        insight = regression_insight(model.predict(features), np.asarray(y_true, dtype="float64"), seed=seed)
    else:
        insight = classification_insight(model.classes_, model.predict_proba(features), y_true)
    insight["feature_importance"] = permutation_importance(
        model, features, y_true, score=score, seed=seed, seconds=importance_seconds)
    return insight


def classification_insight(classes: np.ndarray, probabilities: np.ndarray, y_true: np.ndarray) -> dict:
    labels = [_label(c) for c in classes]
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    truth = np.array([lookup.get(_plain(v), -1) for v in y_true], dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    known = truth >= 0
    matrix = skm.confusion_matrix(truth[known], predicted[known], labels=list(range(len(labels))))
    curves = []
    targets = [1] if len(labels) == 2 else range(len(labels))
    for index in targets:
        positive = truth == index
        if positive.all() or not positive.any():
            continue  # a curve needs both outcomes in the test split
        fpr, tpr, _ = skm.roc_curve(positive, probabilities[:, index])
        curves.append({"label": labels[index], "fpr": _thin(fpr), "tpr": _thin(tpr),
                       "auc": float(skm.auc(fpr, tpr))})
    return {"confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
            "roc": {"curves": curves, "one_vs_rest": len(labels) > 2}}


def regression_insight(predicted: np.ndarray, actual: np.ndarray, *, seed: int) -> dict:
    predicted = np.asarray(predicted, dtype="float64")
    residual = actual - predicted
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(actual), size=min(len(actual), MAX_SAMPLE_POINTS), replace=False))
    counts, edges = np.histogram(residual, bins=HISTOGRAM_BINS) if len(residual) else (np.array([]), np.array([]))
    return {
        "predicted_vs_actual": {"actual": _floats(actual[sample]), "predicted": _floats(predicted[sample]),
                                "sampled": int(len(sample)), "rows": int(len(actual))},
        "residuals": {"predicted": _floats(predicted[sample]), "residual": _floats(residual[sample]),
                      "histogram": {"edges": _floats(edges), "counts": [int(c) for c in counts]}},
    }


def permutation_importance(model, features: pd.DataFrame, y_true: np.ndarray, *, score, seed: int,
                           seconds: float, repeats: int = DEFAULT_REPEATS) -> dict:
    """Mean drop of the score when one input column is shuffled, per column, within `seconds`.

    The model is the whole pipeline, so the columns are the tenant's own (not encoded ones). Written here
    rather than with sklearn's `permutation_importance` because that one cannot stop at a deadline.
    """
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(seed)
    if len(features) > MAX_IMPORTANCE_ROWS:
        keep = np.sort(rng.choice(len(features), size=MAX_IMPORTANCE_ROWS, replace=False))
        features, y_true = features.iloc[keep].reset_index(drop=True), np.asarray(y_true)[keep]
    baseline = score(model, features, y_true)
    results, complete = [], True
    for column in features.columns:
        if time.monotonic() > deadline or baseline is None:
            complete = False
            break
        # All repeats of one column in one frame, predicted at once: one model call instead of `repeats`
        # (each call through the whole pipeline has a fixed cost that dominates at these row counts).
        blocks = []
        for _ in range(repeats):
            block = features.copy()
            block[column] = features[column].to_numpy()[rng.permutation(len(features))]
            blocks.append(block)
        answers = _Answers(model, pd.concat(blocks, ignore_index=True))
        drops = []
        for index, block in enumerate(blocks):
            value = score(answers.block(index, len(features)), block, y_true)
            if value is not None:
                drops.append(baseline - value)
        if drops:
            results.append({"name": str(column), "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    results.sort(key=lambda r: r["importance"], reverse=True)
    return {"features": results, "baseline": baseline, "repeats": repeats, "rows": int(len(features)),
            "complete": complete}


class _Answers:
    """A fitted model's answers for stacked rows, handed out a block at a time as if by the model itself."""

    def __init__(self, model, rows: pd.DataFrame) -> None:
        self.classes_ = getattr(model, "classes_", None)
        self._predicted = model.predict(rows)
        self._probabilities = model.predict_proba(rows) if hasattr(model, "predict_proba") else None

    def block(self, index: int, size: int) -> _Block:
        return _Block(self, slice(index * size, (index + 1) * size))


class _Block:
    def __init__(self, answers: _Answers, rows: slice) -> None:
        self.answers, self.rows, self.classes_ = answers, rows, answers.classes_

    def predict(self, features) -> np.ndarray:
        return self.answers._predicted[self.rows]

    def predict_proba(self, features) -> np.ndarray:
        if self.answers._probabilities is None:
            raise AttributeError("predict_proba")
        return self.answers._probabilities[self.rows]


def _thin(values: np.ndarray) -> list[float]:
    """At most MAX_CURVE_POINTS, keeping both ends (a curve drawn from them looks the same)."""
    if len(values) > MAX_CURVE_POINTS:
        values = values[np.unique(np.linspace(0, len(values) - 1, MAX_CURVE_POINTS).round().astype(int))]
    return _floats(values)


def _floats(values) -> list[float]:
    return [round(float(v), 6) for v in values]


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _label(value: object) -> str:
    return str(_plain(value))
