"""Why gunicorn.conf.py keeps idle connections 75 s: the keep-alive race, shown on loopback.

    .venv/bin/python bench/keepalive.py [--users 100] [--requests 30]

Serves a 10 ms WSGI app with gunicorn as the product configures it (gunicorn.conf.py) and again with only
`--keep-alive 2` changed (gunicorn's default), and sends each the same traffic: --users aiohttp sessions
(pooled keep-alive connections, as bench/load.py's users), each POSTing --requests times with 1.9-3.1 s idle
between requests, so idle times straddle the 2 s limit. When the server closes an idle connection just as
the client sends on it, the client gets ECONNRESET or "server disconnected"; aiohttp (like browsers) retries
that only for idempotent methods, so a POST fails. Prints, per configuration, requests and failures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import _wait_port, free_port  # noqa: E402


def app(environ, start_response):
    environ["wsgi.input"].read()
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


async def traffic(base: str, users: int, requests: int) -> Counter:
    outcome: Counter = Counter()

    async def user():
        async with aiohttp.ClientSession(base) as session:
            for _ in range(requests):
                try:
                    async with session.post("/", data=b"x" * 200) as response:
                        await response.read()
                        outcome["ok" if response.status == 200 else f"HTTP {response.status}"] += 1
                except aiohttp.ClientError as exc:
                    outcome[type(exc).__name__] += 1
                await asyncio.sleep(random.uniform(1.9, 3.1))

    await asyncio.gather(*(user() for _ in range(users)))
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    configs = {"gunicorn.conf.py (keepalive 75 s)": [],
               "gunicorn.conf.py with --keep-alive 2 (gunicorn's default)": ["--keep-alive", "2"]}
    servers, ports = [], {}
    try:
        for name, extra in configs.items():
            ports[name] = free_port()
            servers.append(subprocess.Popen(
                [str(ROOT / ".venv/bin/gunicorn"), "bench.keepalive:app", "--config", str(ROOT / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{ports[name]}", *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
            _wait_port(ports[name])

        async def both():  # at once, so both see the same machine load
            return await asyncio.gather(*(traffic(f"http://127.0.0.1:{p}", args.users, args.requests)
                                          for p in ports.values()))

        results = asyncio.run(both())
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.users} users x {args.requests} POSTs, 1.9-3.1 s idle between a user's requests")
    for name, outcome in zip(configs, results, strict=True):
        failed = sum(n for k, n in outcome.items() if k != "ok")
        print(f"{name}: {sum(outcome.values())} requests, {failed} failed {dict(outcome)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
