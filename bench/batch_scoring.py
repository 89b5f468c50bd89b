"""Batch scoring benchmark: rows per second through the local `serve` child process, by chunk size.

Trains the bundled breast-cancer classifier once (hist gradient boosting), repeats its 569 rows to --rows
data rows, starts `serve` as builds.serving does for batch jobs, and streams the file through
builds.batch.score_rows (the batch job's own loop: CSV chunks POSTed to /invocations, the output CSV written)
for each chunk size. The figure covers parsing, the HTTP round trips, scoring and writing the output; it
excludes the S3 download/upload, the artifact fetch and the server's start-up (printed apart).

    .venv/bin/python bench/batch_scoring.py [--rows 20000] [--chunks 200,1000,5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunks", default="200,1000,5000")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlaas_portal.settings")
    import django

    django.setup()
    import pandas as pd

    from builds import batch, serving
    from mlaas_steps import StepPaths, place_dataset, preprocess, train
    from mlaas_steps.sample_data import write_sample_csvs

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        root = Path(scratch)
        csv_path = Path(write_sample_csvs(root / "samples")["breast_cancer"])
        paths = StepPaths(root / "build")
        place_dataset(paths, csv_path)
        preprocess.run(paths, {"target": "diagnosis", "problem_type": "classification"})
        train.run(paths, {"entry_point": "hist_gradient_boosting", "problem_type": "classification"})
        frame = pd.read_csv(csv_path).drop(columns=["diagnosis"])
        repeated = pd.concat([frame] * (args.rows // len(frame) + 1)).head(args.rows)
        source = root / "input.csv"
        repeated.to_csv(source, index=False)
        header = list(repeated.columns)
        began = time.perf_counter()
        started = serving.start(paths.model_dir, root / "serve.log")
        problem = serving.wait_ready(started, timeout=120, log_path=root / "serve.log")
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"serve ready in {time.perf_counter() - began:.2f} s; {args.rows:,} rows, "
              f"{source.stat().st_size / 1e6:.1f} MB, {len(header)} columns")
        try:
            for size in (int(c) for c in args.chunks.split(",")):
                t0 = time.perf_counter()
                done = batch.score_rows(started.port, header, source, root / "output.csv", chunk_rows=size)
                seconds = time.perf_counter() - t0
                print(f"chunk {size:>6,} rows: {done:,} rows in {seconds:.2f} s = {done / seconds:,.0f} rows/s")
        finally:
            serving.stop_started(started, paths.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
