"""A SageMaker build whose worker died between its claim and StartPipelineExecution's answer.

Against the emulator's SageMaker (moto): the worker "dies" (a BaseException no handler
catches, as a killed process leaves the row) either after the start reached AWS or before
it did. The reconciler then adopts the one execution, or starts exactly one, and the
build is polled like any other: never left `running` without an execution, holding a slot.
moto ignores ClientRequestToken (every start makes a new execution), so the token's
stability is tested with Stubber in test_sagemaker_engine.py; here the display name and
the BuildCode parameter find the execution.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from builds import execution, services
from builds.engines.sagemaker import SageMakerEngine
from builds.models import Build
from core.aws import gateways

PIPELINE = "mlaas-recovery-test-pipeline"


class WorkerDied(BaseException):
    """What a SIGKILL does to build_execute: nothing after this line runs, no handler sees it."""


@pytest.fixture
def sagemaker_setup(make_tenant, settings, clean_redis):
    settings.MLAAS_ENGINE = "sagemaker"
    settings.MLAAS_PIPELINE_NAME = PIPELINE
    sagemaker = gateways.platform_sagemaker()
    account = gateways.platform_identity().account
    sagemaker.upsert_pipeline(PIPELINE, {"Version": "2020-12-01", "Parameters": [], "Steps": []},
                              f"arn:aws:iam::{account}:role/mlaas-pipeline-execution", {})
    tenant = make_tenant(isolation="pool", plan="basic")
    build, _ = services.build_create(tenant=tenant, dataset_key=f"{tenant.upload_prefix}d.csv", target="diagnosis",
                                     dataset_size=16)
    services.build_transition(build, Build.Status.STARTING, reason="test")
    return build, sagemaker


def _executions_of(sagemaker, build: Build) -> list[str]:
    summaries = sagemaker.client.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]
    return [s["PipelineExecutionArn"] for s in summaries
            if s["PipelineExecutionDisplayName"].startswith(f"{build.tenant.slug}-{build.code}-")]


def _die_in_start(monkeypatch, *, after_aws: bool) -> None:
    real_start = SageMakerEngine.start

    def start(self, launch):
        if after_aws:
            real_start(self, launch)
        raise WorkerDied

    monkeypatch.setattr(SageMakerEngine, "start", start)


def _worker_lost_long_ago(build: Build, settings) -> None:
    settings.MLAAS_WORKER_LOST_AFTER_SECONDS = 60
    Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))


@pytest.mark.parametrize("after_aws", [True, False], ids=["start-reached-aws", "start-never-sent"])
def test_lost_start_is_recovered_with_exactly_one_execution(sagemaker_setup, monkeypatch, settings, after_aws):
    build, sagemaker = sagemaker_setup
    with monkeypatch.context() as patch:
        _die_in_start(patch, after_aws=after_aws)
        with pytest.raises(WorkerDied):
            execution.build_execute(build.pk)
    build.refresh_from_db()
    assert (build.status, build.execution_ref, build.attempts) == ("running", "", 1)
    started = _executions_of(sagemaker, build)
    assert len(started) == (1 if after_aws else 0)

    assert execution.reconcile()["start_lost"] == 0  # not yet lost: the worker may still be starting it
    _worker_lost_long_ago(build, settings)
    counts = execution.reconcile()

    build.refresh_from_db()
    executions = _executions_of(sagemaker, build)
    assert counts["start_lost"] == 1
    assert len(executions) == 1
    assert build.execution_ref == executions[0]
    if after_aws:
        assert executions == started  # adopted, not started again
    assert (build.status, build.attempts) == ("running", 1)
    assert build.worker_id.startswith("recovery:")
    assert execution.reconcile()["start_lost"] == 0  # recovered once
    assert list(Build.objects.filter(status="running", engine="sagemaker", execution_ref="")) == []


def test_lost_start_refused_by_aws_fails_the_build_and_frees_its_slot(sagemaker_setup, monkeypatch, settings):
    build, sagemaker = sagemaker_setup
    with monkeypatch.context() as patch:
        _die_in_start(patch, after_aws=False)
        with pytest.raises(WorkerDied):
            execution.build_execute(build.pk)
    sagemaker.client.delete_pipeline(PipelineName=PIPELINE, ClientRequestToken="x" * 32)
    _worker_lost_long_ago(build, settings)

    execution.reconcile()

    build.refresh_from_db()
    assert build.status == Build.Status.FAILED
    assert build.failure_reason.startswith("the build could not start: ")


def test_a_slow_worker_answering_after_the_recovery_keeps_the_recorded_execution(sagemaker_setup, settings):
    """The emulator ignores the token, so the slow worker's start makes a second execution: it is not recorded."""
    build, sagemaker = sagemaker_setup
    services.build_transition(build, Build.Status.RUNNING, expect=Build.Status.STARTING, reason="claimed",
                              engine="sagemaker", attempts=1)
    _worker_lost_long_ago(build, settings)
    assert execution.recover_lost_start(build) == "restarted"
    build.refresh_from_db()
    recorded = build.execution_ref

    engine = execution.get_engine("sagemaker")
    launch = execution.launch_for(build)
    execution._record_execution(build, engine, launch, engine.start(launch))  # moto: stop fails, logged

    build.refresh_from_db()
    assert build.execution_ref == recorded
