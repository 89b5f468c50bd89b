"""Test endpoints: a tenant's approved model version deployed where the tenant can score rows against it.

Writes (`endpoint_deploy`, `endpoint_delete`, ...) validate and save the row, then enqueue a job after the
commit; the jobs (`endpoint_provision`, `endpoint_teardown`) do the slow part on the engine: locally the
`serve` entry point as a child process (builds.serving) with the artifact fetched under the tenant role's
credentials; on AWS a SageMaker model, endpoint configuration and endpoint (core.aws.sagemaker), polled by the
scheduler until InService. The row is the truth; a lost job is redone by `endpoints_tick`.

One endpoint per tenant by default (the plan's `max_test_endpoints`): deploying at the limit replaces the
oldest one in place (same name, the new version), deleting it is on request, when its version is rejected,
and after the plan's idle time.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from builds import events
from builds.models import Endpoint, ModelVersion
from tenants.models import Tenant

logger = logging.getLogger(__name__)


class EndpointUnavailable(Exception):
    """The endpoint cannot score now (not in service, or its server does not answer); the message says why."""


def endpoint_name(tenant: Tenant, number: int) -> str:
    """`<slug>-test`, then `<slug>-test-2`, ...: SageMaker endpoint names are unique per account and region."""
    return f"{tenant.slug}-test" if number == 1 else f"{tenant.slug}-test-{number}"


def live_endpoints(tenant: Tenant):
    return Endpoint.objects.filter(tenant=tenant, status__in=Endpoint.LIVE)


def endpoint_deploy(*, tenant: Tenant, version: ModelVersion, actor: User | None) -> Endpoint:
    """Deploy `version` to a test endpoint: a new one below the plan's limit, else the oldest one replaced."""
    if version.tenant_id != tenant.pk:
        raise ValidationError({"model_version": "That model version belongs to another tenant."})
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant `{tenant.slug}` is {tenant.status}; only active tenants deploy.")
    if version.approval_status != ModelVersion.Approval.APPROVED:
        raise ValidationError({"model_version": (
            f"Model version {version.version} is {version.get_approval_status_display().lower()}; only "
            "approved versions are deployed. Approve it first.")})
    limit = tenant.plan.max_test_endpoints
    if limit < 1:
        raise ValidationError(f"The {tenant.plan.name} plan includes no test endpoints.")
    now = timezone.now()
    with transaction.atomic():
        live = list(live_endpoints(tenant).select_for_update().order_by("created_at", "id"))
        same = next((e for e in live if e.model_version_id == version.pk and e.status != Endpoint.Status.FAILED),
                    None)
        if same is not None:
            return same  # already deployed (or deploying): deploying twice is not a second endpoint
        if len(live) < limit:
            taken = {e.name for e in live}
            number = next(n for n in range(1, limit + 2) if endpoint_name(tenant, n) not in taken)
            endpoint = Endpoint.objects.create(
                tenant=tenant, name=endpoint_name(tenant, number), model_version=version,
                status=Endpoint.Status.CREATING, engine=settings.MLAAS_ENGINE, requested_by=actor,
                created_at=now, updated_at=now)
        else:
            endpoint = live[0]
            endpoint.model_version = version
            endpoint.status = (Endpoint.Status.UPDATING if endpoint.status == Endpoint.Status.IN_SERVICE
                               else Endpoint.Status.CREATING)
            endpoint.failure_reason, endpoint.requested_by, endpoint.updated_at = "", actor, now
            endpoint.save(update_fields=["model_version", "status", "failure_reason", "requested_by",
                                         "updated_at"])
        transaction.on_commit(lambda: _enqueue("provision", endpoint.pk))
    return endpoint


def endpoint_delete(*, endpoint: Endpoint, reason: str) -> Endpoint:
    """Mark the endpoint Deleting (its server is stopped by a job); deleting a deleted one is refused."""
    if not endpoint.is_live:
        raise ValidationError(f"Endpoint {endpoint.name} is already {endpoint.status.lower()}.")
    changed = Endpoint.objects.filter(pk=endpoint.pk, status__in=Endpoint.LIVE).update(
        status=Endpoint.Status.DELETING, delete_reason=reason[:200], updated_at=timezone.now())
    if changed:
        transaction.on_commit(lambda: _enqueue("teardown", endpoint.pk))
    endpoint.refresh_from_db()
    return endpoint


def endpoints_delete_for_version(*, version: ModelVersion, reason: str) -> int:
    """Delete every live endpoint serving `version` (it was rejected)."""
    count = 0
    for endpoint in live_endpoints(version.tenant).filter(model_version=version):
        endpoint_delete(endpoint=endpoint, reason=reason)
        count += 1
    return count


def _enqueue(kind: str, endpoint_id: int) -> None:
    from builds import queues

    queues.enqueue_endpoint(kind, endpoint_id)


# ----- jobs: the engine's part -----

def endpoint_provision(endpoint_id: int) -> str:
    """Start (or replace) the endpoint's server for its current version; returns the status reached."""
    endpoint = Endpoint.objects.select_related("tenant", "tenant__plan", "model_version").get(pk=endpoint_id)
    if endpoint.status not in (Endpoint.Status.CREATING, Endpoint.Status.UPDATING):
        return endpoint.status
    if endpoint.engine == "sagemaker":
        return _sagemaker_provision(endpoint)
    return _local_provision(endpoint)


def _model_dir(endpoint: Endpoint, version: ModelVersion) -> Path:
    return Path(settings.MLAAS_ENDPOINT_DIR) / endpoint.tenant.slug / endpoint.name / f"v{version.version}"


def _local_provision(endpoint: Endpoint) -> str:
    from builds import serving

    version = endpoint.model_version
    model_dir = _model_dir(endpoint, version)
    try:
        _fetch_artifact(endpoint.tenant, version, model_dir)
    except Exception as exc:  # noqa: BLE001 - becomes the endpoint's failure reason
        logger.exception("endpoint %s: artifact fetch failed", endpoint.name)
        return _fail(endpoint, f"the model artifact of version {version.version} could not be fetched "
                               f"({type(exc).__name__}); build the model again or try later")
    log_path = model_dir.parent / "serve.log"
    started = serving.start(model_dir, log_path)
    problem = serving.wait_ready(started, timeout=settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS, log_path=log_path)
    if problem:
        serving.stop_started(started, model_dir)
        return _fail(endpoint, problem)
    previous_pid, previous_version = endpoint.pid, _served_version(endpoint)
    now = timezone.now()
    changed = Endpoint.objects.filter(
        pk=endpoint.pk, model_version=version,
        status__in=(Endpoint.Status.CREATING, Endpoint.Status.UPDATING)).update(
        status=Endpoint.Status.IN_SERVICE, pid=started.pid, port=started.port, in_service_at=_service_start(now),
        service_ended_at=None, updated_at=now, last_invoked_at=now, failure_reason="")
    if not changed:  # deleted or redeployed while starting: this server is not wanted
        serving.stop_started(started, model_dir)
        return Endpoint.objects.get(pk=endpoint.pk).status
    events.endpoint_in_service(endpoint.pk)
    if previous_pid and previous_pid != started.pid:
        serving.stop(previous_pid)  # the replaced version's server, after the new one answers
        if previous_version and previous_version != version.version:
            shutil.rmtree(model_dir.parent / f"v{previous_version}", ignore_errors=True)
    return Endpoint.Status.IN_SERVICE


def _served_version(endpoint: Endpoint) -> int | None:
    """The version number the running server (if any) was started for, from its model directory."""
    from builds import serving

    if not endpoint.pid or not serving.is_running(endpoint.pid):
        return None
    try:
        parts = Path(f"/proc/{endpoint.pid}/cmdline").read_bytes().split(b"\0")
        model_dir = Path(parts[parts.index(b"--model-dir") + 1].decode())
    except (OSError, ValueError, IndexError):
        return None
    return int(model_dir.name[1:]) if model_dir.name[1:].isdigit() else None


def _fetch_artifact(tenant: Tenant, version: ModelVersion, model_dir: Path) -> None:
    """model.tar.gz into `model_dir`, read with the tenant role's credentials (isolation by IAM, not our code)."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / "model.tar.gz"
    if target.exists():
        return
    creds = tenant_assume(tenant, purpose="serve", duration=900)
    partial = model_dir / "model.tar.gz.part"
    gateways.tenant_s3(creds).download_file(tenant.bucket, version.artifact_key, partial)
    partial.rename(target)


def _service_start(now):
    """in_service_at on reaching InService: kept when a newer version replaced the served one (it kept serving,
    and billing meters that time), else now (a new service period)."""
    return Case(When(status=Endpoint.Status.UPDATING, in_service_at__isnull=False, then=F("in_service_at")),
                default=Value(now))


def _service_end(now):
    """service_ended_at when an endpoint stops serving: now if it was serving (Updating or InService), else kept
    (a Creating endpoint serves nothing; an earlier service period already has its end)."""
    return Case(When(status__in=(Endpoint.Status.UPDATING, Endpoint.Status.IN_SERVICE),
                     in_service_at__isnull=False, then=Value(now)),
                default=F("service_ended_at"))


def _fail(endpoint: Endpoint, reason: str) -> str:
    now = timezone.now()
    Endpoint.objects.filter(pk=endpoint.pk, status__in=(Endpoint.Status.CREATING, Endpoint.Status.UPDATING)).update(
        status=Endpoint.Status.FAILED, failure_reason=reason[:2000], updated_at=now, service_ended_at=_service_end(now))
    return Endpoint.Status.FAILED


def endpoint_teardown(endpoint_id: int) -> str:
    """Stop a Deleting endpoint's server and mark it Deleted."""
    endpoint = Endpoint.objects.select_related("tenant").get(pk=endpoint_id)
    if endpoint.status != Endpoint.Status.DELETING:
        return endpoint.status
    if endpoint.engine == "sagemaker":
        from core.aws import gateways

        gateways.platform_sagemaker().delete_endpoint_resources(endpoint.resource_name or endpoint.name)
    else:
        from builds import serving

        serving.stop(endpoint.pid)
        shutil.rmtree(Path(settings.MLAAS_ENDPOINT_DIR) / endpoint.tenant.slug / endpoint.name, ignore_errors=True)
    now = timezone.now()
    Endpoint.objects.filter(pk=endpoint.pk, status=Endpoint.Status.DELETING).update(
        status=Endpoint.Status.DELETED, deleted_at=now, updated_at=now, pid=None, port=None,
        service_ended_at=_deleted_service_end(now))
    return Endpoint.Status.DELETED


def _deleted_service_end(now):
    """A deleted endpoint served until now unless its service period had ended already (it failed first)."""
    return Case(When(in_service_at__isnull=False, service_ended_at__isnull=True, then=Value(now)),
                default=F("service_ended_at"))


# ----- scoring -----

def endpoint_invoke(*, endpoint: Endpoint, body: bytes, content_type: str) -> tuple[int, dict]:
    """Score rows on the endpoint: (status, the server's JSON answer). EndpointUnavailable when it cannot."""
    if endpoint.status not in (Endpoint.Status.IN_SERVICE, Endpoint.Status.UPDATING) or (
            endpoint.engine != "sagemaker" and not endpoint.port):
        raise EndpointUnavailable(f"Endpoint {endpoint.name} is {endpoint.status}, not in service"
                                  + (f": {endpoint.failure_reason}" if endpoint.failure_reason else "."))
    if endpoint.engine == "sagemaker":
        from core.aws import gateways

        status, document = gateways.platform_sagemaker_runtime().invoke_endpoint(
            endpoint.resource_name or endpoint.name, body=body, content_type=content_type)
    else:
        from builds import serving

        status, document = serving.invoke(endpoint.port, body, content_type)
        if status == 0:
            raise EndpointUnavailable(f"Endpoint {endpoint.name} does not answer; deploy the version again.")
    Endpoint.objects.filter(pk=endpoint.pk).update(last_invoked_at=timezone.now())
    return status, document


# ----- the scheduler's part: idle endpoints, lost servers, lost jobs, SageMaker status -----

def endpoints_tick(now=None) -> dict[str, int]:
    now = now or timezone.now()
    counts = {"endpoints_idle_deleted": 0, "endpoints_lost": 0, "endpoints_requeued": 0, "endpoints_polled": 0}
    for endpoint in Endpoint.objects.select_related("tenant__plan").filter(status=Endpoint.Status.IN_SERVICE):
        idle_since = endpoint.last_invoked_at or endpoint.in_service_at or endpoint.updated_at
        if idle_since < now - timedelta(minutes=endpoint.tenant.plan.endpoint_idle_minutes):
            endpoint_delete(endpoint=endpoint, reason=f"idle for {endpoint.tenant.plan.endpoint_idle_minutes} min")
            counts["endpoints_idle_deleted"] += 1
        elif endpoint.engine != "sagemaker" and not _local_alive(endpoint):
            Endpoint.objects.filter(pk=endpoint.pk, status=Endpoint.Status.IN_SERVICE).update(
                status=Endpoint.Status.FAILED, updated_at=now, service_ended_at=_service_end(now),
                failure_reason="the model server stopped; deploy the version again")
            counts["endpoints_lost"] += 1
    stale = now - timedelta(seconds=settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS * 2)
    for endpoint in Endpoint.objects.filter(updated_at__lt=stale, status__in=(
            Endpoint.Status.CREATING, Endpoint.Status.UPDATING, Endpoint.Status.DELETING)).exclude(engine="sagemaker"):
        Endpoint.objects.filter(pk=endpoint.pk).update(updated_at=now)
        _enqueue("teardown" if endpoint.status == Endpoint.Status.DELETING else "provision", endpoint.pk)
        counts["endpoints_requeued"] += 1
    for endpoint in Endpoint.objects.filter(engine="sagemaker", status__in=(
            Endpoint.Status.CREATING, Endpoint.Status.UPDATING)).exclude(resource_name=""):
        _sagemaker_poll(endpoint)
        counts["endpoints_polled"] += 1
    return counts


def _local_alive(endpoint: Endpoint) -> bool:
    from builds import serving

    return serving.is_running(endpoint.pid) and serving.ping(endpoint.port)[0] == 200


# ----- SageMaker -----

def _sagemaker_provision(endpoint: Endpoint) -> str:
    """Create the SageMaker model and endpoint configuration of this version, then create or update the endpoint."""
    from core.aws import gateways
    from core.aws.errors import AwsError
    from tenants import naming

    tenant, version = endpoint.tenant, endpoint.model_version
    plan = tenant.plan
    try:
        resource = gateways.platform_sagemaker().deploy_endpoint(
            endpoint_name=endpoint.name, version_tag=f"v{version.version}-{int(timezone.now().timestamp())}",
            image_uri=version.build.algorithm.training_image_uri,
            model_data_url=f"s3://{tenant.bucket}/{version.artifact_key}", role_arn=tenant.role_arn,
            instance_type=plan.endpoint_instance_type,
            serverless_memory_mb=plan.endpoint_serverless_memory_mb if plan.endpoint_serverless else None,
            tags=naming.tenant_tags(tenant.slug, plan.slug), update=endpoint.status == Endpoint.Status.UPDATING)
    except AwsError as exc:
        return _fail(endpoint, f"SageMaker refused the endpoint: {exc}")
    Endpoint.objects.filter(pk=endpoint.pk).update(resource_name=resource, updated_at=timezone.now())
    return endpoint.status


def _sagemaker_poll(endpoint: Endpoint) -> None:
    from core.aws import gateways
    from core.aws.errors import AwsError

    try:
        status, reason = gateways.platform_sagemaker().endpoint_status(endpoint.resource_name)
    except AwsError as exc:
        logger.warning("endpoint %s: status unreadable: %s", endpoint.name, exc)
        return
    now = timezone.now()
    if status == "InService":
        if Endpoint.objects.filter(pk=endpoint.pk, status__in=(Endpoint.Status.CREATING, Endpoint.Status.UPDATING)) \
                .update(status=Endpoint.Status.IN_SERVICE, in_service_at=_service_start(now), service_ended_at=None,
                        last_invoked_at=now, updated_at=now):
            events.endpoint_in_service(endpoint.pk)
    elif status == "Failed":
        _fail(endpoint, reason or "SageMaker reported the endpoint failed")
