"""The one set of model factories every test uses (factory-boy). Rows only, no AWS.

Plans and algorithms are reference data (`seed_reference_data`, the `reference_data` fixture): factories
look them up by slug instead of inventing new ones. Anything that must exist on AWS uses the root
conftest's `make_tenant` against the emulator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory
from django.contrib.auth.models import User

from billing.models import CostLine
from builds.models import Algorithm, Build, BuildStep, BuildTransition, ModelVersion
from tenants.models import Membership, Plan, Tenant

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"


def plan(slug: str) -> Plan:
    return Plan.objects.get(slug=slug)


def algorithm(slug: str) -> Algorithm:
    return Algorithm.objects.get(slug=slug)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        skip_postgeneration_save = True

    class Params:
        silo = factory.LazyAttribute(lambda t: t.isolation == Tenant.Isolation.SILO)

    slug = factory.Sequence(lambda n: f"t{n:05d}")
    name = factory.LazyAttribute(lambda t: f"Tenant {t.slug}")
    plan = factory.LazyFunction(lambda: plan("standard"))
    isolation = Tenant.Isolation.SILO
    status = Tenant.Status.ACTIVE
    bucket = factory.LazyAttribute(lambda t: f"mlaas-t-{t.slug}-{ACCOUNT}" if t.silo else f"mlaas-pool-{ACCOUNT}")
    prefix = factory.LazyAttribute(lambda t: "" if t.silo else f"tenants/{t.slug}/")
    role_arn = factory.LazyAttribute(lambda t: f"arn:aws:iam::{ACCOUNT}:role/mlaas-tenant-{t.slug}")
    model_package_group = factory.LazyAttribute(lambda t: f"mlaas-{t.slug}-models")
    default_algorithm = factory.LazyFunction(lambda: algorithm("gbm-classifier"))
    default_target = "label"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n:05d}@example.com")
    password = factory.PostGeneration(lambda user, create, value: (user.set_password(value or "pw-Secret-123"),
                                                                    user.save() if create else None))


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Membership.Role.MEMBER


class BuildFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Build

    tenant = factory.SubFactory(TenantFactory)
    plan = factory.LazyAttribute(lambda b: b.tenant.plan)
    algorithm = factory.LazyFunction(lambda: algorithm("gbm-classifier"))
    target = "label"
    dataset_bucket = factory.LazyAttribute(lambda b: b.tenant.bucket)
    dataset_key = factory.Sequence(lambda n: f"uploads/d{n:05d}.csv")
    status = Build.Status.SUCCEEDED
    engine = "local"
    created_at = T0
    queued_at = factory.LazyAttribute(lambda b: b.created_at)


class BuildTransitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BuildTransition

    build = factory.SubFactory(BuildFactory)
    from_status = ""
    to_status = Build.Status.RECEIVED
    reason = "upload"
    at = factory.LazyAttribute(lambda t: t.build.created_at)


class BuildStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BuildStep

    build = factory.SubFactory(BuildFactory)
    name = "train"
    order = 0
    status = factory.LazyAttribute(lambda s: BuildStep.Status.SUCCEEDED if s.ended_at else BuildStep.Status.RUNNING)
    started_at = T0
    ended_at = factory.LazyAttribute(lambda s: s.started_at + timedelta(seconds=9) if s.started_at else None)
    billable_seconds = factory.LazyAttribute(
        lambda s: int((s.ended_at - s.started_at).total_seconds()) if s.ended_at and s.started_at else 0)
    instance_type = "ml.m5.large"
    instance_count = 1


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    build = factory.SubFactory(BuildFactory)
    tenant = factory.LazyAttribute(lambda v: v.build.tenant)
    version = factory.LazyAttribute(
        lambda v: (ModelVersion.objects.filter(tenant=v.tenant).order_by("-version")
                   .values_list("version", flat=True).first() or 0) + 1)
    arn = factory.LazyAttribute(lambda v: f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/"
                                          f"{v.tenant.model_package_group}/{v.version}")
    metrics = factory.LazyFunction(lambda: {"accuracy": 0.95})
    artifact_key = factory.LazyAttribute(lambda v: f"{v.tenant.output_prefix}builds/{v.build.code}/model/model.tar.gz")
    created_at = factory.LazyAttribute(lambda v: v.build.ended_at or T0)


class CostLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CostLine

    step = factory.SubFactory(BuildStepFactory)
    build = factory.LazyAttribute(lambda c: c.step.build)
    tenant = factory.LazyAttribute(lambda c: c.build.tenant)
    plan = factory.LazyAttribute(lambda c: c.build.plan)
    instance_type = factory.LazyAttribute(lambda c: c.step.instance_type)
    instance_count = factory.LazyAttribute(lambda c: c.step.instance_count)
    billable_seconds = factory.LazyAttribute(lambda c: c.step.billable_seconds)
    price_per_hour = Decimal("0.1150")
    amount = factory.LazyAttribute(lambda c: (Decimal(c.billable_seconds) * c.instance_count * c.price_per_hour
                                              / 3600).quantize(Decimal("0.000001")))
    day = factory.LazyAttribute(lambda c: (c.step.ended_at or T0).astimezone(UTC).date())
