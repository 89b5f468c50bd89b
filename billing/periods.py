"""The billing calendar, defined once: billing days and months are UTC, as AWS bills (Cost Explorer days,
the invoice month). Every "spend this month" and every month's statement or budget alert starts here, whatever
the viewer's time zone; pages say "(UTC)" where the difference shows.
"""

from __future__ import annotations

from datetime import UTC, date

from django.utils import timezone


def utc_today() -> date:
    """Today's billing day (UTC)."""
    return timezone.now().astimezone(UTC).date()


def billing_month_start(today: date | None = None) -> date:
    """First day of the billing month that holds `today` (a UTC billing day; default: now)."""
    return (today or utc_today()).replace(day=1)
