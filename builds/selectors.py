"""Reads of the builds app. Each function runs a fixed number of queries, whatever the number of rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, QuerySet
from django.utils import timezone

from builds.models import Algorithm, BatchJob, Build, BuildStep, ModelVersion, RejectedUpload
from mlaas_steps.steps import STEP_NAMES
from tenants.models import Tenant

# Sort name -> the value the list is ordered by (ties broken by id, in the same direction).
SORT_VALUES = {"created": F("created_at"), "status": F("status"), "tenant": F("tenant__slug"),
               "algorithm": F("algorithm__slug"), "plan": F("plan__slug"),
               "duration": ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())}
SORT_KEY = "sort_value"


def build_list(*, base: QuerySet[Build], tenant: str = "", plan: str = "", status: str = "", algorithm: str = "",
               date_from=None, date_to=None, sort: str = "-created") -> tuple[QuerySet[Build], bool]:
    """Builds filtered for the list page, annotated with SORT_KEY, and whether that sort is descending.

    Created dates compare in the active (user's) zone. The caller pages with core.keyset (by
    SORT_KEY, then id): the indexes build_created_id and build_duration_id serve the usual sorts.
    """
    qs = base.select_related("tenant", "plan", "algorithm")
    if tenant:
        qs = qs.filter(tenant__slug=tenant)
    if plan:
        qs = qs.filter(plan__slug=plan)
    if status:
        qs = qs.filter(status=status)
    if algorithm:
        qs = qs.filter(algorithm__slug=algorithm)
    if date_from:
        qs = qs.filter(created_at__date__gte=date_from)
    if date_to:
        qs = qs.filter(created_at__date__lte=date_to)
    name = sort.lstrip("-")
    if name not in SORT_VALUES:
        name, sort = "created", "-created"
    return qs.annotate(**{SORT_KEY: SORT_VALUES[name]}), sort.startswith("-")


@dataclass
class StepView:
    """One row of the build timeline: a recorded step, or a placeholder for one not reached yet."""

    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    billable_seconds: int = 0
    instance_type: str = ""
    instance_count: int = 0
    log: str = ""
    failure_reason: str = ""
    definition_step: str = ""

    @property
    def elapsed_seconds(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.ended_at or timezone.now()) - self.started_at).total_seconds()


def build_timeline(build: Build) -> list[StepView]:
    """The build's steps in pipeline order, with pending placeholders for the ones not started."""
    recorded = {s.name: s for s in build.steps.all()}
    rows = []
    for name in (*STEP_NAMES, *sorted(set(recorded) - set(STEP_NAMES))):
        step: BuildStep | None = recorded.get(name)
        if step is None:
            placeholder = "skipped" if build.is_finished else "pending"
            rows.append(StepView(name=name, status=placeholder))
            continue
        rows.append(StepView(name=step.name, status=step.status, started_at=step.started_at,
                             ended_at=step.ended_at, billable_seconds=step.billable_seconds,
                             instance_type=step.instance_type, instance_count=step.instance_count,
                             log=step.log, failure_reason=step.failure_reason,
                             definition_step=step.definition_step))
    return rows


def build_detail(build: Build) -> dict:
    """Everything the build page shows: timeline, progress, history, model version and cost (so far)."""
    from builds.costs import builds_cost

    steps = build_timeline(build)
    done = sum(1 for s in steps if s.status in ("succeeded", "skipped"))
    cost = builds_cost([build]).get(build.pk)
    return {
        "steps": steps,
        "progress": {"done": done, "total": len(steps),
                     "current": next((s for s in steps if s.status == "running"), None)},
        "transitions": list(build.transitions.all()),
        "version": ModelVersion.objects.filter(build=build).select_related("decided_by").first(),
        "cost": cost.amount if cost else None,
        "cost_unpriced": cost.unknown_instance_types if cost else (),
        "live": build.status not in Build.FINISHED,
        "elapsed_seconds": ((build.ended_at or timezone.now()) - build.started_at).total_seconds()
        if build.started_at else None,
    }


def model_versions(*, tenant: Tenant) -> QuerySet[ModelVersion]:
    return (ModelVersion.objects.filter(tenant=tenant)
            .select_related("build", "build__algorithm", "decided_by").order_by("-version"))


def batch_jobs(*, tenant: Tenant) -> QuerySet[BatchJob]:
    """The tenant's batch scoring jobs, newest first, with their model versions (one query per page)."""
    return BatchJob.objects.filter(tenant=tenant).select_related("tenant", "model_version").order_by(
        "-created_at", "-id")


def tenant_datasets(*, tenant: Tenant, limit: int = 100) -> list[dict] | None:
    """The tenant's newest uploads with how many builds each started; None when storage cannot be read."""
    from core.aws import gateways
    from core.aws.errors import AwsError

    if tenant.status != Tenant.Status.ACTIVE:
        return []
    try:
        objects = sorted(gateways.platform_s3().list_keys(tenant.bucket, tenant.upload_prefix),
                         key=lambda o: o["LastModified"], reverse=True)[:limit]
    except AwsError:
        return None
    return dataset_rows(tenant=tenant, objects=objects)


def dataset_rows(*, tenant: Tenant, objects: list[dict]) -> list[dict]:
    """S3 listing rows of the tenant's uploads joined with how many builds each started (one query)."""
    keys = [o["Key"] for o in objects]
    stats = {row["dataset_key"]: row for row in Build.objects.filter(tenant=tenant, dataset_key__in=keys)
             .values("dataset_key").annotate(builds=Count("id"), last_build=Max("created_at"))}
    return [{"key": o["Key"], "name": o["Key"].removeprefix(tenant.upload_prefix), "size": o.get("Size", 0),
             "uploaded_at": o.get("LastModified"), "builds": stats.get(o["Key"], {}).get("builds", 0)}
            for o in objects]


def upload_outcome(*, tenant: Tenant, key: str) -> dict:
    """What became of an uploaded object: its build, a rejection, or nothing yet (intake is pending)."""
    build = Build.objects.filter(tenant=tenant, dataset_key=key).order_by("created_at").first()
    if build is not None:
        return {"state": "build", "build": str(build.code), "status": build.status}
    rejected = RejectedUpload.objects.filter(tenant=tenant, key=key).first()
    if rejected is not None:
        return {"state": "rejected", "reason": rejected.reason}
    return {"state": "pending"}


def algorithms(*, active_only: bool = False) -> QuerySet[Algorithm]:
    qs = Algorithm.objects.all()
    return qs.filter(active=True) if active_only else qs


def local_build_status(launch):
    """A local build's status as its worker recorded it on the row, in the engines' terms."""
    from builds.engines.base import (
        ENGINE_FAILED,
        ENGINE_RUNNING,
        ENGINE_STOPPED,
        ENGINE_SUCCEEDED,
        EngineStatus,
        StepStatus,
    )

    build = Build.objects.filter(code=launch.build_code).first()
    if build is None:
        return EngineStatus(state=ENGINE_FAILED, failure_reason="the build no longer exists")
    state = {Build.Status.SUCCEEDED: ENGINE_SUCCEEDED, Build.Status.FAILED: ENGINE_FAILED,
             Build.Status.CANCELLED: ENGINE_STOPPED}.get(build.status, ENGINE_RUNNING)
    steps = [StepStatus(s.name, s.status, s.started_at, s.ended_at, s.billable_seconds, s.instance_type,
                        s.instance_count, s.log, s.failure_reason) for s in build.steps.all()]
    version = getattr(build, "model_version", None) if state == ENGINE_SUCCEEDED else None
    return EngineStatus(state=state, steps=steps, failure_reason=build.failure_reason, metrics=build.metrics,
                        model_package_arn=version.arn if version else "",
                        artifact_uri=f"s3://{launch.bucket}/{version.artifact_key}" if version else "",
                        data_report=build.data_report)


# Rows of the lineage table and of the comparison page: (label, how to read it from a version).
LINEAGE_ROWS: tuple[tuple[str, str], ...] = (
    ("Algorithm", "algorithm"),
    ("Target column", "target"),
    ("Dataset", "dataset"),
    ("Dataset version id", "dataset_version"),
    ("Image", "image"),
    ("Image digest", "image_digest"),
    ("Hyperparameters", "hyperparameters"),
    ("Tuning", "tuning"),
    ("Test rows", "test_rows"),
    ("Build", "build"),
    ("Replaced", "replaces"),
    ("Approval", "approval"),
)


def lineage_values(version: ModelVersion) -> dict[str, str]:
    """The version's lineage as display strings, one per LINEAGE_ROWS key (lineage recorded at registration,
    falling back to the build row for versions registered before lineage was recorded)."""
    lineage = version.lineage or {}
    build = version.build
    dataset = lineage.get("dataset") or {"bucket": build.dataset_bucket, "key": build.dataset_key,
                                         "version_id": build.dataset_version}
    image = lineage.get("image") or {"uri": build.algorithm.training_image_uri, "digest": ""}
    tuning = lineage.get("tuning") or {}
    hyperparameters = lineage.get("hyperparameters") or {}
    return {
        "algorithm": (lineage.get("algorithm") or {}).get("name") or build.algorithm.name,
        "target": lineage.get("target") or build.target,
        "dataset": f"s3://{dataset.get('bucket')}/{dataset.get('key')}",
        "dataset_version": dataset.get("version_id") or "–",
        "image": image.get("uri") or "–",
        "image_digest": image.get("digest") or "–",
        "hyperparameters": ", ".join(f"{k}={v}" for k, v in sorted(hyperparameters.items())) or "defaults",
        "tuning": (f"best of {tuning.get('trials')} trials (trial {tuning.get('best_trial')}) over "
                   f"{', '.join(sorted(tuning.get('ranges') or {})) or 'no ranges'}") if tuning.get("enabled")
        else "not tuned",
        "test_rows": str(lineage.get("test_rows") or "–"),
        "build": str(build.code),
        "replaces": f"v{version.replaces.version}" if version.replaces_id else "–",
        "approval": version.get_approval_status_display(),
    }


def model_version_pair(*, tenant: Tenant, first: int, second: int) -> list[ModelVersion]:
    """Two versions of the tenant, in the order asked (one query); fewer when one does not exist."""
    found = {v.version: v for v in ModelVersion.objects.filter(tenant=tenant, version__in=[first, second])
             .select_related("build", "build__algorithm", "replaces", "decided_by")}
    return [found[n] for n in (first, second) if n in found]


def model_comparison(first: ModelVersion, second: ModelVersion) -> dict:
    """Side-by-side rows: every metric either version has, then the lineage rows; `differs` marks changes."""
    from mlaas_steps import metrics as metric_catalog

    names = sorted(set(first.metrics) | set(second.metrics))
    metric_rows = []
    for name in names:
        a, b = first.metrics.get(name), second.metrics.get(name)
        better = None
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b \
                and metric_catalog.get_metric(name) is not None:
            higher = metric_catalog.higher_is_better(name)
            better = "second" if (b > a) == higher else "first"
        metric_rows.append({"name": name, "first": a, "second": b, "better": better})
    left, right = lineage_values(first), lineage_values(second)
    lineage_rows = [{"label": label, "first": left[key], "second": right[key], "differs": left[key] != right[key]}
                    for label, key in LINEAGE_ROWS]
    return {"metrics": metric_rows, "lineage": lineage_rows}
