"""Running builds through the database: SageMaker start/poll (Stubber), AWS errors, ledger, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from builds import execution, services
from builds.engines.sagemaker import SageMakerEngine
from builds.models import Build, ModelVersion
from core.aws.sagemaker import SageMakerGateway

EXECUTION = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/mlaas-shared-build-pipeline/execution/abc123"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlaas-x-models/1"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture
def sagemaker_build(make_tenant, sagemaker_client, monkeypatch, settings):
    """A `starting` build on the SageMaker engine whose client is stubbed."""
    settings.MLAAS_ENGINE = "sagemaker"
    engine = SageMakerEngine(lambda: SageMakerGateway(sagemaker_client), settings.MLAAS_PIPELINE_NAME)
    monkeypatch.setattr(execution, "get_engine", lambda name=None: engine)
    tenant = make_tenant(isolation="silo", plan="basic")
    build, _ = services.build_create(tenant=tenant, dataset_key="uploads/data.csv", target="diagnosis", dataset_size=16)
    services.build_transition(build, Build.Status.STARTING, reason="test")
    return build


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_sagemaker_build_starts_polls_and_registers(sagemaker_build, stub):
    build = sagemaker_build
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION})
    assert execution.build_execute(build.pk) == "started"
    build.refresh_from_db()
    assert (build.status, build.engine, build.execution_ref) == ("running", "sagemaker", EXECUTION)

    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Succeeded"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "Preprocess", "StepStatus": "Succeeded", "StartTime": at(0), "EndTime": at(2)},
        {"StepName": "Train", "StepStatus": "Succeeded", "StartTime": at(2), "EndTime": at(7)},
        {"StepName": "Evaluate", "StepStatus": "Succeeded", "StartTime": at(7), "EndTime": at(8)},
        {"StepName": "CheckMetric", "StepStatus": "Succeeded", "StartTime": at(8), "EndTime": at(8)},
        {"StepName": "Register", "StepStatus": "Succeeded", "StartTime": at(8), "EndTime": at(8),
         "Metadata": {"RegisterModel": {"Arn": PACKAGE}}},
    ]})
    stub.add_response("describe_model_package", {
        "ModelPackageName": "g", "ModelPackageArn": PACKAGE, "CreationTime": at(9), "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{build.dataset_bucket}/m/model.tar.gz"}],
                                   "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}})
    Build.objects.filter(pk=build.pk).update(poll_after=timezone.now())
    assert execution.poll_running() == 1

    build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED
    assert [(s.name, s.billable_seconds) for s in build.steps.all()] == [
        ("preprocess", 120), ("train", 300), ("evaluate", 60), ("condition", 0), ("register", 0)]
    assert ModelVersion.objects.get(build=build).arn == PACKAGE
    from billing.services import metering_run

    assert metering_run() == 1
    assert [line.billable_seconds for line in build.cost_lines.order_by("step__order")] == [120, 300, 60]


def test_sagemaker_start_throttled_requeues_the_build(sagemaker_build, stub):
    stub.add_client_error("start_pipeline_execution", service_error_code="ThrottlingException",
                          service_message="Rate exceeded", http_status_code=400)
    assert execution.build_execute(sagemaker_build.pk) == "requeued"
    sagemaker_build.refresh_from_db()
    assert sagemaker_build.status == Build.Status.QUEUED
    assert sagemaker_build.transitions.last().reason == (
        "AWS was busy (ThrottlingException); the build will retry in 5 s")
    from builds.dispatch import dispatch_pending

    assert dispatch_pending() == []  # backing off: not restarted at once
    Build.objects.filter(pk=sagemaker_build.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    assert dispatch_pending() == [sagemaker_build.pk]


def test_sagemaker_start_throttled_too_often_fails(sagemaker_build, stub):
    Build.objects.filter(pk=sagemaker_build.pk).update(attempts=execution.MAX_TRANSIENT_ATTEMPTS)
    stub.add_client_error("start_pipeline_execution", service_error_code="ThrottlingException",
                          service_message="Rate exceeded", http_status_code=400)
    assert execution.build_execute(sagemaker_build.pk) == "failed"
    sagemaker_build.refresh_from_db()
    assert sagemaker_build.failure_reason.startswith("the build could not start: ")


def test_sagemaker_start_validation_error_fails_with_reason(sagemaker_build, stub):
    stub.add_client_error("start_pipeline_execution", service_error_code="ValidationException",
                          service_message="Pipeline mlaas-shared-build-pipeline does not exist", http_status_code=400)
    assert execution.build_execute(sagemaker_build.pk) == "failed"
    sagemaker_build.refresh_from_db()
    assert sagemaker_build.status == Build.Status.FAILED
    assert sagemaker_build.failure_reason.startswith("the build could not start: ")
    assert "does not exist" in sagemaker_build.failure_reason


def test_build_of_an_algorithm_without_a_pinned_step_image_fails_before_starting(sagemaker_build, stub):
    from builds.models import Algorithm

    Algorithm.objects.filter(pk=sagemaker_build.algorithm_id).update(image_digest="")  # as migrated, never saved
    assert execution.build_execute(sagemaker_build.pk) == "failed"  # no StartPipelineExecution: the stub has none
    sagemaker_build.refresh_from_db()
    assert sagemaker_build.failure_reason == (
        f"the algorithm {sagemaker_build.algorithm.name} has no step image pinned yet; the vendor must save it "
        "again (Algorithms page) before it can train")


def test_poll_throttled_backs_off_without_failing(sagemaker_build, stub):
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION})
    execution.build_execute(sagemaker_build.pk)
    for _ in range(3):
        stub.add_client_error("describe_pipeline_execution", service_error_code="ThrottlingException",
                              http_status_code=400)
        Build.objects.filter(pk=sagemaker_build.pk).update(poll_after=timezone.now())
        execution.poll_running()
    sagemaker_build.refresh_from_db()
    assert (sagemaker_build.status, sagemaker_build.poll_errors) == ("running", 3)
    delay = (sagemaker_build.poll_after - timezone.now()).total_seconds()
    assert 35 < delay <= 40  # 5 s x 2^3


def test_second_claim_of_a_build_does_nothing(sagemaker_build, stub):
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION})
    assert execution.build_execute(sagemaker_build.pk) == "started"
    assert execution.build_execute(sagemaker_build.pk) == "not-claimed"  # a job delivered twice


def test_ledger_write_failure_is_retried_and_not_lost(make_tenant, monkeypatch, settings):
    from builds import ledger
    from core.aws import gateways
    from core.aws.errors import AwsRetryableError

    tenant = make_tenant(isolation="pool", plan="basic")
    build, _ = services.build_create(tenant=tenant, dataset_key=f"{tenant.upload_prefix}d.csv", target="t",
                                     dataset_size=16)
    services.build_transition(build, Build.Status.FAILED, reason="only one class in target `t`")
    real = gateways.platform_dynamodb

    class Down:
        def update_item(self, *args, **kwargs):
            raise AwsRetryableError("DynamoDB throttled", code="ProvisionedThroughputExceededException")

    monkeypatch.setattr(gateways, "platform_dynamodb", lambda: Down())
    with pytest.raises(AwsRetryableError):
        ledger.ledger_write(build=build)  # the RQ job fails and is retried
    build.refresh_from_db()
    assert not build.ledger_written
    monkeypatch.setattr(gateways, "platform_dynamodb", real)
    Build.objects.filter(pk=build.pk).update(ended_at=timezone.now() - timedelta(minutes=5))
    assert ledger.ledger_backfill() == 1
    item = real().get_item(settings.MLAAS_LEDGER_TABLE, {"tenant": tenant.slug, "build": str(build.code)})
    assert (item["status"], item["failure_reason"]) == ("failed", "only one class in target `t`")


def test_cancel_queued_build_is_immediate(make_tenant):
    tenant = make_tenant(isolation="pool", plan="basic")
    build, _ = services.build_create(tenant=tenant, dataset_key=f"{tenant.upload_prefix}d.csv", target="t",
                                     dataset_size=16)
    services.build_cancel(build=build)
    build.refresh_from_db()
    assert (build.status, build.transitions.last().reason) == ("cancelled", "cancelled by system")


def _job_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:{kind}/{name}"


def test_sagemaker_metering_uses_the_seconds_aws_bills(sagemaker_build, stub):
    """Wall time while running (costs show at once); BillableTimeInSeconds / job times once finished."""
    from billing.services import metering_run
    from builds.tests.test_sagemaker_engine import expect_processing_job, expect_training_job

    build = sagemaker_build
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION})
    execution.build_execute(build.pk)
    preprocess = {"StepName": "Preprocess", "StepStatus": "Succeeded", "StartTime": at(0), "EndTime": at(2),
                  "Metadata": {"ProcessingJob": {"Arn": _job_arn("processing-job", "p-1")}}}
    train = {"StepName": "Train", "StartTime": at(2),
             "Metadata": {"TrainingJob": {"Arn": _job_arn("training-job", "t-2")}}}
    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        preprocess, {**train, "StepStatus": "Executing"}]})
    Build.objects.filter(pk=build.pk).update(poll_after=timezone.now())
    execution.poll_running()
    metering_run()
    assert [(line.step.name, line.billable_seconds) for line in build.cost_lines.all()] == [("preprocess", 120)]

    stub.add_response("describe_pipeline_execution",
                      {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Failed"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        preprocess, {**train, "StepStatus": "Succeeded", "EndTime": at(7)},
        {"StepName": "Evaluate", "StepStatus": "Failed", "StartTime": at(7), "EndTime": at(8),
         "FailureReason": "bad model", "Metadata": {"ProcessingJob": {"Arn": _job_arn("processing-job", "e-3")}}}]})
    expect_processing_job(stub, "p-1", at(0.5), at(2))
    expect_training_job(stub, "t-2", billable=251)
    expect_processing_job(stub, "e-3", at(7.25), at(8))
    Build.objects.filter(pk=build.pk).update(poll_after=timezone.now())
    execution.poll_running()
    build.refresh_from_db()
    assert build.status == Build.Status.FAILED

    assert metering_run() == 1
    assert [(line.step.name, line.billable_seconds) for line in build.cost_lines.order_by("step__order")] == [
        ("preprocess", 90), ("train", 251), ("evaluate", 45)]
    assert build.charge.amount == sum(line.amount for line in build.cost_lines.all())
