"""Webhook pages and API: owners manage, members read, a stranger gets 404 everywhere, lists cost the same number
of queries for 1 row and 50."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants import webhooks
from tenants.models import Webhook, WebhookDelivery

PUBLIC_URL = "https://93.184.215.14/hooks"


@pytest.fixture
def setup(tenant_row, make_member):
    tenant, other = tenant_row(), tenant_row()
    hook = webhooks.webhook_create(tenant=tenant, url=PUBLIC_URL, events=["build.succeeded"], actor=None)
    [delivery] = webhooks.webhook_event_emit(tenant=tenant, event="build.succeeded", data={"n": 1})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=6, next_attempt_at=None)
    return {"tenant": tenant, "hook": hook, "delivery": delivery,
            "owner": make_member(tenant, role="owner"), "member": make_member(tenant, role="member"),
            "stranger": make_member(other, role="owner")}


def _pages(s) -> list[tuple[str, str]]:
    slug, code, d = s["tenant"].slug, s["hook"].code, s["delivery"].code
    return [("GET", reverse("tenants:webhooks", args=[slug])),
            ("POST", reverse("tenants:webhooks", args=[slug])),
            ("GET", reverse("tenants:webhook_deliveries", args=[slug, code])),
            *[("POST", reverse("tenants:webhook_action", args=[slug, code, action]))
              for action in ("pause", "resume", "delete", "test", "rotate", "reveal")],
            ("POST", reverse("tenants:webhook_resend", args=[slug, code, d]))]


def _api(s) -> list[tuple[str, str, dict | None]]:
    base = f"/api/v1/tenants/{s['tenant'].slug}/webhooks"
    one = f"{base}/{s['hook'].code}"
    return [("GET", base, None), ("POST", base, {"url": PUBLIC_URL, "events": ["build.failed"]}),
            ("GET", one, None), ("PATCH", one, {"status": "paused"}), ("DELETE", one, None),
            ("GET", f"{one}/deliveries", None), ("POST", f"{one}/deliveries/{s['delivery'].code}/resend", None)]


def _call(client, method: str, path: str, body: dict | None = None):
    import json

    if method == "GET":
        return client.get(path)
    return client.generic(method, path, data=json.dumps(body or {}), content_type="application/json")


def test_a_stranger_gets_404_on_every_webhook_page(setup, logged_in):
    client = logged_in(setup["stranger"])
    got = [(method, path, client.generic(method, path).status_code) for method, path in _pages(setup)]
    assert got == [(method, path, 404) for method, path in _pages(setup)]
    assert Webhook.objects.get(pk=setup["hook"].pk).status == "active"


def test_a_stranger_gets_404_on_every_webhook_api_operation(setup, api_client_for):
    client = api_client_for(setup["stranger"])
    got = [(m, p, _call(client, m, p, b).status_code) for m, p, b in _api(setup)]
    assert got == [(m, p, 404) for m, p, _ in _api(setup)]


def test_a_member_reads_but_cannot_change_webhooks(setup, logged_in, api_client_for):
    client = logged_in(setup["member"])
    page = client.get(reverse("tenants:webhooks", args=[setup["tenant"].slug]))
    assert page.status_code == 200 and PUBLIC_URL in page.content.decode()
    assert setup["hook"].secret not in page.content.decode() and "Add a webhook" not in page.content.decode()
    assert [client.post(path).status_code for method, path in _pages(setup) if method == "POST"] == [404] * 8
    api = api_client_for(setup["member"])
    assert [_call(api, m, p, b).status_code for m, p, b in _api(setup) if m != "GET"] == [403] * 4
    assert [_call(api, m, p, b).status_code for m, p, b in _api(setup) if m == "GET"] == [200] * 3
    assert _call(api, "GET", _api(setup)[2][1]).json()["secret"] is None
    hook = Webhook.objects.get(pk=setup["hook"].pk)
    assert (hook.status, Webhook.objects.count(), WebhookDelivery.objects.count()) == ("active", 1, 1)


def test_owner_adds_a_webhook_and_sees_its_secret_once(setup, logged_in):
    client = logged_in(setup["owner"])
    response = client.post(reverse("tenants:webhooks", args=[setup["tenant"].slug]),
                           {"url": "https://93.184.215.15/in", "events": ["model.approved", "build.failed"]})
    added = Webhook.objects.get(url="https://93.184.215.15/in")
    assert response.status_code == 200 and added.events == ["build.failed", "model.approved"]
    assert added.secret in response.content.decode()
    listing = client.get(reverse("tenants:webhooks", args=[setup["tenant"].slug])).content.decode()
    assert added.secret not in listing


def test_owner_is_told_which_address_is_refused(setup, logged_in, settings):
    settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE = False
    response = logged_in(setup["owner"]).post(reverse("tenants:webhooks", args=[setup["tenant"].slug]),
                                              {"url": "https://169.254.169.254/", "events": ["build.failed"]})
    assert "169.254.169.254 is a link-local address" in response.content.decode()
    assert Webhook.objects.count() == 1


def test_owner_pauses_resumes_tests_and_resends(setup, logged_in):
    client, s = logged_in(setup["owner"]), setup
    slug, code = s["tenant"].slug, s["hook"].code
    client.post(reverse("tenants:webhook_action", args=[slug, code, "pause"]))
    assert Webhook.objects.get(pk=s["hook"].pk).status == "paused"
    client.post(reverse("tenants:webhook_action", args=[slug, code, "resume"]))
    assert Webhook.objects.get(pk=s["hook"].pk).status == "active"
    response = client.post(reverse("tenants:webhook_action", args=[slug, code, "test"]))
    assert response.status_code == 302
    assert WebhookDelivery.objects.filter(webhook=s["hook"], event="webhook.test").count() == 1
    client.post(reverse("tenants:webhook_resend", args=[slug, code, s["delivery"].code]))
    resent = WebhookDelivery.objects.get(resent_from=s["delivery"])
    assert (resent.msg_id, resent.status, resent.attempts) == (s["delivery"].msg_id, "pending", 0)
    old = s["hook"].secret
    rotated = client.post(reverse("tenants:webhook_action", args=[slug, code, "rotate"]))
    new = Webhook.objects.get(pk=s["hook"].pk).secret
    assert new != old and new in rotated.content.decode()
    client.post(reverse("tenants:webhook_action", args=[slug, code, "delete"]))
    assert not Webhook.objects.filter(pk=s["hook"].pk).exists()


def test_api_create_answers_the_secret_and_clear_400s(setup, api_client_for, settings):
    settings.MLAAS_WEBHOOKS_ALLOW_PRIVATE = False
    client = api_client_for(setup["owner"])
    base = f"/api/v1/tenants/{setup['tenant'].slug}/webhooks"
    created = _call(client, "POST", base, {"url": "https://93.184.215.16/x", "events": ["endpoint.in_service"]})
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["endpoint.in_service"]
    assert _call(client, "GET", f"{base}/{body['id']}").json()["secret"] is None
    bad_event = _call(client, "POST", base, {"url": "https://93.184.215.16/x", "events": ["build.exploded"]})
    assert bad_event.status_code == 400 and "Unknown event build.exploded" in bad_event.json()["message"]
    private = _call(client, "POST", base, {"url": "https://10.0.0.1/x", "events": ["build.failed"]})
    assert (private.status_code, private.json()["fields"]) == (400, {"url": [
        "10.0.0.1 is a private address; webhooks may only reach public addresses."]})
    rotated = _call(client, "PATCH", f"{base}/{body['id']}", {"rotate_secret": True, "status": "paused"})
    assert rotated.json()["secret"] not in (None, body["secret"]) and rotated.json()["status"] == "paused"
    assert _call(client, "DELETE", f"{base}/{body['id']}").status_code == 204


def _deliveries(hook, n: int) -> None:
    WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook=hook, event="build.succeeded", msg_id=f"msg_{i}", payload={"i": i}, status="succeeded",
                        attempts=1, last_status_code=200, response_excerpt="ok") for i in range(n)])


@pytest.mark.parametrize("n", [1, 50])
def test_webhook_pages_query_count_does_not_grow(setup, logged_in, django_assert_max_num_queries, n):
    from tenants.views import WEBHOOK_DELIVERIES_PAGE

    # Rows straight in (the service caps a tenant at 10 webhooks; the page must not care how many).
    Webhook.objects.bulk_create([Webhook(tenant=setup["tenant"], url=f"https://93.184.215.14/{i}",
                                         events=["build.failed"], secret=webhooks.new_secret()) for i in range(n - 1)])
    _deliveries(setup["hook"], n)
    client = logged_in(setup["owner"])
    # session, user, membership, tenant, webhooks; the nav's tenant (base.html's context processor)
    with django_assert_max_num_queries(6):
        listing = client.get(reverse("tenants:webhooks", args=[setup["tenant"].slug]))
    with django_assert_max_num_queries(7):  # the same, with the webhook instead of the list and one page of deliveries
        page = client.get(reverse("tenants:webhook_deliveries", args=[setup["tenant"].slug, setup["hook"].code]))
    assert len(listing.context["webhooks"]) == n
    assert len(page.context["deliveries"]) == min(n + 1, WEBHOOK_DELIVERIES_PAGE)


@pytest.mark.parametrize("n", [1, 50])
def test_api_deliveries_query_count_does_not_grow(setup, api_client_for, django_assert_max_num_queries, n):
    _deliveries(setup["hook"], n)
    client = api_client_for(setup["owner"])
    with django_assert_max_num_queries(6):  # token, tenant, webhook, count, page rows (+ last-use stamp)
        response = client.get(f"/api/v1/tenants/{setup['tenant'].slug}/webhooks/{setup['hook'].code}/deliveries")
    assert (response.status_code, response.json()["count"]) == (200, n + 1)
