"""Plans: staff edit a plan in the UI; the change applies to builds not yet started."""

from __future__ import annotations

import json

from django.urls import reverse

from builds.dispatch import load_running
from builds.launch import launch_for
from builds.models import Algorithm, Build, BuildStep
from tenants.forms import PlanForm
from tenants.models import Plan


def _plan_form_data(plan: Plan, **changes) -> dict:
    data = {name: getattr(plan, name) for name in PlanForm.Meta.fields}
    data["tuning_included"] = "on" if data["tuning_included"] else ""
    data["size_bands"] = json.dumps(data["size_bands"])
    data.update(changes)
    return data


def test_staff_plan_edit_applies_to_builds_not_yet_started(tenant_row, staff_user, logged_in):
    tenant = tenant_row(plan="standard")
    standard = Plan.objects.get(slug="standard")
    algorithm = Algorithm.objects.get(slug="gbm-classifier")
    queued, running = (Build.objects.create(tenant=tenant, plan=standard, algorithm=algorithm, target="y",
                                            dataset_bucket=tenant.bucket, dataset_key=f"uploads/{s}.csv", status=s)
                       for s in ("queued", "running"))
    # A started build recorded the instances it was started with.
    BuildStep.objects.create(build=running, name="train", order=1, status="running",
                             instance_type=launch_for(running).training_instance_type)

    response = logged_in(staff_user).post(reverse("tenants:plan_edit", args=["standard"]), _plan_form_data(
        standard, training_instance_type="ml.c5.4xlarge", tenant_concurrent_limit=3, plan_concurrent_limit=9))

    plans = load_running().plans
    launch = launch_for(Build.objects.get(pk=queued.pk))
    assert (response.status_code, response.url) == (302, reverse("tenants:plans"))
    assert (launch.training_instance_type, launch.plan_slug) == ("ml.c5.4xlarge", "standard")
    assert (plans[standard.pk].plan_limit, plans[standard.pk].tenant_limit) == (9, 3)
    assert list(running.steps.values_list("instance_type", flat=True)) == ["ml.m5.xlarge"]


def test_staff_plan_edit_with_invalid_values_shows_errors(reference_data, staff_user, logged_in):
    standard = Plan.objects.get(slug="standard")

    response = logged_in(staff_user).post(reverse("tenants:plan_edit", args=["standard"]),
                                          _plan_form_data(standard, plan_concurrent_limit=-1, name=""))

    assert response.status_code == 200
    assert sorted(response.context["form"].errors) == ["name", "plan_concurrent_limit"]
    assert Plan.objects.get(slug="standard").plan_concurrent_limit == 8


def test_plan_pages_list_and_edit_for_staff(reference_data, staff_user, logged_in):
    client = logged_in(staff_user)

    listing = client.get(reverse("tenants:plans"))
    edit = client.get(reverse("tenants:plan_edit", args=["premium"]))
    missing = client.get(reverse("tenants:plan_edit", args=["gold"]))

    assert [p.slug for p in listing.context["plans"]] == ["premium", "standard", "basic"]
    assert (edit.status_code, edit.context["form"].instance.slug, missing.status_code) == (200, "premium", 404)
