"""Provisioning: every step recorded with its ARN, resources tagged and hardened, shared
resources created once, idempotent, and resumable after a real failure half way."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from core.aws import gateways
from core.aws.clients import platform_client
from tenants import jobs, naming, provisioning, services
from tenants.models import ProvisioningStep, Tenant
from tenants.tests.helpers import aws_unreachable

STEP_NAMES = ["bucket", "model_package_group", "role", "role_policy", "job_policy", "verify_access"]


def _account() -> str:
    return gateways.platform_sts().account_id()


def _expected_steps(tenant: Tenant) -> list[tuple[str, str, str, str]]:
    region, account, slug = settings.AWS_REGION, _account(), tenant.slug
    role_arn = f"arn:aws:iam::{account}:role/{naming.role_name(slug)}"
    if tenant.isolation == Tenant.Isolation.SILO:
        bucket, prefix = naming.silo_bucket(slug, account), ""
    else:
        bucket, prefix = naming.pool_bucket(account), f"tenants/{slug}/"
    arns = [
        f"arn:aws:s3:::{bucket}/{prefix}",
        f"arn:aws:sagemaker:{region}:{account}:model-package-group/{naming.model_package_group(slug)}",
        role_arn,
        f"{role_arn}/policy/tenant-data",
        f"{role_arn}/policy/tenant-jobs",
        f"arn:aws:s3:::{bucket}/{prefix}models/{provisioning.PROBE_KEY}",
    ]
    return [(name, "succeeded", arn, "") for name, arn in zip(STEP_NAMES, arns, strict=True)]


def _steps(tenant: Tenant) -> list[tuple[str, str, str, str]]:
    return list(tenant.provisioning_steps.order_by("order").values_list("name", "status", "resource_arn", "error"))


def _tags(tag_list: list[dict], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {t[key]: t[value] for t in tag_list}


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_provisioning_records_every_step_with_status_and_arn(make_tenant, isolation):
    tenant = make_tenant(isolation=isolation)
    account = _account()

    assert _steps(tenant) == _expected_steps(tenant)
    assert (tenant.status, tenant.role_arn, tenant.model_package_group) == (
        "active", f"arn:aws:iam::{account}:role/mlaas-tenant-{tenant.slug}", f"mlaas-{tenant.slug}-models")
    assert (tenant.bucket, tenant.prefix, tenant.upload_uri) == (
        (f"mlaas-t-{tenant.slug}-{account}", "", f"s3://mlaas-t-{tenant.slug}-{account}/uploads/")
        if isolation == "silo" else
        (f"mlaas-pool-{account}", f"tenants/{tenant.slug}/", f"s3://mlaas-pool-{account}/tenants/{tenant.slug}/uploads/"))
    assert list(tenant.provisioning_steps.values_list("attempts", flat=True)) == [1] * len(provisioning.STEPS)


def test_tenant_resources_carry_tenant_and_plan_tags(make_tenant):
    silo = make_tenant(isolation="silo", plan="premium")
    pool = make_tenant(isolation="pool", plan="basic")
    iam, sagemaker = platform_client("iam"), platform_client("sagemaker")

    def tenant_tags(tenant):
        group_arn = tenant.provisioning_steps.get(name="model_package_group").resource_arn
        return {
            "role": _tags(iam.list_role_tags(RoleName=naming.role_name(tenant.slug))["Tags"]),
            "model_package_group": _tags(sagemaker.list_tags(ResourceArn=group_arn)["Tags"]),
        }

    assert gateways.platform_s3().bucket_settings(silo.bucket)["tags"] == {
        "mlaas:tenant": silo.slug, "mlaas:plan": "premium"}
    assert tenant_tags(silo) == {"role": {"mlaas:tenant": silo.slug, "mlaas:plan": "premium"},
                                 "model_package_group": {"mlaas:tenant": silo.slug, "mlaas:plan": "premium"}}
    assert tenant_tags(pool) == {"role": {"mlaas:tenant": pool.slug, "mlaas:plan": "basic"},
                                 "model_package_group": {"mlaas:tenant": pool.slug, "mlaas:plan": "basic"}}


def test_shared_resources_carry_platform_tags(make_tenant):
    tenant = make_tenant(isolation="pool")
    sqs, events, dynamodb = platform_client("sqs"), platform_client("events"), platform_client("dynamodb")
    queue_url = sqs.get_queue_url(QueueName=settings.MLAAS_INTAKE_QUEUE_NAME)["QueueUrl"]
    rule_arns = [events.describe_rule(Name=naming.intake_rule(i))["Arn"] for i in ("silo", "pool")]
    table_arn = dynamodb.describe_table(TableName=settings.MLAAS_LEDGER_TABLE)["Table"]["TableArn"]
    platform = {"mlaas:component": "platform"}

    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == platform
    assert [_tags(events.list_tags_for_resource(ResourceARN=arn)["Tags"]) for arn in rule_arns] == [platform] * 2
    assert _tags(dynamodb.list_tags_of_resource(ResourceArn=table_arn)["Tags"]) == platform
    assert gateways.platform_s3().bucket_settings(tenant.bucket)["tags"] == platform  # the shared pool bucket


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_bucket_settings_are_hardened(make_tenant, isolation):
    tenant = make_tenant(isolation=isolation)
    s3 = platform_client("s3")

    found = gateways.platform_s3().bucket_settings(tenant.bucket)
    cors = s3.get_bucket_cors(Bucket=tenant.bucket)["CORSRules"]

    assert found["public_access_block"] == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                            "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert (found["encryption"], found["versioning"]) == ("AES256", "Enabled")
    assert [(rule["AllowedOrigins"], sorted(rule["AllowedMethods"])) for rule in cors] == [
        ([settings.PORTAL_ORIGIN], ["GET", "HEAD", "POST", "PUT"])]


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_upload_reaches_intake_queue_through_the_isolation_rule(make_tenant, isolation):
    # moto does not echo EventBridgeConfiguration in GetBucketNotificationConfiguration, so the
    # notification setting is proven by its effect: S3 -> EventBridge rule -> SQS -> intake.
    from builds.intake import intake_poll_once
    from builds.models import Build

    tenant = make_tenant(isolation=isolation)
    key = f"{tenant.upload_prefix}notified.csv"
    version = gateways.platform_s3().put_object(tenant.bucket, key, b"age,diagnosis\n41,1\n")["VersionId"]

    build = None
    for _ in range(10):  # the queue may also hold events of earlier tests' uploads
        intake_poll_once(wait_seconds=1)
        build = Build.objects.filter(tenant=tenant, dataset_key=key).first()
        if build:
            break

    assert build is not None
    assert (build.dataset_bucket, build.dataset_version) == (tenant.bucket, version)
    assert list(build.transitions.values_list("to_status", flat=True))[:2] == ["received", "queued"]


def test_role_policy_is_scoped_to_the_tenant_location(make_tenant):
    tenant = make_tenant(isolation="pool")
    bucket, prefix = tenant.bucket, f"tenants/{tenant.slug}/"

    document = gateways.platform_iam().get_role_policy(naming.role_name(tenant.slug), "tenant-data")

    statements = {statement["Sid"]: statement for statement in document["Statement"]}
    s3_resources = sorted(resource for statement in document["Statement"] for resource in statement["Resource"]
                          if resource.startswith("arn:aws:s3:::"))
    assert statements["TenantObjects"]["Resource"] == [f"arn:aws:s3:::{bucket}/{prefix}*"]
    assert (statements["TenantListing"]["Resource"], statements["TenantListing"]["Condition"]) == (
        [f"arn:aws:s3:::{bucket}"], {"StringLike": {"s3:prefix": [f"{prefix}*"]}})
    # Nothing else in S3: the shared pipeline code is the jobs' policy's.
    assert s3_resources == sorted([f"arn:aws:s3:::{bucket}/{prefix}*", f"arn:aws:s3:::{bucket}"])


def test_job_policy_grants_what_the_jobs_need_and_no_more(make_tenant):
    tenant = make_tenant(isolation="silo")
    account = gateways.platform_sts().account_id()
    region, prefix = settings.AWS_REGION, settings.MLAAS_RESOURCE_PREFIX
    code = f"arn:aws:s3:::{prefix}-pipeline-code-{account}-{region}"

    document = gateways.platform_iam().get_role_policy(naming.role_name(tenant.slug), "tenant-jobs")

    assert {s["Sid"]: (s["Action"], s["Resource"], s.get("Condition")) for s in document["Statement"]} == {
        "PipelineCodeRead": (["s3:GetObject"], [f"{code}/{settings.MLAAS_PIPELINE_NAME}/code/*"], None),
        "PipelineCodeList": (["s3:ListBucket"], [code],
                             {"StringLike": {"s3:prefix": [f"{settings.MLAAS_PIPELINE_NAME}/code/*"]}}),
        "StepImageAuth": (["ecr:GetAuthorizationToken"], ["*"], None),
        "StepImagePull": (["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                          [f"arn:aws:ecr:{region}:{account}:repository/{prefix}-steps"], None),
        "JobLogs": (["logs:CreateLogStream", "logs:PutLogEvents"],
                    [f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*"], None),
    }


def test_provisioning_upgrade_gives_tenants_of_an_earlier_release_the_job_policy(make_tenant):
    from tenants.models import ProvisioningStep

    tenant = make_tenant(isolation="pool")
    iam = gateways.platform_iam()
    iam.client.delete_role_policy(RoleName=naming.role_name(tenant.slug), PolicyName="tenant-jobs")
    tenant.provisioning_steps.filter(name="job_policy").delete()  # provisioned before the step existed

    assert provisioning.provisioning_upgrade() == [tenant.slug]

    tenant.refresh_from_db()
    assert tenant.status == "active"
    assert [(s.name, s.status) for s in tenant.provisioning_steps.order_by("order")] == [
        (name, ProvisioningStep.Status.SUCCEEDED) for name in STEP_NAMES]
    assert iam.get_role_policy(naming.role_name(tenant.slug), "tenant-jobs")["Statement"][0]["Sid"] == (
        "PipelineCodeRead")


def test_intake_rules_stay_one_per_isolation_model(make_tenant):
    for isolation in ("silo", "pool", "silo"):
        make_tenant(isolation=isolation)
    events, sqs = platform_client("events"), platform_client("sqs")
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=settings.MLAAS_INTAKE_QUEUE_NAME)["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    rules = events.list_rules(NamePrefix=f"{settings.MLAAS_RESOURCE_PREFIX}-intake-")["Rules"]
    targets = {rule["Name"]: [t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]]
               for rule in rules}

    assert targets == {"mlaas-intake-pool": [queue_arn], "mlaas-intake-silo": [queue_arn]}
    assert sorted(sqs.list_queues(QueueNamePrefix=settings.MLAAS_INTAKE_QUEUE_NAME)["QueueUrls"]) == [
        sqs.get_queue_url(QueueName=name)["QueueUrl"]
        for name in (settings.MLAAS_INTAKE_QUEUE_NAME, f"{settings.MLAAS_INTAKE_QUEUE_NAME}-dead-letter")]


def _aws_inventory(tenant: Tenant) -> dict:
    """What exists on AWS for this tenant and the shared intake, by name."""
    iam, sagemaker, events, s3 = (platform_client(s) for s in ("iam", "sagemaker", "events", "s3"))
    role = naming.role_name(tenant.slug)
    rules = events.list_rules(NamePrefix=f"{settings.MLAAS_RESOURCE_PREFIX}-intake-")["Rules"]
    groups = sagemaker.list_model_package_groups(NameContains=tenant.slug)["ModelPackageGroupSummaryList"]
    return {
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"] == role],
        "role_policies": iam.list_role_policies(RoleName=role)["PolicyNames"],
        "model_package_groups": [g["ModelPackageGroupName"] for g in groups],
        "rules": sorted(rule["Name"] for rule in rules),
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] == tenant.bucket],
        "probe_versions": len(s3.list_object_versions(Bucket=tenant.bucket, Prefix=tenant.output_prefix)
                              .get("Versions", [])),
    }


@pytest.mark.parametrize("isolation", ["silo", "pool"])
def test_provisioning_rerun_is_idempotent(make_tenant, isolation):
    tenant = make_tenant(isolation=isolation)
    first_steps, first_inventory = _steps(tenant), _aws_inventory(tenant)

    rerun_active = provisioning.run_provisioning(tenant)  # nothing to do: every step succeeded
    attempts_after_noop = list(tenant.provisioning_steps.values_list("attempts", flat=True))
    # Lose the step records (as if the database were restored): every step runs again against
    # resources that already exist.
    tenant.provisioning_steps.update(status=ProvisioningStep.Status.PENDING, resource_arn="")
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.PROVISIONING)
    tenant.refresh_from_db()
    rerun_all = provisioning.run_provisioning(tenant)

    assert (rerun_active, rerun_all, tenant.status) == (True, True, "active")
    assert attempts_after_noop == [1] * len(provisioning.STEPS)
    assert _steps(tenant) == first_steps
    assert list(tenant.provisioning_steps.values_list("attempts", flat=True)) == [2] * len(provisioning.STEPS)
    second_inventory = _aws_inventory(tenant)
    assert {k: v for k, v in second_inventory.items() if k != "probe_versions"} == {
        "roles": [naming.role_name(tenant.slug)], "role_policies": ["tenant-data", "tenant-jobs"],
        "model_package_groups": [naming.model_package_group(tenant.slug)],
        "rules": ["mlaas-intake-pool", "mlaas-intake-silo"], "buckets": [tenant.bucket]}
    assert {k: v for k, v in first_inventory.items() if k != "probe_versions"} == {
        k: v for k, v in second_inventory.items() if k != "probe_versions"}
    # The probe is an object write: versioning keeps one version per run.
    assert (first_inventory["probe_versions"], second_inventory["probe_versions"]) == (1, 2)


def _fail_during(step_name: str, monkeypatch) -> None:
    """Run `step_name` while the AWS endpoint refuses connections (a real outage, not a mock)."""
    real = dict(provisioning.STEPS)[step_name]

    def during_outage(tenant):
        with aws_unreachable():
            return real(tenant)

    monkeypatch.setattr(provisioning, "STEPS", [(name, during_outage if name == step_name else func)
                                                for name, func in provisioning.STEPS])


def test_provisioning_failure_half_way_then_retry_resumes_from_failed_step(
        db, emulator, reference_data, monkeypatch, staff_user, logged_in, django_capture_on_commit_callbacks):
    tenant = services.tenant_onboard(slug="half-way", plan="standard", isolation="silo")
    _fail_during("role", monkeypatch)

    finished = provisioning.run_provisioning(tenant)

    tenant.refresh_from_db()
    failed_steps = list(tenant.provisioning_steps.values("name", "status", "attempts", "started_at", "resource_arn"))
    assert (finished, tenant.status) == (False, "failed")
    assert [(s["name"], s["status"], s["attempts"]) for s in failed_steps] == [
        ("bucket", "succeeded", 1), ("model_package_group", "succeeded", 1),
        ("role", "failed", 1), ("role_policy", "pending", 0), ("job_policy", "pending", 0),
        ("verify_access", "pending", 0)]
    error = tenant.provisioning_steps.get(name="role").error
    assert error.startswith("AWS endpoint unreachable: Could not connect to the endpoint URL")
    assert error.endswith("(retry may help)")
    page = logged_in(staff_user).get(reverse("tenants:steps", args=[tenant.slug]))
    assert error.split(":")[0] in page.content.decode() and "failed" in page.content.decode()

    monkeypatch.undo()
    with django_capture_on_commit_callbacks() as enqueued:
        services.tenant_provision_retry(tenant=tenant, actor=staff_user)
    resumed = jobs.provision_tenant(tenant.id)  # what the enqueued job runs

    tenant.refresh_from_db()
    assert (len(enqueued), resumed, tenant.status) == (1, True, "active")
    assert _steps(tenant) == _expected_steps(tenant)
    assert list(tenant.provisioning_steps.values_list("attempts", flat=True)) == [1, 1, 2, 1, 1, 1]
    # The steps that had succeeded were not run again.
    assert [s["started_at"] for s in failed_steps[:2]] == list(
        tenant.provisioning_steps.filter(order__lt=2).values_list("started_at", flat=True))
    assert list(tenant.events.values_list("action", "actor")) == [
        ("provisioning_retried", staff_user.pk), ("onboarded", None)]


def test_provision_retry_of_active_tenant_is_refused(make_tenant):
    tenant = make_tenant(isolation="pool")

    with pytest.raises(Exception) as refused:
        services.tenant_provision_retry(tenant=tenant)

    assert refused.value.messages == ["Tenant is active; only failed or provisioning tenants can be retried."]


def test_platform_bootstrap_command_is_idempotent_and_lists_the_shared_resources(emulator, db):
    from io import StringIO

    from django.core.management import call_command

    outputs = []
    for _ in range(2):
        out = StringIO()
        call_command("platform_bootstrap", stdout=out)
        outputs.append(out.getvalue().splitlines())
    account, region = _account(), settings.AWS_REGION
    from core.aws import gateways

    step_image = gateways.platform_ecr().describe_image(naming.step_image_repository(), tag="latest")
    assert outputs[0] == outputs[1]
    assert outputs[0] == [
        f"intake queue: arn:aws:sqs:{region}:{account}:{settings.MLAAS_INTAKE_QUEUE_NAME}",
        f"intake dead-letter queue: arn:aws:sqs:{region}:{account}:{settings.MLAAS_INTAKE_QUEUE_NAME}-dead-letter",
        f"intake rule (silo): arn:aws:events:{region}:{account}:rule/{naming.intake_rule('silo')}",
        f"intake rule (pool): arn:aws:events:{region}:{account}:rule/{naming.intake_rule('pool')}",
        f"build ledger: arn:aws:dynamodb:{region}:{account}:table/{settings.MLAAS_LEDGER_TABLE}",
        f"step image: {account}.dkr.ecr.{region}.amazonaws.com/{naming.step_image_repository()}@{step_image.digest}",
        f"log group /aws/sagemaker/ProcessingJobs: arn:aws:logs:{region}:{account}:log-group:"
        "/aws/sagemaker/ProcessingJobs",
        f"log group /aws/sagemaker/TrainingJobs: arn:aws:logs:{region}:{account}:log-group:"
        "/aws/sagemaker/TrainingJobs",
        "platform ready: 8 shared resources",
    ]
