"""The tenant list (staff page and API) costs the same number of queries for 1 tenant and for 50."""

from __future__ import annotations

import pytest
from django.urls import reverse

from builds.models import Algorithm, Build
from tenants.models import Plan, Tenant

PAGE_QUERIES = 4  # session, user, paginator count, page rows (plan, build counts and spend annotated)
API_QUERIES = 4  # token with its user, its last-use stamp, count, page rows


def _tenants(n: int) -> list[Tenant]:
    plans = list(Plan.objects.all())
    tenants = Tenant.objects.bulk_create([
        Tenant(slug=f"q{i:03d}", name=f"Tenant {i}", plan=plans[i % len(plans)],
               isolation=("silo", "pool")[i % 2], bucket=f"mlaas-t-q{i:03d}-123456789012")
        for i in range(n)])
    algorithm = Algorithm.objects.first()
    Build.objects.bulk_create([
        Build(tenant=t, plan=t.plan, algorithm=algorithm, target="y", dataset_bucket=t.bucket,
              dataset_key=f"uploads/{t.slug}-{s}.csv", status=s)
        for t in tenants for s in ("queued", "running")])
    return tenants


@pytest.mark.parametrize("n", [1, 50])
def test_tenant_list_page_query_count_does_not_grow(reference_data, staff_user, logged_in,
                                                    django_assert_max_num_queries, n):
    _tenants(n)
    client = logged_in(staff_user)

    with django_assert_max_num_queries(PAGE_QUERIES):
        response = client.get(reverse("tenant_list"))

    rows = response.context["page_obj"].object_list
    assert (response.status_code, len(rows), response.context["page_obj"].paginator.count) == (200, min(n, 25), n)
    assert [(t.slug, t.active_builds, t.queued_builds) for t in rows][:2] == [
        ("q000", 1, 1), ("q001", 1, 1)][:n]


@pytest.mark.parametrize("n", [1, 50])
def test_api_tenant_list_query_count_does_not_grow(reference_data, staff_user, api_client_for,
                                                   django_assert_max_num_queries, n):
    _tenants(n)
    client = api_client_for(staff_user)

    with django_assert_max_num_queries(API_QUERIES):
        response = client.get("/api/v1/tenants")

    assert (response.status_code, response.json()["count"], len(response.json()["items"])) == (200, n, n)
