"""The step image against the emulator: publishing by a digest of the build context, the command, the
DescribeImages check when an algorithm is saved, the seed and bootstrap, and builds passing the pinned URI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from builds import step_image
from builds.step_image import CONTEXT_DIRS, REPO_ROOT, context_digest, context_files, step_image_publish
from core.aws import gateways
from core.aws.errors import AwsNotFound


@pytest.fixture
def context_copy(tmp_path) -> Path:
    """A copy of the build context, so a test may change step code without touching the real package."""
    root = tmp_path / "context"
    for top in CONTEXT_DIRS:
        shutil.copytree(REPO_ROOT / top, root / top, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def own_repository(emulator, settings):
    """A resource prefix of the test's own, so retagging never moves the session's `<prefix>-steps:latest`."""
    settings.MLAAS_RESOURCE_PREFIX = f"t{uuid.uuid4().hex[:8]}"
    return f"{settings.MLAAS_RESOURCE_PREFIX}-steps"


def test_publish_digest_changes_when_a_step_file_changes(own_repository, context_copy):
    ecr = gateways.platform_ecr()
    first = step_image_publish(tag="latest", root=context_copy)
    again = step_image_publish(tag="latest", root=context_copy)
    (context_copy / "mlaas_steps" / "train.py").write_text(
        (context_copy / "mlaas_steps" / "train.py").read_text() + "\n# changed\n")
    changed = step_image_publish(tag="latest", root=context_copy)

    assert first.digest.startswith("sha256:") and len(first.digest) == 71
    assert again.digest == first.digest  # stable: same context, same image
    assert changed.digest != first.digest
    assert changed.context_digest == context_digest(context_copy) != first.context_digest
    assert first.repository_uri.endswith(f"/{own_repository}")
    assert ecr.describe_image(own_repository, tag="latest").digest == changed.digest
    # The image an algorithm pinned before the change is still in the repository, as on AWS.
    assert ecr.describe_image(own_repository, digest=first.digest).tags == (f"context-{first.context_digest[:12]}",)


def test_publish_digest_follows_dockerfile_and_requirements(own_repository, context_copy):
    base = step_image_publish(tag="a", root=context_copy).digest
    (context_copy / "image" / "requirements.txt").write_text("numpy==2.4.6\n")
    assert step_image_publish(tag="b", root=context_copy).digest != base


def test_context_leaves_out_bytecode_caches(context_copy):
    before = context_digest(context_copy)
    cache = context_copy / "mlaas_steps" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "train.cpython-311.pyc").write_bytes(b"\0bytecode")
    assert context_digest(context_copy) == before
    assert "image/Dockerfile" in context_files(context_copy)
    assert "mlaas_steps/train.py" in context_files(context_copy)
    assert not [name for name in context_files(context_copy) if "__pycache__" in name]


def test_image_publish_command_prints_uri_tag_and_digest(own_repository, capsys):
    call_command("image_publish", "--tag", "v7")
    out = capsys.readouterr().out
    image = gateways.platform_ecr().describe_image(own_repository, tag="v7")
    assert f"repository: {image.repository_uri}\n" in out
    assert "tag: v7\n" in out
    assert f"digest: {image.digest}\n" in out
    assert image.digest == step_image.manifest_digest(_manifest_for(REPO_ROOT))  # a function of the context


def _manifest_for(root: Path) -> str:
    size = sum((root / name).stat().st_size for name in context_files(root))
    return step_image.emulator_manifest(context_digest(root), size=size)


def test_image_publish_rejects_a_bad_tag(emulator):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="`bad tag!` is not a valid image tag"):
        call_command("image_publish", "--tag", "bad tag!")


def _daemonless_docker(directory: Path) -> Path:
    """A docker client whose engine does not answer, as on this machine: `docker info` fails."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "docker"
    script.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


def test_image_publish_without_container_engine_or_emulator_exits_nonzero(tmp_path):
    bin_dir = tmp_path / "bin"
    _daemonless_docker(bin_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"PATH": str(bin_dir), "AWS_ENDPOINT_URL": "", "DJANGO_SETTINGS_MODULE": "mlaas_portal.settings"})
    done = subprocess.run([sys.executable, str(REPO_ROOT / "manage.py"), "image_publish"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == f"CommandError: {step_image.NO_TOOL_SENTENCE}"


def test_container_tool_needs_an_engine_that_answers(tmp_path, monkeypatch):
    dead = _daemonless_docker(tmp_path / "dead")
    monkeypatch.setenv("PATH", str(dead.parent))
    assert step_image.container_tool() is None
    alive = tmp_path / "alive" / "podman"
    alive.parent.mkdir()
    alive.write_text("#!/bin/sh\n[ \"$1\" = info ] && exit 0\nexit 3\n")
    alive.chmod(0o755)
    monkeypatch.setenv("PATH", f"{dead.parent}{os.pathsep}{alive.parent}")
    assert step_image.container_tool() == str(alive)


# --- algorithms pin the image -----------------------------------------------------------------------------

def _algorithm_post(**overrides) -> dict:
    data = {"slug": f"algo-{uuid.uuid4().hex[:6]}", "name": "Pinned forest", "description": "",
            "problem_type": "classification", "entry_point": "random_forest", "default_hyperparameters": "{}",
            "tuning_ranges": "{}", "objective_metric": "f1", "min_metric": "0.5", "active": "on",
            "image": "latest"}
    data.update(overrides)
    return data


def test_staff_algorithm_page_pins_the_digest_of_a_known_tag(client, staff_user, reference_data):
    from builds.models import Algorithm

    repository = f"{settings.MLAAS_RESOURCE_PREFIX}-steps"
    image = gateways.platform_ecr().describe_image(repository, tag="latest")
    client.force_login(staff_user)
    data = _algorithm_post()
    response = client.post(reverse("builds:algorithm_new"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    algorithm = Algorithm.objects.get(slug=data["slug"])
    assert (algorithm.image_repository, algorithm.image_tag, algorithm.image_digest) == (
        image.repository_uri, "latest", image.digest)
    assert algorithm.training_image_uri == f"{image.repository_uri}@{image.digest}"
    assert "/" + repository + "@sha256:" in algorithm.training_image_uri


def test_staff_algorithm_page_names_an_unknown_tag(client, staff_user, reference_data):
    from builds.models import Algorithm

    client.force_login(staff_user)
    data = _algorithm_post(image="no-such-tag")
    response = client.post(reverse("builds:algorithm_new"), data)
    assert response.status_code == 200
    errors = response.context["form"].errors["image"]
    assert errors == [f"The image {settings.MLAAS_RESOURCE_PREFIX}-steps:no-such-tag is not in ECR "
                      "(ImageNotFoundException). Publish it first: `manage.py image_publish --tag TAG`."]
    assert not Algorithm.objects.filter(slug=data["slug"]).exists()


def test_staff_algorithm_page_names_an_unknown_repository(client, staff_user, reference_data):
    client.force_login(staff_user)
    algorithm = reference_data_algorithm()
    before = algorithm.image_digest
    response = client.post(reverse("builds:algorithm_edit", args=[algorithm.slug]),
                           _algorithm_post(slug=algorithm.slug, image="other-repo:latest"))
    assert response.status_code == 200
    assert response.context["form"].errors["image"] == [
        "The image other-repo:latest is not in ECR (RepositoryNotFoundException). "
        "Publish it first: `manage.py image_publish --tag TAG`."]
    algorithm.refresh_from_db()
    assert algorithm.image_digest == before


def reference_data_algorithm():
    from builds.models import Algorithm

    return Algorithm.objects.get(slug="gbm-classifier")


def test_staff_algorithm_edit_repins_another_tag(client, staff_user, reference_data, own_repository, context_copy):
    (context_copy / "mlaas_steps" / "steps.py").write_text("# another step package\n")
    other = step_image_publish(tag="v2", root=context_copy)
    algorithm = reference_data_algorithm()
    client.force_login(staff_user)
    page = client.get(reverse("builds:algorithm_edit", args=[algorithm.slug]))
    assert page.context["form"].initial["image"] == "mlaas-steps:latest"
    response = client.post(reverse("builds:algorithm_edit", args=[algorithm.slug]),
                           _algorithm_post(slug=algorithm.slug, name=algorithm.name, image=f"{own_repository}:v2"))
    assert response.status_code == 302
    algorithm.refresh_from_db()
    assert algorithm.training_image_uri == other.pinned_uri
    assert algorithm.image_tag == "v2"


def test_algorithm_pages_are_staff_only(client, make_member, make_tenant):
    tenant = make_tenant()
    client.force_login(make_member(tenant, role="owner"))
    assert client.get(reverse("builds:algorithm_new")).status_code == 404
    assert client.get(reverse("builds:algorithm_edit", args=["gbm-classifier"])).status_code == 404


def test_admin_algorithm_form_checks_the_image(client, reference_data):
    from django.contrib.auth.models import User

    from builds.models import Algorithm

    admin = User.objects.create_superuser("root", "root@example.com", "pw-Secret-123")
    client.force_login(admin)
    algorithm = reference_data_algorithm()
    url = reverse("admin:builds_algorithm_change", args=[algorithm.pk])
    refused = client.post(url, _algorithm_post(slug=algorithm.slug, image="v404"))
    assert refused.status_code == 200
    assert "mlaas-steps:v404 is not in ECR" in refused.content.decode()
    data = _algorithm_post(image="latest")
    assert client.post(reverse("admin:builds_algorithm_add"), data).status_code == 302
    saved = Algorithm.objects.get(slug=data["slug"])
    assert saved.image_digest == gateways.platform_ecr().describe_image("mlaas-steps", tag="latest").digest


# --- seed, bootstrap, builds -------------------------------------------------------------------------------

def test_seed_pins_the_published_image(reference_data):
    from builds.models import Algorithm

    current = gateways.platform_ecr().describe_image(f"{settings.MLAAS_RESOURCE_PREFIX}-steps", tag="latest")
    pinned = set(Algorithm.objects.values_list("image_repository", "image_tag", "image_digest"))
    assert pinned == {(current.repository_uri, "latest", current.digest)}
    assert current.digest == step_image.manifest_digest(_manifest_for(REPO_ROOT))


def test_seed_repoints_algorithms_on_the_seeded_tag_only(reference_data, own_repository, context_copy):
    from builds.models import Algorithm
    from mlaas_portal.demo import seed_algorithms

    ecr = gateways.platform_ecr()
    first = step_image_publish(tag="latest", root=context_copy)
    seed_algorithms(ecr.describe_image(own_repository, tag="latest"))
    # Moved from the session's repository to this one, although the digest is the same (same context).
    assert {a.training_image_uri for a in Algorithm.objects.all()} == {first.pinned_uri}
    Algorithm.objects.filter(slug="linear-regressor").update(image_tag="pinned-by-staff")
    Algorithm.objects.filter(slug="gbm-regressor").update(image_tag="")  # staff pinned it by digest
    (context_copy / "mlaas_steps" / "metrics.py").write_text("# changed\n")
    second = step_image_publish(tag="latest", root=context_copy)
    seed_algorithms(ecr.describe_image(own_repository, tag="latest"))
    uris = {a.slug: a.training_image_uri for a in Algorithm.objects.all()}
    assert uris.pop("linear-regressor") == first.pinned_uri
    assert uris.pop("gbm-regressor") == first.pinned_uri
    assert set(uris.values()) == {second.pinned_uri}


def test_bootstrap_reports_the_step_image(emulator):
    from builds.platform import platform_bootstrap

    resources = {resource.name: resource for resource in platform_bootstrap()}
    image = gateways.platform_ecr().describe_image(f"{settings.MLAAS_RESOURCE_PREFIX}-steps", tag="latest")
    assert resources["step image"].arn == image.pinned_uri


def test_describe_image_names_a_missing_image(own_repository):
    with pytest.raises(AwsNotFound, match=f"The image {own_repository}:latest is not in ECR"):
        step_image.step_image_resolve("latest")


def test_builds_pass_the_digest_pinned_uri(reference_data):
    from builds.engines.sagemaker import pipeline_parameters
    from builds.launch import launch_for
    from tests.factories import BuildFactory

    build = BuildFactory(status="queued")
    launch = launch_for(build)
    image = gateways.platform_ecr().describe_image(f"{settings.MLAAS_RESOURCE_PREFIX}-steps", tag="latest")
    assert launch.training_image_uri == image.pinned_uri
    assert pipeline_parameters(launch)["TrainingImageUri"] == image.pinned_uri
    assert all(alternative["training_image_uri"] == image.pinned_uri for alternative in launch.alternatives.values())


def test_container_path_builds_the_context_logs_in_and_pushes(own_repository, context_copy, tmp_path):
    """The docker/podman path's commands, with a recording tool (no engine here to build for real): the build
    sees exactly the context's files, the ECR token goes in on stdin, and the digest printed is the one
    DescribeImages reports for the pushed tag (registered here as the push would have left it)."""
    log = tmp_path / "tool.log"
    tool = tmp_path / "bin" / "docker"
    tool.parent.mkdir()
    tool.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  build) for last; do :; done; (cd "$last" && find . -type f | sort) >> {log} ;;
  login) echo "password-bytes=$(cat | wc -c)" >> {log} ;;
esac
exit 0
""")
    tool.chmod(0o755)
    ecr = gateways.platform_ecr()
    uri = ecr.ensure_repository(own_repository, tags={})
    pushed = step_image._register_on_emulator(tag="v9", root=context_copy)  # what the push leaves in ECR

    image = step_image._build_and_push(str(tool), tag="v9", root=context_copy)

    lines = log.read_text().splitlines()
    build = lines[0].split()
    assert build[:2] == ["build", "--file"] and build[2].endswith("/image/Dockerfile")
    assert build[3:7] == ["--tag", f"{uri}:v9", "--label", f"org.mlaas.context-digest=sha256:{image.context_digest}"]
    files = [line.removeprefix("./") for line in lines[1:] if line.startswith("./")]
    assert files == context_files(context_copy)
    login = next(line for line in lines if line.startswith("login"))
    assert login == f"login --username AWS --password-stdin {uri.split('/')[0]}"
    assert int(lines[lines.index(login) + 1].removeprefix("password-bytes=")) > 0
    assert lines[-1] == f"push {uri}:v9"
    assert (image.repository_uri, image.tag, image.digest, image.method) == (uri, "v9", pushed.digest, "docker")


@pytest.mark.django_db(transaction=True)
def test_migration_splits_the_old_image_uri_into_repository_and_tag():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("builds", "0007_entry_point_help_text"), ("builds", "0008_algorithm_pinned_step_image")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old = executor.loader.project_state([before]).apps.get_model("builds", "Algorithm")
    common = dict(problem_type="classification", entry_point="linear", objective_metric="f1", min_metric=0.5)
    old.objects.create(slug="stock", name="Stock", **common,
                       training_image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1")
    old.objects.create(slug="pinned", name="Pinned", **common,
                       training_image_uri="localhost:5000/steps@sha256:" + "a" * 64)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([after])
    new = executor.loader.project_state([after]).apps.get_model("builds", "Algorithm")
    assert sorted(new.objects.values_list("slug", "image_repository", "image_tag", "image_digest")) == [
        ("pinned", "localhost:5000/steps", "", "sha256:" + "a" * 64),
        ("stock", "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn", "1.2-1", ""),
    ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
