"""Demo and reference data: plans, algorithms, prices, the admin, demo tenants.

Every function is idempotent: `manage.py seed_demo` may run on every start.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction

from builds.models import Algorithm
from tenants.models import Plan

SKLEARN_IMAGE = "683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
MIB = 1024 * 1024

PLANS = [
    dict(slug="basic", name="Basic", tier_rank=1, plan_concurrent_limit=4, tenant_concurrent_limit=1,
         processing_instance_type="ml.t3.medium", training_instance_type="ml.m5.large",
         tuning_included=False, max_tuning_jobs=0, upload_size_limit_bytes=50 * MIB,
         monthly_fee=Decimal("99.00"), included_build_hours=Decimal("10"), overage_price_per_hour=Decimal("4.00"),
         api_requests_per_minute=120),
    dict(slug="standard", name="Standard", tier_rank=2, plan_concurrent_limit=8, tenant_concurrent_limit=2,
         processing_instance_type="ml.m5.large", training_instance_type="ml.m5.xlarge",
         tuning_included=True, max_tuning_jobs=4, upload_size_limit_bytes=500 * MIB,
         monthly_fee=Decimal("499.00"), included_build_hours=Decimal("60"), overage_price_per_hour=Decimal("3.00"),
         api_requests_per_minute=300),
    dict(slug="premium", name="Premium", tier_rank=3, plan_concurrent_limit=12, tenant_concurrent_limit=4,
         processing_instance_type="ml.m5.xlarge", training_instance_type="ml.m5.2xlarge",
         tuning_included=True, max_tuning_jobs=10, upload_size_limit_bytes=5 * 1024 * MIB,
         monthly_fee=Decimal("1999.00"), included_build_hours=Decimal("300"), overage_price_per_hour=Decimal("2.50"),
         api_requests_per_minute=600),
]

ALGORITHMS = [
    dict(slug="gbm-classifier", name="Gradient boosting classifier", problem_type="classification",
         entry_point="hist_gradient_boosting", objective_metric="f1", min_metric=0.5,
         description="Histogram gradient boosting: strong on tabular data, handles missing values."),
    dict(slug="random-forest-classifier", name="Random forest classifier", problem_type="classification",
         entry_point="random_forest", objective_metric="f1", min_metric=0.5,
         description="Bagged decision trees: robust, little tuning needed."),
    dict(slug="linear-classifier", name="Logistic regression", problem_type="classification",
         entry_point="linear", objective_metric="f1", min_metric=0.5,
         description="Regularised linear model: fast and explainable."),
    dict(slug="gbm-regressor", name="Gradient boosting regressor", problem_type="regression",
         entry_point="hist_gradient_boosting", objective_metric="r2", min_metric=0.0,
         description="Histogram gradient boosting for numeric targets."),
    dict(slug="random-forest-regressor", name="Random forest regressor", problem_type="regression",
         entry_point="random_forest", objective_metric="r2", min_metric=0.0,
         description="Bagged regression trees."),
    dict(slug="linear-regressor", name="Ridge regression", problem_type="regression",
         entry_point="linear", objective_metric="r2", min_metric=0.0,
         description="Regularised linear regression."),
]


def seed_plans() -> list[Plan]:
    plans = []
    for spec in PLANS:
        plan, _ = Plan.objects.get_or_create(slug=spec["slug"], defaults=spec)
        plans.append(plan)
    return plans


def seed_algorithms(region: str = "us-east-1") -> list[Algorithm]:
    algorithms = []
    for spec in ALGORITHMS:
        defaults = dict(spec, training_image_uri=SKLEARN_IMAGE.format(region=region))
        algorithm, _ = Algorithm.objects.get_or_create(slug=spec["slug"], defaults=defaults)
        algorithms.append(algorithm)
    return algorithms


def seed_reference_data() -> None:
    from django.conf import settings

    from billing.services import instance_prices_load

    with transaction.atomic():
        seed_plans()
        seed_algorithms(settings.AWS_REGION)
        instance_prices_load()


def seed_admin(username: str = "admin", password: str = "admin") -> User:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True,
                                                                            "email": "admin@example.com"})
    if created:
        user.set_password(password)
        user.save()
    return user
