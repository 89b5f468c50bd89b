"""The portal's middleware: times in the user's own time zone (sent by the browser as a cookie), and the
Content Security Policy with the storage origin browsers upload to."""

from __future__ import annotations

import zoneinfo
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.utils import timezone


def storage_upload_origins() -> list[str]:
    """Where the upload page POSTs a file: the S3 endpoint (the emulator locally, the region's S3 on AWS).

    Read per response, not at import: tests start the emulator on a free port after settings are loaded.
    """
    if settings.AWS_ENDPOINT_URL:
        parts = urlsplit(settings.AWS_ENDPOINT_URL)
        return [f"{parts.scheme}://{parts.netloc}"]
    region = settings.AWS_REGION
    return [f"https://*.s3.{region}.amazonaws.com", f"https://s3.{region}.amazonaws.com",
            "https://*.s3.amazonaws.com"]


class PortalCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, with the upload origin added to connect-src."""

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only=report_only)
        if not report_only:
            update = dict(parts.update or {})
            update["connect-src"] = [*update.get("connect-src", []), *storage_upload_origins()]
            parts.update = update
        return parts


class UserTimezoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)
