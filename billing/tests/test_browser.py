"""Plotly charts are drawn in a real Chromium (skipped where there is none; CI runs it)."""

from __future__ import annotations

import os

import pytest

from billing.services import utc_today

CHROMIUM = os.environ.get("MLAAS_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM) or bool(os.environ.get("MLAAS_SKIP_BROWSER")),
                       reason=f"needs Chromium at {CHROMIUM}"),
]


def test_billing_charts_are_drawn(transactional_db, live_server, populate, staff_user, client):
    from playwright.sync_api import sync_playwright

    tenant = populate(n_tenants=3, n_days=5, today=utc_today())[0]
    client.force_login(staff_user)
    session = client.cookies["sessionid"].value

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            page.goto(f"{live_server.url}/billing/")
            for chart_id in ("chart-daily-spend", "chart-revenue-cost-by-plan", "chart-top-tenants",
                             "chart-metered-vs-ce"):
                page.wait_for_selector(f"#{chart_id}.js-plotly-plot", timeout=15000)
            page.goto(f"{live_server.url}/billing/tenants/{tenant.slug}/")
            for chart_id in ("chart-tenant-daily-spend", "chart-cost-per-build"):
                page.wait_for_selector(f"#{chart_id}.js-plotly-plot", timeout=15000)
        finally:
            browser.close()


PHONE_WIDTH = 375


def test_statement_and_billing_pages_fit_a_phone_screen(transactional_db, live_server, populate, staff_user,
                                                       make_member):
    """Wide tables scroll inside their box; the page itself never scrolls sideways at 375 px."""
    from django.test import Client
    from playwright.sync_api import sync_playwright

    tenant = populate(n_tenants=3, n_days=5, today=utc_today())[0]
    pages = {"staff": ["/billing/", f"/billing/tenants/{tenant.slug}/", f"/billing/tenants/{tenant.slug}/statement/",
                       "/billing/prices/"],
             "member": [f"/billing/tenants/{tenant.slug}/", f"/billing/tenants/{tenant.slug}/statement/"]}
    sessions = {}
    for who, user in (("staff", staff_user), ("member", make_member(tenant, role="owner"))):
        client = Client()  # one each: a second force_login on one client would end the first session
        client.force_login(user)
        sessions[who] = client.cookies["sessionid"].value

    overflowing = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            for who, paths in pages.items():
                context = browser.new_context(viewport={"width": PHONE_WIDTH, "height": 800})
                context.add_cookies([{"name": "sessionid", "value": sessions[who], "url": live_server.url}])
                page = context.new_page()
                for path in paths:
                    response = page.goto(f"{live_server.url}{path}")
                    assert (response.status, page.url) == (200, f"{live_server.url}{path}")
                    page.wait_for_load_state("networkidle")  # charts are drawn by then
                    widths = page.evaluate("[document.documentElement.scrollWidth, "
                                           "document.documentElement.clientWidth]")
                    if widths[0] > widths[1]:
                        overflowing.append((who, path, *widths))
                context.close()
        finally:
            browser.close()

    assert overflowing == []
