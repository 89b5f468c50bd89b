"""AWS Marketplace Metering Service (SaaS): resolve a registration token, send hourly usage.

moto models BatchMeterUsage (every customer answers CustomerNotSubscribed, since nothing can subscribe one)
but not ResolveCustomer: tests script that one with botocore's Stubber on the injected client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError

MAX_RECORDS_PER_CALL = 25  # BatchMeterUsage's limit
INVALID_TOKEN_CODES = frozenset({"InvalidTokenException", "ExpiredTokenException"})


@dataclass(frozen=True)
class MarketplaceCustomer:
    customer_aws_account_id: str  # what AWS now requires to identify a buyer
    product_code: str
    customer_identifier: str = ""  # legacy integrations only; new SaaS integrations get none
    license_arn: str = ""


@dataclass(frozen=True)
class UsageRecord:
    key: str  # the caller's own id for the record, to match its result
    customer_aws_account_id: str
    customer_identifier: str
    license_arn: str
    dimension: str
    hour: datetime  # UTC
    quantity: int


@dataclass(frozen=True)
class UsageResult:
    key: str
    status: str  # Success | CustomerNotSubscribed | DuplicateRecord | Unprocessed
    metering_record_id: str = ""


class MarketplaceTokenInvalid(AwsError):
    """The registration token does not resolve (forged, expired or for another seller)."""


class MarketplaceMeteringGateway(Gateway):
    def resolve_customer(self, token: str) -> MarketplaceCustomer:
        try:
            response = self._call("resolve_customer", RegistrationToken=token)
        except AwsError as exc:
            if exc.code in INVALID_TOKEN_CODES:
                raise MarketplaceTokenInvalid(str(exc), code=exc.code, operation=exc.operation) from exc
            raise
        return MarketplaceCustomer(
            customer_aws_account_id=response.get("CustomerAWSAccountId", ""),
            product_code=response["ProductCode"], customer_identifier=response.get("CustomerIdentifier", ""),
            license_arn=response.get("LicenseArn", ""))

    def batch_meter_usage(self, product_code: str, records: list[UsageRecord]) -> list[UsageResult]:
        """One call for at most 25 records; unprocessed records come back with status `Unprocessed`."""
        if len(records) > MAX_RECORDS_PER_CALL:
            raise ValueError(f"BatchMeterUsage takes at most {MAX_RECORDS_PER_CALL} records")
        by_identity = {_identity(_record_out(r)): r.key for r in records}
        response = self._call("batch_meter_usage", ProductCode=product_code,
                              UsageRecords=[_record_out(r) for r in records])
        results = [UsageResult(by_identity[_identity(item["UsageRecord"])], item["Status"],
                               item.get("MeteringRecordId", ""))
                   for item in response.get("Results", []) if _identity(item["UsageRecord"]) in by_identity]
        results += [UsageResult(by_identity[_identity(item)], "Unprocessed")
                    for item in response.get("UnprocessedRecords", []) if _identity(item) in by_identity]
        return results


def _record_out(record: UsageRecord) -> dict[str, Any]:
    """Legacy customers are named by CustomerIdentifier; new SaaS integrations by account id (and license)."""
    out: dict[str, Any] = {"Timestamp": record.hour, "Dimension": record.dimension, "Quantity": record.quantity}
    if record.customer_identifier:
        out["CustomerIdentifier"] = record.customer_identifier
    else:
        out["CustomerAWSAccountId"] = record.customer_aws_account_id
        if record.license_arn:
            out["LicenseArn"] = record.license_arn
    return out


def _identity(item: dict[str, Any]) -> tuple:
    stamp = item["Timestamp"]
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    elif isinstance(stamp, (int, float)):
        from datetime import UTC

        stamp = datetime.fromtimestamp(stamp, UTC)
    return (item.get("CustomerIdentifier") or item.get("CustomerAWSAccountId", ""), item["Dimension"],
            int(stamp.timestamp()))
