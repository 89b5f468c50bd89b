"""Build engines behind one interface (start, status, stop)."""

from __future__ import annotations

from django.conf import settings


def get_engine(name: str | None = None):
    name = name or settings.MLAAS_ENGINE
    if name == "local":
        from builds.engines.local import LocalEngine

        return LocalEngine()
    if name == "sagemaker":
        from builds.engines.sagemaker import SageMakerEngine
        from mlaas_portal.aws import gateways

        return SageMakerEngine(gateways.platform_sagemaker, pipeline_name=settings.MLAAS_PIPELINE_NAME)
    raise ValueError(f"unknown engine {name!r}")
