"""Seed a data set at scale: tenants, a year of builds with steps, transitions, model versions, metered
cost lines and charges, and a year of daily Cost Explorer costs, for `bench/pages.py`.

It writes into the database DATABASE_URL names (created on PostgreSQL if missing, then migrated). On
PostgreSQL rows go in with COPY, elsewhere with bulk_create in batches; progress is printed per table.
An existing data set is only replaced with --reset (which empties every table the seed writes, users
included): point it at a database of its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlaas_scale \
        .venv/bin/python bench/seed_scale.py --tenants 1000 --builds 100000 --days 365 --reset
    DATABASE_URL=sqlite:///.local/scale-small.sqlite3 .venv/bin/python bench/seed_scale.py --tenants 20 --builds 500

The billing rollups are filled at the end by the same code the billing tick runs (`rollups_rebuild`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 5000
SERVICES = ("Amazon SageMaker", "Amazon Simple Storage Service")
STAFF_USERNAME = "bench-staff"
BENCH_PASSWORD = "bench-Password-1"
PLAN_WEIGHTS = {"basic": 6, "standard": 3, "premium": 1}


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlaas_portal.settings")
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        ensure_postgres_database(url)
    import django

    django.setup()


def ensure_postgres_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database when it does not exist yet."""
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    with psycopg.connect(dbname="postgres", user=cfg["USER"] or "postgres", password=cfg["PASSWORD"] or None,
                         host=cfg["HOST"] or None, port=cfg["PORT"] or None, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [cfg["NAME"]]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
            print(f"created database {cfg['NAME']}")


class RowWriter:
    """Writes model instances: COPY on PostgreSQL (ids given by the seed), bulk_create elsewhere."""

    def __init__(self) -> None:
        from django.db import connection

        self.connection = connection
        self.postgres = connection.vendor == "postgresql"

    def write(self, model, objects: Iterable, *, total: int | None = None) -> int:
        began, count = time.perf_counter(), 0
        label = model._meta.label
        for batch in _batches(objects, BATCH):
            if self.postgres:
                self._copy(model, batch)
            else:
                model.objects.bulk_create(batch, batch_size=500)
            count += len(batch)
            rate = count / max(time.perf_counter() - began, 1e-6)
            of = f"/{total:,}" if total else ""
            print(f"\r  {label}: {count:,}{of} rows ({rate:,.0f}/s)", end="", flush=True)
        print(f"\r  {label}: {count:,} rows in {time.perf_counter() - began:.1f} s" + " " * 20)
        return count

    def _copy(self, model, batch: list) -> None:
        fields = model._meta.concrete_fields
        columns = ", ".join(self.connection.ops.quote_name(f.column) for f in fields)
        table = self.connection.ops.quote_name(model._meta.db_table)
        self.connection.ensure_connection()
        with self.connection.connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for obj in batch:
                    copy.write_row([_copy_value(f, obj) for f in fields])

    def reset_sequences(self, models: list) -> None:
        if not self.postgres:
            return
        from django.core.management.color import no_style

        with self.connection.cursor() as cursor:
            for sql in self.connection.ops.sequence_reset_sql(no_style(), models):
                cursor.execute(sql)


def _copy_value(field, obj):
    value = getattr(obj, field.attname)
    if value is None:
        return None
    if field.get_internal_type() == "JSONField":
        return json.dumps(value)
    return value


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def seeded_models() -> list:
    from django.contrib.auth.models import User

    from billing.models import BudgetAlert, BuildCharge, CostLine, CostSyncRun, DailyCost
    from builds.models import Build, BuildStep, BuildTransition, ModelVersion, RejectedUpload
    from tenants.models import ApiToken, Membership, ProvisioningStep, Tenant, TenantEvent

    return [CostLine, BuildCharge, DailyCost, CostSyncRun, BudgetAlert, ModelVersion, BuildStep, BuildTransition,
            RejectedUpload, Build, ApiToken, Membership, ProvisioningStep, TenantEvent, Tenant, User]


def reset(writer: RowWriter) -> None:
    """Empty every table the seed writes (the data set is replaced, not added to)."""
    from django.apps import apps

    models = seeded_models()
    rollups = [m for m in apps.get_app_config("billing").get_models() if m._meta.db_table.startswith("billing_")
               and m not in models and m.__name__.endswith("Rollup")]
    if writer.postgres:
        tables = ", ".join(writer.connection.ops.quote_name(m._meta.db_table) for m in models + rollups)
        with writer.connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    else:
        for model in rollups + models:
            model.objects.all().delete()


def tenant_weights(count: int, rng: random.Random) -> list[float]:
    """Build counts per tenant are skewed, as real usage is: a few tenants build far more than most."""
    weights = [1.0 / (rank + 1) ** 0.7 for rank in range(count)]
    rng.shuffle(weights)
    return weights


def seed(*, tenants: int, builds: int, days: int, seed_value: int, queued: int, running: int) -> None:
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from billing.models import BuildCharge, CostLine, CostSyncRun, DailyCost, InstancePrice
    from billing.rules import FINAL_AFTER_DAYS, step_cost
    from builds.models import Algorithm, Build, BuildStep, BuildTransition, ModelVersion
    from mlaas_portal.demo import seed_reference_data
    from mlaas_steps.steps import STEP_NAMES
    from tenants.models import Membership, Plan, Tenant

    rng = random.Random(seed_value)
    writer = RowWriter()
    seed_reference_data()
    plans = {p.slug: p for p in Plan.objects.all()}
    algorithms = list(Algorithm.objects.all())
    prices = dict(InstancePrice.objects.filter(region=settings.AWS_REGION)
                  .values_list("instance_type", "price_per_hour"))
    now = datetime.now(UTC).replace(microsecond=0)
    account = "123456789012"
    print(f"seeding {tenants:,} tenants, {builds:,} builds over {days} days into "
          f"{writer.connection.settings_dict['NAME']} ({writer.connection.vendor})")

    # ----- users and tenants -----
    password = make_password(BENCH_PASSWORD)
    plan_slugs = [s for s in PLAN_WEIGHTS if s in plans]
    tenant_rows = []
    for n in range(1, tenants + 1):
        slug = f"tenant-{n:05d}"
        silo = rng.random() < 0.7
        status = Tenant.Status.ACTIVE if rng.random() < 0.95 else rng.choice(
            [Tenant.Status.SUSPENDED, Tenant.Status.OFFBOARDED])
        tenant_rows.append(Tenant(
            id=n, slug=slug, name=f"Tenant {n:05d} Ltd", status=status,
            plan=plans[rng.choices(plan_slugs, weights=[PLAN_WEIGHTS[s] for s in plan_slugs])[0]],
            isolation=Tenant.Isolation.SILO if silo else Tenant.Isolation.POOL, owner_email=f"owner@{slug}.example",
            bucket=f"mlaas-t-{slug}-{account}" if silo else f"mlaas-pool-{account}",
            prefix="" if silo else f"tenants/{slug}/", role_arn=f"arn:aws:iam::{account}:role/mlaas-tenant-{slug}",
            model_package_group=f"mlaas-{slug}-models", default_algorithm=algorithms[0], default_target="label",
            monthly_budget=Decimal("500.00") if n % 5 == 0 else None,
            created_at=now - timedelta(days=days + 30), updated_at=now))
    users = [User(id=1, username=STAFF_USERNAME, password=password, is_staff=True, is_superuser=True,
                  email="staff@bench.example", date_joined=now)]
    users += [User(id=t.id + 1, username=t.owner_email, email=t.owner_email, password=password, date_joined=now)
              for t in tenant_rows]
    writer.write(User, users)
    writer.write(Tenant, tenant_rows)
    writer.write(Membership, (Membership(id=t.id, user_id=t.id + 1, tenant_id=t.id, role=Membership.Role.OWNER,
                                         created_at=now) for t in tenant_rows))

    # ----- builds and everything hanging off them -----
    weights = tenant_weights(tenants, rng)
    picks = rng.choices(tenant_rows, weights=weights, k=builds)
    span = days * 86400
    created = sorted(now - timedelta(seconds=rng.randrange(3600, span)) for _ in range(builds))
    in_flight = set(range(builds - queued - running, builds))
    build_rows, step_rows, transition_rows, line_rows, charge_rows, version_rows = [], [], [], [], [], []
    versions: dict[int, int] = {}
    step_id = transition_id = line_id = 0
    for index, (tenant, created_at) in enumerate(zip(picks, created, strict=True)):
        build_id = index + 1
        plan = tenant.plan
        if index in in_flight:
            status = Build.Status.RUNNING if index >= builds - running else Build.Status.QUEUED
            created_at = now - timedelta(seconds=rng.randrange(60, 3600))
        else:
            roll = rng.random()
            status = (Build.Status.SUCCEEDED if roll < 0.85 else Build.Status.FAILED if roll < 0.97
                      else Build.Status.CANCELLED)
        algorithm = rng.choice(algorithms)
        queued_at = created_at + timedelta(seconds=1)
        started_at = queued_at + timedelta(seconds=rng.randrange(1, 600)) if status != Build.Status.QUEUED else None
        # Steps: (name, instance type, seconds); failed builds stop at training, cancelled at preprocessing.
        plan_steps = [(STEP_NAMES[0], plan.processing_instance_type, rng.randrange(60, 300)),
                      (STEP_NAMES[1], plan.training_instance_type, rng.randrange(300, 3600)),
                      (STEP_NAMES[2], plan.processing_instance_type, rng.randrange(30, 120)),
                      (STEP_NAMES[3], "", 1), (STEP_NAMES[4], "", 5)]
        reached = {Build.Status.SUCCEEDED: 5, Build.Status.FAILED: 2, Build.Status.CANCELLED: 1,
                   Build.Status.RUNNING: 2, Build.Status.QUEUED: 0}[status]
        at = started_at
        total = Decimal("0")
        for order, (name, instance_type, seconds) in enumerate(plan_steps[:reached]):
            step_id += 1
            last = order == reached - 1
            step_status = {Build.Status.FAILED: BuildStep.Status.FAILED,
                           Build.Status.CANCELLED: BuildStep.Status.CANCELLED,
                           Build.Status.RUNNING: BuildStep.Status.RUNNING}.get(status, BuildStep.Status.SUCCEEDED) \
                if last else BuildStep.Status.SUCCEEDED
            ended = None if step_status == BuildStep.Status.RUNNING else at + timedelta(seconds=seconds)
            billable = seconds if instance_type and ended else 0
            step_rows.append(BuildStep(id=step_id, build_id=build_id, name=name, order=order, status=step_status,
                                       started_at=at, ended_at=ended, billable_seconds=billable,
                                       instance_type=instance_type, instance_count=1,
                                       failure_reason="Training failed: the target has one class." if
                                       step_status == BuildStep.Status.FAILED else ""))
            if billable:
                line_id += 1
                price = prices[instance_type]
                amount = step_cost(billable_seconds=billable, instance_count=1, price_per_hour=price)
                total += amount
                line_rows.append(CostLine(id=line_id, tenant_id=tenant.id, plan_id=plan.id, build_id=build_id,
                                          step_id=step_id, instance_type=instance_type, instance_count=1,
                                          billable_seconds=billable, price_per_hour=price, amount=amount,
                                          day=ended.date(), created_at=ended))
            at = ended or at
        ended_at = at if status in Build.FINISHED else None
        build_rows.append(Build(
            id=build_id, code=uuid.UUID(int=rng.getrandbits(128), version=4), tenant_id=tenant.id, plan_id=plan.id,
            algorithm_id=algorithm.id, target="label", source=Build.Source.UPLOAD, dataset_bucket=tenant.bucket,
            dataset_key=f"{tenant.prefix}uploads/data-{build_id}.csv", dataset_size=rng.randrange(10_000, 50_000_000),
            status=status, engine="local" if status != Build.Status.QUEUED else "",
            failure_reason="Training failed: the target has one class." if status == Build.Status.FAILED else "",
            metrics={algorithm.objective_metric: round(rng.uniform(0.6, 0.99), 4)}
            if status == Build.Status.SUCCEEDED else {},
            attempts=1 if started_at else 0, created_at=created_at, queued_at=queued_at, started_at=started_at,
            ended_at=ended_at, ledger_written=status in Build.FINISHED))
        path = [("", Build.Status.RECEIVED, created_at), (Build.Status.RECEIVED, Build.Status.QUEUED, queued_at)]
        if started_at:
            path += [(Build.Status.QUEUED, Build.Status.STARTING, started_at),
                     (Build.Status.STARTING, Build.Status.RUNNING, started_at)]
        if ended_at:
            path.append((Build.Status.RUNNING, status, ended_at))
        for from_status, to_status, moment in path:
            transition_id += 1
            transition_rows.append(BuildTransition(id=transition_id, build_id=build_id, from_status=from_status,
                                                   to_status=to_status, at=moment))
        if status in Build.FINISHED:
            charge_rows.append(BuildCharge(id=build_id, build_id=build_id, tenant_id=tenant.id, amount=total,
                                           ledger_written=True, updated_at=ended_at))
        if status == Build.Status.SUCCEEDED:
            version = versions[tenant.id] = versions.get(tenant.id, 0) + 1
            version_rows.append(ModelVersion(
                id=len(version_rows) + 1, tenant_id=tenant.id, build_id=build_id, version=version,
                arn=f"arn:aws:sagemaker:us-east-1:{account}:model-package/mlaas-{tenant.slug}-models/{version}",
                metrics=build_rows[-1].metrics, approval_status=ModelVersion.Approval.PENDING,
                artifact_key=f"{tenant.prefix}models/{build_id}/model.tar.gz", created_at=ended_at))
    for model, rows in ((Build, build_rows), (BuildStep, step_rows), (BuildTransition, transition_rows),
                        (CostLine, line_rows), (BuildCharge, charge_rows), (ModelVersion, version_rows)):
        writer.write(model, rows)
        rows.clear()

    # ----- a year of Cost Explorer costs, and the sync that fetched them -----
    today = now.date()
    first_day = today - timedelta(days=days)
    day_list = [first_day + timedelta(days=n) for n in range(days)]

    def daily_costs() -> Iterator[DailyCost]:
        row_id = 0
        for day in day_list:
            for tenant in tenant_rows + [None]:
                for service in SERVICES:
                    row_id += 1
                    yield DailyCost(id=row_id, day=day, tenant_slug=tenant.slug if tenant else DailyCost.UNTAGGED,
                                    service=service, amount=Decimal(rng.randrange(1, 400_000)) / Decimal(10_000),
                                    estimated=day > today - timedelta(days=FINAL_AFTER_DAYS), synced_at=now)

    writer.write(DailyCost, daily_costs(), total=len(day_list) * (tenants + 1) * len(SERVICES))
    writer.write(CostSyncRun, [CostSyncRun(id=1, started_at=now, ended_at=now, status=CostSyncRun.Status.SUCCEEDED,
                                           start_day=first_day, end_day=today - timedelta(days=1),
                                           requests=days, rows=len(day_list) * (tenants + 1) * len(SERVICES),
                                           last_final_day=today - timedelta(days=FINAL_AFTER_DAYS),
                                           triggered_by="bench")])
    writer.reset_sequences([User, Tenant, Membership, Build, BuildStep, BuildTransition, CostLine, BuildCharge,
                            ModelVersion, DailyCost, CostSyncRun])
    fill_rollups()


def fill_rollups() -> None:
    """Fill the billing rollups with the code the billing tick runs (no-op before they exist)."""
    try:
        from billing.rollups import rollups_rebuild
    except ImportError:
        return
    began = time.perf_counter()
    counts = rollups_rebuild()
    print(f"  rollups: {counts} in {time.perf_counter() - began:.1f} s")


def analyze(writer: RowWriter) -> None:
    """Statistics for the planner, and the visibility map autovacuum would set on a running system: without it
    an index-only scan (the API's deferred-join pages) still reads every heap page it passes."""
    if writer.postgres:
        with writer.connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365, help="history length: builds and daily costs")
    parser.add_argument("--queued", type=int, default=200, help="builds still queued (of --builds)")
    parser.add_argument("--running", type=int, default=20, help="builds running now (of --builds)")
    parser.add_argument("--seed", type=int, default=13, help="random seed: the same flags give the same data")
    parser.add_argument("--reset", action="store_true", help="empty the seeded tables first (users included)")
    parser.add_argument("--rollups-only", action="store_true", help="only rebuild the billing rollups")
    args = parser.parse_args()
    if args.tenants < 1 or args.builds < args.queued + args.running or args.days < 2:
        parser.error("need --tenants >= 1, --builds >= --queued + --running and --days >= 2")
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    writer = RowWriter()
    if args.rollups_only:
        fill_rollups()
        return
    from tenants.models import Tenant

    if Tenant.objects.exists():
        if not args.reset:
            sys.exit(f"{writer.connection.settings_dict['NAME']} already holds tenants: pass --reset to replace "
                     "them (every seeded table is emptied), or use another database")
        reset(writer)
    began = time.perf_counter()
    seed(tenants=args.tenants, builds=args.builds, days=args.days, seed_value=args.seed, queued=args.queued,
         running=args.running)
    analyze(writer)
    print(f"done in {time.perf_counter() - began:.0f} s; staff login {STAFF_USERNAME} / {BENCH_PASSWORD}, "
          f"tenant owners owner@tenant-NNNNN.example / {BENCH_PASSWORD}")


if __name__ == "__main__":
    main()
