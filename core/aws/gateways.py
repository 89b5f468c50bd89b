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

    return SageMakerGateway(platform_client("sagemaker"), pacer=sagemaker_pacer())


def sagemaker_pacer():
    """Every worker's SageMaker calls share one budget in Redis; StartPipelineExecution has its own on top."""
    from django.conf import settings

    from core.ratebudget import ControlPlanePacer, RateBudget, redis_for

    redis = redis_for(settings.REDIS_URL)
    calls, starts = settings.MLAAS_SAGEMAKER_CALLS_PER_SECOND, settings.MLAAS_SAGEMAKER_STARTS_PER_SECOND
    return ControlPlanePacer(
        shared=[RateBudget(redis, "sagemaker", rate=calls, burst=calls)],
        budgets={"start_pipeline_execution": [RateBudget(redis, "sagemaker:start", rate=starts, burst=starts)]})


def tenant_s3(credentials: TemporaryCredentials) -> S3Gateway:
    """An S3 gateway acting as the tenant's assumed role: IAM confines it."""
    return S3Gateway(make_client("s3", credentials.as_config(platform_config())))
