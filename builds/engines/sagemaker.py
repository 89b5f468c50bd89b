"""The SageMaker engine: one execution of the shared pipeline per build.

Talks to AWS only through `SageMakerGateway` (never the sagemaker SDK). The
pipeline, its parameters and step names are described in
`core.aws.pipeline_definition`.

Billable seconds (per instance; metering multiplies by the instance count):
while the execution runs, the step's wall time (end - start) from the step
listing, so running costs show at once. When the execution has finished, the
figures AWS bills replace them, read once per job: a training job's
`BillableTimeInSeconds` (DescribeTrainingJob; managed spot included), a tuning
step's sum of it over its training jobs, a processing job's
ProcessingEndTime - ProcessingStartTime (DescribeProcessingJob reports no
billable time). A job AWS no longer describes keeps the wall time. The
finished build is metered with these (billing's metering_run re-meters every
step of a build it has not charged yet); the daily Cost Explorer sync still
shows the actual cost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from builds.engines.base import (
    ENGINE_FAILED,
    ENGINE_RUNNING,
    ENGINE_STOPPED,
    ENGINE_SUCCEEDED,
    STEP_NAMES,
    BuildLaunch,
    EngineStatus,
    StepStatus,
)
from core.aws import pipeline_definition as pd
from core.aws.errors import AwsAccessDenied, AwsNotFound, AwsValidationError
from mlaas_steps import metrics
from mlaas_steps import steps as step_names

if TYPE_CHECKING:
    from core.aws.sagemaker import SageMakerGateway

logger = logging.getLogger(__name__)

MAX_PARAMETER_LENGTH = 1024  # StartPipelineExecution limit per value
MAX_FAILURE_REASON_LENGTH = 1024  # what SageMaker keeps of a job's FailureReason

_EXECUTION_STATES = {
    "Executing": ENGINE_RUNNING,
    "Succeeded": ENGINE_SUCCEEDED,
    "Failed": ENGINE_FAILED,
    "Stopping": ENGINE_STOPPED,
    "Stopped": ENGINE_STOPPED,
}
_STEP_STATES = {
    "Starting": "running",
    "Executing": "running",
    "Stopping": "cancelled",
    "Stopped": "cancelled",
    "Failed": "failed",
    "Succeeded": "succeeded",
}
_KNOWN_FAILURES = (
    ("capacity", "AWS had no free capacity for the plan's instance type; the build can be retried later."),
    ("resourcelimitexceeded", "the account's instance quota was reached; the build can be retried later."),
    ("maxruntimeinseconds", "it ran longer than the time limit and was stopped."),
    ("accessdenied", "access to the build's data was refused."),
    ("not authorized", "access to the build's data was refused."),
)
_ARN = re.compile(r"arn:aws[\w-]*:[^\s,;'\"()]+")
_ACCOUNT_ID = re.compile(r"\b\d{12}\b")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def client_token(pipeline_name: str, build_code: str, attempt: int = 1) -> str:
    """Same build and claim, same token: a retried start never runs the pipeline twice.

    The attempt (the build's claim number) is part of it: a build requeued
    after AWS refused to start it is a new claim and must get a new execution.
    """
    return hashlib.sha256(f"{pipeline_name}/{build_code}/{attempt}".encode()).hexdigest()


def display_name(launch: BuildLaunch) -> str:
    """`<tenant>-<build code>-<attempt>`: what finds a start again whose answer was lost."""
    suffix = f"-{launch.attempt}"
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{launch.tenant_slug}-{launch.build_code}").strip("-")
    return (name[:82 - len(suffix)].rstrip("-") or "build") + suffix


def pipeline_parameters(launch: BuildLaunch, *, tenant_tag_key: str = "mlaas:tenant",
                        plan_tag_key: str = "mlaas:plan") -> dict[str, str]:
    """Every tenant-specific value of a build, as pipeline parameters."""
    min_score = launch.min_metric if _higher_is_better(launch.objective_metric) else -launch.min_metric
    tuning = launch.tuning_enabled and launch.max_tuning_jobs > 0
    if tuning and len(launch.tuning_ranges) > len(pd.TUNED_HYPERPARAMETERS):
        # train.py maps u0..u3 onto the first four ranges by name; the rest keep their base value.
        logger.warning("build %s: the SageMaker tuner searches %d of the %d tuning ranges of %s",
                       launch.build_code, len(pd.TUNED_HYPERPARAMETERS), len(launch.tuning_ranges),
                       launch.algorithm_slug)
    params = {
        "BuildCode": launch.build_code,
        "InputDataUri": launch.data_uri,
        "OutputUri": launch.output_uri,
        "TenantRoleArn": launch.role_arn,
        "TenantTag": launch.tags.get(tenant_tag_key, launch.tenant_slug),
        "PlanTag": launch.tags.get(plan_tag_key, launch.plan_slug),
        "ModelPackageGroupName": launch.model_package_group,
        "TrainingImageUri": launch.training_image_uri,
        "TargetColumn": launch.target,
        "ProblemType": launch.problem_type,
        "Algorithm": launch.entry_point,
        "AlgorithmChoice": json.dumps({"algorithm": launch.algorithm_slug,
                                       "algorithm_explicit": launch.algorithm_explicit,
                                       "fitting_algorithms": launch.fitting_algorithms},
                                      sort_keys=True, separators=(",", ":")),
        "ObjectiveMetric": launch.objective_metric,
        "MinMetric": repr(float(min_score)),
        "Hyperparameters": json.dumps(launch.hyperparameters, sort_keys=True, separators=(",", ":")),
        "TuningRanges": json.dumps(launch.tuning_ranges, sort_keys=True, separators=(",", ":")),
        "TuningEnabled": "true" if tuning else "false",
        "MaxTuningJobs": str(max(1, launch.max_tuning_jobs)),
        "ProcessingInstanceType": launch.processing_instance_type,
        "ProcessingInstanceCount": str(launch.processing_instance_count),
        "TrainingInstanceType": launch.training_instance_type,
        "TrainingInstanceCount": str(launch.training_instance_count),
    }
    too_long = sorted(name for name, value in params.items() if len(value) > MAX_PARAMETER_LENGTH)
    if too_long:
        raise ValueError(f"pipeline parameters longer than {MAX_PARAMETER_LENGTH} characters: {too_long}")
    return params


def _higher_is_better(metric: str) -> bool:
    # The pipeline compares a score (higher is better), so a lower-is-better minimum is passed negated.
    return metrics.higher_is_better(metric)


_DENIED_ACTION = re.compile(r"not authorized to perform:?\s*([a-z0-9-]+:[A-Za-z0-9*]+)")


def readable_failure(reason: str) -> str:
    """A sentence fit for a tenant: no ARNs or account ids, known causes in words.

    A refusal by IAM keeps the action it names (AWS's "not authorized to
    perform: ecr:BatchGetImage"): the vendor fixes the role by that name."""
    lowered = reason.lower()
    denied = _DENIED_ACTION.search(reason)
    if denied:
        return f"access was refused: the tenant role may not perform {denied.group(1)}."
    for needle, sentence in _KNOWN_FAILURES:
        if needle in lowered:
            return sentence
    text = _ACCOUNT_ID.sub("<account>", _ARN.sub("<resource>", reason)).strip().splitlines()
    first = text[0].strip() if text else ""
    if not first:
        return "no reason was given."
    first = first[:MAX_FAILURE_REASON_LENGTH]
    return first if first.endswith(".") else f"{first}."


class SageMakerEngine:
    name = "sagemaker"

    def __init__(
        self,
        gateway_factory: Callable[[], SageMakerGateway],
        pipeline_name: str = pd.DEFAULT_PIPELINE_NAME,
        *,
        tenant_tag_key: str = "mlaas:tenant",
        plan_tag_key: str = "mlaas:plan",
        report_reader: Callable[[str], dict] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """`report_reader(s3_uri) -> dict`, if given, reads the evaluation and
        data reports the steps write under the build's output prefix."""
        self._gateway_factory = gateway_factory
        self.pipeline_name = pipeline_name
        self._tenant_tag_key = tenant_tag_key
        self._plan_tag_key = plan_tag_key
        self._report_reader = report_reader
        self._clock = clock

    def start(self, launch: BuildLaunch) -> str:
        parameters = pipeline_parameters(launch, tenant_tag_key=self._tenant_tag_key,
                                         plan_tag_key=self._plan_tag_key)
        return self._gateway_factory().start_execution(
            self.pipeline_name, parameters, display_name(launch),
            client_token(self.pipeline_name, launch.build_code, launch.attempt),
        )

    def recover(self, launch: BuildLaunch, *, claimed_at: datetime | None = None) -> tuple[str, bool]:
        """The execution of a start whose worker died: (ARN, adopted).

        Adopts the execution the lost start made (found by display name and
        BuildCode), else starts it now with the same client request token, so
        on AWS even a start still in flight cannot make a second one.
        """
        created_after = claimed_at - timedelta(minutes=5) if claimed_at else None
        found = self._gateway_factory().find_execution(self.pipeline_name, display_name(launch),
                                                       build_code=launch.build_code, created_after=created_after)
        if found:
            return found, True
        return self.start(launch), False

    def status(self, execution_ref: str, launch: BuildLaunch) -> EngineStatus:
        gateway = self._gateway_factory()
        execution = gateway.describe_execution(execution_ref)
        state = _EXECUTION_STATES.get(execution.get("PipelineExecutionStatus", ""), ENGINE_RUNNING)
        remote_steps = gateway.list_execution_steps(execution_ref)
        steps = self._steps(remote_steps, state, launch)
        result = EngineStatus(state=state, steps=[steps[name] for name in STEP_NAMES])
        result.model_package_arn = registered_model_arn(remote_steps)
        if state == ENGINE_FAILED:
            result.failure_reason = self._failure_reason(execution, steps)
        if state != ENGINE_RUNNING:
            self._billed_seconds(remote_steps, steps, gateway)
        if state in (ENGINE_SUCCEEDED, ENGINE_FAILED):
            self._collect_outputs(result, steps, gateway, launch)
        return result

    def _billed_seconds(self, remote_steps: list[dict], steps: dict[str, StepStatus],
                        gateway: SageMakerGateway) -> None:
        """Replace the wall time of each compute step by what AWS bills for its job."""
        for remote in remote_steps:
            ours = step_names.portal_step(_base_name(remote.get("StepName", "")))
            step = steps.get(ours) if ours else None
            if step is None or not step.instance_count or step.ended_at is None:
                continue
            kind, name = _job(remote.get("Metadata", {}))
            if not name:
                continue
            try:
                seconds = _job_billable_seconds(gateway, kind, name)
            except (AwsNotFound, AwsAccessDenied) as exc:
                logger.warning("step %s: job %s not described (%s); billing its wall time", ours, name, exc)
                continue
            if seconds is not None:
                step.billable_seconds = seconds

    def stop(self, execution_ref: str, launch: BuildLaunch) -> None:
        gateway = self._gateway_factory()
        if gateway.describe_execution(execution_ref).get("PipelineExecutionStatus") != "Executing":
            return
        try:
            gateway.stop_execution(execution_ref, client_token=client_token("stop", execution_ref))
        except (AwsValidationError, AwsNotFound):
            # It finished or was stopped between the two calls: that is fine.
            if gateway.describe_execution(execution_ref).get("PipelineExecutionStatus") == "Executing":
                raise

    def _steps(self, remote_steps: list[dict], state: str, launch: BuildLaunch) -> dict[str, StepStatus]:
        return portal_steps(remote_steps, state, launch, clock=self._clock)

    def _failure_reason(self, execution: dict, steps: dict[str, StepStatus]) -> str:
        return portal_failure_reason(execution.get("FailureReason") or "", steps)

    def _collect_outputs(self, result: EngineStatus, steps: dict[str, StepStatus],
                         gateway: SageMakerGateway, launch: BuildLaunch) -> None:
        if result.model_package_arn:
            package = gateway.describe_model_package(result.model_package_arn)
            containers = package.get("InferenceSpecification", {}).get("Containers", [])
            result.artifact_uri = containers[0].get("ModelDataUrl", "") if containers else ""
        if self._report_reader is None:
            return
        if steps[step_names.EVALUATE].status == "succeeded":
            report = self._report_reader(evaluation_report_uri(launch))
            result.metrics = report.get("metrics", report)
        if steps[step_names.PREPROCESS].status == "succeeded":
            result.data_report = self._report_reader(data_report_uri(launch))


def portal_steps(remote_steps: list[dict], state: str, launch: BuildLaunch, *,
                 clock: Callable[[], datetime] = _utcnow) -> dict[str, StepStatus]:
    """ListPipelineExecutionSteps (SageMaker's, or the local runtime's) as the portal's steps.

    The one conversion both engines use: definition step names map to portal
    steps (mlaas_steps.steps), routing steps are dropped, the Fail step
    overrides the condition it follows."""
    not_run = "pending" if state == ENGINE_RUNNING else "skipped"  # stopped or ended: the rest never ran
    steps = {name: StepStatus(name=name, status=not_run) for name in STEP_NAMES}
    # The Fail step overrides the condition step it follows, whatever the listing order.
    for remote in sorted(remote_steps,
                         key=lambda s: _base_name(s.get("StepName", "")) == step_names.DEFINITION_FAIL):
        base = _base_name(remote.get("StepName", ""))
        ours = step_names.portal_step(base)
        if ours is None:  # UseTuning: routing, not work a tenant sees
            continue
        step = steps[ours]
        step.definition_step = remote.get("StepName", "")
        if base == step_names.DEFINITION_FAIL:
            step.status = "failed"
            step.failure_reason = _below_minimum(launch)
            step.ended_at = remote.get("EndTime") or step.ended_at
            continue
        step.status = _STEP_STATES.get(remote.get("StepStatus", ""), "running")
        step.started_at = remote.get("StartTime")
        step.ended_at = remote.get("EndTime")
        step.failure_reason = readable_failure(remote["FailureReason"]) if remote.get("FailureReason") else ""
        step.instance_type, step.instance_count = _instances(ours, launch)
        if step.instance_count and step.started_at:
            elapsed = (step.ended_at or clock()) - step.started_at
            step.billable_seconds = max(0, int(elapsed.total_seconds()))
        step.log = _job_name(remote.get("Metadata", {}))
    return steps


def portal_failure_reason(execution_reason: str, steps: dict[str, StepStatus]) -> str:
    """The build's failure reason: the first failed step's, else the execution's."""
    failed = [steps[name] for name in STEP_NAMES if steps[name].status == "failed"]
    if failed and failed[0].name == step_names.CONDITION:
        return failed[0].failure_reason
    if failed:
        detail = failed[0].failure_reason or "no reason was given."
        return f"The {step_names.STEP_LABELS[failed[0].name]} step failed: {detail}"
    reason = execution_reason
    return f"The build failed: {readable_failure(reason)}" if reason else "The build failed for an unknown reason."


def registered_model_arn(remote_steps: list[dict]) -> str:
    """The model package the Register step created, "" if none."""
    return next((s.get("Metadata", {}).get("RegisterModel", {}).get("Arn", "") for s in remote_steps
                 if _base_name(s.get("StepName", "")) == step_names.DEFINITION_REGISTER), "")


def evaluation_report_uri(launch: BuildLaunch) -> str:
    return f"{launch.output_uri}{pd.EVALUATION_REPORT_PATH}"


def data_report_uri(launch: BuildLaunch) -> str:
    return f"{launch.output_uri}{pd.DATA_REPORT_PATH}"


def _base_name(step_name: str) -> str:
    return step_names.definition_base_name(step_name)


def _instances(step: str, launch: BuildLaunch) -> tuple[str, int]:
    if step in step_names.PROCESSING_STEPS:
        return launch.processing_instance_type, launch.processing_instance_count
    if step == step_names.TRAIN:
        return launch.training_instance_type, launch.training_instance_count
    return "", 0


def _job(metadata: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of the job a step ran: ProcessingJob, TrainingJob or TuningJob; ("", "") for none."""
    for kind in ("ProcessingJob", "TrainingJob", "TuningJob"):
        arn = metadata.get(kind, {}).get("Arn")
        if arn:
            return kind, arn.rsplit("/", 1)[-1]
    return "", ""


def _job_billable_seconds(gateway: SageMakerGateway, kind: str, name: str) -> int | None:
    if kind == "TrainingJob":
        return gateway.describe_training_job(name).get("BillableTimeInSeconds")
    if kind == "TuningJob":
        billed = [gateway.describe_training_job(job).get("BillableTimeInSeconds") or 0
                  for job in gateway.tuning_training_jobs(name)]
        return sum(billed)
    job = gateway.describe_processing_job(name)
    started, ended = job.get("ProcessingStartTime"), job.get("ProcessingEndTime")
    if started is None or ended is None:
        return None
    return max(0, int((ended - started).total_seconds()))


def _job_name(metadata: dict[str, Any]) -> str:
    """"TrainingJob <name>": enough to find the job and its logs, no account id."""
    kind, name = _job(metadata)
    return f"{kind} {name}" if name else ""


def _below_minimum(launch: BuildLaunch) -> str:
    bound = "at least" if _higher_is_better(launch.objective_metric) else "at most"
    return (f"The model's {launch.objective_metric} did not meet the plan's minimum "
            f"({bound} {launch.min_metric:g}), so it was not registered.")
