"""Local engine vs a plain script: what running the build steps as limited, forked children costs.

    .venv/bin/python bench/local_engine.py [--rows 100000] [--runs 3]

(a) engine: preprocess -> train -> evaluate, each through `run_step` (forked
    child, ml.m5.xlarge limits, hist_gradient_boosting, no tuning), writing
    every artifact a build writes (Parquet splits, reports, model.joblib).
(b) baseline: the script a data scientist would write — pandas.read_csv,
    drop rows without a target and duplicates, one-hot the text columns,
    stratified 70/30 split, HistGradientBoostingClassifier, accuracy/F1/AUC, and the insight the engine's
    evaluate step draws for the version page (confusion matrix, ROC curve, permutation importance on 2,000
    test rows with 3 repeats, sklearn.inspection's), so both do the same work.

Both fit the same estimator with the same seed on the same 70 % of rows.
Runs alternate (engine first on even runs, baseline first on odd ones); one
untimed warm-up of each comes first, so neither pays first-import costs in
the figures (the engine's warm-up is `runner.warm_up()`, done once per worker
process).

The baseline runs on a short-lived thread: GNU OpenMP (scikit-learn's)
keeps a worker pool per thread that a forked child inherits broken, so model
fitting must stay off the thread that forks the steps — as in the RQ worker,
which never fits in-process. The thread costs the baseline nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mlaas_steps import StepPaths, place_dataset  # noqa: E402
from mlaas_steps.runner import instance_limits, run_step, warm_up  # noqa: E402

INSTANCE_TYPE = "ml.m5.xlarge"
TARGET = "churn"
CATEGORICAL = ("region", "plan")


def make_dataset(directory: Path, rows: int) -> Path:
    """~20 numeric + 2 categorical columns, binary text target, as CSV."""
    features, labels = make_classification(n_samples=rows, n_features=20, n_informative=8, n_redundant=4,
                                           random_state=0)
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(20)])
    rng = np.random.default_rng(0)
    frame["region"] = np.where(labels == 1, rng.choice(["north", "south", "east", "west"], rows, p=[.4, .3, .2, .1]),
                               rng.choice(["north", "south", "east", "west"], rows))
    frame["plan"] = rng.choice(["basic", "pro", "enterprise"], rows)
    frame[TARGET] = np.where(labels == 1, "yes", "no")
    path = directory / "customers.csv"
    frame.to_csv(path, index=False)
    return path


def run_engine(csv_path: Path, root: Path) -> tuple[float, dict]:
    cpus, memory = instance_limits(INSTANCE_TYPE)
    started = time.perf_counter()
    paths = StepPaths(root)
    place_dataset(paths, csv_path)
    configs = {
        "preprocess": {"target": TARGET, "problem_type": "classification", "seed": 42},
        "train": {"entry_point": "hist_gradient_boosting", "problem_type": "classification", "hyperparameters": {},
                  "tuning_ranges": {}, "tuning_enabled": False, "max_tuning_jobs": 1, "objective_metric": "f1",
                  "seed": 42},
        "evaluate": {},
    }
    steps = {}
    for step, config in configs.items():
        result = run_step(f"mlaas_steps.{step}:run", paths, config, cpu_count=cpus, memory_bytes=memory,
                          timeout_seconds=600, log_path=root / "build.log", instance_type=INSTANCE_TYPE)
        if not result.succeeded:
            raise SystemExit(f"engine step {step} failed: {result.failure_reason}\n{result.log}")
        steps[step] = result.duration_seconds
        metrics = result.summary.get("metrics")
    return time.perf_counter() - started, {"steps": steps, "metrics": metrics}


def baseline(csv_path: Path) -> dict:
    frame = pd.read_csv(csv_path)
    frame = frame.dropna(subset=[TARGET]).drop_duplicates()
    features = pd.get_dummies(frame.drop(columns=[TARGET]), columns=list(CATEGORICAL))
    labels = frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.3, stratify=labels,
                                                        random_state=42)
    model = HistGradientBoostingClassifier(random_state=42).fit(x_train, y_train)
    probabilities = model.predict_proba(x_test)
    predicted = model.classes_[probabilities.argmax(axis=1)]
    confusion_matrix(y_test, predicted)
    roc_curve(y_test == "yes", probabilities[:, 1])
    sample = x_test.sample(n=min(2000, len(x_test)), random_state=42)
    permutation_importance(model, sample, y_test.loc[sample.index], n_repeats=3, random_state=42,
                           scoring="accuracy")
    return {"accuracy": accuracy_score(y_test, predicted), "f1": f1_score(y_test, predicted, pos_label="yes"),
            "roc_auc": roc_auc_score(y_test == "yes", probabilities[:, 1])}


def run_baseline(csv_path: Path) -> tuple[float, dict]:
    outcome: dict = {}
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: outcome.update(baseline(csv_path)))
    worker.start()
    worker.join()
    return time.perf_counter() - started, {"metrics": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description="local engine vs plain script")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-local-engine-") as tmp:
        tmp_path = Path(tmp)
        csv_path = make_dataset(tmp_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"dataset: {args.rows:,} rows x 23 columns, {size_mb:.1f} MB CSV; engine limits {INSTANCE_TYPE} "
              f"{instance_limits(INSTANCE_TYPE)[0]} vCPU (machine has {len(__import__('os').sched_getaffinity(0))})")

        started = time.perf_counter()
        warm_up()
        print(f"warm-up (not counted): runner.warm_up {time.perf_counter() - started:.2f} s", end="")
        seconds, _ = run_engine(csv_path, tmp_path / "warm-engine")
        print(f", engine {seconds:.2f} s", end="")
        seconds, _ = run_baseline(csv_path)
        print(f", baseline {seconds:.2f} s")

        engine_times: list[float] = []
        baseline_times: list[float] = []
        for run in range(args.runs):
            order = ("engine", "baseline") if run % 2 == 0 else ("baseline", "engine")
            for kind in order:
                if kind == "engine":
                    seconds, detail = run_engine(csv_path, tmp_path / f"engine-{run}")
                    engine_times.append(seconds)
                    steps = ", ".join(f"{name} {value:.2f}" for name, value in detail["steps"].items())
                    print(f"run {run + 1} engine   {seconds:6.3f} s  ({steps})  "
                          f"accuracy {detail['metrics']['accuracy']:.4f}")
                else:
                    seconds, detail = run_baseline(csv_path)
                    baseline_times.append(seconds)
                    print(f"run {run + 1} baseline {seconds:6.3f} s  accuracy {detail['metrics']['accuracy']:.4f}")

        engine_median = statistics.median(engine_times)
        baseline_median = statistics.median(baseline_times)
        print(f"median engine   {engine_median:.3f} s")
        print(f"median baseline {baseline_median:.3f} s")
        print(f"ratio engine/baseline {engine_median / baseline_median:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
