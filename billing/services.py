"""Writes of the billing app: metering, Cost Explorer sync, prices, budgets."""

from __future__ import annotations

import csv
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import CostLine, InstancePrice

PRICE_FILE = Path(__file__).parent / "data" / "instance_prices.csv"


class UnknownInstanceType(ValueError):
    """No price for an instance type: an error naming it, never a silent zero."""


def instance_prices_load(*, path: Path = PRICE_FILE) -> int:
    """Load the shipped price table (idempotent; staff edits of existing rows are kept)."""
    created = 0
    with path.open() as handle:
        for row in csv.DictReader(handle):
            _, was_created = InstancePrice.objects.get_or_create(
                instance_type=row["instance_type"], region=row["region"],
                defaults={"price_per_hour": Decimal(row["price_per_hour"])})
            created += was_created
    return created


def price_for(instance_type: str, region: str | None = None) -> Decimal:
    region = region or settings.AWS_REGION
    price = InstancePrice.objects.filter(instance_type=instance_type, region=region).values_list(
        "price_per_hour", flat=True).first()
    if price is None:
        raise UnknownInstanceType(f"no price for instance type `{instance_type}` in {region}; "
                                  "add it on the prices page")
    return price


def step_cost(*, billable_seconds: int, instance_count: int, price_per_hour: Decimal) -> Decimal:
    amount = Decimal(billable_seconds) * Decimal(instance_count) * price_per_hour / Decimal(3600)
    return amount.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def build_meter(*, build) -> list[CostLine]:
    """One cost line per finished step with billable time (idempotent per step)."""
    lines = []
    with transaction.atomic():
        for step in build.steps.filter(ended_at__isnull=False, billable_seconds__gt=0).exclude(instance_type=""):
            price = price_for(step.instance_type)
            line, _ = CostLine.objects.update_or_create(
                step=step,
                defaults=dict(tenant_id=build.tenant_id, plan_id=build.plan_id, build=build,
                              instance_type=step.instance_type, instance_count=step.instance_count,
                              billable_seconds=step.billable_seconds, price_per_hour=price,
                              amount=step_cost(billable_seconds=step.billable_seconds,
                                               instance_count=step.instance_count, price_per_hour=price),
                              day=step.ended_at.astimezone(UTC).date()),
            )
            lines.append(line)
    return lines
