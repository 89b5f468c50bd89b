"""Server time (p50/p95) and query count of every page and API endpoint, for a large and a small data set.

Each data set is a database `bench/seed_scale.py` filled; each is measured in a child process of its own
(Django binds one database per process) with the Django test client in process, so the figures are
the server's time (middleware, views, queries, templates), not the network's. Query counts come from
CaptureQueriesContext. A streamed response (the CSV exports) is timed until its last byte. Pages that need
AWS (the upload page lists the bucket) are left out.

    .venv/bin/python bench/pages.py \
        --large postgres://postgres@127.0.0.1:5432/mlaas_scale \
        --small postgres://postgres@127.0.0.1:5432/mlaas_scale_small [--runs 20] [--only billing]

Redis (the staff home counts plan workers) is BENCH_REDIS_URL, default redis://127.0.0.1:6379/6. The API's
rate limit buckets (tenants.api_limits) are emptied before each page so that every request is answered by the
endpoint, not refused with a 429 (a run makes more requests a minute than a plan allows); the limiter's own
check still runs, and is timed, in every API request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAST_PAGE_LINK = re.compile(r'href="([^"]*)"[^>]*aria-label="Last page"')


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlaas_portal.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()


def _raw_token(user) -> str:
    from tenants.models import ApiToken

    raw = ApiToken.new_raw_key()
    ApiToken.objects.create(user=user, name="bench", key_hash=ApiToken.hash(raw), prefix=raw[:12])
    return raw


def last_page_url(client, url: str) -> str | None:
    """The page's own "last page" link, whatever pagination it uses (page numbers or keys)."""
    html = client.get(url).content.decode()
    match = LAST_PAGE_LINK.search(html)
    if not match:
        return None
    href = match.group(1).replace("&amp;", "&")
    return href if href.startswith("/") else url.split("?")[0] + href


def _next_cursor_url(client, url: str, headers: dict) -> str | None:
    cursor = client.get(url, **headers).json().get("next_cursor")
    return f"{url}?cursor={cursor}" if cursor else None


def targets(staff_client, tenant_client) -> list[tuple[str, object, str, dict]]:
    """(name, client, url, headers) of every page and endpoint measured."""
    from django.contrib.auth.models import User
    from django.db.models import Count

    from builds.models import Build, ModelVersion
    from tenants.models import Membership, Tenant

    # The busiest tenant (most builds): its pages are the slowest a tenant sees.
    busiest = Build.objects.values("tenant_id").order_by().annotate(n=Count("id")).order_by("-n").first()
    tenant = Tenant.objects.get(pk=busiest["tenant_id"])
    owner = Membership.objects.select_related("user").get(tenant=tenant, role=Membership.Role.OWNER).user
    tenant_client.force_login(owner)
    staff = User.objects.get(username="bench-staff")
    staff_client.force_login(staff)
    staff_api = {"HTTP_AUTHORIZATION": f"Bearer {_raw_token(staff)}"}
    tenant_api = {"HTTP_AUTHORIZATION": f"Bearer {_raw_token(owner)}"}
    build = Build.objects.filter(tenant=tenant, status=Build.Status.SUCCEEDED).order_by("-created_at").first()
    slug = tenant.slug
    version = ModelVersion.objects.filter(tenant=tenant).order_by("-version").values_list(
        "version", flat=True).first()
    today = date.today()
    month = today.strftime("%Y-%m")
    month_ago = today - timedelta(days=30)
    s, t = staff_client, tenant_client
    rows = [
        ("staff: home", s, "/", {}),
        ("staff: tenants list", s, "/tenants/", {}),
        ("staff: tenants search", s, "/tenants/?q=tenant-00", {}),
        ("staff: tenant detail", s, f"/tenants/{slug}/", {}),
        ("staff: plans", s, "/tenants/plans/", {}),
        ("staff: access requests", s, "/tenants/requests/", {}),
        ("staff: builds list", s, "/builds/", {}),
        ("staff: builds last page", s, last_page_url(s, "/builds/"), {}),
        ("staff: builds by duration", s, "/builds/?sort=-duration", {}),
        ("staff: builds by duration, last", s, last_page_url(s, "/builds/?sort=-duration"), {}),
        ("staff: builds of a tenant", s, f"/builds/?tenant={slug}", {}),
        ("staff: builds failed", s, "/builds/?status=failed", {}),
        ("staff: build detail", s, f"/builds/{build.code}/", {}),
        ("staff: algorithms", s, "/builds/algorithms/", {}),
        ("staff: billing overview", s, "/billing/", {}),
        ("staff: billing overview, page 10", s, "/billing/?page=10", {}),
        ("staff: costs CSV (30 days)", s, "/billing/costs.csv", {}),
        ("staff: statements CSV", s, "/billing/statements.csv", {}),
        ("staff: prices", s, "/billing/prices/", {}),
        ("staff: tenant billing", s, f"/billing/tenants/{slug}/", {}),
        ("staff: tenant autocomplete", s, "/tenants/autocomplete/?q=tenant-004", {}),
        ("staff: queue", s, "/builds/queue/", {}),
        ("staff: scheduling policy", s, "/tenants/scheduling/", {}),
        ("staff: billing setup", s, "/billing/setup/", {}),
        ("staff: marketplace", s, "/billing/marketplace/", {}),
        ("tenant: home", t, "/", {}),
        ("tenant: builds list", t, "/builds/", {}),
        ("tenant: builds last page", t, last_page_url(t, "/builds/"), {}),
        ("tenant: build detail", t, f"/builds/{build.code}/", {}),
        ("tenant: models", t, f"/builds/models/{slug}/", {}),
        ("tenant: tenant page", t, f"/tenants/{slug}/", {}),
        ("tenant: billing", t, f"/billing/tenants/{slug}/", {}),
        ("tenant: statement", t, f"/billing/tenants/{slug}/statement/", {}),
        ("tenant: costs CSV", t, f"/billing/tenants/{slug}/costs.csv", {}),
        ("tenant: statement CSV", t, f"/billing/tenants/{slug}/statement.csv", {}),
        ("tenant: tokens", t, "/tokens/", {}),
        ("tenant: model version", t, f"/builds/models/{slug}/{version}/" if version else None, {}),
        ("tenant: test endpoints", t, f"/builds/endpoints/{slug}/", {}),
        ("tenant: batch scoring", t, f"/builds/batch/{slug}/", {}),
        ("tenant: webhooks", t, f"/tenants/{slug}/webhooks/", {}),
        ("api staff: GET /tenants", s, "/api/v1/tenants", staff_api),
        ("api staff: GET /builds", s, "/api/v1/builds", staff_api),
        ("api staff: GET /builds?page=1000", s, "/api/v1/builds?page=1000", staff_api),
        ("api tenant: GET /tenants/{slug}", t, f"/api/v1/tenants/{slug}", tenant_api),
        ("api tenant: GET /builds", t, "/api/v1/builds", tenant_api),
        ("api tenant: GET /builds/{id}", t, f"/api/v1/builds/{build.code}", tenant_api),
        ("api tenant: GET /tenants/{slug}/models", t, f"/api/v1/tenants/{slug}/models", tenant_api),
        ("api tenant: GET /tenants/{slug}/rejections", t, f"/api/v1/tenants/{slug}/rejections", tenant_api),
        ("api tenant: GET /tenants/{slug}/costs", t, f"/api/v1/tenants/{slug}/costs?start={month_ago}&end={today}",
         tenant_api),
        ("api tenant: GET /builds?cursor (page 2)", t, _next_cursor_url(t, "/api/v1/builds", tenant_api), tenant_api),
        ("api tenant: GET /tenants/{slug}/statements", t, f"/api/v1/tenants/{slug}/statements?month={month}",
         tenant_api),
        ("api tenant: GET /tenants/{slug}/models/{v}", t,
         f"/api/v1/tenants/{slug}/models/{version}" if version else None, tenant_api),
        ("api tenant: GET /tenants/{slug}/endpoints", t, f"/api/v1/tenants/{slug}/endpoints", tenant_api),
        ("api tenant: GET /tenants/{slug}/batch-jobs", t, f"/api/v1/tenants/{slug}/batch-jobs", tenant_api),
        ("api tenant: GET /tenants/{slug}/webhooks", t, f"/api/v1/tenants/{slug}/webhooks", tenant_api),
        ("api public: GET /plans", t, "/api/v1/plans", {}),
        ("api public: GET /algorithms", t, "/api/v1/algorithms", {}),
    ]
    return [row for row in rows if row[2]]


def measure(database_url: str, runs: int, only: str) -> dict:
    setup_django(database_url)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # the test client's response.templates etc.; DEBUG stays as configured
    from django.conf import settings

    from builds.models import Build
    from core.ratebudget import redis_for
    from tenants.models import Tenant

    redis = redis_for(settings.REDIS_URL)
    results = {"tenants": Tenant.objects.count(), "builds": Build.objects.count(), "pages": {}}
    for name, client, url, headers in targets(Client(), Client()):
        if only and only not in name:
            continue
        for key in redis.scan_iter(match="mlaas:rate:api:*"):  # the rate limit's buckets: see the module docstring
            redis.delete(key)
        times, queries, status, size = [], 0, None, 0
        for attempt in range(runs + 2):  # two warm-ups: templates compiled, connection open
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(url, **headers)
                # A streamed response is served when its last byte is: consume it inside the timing (and the
                # query capture, since its queries run while it streams).
                size = sum(len(c) for c in response.streaming_content) if response.streaming \
                    else len(response.content)
                elapsed = time.perf_counter() - began
            if attempt >= 2:
                times.append(elapsed * 1000)
            queries, status = len(captured.captured_queries), response.status_code
        times.sort()
        results["pages"][name] = {"url": url, "status": status, "queries": queries, "bytes": size,
                                  "p50": statistics.median(times),
                                  "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", help="database URL of the large data set")
    parser.add_argument("--small", help="database URL of the small data set")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per page (after two warm-ups)")
    parser.add_argument("--only", default="", help="measure only the pages whose name contains this")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one database, JSON on stdout
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.runs, args.only)))
        return
    if not (args.large or args.small):
        parser.error("give --large and/or --small (database URLs seeded by bench/seed_scale.py)")
    sets = {}
    for label, url in (("large", args.large), ("small", args.small)):
        if not url:
            continue
        out = subprocess.run([sys.executable, __file__, "--measure", url, "--runs", str(args.runs),
                              "--only", args.only], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            sys.exit(f"measuring {label} failed:\n{out.stderr[-4000:]}")
        sets[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print_table(sets)
    if args.json:
        Path(args.json).write_text(json.dumps(sets, indent=2))


def print_table(sets: dict) -> None:
    labels = list(sets)
    print("  ".join(f"{label}: {s['tenants']:,} tenants, {s['builds']:,} builds" for label, s in sets.items()))
    head = f"{'page':40}" + "".join(f" | {label + ' p50':>10} {'p95':>7} {'q':>4} {'kB':>6}" for label in labels)
    print(head)
    print("-" * len(head))
    names = list(dict.fromkeys(n for s in sets.values() for n in s["pages"]))
    for name in names:
        line = f"{name[:40]:40}"
        for label in labels:
            page = sets[label]["pages"].get(name)
            if page is None:
                line += f" | {'-':>10} {'-':>7} {'-':>4} {'-':>6}"
                continue
            flag = "" if page["status"] == 200 else f" [{page['status']}]"
            line += (f" | {page['p50']:>8.1f}ms {page['p95']:>5.1f}ms {page['queries']:>4} "
                     f"{page['bytes'] / 1024:>6.0f}{flag}")
        print(line)


if __name__ == "__main__":
    main()
