"""Shapes every API router shares: the JSON error body and schema, bounded page-number pagination.

No `from __future__ import annotations` here: django-ninja reads the annotations at import
time to build the request models.
"""

from ninja import Field, Schema
from ninja.pagination import PageNumberPagination

MAX_PAGE = 100_000
MAX_PAGE_SIZE = 100


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"code": code, "message": message, "fields": fields}


class ErrorOut(Schema):
    code: str = Field(..., description="Stable, machine-readable error code.")
    message: str = Field(..., description="What went wrong, for a human.")
    fields: dict[str, list[str]] | None = Field(None, description="Per-field messages of a rejected request.")


class Pagination(PageNumberPagination):
    """Page numbers with bounds, so an absurd page is a 422, not a database error."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE)


ERRORS = {401: ErrorOut, 422: ErrorOut}
SCOPED_ERRORS = {**ERRORS, 404: ErrorOut}


class RateLimited(Exception):
    """Too many API requests: answered 429 with Retry-After (whole seconds) and the JSON error shape."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))
