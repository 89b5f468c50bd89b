"""Decayed usage for fair-share ordering, kept in the log domain with forward decay.

A tenant's decayed usage at time t is sum(seconds_i x 2^-((t - t_i) / h)). Every tenant
decays by the same factor, so the order between tenants never changes by time passing;
only charges change it. Storing U = sum(seconds_i x 2^((t_i - EPOCH) / h)) (forward
decay) makes the stored value constant between charges, so the dispatcher can order
tenants by an index instead of recomputing every tenant's decay on every round. U grows
by a factor 2 per half-life, so it is kept as log2(U) (`Tenant.usage_log2`): a half-life
of an hour for ten years is a log of about 87,600, far from any float limit.

A staff change of the half-life rescales every stored value (`rescale_log2`), done once by
`tenants.services.scheduling_policy_update`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
NEW_TENANT_USAGE_SECONDS = 60.0  # under a build-minute of decayed usage, with nothing running: newly active


def _half_lives(at: datetime, half_life_hours: float) -> float:
    return (at - EPOCH).total_seconds() / (half_life_hours * 3600.0)


def logaddexp2(a: float | None, b: float) -> float:
    if a is None:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log2(1.0 + 2.0 ** (low - high))


def charge_log2(usage_log2: float | None, *, seconds: float, at: datetime, half_life_hours: float) -> float | None:
    """The stored value after charging `seconds` of build time used at `at`."""
    if seconds <= 0:
        return usage_log2
    return logaddexp2(usage_log2, math.log2(seconds) + _half_lives(at, half_life_hours))


def decayed_seconds(usage_log2: float | None, *, at: datetime, half_life_hours: float) -> float:
    """Build-seconds of decayed usage at `at` (what staff see)."""
    if usage_log2 is None:
        return 0.0
    exponent = usage_log2 - _half_lives(at, half_life_hours)
    return 0.0 if exponent < -1000 else 2.0 ** exponent


def rescale_log2(usage_log2: float | None, *, at: datetime, old_hours: float, new_hours: float) -> float | None:
    """The same decayed usage at `at`, stored for a new half-life."""
    if usage_log2 is None:
        return None
    return usage_log2 - _half_lives(at, old_hours) + _half_lives(at, new_hours)


def fair_share_key(usage_log2: float | None, weight: float) -> float | None:
    """Lower goes first: usage per unit of weight (log2). None (never charged) goes before every number."""
    if usage_log2 is None:
        return None
    return usage_log2 - math.log2(max(weight, 1e-6))


def is_newly_active(usage_log2: float | None, *, running: int, at: datetime, half_life_hours: float) -> bool:
    return running == 0 and decayed_seconds(usage_log2, at=at, half_life_hours=half_life_hours) < \
        NEW_TENANT_USAGE_SECONDS
