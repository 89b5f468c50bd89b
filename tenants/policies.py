"""IAM documents for tenant roles: what a tenant's identity may touch, exactly."""

from __future__ import annotations

from core.aws import arns


def tenant_trust_policy(platform_principal_arn: str) -> dict:
    """SageMaker and the platform's stable principal may assume the tenant role.

    `platform_principal_arn` is the platform's role or user
    (`IamGateway.stable_principal`), never the STS session that onboarded the
    tenant: a session ARN matches that one session only, so every other host
    and every replaced instance would be refused.
    """
    # SageMaker runs pipelines as this role; the platform assumes it for
    # tenant-scoped work (trusted by exact ARN, never by account root). One
    # statement names both: AWS accepts it, and moto's evaluator crashes on a
    # statement whose principal is a service alone.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow",
             "Principal": {"Service": "sagemaker.amazonaws.com", "AWS": platform_principal_arn},
             "Action": ["sts:AssumeRole", "sts:TagSession"]},
        ],
    }


def tenant_data_policy(*, bucket: str, prefix: str, model_package_group_arn: str = "",
                       partition: str = arns.DEFAULT_PARTITION) -> dict:
    """Allow the tenant's own bucket (silo) or prefix (pool), and nothing else."""
    objects = arns.s3(partition, bucket, f"{prefix}*")
    statements: list[dict] = [
        {
            "Sid": "TenantObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject",
                       "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [objects],
        },
    ]
    list_statement: dict = {
        "Sid": "TenantListing",
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
        "Resource": [arns.s3(partition, bucket)],
    }
    if prefix:
        list_statement["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    statements.append(list_statement)
    if model_package_group_arn:
        statements.append({
            "Sid": "TenantModelRegistry",
            "Effect": "Allow",
            "Action": ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage",
                       "sagemaker:ListModelPackages", "sagemaker:DescribeModelPackageGroup"],
            "Resource": [model_package_group_arn, model_package_group_arn.replace(
                ":model-package-group/", ":model-package/") + "/*"],
        })
    return {"Version": "2012-10-17", "Statement": statements}


def tenant_job_policy(*, partition: str, region: str, account_id: str, code_bucket: str, code_prefix: str,
                      step_repository: str) -> dict:
    """What the tenant's SageMaker jobs need beyond its data, and no more.

    Processing and training jobs run as the tenant role (the definition's
    RoleArn): they list and read the shared step code (an S3Prefix input),
    pull the step image from the one step repository (GetAuthorizationToken
    has no resource: AWS requires "*"), and write their logs to the groups
    SageMaker uses, which the platform creates (so no CreateLogGroup).
    """
    code = arns.s3(partition, code_bucket)
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "PipelineCodeRead", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [arns.s3(partition, code_bucket, f"{code_prefix}*")]},
        {"Sid": "PipelineCodeList", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [code],
         "Condition": {"StringLike": {"s3:prefix": [f"{code_prefix}*"]}}},
        {"Sid": "StepImageAuth", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        {"Sid": "StepImagePull", "Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": [arns.arn(partition=partition, service="ecr", region=region, account=account_id,
                               resource=f"repository/{step_repository}")]},
        {"Sid": "JobLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [arns.arn(partition=partition, service="logs", region=region, account=account_id,
                               resource="log-group:/aws/sagemaker/*")]},
    ]}
