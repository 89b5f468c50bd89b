"""The billing app's API router: a tenant's daily costs.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from datetime import date

from django.core.exceptions import ValidationError
from ninja import Field, Query, Router, Schema

from core.api import SCOPED_ERRORS, ErrorOut
from tenants import access as tenant_access

router = Router()


class CostDayOut(Schema):
    day: date
    metered: str
    cost_explorer: str | None
    difference: str | None = Field(None, description="Cost Explorer minus metered, once Cost Explorer has the day")


class CostsOut(Schema):
    tenant: str
    start: date
    end: date
    days: list[CostDayOut]
    total_metered: str
    total_cost_explorer: str


class CostQuery(Schema):
    start: date
    end: date


@router.get("/tenants/{slug}/costs", response={200: CostsOut, 400: ErrorOut, **SCOPED_ERRORS}, tags=["costs"],
         summary="Daily cost lines and totals (metered, and Cost Explorer when synced)")
def tenant_costs(request, slug: str, q: Query[CostQuery]):
    from billing.selectors import tenant_daily_costs

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    if q.end < q.start:
        raise ValidationError({"end": "end must not be before start."})
    if (q.end - q.start).days > 366:
        raise ValidationError({"end": "At most 366 days per request."})
    return tenant_daily_costs(tenant=tenant, start=q.start, end=q.end)
