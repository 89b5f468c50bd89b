"""Typical accuracy of each algorithm, measured on the bundled sample datasets.

`manage.py measure_algorithms` trains every active algorithm on each sample of its problem type with the
build pipeline's own steps (preprocess -> train -> evaluate, in-process, fixed seed, no tuning) and stores
the held-out metrics in Algorithm.typical_metrics, which the service catalog shows:

    {"measured_at": "...", "samples": [{"dataset": "breast_cancer", "target": "diagnosis", "rows": 569,
                                        "test_rows": 86, "metrics": {"accuracy": 0.97, ...}}]}

Too slow for seed_demo (a few seconds per algorithm), so it is a separate command.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from django.utils import timezone

from builds.models import Algorithm
from mlaas_steps import StepPaths, evaluate, place_dataset, preprocess, train
from mlaas_steps.sample_data import SAMPLES, write_sample_csvs

SEED = 42


def measure_on_sample(algorithm: Algorithm, csv_path: Path, *, target: str, workdir: Path) -> dict:
    """Run preprocess, train and evaluate in this process on one CSV; return the sample's entry."""
    paths = StepPaths(workdir)
    place_dataset(paths, csv_path)
    report = preprocess.run(paths, {"target": target, "problem_type": algorithm.problem_type, "seed": SEED})
    train.run(paths, {"entry_point": algorithm.entry_point, "problem_type": algorithm.problem_type,
                      "hyperparameters": algorithm.default_hyperparameters, "tuning_ranges": {},
                      "tuning_enabled": False, "max_tuning_jobs": 1,
                      "objective_metric": algorithm.objective_metric, "seed": SEED})
    evaluation = evaluate.run(paths, {"problem_type": algorithm.problem_type})
    metrics = {name: round(float(value), 4) for name, value in evaluation["metrics"].items() if value is not None}
    return {"dataset": csv_path.stem, "target": target, "rows": report["rows_out"], "test_rows": evaluation["rows"],
            "metrics": metrics}


def algorithms_measure(*, slugs: Iterable[str] | None = None,
                       progress: Callable[[str], None] | None = None) -> list[Algorithm]:
    """Measure the (given, else all active) algorithms and save their typical_metrics."""
    say = progress or (lambda message: None)
    qs = Algorithm.objects.filter(active=True) if slugs is None else Algorithm.objects.filter(slug__in=list(slugs))
    measured = []
    with tempfile.TemporaryDirectory(prefix="mlaas-measure-") as tmp:
        samples = write_sample_csvs(Path(tmp) / "samples")
        for algorithm in qs.order_by("slug"):
            entries = []
            for name, spec in SAMPLES.items():
                if spec["problem_type"] != algorithm.problem_type:
                    continue
                entry = measure_on_sample(algorithm, samples[name], target=spec["target"],
                                          workdir=Path(tmp) / f"{algorithm.slug}-{name}")
                entries.append(entry)
                say(f"{algorithm.slug} on {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in entry["metrics"].items()))
            algorithm.typical_metrics = {"measured_at": timezone.now().isoformat(timespec="seconds"),
                                         "samples": entries}
            algorithm.save(update_fields=["typical_metrics"])
            measured.append(algorithm)
    return measured
