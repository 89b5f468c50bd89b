"""The definition interpreter and the runtime's own policy evaluator, without AWS.

The executors here are plain functions recording what they were asked to run: the interpreter's job is
order, parameters, expressions, conditions and Fail steps; the jobs themselves are tested end to end in
builds/tests/test_runtime_permissions.py and tests/test_build_flow.py.
"""

from __future__ import annotations

import pytest

from core.aws import pipeline_runtime as runtime
from core.aws.policy_check import evaluate


def _definition(min_metric_default=None) -> dict:
    """The shape of the shared pipeline: processing, a routing condition, train/tune, evaluate, check, register."""
    threshold = {"Name": "MinMetric", "Type": "Float"}
    if min_metric_default is not None:
        threshold["DefaultValue"] = min_metric_default
    out = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.OutputUri"}, "prep/train"]}}
    return {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "OutputUri", "Type": "String"}, {"Name": "Tuning", "Type": "Boolean",
                                                                 "DefaultValue": False}, threshold],
        "Steps": [
            {"Name": "Check", "Type": "Condition", "Arguments": {
                "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": {"Std:JsonGet": {
                    "PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"}, "Path": "objective.score"}},
                    "RightValue": {"Get": "Parameters.MinMetric"}}],
                "IfSteps": [{"Name": "Register", "Type": "RegisterModel", "Arguments": {
                    "ModelDataUrl": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}}}],
                "ElseSteps": [{"Name": "TooLow", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {
                    "On": " ", "Values": ["score below", {"Get": "Parameters.MinMetric"}]}}}}]}},
            {"Name": "Eval", "Type": "Processing", "PropertyFiles": [
                {"PropertyFileName": "Report", "OutputName": "evaluation", "FilePath": "evaluation.json"}],
             "Arguments": {"Model": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}}},
            {"Name": "Prep", "Type": "Processing", "Arguments": {"ProcessingOutputConfig": {"Outputs": [
                {"OutputName": "train", "S3Output": {"S3Uri": out}}]}}},
            {"Name": "Route", "Type": "Condition", "Arguments": {
                "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Tuning"}, "RightValue": True}],
                "IfSteps": [{"Name": "Tune", "Type": "Tuning", "Arguments": {}}],
                "ElseSteps": [{"Name": "Train", "Type": "Training", "Arguments": {"Input": {
                    "Get": "Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}}}]}},
        ],
    }


def _executors(calls: list, score: float = 0.9, fail: str = ""):
    def processing(name, arguments):
        calls.append((name, arguments))
        if name == fail:
            return runtime.StepOutcome("Failed", failure_reason="AccessDenied: not authorized to perform: s3:GetObject")
        files = {"Report": {"objective": {"score": score}}} if name == "Eval" else {}
        return runtime.StepOutcome("Succeeded", metadata={"ProcessingJob": {"Arn": f"arn:{name}"}},
                                   property_files=files)

    def training(name, arguments):
        calls.append((name, arguments))
        return runtime.StepOutcome("Succeeded", properties={"ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tgz"}})

    def register(name, arguments):
        calls.append((name, arguments))
        return runtime.StepOutcome("Succeeded", metadata={"RegisterModel": {"Arn": "arn:package/1"}})

    return {"Processing": processing, "Training": training, "Tuning": training, "RegisterModel": register}


def test_steps_run_in_dependency_order_with_resolved_references():
    calls: list = []
    execution = runtime.execute(_definition(), {"OutputUri": "s3://b/out/", "MinMetric": "0.5"}, _executors(calls))

    assert execution.status == runtime.SUCCEEDED
    assert [name for name, _ in calls] == ["Prep", "Train", "Eval", "Register"]
    assert dict(calls)["Train"] == {"Input": "s3://b/out/prep/train"}
    assert dict(calls)["Register"] == {"ModelDataUrl": "s3://b/m.tgz"}
    # As ListPipelineExecutionSteps: only steps that ran, conditions with their outcome.
    assert [(s["StepName"], s["StepStatus"], s["Metadata"]) for s in execution.steps] == [
        ("Prep", "Succeeded", {"ProcessingJob": {"Arn": "arn:Prep"}}),
        ("Route", "Succeeded", {"Condition": {"Outcome": "False"}}),
        ("Train", "Succeeded", {}),
        ("Eval", "Succeeded", {"ProcessingJob": {"Arn": "arn:Eval"}}),
        ("Check", "Succeeded", {"Condition": {"Outcome": "True"}}),
        ("Register", "Succeeded", {"RegisterModel": {"Arn": "arn:package/1"}}),
    ]
    assert all(s["StartTime"] <= s["EndTime"] for s in execution.steps)


def test_the_other_branch_and_what_depends_on_it_do_not_run():
    calls: list = []
    execution = runtime.execute(_definition(), {"OutputUri": "s3://b/", "MinMetric": "0.5", "Tuning": "true"},
                                _executors(calls))
    # Tune ran; Eval reads Steps.Train, which never ran, so neither does Eval nor what follows it.
    assert [s["StepName"] for s in execution.steps] == ["Prep", "Route", "Tune"]
    assert execution.status == runtime.SUCCEEDED


def test_a_fail_step_fails_the_execution_with_its_error_message():
    execution = runtime.execute(_definition(), {"OutputUri": "s3://b/", "MinMetric": "0.95"}, _executors([]))
    assert execution.status == runtime.FAILED
    assert (execution.steps[-1]["StepName"], execution.steps[-1]["StepStatus"],
            execution.steps[-1]["FailureReason"]) == ("TooLow", "Failed", "score below 0.95")


def test_a_failed_job_stops_the_execution_with_its_reason():
    execution = runtime.execute(_definition(), {"OutputUri": "s3://b/", "MinMetric": "0.5"},
                                _executors([], fail="Prep"))
    assert execution.status == runtime.FAILED
    assert [(s["StepName"], s["StepStatus"]) for s in execution.steps] == [("Prep", "Failed")]
    assert execution.steps[0]["FailureReason"] == "AccessDenied: not authorized to perform: s3:GetObject"


def test_parameters_defaults_types_and_errors():
    definition = _definition(min_metric_default=0.25)
    assert runtime.resolve_parameters(definition, {"OutputUri": "s3://x/"}) == {
        "OutputUri": "s3://x/", "Tuning": False, "MinMetric": 0.25}
    with pytest.raises(runtime.DefinitionError, match="parameter OutputUri has no default"):
        runtime.resolve_parameters(definition, {})
    with pytest.raises(runtime.DefinitionError, match=r"not declared by the pipeline: Bogus"):
        runtime.resolve_parameters(definition, {"OutputUri": "s3://x/", "Bogus": "1"})
    with pytest.raises(runtime.DefinitionError, match=r"MinMetric \(Float\) cannot take the value 'high'"):
        runtime.resolve_parameters(definition, {"OutputUri": "s3://x/", "MinMetric": "high"})


def test_dependencies_cycles_and_unknown_steps_are_refused():
    definition = {"Parameters": [], "Steps": [
        {"Name": "A", "Type": "Processing", "Arguments": {"X": {"Get": "Steps.B.Foo"}}},
        {"Name": "B", "Type": "Processing", "DependsOn": ["A"], "Arguments": {}}]}
    with pytest.raises(runtime.DefinitionError, match="cycle: A, B"):
        runtime.execute(definition, {}, _executors([]))
    definition["Steps"][1]["DependsOn"] = ["Nope"]
    with pytest.raises(runtime.DefinitionError, match="depends on unknown steps: Nope"):
        runtime.execute(definition, {}, _executors([]))


def test_property_paths():
    assert runtime.property_path("Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri") == [
        "Prep", "ProcessingOutputConfig", "Outputs", "train", "S3Output", "S3Uri"]
    assert runtime.property_path("Tune.TrainingJobSummaries[0].TrainingJobName") == [
        "Tune", "TrainingJobSummaries", 0, "TrainingJobName"]


POLICIES = {"tenant-jobs": {"Statement": [
    {"Sid": "Pull", "Effect": "Allow", "Action": ["ecr:BatchGetImage"],
     "Resource": ["arn:aws:ecr:us-east-1:123456789012:repository/mlaas-steps"]},
    {"Sid": "Logs", "Effect": "Allow", "Action": "logs:*",
     "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*"},
    {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::code",
     "Condition": {"StringLike": {"s3:prefix": ["pipe/code/*"]}}},
    {"Sid": "NoOther", "Effect": "Deny", "Action": "ecr:*",
     "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/forbidden"},
]}}


@pytest.mark.parametrize(("action", "resource", "context", "allowed"), [
    ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/mlaas-steps", None, True),
    ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/other", None, False),
    ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/forbidden", None, False),
    ("ecr:GetDownloadUrlForLayer", "arn:aws:ecr:us-east-1:123456789012:repository/mlaas-steps", None, False),
    ("logs:PutLogEvents",
     "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/TrainingJobs:log-stream:j/algo-1-1", None, True),
    ("logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/other:log-stream:x", None, False),
    ("s3:ListBucket", "arn:aws:s3:::code", {"s3:prefix": "pipe/code/abc/x.py"}, True),
    ("s3:ListBucket", "arn:aws:s3:::code", {"s3:prefix": "secrets/"}, False),
    ("s3:ListBucket", "arn:aws:s3:::code", {}, False),
])
def test_policy_evaluation(action, resource, context, allowed):
    decision = evaluate(POLICIES, action, resource, context)
    assert decision.allowed is allowed
    if not allowed:
        assert f"not authorized to perform: {action} on resource: {resource}" in decision.denial("role/x")
