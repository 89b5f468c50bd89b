"""`manage.py image_publish [--tag T]`: build and push the step image, or register it on the emulator."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from builds.step_image import DEFAULT_TAG, StepImageError, step_image_publish
from core.aws.errors import AwsError


class Command(BaseCommand):
    help = ("Publish the step image (image/Dockerfile over mlaas_steps) to the platform's ECR repository "
            "<prefix>-steps: built and pushed with docker or podman, or, against the local emulator, registered "
            "with a manifest whose digest is a hash of the build context. Prints repository URI, tag and digest.")

    def add_arguments(self, parser):
        parser.add_argument("--tag", default=DEFAULT_TAG, help=f"Image tag (default: {DEFAULT_TAG}).")

    def handle(self, *args, tag: str, **options):
        try:
            image = step_image_publish(tag=tag)
        except StepImageError as exc:
            raise CommandError(str(exc)) from exc
        except AwsError as exc:
            hint = " (retry may help)" if exc.retryable else ""
            raise CommandError(f"publishing the step image failed: {exc}{hint}") from exc
        how = "registered on the emulator" if image.method == "emulator" else f"pushed with {image.method}"
        self.stdout.write(f"repository: {image.repository_uri}")
        self.stdout.write(f"tag: {image.tag}")
        self.stdout.write(f"digest: {image.digest}")
        self.stdout.write(self.style.SUCCESS(f"step image {how}: {image.pinned_uri}"))
