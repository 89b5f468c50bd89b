"""SageMakerEngine against a Stubber-wrapped client: the sequences moto cannot model.

Runs without Django (`-p no:django`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from builds.engines.base import BuildLaunch, EngineStatus, StepStatus
from builds.engines.sagemaker import SageMakerEngine, client_token, pipeline_parameters
from core.aws.errors import AwsRetryableError
from core.aws.pipeline_definition import PARAMETER_NAMES
from core.aws.sagemaker import SageMakerGateway

PIPELINE = "mlaas-shared-build-pipeline"
EXECUTION = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/mlaas-shared-build-pipeline/execution/abc123"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlaas-acme-models/3"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_launch(**changes) -> BuildLaunch:
    launch = BuildLaunch(
        build_code="B7K2Q9",
        tenant_slug="acme",
        plan_slug="pro",
        role_arn="arn:aws:iam::123456789012:role/mlaas-tenant-acme",
        bucket="mlaas-t-acme-123456789012",
        dataset_key="uploads/churn.csv",
        output_prefix="builds/B7K2Q9",
        algorithm_slug="hgb-classifier",
        problem_type="classification",
        entry_point="hist_gradient_boosting",
        training_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-trainer:1.4",
        target="churned",
        hyperparameters={"max_iter": 200, "learning_rate": 0.1},
        tuning_ranges={"learning_rate": {"min": 0.01, "max": 0.3}, "max_depth": {"min": 3, "max": 10}},
        objective_metric="f1",
        min_metric=0.7,
        tuning_enabled=True,
        max_tuning_jobs=8,
        processing_instance_type="ml.m5.large",
        processing_instance_count=1,
        training_instance_type="ml.m5.xlarge",
        training_instance_count=2,
        model_package_group="mlaas-acme-models",
        tags={"mlaas:tenant": "acme", "mlaas:plan": "pro"},
    )
    return replace(launch, **changes)


@pytest.fixture
def client(sagemaker_client):
    return sagemaker_client


@pytest.fixture
def engine(client):
    return SageMakerEngine(lambda: SageMakerGateway(client), PIPELINE, clock=lambda: NOW)


def step(name: str, status: str, start: float | None, end: float | None = None, **extra) -> dict:
    entry = {"StepName": name, "StepStatus": status, **extra}
    if start is not None:
        entry["StartTime"] = at(start)
    if end is not None:
        entry["EndTime"] = at(end)
    return entry


def expect_status(stub: Stubber, execution_status: str, steps: list[dict], failure_reason: str = "") -> None:
    describe = {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": execution_status}
    if failure_reason:
        describe["FailureReason"] = failure_reason
    stub.add_response("describe_pipeline_execution", describe, {"PipelineExecutionArn": EXECUTION})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": steps},
                      {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"})


def processing(job: str) -> dict:
    return {"ProcessingJob": {"Arn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job}"}}


def expect_processing_job(stub: Stubber, name: str, started: datetime, ended: datetime) -> None:
    stub.add_response("describe_processing_job", {
        "ProcessingJobName": name,
        "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name}",
        "ProcessingJobStatus": "Completed", "CreationTime": started, "ProcessingStartTime": started,
        "ProcessingEndTime": ended, "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": "img"}, "RoleArn": "arn:aws:iam::123456789012:role/mlaas-tenant-acme"},
        {"ProcessingJobName": name})


def expect_training_job(stub: Stubber, name: str, *, billable: int | None) -> None:
    job = {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
           "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}, "TrainingJobStatus": "Completed",
           "SecondaryStatus": "Completed", "AlgorithmSpecification": {"TrainingInputMode": "File"},
           "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
           "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": T0}
    if billable is not None:
        job["BillableTimeInSeconds"] = billable
    stub.add_response("describe_training_job", job, {"TrainingJobName": name})


def test_start_passes_every_tenant_parameter_and_the_tags(engine, stub):
    launch = make_launch()
    expected_parameters = {
        "BuildCode": "B7K2Q9",
        "InputDataUri": "s3://mlaas-t-acme-123456789012/uploads/churn.csv",
        "OutputUri": "s3://mlaas-t-acme-123456789012/builds/B7K2Q9/",
        "TenantRoleArn": "arn:aws:iam::123456789012:role/mlaas-tenant-acme",
        "TenantTag": "acme",
        "PlanTag": "pro",
        "ModelPackageGroupName": "mlaas-acme-models",
        "TrainingImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-trainer:1.4",
        "TargetColumn": "churned",
        "ProblemType": "classification",
        "Algorithm": "hist_gradient_boosting",
        # BuildLaunch defaults: explicit, no fitting algorithms known.
        "AlgorithmChoice": '{"algorithm":"hgb-classifier","algorithm_explicit":true,"fitting_algorithms":{}}',
        "ObjectiveMetric": "f1",
        "MinMetric": "0.7",
        "Hyperparameters": '{"learning_rate":0.1,"max_iter":200}',
        "TuningRanges": '{"learning_rate":{"max":0.3,"min":0.01},"max_depth":{"max":10,"min":3}}',
        "TuningEnabled": "true",
        "MaxTuningJobs": "8",
        "ProcessingInstanceType": "ml.m5.large",
        "ProcessingInstanceCount": "1",
        "TrainingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceCount": "2",
    }
    token = client_token(PIPELINE, "B7K2Q9")
    for _ in range(2):  # a retried start sends the same token: AWS starts one execution
        stub.add_response(
            "start_pipeline_execution",
            {"PipelineExecutionArn": EXECUTION},
            {
                "PipelineName": PIPELINE,
                "PipelineExecutionDisplayName": "acme-B7K2Q9-1",
                "PipelineParameters": [{"Name": k, "Value": v} for k, v in expected_parameters.items()],
                "ClientRequestToken": token,
            },
        )

    assert engine.start(launch) == EXECUTION
    assert engine.start(launch) == EXECUTION
    assert set(expected_parameters) == set(PARAMETER_NAMES)
    assert len(token) == 64 and token != client_token(PIPELINE, "B7K2Q8")
    assert token == client_token(PIPELINE, "B7K2Q9", 1) != client_token(PIPELINE, "B7K2Q9", 2)


def _summary(arn: str, display: str) -> dict:
    return {"PipelineExecutionArn": arn, "PipelineExecutionDisplayName": display, "StartTime": T0,
            "PipelineExecutionStatus": "Executing"}


def test_recover_adopts_the_execution_the_lost_start_made(engine, stub):
    launch = make_launch(attempt=2)
    other = EXECUTION.replace("abc123", "zzz999")
    stub.add_response("list_pipeline_executions", {"PipelineExecutionSummaries": [
        _summary(other, "acme-B7K2Q9-1"),  # the earlier claim's execution: not this attempt's
        _summary(other, "acme-OTHER1-2")], "NextToken": "p2"},
        {"PipelineName": PIPELINE, "SortOrder": "Descending", "CreatedAfter": T0 - timedelta(minutes=5)})
    stub.add_response("list_pipeline_executions",
                      {"PipelineExecutionSummaries": [_summary(EXECUTION, "acme-B7K2Q9-2")]},
                      {"PipelineName": PIPELINE, "SortOrder": "Descending",
                       "CreatedAfter": T0 - timedelta(minutes=5), "NextToken": "p2"})
    stub.add_response("list_pipeline_parameters_for_execution",
                      {"PipelineParameters": [{"Name": "BuildCode", "Value": "B7K2Q9"}]},
                      {"PipelineExecutionArn": EXECUTION})

    assert engine.recover(launch, claimed_at=T0) == (EXECUTION, True)  # no StartPipelineExecution stubbed


def test_recover_starts_with_the_lost_starts_token_when_nothing_was_started(engine, stub):
    launch = make_launch(attempt=3)
    stub.add_response("list_pipeline_executions", {"PipelineExecutionSummaries": [
        _summary(EXECUTION.replace("abc123", "xyz"), "acme-B7K2Q9-3")]})
    stub.add_response("list_pipeline_parameters_for_execution",  # same display name, someone else's build
                      {"PipelineParameters": [{"Name": "BuildCode", "Value": "OTHER"}]})
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION}, {
        "PipelineName": PIPELINE, "PipelineExecutionDisplayName": "acme-B7K2Q9-3",
        "PipelineParameters": [{"Name": k, "Value": v} for k, v in pipeline_parameters(launch).items()],
        "ClientRequestToken": client_token(PIPELINE, "B7K2Q9", 3)})

    assert engine.recover(launch) == (EXECUTION, False)


def test_parameters_negate_minimum_for_lower_is_better_metrics():
    params = pipeline_parameters(make_launch(problem_type="regression", objective_metric="rmse", min_metric=4.5))
    prefixed = pipeline_parameters(make_launch(problem_type="regression", objective_metric="validation:MAE"))

    assert params["MinMetric"] == "-4.5"
    assert prefixed["MinMetric"] == "-0.7"


def test_parameters_turn_tuning_off_without_plan_budget():
    assert pipeline_parameters(make_launch(max_tuning_jobs=0))["TuningEnabled"] == "false"
    assert pipeline_parameters(make_launch(tuning_enabled=False))["TuningEnabled"] == "false"
    # No ranges of its own: train.py tunes the trainer's default ranges.
    assert pipeline_parameters(make_launch(tuning_ranges={}))["TuningEnabled"] == "true"


def test_parameters_refuse_values_longer_than_the_api_takes():
    with pytest.raises(ValueError, match=r"longer than 1024 characters: \['Hyperparameters'\]"):
        pipeline_parameters(make_launch(hyperparameters={"note": "x" * 1100}))


def test_status_running_then_succeeded_with_steps_and_model_package(engine, stub):
    launch = make_launch(tuning_enabled=False)
    first_poll = [
        step("Preprocess", "Succeeded", 0, 4, Metadata=processing("pipelines-abc-Preprocess-1")),
        step("UseTuning", "Succeeded", 4, 4.1, Metadata={"Condition": {"Outcome": "False"}}),
        step("Train", "Executing", 5, Metadata={"TrainingJob": {
            "Arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-abc-Train-2"}}),
    ]
    expect_status(stub, "Executing", first_poll)

    running = engine.status(EXECUTION, launch)

    assert running == EngineStatus(state="running", steps=[
        StepStatus("preprocess", "succeeded", at(0), at(4), 240, "ml.m5.large", 1,
                   log="ProcessingJob pipelines-abc-Preprocess-1", definition_step="Preprocess"),
        StepStatus("train", "running", at(5), None, 1500, "ml.m5.xlarge", 2,
                   log="TrainingJob pipelines-abc-Train-2", definition_step="Train"),
        StepStatus("evaluate", "pending"),
        StepStatus("condition", "pending"),
        StepStatus("register", "pending"),
    ])

    finished = first_poll[:2] + [
        step("Train", "Succeeded", 5, 20, Metadata=first_poll[2]["Metadata"]),
        step("Evaluate", "Succeeded", 20, 23.5, Metadata=processing("pipelines-abc-Evaluate-3")),
        step("CheckMetric", "Succeeded", 23.5, 23.6, Metadata={"Condition": {"Outcome": "True"}}),
        step("Register", "Succeeded", 23.6, 23.7, Metadata={"RegisterModel": {"Arn": PACKAGE}}),
    ]
    expect_status(stub, "Succeeded", finished)
    # What AWS bills replaces the steps' wall time once the execution has finished.
    expect_processing_job(stub, "pipelines-abc-Preprocess-1", at(0.5), at(3.5))  # 180 s, not the step's 240
    expect_training_job(stub, "pipelines-abc-Train-2", billable=812)  # not the step's 900
    expect_processing_job(stub, "pipelines-abc-Evaluate-3", at(20.25), at(23.25))
    model_data = f"{launch.output_uri}model/job/output/model.tar.gz"
    stub.add_response(
        "describe_model_package",
        {"ModelPackageName": "mlaas-acme-models", "ModelPackageArn": PACKAGE, "CreationTime": at(24),
         "ModelPackageStatus": "Completed", "ModelPackageStatusDetails": {"ValidationStatuses": []},
         "InferenceSpecification": {"Containers": [{"Image": launch.training_image_uri, "ModelDataUrl": model_data}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}},
        {"ModelPackageName": PACKAGE},
    )

    succeeded = engine.status(EXECUTION, launch)

    assert succeeded.state == "succeeded"
    assert succeeded.failure_reason == ""
    assert succeeded.model_package_arn == PACKAGE
    assert succeeded.artifact_uri == "s3://mlaas-t-acme-123456789012/builds/B7K2Q9/model/job/output/model.tar.gz"
    assert [(s.name, s.status, s.billable_seconds, s.instance_type, s.instance_count) for s in succeeded.steps] == [
        ("preprocess", "succeeded", 180, "ml.m5.large", 1),
        ("train", "succeeded", 812, "ml.m5.xlarge", 2),
        ("evaluate", "succeeded", 180, "ml.m5.large", 1),
        ("condition", "succeeded", 0, "", 0),
        ("register", "succeeded", 0, "", 0),
    ]
    assert (succeeded.steps[4].started_at, succeeded.steps[4].ended_at) == (at(23.6), at(23.7))


def test_status_tuned_branch_maps_to_the_same_steps_and_reads_reports(client, stub):
    reports = {
        "s3://mlaas-t-acme-123456789012/builds/B7K2Q9/evaluation/evaluation.json":
            {"objective": {"name": "f1", "value": 0.82, "score": 0.82}, "metrics": {"f1": 0.82, "accuracy": 0.9}},
        "s3://mlaas-t-acme-123456789012/builds/B7K2Q9/preprocess/report/data_report.json": {"rows": 1200},
    }
    engine = SageMakerEngine(lambda: SageMakerGateway(client), PIPELINE, clock=lambda: NOW,
                             report_reader=reports.__getitem__)
    tuning_job = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/pipelines-abc-Tune"
    expect_status(stub, "Succeeded", [
        step("Preprocess", "Succeeded", 0, 2),
        step("UseTuning", "Succeeded", 2, 2),
        step("Tune", "Succeeded", 2, 12, Metadata={"TuningJob": {"Arn": tuning_job}}),
        step("EvaluateTuned", "Succeeded", 12, 13),
        step("CheckMetricTuned", "Succeeded", 13, 13),
        step("RegisterTuned", "Succeeded", 13, 13.5, Metadata={"RegisterModel": {"Arn": PACKAGE}}),
    ])
    jobs = [f"pipelines-abc-Tune-{i:03d}" for i in range(3)]
    stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [
        {"TrainingJobName": job, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}",
         "CreationTime": at(2), "TrainingJobStatus": "Completed", "TunedHyperParameters": {}} for job in jobs[:2]],
        "NextToken": "more"}, {"HyperParameterTuningJobName": "pipelines-abc-Tune", "MaxResults": 100})
    stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [
        {"TrainingJobName": jobs[2],
         "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{jobs[2]}",
         "CreationTime": at(2), "TrainingJobStatus": "Stopped", "TunedHyperParameters": {}}]},
        {"HyperParameterTuningJobName": "pipelines-abc-Tune", "MaxResults": 100, "NextToken": "more"})
    for job, billable in zip(jobs, (200, 150, None), strict=True):  # a job stopped before it billed has none
        expect_training_job(stub, job, billable=billable)
    stub.add_response("describe_model_package", {
        "ModelPackageName": "g", "ModelPackageArn": PACKAGE, "CreationTime": at(14),
        "ModelPackageStatus": "Completed", "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"}],
                                   "SupportedContentTypes": [], "SupportedResponseMIMETypes": []},
    })

    status = engine.status(EXECUTION, make_launch())

    assert [(s.name, s.status, s.billable_seconds) for s in status.steps] == [
        ("preprocess", "succeeded", 120), ("train", "succeeded", 350), ("evaluate", "succeeded", 60),
        ("condition", "succeeded", 0), ("register", "succeeded", 0)]
    assert status.model_package_arn == PACKAGE
    assert status.metrics == {"f1": 0.82, "accuracy": 0.9}
    assert status.data_report == {"rows": 1200}


def test_status_failed_step_gives_a_tenant_readable_reason(engine, stub):
    expect_status(stub, "Failed", [
        step("Preprocess", "Succeeded", 0, 2),
        step("UseTuning", "Succeeded", 2, 2),
        step("Train", "Failed", 2, 3, FailureReason=(
            "AlgorithmError: ValueError: could not convert string to float: 'yes' "
            "(role arn:aws:iam::123456789012:role/mlaas-tenant-acme)\nTraceback ...")),
    ], failure_reason="Step failure: One or multiple steps failed.")

    status = engine.status(EXECUTION, make_launch())

    assert status.state == "failed"
    assert status.failure_reason == (
        "The training step failed: AlgorithmError: ValueError: could not convert string to float: 'yes' "
        "(role <resource>).")
    assert [(s.name, s.status) for s in status.steps] == [
        ("preprocess", "succeeded"), ("train", "failed"), ("evaluate", "skipped"), ("condition", "skipped"),
        ("register", "skipped")]
    assert status.model_package_arn == ""


def test_status_failed_for_capacity_says_so_in_words(engine, stub):
    expect_status(stub, "Failed", [
        step("Preprocess", "Failed", 0, 1, FailureReason="CapacityError: Unable to provision requested ML compute "
                                                          "capacity. Please retry using a different ML instance type."),
    ])

    status = engine.status(EXECUTION, make_launch())

    assert status.failure_reason == ("The data preparation step failed: AWS had no free capacity for the plan's "
                                     "instance type; the build can be retried later.")


def test_status_failed_without_a_failed_step_uses_the_execution_reason(engine, stub):
    expect_status(stub, "Failed", [], failure_reason="Pipeline role arn:aws:iam::123456789012:role/x lacks access")

    status = engine.status(EXECUTION, make_launch())

    assert status.failure_reason == "The build failed: Pipeline role <resource> lacks access."


def test_status_metric_below_minimum_fails_the_condition_step(engine, stub):
    expect_status(stub, "Failed", [
        step("Preprocess", "Succeeded", 0, 1),
        step("UseTuning", "Succeeded", 1, 1),
        step("Train", "Succeeded", 1, 5),
        step("Evaluate", "Succeeded", 5, 6),
        step("MetricBelowMinimum", "Failed", 6.1, 6.2, FailureReason="The model's f1 is below the minimum",
             Metadata={"Fail": {"ErrorMessage": "The model's f1 is below the minimum"}}),
        step("CheckMetric", "Succeeded", 6, 6.1, Metadata={"Condition": {"Outcome": "False"}}),
    ], failure_reason="Step failure: One or multiple steps failed.")

    status = engine.status(EXECUTION, make_launch(tuning_enabled=False))

    sentence = "The model's f1 did not meet the plan's minimum (at least 0.7), so it was not registered."
    assert status.state == "failed"
    assert status.failure_reason == sentence
    assert status.steps[3] == StepStatus("condition", "failed", at(6), at(6.2), 0, "", 0, failure_reason=sentence,
                                         definition_step="MetricBelowMinimum")
    assert status.steps[4] == StepStatus("register", "skipped")


def test_status_throttled_raises_retryable_so_the_poller_backs_off(engine, stub):
    stub.add_client_error("describe_pipeline_execution", service_error_code="ThrottlingException",
                          service_message="Rate exceeded", http_status_code=400)

    with pytest.raises(AwsRetryableError) as raised:
        engine.status(EXECUTION, make_launch())

    assert raised.value.code == "ThrottlingException"


def test_status_throttled_while_listing_steps_is_retryable_too(engine, stub):
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"})
    stub.add_client_error("list_pipeline_execution_steps", service_error_code="ThrottlingException",
                          http_status_code=400)

    with pytest.raises(AwsRetryableError):
        engine.status(EXECUTION, make_launch())


@pytest.mark.parametrize("execution_status", ["Stopping", "Stopped"])
def test_status_stopping_and_stopped_are_cancelled(engine, stub, execution_status):
    step_status = "Stopping" if execution_status == "Stopping" else "Stopped"
    expect_status(stub, execution_status, [
        step("Preprocess", "Succeeded", 0, 2),
        step("UseTuning", "Succeeded", 2, 2),
        step("Train", step_status, 2, None if step_status == "Stopping" else 10),
    ])

    status = engine.status(EXECUTION, make_launch(tuning_enabled=False))

    assert status.state == "cancelled"
    assert status.failure_reason == ""
    assert [(s.name, s.status) for s in status.steps] == [
        ("preprocess", "succeeded"), ("train", "cancelled"), ("evaluate", "skipped"),
        ("condition", "skipped"), ("register", "skipped")]  # the step that was running is cancelled; the rest never ran
    assert status.steps[1].billable_seconds == (1680 if step_status == "Stopping" else 480)


def test_status_follows_step_pagination(engine, stub):
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"})
    stub.add_response("list_pipeline_execution_steps",
                      {"PipelineExecutionSteps": [step("Preprocess", "Succeeded", 0, 2)], "NextToken": "page-2"},
                      {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"})
    stub.add_response("list_pipeline_execution_steps",
                      {"PipelineExecutionSteps": [step("UseTuning", "Succeeded", 2, 2), step("Tune", "Executing", 2)]},
                      {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending", "NextToken": "page-2"})

    status = engine.status(EXECUTION, make_launch())

    assert [(s.name, s.status) for s in status.steps] == [
        ("preprocess", "succeeded"), ("train", "running"), ("evaluate", "pending"), ("condition", "pending"),
        ("register", "pending")]


def test_stop_stops_an_executing_pipeline(engine, stub):
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"})
    stub.add_response("stop_pipeline_execution", {"PipelineExecutionArn": EXECUTION},
                      {"PipelineExecutionArn": EXECUTION, "ClientRequestToken": client_token("stop", EXECUTION)})

    engine.stop(EXECUTION, make_launch())


@pytest.mark.parametrize("execution_status", ["Stopping", "Stopped", "Succeeded", "Failed"])
def test_stop_is_idempotent_when_already_finished(engine, stub, execution_status):
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": execution_status})

    engine.stop(EXECUTION, make_launch())  # no StopPipelineExecution call is stubbed


def test_stop_racing_the_end_of_the_execution_is_fine(engine, stub):
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"})
    stub.add_client_error("stop_pipeline_execution", service_error_code="ValidationException",
                          service_message="Pipeline execution is not in a stoppable state", http_status_code=400)
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Stopped"})

    engine.stop(EXECUTION, make_launch())


def test_gateway_model_package_group_that_exists_is_fine(client, stub):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/mlaas-acme-models"
    stub.add_client_error("create_model_package_group", service_error_code="ValidationException",
                          service_message=f"Model Package Group already exists: {arn}", http_status_code=400)
    stub.add_response("describe_model_package_group", {
        "ModelPackageGroupName": "mlaas-acme-models", "ModelPackageGroupArn": arn, "CreationTime": T0,
        "CreatedBy": {}, "ModelPackageGroupStatus": "Completed"}, {"ModelPackageGroupName": "mlaas-acme-models"})

    assert SageMakerGateway(client).create_model_package_group("mlaas-acme-models", "d", {"a": "b"}) == arn


def test_gateway_model_package_is_pending_manual_approval(client, stub):
    stub.add_response("create_model_package", {"ModelPackageArn": PACKAGE}, {
        "ModelPackageGroupName": "mlaas-acme-models",
        "ModelPackageDescription": "local build B7K2Q9",
        "ModelApprovalStatus": "PendingManualApproval",
        "InferenceSpecification": {"Containers": [{"Image": "img:1", "ModelDataUrl": "s3://b/model.tar.gz"}],
                                   "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        "CustomerMetadataProperties": {"build_code": "B7K2Q9", "metric.f1": "0.82"},
    })

    arn = SageMakerGateway(client).create_model_package(
        "mlaas-acme-models", "s3://b/model.tar.gz", {"f1": 0.82}, "img:1", "local build B7K2Q9",
        {"build_code": "B7K2Q9"})

    assert arn == PACKAGE
