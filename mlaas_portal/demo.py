"""Demo and reference data: plans, algorithms, prices, the admin, demo tenants.

Every function is idempotent: `manage.py seed_demo` may run on every start.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction

from builds.models import Algorithm
from core.aws.ecr import EcrImage
from tenants.models import Plan

MIB = 1024 * 1024
GIB = 1024 * MIB


def _band(max_bytes, processing, training, training_count=1, processing_count=1) -> dict:
    return dict(max_bytes=max_bytes, processing_instance_type=processing, processing_instance_count=processing_count,
                training_instance_type=training, training_instance_count=training_count)


# Size bands. The first boundary is 1 MiB so the demo's bundled samples (100-130 KB) and its synthetic large
# sample (over 1 MiB, see seed_demo) fall in different bands; a production catalogue would put it near 100 MB.
SIZE_BANDS = {
    "basic": [_band(1 * MIB, "ml.t3.medium", "ml.m5.large"), _band(None, "ml.m5.large", "ml.m5.xlarge")],
    "standard": [_band(1 * MIB, "ml.m5.large", "ml.m5.large"), _band(2 * GIB, "ml.m5.xlarge", "ml.m5.xlarge"),
                 _band(None, "ml.m5.2xlarge", "ml.m5.2xlarge", training_count=2)],
    "premium": [_band(1 * MIB, "ml.m5.large", "ml.m5.xlarge"), _band(2 * GIB, "ml.m5.xlarge", "ml.m5.2xlarge"),
                _band(None, "ml.m5.2xlarge", "ml.m5.4xlarge", training_count=2)],
}

PLANS = [
    dict(slug="basic", name="Basic", tier_rank=1, plan_concurrent_limit=4, tenant_concurrent_limit=1,
         processing_instance_type="ml.t3.medium", training_instance_type="ml.m5.large",
         tuning_included=False, max_tuning_jobs=0, upload_size_limit_bytes=50 * MIB,
         monthly_fee=Decimal("99.00"), included_build_hours=Decimal("10"), overage_price_per_hour=Decimal("4.00"),
         marketplace_dimension="build_hours_over_included", api_requests_per_minute=120),
    dict(slug="standard", name="Standard", tier_rank=2, plan_concurrent_limit=8, tenant_concurrent_limit=2,
         processing_instance_type="ml.m5.large", training_instance_type="ml.m5.xlarge",
         tuning_included=True, max_tuning_jobs=4, upload_size_limit_bytes=500 * MIB,
         monthly_fee=Decimal("499.00"), included_build_hours=Decimal("60"), overage_price_per_hour=Decimal("3.00"),
         marketplace_dimension="build_hours_over_included", api_requests_per_minute=300),
    dict(slug="premium", name="Premium", tier_rank=3, plan_concurrent_limit=12, tenant_concurrent_limit=4,
         processing_instance_type="ml.m5.xlarge", training_instance_type="ml.m5.2xlarge",
         tuning_included=True, max_tuning_jobs=10, upload_size_limit_bytes=5 * 1024 * MIB,
         monthly_fee=Decimal("1999.00"), included_build_hours=Decimal("300"), overage_price_per_hour=Decimal("2.50"),
         marketplace_dimension="build_hours_over_included", api_requests_per_minute=600),
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
        bands = SIZE_BANDS[spec["slug"]]
        plan, _ = Plan.objects.get_or_create(slug=spec["slug"], defaults=dict(spec, size_bands=bands))
        if not plan.size_bands:  # a database seeded before plans had size bands
            Plan.objects.filter(pk=plan.pk).update(size_bands=SIZE_BANDS[spec["slug"]])
            plan.size_bands = SIZE_BANDS[spec["slug"]]
        plans.append(plan)
    return plans


def seed_algorithms(image: EcrImage | None = None, *, tag: str = "latest") -> list[Algorithm]:
    """The catalog's algorithms, pinned to the step image's current digest.

    `image` None: the current image of the platform's repository under `tag` (on the emulator published first,
    see builds.step_image.step_image_current). Seeded algorithms still on that tag (or with no digest yet) are
    re-pointed at its digest, so changed step code reaches them on the next seed, and so are those still on
    another repository (the stock image they named before the step image existed); an algorithm staff moved to
    another tag or a digest of the step repository keeps it.
    """
    if image is None:
        from builds.step_image import step_image_current

        image = step_image_current(tag=tag)
    pinned = {"image_repository": image.repository_uri, "image_tag": tag, "image_digest": image.digest}
    algorithms = []
    for spec in ALGORITHMS:
        algorithm, created = Algorithm.objects.get_or_create(slug=spec["slug"], defaults=dict(spec, **pinned))
        ours = algorithm.image_repository == image.repository_uri
        stale = algorithm.training_image_uri != image.pinned_uri
        follows_tag = algorithm.image_tag == tag or not algorithm.image_digest  # not one staff pinned by digest
        if not created and stale and (not ours or follows_tag):
            Algorithm.objects.filter(pk=algorithm.pk).update(**pinned)
            algorithm.refresh_from_db()
        algorithms.append(algorithm)
    return algorithms


def seed_reference_data() -> None:
    from billing.services import instance_prices_load
    from builds.step_image import step_image_current

    image = step_image_current()  # AWS calls before the transaction, not inside it
    with transaction.atomic():
        seed_plans()
        seed_algorithms(image)
        instance_prices_load()


def seed_admin(username: str = "admin", password: str = "admin") -> User:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True,
                                                                            "email": "admin@example.com"})
    if created:
        user.set_password(password)
        user.save()
    return user


# ----- a tenant that arrived through AWS Marketplace -----

DEMO_MARKETPLACE_ACCOUNT = "111122223333"
DEMO_MARKETPLACE_PRODUCT = "prod-mlaas-demo"


def seed_marketplace_registration(*, plan: str):
    """The registration a buyer makes from AWS Marketplace, through the same services as /marketplace/register.

    The emulator has no ResolveCustomer, so the demo resolves its token itself: everything after the
    resolution (customer record, access request) is the product's own path.
    """
    from core.aws.marketplace import MarketplaceCustomer as Resolved
    from tenants.marketplace import marketplace_access_request, marketplace_register

    customer = marketplace_register(token="demo-marketplace-token", resolve=lambda token: Resolved(
        customer_aws_account_id=DEMO_MARKETPLACE_ACCOUNT, product_code=DEMO_MARKETPLACE_PRODUCT,
        # moto's BatchMeterUsage names a customer only by CustomerIdentifier (it answers 500 without one),
        # so the demo buyer has one, as a legacy integration's would; AWS also accepts the account id alone.
        customer_identifier="demo-hooli-customer"))
    if customer.access_request is not None:
        return customer.access_request
    return marketplace_access_request(customer=customer, company="Hooli Wines", contact_email="owner@hooli.example",
                                      plan=Plan.objects.filter(slug=plan).first())


def seed_marketplace_link(*, access_request, tenant) -> None:
    """Staff completing the request (onboarding linked it), then Marketplace's subscribe-success notification."""
    from tenants.marketplace import access_request_complete, marketplace_notification_handle

    if access_request.handled_at is None:
        access_request_complete(request=access_request, tenant=tenant)
    marketplace_notification_handle(message_id="demo-subscribe-success", message={
        "action": "subscribe-success", "customer-aws-account-id": DEMO_MARKETPLACE_ACCOUNT,
        "product-code": DEMO_MARKETPLACE_PRODUCT})
DEMO_ENDPOINT_TENANT = "acme"


def demo_endpoint_ensure(slug: str = DEMO_ENDPOINT_TENANT) -> str:
    """The demo tenant has a test endpoint: once its sample's build registered a version, approve and deploy it.

    Called on every scheduler tick of `make run` (MLAAS_DEMO_ENDPOINT): a few queries while there is nothing
    to do; the deploy itself is the tenant's ordinary path (builds.endpoints.endpoint_deploy).
    """
    from builds.endpoints import endpoint_deploy, live_endpoints
    from builds.models import ModelVersion
    from builds.services import model_version_decide
    from tenants.models import Tenant

    tenant = Tenant.objects.select_related("plan").filter(slug=slug, status=Tenant.Status.ACTIVE).first()
    if tenant is None or live_endpoints(tenant).exists():
        return "ready" if tenant else "no tenant"
    versions = ModelVersion.objects.filter(tenant=tenant).select_related("tenant").order_by("-version")
    version = versions.filter(approval_status=ModelVersion.Approval.APPROVED).first()
    if version is None:
        version = versions.filter(approval_status=ModelVersion.Approval.PENDING).first()
        if version is None:
            return "waiting for a model version"
        version = model_version_decide(version=version, approve=True, actor=seed_admin())
    endpoint_deploy(tenant=tenant, version=version, actor=None)
    return f"deploying v{version.version}"
