"""Plotly figures of the billing pages, built server-side from selector data into JSON.

The browser draws them with the vendored plotly.js (static/vendor/plotly.min.js); no CDN.
Each chart has a stable element id so a browser test can check it is drawn.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import plotly.graph_objects as go

from core.charts import Chart, figure_json

OTHER_TENANTS = "other tenants"
MAX_STACKED_TENANTS = 10


def _figure(fig: go.Figure, **layout) -> dict:
    return figure_json(fig, **{"margin": {"l": 55, "r": 10, "t": 10, "b": 40}, "height": 320,
                               "legend": {"orientation": "h", "y": -0.2}, **layout})


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 6)


def daily_spend_by_tenant(*, days: list[date], metered: dict[tuple[date, str], Decimal]) -> Chart:
    """Metered spend per day, stacked by tenant (the biggest ones; the rest as one band)."""
    chart_id, title = "chart-daily-spend", "Daily spend by tenant (metered)"
    if not metered:
        return Chart(chart_id, title, None, "No metered cost in the last 30 days.")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (_, slug), amount in metered.items():
        totals[slug] += amount
    top = sorted(totals, key=lambda slug: (-totals[slug], slug))[:MAX_STACKED_TENANTS]
    series: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (day, slug), amount in metered.items():
        series[slug if slug in top else OTHER_TENANTS][day] += amount
    fig = go.Figure()
    for name in [*top, *([OTHER_TENANTS] if OTHER_TENANTS in series else [])]:
        fig.add_trace(go.Bar(name=name, x=[d.isoformat() for d in days],
                             y=[_usd(series[name].get(d, Decimal(0))) for d in days]))
    return Chart(chart_id, title, _figure(fig, barmode="stack", yaxis={"tickprefix": "$"}), "")


def revenue_vs_cost_by_plan(*, by_plan: list[dict]) -> Chart:
    chart_id, title = "chart-revenue-cost-by-plan", "Revenue vs AWS cost by plan (month)"
    if not by_plan:
        return Chart(chart_id, title, None, "No statements for this month.")
    names = [row["plan"] for row in by_plan]
    fig = go.Figure([go.Bar(name="revenue", x=names, y=[_usd(row["revenue"]) for row in by_plan]),
                     go.Bar(name="AWS cost", x=names, y=[_usd(row["aws_cost"]) for row in by_plan])])
    return Chart(chart_id, title, _figure(fig, barmode="group", yaxis={"tickprefix": "$"}), "")


def top_tenants(*, statements: list) -> Chart:
    chart_id, title = "chart-top-tenants", "Top tenants by AWS cost (month)"
    if not statements:
        return Chart(chart_id, title, None, "No tenant has cost this month.")
    ordered = list(reversed(statements))  # horizontal bars draw bottom-up: biggest on top
    fig = go.Figure([go.Bar(orientation="h", name="AWS cost", y=[s.tenant_slug for s in ordered],
                            x=[_usd(s.aws_cost) for s in ordered]),
                     go.Bar(orientation="h", name="revenue", y=[s.tenant_slug for s in ordered],
                            x=[_usd(s.total) for s in ordered])])
    return Chart(chart_id, title, _figure(fig, barmode="group", xaxis={"tickprefix": "$"}), "")


def metered_vs_explorer(*, days: list[date], metered: dict[tuple[date, str], Decimal],
                        explorer: dict[tuple[date, str], Decimal], covered: set[date],
                        chart_id: str = "chart-metered-vs-ce", with_untagged: bool = True) -> Chart:
    """Daily metered total vs Cost Explorer (tagged; untagged apart), Cost Explorer only where synced."""
    title = "Metered vs Cost Explorer"
    if not metered and not explorer:
        return Chart(chart_id, title, None, "No cost yet: nothing metered and no Cost Explorer data synced.")
    metered_day: dict[date, Decimal] = defaultdict(Decimal)
    for (day, _), amount in metered.items():
        metered_day[day] += amount
    tagged: dict[date, Decimal] = defaultdict(Decimal)
    untagged: dict[date, Decimal] = defaultdict(Decimal)
    for (day, slug), amount in explorer.items():
        (untagged if slug == "" else tagged)[day] += amount
    x = [d.isoformat() for d in days]
    fig = go.Figure([
        go.Bar(name="metered", x=x, y=[_usd(metered_day.get(d, Decimal(0))) for d in days]),
        go.Scatter(name="Cost Explorer", mode="lines+markers", x=x,
                   y=[_usd(tagged.get(d, Decimal(0))) if d in covered else None for d in days]),
    ])
    if with_untagged and untagged:
        fig.add_trace(go.Scatter(name="Cost Explorer, untagged", mode="lines", line={"dash": "dot"}, x=x,
                                 y=[_usd(untagged.get(d, Decimal(0))) if d in covered else None for d in days]))
    return Chart(chart_id, title, _figure(fig, yaxis={"tickprefix": "$"}), "")


def tenant_daily_spend(*, days: list[date], metered: dict[tuple[date, str], Decimal],
                       explorer: dict[tuple[date, str], Decimal], covered: set[date]) -> Chart:
    chart = metered_vs_explorer(days=days, metered=metered, explorer=explorer, covered=covered,
                                chart_id="chart-tenant-daily-spend", with_untagged=False)
    return Chart(chart.id, "Daily spend (last 30 days)", chart.figure,
                 "No spend in the last 30 days." if chart.figure is None else "")


def cost_per_build(*, build_costs: list[dict]) -> Chart:
    chart_id, title = "chart-cost-per-build", "Cost per build (month)"
    if not build_costs:
        return Chart(chart_id, title, None, "No build cost this month.")
    ordered = list(reversed(build_costs))  # oldest left
    labels = [f"{row['build__created_at']:%m-%d %H:%M} {str(row['build__code'])[:8]}" for row in ordered]
    fig = go.Figure([go.Bar(name="metered cost", x=labels, y=[_usd(row["total"]) for row in ordered],
                            customdata=[row["build__algorithm__name"] for row in ordered],
                            hovertemplate="%{x}<br>%{customdata}<br>$%{y}<extra></extra>")])
    return Chart(chart_id, title, _figure(fig, yaxis={"tickprefix": "$"}, xaxis={"type": "category"}), "")
