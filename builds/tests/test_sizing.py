"""A build's instances come from its plan's size band for the uploaded object's size, chosen at creation."""

from __future__ import annotations

from builds.engines.sagemaker import pipeline_parameters
from builds.intake import intake_event
from builds.launch import launch_for
from builds.models import Build
from builds.tests.test_intake import put
from mlaas_steps.runner import GIB, instance_limits

MIB = 1024**2


def test_small_and_large_uploads_run_on_their_bands_instances(make_tenant):
    tenant = make_tenant(isolation="silo", plan="standard")
    header = b"a,b,diagnosis\n"
    small = intake_event(put(tenant, "uploads/small.csv", header + b"1,2,yes\n"))
    large_body = header + b"1,2,yes\n" * (MIB // 8 + 1)  # just over the standard plan's 1 MiB boundary
    large = intake_event(put(tenant, "uploads/large.csv", large_body))

    small, large = Build.objects.get(pk=small.pk), Build.objects.get(pk=large.pk)
    assert (small.processing_instance_type, small.training_instance_type, small.size_band["number"]) == (
        "ml.m5.large", "ml.m5.large", 1)
    assert (large.processing_instance_type, large.training_instance_type, large.size_band["number"]) == (
        "ml.m5.xlarge", "ml.m5.xlarge", 2)
    assert large.dataset_size == len(large_body)
    assert large.sizing_reason == "1.0 MiB of data: band 2 of the Standard plan (at most 2 GiB)"
    # The launch carries the recorded choice to the pipeline's instance parameters (both engines pass the same);
    # the local runtime limits each job by the instance type the definition resolves from them.
    small_params, large_params = pipeline_parameters(launch_for(small)), pipeline_parameters(launch_for(large))
    assert [instance_limits(params["ProcessingInstanceType"]) for params in (small_params, large_params)] == [
        (2, 8 * GIB), (4, 16 * GIB)]
    assert (large_params["TrainingInstanceType"], large_params["TrainingInstanceCount"]) == ("ml.m5.xlarge", "1")


def test_the_band_is_fixed_when_the_build_is_created(make_tenant):
    from tenants.models import Plan

    tenant = make_tenant(isolation="pool", plan="standard")
    build = intake_event(put(tenant, f"{tenant.upload_prefix}d.csv"))
    Plan.objects.filter(slug="standard").update(size_bands=[{
        "max_bytes": None, "processing_instance_type": "ml.c5.xlarge", "processing_instance_count": 1,
        "training_instance_type": "ml.c5.2xlarge", "training_instance_count": 2}])

    launch = launch_for(Build.objects.get(pk=build.pk))

    assert (launch.processing_instance_type, launch.training_instance_type) == ("ml.m5.large", "ml.m5.large")


def test_upload_page_shows_the_plans_bands_with_estimates_and_build_page_the_choice(make_tenant, make_member):
    from django.test import Client
    from django.urls import reverse

    from tests.web_support import text_of

    tenant = make_tenant(isolation="silo", plan="basic")
    stranger = make_member(make_tenant(isolation="pool", plan="basic"))
    client = Client()
    client.force_login(make_member(tenant))
    build = intake_event(put(tenant, "uploads/x.csv"))

    page = text_of(client.get(reverse("builds:upload", args=[tenant.slug])))
    detail = text_of(client.get(reverse("builds:detail", args=[build.code])))
    other = Client()
    other.force_login(stranger)

    # Typical durations priced: 120 s on ml.t3.medium + 180 s on ml.m5.large; then on ml.m5.large + ml.m5.xlarge.
    assert ("up to 1 MiB 1 × ml.t3.medium 1 × ml.m5.large ≈ $0.0074 (300 s of typical durations) "
            "any size 1 × ml.m5.large 1 × ml.m5.xlarge ≈ $0.0153 (300 s of typical durations)") in page
    assert ("Runs on 1 × ml.t3.medium (processing) and 1 × ml.m5.large (training): "
            "22 bytes of data: band 1 of the Basic plan (at most 1 MiB)") in detail
    assert other.get(reverse("builds:upload", args=[tenant.slug])).status_code == 404
    assert other.get(reverse("builds:detail", args=[build.code])).status_code == 404
