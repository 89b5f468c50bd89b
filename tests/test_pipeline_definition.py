"""The shared pipeline definition, built with the sagemaker SDK against moto in-process.

Built once for the module (the SDK import alone takes ~2.5 s). Runs without
Django (`-p no:django`); only the deploy-command test needs settings and is
skipped without them.

Schema relaxations (the published schema, last changed 2025-04-03, is older
than the API; see /work/shared/aws/README.md) - everything else is validated
as published:
- expressions: `Std:Join` (the schema's own JoinFunction is malformed and
  referenced nowhere) and `Std:JsonGet` are accepted wherever a Get is;
- ConditionStep branches may hold a TuningStep (the schema lists only
  Training/Fail/Processing/Transform/RegisterModel);
- ProcessingStep may declare `PropertyFiles` (needed for JsonGet);
- tuning `ResourceLimits.MaxNumberOfTrainingJobs` may be a Get (MaxTuningJobs);
- fields the SDK 3.x emits that the schema predates: OutputDataConfig
  `CompressionType`, RegisterModel `ModelApprovalStatus`,
  `SkipModelValidation`, `CustomerMetadataProperties` and container
  `Environment`.
Step arguments are additionally checked against botocore's request shapes
(the current contract) in `test_step_arguments_match_botocore_request_shapes`.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.aws.pipeline_definition import PARAMETER_NAMES, iter_steps

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path("/work/shared/aws/sagemaker-pipeline-definition.schema.json")
REGION = "us-east-1"
PIPELINE = "mlaas-shared-build-pipeline"
CODE_BUCKET = "mlaas-pipeline-code-123456789012-us-east-1"
ROLE_GET = {"Get": "Parameters.TenantRoleArn"}
TENANT_PARAMETERS = {
    "InputDataUri", "OutputUri", "ProcessingInstanceType", "ProcessingInstanceCount", "TrainingInstanceType",
    "TrainingInstanceCount", "TenantRoleArn", "ModelPackageGroupName", "TrainingImageUri", "TargetColumn",
    "ProblemType", "Algorithm", "MinMetric", "MaxTuningJobs", "TenantTag", "PlanTag", "TuningEnabled",
}
STEP_TYPE_SCHEMAS = {"Processing": "ProcessingStep", "Training": "TrainingStep", "Tuning": "TuningStep",
                     "Condition": "ConditionStep", "RegisterModel": "RegisterModelStep", "Fail": "FailStep"}
STEP_OPERATIONS = {"Processing": "CreateProcessingJob", "Training": "CreateTrainingJob",
                   "Tuning": "CreateHyperParameterTuningJob", "RegisterModel": "CreateModelPackage"}
EXPRESSION_KEYS = {"Get", "Std:Join", "Std:JsonGet"}


@pytest.fixture(scope="module")
def aws(emulator):
    """The session's emulator (moto server, IAM enforced) as the default AWS for plain boto3 clients.

    An in-process `mock_aws()` cannot be used here: moto's state is process-wide,
    and the session emulator (with enforcement on) already owns it.
    """
    env = {"AWS_ACCESS_KEY_ID": emulator.access_key_id, "AWS_SECRET_ACCESS_KEY": emulator.secret_access_key,
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": emulator.endpoint}
    saved = {name: os.environ.get(name) for name in [*env, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(env)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield emulator
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def definition(aws) -> dict:
    from core.aws.pipeline_definition import build_pipeline_definition

    return build_pipeline_definition(pipeline_name=PIPELINE, region=REGION, endpoint_url=aws.endpoint,
                                     credentials=aws.aws_config(), default_bucket=CODE_BUCKET)


@pytest.fixture
def sagemaker_gateway(aws):
    import boto3

    from core.aws.sagemaker import SageMakerGateway

    return SageMakerGateway(boto3.client("sagemaker", region_name=REGION))


def _find(node: Any, key: str) -> list:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == key]
        return found + [x for k, v in node.items() if k != key for x in _find(v, key)]
    if isinstance(node, list):
        return [x for item in node for x in _find(item, key)]
    return []


def _gets(node: Any) -> set[str]:
    return {value for value in _find(node, "Get") if isinstance(value, str)}


def relaxed_schema() -> dict:
    schema = copy.deepcopy(json.loads(SCHEMA_PATH.read_text()))
    defs = schema["definitions"]
    get = {"$ref": "#/definitions/GetFunction"}
    defs["JsonGetExpression"] = {
        "type": "object", "required": ["Std:JsonGet"], "additionalProperties": False,
        "properties": {"Std:JsonGet": {
            "type": "object", "required": ["PropertyFile", "Path"], "additionalProperties": False,
            "properties": {"PropertyFile": get, "Path": {"type": "string"}},
        }},
    }
    defs["JoinExpression"] = {
        "type": "object", "required": ["Std:Join"], "additionalProperties": False,
        "properties": {"Std:Join": {
            "type": "object", "required": ["On", "Values"], "additionalProperties": False,
            "properties": {"On": {"type": "string"}, "Values": {"type": "array", "items": {"anyOf": [
                {"type": ["string", "number", "boolean"]}, get, {"$ref": "#/definitions/JsonGetExpression"},
            ]}}},
        }},
    }
    for name in ("StringArgumentValue", "IntegerArgumentValue", "FloatArgumentValue", "BooleanArgumentValue"):
        defs[name]["oneOf"] += [{"$ref": "#/definitions/JoinExpression"}, {"$ref": "#/definitions/JsonGetExpression"}]
    condition_args = defs["ConditionStep"]["properties"]["Arguments"]["properties"]
    for branch in ("IfSteps", "ElseSteps"):
        condition_args[branch]["items"]["oneOf"].append({"$ref": "#/definitions/TuningStep"})
    defs["ProcessingStep"]["properties"]["PropertyFiles"] = {"type": "array", "items": {
        "type": "object", "required": ["PropertyFileName", "OutputName", "FilePath"], "additionalProperties": False,
        "properties": {name: {"type": "string"} for name in ("PropertyFileName", "OutputName", "FilePath")},
    }}
    tuning_config = defs["TuningStep"]["properties"]["Arguments"]["properties"]["HyperParameterTuningJobConfig"]
    tuning_config["properties"]["ResourceLimits"]["properties"]["MaxNumberOfTrainingJobs"] = {
        "$ref": "#/definitions/IntegerArgumentValue"}
    compression = {"type": "string", "enum": ["GZIP", "NONE"]}
    defs["TrainingStep"]["properties"]["Arguments"]["properties"]["OutputDataConfig"]["properties"][
        "CompressionType"] = compression
    defs["HyperParameterTrainingJobDefinition"]["properties"]["OutputDataConfig"]["properties"][
        "CompressionType"] = compression
    register_args = defs["RegisterModelStep"]["properties"]["Arguments"]["properties"]
    register_args["ModelApprovalStatus"] = {"type": "string",
                                            "enum": ["PendingManualApproval", "Approved", "Rejected"]}
    register_args["SkipModelValidation"] = {"type": "string", "enum": ["All", "None"]}
    string_map = {"type": "object", "additionalProperties": {"$ref": "#/definitions/StringArgumentValue"}}
    register_args["CustomerMetadataProperties"] = string_map
    register_args["InferenceSpecification"]["properties"]["Containers"]["items"]["properties"][
        "Environment"] = string_map
    return schema


def schema_errors(definition: dict) -> list[str]:
    """Whole-document validation, then each step alone (precise messages for nested steps)."""
    schema = relaxed_schema()
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(definition)]
    for step in iter_steps(definition):
        sub = {"$ref": f"#/definitions/{STEP_TYPE_SCHEMAS[step['Type']]}", "definitions": schema["definitions"]}
        errors += [f"{step['Name']} {list(e.absolute_path)}: {e.message[:200]}"
                   for e in jsonschema.Draft7Validator(sub).iter_errors(step)]
    return errors


def shape_violations(value: Any, shape: Any, path: str) -> list[str]:
    """Keys and scalar types of `value` against a botocore shape; expressions pass."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSION_KEYS:
        return []
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {shape.name}"]
        return [problem for key, item in value.items()
                for problem in ([f"{path}.{key}: not a member of {shape.name}"] if key not in shape.members
                                else shape_violations(item, shape.members[key], f"{path}.{key}"))]
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in shape_violations(item, shape.member, f"{path}[{i}]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [p for k, item in value.items() for p in shape_violations(item, shape.value, f"{path}.{k}")]
    expected = {"string": str, "integer": int, "long": int, "boolean": bool, "float": (int, float),
                "double": (int, float)}.get(kind)
    if expected and not isinstance(value, expected):
        return [f"{path}: expected {kind}, got {value!r}"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} not in {shape.enum}"]
    return []


def test_definition_builds_every_step(definition):
    names = [step["Name"] for step in iter_steps(definition)]

    assert definition["Version"] == "2020-12-01"
    assert [step["Name"] for step in definition["Steps"]] == [
        "Preprocess", "UseTuning", "Evaluate", "CheckMetric", "EvaluateTuned", "CheckMetricTuned"]
    assert sorted(names) == sorted([
        "Preprocess", "UseTuning", "Evaluate", "CheckMetric", "EvaluateTuned", "CheckMetricTuned",
        "Tune", "Train", "Register", "MetricBelowMinimum", "RegisterTuned", "MetricBelowMinimumTuned"])


def test_definition_steps_each_report_as_one_portal_step(definition):
    from mlaas_steps import steps

    reported = {step["Name"]: steps.portal_step(step["Name"]) for step in iter_steps(definition)}

    assert reported == {
        "Preprocess": "preprocess", "UseTuning": None,
        "Train": "train", "Evaluate": "evaluate", "CheckMetric": "condition", "Register": "register",
        "MetricBelowMinimum": "condition",
        "Tune": "train", "EvaluateTuned": "evaluate", "CheckMetricTuned": "condition", "RegisterTuned": "register",
        "MetricBelowMinimumTuned": "condition",
    }
    assert set(reported.values()) - {None} == set(steps.STEP_NAMES)


def test_definition_validates_against_relaxed_schema(definition):
    assert schema_errors(definition) == []


def test_relaxed_schema_still_rejects_a_broken_step(definition):
    broken = copy.deepcopy(definition)
    broken["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "two"

    assert schema_errors(broken) != []


def test_step_arguments_match_botocore_request_shapes(definition):
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    problems = []
    for step in iter_steps(definition):
        operation = STEP_OPERATIONS.get(step["Type"])
        if operation:
            problems += shape_violations(step["Arguments"], model.operation_model(operation).input_shape,
                                         step["Name"])

    assert problems == []


def test_shape_check_catches_fields_the_api_does_not_have(definition):
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    train = next(step for step in iter_steps(definition) if step["Name"] == "Train")
    arguments = {**train["Arguments"], "TrainingJobPriority": "high"}

    assert shape_violations(arguments, model.operation_model("CreateTrainingJob").input_shape, "Train") == [
        "Train.TrainingJobPriority: not a member of CreateTrainingJobRequest"]


def test_every_role_arn_is_the_tenant_role_parameter(definition):
    role_arns = [arn for step in iter_steps(definition) for arn in _find(step.get("Arguments", {}), "RoleArn")
                 if step["Type"] != "Condition"]

    assert len(role_arns) == 5  # Preprocess, Train, Tune, Evaluate, EvaluateTuned
    assert role_arns == [ROLE_GET] * 5
    assert "placeholder" not in json.dumps(definition)


def test_every_tenant_parameter_is_declared_and_used(definition):
    declared = [parameter["Name"] for parameter in definition["Parameters"]]
    used = {name.removeprefix("Parameters.") for name in _gets(definition["Steps"]) if name.startswith("Parameters.")}

    assert declared == list(PARAMETER_NAMES)
    assert TENANT_PARAMETERS <= set(declared)
    assert set(declared) == used


def test_tenant_values_have_no_defaults(definition):
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"] if "DefaultValue" in p}

    assert defaults == {"Hyperparameters": "{}", "TuningRanges": "{}", "TuningEnabled": False, "MaxTuningJobs": 1,
                        "AlgorithmChoice": "{}"}


def test_tuning_is_chosen_by_the_tuning_enabled_parameter(definition):
    switch = next(step for step in definition["Steps"] if step["Name"] == "UseTuning")
    tune = switch["Arguments"]["IfSteps"][0]

    assert switch["Arguments"]["Conditions"] == [
        {"Type": "Equals", "LeftValue": {"Get": "Parameters.TuningEnabled"}, "RightValue": True}]
    assert [s["Name"] for s in switch["Arguments"]["ElseSteps"]] == ["Train"]
    assert tune["Name"] == "Tune"
    assert tune["Arguments"]["HyperParameterTuningJobConfig"]["ResourceLimits"] == {
        "MaxParallelTrainingJobs": 1, "MaxNumberOfTrainingJobs": {"Get": "Parameters.MaxTuningJobs"}}


def test_metric_condition_registers_pending_approval_or_fails(definition):
    check = next(step for step in definition["Steps"] if step["Name"] == "CheckMetric")
    register, fail = check["Arguments"]["IfSteps"][0], check["Arguments"]["ElseSteps"][0]

    assert check["Arguments"]["Conditions"] == [{
        "Type": "GreaterThanOrEqualTo",
        "LeftValue": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                      "Path": "objective.score"}},
        "RightValue": {"Get": "Parameters.MinMetric"},
    }]
    assert register["Type"] == "RegisterModel"
    assert register["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"
    assert register["Arguments"]["ModelPackageGroupName"] == {"Get": "Parameters.ModelPackageGroupName"}
    assert register["Arguments"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == {
        "Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert fail["Type"] == "Fail"


def test_jobs_are_tagged_with_tenant_and_plan_parameters(definition):
    job_steps = [step for step in iter_steps(definition) if step["Type"] in ("Processing", "Training", "Tuning")]

    assert len(job_steps) == 5
    for step in job_steps:
        assert step["Arguments"]["Tags"] == [
            {"Key": "mlaas:tenant", "Value": {"Get": "Parameters.TenantTag"}},
            {"Key": "mlaas:plan", "Value": {"Get": "Parameters.PlanTag"}},
        ]


def test_step_code_is_uploaded_to_the_code_bucket(definition, aws):
    import boto3

    code_uris = [i["S3Input"]["S3Uri"] for step in iter_steps(definition) if step["Type"] == "Processing"
                 for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == "code"]
    keys = {uri.removeprefix(f"s3://{CODE_BUCKET}/") for uri in code_uris}
    body = boto3.client("s3", region_name=REGION).get_object(
        Bucket=CODE_BUCKET, Key=sorted(keys)[0])["Body"].read().decode()

    assert len(code_uris) == 3 and all(uri.startswith(f"s3://{CODE_BUCKET}/{PIPELINE}/code/") for uri in code_uris)
    assert 'runpy.run_module("mlaas_steps.' in body


def test_upsert_creates_then_updates_one_pipeline(definition, sagemaker_gateway):
    role = "arn:aws:iam::123456789012:role/mlaas-pipeline-execution"
    changed = copy.deepcopy(definition)
    changed["Metadata"] = {"revision": "2"}

    first = sagemaker_gateway.upsert_pipeline(PIPELINE, definition, role, {"mlaas:component": "platform"})
    second = sagemaker_gateway.upsert_pipeline(PIPELINE, changed, role, {"mlaas:component": "platform"})
    client = sagemaker_gateway.client
    pipelines = client.list_pipelines(PipelineNamePrefix=PIPELINE)["PipelineSummaries"]
    stored = json.loads(client.describe_pipeline(PipelineName=PIPELINE)["PipelineDefinition"])

    assert first == second
    assert [p["PipelineName"] for p in pipelines] == [PIPELINE]
    assert stored == changed


def test_engine_parameters_start_an_execution_of_the_deployed_pipeline(definition, sagemaker_gateway):
    from builds.engines.base import BuildLaunch
    from builds.engines.sagemaker import SageMakerEngine, pipeline_parameters

    sagemaker_gateway.upsert_pipeline(PIPELINE, definition, "arn:aws:iam::123456789012:role/p", {})
    launch = BuildLaunch(
        build_code="b-1", tenant_slug="acme", plan_slug="pro", role_arn="arn:aws:iam::123456789012:role/t",
        bucket="mlaas-t-acme", dataset_key="uploads/d.csv", output_prefix="builds/b-1", algorithm_slug="hgb",
        problem_type="classification", entry_point="hist_gradient_boosting", training_image_uri="img:1",
        target="label", hyperparameters={}, tuning_ranges={}, objective_metric="f1", min_metric=0.5,
        tuning_enabled=False, max_tuning_jobs=0, processing_instance_type="ml.m5.large",
        processing_instance_count=1, training_instance_type="ml.m5.large", training_instance_count=1,
        model_package_group="mlaas-acme-models", tags={"mlaas:tenant": "acme", "mlaas:plan": "pro"},
    )

    arn = SageMakerEngine(lambda: sagemaker_gateway, PIPELINE).start(launch)
    sent = sagemaker_gateway.client.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)

    assert set(pipeline_parameters(launch)) == set(PARAMETER_NAMES)
    assert {p["Name"]: p["Value"] for p in sent["PipelineParameters"]} == pipeline_parameters(launch)


def test_pipeline_role_is_created_then_reused(aws):
    import boto3

    from core.aws.iam_pipeline_role import PIPELINE_ROLE_NAME, ensure_pipeline_role

    iam = boto3.client("iam", region_name=REGION)
    caller = "arn:aws:sts::123456789012:assumed-role/deployer/session-1"
    kwargs = {"caller_arn": caller, "account_id": "123456789012", "region": REGION}

    first = ensure_pipeline_role(iam, **kwargs)
    second = ensure_pipeline_role(iam, **kwargs)
    role = iam.get_role(RoleName=PIPELINE_ROLE_NAME)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    policy = iam.get_role_policy(RoleName=PIPELINE_ROLE_NAME, PolicyName="pipeline-orchestration")

    assert first == second == f"arn:aws:iam::123456789012:role/{PIPELINE_ROLE_NAME}"
    assert [s["Principal"] for s in trust["Statement"]] == [
        {"Service": "sagemaker.amazonaws.com"}, {"AWS": "arn:aws:iam::123456789012:role/deployer"}]
    assert "iam:PassRole" in json.dumps(policy["PolicyDocument"])


def test_importing_the_modules_does_not_load_the_sdk():
    code = (
        "import sys\n"
        "import core.aws.pipeline_definition, core.aws.sagemaker\n"
        "import core.aws.iam_pipeline_role, builds.engines.sagemaker\n"
        "loaded = sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.'))\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not os.environ.get("DJANGO_SETTINGS_MODULE"), reason="needs Django settings (pytest-django)")
def test_deploy_command_builds_and_upserts_with_platform_identity(aws, settings, capsys):
    """`manage.py deploy_pipeline` against the emulator, as the platform identity in settings."""
    from django.core.management import call_command

    settings.MLAAS_PIPELINE_ROLE_ARN = ""
    call_command("deploy_pipeline", "--name", "deploy-test-pipeline")
    out = capsys.readouterr().out
    assert ":pipeline/deploy-test-pipeline" in out
    assert ":role/mlaas-pipeline-execution" in out

    from builds.management.commands.deploy_pipeline import pipeline_deploy

    deployment = pipeline_deploy(name="deploy-test-pipeline")  # a second deploy updates the same pipeline
    assert deployment.pipeline_arn.endswith(":pipeline/deploy-test-pipeline")
    assert deployment.role_arn.endswith(":role/mlaas-pipeline-execution")
    assert deployment.parameter_names == PARAMETER_NAMES
