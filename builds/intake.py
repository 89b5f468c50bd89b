"""Intake: S3 "Object Created" events (via EventBridge and SQS) become builds.

Events arrive at least once. One build per object version: the dedup key is
bucket + key + version id (else sequencer, else ETag), enforced by a unique
constraint. The SQS message is deleted only after the row is committed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError

from builds import services
from builds.models import Algorithm, Build
from tenants.models import Tenant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadEvent:
    bucket: str
    key: str
    size: int
    version: str  # version id, else sequencer, else etag

    @property
    def dedup_key(self) -> str:
        return services.dedup_key_for(self.bucket, self.key, self.version)


class NotAnUploadEvent(ValueError):
    pass


def parse_event(body: str) -> UploadEvent:
    try:
        event = json.loads(body)
        detail = event["detail"]
        bucket = detail["bucket"]["name"]
        obj = detail["object"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotAnUploadEvent(f"not an S3 Object Created event: {exc}") from None
    # moto's sequencer is a constant: with no version id, pair it with the ETag.
    etag = obj.get("etag") or obj.get("eTag") or ""
    version = obj.get("version-id") or ":".join(v for v in (obj.get("sequencer"), etag) if v)
    return UploadEvent(bucket=bucket, key=obj["key"], size=int(obj.get("size") or 0), version=str(version))


def resolve_tenant(bucket: str, key: str) -> Tenant | None:
    """Silo: the bucket is the tenant's own; pool: the key starts with tenants/<slug>/.

    One indexed query (tenant_storage_location) for either: a pool bucket holds no silo tenant.
    """
    prefixes = [""]
    if key.startswith("tenants/"):
        prefixes.append(f"tenants/{key.split('/', 2)[1]}/")
    found = list(Tenant.objects.select_related("plan", "default_algorithm").filter(bucket=bucket,
                                                                                  prefix__in=prefixes)[:2])
    return min(found, key=lambda t: t.prefix != "", default=None)  # the silo owner, if the bucket is one


def _rejection_reason(tenant: Tenant | None, event: UploadEvent, metadata: dict[str, str]) -> str:
    if tenant is None:
        return f"no tenant owns s3://{event.bucket}/{event.key}"
    if tenant.status != Tenant.Status.ACTIVE:
        return f"tenant `{tenant.slug}` is {tenant.status}: uploads do not start builds"
    if not event.key.startswith(tenant.upload_prefix):
        return f"object is outside the upload location `{tenant.upload_prefix}`"
    if not event.key.lower().endswith(".csv"):
        return f"`{event.key.rsplit('/', 1)[-1]}` is not a CSV file (expected a .csv name)"
    if event.size > tenant.plan.upload_size_limit_bytes:
        return (f"file is {event.size:,} bytes; the {tenant.plan.name} plan allows at most "
                f"{tenant.plan.upload_size_limit_bytes:,} bytes")
    algorithm = metadata.get("algorithm", "")
    if algorithm and not Algorithm.objects.filter(slug=algorithm, active=True).exists():
        known = ", ".join(Algorithm.objects.filter(active=True).values_list("slug", flat=True))
        return f"unknown algorithm `{algorithm}` in the object's metadata; algorithms are: {known}"
    return ""


def _object_metadata(event: UploadEvent) -> dict[str, str]:
    from core.aws import gateways
    from core.aws.errors import AwsError

    try:
        return gateways.platform_s3().object_metadata(event.bucket, event.key,
                                                      event.version if len(event.version) < 200 else "")
    except AwsError as exc:
        if exc.retryable:
            raise
        return {}


def intake_event(event: UploadEvent) -> Build | None:
    """Create the build for one upload event (idempotent); record a rejection otherwise."""
    existing = Build.objects.filter(dedup_key=event.dedup_key).first()
    if existing is not None:
        return existing
    tenant = resolve_tenant(event.bucket, event.key)
    if tenant is not None and event.key.startswith((tenant.output_prefix, tenant.batch_prefix)):
        return None  # the platform's own build outputs, or batch scoring's input and output: not an upload
    metadata = _object_metadata(event) if tenant is not None else {}
    reason = _rejection_reason(tenant, event, metadata)
    if reason:
        services.rejected_upload_record(tenant=tenant, bucket=event.bucket, key=event.key,
                                        dedup_key=event.dedup_key, reason=reason)
        logger.info("upload rejected: s3://%s/%s: %s", event.bucket, event.key, reason)
        return None
    try:
        build, _ = services.build_create(
            tenant=tenant, dataset_key=event.key, algorithm_slug=metadata.get("algorithm") or None,
            target=metadata.get("target", ""), source=Build.Source.UPLOAD, dataset_version=event.version,
            dataset_size=event.size, dedup_key=event.dedup_key, caller_dispatches=True)
    except ValidationError as exc:
        text = "; ".join(exc.messages)
        services.rejected_upload_record(tenant=tenant, bucket=event.bucket, key=event.key,
                                        dedup_key=event.dedup_key, reason=text)
        return None
    except IntegrityError:  # a concurrent intake of the same event committed first
        return Build.objects.get(dedup_key=event.dedup_key)
    return build


def retry_delay_seconds(attempt: int) -> int:
    """Exponential backoff between deliveries of a failing event: base, 2 x base, 4 x base ... (5 min at most)."""
    from django.conf import settings

    return min(300, settings.MLAAS_INTAKE_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))


def max_attempts_for(exc: Exception) -> int:
    """Deliveries before a failing event is rejected.

    A failure that says a retry can help (AWS throttling or a timeout, a database that is
    restarting) is given four times as many, about 80 minutes with backoff, so an outage
    does not turn good uploads into rejections; anything else is this message's own fault.
    """
    from django.conf import settings
    from django.db import InterfaceError, OperationalError

    from core.aws.errors import AwsError

    transient = (isinstance(exc, AwsError) and exc.retryable) or isinstance(exc, OperationalError | InterfaceError)
    return settings.MLAAS_INTAKE_MAX_ATTEMPTS * (4 if transient else 1)


def intake_message_handle(sqs, url: str, message) -> bool:
    """Handle one SQS message; True if it became (or already was) a build or a rejection.

    A message that fails is retried with backoff, then, after `MLAAS_INTAKE_MAX_ATTEMPTS`
    deliveries, recorded as a rejection the tenant and staff can see, and deleted: one bad
    upload never holds up the messages behind it.
    """
    try:
        event = parse_event(message.body)
    except NotAnUploadEvent as exc:
        logger.warning("dropping intake message %s: %s", message.message_id, exc)
        sqs.delete(url, message.receipt_handle)
        return False
    try:
        intake_event(event)  # commits
    except Exception as exc:  # noqa: BLE001 - isolate this message whatever went wrong
        attempts = message.receive_count
        if attempts < max_attempts_for(exc):
            delay = retry_delay_seconds(attempts)
            logger.warning("intake of s3://%s/%s failed (attempt %d of %d), retrying in %d s: %s",
                           event.bucket, event.key, attempts, max_attempts_for(exc), delay, exc)
            sqs.retry_later(url, message.receipt_handle, delay_seconds=delay)
            return False
        logger.exception("intake of s3://%s/%s failed %d times: recorded as rejected", event.bucket, event.key,
                         attempts)
        services.rejected_upload_record(
            tenant=resolve_tenant(event.bucket, event.key), bucket=event.bucket, key=event.key,
            dedup_key=event.dedup_key,
            reason=(f"the portal could not read this upload after {attempts} attempts "
                    f"({_error_summary(exc)}); upload it again, or contact support if it keeps failing"))
    sqs.delete(url, message.receipt_handle)
    return True


def _error_summary(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def intake_poll_once(*, wait_seconds: int = 10, should_stop=lambda: False) -> int:
    """Receive one batch from the intake queue; returns how many messages were handled.

    `should_stop` is asked before each message: messages not reached stay in the queue
    and are delivered again after their visibility timeout.
    """
    from django.conf import settings

    from core.aws import gateways

    sqs = gateways.platform_sqs()
    url = sqs.queue_url(settings.MLAAS_INTAKE_QUEUE_NAME)
    if url is None:
        logger.warning("intake queue `%s` does not exist: run `manage.py platform_bootstrap`",
                       settings.MLAAS_INTAKE_QUEUE_NAME)
        return 0
    handled = 0
    for message in sqs.receive(url, wait_seconds=wait_seconds):
        if should_stop():
            break
        if intake_message_handle(sqs, url, message):
            handled += 1
    if handled:
        intake_dispatch()
    return handled


def intake_dispatch() -> None:
    """One dispatch round for a whole batch of events (never one per upload), in this process.

    Run here rather than as a job so an upload starts as soon as it is queued; a failed round
    leaves the builds queued for the next request or the reconciler.
    """
    from builds.dispatch import dispatch_pending

    try:
        dispatch_pending()
    except Exception:  # noqa: BLE001 - the builds are committed; any later round starts them
        logger.exception("dispatch after intake failed; the builds stay queued")
