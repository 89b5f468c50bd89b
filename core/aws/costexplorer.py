from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from core.aws.base import Gateway


@dataclass(frozen=True)
class CostRow:
    day: date
    tenant_slug: str  # "" when the cost carries no tenant tag
    service: str
    amount: Decimal
    estimated: bool


class CostExplorerGateway(Gateway):
    def cost_allocation_tag_status(self, tag_key: str) -> str | None:
        """`Active` or `Inactive` for a user-defined cost allocation tag; None when Billing has never seen it."""
        response = self._call("list_cost_allocation_tags", TagKeys=[tag_key], Type="UserDefined")
        for tag in response.get("CostAllocationTags", []):
            if tag.get("TagKey") == tag_key:
                return tag.get("Status")
        return None

    def daily_cost_by_tag(self, *, start: date, end: date, tag_key: str) -> tuple[list[CostRow], int]:
        """Daily unblended cost grouped by tenant tag and service, all pages.

        Returns the rows and the number of requests made (each costs $0.01).
        One query covers every tenant: grouping by tag, not one call per tenant.
        """
        rows: list[CostRow] = []
        requests = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                "Granularity": "DAILY",
                "Metrics": ["UnblendedCost"],
                "GroupBy": [{"Type": "TAG", "Key": tag_key}, {"Type": "DIMENSION", "Key": "SERVICE"}],
            }
            if token:
                kwargs["NextPageToken"] = token
            response = self._call("get_cost_and_usage", **kwargs)
            requests += 1
            for result in response.get("ResultsByTime", []):
                day = date.fromisoformat(result["TimePeriod"]["Start"])
                estimated = bool(result.get("Estimated", False))
                for group in result.get("Groups", []):
                    keys = group.get("Keys", [])
                    tag_value = keys[0] if keys else ""
                    slug = tag_value.split("$", 1)[1] if "$" in tag_value else ""
                    service = keys[1] if len(keys) > 1 else "unknown"
                    amount = Decimal(group["Metrics"]["UnblendedCost"]["Amount"])
                    rows.append(CostRow(day, slug, service, amount, estimated))
            token = response.get("NextPageToken")
            if not token:
                return rows, requests
