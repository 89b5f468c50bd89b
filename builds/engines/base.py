"""The small interface every build engine implements: start, status, stop.

Engines see plain dataclasses, not Django models, so they can be exercised
without a database and the SageMaker engine never depends on ORM details.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from mlaas_steps.steps import STEP_NAMES

__all__ = ["ENGINE_STATES", "STEP_NAMES", "BuildLaunch", "Engine", "EngineStatus", "StepStatus"]

# Build states an engine may report for a running execution.
ENGINE_RUNNING = "running"
ENGINE_SUCCEEDED = "succeeded"
ENGINE_FAILED = "failed"
ENGINE_STOPPED = "cancelled"
ENGINE_STATES = (ENGINE_RUNNING, ENGINE_SUCCEEDED, ENGINE_FAILED, ENGINE_STOPPED)



@dataclass(frozen=True)
class BuildLaunch:
    """Everything an engine needs to run one build; all tenant-specific values."""

    build_code: str
    tenant_slug: str
    plan_slug: str
    role_arn: str
    bucket: str
    dataset_key: str  # full S3 key of the uploaded CSV
    output_prefix: str  # S3 key prefix (no leading slash) for this build's outputs
    algorithm_slug: str
    problem_type: str  # "classification" | "regression"
    entry_point: str  # local trainer name, e.g. "hist_gradient_boosting"
    training_image_uri: str
    target: str
    hyperparameters: dict
    tuning_ranges: dict
    objective_metric: str
    min_metric: float
    tuning_enabled: bool
    max_tuning_jobs: int
    processing_instance_type: str
    processing_instance_count: int
    training_instance_type: str
    training_instance_count: int
    model_package_group: str
    tags: dict[str, str]
    # False: the tenant's default; preprocess may replace it by `alternatives[kind]` when the target needs it.
    algorithm_explicit: bool = True
    # Per problem type, the active algorithms that fit it (slugs, the preferred first)...
    fitting_algorithms: dict[str, list[str]] = field(default_factory=dict)
    # ...and the preferred one's values, as BuildLaunch fields (algorithm_slug, entry_point, ...).
    alternatives: dict[str, dict] = field(default_factory=dict)
    # The claim this launch belongs to (Build.attempts): a remote engine's idempotency token, so a start
    # retried for the same claim (a lost worker's) runs once, and a new claim runs anew.
    attempt: int = 1

    def with_algorithm(self, problem_type: str) -> BuildLaunch:
        """The same build with the preferred algorithm of `problem_type` (preprocess switched to it)."""
        return replace(self, **self.alternatives[problem_type])

    @property
    def data_uri(self) -> str:
        return f"s3://{self.bucket}/{self.dataset_key}"

    @property
    def output_uri(self) -> str:
        return f"s3://{self.bucket}/{self.output_prefix.rstrip('/')}/"


@dataclass
class StepStatus:
    name: str
    status: str  # pending | running | succeeded | failed | cancelled | skipped
    started_at: datetime | None = None
    ended_at: datetime | None = None
    billable_seconds: int = 0
    instance_type: str = ""
    instance_count: int = 1
    log: str = ""
    failure_reason: str = ""
    # The definition step that ran as this step (Preprocess, Train or Tune, EvaluateTuned, CheckMetric, ...).
    definition_step: str = ""


@dataclass
class EngineStatus:
    state: str  # one of ENGINE_STATES
    steps: list[StepStatus] = field(default_factory=list)
    failure_reason: str = ""
    metrics: dict = field(default_factory=dict)
    model_package_arn: str = ""
    artifact_uri: str = ""
    data_report: dict = field(default_factory=dict)


class Engine(Protocol):
    name: str

    def start(self, launch: BuildLaunch) -> str:
        """Start the build; return the execution reference (ARN or local id)."""

    def status(self, execution_ref: str, launch: BuildLaunch) -> EngineStatus:
        """Current state of an execution started by `start`."""

    def stop(self, execution_ref: str, launch: BuildLaunch) -> None:
        """Stop the execution; idempotent."""
