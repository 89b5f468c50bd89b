"""Small presentation helpers shared by every portal page: times, durations, badges, money, metrics.

Times render in the active time zone (the user's, set by UserTimezoneMiddleware from the `tz` cookie)
inside a <time datetime="..."> element, so portal.js can re-render them on a first visit before the
cookie exists.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

# Status -> human label, for the few statuses whose value is not a good label.
_LABELS = {"PendingManualApproval": "pending approval"}


@register.filter
def when(value: datetime | None, fmt: str = "Y-m-d H:i") -> str:
    """`<time>` in the user's time zone; an en dash for no time."""
    if not value:
        return format_html('<span class="muted">–</span>')
    from django.utils.dateformat import format as date_format

    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(),
                       date_format(local, "Y-m-d H:i:s T"), date_format(local, fmt))


@register.filter
def duration(seconds: float | int | None) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`; an en dash for none."""
    if seconds is None:
        return "–"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def badge(status: str | None, label: str = "") -> str:
    """The one status badge used on every page (colours by status value in portal.css)."""
    status = status or ""
    return format_html('<span class="badge {}">{}</span>', status, label or _LABELS.get(status, status) or "–")


@register.filter
def usd(value, places: int = 2) -> str:
    """Dollars with thousands separators: `$1,234.50`."""
    if value is None or value == "":
        return "–"
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    places = int(places)
    smallest = Decimal(1).scaleb(-places)
    if Decimal(0) < abs(amount) < smallest:
        return f"< ${smallest}"  # a real but tiny cost must not read as nothing
    return f"${amount:,.{places}f}"


@register.filter
def metric(value) -> str:
    """A model metric to three decimals (`–` when missing)."""
    if value is None:
        return "–"
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def label(value: str) -> str:
    """`breast_cancer` -> `Breast cancer`."""
    text = str(value or "").replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


@register.filter
def metric_items(metrics) -> list[tuple[str, object]]:
    """Metrics in a fixed reading order (PostgreSQL's jsonb does not keep key order)."""
    from mlaas_steps import metrics as metric_facts

    if not isinstance(metrics, dict):
        return []
    rank = {name: i for i, name in enumerate(metric_facts.ORDER)}
    return sorted(metrics.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


@register.filter
def metric_name(name: str) -> str:
    """`roc_auc` -> `ROC AUC`: the display name every page uses for a metric."""
    from mlaas_steps import metrics as metric_facts

    return metric_facts.display_name(name)
