"""The catalog (plans, algorithms: public) and a tenant's monthly statement in the REST API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.web_support import create_build, create_member, create_tenant

NOT_FOUND = {"code": "not_found", "message": "Not found.", "fields": None}


def test_plans_are_public_with_limits_size_bands_and_prices(reference_data, client):
    response = client.get("/api/v1/plans")

    body = response.json()
    assert (response.status_code, body["count"], [p["slug"] for p in body["items"]]) == (
        200, 3, ["premium", "standard", "basic"])
    basic = body["items"][2]
    assert basic == {
        "slug": "basic", "name": "Basic", "tier_rank": 1,
        "limits": {"plan_concurrent_limit": 4, "tenant_concurrent_limit": 1, "upload_size_limit_bytes": 50 * 1024**2,
                   "tuning_included": False, "max_tuning_jobs": 0},
        "prices": {"monthly_fee": "99.00", "included_build_hours": "10.00", "overage_price_per_hour": "4.00"},
        "size_bands": [
            {"max_bytes": 1024**2, "processing_instance_type": "ml.t3.medium", "processing_instance_count": 1,
             "training_instance_type": "ml.m5.large", "training_instance_count": 1, "estimated_cost": "0.0074"},
            {"max_bytes": None, "processing_instance_type": "ml.m5.large", "processing_instance_count": 1,
             "training_instance_type": "ml.m5.xlarge", "training_instance_count": 1, "estimated_cost": "0.0153"}]}
    assert [b["max_bytes"] for b in body["items"][1]["size_bands"]] == [1024**2, 2 * 1024**3, None]


def test_plan_estimates_follow_recent_step_durations(reference_data, client):
    tenant = create_tenant(plan="basic")
    build = create_build(tenant)  # steps preprocess/train/evaluate of 9 s each on ml.m5.large
    assert build.steps.filter(instance_type="ml.m5.large", billable_seconds=9).count() == 3

    bands = client.get("/api/v1/plans").json()["items"][2]["size_bands"]

    # Band 2: 9 s preprocess + 9 s evaluate on ml.m5.large (recent), 180 s train on ml.m5.xlarge (typical).
    expected = (Decimal(18) * Decimal("0.115") + Decimal(180) * Decimal("0.23")) / 3600
    assert bands[1]["estimated_cost"] == str(expected.quantize(Decimal("0.0001")))


def test_algorithms_are_public(reference_data, client):
    response = client.get("/api/v1/algorithms")

    body = response.json()
    assert (response.status_code, body["count"]) == (200, 6)
    assert body["items"][0] == {
        "slug": "gbm-classifier", "name": "Gradient boosting classifier",
        "description": "Histogram gradient boosting: strong on tabular data, handles missing values.",
        "problem_type": "classification", "objective_metric": "f1", "min_metric": 0.5, "typical_metrics": {}}


@pytest.fixture
def acme(reference_data):
    acme = create_tenant(slug="acme", plan="basic")
    globex = create_tenant(slug="globex", plan="premium")
    return acme, create_member(acme, role="owner"), create_member(globex, role="owner")


def test_statement_for_a_month_and_stranger_404(acme, staff_user, api_client_for):
    from billing.rollups import rollups_refresh
    from billing.services import utc_today

    tenant, owner, stranger = acme
    build = create_build(tenant, created_at=None)
    month = utc_today().replace(day=1)
    # 11 build hours this month: one over the 10 included, at $4.00.
    build.steps.filter(name="train").update(billable_seconds=11 * 3600 - 18,
                                            ended_at=_midday(month))
    build.steps.exclude(name="train").update(ended_at=_midday(month))
    rollups_refresh(start=month, end=utc_today())  # what metering does as it records the steps' hours
    query = {"month": f"{month:%Y-%m}"}

    own = api_client_for(owner).get("/api/v1/tenants/acme/statements", query)
    staff = api_client_for(staff_user).get("/api/v1/tenants/acme/statements", query)
    other = api_client_for(stranger).get("/api/v1/tenants/acme/statements", query)

    assert own.status_code == 200
    assert own.json() == {
        "tenant": "acme", "month": f"{month:%Y-%m}", "plan": "basic", "monthly_fee": "99.00",
        "included_hours": "10.00", "used_hours": "11.0000", "overage_hours": "1.0000", "overage_rate": "4.00",
        "overage_amount": "4.00", "endpoint_hours": "0.0000", "endpoint_amount": "0.00", "total": "103.00",
        "metered_cost": "0.00", "cost_explorer_cost": None, "aws_cost": None, "margin": None}
    assert (staff.json()["aws_cost"], staff.json()["margin"]) == ("0.00", "103.00")
    assert (other.status_code, other.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize("month", ["2026-13", "march", "2026-3", "1999-12"])
def test_statement_bad_month_is_400_json(acme, api_client_for, month):
    tenant, owner, _ = acme

    response = api_client_for(owner).get("/api/v1/tenants/acme/statements", {"month": month})

    assert response.status_code == 400
    assert response.json() == {"code": "invalid", "message": f"`{month}` is not a month: use YYYY-MM, for example "
                                                             "2026-03.",
                               "fields": {"month": [f"`{month}` is not a month: use YYYY-MM, for example 2026-03."]}}


def _midday(month):
    from datetime import UTC, datetime

    return datetime(month.year, month.month, 1, 12, tzinfo=UTC) + timedelta(hours=1)
