"""Billing test factories: tenants, builds with steps, cost rows, and Cost Explorer results in the emulator."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

_counter = itertools.count()


def utc(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@pytest.fixture
def tenant_factory(reference_data):
    """A tenant row (no AWS provisioning: billing reads tables only)."""
    from tenants.models import Tenant
    from tests.factories import TenantFactory
    from tests.factories import plan as plan_named

    def make(*, slug: str | None = None, plan: str = "basic", name: str = "", budget: Decimal | None = None,
             alert_percent: int = 80, status: str = Tenant.Status.ACTIVE) -> Tenant:
        slug = slug or f"t{next(_counter):05d}"
        return TenantFactory(slug=slug, name=name or slug.title(), plan=plan_named(plan),
                             isolation=Tenant.Isolation.POOL, status=status, monthly_budget=budget,
                             budget_alert_percent=alert_percent)

    return make


@pytest.fixture
def build_factory(reference_data):
    """A build with steps: each step is (name, instance_type, count, started_at, ended_at or None)."""
    from builds.models import Algorithm, Build
    from tests.factories import BuildFactory, BuildStepFactory

    def make(tenant, *, steps=(), status: str = Build.Status.SUCCEEDED, created_at: datetime | None = None) -> Build:
        created_at = created_at or (steps[0][3] if steps else datetime.now(UTC))
        build = BuildFactory(tenant=tenant, algorithm=Algorithm.objects.first(), target="y", dataset_bucket="b",
                             dataset_key=f"uploads/{next(_counter)}.csv", status=status, created_at=created_at,
                             started_at=created_at, engine="")
        for order, (name, instance_type, count, started, ended) in enumerate(steps):
            BuildStepFactory(build=build, name=name, order=order, instance_type=instance_type, instance_count=count,
                             started_at=started, ended_at=ended)
        return build

    return make


@pytest.fixture
def populate(reference_data):
    """n_tenants tenants, each with one metered build per day over n_days days and synced Cost Explorer rows."""
    from billing.models import BudgetAlert, CostLine, CostSyncRun, DailyCost
    from billing.rollups import rollups_refresh
    from builds.models import Algorithm, Build, BuildStep
    from tenants.models import Plan, Tenant

    def make(*, n_tenants: int, n_days: int, today: date) -> list[Tenant]:
        plans = list(Plan.objects.order_by("slug"))
        algorithm = Algorithm.objects.first()
        tenants = Tenant.objects.bulk_create([
            Tenant(slug=f"p{next(_counter):05d}", name=f"Tenant {i}", plan=plans[i % len(plans)],
                   isolation=Tenant.Isolation.POOL, status=Tenant.Status.ACTIVE, monthly_budget=Decimal("1"))
            for i in range(n_tenants)])
        tenants = list(Tenant.objects.filter(slug__in=[t.slug for t in tenants]).select_related("plan"))
        days = [today - timedelta(days=n) for n in range(n_days)]
        builds = Build.objects.bulk_create([
            Build(tenant=t, plan=t.plan, algorithm=algorithm, target="y", dataset_bucket="b",
                  dataset_key=f"uploads/{t.slug}-{day}.csv", status=Build.Status.SUCCEEDED,
                  created_at=utc(day, 10), started_at=utc(day, 10), ended_at=utc(day, 11))
            for t in tenants for day in days])
        builds = list(Build.objects.filter(tenant__in=tenants).select_related("tenant"))
        BuildStep.objects.bulk_create([
            BuildStep(build=b, name="train", order=0, instance_type="ml.m5.large", instance_count=1,
                      status=BuildStep.Status.SUCCEEDED, started_at=b.started_at, ended_at=b.ended_at,
                      billable_seconds=3600) for b in builds])
        steps = BuildStep.objects.filter(build__in=builds).select_related("build")
        CostLine.objects.bulk_create([
            CostLine(tenant_id=s.build.tenant_id, plan_id=s.build.plan_id, build=s.build, step=s,
                     instance_type="ml.m5.large", instance_count=1, billable_seconds=3600,
                     price_per_hour=Decimal("0.115"), amount=Decimal("0.115"), day=s.ended_at.date())
            for s in steps])
        DailyCost.objects.bulk_create([
            DailyCost(day=day, tenant_slug=slug, service=service, amount=Decimal("0.07"), estimated=False)
            for day in days for slug in [*(t.slug for t in tenants), ""]
            for service in ("Amazon SageMaker", "Amazon Simple Storage Service")],
            ignore_conflicts=True)  # untagged rows of an earlier call
        CostSyncRun.objects.create(status=CostSyncRun.Status.SUCCEEDED, start_day=days[-1], end_day=days[0],
                                   requests=1, rows=len(days), last_final_day=days[-1],
                                   ended_at=datetime.now(UTC))
        BudgetAlert.objects.bulk_create([
            BudgetAlert(tenant=t, month=today.replace(day=1), threshold_amount=Decimal("0.80"),
                        spend_at_crossing=Decimal("0.92")) for t in tenants])
        # The rows above bypass the writers that keep the rollups current; the billing tick's refresh catches up.
        rollups_refresh(start=days[-1], end=days[0])
        started = datetime.now(UTC) - timedelta(minutes=5)
        for t in tenants[:3]:
            running = Build.objects.create(tenant=t, plan=t.plan, algorithm=algorithm, target="y",
                                           dataset_bucket="b", dataset_key=f"uploads/{t.slug}-running.csv",
                                           status=Build.Status.RUNNING, started_at=started)
            BuildStep.objects.create(build=running, name="train", order=0, instance_type="ml.m5.large",
                                     instance_count=1, status=BuildStep.Status.RUNNING, started_at=started)
        return tenants

    return make


class CostExplorerQueue:
    """Queues GetCostAndUsage results in the emulator and counts how many were consumed.

    moto hands out one queued result per distinct request body and remembers it per body, so
    the remembered answers are cleared too: every test starts from an empty queue.
    """

    def __init__(self, emulator) -> None:
        from moto.ce.models import ce_backends

        self.emulator = emulator
        self.backend = ce_backends[emulator.account_id]["global"]
        self.queued = 0

    def reset(self) -> None:
        self.backend.cost_usage_results_queue.clear()
        self.backend.cost_usage_results.clear()
        self.queued = 0

    def push(self, *results: dict) -> None:
        import requests

        with requests.Session() as http:
            http.trust_env = False
            response = http.post(f"{self.emulator.endpoint}/moto-api/static/ce/cost-and-usage-results",
                                 json={"results": list(results), "account_id": self.emulator.account_id},
                                 timeout=10)
        assert response.status_code == 201, response.text
        self.queued += len(results)

    @property
    def remaining(self) -> int:
        return len(self.backend.cost_usage_results_queue)

    @property
    def consumed(self) -> int:
        return self.queued - self.remaining


@pytest.fixture
def ce_queue(emulator):
    queue = CostExplorerQueue(emulator)
    queue.reset()
    yield queue
    queue.reset()


def ce_page(*, days: list[date], slugs: list[str], services=("Amazon SageMaker",), amount: str = "1.25",
            untagged: str | None = None, estimated: bool = False, next_token: str | None = None) -> dict:
    """One GetCostAndUsage response grouped by tag and SERVICE, as AWS returns it."""
    from django.conf import settings

    results = []
    for day in days:
        groups = [{"Keys": [f"{settings.MLAAS_TAG_KEY}${slug}", service],
                   "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}
                  for slug in slugs for service in services]
        if untagged is not None:
            groups.append({"Keys": [f"{settings.MLAAS_TAG_KEY}$", "AWS Key Management Service"],
                           "Metrics": {"UnblendedCost": {"Amount": untagged, "Unit": "USD"}}})
        results.append({"TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
                        "Total": {}, "Groups": groups, "Estimated": estimated})
    page = {"ResultsByTime": results, "DimensionValueAttributes": []}
    if next_token:
        page["NextPageToken"] = next_token
    return page
