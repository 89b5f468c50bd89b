"""manage.py deploy_pipeline [--name NAME] [--bucket BUCKET] [--print]

Builds the one shared pipeline definition with the sagemaker SDK and creates or
updates the pipeline with the platform identity. Run at deploy time (and by
`make run` against the emulator); the web process never builds definitions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand


@dataclass(frozen=True)
class PipelineDeployment:
    pipeline_arn: str
    role_arn: str
    code_bucket: str
    parameter_names: tuple[str, ...]


def code_bucket_name(*, account_id: str, region: str) -> str:
    """Where the SDK uploads the step launchers (named in core.aws.pipeline_definition)."""
    from core.aws.pipeline_definition import code_bucket_name as name

    return name(resource_prefix=settings.MLAAS_RESOURCE_PREFIX, account_id=account_id, region=region)


def pipeline_definition_build(*, name: str, bucket: str = "") -> tuple[dict, str]:
    """The definition and the code bucket it references, built as the platform."""
    from core.aws import gateways
    from core.aws.clients import platform_config
    from core.aws.pipeline_definition import build_pipeline_definition

    config = platform_config()
    account_id = gateways.platform_sts().account_id()
    bucket = bucket or code_bucket_name(account_id=account_id, region=config.region)
    definition = build_pipeline_definition(
        pipeline_name=name,
        region=config.region,
        endpoint_url=config.endpoint_url or None,
        credentials=config,
        default_bucket=bucket,
        tenant_tag_key=settings.MLAAS_TAG_KEY,
        plan_tag_key=settings.MLAAS_PLAN_TAG_KEY,
    )
    return definition, bucket


def pipeline_deploy(*, name: str, bucket: str = "") -> PipelineDeployment:
    """Build the definition and upsert the pipeline; reuse or create its role."""
    from core.aws import gateways
    from core.aws.clients import platform_client, platform_config
    from core.aws.iam_pipeline_role import ensure_pipeline_role
    from core.aws.pipeline_definition import PARAMETER_NAMES

    definition, bucket = pipeline_definition_build(name=name, bucket=bucket)
    role_arn = settings.MLAAS_PIPELINE_ROLE_ARN
    if not role_arn:
        sts = gateways.platform_sts()
        role_arn = ensure_pipeline_role(
            platform_client("iam"),
            caller_arn=sts.caller_arn(),
            account_id=sts.account_id(),
            region=platform_config().region,
            resource_prefix=settings.MLAAS_RESOURCE_PREFIX,
        )
    pipeline_arn = gateways.platform_sagemaker().upsert_pipeline(
        name, definition, role_arn, {"mlaas:component": "platform"}
    )
    return PipelineDeployment(pipeline_arn=pipeline_arn, role_arn=role_arn, code_bucket=bucket,
                              parameter_names=PARAMETER_NAMES)


class Command(BaseCommand):
    help = "Build the shared SageMaker pipeline definition and create or update the pipeline."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", default=settings.MLAAS_PIPELINE_NAME,
                            help="pipeline name (default: MLAAS_PIPELINE_NAME)")
        parser.add_argument("--bucket", default="",
                            help="bucket for the step code (default: <prefix>-pipeline-code-<account>-<region>)")
        parser.add_argument("--print", action="store_true", dest="print_only",
                            help="print the definition JSON instead of deploying it")

    def handle(self, *args, name: str, bucket: str, print_only: bool, **options) -> None:
        if print_only:
            definition, _ = pipeline_definition_build(name=name, bucket=bucket)
            self.stdout.write(json.dumps(definition, indent=2, sort_keys=True))
            return
        deployment = pipeline_deploy(name=name, bucket=bucket)
        self.stdout.write(f"pipeline: {deployment.pipeline_arn}")
        self.stdout.write(f"role: {deployment.role_arn}")
        self.stdout.write(f"step code bucket: {deployment.code_bucket}")
        self.stdout.write("parameters: " + ", ".join(deployment.parameter_names))
