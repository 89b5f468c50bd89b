"""The platform's shared resources, created once per account at deploy time, not per tenant.

`manage.py platform_bootstrap` (run by `make run`) makes the SQS intake queue with its
dead-letter queue, one EventBridge rule per isolation model (one rule for all tenants of a
model: 300 rules per bus is AWS's default quota) and the DynamoDB build ledger, and on the
emulator registers the step image (a hash of the step package: milliseconds) so the demo's
ECR holds the image the algorithms pin. On AWS it only reports the step image: building it
needs a container engine (`manage.py image_publish`). Every call is idempotent: running it
again changes nothing that is already right.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from core.aws import arns, gateways
from tenants import naming


@dataclass(frozen=True)
class PlatformResource:
    name: str
    arn: str
    description: str


def intake_resources_ensure() -> list[PlatformResource]:
    sqs = gateways.platform_sqs()
    events = gateways.platform_events()
    tags = naming.platform_tags()
    url, queue_arn = sqs.ensure_queue(settings.MLAAS_INTAKE_QUEUE_NAME, tags=tags)
    # Intake records a rejection after MLAAS_INTAKE_MAX_ATTEMPTS (x4 for transient errors); the dead-letter
    # queue keeps what even that could not handle, such as a message that crashes the intake process.
    _, dead_letter_arn = sqs.ensure_queue(naming.intake_dead_letter_queue(), tags=tags)
    sqs.set_dead_letter_queue(url, dead_letter_arn=dead_letter_arn,
                              max_receive_count=settings.MLAAS_INTAKE_MAX_ATTEMPTS * 4 + 5)
    account = gateways.platform_sts().account_id()
    patterns = {
        "silo": {"bucket": {"name": [{"prefix": naming.silo_bucket_prefix()}]},
                 "object": {"key": [{"prefix": "uploads/"}]}},
        "pool": {"bucket": {"name": [naming.pool_bucket(account)]},
                 "object": {"key": [{"wildcard": "tenants/*/uploads/*"}]}},
    }
    resources = [PlatformResource("intake queue", queue_arn, "SQS queue the intake loop polls"),
                 PlatformResource("intake dead-letter queue", dead_letter_arn,
                                  "Messages intake could not handle even after its retries")]
    rule_arns = []
    for isolation, detail in patterns.items():
        rule = naming.intake_rule(isolation)
        pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}
        arn = events.put_rule(rule, pattern=pattern, tags=tags,
                              description=f"Uploads of {isolation} tenants to the intake queue")
        events.put_sqs_target(rule, target_id="intake-queue", queue_arn=queue_arn)
        rule_arns.append(arn)
        resources.append(PlatformResource(f"intake rule ({isolation})", arn,
                                          f"S3 Object Created in {isolation} upload locations -> intake queue"))
    sqs.allow_eventbridge(url, queue_arn, rule_arns)
    return resources


def ledger_table_ensure() -> PlatformResource:
    arn = gateways.platform_dynamodb().ensure_ledger_table(settings.MLAAS_LEDGER_TABLE, tags=naming.platform_tags())
    return PlatformResource("build ledger", arn, "DynamoDB table: one item per finished build")


def step_image_ensure() -> PlatformResource:
    """On the emulator, publish the step image; on AWS, report whether `image_publish` has pushed it."""
    from builds.step_image import DEFAULT_TAG, step_image_current
    from core.aws.errors import AwsNotFound

    try:
        image = step_image_current(tag=DEFAULT_TAG)
    except AwsNotFound:
        return PlatformResource("step image", "", f"not published: run `manage.py image_publish --tag {DEFAULT_TAG}` "
                                                  "on a machine with Docker")
    return PlatformResource("step image", image.pinned_uri,
                            f"ECR {naming.step_image_repository()}:{DEFAULT_TAG}, the image algorithms pin")


def marketplace_queue_resources() -> list[PlatformResource]:
    """With AWS Marketplace on (a product code): its notification queue, subscribed to its SNS topics."""
    if not settings.MLAAS_MARKETPLACE_PRODUCT_CODE:
        return []
    from tenants.marketplace import marketplace_queue_ensure

    url = marketplace_queue_ensure(topic_arns=settings.MLAAS_MARKETPLACE_TOPIC_ARNS)
    return [PlatformResource("marketplace queue", url, "SQS queue of AWS Marketplace subscription notifications "
                                                       f"({len(settings.MLAAS_MARKETPLACE_TOPIC_ARNS)} SNS topics)")]


def job_log_groups_ensure() -> list[PlatformResource]:
    """The CloudWatch Logs groups SageMaker jobs write to: made by the platform, so tenant roles need no
    logs:CreateLogGroup, only CreateLogStream/PutLogEvents under /aws/sagemaker/."""
    from core.aws.clients import platform_client
    from core.aws.job_runtime import LOG_GROUPS

    logs = platform_client("logs")
    account = gateways.platform_sts().account_id()
    resources = []
    for group in LOG_GROUPS:
        try:
            logs.create_log_group(logGroupName=group, tags=naming.platform_tags())
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        arn = arns.arn(partition=gateways.platform_identity().partition, service="logs", region=settings.AWS_REGION,
                       account=account, resource=f"log-group:{group}")
        resources.append(PlatformResource(f"log group {group}", arn, "CloudWatch Logs of the builds' jobs"))
    return resources


def platform_bootstrap() -> list[PlatformResource]:
    """Create (or confirm) every shared platform resource; returns what exists afterwards."""
    return [*intake_resources_ensure(), ledger_table_ensure(), step_image_ensure(), *job_log_groups_ensure(),
            *marketplace_queue_resources()]
