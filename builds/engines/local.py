"""The local engine: runs the pipeline's steps as limited child processes of the worker.

It follows the SageMaker container contract in a per-build scratch directory,
reads and writes S3 with the tenant's assumed-role credentials (a bug cannot
reach another tenant's data: IAM refuses it), enforces the CPU and memory of
the plan's instance types and a wall-clock timeout per step, and produces the
same artifacts, metrics, logs and model package registration as SageMaker.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from builds.engines.base import (
    ENGINE_FAILED,
    ENGINE_STOPPED,
    ENGINE_SUCCEEDED,
    BuildLaunch,
    EngineStatus,
    StepStatus,
)
from mlaas_steps import contract, metrics
from mlaas_steps.runner import instance_limits, run_step
from mlaas_steps.steps import (
    COMPUTE_STEPS,
    CONDITION,
    EVALUATE,
    PREPROCESS,
    PROCESSING_STEPS,
    REGISTER,
    STEP_NAMES,
    TRAIN,
)

if TYPE_CHECKING:
    from core.aws.s3 import S3Gateway

logger = logging.getLogger(__name__)

def _now() -> datetime:
    return datetime.now(UTC)


def _billable(started: datetime | None, ended: datetime | None) -> int:
    if not started or not ended:
        return 0
    return max(1, math.ceil((ended - started).total_seconds()))


def step_configs(launch: BuildLaunch) -> dict[str, dict]:
    """Each compute step's config for a build (the SageMaker definition passes the same as parameters)."""
    return {
        PREPROCESS: {"target": launch.target, "problem_type": launch.problem_type, "seed": 42,
                     "algorithm": launch.algorithm_slug, "algorithm_explicit": launch.algorithm_explicit,
                     "fitting_algorithms": launch.fitting_algorithms,
                     "can_switch": bool(launch.alternatives)},  # this engine runs train with another algorithm
        TRAIN: {"entry_point": launch.entry_point, "problem_type": launch.problem_type,
                "hyperparameters": launch.hyperparameters, "tuning_ranges": launch.tuning_ranges,
                "tuning_enabled": launch.tuning_enabled, "max_tuning_jobs": launch.max_tuning_jobs,
                "objective_metric": launch.objective_metric, "seed": 42},
        EVALUATE: {"problem_type": launch.problem_type},
    }


def _instances(step: str, launch: BuildLaunch) -> tuple[str, int]:
    """(instance type, count) a step runs on; pipeline logic steps run on none."""
    if step in PROCESSING_STEPS:
        return launch.processing_instance_type, launch.processing_instance_count
    if step == TRAIN:
        return launch.training_instance_type, launch.training_instance_count
    return "", 0


def metric_passes(metric: str, value: float, minimum: float) -> bool:
    known = metrics.get_metric(metric)
    if known is None:
        raise KeyError(f"unknown objective metric `{metric}`")
    return known.passes(value, minimum)


class LocalEngine:
    name = "local"

    def __init__(self, scratch_root: str | Path | None = None, *,
                 status_reader: Callable[[BuildLaunch], EngineStatus] | None = None) -> None:
        self.scratch_root = Path(scratch_root or settings.MLAAS_SCRATCH_DIR)
        self.status_reader = status_reader

    # The Engine protocol. The local engine runs inside the worker, so `start`
    # runs the whole pipeline; `status` and `stop` go through what the worker records (the Build row),
    # which the engine reads only through the `status_reader` the factory hands it.
    def start(self, launch: BuildLaunch) -> str:
        self.run(launch)
        return f"local:{launch.build_code}"

    def status(self, execution_ref: str, launch: BuildLaunch) -> EngineStatus:
        """What the running worker last recorded (it reports as it goes), read by the reader it was handed."""
        if self.status_reader is None:
            raise RuntimeError("the local engine was made without a status reader")
        return self.status_reader(launch)

    def stop(self, execution_ref: str, launch: BuildLaunch) -> None:
        """Cancellation is a flag on the build row that the running worker polls."""

    def run(
        self,
        launch: BuildLaunch,
        *,
        on_progress: Callable[[list[StepStatus]], None] | None = None,
        on_data_report: Callable[[dict], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        heartbeat: Callable[[], None] | None = None,
        tenant_s3: Callable[[], S3Gateway] | None = None,
    ) -> EngineStatus:
        """Run the build. `tenant_s3` gives the S3 gateway scoped to the tenant's location (the execution
        service assumes the tenant's role); it is called inside the run, so a refused role is a failed step."""
        from core.aws import gateways

        report = on_progress or (lambda steps: None)
        steps = {}
        for name in STEP_NAMES:
            instance_type, instance_count = _instances(name, launch)
            steps[name] = StepStatus(name, "pending", instance_type=instance_type, instance_count=instance_count)
        ordered = list(steps.values())
        status = EngineStatus(state=ENGINE_FAILED, steps=ordered)
        scratch = self.scratch_root / launch.build_code
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        paths = contract.StepPaths(scratch / "ml")
        try:
            if tenant_s3 is None:
                raise ValueError("the local engine needs the tenant's scoped S3 gateway (tenant_s3)")
            s3 = tenant_s3()
            dataset = scratch / "dataset" / Path(launch.dataset_key).name
            dataset.parent.mkdir(parents=True)
            s3.download_file(launch.bucket, launch.dataset_key, dataset)
            contract.place_dataset(paths, dataset)
            configs = step_configs(launch)
            summaries: dict[str, dict] = {}
            for name in COMPUTE_STEPS:
                step = steps[name]
                cpus, memory = instance_limits(step.instance_type)
                step.status, step.started_at = "running", _now()
                report(ordered)
                result = run_step(
                    contract.STEP_FUNCTIONS[name], paths, configs[name], cpu_count=cpus, memory_bytes=memory,
                    timeout_seconds=settings.MLAAS_STEP_TIMEOUT_SECONDS, log_path=scratch / f"{name}.log",
                    should_cancel=should_cancel, heartbeat=heartbeat, step_name=name,
                    instance_type=step.instance_type)
                step.status, step.started_at, step.ended_at = result.status, result.started_at, result.ended_at
                step.billable_seconds = _billable(result.started_at, result.ended_at)
                step.log, step.failure_reason = result.log, result.failure_reason
                if result.status != "succeeded":
                    return self._stop_here(status, ordered, report, result.status, result.failure_reason)
                summaries[name] = result.summary or {}
                self._upload_step_outputs(s3, launch, paths, name)
                if name == PREPROCESS:
                    report_path = paths.processing_output("report") / "data_report.json"
                    status.data_report = contract.read_json(report_path) if report_path.exists() else {}
                    launch = self._apply_algorithm_choice(launch, status.data_report)
                    configs = step_configs(launch)
                    if on_data_report:
                        on_data_report(status.data_report)  # visible while training runs
                report(ordered)
            evaluation = contract.read_json(paths.processing_output("evaluation") / "evaluation.json")
            scores = evaluation.get("metrics", evaluation)
            status.metrics = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}

            condition = steps[CONDITION]
            condition.started_at = _now()
            objective = metrics.normalise(launch.objective_metric)
            value = status.metrics.get(objective)
            condition.ended_at = _now()
            higher_is_better = metrics.higher_is_better(objective)
            limit = "minimum" if higher_is_better else "maximum"
            if value is None or not metric_passes(objective, value, launch.min_metric):
                shown = "missing" if value is None else f"{value:.3f}"
                bound = "below the" if higher_is_better else "above the"
                reason = (f"the model's {launch.objective_metric} on held-out data is {shown}, {bound} "
                          f"{launch.algorithm_slug} {limit} of {launch.min_metric:.3f}; try more rows, a better "
                          "target column or another algorithm")
                condition.status, condition.failure_reason = "failed", reason
                condition.log = reason
                return self._stop_here(status, ordered, report, "failed", reason)
            condition.status = "succeeded"
            condition.log = f"{launch.objective_metric} = {value:.4f} passes the {limit} {launch.min_metric}"
            report(ordered)

            register = steps[REGISTER]
            register.status, register.started_at = "running", _now()
            report(ordered)
            tarball = contract.make_model_tarball(paths.model_dir, scratch / "model.tar.gz")
            artifact_key = f"{launch.output_prefix}model/model.tar.gz"
            s3.upload_file(tarball, launch.bucket, artifact_key)
            artifact_uri = f"s3://{launch.bucket}/{artifact_key}"
            arn = gateways.platform_sagemaker().create_model_package(
                group=launch.model_package_group, model_data_url=artifact_uri, metrics=status.metrics,
                image_uri=launch.training_image_uri,
                description=f"{launch.algorithm_slug} on {Path(launch.dataset_key).name}",
                customer_metadata={"build": launch.build_code, "tenant": launch.tenant_slug,
                                   "algorithm": launch.algorithm_slug, "target": launch.target[:200]})
            register.status, register.ended_at = "succeeded", _now()
            register.log = f"registered {arn} (PendingManualApproval)\nartifact {artifact_uri}"
            status.state, status.model_package_arn, status.artifact_uri = ENGINE_SUCCEEDED, arn, artifact_uri
            report(ordered)
            return status
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _apply_algorithm_choice(launch: BuildLaunch, data_report: dict) -> BuildLaunch:
        """The launch with the algorithm preprocess chose (it may replace a default that does not fit)."""
        chosen = data_report.get("algorithm") or {}
        kind = chosen.get("problem_type")
        if not kind or kind == launch.problem_type:
            return launch
        switched = launch.with_algorithm(kind)
        if switched.algorithm_slug != chosen.get("slug"):
            raise RuntimeError(f"preprocess chose {chosen.get('slug')}, the launch offers {switched.algorithm_slug}")
        logger.info("build %s: %s", launch.build_code, chosen.get("reason"))
        return switched

    @staticmethod
    def _stop_here(status: EngineStatus, ordered: list[StepStatus], report, outcome: str, reason: str):
        for step in ordered:
            if step.status in ("pending", "running"):
                step.status = "skipped" if step.status == "pending" else outcome
        status.state = ENGINE_STOPPED if outcome == "cancelled" else ENGINE_FAILED
        status.failure_reason = reason if outcome != "cancelled" else "cancelled"
        report(ordered)
        return status

    @staticmethod
    def _upload_step_outputs(s3, launch: BuildLaunch, paths: contract.StepPaths, step: str) -> None:
        """Keep what SageMaker would keep in the tenant's output location."""
        uploads: list[tuple[Path, str]] = []
        if step == PREPROCESS:
            for name in ("train", "validation", "test", "report"):
                directory = paths.processing_output(name)
                for path in sorted(directory.glob("*")) if directory.is_dir() else []:
                    if path.is_file():
                        uploads.append((path, f"preprocess/{name}/{path.name}"))
        elif step == EVALUATE:
            uploads.append((paths.processing_output("evaluation") / "evaluation.json", "evaluation/evaluation.json"))
        for path, suffix in uploads:
            s3.upload_file(path, launch.bucket, f"{launch.output_prefix}{suffix}")
