"""Property-based run of the REST API against its own OpenAPI schema (schemathesis, in-process WSGI).

Authenticated as vendor staff with a bearer token, every operation is called with generated data that fits
the schema (positive) and that does not (negative), twice: with generated path ids, and with the ids of a
real provisioned tenant and build, so calls reach the endpoints' code and AWS, not only the 404. No call may
answer 5xx. Examples are limited so the run stays well under a minute.

The operations are driven through `APIOperation.as_strategy` with Hypothesis directly: schemathesis'
pytest integration (`@schema.parametrize`, `from_fixture`) relies on pytest's private `Item._nodeid`,
which pytest 9 no longer has.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.slow

EXAMPLES = 12  # per operation, per generation mode, per id kind


@pytest.fixture
def api_schema(db, reference_data, clean_redis):
    """The schema, served by the real WSGI application.

    Like Django's test client, keep the request cycle from closing the test's database connection (it holds
    the transaction every example runs in).
    """
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def known(make_tenant, staff_user):
    """Ids of a provisioned tenant and of one of its queued builds, and a staff bearer token."""
    from builds.models import BatchJob
    from tenants.models import Webhook, WebhookDelivery
    from tenants.services import api_token_create
    from tests.web_support import create_build

    tenant = make_tenant(isolation="pool", plan="basic")
    build = create_build(tenant, status="queued")
    version = create_build(tenant, version=True).model_version
    batch_job = BatchJob.objects.create(tenant=tenant, model_version=version, engine="local",
                                        input_key=f"{tenant.batch_prefix}known/input.csv",
                                        output_key=f"{tenant.batch_prefix}known/output.csv")
    webhook = Webhook.objects.create(tenant=tenant, url="https://93.184.215.14/hook", events=["build.failed"],
                                     secret="whsec_c2NoZW1hdGhlc2lzLXNjaGVtYXRoZXNpcw==")
    delivery = WebhookDelivery.objects.create(webhook=webhook, event="build.failed", msg_id="msg_schema",
                                              status="failed", attempts=6)
    return {"ids": {"slug": tenant.slug, "build_id": str(build.code), "code": str(batch_job.code),
                    "webhook_id": str(webhook.code), "delivery_id": str(delivery.code)},
            "token": api_token_create(user=staff_user)}


def _call_examples(strategy, *, headers: dict, label: str, calls: dict[str, int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(case=strategy)
    def call(case):
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
        calls[label] = calls.get(label, 0) + 1

    call()


def test_api_never_answers_5xx(api_schema, known):
    headers = {"Authorization": f"Bearer {known['token']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    calls: dict[str, int] = {}

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        path_names = {p.name for p in operation.path_parameters}
        fixed_ids = {name: value for name, value in known["ids"].items() if name in path_names}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in ([None, fixed_ids] if fixed_ids else [None]):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                _call_examples(strategy, headers=headers, label=label, calls=calls)

    # 12 + the catalog (plans, algorithms), statements, models (4), endpoints (5), batch jobs (5), webhooks (7)
    assert len(operations) == 36
    assert sorted(calls) == sorted(f"{op.method.upper()} {op.path}" for op in operations)


def test_every_authenticated_operation_declares_429_with_retry_after(db):
    """The rate limit (tenants.api_limits) answers 429 on any authenticated operation: the schema says so."""
    from mlaas_portal.api import api

    schema = api.get_openapi_schema()
    operations = {f"{method.upper()} {path}": op for path, ops in schema["paths"].items() for method, op in ops.items()}
    limited = {name for name, op in operations.items() if 429 in op["responses"]}
    assert limited == {name for name, op in operations.items() if op.get("security")}
    assert set(operations) - limited == {"GET /api/v1/plans", "GET /api/v1/algorithms"}
    for name in limited:
        response = operations[name]["responses"][429]
        assert response["headers"]["Retry-After"]["schema"]["type"] == "integer", name
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, name
