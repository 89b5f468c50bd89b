"""Running builds: claim, execute on the engine, poll, finish, recover.

The database row is the truth. A Redis job only says "look at build N"; it
may be lost (the reconciler re-enqueues) or run twice (the claim is a filtered
update that succeeds once).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builds import services
from builds.engines import get_engine
from builds.engines.base import ENGINE_FAILED, ENGINE_RUNNING, ENGINE_STOPPED, ENGINE_SUCCEEDED, EngineStatus
from builds.launch import launch_for
from builds.models import Build
from builds.queues import plan_queue_name
from core.aws.errors import AwsError

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # restarts after a lost worker
MAX_TRANSIENT_ATTEMPTS = 8  # starts refused by throttling/capacity before the build fails


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_execute(build_id: int) -> str:
    """Claim a `starting` build and run it on the configured engine."""
    build = Build.objects.select_related("tenant", "plan", "algorithm").get(pk=build_id)
    try:
        services.build_transition(build, Build.Status.RUNNING, expect=Build.Status.STARTING,
                                  reason=f"started on the {settings.MLAAS_ENGINE} engine",
                                  engine=settings.MLAAS_ENGINE, worker_id=worker_identity(),
                                  attempts=build.attempts + 1, cancel_requested=False)
    except services.TransitionRefused:
        return "not-claimed"
    engine = get_engine(build.engine)
    launch = launch_for(build)
    if not launch.training_image_uri:  # an algorithm from before the step image, never saved since
        _fail(build, f"the algorithm {build.algorithm.name} has no step image pinned yet; the vendor must save it "
                     "again (Algorithms page) before it can train")
        return "failed"
    try:
        if build.engine == "local":
            status = engine.run(launch, **_local_callbacks(build), tenant_s3=lambda: _tenant_build_s3(build))
            build_finish(build, status)
            return build.status
        ref = engine.start(launch)
        _record_execution(build, engine, launch, ref)
        return "started"
    except AwsError as exc:
        if exc.retryable and build.attempts < MAX_TRANSIENT_ATTEMPTS:
            _requeue(build, f"AWS was busy ({exc.code or 'transient error'}); the build will retry", backoff=True)
            return "requeued"
        _fail(build, f"the build could not start: {exc}")
        return "failed"
    except Exception as exc:  # noqa: BLE001 - the worker must go on with other builds
        logger.exception("build %s crashed", build.code)
        _fail(build, f"internal error while running the build ({type(exc).__name__}); the vendor was notified")
        return "failed"


def _record_execution(build: Build, engine, launch, ref: str) -> None:
    """Remember a remote build's execution, once: a racing recovery may have recorded one already.

    On AWS both hold the same ARN (same client request token). A different
    one (an emulator that ignores the token, or a token AWS forgot) is a
    duplicate execution: it is stopped, so it neither runs nor bills.
    """
    if Build.objects.filter(pk=build.pk, execution_ref="").update(execution_ref=ref, poll_after=timezone.now()):
        build.execution_ref = ref
        return
    recorded = Build.objects.filter(pk=build.pk).values_list("execution_ref", flat=True).first()
    if recorded and recorded != ref:
        logger.warning("build %s: a second execution %s was started; stopping it, %s is the build's", build.code,
                       ref, recorded)
        try:
            engine.stop(ref, launch)
        except Exception:  # noqa: BLE001 - the build itself goes on; the duplicate is logged
            logger.exception("build %s: stopping the duplicate execution %s failed", build.code, ref)


def recover_lost_start(build: Build) -> str:
    """A remote build claimed by a worker that died before StartPipelineExecution answered.

    The build is `running` with no execution: nothing would ever poll it, and
    it would hold a slot for ever. The engine adopts the execution the lost
    start made, or starts it with the same client request token (the claim's
    attempt), so the retry cannot run the pipeline twice. Returns what happened.
    """
    lost_before = timezone.now() - timedelta(seconds=settings.MLAAS_WORKER_LOST_AFTER_SECONDS)
    # Claimed here, by a filtered update: one reconciler recovers it, and a crash here is retried later.
    if not Build.objects.filter(pk=build.pk, status=Build.Status.RUNNING, execution_ref="",
                                heartbeat_at__lt=lost_before).update(
            heartbeat_at=timezone.now(), worker_id=f"recovery:{worker_identity()}"):
        return "not-claimed"
    engine = get_engine(build.engine)
    launch = launch_for(build)
    try:
        ref, adopted = engine.recover(launch, claimed_at=build.started_at)
    except AwsError as exc:
        if exc.retryable:
            logger.warning("build %s: recovering its start failed, retried later: %s", build.code, exc)
            return "retry-later"
        _fail(build, f"the build could not start: {exc}")
        return "failed"
    _record_execution(build, engine, launch, ref)
    logger.info("build %s: worker lost while starting; %s execution %s", build.code,
                "adopted" if adopted else "started", ref)
    return "adopted" if adopted else "restarted"


def _tenant_build_s3(build: Build):
    """S3 as the tenant's role, narrowed to its location, for as long as a build may run."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    return gateways.tenant_s3(tenant_assume(build.tenant, purpose="build", duration=43200, narrow_to_location=True))


def _local_callbacks(build: Build) -> dict:
    """Live step progress, a heartbeat the reconciler watches, and cancellation, all via the row."""
    last = {"beat": 0.0, "cancel_check": 0.0, "cancel": False}

    def heartbeat() -> None:
        now = time.monotonic()
        if now - last["beat"] >= 2:
            Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())
            last["beat"] = now

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - last["cancel_check"] >= 1:
            last["cancel"] = Build.objects.filter(pk=build.pk, cancel_requested=True).exists()
            last["cancel_check"] = now
        return last["cancel"]

    def on_progress(steps) -> None:
        services.build_record_steps(build, steps)
        Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())

    def on_data_report(report: dict) -> None:
        Build.objects.filter(pk=build.pk).update(data_report=report)
        services.build_record_algorithm_choice(build=build, data_report=report)

    return {"on_progress": on_progress, "should_cancel": should_cancel, "heartbeat": heartbeat,
            "on_data_report": on_data_report}


def _requeue(build: Build, reason: str, *, backoff: bool = False) -> None:
    """Back to the queue; after a transient AWS error, not before an exponential backoff."""
    not_before = None
    if backoff:
        delay = min(300, 5 * 2 ** max(0, build.attempts - 1))
        not_before = timezone.now() + timedelta(seconds=delay)
        reason = f"{reason} in {delay} s"
    try:
        services.build_transition(build, Build.Status.QUEUED, expect=(Build.Status.RUNNING, Build.Status.STARTING),
                                  reason=reason, execution_ref="", worker_id="", not_before=not_before)
    except services.TransitionRefused:
        pass
    transaction.on_commit(services._kick_dispatch)


def _fail(build: Build, reason: str) -> None:
    try:
        services.build_transition(build, Build.Status.FAILED, reason=reason,
                                  expect=(Build.Status.RUNNING, Build.Status.STARTING))
    except services.TransitionRefused:
        return
    _after_finish(build)


def build_finish(build: Build, status: EngineStatus) -> None:
    """Record the engine's final (or current) status on the build."""
    services.build_record_steps(build, status.steps)
    Build.objects.filter(pk=build.pk).update(metrics=status.metrics, data_report=status.data_report,
                                             heartbeat_at=timezone.now())
    build.metrics, build.data_report = status.metrics, status.data_report
    services.build_record_algorithm_choice(build=build, data_report=status.data_report)
    if status.state == ENGINE_RUNNING:
        return
    if status.state == ENGINE_SUCCEEDED and status.model_package_arn:
        services.model_version_register(build=build, arn=status.model_package_arn, metrics=status.metrics,
                                        artifact_key=status.artifact_uri.split("/", 3)[-1],
                                        evaluation=_evaluation_report(build))
    target = {ENGINE_SUCCEEDED: Build.Status.SUCCEEDED, ENGINE_FAILED: Build.Status.FAILED,
              ENGINE_STOPPED: Build.Status.CANCELLED}[status.state]
    reason = status.failure_reason if target == Build.Status.FAILED else (
        "cancelled" if target == Build.Status.CANCELLED else "model registered")
    try:
        services.build_transition(build, target, reason=reason, expect=Build.Status.RUNNING)
    except services.TransitionRefused:
        return
    _after_finish(build)


def _evaluation_report(build: Build) -> dict:
    """The evaluate step's evaluation.json in the build's output location (insight, training summary); {} if unread.

    Both engines keep it at `<output prefix>evaluation/evaluation.json` (the pipeline definition's
    EVALUATION_REPORT_PATH), so the version's insight has one source whichever engine ran the build.
    """
    from core.aws import gateways
    from core.aws.pipeline_definition import EVALUATION_REPORT_PATH

    key = f"{launch_for(build).output_prefix}{EVALUATION_REPORT_PATH}"
    try:
        report = gateways.platform_s3().get_json(build.dataset_bucket, key)
    except (AwsError, ValueError):
        logger.warning("build %s: no evaluation report at %s; the version has no insight", build.code, key)
        return {}
    return report if isinstance(report, dict) else {}


def _after_finish(build: Build) -> None:
    """A slot is free: charge the tenant's fair share, write the ledger, dispatch the next build.

    (Billing meters the steps the ledger reads.)
    """
    from builds import queues
    from builds.usage import build_usage_settle

    build_usage_settle(build)  # what the scheduler tick has not charged while it ran (builds.usage)

    transaction.on_commit(lambda: queues.enqueue_ledger(build.pk))
    transaction.on_commit(services._kick_dispatch)


def build_poll(build: Build) -> None:
    """Update a running (remote-engine) build from its engine, backing off on throttling."""
    engine = get_engine(build.engine)
    try:
        status = engine.status(build.execution_ref, launch_for(build))
    except AwsError as exc:
        errors = build.poll_errors + 1
        if not exc.retryable and errors >= 5:
            _fail(build, f"the build's status could not be read: {exc}")
            return
        delay = min(300, 5 * 2 ** min(errors, 6))
        Build.objects.filter(pk=build.pk).update(poll_errors=errors,
                                                 poll_after=timezone.now() + timedelta(seconds=delay))
        return
    Build.objects.filter(pk=build.pk).update(poll_errors=0, poll_after=timezone.now() + timedelta(seconds=10))
    build_finish(build, status)


def poll_running() -> int:
    due = (Build.objects.select_related("tenant", "plan", "algorithm")
           .filter(status=Build.Status.RUNNING, engine="sagemaker")
           .exclude(execution_ref="").filter(poll_after__lte=timezone.now()))
    count = 0
    for build in due[:200]:
        try:
            build_poll(build)
        except Exception:  # noqa: BLE001 - one bad build never stops the poller
            logger.exception("polling build %s failed", build.code)
        count += 1
    return count


def _warn_unserved(starting_queues: dict[str, int]) -> int:
    """Starting builds on queues no live worker listens on: say so, they would wait for ever."""
    from builds.queues import queue_worker_counts

    if not starting_queues:
        return 0
    try:
        workers = queue_worker_counts(list(starting_queues))
    except Exception:  # noqa: BLE001 - Redis down: the enqueue above already said so
        return 0
    unserved = {name: n for name, n in starting_queues.items() if not workers[name]}
    for name, n in unserved.items():
        logger.warning("%s starting build(s) on queue %s, which no worker serves: run manage.py rqworker_builds",
                       n, name)
    return sum(unserved.values())


def reconcile() -> dict[str, int]:
    """Rebuild derived state from the database: lost jobs, lost workers, stuck rows."""
    from builds import queues

    now = timezone.now()
    counts = {"requeued_received": 0, "reenqueued_starting": 0, "worker_lost": 0, "starting_unserved": 0}
    for build in Build.objects.filter(status=Build.Status.RECEIVED, created_at__lt=now - timedelta(seconds=30)):
        try:
            services.build_transition(build, Build.Status.QUEUED, reason="recovered by reconciler")
            counts["requeued_received"] += 1
        except services.TransitionRefused:
            pass
    starting_queues: dict[str, int] = {}
    for build in Build.objects.select_related("plan").filter(status=Build.Status.STARTING):
        starting_queues[plan_queue_name(build.plan.slug)] = starting_queues.get(plan_queue_name(build.plan.slug), 0) + 1
        if not queues.execute_job_exists(str(build.code)):
            queues.enqueue_execute(build.pk, str(build.code), plan_queue_name(build.plan.slug))
            counts["reenqueued_starting"] += 1
    counts["starting_unserved"] = _warn_unserved(starting_queues)
    lost_after = timedelta(seconds=settings.MLAAS_WORKER_LOST_AFTER_SECONDS)
    for build in Build.objects.filter(status=Build.Status.RUNNING, engine="local", heartbeat_at__lt=now - lost_after):
        counts["worker_lost"] += 1
        if build.attempts < MAX_ATTEMPTS:
            _requeue(build, f"worker lost (no heartbeat for {settings.MLAAS_WORKER_LOST_AFTER_SECONDS} s); "
                            "the build restarts")
        else:
            _fail(build, f"worker lost: the build stopped responding {build.attempts} times; retry it or "
                         "contact the vendor")
    counts["start_lost"] = 0
    for build in (Build.objects.select_related("tenant", "plan", "algorithm")
                  .filter(status=Build.Status.RUNNING, execution_ref="", heartbeat_at__lt=now - lost_after)
                  .exclude(engine="local")):
        counts["start_lost"] += 1
        try:
            recover_lost_start(build)
        except Exception:  # noqa: BLE001 - one bad build never stops the reconciler
            logger.exception("recovering build %s failed", build.code)
    from builds.dispatch import dispatch_pending
    from builds.usage import running_usage_charge

    counts["usage_charged_tenants"] = running_usage_charge()  # before the round: it orders by this usage
    dispatch_pending()
    return counts
