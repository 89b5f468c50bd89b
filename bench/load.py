"""A bounded load run on loopback: browsing users and uploads flowing through intake and dispatch at once.

    .venv/bin/python bench/load.py                         # starts a private stack (bench/stack.py) and runs
    .venv/bin/python bench/load.py --base-url http://127.0.0.1:8000   # against a running `make run`

--users virtual users (default 50) each sign in as a demo user (seed_demo: admin/admin and
owner@{acme,globex,initech}.example / {slug}-demo) and browse: home, builds list, a build's page, its htmx
poll, the API's build list and a build's JSON, with no think time. Meanwhile --builds uploads (default 200)
go through the API as a tenant would: POST /api/v1/tenants/{slug}/uploads, then the presigned POST of a small
CSV straight to S3; intake and dispatch turn each into a build, the build workers run it.

The run ends when every upload has a build in a terminal state (or --timeout). It prints requests per second,
p50/p95/max latency per kind of request, the errors (expected 0), and per upload the number of builds made
from it (expected exactly 1, succeeded). Exit status 1 when an expectation fails.

The private stack seeds the demo tenants without their sample data (`seed_demo --no-samples`), so the only
builds are the run's own; each uploads --rows rows of its tenant's sample (default 120).

Only aiohttp (already a dependency of the venv) is used; no load-testing tool.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEMO_USERS = [("owner@acme.example", "acme-demo", "acme"), ("owner@globex.example", "globex-demo", "globex"),
              ("owner@initech.example", "initech-demo", "initech"), ("admin", "admin", None)]
# Per tenant: a small CSV of its sample data and the fastest algorithm for it (seconds per build).
UPLOADS = {"acme": ("breast_cancer", "linear-classifier", "diagnosis"),
           "globex": ("diabetes", "linear-regressor", "progression"),
           "initech": ("wine", "linear-classifier", "cultivar")}
TERMINAL = {"succeeded", "failed", "cancelled"}


class Stats:
    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    async def call(self, session: aiohttp.ClientSession, kind: str, method: str, url: str, **kw):
        started = time.perf_counter()
        try:
            async with session.request(method, url, allow_redirects=False, **kw) as response:
                body = await response.read()
                self.latency[kind].append(time.perf_counter() - started)
                if response.status >= 400:
                    self.errors.append(f"{kind} {method} {url}: {response.status} {body[:200]!r}")
                return response.status, body, response.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.latency[kind].append(time.perf_counter() - started)
            self.errors.append(f"{kind} {method} {url}: {type(exc).__name__} {exc}")
            return 0, b"", {}


async def sign_in(base: str, username: str, password: str, stats: Stats) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    timeout=aiohttp.ClientTimeout(total=60))
    _, body, _ = await stats.call(session, "login page", "GET", "/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    status, _, headers = await stats.call(session, "login", "POST", "/login/", data={
        "csrfmiddlewaretoken": token, "username": username, "password": password})
    if status != 302:
        raise RuntimeError(f"login as {username} answered {status}")
    return session


async def api_token(session: aiohttp.ClientSession, stats: Stats) -> str:
    _, body, _ = await stats.call(session, "tokens page", "GET", "/tokens/")
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    _, body, _ = await stats.call(session, "create token", "POST", "/tokens/",
                                  data={"csrfmiddlewaretoken": csrf, "name": "load"})
    return re.search(rb'<code id="new-token">([^<]+)</code>', body).group(1).decode()


async def browse(session, token: str, stats: Stats, stop: asyncio.Event, think: float) -> None:
    """One user: pages and polls, `think` seconds apart (the build page's own htmx poll is every 2 s), until
    the uploads are all built."""
    headers = {"Authorization": f"Bearer {token}"}

    async def pause():
        await asyncio.sleep(think * random.uniform(0.5, 1.5))

    await asyncio.sleep(random.uniform(0, think))  # users do not all click on the same tick
    while not stop.is_set():
        await stats.call(session, "home", "GET", "/")
        await pause()
        await stats.call(session, "builds list", "GET", "/builds/")
        await pause()
        status, body, _ = await stats.call(session, "api builds", "GET", "/api/v1/builds?page_size=20",
                                           headers=headers)
        codes = re.findall(rb'"id": ?"([0-9a-f-]{36})"', body)
        if codes:
            code = random.choice(codes).decode()
            await pause()
            await stats.call(session, "build page", "GET", f"/builds/{code}/")
            for _ in range(3):
                await pause()
                await stats.call(session, "build poll (htmx)", "GET", f"/builds/{code}/",
                                 headers={"HX-Request": "true"})
            await pause()
            await stats.call(session, "api build", "GET", f"/api/v1/builds/{code}", headers=headers)
        await pause()


async def upload(session, base: str, slug: str, token: str, n: int, csv: bytes, stats: Stats) -> str:
    sample, algorithm, target = UPLOADS[slug]
    status, body, _ = await stats.call(
        session, "api upload presign", "POST", f"/api/v1/tenants/{slug}/uploads",
        headers={"Authorization": f"Bearer {token}"},
        json={"filename": f"load-{n:04d}.csv", "size": len(csv), "algorithm": algorithm, "target": target})
    if status != 200:
        raise RuntimeError(f"presign for {slug} answered {status}: {body[:300]!r}")
    import json

    post = json.loads(body)
    form = aiohttp.FormData()
    for name, value in post["fields"].items():
        form.add_field(name, value)
    form.add_field("file", csv, filename=f"load-{n:04d}.csv", content_type="text/csv")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s3:
        status, body, _ = await stats.call(s3, "s3 presigned POST", "POST", post["url"], data=form)
    if status not in (200, 201, 204):
        raise RuntimeError(f"S3 refused the upload: {status} {body[:300]!r}")
    return post["key"]


async def builds_by_key(session, token: str) -> dict[str, list[str]]:
    """dataset key -> statuses of the builds made from it (every build of every tenant, as staff)."""
    import json

    found: dict[str, list[str]] = defaultdict(list)
    page = 1
    while True:
        async with session.get(f"/api/v1/builds?page={page}&page_size=100",
                               headers={"Authorization": f"Bearer {token}"}) as response:
            data = json.loads(await response.read())
        for item in data["items"]:
            found[item["dataset_key"]].append(item["status"])
        if page * 100 >= data["count"]:
            return found
        page += 1


def sample_csvs(rows: int = 0) -> dict[str, bytes]:
    """Per tenant, its sample as CSV bytes; with `rows`, only that many rows (every class kept in proportion):
    the run measures the portal moving builds, and a small build keeps the training itself short."""
    import tempfile

    import pandas as pd

    from mlaas_steps.sample_data import write_sample_csvs

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_sample_csvs(Path(tmp))
        out = {}
        for slug, (sample, algorithm, target) in UPLOADS.items():
            frame = pd.read_csv(paths[sample])
            if rows and rows < len(frame):
                if algorithm.endswith("classifier"):
                    frame = frame.groupby(target, group_keys=False).sample(frac=rows / len(frame), random_state=7)
                else:
                    frame = frame.sample(n=rows, random_state=7)
            out[slug] = frame.to_csv(index=False).encode()
        return out


async def run(base: str, *, users: int, builds: int, timeout: float, think: float = 2.0,
              upload_concurrency: int = 8, rows: int = 120) -> int:
    stats = Stats()
    csvs = sample_csvs(rows)
    sessions = [await sign_in(base, *DEMO_USERS[i % len(DEMO_USERS)][:2], stats) for i in range(users)]
    tokens = {}
    for i, (username, _, _) in enumerate(DEMO_USERS):
        tokens[username] = await api_token(sessions[i], stats)
    stop = asyncio.Event()
    started = time.perf_counter()
    browsers = [asyncio.create_task(browse(s, tokens[DEMO_USERS[i % len(DEMO_USERS)][0]], stats, stop, think))
                for i, s in enumerate(sessions)]

    owners = [(u, slug) for u, _, slug in DEMO_USERS if slug]
    semaphore = asyncio.Semaphore(upload_concurrency)

    async def one(n: int) -> str | None:
        username, slug = owners[n % len(owners)]
        async with semaphore:
            try:
                return await upload(sessions[n % len(owners)], base, slug, tokens[username], n, csvs[slug], stats)
            except RuntimeError as exc:  # counted as an error (stats has the request), the run goes on
                stats.errors.append(f"upload {n}: {exc}")
                return None

    upload_started = time.perf_counter()
    keys = [k for k in await asyncio.gather(*(one(n) for n in range(builds))) if k]
    upload_seconds = time.perf_counter() - upload_started

    staff = sessions[3 % len(sessions)] if users > 3 else sessions[0]
    deadline = time.monotonic() + timeout
    give_up = asyncio.Event()  # Ctrl-C while waiting: stop waiting and print what was measured
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, give_up.set)
    while not give_up.is_set():
        found = await builds_by_key(staff, tokens["admin"])
        done = sum(1 for k in keys if found.get(k) and all(s in TERMINAL for s in found[k]))
        if done == len(keys) or time.monotonic() > deadline:
            break
        print(f"  {done}/{len(keys)} uploads built ({time.perf_counter() - started:.0f} s)", flush=True)
        await asyncio.sleep(5)
    flow_seconds = time.perf_counter() - upload_started
    stop.set()
    await asyncio.gather(*browsers)
    elapsed = time.perf_counter() - started
    for s in sessions:
        await s.close()

    per_key = Counter(len(found.get(k, [])) for k in keys)
    outcomes = Counter(s for k in keys for s in found.get(k, []))
    requests = sum(len(v) for v in stats.latency.values())
    print(f"\nbase URL {base}; {users} users; {builds} uploads of {sorted({len(c) for c in csvs.values()})} "
          f"bytes; {elapsed:.1f} s")
    print(f"uploads (presign + S3 POST): {builds / upload_seconds:.1f}/s; all built in {flow_seconds:.1f} s "
          f"({builds / flow_seconds:.2f} builds/s)")
    print(f"HTTP requests: {requests} ({requests / elapsed:.1f}/s), errors: {len(stats.errors)}")
    print(f"{'request':<22}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    every = []
    for kind, values in sorted(stats.latency.items()):
        every += values
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(f"{kind:<22}{len(values):>7}{statistics.median(values) * 1000:>9.0f}{p95 * 1000:>9.0f}"
              f"{ordered[-1] * 1000:>9.0f}")
    every.sort()
    print(f"{'all':<22}{len(every):>7}{statistics.median(every) * 1000:>9.0f}"
          f"{every[min(len(every) - 1, int(len(every) * 0.95))] * 1000:>9.0f}{every[-1] * 1000:>9.0f}")
    print(f"builds per upload: {dict(sorted(per_key.items()))} (expected {{1: {builds}}})")
    print(f"build outcomes: {dict(outcomes)}; uploads refused: {builds - len(keys)}")
    for line in stats.errors[:20]:
        print(f"  error: {line}")
    # The uploads are valid samples: a failed build means the run measured something else (an undeployed
    # pipeline fails every build in a second), so only succeeded builds pass.
    ok = not stats.errors and len(keys) == builds and per_key == Counter({1: builds}) and (
        outcomes["succeeded"] == builds)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="", help="a running `make run` (default: start a private stack)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the builds")
    parser.add_argument("--build-workers", type=int, default=2, help="private stack only")
    parser.add_argument("--rows", type=int, default=120,
                        help="rows of each uploaded sample (0: the whole sample, 178-569 rows)")
    parser.add_argument("--web-workers", type=int, default=None,
                        help="private stack only: gunicorn processes (default gunicorn.conf.py's, 2)")
    parser.add_argument("--keep", action="store_true", help="private stack only: keep its directory (logs)")
    parser.add_argument("--think", type=float, default=2.0,
                        help="seconds between a user's requests (0: back to back, a stress test)")
    args = parser.parse_args()
    if args.base_url:
        return asyncio.run(run(args.base_url.rstrip("/"), users=args.users, builds=args.builds,
                               timeout=args.timeout, think=args.think, rows=args.rows))
    from bench.stack import Stack

    with Stack(build_workers=args.build_workers, web_workers=args.web_workers, keep=args.keep) as stack:
        print(f"private stack in {stack.dir}: web {stack.base_url}, Redis {stack.env['REDIS_URL']}, "
              f"database {stack.env['DATABASE_URL']}, emulator {stack.env['AWS_ENDPOINT_URL']}", flush=True)
        return asyncio.run(run(stack.base_url, users=args.users, builds=args.builds, timeout=args.timeout,
                               think=args.think, rows=args.rows))


if __name__ == "__main__":
    sys.exit(main())
