"""REST API limits per token and per tenant, higher for higher tiers: 429 with Retry-After, JSON error shape."""

from __future__ import annotations

import pytest

from tenants.models import Plan
from tests.factories import MembershipFactory, TenantFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(reference_data, clean_redis):
    Plan.objects.filter(slug="basic").update(api_requests_per_minute=3)
    Plan.objects.filter(slug="premium").update(api_requests_per_minute=6)


def statuses(client, n):
    return [client.get("/api/v1/builds").status_code for _ in range(n)]


def test_token_over_its_plan_limit_gets_429_with_retry_after(limits, api_client_for):
    member = MembershipFactory(tenant=TenantFactory(plan=plan("basic"))).user
    client = api_client_for(member)
    assert statuses(client, 3) == [200, 200, 200]
    response = client.get("/api/v1/builds")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited" and body["fields"] is None
    assert body["message"].startswith("Too many requests for this token (3 requests a minute on the Basic plan)")
    assert 1 <= int(response["Retry-After"]) <= 20  # a token comes back every 20 s at 3 a minute


def test_higher_tier_gets_a_higher_limit(limits, api_client_for):
    member = MembershipFactory(tenant=TenantFactory(plan=plan("premium"))).user
    assert statuses(api_client_for(member), 7) == [200] * 6 + [429]


def test_tenant_limit_spans_its_tokens(limits, api_client_for):
    tenant = TenantFactory(plan=plan("basic"))  # 3 a minute per token, 6 for the tenant
    first, second, third = (api_client_for(MembershipFactory(tenant=tenant).user) for _ in range(3))
    assert statuses(first, 3) + statuses(second, 3) == [200] * 6
    response = third.get("/api/v1/builds")  # a fresh token, but the tenant's minute is used up
    assert response.status_code == 429
    assert f"tenant {tenant.slug} (6 requests a minute across its tokens" in response.json()["message"]
    other = api_client_for(MembershipFactory(tenant=TenantFactory(plan=plan("basic"))).user)
    assert statuses(other, 1) == [200]  # another tenant is not affected


def test_staff_tokens_use_the_staff_limit(limits, api_client_for, staff_user, settings):
    settings.MLAAS_API_STAFF_REQUESTS_PER_MINUTE = 2
    assert statuses(api_client_for(staff_user), 3) == [200, 200, 429]
