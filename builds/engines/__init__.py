"""Build engines behind one interface (start, status, stop)."""

from __future__ import annotations

from django.conf import settings


def read_s3_json(uri: str) -> dict:
    """Read a JSON report a pipeline step wrote (s3://bucket/key); {} if it is not there."""
    from core.aws import gateways
    from core.aws.errors import AwsNotFound

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return gateways.platform_s3().get_json(bucket, key)
    except AwsNotFound:
        return {}


def get_engine(name: str | None = None):
    name = name or settings.MLAAS_ENGINE
    if name == "local":
        from builds.engines.local import LocalEngine
        from builds.selectors import local_build_status

        return LocalEngine(status_reader=local_build_status)
    if name == "sagemaker":
        from builds.engines.sagemaker import SageMakerEngine
        from core.aws import gateways

        return SageMakerEngine(gateways.platform_sagemaker, pipeline_name=settings.MLAAS_PIPELINE_NAME,
                               tenant_tag_key=settings.MLAAS_TAG_KEY, plan_tag_key=settings.MLAAS_PLAN_TAG_KEY,
                               report_reader=read_s3_json)
    raise ValueError(f"unknown engine {name!r}")
