from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import django_rq
import pytest
from django.urls import reverse
from django.utils import timezone

from billing import jobs
from billing.models import CostSyncRun, DailyCost
from billing.selectors import cost_sync_is_due, untagged_cost
from billing.services import CostSyncBusy, cost_sync_run, cost_sync_window
from billing.tests.conftest import ce_page
from core.aws.errors import AwsAccessDenied, AwsRetryableError
from tenants.models import Plan, Tenant

TODAY = date(2026, 3, 31)
SERVICES = ("Amazon SageMaker", "Amazon Simple Storage Service")


def days_back(first: int, last: int = 1) -> list[date]:
    """TODAY-first ... TODAY-last, oldest first."""
    return [TODAY - timedelta(days=n) for n in range(first, last - 1, -1)]


def test_cost_sync_requests_do_not_grow_with_tenants(ce_queue, reference_data):
    plan = Plan.objects.get(slug="basic")
    results = {}
    for n_tenants in (2, 200):
        CostSyncRun.objects.all().delete()
        DailyCost.objects.all().delete()
        ce_queue.reset()
        slugs = [f"n{n_tenants}-{i:03d}" for i in range(n_tenants)]
        Tenant.objects.bulk_create([Tenant(slug=s, name=s, plan=plan, isolation="pool") for s in slugs])
        ce_queue.push(ce_page(days=days_back(30), slugs=slugs, services=SERVICES, amount="0.5"))

        run = cost_sync_run(today=TODAY)

        results[n_tenants] = (run.status, run.start_day, run.end_day, run.requests, ce_queue.consumed, run.rows,
                              DailyCost.objects.count())

    assert results[2] == ("succeeded", TODAY - timedelta(days=30), TODAY - timedelta(days=1), 1, 1,
                          2 * 30 * 2, 2 * 30 * 2)
    assert results[200] == ("succeeded", TODAY - timedelta(days=30), TODAY - timedelta(days=1), 1, 1,
                            200 * 30 * 2, 200 * 30 * 2)


def test_cost_sync_follows_pagination(ce_queue, db):
    ce_queue.push(
        ce_page(days=days_back(30, 21), slugs=["acme"], next_token="page-2"),
        ce_page(days=days_back(20, 11), slugs=["acme"], next_token="page-3"),
        ce_page(days=days_back(10, 1), slugs=["acme"]),
        ce_page(days=days_back(10, 1), slugs=["never-fetched"]),  # no 4th request: page 3 had no token
    )

    run = cost_sync_run(today=TODAY)

    assert (run.requests, ce_queue.consumed, ce_queue.remaining, run.rows) == (3, 3, 1, 30)
    assert sorted(DailyCost.objects.values_list("day", flat=True)) == days_back(30)
    assert not DailyCost.objects.filter(tenant_slug="never-fetched").exists()


def test_cost_sync_keeps_untagged_cost(ce_queue, db):
    ce_queue.push(ce_page(days=days_back(30), slugs=["acme"], untagged="0.40"))

    cost_sync_run(today=TODAY)

    untagged = DailyCost.objects.filter(tenant_slug="")
    assert untagged.count() == 30
    assert set(untagged.values_list("service", "amount")) == {("AWS Key Management Service", Decimal("0.400000"))}
    assert untagged_cost(start=TODAY - timedelta(days=30), end=TODAY) == {
        "total": Decimal("12.000000"),
        "by_service": [{"service": "AWS Key Management Service", "total": Decimal("12.000000")}]}


def test_cost_sync_window_is_days_not_final_yet():
    assert cost_sync_window(today=TODAY, last_final_day=None) == (TODAY - timedelta(days=30),
                                                                   TODAY - timedelta(days=1))
    # the last 3 days, and anything after the last final day when a sync was missed
    assert cost_sync_window(today=TODAY, last_final_day=TODAY - timedelta(days=4)) == (
        TODAY - timedelta(days=3), TODAY - timedelta(days=1))
    assert cost_sync_window(today=TODAY, last_final_day=TODAY - timedelta(days=10)) == (
        TODAY - timedelta(days=9), TODAY - timedelta(days=1))


def test_cost_sync_second_run_refetches_only_open_days_and_replaces_them(ce_queue, db):
    ce_queue.push(ce_page(days=days_back(30), slugs=["acme", "globex"], amount="1.00"))
    first = cost_sync_run(today=TODAY)
    assert first.last_final_day == TODAY - timedelta(days=3)

    ce_queue.push(ce_page(days=days_back(3), slugs=["acme"], amount="2.00", estimated=True))
    second = cost_sync_run(today=TODAY + timedelta(days=1))

    assert (second.start_day, second.end_day, second.requests, second.last_final_day) == (
        TODAY - timedelta(days=2), TODAY, 1, TODAY - timedelta(days=3))
    # TODAY-3 was final and kept; the refetched days hold only what Cost Explorer reports now
    assert DailyCost.objects.filter(tenant_slug="globex").count() == 28
    assert list(DailyCost.objects.filter(tenant_slug="acme", day__gte=TODAY - timedelta(days=3)).order_by("day")
                .values_list("day", "amount", "estimated")) == [
        (TODAY - timedelta(days=3), Decimal("1.000000"), False),
        (TODAY - timedelta(days=2), Decimal("2.000000"), True),
        (TODAY - timedelta(days=1), Decimal("2.000000"), True),
    ]


def test_cost_sync_estimated_old_day_is_not_final(ce_queue, db):
    ce_queue.push(ce_page(days=days_back(30, 6), slugs=["acme"]),)
    ce_queue.backend.cost_usage_results_queue[0]["ResultsByTime"][-1]["Estimated"] = True  # TODAY-6

    run = cost_sync_run(today=TODAY)

    assert run.last_final_day == TODAY - timedelta(days=7)


class FailingGateway:
    def __init__(self, error):
        self.error = error

    def daily_cost_by_tag(self, **kwargs):
        raise self.error


def test_cost_sync_failure_is_recorded_and_shown_to_staff(client, staff_user, db):
    error = AwsRetryableError("get_cost_and_usage: ThrottlingException: Rate exceeded", code="ThrottlingException")

    with pytest.raises(AwsRetryableError):
        cost_sync_run(today=TODAY, gateway=FailingGateway(error))

    run = CostSyncRun.objects.get()
    assert (run.status, run.error) == ("failed", "AwsRetryableError: get_cost_and_usage: ThrottlingException: "
                                                 "Rate exceeded")
    assert cost_sync_is_due() is True  # the next scheduler round retries
    client.force_login(staff_user)
    page = client.get(reverse("billing:overview"))
    assert "Rate exceeded" in page.content.decode()
    assert 'id="cost-sync-error"' in page.content.decode()


def test_cost_sync_job_reraises_retryable_errors_only(monkeypatch, db):
    from core.aws import gateways

    monkeypatch.setattr(gateways, "platform_cost_explorer",
                        lambda: FailingGateway(AwsRetryableError("throttled", code="Throttling")))
    with pytest.raises(AwsRetryableError):
        jobs.cost_sync("schedule")

    monkeypatch.setattr(gateways, "platform_cost_explorer",
                        lambda: FailingGateway(AwsAccessDenied("denied", code="AccessDenied")))
    assert jobs.cost_sync("schedule") is None
    assert list(CostSyncRun.objects.order_by("started_at").values_list("status", flat=True)) == ["failed", "failed"]


def test_cost_sync_refuses_to_run_twice_at_once(db):
    CostSyncRun.objects.create(start_day=TODAY, end_day=TODAY)

    with pytest.raises(CostSyncBusy):
        cost_sync_run(today=TODAY, gateway=FailingGateway(AssertionError("must not be called")))
    assert cost_sync_is_due() is False


def test_cost_sync_abandoned_run_does_not_block(ce_queue, db):
    CostSyncRun.objects.create(start_day=TODAY, end_day=TODAY, started_at=timezone.now() - timedelta(hours=2))
    ce_queue.push(ce_page(days=days_back(30), slugs=["acme"]))

    run = cost_sync_run(today=TODAY)

    assert run.status == "succeeded"
    assert CostSyncRun.objects.exclude(pk=run.pk).get().error == "abandoned: its worker stopped before it ended"


def test_cost_sync_if_due_enqueues_once_with_retry(clean_redis, db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.cost_sync_if_due() is True
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.cost_sync_if_due() is False  # already pending

    queue = django_rq.get_queue("billing")
    assert queue.job_ids == [jobs.COST_SYNC_JOB_ID]
    job = queue.fetch_job(jobs.COST_SYNC_JOB_ID)
    assert (job.func_name, job.args, job.retries_left) == ("billing.jobs.cost_sync", ("schedule",), 2)


def test_cost_sync_if_due_not_within_a_day_of_success(clean_redis, db, django_capture_on_commit_callbacks):
    CostSyncRun.objects.create(start_day=TODAY, end_day=TODAY, status="succeeded",
                               ended_at=timezone.now() - timedelta(hours=23))
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.cost_sync_if_due() is False
    assert django_rq.get_queue("billing").job_ids == []

    CostSyncRun.objects.update(ended_at=timezone.now() - timedelta(hours=25))
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.cost_sync_if_due() is True
    assert django_rq.get_queue("billing").job_ids == [jobs.COST_SYNC_JOB_ID]


def test_sync_now_button_enqueues_for_staff_only(client, staff_user, tenant_factory, make_member, clean_redis,
                                                django_capture_on_commit_callbacks):
    client.force_login(make_member(tenant_factory()))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("billing:sync")).status_code == 404
    assert django_rq.get_queue("billing").job_ids == []

    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("billing:sync"))

    assert response.status_code == 302
    job = django_rq.get_queue("billing").fetch_job(jobs.COST_SYNC_JOB_ID)
    assert job.args == ("staff:staff@vendor.example",)
    assert client.get(reverse("billing:sync")).status_code == 405


def test_cost_sync_job_runs_against_the_emulator(ce_queue, db):
    ce_queue.push(ce_page(days=[timezone.now().date() - timedelta(days=1)], slugs=["acme"]))

    run_id = jobs.cost_sync("staff:someone")

    run = CostSyncRun.objects.get(pk=run_id)
    assert (run.status, run.requests, run.triggered_by, ce_queue.consumed) == ("succeeded", 1, "staff:someone", 1)
    assert DailyCost.objects.get().tenant_slug == "acme"
