"""The two home pages: the vendor dashboard (tenants, capacity per plan, build health, spend, failures,
rejected uploads) and a tenant's home (builds, models, spend against budget)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from builds.models import Build, RejectedUpload
from tenants.models import AccessRequest
from tests.web_support import client_for, create_build, create_member, create_tenant, page_title, text_of


def spend(tenant, build, amount: str, *, days_ago: int = 0) -> None:
    from billing.models import CostLine
    from billing.services import utc_today

    CostLine.objects.create(tenant=tenant, plan=tenant.plan, build=build,
                            step=build.steps.filter(cost_line__isnull=True).first(),
                            instance_type="ml.m5.large", instance_count=1, billable_seconds=60,
                            price_per_hour=Decimal("0.115"), amount=Decimal(amount),
                            day=utc_today() - timedelta(days=days_ago))
    # Written past metering (which keeps the billing rollups current): refresh them as the billing tick does.
    from billing.rollups import rollups_refresh

    rollups_refresh(start=utc_today() - timedelta(days=40), end=utc_today(), tenant_slugs=[tenant.slug])


def ended_ago(hours: float, duration_s: int):
    """created_at for create_build so the build ends `hours` ago after `duration_s` seconds of running."""
    return timezone.now() - timedelta(hours=hours) - timedelta(seconds=duration_s + 30)


@pytest.fixture
def vendor(reference_data, settings):
    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = 5
    acme, globex = create_tenant(slug="acme", plan="basic"), create_tenant(slug="globex", plan="premium")
    create_tenant(slug="initech", plan="basic")
    create_tenant(slug="hooli", plan="standard", status="provisioning")
    for seconds in (60, 120, 600):
        create_build(acme, status="succeeded", duration=timedelta(seconds=seconds),
                     created_at=ended_ago(2, seconds))
    failed = create_build(globex, status="failed", steps=1, duration=timedelta(seconds=30),
                          failure_reason="column `churn` not found; columns are: `a`, `b`", created_at=ended_ago(1, 30))
    create_build(globex, status="cancelled", duration=timedelta(seconds=5), created_at=ended_ago(1, 5))
    create_build(acme, status="succeeded", duration=timedelta(seconds=5000), created_at=ended_ago(24 * 10, 5000))
    create_build(acme, status="running")
    create_build(acme, status="starting")
    create_build(acme, status="queued")
    create_build(globex, status="running")
    first = Build.objects.filter(tenant=acme, status="succeeded").first()
    spend(acme, first, "0.25")
    spend(globex, failed, "0.50")
    spend(acme, first, "9.99", days_ago=40)
    RejectedUpload.objects.create(tenant=globex, bucket=globex.bucket, key="uploads/report.xlsx", dedup_key="1",
                                  reason="the file is not a CSV: it looks like an Excel workbook")
    AccessRequest.objects.create(company="Umbrella", contact_email="ceo@umbrella.example")
    return acme, globex, failed


def test_staff_dashboard_numbers(vendor, staff_user):
    acme, globex, failed = vendor

    response = client_for(staff_user).get(reverse("home"))

    c = response.context
    assert response.status_code == 200
    assert page_title(response) == "Vendor dashboard · MLaaS Portal"
    assert (c["active_tenants"], c["tenants_needing_attention"], c["pending_requests"]) == (3, 1, 1)
    assert [(r["plan"].slug, r["running"], r["queued"], r["limit"], r["full"]) for r in c["capacity"]] == [
        ("premium", 1, 0, 12, False), ("standard", 0, 0, 8, False), ("basic", 2, 1, 4, False)]
    assert (c["account_running"], c["account_queued"], c["account_limit"]) == (3, 1, 5)
    assert (c["succeeded"], c["failed"], c["success_rate"], c["median_build_seconds"]) == (3, 1, 75.0, 120.0)
    assert c["spend_this_month"] == Decimal("0.75")
    assert [b.pk for b in c["recent_failures"]] == [failed.pk]
    assert [(r["tenant__slug"], r["running"], r["queued"]) for r in c["tenant_queues"]] == [
        ("acme", 2, 1), ("globex", 1, 0)]
    text = text_of(response)
    assert "3 / 5 builds running (account limit) 1 queued" in text
    assert "75% success rate, last 7 days 3 succeeded · 1 failed" in text
    assert "2 min 00 s median build time, 7 days" in text
    assert "$0.75 metered spend this month" in text
    assert "column `churn` not found; columns are: `a`, `b`" in text
    assert "the file is not a CSV: it looks like an Excel workbook" in text
    assert "1 access requests pending" in text
    assert reverse("builds:detail", args=[failed.code]) in response.content.decode()
    assert reverse("tenants:detail", args=["hooli"]) in response.content.decode()  # needs attention


def test_staff_dashboard_empty(reference_data, staff_user):
    response = client_for(staff_user).get(reverse("home"))

    text = text_of(response)
    assert "– success rate, last 7 days" in text and "– median build time" in text
    assert "No failed builds." in text and "No rejected uploads." in text
    assert "$0.00 metered spend this month" in text


def test_full_plan_is_flagged(reference_data, staff_user):
    tenant = create_tenant(plan="basic")
    for _ in range(4):
        create_build(tenant, status="running")

    response = client_for(staff_user).get(reverse("home"))

    basic = next(r for r in response.context["capacity"] if r["plan"].slug == "basic")
    assert (basic["running"], basic["full"]) == (4, True)
    assert '<progress value="4" max="4" class="full"' in response.content.decode()


def test_tenant_home_shows_builds_models_and_spend_against_budget(vendor):
    acme, globex, _ = vendor
    acme.monthly_budget, acme.budget_alert_percent = Decimal("0.30"), 80
    acme.save()
    create_build(acme, status="succeeded", version=True, metrics={"accuracy": 0.9912})

    response = client_for(create_member(acme)).get(reverse("home"))

    c = response.context
    text = text_of(response)
    assert response.status_code == 200 and page_title(response) == "Tenant acme · MLaaS Portal"
    assert (c["counts"]["succeeded"], c["active"], c["waiting"]) == (5, 2, 1)
    assert (c["spend"], c["budget"], round(c["budget_percent"]), c["over_alert"]) == (
        Decimal("0.25"), Decimal("0.30"), 83, True)
    assert "Spend this month ($0.25) has crossed 80% of your $0.30 budget." in text
    assert "$0.25 spend this month of $0.30 budget" in text
    assert "v1 Gradient boosting classifier Accuracy 0.991" in text
    assert len(c["recent_builds"]) == 8 and all(b.tenant_id == acme.id for b in c["recent_builds"])
    assert "globex" not in response.content.decode() and "report.xlsx" not in text
    assert 'hx-trigger="every 5s"' in response.content.decode()  # builds running: the list refreshes
    assert c["budget_capped"] is False and 'id="budget-capped"' not in response.content.decode()  # cap off


def test_tenant_home_says_builds_are_held_by_the_budget_cap(vendor):
    from tenants import budgets
    from tenants.services import tenant_spend_record

    acme = vendor[0]
    acme.monthly_budget, acme.budget_hard_cap = Decimal("0.30"), True
    acme.save()
    tenant_spend_record(tenant_id=acme.pk, month=budgets.billing_month(), spend=Decimal("0.31"))

    response = client_for(create_member(acme)).get(reverse("home"))

    assert response.context["budget_capped"] is True
    assert ("Your budget is a hard cap and this month's spend ($0.31) has reached it ($0.30): queued builds wait"
            in text_of(response))


def test_tenant_home_empty_states(reference_data):
    tenant = create_tenant()

    response = client_for(create_member(tenant)).get(reverse("home"))

    text = text_of(response)
    assert "No builds yet: upload a CSV to start one." in text
    assert "No models yet: upload a CSV and a successful build registers one." in text
    assert "Set a monthly budget" in text
    assert 'hx-trigger="every 5s"' not in response.content.decode()


def test_user_without_tenant_gets_a_clear_page(db):
    from django.contrib.auth.models import User

    response = client_for(User.objects.create_user("lost@example.com")).get(reverse("home"))

    assert response.status_code == 404
    assert "Your account is not a member of any tenant." in text_of(response)


def test_anonymous_home_goes_to_login(db, client):
    response = client.get(reverse("home"))

    assert (response.status_code, response.url) == (302, f"{reverse('login')}?next=/")


@pytest.mark.django_db(transaction=True)
def test_staff_dashboard_warns_of_a_plan_queue_no_worker_serves(reference_data, staff_user, clean_redis):
    from rq import Worker

    from tenants.models import Plan

    Plan.objects.create(slug="gold", name="Gold", tier_rank=99)
    fixed = Worker(["plan-premium", "plan-standard", "plan-basic"], connection=clean_redis)
    fixed.register_birth()
    try:
        response = client_for(staff_user).get(reverse("home"))
    finally:
        fixed.register_death()

    assert [(r["plan"].slug, r["workers"]) for r in response.context["capacity"]] == [
        ("gold", 0), ("premium", 1), ("standard", 1), ("basic", 1)]
    assert "No build worker serves queue plan-gold: builds of Gold will not start until one runs" in text_of(response)
    assert 'id="unserved-premium"' not in response.content.decode()
