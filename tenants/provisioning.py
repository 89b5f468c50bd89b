"""The provisioning steps of a tenant, each idempotent, run in order and resumable.

Each step returns the ARN (or name) of what it made. A step that fails leaves
the tenant `failed` at that step; running provisioning again skips every step
already succeeded and retries from the failed one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.aws import arns, gateways
from core.aws.errors import AwsError, AwsNotFound
from tenants import naming, policies
from tenants.models import ProvisioningStep, Tenant

logger = logging.getLogger(__name__)

PROBE_KEY = ".mlaas-provisioned"
DATA_POLICY = "tenant-data"
JOB_POLICY = "tenant-jobs"
# Steps whose documents change between releases: `provisioning_upgrade` puts them again for every tenant.
POLICY_STEPS = ("role_policy", "job_policy")


def _account_id() -> str:
    return gateways.platform_identity().account


def _partition() -> str:
    return gateways.platform_identity().partition


def step_bucket(tenant: Tenant) -> str:
    s3 = gateways.platform_s3()
    account = _account_id()
    if tenant.isolation == Tenant.Isolation.SILO:
        bucket, prefix = naming.silo_bucket(tenant.slug, account), ""
        tags = naming.tenant_tags(tenant.slug, tenant.plan.slug)
    else:
        bucket, prefix = naming.pool_bucket(account), naming.pool_prefix(tenant.slug)
        tags = naming.platform_tags()
    s3.create_bucket(bucket, settings.AWS_REGION)
    s3.harden_bucket(bucket, tags=tags, cors_origin=settings.PORTAL_ORIGIN)
    Tenant.objects.filter(pk=tenant.pk).update(bucket=bucket, prefix=prefix)
    tenant.bucket, tenant.prefix = bucket, prefix
    return arns.s3(_partition(), bucket, prefix)


def step_model_package_group(tenant: Tenant) -> str:
    group = naming.model_package_group(tenant.slug)
    arn = gateways.platform_sagemaker().create_model_package_group(
        group, f"Models of tenant {tenant.slug}", naming.tenant_tags(tenant.slug, tenant.plan.slug))
    Tenant.objects.filter(pk=tenant.pk).update(model_package_group=group)
    tenant.model_package_group = group
    return arn


def platform_trust_policy() -> dict:
    """The tenant roles' trust policy for the platform as it runs now (its role or user, not its session)."""
    caller = gateways.platform_identity().arn
    return policies.tenant_trust_policy(gateways.platform_iam().stable_principal(caller))


def step_role(tenant: Tenant) -> str:
    """Create the role, and (re)apply the trust policy: a role made by an older release may trust a session."""
    iam = gateways.platform_iam()
    trust = platform_trust_policy()
    name = naming.role_name(tenant.slug)
    arn = iam.ensure_role(
        name,
        trust_policy=trust,
        tags=naming.tenant_tags(tenant.slug, tenant.plan.slug),
        description=f"Data and model access of tenant {tenant.slug}",
    )
    iam.update_trust_policy(name, trust)
    Tenant.objects.filter(pk=tenant.pk).update(role_arn=arn)
    tenant.role_arn = arn
    return arn


def trust_policies_refresh() -> list[str]:
    """Give every existing tenant role the current trust policy; returns the slugs whose policy changed.

    Roles onboarded before the trust policy named a stable principal trust the
    STS session that made them, which no other host (and no replaced instance)
    can assume. `manage.py platform_bootstrap` (every deploy, `make run`) runs this.
    """
    iam, trust = gateways.platform_iam(), platform_trust_policy()
    changed = []
    for slug in Tenant.objects.exclude(role_arn="").exclude(status=Tenant.Status.OFFBOARDED).values_list(
            "slug", flat=True):
        name = naming.role_name(slug)
        try:
            if iam.trust_policy(name) == trust:
                continue
            iam.update_trust_policy(name, trust)
        except AwsNotFound:
            continue  # reprovision_missing restores a role that is gone
        changed.append(slug)
    return changed


def step_role_policy(tenant: Tenant) -> str:
    group_arn = arns.sagemaker(_partition(), settings.AWS_REGION, _account_id(),
                               f"model-package-group/{tenant.model_package_group}")
    document = policies.tenant_data_policy(
        bucket=tenant.bucket, prefix=tenant.prefix, model_package_group_arn=group_arn, partition=_partition())
    gateways.platform_iam().put_role_policy(naming.role_name(tenant.slug), DATA_POLICY, document)
    return f"{tenant.role_arn}/policy/{DATA_POLICY}"


def step_job_policy(tenant: Tenant) -> str:
    """What the tenant's SageMaker jobs need: the step code, the step image, their logs."""
    from core.aws.pipeline_definition import code_bucket_name, code_prefix

    account = _account_id()
    document = policies.tenant_job_policy(
        partition=_partition(), region=settings.AWS_REGION, account_id=account,
        code_bucket=code_bucket_name(resource_prefix=settings.MLAAS_RESOURCE_PREFIX, account_id=account,
                                     region=settings.AWS_REGION),
        code_prefix=code_prefix(settings.MLAAS_PIPELINE_NAME), step_repository=naming.step_image_repository())
    gateways.platform_iam().put_role_policy(naming.role_name(tenant.slug), JOB_POLICY, document)
    return f"{tenant.role_arn}/policy/{JOB_POLICY}"


def step_verify_access(tenant: Tenant) -> str:
    """Assume the new role and write a probe object: proves the role works end to end."""
    from tenants.credentials import tenant_assume

    creds = tenant_assume(tenant, purpose="verify")
    s3 = gateways.tenant_s3(creds)
    key = f"{tenant.output_prefix}{PROBE_KEY}"
    s3.put_object(tenant.bucket, key, b"ok", content_type="text/plain")
    return arns.s3(_partition(), tenant.bucket, key)


STEPS: list[tuple[str, Callable[[Tenant], str]]] = [
    ("bucket", step_bucket),
    ("model_package_group", step_model_package_group),
    ("role", step_role),
    ("role_policy", step_role_policy),
    ("job_policy", step_job_policy),
    ("verify_access", step_verify_access),
]
STEP_DESCRIPTIONS = {
    "bucket": "Silo: own bucket; pool: shared bucket + prefix. Public access blocked, AES256, versioning, "
              "tags, CORS for the portal origin, EventBridge notifications",
    "model_package_group": "SageMaker model package group for the tenant's models, tagged",
    "role": "Tenant IAM role trusted by SageMaker and by the platform's role or user (exact ARN), tagged",
    "role_policy": "Inline policy: the tenant's bucket/prefix and model group only",
    "job_policy": "Inline policy for its jobs: read/list the pipeline code, pull the step image, write "
                  "/aws/sagemaker/ logs",
    "verify_access": "Assumes the tenant role and writes a probe object to prove access",
}


def ensure_step_rows(tenant: Tenant) -> None:
    """A row per step; a step added by a later release gets its row (pending), and every row its order."""
    existing = {row.name: row for row in tenant.provisioning_steps.all()}
    ProvisioningStep.objects.bulk_create(
        [ProvisioningStep(tenant=tenant, name=name, order=i) for i, (name, _) in enumerate(STEPS)
         if name not in existing]
    )
    for i, (name, _) in enumerate(STEPS):
        if name in existing and existing[name].order != i:
            ProvisioningStep.objects.filter(pk=existing[name].pk).update(order=i)


def run_provisioning(tenant: Tenant) -> bool:
    """Run every step not yet succeeded, in order. Returns True when all succeeded."""
    ensure_step_rows(tenant)
    rows = {row.name: row for row in tenant.provisioning_steps.all()}
    for name, func in STEPS:
        row = rows[name]
        if row.status == ProvisioningStep.Status.SUCCEEDED:
            continue
        row.status, row.started_at, row.error = ProvisioningStep.Status.RUNNING, timezone.now(), ""
        row.attempts += 1
        row.save(update_fields=["status", "started_at", "error", "attempts"])
        try:
            arn = func(tenant)
        except AwsError as exc:
            logger.warning("provisioning %s step %s failed: %s", tenant.slug, name, exc)
            _fail(tenant, row, f"{exc}" + (" (retry may help)" if exc.retryable else ""))
            return False
        except Exception as exc:  # noqa: BLE001 - recorded, never crash the worker
            logger.exception("provisioning %s step %s crashed", tenant.slug, name)
            _fail(tenant, row, f"{type(exc).__name__}: {exc}")
            return False
        row.status, row.resource_arn, row.ended_at = ProvisioningStep.Status.SUCCEEDED, arn, timezone.now()
        row.save(update_fields=["status", "resource_arn", "ended_at"])
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk, status=Tenant.Status.PROVISIONING).update(status=Tenant.Status.ACTIVE)
    tenant.refresh_from_db()
    return True


def _fail(tenant: Tenant, row: ProvisioningStep, error: str) -> None:
    row.status, row.error, row.ended_at = ProvisioningStep.Status.FAILED, error[:4000], timezone.now()
    row.save(update_fields=["status", "error", "ended_at"])
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.FAILED)
    tenant.status = Tenant.Status.FAILED


def reprovision_missing() -> list[str]:
    """Re-run provisioning of tenants whose bucket or role is gone.

    The local emulator restores its state from its snapshot at start; when
    that snapshot is gone (deleted, unreadable, from another moto version, or
    persistence turned off) the database still lists tenants whose AWS
    resources no longer exist. Every step is idempotent, so provisioning them
    again restores a working tenant (their uploads and models stay lost).
    """
    s3, iam = gateways.platform_s3(), gateways.platform_iam()
    restored = []
    candidates = Tenant.objects.select_related("plan").filter(
        status__in=[Tenant.Status.ACTIVE, Tenant.Status.PROVISIONING, Tenant.Status.FAILED]).exclude(bucket="")
    for tenant in candidates:
        if s3.bucket_exists(tenant.bucket) and iam.role_exists(naming.role_name(tenant.slug)):
            continue
        tenant.provisioning_steps.update(status=ProvisioningStep.Status.PENDING, resource_arn="", error="")
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.PROVISIONING)
        tenant.status = Tenant.Status.PROVISIONING
        if run_provisioning(tenant):
            restored.append(tenant.slug)
    return restored


def provisioning_upgrade() -> list[str]:
    """Bring provisioned tenants to this release: steps added since run, policy documents put again.

    Provisioning steps are not versioned one by one: a step a release adds
    (`job_policy`) is pending for tenants provisioned before it, and the policy
    steps (`POLICY_STEPS`) are re-run for every tenant, since their documents
    may have changed (PutRolePolicy replaces a document; running it again is
    harmless). Returns the slugs of the tenants brought up to date.
    """
    upgraded = []
    for tenant in Tenant.objects.select_related("plan").filter(status=Tenant.Status.ACTIVE).exclude(role_arn=""):
        ensure_step_rows(tenant)
        tenant.provisioning_steps.filter(name__in=POLICY_STEPS).update(status=ProvisioningStep.Status.PENDING)
        if run_provisioning(tenant):
            upgraded.append(tenant.slug)
    return upgraded
