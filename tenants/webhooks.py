"""Tenant webhooks: events of the tenant's builds, model versions and endpoints sent to the tenant's own URLs.

Writes (`webhook_create`, `webhook_update`, `webhook_event_emit`, ...) validate and save rows; a delivery is
sent by a job (`tenants.jobs.webhook_deliver`, on the default queue) enqueued after the commit, and retried by
the scheduler's sweep (`webhooks_tick`) when its `next_attempt_at` is due: the row is the truth, a job is a
reminder that may be lost (the sweep sends it again once its lease has passed) or run twice (an attempt is
claimed by a filtered update on the attempt count, so only one job makes it).

Messages follow Standard Webhooks (https://www.standardwebhooks.com): a JSON body `{"type", "timestamp",
"data"}` and the headers `webhook-id` (the same for every attempt and resend), `webhook-timestamp` (the
attempt's, in seconds) and `webhook-signature` `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
keyed by the base64-decoded part of the webhook's `whsec_` secret. The `standardwebhooks` package (tests
verify with it) would pull an HTTP client and typing stubs into the runtime for these few lines.

URLs are checked by core.urlguard when registered and again before every attempt, and the request goes to
the address that check returned (no DNS rebinding); no redirects are followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core.urlguard import UrlRefused, pinned_session, url_check
from tenants.models import Tenant, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

EVENTS = tuple(Webhook.Event.values)
TEST_EVENT = "webhook.test"
MAX_WEBHOOKS_PER_TENANT = 10
CONNECT_TIMEOUT, READ_TIMEOUT = 3, 10
# Delays before attempts 2..6 (exponential, each with +-10 % jitter so a receiver's outage does not bring
# every retry back at the same second); after the sixth failed attempt the delivery is failed.
RETRY_DELAYS = (30, 120, 600, 3600, 6 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# Failed attempts in a row (any delivery) after which the webhook is paused until its owner resumes it.
PAUSE_AFTER_FAILURES = 5
# A claimed or enqueued attempt is not sent again before this (a lost job or a killed worker: the sweep's).
ATTEMPT_LEASE = timedelta(seconds=120)
EXCERPT_BYTES = 2048
SWEEP_BATCH = 200


# ----- selectors -----

def webhooks_for_tenant(tenant: Tenant) -> QuerySet[Webhook]:
    return Webhook.objects.filter(tenant=tenant).order_by("created_at", "id")


def get_webhook_for_tenant(tenant: Tenant, code) -> Webhook:
    """The tenant's webhook by its public code; Http404 for anyone else's (or a malformed code)."""
    from django.http import Http404

    try:
        code = uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such webhook") from None
    found = Webhook.objects.select_related("tenant").filter(tenant=tenant, code=code).first()
    if found is None:
        raise Http404("No such webhook")
    return found


def get_delivery_for_webhook(webhook: Webhook, code) -> WebhookDelivery:
    from django.http import Http404

    try:
        code = uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such delivery") from None
    found = WebhookDelivery.objects.filter(webhook=webhook, code=code).first()
    if found is None:
        raise Http404("No such delivery")
    return found


def deliveries_for_webhook(webhook: Webhook) -> QuerySet[WebhookDelivery]:
    """Most recent first (index webhook_delivery_recent); the payload is left out of lists."""
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")


# ----- registration -----

def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _checked_url(url: str) -> str:
    try:
        return url_check(url, allow_private=settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE).url
    except UrlRefused as exc:
        raise ValidationError({"url": str(exc)}) from None


def _checked_events(events) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ValidationError({"events": f"Choose at least one event: {', '.join(EVENTS)}."})
    unknown = [str(e) for e in events if e not in EVENTS]
    if unknown:
        raise ValidationError({"events": f"Unknown event {', '.join(unknown)}; events are: {', '.join(EVENTS)}."})
    return [e for e in EVENTS if e in events]


def webhook_create(*, tenant: Tenant, url: str, events: list[str], actor: User | None) -> Webhook:
    """Register a webhook (active) with a new secret; the URL must reach a public address."""
    events = _checked_events(events)
    url = _checked_url(url)
    if Webhook.objects.filter(tenant=tenant).count() >= MAX_WEBHOOKS_PER_TENANT:
        raise ValidationError(f"A tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first.")
    now = timezone.now()
    return Webhook.objects.create(tenant=tenant, url=url, events=events, secret=new_secret(), created_by=actor,
                                  created_at=now, updated_at=now)


def webhook_update(*, webhook: Webhook, url: str | None = None, events: list[str] | None = None,
                   status: str | None = None) -> Webhook:
    """Change the URL or events, pause or resume (resuming clears the failure count and sends what waited)."""
    fields, resumed = ["updated_at"], False
    if url is not None:
        webhook.url = _checked_url(url)
        fields.append("url")
    if events is not None:
        webhook.events = _checked_events(events)
        fields.append("events")
    if status is not None:
        if status not in Webhook.Status.values:
            raise ValidationError({"status": f"Status is active or paused, not {status!r}."})
        if status != webhook.status:
            resumed = status == Webhook.Status.ACTIVE
            webhook.status = status
            webhook.paused_reason = "paused by its owner" if status == Webhook.Status.PAUSED else ""
            webhook.consecutive_failures = 0 if status == Webhook.Status.ACTIVE else webhook.consecutive_failures
            fields += ["status", "paused_reason", "consecutive_failures"]
    webhook.updated_at = timezone.now()
    webhook.save(update_fields=fields)
    if resumed:
        # What waited while paused is due now: the next sweep sends it.
        WebhookDelivery.objects.filter(webhook=webhook, status=WebhookDelivery.Status.PENDING).update(
            next_attempt_at=webhook.updated_at)
    return webhook


def webhook_pause(*, webhook: Webhook) -> Webhook:
    return webhook_update(webhook=webhook, status=Webhook.Status.PAUSED)


def webhook_resume(*, webhook: Webhook) -> Webhook:
    return webhook_update(webhook=webhook, status=Webhook.Status.ACTIVE)


def webhook_secret_rotate(*, webhook: Webhook) -> Webhook:
    """A new secret at once: attempts from now on are signed with it."""
    webhook.secret, webhook.updated_at = new_secret(), timezone.now()
    webhook.save(update_fields=["secret", "updated_at"])
    return webhook


def webhook_delete(*, webhook: Webhook) -> None:
    webhook.delete()  # its deliveries go with it; a job still queued for one finds nothing


# ----- emission -----

def _message(event: str, data: dict, at: datetime) -> dict:
    return {"type": event, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}


def _subscribed(tenant_id: int, event: str) -> list[Webhook]:
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    # A tenant has a handful of webhooks at most: filtered here, the same on SQLite and PostgreSQL.
    return [h for h in Webhook.objects.filter(tenant_id=tenant_id, status=Webhook.Status.ACTIVE) if event in h.events]


def webhook_event_emit(*, tenant: Tenant | int, event: str,
                       data: dict | Callable[[], dict]) -> list[WebhookDelivery]:
    """A delivery per active webhook of the tenant (or tenant id) subscribed to `event`, sent after the commit.

    `data` may be a function: it is called only when some webhook takes the event, so an emitter builds (and
    queries for) the message only then.
    """
    hooks = _subscribed(tenant if isinstance(tenant, int) else tenant.pk, event)
    if not hooks:
        return []
    now = timezone.now()
    payload = _message(event, data() if callable(data) else data, now)
    return _deliveries_create(hooks, event=event, payload=payload, now=now)


def _deliveries_create(hooks: list[Webhook], *, event: str, payload: dict, now: datetime, msg_id: str = "",
                       resent_from: WebhookDelivery | None = None) -> list[WebhookDelivery]:
    rows = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook=hook, event=event, msg_id=msg_id or f"msg_{uuid.uuid4().hex}", payload=payload,
                        next_attempt_at=now + ATTEMPT_LEASE, created_at=now, resent_from=resent_from)
        for hook in hooks])
    ids = [row.pk for row in rows]  # bulk_create sets them on SQLite and PostgreSQL
    transaction.on_commit(lambda: [_enqueue(pk, 1) for pk in ids])
    return rows


def webhook_test_send(*, webhook: Webhook, actor: User | None) -> WebhookDelivery:
    """A `webhook.test` message to this webhook only, whatever its events."""
    if webhook.status != Webhook.Status.ACTIVE:
        raise ValidationError("The webhook is paused; resume it to send a test event.")
    now = timezone.now()
    data = {"tenant": webhook.tenant.slug, "webhook": str(webhook.code),
            "sent_by": actor.username if actor else "system"}
    return _deliveries_create([webhook], event=TEST_EVENT, payload=_message(TEST_EVENT, data, now), now=now)[0]


def webhook_delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """The same message (same webhook-id and body) as a new delivery with attempts of its own."""
    webhook = delivery.webhook
    if webhook.status != Webhook.Status.ACTIVE:
        raise ValidationError("The webhook is paused; resume it to resend.")
    return _deliveries_create([webhook], event=delivery.event, payload=delivery.payload, now=timezone.now(),
                              msg_id=delivery.msg_id, resent_from=delivery)[0]


def _enqueue(delivery_id: int, attempt: int) -> None:
    """Straight onto the `webhooks` queue (not django-rq's commit-aware enqueue): callers that write enqueue
    from `transaction.on_commit` themselves, and the sweep has already committed its lease. A queue and worker
    of their own: a receiver that answers slowly delays other deliveries, never dispatch or a build."""
    import django_rq
    from rq import Queue

    try:
        Queue("webhooks", connection=django_rq.get_connection("webhooks")).enqueue(
            "tenants.jobs.webhook_deliver", delivery_id, attempt, job_timeout=60, result_ttl=300, failure_ttl=86400)
    except Exception:  # noqa: BLE001 - Redis down: the sweep sends it once the lease has passed
        logger.warning("could not enqueue webhook delivery %s; the scheduler will", delivery_id, exc_info=True)


# ----- signing and sending -----

def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, msg_id, timestamp, body),
            "Content-Type": "application/json", "User-Agent": "MLaaS-Portal-Webhooks/1"}


def retry_delay(attempts_made: int) -> float:
    """Seconds before the next attempt after `attempts_made` failed ones (jittered by +-10 %)."""
    base = RETRY_DELAYS[min(attempts_made, len(RETRY_DELAYS)) - 1]
    return base * random.uniform(0.9, 1.1)


def _post(webhook: Webhook, delivery: WebhookDelivery, at: datetime) -> tuple[int | None, str, str]:
    """(status code or None, response excerpt, error)."""
    try:
        checked = url_check(webhook.url, allow_private=settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE)
    except UrlRefused as exc:
        return None, "", f"not sent: {exc}"
    body = body_bytes(delivery.payload)
    session = pinned_session(checked)
    try:
        with session.post(checked.url, data=body, headers=signed_headers(webhook.secret, delivery.msg_id, body, at),
                          timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False, stream=True) as response:
            excerpt = response.raw.read(EXCERPT_BYTES + 1, decode_content=True) or b""
            text = excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")
            if len(excerpt) > EXCERPT_BYTES:
                text += " [truncated]"
            return response.status_code, text, ""
    except Exception as exc:  # noqa: BLE001 - any failure to deliver is the attempt's error, retried
        return None, "", f"{type(exc).__name__}: {str(exc)[:400]}"
    finally:
        session.close()


def webhook_delivery_attempt(*, delivery_id: int, attempt: int) -> str:
    """Make attempt number `attempt` of a delivery, once; returns what happened."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, attempts=attempt - 1,
        webhook__status=Webhook.Status.ACTIVE).update(attempts=attempt, last_attempt_at=now,
                                                      next_attempt_at=now + ATTEMPT_LEASE)
    if claimed != 1:
        return "not-claimed"
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    status_code, excerpt, error = _post(delivery.webhook, delivery, now)
    return _attempt_record(delivery, attempt=attempt, status_code=status_code, excerpt=excerpt, error=error)


def _attempt_record(delivery: WebhookDelivery, *, attempt: int, status_code: int | None, excerpt: str,
                    error: str) -> str:
    now = timezone.now()
    ok = status_code is not None and 200 <= status_code < 300
    if not ok and not error:
        error = f"the receiver answered HTTP {status_code}"
    if ok:
        outcome = dict(status=WebhookDelivery.Status.SUCCEEDED, completed_at=now, next_attempt_at=None)
    elif attempt >= MAX_ATTEMPTS:
        outcome = dict(status=WebhookDelivery.Status.FAILED, completed_at=now, next_attempt_at=None)
    else:
        outcome = dict(next_attempt_at=now + timedelta(seconds=retry_delay(attempt)))
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempt).update(
        last_status_code=status_code, response_excerpt=excerpt, error=error[:500], **outcome)
    hooks = Webhook.objects.filter(pk=delivery.webhook_id)
    if ok:
        hooks.exclude(consecutive_failures=0).update(consecutive_failures=0)
        return WebhookDelivery.Status.SUCCEEDED
    hooks.update(consecutive_failures=F("consecutive_failures") + 1)
    paused = hooks.filter(status=Webhook.Status.ACTIVE, consecutive_failures__gte=PAUSE_AFTER_FAILURES).update(
        status=Webhook.Status.PAUSED, updated_at=now,
        paused_reason=(f"paused after {PAUSE_AFTER_FAILURES} failed attempts in a row (last: {error})")[:300])
    if paused:
        logger.info("webhook %s paused after %d failures", delivery.webhook.code, PAUSE_AFTER_FAILURES)
    return outcome.get("status", "retrying")


# ----- the scheduler's part -----

def webhooks_tick(now: datetime | None = None) -> dict[str, int]:
    """Enqueue every due attempt of an active webhook (retries, lost jobs, what waited while paused)."""
    now = now or timezone.now()
    due = list(WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, webhook__status=Webhook.Status.ACTIVE)
        .order_by("next_attempt_at").values_list("pk", "attempts", "next_attempt_at")[:SWEEP_BATCH])
    sent = 0
    for pk, attempts, seen in due:
        # Leased first, so the next sweep does not enqueue it again while the job waits in the queue.
        if WebhookDelivery.objects.filter(pk=pk, attempts=attempts, next_attempt_at=seen).update(
                next_attempt_at=now + ATTEMPT_LEASE):
            _enqueue(pk, attempts + 1)
            sent += 1
    return {"webhook_attempts_enqueued": sent}
