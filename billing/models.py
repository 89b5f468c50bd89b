from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone


def reconciliation_gap() -> Abs:
    """|Cost Explorer - metered| of a DailyUsage row (a missing side counts 0): what the overview's largest
    differences are ordered by, and what the index daily_usage_gap holds (the same expression, so it serves)."""
    zero = Value(Decimal("0"), output_field=models.DecimalField(max_digits=14, decimal_places=6))
    return Abs(Coalesce(F("cost_explorer"), zero) - Coalesce(F("metered"), zero))


class InstancePrice(models.Model):
    """On-demand price of one SageMaker instance type in one region."""

    instance_type = models.CharField(max_length=40)
    region = models.CharField(max_length=20)
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)

    class Meta:
        ordering = ["region", "instance_type"]
        constraints = [models.UniqueConstraint(fields=["instance_type", "region"], name="uniq_instance_price")]

    def __str__(self) -> str:
        return f"{self.instance_type} ({self.region}) ${self.price_per_hour}/h"


class CostLine(models.Model):
    """Metered cost of one source: a finished build step (billable seconds x count x price), or one metered
    period of a test endpoint in service (seconds x price).

    Exactly one source is set (a check constraint). An endpoint line keeps the endpoint's name and instance type,
    so a statement still describes it after the endpoint is deleted; its period is unique per endpoint, so metering
    that runs twice charges once.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="cost_lines")
    plan = models.ForeignKey("tenants.Plan", on_delete=models.PROTECT, related_name="+")
    build = models.ForeignKey("builds.Build", on_delete=models.CASCADE, related_name="cost_lines",
                              null=True, blank=True)
    step = models.OneToOneField("builds.BuildStep", on_delete=models.CASCADE, related_name="cost_line",
                                null=True, blank=True)
    endpoint = models.ForeignKey("builds.Endpoint", on_delete=models.PROTECT, related_name="cost_lines",
                                 null=True, blank=True)
    endpoint_name = models.CharField(max_length=63, blank=True)
    period_start = models.DateTimeField(null=True, blank=True, help_text="Endpoint lines: the metered period.")
    period_end = models.DateTimeField(null=True, blank=True)
    instance_type = models.CharField(max_length=40)
    instance_count = models.PositiveIntegerField()
    billable_seconds = models.PositiveIntegerField()
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    amount = models.DecimalField(max_digits=12, decimal_places=6)
    day = models.DateField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "id"]
        indexes = [models.Index(fields=["tenant", "day"])]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(build__isnull=False, step__isnull=False, endpoint__isnull=True,
                                    period_start__isnull=True)
                           | models.Q(build__isnull=True, step__isnull=True, endpoint__isnull=False,
                                      period_start__isnull=False, period_end__isnull=False)),
                name="cost_line_one_source"),
            models.UniqueConstraint(fields=["endpoint", "period_start"], condition=models.Q(endpoint__isnull=False),
                                    name="uniq_endpoint_cost_period"),
        ]

    @property
    def is_endpoint(self) -> bool:
        return self.endpoint_id is not None


class BuildCharge(models.Model):
    """The metered total of one finished build, and whether the build ledger carries it yet."""

    build = models.OneToOneField("builds.Build", on_delete=models.CASCADE, related_name="charge")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=12, decimal_places=6)
    ledger_written = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["ledger_written"], name="charge_ledger_pending",
                                condition=models.Q(ledger_written=False))]


class DailyCost(models.Model):
    """Actual cost per day from Cost Explorer, grouped by tenant tag and service."""

    UNTAGGED = ""

    day = models.DateField()
    tenant_slug = models.CharField(max_length=40, blank=True, help_text="'' = untagged")
    service = models.CharField(max_length=120)
    amount = models.DecimalField(max_digits=14, decimal_places=6)
    estimated = models.BooleanField(default=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "tenant_slug", "service"]
        constraints = [
            models.UniqueConstraint(fields=["day", "tenant_slug", "service"], name="uniq_daily_cost")
        ]
        indexes = [models.Index(fields=["tenant_slug", "day"], name="daily_cost_tenant_day")]


class CostSyncRun(models.Model):
    """One Cost Explorer sync: the days it covered (inclusive), what it cost and what it wrote."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    start_day = models.DateField()
    end_day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    last_final_day = models.DateField(null=True, blank=True)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=40, default="schedule")

    class Meta:
        ordering = ["-started_at"]


class BudgetAlert(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="First day of the month")
    threshold_amount = models.DecimalField(max_digits=10, decimal_places=2)
    spend_at_crossing = models.DecimalField(max_digits=12, decimal_places=4)
    crossed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-crossed_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "month"], name="uniq_budget_alert_month")]


class MarketplaceUsageRecord(models.Model):
    """One hour of one Marketplace customer's usage on one dimension, and what BatchMeterUsage said about it.

    Unique per customer, dimension and hour: metering that runs twice sends the same record, which AWS
    answers as the same record (or DuplicateRecord when the quantity differs). AWS refuses records more than
    six hours old, so a record not sent by then is `expired`: staff see an alert, it is never dropped silently.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENT = "sent", "Sent"
        EXPIRED = "expired", "Could not be sent in time"

    customer = models.ForeignKey("tenants.MarketplaceCustomer", on_delete=models.PROTECT, related_name="+")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    product_code = models.CharField(max_length=255)
    dimension = models.CharField(max_length=80)
    hour = models.DateTimeField(help_text="Start of the UTC hour the usage is for (the record's Timestamp).")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    result = models.CharField(max_length=40, blank=True,
                              help_text="BatchMeterUsage's status: Success, DuplicateRecord, CustomerNotSubscribed")
    metering_record_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-hour", "id"]
        constraints = [models.UniqueConstraint(fields=["customer", "dimension", "hour"],
                                               name="uniq_marketplace_usage_hour")]
        indexes = [models.Index(fields=["status", "hour"], name="marketplace_usage_status")]


class BillingSetupCheck(models.Model):
    """What the last billing setup check found (pages show it; only a staff action or the command calls AWS)."""

    checked_at = models.DateTimeField(default=timezone.now)
    tag_statuses = models.JSONField(default=dict, help_text="tag key -> Active | Inactive | missing")
    cost_explorer_error = models.TextField(blank=True, help_text="Empty: Cost Explorer answered.")
    activated = models.JSONField(default=list, blank=True, help_text="Tag keys this check activated.")

    class Meta:
        ordering = ["-checked_at"]
        get_latest_by = "checked_at"
class DailyUsage(models.Model):
    """Rollup: one tenant's (or, with slug "", the untagged) usage and cost on one UTC day.

    Filled and kept exact by billing.rollups from the rows it sums (cost lines, ended build steps,
    Cost Explorer rows), so pages read a day per tenant instead of aggregating history.
    """

    day = models.DateField()
    tenant_slug = models.CharField(max_length=40, blank=True, help_text="'' = untagged (Cost Explorer only)")
    metered = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                  help_text="Sum of the day's cost lines; empty: none")
    billable_seconds = models.PositiveBigIntegerField(default=0, help_text="Of the steps that ended that day")
    endpoint_seconds = models.PositiveBigIntegerField(default=0, help_text="Test endpoint time metered that day")
    endpoint_metered = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                           help_text="Of `metered`, the endpoint lines; empty: none")
    cost_explorer = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                        help_text="Sum of the day's Cost Explorer rows, all services; empty: none")

    class Meta:
        ordering = ["-day", "tenant_slug"]
        constraints = [models.UniqueConstraint(fields=["day", "tenant_slug"], name="uniq_daily_usage")]
        indexes = [models.Index(fields=["tenant_slug", "day"], name="daily_usage_tenant_day"),
                   # The overview's largest differences: read in this order, 20 rows, not a sort of a month's rows.
                   models.Index(reconciliation_gap().desc(), F("day"), F("tenant_slug"), name="daily_usage_gap")]


class MonthlyUsage(models.Model):
    """Rollup: one tenant's usage and cost in one billing month, what its statement is made of.

    aws_cost is Cost Explorer's figure for the days a sync has fetched and the metered one for the
    other days, as the month was when billing.rollups last refreshed it.
    """

    month = models.DateField(help_text="First day of the month")
    tenant_slug = models.CharField(max_length=40, blank=True)
    billable_seconds = models.PositiveBigIntegerField(default=0)
    metered = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    endpoint_seconds = models.PositiveBigIntegerField(default=0, help_text="Test endpoint time (endpoint hours)")
    endpoint_metered = models.DecimalField(max_digits=14, decimal_places=6, default=0,
                                           help_text="Of `metered`, the test endpoints' cost")
    cost_explorer = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    aws_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["-month", "tenant_slug"]
        constraints = [models.UniqueConstraint(fields=["month", "tenant_slug"], name="uniq_monthly_usage")]
