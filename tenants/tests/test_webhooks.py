"""Webhooks: registration checks, signing (verified with the standardwebhooks package), attempts against a real
local receiver, retries with backoff, pausing after repeated failures, resend, and the SSRF guard."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks import Webhook as StandardWebhook

from core.urlguard import CheckedUrl, UrlRefused, pinned_session, url_check
from tenants import webhooks
from tenants.models import Webhook, WebhookDelivery

PUBLIC_URL = "https://93.184.215.14/hooks"  # a public address literal: no DNS, never contacted in these tests


@pytest.fixture
def tenant(tenant_row):
    return tenant_row()


def _deliver_next(delivery: WebhookDelivery) -> str:
    """What the job does for the delivery's next attempt (the test plays the worker)."""
    delivery.refresh_from_db()
    return webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempt=delivery.attempts + 1)


def _due_now(delivery: WebhookDelivery) -> None:
    """Time passes: the retry is due."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def _verified(secret: str, request) -> dict:
    return StandardWebhook(secret).verify(request.body, request.headers)


# ----- registration -----

def test_webhook_create_keeps_known_events_and_makes_a_secret(tenant):
    hook = webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["model.approved", "build.succeeded"],
                                   actor=None)
    assert (hook.url, hook.events, hook.status) == (PUBLIC_URL, ["build.succeeded", "model.approved"], "active")
    assert hook.secret.startswith("whsec_") and len(hook.secret) == len("whsec_") + 32


def test_webhook_create_unknown_event_is_refused_naming_it(tenant):
    with pytest.raises(ValidationError) as exc:
        webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["build.succeeded", "build.exploded"],
                                actor=None)
    assert exc.value.message_dict["events"][0].startswith("Unknown event build.exploded; events are: build.succeeded")


@pytest.mark.parametrize(("url", "reason"), [
    ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("https://[::1]/hook", "::1 is a loopback address"),
    ("https://[fd00::1]/hook", "fd00::1 is a private (unique local) address"),
    ("https://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1 is an IPv4-mapped IPv6 address (of 127.0.0.1)"),
    ("https://0.0.0.0/hook", "0.0.0.0 is an unspecified address"),
    ("https://localhost/hook", "localhost resolves to 127.0.0.1 is a loopback address"),
    ("http://93.184.215.14/hook", "The URL must start with https://."),
    ("https://user:pw@93.184.215.14/hook", "The URL may not carry a user name or password."),
    ("not a url", "The URL must start with https://."),
])
def test_webhook_create_refuses_urls_reaching_the_portals_network(tenant, settings, url, reason):
    settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError) as exc:
        webhooks.webhook_create(tenant=tenant, url=url, events=["build.succeeded"], actor=None)
    assert exc.value.message_dict["url"][0].startswith(reason)
    assert Webhook.objects.count() == 0


def test_url_check_allow_private_admits_loopback_and_private_but_never_link_local():
    assert url_check("http://127.0.0.1:8080/x", allow_private=True).address == "127.0.0.1"
    assert url_check("https://10.0.0.5/x", allow_private=True).address == "10.0.0.5"
    with pytest.raises(UrlRefused, match="169.254.169.254 is a link-local address"):
        url_check("http://169.254.169.254/", allow_private=True)


def test_url_check_refuses_a_name_when_any_of_its_addresses_is_private():
    resolve = {"hooks.example.com": ["93.184.215.14", "10.0.0.7"]}
    with pytest.raises(UrlRefused, match="hooks.example.com resolves to 10.0.0.7 is a private address"):
        url_check("https://hooks.example.com/x", allow_private=False, resolve=lambda host, port: resolve[host])
    checked = url_check("https://hooks.example.com:8443/x", allow_private=False,
                        resolve=lambda host, port: ["93.184.215.14"])
    assert (checked.host, checked.port, checked.address) == ("hooks.example.com", 8443, "93.184.215.14")


def test_pinned_session_connects_to_the_checked_address_not_to_what_the_name_resolves_to(receiver):
    """DNS rebinding: the request goes where the check said, with the URL's own host name in Host."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    checked = CheckedUrl(url=f"http://rebind.invalid:{port}/hooks/mlaas", scheme="http", host="rebind.invalid",
                         port=port, address="127.0.0.1")
    response = pinned_session(checked).post(checked.url, data=b"{}", timeout=(3, 10))
    assert response.status_code == 200
    assert receiver.requests[0].headers["Host"] == f"rebind.invalid:{port}"


# ----- emission and sending -----

def test_event_emit_creates_a_delivery_per_subscribed_active_webhook(tenant, django_capture_on_commit_callbacks):
    wants = webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["build.succeeded"], actor=None)
    webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["build.failed"], actor=None)
    paused = webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["build.succeeded"], actor=None)
    webhooks.webhook_pause(webhook=paused)
    with django_capture_on_commit_callbacks() as callbacks:
        made = webhooks.webhook_event_emit(tenant=tenant, event="build.succeeded", data={"build": {"id": "b1"}})
    assert [d.webhook_id for d in made] == [wants.pk]
    assert made[0].payload["type"] == "build.succeeded" and made[0].payload["data"] == {"build": {"id": "b1"}}
    assert len(callbacks) == 1  # the send job is enqueued after the commit, not before


def test_delivery_is_signed_and_verifies_with_standardwebhooks(tenant, receiver):
    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["model.approved"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="model.approved", data={"version": 3})

    assert _deliver_next(delivery) == "succeeded"

    [request] = receiver.requests
    assert request.path == "/hooks/mlaas"
    assert request.headers["webhook-id"] == delivery.msg_id
    assert _verified(hook.secret, request)["data"] == {"version": 3}
    with pytest.raises(Exception, match="No matching signature"):
        StandardWebhook(webhooks.new_secret()).verify(request.body, request.headers)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.response_excerpt) == (
        "succeeded", 1, 200, "ok")


def test_delivery_retries_after_500_with_backoff_then_succeeds(tenant, receiver):
    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    receiver.statuses = [500]
    receiver.body = b"upstream exploded"

    assert _deliver_next(delivery) == "retrying"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.error) == (
        "pending", 1, 500, "the receiver answered HTTP 500")
    assert delivery.response_excerpt == "upstream exploded"
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 27 <= wait <= 33.5  # 30 s +- 10 % jitter
    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 0  # not due yet

    _due_now(delivery)
    assert _deliver_next(delivery) == "succeeded"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.msg_id] * 2  # one message, twice
    assert all(_verified(hook.secret, r) for r in receiver.requests)
    hook.refresh_from_db()
    assert hook.consecutive_failures == 0


def test_retry_delays_grow_exponentially_and_the_sixth_failure_is_final(tenant, receiver):
    webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    Webhook.objects.update(consecutive_failures=0)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    receiver.statuses = [503] * 6
    waits = []
    for _ in range(webhooks.MAX_ATTEMPTS):
        Webhook.objects.update(consecutive_failures=0, status="active")  # keep it from pausing: retries only
        _deliver_next(delivery)
        delivery.refresh_from_db()
        if delivery.next_attempt_at:
            waits.append(round((delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
                               / webhooks.RETRY_DELAYS[len(waits)], 1))
            _due_now(delivery)
    assert all(0.9 <= w <= 1.1 for w in waits) and len(waits) == 5
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 6, None)


def test_webhook_pauses_after_repeated_failures_and_resume_sends_what_waited(tenant, receiver):
    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    receiver.statuses = [500] * webhooks.PAUSE_AFTER_FAILURES
    made = [webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={"n": n})[0]
            for n in range(webhooks.PAUSE_AFTER_FAILURES)]
    for delivery in made:
        _deliver_next(delivery)
    hook.refresh_from_db()
    assert (hook.status, hook.consecutive_failures) == ("paused", 5)
    assert hook.paused_reason == "paused after 5 failed attempts in a row (last: the receiver answered HTTP 500)"
    assert webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={}) == []  # paused: no new ones
    _due_now(made[0])
    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 0  # paused: nothing is sent
    assert _deliver_next(made[0]) == "not-claimed"

    webhooks.webhook_resume(webhook=hook)
    hook.refresh_from_db()
    assert (hook.status, hook.consecutive_failures, hook.paused_reason) == ("active", 0, "")
    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 5  # every waiting delivery is due again
    assert _deliver_next(made[0]) == "succeeded"


def test_resend_sends_the_same_message_as_a_new_delivery(tenant, receiver):
    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["model.rejected"], actor=None)
    [first] = webhooks.webhook_event_emit(tenant=tenant, event="model.rejected", data={"version": 1})
    _deliver_next(first)

    again = webhooks.webhook_delivery_resend(delivery=first)
    assert _deliver_next(again) == "succeeded"
    assert (again.msg_id, again.payload, again.resent_from_id) == (first.msg_id, first.payload, first.pk)
    assert receiver.requests[0].body == receiver.requests[1].body
    assert _verified(hook.secret, receiver.requests[1])["data"] == {"version": 1}


def test_an_attempt_is_made_once_however_many_jobs_ask(tenant, receiver):
    webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempt=1) == "succeeded"
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempt=1) == "not-claimed"
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed(tenant, receiver):
    webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    receiver.statuses, receiver.redirect_to = [302], "http://169.254.169.254/latest/meta-data/"
    assert _deliver_next(delivery) == "retrying"
    delivery.refresh_from_db()
    assert delivery.last_status_code == 302 and len(receiver.requests) == 1


def test_send_time_check_refuses_a_url_that_became_private(tenant, receiver, settings):
    """Allowed when registered (development), refused at send time once the setting is off."""
    webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE = False
    assert _deliver_next(delivery) == "retrying"
    delivery.refresh_from_db()
    assert delivery.error == ("not sent: The URL must start with https://.")
    assert receiver.requests == []


def test_response_excerpt_is_truncated(tenant, receiver):
    webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    receiver.body = b"x" * 10_000
    _deliver_next(delivery)
    delivery.refresh_from_db()
    assert delivery.response_excerpt == "x" * 2048 + " [truncated]"


def test_rotated_secret_signs_the_next_attempt(tenant, receiver):
    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.failed"], actor=None)
    old = hook.secret
    webhooks.webhook_secret_rotate(webhook=hook)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.failed", data={})
    _deliver_next(delivery)
    assert hook.secret != old
    assert _verified(hook.secret, receiver.requests[0])["type"] == "build.failed"
    assert json.loads(receiver.requests[0].body)["data"] == {}


def test_the_scheduler_sweep_sends_a_delivery_whose_job_was_lost(tenant, receiver, clean_redis):
    """Redis lost the job: once the lease has passed, the sweep enqueues the attempt and a worker sends it."""
    import django_rq
    from rq import SimpleWorker

    hook = webhooks.webhook_create(tenant=tenant, url=receiver.url, events=["build.succeeded"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.succeeded", data={"lost": True})
    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 0  # its job is presumed on the way
    _due_now(delivery)  # the lease has passed

    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 1
    assert webhooks.webhooks_tick()["webhook_attempts_enqueued"] == 0  # leased again: not enqueued twice
    django_rq.get_worker("webhooks", worker_class=SimpleWorker).work(burst=True)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert _verified(hook.secret, receiver.requests[0])["data"] == {"lost": True}


def _self_signed(tmp_path, name: str):
    """A certificate for `name` (and its key), its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = timezone.now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_pinned_https_verifies_the_certificate_against_the_urls_host_name(tmp_path):
    """Connected to the checked address, TLS still checks the URL's name (SNI and hostname), not the address."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    cert_path, key_path = _self_signed(tmp_path, "hooks.test")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        right = CheckedUrl(url=f"https://hooks.test:{port}/in", scheme="https", host="hooks.test", port=port,
                           address="127.0.0.1")
        assert pinned_session(right).post(right.url, data=b"{}", verify=str(cert_path), timeout=(3, 10)) \
            .status_code == 204
        wrong = CheckedUrl(url=f"https://other.test:{port}/in", scheme="https", host="other.test", port=port,
                           address="127.0.0.1")
        with pytest.raises(requests.exceptions.SSLError):
            pinned_session(wrong).post(wrong.url, data=b"{}", verify=str(cert_path), timeout=(3, 10))
    finally:
        server.shutdown()
        server.server_close()
