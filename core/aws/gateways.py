"""Factories for the typed gateways, with the platform or a tenant identity."""

from __future__ import annotations

import threading

from core.aws.arns import CallerIdentity
from core.aws.clients import AwsConfig, TemporaryCredentials, make_client, platform_client, platform_config
from core.aws.costexplorer import CostExplorerGateway
from core.aws.dynamodb import DynamoDbGateway
from core.aws.ecr import EcrGateway
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


_identities: dict[AwsConfig, CallerIdentity] = {}
_identities_lock = threading.Lock()


def platform_identity() -> CallerIdentity:
    """Who the platform is (account, ARN, partition): asked once per configured identity."""
    config = platform_config()
    with _identities_lock:
        known = _identities.get(config)
    if known is None:
        known = platform_sts().caller_identity()
        with _identities_lock:
            _identities[config] = known
    return known


def platform_partition() -> str:
    return platform_identity().partition


def platform_events() -> EventsGateway:
    return EventsGateway(platform_client("events"))


def platform_sqs() -> SqsGateway:
    return SqsGateway(platform_client("sqs"))


def platform_dynamodb() -> DynamoDbGateway:
    return DynamoDbGateway(platform_client("dynamodb"))


def platform_ecr() -> EcrGateway:
    return EcrGateway(platform_client("ecr"))


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


def platform_sagemaker_runtime():
    from core.aws.sagemaker import SageMakerRuntimeGateway

    return SageMakerRuntimeGateway(platform_client("sagemaker-runtime"))


def tenant_s3(credentials: TemporaryCredentials) -> S3Gateway:
    """An S3 gateway acting as the tenant's assumed role: IAM confines it."""
    return S3Gateway(make_client("s3", credentials.as_config(platform_config())))


def platform_marketplace_metering():
    from core.aws.marketplace import MarketplaceMeteringGateway

    return MarketplaceMeteringGateway(platform_client("meteringmarketplace"))


def platform_sns():
    from core.aws.sns import SnsGateway

    return SnsGateway(platform_client("sns"))
