"""Tenant-scoped AWS credentials: assume the tenant role, narrowed by a session policy."""

from __future__ import annotations

from django.conf import settings

from core.aws import gateways
from core.aws.clients import TemporaryCredentials
from tenants import naming, policies
from tenants.models import Tenant


def tenant_assume(tenant: Tenant, *, purpose: str, duration: int | None = None,
                  narrow_to_location: bool = True) -> TemporaryCredentials:
    session_policy = None
    if narrow_to_location:
        session_policy = policies.tenant_data_policy(bucket=tenant.bucket, prefix=tenant.prefix,
                                                     partition=gateways.platform_partition())
    return gateways.platform_sts().assume_role(
        tenant.role_arn,
        session_name=f"mlaas-{purpose}-{tenant.slug}",
        duration=duration or settings.MLAAS_CREDENTIALS_TTL_SECONDS,
        session_policy=session_policy,
        tags=naming.tenant_tags(tenant.slug, tenant.plan.slug),
    )


def credentials_payload(creds: TemporaryCredentials) -> dict[str, str]:
    return {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
        "Expiration": creds.expiration.isoformat(),
        "Region": settings.AWS_REGION,
        "Endpoint": settings.AWS_ENDPOINT_URL,
    }
