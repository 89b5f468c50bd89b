"""The IAM role SageMaker Pipelines runs the shared pipeline as.

The pipeline role only orchestrates: it creates the jobs, passing each
build's tenant role to them (jobs run as the tenant, so IAM confines them to
the tenant's data), reads the evaluation report for the metric condition and
registers model packages. Used by `manage.py deploy_pipeline` when
MLAAS_PIPELINE_ROLE_ARN is not set.
"""

from __future__ import annotations

from typing import Any

from core.aws import arns
from core.aws.iam import IamGateway

PIPELINE_ROLE_NAME = "mlaas-pipeline-execution"
PIPELINE_POLICY_NAME = "pipeline-orchestration"


def pipeline_trust_policy(principal_arn: str) -> dict:
    # The emulator crashes assuming a role trusted by a service principal
    # alone, so the platform's own (stable) principal is trusted too, by exact ARN.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": "sts:AssumeRole"},
        ],
    }


def pipeline_permissions(*, account_id: str, region: str, resource_prefix: str,
                         partition: str = arns.DEFAULT_PARTITION) -> dict:
    def sagemaker(resource: str) -> str:
        return arns.sagemaker(partition, region, account_id, resource)

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunBuildJobs",
                "Effect": "Allow",
                "Action": [
                    "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob", "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                    "sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:StopHyperParameterTuningJob", "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                    "sagemaker:AddTags", "sagemaker:ListTags",
                ],
                "Resource": [sagemaker("processing-job/*"), sagemaker("training-job/*"),
                             sagemaker("hyper-parameter-tuning-job/*")],
            },
            {
                "Sid": "RegisterTenantModels",
                "Effect": "Allow",
                "Action": ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage",
                           "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
                "Resource": [sagemaker(f"model-package-group/{resource_prefix}-*"),
                             sagemaker(f"model-package/{resource_prefix}-*")],
            },
            {
                "Sid": "PassTenantRolesToJobs",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": arns.iam_role(partition, account_id, f"{resource_prefix}-tenant-*"),
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
            {
                # Evaluation reports (PropertyFile) in tenant buckets, step code in the code bucket.
                "Sid": "ReadReportsAndCode",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [arns.s3(partition, f"{resource_prefix}-*", "*")],
            },
        ],
    }


def ensure_pipeline_role(iam_client: Any, *, caller_arn: str, account_id: str, region: str,
                         resource_prefix: str = "mlaas", tags: dict[str, str] | None = None,
                         role_name: str = PIPELINE_ROLE_NAME) -> str:
    """Create or reuse the pipeline role; trust and permissions are (re)applied every time."""
    iam = IamGateway(iam_client)
    trust = pipeline_trust_policy(iam.stable_principal(caller_arn))
    arn = iam.ensure_role(role_name, trust_policy=trust, tags=tags or {"mlaas:component": "platform"},
                          description="SageMaker Pipelines: orchestrates the shared MLaaS build pipeline")
    iam.update_trust_policy(role_name, trust)
    iam.put_role_policy(role_name, PIPELINE_POLICY_NAME,
                        pipeline_permissions(account_id=account_id, region=region, resource_prefix=resource_prefix,
                                             partition=arns.partition_of(caller_arn)))
    return arn
