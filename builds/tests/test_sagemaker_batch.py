"""Batch scoring on SageMaker, with botocore's Stubber on the injected client (moto records a transform job but
runs nothing and writes no output): the model and transform job a run creates (the input's S3 URI, the output
path, the plan's instance type for the input's size, tenant and plan tags), polling until Completed (the
answers joined to the input rows) or Failed (its FailureReason on the row)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from builds.models import BatchJob
from core.aws.sagemaker import SageMakerGateway

ROLE = "arn:aws:iam::123456789012:role/mlaas-tenant-acme"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-steps@sha256:abc"
TAGS = [{"Key": "mlaas:plan", "Value": "basic"}, {"Key": "mlaas:tenant", "Value": "acme"}]


def _transform_calls(stub, *, name: str, role: str, image: str, data: str, input_uri: str, output_uri: str,
                     instance_type: str, instance_count: int, tags: list[dict]) -> None:
    stub.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{name}"},
                      {"ModelName": name, "ExecutionRoleArn": role, "Tags": tags,
                       "PrimaryContainer": {"Image": image, "ModelDataUrl": data,
                                            "Environment": {"SAGEMAKER_PROGRAM": "serve"}}})
    stub.add_response("create_transform_job",
                      {"TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}"},
                      {"TransformJobName": name, "ModelName": name, "BatchStrategy": "MultiRecord",
                       "MaxPayloadInMB": 6,
                       "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                          "S3Uri": input_uri}},
                                          "ContentType": "text/csv", "SplitType": "Line"},
                       "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json",
                                           "AssembleWith": "Line"},
                       "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
                       "Tags": tags})


def _described(name: str, status: str, reason: str = "") -> dict:
    return {"TransformJobName": name, "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/"
                                                         f"{name}",
            "TransformJobStatus": status, "ModelName": name, "CreationTime": "2026-01-01T00:00:00Z",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/k"}}},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            **({"FailureReason": reason} if reason else {})}


def test_create_transform_job_makes_the_model_and_the_job_tagged(sagemaker_client, stub):
    _transform_calls(stub, name="mlaas-batch-1", role=ROLE, image=IMAGE, data="s3://mlaas-acme/models/m.tar.gz",
                     input_uri="s3://mlaas-acme/batch/c/transform/input.csv",
                     output_uri="s3://mlaas-acme/batch/c/transform-output/", instance_type="ml.m5.xlarge",
                     instance_count=2, tags=TAGS)

    name = SageMakerGateway(sagemaker_client).create_transform_job(
        job_name="mlaas-batch-1", image_uri=IMAGE, model_data_url="s3://mlaas-acme/models/m.tar.gz", role_arn=ROLE,
        input_uri="s3://mlaas-acme/batch/c/transform/input.csv",
        output_uri="s3://mlaas-acme/batch/c/transform-output/", instance_type="ml.m5.xlarge", instance_count=2,
        tags={"mlaas:tenant": "acme", "mlaas:plan": "basic"})

    assert name == "mlaas-batch-1"


def test_transform_instances_prefer_the_bands_processing_type_when_batch_transform_runs_on_it():
    from builds.batch import transform_instances
    from tenants.sizing import SizeBand

    assert transform_instances(SizeBand(None, "ml.m5.xlarge", 2, "ml.m5.2xlarge", 1)) == ("ml.m5.xlarge", 2, "")
    assert transform_instances(SizeBand(None, "ml.t3.medium", 1, "ml.t3.large", 1)) == (
        "ml.m5.large", 1, "; neither of the band's instances runs batch transform: ml.m5.large")


def test_transform_status_until_completed_or_failed_with_the_reason(sagemaker_client, stub):
    for status, reason in (("InProgress", ""), ("Completed", ""), ("Failed", "ClientError: model server 400")):
        stub.add_response("describe_transform_job", _described("j", status, reason), {"TransformJobName": "j"})
    gateway = SageMakerGateway(sagemaker_client)

    seen = [gateway.transform_job_status("j") for _ in range(3)]

    assert seen == [("InProgress", ""), ("Completed", ""), ("Failed", "ClientError: model server 400")]


REPORT = {"columns": [{"name": "y", "type": "target"}, {"name": "a", "type": "numeric"},
                      {"name": "b", "type": "categorical"}, {"name": "note", "type": "ignored"}]}


@pytest.fixture
def sagemaker_job(make_tenant, sagemaker_client, stub, monkeypatch, settings):
    """A started batch job of the sagemaker engine (its input columns in another order than training's), the
    platform's SageMaker gateway the stubbed one."""
    from builds import batch
    from core.aws import gateways
    from tests.web_support import create_build

    tenant = make_tenant(isolation="pool", plan="basic")  # provisioned on the emulator, before the stub
    settings.MLAAS_ENGINE = "sagemaker"
    monkeypatch.setattr(gateways, "platform_sagemaker", lambda: SageMakerGateway(sagemaker_client))
    version = create_build(tenant, version=True, approval="Approved", data_report=REPORT).model_version

    def make(rows: str) -> BatchJob:
        job = batch.batch_job_create(tenant=tenant, version=version, actor=None)
        batch.batch_input_put(job=job, body=rows.encode())
        batch.batch_job_start(job=job)
        job.refresh_from_db()
        _transform_calls(
            stub, name=batch.transform_job_name(job), role=tenant.role_arn,
            image=version.build.algorithm.training_image_uri,
            data=f"s3://{tenant.bucket}/{version.artifact_key}",
            input_uri=f"s3://{tenant.bucket}/{tenant.prefix}batch/{job.code}/transform/input.csv",
            output_uri=f"s3://{tenant.bucket}/{tenant.prefix}batch/{job.code}/transform-output/",
            instance_type=job.instance_type, instance_count=job.instance_count,
            tags=[{"Key": "mlaas:plan", "Value": "basic"}, {"Key": "mlaas:tenant", "Value": tenant.slug}])
        return job

    return tenant, make


def test_a_transform_job_runs_on_the_plans_instances_and_its_answers_join_the_input(sagemaker_job, stub):
    from builds import batch
    from core.aws import gateways

    tenant, make = sagemaker_job
    job = make("b,note,a\nred,x,1.5\nblue,,2\n\ngreen,z,3\n")
    name = batch.transform_job_name(job)
    s3 = gateways.platform_s3()

    # The basic plan's first size band (inputs up to 1 MiB): its processing type cannot run a transform job.
    assert (job.engine, job.status, job.instance_type, job.instance_count) == ("sagemaker", "queued",
                                                                               "ml.m5.large", 1)
    assert job.sizing_reason.endswith("; ml.t3.medium does not run batch transform, so the band's training "
                                      "instances do")
    assert batch.batch_job_run(job.pk) == "running"
    # Headerless, in training column order: each mini-batch is scored like the first.
    assert s3.get_bytes(tenant.bucket, batch.transform_input_key(job)) == b"1.5,red,x\n2,blue,\n3,green,z\n"

    stub.add_response("describe_transform_job", _described(name, "InProgress"), {"TransformJobName": name})
    assert batch.batch_jobs_tick()["batch_polled"] == 1
    job.refresh_from_db()
    assert (job.status, job.rows_in, job.transform_job_name) == ("running", 3, name)

    answers = [{"predictions": [{"class": "no", "probabilities": {"no": 0.9, "yes": 0.1}},
                                {"class": "yes", "probabilities": {"no": 0.3, "yes": 0.7}}]},
               {"predictions": [{"class": "no", "probabilities": {"no": 0.6, "yes": 0.4}}]}]
    s3.put_object(tenant.bucket, f"{batch.transform_output_prefix(job)}input.csv.out",
                  "\n".join(json.dumps(a) for a in answers).encode())
    stub.add_response("describe_transform_job", _described(name, "Completed"), {"TransformJobName": name})
    batch.batch_jobs_tick()

    job.refresh_from_db()
    assert (job.status, job.rows_in, job.rows_done, job.rows_out, job.error_message) == ("succeeded", 3, 3, 3, "")
    output = pd.read_csv(io.BytesIO(s3.get_bytes(tenant.bucket, job.output_key)), keep_default_na=False)
    assert output.to_dict(orient="list") == {
        "b": ["red", "blue", "green"], "note": ["x", "", "z"], "a": [1.5, 2.0, 3.0],
        "predicted_class": ["no", "yes", "no"], "probability_no": [0.9, 0.3, 0.6],
        "probability_yes": [0.1, 0.7, 0.4]}


def test_a_failed_transform_job_fails_the_row_with_its_reason(sagemaker_job, stub):
    from builds import batch

    _, make = sagemaker_job
    job = make("a,b\n1,red\n")
    name = batch.transform_job_name(job)
    assert batch.batch_job_run(job.pk) == "running"
    reason = "ClientError: See job logs for more information"
    stub.add_response("describe_transform_job", _described(name, "Failed", reason), {"TransformJobName": name})

    batch.batch_jobs_tick()

    job.refresh_from_db()
    assert (job.status, job.error_message, job.ended_at is not None) == ("failed", reason, True)


def test_a_version_without_recorded_columns_is_refused_before_any_transform(reference_data, stub):
    from builds import batch
    from tests.web_support import create_build, create_tenant

    acme = create_tenant(slug="acme")
    version = create_build(acme, version=True).model_version  # no data report
    job = BatchJob.objects.create(tenant=acme, model_version=version, engine="sagemaker", status="queued",
                                  input_key="batch/x/input.csv", output_key="batch/x/output.csv")

    assert batch.batch_job_run(job.pk) == "failed"  # the stub expects no call: none was made

    job.refresh_from_db()
    assert job.error_message == ("model version 1 has no recorded training columns, so its rows cannot be ordered "
                                 "for a batch transform; score it on the local engine or build it again")
