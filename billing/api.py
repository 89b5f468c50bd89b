"""The billing app's API router: a tenant's daily costs and statements, and the public plan catalog (with prices).

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

import re
from datetime import date

from django.core.exceptions import ValidationError
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from core.api import SCOPED_ERRORS, ErrorOut, Pagination
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


# ----- the catalog: plans with their limits, size bands and prices (public) -----

class SizeBandOut(Schema):
    max_bytes: int | None = Field(..., description="Upper bound of the dataset size in bytes (inclusive); "
                                                   "null: any larger dataset.")
    processing_instance_type: str
    processing_instance_count: int
    training_instance_type: str
    training_instance_count: int
    estimated_cost: str | None = Field(None, description="USD per build on these instances (recent or typical "
                                                         "step durations); null when unpriced.")


class PlanLimitsOut(Schema):
    plan_concurrent_limit: int
    tenant_concurrent_limit: int
    upload_size_limit_bytes: int
    tuning_included: bool
    max_tuning_jobs: int


class PlanPricesOut(Schema):
    monthly_fee: str
    included_build_hours: str
    overage_price_per_hour: str


class PlanOut(Schema):
    slug: str
    name: str
    tier_rank: int
    limits: PlanLimitsOut
    prices: PlanPricesOut
    size_bands: list[SizeBandOut]


def plan_out(plan) -> dict:
    from builds.sizing import plan_bands_estimates

    return {
        "slug": plan.slug, "name": plan.name, "tier_rank": plan.tier_rank,
        "limits": {name: getattr(plan, name) for name in PlanLimitsOut.model_fields},
        "prices": {name: str(getattr(plan, name)) for name in PlanPricesOut.model_fields},
        "size_bands": plan_bands_estimates(plan),
    }


@router.get("/plans", auth=None, response={200: list[PlanOut], 422: ErrorOut}, tags=["catalog"],
            summary="The plans the catalog offers: limits, size bands and prices (no token needed)")
@paginate(Pagination, page_size=50)
def list_plans(request):
    from tenants.models import Plan

    return [plan_out(plan) for plan in Plan.objects.order_by("-tier_rank", "slug")]


# ----- statements -----

MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class StatementQuery(Schema):
    month: str | None = Field(None, max_length=20, description="YYYY-MM; default: this month (UTC).")


MONEY = "USD, 2 decimals, as the pages show it."


class StatementOut(Schema):
    tenant: str
    month: str = Field(..., description="YYYY-MM")
    plan: str
    monthly_fee: str = Field(..., description=MONEY)
    included_hours: str
    used_hours: str = Field(..., description="Build hours used (4 decimals).")
    overage_hours: str
    overage_rate: str = Field(..., description=MONEY)
    overage_amount: str = Field(..., description=MONEY)
    endpoint_hours: str = Field(..., description="Hours the tenant's test endpoints were in service (4 decimals).")
    endpoint_amount: str = Field(..., description="What the endpoint hours cost the tenant. " + MONEY)
    total: str = Field(..., description="What the tenant is charged: the plan fee, overage and endpoint hours "
                                        "(USD, 2 decimals).")
    metered_cost: str = Field(..., description="Compute cost underneath, metered. " + MONEY)
    cost_explorer_cost: str | None = Field(None, description="AWS cost from Cost Explorer, once synced. " + MONEY)
    aws_cost: str | None = Field(None, description="Staff only. " + MONEY)
    margin: str | None = Field(None, description="Staff only: total minus AWS cost. " + MONEY)


def parse_statement_month(raw: str | None) -> date:
    from billing.services import utc_today

    if not raw:
        return utc_today().replace(day=1)
    found = MONTH_RE.match(raw)
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
        raise ValidationError({"month": f"`{raw}` is not a month: use YYYY-MM, for example 2026-03."})
    return date(int(found.group(1)), int(found.group(2)), 1)


@router.get("/tenants/{slug}/statements", response={200: StatementOut, 400: ErrorOut, **SCOPED_ERRORS},
            tags=["costs"], summary="The tenant's statement for a month")
def tenant_statement(request, slug: str, q: Query[StatementQuery]):
    from billing.selectors import _money, statement_for_tenant

    tenant = tenant_access.get_tenant_for_user(request.auth, slug)
    statement = statement_for_tenant(tenant=tenant, month=parse_statement_month(q.month))
    staff = request.auth.is_staff

    def money(value):
        return None if value is None else str(_money(value))

    return {
        "tenant": statement.tenant_slug, "month": f"{statement.month:%Y-%m}", "plan": statement.plan_slug,
        **{name: str(getattr(statement, name)) for name in (
            "included_hours", "used_hours", "overage_hours", "endpoint_hours")},
        **{name: money(getattr(statement, name)) for name in (
            "monthly_fee", "overage_rate", "overage_amount", "endpoint_amount", "total", "metered_cost",
            "cost_explorer_cost")},
        "aws_cost": money(statement.aws_cost) if staff else None,
        "margin": money(statement.margin) if staff else None,
    }
