"""Factories for the typed gateways, with the platform or a tenant identity."""

from __future__ import annotations

from core.aws.clients import TemporaryCredentials, make_client, platform_client, platform_config
from core.aws.costexplorer import CostExplorerGateway
from core.aws.dynamodb import DynamoDbGateway
from core.aws.events import EventsGateway
from core.aws.iam import IamGateway, StsGateway
from core.aws.s3 import S3Gateway
from core.aws.sqs import SqsGateway


def platform_s3() -> S3Gateway:
    return S3Gateway(platform_client("s3"))


def platform_iam() -> IamGateway:
    return IamGateway(platform_client("iam"))


def platform_sts() -> StsGateway:
    return StsGateway(platform_client("sts"))


def platform_events() -> EventsGateway:
    return EventsGateway(platform_client("events"))


def platform_sqs() -> SqsGateway:
    return SqsGateway(platform_client("sqs"))


def platform_dynamodb() -> DynamoDbGateway:
    return DynamoDbGateway(platform_client("dynamodb"))


def platform_cost_explorer() -> CostExplorerGateway:
    return CostExplorerGateway(platform_client("ce"))


def platform_sagemaker():
    from core.aws.sagemaker import SageMakerGateway

    return SageMakerGateway(platform_client("sagemaker"))


def platform_sagemaker_runtime():
    from core.aws.sagemaker import SageMakerRuntimeGateway

    return SageMakerRuntimeGateway(platform_client("sagemaker-runtime"))


def tenant_s3(credentials: TemporaryCredentials) -> S3Gateway:
    """An S3 gateway acting as the tenant's assumed role: IAM confines it."""
    return S3Gateway(make_client("s3", credentials.as_config(platform_config())))
