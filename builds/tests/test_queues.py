"""Plan queues: named in one place, served by the build worker in tier order, plans added later included."""

from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker, Worker

from builds.queues import build_queue, plan_queue, plan_queue_name, plan_queue_names, queue_worker_counts
from builds.worker import PlanQueuesMixin

SERVED_KEY = "test:served"


def record_served(label: str) -> None:
    django_rq.get_connection("default").rpush(SERVED_KEY, label)


class InProcessPlanWorker(PlanQueuesMixin, SimpleWorker):
    """The build worker's queue handling without the forks and the training stack."""


def add_plan(slug: str, tier_rank: int):
    from tenants.models import Plan

    return Plan.objects.create(slug=slug, name=slug.title(), tier_rank=tier_rank)


@pytest.mark.django_db(transaction=True)
def test_plan_queue_names_follow_the_plans_in_tier_order(reference_data):
    from tenants.models import Plan

    assert plan_queue_names() == ["plan-premium", "plan-standard", "plan-basic"]
    add_plan("gold", tier_rank=99)
    assert plan_queue_names() == ["plan-gold", "plan-premium", "plan-standard", "plan-basic"]
    assert plan_queue_name(Plan.objects.get(slug="gold").slug) == "plan-gold"


@pytest.mark.django_db(transaction=True)
def test_build_worker_serves_a_plan_created_after_it_started_highest_tier_first(reference_data, clean_redis):
    worker = InProcessPlanWorker(["default"], connection=clean_redis)
    assert worker.queue_names() == ["plan-premium", "plan-standard", "plan-basic", "default"]

    add_plan("gold", tier_rank=99)  # staff add a plan while the worker runs
    plan_queue("basic").enqueue(record_served, "basic")
    build_queue("default").enqueue(record_served, "default")
    plan_queue("gold").enqueue(record_served, "gold")
    worker.work(burst=True)

    assert [v.decode() for v in clean_redis.lrange(SERVED_KEY, 0, -1)] == ["gold", "basic", "default"]
    assert worker.queue_names() == ["plan-gold", "plan-premium", "plan-standard", "plan-basic", "default"]


@pytest.mark.django_db(transaction=True)
def test_build_worker_registers_on_plan_queues_added_while_it_waits(reference_data, clean_redis):
    worker = InProcessPlanWorker([], connection=clean_redis)
    worker.register_birth()
    try:
        assert queue_worker_counts(["plan-basic", "plan-gold"]) == {"plan-basic": 1, "plan-gold": 0}
        add_plan("gold", tier_rank=99)
        worker.refresh_queues()
        assert queue_worker_counts(["plan-basic", "plan-gold"]) == {"plan-basic": 1, "plan-gold": 1}
        [seen] = Worker.all(queue=plan_queue("gold"))
        assert seen.queue_names() == ["plan-gold", "plan-premium", "plan-standard", "plan-basic"]
    finally:
        worker.register_death()


def test_django_rq_knows_any_plan_queue_but_no_other_unlisted_name():
    assert django_rq.get_queue("plan-added-later").name == "plan-added-later"
    with pytest.raises(KeyError):
        django_rq.get_queue("no-such-queue")


@pytest.mark.django_db(transaction=True)
def test_reconcile_counts_starting_builds_no_worker_serves(reference_data, clean_redis, caplog):
    from builds.execution import reconcile
    from tests.web_support import create_build, create_tenant

    add_plan("gold", tier_rank=99)
    create_build(create_tenant(plan="gold"), status="starting")
    create_build(create_tenant(plan="basic"), status="starting")
    old_worker = Worker(["plan-basic"], connection=clean_redis)  # a fixed-queue worker, as the old Procfile ran
    old_worker.register_birth()
    try:
        counts = reconcile()
        assert (counts["reenqueued_starting"], counts["starting_unserved"]) == (2, 1)
        assert "1 starting build(s) on queue plan-gold, which no worker serves" in caplog.text

        build_worker = InProcessPlanWorker([], connection=clean_redis)
        build_worker.register_birth()
        assert reconcile()["starting_unserved"] == 0
        build_worker.register_death()
    finally:
        old_worker.register_death()
