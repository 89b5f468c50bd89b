"""`manage.py aws_smoke`: is this account (or the emulator) ready to build models, end to end?

First the checks, each a stage: who we are and where (identity, region, partition), that the
deployed pipeline is the definition this release builds, that the step image exists, that the
intake queue and rules exist, that the tenant tag is an active cost allocation tag. Then, if
every check passed, a throwaway tenant is onboarded and provisioned, a 200-row sample CSV is
uploaded with the tenant's own credentials, the real intake path turns it into a build, the
dispatcher starts it and this process runs it on the configured engine (and polls it, for
SageMaker), the build is metered, and what the run created is removed (offboarding with data,
the model group, the ledger item, the database rows). Each stage prints its duration.

It lives in the roof: it spans tenants, builds and billing.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from core.aws import gateways
from core.aws.clients import platform_config
from core.aws.errors import AwsError

SAMPLE = "breast_cancer"
SAMPLE_ROWS = 200
POLL_SECONDS = 5.0
OK, WARN, FAIL = "ok", "warn", "FAIL"


class StageFailed(Exception):
    """The stage's check failed; the message says what is wrong and what to do."""


class StageWarning(Exception):
    """The check could not be made here (not a failure); the message says why."""


@dataclass
class StageResult:
    name: str
    outcome: str  # OK | WARN | FAIL
    seconds: float
    detail: str


@dataclass
class SmokeRun:
    """Runs stages in order, prints each with its duration, remembers what to clean up."""

    write: Callable[[str], None]
    timeout: float = 600.0
    keep: bool = False
    results: list[StageResult] = field(default_factory=list)
    tenant: Any = None
    build: Any = None
    dataset_key: str = ""

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if r.outcome == FAIL]

    def stage(self, name: str, check: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            outcome, detail = OK, check()
        except StageWarning as exc:
            outcome, detail = WARN, str(exc)
        except StageFailed as exc:
            outcome, detail = FAIL, str(exc)
        except AwsError as exc:
            outcome, detail = FAIL, f"{exc}" + (" (retry may help)" if exc.retryable else "")
        except Exception as exc:  # noqa: BLE001 - a smoke test reports, it does not crash
            outcome, detail = FAIL, f"{type(exc).__name__}: {exc}"
        result = StageResult(name, outcome, time.monotonic() - started, detail)
        self.results.append(result)
        self.write(f"{outcome:>4}  {name:<12} {result.seconds:7.2f} s  {detail}")
        return outcome != FAIL

    # -- the run -------------------------------------------------------------
    def run(self) -> list[StageResult]:
        checks = [("identity", check_identity), ("pipeline", check_pipeline), ("step-image", check_step_image),
                  ("intake", check_intake), ("cost-tag", check_cost_tag)]
        for name, check in checks:
            self.stage(name, check)
        if self.failed:
            self.write(f"      end-to-end build skipped: {', '.join(self.failed)} failed")
            return self.results
        deadline = time.monotonic() + self.timeout
        try:
            for name, step in (("onboard", self.onboard), ("upload", self.upload),
                               ("intake-build", lambda: self.intake_build(deadline)),
                               ("dispatch", lambda: self.dispatch(deadline)),
                               ("run-build", lambda: self.run_build(deadline)), ("metering", self.meter)):
                if not self.stage(name, step):
                    break
        finally:
            if self.tenant is not None:
                self.stage("cleanup", self.keep_or_clean)
        return self.results

    def onboard(self) -> str:
        from builds.models import Algorithm
        from tenants.models import Plan
        from tenants.provisioning import run_provisioning
        from tenants.services import tenant_onboard

        plan = Plan.objects.order_by("tier_rank", "slug").first()
        if plan is None:
            raise StageFailed("no plan exists: create one (staff pages) or run manage.py seed_demo --no-tenants")
        algorithm = Algorithm.objects.filter(active=True, problem_type="classification").first()
        if algorithm is None:
            raise StageFailed("no active classification algorithm: add one, or run manage.py seed_demo --no-tenants")
        self.tenant = tenant_onboard(slug=f"smoke-{uuid.uuid4().hex[:8]}", name="aws_smoke throwaway tenant",
                                     plan=plan, isolation="pool", default_algorithm=algorithm,
                                     default_target="diagnosis", provision_in_background=False)
        if not run_provisioning(self.tenant):
            failed = self.tenant.provisioning_steps.filter(status="failed").first()
            raise StageFailed(f"provisioning of {self.tenant.slug} failed at {failed.name}: {failed.error}")
        return f"tenant {self.tenant.slug} (plan {plan.slug}, pool), role {self.tenant.role_arn}"

    def upload(self) -> str:
        from tenants.credentials import tenant_assume

        body = sample_csv()
        key = f"{self.tenant.upload_prefix}smoke.csv"
        s3 = gateways.tenant_s3(tenant_assume(self.tenant, purpose="smoke"))
        s3.put_object(self.tenant.bucket, key, body, content_type="text/csv")
        self.dataset_key = key
        return f"s3://{self.tenant.bucket}/{key} ({SAMPLE_ROWS} rows, {len(body)} bytes, as the tenant's role)"

    def intake_build(self, deadline: float) -> str:
        """The upload's event through EventBridge and SQS to a build (a running intake loop may be first)."""
        from builds.intake import intake_poll_once
        from builds.models import Build

        while True:
            self.build = Build.objects.filter(tenant=self.tenant, dataset_key=self.dataset_key).first()
            if self.build is not None:
                return f"build {self.build.code} ({self.build.status})"
            if time.monotonic() > deadline:
                raise StageFailed("no build came from the upload within --timeout: is the S3 bucket sending "
                                  "events to EventBridge, and the intake rule targeting the queue?")
            intake_poll_once(wait_seconds=1)

    def dispatch(self, deadline: float) -> str:
        from builds.dispatch import dispatch_pending
        from builds.models import Build

        while True:
            self.build.refresh_from_db()
            if self.build.status != Build.Status.QUEUED:
                return f"{self.build.status} on queue plan-{self.build.plan.slug}"
            if time.monotonic() > deadline:
                raise StageFailed("the build stayed queued within --timeout: the account, plan or tenant limits "
                                  "hold it (see the staff dashboard)")
            dispatch_pending()
            time.sleep(0.5)

    def run_build(self, deadline: float) -> str:
        """Execute here (a build worker that claimed it first is fine: the claim is exclusive), poll to the end."""
        from builds import execution
        from builds.models import Build

        if self.build.status == Build.Status.STARTING:
            execution.build_execute(self.build.pk)
        while True:
            self.build.refresh_from_db()
            if self.build.is_finished:
                break
            if time.monotonic() > deadline:
                self._cancel()
                raise StageFailed(f"the build did not finish within --timeout ({self.timeout:g} s); cancelled")
            if self.build.status == Build.Status.RUNNING and self.build.execution_ref and self.build.engine != "local":
                execution.build_poll(self.build)
            time.sleep(POLL_SECONDS if self.build.engine != "local" else 0.5)
        steps = ", ".join(f"{s.name} {s.status} {_seconds(s.started_at, s.ended_at)}"
                          for s in self.build.steps.order_by("order"))
        if self.build.status != Build.Status.SUCCEEDED:
            raise StageFailed(f"the build {self.build.status}: {self.build.failure_reason or 'no reason'} ({steps})")
        version = getattr(self.build, "model_version", None)
        return f"{self.build.engine} engine: {steps}; model version {version.version if version else '?'}"

    def meter(self) -> str:
        from billing.services import build_charge_record, build_meter

        lines = build_meter(build=self.build)
        charge = build_charge_record(build=self.build)
        return f"{len(lines)} cost line(s), charge {charge.amount} USD"

    def _cancel(self) -> None:
        from builds.services import build_cancel

        try:
            build_cancel(build=self.build)
        except Exception as exc:  # noqa: BLE001 - reported by the stage that called it
            self.write(f"      could not cancel build {self.build.code}: {exc}")

    def keep_or_clean(self) -> str:
        if self.keep:
            return f"--keep: tenant {self.tenant.slug} and its build are left in place"
        return clean_up(self.tenant)


def sample_csv(rows: int = SAMPLE_ROWS) -> bytes:
    """The first `rows` rows of the bundled breast-cancer sample, target `diagnosis`."""
    from mlaas_steps.sample_data import write_sample_csvs

    with tempfile.TemporaryDirectory() as tmp:
        text = Path(write_sample_csvs(tmp)[SAMPLE]).read_text()
    reader = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(reader[: rows + 1])
    return out.getvalue().encode()


def clean_up(tenant) -> str:
    """Remove what a smoke run created: the role and data (offboarding), model group, ledger items, rows.

    What cannot be removed is a warning (StageWarning) naming it: the run's build still passed.
    """
    from builds.models import Build, ModelVersion
    from tenants.models import Tenant
    from tenants.services import tenant_offboard

    tenant.refresh_from_db()
    removed = []
    if tenant.status != Tenant.Status.OFFBOARDED:
        tenant_offboard(tenant=tenant, delete_data=True, confirm_slug=tenant.slug)
        removed.append("role and data")
    left: list[str] = []
    if tenant.model_package_group:
        try:
            versions = gateways.platform_sagemaker().delete_model_package_group(tenant.model_package_group)
            removed.append(f"model group ({versions} version(s))")
        except AwsError as exc:
            left.append(f"model package group {tenant.model_package_group} ({exc.operation}: {exc.code or 'error'})")
    codes = [str(code) for code in Build.objects.filter(tenant=tenant).values_list("code", flat=True)]
    for code in codes:
        gateways.platform_dynamodb().delete_item(settings.MLAAS_LEDGER_TABLE, {"tenant": tenant.slug, "build": code})
    ModelVersion.objects.filter(tenant=tenant).delete()
    Build.objects.filter(tenant=tenant).delete()
    Tenant.objects.filter(pk=tenant.pk).delete()
    removed.append(f"{len(codes)} ledger item(s) and the database rows")
    summary = "removed " + ", ".join(removed)
    if left:
        # The emulator (moto 5.2.5) has no DeleteModelPackage / DeleteModelPackageGroup.
        raise StageWarning(f"{summary}; could not remove {', '.join(left)}: delete it by hand")
    return summary


# -- the checks -----------------------------------------------------------------
def _region_partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def check_identity() -> str:
    config = platform_config()
    identity = gateways.platform_sts().caller_identity()
    if not config.region:
        raise StageFailed("no region: set AWS_REGION")
    if _region_partition(config.region) != identity.partition:
        raise StageFailed(f"region {config.region} is not in the identity's partition {identity.partition} "
                          f"({identity.arn}): set AWS_REGION to a region of that partition")
    where = f"emulator at {config.endpoint_url}" if config.is_emulator else "AWS"
    return (f"{identity.arn} (account {identity.account}, partition {identity.partition}), "
            f"region {config.region}, {where}")


def check_pipeline() -> str:
    from builds.management.commands.deploy_pipeline import pipeline_definition_build

    name = settings.MLAAS_PIPELINE_NAME
    deployed = gateways.platform_sagemaker().pipeline_definition(name)
    if deployed is None:
        raise StageFailed(f"pipeline {name} is not deployed: run manage.py deploy_pipeline")
    built, _ = pipeline_definition_build(name=name)
    if normalised(deployed) != normalised(built):
        raise StageFailed(f"the deployed pipeline {name} differs from this release's definition "
                          f"({definition_difference(deployed, built)}): run manage.py deploy_pipeline")
    return f"{name} matches the built definition ({len(built.get('Steps', []))} top-level steps)"


def normalised(definition: dict) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))


def definition_difference(deployed: dict, built: dict) -> str:
    """Where two definitions differ, in a few words: the top-level fields, or the steps by name."""
    keys = sorted(k for k in set(deployed) | set(built) if deployed.get(k) != built.get(k))
    if keys != ["Steps"]:
        return "fields " + ", ".join(keys)
    steps = {s.get("Name"): s for s in deployed.get("Steps", [])}, {s.get("Name"): s for s in built.get("Steps", [])}
    changed = sorted(n for n in set(steps[0]) | set(steps[1]) if steps[0].get(n) != steps[1].get(n))
    return "steps " + ", ".join(str(n) for n in changed)


def step_image_repository() -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-steps"


def check_step_image() -> str:
    ecr, repository = gateways.platform_ecr(), step_image_repository()
    try:
        image = ecr.latest_image(repository)
    except AwsError as exc:
        if ecr.is_missing_repository(exc):
            raise StageFailed(f"no ECR repository {repository}: run manage.py image_publish") from None
        raise
    if image is None:
        raise StageFailed(f"ECR repository {repository} holds no image: run manage.py image_publish")
    tags = ",".join(image.get("imageTags", [])) or "untagged"
    return f"{repository}@{image['imageDigest']} ({tags})"


def check_intake() -> str:
    from tenants import naming

    queue = settings.MLAAS_INTAKE_QUEUE_NAME
    if gateways.platform_sqs().queue_url(queue) is None:
        raise StageFailed(f"no SQS queue {queue}: run manage.py platform_bootstrap")
    events, rules = gateways.platform_events(), []
    for isolation in ("silo", "pool"):
        rule = naming.intake_rule(isolation)
        try:
            state = events.describe_rule(rule).get("State")
        except AwsError as exc:
            raise StageFailed(f"no EventBridge rule {rule} ({exc.code}): run manage.py platform_bootstrap") from None
        if state != "ENABLED":
            raise StageFailed(f"EventBridge rule {rule} is {state}: enable it (or run manage.py platform_bootstrap)")
        rules.append(rule)
    return f"queue {queue}, rules {', '.join(rules)} enabled"


def check_cost_tag() -> str:
    key, emulator = settings.MLAAS_TAG_KEY, platform_config().is_emulator
    try:
        status = gateways.platform_cost_explorer().cost_allocation_tag_status(key)
    except AwsError as exc:
        if emulator:
            raise StageWarning(f"{key}: not checkable against the emulator (ListCostAllocationTags: {exc.code or exc})"
                               ) from None
        raise
    if status == "Active":
        return f"{key} is an active cost allocation tag"
    if emulator:
        raise StageWarning(f"{key}: not checkable against the emulator (it reports {status or 'no such tag'})")
    if status is None:
        raise StageFailed(f"Billing has not seen the tag {key} yet: tag a resource (onboard a tenant), wait up to "
                          "24 h, then activate it under Billing > Cost allocation tags (or manage.py billing_setup)")
    raise StageFailed(f"the cost allocation tag {key} is {status}: activate it under Billing > Cost allocation "
                      "tags (or manage.py billing_setup); Cost Explorer cannot group costs by tenant until then")


def _seconds(started, ended) -> str:
    if started is None or ended is None:
        return "-"
    return f"{(ended - started).total_seconds():.1f} s"
