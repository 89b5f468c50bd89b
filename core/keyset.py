"""Keyset ("seek") pagination: a page starts after (or ends before) the row a link names, not at an OFFSET.

The database reads one page's rows from an index whatever the page's position, where OFFSET reads
and drops every row before it (the last page of 100,000 builds read all of them). A page link
carries the sort value and id of its boundary row (an opaque, URL-safe cursor); ties in the sort
value are broken by id, in the same direction, and rows without a value (NULL) come last in
either direction. Any query set works, given the field or annotation to sort by.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet


class BadCursor(ValueError):
    """A page link whose cursor cannot be read (edited by hand, or from another sort)."""


@dataclass(frozen=True)
class KeysetPage:
    items: list
    next_cursor: str | None  # None: this is the last page
    previous_cursor: str | None  # None: this is the first page

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def encode_cursor(value, pk: int) -> str:
    if value is None:
        token = ["n", None]
    elif isinstance(value, datetime):
        token = ["t", value.isoformat()]
    elif isinstance(value, timedelta):
        token = ["d", value // timedelta(microseconds=1)]
    elif isinstance(value, bool | int):
        token = ["i", int(value)]
    else:
        token = ["s", str(value)]
    raw = json.dumps([*token, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[object, int]:
    try:
        kind, value, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(pk, int):
            raise TypeError(pk)
        decoded = {"n": lambda v: None, "t": datetime.fromisoformat, "d": lambda v: timedelta(microseconds=int(v)),
                   "i": int, "s": str}[kind](value)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor(f"not a page cursor: {cursor[:40]!r}") from exc
    return decoded, pk


def _order(key: str, descending: bool) -> list:
    if descending:
        return [F(key).desc(nulls_last=True), F("pk").desc()]
    return [F(key).asc(nulls_last=True), F("pk").asc()]


def _reverse_order(key: str, descending: bool) -> list:
    if descending:
        return [F(key).asc(nulls_first=True), F("pk").asc()]
    return [F(key).desc(nulls_first=True), F("pk").desc()]


def _after(key: str, descending: bool, value, pk: int) -> Q:
    """Rows that come after (value, pk) in the page order."""
    if value is None:
        return Q(**{f"{key}__isnull": True, "pk__lt" if descending else "pk__gt": pk})
    beyond, pk_beyond = ("lt", "lt") if descending else ("gt", "gt")
    return (Q(**{f"{key}__{beyond}": value}) | Q(**{key: value, f"pk__{pk_beyond}": pk})
            | Q(**{f"{key}__isnull": True}))


def _before(key: str, descending: bool, value, pk: int) -> Q:
    """Rows that come before (value, pk) in the page order."""
    if value is None:
        return Q(**{f"{key}__isnull": False}) | Q(**{f"{key}__isnull": True, "pk__gt" if descending else "pk__lt": pk})
    ahead = "gt" if descending else "lt"
    return Q(**{f"{key}__{ahead}": value}) | Q(**{key: value, f"pk__{ahead}": pk})


def keyset_page(qs: QuerySet, *, key: str, descending: bool, size: int, after: str | None = None,
                before: str | None = None, last: bool = False) -> KeysetPage:
    """One page of `qs` ordered by `key` (then pk): the first, the one after/before a cursor, or the last.

    Runs one query of at most size + 1 rows. Raises BadCursor for a cursor it cannot read.
    """
    backwards = bool(before) or last
    if after:
        qs = qs.filter(_after(key, descending, *decode_cursor(after)))
    elif before:
        qs = qs.filter(_before(key, descending, *decode_cursor(before)))
    order = _reverse_order(key, descending) if backwards else _order(key, descending)
    rows = list(qs.order_by(*order)[:size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    if not rows:
        return KeysetPage(items=[], next_cursor=None, previous_cursor=None)
    first, final = rows[0], rows[-1]
    has_next = bool(before) or (more and not backwards)
    has_previous = bool(after) or (more and backwards)
    return KeysetPage(
        items=rows,
        next_cursor=encode_cursor(getattr(final, key), final.pk) if has_next else None,
        previous_cursor=encode_cursor(getattr(first, key), first.pk) if has_previous else None)
