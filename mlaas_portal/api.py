"""REST API /api/v1/ (django-ninja), assembled from the apps' routers (tenants.api, builds.api, billing.api):
bearer tokens, JSON errors with a stable code.

Views stay thin: parse, call one service or selector, shape the response.
Every tenant-scoped path resolves through the apps' access helpers (tenants.access, builds.access), so a user of
another tenant gets 404. Every error, including unknown paths and methods, is
JSON `{"code": ..., "message": ..., "fields": ...}`.

No `from __future__ import annotations` here: django-ninja reads the
annotations at import time to build the request models (`Query[...]` under
postponed annotations broke every paginated list with a 500).
"""

import functools
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from billing.api import router as billing_router
from builds.api import router as builds_router
from core.api import RateLimited, error_body
from core.aws.errors import AwsError, AwsValidationError
from tenants.api import BearerToken
from tenants.api import router as tenants_router

logger = logging.getLogger(__name__)

def _json_method_errors(view):
    """Wrap a ninja path view so a wrong method answers JSON 405 like every other error."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = JsonResponse(error_body("method_not_allowed", f"Use {allowed} on this path."), status=405)
            response["Allow"] = allowed
        return response

    return wrapper


@csrf_exempt
def _unknown_path(request, *args, **kwargs):
    return JsonResponse(error_body("not_found", "No such API path; see /api/v1/docs."), status=404)


RATE_LIMITED_RESPONSE = {
    "description": "Too many requests for this token or its tenant (tenants.api_limits): the JSON error shape "
                   "with code `rate_limited`; retry after the seconds in Retry-After.",
    "headers": {"Retry-After": {"description": "Whole seconds to wait before retrying.",
                                "schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
}


class PortalAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """Every authenticated operation may answer 429 (the limit is checked with the token, in
        tenants.api.BearerToken): declared once here, with its Retry-After header, which ninja's
        per-operation `response=` cannot describe. The anonymous catalog is not rate limited."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema["paths"].values():
            for operation in operations.values():
                if operation.get("security"):
                    operation["responses"][429] = RATE_LIMITED_RESPONSE
        return schema

    def _get_urls(self):
        patterns = super()._get_urls()
        for pattern in patterns:
            if isinstance(pattern, URLPattern):
                pattern.callback = _json_method_errors(pattern.callback)
        return [*patterns, re_path(r"^.*$", _unknown_path)]


api = PortalAPI(
    title="MLaaS Portal API",
    version="1",
    description="Tenants, credentials, uploads, builds, models and costs. Authenticate with "
                "`Authorization: Bearer <token>` (create one on the portal's API tokens page or with "
                "`manage.py create_api_token`). Errors are JSON `{code, message, fields}`; another tenant's "
                "objects answer 404. Lists are paginated with `page` and `page_size` (at most 100).",
    auth=BearerToken(),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


def _error(request, status: int, code: str, message: str, fields=None):
    return api.create_response(request, error_body(code, message, fields), status=status)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "not_found", "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return _error(request, 403, "forbidden", str(exc) or "Not allowed.")


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, "unauthorized", "Send a valid token: Authorization: Bearer <token>.")


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()} if hasattr(exc, "error_dict") else None
    return _error(request, 400, "invalid", "; ".join(exc.messages), fields)


@api.exception_handler(NinjaValidationError)
def _invalid_request(request, exc: NinjaValidationError):
    fields: dict[str, list[str]] = {}
    for err in exc.errors:
        loc = ".".join(str(p) for p in err.get("loc", [])[1:]) or "body"
        fields.setdefault(loc, []).append(err.get("msg", "invalid"))
    return _error(request, 422, "invalid_request", "The request does not match the schema.", fields)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    code = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            429: "throttled"}.get(exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


@api.exception_handler(RateLimited)
def _rate_limited(request, exc: RateLimited):
    response = _error(request, 429, "rate_limited", str(exc))
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE; that is the client's doing, not a 500.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 413, "too_large", f"The request body is over {limit:,} bytes.")


@api.exception_handler(AwsError)
def _aws(request, exc: AwsError):
    if isinstance(exc, AwsValidationError):
        return _error(request, 400, "invalid", f"The storage service refused the request: {exc}")
    if exc.retryable:
        return _error(request, 503, "aws_unavailable", "The storage service is busy; try again shortly.")
    return _error(request, 502, "aws_error", "The storage service refused the request.")


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    logger.exception("API %s %s failed", request.method, request.path)
    return _error(request, 500, "server_error", "Something went wrong on our side; it has been logged.")


api.add_router("", tenants_router)
api.add_router("", builds_router)
api.add_router("", billing_router)
