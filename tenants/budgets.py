"""The budget hard cap, read by the dispatcher and the waiting reasons (tenants know budgets; builds may
not import billing).

Billing records each tenant's metered spend of the month on the tenant (`tenants.services.
tenant_spend_record`, after every metering); a tenant is capped while its cap is on, it has a
budget (0 is none, as billing's alerts read it) and the recorded spend of the current billing
month (UTC, as `billing.periods`) is at least the budget. A raised budget releases it at once
(the comparison is with the budget of the moment); a new month releases it because the
recorded spend is of an older month.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from django.utils import timezone


def billing_month(at: datetime | None = None) -> date:
    """First day of the UTC calendar month holding `at` (the billing month, as billing.periods defines it)."""
    return (at or timezone.now()).astimezone(UTC).date().replace(day=1)


def is_capped(*, hard_cap: bool, budget: Decimal | None, spend_month: date | None, spend: Decimal | None,
              at: datetime | None = None) -> bool:
    return bool(hard_cap and budget and spend is not None and spend_month == billing_month(at)
                and spend >= budget)


# The rule in SQL for the dispatcher's raw tenant query (alias `t`; one parameter: the billing month).
# COALESCE: a tenant never metered (NULL spend) is not capped, and NOT NULL would drop it from the query.
NOT_CAPPED_SQL = ("NOT COALESCE(t.budget_hard_cap AND t.monthly_budget > 0 AND t.metered_spend_month = %s "
                  "AND t.metered_spend >= t.monthly_budget, FALSE)")
