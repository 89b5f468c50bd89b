"""The one shared SageMaker pipeline that runs every tenant's build.

Built at deploy time with the sagemaker SDK 3.x and upserted by
`manage.py deploy_pipeline`. The SDK is imported only inside the functions
below: it costs ~2.5 s and ~245 MB and the web process must never load it.

Every tenant-specific value is a pipeline parameter (`PARAMETER_NAMES`), so one
definition serves all tenants and a build is a StartPipelineExecution call:

    Preprocess ─► UseTuning (TuningEnabled == true?)
                    ├─ yes: Tune  ─► EvaluateTuned ─► CheckMetricTuned ─► RegisterTuned | MetricBelowMinimumTuned
                    └─ no:  Train ─► Evaluate      ─► CheckMetric      ─► Register      | MetricBelowMinimum

Evaluate/CheckMetric/Register exist once per branch: a single Evaluate fed by
"Train or Tune" would reference the properties of a step that never ran (the
definition language has no coalesce). Only one branch executes, so a build
reports one step of each kind. (Alternative considered: always Tune, with
MaxTuningJobs=1 for plans without tuning; rejected because it runs a tuning
job for every build and muddles what the tenant is billed for.)

Contract with the step code baked into the TrainingImageUri image (our own
`mlaas_steps` package); all paths below OutputUri belong to the build:
- processing steps run `python3 <launcher>.py <args>`; the launcher (uploaded
  once per content hash under `s3://<default bucket>/<pipeline>/code/`) runs
  `mlaas_steps.preprocess` / `mlaas_steps.evaluate` with that argv.
- preprocess: `--input /opt/ml/processing/input/data` (the uploaded CSV)
  `--output /opt/ml/processing/output --target T --problem-type P
  --algorithm-choice JSON` (the build's algorithm, whether the tenant chose
  it, the fitting algorithms per problem type); writes
  `train/`, `validation/`, `test/` and `report/data_report.json` under the
  output dir (uploaded to `OutputUri + preprocess/<name>`).
- training follows the SageMaker container convention (`train` on PATH); it
  gets the channels `train` and `validation` and the hyperparameters algorithm,
  target, problem_type, objective_metric, hyperparameters (JSON) and
  tuning_ranges (JSON). Under tuning it also gets `u0`..`u3` in [0, 1]: the
  tuner searches this unit cube and train.py maps u<i> onto the i-th range of
  sorted(tuning_ranges), so per-algorithm ranges need no per-tenant definition.
  It must print `objective_score=<float>` (higher is better) for the tuner.
  Models land in `OutputUri + model/<job>/output/model.tar.gz`.
- evaluate: `--model /opt/ml/processing/input/model` (model.tar.gz) `--test
  /opt/ml/processing/input/test --output /opt/ml/processing/output/evaluation
  --target T --problem-type P --objective-metric M`; writes evaluation.json
  with `metrics` and `objective.score`, higher is better (the metric, negated
  for lower-is-better metrics such as rmse). MinMetric is on the same scale,
  so the condition is always `score >= MinMetric`.

Two values the SDK builders will not take as pipeline variables are built with
placeholders and rewritten afterwards: every `RoleArn` becomes
`{"Get": "Parameters.TenantRoleArn"}` (jobs run as the tenant's role, so IAM
confines them to the tenant's data) and the tuner's `MaxNumberOfTrainingJobs`
becomes `{"Get": "Parameters.MaxTuningJobs"}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from core.aws import arns
from mlaas_steps import steps as step_names

DEFAULT_PIPELINE_NAME = "mlaas-shared-build-pipeline"

# Step names as they appear in ListPipelineExecutionSteps: defined, with their
# mapping to the portal's steps, in mlaas_steps.steps.
STEP_PREPROCESS = step_names.DEFINITION_PREPROCESS
STEP_USE_TUNING = step_names.DEFINITION_USE_TUNING
STEP_TRAIN = step_names.DEFINITION_TRAIN
STEP_TUNE = step_names.DEFINITION_TUNE
STEP_EVALUATE = step_names.DEFINITION_EVALUATE
STEP_CHECK_METRIC = step_names.DEFINITION_CHECK_METRIC
STEP_REGISTER = step_names.DEFINITION_REGISTER
STEP_FAIL = step_names.DEFINITION_FAIL
TUNED_SUFFIX = step_names.TUNED_SUFFIX

# (name, type, default). No default means StartPipelineExecution must pass it.
PARAMETERS: tuple[tuple[str, str, Any], ...] = (
    ("BuildCode", "String", None),
    ("InputDataUri", "String", None),
    ("OutputUri", "String", None),  # s3://bucket/prefix/ (trailing slash)
    ("TenantRoleArn", "String", None),
    ("TenantTag", "String", None),
    ("PlanTag", "String", None),
    ("ModelPackageGroupName", "String", None),
    ("TrainingImageUri", "String", None),
    ("TargetColumn", "String", None),
    ("ProblemType", "String", None),
    ("Algorithm", "String", None),
    # Preprocess's algorithm check: {"algorithm": slug, "algorithm_explicit": bool, "fitting_algorithms":
    # {problem type: [slugs]}}, so a target of the other kind fails naming the algorithms that fit it.
    ("AlgorithmChoice", "String", "{}"),
    ("ObjectiveMetric", "String", None),
    ("MinMetric", "Float", None),
    ("Hyperparameters", "String", "{}"),
    ("TuningRanges", "String", "{}"),
    ("TuningEnabled", "Boolean", False),
    ("MaxTuningJobs", "Integer", 1),
    ("ProcessingInstanceType", "String", None),
    ("ProcessingInstanceCount", "Integer", None),
    ("TrainingInstanceType", "String", None),
    ("TrainingInstanceCount", "Integer", None),
)
PARAMETER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in PARAMETERS)
ROLE_PARAMETER = "TenantRoleArn"
MAX_JOBS_PARAMETER = "MaxTuningJobs"
TUNED_HYPERPARAMETERS = ("u0", "u1", "u2", "u3")
OBJECTIVE_LOG_METRIC = "objective_score"
# Reports the steps write, relative to OutputUri.
EVALUATION_REPORT_PATH = "evaluation/evaluation.json"
DATA_REPORT_PATH = "preprocess/report/data_report.json"

SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# The SDK builders insist on a literal role and tuning budget; both are
# replaced by parameter references in `finalize_definition`.
# (Never reaches AWS, so its partition does not matter.)
_PLACEHOLDER_ROLE = arns.iam_role(arns.DEFAULT_PARTITION, "000000000000", "mlaas-placeholder-tenant-role")
_PLACEHOLDER_MAX_JOBS = 7
_MAX_RUNTIME_SECONDS = 3600
_PROCESSING = "/opt/ml/processing"
_LAUNCHER = (
    '"""Runs the portal\'s {module} baked into the step image, with this argv."""\n'
    "import runpy\n\n"
    'runpy.run_module("{module}", run_name="__main__", alter_sys=True)\n'
)


def code_bucket_name(*, resource_prefix: str, account_id: str, region: str) -> str:
    """Where the SDK uploads the step launchers (`default_bucket`); global names need account and region."""
    return f"{resource_prefix}-pipeline-code-{account_id}-{region}"


def code_prefix(pipeline_name: str) -> str:
    """The launchers' key prefix in the code bucket (the SDK's `<pipeline>/code/<content hash>/`)."""
    return f"{pipeline_name}/code/"


class AwsCredentials(Protocol):
    """AwsConfig and TemporaryCredentials both fit; empty key = default chain."""

    access_key_id: str
    secret_access_key: str
    session_token: str


def build_pipeline_definition(
    *,
    pipeline_name: str,
    region: str,
    endpoint_url: str | None,
    credentials: AwsCredentials | None,
    default_bucket: str,
    tenant_tag_key: str = "mlaas:tenant",
    plan_tag_key: str = "mlaas:plan",
) -> dict:
    """Build the shared pipeline definition (JSON as a dict).

    Calls S3 in `default_bucket` (creates it if missing, uploads the two
    launcher scripts). `endpoint_url` points the SDK at the emulator; None
    means AWS (or an in-process mock). Process environment is changed while
    building and restored afterwards: call from a command, not a web thread.
    """
    with _sdk_environment(region=region, endpoint_url=endpoint_url) as workdir:
        session = _pipeline_session(region, endpoint_url, credentials, default_bucket)
        pipeline = _pipeline(pipeline_name, session, workdir, tenant_tag_key, plan_tag_key)
        raw = json.loads(pipeline.definition())
    return finalize_definition(raw)


def finalize_definition(raw: dict) -> dict:
    """Put the parameters the SDK refused back in; drop null top-level keys."""
    definition = {key: value for key, value in raw.items() if value is not None}
    steps = _replace_key(definition["Steps"], "RoleArn", {"Get": f"Parameters.{ROLE_PARAMETER}"})
    steps = _replace_key(steps, "MaxNumberOfTrainingJobs", {"Get": f"Parameters.{MAX_JOBS_PARAMETER}"})
    definition["Steps"] = steps
    text = json.dumps(definition)
    if _PLACEHOLDER_ROLE in text:
        raise RuntimeError("placeholder role left in the pipeline definition outside a RoleArn field")
    return definition


def iter_steps(definition: dict) -> Iterator[dict]:
    """Every step, including those nested in condition branches."""
    pending = list(definition.get("Steps", []))
    while pending:
        step = pending.pop(0)
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments", {})
            pending.extend(arguments.get("IfSteps", []) + arguments.get("ElseSteps", []))


def _replace_key(node: Any, key: str, value: Any) -> Any:
    if isinstance(node, dict):
        return {k: (value if k == key else _replace_key(v, key, value)) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_key(item, key, value) for item in node]
    return node


@contextlib.contextmanager
def _sdk_environment(*, region: str, endpoint_url: str | None) -> Iterator[Path]:
    """Region, endpoint, no role validation, no telemetry: only while building.

    AWS_ENDPOINT_URL reaches the clients the SDK makes on its own (some at
    import time), not only the ones we hand it.
    """
    with tempfile.TemporaryDirectory(prefix="mlaas-pipeline-") as tmp:
        workdir = Path(tmp)
        config_file = workdir / "sagemaker-config.yaml"
        config_file.write_text(json.dumps(SDK_CONFIG))  # JSON is YAML
        overrides: dict[str, str | None] = {
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config_file),
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ENDPOINT_URL": endpoint_url or None,
        }
        saved = {name: os.environ.get(name) for name in overrides}
        try:
            _set_environ(overrides)
            with _quiet_sdk():
                yield workdir
        finally:
            _set_environ(saved)


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Errors only: the SDK narrates every build and warns that job names are
    dropped and nothing runs, which is what a shared definition wants."""
    import sagemaker.mlops.workflow.pipeline  # noqa: F401 - creates the SDK's loggers
    import sagemaker.serve.model_builder  # noqa: F401

    loggers = [logger for name, logger in logging.root.manager.loggerDict.items()
               if isinstance(logger, logging.Logger) and name.split(".")[0] == "sagemaker"]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running within a PipelineSession")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="sagemaker")
        try:
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _set_environ(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _pipeline_session(region: str, endpoint_url: str | None, credentials: AwsCredentials | None,
                      default_bucket: str) -> Any:
    import boto3
    import botocore.session
    from botocore.config import Config
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    core = botocore.session.Session()
    if credentials is not None and credentials.access_key_id:
        core.set_credentials(credentials.access_key_id, credentials.secret_access_key,
                             credentials.session_token or None)
    extra: dict[str, Any] = {"s3": {"addressing_style": "path"}} if endpoint_url else {}
    core.set_default_client_config(
        Config(region_name=region, retries={"mode": "standard", "max_attempts": 5}, **extra)
    )
    boto_session = boto3.Session(botocore_session=core, region_name=region)
    return PipelineSession(boto_session=boto_session, default_bucket=default_bucket,
                           sagemaker_config=SDK_CONFIG)


def _parameters() -> dict[str, Any]:
    from sagemaker.core.workflow.parameters import (
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )

    kinds = {"String": ParameterString, "Integer": ParameterInteger, "Float": ParameterFloat,
             "Boolean": ParameterBoolean}
    return {name: kinds[kind](name, default_value=default) for name, kind, default in PARAMETERS}


def _pipeline(pipeline_name: str, session: Any, workdir: Path, tenant_tag_key: str, plan_tag_key: str) -> Any:
    from sagemaker.core.shapes import Tag
    from sagemaker.core.workflow.conditions import ConditionEquals
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.pipeline import Pipeline

    p = _parameters()
    tags = [Tag(key=tenant_tag_key, value=p["TenantTag"]), Tag(key=plan_tag_key, value=p["PlanTag"])]
    code = _write_launchers(_launcher_dir())
    preprocess = _preprocess_step(p, session, tags, code[step_names.PREPROCESS])
    channels = {
        name: preprocess.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri
        for name in ("train", "validation", "test")
    }
    train = _train_step(p, session, tags, channels)
    tune = _tune_step(p, session, tags, channels)
    use_tuning = ConditionStep(
        name=STEP_USE_TUNING,
        conditions=[ConditionEquals(left=p["TuningEnabled"], right=True)],
        if_steps=[tune],
        else_steps=[train],
    )
    tuned_model = Join(on="", values=[
        p["OutputUri"], "model/", tune.properties.BestTrainingJob.TrainingJobName, "/output/model.tar.gz",
    ])
    steps = [preprocess, use_tuning]
    for suffix, model_uri in (("", train.properties.ModelArtifacts.S3ModelArtifacts), (TUNED_SUFFIX, tuned_model)):
        steps.extend(_evaluate_and_register(suffix, model_uri, p, session, tags, code[step_names.EVALUATE],
                                            channels["test"]))
    return Pipeline(
        name=pipeline_name,
        parameters=list(p.values()),
        steps=steps,
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


def _launcher_dir() -> Path:
    """The same directory on every build: the SDK's code hash (the S3 key) includes the file's path.

    In a fresh temporary directory each build would upload the launchers
    under new keys, so the same release would never build the same
    definition twice (and `aws_smoke` could not tell a deployed pipeline from
    a stale one).
    """
    return Path(tempfile.gettempdir()) / f"mlaas-pipeline-launchers-{os.getuid()}"


def _write_launchers(workdir: Path) -> dict[str, str]:
    paths = {}
    for step in step_names.PROCESSING_STEPS:
        path = workdir / "code" / f"{step}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _LAUNCHER.format(module=f"mlaas_steps.{step}")
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)  # a concurrent build reads a whole file, never half of one
        paths[step] = str(path)
    return paths


def _processor(p: dict[str, Any], session: Any, tags: list, base_job_name: str) -> Any:
    from sagemaker.core.processing import ScriptProcessor

    return ScriptProcessor(
        role=_PLACEHOLDER_ROLE,
        image_uri=p["TrainingImageUri"],
        command=["python3"],
        instance_type=p["ProcessingInstanceType"],
        instance_count=p["ProcessingInstanceCount"],
        max_runtime_in_seconds=_MAX_RUNTIME_SECONDS,
        base_job_name=base_job_name,
        sagemaker_session=session,
        tags=tags,
    )


def _s3_input(name: str, uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
        s3_uri=uri, local_path=f"{_PROCESSING}/input/{name}", s3_data_type="S3Prefix", s3_input_mode="File",
    ))


def _s3_output(name: str, uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
        s3_uri=uri, local_path=f"{_PROCESSING}/output/{name}", s3_upload_mode="EndOfJob",
    ))


def _preprocess_step(p: dict[str, Any], session: Any, tags: list, code: str) -> Any:
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.steps import ProcessingStep

    outputs = ("train", "validation", "test", "report")
    step_args = _processor(p, session, tags, "mlaas-preprocess").run(
        code=code,
        inputs=[_s3_input("data", p["InputDataUri"])],
        outputs=[_s3_output(name, Join(on="", values=[p["OutputUri"], f"preprocess/{name}"])) for name in outputs],
        arguments=[
            "--input", f"{_PROCESSING}/input/data",
            "--output", f"{_PROCESSING}/output",
            "--target", p["TargetColumn"],
            "--problem-type", p["ProblemType"],
            "--algorithm-choice", p["AlgorithmChoice"],
        ],
    )
    return ProcessingStep(name=STEP_PREPROCESS, step_args=step_args)


def _trainer(p: dict[str, Any], session: Any, tags: list) -> Any:
    from sagemaker.core.training.configs import Compute, OutputDataConfig
    from sagemaker.core.workflow.functions import Join
    from sagemaker.train import ModelTrainer

    return ModelTrainer(
        sagemaker_session=session,
        role=_PLACEHOLDER_ROLE,
        training_image=p["TrainingImageUri"],
        compute=Compute(instance_type=p["TrainingInstanceType"], instance_count=p["TrainingInstanceCount"]),
        output_data_config=OutputDataConfig(s3_output_path=Join(on="", values=[p["OutputUri"], "model"])),
        hyperparameters={
            "algorithm": p["Algorithm"],
            "target": p["TargetColumn"],
            "problem_type": p["ProblemType"],
            "objective_metric": p["ObjectiveMetric"],
            "hyperparameters": p["Hyperparameters"],
            "tuning_ranges": p["TuningRanges"],
        },
        base_job_name="mlaas-train",
        tags=tags,
    )


def _training_inputs(channels: dict[str, Any]) -> list:
    from sagemaker.core.training.configs import InputData

    return [InputData(channel_name=name, data_source=channels[name]) for name in ("train", "validation")]


def _train_step(p: dict[str, Any], session: Any, tags: list, channels: dict[str, Any]) -> Any:
    from sagemaker.mlops.workflow.steps import TrainingStep

    step_args = _trainer(p, session, tags).train(input_data_config=_training_inputs(channels))
    return TrainingStep(name=STEP_TRAIN, step_args=step_args)


def _tune_step(p: dict[str, Any], session: Any, tags: list, channels: dict[str, Any]) -> Any:
    from sagemaker.core.parameter import ContinuousParameter
    from sagemaker.mlops.workflow.steps import TuningStep
    from sagemaker.train.tuner import HyperparameterTuner

    tuner = HyperparameterTuner(
        model_trainer=_trainer(p, session, tags),
        objective_metric_name=OBJECTIVE_LOG_METRIC,
        objective_type="Maximize",
        metric_definitions=[{"Name": OBJECTIVE_LOG_METRIC, "Regex": f"{OBJECTIVE_LOG_METRIC}=([-+0-9.eE]+)"}],
        hyperparameter_ranges={name: ContinuousParameter(0.0, 1.0) for name in TUNED_HYPERPARAMETERS},
        strategy="Bayesian",
        max_jobs=_PLACEHOLDER_MAX_JOBS,
        # One training job at a time: a build holds one plan-sized slot of instances.
        max_parallel_jobs=1,
        base_tuning_job_name="mlaas-tune",
        tags=tags,
    )
    return TuningStep(name=STEP_TUNE, step_args=tuner.tune(inputs=_training_inputs(channels)))


def _evaluate_and_register(suffix: str, model_uri: Any, p: dict[str, Any], session: Any, tags: list,
                           code: str, test_uri: Any) -> list:
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.steps import ProcessingStep
    from sagemaker.serve.model_builder import ModelBuilder

    report = PropertyFile(name=f"EvaluationReport{suffix}", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name=f"{STEP_EVALUATE}{suffix}",
        step_args=_processor(p, session, tags, "mlaas-evaluate").run(
            code=code,
            inputs=[_s3_input("model", model_uri), _s3_input("test", test_uri)],
            outputs=[_s3_output("evaluation", Join(on="", values=[p["OutputUri"], "evaluation"]))],
            arguments=[
                "--model", f"{_PROCESSING}/input/model",
                "--test", f"{_PROCESSING}/input/test",
                "--output", f"{_PROCESSING}/output/evaluation",
                "--target", p["TargetColumn"],
                "--problem-type", p["ProblemType"],
                "--objective-metric", p["ObjectiveMetric"],
            ],
        ),
        property_files=[report],
    )
    builder = ModelBuilder(s3_model_data_url=model_uri, image_uri=p["TrainingImageUri"], log_level=logging.ERROR,
                           role_arn=_PLACEHOLDER_ROLE, sagemaker_session=session)
    register = ModelStep(name=f"{STEP_REGISTER}{suffix}", step_args=builder.register(
        model_package_group_name=p["ModelPackageGroupName"],
        approval_status="PendingManualApproval",
        content_types=["text/csv"],
        response_types=["text/csv"],
        description="Built by the MLaaS portal; approve to release it to the tenant.",
        customer_metadata_properties={
            "build_code": p["BuildCode"], "algorithm": p["Algorithm"], "objective_metric": p["ObjectiveMetric"],
        },
        model_metrics=ModelMetrics(model_statistics=MetricsSource(
            s3_uri=Join(on="", values=[p["OutputUri"], EVALUATION_REPORT_PATH]), content_type="application/json",
        )),
    ))
    fail = FailStep(name=f"{STEP_FAIL}{suffix}", error_message=Join(on=" ", values=[
        "The model's", p["ObjectiveMetric"], "is below the minimum for the plan; it was not registered.",
    ]))
    check = ConditionStep(
        name=f"{STEP_CHECK_METRIC}{suffix}",
        conditions=[ConditionGreaterThanOrEqualTo(
            left=JsonGet(step_name=evaluate.name, property_file=report, json_path="objective.score"),
            right=p["MinMetric"],
        )],
        if_steps=[register],
        else_steps=[fail],
    )
    return [evaluate, check]
