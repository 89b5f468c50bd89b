"""Sample datasets for tests, demos and the local engine: scikit-learn's bundled ones as CSV.

No network: load_breast_cancer, load_wine and load_diabetes read files that
ship inside the scikit-learn package.

    breast_cancer  classification, target `diagnosis` ("malignant" / "benign"), 569 rows
    wine           classification, target `cultivar` (3 classes), 178 rows
    diabetes       regression, target `progression`, 442 rows
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES = {
    "breast_cancer": {"target": "diagnosis", "problem_type": "classification"},
    "wine": {"target": "cultivar", "problem_type": "classification"},
    "diabetes": {"target": "progression", "problem_type": "regression"},
}


def write_sample_csvs(directory: str | os.PathLike) -> dict[str, Path]:
    """Write <name>.csv for each sample into `directory`; returns {name: path}."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, loader, target, labels in (
        ("breast_cancer", load_breast_cancer, "diagnosis", True),
        ("wine", load_wine, "cultivar", True),
        ("diabetes", load_diabetes, "progression", False),
    ):
        bunch = loader(as_frame=True, **({"scaled": False} if name == "diabetes" else {}))
        frame = bunch.data.copy()
        frame[target] = bunch.target_names[bunch.target] if labels else bunch.target
        path = directory / f"{name}.csv"
        frame.to_csv(path, index=False)
        written[name] = path
    return written


def write_large_sample(source: str | os.PathLike, destination: str | os.PathLike, *, min_bytes: int,
                       target: str, seed: int = 7) -> Path:
    """A synthetic larger copy of a sample CSV: its rows repeated with 1 % noise on the numeric features until
    the file is over `min_bytes` (the demo uses it to cross a plan's size band boundary)."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(source)
    rng = np.random.default_rng(seed)
    features = [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])]
    copies, destination = [frame], Path(destination)
    while True:
        noisy = frame.copy()
        noisy[features] = noisy[features] * rng.normal(1.0, 0.01, size=noisy[features].shape)
        copies.append(noisy.round(5))
        pd.concat(copies, ignore_index=True).to_csv(destination, index=False)
        if destination.stat().st_size > min_bytes:
            return destination
