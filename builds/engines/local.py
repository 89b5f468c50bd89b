"""The local engine: executes the deployed pipeline definition, each job as a limited child process.

It reads the definition `deploy_pipeline` upserted (DescribePipeline, cached
by its LastModifiedTime), passes it the same parameters the SageMaker engine
passes to StartPipelineExecution (`sagemaker.pipeline_parameters`), and runs
it with `core.aws.pipeline_runtime`. The jobs do what SageMaker's do with the
step's RoleArn (`core.aws.job_runtime`): assume it, check the image pull,
list and download the S3 inputs, run the image's entry point (the launcher
script the definition names, or `train`) in a forked child under the instance
type's CPU and memory limits (`mlaas_steps.runner.run_step`: warm children,
heartbeats, cancellation, children that die with their worker), upload the
outputs and write the log lines to CloudWatch Logs, all as that role. The
steps are reported in ListPipelineExecutionSteps' shape and converted to the
portal's steps by the function the SageMaker engine uses.

Each job gets a scratch root laid out as /opt/ml; the definition's /opt/ml
paths are mapped onto it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

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
from builds.engines.sagemaker import (
    pipeline_parameters,
    portal_failure_reason,
    portal_steps,
    registered_model_arn,
)
from core.aws import job_runtime
from core.aws import pipeline_runtime as runtime
from mlaas_steps import contract, metrics
from mlaas_steps.runner import instance_limits, run_entry_point, run_step
from mlaas_steps.steps import DEFINITION_PREPROCESS, definition_base_name, portal_step

if TYPE_CHECKING:
    from core.aws.s3 import S3Gateway

logger = logging.getLogger(__name__)

SAGEMAKER_ROOT = "/opt/ml"
_definitions: dict[str, tuple[Any, dict]] = {}  # pipeline name -> (LastModifiedTime, definition)
_definitions_lock = threading.Lock()


class PipelineNotDeployed(RuntimeError):
    pass


def deployed_definition(gateway, pipeline_name: str) -> dict:
    """The definition deploy_pipeline upserted; parsed again only when the pipeline changed."""
    modified = gateway.pipeline_last_modified(pipeline_name)
    if modified is None:
        raise PipelineNotDeployed(f"the pipeline {pipeline_name} is not deployed; run manage.py deploy_pipeline")
    with _definitions_lock:
        cached = _definitions.get(pipeline_name)
        if cached and cached[0] == modified:
            return cached[1]
    definition = runtime.definition_from_describe(gateway.describe_pipeline(pipeline_name))
    with _definitions_lock:
        _definitions[pipeline_name] = (modified, definition)
    return definition


def _billable(started: datetime | None, ended: datetime | None) -> int:
    if not started or not ended:
        return 0
    return max(1, math.ceil((ended - started).total_seconds()))


def _job_suffix(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


@dataclass
class JobRecord:
    """What the runtime keeps about a job (moto runs none): name, ARN, tags, log stream, outcome."""

    step: str
    kind: str  # ProcessingJob | TrainingJob | TuningJob
    name: str
    arn: str
    tags: dict[str, str]
    log_group: str = ""
    log_stream: str = ""
    log: str = ""
    status: str = ""
    failure_reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class _Run:
    """One build's execution: the executors for each job type, bound to the build."""

    def __init__(self, engine: LocalEngine, launch: BuildLaunch, scratch: Path, *, should_cancel, heartbeat,
                 on_data_report) -> None:
        from core.aws.clients import platform_client, platform_config

        self.engine, self.launch, self.scratch = engine, launch, scratch
        self.should_cancel, self.heartbeat, self.on_data_report = should_cancel, heartbeat, on_data_report
        self.platform = platform_config()
        self.platform_clients = {name: platform_client(name) for name in ("sts", "iam", "ecr", "logs")}
        self.execution_id = hashlib.sha256(launch.build_code.encode()).hexdigest()[:12]
        self.jobs: list[JobRecord] = []
        self.data_report: dict = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _identity(self, role_arn: str, job_name: str) -> job_runtime.JobIdentity:
        return job_runtime.JobIdentity(role_arn=role_arn, job_name=job_name, platform=self.platform,
                                       platform_clients=self.platform_clients)

    def _job_name(self, step: str, *extra: str) -> str:
        name = f"pipelines-{self.execution_id}-{step}-{_job_suffix(self.launch.build_code, step, *extra)}"
        return re.sub(r"[^A-Za-z0-9-]", "-", name)[:63]

    def _arn(self, role_arn: str, kind: str, name: str) -> str:
        partition, account = job_runtime.partition_of(role_arn), job_runtime.account_of(role_arn)
        return f"arn:{partition}:sagemaker:{self.platform.region}:{account}:{kind}/{name.lower()}"

    @staticmethod
    def _local(root: Path, path: str) -> Path:
        if path == SAGEMAKER_ROOT or path.startswith(SAGEMAKER_ROOT + "/"):
            return root / path[len(SAGEMAKER_ROOT):].lstrip("/")
        raise runtime.DefinitionError(f"local path {path!r} is outside {SAGEMAKER_ROOT}")

    @staticmethod
    def _map_argument(root: Path, value: Any) -> str:
        text = str(value)
        if text == SAGEMAKER_ROOT or text.startswith(SAGEMAKER_ROOT + "/"):
            return str(root / text[len(SAGEMAKER_ROOT):].lstrip("/"))
        return text

    @staticmethod
    def _tags(arguments: dict) -> dict[str, str]:
        return {tag["Key"]: str(tag["Value"]) for tag in arguments.get("Tags", [])}

    def _run_child(self, record: JobRecord, identity: job_runtime.JobIdentity, root: Path, argv: list[str],
                   failure_file: Path, instance_type: str, hyperparameters: dict | None = None):
        cpus, memory = instance_limits(instance_type)
        log_path = root.parent / "job.log"
        config = {"argv": argv, "failure_file": str(failure_file)}
        if hyperparameters is not None:
            config["hyperparameters"] = hyperparameters  # becomes SM_HPS, as the training toolkit sets it
        result = run_step(run_entry_point, contract.StepPaths(root), config, cpu_count=cpus, memory_bytes=memory,
                          timeout_seconds=settings.MLAAS_STEP_TIMEOUT_SECONDS, log_path=log_path,
                          should_cancel=self.should_cancel, heartbeat=self.heartbeat,
                          step_name=portal_step(record.step) or record.step, instance_type=instance_type)
        record.log = result.log
        try:
            identity.put_log_lines(record.log_group, record.log_stream, result.log.splitlines())
        except job_runtime.JobDenied as denied:
            if result.succeeded:  # a job that cannot write its logs fails, as on SageMaker
                result.status, result.failure_reason = "failed", str(denied)
        return result

    def _start(self, step: str, kind: str, name: str, arguments: dict, group: str) -> JobRecord:
        record = JobRecord(step=step, kind=kind, name=name, arn=self._arn(arguments["RoleArn"], kind_arn(kind), name),
                           tags=self._tags(arguments), log_group=group, started_at=datetime.now(UTC))
        self.jobs.append(record)
        return record

    @staticmethod
    def _finish(record: JobRecord, status: str, reason: str = "") -> runtime.StepOutcome:
        record.status, record.failure_reason, record.ended_at = status, reason, datetime.now(UTC)
        return runtime.StepOutcome(status, failure_reason=reason, metadata={record.kind: {"Arn": record.arn}})

    # -- Processing ------------------------------------------------------------------------------
    def processing(self, step: str, arguments: dict) -> runtime.StepOutcome:
        name = self._job_name(step)
        record = self._start(step, "ProcessingJob", name, arguments, job_runtime.PROCESSING_LOG_GROUP)
        root = self.scratch / name / "ml"
        identity = self._identity(arguments["RoleArn"], name)
        app = arguments["AppSpecification"]
        try:
            identity.assume()
            record.log_stream = identity.open_log_stream(record.log_group)
            identity.pull_image(app["ImageUri"])
            for item in arguments.get("ProcessingInputs", []):
                source = item["S3Input"]
                identity.download(source["S3Uri"], source.get("S3DataType", "S3Prefix"),
                                  self._local(root, source["LocalPath"]))
            outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
            for output in outputs:
                self._local(root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
            argv = [self._map_argument(root, part) for part in
                    [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]]
            instance_type = arguments["ProcessingResources"]["ClusterConfig"]["InstanceType"]
            result = self._run_child(record, identity, root, argv, root / "output" / "message", instance_type)
            if not result.succeeded:
                return self._finish(record, "Stopped" if result.status == "cancelled" else "Failed",
                                    result.failure_reason)
            for output in outputs:
                identity.upload(self._local(root, output["S3Output"]["LocalPath"]), output["S3Output"]["S3Uri"])
        except (job_runtime.JobDenied, job_runtime.JobInputError) as error:
            return self._finish(record, "Failed", str(error))
        outcome = self._finish(record, "Succeeded")
        outcome.properties = {"ProcessingJobName": name, "ProcessingJobArn": record.arn,
                              "ProcessingJobStatus": "Completed"}
        for spec in arguments.get("__PropertyFiles__", []):
            output = next(o for o in outputs if o["OutputName"] == spec["OutputName"])
            path = self._local(root, output["S3Output"]["LocalPath"]) / spec["FilePath"]
            outcome.property_files[spec["PropertyFileName"]] = contract.read_json(path) if path.exists() else {}
        if definition_base_name(step) == DEFINITION_PREPROCESS:
            report = next((self._local(root, o["S3Output"]["LocalPath"]) / "data_report.json" for o in outputs
                           if o["OutputName"] == "report"), None)
            if report is not None and report.exists():
                self.data_report = contract.read_json(report)
                if self.on_data_report:
                    self.on_data_report(self.data_report)  # visible while training runs
        shutil.rmtree(root.parent, ignore_errors=True)
        return outcome

    # -- Training --------------------------------------------------------------------------------
    def training(self, step: str, arguments: dict) -> runtime.StepOutcome:
        name = self._job_name(step)
        record = self._start(step, "TrainingJob", name, arguments, job_runtime.TRAINING_LOG_GROUP)
        status, reason, artifacts = self._training_job(record, arguments, arguments.get("HyperParameters", {}))
        outcome = self._finish(record, status, reason)
        outcome.properties = {"TrainingJobName": name, "TrainingJobArn": record.arn,
                              "ModelArtifacts": {"S3ModelArtifacts": artifacts},
                              "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in record.metrics.items()]}
        return outcome

    def _training_job(self, record: JobRecord, arguments: dict, hyperparameters: dict) -> tuple[str, str, str]:
        """Run one training job; (status, failure reason, model artifact URI)."""
        root = self.scratch / record.name / "ml"
        identity = self._identity(arguments["RoleArn"], record.name)
        spec = arguments["AlgorithmSpecification"]
        hyperparameters = {key: str(value) for key, value in hyperparameters.items()}
        try:
            identity.assume()
            record.log_stream = identity.open_log_stream(record.log_group)
            identity.pull_image(spec["TrainingImage"])
            for channel in arguments.get("InputDataConfig", []):
                source = channel["DataSource"]["S3DataSource"]
                identity.download(source["S3Uri"], source.get("S3DataType", "S3Prefix"),
                                  root / "input" / "data" / channel["ChannelName"])
            contract.write_json(root / "input" / "config" / "hyperparameters.json", hyperparameters)
            instance_type = arguments["ResourceConfig"]["InstanceType"]
            result = self._run_child(record, identity, root, ["train"], root / "output" / "failure", instance_type,
                                     hyperparameters=hyperparameters)
            for definition in spec.get("MetricDefinitions", []):
                found = re.findall(definition["Regex"], result.log)
                if found:
                    record.metrics[definition["Name"]] = float(found[-1])
            if not result.succeeded:
                return ("Stopped" if result.status == "cancelled" else "Failed"), result.failure_reason, ""
            output_path = arguments["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            tarball = contract.make_model_tarball(root / "model", root.parent / "output" / "model.tar.gz")
            identity.upload(tarball.parent, f"{output_path}/{record.name}/output")
        except (job_runtime.JobDenied, job_runtime.JobInputError) as error:
            return "Failed", str(error), ""
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)
        return "Succeeded", "", f"{output_path}/{record.name}/output/model.tar.gz"

    # -- Tuning ----------------------------------------------------------------------------------
    def tuning(self, step: str, arguments: dict) -> runtime.StepOutcome:
        config = arguments["HyperParameterTuningJobConfig"]
        template = arguments["TrainingJobDefinition"]
        tuning_name = f"tune-{self.execution_id}-{_job_suffix(self.launch.build_code, step)[:6]}"[:32]
        record = JobRecord(step=step, kind="TuningJob", name=tuning_name,
                           arn=self._arn(template["RoleArn"], "hyper-parameter-tuning-job", tuning_name),
                           tags=self._tags(arguments), started_at=datetime.now(UTC))
        self.jobs.append(record)
        objective = config["HyperParameterTuningJobObjective"]
        maximize = objective.get("Type", "Maximize") == "Maximize"
        count = max(1, int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"]))
        rng = _seeded_random(self.launch.build_code)
        best: tuple[float, JobRecord, str] | None = None
        reasons = []
        for number in range(1, count + 1):
            name = f"{tuning_name}-{number:03d}-{_job_suffix(tuning_name, str(number))}"[:63]
            job = self._start(step, "TrainingJob", name, {**template, "Tags": arguments.get("Tags", [])},
                              job_runtime.TRAINING_LOG_GROUP)
            point = _draw(config.get("ParameterRanges", {}), rng)
            status, reason, artifacts = self._training_job(job, template,
                                                           {**template.get("StaticHyperParameters", {}), **point})
            self._finish(job, status, reason)
            if status == "Stopped":
                return self._finish(record, "Stopped", reason)
            value = job.metrics.get(objective["MetricName"])
            if status != "Succeeded" or value is None:
                reasons.append(reason or f"training job {name} printed no {objective['MetricName']}")
                continue
            if best is None or (value > best[0] if maximize else value < best[0]):
                best = (value, job, artifacts)
        if best is None:
            return self._finish(record, "Failed", f"every training job of the tuning job failed: {reasons[0]}")
        value, job, artifacts = best
        outcome = self._finish(record, "Succeeded")
        outcome.properties = {"HyperParameterTuningJobName": tuning_name, "BestTrainingJob": {
            "TrainingJobName": job.name, "TrainingJobArn": job.arn, "TrainingJobStatus": "Completed",
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": objective["MetricName"], "Value": value}}}
        return outcome

    # -- RegisterModel ---------------------------------------------------------------------------
    def register_model(self, step: str, arguments: dict) -> runtime.StepOutcome:
        from core.aws import gateways
        from core.aws.errors import AwsError

        container = arguments["InferenceSpecification"]["Containers"][0]
        statistics = arguments.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
        metrics = self.engine._metrics_seen
        try:
            arn = gateways.platform_sagemaker().create_model_package(
                group=arguments["ModelPackageGroupName"], model_data_url=container["ModelDataUrl"], metrics=metrics,
                image_uri=container["Image"], description=arguments.get("ModelPackageDescription", ""),
                customer_metadata={**arguments.get("CustomerMetadataProperties", {}),
                                   "tenant": self.launch.tenant_slug, "algorithm_slug": self.launch.algorithm_slug,
                                   "target": self.launch.target[:200]},
                metrics_s3_uri=statistics.get("S3Uri", ""))
        except AwsError as error:
            return runtime.StepOutcome("Failed", failure_reason=str(error))
        return runtime.StepOutcome("Succeeded", metadata={"RegisterModel": {"Arn": arn}},
                                   properties={"ModelPackageArn": arn})


def metric_passes(metric: str, value: float, minimum: float) -> bool:
    """Whether a metric value meets a plan's minimum (or maximum, for lower-is-better metrics)."""
    known = metrics.get_metric(metric)
    if known is None:
        raise KeyError(f"unknown objective metric `{metric}`")
    return known.passes(value, minimum)


def kind_arn(kind: str) -> str:
    return {"ProcessingJob": "processing-job", "TrainingJob": "training-job"}[kind]


def _seeded_random(seed_text: str):
    import random

    return random.Random(int(hashlib.sha256(seed_text.encode()).hexdigest()[:16], 16))


def _draw(ranges: dict, rng) -> dict[str, str]:
    """One point in the tuner's ranges (random search; SageMaker's Bayesian strategy picks its own)."""
    point: dict[str, str] = {}
    for spec in ranges.get("ContinuousParameterRanges", []):
        low, high = float(spec["MinValue"]), float(spec["MaxValue"])
        point[spec["Name"]] = repr(low + (high - low) * rng.random())
    for spec in ranges.get("IntegerParameterRanges", []):
        point[spec["Name"]] = str(rng.randint(int(spec["MinValue"]), int(spec["MaxValue"])))
    for spec in ranges.get("CategoricalParameterRanges", []):
        point[spec["Name"]] = str(rng.choice(spec["Values"]))
    return point


class LocalEngine:
    name = "local"

    def __init__(self, scratch_root: str | Path | None = None, *,
                 status_reader: Callable[[BuildLaunch], EngineStatus] | None = None,
                 pipeline_name: str | None = None) -> None:
        self.scratch_root = Path(scratch_root or settings.MLAAS_SCRATCH_DIR)
        self.status_reader = status_reader
        self.pipeline_name = pipeline_name or settings.MLAAS_PIPELINE_NAME
        self._metrics_seen: dict[str, float] = {}
        self.jobs: list[JobRecord] = []  # the last run's jobs (names, ARNs, tags, log streams)

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
        """Execute the deployed definition for this build. (`tenant_s3` is no longer used: every job
        acts as the step's RoleArn, the tenant role, which it assumes itself.)"""
        from core.aws import gateways

        report = on_progress or (lambda steps: None)
        scratch = self.scratch_root / launch.build_code
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        self._metrics_seen = {}
        try:
            try:
                definition = deployed_definition(gateways.platform_sagemaker(), self.pipeline_name)
                parameters = pipeline_parameters(launch, tenant_tag_key=settings.MLAAS_TAG_KEY,
                                                 plan_tag_key=settings.MLAAS_PLAN_TAG_KEY)
            except (PipelineNotDeployed, ValueError) as error:
                return self._not_started(launch, str(error))
            build_run = _Run(self, launch, scratch, should_cancel=should_cancel, heartbeat=heartbeat,
                             on_data_report=on_data_report)
            self.jobs = build_run.jobs
            executors = {"Processing": build_run.processing, "Training": build_run.training,
                         "Tuning": build_run.tuning, "RegisterModel": build_run.register_model}

            def on_change(execution: runtime.Execution) -> None:
                self._collect_metrics(execution)
                report(self._portal(execution, launch, build_run, final=False).steps)

            try:
                execution = runtime.execute(definition, parameters, executors, on_change=on_change,
                                            should_stop=should_cancel)
            except runtime.DefinitionError as error:
                return self._not_started(launch, f"the deployed pipeline cannot run: {error}")
            status = self._portal(execution, launch, build_run, final=True)
            report(status.steps)
            return status
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _collect_metrics(self, execution: runtime.Execution) -> None:
        for files in (execution.scope.property_files.values() if execution.scope else []):
            for document in files.values():
                scores = document.get("metrics") if isinstance(document, dict) else None
                if isinstance(scores, dict):
                    self._metrics_seen = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}

    def _portal(self, execution: runtime.Execution, launch: BuildLaunch, build_run: _Run, *, final: bool
                ) -> EngineStatus:
        state = {runtime.SUCCEEDED: ENGINE_SUCCEEDED, runtime.FAILED: ENGINE_FAILED,
                 runtime.STOPPED: ENGINE_STOPPED}.get(execution.status, ENGINE_RUNNING)
        steps = portal_steps(execution.steps, state, launch)
        for step in steps.values():  # billed per started second, like the jobs' BillableTimeInSeconds
            if step.instance_count and step.started_at and step.ended_at:
                step.billable_seconds = _billable(step.started_at, step.ended_at)
        logs: dict[str, list[str]] = {}
        for job in build_run.jobs:
            ours = portal_step(job.step)
            if ours and job.log:
                logs.setdefault(ours, []).append(
                    f"{job.kind} {job.name} (CloudWatch Logs {job.log_group} {job.log_stream})\n{job.log}")
        for ours, parts in logs.items():
            steps[ours].log = "\n\n".join(parts)
        status = EngineStatus(state=state, steps=[steps[name] for name in STEP_NAMES])
        status.data_report = build_run.data_report
        status.metrics = dict(self._metrics_seen)
        if final and state == ENGINE_FAILED:
            status.failure_reason = portal_failure_reason(execution.failure_reason, steps)
        if final and state == ENGINE_STOPPED:
            status.failure_reason = "cancelled"
        status.model_package_arn = registered_model_arn(execution.steps)
        if status.model_package_arn:  # the artifact is the model the registered package names
            status.artifact_uri = self._registered_artifact(execution)
        return status

    @staticmethod
    def _registered_artifact(execution: runtime.Execution) -> str:
        for properties in (execution.scope.properties.values() if execution.scope else []):
            if "ModelPackageArn" in properties:
                return properties["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        return ""

    def _not_started(self, launch: BuildLaunch, reason: str) -> EngineStatus:
        steps = [StepStatus(name, "skipped") for name in STEP_NAMES]
        return EngineStatus(state=ENGINE_FAILED, steps=steps, failure_reason=f"The build could not start: {reason}")
