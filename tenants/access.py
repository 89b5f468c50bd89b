"""Who may see which tenant. Every lookup of a tenant from a request goes through these helpers.

A user of another tenant gets 404 (never 403, never data); staff see all.
"""

from __future__ import annotations

import re
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404

from tenants.models import Membership, Tenant


def user_tenant(user) -> Tenant | None:
    if not user.is_authenticated or user.is_staff:
        return None
    membership = getattr(user, "membership", None)
    return membership.tenant if membership else None


def is_tenant_owner(user, tenant: Tenant) -> bool:
    if user.is_staff:
        return True
    membership = getattr(user, "membership", None)
    return bool(membership and membership.tenant_id == tenant.id and membership.role == Membership.Role.OWNER)


def tenants_for_user(user) -> QuerySet[Tenant]:
    if user.is_staff:
        return Tenant.objects.all()
    membership = getattr(user, "membership", None) if user.is_authenticated else None
    if membership is None:
        return Tenant.objects.none()
    return Tenant.objects.filter(pk=membership.tenant_id)


SLUG_SHAPE = re.compile(r"^[a-z0-9-]{1,40}$")


def get_tenant_for_user(user, slug: str) -> Tenant:
    if not isinstance(slug, str) or not SLUG_SHAPE.match(slug):
        raise Http404("No such tenant")  # never reaches the database (NUL bytes, huge strings)
    tenant = tenants_for_user(user).select_related("plan", "default_algorithm").filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such tenant")
    return tenant


def staff_required(view):
    """Staff only; anonymous users go to login, tenant users get 404."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404("Not found")
        return view(request, *args, **kwargs)

    return wrapper
