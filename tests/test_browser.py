"""The product in a real browser: Chromium driven by Playwright against live_server, with the local stack
(AWS emulator, Redis queues, intake, dispatcher and the local engine) driven from this process.

Staff onboard a tenant through the form and provisioning runs; the tenant's owner sets a password from the
invitation link, uploads a CSV from the upload page straight to S3, watches the build run to `succeeded`
with live updates and sees the model version; the spend chart is drawn; another tenant's user gets 404 on
that build. A second test checks every main page at phone width.

Screenshots: test-results/<test>-<page>.png on failure; test-results/screens/*.png of the dashboard, a
running build and the upload page on every run.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
RESULTS = Path(os.environ.get("MLAAS_TEST_RESULTS", Path(__file__).resolve().parent.parent / "test-results"))
SCREENS = RESULTS / "screens"
PASSWORD = "pw-Secret-123"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
]


@pytest.fixture
def chromium(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between browser
    # steps are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@contextlib.contextmanager
def screenshots_on_failure(name: str, *contexts):
    """Re-raise any failure after saving a screenshot of every open page to test-results/."""
    try:
        yield
    except BaseException:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for c, context in enumerate(contexts):
            for p, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(RESULTS / f"{name}-{c}-{p}.png"), full_page=True)
        raise


def shot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def log_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_url(f"{base}/")


class _ThreadWorker:
    """An RQ SimpleWorker usable off the main thread (no signal handlers; timeouts by timer, not SIGALRM)."""

    @staticmethod
    def make(queue: str):
        import django_rq
        from rq import SimpleWorker
        from rq.timeouts import TimerDeathPenalty

        class ThreadWorker(SimpleWorker):
            death_penalty_class = TimerDeathPenalty

            def _install_signal_handlers(self):
                pass

        return django_rq.get_worker(queue, worker_class=ThreadWorker)


class LocalStack:
    """Intake, dispatch, the build workers and billing's metering in a background thread, as `make run`'s
    processes (intake loop, workers, scheduler tick) would be."""

    def __init__(self, queues: list[str]):
        self.queues = queues
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="local-stack", daemon=True)

    def _run(self) -> None:
        from django.db import connections

        from billing.jobs import billing_tick
        from builds.intake import intake_poll_once

        try:
            while not self.stop.is_set():
                intake_poll_once(wait_seconds=1)
                for queue in self.queues:
                    _ThreadWorker.make(queue).work(burst=True)
                billing_tick()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            connections.close_all()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.errors, self.errors


@pytest.fixture
def sample_csv(tmp_path):
    from mlaas_steps.sample_data import write_sample_csvs

    return write_sample_csvs(tmp_path)["breast_cancer"]


@pytest.mark.django_db(transaction=True)
def test_onboard_upload_build_model_spend_and_isolation(chromium, live_server, settings, emulator, reference_data,
                                                        staff_user, clean_redis, sample_csv, local_runtime):
    import django_rq
    from rq import SimpleWorker

    from builds.models import Build, ModelVersion
    from tenants.models import Tenant
    from tests.web_support import create_member, create_tenant

    base = live_server.url
    settings.PORTAL_ORIGIN = base  # the tenant bucket's CORS rule must allow the page's origin
    staff_ctx = chromium.new_context(viewport=DESKTOP, timezone_id="Europe/Paris")
    owner_ctx = chromium.new_context(viewport=DESKTOP, timezone_id="Europe/Paris")
    stranger_ctx = chromium.new_context(viewport=DESKTOP)
    with screenshots_on_failure("onboard-upload-build", staff_ctx, owner_ctx, stranger_ctx):
        # Staff onboard a tenant through the form.
        staff = staff_ctx.new_page()
        log_in(staff, base, staff_user.username)
        staff.goto(f"{base}/tenants/new/")
        staff.fill("#id_slug", "browser-co")
        staff.fill("#id_name", "Browser Co")
        staff.select_option("#id_plan", "premium")
        staff.select_option("#id_isolation", "silo")
        staff.fill("#id_owner_email", "owner@browser.example")
        staff.click("button[type=submit]")
        staff.wait_for_url(f"{base}/tenants/browser-co/")
        invite = re.search(r"set a password: (\S+/reset/\S+/)", staff.inner_text(".flash.success")).group(1)

        # Provisioning: the job the form queued, run by a worker; the page polls until the tenant is active.
        assert django_rq.get_worker("provisioning", worker_class=SimpleWorker).work(burst=True)
        staff.wait_for_selector('#tenant-status[data-status="active"]', timeout=15_000)
        tenant = Tenant.objects.get(slug="browser-co")
        assert (tenant.status, tenant.plan.slug, tenant.isolation) == ("active", "premium", "silo")

        # The owner sets a password from the invitation and logs in.
        owner = owner_ctx.new_page()
        owner.goto(invite)
        owner.fill("#id_new_password1", PASSWORD)
        owner.fill("#id_new_password2", PASSWORD)
        owner.click("button[type=submit]")
        owner.wait_for_selector("text=Password set")
        log_in(owner, base, "owner@browser.example")
        assert owner.title() == "Browser Co · MLaaS Portal"
        assert "No builds yet: upload a CSV to start one." in owner.inner_text("#recent-builds")

        # Upload through the page: presigned POST straight to S3 with a progress bar.
        owner.goto(f"{base}/builds/upload/browser-co/")
        assert "No datasets yet" in owner.inner_text("#datasets")
        not_csv = sample_csv.with_name("notes.txt")
        not_csv.write_text("just notes\n")
        owner.set_input_files("#upload-file", str(not_csv))
        owner.click("#upload-submit")
        assert owner.inner_text("#file-error") == "Upload a .csv file."  # next to the field, nothing sent
        assert owner.get_attribute("#upload-file", "aria-invalid") == "true"
        owner.set_input_files("#upload-file", str(sample_csv))
        owner.select_option("#upload-algorithm", "gbm-classifier")
        owner.fill("#upload-target", "diagnosis")
        shot(owner, "upload")
        with LocalStack(["default", "plan-premium"]):
            owner.click("#upload-submit")
            owner.wait_for_url(re.compile(rf"{re.escape(base)}/builds/[0-9a-f-]{{36}}/$"), timeout=30_000)
            build = Build.objects.get(tenant=tenant)
            assert owner.url == f"{base}/builds/{build.code}/"

            # The detail page polls every 2 s: catch it running, then succeeded.
            owner.wait_for_selector('#build-status[data-status="running"]', timeout=60_000)
            owner.wait_for_selector("#step-train.running, #step-evaluate.running, #step-preprocess.running",
                                    timeout=30_000)
            shot(owner, "build-running")
            running_text = owner.inner_text("#build-body")
            assert "cost so far" in running_text and "running for" in running_text
            owner.wait_for_selector('#build-status[data-status="succeeded"]', timeout=90_000)

        build.refresh_from_db()
        assert build.status == "succeeded", build.failure_reason
        owner.wait_for_selector("#model-version", timeout=10_000)
        assert owner.get_attribute("#build-body", "hx-trigger") is None  # polling stopped
        body = owner.inner_text("#build-body")
        assert "Model version 1" in body and "Pending approval" in body and "Accuracy" in body
        assert [owner.get_attribute(f"#step-{s}", "class") for s in
                ("preprocess", "train", "evaluate", "condition", "register")] == ["succeeded"] * 5
        version = ModelVersion.objects.get(build=build)
        owner.click("#log-train summary")
        assert owner.is_visible("#log-train pre")

        # Approve from the build page.
        owner.click("#approve-model")
        owner.wait_for_selector("text=Model version 1 approved.")
        version.refresh_from_db()
        assert version.approval_status == "Approved"

        # Models page and build history.
        owner.goto(f"{base}/builds/models/browser-co/")
        assert "v1" in owner.inner_text("#model-versions") and "Approved" in owner.inner_text("#model-versions")
        owner.goto(f"{base}/builds/")
        assert str(build.code)[:8] in owner.inner_text("#build-table")

        # Spend: the billing page's Plotly chart is drawn.
        owner.goto(f"{base}/billing/tenants/browser-co/")
        owner.wait_for_selector("#chart-tenant-daily-spend.js-plotly-plot", timeout=15_000)
        assert owner.locator("#chart-tenant-daily-spend .main-svg").count() >= 1

        # Times are shown in the browser's zone (Europe/Paris), sent by portal.js as the tz cookie.
        assert "times in Europe/Paris" in owner.inner_text("footer")

        # Another tenant's user gets 404 on that build.
        other = create_tenant(slug="other-co", name="Other Co")
        stranger_user = create_member(other, password=PASSWORD)
        stranger = stranger_ctx.new_page()
        log_in(stranger, base, stranger_user.username)
        response = stranger.goto(f"{base}/builds/{build.code}/")
        assert response.status == 404
        assert stranger.title() == "Not found · MLaaS Portal"
        assert "Browser Co" not in stranger.content() and "breast_cancer" not in stranger.content()

        # The vendor dashboard with a finished build, spend and a tenant.
        staff.goto(f"{base}/")
        assert staff.inner_text("#stat-active-tenants") == "2"
        assert staff.inner_text("#stat-success-rate") == "100%"
        assert staff.inner_text("#stat-spend") != "$0.00"
        shot(staff, "dashboard")
    for context in (staff_ctx, owner_ctx, stranger_ctx):
        context.close()


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.django_db(transaction=True)
def test_main_pages_fit_a_phone_and_a_desktop(chromium, live_server, reference_data, staff_user):
    from datetime import timedelta

    from django.utils import timezone

    from tests.web_support import create_build, create_member, create_tenant

    base = live_server.url
    tenant = create_tenant(slug="phone-co", name="Phone Co")
    owner = create_member(tenant, role="owner", password=PASSWORD)
    for n in range(8):
        create_build(tenant, status=("succeeded", "failed", "running", "queued")[n % 4], version=n % 4 == 0,
                     created_at=timezone.now() - timedelta(hours=n), metrics={"accuracy": 0.9, "f1": 0.88},
                     failure_reason="column `label` not found; columns are: `a`, `b`, `c`" if n % 4 == 1 else "")
    running = tenant.builds.filter(status="running").first()
    pages = {
        staff_user.username: ["/", "/builds/", "/tenants/", "/tenants/plans/", "/tenants/scheduling/",
                              f"/tenants/{tenant.slug}/", "/builds/algorithms/", "/tenants/requests/",
                              f"/builds/{running.code}/"],
        owner.username: ["/", "/builds/", f"/builds/models/{tenant.slug}/", f"/builds/{running.code}/", "/tokens/",
                         f"/tenants/{tenant.slug}/"],
        None: ["/catalog/", "/login/"],
    }
    phone_ctx = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    desktop_ctx = chromium.new_context(viewport=DESKTOP)
    with screenshots_on_failure("phone", phone_ctx, desktop_ctx):
        overflowing = []
        for user, urls in pages.items():
            for context in (phone_ctx, desktop_ctx):
                context.clear_cookies()
                page = context.new_page()
                if user:
                    log_in(page, base, user)
                for url in urls:
                    response = page.goto(f"{base}{url}")
                    assert response.status == 200, url
                    assert page.title().endswith(" · MLaaS Portal"), url
                    if not _no_horizontal_scroll(page):
                        overflowing.append((context is phone_ctx and "phone" or "desktop", url))
                page.close()
        assert overflowing == []

        # On a phone the menu folds behind a toggle.
        page = phone_ctx.new_page()
        log_in(page, base, owner.username)
        assert not page.is_visible("header .nav-links")
        page.click("label.nav-toggle-label")
        assert page.is_visible("header .nav-links a[href='/builds/']")
        shot(page, "tenant-home-phone")
        page.goto(f"{base}/builds/{running.code}/")
        shot(page, "build-detail-phone")
