"""Job permissions, proven by denial: the local runtime uses the tenant role as SageMaker's jobs do.

Each test takes one permission out of the tenant role's `tenant-jobs` policy (IAM enforcement is on in
the emulator) and runs a real build (upload, queue, worker, runtime): the step that needs the permission
fails with a reason naming the denied action. Who refuses: S3 and STS calls are refused by the emulator
itself; ECR and CloudWatch Logs by the runtime's own policy evaluation (core.aws.policy_check), since moto
authorizes those against the resource "*" only.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from builds.models import Build
from core.aws import gateways
from core.aws.clients import platform_client
from core.aws.job_runtime import PROCESSING_LOG_GROUP, TRAINING_LOG_GROUP
from tenants import naming
from tenants.provisioning import JOB_POLICY
from tests.test_build_outcomes import run_build

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def breast_cancer(tmp_path) -> bytes:
    from mlaas_steps.sample_data import write_sample_csvs

    return Path(write_sample_csvs(tmp_path)["breast_cancer"]).read_bytes()


def _without(tenant, sid: str, action: str | None = None) -> dict:
    """Put the tenant's job policy back without statement `sid` (or without one action of it)."""
    iam = gateways.platform_iam()
    document = copy.deepcopy(iam.get_role_policy(naming.role_name(tenant.slug), JOB_POLICY))
    statements = []
    for statement in document["Statement"]:
        if statement["Sid"] == sid:
            if action is None:
                continue
            statement["Action"] = [a for a in statement["Action"] if a != action]
        statements.append(statement)
    assert len(statements) < len(document["Statement"]) or action is not None
    document["Statement"] = statements
    iam.put_role_policy(naming.role_name(tenant.slug), JOB_POLICY, document)
    return document


@pytest.mark.parametrize(("sid", "action", "denied"), [
    ("PipelineCodeRead", None, "s3:GetObject"),
    ("PipelineCodeList", None, "s3:ListBucket"),
    ("StepImageAuth", None, "ecr:GetAuthorizationToken"),
    ("StepImagePull", "ecr:BatchGetImage", "ecr:BatchGetImage"),
    ("StepImagePull", "ecr:GetDownloadUrlForLayer", "ecr:GetDownloadUrlForLayer"),
    ("JobLogs", "logs:CreateLogStream", "logs:CreateLogStream"),
    ("JobLogs", "logs:PutLogEvents", "logs:PutLogEvents"),
])
def test_a_missing_job_permission_fails_the_step_naming_the_action(make_tenant, breast_cancer, clean_redis,
                                                                   sid, action, denied):
    tenant = make_tenant(isolation="pool", plan="basic", target="diagnosis")
    _without(tenant, sid, action)

    build = run_build(tenant, "cancer.csv", breast_cancer)

    assert build.status == Build.Status.FAILED
    preprocess = build.steps.get(name="preprocess")
    assert preprocess.status == "failed", build.failure_reason
    assert preprocess.failure_reason == f"access was refused: the tenant role may not perform {denied}."
    assert build.failure_reason == (f"The data preparation step failed: access was refused: the tenant role may "
                                    f"not perform {denied}.")
    assert [s.status for s in build.steps.exclude(name="preprocess")] == ["skipped"] * 4


def test_a_role_without_its_data_cannot_read_the_upload(make_tenant, breast_cancer, clean_redis):
    """The tenant's own data permission is what lets Preprocess list and read its input (emulator-enforced)."""
    tenant = make_tenant(isolation="silo", plan="basic", target="diagnosis")
    iam = gateways.platform_iam()
    data = iam.get_role_policy(naming.role_name(tenant.slug), "tenant-data")
    data["Statement"] = [s for s in data["Statement"] if s["Sid"] != "TenantListing"]
    iam.put_role_policy(naming.role_name(tenant.slug), "tenant-data", data)

    build = run_build(tenant, "cancer.csv", breast_cancer)

    assert build.status == Build.Status.FAILED
    assert build.steps.get(name="preprocess").failure_reason == (
        "access was refused: the tenant role may not perform s3:ListBucket.")


def test_with_every_job_permission_the_build_succeeds_and_its_jobs_log_to_cloudwatch(
        make_tenant, breast_cancer, clean_redis):
    tenant = make_tenant(isolation="silo", plan="basic", target="diagnosis")

    build = run_build(tenant, "cancer.csv", breast_cancer)

    assert build.status == Build.Status.SUCCEEDED, build.failure_reason
    logs = platform_client("logs")
    jobs = {step.name: step.log.split("\n", 1)[0].split() for step in build.steps.filter(
        name__in=["preprocess", "train", "evaluate"])}
    assert {name: (words[0], words[4]) for name, words in jobs.items()} == {
        "preprocess": ("ProcessingJob", PROCESSING_LOG_GROUP), "train": ("TrainingJob", TRAINING_LOG_GROUP),
        "evaluate": ("ProcessingJob", PROCESSING_LOG_GROUP)}
    for words in jobs.values():
        job, group, stream = words[1], words[4], words[5].rstrip(")")
        assert stream.startswith(f"{job}/algo-1-")
        events = logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
        assert any("step succeeded" in event["message"] for event in events), job
