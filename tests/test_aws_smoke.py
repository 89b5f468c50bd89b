"""`manage.py aws_smoke` against the emulator: passes end to end, and names the stage that fails."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from core.aws import gateways
from core.aws.clients import platform_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def step_image(emulator):
    """What image_publish leaves in the emulator's ECR: the `<prefix>-steps` repository with one image."""
    from mlaas_portal.smoke import step_image_repository

    ecr, repository = platform_client("ecr"), step_image_repository()
    try:
        ecr.create_repository(repositoryName=repository)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    try:
        ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag="smoke-test")
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
    return repository


@pytest.fixture
def deployed_pipeline(emulator, settings):
    from builds.management.commands.deploy_pipeline import pipeline_deploy

    settings.MLAAS_PIPELINE_ROLE_ARN = ""
    return pipeline_deploy(name=settings.MLAAS_PIPELINE_NAME)


def _smoke(*args: str) -> list[str]:
    out = StringIO()
    try:
        call_command("aws_smoke", *args, stdout=out)
    finally:
        print(out.getvalue())  # shown on failure
    return out.getvalue().splitlines()


def _stages(lines: list[str]) -> list[tuple[str, str]]:
    return [(m[2], m[1]) for m in (re.match(r"^\s*(ok|warn|FAIL)\s+(\S+)\s+[\d.]+ s", line) for line in lines) if m]


@pytest.mark.slow
def test_aws_smoke_passes_end_to_end_against_the_emulator(reference_data, clean_redis, step_image,
                                                          deployed_pipeline):
    from builds.models import Build
    from tenants.models import Tenant

    roles_before = {r["RoleName"] for r in gateways.platform_iam().client.list_roles()["Roles"]}

    lines = _smoke("--timeout", "300")

    assert _stages(lines) == [
        ("identity", "ok"), ("pipeline", "ok"), ("step-image", "ok"), ("intake", "ok"),
        ("cost-tag", "warn"),  # moto has no ListCostAllocationTags
        ("onboard", "ok"), ("upload", "ok"), ("intake-build", "ok"), ("dispatch", "ok"), ("run-build", "ok"),
        ("metering", "ok"),
        ("cleanup", "warn")]  # moto cannot delete model packages or their group: said, not hidden
    assert "not checkable against the emulator" in next(line for line in lines if "cost-tag" in line)
    cleanup = next(line for line in lines if "cleanup" in line)
    assert "removed role and data, 1 ledger item(s) and the database rows; could not remove model package group" \
        in cleanup
    assert lines[-1].startswith("aws_smoke passed in ")
    slug = re.search(r"tenant (smoke-[0-9a-f]{8})", "\n".join(lines))[1]
    # Nothing left behind: rows, role, data, model group.
    assert not Tenant.objects.filter(slug=slug).exists()
    assert not Build.objects.filter(dataset_key__contains=f"tenants/{slug}/").exists()
    roles_after = {r["RoleName"] for r in gateways.platform_iam().client.list_roles()["Roles"]}
    assert roles_after == roles_before
    account = gateways.platform_identity().account
    pool = f"{settings.MLAAS_RESOURCE_PREFIX}-pool-{account}"
    assert gateways.platform_s3().list_keys(pool, f"tenants/{slug}/") == []


def test_aws_smoke_fails_at_the_pipeline_stage_when_it_is_not_deployed(reference_data, step_image, settings):
    from tenants.models import Tenant

    settings.MLAAS_PIPELINE_NAME = "mlaas-never-deployed-pipeline"
    out = StringIO()

    with pytest.raises(CommandError, match=r"^aws_smoke failed at stage pipeline after [\d.]+ s$"):
        call_command("aws_smoke", stdout=out)

    lines = out.getvalue().splitlines()
    assert _stages(lines) == [("identity", "ok"), ("pipeline", "FAIL"), ("step-image", "ok"), ("intake", "ok"),
                              ("cost-tag", "warn")]
    assert ("pipeline mlaas-never-deployed-pipeline is not deployed: run manage.py deploy_pipeline"
            in next(line for line in lines if "pipeline" in line))
    assert lines[-1] == "      end-to-end build skipped: pipeline failed"
    assert not Tenant.objects.filter(slug__startswith="smoke-").exists()  # nothing onboarded


def test_aws_smoke_fails_when_the_step_repository_holds_no_image(reference_data, emulator, settings):
    settings.MLAAS_RESOURCE_PREFIX = "mlaas-noimage"
    platform_client("ecr").create_repository(repositoryName="mlaas-noimage-steps")
    out = StringIO()

    with pytest.raises(CommandError, match="stage pipeline \\(also: step-image, intake\\)"):
        call_command("aws_smoke", stdout=out)

    assert ("ECR repository mlaas-noimage-steps holds no image: run manage.py image_publish"
            in out.getvalue())


def test_aws_smoke_refuses_a_bad_timeout():
    with pytest.raises(CommandError, match="must be > 0"):
        call_command("aws_smoke", "--timeout", "0")
