"""Web and API isolation: a user of another tenant gets 404 on every tenant-scoped page and
endpoint (never 403, never data); staff-only pages are 404 to tenant users and send anonymous
users to the login page; lists show a member its own tenant only."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.urls import reverse

from builds.models import Algorithm, Build
from tenants.models import AccessRequest, Tenant

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}


@pytest.fixture
def two_tenants(tenant_row, make_member):
    """Tenant A with its owner (the most privileged tenant user), tenant B with its owner."""
    a, b = tenant_row(name="Alpha Corp"), tenant_row(name="Bravo Corp")
    return a, make_member(a, role="owner"), b, make_member(b, role="owner")


def _state(tenant: Tenant) -> dict:
    tenant.refresh_from_db()
    return {"status": tenant.status, "default_target": tenant.default_target, "budget": tenant.monthly_budget,
            "members": list(tenant.memberships.values_list("user__username", flat=True)),
            "events": tenant.events.count()}


# --- tenant-scoped pages: one test per view ------------------------------------------------------------------


def test_detail_page_of_another_tenant_is_404(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants

    stranger = logged_in(a_owner).get(reverse("tenants:detail", args=[b.slug]))
    own = logged_in(b_owner).get(reverse("tenants:detail", args=[b.slug]))

    assert (stranger.status_code, own.status_code) == (404, 200)
    assert "Bravo Corp" not in stranger.content.decode()
    assert "Bravo Corp" in own.content.decode()


def test_steps_fragment_of_another_tenant_is_404(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants

    stranger = logged_in(a_owner).get(reverse("tenants:steps", args=[b.slug]))
    own = logged_in(b_owner).get(reverse("tenants:steps", args=[b.slug]))

    assert (stranger.status_code, own.status_code) == (404, 200)


def test_credentials_of_another_tenant_are_404(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants
    Tenant.objects.filter(pk=b.pk).update(status=Tenant.Status.SUSPENDED)  # the owner's answer needs no AWS

    stranger = logged_in(a_owner).post(reverse("tenants:credentials", args=[b.slug]))
    own = logged_in(b_owner).post(reverse("tenants:credentials", args=[b.slug]))

    assert (stranger.status_code, own.status_code, own.url) == (404, 302, reverse("tenants:detail", args=[b.slug]))
    assert "AccessKeyId" not in stranger.content.decode() and "AWS_SECRET" not in stranger.content.decode()


def test_invite_into_another_tenant_is_404(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants
    before = _state(b)

    stranger = logged_in(a_owner).post(reverse("tenants:invite", args=[b.slug]),
                                       {"email": "plant@example.com", "role": "member"})

    assert stranger.status_code == 404
    assert _state(b) == before


def test_settings_of_another_tenant_are_404(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants
    before = _state(b)
    form = {"default_algorithm": Algorithm.objects.get(slug="gbm-classifier").pk, "default_target": "stolen",
            "monthly_budget": "1", "budget_alert_percent": "50"}

    stranger = logged_in(a_owner).post(reverse("tenants:settings", args=[b.slug]), form)
    own = logged_in(b_owner).post(reverse("tenants:settings", args=[b.slug]), dict(form, default_target="label"))

    assert (stranger.status_code, own.status_code) == (404, 302)
    assert _state(b) == dict(before, default_target="label", budget=1)


# --- staff-only pages --------------------------------------------------------------------------------------------

def _staff_pages(own: Tenant) -> list[tuple[str, str]]:
    request = AccessRequest.objects.create(company="Curious Inc", contact_email="c@curious.example")
    return [
        ("get", reverse("tenant_list")),
        ("get", reverse("tenants:onboard")),
        ("get", reverse("tenants:plans")),
        ("get", reverse("tenants:plan_edit", args=["standard"])),
        ("get", reverse("tenants:offboard", args=[own.slug])),
        ("post", reverse("tenants:action", args=[own.slug, "suspend"])),
        ("get", reverse("tenants:access_requests")),
        ("post", reverse("tenants:access_request_done", args=[request.code])),
    ]


def test_staff_pages_are_404_to_a_tenant_owner_even_for_its_own_tenant(two_tenants, logged_in):
    a, a_owner, b, b_owner = two_tenants
    client = logged_in(a_owner)
    before = _state(a)
    pages = _staff_pages(a)

    answers = [(url, getattr(client, method)(url).status_code) for method, url in pages]

    assert answers == [(url, 404) for _, url in pages]
    assert _state(a) == before
    assert AccessRequest.objects.filter(handled_at__isnull=False).count() == 0


def test_staff_pages_send_anonymous_users_to_login(two_tenants, client):
    a, *_ = two_tenants
    pages = _staff_pages(a)

    responses = [getattr(client, method)(url) for method, url in pages]

    assert [(r.status_code, r.url) for r in responses] == [(302, f"{reverse('login')}?next={quote(url)}")
                                                            for _, url in pages]


def test_tenant_pages_send_anonymous_users_to_login(two_tenants, client):
    a, *_ = two_tenants
    urls = [reverse(name, args=[a.slug]) for name in ("tenants:detail", "tenants:steps")]

    answers = [client.get(url).url for url in urls]

    assert answers == [f"{reverse('login')}?next={quote(url)}" for url in urls]


# --- API -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/api/v1/tenants/{slug}", None),
    ("post", "/api/v1/tenants/{slug}/credentials", None),
    ("post", "/api/v1/tenants/{slug}/uploads", {"filename": "data.csv", "size": 10}),
], ids=["detail", "credentials", "uploads"])
def test_api_tenant_endpoint_of_another_tenant_is_404_json(two_tenants, api_client_for, method, path, body):
    a, a_owner, b, b_owner = two_tenants
    client = api_client_for(a_owner)
    kwargs = {"data": body, "content_type": "application/json"} if body else {}

    stranger = getattr(client, method)(path.format(slug=b.slug), **kwargs)
    missing = getattr(client, method)(path.format(slug=f"no-such-{uuid.uuid4().hex[:6]}"), **kwargs)

    assert (stranger.status_code, stranger.json()) == (404, NOT_FOUND)
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)  # indistinguishable from a missing tenant


def test_api_tenant_detail_of_own_tenant_for_member(two_tenants, make_member, api_client_for):
    a, *_ = two_tenants

    response = api_client_for(make_member(a)).get(f"/api/v1/tenants/{a.slug}")

    assert (response.status_code, response.json()["slug"], response.json()["resources"]) == (200, a.slug, {
        "bucket": a.bucket, "prefix": "", "upload_uri": f"s3://{a.bucket}/uploads/", "role_arn": a.role_arn,
        "model_package_group": a.model_package_group})


def test_api_tenant_list_shows_a_member_only_its_tenant(two_tenants, make_member, api_client_for):
    a, *_ = two_tenants

    response = api_client_for(make_member(a)).get("/api/v1/tenants")

    assert response.status_code == 200
    assert ([t["slug"] for t in response.json()["items"]], response.json()["count"]) == ([a.slug], 1)


def test_api_tenant_list_shows_staff_every_tenant(two_tenants, staff_user, api_client_for):
    a, _, b, _ = two_tenants

    response = api_client_for(staff_user).get("/api/v1/tenants")

    assert [t["slug"] for t in response.json()["items"]] == sorted([a.slug, b.slug])


def _bravo_build(b: Tenant) -> Build:
    return Build.objects.create(tenant=b, plan=b.plan, algorithm=Algorithm.objects.get(slug="gbm-classifier"),
                                target="y", dataset_bucket=b.bucket, dataset_key="uploads/bravo-secret.csv",
                                status=Build.Status.QUEUED)


def test_member_pages_never_show_another_tenant(two_tenants, make_member, logged_in):
    a, _, b, _ = two_tenants
    _bravo_build(b)
    client = logged_in(make_member(a))

    pages = [client.get(reverse("home")), client.get(reverse("tenants:detail", args=[a.slug]))]

    assert [page.status_code for page in pages] == [200, 200]
    assert [p for p in pages if any(s in p.content.decode() for s in (b.slug, "Bravo Corp", "bravo-secret"))] == []


def test_api_build_list_never_shows_another_tenant(two_tenants, make_member, api_client_for):
    a, _, b, _ = two_tenants
    _bravo_build(b)
    client = api_client_for(make_member(a))

    answers = [client.get("/api/v1/builds"), client.get(f"/api/v1/builds?tenant={b.slug}")]

    assert [(r.status_code, r.json()) for r in answers] == [(200, {"items": [], "count": 0, "next_cursor": None})] * 2
