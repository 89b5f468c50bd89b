"""Plotly figures of the billing pages, built server-side from selector data into JSON.

The browser draws them with the vendored plotly.js (static/vendor/plotly.min.js); no CDN.
Each chart has a stable element id so a browser test can check it is drawn. Traces are plain dicts
(core.charts.figure): plotly.py's validation of every point cost more than the rest of the overview page.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from billing.selectors import ZERO, DailySpend
from core.charts import Chart, figure

OTHER_TENANTS = "other tenants"
MAX_STACKED_TENANTS = 10


def _figure(traces: list[dict], **layout) -> dict:
    return figure(traces, **{"margin": {"l": 55, "r": 10, "t": 10, "b": 40}, "height": 320,
                             "legend": {"orientation": "h", "y": -0.2}, **layout})


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 6)


def daily_spend_by_tenant(*, days: list[date], spend: DailySpend) -> Chart:
    """Metered spend per day, stacked by tenant (the biggest ones; the rest as one band)."""
    chart_id, title = "chart-daily-spend", "Daily spend by tenant (metered)"
    if not spend.metered:
        return Chart(chart_id, title, None, "No metered cost in the last 30 days.")
    x = [d.isoformat() for d in days]
    traces = [{"type": "bar", "name": slug, "x": x,
               "y": [_usd(spend.top_metered.get((d, slug), ZERO)) for d in days]} for slug in spend.top_tenants]
    if spend.has_others:
        shown: dict[date, Decimal] = defaultdict(Decimal)
        for (day, _), amount in spend.top_metered.items():
            shown[day] += amount
        traces.append({"type": "bar", "name": OTHER_TENANTS, "x": x,
                       "y": [_usd(spend.metered.get(d, ZERO) - shown[d]) for d in days]})
    return Chart(chart_id, title, _figure(traces, barmode="stack", yaxis={"tickprefix": "$"}), "")


def revenue_vs_cost_by_plan(*, by_plan: list[dict]) -> Chart:
    chart_id, title = "chart-revenue-cost-by-plan", "Revenue vs AWS cost by plan (month)"
    if not by_plan:
        return Chart(chart_id, title, None, "No statements for this month.")
    names = [row["plan"] for row in by_plan]
    traces = [{"type": "bar", "name": "revenue", "x": names, "y": [_usd(row["revenue"]) for row in by_plan]},
              {"type": "bar", "name": "AWS cost", "x": names, "y": [_usd(row["aws_cost"]) for row in by_plan]}]
    return Chart(chart_id, title, _figure(traces, barmode="group", yaxis={"tickprefix": "$"}), "")


def top_tenants(*, statements: list) -> Chart:
    chart_id, title = "chart-top-tenants", "Top tenants by AWS cost (month)"
    if not statements:
        return Chart(chart_id, title, None, "No tenant has cost this month.")
    ordered = list(reversed(statements))  # horizontal bars draw bottom-up: biggest on top
    slugs = [s.tenant_slug for s in ordered]
    traces = [{"type": "bar", "orientation": "h", "name": "AWS cost", "y": slugs,
               "x": [_usd(s.aws_cost) for s in ordered]},
              {"type": "bar", "orientation": "h", "name": "revenue", "y": slugs, "x": [_usd(s.total) for s in ordered]}]
    return Chart(chart_id, title, _figure(traces, barmode="group", xaxis={"tickprefix": "$"}), "")


def metered_vs_explorer(*, days: list[date], metered: dict[date, Decimal], tagged: dict[date, Decimal],
                        untagged: dict[date, Decimal], covered: set[date], chart_id: str = "chart-metered-vs-ce",
                        with_untagged: bool = True) -> Chart:
    """Daily metered total vs Cost Explorer (tagged; untagged apart), Cost Explorer only where synced."""
    title = "Metered vs Cost Explorer"
    if not metered and not tagged and not untagged:
        return Chart(chart_id, title, None, "No cost yet: nothing metered and no Cost Explorer data synced.")
    x = [d.isoformat() for d in days]
    traces = [
        {"type": "bar", "name": "metered", "x": x, "y": [_usd(metered.get(d, ZERO)) for d in days]},
        {"type": "scatter", "name": "Cost Explorer", "mode": "lines+markers", "x": x,
         "y": [_usd(tagged.get(d, ZERO)) if d in covered else None for d in days]},
    ]
    if with_untagged and untagged:
        traces.append({"type": "scatter", "name": "Cost Explorer, untagged", "mode": "lines", "line": {"dash": "dot"},
                       "x": x, "y": [_usd(untagged.get(d, ZERO)) if d in covered else None for d in days]})
    return Chart(chart_id, title, _figure(traces, yaxis={"tickprefix": "$"}), "")


def overview_metered_vs_explorer(*, days: list[date], spend: DailySpend, covered: set[date]) -> Chart:
    return metered_vs_explorer(days=days, metered=spend.metered, tagged=spend.explorer_tagged,
                               untagged=spend.explorer_untagged, covered=covered)


def tenant_daily_spend(*, days: list[date], metered: dict[tuple[date, str], Decimal],
                       explorer: dict[tuple[date, str], Decimal], covered: set[date]) -> Chart:
    """One tenant's days (its rows of the rollup: one per day at most)."""
    metered_day: dict[date, Decimal] = defaultdict(Decimal)
    for (day, _), amount in metered.items():
        metered_day[day] += amount
    explorer_day: dict[date, Decimal] = defaultdict(Decimal)
    for (day, slug), amount in explorer.items():
        if slug != "":
            explorer_day[day] += amount
    chart = metered_vs_explorer(days=days, metered=dict(metered_day), tagged=dict(explorer_day), untagged={},
                                covered=covered, chart_id="chart-tenant-daily-spend", with_untagged=False)
    return Chart(chart.id, "Daily spend (last 30 days)", chart.figure,
                 "No spend in the last 30 days." if chart.figure is None else "")


def cost_per_build(*, build_costs: list[dict]) -> Chart:
    chart_id, title = "chart-cost-per-build", "Cost per build (month)"
    if not build_costs:
        return Chart(chart_id, title, None, "No build cost this month.")
    ordered = list(reversed(build_costs))  # oldest left
    labels = [f"{row['build__created_at']:%m-%d %H:%M} {str(row['build__code'])[:8]}" for row in ordered]
    traces = [{"type": "bar", "name": "metered cost", "x": labels, "y": [_usd(row["total"]) for row in ordered],
               "customdata": [row["build__algorithm__name"] for row in ordered],
               "hovertemplate": "%{x}<br>%{customdata}<br>$%{y}<extra></extra>"}]
    return Chart(chart_id, title, _figure(traces, yaxis={"tickprefix": "$"}, xaxis={"type": "category"}), "")
