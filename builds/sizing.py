"""What a dataset of a given size will run on and roughly cost, before it is uploaded.

The band comes from the plan (`tenants.sizing`); each step's duration is the mean of recent successful steps
of that name on the same instance type, else a typical duration; billing prices it (`builds.costs`).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from builds.costs import usage_cost_estimate
from builds.models import BuildStep
from mlaas_steps.steps import EVALUATE, PREPROCESS, TRAIN
from tenants.sizing import SizeBand, plan_bands, sizing_for

# Seconds a step typically takes on the bundled samples when no recent build ran on the same instance type.
TYPICAL_STEP_SECONDS = {PREPROCESS: 60, TRAIN: 180, EVALUATE: 60}
RECENT_STEPS = 200


def _recent_seconds(instance_types: set[str]) -> dict[tuple[str, str], int]:
    """Mean billable seconds of recent successful steps, per (step name, instance type): one query."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(list)
    rows = (BuildStep.objects.filter(status=BuildStep.Status.SUCCEEDED, instance_type__in=instance_types,
                                     name__in=TYPICAL_STEP_SECONDS, billable_seconds__gt=0)
            .order_by("-ended_at").values_list("name", "instance_type", "billable_seconds")[:RECENT_STEPS])
    for name, instance_type, seconds in rows:
        totals[(name, instance_type)].append(seconds)
    return {key: round(sum(values) / len(values)) for key, values in totals.items()}


def _estimate(band: SizeBand, recent: dict[tuple[str, str], int]) -> dict:
    usages, basis = [], set()
    for name, typical in TYPICAL_STEP_SECONDS.items():
        kind = "training" if name == TRAIN else "processing"
        instance_type = getattr(band, f"{kind}_instance_type")
        seconds = recent.get((name, instance_type))
        basis.add("recent builds" if seconds else "typical durations")
        usages.append((instance_type, getattr(band, f"{kind}_instance_count"), seconds or typical))
    amount, unpriced = usage_cost_estimate(usages)
    return {"estimated_seconds": sum(u[2] for u in usages),
            "estimated_cost": None if amount is None or unpriced else str(amount.quantize(Decimal("0.0001"))),
            "estimate_basis": " and ".join(sorted(basis))}


def _band_out(band: SizeBand) -> dict:
    return {"max_bytes": band.max_bytes, "processing_instance_type": band.processing_instance_type,
            "processing_instance_count": band.processing_instance_count,
            "training_instance_type": band.training_instance_type,
            "training_instance_count": band.training_instance_count}


def sizing_estimate(plan, size_bytes: int) -> dict:
    """The `sizing` object: the band a file of `size_bytes` falls in, why, and its estimated cost (USD)."""
    sizing = sizing_for(plan, size_bytes)
    band = sizing.band
    recent = _recent_seconds({band.processing_instance_type, band.training_instance_type})
    return {**_band_out(band), "band": sizing.band_number, "reason": sizing.reason, **_estimate(band, recent)}


def plan_bands_estimates(plan) -> list[dict]:
    """Every band of the plan with its label and estimated cost per build (the upload page's table)."""
    bands = plan_bands(plan)
    recent = _recent_seconds({t for b in bands for t in (b.processing_instance_type, b.training_instance_type)})
    return [{**_band_out(b), "number": n, "label": b.label, **_estimate(b, recent)}
            for n, b in enumerate(bands, start=1)]


def build_sizing_out(build) -> dict:
    """The sizing recorded on a build: what it was given and why."""
    return {"processing_instance_type": build.processing_instance_type or build.plan.processing_instance_type,
            "processing_instance_count": build.processing_instance_count,
            "training_instance_type": build.training_instance_type or build.plan.training_instance_type,
            "training_instance_count": build.training_instance_count,
            "band": (build.size_band or {}).get("number", 0), "max_bytes": (build.size_band or {}).get("max_bytes"),
            "dataset_size": build.dataset_size,
            "reason": build.sizing_reason or "recorded before plans had size bands: the plan's instances"}
