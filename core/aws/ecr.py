"""ECR: the step image's repository, image registration and the DescribeImages check.

The platform keeps one repository, `<prefix>-steps`; algorithms pin an image of it by digest. On the
emulator an image is registered by PutImage with a manifest (moto has no registry to push layers to); on AWS
the container tool pushes it and DescribeImages reports what arrived.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError, AwsNotFound

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class EcrImage:
    repository_name: str
    repository_uri: str  # <registry>/<name>
    digest: str  # sha256:<64 hex>
    tags: tuple[str, ...]

    @property
    def pinned_uri(self) -> str:
        return f"{self.repository_uri}@{self.digest}"


@dataclass(frozen=True)
class RegistryLogin:
    """What `docker login` needs; the password is a 12-hour token: never log it."""

    registry: str
    username: str
    password: str

    def __repr__(self) -> str:
        return f"RegistryLogin(registry={self.registry!r}, username={self.username!r})"


class EcrGateway(Gateway):
    def ensure_repository(self, name: str, *, tags: dict[str, str]) -> str:
        """The repository's URI, creating it (scan on push) if missing."""
        try:
            return self.repository_uri(name)
        except AwsNotFound:
            pass
        try:
            created = self._call("create_repository", repositoryName=name,
                                 imageScanningConfiguration={"scanOnPush": True},
                                 tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except AwsError as exc:
            if exc.code != "RepositoryAlreadyExistsException":  # created concurrently: fine
                raise
            return self.repository_uri(name)
        return created["repository"]["repositoryUri"]

    def repository_uri(self, name: str) -> str:
        """Raises AwsNotFound (RepositoryNotFoundException) when there is no such repository."""
        repositories = self._call("describe_repositories", repositoryNames=[name])["repositories"]
        return repositories[0]["repositoryUri"]

    def put_image(self, name: str, *, tag: str, manifest: str, digest: str) -> str:
        """Register `manifest` under `tag`; returns the digest ECR reports. Idempotent.

        `digest` is the manifest's own (sha256 of its bytes), which AWS checks and moto takes as given.
        """
        try:
            image = self._call("put_image", repositoryName=name, imageTag=tag, imageManifest=manifest,
                               imageManifestMediaType=MANIFEST_MEDIA_TYPE, imageDigest=digest)["image"]
        except AwsError as exc:
            if exc.code != "ImageAlreadyExistsException":  # this manifest already carries this tag
                raise
            return self.describe_image(name, tag=tag).digest
        return image["imageId"]["imageDigest"]

    def describe_image(self, name: str, *, tag: str = "", digest: str = "") -> EcrImage:
        """The image with `tag` (or `digest`); AwsNotFound names the image when ECR has none."""
        image_id = {"imageDigest": digest} if digest else {"imageTag": tag}
        try:
            detail = self._call("describe_images", repositoryName=name, imageIds=[image_id])["imageDetails"][0]
        except AwsNotFound as exc:
            raise AwsNotFound(f"The image {name}{'@' + digest if digest else ':' + tag} is not in ECR ({exc.code}).",
                              code=exc.code, operation=exc.operation) from exc
        return EcrImage(repository_name=name, repository_uri=self.repository_uri(name),
                        digest=detail["imageDigest"], tags=tuple(detail.get("imageTags") or ()))

    def registry_login(self) -> RegistryLogin:
        data = self._call("get_authorization_token")["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        registry = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
        return RegistryLogin(registry=registry, username=username, password=password)

    def latest_image(self, repository: str) -> dict[str, Any] | None:
        """The most recently pushed image of `repository` (digest, tags, pushed at); None if it holds none.

        Raises `AwsError` with code RepositoryNotFoundException when the repository does not exist.
        """
        images: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"repositoryName": repository}
        while True:
            page = self._call("describe_images", **kwargs)
            images.extend(page.get("imageDetails", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        if not images:
            return None
        return max(images, key=lambda image: (image.get("imagePushedAt") is not None, image.get("imagePushedAt")))

    @staticmethod
    def is_missing_repository(exc: AwsError) -> bool:
        return exc.code == "RepositoryNotFoundException"
