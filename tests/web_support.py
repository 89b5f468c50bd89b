"""Factories of the web and API tests: plain functions (call them from a test that has database access).

Rows only, no AWS: for pages and endpoints that read the database. Anything that calls AWS uses the root
conftest's `make_tenant` against the emulator.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

_seq = itertools.count()

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def next_slug(prefix: str = "w") -> str:
    return f"{prefix}{next(_seq):05d}"


def create_tenant(*, slug: str | None = None, plan: str = "standard", status: str = "active", name: str = "",
                  isolation: str = "silo", budget: Decimal | None = None):
    from tests.factories import TenantFactory
    from tests.factories import plan as plan_named

    slug = slug or next_slug("t")
    return TenantFactory(slug=slug, name=name or f"Tenant {slug}", plan=plan_named(plan), isolation=isolation,
                         status=status, monthly_budget=budget)


STEP_ORDER = ("preprocess", "train", "evaluate", "condition", "register")


def create_build(tenant, *, status: str = "succeeded", algorithm: str = "gbm-classifier", created_at=None,
                 duration: timedelta | None = timedelta(minutes=3), steps: int | None = None, failure_reason: str = "",
                 metrics: dict | None = None, name: str | None = None, version: bool = False,
                 approval: str = "PendingManualApproval", data_report: dict | None = None):
    """A build row in `status`; `steps` recorded steps (all five when finished), optionally a model version."""
    from builds.models import Build
    from tests.factories import (
        BuildFactory,
        BuildStepFactory,
        BuildTransitionFactory,
        ModelVersionFactory,
    )
    from tests.factories import algorithm as algorithm_named

    created_at = created_at or T0
    finished = status in Build.FINISHED
    started = created_at + timedelta(seconds=30) if status not in ("received", "queued") else None
    ended = (started + duration) if finished and started and duration is not None else None
    name = name or f"{next_slug('d')}.csv"
    build = BuildFactory(
        tenant=tenant, algorithm=algorithm_named(algorithm), dataset_key=f"{tenant.upload_prefix}{name}",
        status=status, failure_reason=failure_reason, metrics=metrics or {}, data_report=data_report or {},
        created_at=created_at, started_at=started, ended_at=ended)
    BuildTransitionFactory(build=build)
    if steps is None:
        steps = len(STEP_ORDER) if finished and started else (2 if started else 0)
    for order, step_name in enumerate(STEP_ORDER[:steps]):
        step_started = started + timedelta(seconds=10 * order) if started else None
        last = order == steps - 1
        step_status = ("running" if status in ("running", "starting") and last
                       else "failed" if status == "failed" and last else "succeeded")
        BuildStepFactory(
            build=build, name=step_name, order=order, status=step_status, started_at=step_started,
            ended_at=None if step_status == "running" else step_started + timedelta(seconds=9),
            billable_seconds=0 if step_status == "running" or order > 2 else 9,
            instance_type="ml.m5.large" if order <= 2 else "", instance_count=1 if order <= 2 else 0,
            log=f"{step_name} log line\n", failure_reason=failure_reason if step_status == "failed" else "")
    if version:
        ModelVersionFactory(build=build, metrics=metrics or {"accuracy": 0.95}, approval_status=approval,
                            created_at=ended or T0)
    return build


def create_member(tenant, *, role: str = "member", password: str = "pw-Secret-123"):
    from tests.factories import MembershipFactory, UserFactory

    user = UserFactory(username=f"{next_slug('u')}@{tenant.slug}.example", password=password)
    MembershipFactory(user=user, tenant=tenant, role=role)
    return user


def page_title(response) -> str:
    found = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S)
    return found.group(1).strip() if found else ""


def text_of(response) -> str:
    """The response's visible text, tags removed and whitespace collapsed (for asserting on sentences)."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
    return re.sub(r"\s+([.,;:!?)])", r"\1", text)


def client_for(user, *, tz: str = ""):
    """A Django test client logged in as `user`, optionally with the browser's `tz` cookie."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    if tz:
        client.cookies["tz"] = tz
    return client
