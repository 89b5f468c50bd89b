"""The cost that builds' pages and API show, read through a reader the roof plugs in.

Usage flows one way: builds record what ran, billing prices it. So builds never import
billing; `mlaas_portal` (which may use every app) registers billing's reader at start-up,
and without one a build simply shows no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Protocol


class BuildCost(Protocol):
    amount: Decimal  # metered when finished; the cost so far while it runs
    unknown_instance_types: tuple[str, ...]  # instance types without a price (so not in `amount`)


CostReader = Callable[[list], dict[int, BuildCost]]
_reader: CostReader | None = None


def cost_reader_register(reader: CostReader | None) -> None:
    global _reader
    _reader = reader


def builds_cost(builds: Iterable) -> dict[int, BuildCost]:
    """Cost per build id; empty when no reader is registered."""
    builds = list(builds)
    if _reader is None or not builds:
        return {}
    return _reader(builds)


# ----- estimates (what a build on given instances would cost), priced by billing -----

StepUsage = tuple[str, int, int]  # (instance type, instance count, seconds)
CostEstimator = Callable[[list[StepUsage]], tuple[Decimal, tuple[str, ...]]]
_estimator: CostEstimator | None = None


def cost_estimator_register(estimator: CostEstimator | None) -> None:
    global _estimator
    _estimator = estimator


def usage_cost_estimate(usages: list[StepUsage]) -> tuple[Decimal | None, tuple[str, ...]]:
    """(amount, instance types without a price) of running these steps; amount None when nothing can price it."""
    if _estimator is None:
        return None, ()
    return _estimator(usages)
