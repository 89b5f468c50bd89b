"""The step image: its build context, the digest of that context, publishing it, and resolving references.

The image is what SageMaker runs for every step (`image/Dockerfile` over the `mlaas_steps` package), kept in
the platform's ECR repository `<prefix>-steps`. Algorithms pin it by digest, so a build runs exactly the
step code that was checked when the algorithm was saved.

Publishing (`manage.py image_publish`, `make image`, and `platform_bootstrap` on the emulator):
- against the emulator, no container tool is needed: the image is registered by PutImage with a manifest
  whose config and layer digests are the digest of the build context (Dockerfile, requirements, entry point
  scripts, every file of `mlaas_steps`, sorted), so changed step code gives a new image digest. Each image
  also keeps a `context-<hash>` tag, so the digests older algorithms pinned stay resolvable as on AWS
  (where a re-tagged image stays in the repository, untagged);
- against AWS, docker or podman (with a working engine: a client without a daemon does not count) builds
  the same context, logs in with an ECR token and pushes; the digest printed is the one DescribeImages
  reports afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.aws import gateways
from core.aws.clients import platform_config
from core.aws.ecr import MANIFEST_MEDIA_TYPE, EcrImage
from tenants import naming

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTEXT_DIRS = ("image", "mlaas_steps")  # what image/Dockerfile copies, relative to the context root
DOCKERFILE = "image/Dockerfile"
DEFAULT_TAG = "latest"
CONTENT_TAG_PREFIX = "context-"
CONTAINER_TOOLS = ("docker", "podman")
TOOL_TIMEOUT_SECONDS = 15  # `docker info` against a dead daemon socket can hang
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ECR's image tag rule
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

NO_TOOL_SENTENCE = (
    "Cannot publish the step image: no container engine answers (install Docker or Podman and start its "
    "daemon, so that `docker info` succeeds) and AWS_ENDPOINT_URL does not point at the local emulator.")


class StepImageError(Exception):
    """Publishing or resolving the step image failed; the message is the sentence to show."""


@dataclass(frozen=True)
class PublishedImage:
    repository_uri: str
    tag: str
    digest: str
    context_digest: str
    method: str  # "emulator", or the container tool that pushed it

    @property
    def pinned_uri(self) -> str:
        return f"{self.repository_uri}@{self.digest}"


# --- the build context ------------------------------------------------------------------------------------

def context_files(root: Path = REPO_ROOT) -> list[str]:
    """Every file of the build context as sorted POSIX paths relative to `root` (bytecode caches left out)."""
    files = []
    for top in CONTEXT_DIRS:
        for path in (root / top).rglob("*"):
            relative = path.relative_to(root)
            if (path.is_file() and not _IGNORED_PARTS.intersection(relative.parts)
                    and path.suffix not in (".pyc", ".pyo")):
                files.append(relative.as_posix())
    return sorted(files)


def context_digest(root: Path = REPO_ROOT) -> str:
    """sha256 (hex) of the build context: each file's path, executable bit and bytes, in sorted order."""
    digest = hashlib.sha256()
    for name in context_files(root):
        path = root / name
        data = path.read_bytes()
        executable = b"x" if path.stat().st_mode & 0o111 else b"-"
        digest.update(b"%s\0%s\0%d\0" % (name.encode(), executable, len(data)))
        digest.update(data)
    return digest.hexdigest()


def emulator_manifest(context_hex: str, *, size: int) -> str:
    """A Docker v2 image manifest standing for the build context (config and layer carry its digest)."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": size,
                   "digest": f"sha256:{context_hex}"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size,
                    "digest": f"sha256:{context_hex}"}],
    }, sort_keys=True, separators=(",", ":"))


def manifest_digest(manifest: str) -> str:
    """An image's digest as a registry computes it: sha256 of the manifest's bytes."""
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


# --- publishing ---------------------------------------------------------------------------------------------

def container_tool() -> str | None:
    """The first of docker, podman on PATH whose engine answers `info`; None when none does."""
    for name in CONTAINER_TOOLS:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            answered = subprocess.run([path, "info"], capture_output=True, timeout=TOOL_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if answered.returncode == 0:
            return path
    return None


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag or ""):
        raise StepImageError(f"`{tag}` is not a valid image tag: use up to 128 letters, digits, `_`, `.` and `-`, "
                             "starting with a letter, digit or `_`.")
    return tag


def step_image_publish(*, tag: str = DEFAULT_TAG, root: Path = REPO_ROOT) -> PublishedImage:
    """Publish the step image built from `root` under `tag` in the platform's repository.

    The emulator gets a registered manifest; AWS needs a working container engine. Raises StepImageError
    (neither is available, or the tool failed) or AwsError.
    """
    validate_tag(tag)
    if platform_config().is_emulator:
        return _register_on_emulator(tag=tag, root=root)
    tool = container_tool()
    if tool is None:
        raise StepImageError(NO_TOOL_SENTENCE)
    return _build_and_push(tool, tag=tag, root=root)


def _register_on_emulator(*, tag: str, root: Path) -> PublishedImage:
    ecr = gateways.platform_ecr()
    repository = naming.step_image_repository()
    uri = ecr.ensure_repository(repository, tags=naming.platform_tags())
    context_hex = context_digest(root)
    size = sum((root / name).stat().st_size for name in context_files(root))
    manifest = emulator_manifest(context_hex, size=size)
    digest = ecr.put_image(repository, tag=tag, manifest=manifest, digest=manifest_digest(manifest))
    ecr.put_image(repository, tag=f"{CONTENT_TAG_PREFIX}{context_hex[:12]}", manifest=manifest,
                  digest=manifest_digest(manifest))
    reported = ecr.describe_image(repository, tag=tag).digest
    if reported != digest:
        raise StepImageError(f"ECR reports {reported} for {repository}:{tag}, not the {digest} just registered: "
                             "someone published the tag at the same time; run the command again.")
    return PublishedImage(repository_uri=uri, tag=tag, digest=reported, context_digest=context_hex,
                          method="emulator")


def _build_and_push(tool: str, *, tag: str, root: Path) -> PublishedImage:
    ecr = gateways.platform_ecr()
    repository = naming.step_image_repository()
    uri = ecr.ensure_repository(repository, tags=naming.platform_tags())
    context_hex = context_digest(root)
    target = f"{uri}:{tag}"
    with tempfile.TemporaryDirectory(prefix="mlaas-image-") as tmp:
        for name in context_files(root):  # exactly the hashed files, nothing else of the repository
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, Path(tmp) / name)
        _run_tool([tool, "build", "--file", str(Path(tmp) / DOCKERFILE), "--tag", target,
                   "--label", f"org.mlaas.context-digest=sha256:{context_hex}", tmp], what="build")
    login = ecr.registry_login()
    _run_tool([tool, "login", "--username", login.username, "--password-stdin", login.registry],
              what="log in to ECR", stdin=login.password)
    _run_tool([tool, "push", target], what="push")
    pushed = ecr.describe_image(repository, tag=tag)
    return PublishedImage(repository_uri=uri, tag=tag, digest=pushed.digest, context_digest=context_hex,
                          method=Path(tool).name)


def _run_tool(command: list[str], *, what: str, stdin: str | None = None) -> None:
    """Run the container tool, its output streaming to ours; a failure names the step and the tool's exit."""
    try:
        completed = subprocess.run(command, input=stdin, text=True, check=False)
    except OSError as exc:
        raise StepImageError(f"could not {what} the step image: {exc}") from exc
    if completed.returncode != 0:
        raise StepImageError(f"could not {what} the step image: `{Path(command[0]).name} {command[1]}` "
                             f"exited with status {completed.returncode} (its output is above).")


# --- references -----------------------------------------------------------------------------------------------

def parse_reference(reference: str) -> tuple[str, str, str]:
    """`TAG`, `REPOSITORY:TAG` or `REPOSITORY@sha256:HEX` -> (repository, tag, digest); the platform's
    repository when none is named."""
    text = (reference or "").strip()
    repository, tag, digest = naming.step_image_repository(), "", ""
    if "@" in text:
        repository, _, digest = text.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise StepImageError(f"`{reference}` does not name a digest of the form sha256:<64 hex digits>.")
    elif ":" in text:
        repository, _, tag = text.rpartition(":")
    else:
        tag = text or DEFAULT_TAG
    repository = repository.rsplit("/", 1)[-1] or naming.step_image_repository()  # a full URI names its repo
    if tag:
        validate_tag(tag)
    return repository, tag, digest


def step_image_resolve(reference: str) -> EcrImage:
    """The image `reference` names, as DescribeImages reports it (AwsNotFound, naming it, when absent)."""
    repository, tag, digest = parse_reference(reference)
    return gateways.platform_ecr().describe_image(repository, tag=tag, digest=digest)


def step_image_current(*, tag: str = DEFAULT_TAG) -> EcrImage:
    """The image algorithms should pin now: on the emulator published first (milliseconds), on AWS the one
    the vendor pushed under `tag` (AwsNotFound when nobody has)."""
    if platform_config().is_emulator:
        step_image_publish(tag=tag)
    return step_image_resolve(tag)
