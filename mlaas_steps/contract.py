"""The SageMaker container contract, rooted anywhere.

In SageMaker the steps see `/opt/ml/...`; the local engine gives each build a
scratch directory laid out the same way, so one code path serves both:

    processing/input/data/<the uploaded CSV>          preprocess reads
    processing/output/train/      train.parquet, preprocessor.joblib, schema.json
    processing/output/validation/ validation.parquet
    processing/output/test/       test.parquet
    processing/output/report/     data_report.json
    input/data/train/             training channel  (= processing/output/train)
    input/data/validation/        training channel  (= processing/output/validation)
    input/config/hyperparameters.json
    model/                        model.joblib, model_info.json  (SM_MODEL_DIR)
    output/data/                  SM_OUTPUT_DATA_DIR
    output/failure                training failure reason (FailureReason)
    output/message                processing exit message (ExitMessage)
    processing/input/model/       evaluate reads (= model/, or a model.tar.gz)
    processing/input/test/        evaluate reads (= processing/output/test)
    processing/output/evaluation/ evaluation.json

Where SageMaker copies outputs of one step to inputs of the next, the local
engine links them (`stage_inputs`, called by every step's `run`; it only adds
links that are missing, so it does nothing inside a real container).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlaas_steps.steps import EVALUATE, PREPROCESS, TRAIN

SAGEMAKER_ROOT = Path("/opt/ml")
ROOT_ENV = "MLAAS_ML_ROOT"  # lets a script find a non-default root
TRAINING_CHANNELS = ("train", "validation")
STEP_FUNCTIONS = {  # mlaas_steps.steps.COMPUTE_STEPS
    PREPROCESS: "mlaas_steps.preprocess:run",
    TRAIN: "mlaas_steps.train:run",
    EVALUATE: "mlaas_steps.evaluate:run",
}


@dataclass(frozen=True)
class StepPaths:
    """SageMaker-style paths under `root`.

    `overrides` maps a path relative to the root ("model", "input/data/train",
    "processing/output", "processing/input/test", ...) to where it really is,
    for the values SageMaker hands over in SM_* variables or arguments.
    """

    root: Path = SAGEMAKER_ROOT
    overrides: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "overrides", {key: Path(value) for key, value in self.overrides.items()})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StepPaths:
        """Paths inside a container: the root from MLAAS_ML_ROOT, SM_* variables win."""
        environ = os.environ if environ is None else environ
        overrides: dict[str, Path] = {}
        if environ.get("SM_MODEL_DIR"):
            overrides["model"] = Path(environ["SM_MODEL_DIR"])
        if environ.get("SM_OUTPUT_DATA_DIR"):
            overrides["output/data"] = Path(environ["SM_OUTPUT_DATA_DIR"])
        for name, value in environ.items():
            if name.startswith("SM_CHANNEL_") and value:
                overrides[f"input/data/{name.removeprefix('SM_CHANNEL_').lower()}"] = Path(value)
        return cls(Path(environ.get(ROOT_ENV) or SAGEMAKER_ROOT), overrides)

    def _path(self, relative: str) -> Path:
        return self.overrides.get(relative) or self.root / relative

    def processing_input(self, name: str = "data") -> Path:
        return self._path(f"processing/input/{name}")

    def processing_output(self, name: str) -> Path:
        if f"processing/output/{name}" in self.overrides:
            return self.overrides[f"processing/output/{name}"]
        return self._path("processing/output") / name

    def channel(self, name: str) -> Path:
        return self._path(f"input/data/{name}")

    @property
    def hyperparameters_path(self) -> Path:
        return self._path("input/config/hyperparameters.json")

    @property
    def model_dir(self) -> Path:
        return self._path("model")

    @property
    def output_data_dir(self) -> Path:
        return self._path("output/data")

    @property
    def failure_path(self) -> Path:
        return self._path("output/failure")

    @property
    def message_path(self) -> Path:
        return self._path("output/message")


# Inputs each step expects, and the earlier outputs they are linked to locally.
_STAGING = {
    PREPROCESS: (),
    TRAIN: (("input/data/train", "processing/output/train"),
            ("input/data/validation", "processing/output/validation")),
    EVALUATE: (("processing/input/model", "model"),
               ("processing/input/test", "processing/output/test")),
}


def stage_inputs(paths: StepPaths, step: str) -> None:
    """Link a step's missing inputs to the previous steps' outputs under the same root."""
    for relative_input, relative_source in _STAGING[step]:
        target = paths._path(relative_input)
        source = paths._path(relative_source)
        if target.exists() or target.is_symlink() or not source.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve(), target_is_directory=True)


def place_dataset(paths: StepPaths, csv_path: str | os.PathLike) -> Path:
    """Put the uploaded file where preprocess looks for it (a symlink, no copy)."""
    directory = paths.processing_input("data")
    directory.mkdir(parents=True, exist_ok=True)
    source = Path(csv_path).resolve()
    link = directory / source.name
    if not link.exists():
        link.symlink_to(source)
    return link


def sagemaker_environment(
    paths: StepPaths,
    *,
    step: str,
    cpu_count: int,
    hyperparameters: Mapping[str, object] | None = None,
    instance_type: str = "local",
) -> dict[str, str]:
    """The SM_* variables the sagemaker-training toolkit sets, for a step under `paths`.

    Processing jobs get no SM_* variables in SageMaker; the few common ones are
    set for every step so the scripts can size thread pools the same way.
    """
    environment = {
        ROOT_ENV: str(paths.root),
        "SM_NUM_CPUS": str(cpu_count),
        "SM_NUM_GPUS": "0",
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_INSTANCE_TYPE": instance_type,
    }
    if step != "train":
        return environment
    hyperparameters = dict(hyperparameters or {})
    environment.update({
        "SM_MODEL_DIR": str(paths.model_dir),
        "SM_INPUT_DIR": str(paths._path("input")),
        "SM_INPUT_CONFIG_DIR": str(paths._path("input/config")),
        "SM_OUTPUT_DIR": str(paths._path("output")),
        "SM_OUTPUT_DATA_DIR": str(paths.output_data_dir),
        "SM_CHANNELS": json.dumps(list(TRAINING_CHANNELS)),
        "SM_HPS": json.dumps(hyperparameters, default=str),
    })
    for channel in TRAINING_CHANNELS:
        environment[f"SM_CHANNEL_{channel.upper()}"] = str(paths.channel(channel))
    for name, value in hyperparameters.items():
        environment[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return environment


def make_model_tarball(model_dir: str | os.PathLike, dest_path: str | os.PathLike) -> Path:
    """Pack the model directory as SageMaker's model.tar.gz (files at the archive root)."""
    model_dir = Path(model_dir)
    dest_path = Path(dest_path)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest_path, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return dest_path


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
