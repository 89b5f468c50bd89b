"""Who may see which build and model version: the tenant's rule (`tenants.access`) applied to builds.

A user of another tenant gets 404 (never 403, never data); staff see all.
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import Http404

from builds.models import BatchJob, Build, Endpoint, ModelVersion
from tenants.access import get_tenant_for_user, tenants_for_user


def builds_for_user(user) -> QuerySet[Build]:
    if user.is_staff:
        return Build.objects.all()
    return Build.objects.filter(tenant__in=tenants_for_user(user))


def get_build_for_user(user, code) -> Build:
    try:
        code = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such build") from None
    build = builds_for_user(user).select_related("tenant", "plan", "algorithm").filter(code=code).first()
    if build is None:
        raise Http404("No such build")
    return build


def get_model_version_for_user(user, slug: str, version: int) -> ModelVersion:
    tenant = get_tenant_for_user(user, slug)
    found = (ModelVersion.objects.select_related("build", "build__algorithm", "tenant", "replaces", "decided_by")
             .filter(tenant=tenant, version=version).first())
    if found is None:
        raise Http404("No such model version")
    return found


def get_endpoint_for_user(user, slug: str, name: str) -> Endpoint:
    """A live (not deleted) test endpoint of the user's tenant, by name."""
    tenant = get_tenant_for_user(user, slug)
    found = (Endpoint.objects.select_related("tenant", "tenant__plan", "model_version")
             .filter(tenant=tenant, name=name).exclude(status=Endpoint.Status.DELETED).first())
    if found is None:
        raise Http404("No such endpoint")
    return found


def get_batch_job_for_user(user, slug: str, code) -> BatchJob:
    """A batch job of the user's tenant, by its code."""
    tenant = get_tenant_for_user(user, slug)
    try:
        code = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such batch job") from None
    found = (BatchJob.objects.select_related("tenant", "tenant__plan", "model_version", "model_version__build")
             .filter(tenant=tenant, code=code).first())
    if found is None:
        raise Http404("No such batch job")
    return found
