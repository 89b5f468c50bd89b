"""CSV exports of costs and statements, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.http import HttpResponse

from billing.selectors import ZERO, Statement

# A spreadsheet evaluates a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

COST_COLUMNS = ["day", "tenant", "tenant_name", "metered_usd", "cost_explorer_usd", "difference_usd"]
STATEMENT_COLUMNS = ["month", "tenant", "tenant_name", "plan", "monthly_fee_usd", "included_hours", "used_hours",
                     "overage_hours", "overage_rate_usd", "overage_usd", "endpoint_hours", "endpoint_usd", "total_usd"]
STATEMENT_STAFF_COLUMNS = ["metered_cost_usd", "cost_explorer_cost_usd", "aws_cost_usd", "margin_usd"]


def csv_safe_cell(value: object) -> object:
    """Neutralise text a spreadsheet would run as a formula by prefixing a single quote.

    Numbers we computed (Decimal, int, float) stay numbers: a negative difference is data, not a formula.
    """
    if value is None:
        return ""
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def csv_response(*, filename: str, header: list[str], rows: Iterable[Iterable[object]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_safe_cell(cell) for cell in row])
    return response


def cost_rows(*, days: list[date], tenants: dict[str, str], metered: dict[tuple[date, str], Decimal],
              explorer: dict[tuple[date, str], Decimal], covered: set[date],
              include_untagged: bool = False) -> list[list[object]]:
    """One row per day and tenant with cost; Cost Explorer columns empty until a sync has the day."""
    slugs = sorted({slug for _, slug in metered} | {slug for _, slug in explorer if slug})
    rows = []
    for day in days:
        for slug in slugs:
            if (day, slug) not in metered and (day, slug) not in explorer:
                continue
            metered_amount = metered.get((day, slug), ZERO)
            explorer_amount = explorer.get((day, slug), ZERO) if day in covered else None
            rows.append([day.isoformat(), slug, tenants.get(slug, ""), metered_amount, explorer_amount,
                         None if explorer_amount is None else explorer_amount - metered_amount])
        if include_untagged and (day, "") in explorer:
            rows.append([day.isoformat(), "", "(untagged)", None, explorer[(day, "")], None])
    return rows


def statement_rows(statements: Iterable[Statement], *, staff: bool) -> list[list[object]]:
    rows = []
    for s in statements:
        row: list[object] = [s.month.strftime("%Y-%m"), s.tenant_slug, s.tenant_name, s.plan_name, s.monthly_fee,
                             s.included_hours, s.used_hours, s.overage_hours, s.overage_rate, s.overage_amount,
                             s.endpoint_hours, s.endpoint_amount, s.total]
        if staff:
            row += [s.metered_cost, s.cost_explorer_cost, s.aws_cost, s.margin]
        rows.append(row)
    return rows
