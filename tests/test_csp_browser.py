"""The main pages under the production Content Security Policy in a real Chromium: no violation is reported
(the `securitypolicyviolation` events and the console), and the interactive parts still work: the Plotly
charts are drawn, the month picker submits, a running build's page keeps polling through htmx, and the phone
menu opens.

Skipped without /usr/bin/chromium (CI has it); marked `browser`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, PASSWORD, chromium, log_in, screenshots_on_failure  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
]

# Runs before any page script, outside the page's CSP: collects every violation the page reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at "
                              + (e.sourceFile || location.pathname) + ":" + e.lineNumber);
});
"""


def _billing_data(tenant, days: int = 5) -> None:
    """A metered build per day for the last few days, so every billing chart has something to draw."""
    from billing.rollups import rollups_refresh
    from billing.services import utc_today
    from tests.factories import CostLineFactory
    from tests.web_support import create_build

    today = utc_today()
    for n in range(days):
        day = today - timedelta(days=n)
        build = create_build(tenant, created_at=datetime(day.year, day.month, day.day, 8, tzinfo=UTC))
        CostLineFactory(step=build.steps.get(name="train"), day=day)
    rollups_refresh(start=today - timedelta(days=days), end=today)  # what metering does as it writes cost lines


class Watch:
    """Violations and console errors of one browser context, across its pages."""

    def __init__(self, context):
        self.console: list[str] = []
        self.errors: list[str] = []
        self.headers: dict[str, str] = {}
        context.add_init_script(RECORD_VIOLATIONS)
        context.on("page", self.attach)

    def attach(self, page) -> None:
        # Failed loads are checked by URL below (the browser asks for /favicon.ico, which the portal has not).
        page.on("console", lambda msg: self.console.append(f"{page.url}: {msg.text}")
                if (msg.type == "error" and not msg.text.startswith("Failed to load resource"))
                or "Content Security Policy" in msg.text else None)
        page.on("response", lambda r: self.errors.append(f"{page.url}: {r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    def visit(self, page, url: str) -> None:
        response = page.goto(url)
        assert response.status == 200, (url, response.status)
        self.headers[url] = response.headers.get("content-security-policy", "")
        page.wait_for_load_state("networkidle")

    def violations(self, page) -> list[str]:
        return page.evaluate("window.__cspViolations || []")


@pytest.mark.django_db(transaction=True)
def test_main_pages_report_no_csp_violation_and_keep_working(chromium, live_server, reference_data,  # noqa: F811
                                                            staff_user, settings):
    from django.utils import timezone

    from tests.web_support import create_build, create_member, create_tenant

    base = live_server.url
    settings.DEBUG = False  # production: django-csp leaves no page alone
    tenant = create_tenant(slug="csp-co", name="CSP Co")
    owner = create_member(tenant, role="owner", password=PASSWORD)
    _billing_data(tenant)
    running = create_build(tenant, status="running", created_at=timezone.now() - timedelta(minutes=5))
    done = create_build(tenant, status="succeeded", version=True, metrics={"accuracy": 0.93, "f1": 0.9},
                        created_at=timezone.now() - timedelta(hours=2))
    pages = {
        staff_user.username: ["/", "/builds/", "/tenants/", f"/tenants/{tenant.slug}/", "/tenants/plans/",
                              "/tenants/scheduling/", "/tenants/plans/basic/", "/tenants/requests/",
                              "/tenants/new/", "/builds/algorithms/", "/billing/",
                              "/billing/prices/", f"/billing/tenants/{tenant.slug}/", f"/builds/{done.code}/",
                              "/admin/"],
        owner.username: ["/", "/builds/", f"/builds/upload/{tenant.slug}/", f"/builds/models/{tenant.slug}/",
                         f"/builds/{done.code}/", f"/billing/tenants/{tenant.slug}/",
                         f"/billing/tenants/{tenant.slug}/statement/", "/tokens/", f"/tenants/{tenant.slug}/"],
        None: ["/catalog/", "/login/"],
    }
    found: list[str] = []
    contexts = []
    for user, urls in pages.items():
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        watch = Watch(context)
        with screenshots_on_failure(f"csp-{user or 'anonymous'}", context):
            page = context.new_page()
            if user:
                log_in(page, base, user)
            for url in urls:
                watch.visit(page, f"{base}{url}")
                found += [f"{url}: {v}" for v in watch.violations(page)]
            if user == staff_user.username:
                _check_staff_interactions(page, base, tenant)
                found += [f"(staff interactions): {v}" for v in watch.violations(page)]
            if user == owner.username:
                _check_owner_interactions(page, base, tenant, running)
                found += [f"(owner interactions): {v}" for v in watch.violations(page)]
        found += [f"console: {line}" for line in watch.console] + [f"script error: {e}" for e in watch.errors]
        for url, header in watch.headers.items():
            assert "script-src 'self'" in header and "'unsafe-inline'" not in header, (url, header)
            assert "style-src 'self'" in header and "'unsafe-eval'" not in header, (url, header)
    for context in contexts:
        context.close()
    assert found == []


def _check_staff_interactions(page, base: str, tenant) -> None:
    page.goto(f"{base}/billing/")
    for chart_id in ("chart-daily-spend", "chart-revenue-cost-by-plan", "chart-top-tenants"):
        page.wait_for_selector(f"#{chart_id}.js-plotly-plot .main-svg", timeout=15_000)
    # Plotly's own CSS is the static copy (no injected <style>), and hovering a bar draws its tooltip.
    assert page.evaluate("document.getElementById('plotly.js-style-global').sheet.cssRules.length") > 50
    bar = page.locator("#chart-daily-spend .bars .point path").last
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#chart-daily-spend .hoverlayer .hovertext", state="attached", timeout=5_000)
    # The month picker submits its form by itself (portal.js, not an inline onchange).
    options = page.eval_on_selector_all("select[name=month] option", "els => els.map(e => e.value)")
    with page.expect_navigation():
        page.select_option("select[name=month]", options[1])
    assert page.url == f"{base}/billing/?month={options[1]}"


def _check_owner_interactions(page, base: str, tenant, running) -> None:
    page.goto(f"{base}/billing/tenants/{tenant.slug}/")
    page.wait_for_selector("#chart-tenant-daily-spend.js-plotly-plot .main-svg", timeout=15_000)
    page.wait_for_selector("#chart-cost-per-build.js-plotly-plot .main-svg", timeout=15_000)
    # A running build's page refreshes itself through htmx every 2 s.
    page.goto(f"{base}/builds/{running.code}/")
    with page.expect_request(lambda r: r.url.endswith(f"/builds/{running.code}/")
                             and r.headers.get("hx-request") == "true", timeout=10_000):
        pass
    assert re.search(r"running", page.inner_text("#build-body"))
    # The upload page's script is wired: a non-CSV file is refused next to the field.
    page.goto(f"{base}/builds/upload/{tenant.slug}/")
    page.set_input_files("#upload-file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                 "buffer": b"just notes\n"}])
    page.click("#upload-submit")
    assert page.inner_text("#file-error") == "Upload a .csv file."
    # On a phone the menu opens from its toggle (CSS only).
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/")
    page.click("label.nav-toggle-label")
    assert page.is_visible("header .nav-links a[href='/builds/']")
