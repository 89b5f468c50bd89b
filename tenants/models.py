from __future__ import annotations

import hashlib
import secrets
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


class Plan(models.Model):
    slug = models.SlugField(unique=True, max_length=40)
    name = models.CharField(max_length=80)
    tier_rank = models.PositiveIntegerField(default=1, help_text="Higher tiers dispatch first.")
    plan_concurrent_limit = models.PositiveIntegerField(default=4)
    tenant_concurrent_limit = models.PositiveIntegerField(default=1)
    processing_instance_type = models.CharField(max_length=40, default="ml.m5.large")
    processing_instance_count = models.PositiveIntegerField(default=1)
    training_instance_type = models.CharField(max_length=40, default="ml.m5.large")
    training_instance_count = models.PositiveIntegerField(default=1)
    tuning_included = models.BooleanField(default=False)
    max_tuning_jobs = models.PositiveIntegerField(default=0)
    upload_size_limit_bytes = models.PositiveBigIntegerField(default=100 * 1024 * 1024)
    monthly_fee = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    included_build_hours = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    overage_price_per_hour = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    # [{max_bytes, processing_instance_type, processing_instance_count, training_instance_type,
    #   training_instance_count}, ...] ascending, the last without a bound; see tenants.sizing.
    size_bands = models.JSONField(default=list, blank=True, help_text=(
        "Instances by dataset size: a dataset runs on the first band whose max_bytes it fits; the last band has "
        "max_bytes null. Empty: every dataset runs on the instance fields above."))
    marketplace_dimension = models.CharField(
        max_length=80, blank=True, help_text="AWS Marketplace metering dimension for build hours above the "
                                             "included hours (empty: this plan is not metered to Marketplace).")
    max_test_endpoints = models.PositiveIntegerField(
        default=1, help_text="Test endpoints a tenant may have at once; deploying at the limit replaces one.")
    endpoint_idle_minutes = models.PositiveIntegerField(
        default=60, help_text="A test endpoint not scored for this long is deleted (cost control).")
    endpoint_instance_type = models.CharField(max_length=40, default="ml.t2.medium")
    endpoint_serverless = models.BooleanField(default=False, help_text="SageMaker serverless inference instead "
                                                                       "of an instance.")
    endpoint_serverless_memory_mb = models.PositiveIntegerField(default=2048)
    api_requests_per_minute = models.PositiveIntegerField(
        default=120, help_text="REST API requests a minute for each of a tenant's tokens; all of the tenant's "
                               "tokens together get twice this. Higher tiers get more.")
    borrowing_limit = models.PositiveIntegerField(
        default=0, help_text="Builds this plan may run beyond its concurrent limit on capacity other plans leave "
                             "idle. Borrowed capacity is taken back by starting no further borrowed builds; "
                             "running ones are never stopped.")

    class Meta:
        ordering = ["-tier_rank", "slug"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    class Isolation(models.TextChoices):
        SILO = "silo", "Silo (own bucket)"
        POOL = "pool", "Pool (prefix in shared bucket)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        PROVISIONING = "provisioning", "Provisioning"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"
        SUSPENDED = "suspended", "Suspended"
        OFFBOARDED = "offboarded", "Offboarded"

    slug = models.SlugField(unique=True, max_length=40)
    name = models.CharField(max_length=120)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    isolation = models.CharField(max_length=8, choices=Isolation.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONING)
    owner_email = models.EmailField(blank=True)
    bucket = models.CharField(max_length=63, blank=True)
    prefix = models.CharField(max_length=200, blank=True, help_text="Key prefix of all tenant data ('' for silo).")
    role_arn = models.CharField(max_length=300, blank=True)
    model_package_group = models.CharField(max_length=120, blank=True)
    default_algorithm = models.ForeignKey(
        "builds.Algorithm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    default_target = models.CharField(max_length=120, blank=True)
    monthly_budget = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    budget_alert_percent = models.PositiveIntegerField(default=80)
    budget_hard_cap = models.BooleanField(
        default=False, help_text="Hold queued builds back once this month's metered spend reaches the monthly "
                                 "budget (running builds are never stopped); a raised budget or the next month "
                                 "releases them.")
    # This month's metered spend as billing last recorded it (tenants.services.tenant_spend_record): the
    # dispatcher compares it with the budget without reading billing (builds may not import billing).
    metered_spend_month = models.DateField(null=True, blank=True, editable=False)
    metered_spend = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True, editable=False)
    offboard_data_choice = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    fair_share_weight = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.01), MaxValueValidator(1000.0)],
        help_text="Share of its plan's capacity relative to the plan's other tenants (default 1): a tenant of "
                  "weight 2 may use twice the build time of one of weight 1 before it waits behind it.")
    usage_log2 = models.FloatField(
        null=True, blank=True, editable=False,
        help_text="Decayed build-seconds, forward-decayed: log2(sum of seconds x 2^((t - epoch) / half-life)); "
                  "null: never charged. tenants.fairshare reads and writes it.")
    fair_share_key = models.FloatField(
        null=True, blank=True, editable=False,
        help_text="usage_log2 - log2(fair_share_weight), kept beside them so the dispatcher orders tenants "
                  "by an index; lower goes first, null first of all.")

    class Meta:
        ordering = ["slug"]
        indexes = [models.Index(fields=["plan", "fair_share_key", "last_dispatched_at", "id"],
                                name="tenant_fair_share_order"),
                   # intake finds the tenant of every upload by its bucket and prefix
                   models.Index(fields=["bucket", "prefix"], name="tenant_storage_location")]

    def __str__(self) -> str:
        return self.slug

    @property
    def upload_prefix(self) -> str:
        return f"{self.prefix}uploads/"

    @property
    def output_prefix(self) -> str:
        return f"{self.prefix}models/"

    @property
    def batch_prefix(self) -> str:
        """Batch scoring inputs and outputs: outside `uploads/`, so intake never takes one for a training upload."""
        return f"{self.prefix}batch/"

    @property
    def upload_uri(self) -> str:
        return f"s3://{self.bucket}/{self.upload_prefix}" if self.bucket else ""


class ProvisioningStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="provisioning_steps")
    name = models.CharField(max_length=60)
    order = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    resource_arn = models.CharField(max_length=400, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "order"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_tenant_step")]


class TenantEvent(models.Model):
    """Audit trail of lifecycle actions (suspend, offboard, plan change...)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=40)
    detail = models.TextField(blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """Bearer token for /api/v1; only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, default="default")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    @staticmethod
    def new_raw_key() -> str:
        return "mlp_" + secrets.token_urlsafe(32)

    @staticmethod
    def hash(raw: str) -> str:
        return _hash_token(raw)


ACCESS_REQUEST_MESSAGE_MAX_LENGTH = 2000


class AccessRequest(models.Model):
    """Public 'request access' form submissions, pending staff onboarding."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    company = models.CharField(max_length=120)
    contact_email = models.EmailField()
    plan = models.ForeignKey(Plan, on_delete=models.SET_NULL, null=True, blank=True)
    # A TextField's max_length only sizes the form field; the validator enforces it in full_clean().
    message = models.TextField(blank=True, max_length=ACCESS_REQUEST_MESSAGE_MAX_LENGTH,
                               validators=[MaxLengthValidator(ACCESS_REQUEST_MESSAGE_MAX_LENGTH)])
    # Where the submission came from, to limit submissions per address (see access_request_create).
    client_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class MarketplaceCustomer(models.Model):
    """A buyer who subscribed through AWS Marketplace (SaaS), from ResolveCustomer.

    Registered first (pending), then an access request staff complete by onboarding a tenant, which links it.
    Subscription notifications move its status and suspend, resume or offboard the tenant.
    """

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        SUBSCRIBED = "subscribed", "Subscribed"
        SUBSCRIBE_FAILED = "subscribe_failed", "Subscription failed"
        UNSUBSCRIBE_PENDING = "unsubscribe_pending", "Unsubscribing"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # AWS now identifies a buyer by account id (and license); CustomerIdentifier only for legacy integrations.
    customer_aws_account_id = models.CharField(max_length=12)
    product_code = models.CharField(max_length=255)
    customer_identifier = models.CharField(max_length=255, blank=True)
    license_arn = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERED)
    tenant = models.OneToOneField(Tenant, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="marketplace_customer")
    access_request = models.OneToOneField(AccessRequest, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="marketplace_customer")
    registered_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-registered_at"]
        constraints = [models.UniqueConstraint(fields=["customer_aws_account_id", "product_code"],
                                               name="uniq_marketplace_customer")]

    def __str__(self) -> str:
        return self.customer_identifier or self.customer_aws_account_id


class MarketplaceNotification(models.Model):
    """One subscription notification handled (SNS message id): the same message delivered twice acts once."""

    message_id = models.CharField(max_length=100, unique=True)
    action = models.CharField(max_length=40)
    customer = models.CharField(max_length=255, blank=True, help_text="customer-identifier or account id")
    outcome = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
class SchedulingPolicy(models.Model):
    """The scheduling knobs staff set at run time (one row): fair-share memory and new-tenant reservation.

    Change it through `tenants.services.scheduling_policy_update`, which rescales every
    tenant's stored usage to the new half-life (the admin does).
    """

    usage_half_life_hours = models.FloatField(
        default=24.0, validators=[MinValueValidator(0.1), MaxValueValidator(24.0 * 90)],
        help_text="Build time used this long ago counts half as much in fair-share ordering.")
    new_tenant_reserved_share = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of the account's concurrent limit only newly active tenants (nothing running, under a "
                  "build-minute of decayed usage) may start builds on, so they never wait for a long queue.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "scheduling policy"

    def __str__(self) -> str:
        return f"half-life {self.usage_half_life_hours:g} h, reserved {self.new_tenant_reserved_share:.0%}"


class Webhook(models.Model):
    """A tenant's receiver of events (its delivery flow): where to send, which events, the signing secret.

    Written through tenants.webhooks; deliveries are signed with `secret` (Standard Webhooks: whsec_ + base64).
    """

    class Event(models.TextChoices):
        BUILD_SUCCEEDED = "build.succeeded", "Build succeeded"
        BUILD_FAILED = "build.failed", "Build failed"
        MODEL_REGISTERED = "model.registered", "Model version registered"
        MODEL_APPROVED = "model.approved", "Model version approved"
        MODEL_REJECTED = "model.rejected", "Model version rejected"
        ENDPOINT_IN_SERVICE = "endpoint.in_service", "Test endpoint in service"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhooks")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.CharField(max_length=300, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One message to one webhook, and its attempts: the row is the truth; a Redis job only says "try it".

    `msg_id` is the Standard Webhooks `webhook-id`: the same for every attempt and for a resend, so a receiver
    can drop a message it already handled. `next_attempt_at` is when the scheduler's sweep sends it (again).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=40)
    msg_id = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    resent_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["webhook", "created_at", "id"], name="webhook_delivery_recent"),
                   # the scheduler's sweep: pending deliveries by due time
                   models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]
