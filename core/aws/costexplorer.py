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

    def cost_allocation_tag_statuses(self, keys: list[str]) -> dict[str, str]:
        """Each key's status as a cost allocation tag: Active, Inactive, or `missing` (AWS has not seen it yet:
        a tag key appears up to 24 hours after a tagged resource incurs cost)."""
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"TagKeys": keys, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            response = self._call("list_cost_allocation_tags", **kwargs)
            for tag in response.get("CostAllocationTags", []):
                found[tag["TagKey"]] = tag["Status"]
            token = response.get("NextToken")
            if not token:
                return {key: found.get(key, "missing") for key in keys}

    def activate_cost_allocation_tags(self, keys: list[str]) -> dict[str, str]:
        """Activate the keys; returns the error message per key AWS refused (empty: all activated)."""
        response = self._call("update_cost_allocation_tags_status",
                              CostAllocationTagsStatus=[{"TagKey": key, "Status": "Active"} for key in keys])
        return {e.get("TagKey", ""): f"{e.get('Code', '')}: {e.get('Message', '')}".strip(": ")
                for e in response.get("Errors", [])}
