"""RQ entry points of the tenants app: take ids, load rows, call a service."""

from __future__ import annotations

import django_rq

from tenants.models import Tenant


def enqueue_provisioning(tenant_id: int) -> None:
    django_rq.get_queue("provisioning").enqueue(provision_tenant, tenant_id, job_timeout=900)


def provision_tenant(tenant_id: int) -> bool:
    from tenants.provisioning import run_provisioning

    tenant = Tenant.objects.select_related("plan").get(pk=tenant_id)
    if tenant.status not in (Tenant.Status.PROVISIONING, Tenant.Status.FAILED):
        return tenant.status == Tenant.Status.ACTIVE
    if tenant.status == Tenant.Status.FAILED:
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.PROVISIONING)
        tenant.status = Tenant.Status.PROVISIONING
    return run_provisioning(tenant)


def webhook_deliver(delivery_id: int, attempt: int) -> str:
    from tenants.webhooks import webhook_delivery_attempt

    return webhook_delivery_attempt(delivery_id=delivery_id, attempt=attempt)
