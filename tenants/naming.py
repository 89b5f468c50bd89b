"""Names of AWS resources derived from a tenant: one place, so intake can invert them."""

from __future__ import annotations

from django.conf import settings


def silo_bucket_prefix() -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-t-"


def silo_bucket(slug: str, account_id: str) -> str:
    return f"{silo_bucket_prefix()}{slug}-{account_id}"


def pool_bucket(account_id: str) -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-pool-{account_id}"


def pool_prefix(slug: str) -> str:
    return f"tenants/{slug}/"


def role_name(slug: str) -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-tenant-{slug}"


def model_package_group(slug: str) -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-{slug}-models"


def intake_dead_letter_queue() -> str:
    return f"{settings.MLAAS_INTAKE_QUEUE_NAME}-dead-letter"


def intake_rule(isolation: str) -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-intake-{isolation}"


def step_image_repository() -> str:
    """The platform's ECR repository of the step image (one for all tenants; the only one tenant roles may pull)."""
    return f"{settings.MLAAS_RESOURCE_PREFIX}-steps"


def tenant_tags(slug: str, plan_slug: str) -> dict[str, str]:
    return {settings.MLAAS_TAG_KEY: slug, settings.MLAAS_PLAN_TAG_KEY: plan_slug}


def platform_tags() -> dict[str, str]:
    return {"mlaas:component": "platform"}


# Tenant pages live at /tenants/<slug>/, beside the staff pages at /tenants/<word>/: a tenant may not take one of
# these words as its slug (tenants/tests/test_onboarding.py checks the list against tenants/urls.py).
RESERVED_SLUGS = frozenset({"new", "plans", "scheduling", "autocomplete", "requests"})

