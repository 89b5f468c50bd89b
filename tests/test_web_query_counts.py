"""No page makes a query per row: every list page and both home pages render with 1 row and with 50 rows
under the same query ceiling (django_assert_max_num_queries)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.web_support import T0, client_for, create_build, create_member, create_tenant


def _tenants(n: int) -> list:
    return [create_tenant(plan=("basic", "standard", "premium")[i % 3], budget=Decimal("100")) for i in range(n)]


def _spend(tenant, build, amount: str = "0.25") -> None:
    from billing.models import CostLine
    from billing.services import utc_today

    step = build.steps.first()
    CostLine.objects.create(tenant=tenant, plan=tenant.plan, build=build, step=step, instance_type="ml.m5.large",
                            instance_count=1, billable_seconds=9, price_per_hour=Decimal("0.115"),
                            amount=Decimal(amount), day=utc_today())
    # Written past metering (which keeps the billing rollups current): refresh them as the billing tick does.
    from billing.rollups import rollups_refresh

    rollups_refresh(start=utc_today() - timedelta(days=40), end=utc_today(), tenant_slugs=[tenant.slug])


def _rejected(tenant, n: int) -> None:
    from builds.models import RejectedUpload

    RejectedUpload.objects.bulk_create([
        RejectedUpload(tenant=tenant, bucket=tenant.bucket, key=f"uploads/bad-{tenant.slug}-{i}.csv",
                       dedup_key=f"{tenant.slug}-{i}", reason="the file is empty") for i in range(n)])


# Each scenario makes `rows` rows of what the page lists and returns (user, url).

def builds_staff(rows, staff_user):
    tenants = _tenants(min(rows, 5))
    for i in range(rows):
        create_build(tenants[i % len(tenants)], status=("succeeded", "failed", "running", "queued")[i % 4],
                     created_at=T0 + timedelta(minutes=i), version=i % 4 == 0)
    return staff_user, reverse("builds:list") + "?sort=-duration"


def builds_tenant(rows, staff_user):
    tenant = create_tenant()
    for i in range(rows):
        create_build(tenant, status=("succeeded", "running")[i % 2], created_at=T0 + timedelta(minutes=i))
    return create_member(tenant), reverse("builds:list")


def tenants_list(rows, staff_user):
    for tenant in _tenants(rows):
        _spend(tenant, create_build(tenant))
        create_build(tenant, status="running")
    return staff_user, reverse("tenant_list")


def models_list(rows, staff_user):
    tenant = create_tenant()
    for i in range(rows):
        create_build(tenant, version=True, metrics={"accuracy": 0.9, "f1": 0.8},
                     approval=("PendingManualApproval", "Approved")[i % 2])
    return create_member(tenant, role="owner"), reverse("builds:models", args=[tenant.slug])


def access_requests(rows, staff_user):
    from tenants.models import AccessRequest, Plan

    plan = Plan.objects.get(slug="basic")
    AccessRequest.objects.bulk_create([AccessRequest(company=f"Co {i}", contact_email=f"c{i}@co.example", plan=plan,
                                                     message="hello") for i in range(rows)])
    return staff_user, reverse("tenants:access_requests")


def algorithms(rows, staff_user):
    from builds.models import Algorithm

    existing = Algorithm.objects.count()
    Algorithm.objects.bulk_create([
        Algorithm(slug=f"algo-{i}", name=f"Algo {i}", problem_type="classification",
                  image_repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlaas-steps", image_tag="latest",
                  image_digest="sha256:" + "0" * 64,
                  entry_point="linear", objective_metric="f1", min_metric=0.5,
                  typical_metrics={"samples": [{"dataset": "wine", "rows": 178, "metrics": {"f1": 0.9}}]})
        for i in range(max(0, rows - existing))])
    Algorithm.objects.exclude(pk__in=Algorithm.objects.order_by("pk")[:rows]).delete()
    return staff_user, reverse("builds:algorithms")


def plans(rows, staff_user):
    from tenants.models import Plan

    if rows == 1:
        Plan.objects.exclude(slug="standard").delete()
    else:
        Plan.objects.bulk_create([Plan(slug=f"plan-{i}", name=f"Plan {i}", tier_rank=4 + i) for i in range(rows - 3)])
        _tenants(6)
    assert Plan.objects.count() == rows
    return staff_user, reverse("tenants:plans")


def catalog(rows, staff_user):
    algorithms(rows, staff_user)
    return None, reverse("catalog")


def tokens(rows, staff_user):
    from tenants.services import api_token_create

    for i in range(rows):
        api_token_create(user=staff_user, name=f"token {i}")
    return staff_user, reverse("tokens")


def home_staff(rows, staff_user):
    from tenants.models import AccessRequest

    tenants = _tenants(rows)
    for i, tenant in enumerate(tenants):
        done = create_build(tenant, status=("succeeded", "failed")[i % 2], failure_reason="bad data",
                            created_at=T0 + timedelta(minutes=i))
        _spend(tenant, done)
        create_build(tenant, status=("running", "queued")[i % 2])
        _rejected(tenant, 1)
        AccessRequest.objects.create(company=f"Co {i}", contact_email=f"c{i}@co.example")
    create_tenant(status="provisioning")
    return staff_user, reverse("home")


def home_tenant(rows, staff_user):
    tenant = create_tenant(budget=Decimal("10"))
    for i in range(rows):
        build = create_build(tenant, status=("succeeded", "failed", "running", "queued")[i % 4],
                             version=i % 4 == 0, created_at=T0 + timedelta(minutes=i))
        if build.status == "succeeded":
            _spend(tenant, build)
    _rejected(tenant, rows)
    return create_member(tenant), reverse("home")


def build_queue(rows, staff_user):
    # One plan: the page reads each plan's waiting tenants in a query of its own (bounded by the plans, not builds).
    for i, tenant in enumerate(create_tenant(plan="basic") for _ in range(rows)):
        create_build(tenant, status="queued", created_at=T0 + timedelta(minutes=i))
        if i % 3 == 0:
            create_build(tenant, status="running")
    return staff_user, reverse("builds:queue")


def marketplace(rows, staff_user):
    from billing.models import MarketplaceUsageRecord
    from tenants.models import MarketplaceCustomer

    for i, tenant in enumerate(_tenants(rows)):
        customer = MarketplaceCustomer.objects.create(customer_aws_account_id=f"{i:012d}", product_code="prod-x",
                                                      tenant=tenant, status="subscribed")
        MarketplaceUsageRecord.objects.create(customer=customer, tenant=tenant, product_code="prod-x",
                                              dimension="build_hours", hour=T0 + timedelta(hours=i), quantity=i,
                                              status=("pending", "sent", "expired")[i % 3])
    return staff_user, reverse("billing:marketplace")


# page -> the same ceiling for 1 and for 50 rows: what it takes today (session, user, membership, the page's
# reads, the paginator's count) plus one.
PAGES = {
    builds_staff: 8,
    builds_tenant: 8,
    tenants_list: 5,
    models_list: 8,
    access_requests: 5,
    algorithms: 4,
    plans: 4,
    catalog: 4,
    tokens: 4,
    home_staff: 13,
    home_tenant: 11,
    build_queue: 21,
    marketplace: 8,
}


@pytest.mark.parametrize("rows", [1, 50])
@pytest.mark.parametrize("scenario", list(PAGES), ids=[f.__name__ for f in PAGES])
def test_list_page_query_count_does_not_grow_with_rows(reference_data, staff_user, rows, scenario,
                                                       django_assert_max_num_queries):
    user, url = scenario(rows, staff_user)
    client = client_for(user) if user else __import__("django.test", fromlist=["Client"]).Client()

    with django_assert_max_num_queries(PAGES[scenario]):
        response = client.get(url)

    assert response.status_code == 200
    if scenario not in (home_staff, home_tenant, catalog):
        shown = rows if scenario not in (builds_staff, builds_tenant, tenants_list, models_list,
                                         access_requests) else min(rows, 25)
        shown = min(shown, 10) if scenario is build_queue else shown  # the ten longest waits
        assert response.content.decode().count("<tr") - 1 >= shown  # the rows are really on the page


@pytest.mark.parametrize("scenario", [builds_staff, builds_tenant], ids=["staff", "tenant"])
def test_live_build_rows_refresh_query_count_does_not_grow(reference_data, staff_user, scenario,
                                                           django_assert_max_num_queries):
    user, url = scenario(50, staff_user)
    client = client_for(user)

    with django_assert_max_num_queries(PAGES[scenario]):
        response = client.get(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and "<html" not in response.content.decode()


def test_build_detail_query_count_does_not_grow_with_steps_or_history(reference_data, django_assert_max_num_queries):
    from builds.models import BuildTransition

    tenant = create_tenant()
    build = create_build(tenant, status="running", steps=3, version=False)
    BuildTransition.objects.bulk_create([BuildTransition(build=build, to_status="queued", reason=f"r{i}")
                                         for i in range(50)])

    client = client_for(create_member(tenant))

    with django_assert_max_num_queries(11):
        response = client.get(reverse("builds:detail", args=[build.code]), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
