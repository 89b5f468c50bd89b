from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.exports import csv_safe_cell
from billing.services import build_meter, utc_today

# Fixed ceilings, the same for 1 and for 50 tenants x days (measured 18 and 21, with a little headroom
# for the shared base template).
OVERVIEW_MAX_QUERIES = 20
TENANT_PAGE_MAX_QUERIES = 23


def metered(build_factory, tenant, *, hours: float, ended: datetime | None = None):
    ended = ended or datetime.now(UTC)
    build = build_factory(tenant, steps=[("train", "ml.m5.large", 1, ended - timedelta(hours=hours), ended)])
    build_meter(build=build)
    return build


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response).decode() if response.streaming
                                       else response.content.decode())))


@pytest.fixture
def two_tenants(tenant_factory, build_factory, make_member):
    acme, globex = tenant_factory(slug="acme", name="Acme"), tenant_factory(slug="globex", name="Globex")
    metered(build_factory, acme, hours=2)  # $0.23
    metered(build_factory, globex, hours=4)  # $0.46
    return acme, globex, make_member(acme)


# ----- ownership: a tenant user never reads another tenant's costs -----

@pytest.mark.parametrize("name", ["billing:tenant", "billing:statement", "billing:export_costs",
                                  "billing:export_statement"])
def test_tenant_views_404_for_another_tenants_user(client, two_tenants, name):
    acme, globex, acme_user = two_tenants
    client.force_login(acme_user)

    assert client.get(reverse(name, args=[globex.slug])).status_code == 404
    assert client.get(reverse(name, args=[acme.slug])).status_code == 200


@pytest.mark.parametrize("name", ["billing:overview", "billing:export_costs_all", "billing:export_statements_all",
                                  "billing:prices"])
def test_staff_views_404_for_tenant_users(client, two_tenants, name):
    client.force_login(two_tenants[2])

    assert client.get(reverse(name)).status_code == 404


def test_billing_views_need_login(client, two_tenants):
    response = client.get(reverse("billing:tenant", args=["acme"]))

    assert (response.status_code, response.url.split("?")[0]) == (302, reverse("login"))


def test_costs_api_is_tenant_scoped(api_client_for, two_tenants, staff_user):
    acme, globex, acme_user = two_tenants
    today = utc_today().isoformat()
    api = api_client_for(acme_user)

    stranger = api.get(f"/api/v1/tenants/{globex.slug}/costs", {"start": today, "end": today})
    own = api.get(f"/api/v1/tenants/{acme.slug}/costs", {"start": today, "end": today})
    staff = api_client_for(staff_user).get(f"/api/v1/tenants/{globex.slug}/costs", {"start": today, "end": today})

    assert stranger.status_code == 404
    assert "0.46" not in stranger.content.decode()
    assert own.status_code == 200
    assert own.json() == {"tenant": "acme", "start": today, "end": today,
                          "days": [{"day": today, "metered": "0.230000", "cost_explorer": None,
                                    "difference": None}],
                          "total_metered": "0.230000", "total_cost_explorer": "0"}
    assert (staff.status_code, staff.json()["total_metered"]) == (200, "0.460000")


def test_costs_api_difference_once_cost_explorer_has_the_day(api_client_for, two_tenants):
    from billing.models import DailyCost

    acme, _, acme_user = two_tenants
    today = utc_today()
    DailyCost.objects.create(day=today, tenant_slug="acme", service="Amazon SageMaker", amount=Decimal("0.30"))

    body = api_client_for(acme_user).get(f"/api/v1/tenants/{acme.slug}/costs",
                                         {"start": today.isoformat(), "end": today.isoformat()}).json()

    assert body["days"] == [{"day": today.isoformat(), "metered": "0.230000", "cost_explorer": "0.300000",
                             "difference": "0.070000"}]
    assert body["total_cost_explorer"] == "0.300000"


def test_tenant_costs_export_has_only_its_rows(client, two_tenants):
    acme, _, acme_user = two_tenants
    client.force_login(acme_user)

    rows = read_csv(client.get(reverse("billing:export_costs", args=[acme.slug])))

    assert rows == [["day", "tenant", "tenant_name", "metered_usd", "cost_explorer_usd", "difference_usd"],
                    [utc_today().isoformat(), "acme", "Acme", "0.230000", "", ""]]


def test_staff_costs_export_has_every_tenant(client, two_tenants, staff_user):
    client.force_login(staff_user)

    rows = read_csv(client.get(reverse("billing:export_costs_all")))

    assert [row[1:4] for row in rows[1:]] == [["acme", "Acme", "0.230000"], ["globex", "Globex", "0.460000"]]


def test_statement_export_margin_for_staff_only(client, two_tenants, staff_user):
    acme, _, acme_user = two_tenants
    month = utc_today().strftime("%Y-%m")
    client.force_login(acme_user)
    tenant_rows = read_csv(client.get(reverse("billing:export_statement", args=[acme.slug]), {"month": month}))
    client.force_login(staff_user)
    staff_rows = read_csv(client.get(reverse("billing:export_statement", args=[acme.slug]), {"month": month}))

    assert tenant_rows == [
        ["month", "tenant", "tenant_name", "plan", "monthly_fee_usd", "included_hours", "used_hours",
         "overage_hours", "overage_rate_usd", "overage_usd", "endpoint_hours", "endpoint_usd",
         "total_usd"],
        [month, "acme", "Acme", "Basic", "99.00", "10.00", "2.0000", "0", "4.00", "0.00", "0.0000", "0.00", "99.00"]]
    assert staff_rows[0][-4:] == ["metered_cost_usd", "cost_explorer_cost_usd", "aws_cost_usd", "margin_usd"]
    assert staff_rows[1][-4:] == ["0.230000", "", "0.230000", "98.770000"]


def test_margin_shown_to_staff_only(client, two_tenants, staff_user):
    acme, _, acme_user = two_tenants
    client.force_login(acme_user)
    assert 'id="statement-margin"' not in client.get(reverse("billing:tenant", args=[acme.slug])).content.decode()
    client.force_login(staff_user)
    assert 'id="statement-margin"' in client.get(reverse("billing:tenant", args=[acme.slug])).content.decode()


# ----- the costs export: streamed, the same rows from PostgreSQL's formatting and from Python's -----

@pytest.fixture
def export_history(tenant_factory):
    """Rollup rows that exercise every cell: metered only, Cost Explorer only, both (a negative difference),
    days a sync has not fetched, the untagged rest, a tenant slug without a tenant row, names a CSV quotes."""
    from billing.models import CostSyncRun, DailyUsage

    today = utc_today()
    tenant_factory(slug="b-quoted", name='Quote "and", comma')
    tenant_factory(slug="a-evil", name="=SUM(A1)")
    tenant_factory(slug="c-lines", name="two\nlines")
    tenant_factory(slug="bz")
    CostSyncRun.objects.create(status="succeeded", start_day=today - timedelta(days=5),
                               end_day=today - timedelta(days=2), last_final_day=today - timedelta(days=4))
    rows = []
    for n in range(8):
        day = today - timedelta(days=n)
        rows += [DailyUsage(day=day, tenant_slug="b-quoted", metered=Decimal("1.250000"),
                            cost_explorer=Decimal("1.000000") if n % 2 else None),
                 DailyUsage(day=day, tenant_slug="a-evil", cost_explorer=Decimal("0.300000")),
                 DailyUsage(day=day, tenant_slug="bz", metered=Decimal("0.000000"), cost_explorer=Decimal("0")),
                 DailyUsage(day=day, tenant_slug="gone", metered=Decimal("0.000001")),
                 DailyUsage(day=day, tenant_slug="c-lines", billable_seconds=60,  # no cost: no row, but on day 7
                            metered=Decimal("0.500000") if n == 7 else None),
                 DailyUsage(day=day, tenant_slug="", cost_explorer=Decimal("2.500000"))]
    DailyUsage.objects.bulk_create(rows)
    return today


def test_staff_costs_export_rows_streamed_in_order(client, staff_user, export_history):
    today = export_history
    client.force_login(staff_user)

    response = client.get(reverse("billing:export_costs_all"), {"start": today - timedelta(days=2), "end": today})

    assert response.streaming
    d0, d1, d2 = ((today - timedelta(days=n)).isoformat() for n in (2, 1, 0))
    assert read_csv(response) == [
        ["day", "tenant", "tenant_name", "metered_usd", "cost_explorer_usd", "difference_usd"],
        [d0, "a-evil", "'=SUM(A1)", "0", "0.300000", "0.300000"],
        [d0, "b-quoted", 'Quote "and", comma', "1.250000", "0", "-1.250000"],
        [d0, "bz", "Bz", "0.000000", "0.000000", "0.000000"],
        [d0, "gone", "", "0.000001", "0", "-0.000001"],
        [d0, "", "(untagged)", "", "2.500000", ""],
        [d1, "a-evil", "'=SUM(A1)", "0", "", ""],
        [d1, "b-quoted", 'Quote "and", comma', "1.250000", "", ""],
        [d1, "bz", "Bz", "0.000000", "", ""],
        [d1, "gone", "", "0.000001", "", ""],
        [d1, "", "(untagged)", "", "2.500000", ""],
        [d2, "a-evil", "'=SUM(A1)", "0", "", ""],
        [d2, "b-quoted", 'Quote "and", comma', "1.250000", "", ""],
        [d2, "bz", "Bz", "0.000000", "", ""],
        [d2, "gone", "", "0.000001", "", ""],
        [d2, "", "(untagged)", "", "2.500000", ""]]


@pytest.mark.parametrize("tenant_slug", [None, "b-quoted"])
def test_costs_export_same_bytes_from_database_and_python(export_history, tenant_slug):
    """On PostgreSQL the database formats the amounts; the portable path (SQLite) formats them in Python."""
    from django.db import connection

    from billing import exports, selectors
    from tenants.models import Tenant

    if connection.vendor != "postgresql":
        pytest.skip("the database-formatted path is PostgreSQL's")
    today = export_history
    start, end = today - timedelta(days=7), today
    names = dict(Tenant.objects.values_list("slug", "name"))
    chosen = selectors.cost_export_rows(start=start, end=end, tenant_slug=tenant_slug,
                                        include_untagged=tenant_slug is None)
    portable = selectors._cost_export_rows_portable(
        start=start, end=end, tenant_slug=tenant_slug, include_untagged=tenant_slug is None,
        covered=selectors.explorer_covered_days(start=start, end=end), names=names)

    database_bytes = "".join(exports.cost_csv_chunks(chosen, chunk_rows=7))
    python_bytes = "".join(exports.cost_csv_chunks(portable, chunk_rows=5))

    assert database_bytes == python_bytes
    assert database_bytes.count("\r\n") == 1 + (8 if tenant_slug else 8 * 5 + 1)
    assert '"Quote ""and"", comma"' in database_bytes
    assert ('"two\nlines"' in database_bytes) == (tenant_slug is None)


# ----- CSV formula injection -----

@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://evil.example\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_safe_cell_neutralises_formulas(text):
    assert csv_safe_cell(text) == "'" + text


def test_csv_safe_cell_keeps_plain_text_and_numbers():
    assert [csv_safe_cell(v) for v in ("Acme", "a=b", Decimal("-1.5"), 3, None)] == ["Acme", "a=b",
                                                                                     Decimal("-1.5"), 3, ""]


def test_csv_exports_neutralise_formula_in_tenant_name(client, tenant_factory, build_factory, staff_user,
                                                       make_member):
    evil = tenant_factory(slug="evil", name='=cmd|" /C calc"!A0')
    metered(build_factory, evil, hours=1)
    month = utc_today().strftime("%Y-%m")
    client.force_login(make_member(evil))
    own = read_csv(client.get(reverse("billing:export_costs", args=["evil"])))
    statement = read_csv(client.get(reverse("billing:export_statement", args=["evil"]), {"month": month}))
    client.force_login(staff_user)
    everyone = read_csv(client.get(reverse("billing:export_costs_all")))
    statements = read_csv(client.get(reverse("billing:export_statements_all"), {"month": month}))

    expected = '\'=cmd|" /C calc"!A0'
    assert [own[1][2], statement[1][2], everyone[1][2], statements[1][2]] == [expected] * 4


# ----- pages: charts, empty states, query counts -----

CHARTS_OVERVIEW = ["chart-daily-spend", "chart-revenue-cost-by-plan", "chart-top-tenants", "chart-metered-vs-ce"]
CHARTS_TENANT = ["chart-tenant-daily-spend", "chart-cost-per-build"]


def chart_figures(html: str, ids: list[str]) -> dict[str, dict]:
    figures = {}
    for chart_id in ids:
        assert f'<div id="{chart_id}" class="chart" data-figure="{chart_id}-data"' in html
        start = html.index(f'<script id="{chart_id}-data" type="application/json">') + len(
            f'<script id="{chart_id}-data" type="application/json">')
        figures[chart_id] = json.loads(html[start:html.index("</script>", start)])
    return figures


def test_overview_charts_and_plotly_from_static(client, staff_user, populate):
    populate(n_tenants=3, n_days=5, today=utc_today())
    client.force_login(staff_user)

    html = client.get(reverse("billing:overview")).content.decode()

    figures = chart_figures(html, CHARTS_OVERVIEW)
    assert len(figures["chart-daily-spend"]["data"]) == 3  # one stacked trace per tenant
    assert figures["chart-daily-spend"]["layout"]["barmode"] == "stack"
    assert [t["name"] for t in figures["chart-metered-vs-ce"]["data"]] == [
        "metered", "Cost Explorer", "Cost Explorer, untagged"]
    assert '/static/vendor/plotly.min.js' in html
    assert "cdn" not in html.lower()


def test_overview_daily_spend_stacks_top_tenants_and_the_rest(client, staff_user, populate):
    """12 tenants: the 10 biggest spenders of the 30 days get a band each, the other two share one, and each
    day's bands add up to that day's total."""
    from billing.charts import MAX_STACKED_TENANTS, OTHER_TENANTS
    from billing.models import DailyUsage

    populate(n_tenants=MAX_STACKED_TENANTS + 2, n_days=4, today=utc_today())
    client.force_login(staff_user)
    totals = {}
    for slug, amount in DailyUsage.objects.exclude(metered=None).values_list("tenant_slug", "metered"):
        totals[slug] = totals.get(slug, Decimal(0)) + amount
    ranked = sorted(totals, key=lambda slug: (-totals[slug], slug))

    figure = chart_figures(client.get(reverse("billing:overview")).content.decode(),
                           ["chart-daily-spend"])["chart-daily-spend"]

    assert [trace["name"] for trace in figure["data"]] == ranked[:MAX_STACKED_TENANTS] + [OTHER_TENANTS]
    by_day = {}
    for day, amount in DailyUsage.objects.exclude(metered=None).values_list("day", "metered"):
        by_day[day.isoformat()] = by_day.get(day.isoformat(), Decimal(0)) + amount
    x = figure["data"][0]["x"]
    stacked = [round(sum(trace["y"][n] for trace in figure["data"]), 6) for n in range(len(x))]
    assert stacked == [round(float(by_day.get(day, 0)), 6) for day in x]


def test_billing_figures_are_what_plotly_would_serialise(client, staff_user, populate, make_member):
    """The figures are built as plain dicts (core.charts.figure): plotly.py validates each and gives it back
    unchanged, so they are valid figures in plotly.py's own form."""
    import plotly.graph_objects as go

    from tenants.models import Tenant

    populate(n_tenants=3, n_days=5, today=utc_today())
    client.force_login(staff_user)
    tenant = Tenant.objects.order_by("slug").first()
    figures = {**chart_figures(client.get(reverse("billing:overview")).content.decode(), CHARTS_OVERVIEW),
               **chart_figures(client.get(reverse("billing:tenant", args=[tenant.slug])).content.decode(),
                               ["chart-tenant-daily-spend"])}

    for chart_id, figure in figures.items():
        assert json.loads(go.Figure(figure).to_json()) == figure, chart_id


def test_pages_empty_states(client, staff_user, tenant_factory, make_member):
    client.force_login(staff_user)
    overview = client.get(reverse("billing:overview")).content.decode()
    tenant = tenant_factory()
    client.force_login(make_member(tenant))
    page = client.get(reverse("billing:tenant", args=[tenant.slug])).content.decode()

    for chart_id in CHARTS_OVERVIEW:
        assert f'id="{chart_id}-empty"' in overview
    for chart_id in CHARTS_TENANT:
        assert f'id="{chart_id}-empty"' in page
    assert "No sync has run yet." in overview
    assert "No build in progress." in page


def test_tenant_page_charts_statement_and_cost_so_far(client, populate, make_member):
    tenant = populate(n_tenants=1, n_days=3, today=utc_today())[0]
    client.force_login(make_member(tenant))

    response = client.get(reverse("billing:tenant", args=[tenant.slug]))
    html = response.content.decode()

    figures = chart_figures(html, CHARTS_TENANT)
    assert len(figures["chart-cost-per-build"]["data"][0]["x"]) == len(response.context["build_costs"])
    assert response.context["statement"].tenant_slug == tenant.slug
    [running] = response.context["in_progress"]
    assert running["cost"].running > 0  # 5 minutes on ml.m5.large so far
    assert reverse("billing:export_costs", args=[tenant.slug]) in html
    assert reverse("billing:export_statement", args=[tenant.slug]) in html


@pytest.mark.parametrize("size", [1, 50])
def test_overview_query_count_does_not_grow(client, staff_user, populate, django_assert_max_num_queries, size):
    populate(n_tenants=size, n_days=size, today=utc_today())
    client.force_login(staff_user)

    with django_assert_max_num_queries(OVERVIEW_MAX_QUERIES):
        response = client.get(reverse("billing:overview"))

    assert response.status_code == 200
    assert len(response.context["statements"]) == size


@pytest.mark.parametrize("size", [1, 50])
def test_tenant_page_query_count_does_not_grow(client, populate, make_member, django_assert_max_num_queries, size):
    tenant = populate(n_tenants=size, n_days=size, today=utc_today())[0]
    client.force_login(make_member(tenant))

    with django_assert_max_num_queries(TENANT_PAGE_MAX_QUERIES):
        response = client.get(reverse("billing:tenant", args=[tenant.slug]))

    assert response.status_code == 200
    assert len(response.context["reconciliation"]) == min(size, 30)


def test_page_query_counts_equal_for_1_and_50(client, staff_user, populate, make_member):
    """Stricter than the ceilings above: exactly the same number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def counts(tenant) -> tuple[int, int]:
        found = []
        for user, url in ((staff_user, reverse("billing:overview")),
                          (make_member(tenant), reverse("billing:tenant", args=[tenant.slug]))):
            client.force_login(user)
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            found.append(len(queries))
        return found[0], found[1]

    [one] = populate(n_tenants=1, n_days=1, today=utc_today())
    small = counts(one)
    many = populate(n_tenants=50, n_days=50, today=utc_today())

    assert counts(many[0]) == small
