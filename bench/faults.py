"""Faults while builds flow: the system keeps every upload, finishes every build and never breaks a limit.

    .venv/bin/python bench/faults.py [--builds 40] [--build-workers 2] [--timeout 1200]

Starts a private stack (bench/stack.py: its own Redis, PostgreSQL cluster, emulator, web and workers; never
the machine's shared ones), puts a small proxy in front of the emulator (AWS_ENDPOINT_URL points at it) and
uploads --builds CSVs through the API, one every --upload-every seconds. Meanwhile, in order:

  1. SIGKILL every build worker, start them again; three times;
  2. restart Redis (SIGKILL; its queues are lost, the database is the truth);
  3. restart PostgreSQL (immediate stop, then start);
  4. SIGKILL the emulator and start it again (it restores its snapshot; uploads pause 3 s before, as the
     snapshot is taken every second and S3 itself would not lose an object);
  5. make AWS throttle: for --throttle-seconds the proxy answers half the requests with SlowDown (S3) or
     ThrottlingException (other services), as AWS does under load.

Then it waits for every upload to end in a terminal build and prints: uploads, builds per upload (expected
exactly 1), builds per state (all succeeded: the uploads are valid; failure reasons listed), the most builds
running at once per tenant, plan and account against their limits (from the build transitions; expected never
over), and whether every build and model version recorded before the faults is still shown by the API with the
same state. Exit status 1 on a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yarl
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import DEMO_USERS, TERMINAL, Stats, api_token, sample_csvs, sign_in, upload  # noqa: E402
from bench.stack import Stack, free_port  # noqa: E402


class ThrottlingProxy:
    """Forwards to the emulator, or answers a throttling error while `throttle` is set (half the requests)."""

    def __init__(self, upstream: str, port: int):
        self.upstream, self.port, self.throttle, self.throttled = upstream, port, False, 0
        self.loop = asyncio.new_event_loop()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.throttle and random.random() < 0.5:
            self.throttled += 1
            if "X-Amz-Target" in request.headers or request.content_type == "application/x-amz-json-1.1":
                return web.json_response({"__type": "ThrottlingException", "message": "Rate exceeded"},
                                         status=400, content_type="application/x-amz-json-1.1")
            if b"Action=" in body[:200] or "Action=" in request.query_string:
                return web.Response(status=400, content_type="text/xml", text=(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded"
                    "</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"))
            return web.Response(status=503, content_type="application/xml", text=(
                "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length",
                                                                                  "transfer-encoding")}
        try:
            # encoded=True: the query goes on byte for byte (yarl would re-quote `%2F` in a prefix, and the
            # emulator then rejects the SigV4 signature: SignatureDoesNotMatch on ListObjectsV2).
            url = yarl.URL(self.upstream + request.rel_url.raw_path_qs, encoded=True)
            async with self.session.request(request.method, url,
                                            headers=headers, data=body, allow_redirects=False) as upstream:
                payload = await upstream.read()
                # Content-Length stays for HEAD (its body is empty, the length is what boto3 reads);
                # otherwise aiohttp sets it from the body. The body is passed on still encoded.
                drop = {"transfer-encoding", "connection"} | ({"content-length"} if request.method != "HEAD"
                                                              else set())
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in drop}
                if request.method == "HEAD":
                    response = web.Response(status=upstream.status, headers=out)
                    return response
                return web.Response(status=upstream.status, headers=out, body=payload)
        except aiohttp.ClientError:
            return web.Response(status=503, text="<Error><Code>ServiceUnavailable</Code></Error>")

    def start(self) -> None:
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def make_session():
                return aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120))

            self.session = self.loop.run_until_complete(make_session())
            app = web.Application(client_max_size=1024**3)
            app.router.add_route("*", "/{tail:.*}", self.handle)
            runner = web.AppRunner(app, access_log=None)
            self.loop.run_until_complete(runner.setup())
            self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True, name="throttling-proxy").start()
        ready.wait(10)


CHECK = r"""
import json
from collections import defaultdict
from django.conf import settings
from builds.models import Build, BuildTransition
from tenants.models import Tenant
ACTIVE = {"starting", "running"}
rows = list(BuildTransition.objects.order_by("at", "id").values_list("build_id", "to_status", "at"))
owner = {b: (t, p) for b, t, p in Build.objects.values_list("id", "tenant__slug", "plan__slug")}
state = {}
current = defaultdict(int)
peak = defaultdict(int)
for build_id, to_status, at in rows:
    was = state.get(build_id) in ACTIVE
    now = to_status in ACTIVE
    state[build_id] = to_status
    if was == now:
        continue
    tenant, plan = owner[build_id]
    for key in (("tenant", tenant), ("plan", plan), ("account", "all")):
        current[key] += 1 if now else -1
        peak[key] = max(peak[key], current[key])
limits = {("account", "all"): settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT}
for t in Tenant.objects.select_related("plan"):
    limits[("tenant", t.slug)] = t.plan.tenant_concurrent_limit
    limits[("plan", t.plan.slug)] = t.plan.plan_concurrent_limit
print(json.dumps([[k[0], k[1], peak.get(k, 0), limits[k]] for k in sorted(limits)]))
"""

FAILURES = r"""
import json
from django.db.models import Count
from builds.models import Build
print(json.dumps(list(Build.objects.filter(status="failed").values_list("failure_reason").annotate(n=Count("id")))))
"""


async def snapshot(session, token: str) -> dict:
    """What the API shows: every build's state and every tenant's model versions."""
    headers = {"Authorization": f"Bearer {token}"}
    builds, page = {}, 1
    while True:
        async with session.get(f"/api/v1/builds?page={page}&page_size=100", headers=headers) as r:
            data = json.loads(await r.read())
        builds.update({b["id"]: (b["dataset_key"], b["status"]) for b in data["items"]})
        if page * 100 >= data["count"]:
            break
        page += 1
    models = {}
    for _, _, slug in DEMO_USERS:
        if slug:
            async with session.get(f"/api/v1/tenants/{slug}/models?page_size=100", headers=headers) as r:
                models[slug] = sorted(m["version"] for m in json.loads(await r.read())["items"])
    return {"builds": builds, "models": models}


async def run(stack: Stack, proxy: ThrottlingProxy, args) -> int:
    stats = Stats()
    csvs = sample_csvs(args.rows)
    sessions = {u: await sign_in(stack.base_url, u, p, stats) for u, p, _ in DEMO_USERS}
    tokens = {u: await api_token(s, stats) for u, s in sessions.items()}
    owners = [(u, slug) for u, _, slug in DEMO_USERS if slug]
    admin = sessions["admin"]
    keys: list[str] = []
    refused: list[str] = []
    paused = asyncio.Event()
    paused.set()
    log = []

    def note(text: str) -> None:
        line = f"{time.monotonic() - t0:6.1f} s  {text}"
        log.append(line)
        print(line, flush=True)

    async def uploader():
        for n in range(args.builds):
            await paused.wait()
            username, slug = owners[n % len(owners)]
            for attempt in range(20):  # a tenant's client retries while AWS or the portal is down
                try:
                    keys.append(await upload(sessions[username], stack.base_url, slug, tokens[username], n,
                                             csvs[slug], Stats()))
                    break
                except Exception as exc:  # noqa: BLE001 - retried, then reported
                    if attempt == 19:
                        refused.append(f"upload {n}: {exc}")
                    await asyncio.sleep(1)
            await asyncio.sleep(args.upload_every)

    t0 = time.monotonic()
    before: dict = {}
    task = asyncio.create_task(uploader())
    loop = asyncio.get_running_loop()

    async def step(delay: float, what: str, action) -> None:
        await asyncio.sleep(delay)
        note(what)
        await loop.run_in_executor(None, action)

    await asyncio.sleep(8)
    before = await snapshot(admin, tokens["admin"])
    note(f"snapshot before faults: {len(before['builds'])} builds")
    for n in range(3):
        def kill_workers():
            for w in stack.workers:
                stack.kill(w)
            time.sleep(2)
            for w in stack.workers:
                stack.start(w)
        await step(8, f"SIGKILL build workers ({n + 1}/3), start them again", kill_workers)

    def restart_redis():
        stack.kill("redis")
        time.sleep(2)
        stack.start("redis")
    await step(8, "restart Redis (SIGKILL, queues lost)", restart_redis)

    if stack.pg:
        def restart_pg():
            stack.kill("postgres")
            time.sleep(3)
            stack.start("postgres")
        await step(8, "restart PostgreSQL (immediate stop)", restart_pg)
    else:
        note("no pg_ctl: PostgreSQL restart skipped (SQLite)")

    paused.clear()

    def restart_emulator():
        time.sleep(3)  # the snapshot is taken every second: let it hold the last uploads
        stack.kill("emulator")
        time.sleep(1)
        stack.start("emulator")
    await step(8, "SIGKILL the emulator, start it again", restart_emulator)
    paused.set()

    await asyncio.sleep(5)
    note(f"AWS throttles half the requests for {args.throttle_seconds} s")
    proxy.throttle = True
    await asyncio.sleep(args.throttle_seconds)
    proxy.throttle = False
    note(f"throttling over ({proxy.throttled} requests throttled)")

    await task
    note(f"{len(keys)} uploads accepted; waiting for their builds")
    deadline = time.monotonic() + args.timeout
    while True:
        after = await snapshot(admin, tokens["admin"])
        per_key = Counter(key for key, _ in after["builds"].values())
        done = sum(1 for k in keys if per_key[k] and all(
            s in TERMINAL for key, s in after["builds"].values() if key == k))
        if done == len(keys) or time.monotonic() > deadline:
            break
        print(f"  {done}/{len(keys)} built", flush=True)
        await asyncio.sleep(5)
    note("done")
    for s in sessions.values():
        await s.close()

    per_upload = Counter(per_key[k] for k in keys)
    states = Counter(s for key, s in after["builds"].values() if key in set(keys))
    lost = [(b, old) for b, old in before["builds"].items()
            if b not in after["builds"] or (old[1] in TERMINAL and after["builds"][b] != old)]
    lost_models = {slug: sorted(set(v) - set(after["models"].get(slug, [])))
                   for slug, v in before["models"].items() if set(v) - set(after["models"].get(slug, []))}
    peaks = json.loads(stack.manage("shell", "-c", CHECK).strip().splitlines()[-1])
    over = [p for p in peaks if p[2] > p[3]]

    print(f"\nuploads: {args.builds} sent, {len(keys)} accepted, {len(refused)} refused after retries")
    print(f"builds per upload: {dict(sorted(per_upload.items()))} (expected {{1: {len(keys)}}})")
    print(f"build states: {dict(states)}")
    print("most running at once / limit: " + ", ".join(f"{k} {n}: {p}/{lim}" for k, n, p, lim in peaks))
    print(f"limits exceeded: {over or 'none'}")
    print(f"recorded before the faults and no longer shown the same: builds {lost or 'none'}, "
          f"model versions {lost_models or 'none'}")
    for line in refused[:10]:
        print(f"  refused: {line}")
    reasons = json.loads(stack.manage("shell", "-c", FAILURES).strip().splitlines()[-1])
    for reason, count in reasons:
        print(f"  failed x{count}: {reason}")
    # Every fault is one the portal must ride out (retries, the reconciler): a valid upload still succeeds.
    ok = (not refused and per_upload == Counter({1: len(keys)}) and states["succeeded"] == len(keys)
          and not over and not lost and not lost_models)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=40)
    parser.add_argument("--upload-every", type=float, default=1.0)
    parser.add_argument("--build-workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=120, help="rows of each uploaded sample (0: all)")
    parser.add_argument("--throttle-seconds", type=float, default=20)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs) afterwards")
    args = parser.parse_args()
    stack = Stack(build_workers=args.build_workers, keep=args.keep)
    proxy = ThrottlingProxy(f"http://127.0.0.1:{stack.ports['emulator']}", free_port())
    proxy.start()
    stack.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    with stack:
        print(f"private stack in {stack.dir}: web {stack.base_url}, database {stack.env['DATABASE_URL']}, "
              f"Redis {stack.env['REDIS_URL']}, emulator :{stack.ports['emulator']} behind proxy :{proxy.port}",
              flush=True)
        return asyncio.run(run(stack, proxy, args))


if __name__ == "__main__":
    sys.exit(main())
