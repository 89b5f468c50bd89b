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
