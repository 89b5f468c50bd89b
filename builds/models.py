from __future__ import annotations

import uuid

from django.db import models
from django.db.models import ExpressionWrapper, F
from django.utils import timezone

from mlaas_steps import metrics


class Algorithm(models.Model):
    class ProblemType(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"

    slug = models.SlugField(unique=True, max_length=60)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    problem_type = models.CharField(max_length=16, choices=ProblemType.choices)
    # The step image, pinned: saving the algorithm (admin, staff page, seed) resolved a tag with DescribeImages
    # and recorded the digest, so every build runs exactly that image (builds.step_image).
    image_repository = models.CharField(max_length=256, blank=True,
                                        help_text="ECR repository URI of the step image: <registry>/<prefix>-steps")
    image_tag = models.CharField(max_length=128, blank=True, help_text="The tag that resolved to image_digest")
    image_digest = models.CharField(max_length=71, blank=True, help_text="sha256:<hex> as DescribeImages reported it")
    entry_point = models.CharField(max_length=60, help_text="Local trainer name in mlaas_steps.trainers")
    default_hyperparameters = models.JSONField(default=dict, blank=True)
    tuning_ranges = models.JSONField(default=dict, blank=True)
    objective_metric = models.CharField(max_length=20, choices=metrics.CHOICES)
    min_metric = models.FloatField(help_text="Builds whose objective metric is below this fail "
                                             "(for lower-is-better metrics such as rmse: above).")
    typical_metrics = models.JSONField(default=dict, blank=True, help_text="Measured on the bundled samples")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["problem_type", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def training_image_uri(self) -> str:
        """`<registry>/<prefix>-steps@sha256:<digest>`: what builds pass as TrainingImageUri."""
        return f"{self.image_repository}@{self.image_digest}" if self.image_digest else ""

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        metric = metrics.get_metric(self.objective_metric)
        if metric is not None and self.problem_type and metric.problem_type != self.problem_type:
            raise ValidationError({"objective_metric": (
                f"{metric.display_name} is a {metric.problem_type} metric; a {self.problem_type} algorithm uses "
                f"one of {', '.join(metrics.metrics_for(self.problem_type))}.")})


class Build(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"
        QUEUED = "queued"
        STARTING = "starting"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.STARTING, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Source(models.TextChoices):
        UPLOAD = "upload"
        API = "api"
        PORTAL = "portal"
        RETRY = "retry"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="builds")
    plan = models.ForeignKey("tenants.Plan", on_delete=models.PROTECT, related_name="+",
                             help_text="The plan that dispatched it (fixed at start).")
    algorithm = models.ForeignKey(Algorithm, on_delete=models.PROTECT, related_name="builds")
    algorithm_explicit = models.BooleanField(
        default=True, help_text="Chosen for this build; false: the tenant's default, which preprocessing may "
                                "replace by one that fits the target.")
    algorithm_reason = models.TextField(blank=True, help_text="Why preprocessing kept or chose the algorithm.")
    target = models.CharField(max_length=120)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.UPLOAD)
    dataset_bucket = models.CharField(max_length=63)
    dataset_key = models.CharField(max_length=1024)
    dataset_version = models.CharField(max_length=200, blank=True)
    dataset_size = models.PositiveBigIntegerField(default=0)
    dedup_key = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # The instances chosen when the build was created, by its plan's size band for dataset_size (tenants.sizing).
    processing_instance_type = models.CharField(max_length=40, blank=True)
    processing_instance_count = models.PositiveIntegerField(default=1)
    training_instance_type = models.CharField(max_length=40, blank=True)
    training_instance_count = models.PositiveIntegerField(default=1)
    size_band = models.JSONField(default=dict, blank=True, help_text="The plan's band the dataset fell in.")
    sizing_reason = models.TextField(blank=True, help_text="Why these instances, for a human.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    failure_reason = models.TextField(blank=True)
    engine = models.CharField(max_length=12, blank=True)
    execution_ref = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    data_report = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker_id = models.CharField(max_length=120, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    poll_after = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="A requeued build waits until then (backoff).")
    poll_errors = models.PositiveIntegerField(default=0)
    ledger_written = models.BooleanField(default=False)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    usage_charged_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Run time up to here is already charged to the tenant's fair-share usage (builds.usage).")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "plan", "tenant", "created_at"]),
            models.Index(fields=["tenant", "-created_at"]),
            # The dispatcher's candidate query: the oldest queued builds of each tenant.
            models.Index(fields=["tenant", "created_at", "id"], condition=models.Q(status="queued"),
                         name="build_queued_by_tenant"),
            # Recent run times per plan (queue estimates, a dispatch pick's provisional charge).
            models.Index(fields=["plan", "-ended_at"], condition=models.Q(status="succeeded"),
                         name="build_plan_recent_end"),
            # The staff home: builds that ended in the window, the latest failures.
            models.Index(fields=["ended_at"], name="build_ended_at"),
            models.Index(fields=["status", "-ended_at", "-id"], name="build_status_ended"),
            # The builds list's keyset pages: newest first, and longest/shortest first (builds.selectors.SORTS).
            # NULLS LAST as core.keyset orders (a plain DESC index puts NULLs first and would not serve it).
            models.Index(F("created_at").desc(nulls_last=True), F("id").desc(), name="build_created_id"),
            models.Index(ExpressionWrapper(F("ended_at") - F("started_at"), output_field=models.DurationField())
                         .desc(nulls_last=True), F("id").desc(), name="build_duration_id"),
            models.Index(fields=["status", "id"], name="build_status_id"),
        ]

    def __str__(self) -> str:
        return f"build {self.code}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    @property
    def dataset_name(self) -> str:
        return self.dataset_key.rsplit("/", 1)[-1]


class BuildTransition(models.Model):
    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]


class BuildStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        SKIPPED = "skipped"

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=20)
    order = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    billable_seconds = models.PositiveIntegerField(default=0)
    instance_type = models.CharField(max_length=40, blank=True)
    instance_count = models.PositiveIntegerField(default=1)
    log = models.TextField(blank=True)
    failure_reason = models.TextField(blank=True)
    definition_step = models.CharField(max_length=80, blank=True, help_text=(
        "The pipeline definition's step that ran as this step (Preprocess, Train or Tune, EvaluateTuned, ...)."))

    class Meta:
        ordering = ["build", "order"]
        # The billing rollups sum the billable seconds of the steps that ended on a day.
        indexes = [models.Index(fields=["ended_at"], name="build_step_ended_at")]
        constraints = [models.UniqueConstraint(fields=["build", "name"], name="uniq_build_step")]


class ModelVersion(models.Model):
    class Approval(models.TextChoices):
        PENDING = "PendingManualApproval", "Pending approval"
        APPROVED = "Approved"
        REJECTED = "Rejected"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="model_versions")
    build = models.OneToOneField(Build, on_delete=models.PROTECT, related_name="model_version")
    version = models.PositiveIntegerField()
    arn = models.CharField(max_length=300)
    metrics = models.JSONField(default=dict)
    approval_status = models.CharField(max_length=24, choices=Approval.choices, default=Approval.PENDING)
    artifact_key = models.CharField(max_length=1024)
    insight = models.JSONField(default=dict, blank=True, help_text=(
        "Confusion matrix and ROC, or predicted-vs-actual and residuals, and feature importance, computed by "
        "the evaluate step on the test split (mlaas_steps.insight)."))
    lineage = models.JSONField(default=dict, blank=True, help_text=(
        "What the version was made from: dataset object version, image, algorithm, hyperparameters (and tuned "
        "ones), fixed at registration."))
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="The tenant's approved version when this one was registered, else "
                                           "its previous version.")
    decided_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant", "-version"]
        constraints = [models.UniqueConstraint(fields=["tenant", "version"], name="uniq_tenant_model_version")]


class RejectedUpload(models.Model):
    """An object that landed in an upload location but could not become a build."""

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="rejected_uploads")
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    dedup_key = models.CharField(max_length=64, unique=True)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class Endpoint(models.Model):
    """A tenant's test endpoint serving one approved model version (SageMaker's states, the row is the truth).

    Locally the `serve` entry point runs as a child process on this machine (`port`, `pid`); on AWS it is a
    SageMaker model, endpoint configuration and endpoint named after the endpoint (`resource_name`).
    """

    class Status(models.TextChoices):
        CREATING = "Creating"
        UPDATING = "Updating"
        IN_SERVICE = "InService"
        FAILED = "Failed"
        DELETING = "Deleting"
        DELETED = "Deleted"

    LIVE = (Status.CREATING, Status.UPDATING, Status.IN_SERVICE, Status.FAILED)

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="endpoints")
    name = models.SlugField(max_length=63)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="endpoints")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATING, db_index=True)
    engine = models.CharField(max_length=12)
    failure_reason = models.TextField(blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    resource_name = models.CharField(max_length=63, blank=True, help_text="SageMaker model/config/endpoint name.")
    requested_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    in_service_at = models.DateTimeField(null=True, blank=True, help_text=(
        "Start of the current service period (kept while a newer version replaces the served one)."))
    service_ended_at = models.DateTimeField(null=True, blank=True, help_text=(
        "When the current service period ended (failed or deleted); empty while it serves. Billing meters "
        "endpoint hours from in_service_at to this (or to now)."))
    last_invoked_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    delete_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], condition=~models.Q(status="Deleted"),
                                               name="uniq_live_endpoint_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE


class BatchJob(models.Model):
    """A tenant's CSV scored against one model version: the input rows with their predictions, as a CSV.

    The input lands at `<prefix>batch/<code>/input.csv` (a presigned upload, outside `uploads/`, so intake
    never takes it for a training upload) and the output at `<prefix>batch/<code>/output.csv`. Locally the
    step image's `serve` entry point scores it in chunks; on AWS a SageMaker batch transform job does
    (`transform_job_name`). The row is the truth; the RQ job only reminds a worker to look at it.
    """

    class Status(models.TextChoices):
        AWAITING_INPUT = "awaiting_input", "Awaiting input"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="batch_jobs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="batch_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AWAITING_INPUT, db_index=True)
    engine = models.CharField(max_length=12, help_text="MLAAS_ENGINE when the job was created.")
    input_key = models.CharField(max_length=1024)
    input_version = models.CharField(max_length=200, blank=True, help_text="The object version that was scored.")
    input_size = models.PositiveBigIntegerField(default=0)
    output_key = models.CharField(max_length=1024)
    # Sizing of the input: the plan's size band for input_size (the transform job's instances on AWS).
    instance_type = models.CharField(max_length=40, blank=True)
    instance_count = models.PositiveIntegerField(default=1)
    sizing_reason = models.TextField(blank=True)
    rows_in = models.PositiveIntegerField(null=True, blank=True, help_text="Data rows in the input (once known).")
    rows_done = models.PositiveIntegerField(default=0, help_text="Rows scored so far (progress).")
    rows_out = models.PositiveIntegerField(null=True, blank=True, help_text="Rows written to the output.")
    error_message = models.TextField(blank=True)
    transform_job_name = models.CharField(max_length=63, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="batch_job_tenant_created")]

    def __str__(self) -> str:
        return f"batch job {self.code}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_percent(self) -> int | None:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.rows_in:
            return None
        return min(100, int(100 * self.rows_done / self.rows_in))
