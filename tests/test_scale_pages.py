"""Pages at scale: keyset pages of the builds list (order and edges), the staff-only tenant autocomplete,
and page query counts that stay exactly the same when rows are added (bench/pages.py measures the time)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.keyset import BadCursor, decode_cursor, encode_cursor, keyset_page
from tests.web_support import T0, client_for, create_build, create_member, create_tenant

pytestmark = pytest.mark.django_db


# ----- keyset pagination -----

def walk_forward(qs, *, key, descending, size):
    page, seen = keyset_page(qs, key=key, descending=descending, size=size), []
    pages = [page]
    while page.has_next:
        page = keyset_page(qs, key=key, descending=descending, size=size, after=page.next_cursor)
        pages.append(page)
    for p in pages:
        seen += [b.pk for b in p.items]
    return seen, pages


def walk_backward(qs, *, key, descending, size):
    page = keyset_page(qs, key=key, descending=descending, size=size, last=True)
    seen = [b.pk for b in page.items]
    while page.has_previous:
        page = keyset_page(qs, key=key, descending=descending, size=size, before=page.previous_cursor)
        seen = [b.pk for b in page.items] + seen
    return seen


@pytest.fixture
def durations(reference_data):
    """Builds with tied, distinct and missing durations (running and queued builds have none)."""
    tenant = create_tenant()
    for n, minutes in enumerate([3, 3, 3, 1, 7, 2, 7, 5, 3, 9, 4]):
        create_build(tenant, created_at=T0 + timedelta(minutes=n), duration=timedelta(minutes=minutes), steps=0)
    for n in range(3):
        create_build(tenant, status=("running", "queued", "queued")[n], created_at=T0 + timedelta(hours=1, minutes=n),
                     steps=0)
    return tenant


@pytest.mark.parametrize("sort", ["-duration", "duration", "-created", "created", "status", "-tenant"])
@pytest.mark.parametrize("size", [1, 4, 14, 20])
def test_keyset_pages_walk_every_row_once_in_order_both_ways(durations, sort, size):
    from builds.models import Build
    from builds.selectors import SORT_KEY, build_list

    qs, descending = build_list(base=Build.objects.all(), sort=sort)
    order = ([F(SORT_KEY).desc(nulls_last=True), "-pk"] if descending
             else [F(SORT_KEY).asc(nulls_last=True), "pk"])
    expected = [b.pk for b in qs.order_by(*order)]

    forward, pages = walk_forward(qs, key=SORT_KEY, descending=descending, size=size)

    assert forward == expected and len(expected) == 14
    assert walk_backward(qs, key=SORT_KEY, descending=descending, size=size) == expected
    assert not pages[0].has_previous and not pages[-1].has_next
    assert all(len(p.items) == size for p in pages[:-1])


def test_keyset_longest_first_puts_builds_without_duration_last(durations):
    from builds.models import Build
    from builds.selectors import SORT_KEY, build_list

    qs, descending = build_list(base=Build.objects.all(), sort="-duration")
    rows = keyset_page(qs, key=SORT_KEY, descending=descending, size=14).items

    assert [r.sort_value and r.sort_value.total_seconds() / 60 for r in rows] == [
        9, 7, 7, 5, 4, 3, 3, 3, 3, 2, 1, None, None, None]


def test_keyset_empty_list_and_cursor_edges(reference_data):
    from builds.models import Build

    page = keyset_page(Build.objects.all(), key="created_at", descending=True, size=25)

    assert (page.items, page.has_next, page.has_previous) == ([], False, False)
    assert decode_cursor(encode_cursor(timedelta(minutes=3), 7)) == (timedelta(minutes=3), 7)
    assert decode_cursor(encode_cursor(None, 3)) == (None, 3)
    assert decode_cursor(encode_cursor(T0, 5)) == (T0, 5)
    for bad in ["", "abc", encode_cursor("x", 1)[:-3], "W10", "WyJ6IiwxLDFd"]:  # "W10" is [], the last kind "z"
        with pytest.raises(BadCursor):
            decode_cursor(bad)


def test_builds_list_last_page_link_shows_the_oldest_builds(reference_data, staff_user):
    tenant = create_tenant()
    builds = [create_build(tenant, created_at=T0 + timedelta(minutes=n), steps=0) for n in range(30)]
    client = client_for(staff_user)

    html = client.get(reverse("builds:list")).content.decode()
    last_href = re.search(r'href="([^"]*)" aria-label="Last page"', html).group(1).replace("&amp;", "&")
    last = client.get(reverse("builds:list") + last_href)

    # The last page is the oldest 25, newest first (keyset pages are not aligned to multiples of 25).
    assert [b.pk for b in last.context["builds"]] == [b.pk for b in reversed(builds[:25])]
    assert last.context["keyset"].has_previous and not last.context["keyset"].has_next
    assert 'rel="prev"' in last.content.decode()


# ----- tenant autocomplete -----

def test_tenant_autocomplete_for_staff_matches_slug_prefix_first(reference_data, staff_user):
    create_tenant(slug="acme", name="Acme Corp")
    create_tenant(slug="zeta", name="Zeta, formerly acme")
    create_tenant(slug="globex", name="Globex")

    body = client_for(staff_user).get(reverse("tenants:autocomplete"), {"q": "acm"}).json()

    assert body == {"results": [{"slug": "acme", "name": "Acme Corp"}, {"slug": "zeta", "name": "Zeta, formerly acme"}]}


def test_tenant_autocomplete_is_limited_to_20(reference_data, staff_user):
    for n in range(25):
        create_tenant(slug=f"many-{n:02d}")

    body = client_for(staff_user).get(reverse("tenants:autocomplete"), {"q": "many"}).json()

    assert [r["slug"] for r in body["results"]] == [f"many-{n:02d}" for n in range(20)]


def test_tenant_autocomplete_is_staff_only(reference_data, client):
    acme = create_tenant(slug="acme")
    create_tenant(slug="globex")

    anonymous = client.get(reverse("tenants:autocomplete"), {"q": "g"})
    member = client_for(create_member(acme, role="owner")).get(reverse("tenants:autocomplete"), {"q": "g"})

    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert member.status_code == 404 and b"globex" not in member.content


def test_builds_list_tenant_filter_is_a_text_field_not_every_tenant(reference_data, staff_user):
    for n in range(30):
        create_tenant(slug=f"filler-{n:02d}")
    acme = create_tenant(slug="acme")
    mine = create_build(acme, steps=0)
    create_build(create_tenant(slug="globex"), steps=0)
    client = client_for(staff_user)

    html = client.get(reverse("builds:list")).content.decode()
    filtered = client.get(reverse("builds:list"), {"tenant": "acme"})
    unknown = client.get(reverse("builds:list"), {"tenant": "nope"})

    assert "filler-07" not in html and 'list="tenant-options"' in html
    assert "js/tenant_autocomplete.js" in html and "<script>" not in html
    assert [b.pk for b in filtered.context["builds"]] == [mine.pk]
    assert unknown.context["form"].errors["tenant"] == ["No tenant with the slug \u201cnope\u201d."]


# ----- query counts do not grow with the data -----

def add_history(tenants: int, builds_each: int) -> None:
    """More tenants, builds with steps, cost lines and Cost Explorer days; the rollups refreshed as the tick does."""
    from billing.models import CostLine, CostSyncRun, DailyCost
    from billing.rollups import rollups_rebuild
    from billing.services import utc_today

    today = utc_today()
    for _ in range(tenants):
        tenant = create_tenant(budget=Decimal("100"))
        for n in range(builds_each):
            build = create_build(tenant, status=("succeeded", "failed", "running")[n % 3],
                                 created_at=T0 + timedelta(hours=n), version=n % 3 == 0)
            step = build.steps.first()
            if step is not None and step.ended_at:
                CostLine.objects.create(tenant=tenant, plan=tenant.plan, build=build, step=step,
                                        instance_type="ml.m5.large", instance_count=1, billable_seconds=9,
                                        price_per_hour=Decimal("0.115"), amount=Decimal("0.25"),
                                        day=today - timedelta(days=n))
        DailyCost.objects.bulk_create([DailyCost(day=today - timedelta(days=d), tenant_slug=tenant.slug,
                                                 service="Amazon SageMaker", amount=Decimal("0.3"))
                                       for d in range(5)])
    CostSyncRun.objects.create(status="succeeded", start_day=today - timedelta(days=10), end_day=today,
                               last_final_day=today - timedelta(days=3))
    rollups_rebuild()


def page_urls(slug: str) -> list[str]:
    return [reverse("home"), reverse("tenant_list"), reverse("builds:list"),
            reverse("builds:list") + "?page=last", reverse("builds:list") + "?sort=-duration&page=last",
            reverse("builds:list") + f"?tenant={slug}", reverse("billing:overview"),
            reverse("billing:export_costs_all"), reverse("billing:export_statements_all"),
            reverse("billing:tenant", args=[slug]), reverse("billing:statement", args=[slug]),
            reverse("tenants:autocomplete") + "?q=t"]


def query_counts(client, urls: list[str]) -> dict[str, int]:
    counts = {}
    for url in urls:
        client.get(url)  # warm: session, content types
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
            if response.streaming:  # a streamed export runs its queries while it streams
                b"".join(response.streaming_content)
        assert response.status_code == 200, url
        counts[url] = len(captured.captured_queries)
    return counts


def test_staff_page_query_counts_are_the_same_with_more_history(reference_data, staff_user):
    add_history(tenants=2, builds_each=3)
    first = create_tenant(slug="first")
    create_build(first, steps=0)
    client = client_for(staff_user)
    urls = page_urls("first")
    small = query_counts(client, urls)

    add_history(tenants=12, builds_each=9)
    large = query_counts(client, urls)

    assert large == small


def test_tenant_page_query_counts_are_the_same_with_more_history(reference_data):
    from billing.models import CostLine
    from billing.rollups import rollups_rebuild

    tenant = create_tenant(budget=Decimal("50"))
    member = create_member(tenant)
    create_build(tenant, version=True)
    client = client_for(member)
    urls = [reverse("home"), reverse("builds:list"), reverse("builds:list") + "?page=last",
            reverse("billing:tenant", args=[tenant.slug]), reverse("billing:statement", args=[tenant.slug]),
            reverse("builds:models", args=[tenant.slug])]
    small = query_counts(client, urls)

    for n in range(40):
        build = create_build(tenant, created_at=T0 + timedelta(hours=n), version=True)
        step = build.steps.first()
        CostLine.objects.create(tenant=tenant, plan=tenant.plan, build=build, step=step, instance_type="ml.m5.large",
                                instance_count=1, billable_seconds=9, price_per_hour=Decimal("0.115"),
                                amount=Decimal("0.25"), day=step.ended_at.date())
    add_history(tenants=5, builds_each=4)
    rollups_rebuild()
    large = query_counts(client, urls)

    assert large == small
