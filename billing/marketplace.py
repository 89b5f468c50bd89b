"""Hourly AWS Marketplace metering: usage per Marketplace customer, sent with BatchMeterUsage.

The dimension is the plan's (`Plan.marketplace_dimension`): whole build hours above the plan's included hours
in the billing month. Each completed UTC hour gets one record per customer and dimension (the unique
constraint makes a second run a no-op), holding the hours that crossed a whole number in that hour: the month's
records add up to the month's overage. Records go out at most 25 a call, per product code; throttling is retried
with backoff, and what does not go out stays pending for the next run. AWS refuses records more than six hours
old: a record still pending by then is marked expired, which the staff dashboard shows as an alert.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError
from django.db.models import Sum
from django.utils import timezone

from billing.models import MarketplaceUsageRecord
from billing.periods import billing_month_start
from builds.models import BuildStep
from tenants.models import MarketplaceCustomer

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
SEND_WINDOW = timedelta(hours=6)  # AWS refuses older records
CATCH_UP = timedelta(hours=48)  # after a long outage, hours older than this are not recorded at all
SEND_ATTEMPTS = 4  # per call, on throttling: 1 s, 2 s, 4 s between them
METERED_STATUSES = (MarketplaceCustomer.Status.SUBSCRIBED, MarketplaceCustomer.Status.UNSUBSCRIBE_PENDING)
EXPIRED_REASON = "not sent within six hours of its hour: AWS Marketplace no longer accepts it"


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _overage_whole_hours(customer: MarketplaceCustomer, through: datetime) -> int:
    """Whole build hours above the plan's included hours, in the billing month up to `through`."""
    from datetime import UTC

    plan = customer.tenant.plan
    first = billing_month_start((through - timedelta(microseconds=1)).date())
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    seconds = BuildStep.objects.filter(build__tenant=customer.tenant, ended_at__gte=start,
                                       ended_at__lt=through).aggregate(s=Sum("billable_seconds"))["s"] or 0
    overage = Decimal(seconds) / Decimal(3600) - plan.included_build_hours
    return max(0, int(overage))


def _already_metered(customer: MarketplaceCustomer, dimension: str, hour: datetime) -> int:
    from datetime import UTC

    first = billing_month_start(hour.date())
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return MarketplaceUsageRecord.objects.filter(customer=customer, dimension=dimension, hour__gte=start,
                                                 hour__lt=hour).aggregate(q=Sum("quantity"))["q"] or 0


def marketplace_usage_record(*, now: datetime | None = None) -> int:
    """Create the records of every completed hour not recorded yet; returns how many were created."""
    now = now or timezone.now()
    last_complete = hour_floor(now) - HOUR
    created = 0
    customers = (MarketplaceCustomer.objects.filter(status__in=METERED_STATUSES, tenant__isnull=False)
                 .exclude(tenant__plan__marketplace_dimension="").select_related("tenant__plan"))
    for customer in customers:
        dimension = customer.tenant.plan.marketplace_dimension
        last = (MarketplaceUsageRecord.objects.filter(customer=customer, dimension=dimension)
                .order_by("-hour").values_list("hour", flat=True).first())
        hour = max(last + HOUR, hour_floor(now) - CATCH_UP) if last else last_complete
        while hour <= last_complete:
            quantity = max(0, _overage_whole_hours(customer, hour + HOUR) - _already_metered(customer, dimension,
                                                                                              hour))
            expired = hour < now - SEND_WINDOW
            try:
                MarketplaceUsageRecord.objects.create(
                    customer=customer, tenant=customer.tenant, product_code=customer.product_code,
                    dimension=dimension, hour=hour, quantity=quantity,
                    status=MarketplaceUsageRecord.Status.EXPIRED if expired else MarketplaceUsageRecord.Status.PENDING,
                    last_error=EXPIRED_REASON if expired else "")
                created += 1
            except IntegrityError:  # another scheduler recorded this hour first
                pass
            hour += HOUR
    return created


def _expire_old(now: datetime) -> int:
    return MarketplaceUsageRecord.objects.filter(status=MarketplaceUsageRecord.Status.PENDING,
                                                 hour__lt=now - SEND_WINDOW).update(
        status=MarketplaceUsageRecord.Status.EXPIRED, last_error=EXPIRED_REASON)


def _send_batch(gateway, product_code: str, records: list[MarketplaceUsageRecord],
                sleep: Callable[[float], None]) -> dict[str, int]:
    from core.aws.errors import AwsError
    from core.aws.marketplace import UsageRecord

    out = [UsageRecord(key=str(r.pk), customer_aws_account_id=r.customer.customer_aws_account_id,
                       customer_identifier=r.customer.customer_identifier, license_arn=r.customer.license_arn,
                       dimension=r.dimension, hour=r.hour, quantity=r.quantity) for r in records]
    ids = [r.pk for r in records]
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            results = gateway.batch_meter_usage(product_code, out)
            break
        except AwsError as exc:
            if exc.retryable and attempt < SEND_ATTEMPTS:
                sleep(2 ** (attempt - 1))
                continue
            MarketplaceUsageRecord.objects.filter(pk__in=ids).update(last_error=str(exc)[:2000])
            _count_attempt(ids)
            logger.warning("BatchMeterUsage of %d records failed (%s): they stay pending", len(ids), exc)
            return {"failed": len(ids)}
    counts: dict[str, int] = defaultdict(int)
    now = timezone.now()
    for result in results:
        if result.status == "Unprocessed":
            MarketplaceUsageRecord.objects.filter(pk=int(result.key)).update(
                last_error="AWS did not process the record in this call; it is sent again")
            counts["unprocessed"] += 1
            continue
        MarketplaceUsageRecord.objects.filter(pk=int(result.key)).update(
            status=MarketplaceUsageRecord.Status.SENT, result=result.status,
            metering_record_id=result.metering_record_id, sent_at=now, last_error="")
        counts[result.status] += 1
    _count_attempt(ids)
    return dict(counts)


def _count_attempt(ids: list[int]) -> None:
    from django.db.models import F

    MarketplaceUsageRecord.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1)


def marketplace_usage_send(*, now: datetime | None = None, gateway=None,
                           sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Send every pending record young enough, 25 a call per product code; expire the ones too old."""
    from core.aws.marketplace import MAX_RECORDS_PER_CALL

    now = now or timezone.now()
    counts: dict[str, int] = defaultdict(int)
    counts["expired"] = _expire_old(now)
    pending = list(MarketplaceUsageRecord.objects.filter(status=MarketplaceUsageRecord.Status.PENDING)
                   .select_related("customer").order_by("product_code", "hour", "id"))
    if not pending:
        return dict(counts)
    if gateway is None:
        from core.aws import gateways

        gateway = gateways.platform_marketplace_metering()
    by_product: dict[str, list[MarketplaceUsageRecord]] = defaultdict(list)
    for record in pending:
        by_product[record.product_code].append(record)
    for product_code, records in by_product.items():
        for start in range(0, len(records), MAX_RECORDS_PER_CALL):
            for key, n in _send_batch(gateway, product_code, records[start:start + MAX_RECORDS_PER_CALL],
                                      sleep).items():
                counts[key] += n
            counts["calls"] += 1
    return dict(counts)


def marketplace_metering_run(*, now: datetime | None = None, gateway=None,
                             sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Record the completed hours, then send what is pending: what the scheduler runs (idempotent)."""
    now = now or timezone.now()
    created = marketplace_usage_record(now=now)
    return {"recorded": created, **marketplace_usage_send(now=now, gateway=gateway, sleep=sleep)}
