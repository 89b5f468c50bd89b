"""Size bands: a plan maps dataset sizes to instances; staff edit them; bad bands are refused with the reason."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tenants.models import Plan
from tenants.sizing import size_bands_clean, sizing_for

MIB = 1024**2


def band(max_bytes, processing="ml.m5.large", training="ml.m5.large", processing_count=1, training_count=1):
    return {"max_bytes": max_bytes, "processing_instance_type": processing,
            "processing_instance_count": processing_count, "training_instance_type": training,
            "training_instance_count": training_count}


@pytest.mark.parametrize(("size", "number", "training", "reason"), [
    (1, 1, "ml.m5.large", "1 bytes of data: band 1 of the Standard plan (at most 1 MiB)"),
    (MIB, 1, "ml.m5.large", "1 MiB of data: band 1 of the Standard plan (at most 1 MiB)"),
    (MIB + 1, 2, "ml.m5.xlarge", "1.0 MiB of data: band 2 of the Standard plan (at most 2 GiB)"),
    (3 * 1024**3, 3, "ml.m5.2xlarge", "3 GiB of data: band 3 of the Standard plan (over 2 GiB)"),
])
def test_sizing_picks_the_first_band_the_dataset_fits(reference_data, size, number, training, reason):
    sizing = sizing_for(Plan.objects.get(slug="standard"), size)

    assert (sizing.band_number, sizing.band.training_instance_type, sizing.reason) == (number, training, reason)


def test_a_plan_without_bands_runs_everything_on_its_instance_fields(reference_data):
    plan = Plan.objects.get(slug="basic")
    plan.size_bands = []

    sizing = sizing_for(plan, 10 * MIB)

    assert (sizing.band_number, sizing.band.processing_instance_type, sizing.band.training_instance_type,
            sizing.reason) == (0, "ml.t3.medium", "ml.m5.large",
                               "the Basic plan runs every dataset on the same instances")


@pytest.mark.parametrize(("bands", "messages"), [
    ([band(None, training="ml.t3.medium")],
     ["Band 1: SageMaker does not run training jobs on `ml.t3.medium`; choose one of "]),
    ([band(MIB), band(2 * MIB)],
     ["Band 2: the last band takes every larger dataset, so its max_bytes must be null."]),
    ([band(2 * MIB), band(MIB), band(None)], ["Upper bounds must rise strictly from one band to the next."]),
    ([band(0), band(None)], ["Band 1: max_bytes must be a positive whole number of bytes (only the last band has "
                             "none)."]),
    ([band(None, training_count=0)], ["Band 1: training_instance_count must be a whole number from 1 to 20."]),
    ([{"max_bytes": None, "gpu": True}], ["Band 1: unknown field(s) gpu; missing processing_instance_type, "
                                          "processing_instance_count, training_instance_type, "
                                          "training_instance_count."]),
    ([band(None, processing="ml.r5.large")],
     ["No price for `ml.r5.large` in the price table: add it on the prices page first, or builds on it could not "
      "be metered."]),
    ({"max_bytes": 1}, ["Size bands must be a list of bands (a JSON array of objects)."]),
])
def test_bad_bands_are_refused_with_the_reason(reference_data, bands, messages):
    with pytest.raises(ValidationError) as caught:
        size_bands_clean(bands)

    assert len(caught.value.messages) == len(messages)
    for got, expected in zip(caught.value.messages, messages, strict=True):
        assert got.startswith(expected)


def test_staff_edit_bands_on_the_plan_page(reference_data, staff_user, logged_in):
    from tenants.tests.test_plans import _plan_form_data

    basic = Plan.objects.get(slug="basic")
    bands = [band(10 * MIB, "ml.t3.medium", "ml.m5.large"), band(None, "ml.c5.xlarge", "ml.c5.2xlarge", 1, 2)]
    client = logged_in(staff_user)

    saved = client.post(reverse("tenants:plan_edit", args=["basic"]),
                        {**_plan_form_data(basic), "size_bands": json.dumps(bands)})
    refused = client.post(reverse("tenants:plan_edit", args=["basic"]),
                          {**_plan_form_data(basic), "size_bands": json.dumps([band(None, training="ml.t3.large")])})

    assert (saved.status_code, Plan.objects.get(slug="basic").size_bands) == (302, bands)
    assert refused.status_code == 200
    assert refused.context["form"].errors["size_bands"][0].startswith(
        "Band 1: SageMaker does not run training jobs on `ml.t3.large`")
    assert Plan.objects.get(slug="basic").size_bands == bands


def test_staff_plan_form_refuses_a_training_type_sagemaker_does_not_offer(reference_data, staff_user, logged_in):
    from tenants.tests.test_plans import _plan_form_data

    basic = Plan.objects.get(slug="basic")

    response = logged_in(staff_user).post(reverse("tenants:plan_edit", args=["basic"]),
                                          _plan_form_data(basic, training_instance_type="ml.t3.medium"))

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["training_instance_type"]
