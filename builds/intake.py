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


def _tenant_prefixes(key: str) -> list[str]:
    return ["", f"tenants/{key.split('/', 2)[1]}/"] if key.startswith("tenants/") else [""]


def resolve_tenants(events: list[UploadEvent]) -> list[Tenant | None]:
    """`resolve_tenant` for each event of a batch, in one query."""
    wanted = {(e.bucket, p) for e in events for p in _tenant_prefixes(e.key)}
    found = {(t.bucket, t.prefix): t for t in Tenant.objects.select_related("plan", "default_algorithm").filter(
        bucket__in={b for b, _ in wanted}, prefix__in={p for _, p in wanted})}
    return [next((found[(e.bucket, p)] for p in _tenant_prefixes(e.key) if (e.bucket, p) in found), None)
            for e in events]  # the silo owner ("" first), if the bucket is one


def _rejection_reason(tenant: Tenant | None, event: UploadEvent, metadata: dict[str, str],
                      active_algorithms: dict[str, Algorithm] | None = None) -> str:
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
    if active_algorithms is not None:
        unknown = bool(algorithm) and algorithm not in active_algorithms
    else:
        unknown = bool(algorithm) and not Algorithm.objects.filter(slug=algorithm, active=True).exists()
    if unknown:
        known = ", ".join(active_algorithms or Algorithm.objects.filter(active=True).values_list("slug", flat=True))
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


def _platform_object(tenant: Tenant | None, key: str) -> bool:
    """The platform's own build outputs, or batch scoring's input and output: not a training upload."""
    return tenant is not None and key.startswith((tenant.output_prefix, tenant.batch_prefix))


def intake_event(event: UploadEvent) -> Build | None:
    """Create the build for one upload event (idempotent); record a rejection otherwise."""
    existing = Build.objects.filter(dedup_key=event.dedup_key).first()
    if existing is not None:
        return existing
    tenant = resolve_tenant(event.bucket, event.key)
    if _platform_object(tenant, event.key):
        return None
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


def intake_events(events: list[UploadEvent]) -> list[Build | None | Exception]:
    """`intake_event` for a batch, with bulk queries: per event its build, None (rejected or not an upload),
    or the exception that event raised (the caller retries that one; the others are done).

    One dedup query, one tenant query, one algorithm query, the S3 metadata HEAD per new upload,
    then one transaction saving every new build and its transitions (`build_create_many`). If
    that write fails (a concurrent intake committed one of these uploads first), the batch's new
    builds are taken one at a time by `intake_event`, so one upload never fails the others.
    """
    existing = {b.dedup_key: b for b in Build.objects.filter(dedup_key__in={e.dedup_key for e in events})}
    tenants = resolve_tenants(events)
    active = {a.slug: a for a in Algorithm.objects.filter(active=True)}  # the default order: its error lists them
    results: list[Build | None | Exception] = [None] * len(events)
    new: dict[str, int] = {}  # dedup key -> index of the event that creates it
    repeats: list[tuple[int, str]] = []  # the same upload twice in a batch: one build
    for i, (event, tenant) in enumerate(zip(events, tenants, strict=True)):
        if event.dedup_key in existing:
            results[i] = existing[event.dedup_key]
        elif event.dedup_key in new:
            repeats.append((i, event.dedup_key))
        elif not _platform_object(tenant, event.key):
            try:
                results[i] = _prepare(event, tenant, active)
            except Exception as exc:  # noqa: BLE001 - this event alone is retried
                results[i] = exc
            if isinstance(results[i], Build):
                new[event.dedup_key] = i
    prepared = [results[i] for i in new.values()]
    try:
        services.build_create_many(builds=prepared)
    except IntegrityError:
        for i in new.values():
            try:
                results[i] = intake_event(events[i])
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
    for i, dedup_key in repeats:
        results[i] = results[new[dedup_key]] if dedup_key in new else None
    return results


def _prepare(event: UploadEvent, tenant: Tenant | None, active: dict[str, Algorithm]) -> Build | None:
    """The unsaved build for one upload of a batch, or None with its rejection recorded (as intake_event)."""
    metadata = _object_metadata(event) if tenant is not None else {}
    reason = _rejection_reason(tenant, event, metadata, active)
    if not reason:
        try:
            return services.build_prepare(
                tenant=tenant, dataset_key=event.key, algorithm_slug=metadata.get("algorithm") or None,
                target=metadata.get("target", ""), source=Build.Source.UPLOAD, dataset_version=event.version,
                dataset_size=event.size, dedup_key=event.dedup_key, active_algorithms=active)
        except ValidationError as exc:
            reason = "; ".join(exc.messages)
    services.rejected_upload_record(tenant=tenant, bucket=event.bucket, key=event.key, dedup_key=event.dedup_key,
                                    reason=reason)
    logger.info("upload rejected: s3://%s/%s: %s", event.bucket, event.key, reason)
    return None


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
        return _intake_failed(sqs, url, message, event, exc)
    sqs.delete(url, message.receipt_handle)
    return True


def _intake_failed(sqs, url: str, message, event: UploadEvent, exc: Exception) -> bool:
    """A message whose intake raised: retried later with backoff, or, out of attempts, rejected and deleted."""
    attempts = message.receive_count
    if attempts < max_attempts_for(exc):
        delay = retry_delay_seconds(attempts)
        logger.warning("intake of s3://%s/%s failed (attempt %d of %d), retrying in %d s: %s",
                       event.bucket, event.key, attempts, max_attempts_for(exc), delay, exc)
        sqs.retry_later(url, message.receipt_handle, delay_seconds=delay)
        return False
    logger.error("intake of s3://%s/%s failed %d times: recorded as rejected", event.bucket, event.key, attempts,
                 exc_info=exc)
    services.rejected_upload_record(
        tenant=resolve_tenant(event.bucket, event.key), bucket=event.bucket, key=event.key,
        dedup_key=event.dedup_key,
        reason=(f"the portal could not read this upload after {attempts} attempts "
                f"({_error_summary(exc)}); upload it again, or contact support if it keeps failing"))
    sqs.delete(url, message.receipt_handle)
    return True


def intake_messages_handle(sqs, url: str, messages: list) -> int:
    """Handle a batch of SQS messages with `intake_events`; returns how many became builds or rejections.

    Each message is deleted only after its outcome is committed; one whose intake raised is
    retried on its own (`_intake_failed`), the others are done. Should the batch as a whole
    fail (the database went away), each message takes the one-at-a-time path instead.
    """
    events = []
    for message in messages:
        try:
            events.append((message, parse_event(message.body)))
        except NotAnUploadEvent as exc:
            logger.warning("dropping intake message %s: %s", message.message_id, exc)
            sqs.delete(url, message.receipt_handle)
    if not events:
        return 0
    try:
        outcomes = intake_events([event for _, event in events])
    except Exception:  # noqa: BLE001 - fall back to one at a time, each message isolated
        logger.warning("batch intake of %d messages failed; taking them one at a time", len(events), exc_info=True)
        return sum(intake_message_handle(sqs, url, message) for message, _ in events)
    handled = 0
    for (message, event), outcome in zip(events, outcomes, strict=True):
        if isinstance(outcome, Exception):
            handled += _intake_failed(sqs, url, message, event, outcome)
        else:
            sqs.delete(url, message.receipt_handle)
            handled += 1
    return handled


def _error_summary(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def intake_poll_once(*, wait_seconds: int = 10, should_stop=lambda: False) -> int:
    """Receive one batch from the intake queue and take it in bulk; returns how many messages were handled.

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
    messages = []
    for message in sqs.receive(url, wait_seconds=wait_seconds):
        if should_stop():
            break
        messages.append(message)
    handled = intake_messages_handle(sqs, url, messages)
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
