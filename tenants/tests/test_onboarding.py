"""Onboarding through the service, the staff form, the API and `manage.py onboard_tenant`
(with `--wait` against a real RQ worker)."""

from __future__ import annotations

import io
import threading
import time

import django_rq
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse

from tenants import jobs, services
from tenants.models import Membership, Tenant
from tenants.tests.helpers import closed_port_endpoint

STEP_NAMES = ["bucket", "model_package_group", "role", "role_policy", "job_policy", "verify_access"]


def _tenant_summary(slug: str) -> dict:
    tenant = Tenant.objects.select_related("plan").get(slug=slug)
    return {
        "name": tenant.name, "plan": tenant.plan.slug, "isolation": tenant.isolation, "status": tenant.status,
        "owner_email": tenant.owner_email,
        "owners": list(tenant.memberships.values_list("user__username", "role")),
        "steps": list(tenant.provisioning_steps.order_by("order").values_list("name", "status")),
        "events": list(tenant.events.values_list("action", "detail")),
    }


def test_onboard_service_records_tenant_and_enqueues_provisioning_after_commit(
        reference_data, staff_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as enqueued:
        tenant = services.tenant_onboard(slug="acme-labs", plan="premium", isolation="silo",
                                         owner_email="Owner@Acme.Example", actor=staff_user)

    assert len(enqueued) == 1
    assert _tenant_summary(tenant.slug) == {
        "name": "Acme Labs", "plan": "premium", "isolation": "silo", "status": "provisioning",
        "owner_email": "Owner@Acme.Example", "owners": [("owner@acme.example", "owner")],
        "steps": [(name, "pending") for name in STEP_NAMES],
        "events": [("onboarded", "plan=premium isolation=silo"), ("member_invited", "owner@acme.example as owner")],
    }


def test_onboard_service_rejects_bad_input_with_field_messages(reference_data):
    services.tenant_onboard(slug="taken", plan="basic", isolation="pool")

    with pytest.raises(ValidationError) as bad:
        services.tenant_onboard(slug="Bad_Slug", plan="gold", isolation="cloud")
    with pytest.raises(ValidationError) as duplicate:
        services.tenant_onboard(slug="taken", plan="basic", isolation="pool")

    assert bad.value.message_dict == {
        "slug": ["Use 3-30 characters: lowercase letters, digits and hyphens, starting with a letter and not ending "
                 "with a hyphen."],
        "plan": ["Unknown plan `gold`; plans are: premium, standard, basic."],
        "isolation": ["Isolation must be `silo` or `pool`."],
    }
    assert duplicate.value.message_dict == {"slug": ["A tenant with slug `taken` already exists."]}


def test_onboard_form_creates_tenant_that_provisioning_makes_active(
        emulator, reference_data, staff_user, logged_in, django_capture_on_commit_callbacks):
    slug = "form-tenant"
    with django_capture_on_commit_callbacks() as enqueued:
        response = logged_in(staff_user).post(reverse("tenants:onboard"), {
            "slug": slug, "name": "Form Tenant", "plan": "standard", "isolation": "pool",
            "owner_email": "boss@form.example"})
    provisioned = jobs.provision_tenant(Tenant.objects.get(slug=slug).id)  # what the enqueued job runs

    assert (response.status_code, response.url, len(enqueued)) == (302, reverse("tenants:detail", args=[slug]), 1)
    assert (provisioned, _tenant_summary(slug)["status"], _tenant_summary(slug)["owners"]) == (
        True, "active", [("boss@form.example", "owner")])
    assert list(Tenant.objects.get(slug=slug).events.values_list("action", "actor")) == [
        ("onboarded", staff_user.pk), ("member_invited", None)]


def test_onboard_form_with_duplicate_slug_shows_the_error(reference_data, staff_user, logged_in):
    services.tenant_onboard(slug="dupe", plan="basic", isolation="pool")

    response = logged_in(staff_user).post(reverse("tenants:onboard"), {
        "slug": "dupe", "plan": "standard", "isolation": "silo"})

    assert response.status_code == 200
    assert response.context["form"].errors == {"slug": ["A tenant with slug `dupe` already exists."]}
    assert Tenant.objects.get(slug="dupe").plan.slug == "basic"


def test_api_onboard_by_staff_returns_the_tenant(reference_data, staff_user, api_client_for):
    response = api_client_for(staff_user).post("/api/v1/tenants", data={
        "slug": "api-made", "name": "API Made", "plan": "basic", "isolation": "silo",
        "owner_email": "o@api.example"}, content_type="application/json")

    body = response.json()
    assert response.status_code == 201
    assert {k: v for k, v in body.items() if k != "created_at"} == {
        "slug": "api-made", "name": "API Made", "plan": "basic", "isolation": "silo", "status": "provisioning",
        "default_algorithm": "gbm-classifier", "default_target": "",
        "resources": {"bucket": "", "prefix": "", "upload_uri": "", "role_arn": "", "model_package_group": ""}}
    assert _tenant_summary("api-made")["owners"] == [("o@api.example", "owner")]


def test_api_onboard_by_tenant_member_is_forbidden(tenant_row, make_member, api_client_for):
    member = make_member(tenant_row(), role="owner")

    response = api_client_for(member).post("/api/v1/tenants", data={
        "slug": "sneaky", "plan": "basic", "isolation": "pool"}, content_type="application/json")

    assert (response.status_code, response.json()) == (
        403, {"code": "forbidden", "message": "Only vendor staff can onboard tenants.", "fields": None})
    assert not Tenant.objects.filter(slug="sneaky").exists()


def test_api_onboard_with_unknown_plan_is_invalid(reference_data, staff_user, api_client_for):
    response = api_client_for(staff_user).post("/api/v1/tenants", data={
        "slug": "no-plan", "plan": "gold", "isolation": "pool"}, content_type="application/json")

    assert (response.status_code, response.json()) == (400, {
        "code": "invalid", "message": "Unknown plan `gold`; plans are: premium, standard, basic.",
        "fields": {"plan": ["Unknown plan `gold`; plans are: premium, standard, basic."]}})


def test_onboard_command_records_pool_tenant_with_owner(reference_data, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with django_capture_on_commit_callbacks() as enqueued:
        call_command("onboard_tenant", "cli-tenant", "--plan", "standard", "--isolation", "pool",
                     "--owner-email", "x@y.z", stdout=out)

    assert (out.getvalue(), len(enqueued)) == ("tenant cli-tenant created; provisioning queued\n", 1)
    summary = _tenant_summary("cli-tenant")
    assert (summary["plan"], summary["isolation"], summary["status"], summary["owners"]) == (
        "standard", "pool", "provisioning", [("x@y.z", Membership.Role.OWNER)])


def test_onboard_command_with_bad_plan_gives_a_clear_message(reference_data):
    with pytest.raises(CommandError) as failed:
        call_command("onboard_tenant", "cli-bad", "--plan", "gold", "--isolation", "pool")

    assert str(failed.value) == "plan: Unknown plan `gold`; plans are: premium, standard, basic."
    assert not Tenant.objects.filter(slug="cli-bad").exists()


def test_onboard_command_with_duplicate_slug_gives_a_clear_message(reference_data):
    services.tenant_onboard(slug="cli-dupe", plan="basic", isolation="silo")

    with pytest.raises(CommandError) as failed:
        call_command("onboard_tenant", "cli-dupe", "--plan", "standard", "--isolation", "pool")

    assert str(failed.value) == "slug: A tenant with slug `cli-dupe` already exists."


# --- --wait against a real RQ worker ------------------------------------------------------------------------


def _onboard_waiting_for_worker(slug: str, *, worker_endpoint: str | None = None):
    """Run `onboard_tenant --wait` in a thread while a real RQ worker (burst mode) provisions.

    The command commits the tenant, its job is enqueued on commit, and the command then polls
    the database; the worker (main thread, as RQ requires for its signal handlers) forks a work
    horse that runs the job against the test database file. `worker_endpoint` points the
    worker's AWS endpoint elsewhere (a closed port makes provisioning fail for real).
    """
    from django.conf import settings

    from core.aws.clients import reset_client_cache

    out, result = io.StringIO(), {}

    def command():
        try:
            call_command("onboard_tenant", slug, "--plan", "standard", "--isolation", "pool", "--wait",
                         "--timeout", "60", stdout=out)
            result["error"] = None
        except CommandError as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=command)
    thread.start()
    queue = django_rq.get_queue("provisioning")
    deadline = time.monotonic() + 10
    while queue.count == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    enqueued = queue.count
    saved = settings.AWS_ENDPOINT_URL
    if worker_endpoint:
        settings.AWS_ENDPOINT_URL = worker_endpoint
    reset_client_cache()
    connections.close_all()  # the work horse opens its own connection to the test database
    try:
        worked = django_rq.get_worker("provisioning").work(burst=True)
    finally:
        settings.AWS_ENDPOINT_URL = saved
        reset_client_cache()
    thread.join(timeout=60)
    return enqueued, worked, thread.is_alive(), result.get("error"), out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_onboard_command_wait_returns_when_worker_has_provisioned(emulator, reference_data, clean_redis):
    enqueued, worked, still_waiting, error, output = _onboard_waiting_for_worker("wait-ok")

    tenant = Tenant.objects.get(slug="wait-ok")
    assert (enqueued, worked, still_waiting, error, tenant.status) == (1, True, False, None, "active")
    assert output.splitlines() == [
        "tenant wait-ok created; provisioning queued",
        *[f"  {step.name}: succeeded {step.resource_arn}" for step in tenant.provisioning_steps.order_by("order")],
        f"tenant wait-ok is active: {tenant.upload_uri}",
    ]


@pytest.mark.django_db(transaction=True)
def test_onboard_command_wait_fails_when_provisioning_fails(emulator, reference_data, clean_redis):
    enqueued, worked, still_waiting, error, output = _onboard_waiting_for_worker(
        "wait-fails", worker_endpoint=closed_port_endpoint())

    tenant = Tenant.objects.get(slug="wait-fails")
    failed_step = tenant.provisioning_steps.get(name="bucket")
    assert (enqueued, worked, still_waiting, tenant.status) == (1, True, False, "failed")
    assert isinstance(error, CommandError)
    assert str(error) == "provisioning of wait-fails failed; see the tenant page and retry"
    assert output.splitlines() == ["tenant wait-fails created; provisioning queued",
                                   f"  bucket: failed {failed_step.error}"]
    assert failed_step.error.startswith("AWS endpoint unreachable")


def test_onboard_refuses_a_slug_that_names_a_staff_page(reference_data):
    from tenants import naming, urls

    with pytest.raises(ValidationError) as reserved:
        services.tenant_onboard(slug="scheduling", plan="basic", isolation="pool")

    assert reserved.value.message_dict == {"slug": ["`scheduling` is the name of a portal page; choose another slug."]}
    fixed_words = {str(pattern.pattern).split("/")[0] for pattern in urls.urlpatterns
                   if not str(pattern.pattern).startswith("<")}
    assert fixed_words == naming.RESERVED_SLUGS
