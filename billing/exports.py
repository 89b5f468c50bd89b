"""CSV exports of costs and statements, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.http import HttpResponse, StreamingHttpResponse

from billing.selectors import Statement

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


def cost_csv_chunks(rows: Iterable[list[object]], *, chunk_rows: int = 2000) -> Iterator[str]:
    """The costs CSV (header first) as text chunks of about `chunk_rows` rows, from selectors.cost_export_rows.

    Only the texts (slug, name) can hold a formula; the amounts are numbers, or their text from the database,
    which a leading "-" must not turn into a quoted cell. A tenant's cells are made safe once, not per day.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COST_COLUMNS)
    safe: dict[tuple[object, object], tuple[object, object]] = {}
    chunk: list[tuple] = []
    for day, slug, name, metered, explorer, difference in rows:
        cells = safe.get((slug, name))
        if cells is None:
            cells = safe[(slug, name)] = (csv_safe_cell(slug), csv_safe_cell(name))
        chunk.append((day, *cells, metered, explorer, difference))
        if len(chunk) == chunk_rows:
            writer.writerows(chunk)
            chunk.clear()
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    writer.writerows(chunk)
    yield buffer.getvalue()


def csv_streaming_response(*, filename: str, chunks: Iterable[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
