"""Staff edit the scheduling knobs in the portal: a plan's borrowing limit and API requests a minute, the
scheduling policy (half-life, reserved share), a tenant's fair-share weight; validated, staff only."""

from __future__ import annotations

import math

import pytest
from django.urls import reverse

from tenants import fairshare
from tenants.models import Membership, Plan, SchedulingPolicy, Tenant
from tenants.services import scheduling_policy, tenant_usage_charge
from tenants.tests.test_plans import _plan_form_data


@pytest.fixture
def member_of(django_user_model):
    def make(tenant, role=Membership.Role.OWNER):
        user = django_user_model.objects.create_user(username=f"u-{tenant.slug}-{role}", password="x")
        Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    return make


def test_plan_page_edits_borrowing_limit_and_api_rate(tenant_row, staff_user, logged_in, settings):
    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = 20
    standard = Plan.objects.get(slug="standard")
    client = logged_in(staff_user)
    html = client.get(reverse("tenants:plan_edit", args=["standard"])).content.decode()
    assert 'name="borrowing_limit"' in html and 'name="api_requests_per_minute"' in html

    response = client.post(reverse("tenants:plan_edit", args=["standard"]),
                           _plan_form_data(standard, borrowing_limit=5, api_requests_per_minute=240))

    assert response.status_code == 302
    standard.refresh_from_db()
    assert (standard.borrowing_limit, standard.api_requests_per_minute) == (5, 240)


def test_plan_page_refuses_borrowing_over_the_account_limit_and_zero_api_rate(staff_user, logged_in, settings,
                                                                              reference_data):
    settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT = 20
    standard = Plan.objects.get(slug="standard")
    before = (standard.borrowing_limit, standard.api_requests_per_minute)
    response = logged_in(staff_user).post(reverse("tenants:plan_edit", args=["standard"]),
                                          _plan_form_data(standard, borrowing_limit=21, api_requests_per_minute=0))
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "borrowing_limit": ["The borrowing limit must be between 0 and the account's concurrent limit (20)."],
        "api_requests_per_minute": ["Allow at least 1 API request a minute (0 would lock the plan's tenants out of "
                                    "the API)."]}
    standard.refresh_from_db()
    assert (standard.borrowing_limit, standard.api_requests_per_minute) == before


def test_scheduling_policy_page_edits_half_life_and_reserved_share(tenant_row, staff_user, logged_in):
    from django.utils import timezone

    tenant = tenant_row()
    tenant_usage_charge(tenant_id=tenant.pk, seconds=3600)
    now = timezone.now()
    before = fairshare.decayed_seconds(Tenant.objects.get(pk=tenant.pk).usage_log2, at=now, half_life_hours=24)
    client = logged_in(staff_user)
    assert 'name="usage_half_life_hours"' in client.get(reverse("tenants:scheduling")).content.decode()

    response = client.post(reverse("tenants:scheduling"),
                           {"usage_half_life_hours": "6", "new_tenant_reserved_share": "0.1"})

    assert (response.status_code, response.url) == (302, reverse("tenants:scheduling"))
    policy = scheduling_policy()
    assert (policy.usage_half_life_hours, policy.new_tenant_reserved_share) == (6.0, 0.1)
    after = fairshare.decayed_seconds(Tenant.objects.get(pk=tenant.pk).usage_log2, at=now, half_life_hours=6)
    assert math.isclose(after, before, rel_tol=1e-3)  # rescaled, not reset


@pytest.mark.parametrize(("data", "errors"), [
    ({"usage_half_life_hours": "0", "new_tenant_reserved_share": "0.05"},
     {"usage_half_life_hours": ["The half-life must be more than 0: at least 0.1 hours."]}),
    ({"usage_half_life_hours": "24", "new_tenant_reserved_share": "0.9"},
     {"new_tenant_reserved_share": ["Reserve at most half of the account (0.5)."]}),
    ({"usage_half_life_hours": "nan", "new_tenant_reserved_share": "-1"},
     {"usage_half_life_hours": ["Enter a number."], "new_tenant_reserved_share": ["The reserved share cannot be "
                                                                                  "negative."]}),
])
def test_scheduling_policy_page_refuses_bad_values(staff_user, logged_in, reference_data, data, errors):
    policy = scheduling_policy()
    response = logged_in(staff_user).post(reverse("tenants:scheduling"), data)
    assert response.status_code == 200
    assert response.context["form"].errors == errors
    assert SchedulingPolicy.objects.get(pk=policy.pk).usage_half_life_hours == policy.usage_half_life_hours


def test_tenant_page_sets_fair_share_weight(tenant_row, staff_user, logged_in):
    tenant = tenant_row()
    tenant_usage_charge(tenant_id=tenant.pk, seconds=600)
    client = logged_in(staff_user)
    assert 'id="fair-share"' in client.get(reverse("tenants:detail", args=[tenant.slug])).content.decode()

    response = client.post(reverse("tenants:fair_share", args=[tenant.slug]), {"fair_share_weight": "4"})

    assert (response.status_code, response.url) == (302, reverse("tenants:detail", args=[tenant.slug]))
    tenant.refresh_from_db()
    assert tenant.fair_share_weight == 4.0
    assert tenant.fair_share_key == pytest.approx(tenant.usage_log2 - 2.0)  # the ordering key follows the weight
    assert list(tenant.events.values_list("action", "detail")) == [("fair_share_weight", "4")]


@pytest.mark.parametrize("weight", ["0", "-1", "1001", "x"])
def test_tenant_page_refuses_bad_weight(tenant_row, staff_user, logged_in, weight):
    tenant = tenant_row()
    response = logged_in(staff_user).post(reverse("tenants:fair_share", args=[tenant.slug]),
                                          {"fair_share_weight": weight})
    assert response.status_code == 400
    assert response.context["weight_form"].errors["fair_share_weight"] == [{
        "0": "The weight must be more than 0: at least 0.01.", "-1": "The weight must be more than 0: at least 0.01.",
        "1001": "The weight must be at most 1000.", "x": "Enter a number."}[weight]]
    assert Tenant.objects.get(pk=tenant.pk).fair_share_weight == 1.0


def test_scheduling_knobs_are_staff_only(tenant_row, member_of, logged_in):
    tenant = tenant_row()
    owner = logged_in(member_of(tenant))
    assert owner.get(reverse("tenants:scheduling")).status_code == 404
    assert owner.post(reverse("tenants:scheduling"), {"usage_half_life_hours": "1",
                                                      "new_tenant_reserved_share": "0"}).status_code == 404
    assert owner.post(reverse("tenants:fair_share", args=[tenant.slug]), {"fair_share_weight": "50"}).status_code == 404
    assert 'id="fair-share"' not in owner.get(reverse("tenants:detail", args=[tenant.slug])).content.decode()
    assert Tenant.objects.get(pk=tenant.pk).fair_share_weight == 1.0
    assert scheduling_policy().usage_half_life_hours == 24.0


def test_admin_weight_change_keeps_the_ordering_key(tenant_row, staff_user):
    from types import SimpleNamespace

    from django.contrib import admin

    tenant = tenant_row()
    tenant_usage_charge(tenant_id=tenant.pk, seconds=600)
    tenant.refresh_from_db()
    tenant.fair_share_weight = 2.0
    admin.site._registry[Tenant].save_model(SimpleNamespace(user=staff_user), tenant,
                                            SimpleNamespace(changed_data=["fair_share_weight"]), True)
    tenant.refresh_from_db()
    assert (tenant.fair_share_weight, tenant.fair_share_key) == (2.0, pytest.approx(tenant.usage_log2 - 1.0))
