"""Billing's pure rules, shared by its reads and writes: how a step is priced, when Cost Explorer is final."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

# Cost Explorer: a day's data is final once 48 h have passed after it ended, so on day T
# every day up to T-3 is final and T-2, T-1 may still change.
FINAL_AFTER_DAYS = 3
# The first sync (no final day recorded yet) fetches this many days.
SYNC_BACKFILL_DAYS = 30
# A sync that was down for long never fetches more than this in one run.
SYNC_MAX_DAYS = 366
# A run still "running" after this long lost its worker; the next claim marks it failed.
SYNC_STALE_AFTER = timedelta(minutes=30)


def step_cost(*, billable_seconds: int, instance_count: int, price_per_hour: Decimal) -> Decimal:
    amount = Decimal(billable_seconds) * Decimal(instance_count) * price_per_hour / Decimal(3600)
    return amount.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
