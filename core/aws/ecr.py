"""EcrGateway: the step image's repository, as the platform sees it."""

from __future__ import annotations

from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError


class EcrGateway(Gateway):
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
