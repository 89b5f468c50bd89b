"""Who gets what, for every URL: the portal's routes (django.urls, walked recursively) and every API operation
(from the OpenAPI schema), each asked by anonymous, a member and the owner of the first tenant, the owner of
another tenant, and staff, with the outcome pinned in the tables below.

A new route or API operation without an entry fails `test_every_url_has_an_entry` /
`test_every_api_operation_has_an_entry` with the exact line to add. Path parameters are filled with real
objects of the first tenant (its build, model version, ...). Every case runs inside a savepoint that is rolled
back afterwards, so a POST that changes a row (cancel, invite, approve) leaves the next case a fresh object,
and nothing reaches Redis (jobs are enqueued on commit, and nothing commits). AWS is the session's emulator, asked
only where the product must ask it (the step image's digest, a model artifact's presence, the billing setup check).
The data is made once for the module.

Outcomes: an int is the expected status code; LOGIN is a redirect to the portal's login with `next` set to the
path asked; ADMIN_LOGIN the same for the admin's login page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

LOGIN = "login"
ADMIN_LOGIN = "admin-login"
ROLES = ("anonymous", "member", "owner", "other_owner", "staff")
THIS_FILE = "tests/test_authorization_matrix.py"

# The mark makes pytest-django create the test database; the module's data lives in `matrix`'s transaction.
pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Row:
    """The expected outcome per role, in ROLES order."""

    anonymous: int | str
    member: int | str
    owner: int | str
    other_owner: int | str
    staff: int | str

    def __getitem__(self, role: str) -> int | str:
        return getattr(self, role)


@dataclass(frozen=True)
class Case:
    """What a request sends besides the path: form/JSON data, a query string, and a tweak of the data made
    inside the case's savepoint (to reach a branch that needs no AWS)."""

    data: Callable[[SimpleNamespace], dict] | None = None
    query: str = ""
    setup: Callable[[SimpleNamespace], None] | None = None


# --- Common shapes -----------------------------------------------------------------------------------------------

PUBLIC = Row(200, 200, 200, 200, 200)
SIGNED_IN = Row(LOGIN, 200, 200, 200, 200)             # any signed-in user, about themselves
TENANT = Row(LOGIN, 200, 200, 404, 200)                # the tenant's members and staff; a stranger gets 404
TENANT_OWNER_POST = Row(LOGIN, 404, 302, 404, 302)     # the tenant's owner (and staff) act; a member gets 404
STAFF_PAGE = Row(LOGIN, 404, 404, 404, 200)            # vendor pages: tenant users get 404, never a hint
STAFF_POST = Row(LOGIN, 404, 404, 404, 302)
STAFF_POST_ONLY_GET = Row(LOGIN, 404, 404, 404, 405)   # staff_required first, then require_POST
POST_ONLY_GET = Row(LOGIN, 405, 405, 405, 405)         # login_required, then require_POST, before any lookup
ADMIN = Row(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200)
API_PUBLIC_DOC = PUBLIC
API_TENANT = Row(401, 200, 200, 404, 200)
API_SIGNED_IN = Row(401, 200, 200, 200, 200)


def _admin(staff: int | str) -> Row:
    return Row(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, staff)


# --- Path parameters: real objects of the first tenant ----------------------------------------------------------

PARAMS: dict[str, Callable[[SimpleNamespace], object]] = {
    "slug": lambda d: d.tenant.slug,
    "code": lambda d: d.build.code,
    "version": lambda d: d.version.version,
    "uidb64": lambda d: "MQ",
    "token": lambda d: "set-password-token-not-valid",
    "queue_index": lambda d: 0,
    "job_id": lambda d: d.rq_job.id,
    "result_id": lambda d: "no-such-result",
    "key": lambda d: "rq:worker:no-such-worker",
    "scheduler_index": lambda d: 0,
    "connection_index": lambda d: 0,
    "scheduler_name": lambda d: "no-such-scheduler",
    "cron_job_name": lambda d: "no-such-cron-job",
    "id": lambda d: d.users["member"].pk,
    "build_id": lambda d: d.build.code,
    "name": lambda d: d.endpoint.name,
    "webhook_id": lambda d: d.webhook.code,
    "delivery_id": lambda d: d.delivery.code,
}

# Per route, parameters that mean something else there (a plan's slug, an access request's code, ...).
ROUTE_PARAMS: dict[str, dict[str, Callable[[SimpleNamespace], object]]] = {
    "tenants/plans/<slug:slug>/": {"slug": lambda d: d.tenant.plan.slug},
    "tenants/requests/<uuid:code>/done/": {"code": lambda d: d.access_request.code},
    "tenants/<slug:slug>/<str:action>/": {"action": lambda d: "suspend"},
    "tenants/<slug:slug>/webhooks/<uuid:code>/": {"code": lambda d: d.webhook.code},
    "tenants/<slug:slug>/webhooks/<uuid:code>/<str:action>/": {"code": lambda d: d.webhook.code,
                                                                "action": lambda d: "pause"},
    "tenants/<slug:slug>/webhooks/<uuid:code>/deliveries/<uuid:delivery>/resend/": {
        "code": lambda d: d.webhook.code, "delivery": lambda d: d.delivery.code},
    "builds/<uuid:code>/cancel/": {"code": lambda d: d.queued.code},  # the failed build is past cancelling
    "builds/algorithms/<slug:slug>/edit/": {"slug": lambda d: d.build.algorithm.slug},
    "builds/batch/<slug:slug>/<uuid:code>/": {"code": lambda d: d.batch_job.code},
    "builds/batch/<slug:slug>/<uuid:code>/start/": {"code": lambda d: d.batch_job.code},
    "builds/batch/<slug:slug>/<uuid:code>/download/": {"code": lambda d: d.batch_job.code},
    "marketplace/register/<uuid:code>/": {"code": lambda d: d.marketplace_customer.code},
    "admin/r/<path:content_type_id>/<path:object_id>/": {
        "content_type_id": lambda d: d.tenant_content_type.pk, "object_id": lambda d: d.tenant.pk},
}

# Routes written as regular expressions: the concrete path to ask.
REGEX_PATHS: dict[str, str] = {
    "admin/rq/^stats.json/?$": "/admin/rq/stats.json",
    "admin/rq/^stats.json/(?P<token>[\\w]+)?/?$": "/admin/rq/stats.json/not-the-token/",
    "admin/django_rq/dashboard/^stats.json/?$": "/admin/django_rq/dashboard/stats.json",
    "admin/django_rq/dashboard/^stats.json/(?P<token>[\\w]+)?/?$":
        "/admin/django_rq/dashboard/stats.json/not-the-token/",
    "admin/^(?P<app_label>auth|django_rq|tenants|builds|billing|axes)/$": "/admin/tenants/",
    "admin/(?P<url>.*)$": "/admin/no-such-page/",
    "api/v1/^.*$": "/api/v1/no-such-path",
}

# --- The portal's routes -----------------------------------------------------------------------------------------

def _suspended(d):
    d.tenant.status = "suspended"
    d.tenant.save(update_fields=["status"])


def _unregistered(d):
    d.version.arn = ""
    d.version.save(update_fields=["arn"])


def _rejected(d):
    d.version.approval_status = "Rejected"
    d.version.save(update_fields=["approval_status"])


WEB: dict[tuple[str, str], tuple[Row, Case] | Row] = {
    ("", "GET"): SIGNED_IN,
    ("catalog/", "GET"): PUBLIC,
    ("catalog/", "POST"): (PUBLIC, Case(data=lambda d: {})),  # the public access-request form: errors, no row
    # Marketplace's form posts the buyer here; without its token every visitor is told so (400), before AWS.
    ("marketplace/register", "GET"): Row(400, 400, 400, 400, 400),
    ("marketplace/register", "POST"): (Row(400, 400, 400, 400, 400), Case(data=lambda d: {})),
    ("marketplace/register/<uuid:code>/", "GET"): PUBLIC,  # the buyer's own link: the code is the secret
    ("marketplace/register/<uuid:code>/", "POST"): (PUBLIC, Case(data=lambda d: {})),  # form errors, no row
    ("tokens/", "GET"): SIGNED_IN,
    ("tokens/", "POST"): (SIGNED_IN, Case(data=lambda d: {"name": "matrix"})),  # a token of one's own
    ("healthz", "GET"): PUBLIC,
    ("login/", "GET"): PUBLIC,
    ("login/", "POST"): (PUBLIC, Case(data=lambda d: {})),
    ("logout/", "GET"): Row(405, 405, 405, 405, 405),
    ("logout/", "POST"): Row(*["302 to /login/"] * 5),
    ("reset/<uidb64>/<token>/", "GET"): PUBLIC,  # an invalid link says so
    ("reset/done/", "GET"): PUBLIC,
    ("tenants/", "GET"): STAFF_PAGE,
    ("tenants/new/", "GET"): STAFF_PAGE,
    ("tenants/new/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),
    ("tenants/plans/", "GET"): STAFF_PAGE,
    ("tenants/plans/<slug:slug>/", "GET"): STAFF_PAGE,
    ("tenants/plans/<slug:slug>/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),
    ("tenants/requests/", "GET"): STAFF_PAGE,
    ("tenants/scheduling/", "GET"): STAFF_PAGE,
    ("tenants/scheduling/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),  # form errors, nothing saved
    ("tenants/autocomplete/", "GET"): (STAFF_PAGE, Case(query="q=matrix")),  # staff's tenant picker (JSON)
    ("tenants/requests/<uuid:code>/done/", "GET"): STAFF_POST_ONLY_GET,
    ("tenants/requests/<uuid:code>/done/", "POST"): STAFF_POST,
    ("tenants/<slug:slug>/", "GET"): TENANT,
    ("tenants/<slug:slug>/steps/", "GET"): TENANT,
    ("tenants/<slug:slug>/offboard/", "GET"): STAFF_PAGE,
    ("tenants/<slug:slug>/offboard/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),
    ("tenants/<slug:slug>/invite/", "GET"): POST_ONLY_GET,
    ("tenants/<slug:slug>/invite/", "POST"): (TENANT_OWNER_POST, Case(data=lambda d: {"email": "new@matrix.example"})),
    ("tenants/<slug:slug>/settings/", "GET"): POST_ONLY_GET,
    ("tenants/<slug:slug>/settings/", "POST"): (TENANT_OWNER_POST, Case(data=lambda d: {})),
    ("tenants/<slug:slug>/credentials/", "GET"): POST_ONLY_GET,
    # Past the access check without AWS: a suspended tenant is told no (the AWS path: tests/test_api.py).
    ("tenants/<slug:slug>/credentials/", "POST"): (Row(LOGIN, 302, 302, 404, 302), Case(setup=_suspended)),
    ("tenants/<slug:slug>/fair-share/", "GET"): STAFF_POST_ONLY_GET,
    ("tenants/<slug:slug>/fair-share/", "POST"): (STAFF_POST, Case(data=lambda d: {"fair_share_weight": "2"})),
    ("tenants/<slug:slug>/webhooks/", "GET"): TENANT,
    # Form errors (no URL, no events): the owner sees them on the page; a member may not add (404).
    ("tenants/<slug:slug>/webhooks/", "POST"): (Row(LOGIN, 404, 200, 404, 200), Case(data=lambda d: {})),
    ("tenants/<slug:slug>/webhooks/<uuid:code>/", "GET"): TENANT,
    ("tenants/<slug:slug>/webhooks/<uuid:code>/<str:action>/", "GET"): POST_ONLY_GET,
    ("tenants/<slug:slug>/webhooks/<uuid:code>/<str:action>/", "POST"): TENANT_OWNER_POST,  # pause
    ("tenants/<slug:slug>/webhooks/<uuid:code>/deliveries/<uuid:delivery>/resend/", "GET"): POST_ONLY_GET,
    # A new delivery row; its send job is enqueued on commit (nothing commits here).
    ("tenants/<slug:slug>/webhooks/<uuid:code>/deliveries/<uuid:delivery>/resend/", "POST"): TENANT_OWNER_POST,
    ("tenants/<slug:slug>/<str:action>/", "GET"): STAFF_POST_ONLY_GET,
    ("tenants/<slug:slug>/<str:action>/", "POST"): STAFF_POST,
    ("builds/", "GET"): SIGNED_IN,  # each sees its own tenant's builds (tests/test_api.py, builds/tests)
    ("builds/algorithms/", "GET"): STAFF_PAGE,
    ("builds/algorithms/new/", "GET"): STAFF_PAGE,
    ("builds/algorithms/new/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),  # form errors before ECR
    ("builds/algorithms/<slug:slug>/edit/", "GET"): STAFF_PAGE,
    ("builds/algorithms/<slug:slug>/edit/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),
    ("builds/queue/", "GET"): STAFF_PAGE,
    ("builds/upload/<slug:slug>/", "GET"): TENANT,
    ("builds/upload/<slug:slug>/", "POST"): (TENANT, Case(data=lambda d: {})),
    ("builds/upload/<slug:slug>/presign/", "GET"): POST_ONLY_GET,
    # A refused file name answers 400 before any AWS call: past the access check.
    ("builds/upload/<slug:slug>/presign/", "POST"): (
        Row(LOGIN, 400, 400, 404, 400), Case(data=lambda d: {"filename": "notes.txt", "size": "10"})),
    ("builds/upload/<slug:slug>/status/", "GET"): (TENANT, Case(query="key=uploads/none.csv")),
    ("builds/upload/<slug:slug>/status/", "POST"): Row(LOGIN, 405, 405, 405, 405),
    ("builds/models/<slug:slug>/", "GET"): TENANT,
    ("builds/models/<slug:slug>/compare/", "GET"): (TENANT, Case(query="a=1&b=2")),
    ("builds/models/<slug:slug>/<int:version>/", "GET"): TENANT,
    ("builds/models/<slug:slug>/<int:version>/decide/", "GET"): POST_ONLY_GET,
    ("builds/models/<slug:slug>/<int:version>/decide/", "POST"): (
        TENANT_OWNER_POST, Case(data=lambda d: {"decision": "reject"})),
    # The artifact is not in storage: the tenant is told so (302 back to its models), a stranger gets 404.
    ("builds/models/<slug:slug>/<int:version>/download/", "GET"): Row(LOGIN, 302, 302, 404, 302),
    ("builds/batch/<slug:slug>/", "GET"): TENANT,
    ("builds/batch/<slug:slug>/new/", "GET"): POST_ONLY_GET,
    # No version chosen: the member is told so (302 back to the list) before any job or upload.
    ("builds/batch/<slug:slug>/new/", "POST"): (Row(LOGIN, 302, 302, 404, 302), Case(data=lambda d: {})),
    ("builds/batch/<slug:slug>/<uuid:code>/", "GET"): TENANT,
    ("builds/batch/<slug:slug>/<uuid:code>/start/", "GET"): POST_ONLY_GET,
    # The job has succeeded: starting it again is refused (302 back with the reason), nothing is read.
    ("builds/batch/<slug:slug>/<uuid:code>/start/", "POST"): Row(LOGIN, 302, 302, 404, 302),
    # Its output is not in storage: 302 back to the job with the reason.
    ("builds/batch/<slug:slug>/<uuid:code>/download/", "GET"): Row(LOGIN, 302, 302, 404, 302),
    ("builds/endpoints/<slug:slug>/", "GET"): TENANT,
    ("builds/endpoints/<slug:slug>/deploy/", "GET"): POST_ONLY_GET,
    # No version chosen: the owner is told so (302 back to the endpoints) before any deploy.
    ("builds/endpoints/<slug:slug>/deploy/", "POST"): (TENANT_OWNER_POST, Case(data=lambda d: {})),
    ("builds/endpoints/<slug:slug>/<slug:name>/delete/", "GET"): POST_ONLY_GET,
    ("builds/endpoints/<slug:slug>/<slug:name>/delete/", "POST"): TENANT_OWNER_POST,  # teardown job on commit
    ("builds/endpoints/<slug:slug>/<slug:name>/score/", "GET"): TENANT,
    # The endpoint is still Creating: the page says it cannot score yet, nothing is invoked.
    ("builds/endpoints/<slug:slug>/<slug:name>/score/", "POST"): (TENANT, Case(data=lambda d: {"rows": "a\n1\n"})),
    ("builds/<uuid:code>/", "GET"): TENANT,
    ("builds/<uuid:code>/cancel/", "GET"): POST_ONLY_GET,
    ("builds/<uuid:code>/cancel/", "POST"): Row(LOGIN, 302, 302, 404, 302),
    ("builds/<uuid:code>/retry/", "GET"): POST_ONLY_GET,
    # The dataset is not in the emulator's bucket: the check fails and the tenant is told so (302 back to the build).
    ("builds/<uuid:code>/retry/", "POST"): Row(LOGIN, 302, 302, 404, 302),
    ("billing/", "GET"): STAFF_PAGE,
    ("billing/sync/", "GET"): STAFF_POST_ONLY_GET,
    ("billing/sync/", "POST"): STAFF_POST,
    ("billing/prices/", "GET"): STAFF_PAGE,
    ("billing/prices/", "POST"): (STAFF_PAGE, Case(data=lambda d: {})),
    ("billing/setup/", "GET"): STAFF_PAGE,
    ("billing/setup/", "POST"): STAFF_POST,  # staff: a check against the emulator's Cost Explorer
    ("billing/marketplace/", "GET"): STAFF_PAGE,
    ("billing/costs.csv", "GET"): STAFF_PAGE,
    ("billing/statements.csv", "GET"): STAFF_PAGE,
    ("billing/tenants/<slug:slug>/", "GET"): TENANT,
    ("billing/tenants/<slug:slug>/statement/", "GET"): TENANT,
    ("billing/tenants/<slug:slug>/costs.csv", "GET"): TENANT,
    ("billing/tenants/<slug:slug>/statement.csv", "GET"): TENANT,
    ("api/v1/openapi.json", "GET"): API_PUBLIC_DOC,
    ("api/v1/docs", "GET"): API_PUBLIC_DOC,
    ("api/v1/", "GET"): Row(404, 404, 404, 404, 404),
    ("api/v1/^.*$", "GET"): Row(404, 404, 404, 404, 404),
}

# The admin site and django-rq's pages check staff themselves; every one is asked here all the same.
WEB.update({
    ("admin/", "GET"): ADMIN,
    ("admin/login/", "GET"): Row(200, 200, 200, 200, 302),
    ("admin/logout/", "GET"): Row(302, 302, 302, 302, 405),  # to /admin/, then its login; staff: POST only
    ("admin/password_change/", "GET"): ADMIN,
    ("admin/password_change/done/", "GET"): ADMIN,
    ("admin/autocomplete/", "GET"): _admin(403),
    ("admin/jsi18n/", "GET"): ADMIN,
    ("admin/r/<path:content_type_id>/<path:object_id>/", "GET"): _admin(404),  # a tenant has no public page
    ("admin/auth/user/<id>/password/", "GET"): ADMIN,
    ("admin/^(?P<app_label>auth|django_rq|tenants|builds|billing|axes)/$", "GET"): ADMIN,
    ("admin/(?P<url>.*)$", "GET"): _admin(404),
})
# django-rq's pages, mounted twice (admin/rq/ by our URLconf, admin/django_rq/dashboard/ by its admin): the same
# views, the same rows. The job pages are asked about a real job of the module's queue.
for _base in ("admin/rq/", "admin/django_rq/dashboard/"):
    WEB.update({
        (f"{_base}^stats.json/?$", "GET"): Row(401, 401, 401, 401, 200),  # a token API; no token, no figures
        (f"{_base}queues/<int:queue_index>/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/details/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/finished/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/failed/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/failed/clear/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/scheduled/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/started/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/deferred/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/empty/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/requeue-all/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/<str:job_id>/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/<str:job_id>/results/<str:result_id>/", "GET"): _admin(404),
        (f"{_base}queues/<int:queue_index>/<str:job_id>/delete/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/<str:job_id>/requeue/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/<str:job_id>/enqueue/", "GET"): ADMIN,
        (f"{_base}queues/<int:queue_index>/<str:job_id>/stop/", "GET"): _admin(405),
        (f"{_base}queues/confirm-action/<int:queue_index>/", "GET"): _admin(302),
        (f"{_base}queues/actions/<int:queue_index>/", "GET"): _admin(302),
        (f"{_base}workers/<int:queue_index>/", "GET"): ADMIN,
        # django-rq's own 500s on these staff-only pages (an unknown worker key; its scheduler page without
        # rq-scheduler installed): pinned here so a change shows; not portal code.
        (f"{_base}workers/<int:queue_index>/<str:key>/", "GET"): _admin(500),
        (f"{_base}schedulers/<int:scheduler_index>/", "GET"): _admin(500),
        (f"{_base}cron-schedulers/<int:connection_index>/<str:scheduler_name>/", "GET"): _admin(404),
        (f"{_base}cron-schedulers/<int:connection_index>/<str:scheduler_name>/jobs/<path:cron_job_name>/", "GET"):
            _admin(404),
    })
WEB[("admin/rq/^stats.json/(?P<token>[\\w]+)?/?$", "GET")] = _admin(404)
WEB[("admin/django_rq/dashboard/^stats.json/(?P<token>[\\w]+)?/?$", "GET")] = _admin(302)
WEB[("admin/rq/", "GET")] = ADMIN

# Each model registered in the admin gets Django's six routes; their outcome is the same for every model (the
# admin's own staff check), so they are keyed by the route after `admin/<app>/<model>/`. A custom admin URL
# (a ModelAdmin.get_urls entry) is not one of these and needs its own WEB entry.
ADMIN_MODEL_ROUTES: dict[tuple[str, str], Row] = {
    ("", "GET"): ADMIN,
    ("add/", "GET"): ADMIN,
    ("<path:object_id>/history/", "GET"): ADMIN,
    ("<path:object_id>/delete/", "GET"): ADMIN,
    ("<path:object_id>/change/", "GET"): ADMIN,
    ("<path:object_id>/", "GET"): _admin(302),  # redirects to change/
}
# Models whose admin pages are not Django's model pages (django-rq's dashboard is a stand-in model).
# django-rq's stand-in model has no table: its object pages are django-rq's own 500s (staff only, not portal code).
# django-axes' logs are read-only in the admin: adding is refused.
ADMIN_MODEL_OVERRIDES: dict[tuple[str, str], Row] = {
    ("admin/django_rq/dashboard/", "GET"): ADMIN,
    ("admin/django_rq/dashboard/add/", "GET"): _admin(403),
    ("admin/django_rq/dashboard/<path:object_id>/history/", "GET"): _admin(500),
    ("admin/django_rq/dashboard/<path:object_id>/delete/", "GET"): _admin(500),
    ("admin/django_rq/dashboard/<path:object_id>/change/", "GET"): _admin(500),
    ("admin/django_rq/dashboard/<path:object_id>/", "GET"): _admin(302),
    ("admin/axes/accessattempt/add/", "GET"): _admin(403),
    ("admin/axes/accesslog/add/", "GET"): _admin(403),
    ("admin/axes/accessfailurelog/add/", "GET"): _admin(403),
}

# --- The API's operations (keys: "METHOD /path" exactly as in /api/v1/openapi.json) -----------------------------

API: dict[str, tuple[Row, Case] | Row] = {
    "GET /api/v1/tenants": API_SIGNED_IN,  # staff: all; a member: its own (tests/test_api.py)
    "POST /api/v1/tenants": (Row(401, 403, 403, 403, 400), Case(data=lambda d: {
        "slug": d.tenant.slug, "plan": "standard", "isolation": "silo"})),  # staff: slug taken -> 400
    "GET /api/v1/tenants/{slug}": API_TENANT,
    "POST /api/v1/tenants/{slug}/credentials": (Row(401, 400, 400, 404, 400), Case(setup=_suspended)),
    "POST /api/v1/tenants/{slug}/uploads": (Row(401, 400, 400, 404, 400),
                                            Case(data=lambda d: {"filename": "notes.txt", "size": 10})),
    "GET /api/v1/builds": API_SIGNED_IN,
    "POST /api/v1/builds": (Row(401, 400, 400, 404, 400), Case(data=lambda d: {
        "tenant": d.tenant.slug, "dataset_key": "not-in-the-upload-prefix.csv"})),
    "GET /api/v1/builds/{build_id}": API_TENANT,
    "POST /api/v1/builds/{build_id}/cancel": Row(401, 200, 200, 404, 200),
    "GET /api/v1/tenants/{slug}/rejections": API_TENANT,
    "GET /api/v1/tenants/{slug}/models": API_TENANT,
    "GET /api/v1/tenants/{slug}/costs": (API_TENANT, Case(query="start=2026-03-01&end=2026-03-31")),
    "GET /api/v1/tenants/{slug}/statements": (API_TENANT, Case(query="month=2026-03")),
    "GET /api/v1/algorithms": API_PUBLIC_DOC,  # the catalog: no token needed
    "GET /api/v1/plans": API_PUBLIC_DOC,
    "GET /api/v1/tenants/{slug}/models/{version}": API_TENANT,
    "GET /api/v1/tenants/{slug}/models/{version}/download": Row(401, 410, 410, 404, 410),  # not in storage
    # A version registered nowhere (no ARN): the decision is the portal's alone, no model registry call.
    "POST /api/v1/tenants/{slug}/models/{version}/approve": (Row(401, 403, 200, 404, 200), Case(setup=_unregistered)),
    "POST /api/v1/tenants/{slug}/models/{version}/reject": (Row(401, 403, 200, 404, 200), Case(setup=_unregistered)),
    "GET /api/v1/tenants/{slug}/endpoints": API_TENANT,
    # Owners (and staff) deploy; no such version: 400 before any deploy. A member is refused (403).
    "POST /api/v1/tenants/{slug}/endpoints": (Row(401, 403, 400, 404, 400),
                                             Case(data=lambda d: {"model_version": 999})),
    "GET /api/v1/tenants/{slug}/endpoints/{name}": API_TENANT,
    "DELETE /api/v1/tenants/{slug}/endpoints/{name}": Row(401, 403, 202, 404, 202),  # teardown job on commit
    # The endpoint is still Creating: 409 for the tenant, nothing is invoked.
    "POST /api/v1/tenants/{slug}/endpoints/{name}/invocations": Row(401, 409, 409, 404, 409),
    "GET /api/v1/tenants/{slug}/batch-jobs": API_TENANT,
    # A rejected version does not score: 400 before any job or presigned upload.
    "POST /api/v1/tenants/{slug}/batch-jobs": (Row(401, 400, 400, 404, 400), Case(
        data=lambda d: {"model_version": d.version.version}, setup=_rejected)),
    "GET /api/v1/tenants/{slug}/batch-jobs/{code}": API_TENANT,
    "POST /api/v1/tenants/{slug}/batch-jobs/{code}/start": Row(401, 400, 400, 404, 400),  # already succeeded
    "GET /api/v1/tenants/{slug}/batch-jobs/{code}/download": Row(401, 410, 410, 404, 410),  # output not in storage
    "GET /api/v1/tenants/{slug}/webhooks": API_TENANT,
    # Owners (and staff) register; an unknown event is a 400 before any address is resolved. A member: 403.
    "POST /api/v1/tenants/{slug}/webhooks": (Row(401, 403, 400, 404, 400), Case(data=lambda d: {
        "url": "https://93.184.215.14/hook", "events": ["build.exploded"]})),
    "GET /api/v1/tenants/{slug}/webhooks/{webhook_id}": API_TENANT,
    "PATCH /api/v1/tenants/{slug}/webhooks/{webhook_id}": (Row(401, 403, 200, 404, 200),
                                                          Case(data=lambda d: {"status": "paused"})),
    "DELETE /api/v1/tenants/{slug}/webhooks/{webhook_id}": Row(401, 403, 204, 404, 204),
    "GET /api/v1/tenants/{slug}/webhooks/{webhook_id}/deliveries": API_TENANT,
    "POST /api/v1/tenants/{slug}/webhooks/{webhook_id}/deliveries/{delivery_id}/resend": Row(401, 403, 202, 404, 202),
}

API_PARAMS: dict[str, dict[str, Callable[[SimpleNamespace], object]]] = {
    "POST /api/v1/builds/{build_id}/cancel": {"build_id": lambda d: d.queued.code},
    "GET /api/v1/tenants/{slug}/batch-jobs/{code}": {"code": lambda d: d.batch_job.code},
    "POST /api/v1/tenants/{slug}/batch-jobs/{code}/start": {"code": lambda d: d.batch_job.code},
    "GET /api/v1/tenants/{slug}/batch-jobs/{code}/download": {"code": lambda d: d.batch_job.code},
}


# --- Enumeration -------------------------------------------------------------------------------------------------

def _walk(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def _api_operations() -> list[str]:
    from mlaas_portal.api import api

    schema = api.get_openapi_schema()
    return sorted(f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops)


def _api_route_to_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _admin_model_prefixes() -> list[str]:
    return [f"admin/{model._meta.app_label}/{model._meta.model_name}/" for model in admin.site._registry]


def web_routes() -> list[str]:
    """Every route of the URLconf except the API's operations (those are checked against the OpenAPI schema)."""
    api_paths = {op.split(" ", 1)[1] for op in _api_operations()}
    return [route for route in dict.fromkeys(_walk(get_resolver().url_patterns))
            if _api_route_to_path(route) not in api_paths]


def expected_web() -> dict[tuple[str, str], tuple[Row, Case]]:
    """WEB plus the admin's model routes, each as (row, case)."""
    table = {key: value if isinstance(value, tuple) else (value, Case()) for key, value in WEB.items()}
    routes = set(web_routes())
    for prefix in _admin_model_prefixes():
        for (suffix, method), row in ADMIN_MODEL_ROUTES.items():
            if prefix + suffix in routes:
                table.setdefault((prefix + suffix, method), (row, Case()))
    for key, row in ADMIN_MODEL_OVERRIDES.items():
        table[key] = (row, Case())
    return table


def _fill(route: str, d: SimpleNamespace) -> str:
    if route in REGEX_PATHS:
        return REGEX_PATHS[route]
    fillers = {**PARAMS, **ROUTE_PARAMS.get(route, {})}
    if route.startswith("admin/") and "<path:object_id>" in route and route not in ROUTE_PARAMS:
        fillers["object_id"] = lambda d: d.admin_object_ids[route.split("/")[1] + "." + route.split("/")[2]]

    def value(match: re.Match) -> str:
        return str(fillers[match.group(1)](d))

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


def _fill_api(operation: str, d: SimpleNamespace) -> tuple[str, str]:
    method, path = operation.split(" ", 1)
    fillers = {**PARAMS, **API_PARAMS.get(operation, {})}
    return method, re.sub(r"\{(\w+)\}", lambda m: str(fillers[m.group(1)](d)), path)


# --- Data, made once for the module ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker, emulator):
    """The first tenant with a member, an owner, a build and a model version; another tenant's owner; staff.

    All in one transaction that is rolled back when the module ends; each case adds a savepoint of its own.
    The emulator is there because the reference data pins the step image's digest (DescribeImages in its ECR).
    """
    import django_rq
    from rq import Queue

    # Straight on the queue (not django-rq's commit-aware enqueue): a job for the RQ pages to show.
    queue = Queue("default", connection=django_rq.get_connection("default"))
    rq_job = queue.enqueue("builtins.print", "authorization matrix")
    try:
        with django_db_blocker.unblock(), transaction.atomic():
            data = _make_data(rq_job)
            yield data
            transaction.set_rollback(True)
    finally:
        rq_job.delete()


def _make_data(rq_job) -> SimpleNamespace:
    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType

    from builds.models import BatchJob, Endpoint, ModelVersion
    from mlaas_portal.demo import seed_reference_data
    from tenants.models import AccessRequest, MarketplaceCustomer, Plan, Tenant, Webhook, WebhookDelivery
    from tenants.services import api_token_create
    from tests.web_support import create_build, create_member, create_tenant

    seed_reference_data()
    tenant = create_tenant(slug="matrix-first", name="Matrix First")
    other = create_tenant(slug="matrix-other", name="Matrix Other")
    build = create_build(tenant, status="failed", failure_reason="column `label` not found", version=True)
    queued = create_build(tenant, status="queued")
    create_build(tenant, version=True)  # version 2: the compare page has two versions to put side by side
    version = ModelVersion.objects.get(build=build)
    endpoint = Endpoint.objects.create(tenant=tenant, name="matrix-first-test", model_version=version,
                                       engine="local")  # Creating: nothing serves it, nothing is invoked
    batch_job = BatchJob.objects.create(  # succeeded, its output not in storage
        tenant=tenant, model_version=version, engine="local", status="succeeded",
        input_key=f"{tenant.batch_prefix}matrix/input.csv", output_key=f"{tenant.batch_prefix}matrix/output.csv")
    webhook = Webhook.objects.create(tenant=tenant, url="https://93.184.215.14/hook", events=["build.failed"],
                                     secret="whsec_bWF0cml4LW1hdHJpeC1tYXRyaXgtbWF0cml4")  # never sent: no commit
    delivery = WebhookDelivery.objects.create(webhook=webhook, event="build.failed", msg_id="msg_matrix",
                                              status="failed", attempts=6)
    marketplace_customer = MarketplaceCustomer.objects.create(customer_aws_account_id="111122223333",
                                                              product_code="prod-matrix")
    users = {
        "member": create_member(tenant, role="member"),
        "owner": create_member(tenant, role="owner"),
        "other_owner": create_member(other, role="owner"),
        "staff": User.objects.create_user(username="staff@matrix.example", password="pw-Secret-123",
                                          is_staff=True, is_superuser=True),
    }
    _admin_rows(tenant, build)
    access_request = AccessRequest.objects.create(company="Matrix Prospect",
                                                  contact_email="pat@prospect.example", plan=Plan.objects.first())
    tokens = {role: api_token_create(user=user) for role, user in users.items()}
    admin_object_ids = {f"{m._meta.app_label}.{m._meta.model_name}": (
        m.objects.order_by("pk").values_list("pk", flat=True).first() if m._meta.managed else None) or 0
        for m in admin.site._registry}
    return SimpleNamespace(
        tenant=tenant, other=other, build=build, queued=queued, version=version, endpoint=endpoint,
        batch_job=batch_job,
        webhook=webhook, delivery=delivery,
        marketplace_customer=marketplace_customer,
        users=users,
        tokens=tokens, rq_job=rq_job,
        access_request=access_request, tenant_content_type=ContentType.objects.get_for_model(Tenant),
        admin_object_ids=admin_object_ids)


def _admin_rows(tenant, build) -> None:
    """One row of each model the admin shows, so its object pages answer about a real object."""
    from datetime import date
    from decimal import Decimal

    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth.models import Group

    from billing.models import BudgetAlert, CostSyncRun, DailyCost, InstancePrice
    from builds.models import RejectedUpload
    from tenants.models import TenantEvent
    from tenants.services import scheduling_policy
    from tests.factories import CostLineFactory

    Group.objects.create(name="matrix")
    scheduling_policy()  # the one row staff change
    TenantEvent.objects.create(tenant=tenant, action="matrix")
    RejectedUpload.objects.create(tenant=tenant, bucket=tenant.bucket, key=f"{tenant.upload_prefix}bad.txt",
                                  dedup_key="matrix", reason="Upload a .csv file.")
    CostLineFactory(step=build.steps.first())
    DailyCost.objects.create(tenant_slug=tenant.slug, day=date(2026, 3, 2), service="Amazon SageMaker",
                             amount=Decimal("1.5"))
    CostSyncRun.objects.create(start_day=date(2026, 3, 1), end_day=date(2026, 3, 2))
    BudgetAlert.objects.create(tenant=tenant, month=date(2026, 3, 1), threshold_amount=Decimal("10"),
                               spend_at_crossing=Decimal("10.5"))
    if not InstancePrice.objects.exists():
        InstancePrice.objects.create(instance_type="ml.m5.large", region="us-east-1", price_per_hour=Decimal("0.115"))
    access = {"user_agent": "matrix", "ip_address": "127.0.0.1", "username": "matrix", "http_accept": "*/*",
              "path_info": "/login/"}
    AccessAttempt.objects.create(**access, get_data="", post_data="", failures_since_start=1)
    AccessLog.objects.create(**access)
    AccessFailureLog.objects.create(**access)


_clients: dict[tuple[int, str, bool], tuple[Client, object]] = {}


def _client(d: SimpleNamespace, role: str, *, api: bool = False) -> Client:
    """One signed-in client per role (signing in per case would double the run); its cookies are restored before
    each case, since a case may sign out."""
    import copy

    key = (id(d), role, api)
    if key not in _clients:
        client = _new_client(d, role, api=api)
        _clients[key] = (client, copy.deepcopy(client.cookies))
    client, cookies = _clients[key]
    client.cookies = copy.deepcopy(cookies)
    return client


def _new_client(d: SimpleNamespace, role: str, *, api: bool = False) -> Client:
    if api:
        headers = {} if role == "anonymous" else {"HTTP_AUTHORIZATION": f"Bearer {d.tokens[role]}"}
        return Client(raise_request_exception=False, **headers)
    client = Client(raise_request_exception=False)
    if role != "anonymous":
        client.force_login(d.users[role])
    return client


def _outcome(response, path: str) -> int | str:
    location = response.headers.get("Location", "")
    if response.status_code == 302 and location.split("?")[0] in ("/login/", "/admin/login/"):
        from urllib.parse import parse_qs, urlsplit

        next_url = parse_qs(urlsplit(location).query).get("next", [""])[0]
        if next_url == path.split("?")[0] or next_url == path:
            return LOGIN if location.startswith("/login/") else ADMIN_LOGIN
        return f"302 to {location}"
    return response.status_code


def _ask(d: SimpleNamespace, role: str, method: str, path: str, case: Case, *, api: bool) -> int | str:
    client = _client(d, role, api=api)
    with transaction.atomic():
        if case.setup:
            case.setup(d)
        data = case.data(d) if case.data else None
        url = f"{path}?{case.query}" if case.query else path
        if method == "GET":
            response = client.get(url)
        elif api:
            response = client.generic(method, url, data=__import__("json").dumps(data or {}),
                                      content_type="application/json")
        else:
            response = client.post(url, data=data or {})
        transaction.set_rollback(True)
    for model_obj in (d.tenant, d.build, d.version, d.endpoint, d.webhook):
        model_obj.refresh_from_db()
    return _outcome(response, url)


# --- Tests -------------------------------------------------------------------------------------------------------

def missing_web_entries() -> list[str]:
    """One message per route without an entry, naming the line to add and where."""
    table = expected_web()
    return [
        f"URL route {route!r} has no authorization entry. Add to WEB in {THIS_FILE}:\n"
        f"    ({route!r}, \"GET\"): Row(anonymous=..., member=..., owner=..., other_owner=..., staff=...),\n"
        f"  (and a ({route!r}, \"POST\") entry if the view acts on POST; path parameters not in PARAMS go in "
        f"ROUTE_PARAMS, regular-expression routes in REGEX_PATHS)"
        for route in web_routes() if not any(key[0] == route for key in table)]


def missing_api_entries() -> list[str]:
    return [
        f"API operation {op!r} has no authorization entry. Add to API in {THIS_FILE}:\n"
        f"    {op!r}: Row(anonymous=401, member=..., owner=..., other_owner=404, staff=...),\n"
        f"  (with Case(data=...) for its body; path parameters not in PARAMS go in PARAMS or API_PARAMS)"
        for op in _api_operations() if op not in API]


def test_every_url_has_an_entry():
    missing = missing_web_entries()
    assert not missing, "\n".join(missing)


def test_every_api_operation_has_an_entry():
    missing = missing_api_entries()
    assert not missing, "\n".join(missing)


def test_a_url_or_operation_without_an_entry_is_named_with_the_line_to_add(monkeypatch):
    monkeypatch.delitem(WEB, ("builds/<uuid:code>/retry/", "GET"))
    monkeypatch.delitem(WEB, ("builds/<uuid:code>/retry/", "POST"))
    monkeypatch.delitem(API, "GET /api/v1/tenants/{slug}/models")

    # Picked out by route: other entries may be missing too (a branch just merged), in any order.
    retry = [m for m in missing_web_entries() if m.startswith("URL route 'builds/<uuid:code>/retry/' ")]
    assert retry == [
        f"URL route 'builds/<uuid:code>/retry/' has no authorization entry. Add to WEB in {THIS_FILE}:\n"
        "    ('builds/<uuid:code>/retry/', \"GET\"): Row(anonymous=..., member=..., owner=..., other_owner=..., "
        "staff=...),\n  (and a ('builds/<uuid:code>/retry/', \"POST\") entry if the view acts on POST; path "
        "parameters not in PARAMS go in ROUTE_PARAMS, regular-expression routes in REGEX_PATHS)"]
    models = [m for m in missing_api_entries() if m.startswith("API operation 'GET /api/v1/tenants/{slug}/models' ")]
    assert [m.splitlines()[1].strip() for m in models] == [
        "'GET /api/v1/tenants/{slug}/models': Row(anonymous=401, member=..., owner=..., other_owner=404, staff=...),"]


def test_no_entry_is_left_for_a_url_that_is_gone():
    routes, operations = set(web_routes()), set(_api_operations())
    stale = [key for key in WEB if key[0] not in routes] + [op for op in API if op not in operations]
    assert not stale, f"Remove these entries from {THIS_FILE}: they match no URL any more: {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_every_url_answers_each_role_as_the_table_says(matrix, role):
    wrong = []
    for (route, method), (row, case) in sorted(expected_web().items()):
        path = _fill(route, matrix)
        got = _ask(matrix, role, method, path, case, api=False)
        if got != row[role]:
            wrong.append(f"{method} {path} (route {route!r}): expected {row[role]!r}, got {got!r}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_every_api_operation_answers_each_role_as_the_table_says(matrix, role):
    wrong = []
    for operation, entry in sorted(API.items()):
        row, case = entry if isinstance(entry, tuple) else (entry, Case())
        method, path = _fill_api(operation, matrix)
        got = _ask(matrix, role, method, path, case, api=True)
        if got != row[role]:
            wrong.append(f"{operation} as {path}: expected {row[role]!r}, got {got!r}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_a_stranger_never_sees_the_first_tenants_names(matrix):
    """Every 404 the other tenant's owner gets carries nothing of the first tenant."""
    leaks = []
    for (route, method), (row, case) in sorted(expected_web().items()):
        if row.other_owner != 404 or method != "GET":
            continue
        path = _fill(route, matrix)
        response = _client(matrix, "other_owner").get(path + (f"?{case.query}" if case.query else ""))
        body = response.content.decode(errors="replace")
        if "Matrix First" in body or str(matrix.build.code) in body.replace(path, ""):
            leaks.append(path)
    assert leaks == []
