"""Lifecycle: suspend (intake refuses uploads), resume, offboard (role gone, data kept or
deleted as chosen, recorded), plan change (queued builds follow, running ones do not)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.urls import reverse

from builds.intake import UploadEvent, intake_event
from builds.models import Algorithm, Build, RejectedUpload
from core.aws import gateways
from core.aws.errors import AwsAccessDenied
from tenants import naming, services
from tenants.credentials import tenant_assume
from tenants.models import Plan, Tenant
from tenants.tests.helpers import DENIED, config_from_credentials, s3_access

CSV = b"age,diagnosis\n41,1\n"


def _upload(tenant: Tenant, name: str) -> UploadEvent:
    key = f"{tenant.upload_prefix}{name}"
    version = gateways.platform_s3().put_object(tenant.bucket, key, CSV)["VersionId"]
    return UploadEvent(bucket=tenant.bucket, key=key, size=len(CSV), version=version)


def test_suspend_from_staff_page_records_event_and_intake_refuses_uploads(make_tenant, staff_user, logged_in):
    tenant = make_tenant(isolation="pool")

    response = logged_in(staff_user).post(reverse("tenants:action", args=[tenant.slug, "suspend"]),
                                          {"reason": "unpaid invoice"})
    event = _upload(tenant, "while-suspended.csv")
    build = intake_event(event)

    tenant.refresh_from_db()
    assert (response.status_code, response.url) == (302, reverse("tenants:detail", args=[tenant.slug]))
    assert tenant.status == "suspended"
    assert list(tenant.events.filter(action="suspended").values_list("actor", "detail")) == [
        (staff_user.pk, "unpaid invoice")]
    assert build is None
    assert list(Build.objects.filter(tenant=tenant)) == []
    assert list(RejectedUpload.objects.filter(tenant=tenant).values_list("key", "reason")) == [
        (event.key, f"tenant `{tenant.slug}` is suspended: uploads do not start builds")]


def test_resume_lets_new_uploads_start_builds(make_tenant):
    tenant = make_tenant(isolation="silo")
    services.tenant_suspend(tenant=tenant, reason="check")

    services.tenant_resume(tenant=tenant)
    build = intake_event(_upload(tenant, "after-resume.csv"))

    assert (build.tenant, build.status, build.plan.slug) == (tenant, "queued", "standard")
    assert list(tenant.events.values_list("action", flat=True)) == ["resumed", "suspended", "onboarded"]


def test_suspend_of_suspended_tenant_is_refused(make_tenant):
    tenant = make_tenant(isolation="pool")
    services.tenant_suspend(tenant=tenant)

    with pytest.raises(ValidationError) as refused:
        services.tenant_suspend(tenant=tenant)

    assert refused.value.messages == ["Only active tenants can be suspended (tenant is suspended)."]


def test_offboard_with_wrong_slug_is_refused_and_changes_nothing(make_tenant, staff_user, logged_in):
    tenant = make_tenant(isolation="silo")

    response = logged_in(staff_user).post(reverse("tenants:offboard", args=[tenant.slug]),
                                          {"delete_data": "1", "confirm_slug": tenant.slug.upper()})

    tenant.refresh_from_db()
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "confirm_slug": ["Type the tenant's slug exactly to confirm offboarding."]}
    assert (tenant.status, gateways.platform_iam().role_exists(naming.role_name(tenant.slug))) == ("active", True)
    assert gateways.platform_s3().bucket_exists(tenant.bucket)
    assert not tenant.events.filter(action="offboarded").exists()


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_offboard_retaining_data_removes_role_and_keeps_objects(make_tenant, make_member, staff_user, logged_in,
                                                                isolation):
    tenant = make_tenant(isolation=isolation)
    member = make_member(tenant)
    event = _upload(tenant, "kept.csv")
    earlier_session = config_from_credentials(tenant_assume(tenant, purpose="before-offboarding"))

    response = logged_in(staff_user).post(reverse("tenants:offboard", args=[tenant.slug]),
                                          {"delete_data": "0", "confirm_slug": tenant.slug})

    tenant.refresh_from_db()
    assert (response.status_code, tenant.status, tenant.offboard_data_choice) == (302, "offboarded", "retained")
    assert gateways.platform_iam().role_exists(naming.role_name(tenant.slug)) is False
    with pytest.raises(AwsAccessDenied):
        tenant_assume(tenant, purpose="after-offboarding")
    # Credentials issued before offboarding die with the role.
    assert s3_access(earlier_session, bucket=tenant.bucket, key=event.key, prefix=tenant.upload_prefix) == {
        "put": DENIED, "get": DENIED, "list": DENIED, "list_bucket": DENIED}
    assert gateways.platform_s3().get_bytes(tenant.bucket, event.key) == CSV
    assert list(tenant.events.filter(action="offboarded").values_list("actor", "detail")) == [
        (staff_user.pk, "data retained")]
    assert User.objects.get(pk=member.pk).is_active is False


def test_offboard_deleting_silo_data_removes_the_bucket(make_tenant):
    tenant = make_tenant(isolation="silo")
    _upload(tenant, "gone.csv")
    _upload(tenant, "gone.csv")  # a second version: every version goes

    services.tenant_offboard(tenant=tenant, delete_data=True, confirm_slug=tenant.slug)

    tenant.refresh_from_db()
    assert (tenant.status, tenant.offboard_data_choice) == ("offboarded", "deleted")
    assert gateways.platform_s3().bucket_exists(tenant.bucket) is False
    # two upload versions and the provisioning probe
    assert list(tenant.events.filter(action="offboarded").values_list("detail", flat=True)) == [
        "data deleted (3 object versions)"]


def test_offboard_deleting_pool_data_empties_only_its_prefix(make_tenant):
    tenant = make_tenant(isolation="pool")
    neighbour = make_tenant(isolation="pool", slug=f"{tenant.slug}-n")
    _upload(tenant, "gone.csv")
    kept = _upload(neighbour, "kept.csv")

    services.tenant_offboard(tenant=tenant, delete_data=True, confirm_slug=tenant.slug)

    s3 = gateways.platform_s3()
    assert s3.list_keys(tenant.bucket, tenant.prefix) == []
    assert [o["Key"] for o in s3.list_keys(neighbour.bucket, neighbour.upload_prefix)] == [kept.key]
    assert list(tenant.events.filter(action="offboarded").values_list("detail", flat=True)) == [
        "data deleted (2 object versions)"]


def test_offboard_of_offboarded_tenant_is_refused(make_tenant):
    tenant = make_tenant(isolation="pool")
    services.tenant_offboard(tenant=tenant, delete_data=False, confirm_slug=tenant.slug)

    with pytest.raises(ValidationError) as refused:
        services.tenant_offboard(tenant=tenant, delete_data=False, confirm_slug=tenant.slug)

    assert refused.value.messages == ["Tenant is already offboarded."]


def test_plan_change_leaves_builds_to_the_dispatcher(tenant_row, staff_user, logged_in):
    """Started builds keep the plan they started under; queued ones start under the new plan
    (builds/tests/test_dispatch.py::test_plan_change_applies_to_queued_builds_when_they_start)."""
    tenant = tenant_row(plan="standard", role_arn="")  # a row only: no AWS resources to re-tag
    algorithm = Algorithm.objects.get(slug="gbm-classifier")
    standard = Plan.objects.get(slug="standard")
    builds = {status: Build.objects.create(tenant=tenant, plan=standard, algorithm=algorithm, target="y",
                                           dataset_bucket=tenant.bucket, dataset_key=f"uploads/{status}.csv",
                                           status=status)
              for status in ("received", "queued", "starting", "running", "succeeded")}

    response = logged_in(staff_user).post(reverse("tenants:action", args=[tenant.slug, "plan"]), {"plan": "premium"})

    tenant.refresh_from_db()
    assert (response.status_code, tenant.plan.slug) == (302, "premium")
    assert {status: Build.objects.get(pk=b.pk).plan.slug for status, b in builds.items()} == {
        "received": "standard", "queued": "standard", "starting": "standard", "running": "standard",
        "succeeded": "standard"}
    assert list(tenant.events.values_list("action", "detail", "actor")) == [
        ("plan_changed", "standard -> premium", staff_user.pk)]


def test_suspended_tenant_gets_no_credentials(make_tenant, make_member, api_client_for):
    from django.core.management import CommandError, call_command

    tenant = make_tenant(isolation="pool")
    services.tenant_suspend(tenant=tenant)

    response = api_client_for(make_member(tenant)).post(f"/api/v1/tenants/{tenant.slug}/credentials")
    with pytest.raises(CommandError) as refused:
        call_command("tenant_credentials", tenant.slug)

    assert (response.status_code, response.json()) == (400, {
        "code": "invalid", "message": "Tenant is suspended; credentials are issued for active tenants only.",
        "fields": None})
    assert str(refused.value) == f"tenant `{tenant.slug}` is suspended; credentials are for active tenants"


def test_plan_change_retags_the_tenants_resources(make_tenant):
    from core.aws import gateways
    from tenants import naming
    from tenants.models import Plan
    from tenants.services import tenant_change_plan

    tenant = make_tenant(isolation="silo", plan="basic")
    tenant_change_plan(tenant=tenant, plan=Plan.objects.get(slug="premium"))
    role_tags = gateways.platform_iam().client.list_role_tags(RoleName=naming.role_name(tenant.slug))["Tags"]
    bucket_tags = gateways.platform_s3().bucket_settings(tenant.bucket)["tags"]
    group_arn = tenant.provisioning_steps.get(name="model_package_group").resource_arn
    group_tags = gateways.platform_sagemaker().client.list_tags(ResourceArn=group_arn)["Tags"]
    assert {t["Key"]: t["Value"] for t in role_tags}["mlaas:plan"] == "premium"
    assert bucket_tags["mlaas:plan"] == "premium"
    assert {t["Key"]: t["Value"] for t in group_tags}["mlaas:plan"] == "premium"
