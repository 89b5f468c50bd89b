"""Size bands: which instances a build runs on, by its plan and the size of its training data.

A plan lists bands in ascending order of their upper bound (`max_bytes`, inclusive; the last band has none):
a dataset runs on the first band it fits. A plan without bands runs everything on its own instance fields.

Bands are validated against the job kinds SageMaker offers each instance type on (`mlaas_steps.instances`)
and against the price table. Prices belong to billing, which tenants may not import: the roof registers
billing's price check here (`price_check_register`), as it registers the cost reader in `builds.costs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from django.core.exceptions import ValidationError

from mlaas_steps.instances import JOB_INSTANCE_TYPES, PROCESSING, TRAINING

MAX_BANDS = 10
MAX_INSTANCE_COUNT = 20
BAND_FIELDS = ("max_bytes", "processing_instance_type", "processing_instance_count", "training_instance_type",
               "training_instance_count")


@dataclass(frozen=True)
class SizeBand:
    max_bytes: int | None  # inclusive upper bound; None: no bound (the last band)
    processing_instance_type: str
    processing_instance_count: int
    training_instance_type: str
    training_instance_count: int

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return f"up to {format_bytes(self.max_bytes)}" if self.max_bytes is not None else "any size"


@dataclass(frozen=True)
class Sizing:
    """The band a dataset of `size_bytes` falls in, and why, in a sentence a tenant can read."""

    band: SizeBand
    band_number: int  # 1-based position in the plan's bands; 0: the plan has none (its own instance fields)
    reason: str


def format_bytes(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


# ----- the price check billing provides (registered by the roof) -----

PriceCheck = Callable[[set[str]], set[str]]  # instance types -> those without a price
_price_check: PriceCheck | None = None


def price_check_register(check: PriceCheck | None) -> None:
    global _price_check
    _price_check = check


# ----- reading and choosing -----

def plan_default_band(plan) -> SizeBand:
    return SizeBand(None, plan.processing_instance_type, plan.processing_instance_count,
                    plan.training_instance_type, plan.training_instance_count)


def plan_bands(plan) -> list[SizeBand]:
    """The plan's bands (already validated when saved), else its own instance fields as one band."""
    bands = [SizeBand(**{name: raw[name] for name in BAND_FIELDS}) for raw in (plan.size_bands or [])]
    return bands or [plan_default_band(plan)]


def sizing_for(plan, size_bytes: int) -> Sizing:
    """The first band of the plan that a dataset of `size_bytes` fits."""
    if not plan.size_bands:
        return Sizing(plan_default_band(plan), 0, f"the {plan.name} plan runs every dataset on the same instances")
    bands = plan_bands(plan)
    for number, band in enumerate(bands, start=1):
        if band.max_bytes is None or size_bytes <= band.max_bytes:
            below = bands[number - 2].max_bytes if number > 1 else None
            if band.max_bytes is None:
                where = f"over {format_bytes(below)}" if below is not None else "any size"
            else:
                where = f"at most {format_bytes(band.max_bytes)}"
            return Sizing(band, number, f"{format_bytes(size_bytes)} of data: band {number} of the {plan.name} "
                                        f"plan ({where})")
    raise AssertionError("validated bands end with an unbounded one")


# ----- validation (the staff form and the service call it) -----

def size_bands_clean(raw) -> list[dict]:
    """Validate bands given as a list of dicts; return them normalised. ValidationError says what is wrong."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise ValidationError("Size bands must be a list of bands (a JSON array of objects).")
    if len(raw) > MAX_BANDS:
        raise ValidationError(f"At most {MAX_BANDS} size bands.")
    errors: list[str] = []
    bands: list[dict] = []
    for number, item in enumerate(raw, start=1):
        band, problems = _band_clean(number, item, last=number == len(raw))
        errors += problems
        if band:
            bands.append(band)
    bounds = [b["max_bytes"] for b in bands if b["max_bytes"] is not None]
    if not errors and bounds != sorted(set(bounds)):
        errors.append("Upper bounds must rise strictly from one band to the next.")
    if not errors:
        errors += _unpriced(bands)
    if errors:
        raise ValidationError(errors)
    return bands


def _band_clean(number: int, item, *, last: bool) -> tuple[dict | None, list[str]]:
    if not isinstance(item, dict):
        return None, [f"Band {number}: must be an object with {', '.join(BAND_FIELDS)}."]
    unknown = sorted(set(item) - set(BAND_FIELDS))
    missing = [name for name in BAND_FIELDS if name not in item and name != "max_bytes"]
    if unknown or missing:
        parts = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing {', '.join(missing)}"] if missing else [])
        return None, [f"Band {number}: {'; '.join(parts)}."]
    problems = []
    max_bytes = item.get("max_bytes")
    if last and max_bytes is not None:
        problems.append(f"Band {number}: the last band takes every larger dataset, so its max_bytes must be null.")
    elif not last and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1):
        problems.append(f"Band {number}: max_bytes must be a positive whole number of bytes "
                        "(only the last band has none).")
    for kind in (PROCESSING, TRAINING):
        instance_type, count = item[f"{kind}_instance_type"], item[f"{kind}_instance_count"]
        allowed = JOB_INSTANCE_TYPES[kind]
        if instance_type not in allowed:
            problems.append(f"Band {number}: SageMaker does not run {kind} jobs on `{instance_type}`; "
                            f"choose one of {', '.join(sorted(allowed))}.")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_INSTANCE_COUNT:
            problems.append(f"Band {number}: {kind}_instance_count must be a whole number from 1 to "
                            f"{MAX_INSTANCE_COUNT}.")
    return {name: item.get(name) for name in BAND_FIELDS}, problems


def _unpriced(bands: Iterable[dict]) -> list[str]:
    if _price_check is None:
        return []
    types = {b[f"{kind}_instance_type"] for b in bands for kind in (PROCESSING, TRAINING)}
    missing = sorted(_price_check(types))
    if not missing:
        return []
    return [f"No price for {', '.join(f'`{t}`' for t in missing)} in the price table: add it on the prices page "
            "first, or builds on it could not be metered."]
