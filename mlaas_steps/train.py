"""Step 2: fit the chosen algorithm, with or without a random-search tuning loop.

Run in-process as `run(paths, config)` (the local engine) or in a SageMaker
training container as `python -m mlaas_steps.train` (hyperparameters from
input/config/hyperparameters.json, channels from SM_CHANNEL_*).

config: entry_point, problem_type, hyperparameters {}, tuning_ranges {}
(trainer defaults when empty), tuning_enabled, max_tuning_jobs,
objective_metric (trainer's natural one when empty), seed (42); target is
taken from the train channel's schema.json.

Reads input/data/train/ (preprocessor.joblib, schema.json, features.npy and the
labels of train.parquet; without features.npy it transforms train.parquet) and
input/data/validation/ (validation.parquet, only when tuning or when SageMaker's
tuner passes u0..u3). Writes model/model.joblib — one sklearn Pipeline of the
fitted preprocessor and estimator, so it predicts on raw feature rows — and
model/model_info.json.

Local tuning is a random search: trial 1 uses the given hyperparameters, the
other max_tuning_jobs - 1 draw uniform points of the ranges' unit cube (fixed
seed); every trial fits on train and is scored on validation with the
objective metric; the best trial's estimator is kept (no refit).
In a SageMaker tuning job the tuner supplies the point as u0..u3 instead.
The last log line is `objective_score=<float>` (higher is better) whenever a
validation score was computed; the SageMaker tuner reads it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import joblib
import numpy as np
import pyarrow.parquet as pq
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from mlaas_steps.contract import StepPaths, read_json, stage_inputs, write_json
from mlaas_steps.evaluate import INFO_FILE, MODEL_FILE, compute_metrics
from mlaas_steps.failures import StepFailure
from mlaas_steps.preprocess import (
    PREPROCESSOR_FILE,
    SCHEMA_FILE,
    TRAIN_FEATURES_FILE,
    feature_layout,
    read_split,
)
from mlaas_steps.steps import TRAIN
from mlaas_steps.trainers import (
    get_trainer,
    objective_direction,
    point_to_hyperparameters,
    validate_ranges,
)

logger = logging.getLogger(__name__)

UNIT_CUBE_PREFIX = "u"  # u0, u1, ...: a point chosen by the SageMaker tuner
OBJECTIVE_LOG_METRIC = "objective_score"


def run(paths: StepPaths, config: dict) -> dict:
    """Fit (and optionally tune) the model; write the artifact; return model_info."""
    stage_inputs(paths, TRAIN)
    train_dir = paths.channel("train")
    schema = read_json(train_dir / SCHEMA_FILE)
    target = schema["target"]
    problem_type = config.get("problem_type") or schema["problem_type"]
    if problem_type != schema["problem_type"]:
        raise StepFailure(f"the data was prepared for {schema['problem_type']} but the build asks for "
                          f"{problem_type}; start a new build")
    trainer = get_trainer(str(config.get("entry_point") or ""))
    seed = int(config.get("seed", 42))
    metric, higher_is_better = objective_direction(
        problem_type, config.get("objective_metric") or trainer.objective_metric(problem_type))
    base = trainer.hyperparameters(config.get("hyperparameters") or {})
    ranges = validate_ranges(trainer, config.get("tuning_ranges") or trainer.default_tuning_ranges)
    point = config.get("point")  # the SageMaker tuner's u0..u3
    tuning = bool(config.get("tuning_enabled")) and point is None
    max_jobs = max(1, int(config.get("max_tuning_jobs") or 1))
    candidates = _candidates(base, ranges, point, max_jobs if tuning else 1, seed)
    needs_validation = tuning or point is not None

    preprocessor = joblib.load(train_dir / PREPROCESSOR_FILE)
    features, labels = _train_rows(train_dir, target, preprocessor)
    if needs_validation:
        validation = read_split(paths.channel("validation"))
        validation_features = preprocessor.transform(validation.drop(columns=[target]))
        validation_labels = validation[target].to_numpy()

    n_jobs = _cpu_count()
    trials: list[dict] = []
    best = None
    for number, hyperparameters in enumerate(candidates, start=1):
        estimator = trainer.build(problem_type, hyperparameters, seed=seed, n_jobs=n_jobs,
                                  categorical=feature_layout(schema))
        try:
            estimator.fit(features, labels)
        except InvalidParameterError as error:
            raise StepFailure(f"invalid hyperparameters for {trainer.name}: {error}") from None
        trial = {"trial": number, "hyperparameters": hyperparameters}
        if needs_validation:
            scores = compute_metrics(problem_type, estimator, validation_features, validation_labels)
            value = scores[metric]
            trial.update(value=value, score=None if value is None else (value if higher_is_better else -value),
                         validation_metrics=scores)
            logger.info("trial %d: %s=%s %s", number, metric, value, hyperparameters)
        trials.append(trial)
        if best is None or _better(trial, best[0]):
            best = (trial, estimator)
        del estimator
    trial, estimator = best

    model = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    model_dir = paths.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / MODEL_FILE)
    classes = [value.item() if isinstance(value, np.generic) else value
               for value in getattr(estimator, "classes_", [])]
    info = {
        "algorithm": trainer.name,
        "problem_type": problem_type,
        "target": target,
        "hyperparameters": trial["hyperparameters"],
        "objective": {"metric": metric, "higher_is_better": higher_is_better,
                      "value": trial.get("value"), "score": trial.get("score")},
        "validation_metrics": trial.get("validation_metrics"),
        "tuning": {"enabled": tuning, "max_jobs": max_jobs if tuning else 0, "ranges": ranges if tuning else {},
                   "trials": trials if tuning else [], "best_trial": trial["trial"] if tuning else None},
        "classes": classes,
        "positive_class": classes[1] if len(classes) == 2 else None,
        "features": {"numeric": schema["numeric_features"], "categorical": schema["categorical_features"]},
        # Every input column of the training rows (ignored ones too): what `serve` accepts in a request.
        "columns": _input_columns(train_dir, target),
        "train_rows": len(labels),
        "seed": seed,
    }
    write_json(model_dir / INFO_FILE, info)
    if trial.get("score") is not None:
        logger.info("%s=%.6f", OBJECTIVE_LOG_METRIC, trial["score"])  # the SageMaker tuner's metric regex
    return info


def _train_rows(train_dir: Path, target: str, preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """Transformed train features (preprocess saved them) and labels."""
    labels_only = len(list(train_dir.glob("*.parquet"))) == 1 and (train_dir / TRAIN_FEATURES_FILE).exists()
    if labels_only:
        (split,) = train_dir.glob("*.parquet")
        labels = pq.read_table(split, columns=[target]).column(0).to_pandas().to_numpy()
        features = np.load(train_dir / TRAIN_FEATURES_FILE)
        if len(features) == len(labels):
            return features, labels
    train = read_split(train_dir)
    return preprocessor.transform(train.drop(columns=[target])), train[target].to_numpy()


def _input_columns(train_dir: Path, target: str) -> list[str]:
    """The train split's columns without the target, in file order (read from the Parquet schema only)."""
    files = sorted(train_dir.glob("*.parquet"))
    names = pq.read_schema(files[0]).names if files else []
    return [name for name in names if name != target and not name.startswith("__index_level_")]


def _candidates(base: dict, ranges: dict, point: list[float] | None, count: int, seed: int) -> list[dict]:
    """Hyperparameter sets to try: the base set first, then random points of the ranges."""
    if point is not None:
        return [{**base, **point_to_hyperparameters(ranges, point)}]
    candidates = [base]
    rng = np.random.default_rng(seed)
    attempts = 0
    while len(candidates) < count and attempts < 20 * count:
        attempts += 1
        candidate = {**base, **point_to_hyperparameters(ranges, rng.random(len(ranges)).tolist())}
        if candidate not in candidates:  # small integer or categorical ranges repeat themselves
            candidates.append(candidate)
    return candidates


def _better(trial: dict, best: dict) -> bool:
    if trial.get("score") is None:
        return False
    return best.get("score") is None or trial["score"] > best["score"]


def _cpu_count() -> int:
    if os.environ.get("SM_NUM_CPUS", "").isdigit():
        return max(1, int(os.environ["SM_NUM_CPUS"]))
    return max(1, len(os.sched_getaffinity(0)))


def config_from_hyperparameters(hyperparameters: dict) -> dict:
    """The run() config from SageMaker's hyperparameters.json (every value a string).

    Keys: algorithm, target, problem_type, objective_metric, hyperparameters
    (JSON), tuning_ranges (JSON), seed, and u0..u3 under a SageMaker tuner.
    """
    def as_json(name: str) -> dict:
        value = hyperparameters.get(name) or "{}"
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            raise StepFailure(f"hyperparameter `{name}` is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise StepFailure(f"hyperparameter `{name}` must be a JSON object")
        return parsed

    units = sorted((name for name in hyperparameters
                    if name.startswith(UNIT_CUBE_PREFIX) and name[1:].isdigit()), key=lambda n: int(n[1:]))
    return {
        "entry_point": hyperparameters.get("algorithm") or hyperparameters.get("entry_point"),
        "problem_type": hyperparameters.get("problem_type"),
        "objective_metric": hyperparameters.get("objective_metric"),
        "hyperparameters": as_json("hyperparameters"),
        "tuning_ranges": as_json("tuning_ranges"),
        "seed": int(float(hyperparameters.get("seed") or 42)),
        "point": [float(hyperparameters[name]) for name in units] if units else None,
    }


def main(argv: list[str] | None = None) -> int:
    from mlaas_steps.container import run_in_container

    paths = StepPaths.from_environ()
    if os.environ.get("SM_HPS"):
        hyperparameters = json.loads(os.environ["SM_HPS"])
    elif paths.hyperparameters_path.exists():
        hyperparameters = json.loads(Path(paths.hyperparameters_path).read_text())
    else:
        hyperparameters = {}
    return run_in_container(lambda p, c: run(p, config_from_hyperparameters(c)), paths, hyperparameters,
                            failure_file=paths.failure_path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
