"""Writes of the builds app: the build state machine, creation, cancel, finish.

Every state change goes through `build_transition`, a filtered update that
only succeeds from the expected state, and records a BuildTransition.
"""

from __future__ import annotations

import hashlib
import logging

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from builds import events
from builds.models import Algorithm, Build, BuildStep, BuildTransition, ModelVersion, RejectedUpload
from builds.queues import plan_queue_name
from mlaas_steps.steps import STEP_NAMES
from tenants.models import Tenant

logger = logging.getLogger(__name__)

ALLOWED = {
    Build.Status.RECEIVED: {Build.Status.QUEUED, Build.Status.FAILED, Build.Status.CANCELLED},
    Build.Status.QUEUED: {Build.Status.STARTING, Build.Status.FAILED, Build.Status.CANCELLED},
    Build.Status.STARTING: {Build.Status.RUNNING, Build.Status.QUEUED, Build.Status.FAILED, Build.Status.CANCELLED},
    Build.Status.RUNNING: {Build.Status.SUCCEEDED, Build.Status.FAILED, Build.Status.CANCELLED, Build.Status.QUEUED},
}


class TransitionRefused(Exception):
    """The build was not in the expected state (another process moved it first)."""


def build_transition(build: Build, to_status: str, *, reason: str = "", expect: str | tuple[str, ...] | None = None,
                     **fields) -> Build:
    """Move `build` to `to_status` atomically from its current (or expected) state."""
    expected = (expect,) if isinstance(expect, str) else (expect or (build.status,))
    for state in expected:
        if to_status not in ALLOWED.get(state, set()):
            raise TransitionRefused(f"{state} -> {to_status} is not a build transition")
    now = timezone.now()
    updates = dict(fields)
    updates["status"] = to_status
    if to_status == Build.Status.QUEUED:
        updates.setdefault("queued_at", now)
    if to_status == Build.Status.RUNNING:
        updates.setdefault("started_at", now)
        updates.setdefault("heartbeat_at", now)
    if to_status in Build.FINISHED:
        updates.setdefault("ended_at", now)
    if to_status == Build.Status.FAILED:
        updates["failure_reason"] = reason
    with transaction.atomic():
        from_status = Build.objects.filter(pk=build.pk).values_list("status", flat=True).first()
        changed = Build.objects.filter(pk=build.pk, status__in=expected).update(**updates)
        if changed != 1:
            raise TransitionRefused(f"build {build.code} is {from_status}, not {'/'.join(expected)}")
        BuildTransition.objects.create(build=build, from_status=from_status or "", to_status=to_status,
                                       reason=reason[:2000], at=now)
        for key, value in updates.items():
            setattr(build, key, value)
        events.build_finished(build)
    return build


def dedup_key_for(bucket: str, key: str, version: str) -> str:
    return hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()


def _resolve_algorithm(tenant: Tenant, algorithm_slug: str | None,
                       active: dict[str, Algorithm] | None = None) -> tuple[Algorithm, bool]:
    """The build's algorithm and whether it was chosen (not the tenant's default, which preprocess may replace).

    `active`: the active algorithms by slug, when the caller (intake's batch) read them once already.
    """
    if algorithm_slug:
        if active is None:
            algorithm = Algorithm.objects.filter(slug=algorithm_slug, active=True).first()
        else:
            algorithm = active.get(algorithm_slug)
        if algorithm is None:
            known = ", ".join(active or Algorithm.objects.filter(active=True).values_list("slug", flat=True))
            raise ValidationError({"algorithm": f"Unknown algorithm `{algorithm_slug}`; algorithms are: {known}."})
        return algorithm, True
    if tenant.default_algorithm_id:
        return tenant.default_algorithm, False
    raise ValidationError({"algorithm": "No algorithm given and the tenant has no default algorithm."})


def _build_checks(tenant: Tenant, dataset_key: str, algorithm_slug: str | None, target: str,
                  active_algorithms: dict[str, Algorithm] | None = None) -> tuple[Algorithm, bool, str]:
    """(algorithm, chosen explicitly, target) of a build the tenant may start; ValidationError says why not."""
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant `{tenant.slug}` is {tenant.status}; builds start only for active tenants.")
    if not dataset_key.startswith(tenant.upload_prefix):
        raise ValidationError({"dataset_key": f"Datasets must be under the tenant's upload location "
                                              f"`{tenant.upload_prefix}`."})
    algorithm, explicit = _resolve_algorithm(tenant, algorithm_slug, active_algorithms)
    target = (target or tenant.default_target).strip()
    if not target:
        raise ValidationError({"target": "No target column given and the tenant has no default target."})
    return algorithm, explicit, target


def build_prepare(*, tenant: Tenant, dataset_key: str, algorithm_slug: str | None = None, target: str = "",
                  source: str = Build.Source.PORTAL, dataset_version: str = "", dataset_size: int,
                  dedup_key: str | None = None, created_by: User | None = None,
                  active_algorithms: dict[str, Algorithm] | None = None) -> Build:
    """The unsaved build for these facts after every check `build_create` makes; ValidationError says why not."""
    algorithm, explicit, target = _build_checks(tenant, dataset_key, algorithm_slug, target, active_algorithms)
    return Build(tenant=tenant, plan_id=tenant.plan_id, algorithm=algorithm, algorithm_explicit=explicit,
                 target=target, source=source, dataset_bucket=tenant.bucket, dataset_key=dataset_key,
                 dataset_version=dataset_version, dataset_size=dataset_size, dedup_key=dedup_key,
                 created_by=created_by, **build_sizing_fields(tenant.plan, dataset_size))


def build_create(*, tenant: Tenant, dataset_key: str, algorithm_slug: str | None = None, target: str = "",
                 source: str = Build.Source.PORTAL, dataset_version: str = "", dataset_size: int | None = None,
                 dedup_key: str | None = None, created_by: User | None = None,
                 caller_dispatches: bool = False) -> tuple[Build, bool]:
    """Create a build and queue it; returns (build, created). Idempotent on dedup_key.

    The dataset must exist in the tenant's uploads. Callers that already hold
    the object's facts (an S3 event, the build being retried) pass its size;
    otherwise (the API, the portal's "Build again") the object is looked up
    here and its version and size recorded, so every caller gets one check.

    After the commit a dispatch is requested (coalesced: one job however many builds
    arrive together), unless `caller_dispatches`: intake runs one round per batch of
    events itself, where latency matters.
    """
    if dataset_size is None:
        _build_checks(tenant, dataset_key, algorithm_slug, target)  # first: no S3 call for a refused build
        dataset_version, dataset_size = _dataset_lookup(tenant, dataset_key)
    build = build_prepare(tenant=tenant, dataset_key=dataset_key, algorithm_slug=algorithm_slug, target=target,
                          source=source, dataset_version=dataset_version, dataset_size=dataset_size,
                          dedup_key=dedup_key, created_by=created_by)
    existing = Build.objects.filter(dedup_key=dedup_key).first() if dedup_key else None
    if existing is not None:
        return existing, False
    with transaction.atomic():
        # A concurrent create of the same dedup key fails on the unique constraint (IntegrityError).
        build.save(force_insert=True)
        BuildTransition.objects.create(build=build, from_status="", to_status=Build.Status.RECEIVED,
                                       reason=f"{source}: {dataset_key}")
        build_transition(build, Build.Status.QUEUED, reason=f"waiting in queue {plan_queue_name(tenant.plan.slug)}")
        if not caller_dispatches:
            transaction.on_commit(_kick_dispatch)
    return build, True


def build_create_many(*, builds: list[Build]) -> list[Build]:
    """Save prepared builds (`build_prepare`) queued, with their received and queued transitions, in bulk.

    Intake's batch: the same rows `build_create` writes one build at a time, in three INSERTs
    however many builds. Raises IntegrityError (nothing saved) when a dedup key exists already;
    the caller requests the dispatch.
    """
    if not builds:
        return []
    now = timezone.now()
    with transaction.atomic():
        for build in builds:
            build.status, build.queued_at = Build.Status.QUEUED, now
        Build.objects.bulk_create(builds)
        BuildTransition.objects.bulk_create(
            [BuildTransition(build=b, from_status="", to_status=Build.Status.RECEIVED,
                             reason=f"{b.source}: {b.dataset_key}", at=now) for b in builds]
            + [BuildTransition(build=b, from_status=Build.Status.RECEIVED, to_status=Build.Status.QUEUED,
                               reason=f"waiting in queue {plan_queue_name(b.tenant.plan.slug)}", at=now)
               for b in builds])
    return builds


def build_sizing_fields(plan, dataset_size: int) -> dict:
    """The Build fields recording the instances the plan's size band gives a dataset of this size, and why."""
    from tenants.sizing import sizing_for

    sizing = sizing_for(plan, dataset_size)
    band = sizing.band
    return dict(processing_instance_type=band.processing_instance_type,
                processing_instance_count=band.processing_instance_count,
                training_instance_type=band.training_instance_type,
                training_instance_count=band.training_instance_count,
                size_band={"number": sizing.band_number, **band.as_dict()}, sizing_reason=sizing.reason)


def _dataset_lookup(tenant: Tenant, dataset_key: str) -> tuple[str, int]:
    """(version, size) of the uploaded object; ValidationError when there is none."""
    from core.aws import gateways
    from core.aws.errors import AwsNotFound

    try:
        head = gateways.platform_s3().head_object(tenant.bucket, dataset_key)
    except AwsNotFound:
        raise ValidationError({"dataset_key": f"No dataset `{dataset_key}` in the tenant's uploads."}) from None
    return head.get("VersionId") or "", head.get("ContentLength", 0)


def _kick_dispatch() -> None:
    from builds import queues

    queues.enqueue_dispatch()


def build_retry(*, build: Build, actor: User | None) -> Build:
    if build.status not in (Build.Status.FAILED, Build.Status.CANCELLED):
        raise ValidationError("Only failed or cancelled builds can be retried.")
    _require_dataset_version(build)
    # A retry chooses again when the tenant did not choose (the default may have changed).
    slug = build.algorithm.slug if build.algorithm_explicit else None
    new, _ = build_create(tenant=build.tenant, dataset_key=build.dataset_key, algorithm_slug=slug,
                          target=build.target, source=Build.Source.RETRY, dataset_version=build.dataset_version,
                          dataset_size=build.dataset_size, created_by=actor)
    return new


def _require_dataset_version(build: Build) -> None:
    """ValidationError when the object version the build was made from is no longer in storage."""
    from core.aws import gateways
    from core.aws.errors import AwsNotFound

    try:
        gateways.platform_s3().head_object(build.dataset_bucket, build.dataset_key, build.dataset_version)
    except AwsNotFound:
        raise ValidationError(f"The dataset {build.dataset_name} of this build is no longer in storage, so it "
                              "cannot be built again. Upload it again to start a new build.") from None


def build_cancel(*, build: Build, actor: User | None = None) -> Build:
    """Cancel: a waiting build at once; a running one is stopped by its engine."""
    who = actor.username if actor else "system"
    if build.is_finished:
        raise ValidationError(f"Build is already {build.status}.")
    if build.status in (Build.Status.RECEIVED, Build.Status.QUEUED, Build.Status.STARTING):
        try:
            build_transition(build, Build.Status.CANCELLED, reason=f"cancelled by {who}",
                             expect=(Build.Status.RECEIVED, Build.Status.QUEUED, Build.Status.STARTING))
            transaction.on_commit(_kick_dispatch)
            return build
        except TransitionRefused:
            build.refresh_from_db()
    if build.status == Build.Status.RUNNING:
        Build.objects.filter(pk=build.pk).update(cancel_requested=True)
        build.cancel_requested = True
        if build.engine == "sagemaker" and build.execution_ref:
            from builds.engines import get_engine
            from builds.launch import launch_for

            get_engine("sagemaker").stop(build.execution_ref, launch_for(build))
        # The local engine's worker sees cancel_requested within a second and kills the step.
    return build


def build_record_algorithm_choice(*, build: Build, data_report: dict) -> Build:
    """Record preprocess's algorithm choice (the data report's `algorithm`) on the build row."""
    choice = (data_report or {}).get("algorithm") or {}
    if not choice.get("slug"):
        return build
    updates = {"algorithm_reason": str(choice.get("reason") or "")}
    if choice["slug"] != build.algorithm.slug:
        algorithm = Algorithm.objects.filter(slug=choice["slug"]).first()
        if algorithm is None:
            logger.warning("build %s: preprocess chose unknown algorithm %s", build.code, choice["slug"])
        else:
            updates["algorithm"] = algorithm
    Build.objects.filter(pk=build.pk).update(**updates)
    for name, value in updates.items():
        setattr(build, name, value)
    return build


def build_record_steps(build: Build, steps) -> None:
    """Upsert engine step states (StepStatus list) into BuildStep rows."""
    existing = {s.name: s for s in build.steps.all()}
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    for step in steps:
        row = existing.get(step.name) or BuildStep(build=build, name=step.name, order=order.get(step.name, 9))
        row.status = step.status
        row.started_at, row.ended_at = step.started_at, step.ended_at
        row.billable_seconds = step.billable_seconds
        row.instance_type, row.instance_count = step.instance_type, step.instance_count
        row.log = step.log[-65536:]
        row.failure_reason = step.failure_reason
        row.definition_step = step.definition_step or row.definition_step
        row.save()


def model_version_register(*, build: Build, arn: str, metrics: dict, artifact_key: str,
                           evaluation: dict | None = None) -> ModelVersion:
    """Register the build's model version once, with its insight and lineage from the evaluation report."""
    evaluation = evaluation or {}
    with transaction.atomic():
        previous = list(ModelVersion.objects.select_for_update().filter(tenant=build.tenant).order_by("-version"))
        last = previous[0].version if previous else 0
        replaces = next((v for v in previous if v.approval_status == ModelVersion.Approval.APPROVED),
                        previous[0] if previous else None)
        version, created = ModelVersion.objects.get_or_create(
            build=build, defaults=dict(tenant=build.tenant, version=last + 1, arn=arn, metrics=metrics,
                                       artifact_key=artifact_key, insight=evaluation.get("insight") or {},
                                       lineage=model_lineage(build=build, evaluation=evaluation,
                                                             artifact_key=artifact_key),
                                       replaces=replaces))
        if created:
            events.model_version_registered(version)
    return version


def model_lineage(*, build: Build, evaluation: dict, artifact_key: str) -> dict:
    """Everything a version was made from, frozen at registration (the algorithm row may change later)."""
    algorithm = build.algorithm
    image = algorithm.training_image_uri
    training = evaluation.get("training") or {}
    tuning = training.get("tuning") or {}
    return {
        "dataset": {"bucket": build.dataset_bucket, "key": build.dataset_key, "version_id": build.dataset_version,
                    "size": build.dataset_size},
        "image": {"uri": image, "digest": image.split("@", 1)[1] if "@" in image else ""},
        "algorithm": {"slug": algorithm.slug, "name": algorithm.name, "problem_type": algorithm.problem_type,
                      "entry_point": algorithm.entry_point},
        "target": build.target,
        "hyperparameters": training.get("hyperparameters") or dict(algorithm.default_hyperparameters),
        "default_hyperparameters": dict(algorithm.default_hyperparameters),
        "tuning": {"enabled": bool(tuning.get("enabled")), "best_trial": tuning.get("best_trial"),
                   "trials": tuning.get("trials") or 0, "ranges": tuning.get("ranges") or {}},
        "features": training.get("features") or {},
        "classes": training.get("classes") or [],
        "test_rows": evaluation.get("rows"),
        "objective": evaluation.get("objective") or {},
        "build": str(build.code),
        "plan": build.plan.slug,
        "artifact": f"s3://{build.tenant.bucket}/{artifact_key}",
    }


def model_version_decide(*, version: ModelVersion, approve: bool, actor: User) -> ModelVersion:
    from core.aws import gateways

    status = ModelVersion.Approval.APPROVED if approve else ModelVersion.Approval.REJECTED
    if version.arn:
        gateways.platform_sagemaker().update_model_package_approval(version.arn, status.value)
    version.approval_status, version.decided_by, version.decided_at = status, actor, timezone.now()
    version.save(update_fields=["approval_status", "decided_by", "decided_at"])
    events.model_version_decided(version)
    if not approve:
        from builds.endpoints import endpoints_delete_for_version

        endpoints_delete_for_version(version=version, reason=f"version {version.version} rejected")
    return version


def rejected_upload_record(*, tenant: Tenant | None, bucket: str, key: str, dedup_key: str,
                           reason: str) -> RejectedUpload:
    obj, _ = RejectedUpload.objects.get_or_create(
        dedup_key=dedup_key, defaults=dict(tenant=tenant, bucket=bucket, key=key, reason=reason))
    return obj


def model_download_link(*, version: ModelVersion, expires: int = 300) -> str:
    """A short-lived link to the version's artifact, signed by the tenant's own role.

    Raises `AwsNotFound` when the artifact is no longer in storage (a link would only answer 403).
    """
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    tenant = version.tenant
    gateways.platform_s3().head_object(tenant.bucket, version.artifact_key)
    creds = tenant_assume(tenant, purpose="download", duration=900)
    return gateways.tenant_s3(creds).presigned_get(tenant.bucket, version.artifact_key, expires=expires,
                                                  filename=f"{tenant.slug}-model-v{version.version}.tar.gz")
