"""Step 3: score the model artifact on the held-out test split.

Run in-process as `run(paths, config)` or in a SageMaker processing container as

    python -m mlaas_steps.evaluate --model /opt/ml/processing/input/model \
        --test /opt/ml/processing/input/test --output /opt/ml/processing/output/evaluation \
        --target churn --problem-type classification --objective-metric f1

config (all optional; defaults come from the model's model_info.json):
target, problem_type, objective_metric.

Reads processing/input/model/ (model.joblib + model_info.json, or SageMaker's
model.tar.gz of them) and processing/input/test/*.parquet; writes
processing/output/evaluation/evaluation.json:

    {"problem_type": ..., "metrics": {"accuracy": .., "f1": .., "roc_auc": ..},
     "objective": {"metric": "f1", "value": .., "score": .., "higher_is_better": true},
     "binary_classification_metrics" | "multiclass_classification_metrics" | "regression_metrics":
         {"<metric>": {"value": .., "standard_deviation": "NaN"}},   # SageMaker model-quality style
     "rows": <test rows>, "algorithm": ...,
     "insight": {...},   # mlaas_steps.insight: confusion matrix and ROC, or predicted-vs-actual and
                         # residuals; permutation feature importance (bounded by config insight_seconds)
     "training": {"hyperparameters": {..}, "tuning": {"enabled", "best_trial", "trials", "ranges"}}}

`objective.score` is the metric with higher always better (rmse and mae
negated), the scale the pipeline's minimum-metric condition compares against.

Classification: f1 is binary (positive class = the last of the sorted
classes, e.g. `yes`, `1`, `malignant`) or macro-averaged for more classes;
roc_auc is one-vs-rest for more classes; a metric that cannot be computed on
this test split (one class only) is null.
"""

from __future__ import annotations

import logging
import sys
import tarfile
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlaas_steps.contract import StepPaths, read_json, stage_inputs, write_json
from mlaas_steps.failures import StepFailure
from mlaas_steps.preprocess import read_split
from mlaas_steps.steps import EVALUATE
from mlaas_steps.trainers import objective_direction

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
INFO_FILE = "model_info.json"


def run(paths: StepPaths, config: dict) -> dict:
    """Write evaluation.json for the model on the test split; return it."""
    stage_inputs(paths, EVALUATE)
    model, info = load_model(paths.processing_input("model"))
    problem_type = config.get("problem_type") or info["problem_type"]
    target = config.get("target") or info["target"]
    metric, higher_is_better = objective_direction(
        problem_type, config.get("objective_metric") or info["objective"]["metric"])
    test = read_split(paths.processing_input("test"))
    if target not in test.columns:
        raise StepFailure(f"the test split has no `{target}` column; run the build again from preprocessing")
    features, truth = test.drop(columns=[target]), test[target].to_numpy()
    metrics = compute_metrics(problem_type, model, features, truth)
    value = metrics[metric]
    score = None if value is None else (value if higher_is_better else -value)
    section = _sagemaker_section(problem_type, len(info.get("classes") or []))
    evaluation = {
        "problem_type": problem_type,
        "metrics": metrics,
        "objective": {"metric": metric, "value": value, "score": score, "higher_is_better": higher_is_better},
        section: {name: {"value": v, "standard_deviation": "NaN"} for name, v in metrics.items() if v is not None},
        "rows": len(test),
        "algorithm": info.get("algorithm"),
        "insight": _insight(problem_type, model, features, truth, metric, higher_is_better, config),
        "training": _training_summary(info),
    }
    write_json(paths.processing_output("evaluation") / "evaluation.json", evaluation)
    logger.info("evaluate: %s on %d test rows", metrics, len(test))
    return evaluation


def _insight(problem_type: str, model, features, truth, metric: str, higher_is_better: bool, config: dict) -> dict:
    """The insight section; a failure here is logged and leaves it empty (the metrics still decide the build)."""
    from mlaas_steps.insight import DEFAULT_IMPORTANCE_SECONDS, compute_insight

    def score(fitted, rows, labels):
        value = compute_metrics(problem_type, fitted, rows, labels)[metric]
        return None if value is None else (value if higher_is_better else -value)

    try:
        return compute_insight(problem_type, model, features, truth, score=score,
                               importance_seconds=float(config.get("insight_seconds") or DEFAULT_IMPORTANCE_SECONDS))
    except Exception:  # noqa: BLE001 - insight is for people; it never fails a build
        logger.exception("evaluate: insight could not be computed")
        return {}


def _training_summary(info: dict) -> dict:
    """What training chose, for the version's lineage: final hyperparameters and the tuning that found them."""
    tuning = info.get("tuning") or {}
    return {"hyperparameters": info.get("hyperparameters") or {},
            "tuning": {"enabled": bool(tuning.get("enabled")), "best_trial": tuning.get("best_trial"),
                       "trials": len(tuning.get("trials") or []), "ranges": tuning.get("ranges") or {}},
            "features": info.get("features") or {}, "classes": info.get("classes") or []}


def load_model(directory: Path) -> tuple[object, dict]:
    """The fitted pipeline and its model_info, from a model directory or a model.tar.gz in it."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).exists():
        archives = sorted(directory.glob("*.tar.gz"))
        if not archives:
            raise StepFailure("no trained model was found; run the build again")
        extracted = Path(tempfile.mkdtemp(prefix="model-"))
        with tarfile.open(archives[0]) as archive:
            archive.extractall(extracted, filter="data")
        directory = extracted
    return joblib.load(directory / MODEL_FILE), read_json(directory / INFO_FILE)


def compute_metrics(problem_type: str, model, features, y_true: np.ndarray) -> dict:
    """accuracy / f1 / precision / recall / roc_auc, or rmse / mae / r2 (floats, None when undefined)."""
    if problem_type == "regression":
        predicted = model.predict(features)
        y_true = np.asarray(y_true, dtype="float64")
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predicted))),
            "mae": float(skm.mean_absolute_error(y_true, predicted)),
            "r2": float(skm.r2_score(y_true, predicted)) if len(y_true) > 1 else None,
        }
    probabilities = model.predict_proba(features)
    classes = model.classes_
    # Score on class indices: the same numbers as on the labels, without sorting strings.
    truth = _class_indices(classes, y_true)
    predicted = probabilities.argmax(axis=1)  # what predict() returns, without a second pass
    result = {"accuracy": float(np.mean(truth == predicted))}
    # Binary: the positive class only (index 1); more classes: the unweighted mean over classes.
    labels, average = ([1], None) if len(classes) == 2 else (np.arange(len(classes)), "macro")
    scores = skm.precision_recall_fscore_support(truth, predicted, labels=labels, average=average, zero_division=0)
    precision, recall, f1 = (float(np.mean(score)) for score in scores[:3])
    result.update(f1=f1, precision=precision, recall=recall)
    result["roc_auc"] = _roc_auc(truth, probabilities)
    return result


def _class_indices(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each label in `classes`; -1 for a label the model never saw."""
    lookup = {label: index for index, label in enumerate(classes.tolist())}
    codes, uniques = pd.factorize(pd.Series(labels))
    mapping = np.array([lookup.get(_plain(label), -1) for label in uniques], dtype=np.int64)
    return mapping[codes] if len(codes) else codes.astype(np.int64)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _roc_auc(truth: np.ndarray, probabilities: np.ndarray) -> float | None:
    present = np.unique(truth[truth >= 0])
    if len(present) < 2:
        return None
    try:
        if probabilities.shape[1] == 2:
            return float(skm.roc_auc_score(truth == 1, probabilities[:, 1]))
        if len(present) < probabilities.shape[1] or (truth < 0).any():
            return None  # one-vs-rest needs every class, and only known ones, in the test split
        return float(skm.roc_auc_score(truth, probabilities, multi_class="ovr"))
    except ValueError:
        return None


def _sagemaker_section(problem_type: str, class_count: int) -> str:
    if problem_type == "regression":
        return "regression_metrics"
    return "binary_classification_metrics" if class_count == 2 else "multiclass_classification_metrics"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/opt/ml/processing/input/model")
    parser.add_argument("--test", default="/opt/ml/processing/input/test")
    parser.add_argument("--output", default="/opt/ml/processing/output/evaluation")
    parser.add_argument("--target", default="")
    parser.add_argument("--problem-type", default="")
    parser.add_argument("--objective-metric", default="")
    args = parser.parse_args(argv)
    paths = StepPaths(StepPaths.from_environ().root,  # MLAAS_ML_ROOT: where the exit message goes
                      overrides={"processing/input/model": args.model, "processing/input/test": args.test,
                                 "processing/output/evaluation": args.output})
    config = {"target": args.target, "problem_type": args.problem_type, "objective_metric": args.objective_metric}
    from mlaas_steps.container import run_in_container

    return run_in_container(run, paths, config, failure_file=paths.message_path)


if __name__ == "__main__":
    sys.exit(main())
