"""Writes of the billing app: metering, Cost Explorer sync, prices, budgets."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import periods
from billing.models import BudgetAlert, BuildCharge, CostLine, CostSyncRun, DailyCost, InstancePrice
from billing.rollups import rollups_refresh
from billing.rules import (  # noqa: F401 - step_cost is part of this module's interface
    FINAL_AFTER_DAYS,
    SYNC_BACKFILL_DAYS,
    SYNC_MAX_DAYS,
    SYNC_STALE_AFTER,
    step_cost,
)

logger = logging.getLogger(__name__)

PRICE_FILE = Path(__file__).parent / "data" / "instance_prices.csv"
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+$")



class UnknownInstanceType(ValueError):
    """No price for an instance type: an error naming it, never a silent zero."""


class InvalidPrice(ValueError):
    """A price edit that cannot be saved (the message says why)."""


class CostSyncBusy(RuntimeError):
    """Another Cost Explorer sync is running: one at a time, each request costs money."""


def utc_today() -> date:
    """Billing days are UTC days, as Cost Explorer's (defined in billing.periods)."""
    return periods.utc_today()


# ----- prices -----

def instance_prices_load(*, path: Path = PRICE_FILE) -> int:
    """Load the shipped price table (idempotent; staff edits of existing rows are kept)."""
    created = 0
    with path.open() as handle:
        for row in csv.DictReader(handle):
            _, was_created = InstancePrice.objects.get_or_create(
                instance_type=row["instance_type"], region=row["region"],
                defaults={"price_per_hour": Decimal(row["price_per_hour"])})
            created += was_created
    return created


def price_for(instance_type: str, region: str | None = None) -> Decimal:
    region = region or settings.AWS_REGION
    price = InstancePrice.objects.filter(instance_type=instance_type, region=region).values_list(
        "price_per_hour", flat=True).first()
    if price is None:
        raise UnknownInstanceType(f"no price for instance type `{instance_type}` in {region}; "
                                  "add it on the prices page")
    return price


def instance_price_set(*, instance_type: str, region: str, price_per_hour: Decimal,
                       add_new: bool = False) -> InstancePrice:
    """Change the price of a known instance type, or (add_new) add a new SageMaker instance type.

    Raises UnknownInstanceType naming the type when it has no price yet and add_new is off, or when
    it is not a SageMaker instance type name at all; InvalidPrice for a price that is not positive.
    """
    instance_type = instance_type.strip()
    region = region.strip()
    if price_per_hour is None or price_per_hour <= 0:
        raise InvalidPrice(f"the price of `{instance_type}` must be more than $0 per hour")
    existing = InstancePrice.objects.filter(instance_type=instance_type, region=region).first()
    if existing is None:
        if not INSTANCE_TYPE_PATTERN.match(instance_type):
            raise UnknownInstanceType(f"unknown instance type `{instance_type}`: SageMaker instance types "
                                      "look like ml.m5.large")
        if not add_new:
            raise UnknownInstanceType(f"unknown instance type `{instance_type}` in {region}: it has no price "
                                      "yet; tick \u201cnew instance type\u201d to add it")
        return InstancePrice.objects.create(instance_type=instance_type, region=region,
                                            price_per_hour=price_per_hour)
    existing.price_per_hour = price_per_hour
    existing.save(update_fields=["price_per_hour"])
    return existing


# ----- metering -----

def build_meter(*, build) -> list[CostLine]:
    """One cost line per finished step with billable time (idempotent per step), then the budget check."""
    lines = []
    with transaction.atomic():
        for step in build.steps.filter(ended_at__isnull=False, billable_seconds__gt=0).exclude(instance_type=""):
            price = price_for(step.instance_type)
            line, _ = CostLine.objects.update_or_create(
                step=step,
                defaults=dict(tenant_id=build.tenant_id, plan_id=build.plan_id, build=build,
                              instance_type=step.instance_type, instance_count=step.instance_count,
                              billable_seconds=step.billable_seconds, price_per_hour=price,
                              amount=step_cost(billable_seconds=step.billable_seconds,
                                               instance_count=step.instance_count, price_per_hour=price),
                              day=step.ended_at.astimezone(UTC).date()),
            )
            lines.append(line)
        if lines:
            days = [line.day for line in lines]
            rollups_refresh(start=min(days), end=max(days), tenant_slugs=[build.tenant.slug])
    if lines:
        budget_check(tenant=build.tenant)
    return lines


def metering_run(*, limit: int = 200) -> int:
    """Pull usage: meter every ended, billable step builds recorded that has no cost line yet.

    Builds only report what ran (steps with instance type, count and billable seconds);
    billing reads them here, on the scheduler's tick. A finished build's total becomes its
    `BuildCharge` and the `cost_usd` of its ledger item. Returns how many builds were metered.
    """
    from builds.models import Build, BuildStep

    unmetered = (BuildStep.objects.filter(ended_at__isnull=False, billable_seconds__gt=0, cost_line__isnull=True)
                 .exclude(instance_type="").order_by().values_list("build_id", flat=True).distinct()[:limit])
    finished_uncharged = (Build.objects.filter(status__in=Build.FINISHED, charge__isnull=True).order_by()
                          .values_list("pk", flat=True)[:limit])
    build_ids = set(unmetered) | set(finished_uncharged)
    metered = 0
    for build in Build.objects.select_related("tenant").filter(pk__in=build_ids).order_by("pk"):
        try:
            build_meter(build=build)
        except UnknownInstanceType as exc:
            logger.error("build %s cannot be metered: %s", build.code, exc)
            continue
        if build.is_finished:
            build_charge_record(build=build)
        metered += 1
    ledger_costs_write()
    return metered


# ----- metering of test endpoints -----

ENDPOINT_PERIOD = timedelta(hours=1)


def _next_period_boundary(moment: datetime) -> datetime:
    """The next whole UTC hour after `moment` (a period never crosses a UTC day, so each has one billing day)."""
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour + ENDPOINT_PERIOD


def endpoint_periods(*, start: datetime, end: datetime, closing: bool) -> list[tuple[datetime, datetime]]:
    """The metered periods of [start, end): whole UTC hours (the first from `start`), and, when the service
    period has ended (`closing`), the partial last one up to `end`. A running endpoint's current hour waits."""
    periods = []
    cursor = start
    while (boundary := _next_period_boundary(cursor)) <= end:
        periods.append((cursor, boundary))
        cursor = boundary
    if closing and cursor < end:
        periods.append((cursor, end))
    return periods


def endpoint_meter(*, endpoint, now: datetime | None = None) -> list[CostLine]:
    """Write the cost lines of the endpoint's service time not metered yet (idempotent: one line per period).

    Endpoint hours are the time an endpoint is in service: from `in_service_at` to `service_ended_at` (failed or
    deleted), or to now while it serves, priced like build steps (`price_for` x `step_cost`, one instance) at the
    plan's endpoint instance type. Serverless endpoints are not metered by the hour: AWS bills them per request's
    compute time, which the portal does not measure, so they write no lines.
    """
    from django.db.models import Max

    now = now or timezone.now()
    plan = endpoint.tenant.plan
    if plan.endpoint_serverless or endpoint.in_service_at is None:
        return []
    if hasattr(endpoint, "metered_until"):  # annotated by endpoints_metering_run
        metered_until = endpoint.metered_until
    else:
        metered_until = endpoint.cost_lines.aggregate(until=Max("period_end"))["until"]
    start = max(endpoint.in_service_at, metered_until) if metered_until else endpoint.in_service_at
    end = endpoint.service_ended_at or now
    periods = endpoint_periods(start=start, end=end, closing=endpoint.service_ended_at is not None)
    if not periods:
        return []
    instance_type = plan.endpoint_instance_type
    price = price_for(instance_type)
    lines = []
    for period_start, period_end in periods:
        seconds = int((period_end - period_start).total_seconds())
        lines.append(CostLine(
            tenant_id=endpoint.tenant_id, plan_id=plan.pk, endpoint=endpoint, endpoint_name=endpoint.name,
            period_start=period_start, period_end=period_end, instance_type=instance_type, instance_count=1,
            billable_seconds=seconds, price_per_hour=price,
            amount=step_cost(billable_seconds=seconds, instance_count=1, price_per_hour=price),
            day=period_start.astimezone(UTC).date()))
    with transaction.atomic():
        # Another run may have written some of these periods: the unique (endpoint, period start) keeps one.
        CostLine.objects.bulk_create(lines, ignore_conflicts=True)
        days = [line.day for line in lines]
        rollups_refresh(start=min(days), end=max(days), tenant_slugs=[endpoint.tenant.slug])
    budget_check(tenant=endpoint.tenant)
    return lines


def endpoints_metering_run(*, now: datetime | None = None, limit: int = 500) -> int:
    """Meter the endpoints with service time not metered yet: those serving (whole hours closed since the last
    run) and those whose service ended after their last metered period (the last, partial period).

    Builds only record when an endpoint served; billing reads it here, on the scheduler's tick. Returns how
    many endpoints got new lines.
    """
    from django.db.models import F, Max, Q

    from builds.models import Endpoint

    now = now or timezone.now()
    candidates = (Endpoint.objects.select_related("tenant", "tenant__plan")
                  .filter(in_service_at__isnull=False, tenant__plan__endpoint_serverless=False)
                  .annotate(metered_until=Max("cost_lines__period_end"))
                  .filter(Q(metered_until__isnull=True) | Q(service_ended_at__isnull=True)
                          | Q(service_ended_at__gt=F("metered_until")))
                  .order_by("pk")[:limit])
    metered = 0
    for endpoint in candidates:
        try:
            metered += bool(endpoint_meter(endpoint=endpoint, now=now))
        except UnknownInstanceType as exc:
            logger.error("endpoint %s of %s cannot be metered: %s", endpoint.name, endpoint.tenant.slug, exc)
    return metered


def build_charge_record(*, build) -> BuildCharge:
    from billing.selectors import build_cost

    charge, _ = BuildCharge.objects.update_or_create(
        build=build, defaults={"tenant_id": build.tenant_id, "amount": build_cost(build), "ledger_written": False,
                               "updated_at": timezone.now()})
    return charge


def ledger_costs_write(*, limit: int = 200) -> int:
    """Write the metered cost onto the build ledger items still without it (idempotent, retried next tick)."""
    from core.aws import gateways
    from core.aws.errors import AwsError

    dynamodb = gateways.platform_dynamodb()
    written = 0
    for charge in BuildCharge.objects.select_related("build", "tenant").filter(ledger_written=False)[:limit]:
        try:
            dynamodb.update_item(settings.MLAAS_LEDGER_TABLE,
                                 {"tenant": charge.tenant.slug, "build": str(charge.build.code)},
                                 {"cost_usd": str(charge.amount)})
        except AwsError as exc:
            logger.warning("ledger cost of build %s not written yet: %s", charge.build.code, exc)
            break  # the table or AWS is unavailable: the next tick tries again
        BuildCharge.objects.filter(pk=charge.pk, amount=charge.amount).update(ledger_written=True)
        written += 1
    return written


# ----- budgets -----

def budget_check(*, tenant, today: date | None = None) -> BudgetAlert | None:
    """Record a BudgetAlert the first time this month's metered spend reaches the alert threshold, and the
    month's spend on the tenant (for the budget hard cap, `tenants.budgets`).

    Returns the month's alert (new or already recorded), or None while under the threshold.
    """
    from billing.selectors import budget_threshold, tenant_spend_this_month
    from tenants.services import tenant_spend_record

    threshold = budget_threshold(tenant)
    today = today or utc_today()
    month = periods.billing_month_start(today)
    spend = tenant_spend_this_month(tenant, today)
    # The hard cap reads this from the tenant (builds may not import billing): recorded on every check.
    tenant_spend_record(tenant_id=tenant.pk, month=month, spend=spend.quantize(Decimal("0.0001")))
    if threshold is None or spend < threshold:
        return None
    alert, created = BudgetAlert.objects.get_or_create(
        tenant=tenant, month=month,
        defaults={"threshold_amount": threshold, "spend_at_crossing": spend.quantize(Decimal("0.0001"))})
    if created:
        logger.warning("tenant %s crossed its budget alert threshold: $%s of $%s (%s%% of $%s)", tenant.slug,
                       spend, threshold, tenant.budget_alert_percent, tenant.monthly_budget)
    return alert


# ----- Cost Explorer sync -----

def cost_sync_window(*, today: date, last_final_day: date | None) -> tuple[date, date]:
    """The days (inclusive) a sync on `today` fetches: every day not final yet, never today (incomplete)."""
    end = today - timedelta(days=1)
    recent = today - timedelta(days=FINAL_AFTER_DAYS)
    if last_final_day is None:
        start = today - timedelta(days=SYNC_BACKFILL_DAYS)
    else:
        start = min(recent, last_final_day + timedelta(days=1))
    start = max(start, today - timedelta(days=SYNC_MAX_DAYS))
    return start, end


def cost_sync_run(*, triggered_by: str = "schedule", today: date | None = None,
                  gateway=None) -> CostSyncRun:
    """Fetch the days not final yet from Cost Explorer in one grouped query (plus its pages) and upsert them.

    The number of requests depends on the data volume (pages) only, never on the number of tenants:
    one GetCostAndUsage grouped by the tenant tag and SERVICE covers every tenant and the untagged rest.
    The run is recorded in CostSyncRun; on failure the run is marked failed and the error re-raised
    so the job can decide to retry. Raises CostSyncBusy while another run is in progress.
    """
    from billing.selectors import cost_sync_last_final_day

    today = today or utc_today()
    start, end = cost_sync_window(today=today, last_final_day=cost_sync_last_final_day())
    run = _cost_sync_claim(start=start, end=end, triggered_by=triggered_by)
    if gateway is None:
        from core.aws import gateways

        gateway = gateways.platform_cost_explorer()
    try:
        rows, requests = gateway.daily_cost_by_tag(start=start, end=end + timedelta(days=1),
                                                   tag_key=settings.MLAAS_TAG_KEY)
        run.requests = requests
        run.rows = daily_costs_upsert(rows=rows, start=start, end=end)
    except Exception as exc:  # recorded on the run, then re-raised for the job's retry
        _cost_sync_finish(run, status=CostSyncRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run.last_final_day = _last_final_day(rows=rows, start=start, end=end, today=today)
    with transaction.atomic():
        _cost_sync_finish(run, status=CostSyncRun.Status.SUCCEEDED)
        # The window's days now count Cost Explorer's figure as the AWS cost: every tenant's rollup changes.
        rollups_refresh(start=start, end=end)
    return run


def _cost_sync_claim(*, start: date, end: date, triggered_by: str) -> CostSyncRun:
    now = timezone.now()
    with transaction.atomic():
        CostSyncRun.objects.filter(status=CostSyncRun.Status.RUNNING, started_at__lt=now - SYNC_STALE_AFTER).update(
            status=CostSyncRun.Status.FAILED, ended_at=now, error="abandoned: its worker stopped before it ended")
        if CostSyncRun.objects.filter(status=CostSyncRun.Status.RUNNING).exists():
            raise CostSyncBusy("a Cost Explorer sync is already running")
        return CostSyncRun.objects.create(start_day=start, end_day=end, triggered_by=triggered_by[:40],
                                          started_at=now)


def _cost_sync_finish(run: CostSyncRun, *, status: str, error: str = "") -> None:
    run.status = status
    run.error = error[:4000]
    run.ended_at = timezone.now()
    run.save(update_fields=["status", "error", "ended_at", "requests", "rows", "last_final_day"])


def _last_final_day(*, rows: Iterable, start: date, end: date, today: date) -> date:
    """The latest day of which Cost Explorer's figure will not change any more.

    Days older than 48 h are final, unless Cost Explorer still marks one of them estimated;
    everything before the window was final when an earlier run fetched it.
    """
    candidate = min(end, today - timedelta(days=FINAL_AFTER_DAYS))
    still_estimated = [row.day for row in rows if row.estimated and row.day <= candidate]
    if still_estimated:
        candidate = min(still_estimated) - timedelta(days=1)
    return max(candidate, start - timedelta(days=1))


def daily_costs_upsert(*, rows: Iterable, start: date, end: date) -> int:
    """Write Cost Explorer rows (day, tenant slug or "" for untagged, service) and drop rows it no longer reports.

    The window [start, end] was fetched completely, so a stored row of those days that the new
    data lacks is stale.
    """
    stamp = timezone.now()
    merged: dict[tuple[date, str, str], list] = {}
    for row in rows:
        if not (start <= row.day <= end):
            continue
        key = (row.day, row.tenant_slug or DailyCost.UNTAGGED, row.service[:120])
        if key in merged:
            merged[key][0] += row.amount
            merged[key][1] = merged[key][1] or row.estimated
        else:
            merged[key] = [row.amount, row.estimated]
    objects = [DailyCost(day=day, tenant_slug=slug, service=service, amount=amount, estimated=estimated,
                         synced_at=stamp)
               for (day, slug, service), (amount, estimated) in merged.items()]
    with transaction.atomic():
        DailyCost.objects.bulk_create(objects, batch_size=500, update_conflicts=True,
                                      unique_fields=["day", "tenant_slug", "service"],
                                      update_fields=["amount", "estimated", "synced_at"])
        DailyCost.objects.filter(day__gte=start, day__lte=end).exclude(synced_at=stamp).delete()
    return len(objects)
